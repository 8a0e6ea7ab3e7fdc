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
from typing import Any

import numpy as np

from .. import _options as _opt
from .. import status as st
from ..certificate import frank_wolfe_gap
from ..errors import OptionError
from ..objective import Objective
from ..result import Result
from ._iterate import (
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
    scenario,
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
    lo, hi = sc.min_tokens, sc.max_tokens
    lam = sc.arrival_rate
    feas = []
    x0 = warm_tokens(sc, warm_start)
    if x0 is not None and sc.utilization(x0) < 1:
        feas.append(x0)
    rho_bar = utilization_cap(obj, feas)
    rho_hi = sc.utilization(hi)

    def optimum_set(rho_cap: float) -> tuple[np.ndarray, np.ndarray, int]:
        """The first set's box: the token box (paper) or the proven optimum box (scaled)."""
        if variant == "paper":
            return lo, hi, 0
        box = optimum_box(obj, rho_cap, refine_rounds)
        width = hi - lo
        return (
            np.maximum(lo, box.lower - 1e-7 * width),
            np.minimum(hi, box.upper + 1e-7 * width),
            box.rounds,
        )

    def setup(
        lower: np.ndarray,
        upper: np.ndarray,
        rho_cap: float,
        keep: np.ndarray | None,
        L_outer: float = np.inf,
    ) -> dict[str, Any]:
        """The set ``[lower, upper] ∩ {rho <= rho_cap}``, its metric, bound and step.

        ``L_outer``: a Euclidean bound valid on a set containing this one (the
        paper variant keeps the smaller, so its bound never grows).
        """
        if keep is not None:  # the current iterate stays inside (monotone ascent)
            lower, upper = np.minimum(lower, keep), np.maximum(upper, keep)
        if lam > 0 and rho_cap < sc.utilization(upper):
            a, cap = utilization_halfspace(sc, rho_cap, lower if keep is None else keep)
        else:  # the cap does not cut the box: a plain (stable) box
            a, cap, rho_cap = None, None, 1.0
        cb = curvature_bound(obj, lower, upper, rho_cap, jacobi=variant != "paper")
        q = cb["metric"]
        L = cb["L"] if q is not None else min(cb["L"], L_outer)
        eta = step_fraction / L if L > 0 else np.inf
        return {
            "lower": lower,
            "upper": upper,
            "a": a,
            "cap": cap,
            "q": q,
            "cb": cb,
            "L": L,
            "eta": eta,
            "rho_cap": rho_cap,
        }

    def stepper(S: dict[str, Any]):
        lower, upper, a, cap, q, eta = (S[k] for k in ("lower", "upper", "a", "cap", "q", "eta"))
        if np.isfinite(eta):
            qinv = 1.0 if q is None else 1.0 / q
            mom = Momentum(obj, accelerate)

            def proj(x: np.ndarray) -> np.ndarray:
                return project(x, lower, upper, a, cap, q)

            def advance(x: np.ndarray, g: np.ndarray) -> np.ndarray:
                return proj(x + eta * qinv * g)

            def step(t: np.ndarray, g: np.ndarray) -> np.ndarray:
                return mom.pick(t, advance(t, g), advance, proj)
        else:  # no curvature: U is linear, one step to the best vertex of S

            def step(t: np.ndarray, g: np.ndarray) -> np.ndarray:
                return project(
                    np.where(g > 0, upper, np.where(g < 0, lower, t)), lower, upper, a, cap, q
                )

        return step

    def local_stepper(S: dict[str, Any]):
        """Jacobi-scaled step with the curvature bounded over a trust box around ``t``."""
        lower, upper = S["lower"], S["upper"]
        cap_set = S["rho_cap"]
        radius = LOCAL_RADIUS * (upper - lower)
        floor_r = 1e-12 * (hi - lo)
        info = local_info
        mom = Momentum(obj, accelerate)

        def step(t: np.ndarray, g: np.ndarray) -> np.ndarray:
            nonlocal radius
            lt, ut = np.maximum(lower, t - radius), np.minimum(upper, t + radius)
            rho_t = sc.utilization(t)
            cap_t = min(cap_set, rho_t + LOCAL_CAP * (1 - rho_t))
            if lam > 0 and cap_t < sc.utilization(ut):
                a, cap = utilization_halfspace(sc, cap_t, t)
            else:
                a, cap, cap_t = None, None, 1.0
            cb = curvature_bound(obj, lt, ut, cap_t, jacobi=True)
            q, L = cb["metric"], cb["L"]
            if L > 0:
                eta = step_fraction / L

                def proj(x: np.ndarray) -> np.ndarray:
                    return project(x, lt, ut, a, cap, q)

                def advance(x: np.ndarray, gx: np.ndarray) -> np.ndarray:
                    return proj(x + eta * gx / q)

                # the FISTA candidate stays inside the same trust box
                t_new = mom.pick(t, advance(t, g), advance, proj)
            else:  # U is linear on the trust box: its best vertex
                eta = np.inf
                t_new = project(np.where(g > 0, ut, np.where(g < 0, lt, t)), lt, ut, a, cap, q)
            info["L"], info["eta"] = L, eta
            info["L_max"] = max(info["L_max"], L)
            move = np.abs(t_new - t)
            hit = (move >= radius * (1 - 1e-9)) & (t_new > lower) & (t_new < upper)
            radius = np.where(hit, 2 * radius, np.maximum(2 * move, 0.5 * radius))
            radius = np.clip(radius, floor_r, upper - lower)
            return t_new

        return step

    local_info: dict[str, float] = {"L": np.nan, "eta": np.nan, "L_max": 0.0}

    # the cap is used where the box is unstable or where it is tighter
    rho_cap = rho_bar if (lam > 0 and rho_bar < rho_hi) else 1.0
    lower0, upper0, rounds = optimum_set(rho_cap)
    stable_box = variant == "paper" and rho_hi < 1
    L_box = curvature_bound(obj, lo, hi, 1.0)["L"] if stable_box else np.inf
    S = setup(lower0, upper0, rho_cap, None, L_box)
    S0 = S
    if x0 is None:
        x0 = 0.5 * (S["lower"] + S["upper"])
    t0 = project(
        np.clip(x0, S["lower"], S["upper"]), S["lower"], S["upper"], S["a"], S["cap"], S["q"]
    )

    # Checkpoints every CHECK_EVERY iterations: the set is intersected with the box
    # around the iterate proven to hold t* (gap_box), and, while the utilization cap
    # cuts the set, the cap is recomputed from the current (better) utility every
    # CAP_EVERY iterations. When the set changed, its metric, bound and step are
    # rebuilt. Every set holds t* and the current iterate, so the ascent and the
    # guarantees carry over.
    t = t0
    hist: dict[str, list[float]] = {"gap": [], "objective": []}
    iters = 0
    restarts = 0
    loop_time = 0.0
    since_cap = 0
    step_fn = local_stepper(S) if variant == "local" else stepper(S)  # keeps its momentum
    while True:
        budget = max_iter - iters
        if variant == "local":  # one run: the trust box adapts inside the step
            loop = run(obj, step_fn, t, tol=tol, max_iter=budget)
        else:
            checking = shrink or S["a"] is not None
            chunk = min(budget, CHECK_EVERY) if checking else budget
            loop = run(obj, step_fn, t, tol=tol, max_iter=chunk)
        skip = 1 if hist["gap"] else 0
        hist["gap"] += loop.history["gap"][skip:]
        hist["objective"] += loop.history["objective"][skip:]
        iters += loop.iterations
        loop_time += loop.time
        t = loop.tokens
        if loop.status != st.ITERATION_LIMIT or iters >= max_iter:
            break
        lower, upper, cap_now = S["lower"], S["upper"], S["rho_cap"]
        since_cap += loop.iterations
        if S["a"] is not None and since_cap >= CAP_EVERY:
            since_cap = 0
            rho_bar = min(rho_bar, utilization_cap(obj, [t]))
            if (1 - rho_bar) >= 1.2 * (1 - cap_now):
                cap_now = rho_bar
        if shrink:
            lower, upper, _ = gap_box(obj, t, obj.gradient(t), lower, upper)
        old_w = S["upper"] - S["lower"]
        narrower = np.any(upper - lower < 0.8 * old_w)
        if narrower or cap_now != S["rho_cap"]:
            S = setup(lower, upper, cap_now, t, S["L"])
            step_fn = stepper(S)  # a new set and step: the momentum restarts
            restarts += 1
    loop.iterations = iters
    loop.history = hist
    loop.time = loop_time
    L, eta, cb, rho_cap = S["L"], S["eta"], S["cb"], S["rho_cap"]
    name = {
        "paper": "projected gradient",
        "scaled": "projected gradient (diagonally scaled)",
        "local": "projected gradient (diagonally scaled, local curvature bounds)",
    }[variant]
    set_name = "box" if variant == "paper" else "optimum box"
    if S0["a"] is not None:
        set_name += " ∩ {rho <= rho_bar}"
    if variant == "local":
        L, eta = local_info["L"], local_info["eta"]
        set_name += ", each step in a trust box around the iterate"
    elif shrink:
        set_name += ", shrunk around the iterate"
    diag: dict[str, Any] = {
        "variant": variant,
        "curvature_bound": L,
        "step": eta,
        "initial_curvature_bound": S0["L"],
        "initial_step": S0["eta"],
        "set": set_name,
        "rho_bar": rho_bar,
        "set_utilization": cb["rho"],
        "initial_set_utilization": S0["cb"]["rho"],
        "upper_utilization": rho_hi,
        "restarts": restarts,
        "shrink": bool(shrink) and variant != "local",
        "accelerate": bool(accelerate),
    }
    if variant == "local":
        diag["largest_curvature_bound"] = local_info["L_max"]
    if variant != "paper":
        diag["refine_rounds"] = rounds
        diag["metric"] = "Jacobi: diagonal of -Hess U bounded over the set"
    if stable_box:
        # guarantee over the token box (stable): mu, L, diameter of the box
        mu = float(np.min(obj.pw * np.abs(sc.accuracy.d2(hi))))
        g0 = obj.gradient(t0)
        U0 = obj.value(t0)
        gap0 = frank_wolfe_gap(g0, t0, lo, hi)
        # |U| along the ascent stays >= the smaller of |U0| and |upper bound| when
        # both have the same sign; otherwise no relative guarantee is stated.
        ub = U0 + gap0
        scale_min = min(abs(U0), abs(ub)) if U0 * ub > 0 else 0.0
        eps = tol * max(scale_min, 1e-12) if scale_min > 0 else 0.0
        diag["strong_concavity"] = mu
        diag["iteration_bound"] = (
            _iteration_bound(L_box, mu, gap0, eps, float(np.linalg.norm(hi - lo)))
            if step_fraction == 1
            else np.inf
        )
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
        message=loop_message(name, loop, tol, max_iter)
        + f"; step {eta:.3e} = {step_fraction:g}/L, curvature bound L {L:.3e} on the {set_name}"
        + (f" after {restarts} restarts (first L {S0['L']:.3e})" if restarts else ""),
    )
