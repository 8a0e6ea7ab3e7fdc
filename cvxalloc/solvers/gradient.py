"""Projected gradient ascent with a step below a curvature bound computed from the data.

``t <- Proj_S(t + eta grad U(t))``, ``eta = step_fraction / L`` where ``L`` bounds
the largest eigenvalue of ``-Hess U`` over a convex set ``S`` that holds the
optimum and lies inside the stability region:

* ``S`` is the token box when the maximum budgets are stable and no tighter
  utilization cap is known, otherwise the box intersected with
  ``lam m1(t) <= rho_bar`` (``rho_bar`` from
  :func:`~cvxalloc.solvers._iterate.utilization_cap`); the projection onto it
  is exact (:func:`~cvxalloc.solvers._iterate.project`).
* (:func:`~cvxalloc.solvers.curvature.curvature_bound`)
  ``-Hess U = diag(d) + gamma V M_W V^T`` with ``V = [c, e]``,
  ``c_i = p_i b_i``, ``e_i = p_i b_i (1+k_i) s_i``. Over ``S``,
  ``d_i <= p_i w_i |A_i''(lo_i)| + gamma lam (1+k_i) p_i b_i^2 / (1 - rc)``
  (``|A''|`` decreases in ``t``; ``rc`` the largest utilization on ``S``) and
  ``lambda_max(V M_W V^T) <= m11 |c|^2 + m12 (|c| |e| + c.e)`` with
  ``m11 = lam^3 m2 / (1-rc)^3``, ``m12 = lam^2 / (1-rc)^2`` (Weyl's inequality on
  ``m11 c c^T + m12 (c e^T + e c^T)``; every term grows with ``t``, so the
  values at the upper corner bound them).

Speed-ups, each keeping the guarantees (``shrink`` for the global-bound
variants, ``accelerate`` for all):

* ``shrink`` (default on): every :data:`CHECK_EVERY` iterations the set is
  intersected with the box around the iterate proven to hold ``t*``
  (:func:`~cvxalloc.solvers._iterate.gap_box`: ``sum_i delta_i (t_i - t*_i)^2
  <= 2 (U* - U(t))``); while the utilization cap cuts the set it is recomputed
  from the current utility every :data:`CAP_EVERY` iterations. The bound and
  step are rebuilt on the smaller set, which holds ``t*`` and the iterate.
* ``accelerate`` (default on): each iteration also computes the FISTA
  candidate from the point extrapolated along the last step (in the same set,
  and for the local variant the same trust box), and keeps it only when it is
  at least as good as the plain step (else the momentum restarts).

Every iteration is thus at least as good as a plain projected-gradient step on
a set holding ``t*`` whose ratio ``mu/L`` is at least the first set's, so the
plain method's rate and iteration bound hold.

Three variants, each with its own bound:

``variant="local"`` (default)
    Jacobi-scaled steps (below) on the proven optimum box, but each step's
    curvature bound is computed over a *trust box* around the iterate,
    ``|x_i - t_i| <= r_i`` with utilization at most
    ``rho(t) + LOCAL_CAP (1 - rho(t))``, and the step is projected onto the set
    intersected with that trust box. The quadratic model is then a valid
    minorant of ``U`` on the region the step may reach, so every step ascends,
    and a fixed point of the step is optimal (the trust box holds a
    neighbourhood of ``t`` in the set). Radii double where a step reached them
    and otherwise follow twice the last move (halving at most). The bound then
    tracks the curvature near the iterate instead of the worst curvature of a
    large set, which is what makes saturated and overloaded instances converge.
``variant="scaled"``
    Diagonally scaled projected gradient with one bound per set: the metric
    ``q_i`` is the bound of the i-th diagonal entry of ``-Hess U`` over ``S``
    (Jacobi scaling), and ``S`` is additionally shrunk to the box proven to hold
    the optimum by :func:`~cvxalloc.solvers._iterate.optimum_box`. The step is
    ``1 / L_q`` with ``L_q`` the same bound for ``Q^{-1/2} (-Hess U) Q^{-1/2}``,
    and the projection is exact in the metric ``Q``.
``variant="paper"``
    The method as stated: Euclidean steps on ``S``. Its gradient scales with
    ``p_i``, so types with small ``p_i`` move ``p_i / p_max`` times slower;
    with step ``1/L`` and strong concavity ``mu = min_i p_i w_i |A_i''(hi_i)|``
    it provably reaches the tolerance within ``iteration_bound`` iterations
    (reported when the token box is stable). ``shrink=False,
    accelerate=False`` gives the paper's method exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _options as _opt
from .. import status as st
from ..certificate import frank_wolfe_gap
from ..errors import OptionError
from ..objective import Objective
from ..result import Result
from ._iterate import (
    Loop,
    Momentum,
    check_options,
    gap_box,
    loop_message,
    optimum_box,
    project,
    require_monotone,
    run,
    utilization_cap,
    utilization_halfspace,
    warm_tokens,
)
from .curvature import curvature_bound

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["solve_gradient", "curvature_bound", "VARIANTS", "CHECK_EVERY", "CAP_EVERY"]

#: Names of the variants (the first is the default).
VARIANTS = ("local", "scaled", "paper")

#: Local variant: the trust box allows a utilization of at most
#: ``rho(t) + LOCAL_CAP (1 - rho(t))`` (the queue's curvature, ~``1/(1-rho)^3``,
#: then grows by at most ``(1 - LOCAL_CAP)^-3 = 8`` over the trust box).
LOCAL_CAP = 0.5

#: Local variant: the first trust radius, as a fraction of the set's widths.
LOCAL_RADIUS = 0.125

#: Iterations between two checkpoints (shrinking the set around the iterate).
CHECK_EVERY = 10

#: While the utilization cap cuts the set, iterations between two recomputations of it.
CAP_EVERY = 50


def _iteration_bound(L: float, mu: float, gap0: float, eps: float, diam: float) -> float:
    """Iterations after which the Frank-Wolfe gap is provably ``<= eps`` (step ``1/L``).

    ``L`` and ``mu`` bound the curvature of ``U`` over the token box from above and
    below (``mu I <= -Hess U <= L I``), ``diam`` is the box's diameter. For any
    ``t`` of the box, with ``delta = U* - U(t)`` and ``g* = grad U(t*)``:
    ``gap(t) = max_s g(t).(s - t) <= g*.(t* - t) + L |t - t*| diam`` (``g*.(s - t*)
    <= 0``), ``g*.(t* - t) <= delta`` and ``|t - t*| <= sqrt(2 delta / mu)`` by
    strong concavity, so ``gap(t) <= delta + L diam sqrt(2 delta / mu)``. Projected
    gradient with step ``1/L'`` on any convex set holding ``t*`` on which
    ``mu' I <= -Hess U <= L' I``, ``mu'/L' >= mu/L`` (every set the solver
    builds), gives ``delta_{k+1} <= (1 - mu/L) delta_k``, and ``delta_0 <= gap_0``.
    """
    if eps <= 0 or mu <= 0 or not np.isfinite(L):
        return np.inf
    if gap0 <= eps:
        return 0.0
    rate = min(mu / L, 1.0)
    # largest delta with delta + L diam sqrt(2 delta/mu) <= eps (a quadratic in sqrt(delta))
    c = L * diam * np.sqrt(2 / mu)
    root = 2 * eps / (c + np.sqrt(c * c + 4 * eps))  # (-c + sqrt(c^2 + 4 eps))/2, no cancellation
    need = root * root
    if need <= 0:  # eps below the rounding of the bound
        return np.inf
    if gap0 <= need:
        return 0.0
    if rate >= 1:
        return 1.0
    return float(np.ceil(np.log(need / gap0) / np.log1p(-rate)))


def solve_gradient(
    scenario: Scenario,
    *,
    tol: float = 1e-9,
    max_iter: int = 10_000,
    warm_start=None,
    variant: str = "local",
    step_fraction: float = 1.0,
    refine_rounds: int = 50,
    shrink: bool = True,
    accelerate: bool = True,
) -> Result:
    """Projected gradient ascent with a step from a computed curvature bound.

    Parameters
    ----------
    scenario : Scenario
    tol : float
        Stop when the Frank-Wolfe gap is ``<= tol * |U|`` (default 1e-9).
    max_iter : int
        Iterations at most (then status ``iteration_limit``, with the gap reached).
    warm_start : array_like or Result, optional
        Start from these tokens (projected onto the set ``S``); default the
        projection of the midpoint of the set's box.
    variant : {"local", "scaled", "paper"}
        ``"local"`` (default): Jacobi-scaled steps on the proven optimum box,
        each with the curvature bounded over a trust box around the iterate.
        ``"scaled"``: Jacobi-scaled steps with one bound over the proven optimum
        box. ``"paper"``: the paper's Euclidean steps on the token box (capped
        where needed).
    step_fraction : float
        ``eta = step_fraction / L``, in ``(0, 1]`` (1 gives the guarantees above).
    refine_rounds : int
        Interval rounds of the optimum box (``"scaled"`` only).
    shrink : bool
        Every :data:`CHECK_EVERY` iterations, intersect the set with the box
        around the iterate proven to hold the optimum
        (:func:`~cvxalloc.solvers._iterate.gap_box`) and rebuild the curvature
        bound and step on it (default True). ``False`` keeps the first set.
    accelerate : bool
        Every iteration also computes the FISTA (Nesterov) candidate, from the
        point extrapolated along the last step, with the same step and set, and
        takes it when its objective is at least that of the plain step;
        otherwise it takes the plain step and restarts the momentum (default
        True). Each iteration is thus at least as good as the plain one, so the
        plain method's guarantees hold; ``False`` gives the plain method.

    Returns
    -------
    Result
        ``diagnostics`` holds ``curvature_bound``, ``step`` (of the last set),
        ``initial_curvature_bound``, ``initial_step``, ``set``, ``rho_bar``,
        ``set_utilization``, ``upper_utilization``, ``restarts`` and, for the
        paper variant when the token box is stable, ``strong_concavity`` and
        ``iteration_bound``.

    Examples
    --------
    >>> import cvxalloc
    >>> res = cvxalloc.solve(cvxalloc.example_scenario(), method="gradient")
    >>> res.status, res.certificate.relative_gap <= 1e-9
    ('optimal', True)
    """
    check_options(tol, max_iter)
    variant = _opt.choice("variant", variant, VARIANTS)
    if not (0 < _opt.positive("step_fraction", step_fraction) <= 1):
        raise OptionError(f"option step_fraction must be in (0, 1] (got {step_fraction!r})")
    shrink = _opt.flag("shrink", shrink)
    accelerate = _opt.flag("accelerate", accelerate)
    refine_rounds = _opt.count("refine_rounds", refine_rounds)
    start = time.perf_counter()
    sc = scenario
    obj = Objective(sc)
    require_monotone(obj, "gradient")
    x0 = warm_tokens(sc, warm_start)
    rho_bar = utilization_cap(obj, [x0] if x0 is not None and sc.utilization(x0) < 1 else [])
    rho_hi = sc.utilization(sc.max_tokens)
    # the first set: the cap is used where the box is unstable or where it is tighter
    rho_cap = rho_bar if (sc.arrival_rate > 0 and rho_bar < rho_hi) else 1.0
    lower0, upper0, rounds = _optimum_set(obj, variant, rho_cap, refine_rounds)
    stable_box = variant == "paper" and rho_hi < 1
    L_box = curvature_bound(obj, sc.min_tokens, sc.max_tokens, 1.0)["L"] if stable_box else np.inf
    S0 = _Set.build(obj, variant, step_fraction, lower0, upper0, rho_cap, None, L_box)
    if x0 is None:
        x0 = 0.5 * (S0.lower + S0.upper)
    t0 = S0.project(np.clip(x0, S0.lower, S0.upper))
    # the loop, with the variant's stepper
    stepper = (
        _LocalStepper(obj, S0, accelerate, step_fraction)
        if variant == "local"
        else _SetStepper(obj, S0, accelerate)
    )
    drive = _Driver(obj, variant, step_fraction, accelerate, shrink, rho_bar)
    loop = drive.run(S0, stepper, t0, tol=tol, max_iter=max_iter)
    # what the result says
    diag = _diagnostics(obj, variant, drive, S0, rounds, rho_hi, shrink, accelerate)
    if stable_box:
        diag.update(_paper_guarantee(obj, t0, L_box, tol, step_fraction))
    L, eta = diag["curvature_bound"], diag["step"]
    return Result.from_tokens(
        sc,
        loop.tokens,
        method="gradient",
        status=loop.status,
        objective=obj,
        iterations=loop.iterations,
        solver_stats={"total_time": time.perf_counter() - start, "loop_time": loop.time},
        diagnostics=diag,
        history=loop.history,
        message=loop_message(_NAMES[variant], loop, tol, max_iter)
        + f"; step {eta:.3e} = {step_fraction:g}/L, curvature bound L {L:.3e} on the {diag['set']}"
        + (f" after {drive.restarts} restarts (first L {S0.L:.3e})" if drive.restarts else ""),
    )


_NAMES = {
    "paper": "projected gradient",
    "scaled": "projected gradient (diagonally scaled)",
    "local": "projected gradient (diagonally scaled, local curvature bounds)",
}


def _optimum_set(
    obj: Objective, variant: str, rho_cap: float, refine_rounds: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """The first set's box: the token box (paper) or the proven optimum box (scaled, local)."""
    lo, hi = obj.scenario.min_tokens, obj.scenario.max_tokens
    if variant == "paper":
        return lo, hi, 0
    box = optimum_box(obj, rho_cap, refine_rounds)
    width = hi - lo
    return (
        np.maximum(lo, box.lower - 1e-7 * width),
        np.minimum(hi, box.upper + 1e-7 * width),
        box.rounds,
    )


@dataclass
class _Set:
    """The set ``[lower, upper] ∩ {a . t <= cap}`` with its metric, curvature bound and step."""

    lower: np.ndarray
    upper: np.ndarray
    a: np.ndarray | None
    cap: float | None
    q: np.ndarray | None
    cb: dict[str, Any]
    L: float
    eta: float
    rho_cap: float

    @classmethod
    def build(
        cls,
        obj: Objective,
        variant: str,
        step_fraction: float,
        lower: np.ndarray,
        upper: np.ndarray,
        rho_cap: float,
        keep: np.ndarray | None,
        L_outer: float = np.inf,
    ) -> _Set:
        """The set ``[lower, upper] ∩ {rho <= rho_cap}``, its metric, bound and step.

        ``keep``: a point the set must hold (the current iterate: monotone ascent).
        ``L_outer``: a Euclidean bound valid on a set containing this one (the
        paper variant keeps the smaller, so its bound never grows).
        """
        sc = obj.scenario
        if keep is not None:
            lower, upper = np.minimum(lower, keep), np.maximum(upper, keep)
        if sc.arrival_rate > 0 and rho_cap < sc.utilization(upper):
            a, cap = utilization_halfspace(sc, rho_cap, lower if keep is None else keep)
        else:  # the cap does not cut the box: a plain (stable) box
            a, cap, rho_cap = None, None, 1.0
        cb = curvature_bound(obj, lower, upper, rho_cap, jacobi=variant != "paper")
        q = cb["metric"]
        L = cb["L"] if q is not None else min(cb["L"], L_outer)
        eta = step_fraction / L if L > 0 else np.inf
        return cls(lower, upper, a, cap, q, cb, L, eta, rho_cap)

    def project(self, x: np.ndarray) -> np.ndarray:
        """Projection onto the set, in its metric."""
        return project(x, self.lower, self.upper, self.a, self.cap, self.q)


class _SetStepper:
    """One (accelerated) projected-gradient step with the set's bound (paper, scaled)."""

    def __init__(self, obj: Objective, S: _Set, accelerate: bool) -> None:
        self.S = S
        self.L, self.eta = S.L, S.eta
        self.qinv = 1.0 if S.q is None else 1.0 / S.q
        self.momentum = Momentum(obj, accelerate)

    def advance(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self.S.project(x + self.eta * self.qinv * g)

    def __call__(self, t: np.ndarray, g: np.ndarray) -> np.ndarray:
        S = self.S
        if not np.isfinite(self.eta):  # no curvature: U is linear, one step to the best vertex
            return S.project(np.where(g > 0, S.upper, np.where(g < 0, S.lower, t)))
        return self.momentum.pick(t, self.advance(t, g), self.advance, S.project)


class _LocalStepper:
    """Jacobi-scaled step with the curvature bounded over a trust box around ``t``.

    The trust box ``|x_i - t_i| <= r_i`` (utilization at most
    ``rho(t) + LOCAL_CAP (1 - rho(t))``) is intersected with the set; radii
    double where a step reached them and otherwise follow twice the last move
    (halving at most). ``L``, ``eta`` are the last step's, ``L_max`` the largest.
    """

    def __init__(self, obj: Objective, S: _Set, accelerate: bool, step_fraction: float) -> None:
        sc = obj.scenario
        self.obj, self.S, self.step_fraction = obj, S, step_fraction
        self.radius = LOCAL_RADIUS * (S.upper - S.lower)
        self.floor_r = 1e-12 * (sc.max_tokens - sc.min_tokens)
        self.momentum = Momentum(obj, accelerate)
        self.L, self.eta, self.L_max = np.nan, np.nan, 0.0

    def __call__(self, t: np.ndarray, g: np.ndarray) -> np.ndarray:
        sc, S, radius = self.obj.scenario, self.S, self.radius
        lt, ut = np.maximum(S.lower, t - radius), np.minimum(S.upper, t + radius)
        rho_t = sc.utilization(t)
        cap_t = min(S.rho_cap, rho_t + LOCAL_CAP * (1 - rho_t))
        if sc.arrival_rate > 0 and cap_t < sc.utilization(ut):
            a, cap = utilization_halfspace(sc, cap_t, t)
        else:
            a, cap, cap_t = None, None, 1.0
        cb = curvature_bound(self.obj, lt, ut, cap_t, jacobi=True)
        q, L = cb["metric"], cb["L"]

        def proj(x: np.ndarray) -> np.ndarray:
            return project(x, lt, ut, a, cap, q)

        if L > 0:
            eta = self.step_fraction / L

            def advance(x: np.ndarray, gx: np.ndarray) -> np.ndarray:
                return proj(x + eta * gx / q)

            # the FISTA candidate stays inside the same trust box
            t_new = self.momentum.pick(t, advance(t, g), advance, proj)
        else:  # U is linear on the trust box: its best vertex
            eta = np.inf
            t_new = proj(np.where(g > 0, ut, np.where(g < 0, lt, t)))
        self.L, self.eta, self.L_max = L, eta, max(self.L_max, L)
        move = np.abs(t_new - t)
        hit = (move >= radius * (1 - 1e-9)) & (t_new > S.lower) & (t_new < S.upper)
        radius = np.where(hit, 2 * radius, np.maximum(2 * move, 0.5 * radius))
        self.radius = np.clip(radius, self.floor_r, S.upper - S.lower)
        return t_new


class _Driver:
    """The loop every variant shares: :func:`~cvxalloc.solvers._iterate.run` in chunks.

    Checkpoints every :data:`CHECK_EVERY` iterations (set variants): the set is
    intersected with the box around the iterate proven to hold ``t*``
    (:func:`~cvxalloc.solvers._iterate.gap_box`), and, while the utilization cap
    cuts the set, the cap is recomputed from the current (better) utility every
    :data:`CAP_EVERY` iterations. When the set changed, its metric, bound and
    step are rebuilt and the momentum restarts. Every set holds ``t*`` and the
    current iterate, so the ascent and the guarantees carry over. The local
    variant runs once: its trust box adapts inside the step.
    """

    def __init__(
        self,
        obj: Objective,
        variant: str,
        step_fraction: float,
        accelerate: bool,
        shrink: bool,
        rho_bar: float,
    ) -> None:
        self.obj, self.variant, self.step_fraction = obj, variant, step_fraction
        self.accelerate, self.shrink, self.rho_bar = accelerate, shrink, rho_bar
        self.restarts = 0
        self.S: _Set | None = None
        self.stepper: Any = None

    def run(self, S: _Set, stepper: Any, t: np.ndarray, *, tol: float, max_iter: int) -> Loop:
        """Iterate from ``t`` until the gap is within ``tol`` or ``max_iter`` steps."""
        self.S, self.stepper = S, stepper
        hist: dict[str, list[float]] = {"gap": [], "objective": []}
        iters, loop_time, since_cap = 0, 0.0, 0
        while True:
            budget = max_iter - iters
            checking = self.variant != "local" and (self.shrink or self.S.a is not None)
            chunk = min(budget, CHECK_EVERY) if checking else budget
            loop = run(self.obj, self.stepper, t, tol=tol, max_iter=chunk)
            skip = 1 if hist["gap"] else 0
            hist["gap"] += loop.history["gap"][skip:]
            hist["objective"] += loop.history["objective"][skip:]
            iters += loop.iterations
            loop_time += loop.time
            t = loop.tokens
            if loop.status != st.ITERATION_LIMIT or iters >= max_iter:
                break
            since_cap += loop.iterations
            refresh_cap = self.S.a is not None and since_cap >= CAP_EVERY
            if refresh_cap:
                since_cap = 0
                self.rho_bar = min(self.rho_bar, utilization_cap(self.obj, [t]))
            self._checkpoint(t, refresh_cap)
        loop.iterations, loop.history, loop.time = iters, hist, loop_time
        return loop

    def _checkpoint(self, t: np.ndarray, refresh_cap: bool) -> None:
        """Shrink the set around ``t`` (and tighten its cap); rebuild it if it changed."""
        S = self.S
        lower, upper, cap_now = S.lower, S.upper, S.rho_cap
        if refresh_cap and (1 - self.rho_bar) >= 1.2 * (1 - cap_now):
            cap_now = self.rho_bar
        if self.shrink:
            lower, upper, _ = gap_box(self.obj, t, self.obj.gradient(t), lower, upper)
        narrower = np.any(upper - lower < 0.8 * (S.upper - S.lower))
        if narrower or cap_now != S.rho_cap:
            self.S = _Set.build(
                self.obj, self.variant, self.step_fraction, lower, upper, cap_now, t, S.L
            )
            self.stepper = _SetStepper(self.obj, self.S, self.accelerate)
            self.restarts += 1


def _diagnostics(
    obj: Objective,
    variant: str,
    drive: _Driver,
    S0: _Set,
    rounds: int,
    rho_hi: float,
    shrink: bool,
    accelerate: bool,
) -> dict[str, Any]:
    """The bounds, steps and sets of a finished run."""
    S, stepper = drive.S, drive.stepper
    set_name = "box" if variant == "paper" else "optimum box"
    if S0.a is not None:
        set_name += " ∩ {rho <= rho_bar}"
    if variant == "local":
        set_name += ", each step in a trust box around the iterate"
    elif shrink:
        set_name += ", shrunk around the iterate"
    diag: dict[str, Any] = {
        "variant": variant,
        "curvature_bound": stepper.L,
        "step": stepper.eta,
        "initial_curvature_bound": S0.L,
        "initial_step": S0.eta,
        "set": set_name,
        "rho_bar": drive.rho_bar,
        "set_utilization": S.cb["rho"],
        "initial_set_utilization": S0.cb["rho"],
        "upper_utilization": rho_hi,
        "restarts": drive.restarts,
        "shrink": bool(shrink) and variant != "local",
        "accelerate": bool(accelerate),
    }
    if variant == "local":
        diag["largest_curvature_bound"] = stepper.L_max
    if variant != "paper":
        diag["refine_rounds"] = rounds
        diag["metric"] = "Jacobi: diagonal of -Hess U bounded over the set"
    return diag


def _paper_guarantee(
    obj: Objective, t0: np.ndarray, L_box: float, tol: float, step_fraction: float
) -> dict[str, float]:
    """``strong_concavity`` and ``iteration_bound`` over the (stable) token box."""
    sc = obj.scenario
    lo, hi = sc.min_tokens, sc.max_tokens
    mu = float(np.min(obj.pw * np.abs(sc.accuracy.d2(hi))))
    U0 = obj.value(t0)
    gap0 = frank_wolfe_gap(obj.gradient(t0), t0, lo, hi)
    # |U| along the ascent stays >= the smaller of |U0| and |upper bound| when
    # both have the same sign; otherwise no relative guarantee is stated.
    ub = U0 + gap0
    scale_min = min(abs(U0), abs(ub)) if U0 * ub > 0 else 0.0
    eps = tol * max(scale_min, 1e-12) if scale_min > 0 else 0.0
    bound = (
        _iteration_bound(L_box, mu, gap0, eps, float(np.linalg.norm(hi - lo)))
        if step_fraction == 1
        else np.inf
    )
    return {"strong_concavity": mu, "iteration_bound": bound}
