"""Pieces shared by the first-order solvers (fixed point, projected gradient).

* :func:`run`: the loop every iterative method uses: Frank-Wolfe gap stopping
  rule, iteration cap, per-iteration history, stall detection, and a check that
  no iterate ever leaves the stability region.
* :func:`utilization_cap`: a utilization ``rho_bar < 1`` the optimum provably
  satisfies (from ``U(t*) >= U(t_feasible)``).
* :func:`optimum_box`: a box ``[l, u]`` inside the token box proven to hold the
  optimum, by interval iteration of the (antitone) fixed-point map.
* :func:`project`: exact projection, in a diagonal metric, onto a box
  intersected with the half-space ``a . x <= cap`` (one-dimensional search on
  the multiplier over the sorted breakpoints).

Everything is O(N) per call except :func:`project`, which is O(N log N) when
the half-space is active.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .. import _options as _opt
from .. import status as st
from .._bisect import bisect, integer_midpoint
from .._reduce import dot
from ..certificate import certificate_box, frank_wolfe_gap, relative_scale
from ..errors import OptionError, SolverError
from ..objective import Objective

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = [
    "Loop",
    "run",
    "loop_message",
    "utilization_cap",
    "OptimumBox",
    "optimum_box",
    "gap_box",
    "marginal_bounds",
    "raw_map",
    "project",
    "utilization_halfspace",
    "Momentum",
    "check_options",
    "warm_tokens",
]


def warm_tokens(scenario: Scenario, warm_start) -> np.ndarray | None:
    """Tokens of a warm start (a :class:`~cvxalloc.result.Result` or an array), clipped to the box.

    Raises ``ValueError`` naming the option when the length does not match.
    """
    if warm_start is None:
        return None
    t = getattr(warm_start, "tokens", warm_start)
    t = np.asarray(t, dtype=float)
    if t.shape != (scenario.n,):
        raise OptionError(
            f"option warm_start must have one entry per task ({scenario.n}), got shape {t.shape}"
        )
    if not np.all(np.isfinite(t)):
        raise OptionError("option warm_start must be finite numbers")
    return np.clip(t, scenario.min_tokens, scenario.max_tokens)


def check_options(tol: float, max_iter: int) -> None:
    """Validate the common options (``ValueError`` naming the option)."""
    _opt.positive("tol", tol)
    _opt.count("max_iter", max_iter)


# --------------------------------------------------------------------------- loop
@dataclass
class Loop:
    """Outcome of :func:`run`.

    Attributes
    ----------
    tokens : ndarray
        The last iterate (stable, inside the box).
    iterations : int
        Steps taken.
    status : str
        ``optimal`` (gap within tolerance), ``iteration_limit`` (cap reached) or
        ``optimal_inaccurate`` (the iteration stalled: a step changed nothing).
    gap, objective : float
        Frank-Wolfe gap and ``U`` at :attr:`tokens`.
    history : dict of list
        ``gap`` and ``objective`` at every iterate (index 0 is the start).
    steps : list of ndarray
        Only when requested: the step ``t_{k+1} - t_k`` of every iteration.
    time : float
        Seconds in the loop.
    """

    tokens: np.ndarray
    iterations: int
    status: str
    gap: float
    objective: float
    history: dict[str, list[float]]
    step_norms: list[float] = field(default_factory=list)
    time: float = 0.0


def run(
    obj: Objective,
    step: Callable[[np.ndarray, np.ndarray], np.ndarray],
    t0: np.ndarray,
    *,
    tol: float,
    max_iter: int,
    step_norm: Callable[[np.ndarray], float] | None = None,
) -> Loop:
    """Iterate ``t <- step(t, grad U(t))`` until the Frank-Wolfe gap is small.

    Parameters
    ----------
    obj : Objective
    step : callable
        ``step(t, g) -> t_next``; must return a point of the box.
    t0 : ndarray
        Start (stable, inside the box).
    tol : float
        Stop when ``gap <= tol * max(|U|, 1e-12)``.
    max_iter : int
        Steps at most; reaching it gives status ``iteration_limit``.
    step_norm : callable, optional
        If given, ``step_norm(t_next - t)`` of every step is recorded
        (the fixed point uses it to measure its rate in its contraction norm).

    Raises
    ------
    SolverError
        If an iterate is unstable or leaves the box (a bug, never expected).
    """
    sc = obj.scenario
    lo, hi = sc.min_tokens, sc.max_tokens
    cert_box = certificate_box(sc)
    start = time.perf_counter()
    t = np.asarray(t0, dtype=float)
    hist: dict[str, list[float]] = {"gap": [], "objective": []}
    norms: list[float] = []
    k = 0
    while True:
        U = obj.value(t)
        if not np.isfinite(U) or np.any(t < lo) or np.any(t > hi):
            raise SolverError(
                f"internal error: iterate {k} is unstable or outside the box "
                f"(utilization {sc.utilization(t):.6g}); please report this scenario"
            )
        g = obj.gradient(t)
        gap = frank_wolfe_gap(g, t, *cert_box)
        hist["gap"].append(gap)
        hist["objective"].append(U)
        if gap <= tol * relative_scale(U):
            status = st.OPTIMAL
            break
        if k >= max_iter:
            status = st.ITERATION_LIMIT
            break
        t_next = step(t, g)
        if step_norm is not None:
            norms.append(float(step_norm(t_next - t)))
        if np.array_equal(t_next, t):
            status = st.OPTIMAL_INACCURATE
            break
        t = t_next
        k += 1
    return Loop(t, k, status, gap, U, hist, norms, time.perf_counter() - start)


def loop_message(name: str, loop: Loop, tol: float, max_iter: int) -> str:
    """A one-line human explanation of how the loop ended."""
    rel = loop.gap / relative_scale(loop.objective)
    if loop.status == st.OPTIMAL:
        return (
            f"{name}: Frank-Wolfe gap {loop.gap:.3e} ({rel:.2e} of |U|) <= tol {tol:g} "
            f"after {loop.iterations} iterations"
        )
    if loop.status == st.ITERATION_LIMIT:
        return (
            f"{name}: iteration limit max_iter={max_iter} reached with Frank-Wolfe gap "
            f"{loop.gap:.3e} ({rel:.2e} of |U|), above tol {tol:g}"
        )
    return (
        f"{name}: stalled after {loop.iterations} iterations (a step changed no token, "
        f"rounding floor) with Frank-Wolfe gap {loop.gap:.3e} ({rel:.2e} of |U|), "
        f"above tol {tol:g}"
    )


# ------------------------------------------------------------- utilization cap
#: Relative margin (of ``1 - rho_bar``) added to the computed cap against rounding
#: in the bound: the Lagrangian bound is tight when ``t* = hi`` and a rounded root
#: may fall 1e-14 below ``rho*``. It changes curvature bounds by ~3e-7 relative.
CAP_MARGIN = 1e-7


def utilization_cap(obj: Objective, feasible: list[np.ndarray] | None = None) -> float:
    """A utilization ``rho_bar < 1`` that the optimum provably satisfies.

    Any stable ``t_f`` gives ``U(t*) >= U_f = U(t_f)``; the best of ``lo``, ``hi``
    (when stable), ``feasible`` and the Lagrangian points below is used. Two
    bounds of ``U`` at utilization ``rho`` are then compared with ``U_f``:

    * the model's: accuracy is at most ``Acc_max = sum_i p_i w_i A_i(hi_i)`` and,
      since ``m2 >= m1^2``, ``lam W >= rho + rho^2 / (2 (1 - rho))``, so with
      ``c = lam (Acc_max - U_f) / gamma``:
      ``rho* <= 1 + c - sqrt(1 + c^2) = 2c / (1 + c + sqrt(1 + c^2)) < 1``;
    * a Lagrangian one, much tighter: for any ``nu >= 0`` and ``t`` with
      ``lam m1(t) = rho``, ``Acc(t) <= h(nu) + nu (rho/lam - sum_i p_i a_i)`` with
      ``h(nu) = sum_i max_{lo_i <= x <= hi_i} p_i (w_i A_i(x) - nu b_i x)``
      (maximizer ``clip((A_i')^{-1}(nu b_i / w_i))``), and by Cauchy-Schwarz
      ``m2 >= m1^2 / K + sum_i p_i v_i`` with ``K = sum_i p_i / (1 + k_i)``. The
      resulting upper bound ``F(rho)`` of ``U`` is concave in ``rho``, so the
      utilizations with ``F(rho) >= U_f`` form an interval that holds ``rho*``;
      its right end is found by bisection, for ``nu`` on a grid around
      ``gamma D(t_f)``, and the smallest is kept.

    Parameters
    ----------
    obj : Objective
    feasible : list of ndarray, optional
        Extra points; the stable ones tighten the bound.

    Returns
    -------
    float
        ``rho_bar`` (``1.0`` when ``gamma = 0``: no cap can be derived; ``0.0``
        when ``lam = 0``).
    """
    sc = obj.scenario
    lam, gamma = obj.latency.lam, sc.latency_weight  # one replica's rate in a fleet
    if lam == 0:
        return 0.0
    if gamma == 0:
        return 1.0
    lo, hi = sc.min_tokens, sc.max_tokens
    p, b, w = sc.probability, sc.per_token, sc.weight
    pa = dot(p, sc.base)

    def lagrangian_point(nu: float) -> np.ndarray:
        return np.clip(sc.accuracy.inv_d1(nu * b / w), lo, hi)

    cands = [lo, hi] + [np.clip(np.asarray(c, float), lo, hi) for c in (feasible or [])]
    U_vals = [obj.value(c) for c in cands]
    best = int(np.argmax(U_vals))
    t_f, U_f = cands[best], U_vals[best]
    for _ in range(2):  # Lagrangian points are good feasible candidates
        nu0 = gamma * float(np.median(obj.latency.marginal(t_f)))
        for nu in nu0 * 2.0 ** np.arange(-8, 25):
            c = lagrangian_point(nu)
            Uc = obj.value(c)
            if Uc > U_f:
                t_f, U_f = c, Uc
    acc_max = dot(obj.pw, sc.accuracy.value(hi))
    c = lam * max(acc_max - U_f, 0.0) / gamma
    rho_bar = float(2 * c / (1 + c + np.hypot(1.0, c)))
    K = float(np.sum(p / obj.latency.k1))
    pv = obj.latency.pv
    rho_f = sc.utilization(t_f)
    nu_f = gamma * float(np.median(obj.latency.marginal(t_f)))
    for nu in nu_f * 2.0 ** np.arange(-6, 7, 0.5):
        x = lagrangian_point(nu)
        h = dot(obj.pw, sc.accuracy.value(x)) - nu * dot(p, b * x)

        def F(rho: float, h: float = h, nu: float = nu) -> float:
            m1 = rho / lam
            W = obj.latency.queue.lower_bound(m1, m1 * m1 / K + pv)
            return h + nu * (m1 - pa) - gamma * W - U_f

        if F(rho_f) < 0:  # rounding only: F(rho_f) >= U(t_f) - U_f = 0 in exact arithmetic
            continue
        b_ = min(rho_bar, 1.0)
        if F(b_ - 1e-300) >= 0 if b_ < 1 else False:
            continue
        # the first utilization where F < 0 (the cap keeps the side F < 0: a bound)
        _, b_ = bisect(lambda rho, F=F: F(rho) >= 0, rho_f, b_, max_iter=100)
        rho_bar = min(rho_bar, b_)
    # margin for the rounding of F (its root may sit exactly at rho*, e.g. t* = hi)
    return float(min(rho_bar + CAP_MARGIN * (1 - rho_bar), 1.0))


# ------------------------------------------------------------- the map and boxes
def raw_map(obj: Objective, t: np.ndarray) -> np.ndarray:
    """``phi(t) = (A')^{-1}(gamma b D(t) / w)`` unclipped (``-inf`` where unstable).

    ``+inf`` where ``gamma = 0`` (accuracy is then all that counts).
    """
    sc = obj.scenario
    if sc.utilization(t) >= 1:
        return np.full(sc.n, -np.inf)
    D = obj.latency.marginal(t)
    return sc.accuracy.inv_d1(sc.latency_weight * sc.per_token * D / sc.weight)


def marginal_bounds(obj: Objective, u: np.ndarray, rho_cap: float) -> dict[str, object]:
    """Upper bounds of the queue quantities over ``{lo <= t <= u, rho(t) <= rho_cap}``.

    For a monotone queue model (``c_a^2 >= 1``) every quantity in ``D_i(t)`` and in
    the Hessian of ``W`` grows with ``t``, so its supremum over the set is bounded
    by its value at ``u`` with the utilization replaced by
    ``rc = min(rho(u), rho_cap)``. ``m2`` is also bounded through the cap:
    ``sum p_i (1+k_i) s_i^2 <= max_i((1+k_i) s_i(u_i)) m1``.

    Returns
    -------
    dict
        ``rho`` (= rc), ``A``, ``B`` (bounds of ``dW/dm1`` and ``2 dW/dm2``),
        ``H11``, ``H12`` (of the Hessian of ``W`` in the moments), ``m2``,
        ``s`` (``s(u)``), ``D`` (per-type bound of ``D_i = A + B (1+k_i) s_i``).
    """
    sc = obj.scenario
    lat = obj.latency
    lam = lat.lam  # one replica's rate in a fleet
    s = sc.service_time(u)
    mo = lat.moments(u)
    rc = min(mo.rho, rho_cap)
    if lam == 0:
        return {
            "rho": 0.0,
            "A": 1.0,
            "B": 0.0,
            "H11": 0.0,
            "H12": 0.0,
            "m2": mo.m2,
            "s": s,
            "D": np.ones(sc.n),
        }
    if rc >= 1:
        inf = np.inf
        return {
            "rho": rc,
            "A": inf,
            "B": inf,
            "H11": inf,
            "H12": inf,
            "m2": mo.m2,
            "s": s,
            "D": np.full(sc.n, inf),
        }
    m2 = mo.m2
    if rc < mo.rho:
        m2 = min(m2, float(np.max(lat.k1 * s)) * rc / lam + lat.pv)
    A, B = lat.queue.scalars(1.0 - rc, m2)[:2]
    H11, H12 = lat.queue.curvature(1.0 - rc, m2)
    return {
        "rho": rc,
        "A": A,
        "B": B,
        "H11": H11,
        "H12": H12,
        "m2": m2,
        "s": s,
        "D": A + B * lat.k1 * s,
    }


def require_monotone(obj: Objective, method: str) -> None:
    """Refuse queue models whose ``D_i`` need not grow with ``t`` (``c_a^2 < 1``).

    The interval iteration, the contraction bound and the curvature bounds all
    bound ``D`` and the Hessian of ``W`` by their values at a corner of the set,
    which is valid only when they grow with every ``t_j``.
    """
    queue = obj.latency.queue
    if not queue.monotone:
        raise OptionError(
            f"method {method!r} needs arrival_scv >= 1 (got {queue.arrival_scv:g}): its "
            "bounds use that the marginal delay grows with every budget, which fails for "
            "smoother-than-Poisson arrivals; use method='aggregate' or 'conic'"
        )


@dataclass
class OptimumBox:
    """A box ``[lower, upper]`` proven to contain the optimum.

    Attributes
    ----------
    lower, upper : ndarray
    rounds : int
        Interval-iteration rounds used.
    rho_cap : float
        The utilization cap used (1 when none).
    """

    lower: np.ndarray
    upper: np.ndarray
    rounds: int
    rho_cap: float


def optimum_box(
    obj: Objective,
    rho_cap: float,
    rounds: int,
    stop: Callable[[np.ndarray, np.ndarray], bool] | None = None,
) -> OptimumBox:
    """Shrink the token box around the optimum by interval iteration.

    ``D_i(t)`` grows with every ``t_j`` and ``(A_i')^{-1}`` is decreasing, so the
    map ``phi`` is antitone. If ``l <= t* <= u`` then ``D(l) <= D(t*) <= Dbar``
    (``Dbar`` from :func:`marginal_bounds` over ``[l, u]`` and the cap), hence
    ``phi(Dbar) <= t* <= phi(l)``. The cap also bounds each coordinate:
    ``p_i b_i (t*_i - l_i) <= rho_cap/lam - m1(l)``. Each round applies these
    bounds; every box contains ``t*``.

    Parameters
    ----------
    obj : Objective
    rho_cap : float
        A utilization the optimum provably satisfies (1 for none).
    rounds : int
        Rounds at most.
    stop : callable, optional
        ``stop(lower, upper) -> bool`` ends the refinement early (checked before
        each round, so round 0 is the token box itself).
    """
    sc = obj.scenario
    lo, hi = sc.min_tokens, sc.max_tokens
    lam = obj.latency.lam  # one replica's rate in a fleet
    lw, u = lo.copy(), hi.copy()
    pb = sc.probability * sc.per_token
    k = 0
    for k in range(rounds + 1):
        if stop is not None and stop(lw, u):
            break
        if k == rounds:
            break
        # upper bounds: t* <= phi(lw), and the cap on each coordinate
        u_new = np.minimum(u, np.clip(raw_map(obj, lw), lo, hi))
        if lam > 0 and rho_cap < 1:
            slack = max(rho_cap / lam - dot(sc.probability, sc.service_time(lw)), 0.0)
            u_new = np.minimum(u_new, lw + slack / pb)
        # lower bounds: t* >= phi at the largest D over the set
        Dbar = marginal_bounds(obj, u_new, rho_cap)["D"]
        phi_lo = sc.accuracy.inv_d1(sc.latency_weight * sc.per_token * Dbar / sc.weight)
        l_new = np.maximum(lw, np.clip(phi_lo, lo, hi))
        l_new = np.minimum(l_new, u_new)
        changed = not (np.array_equal(l_new, lw) and np.array_equal(u_new, u))
        lw, u = l_new, u_new
        if not changed:
            break
    return OptimumBox(lw, u, k, rho_cap)


def gap_box(
    obj: Objective,
    t: np.ndarray,
    g: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    rounds: int = 5,
) -> tuple[np.ndarray, np.ndarray, float]:
    """A box around ``t``, inside ``[lower, upper]``, proven to hold the optimum.

    ``W`` is convex, so on ``B = [lower, upper]`` (which must hold ``t`` and
    ``t*``) ``-Hess U >= diag(delta)`` with ``delta_i = p_i w_i |A_i''(upper_i)|``
    (``|A''|`` decreases in ``t``). Two consequences:

    * ``U* <= max_{s in B} U(t) + g.(s - t) - (s - t)' diag(delta) (s - t) / 2``,
      a separable bound: ``U* - U(t) <= beta = sum_i max_{x in B_i - t_i}
      (g_i x - delta_i x^2 / 2)``, never above the Frank-Wolfe gap;
    * concavity along the segment from ``t*`` to ``t`` and the optimality of ``t*``
      (``grad U(t*) . (t - t*) <= 0``) give ``sum_i delta_i (t_i - t*_i)^2 <= 2 beta``,
      hence ``|t_i - t*_i| <= sqrt(2 beta / delta_i)``.

    The new box has larger ``delta`` and a smaller ``beta``, so the two are
    applied for a few rounds. The box shrinks like ``sqrt(beta)`` as an iteration
    converges, so curvature bounds over it approach the curvature at ``t*``.

    Parameters
    ----------
    obj : Objective
    t : ndarray
        A point of ``[lower, upper]``.
    g : ndarray
        ``grad U(t)``.
    lower, upper : ndarray
        A box known to hold ``t`` and ``t*``.
    rounds : int
        Rounds at most.

    Returns
    -------
    (lower, upper, beta) : tuple
        The smaller box (``r`` inflated by the rounding bound of ``beta``'s sum
        and by 1e-9 of the token box width) and the last ``beta``.
    """
    sc = obj.scenario
    width = sc.max_tokens - sc.min_tokens
    eps = np.finfo(float).eps
    beta = np.inf
    for _ in range(max(rounds, 1)):
        delta = obj.pw * np.abs(sc.accuracy.d2(upper))
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(delta > 0, g / delta, np.where(g > 0, np.inf, -np.inf))
        x = np.where(g == 0, 0.0, x)
        x = np.clip(x, lower - t, upper - t)
        terms = g * x - 0.5 * delta * x * x
        # rounding of the sum: a few ulps of sum_i |g_i x_i| + delta_i x_i^2
        beta = float(np.sum(terms)) + 8 * (sc.n + 4) * eps * float(
            dot(np.abs(g), np.abs(x)) + dot(delta, x * x)
        )
        beta = max(beta, 0.0)
        with np.errstate(divide="ignore"):
            r = np.sqrt(2 * beta / delta) + 1e-9 * width
        l_new, u_new = np.maximum(lower, t - r), np.minimum(upper, t + r)
        done = np.all(u_new - l_new >= 0.9 * (upper - lower))
        lower, upper = l_new, u_new
        if done:
            break
    return lower, upper, beta


# ------------------------------------------------------------------ projection
def utilization_halfspace(
    scenario: Scenario, rho_cap: float, floor_point: np.ndarray
) -> tuple[np.ndarray, float]:
    """``(a, cap)`` with ``a . t <= cap`` the cap ``lam m1(t) <= rho_cap`` (``lam > 0``).

    ``a_i = p_i b_i`` and ``cap = rho_cap/lam - sum_i p_i a_i``, raised to
    ``a . floor_point`` when rounding puts it below (the set must keep
    ``floor_point``, a point known to satisfy the cap: the box's lower corner
    or the current iterate). The pair is what :func:`project` takes.
    """
    sc = scenario
    a = sc.probability * sc.per_token
    cap = rho_cap * sc.capacity / sc.arrival_rate - dot(sc.probability, sc.base)
    return a, max(cap, dot(a, floor_point))


def project(
    y: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    a: np.ndarray | None = None,
    cap: float | None = None,
    q: np.ndarray | None = None,
) -> np.ndarray:
    """Exact projection of ``y`` onto ``{lower <= x <= upper, a . x <= cap}``.

    In the metric ``sum_i q_i (x_i - y_i)^2`` (``q = 1``: Euclidean). The KKT
    conditions give ``x(mu) = clip(y - mu a / q, lower, upper)`` with the
    multiplier ``mu >= 0`` the root of the decreasing, piecewise-linear
    ``f(mu) = a . x(mu) - cap``; it is found by bisection over the sorted
    breakpoints and then exactly on the linear piece that holds it.

    Parameters
    ----------
    y : ndarray
    lower, upper : ndarray
        The box (``a . lower <= cap`` is required for non-emptiness).
    a : ndarray, optional
        Positive half-space coefficients (None: box only).
    cap : float, optional
    q : ndarray, optional
        Positive metric weights.
    """
    x = np.clip(y, lower, upper)
    if a is None or cap is None or dot(a, x) <= cap:
        return x
    r = a if q is None else a / q
    bp = np.concatenate([(y - upper) / r, (y - lower) / r])
    bp = np.unique(bp[bp > 0])

    def f(mu: float) -> float:
        return dot(a, np.clip(y - mu * r, lower, upper)) - cap

    if bp.size == 0 or f(bp[-1]) > 0:  # cannot happen when a . lower <= cap
        return np.clip(lower, lower, upper)
    # f(0) > 0 at index -1 (mu = 0), f(bp[-1]) <= 0: the breakpoints around the root
    lo_i, hi_i = bisect(lambda i: f(bp[i]) > 0, -1, bp.size - 1, mid=integer_midpoint)
    m0 = 0.0 if lo_i < 0 else float(bp[lo_i])
    m1 = float(bp[hi_i])
    f0, f1 = f(m0), f(m1)
    mu = m1 if f0 == f1 else m0 + (m1 - m0) * f0 / (f0 - f1)
    x = np.clip(y - mu * r, lower, upper)
    if dot(a, x) > cap:  # rounding: bisect towards m1, where the point is feasible
        m_in, _ = bisect(lambda m: f(m) <= 0, m1, mu, max_iter=60)
        x = np.clip(y - m_in * r, lower, upper)
    return x


# ------------------------------------------------------------------ acceleration
class Momentum:
    """Safeguarded FISTA (Nesterov) momentum for a monotone first-order method.

    Each iteration the method computes its plain step ``plain = advance(t, g)``
    and asks :meth:`pick`, which also computes the FISTA candidate
    ``advance(y, grad U(y))`` from ``y = proj(t + (theta-1)/theta' (t - t_prev))``
    and returns it only when its objective is at least that of ``plain``;
    otherwise ``plain``, and the momentum restarts (``theta = 1``). Every
    iteration is therefore at least as good as the plain one, and the plain
    method's ascent and rate carry over. Costs one gradient and two objective
    values per iteration.

    Parameters
    ----------
    obj : Objective
    enabled : bool
        False: :meth:`pick` returns the plain step (and only records ``t``).
    """

    def __init__(self, obj: Objective, enabled: bool = True) -> None:
        self.obj = obj
        self.enabled = enabled
        self.prev: np.ndarray | None = None
        self.theta = 1.0

    def pick(
        self,
        t: np.ndarray,
        plain: np.ndarray,
        advance: Callable[[np.ndarray, np.ndarray], np.ndarray],
        proj: Callable[[np.ndarray], np.ndarray],
    ) -> np.ndarray:
        """The next iterate: the FISTA candidate when it is at least as good as ``plain``.

        ``advance(x, g)`` is the method's step from ``x`` with gradient ``g``;
        ``proj`` projects onto the set that step uses (so ``y`` is stable).
        """
        prev, self.prev = self.prev, t
        if not self.enabled or prev is None or self.theta == 1.0:
            self.theta = 1.0 if prev is None else (1.0 + np.sqrt(5.0)) / 2.0
            return plain
        theta_next = (1.0 + np.sqrt(1.0 + 4.0 * self.theta**2)) / 2.0
        y = proj(t + (self.theta - 1.0) / theta_next * (t - prev))
        z = advance(y, self.obj.gradient(y))
        if self.obj.value(z) >= self.obj.value(plain):
            self.theta = theta_next
            return z
        self.theta = 1.0
        return plain
