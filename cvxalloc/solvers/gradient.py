"""Projected gradient ascent with a step below a curvature bound computed from the data.

``t <- Proj_S(t + eta grad U(t))``, ``eta = step_fraction / L`` where ``L`` bounds
the largest eigenvalue of ``-Hess U`` over a convex set ``S`` that holds the
optimum and lies inside the stability region:

* ``S`` is the token box when the maximum budgets are stable and no tighter
  utilization cap is known, otherwise the box intersected with
  ``lam m1(t) <= rho_bar`` (``rho_bar`` from
  :func:`~cvxalloc.solvers._iterate.utilization_cap`); the projection onto it
  is exact (:func:`~cvxalloc.solvers._iterate.project`).
* ``-Hess U = diag(d) + gamma V M_W V^T`` with ``V = [c, e]``,
  ``c_i = p_i b_i``, ``e_i = p_i b_i (1+k_i) s_i``. Over ``S``,
  ``d_i <= p_i w_i |A_i''(lo_i)| + gamma lam (1+k_i) p_i b_i^2 / (1 - rc)``
  (``|A''|`` decreases in ``t``; ``rc`` the largest utilization on ``S``) and
  ``lambda_max(V M_W V^T) <= m11 |c|^2 + m12 (|c| |e| + c.e)`` with
  ``m11 = lam^3 m2 / (1-rc)^3``, ``m12 = lam^2 / (1-rc)^2`` (Weyl's inequality on
  ``m11 c c^T + m12 (c e^T + e c^T)``; every term grows with ``t``, so the
  values at the upper corner bound them).

On a capped set the cap is recomputed from the current utility every
:data:`RESTART_EVERY` iterations, and the set, metric and step are rebuilt
when its slack ``1 - rho_bar`` has grown by a fifth (every rebuilt set holds
``t*`` and the current iterate).

Two variants, both with their own bound:

``variant="paper"`` (default)
    The method as stated: Euclidean steps on ``S``. Its gradient scales with
    ``p_i``, so types with small ``p_i`` move ``p_i / p_max`` times slower;
    with step ``1/L`` and strong concavity ``mu = min_i p_i w_i |A_i''(hi_i)|``
    it provably reaches the tolerance within ``iteration_bound`` iterations
    (reported when ``S`` is the box).
``variant="scaled"``
    Diagonally scaled projected gradient: the metric ``q_i`` is the bound of
    the i-th diagonal entry of ``-Hess U`` over ``S`` (Jacobi scaling), and
    ``S`` is additionally shrunk to the box proven to hold the optimum by
    :func:`~cvxalloc.solvers._iterate.optimum_box`. The step is ``1 / L_q``
    with ``L_q`` the same bound for ``Q^{-1/2} (-Hess U) Q^{-1/2}``, and the
    projection is exact in the metric ``Q``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .. import status as st
from ..certificate import frank_wolfe_gap
from ..objective import Objective
from ..result import Result
from ._iterate import (
    check_options,
    loop_message,
    marginal_bounds,
    optimum_box,
    project,
    run,
    utilization_cap,
    warm_tokens,
)

__all__ = ["solve_gradient", "curvature_bound", "VARIANTS", "RESTART_EVERY"]

#: Names of the variants.
VARIANTS = ("paper", "scaled")

#: On a capped set, iterations between two recomputations of the utilization cap.
RESTART_EVERY = 25


def curvature_bound(
    obj: Objective,
    lower: np.ndarray,
    upper: np.ndarray,
    rho_cap: float,
    q: np.ndarray | None = None,
) -> dict[str, Any]:
    """Bound of ``lambda_max(Q^{-1/2} (-Hess U) Q^{-1/2})`` over the set.

    The set is ``[lower, upper] ∩ {rho <= rho_cap}``.

    Parameters
    ----------
    obj : Objective
    lower, upper : ndarray
        The box (within the token box).
    rho_cap : float
        Utilization cap of the set (1 for none; then ``upper`` must be stable).
    q : ndarray, optional
        Diagonal metric (None: Euclidean).

    Returns
    -------
    dict
        ``L`` (the bound), ``diagonal`` (bound of each diagonal entry of
        ``-Hess U`` over the set, unscaled), ``diagonal_part`` and ``rank2_part``
        (the two terms of ``L``), ``rho`` (largest utilization on the set).
    """
    sc = obj.scenario
    lat = obj.latency
    gamma, lam = sc.latency_weight, sc.arrival_rate
    mb = marginal_bounds(obj, upper, rho_cap)
    rc, s, m2 = float(mb["rho"]), mb["s"], float(mb["m2"])
    p, b = sc.probability, sc.per_token
    d_acc = obj.pw * np.abs(sc.accuracy.d2(lower))
    if gamma == 0 or lam == 0:
        d_lat = np.zeros(sc.n)
        m11 = m12 = 0.0
    else:
        u = 1.0 - rc
        d_lat = gamma * lam * lat.k1 * p * b**2 / u
        m11 = gamma * lam**3 * m2 / u**3
        m12 = gamma * lam**2 / u**2
    c = p * b
    e = c * lat.k1 * s
    diag = d_acc + d_lat + m11 * c**2 + 2 * m12 * c * e
    if q is not None:
        r = 1.0 / np.sqrt(q)
        c, e = c * r, e * r
        d_part = float(np.max((d_acc + d_lat) / q))
    else:
        d_part = float(np.max(d_acc + d_lat))
    nc, ne = float(np.linalg.norm(c)), float(np.linalg.norm(e))
    r2 = m11 * nc**2 + m12 * (nc * ne + float(c @ e))
    return {"L": d_part + r2, "diagonal": diag, "diagonal_part": d_part, "rank2_part": r2,
            "rho": rc}


def _iteration_bound(L: float, mu: float, gap0: float, eps: float, diam2: float) -> float:
    """Iterations after which the Frank-Wolfe gap is provably ``<= eps`` (step ``1/L``, S = box).

    With step ``1/L``: ``U(t+) - U(t) >= (L/2)|t+ - t|^2`` and the projection's
    optimality give ``gap(t+) <= 2 L |t+ - t| diam <= 2 diam sqrt(2 L delta)``
    with ``delta = U* - U(t)``; strong concavity gives
    ``delta_k <= (1 - mu/L)^k delta_0`` and ``delta_0 <= gap_0``.
    """
    if eps <= 0 or mu <= 0 or not np.isfinite(L):
        return np.inf
    need = eps**2 / (8 * L * diam2)
    if gap0 <= need:
        return 1.0
    rate = mu / L
    if rate >= 1:
        return 2.0
    return float(np.ceil(np.log(need / gap0) / np.log1p(-rate))) + 1


def solve_gradient(
    scenario,
    *,
    tol: float = 1e-9,
    max_iter: int = 10_000,
    warm_start=None,
    variant: str = "paper",
    step_fraction: float = 1.0,
    refine_rounds: int = 50,
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
    variant : {"paper", "scaled"}
        ``"paper"``: Euclidean steps on the box (capped where needed).
        ``"scaled"``: diagonally (Jacobi) scaled steps on the proven optimum box.
    step_fraction : float
        ``eta = step_fraction / L``, in ``(0, 1]`` (1 gives the guarantees above).
    refine_rounds : int
        Interval rounds of the optimum box (``"scaled"`` only).

    Returns
    -------
    Result
        ``diagnostics`` holds ``curvature_bound``, ``step``, ``set``, ``rho_bar``,
        ``upper_utilization`` and, for the paper variant on the box,
        ``strong_concavity`` and ``iteration_bound``.

    Examples
    --------
    >>> import cvxalloc
    >>> res = cvxalloc.solve(cvxalloc.example_scenario(), method="gradient", variant="scaled")
    >>> res.status, res.certificate.relative_gap <= 1e-9
    ('optimal', True)
    """
    check_options(tol, max_iter)
    if variant not in VARIANTS:
        raise ValueError(f"option variant must be one of {', '.join(VARIANTS)} (got {variant!r})")
    if not (0 < step_fraction <= 1):
        raise ValueError(f"option step_fraction must be in (0, 1] (got {step_fraction!r})")
    start = time.perf_counter()
    sc = scenario
    obj = Objective(sc)
    lo, hi = sc.min_tokens, sc.max_tokens
    lam = sc.arrival_rate
    feas = []
    x0 = warm_tokens(sc, warm_start)
    if x0 is not None and sc.utilization(x0) < 1:
        feas.append(x0)
    rho_bar = utilization_cap(obj, feas)
    rho_hi = sc.utilization(hi)

    def setup(rho_cap: float, keep: np.ndarray | None) -> dict[str, Any]:
        """The set S, metric, curvature bound and step for a utilization cap."""
        if variant == "scaled":
            box = optimum_box(obj, rho_cap, refine_rounds)
            width = hi - lo
            lower = np.maximum(lo, box.lower - 1e-7 * width)
            upper = np.minimum(hi, box.upper + 1e-7 * width)
            if keep is not None:  # the current iterate stays inside (monotone ascent)
                lower, upper = np.minimum(lower, keep), np.maximum(upper, keep)
            rounds = box.rounds
        else:
            lower, upper, rounds = lo, hi, 0
        if lam > 0 and rho_cap < 1:
            a = sc.probability * sc.per_token
            cap = max(rho_cap / lam - float(sc.probability @ sc.base), float(a @ lower))
        else:
            a, cap = None, None
        q = None
        if variant == "scaled":
            q = curvature_bound(obj, lower, upper, rho_cap)["diagonal"]
            q = np.where(q > 0, q, 1.0)
        cb = curvature_bound(obj, lower, upper, rho_cap, q)
        L = cb["L"]
        eta = step_fraction / L if L > 0 else np.inf
        return {"lower": lower, "upper": upper, "a": a, "cap": cap, "q": q, "cb": cb, "L": L,
                "eta": eta, "rounds": rounds, "rho_cap": rho_cap}

    def stepper(S: dict[str, Any]):
        lower, upper, a, cap, q, eta = (S[k] for k in ("lower", "upper", "a", "cap", "q",
                                                       "eta"))
        if np.isfinite(eta):
            qinv = 1.0 if q is None else 1.0 / q

            def step(t: np.ndarray, g: np.ndarray) -> np.ndarray:
                return project(t + eta * qinv * g, lower, upper, a, cap, q)
        else:  # no curvature: U is linear, one step to the best vertex of S
            def step(t: np.ndarray, g: np.ndarray) -> np.ndarray:
                return project(np.where(g > 0, upper, np.where(g < 0, lower, t)), lower,
                               upper, a, cap, q)
        return step

    # the cap is used where the box is unstable or where it is tighter
    rho_cap = rho_bar if (lam > 0 and rho_bar < rho_hi) else 1.0
    S = setup(rho_cap, None)
    S0 = S
    if x0 is None:
        x0 = 0.5 * (S["lower"] + S["upper"])
    t0 = project(np.clip(x0, S["lower"], S["upper"]), S["lower"], S["upper"], S["a"],
                 S["cap"], S["q"])

    # Restarts: on a capped set, every RESTART_EVERY iterations the cap is recomputed
    # from the current (better) utility; when its slack 1 - rho_bar has grown by half,
    # S, the metric and the step are rebuilt. Every set still holds t* and the current
    # iterate, so the ascent and the guarantees carry over.
    capped = rho_cap < 1
    t = t0
    hist: dict[str, list[float]] = {"gap": [], "objective": []}
    iters = 0
    restarts = 0
    loop_time = 0.0
    while True:
        budget = max_iter - iters
        chunk = min(budget, RESTART_EVERY) if capped else budget
        loop = run(obj, stepper(S), t, tol=tol, max_iter=chunk)
        skip = 1 if hist["gap"] else 0
        hist["gap"] += loop.history["gap"][skip:]
        hist["objective"] += loop.history["objective"][skip:]
        iters += loop.iterations
        loop_time += loop.time
        t = loop.tokens
        if loop.status != st.ITERATION_LIMIT or iters >= max_iter:
            break
        new_bar = utilization_cap(obj, [t])
        if new_bar < rho_bar:
            rho_bar = new_bar
        if lam > 0 and (1 - rho_bar) >= 1.2 * (1 - S["rho_cap"]) and rho_bar < rho_hi:
            S = setup(rho_bar, t)
            t = project(t, S["lower"], S["upper"], S["a"], S["cap"], S["q"])
            restarts += 1
    loop.iterations = iters
    loop.history = hist
    loop.time = loop_time
    L, eta, cb, rounds, rho_cap = S["L"], S["eta"], S["cb"], S["rounds"], S["rho_cap"]
    name = "projected gradient" + (" (diagonally scaled)" if variant == "scaled" else "")
    set_name = "box" if variant == "paper" else "optimum box"
    if rho_cap < 1:
        set_name += " ∩ {rho <= rho_bar}"
    diag: dict[str, Any] = {
        "variant": variant,
        "curvature_bound": L,
        "step": eta,
        "set": set_name,
        "rho_bar": rho_bar,
        "set_utilization": cb["rho"],
        "upper_utilization": rho_hi,
        "restarts": restarts,
        "initial_curvature_bound": S0["L"],
    }
    if variant == "scaled":
        diag["refine_rounds"] = rounds
        diag["metric"] = "Jacobi: diagonal of -Hess U bounded over the set"
    if variant == "paper" and not capped:
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
            _iteration_bound(L, mu, gap0, eps, float(np.sum((hi - lo) ** 2)))
            if step_fraction == 1 else np.inf
        )
    return Result.from_tokens(
        sc, loop.tokens, method="gradient", status=loop.status, objective=obj,
        iterations=loop.iterations,
        solver_stats={"total_time": time.perf_counter() - start, "loop_time": loop.time},
        diagnostics=diag, history=loop.history,
        message=loop_message(name, loop, tol, max_iter)
        + f"; step {eta:.3e} = {step_fraction:g}/L, curvature bound L {L:.3e} on the {set_name}",
    )
