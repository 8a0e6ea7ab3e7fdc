"""Projected fixed-point iteration on the first-order conditions, with a computed contraction bound.

At the optimum every type equates its marginal accuracy with its marginal
latency cost: ``w_i A_i'(t_i) = gamma b_i D_i(t)`` (or sits at a bound), so
``t* = Proj(phi(t*))`` with

    phi_i(t) = (A_i')^{-1}( gamma b_i D_i(t) / w_i ),
    D_i(t) = 1 + X (1+k_i) s_i + Y,   X = lam/(1-rho),  Y = lam^2 m2 / (2 (1-rho)^2).

The iteration ``t <- Proj_B(phi(t))`` runs on a box ``B = [l, u]`` inside the
token box that is proven to contain ``t*`` and whose upper corner is stable
(:func:`~cvxalloc.solvers._iterate.optimum_box`; round 0 is the token box
itself), so every iterate is stable and ``t*`` is a fixed point of the
iteration (``Proj_B o Proj_box = Proj_B``).

Contraction bound. For ``x, y`` in ``B``,
``|phi_i(x) - phi_i(y)| <= c_i |D_i(x) - D_i(y)|`` with
``c_i = gamma b_i / (w_i |A_i''(u_i)|)`` (the derivative of
``(A_i')^{-1}`` is ``1/A_i''``, and ``|A''|`` decreases in ``t``; ``c_i = 0``
where ``l_i = u_i``). ``D_i`` grows in every coordinate, with

    dD_i/dt_j = X (1+k_i) b_i [i = j] + (X^2 (1+k_i) s_i + X^2 (1+k_j) s_j + 2 X Y) p_j b_j,

largest at ``u``. With ``beta_i = b_i c_i`` and everything evaluated at ``u``,
the Lipschitz constant of ``Proj_B o phi`` (clipping is coordinate-wise
1-Lipschitz) is at most

* in the service-time max-norm ``|x|_b = max_i b_i |x_i|``:
  ``L_inf = max_i beta_i (X (1+k_i) + X^2 (1+k_i) s_i + X^2 E + 2 X Y)``,
  ``E = sum_j p_j (1+k_j) s_j``;
* in the mixture 1-norm ``|x|_pb = sum_i p_i b_i |x_i|``:
  ``L_1 = max_j [beta_j X (1+k_j) + X^2 S + (X^2 (1+k_j) s_j + 2 X Y) C]``,
  ``C = sum_i p_i beta_i``, ``S = sum_i p_i beta_i (1+k_i) s_i``.

The smaller one is the reported ``contraction_bound``, in its norm. When it is
below 1 the iteration contracts: every step is at most ``L`` times the
previous one in that norm, and the measured rate (the largest ratio of
consecutive steps) is reported. When no box with a stable upper corner and a
bound below 1 is found, the guarantee does not hold: by default the solver
hands over to the projected gradient in its default variant
(:func:`~cvxalloc.solvers.gradient.solve_gradient`, ``variant="local"``:
diagonally scaled, curvature bounded over a trust box around each iterate),
says so in ``message`` and ``diagnostics["handed_over"]``, and names it in
``result.handed_over_to`` (``result.method`` stays ``"fixed-point"``); with
``fallback=None`` it iterates anyway, each step projected onto ``B`` and the
proven utilization cap, without a guarantee.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _options as _opt
from ..objective import Objective
from ..result import Result
from ._iterate import (
    Loop,
    check_options,
    loop_message,
    marginal_bounds,
    optimum_box,
    project,
    raw_map,
    require_monotone,
    run,
    utilization_cap,
    utilization_halfspace,
    warm_tokens,
)

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["solve_fixed_point", "contraction_bound", "fixed_point_map"]

#: Norms of the contraction bound.
NORMS = {
    "service-time max-norm": "max_i b_i |x_i|",
    "mixture 1-norm": "sum_i p_i b_i |x_i|",
}


def fixed_point_map(
    obj: Objective, t: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> np.ndarray:
    """``Proj_[lower, upper](phi(t))`` (``lower`` where ``t`` is unstable)."""
    return np.clip(raw_map(obj, t), lower, upper)


def contraction_bound(obj: Objective, lower: np.ndarray, upper: np.ndarray) -> dict[str, Any]:
    """Lipschitz bound of ``Proj_[lower, upper] o phi`` over ``[lower, upper]``.

    Returns
    -------
    dict
        ``bound`` (the smaller of the two), ``norm`` (its name), ``bound_max_norm``,
        ``bound_one_norm``, ``upper_utilization``. ``inf`` when ``upper`` is
        unstable.
    """
    sc = obj.scenario
    gamma, lam = sc.latency_weight, sc.arrival_rate
    rho_u = sc.utilization(upper)
    out: dict[str, Any] = {"upper_utilization": rho_u}
    if gamma == 0 or lam == 0:
        # phi is constant (+inf when gamma = 0, D = 1 when lam = 0)
        out.update(bound=0.0, norm="service-time max-norm", bound_max_norm=0.0, bound_one_norm=0.0)
        return out
    if rho_u >= 1:
        out.update(
            bound=np.inf, norm="service-time max-norm", bound_max_norm=np.inf, bound_one_norm=np.inf
        )
        return out
    mb = marginal_bounds(obj, upper, 1.0)
    # B = 2 dW/dm2, H11 = d2W/dm1^2, 2 H12 = dB/dm1 (P-K: X, 2XY and X^2)
    X, H11, H12x2, s = float(mb["B"]), float(mb["H11"]), 2.0 * float(mb["H12"]), mb["s"]
    p, b, w, k1 = sc.probability, sc.per_token, sc.weight, obj.latency.k1
    curv = np.abs(sc.accuracy.d2(upper))
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(upper > lower, gamma * b / (w * curv), 0.0)
    beta = b * c
    with np.errstate(invalid="ignore"):
        E = float(p @ (k1 * s))
        L_max = float(np.max(beta * (X * k1 + H12x2 * k1 * s + H12x2 * E + H11)))
        C = float(p @ beta)
        S = float(p @ (beta * k1 * s))
        L_one = float(np.max(beta * X * k1 + H12x2 * S + (H12x2 * k1 * s + H11) * C))
    L_max = L_max if np.isfinite(L_max) else np.inf
    L_one = L_one if np.isfinite(L_one) else np.inf
    if L_one < L_max:
        out.update(bound=L_one, norm="mixture 1-norm")
    else:
        out.update(bound=L_max, norm="service-time max-norm")
    out.update(bound_max_norm=L_max, bound_one_norm=L_one)
    return out


def _norm_function(sc: Scenario, name: str):
    pb = sc.probability * sc.per_token
    if name == "mixture 1-norm":
        return lambda x: float(pb @ np.abs(x))
    return lambda x: float(np.max(sc.per_token * np.abs(x)))


def solve_fixed_point(
    scenario: Scenario,
    *,
    tol: float = 1e-9,
    max_iter: int = 10_000,
    warm_start=None,
    refine_rounds: int = 100,
    fallback: str | None = "gradient",
) -> Result:
    """Projected fixed-point iteration ``t <- Proj_B(phi(t))`` with a contraction bound.

    Parameters
    ----------
    scenario : Scenario
    tol : float
        Stop when the Frank-Wolfe gap is ``<= tol * |U|`` (default 1e-9).
    max_iter : int
        Iterations at most (then status ``iteration_limit``, with the gap reached).
    warm_start : array_like or Result, optional
        Start from these tokens (clipped into ``B``); default the midpoint of ``B``.
    refine_rounds : int
        Interval rounds allowed to find a box ``B`` with a stable upper corner
        and a contraction bound below 1 (0: the token box only).
    fallback : {"gradient", None}
        Without a guarantee: hand over to the projected gradient (default,
        its ``"local"`` variant), or iterate anyway (None), projected onto ``B`` and
        the utilization cap so that no iterate is unstable.

    Returns
    -------
    Result
        ``diagnostics`` holds ``contraction_bound``, ``norm``, ``guarantee``,
        ``measured_rate`` (largest ratio of consecutive steps in that norm),
        ``asymptotic_rate``, ``refine_rounds``, ``rho_bar``. After a hand-over
        ``method`` is still ``"fixed-point"``, ``handed_over_to`` is
        ``"gradient"`` and ``diagnostics["handed_over"]`` says why.

    Examples
    --------
    >>> import cvxalloc

    The built-in example has unstable maximum budgets and no contracting box, so
    the solver says so and hands over:

    >>> res = cvxalloc.solve(cvxalloc.example_scenario(), method="fixed-point")
    >>> res.diagnostics["guarantee"], res.method, res.handed_over_to, res.status
    (False, 'fixed-point', 'gradient', 'optimal')
    """
    check_options(tol, max_iter)
    fallback = _opt.choice("fallback", fallback, ("gradient", None))
    refine_rounds = _opt.count("refine_rounds", refine_rounds)
    start = time.perf_counter()
    sc = scenario
    obj = Objective(sc)
    require_monotone(obj, "fixed-point")
    hi = sc.max_tokens
    feas = []
    x0 = warm_tokens(sc, warm_start)
    if x0 is not None and sc.utilization(x0) < 1:
        feas.append(x0)
    rho_bar = utilization_cap(obj, feas)
    rho_cap = rho_bar if rho_bar < sc.utilization(hi) else 1.0

    def good(lower: np.ndarray, upper: np.ndarray) -> bool:
        return contraction_bound(obj, lower, upper)["bound"] < 1

    box = optimum_box(obj, rho_cap, refine_rounds, stop=good)
    cb = contraction_bound(obj, box.lower, box.upper)
    guarantee = bool(cb["bound"] < 1)
    diag: dict[str, Any] = {
        "contraction_bound": cb["bound"],
        "norm": cb["norm"],
        "norm_definition": NORMS[cb["norm"]],
        "bound_max_norm": cb["bound_max_norm"],
        "bound_one_norm": cb["bound_one_norm"],
        "guarantee": guarantee,
        "refine_rounds": box.rounds,
        "rho_bar": rho_bar,
        "upper_utilization": cb["upper_utilization"],
    }
    if not guarantee and fallback == "gradient":
        res = _hand_over(sc, cb, box.rounds, diag, tol=tol, max_iter=max_iter, x0=x0)
        res.solver_stats["total_time"] = time.perf_counter() - start
        return res
    loop = _iterate(obj, box, cb, guarantee, rho_cap, x0, tol=tol, max_iter=max_iter)
    upper = box.upper
    rates = _rates(loop.step_norms, _norm_function(sc, cb["norm"])(np.maximum(np.abs(upper), 1.0)))
    diag["measured_rate"] = max(rates) if rates else None
    diag["asymptotic_rate"] = (
        float(np.exp(np.mean(np.log(np.maximum(rates[-5:], 1e-300))))) if rates else None
    )
    diag["rate_samples"] = len(rates)
    if not guarantee:
        diag["handed_over"] = None
    history = dict(loop.history)
    history["step"] = loop.step_norms
    msg = loop_message("fixed point", loop, tol, max_iter)
    msg += f"; contraction bound {cb['bound']:.3g} in the {cb['norm']}" + (
        " (guaranteed)" if guarantee else " (>= 1: no guarantee, iterated anyway)"
    )
    return Result.from_tokens(
        sc,
        loop.tokens,
        method="fixed-point",
        status=loop.status,
        objective=obj,
        iterations=loop.iterations,
        solver_stats={"total_time": time.perf_counter() - start, "loop_time": loop.time},
        diagnostics=diag,
        history=history,
        message=msg,
    )


def _hand_over(
    sc: Scenario,
    cb: dict[str, Any],
    rounds: int,
    diag: dict[str, Any],
    *,
    tol: float,
    max_iter: int,
    x0: np.ndarray | None,
) -> Result:
    """No guarantee: the projected gradient's (local variant) result, saying why."""
    from .gradient import solve_gradient

    why = (
        "no box with a stable upper corner was found"
        if not np.isfinite(cb["bound"])
        else f"contraction bound {cb['bound']:.3g} >= 1"
    )
    res = solve_gradient(sc, tol=tol, max_iter=max_iter, warm_start=x0, variant="local")
    res.method, res.handed_over_to = "fixed-point", "gradient"
    res.diagnostics = {
        **res.diagnostics,
        "handed_over": why,
        "guarantee": False,
        "contraction_bound": cb["bound"],
        "fixed_point": diag,
    }
    res.message = (
        f"fixed-point guarantee does not hold ({why} after {rounds} "
        f"interval rounds); handed over to the projected gradient "
        f"(variant local). " + res.message
    )
    return res


def _iterate(
    obj: Objective,
    box,
    cb: dict[str, Any],
    guarantee: bool,
    rho_cap: float,
    x0: np.ndarray | None,
    *,
    tol: float,
    max_iter: int,
) -> Loop:
    """``t <- Proj_B(phi(t))`` from ``x0`` (default the middle of ``B``), recording step norms.

    Without a guarantee each step is also projected onto the proven utilization
    cap, so that no iterate is unstable.
    """
    sc = obj.scenario
    lower, upper = box.lower, box.upper
    if lam_cap_needed := (not guarantee and sc.arrival_rate > 0 and rho_cap < 1):
        a, cap = utilization_halfspace(sc, rho_cap, lower)
    else:
        a, cap = None, None

    def step(t: np.ndarray, g: np.ndarray) -> np.ndarray:
        nxt = fixed_point_map(obj, t, lower, upper)
        return project(nxt, lower, upper, a, cap) if lam_cap_needed else nxt

    t0 = 0.5 * (lower + upper) if x0 is None else np.clip(x0, lower, upper)
    if lam_cap_needed:
        t0 = project(t0, lower, upper, a, cap)
    nrm = _norm_function(sc, cb["norm"])
    return run(obj, step, t0, tol=tol, max_iter=max_iter, step_norm=nrm)


#: Only steps longer than this fraction of the size of the box corner enter the
#: measured rate: ``phi`` carries rounding of about ``1e-13 / (1 - rho(u))`` of that
#: size (``tau`` times the relative error of ``D``), so shorter steps measure
#: rounding, not the rate; above the floor the ratios are exact to ~1e-9 / (1 - rho(u)).
RATE_FLOOR = 1e-4


def _rates(norms: list[float], size: float) -> list[float]:
    """Ratios of consecutive step norms, where the earlier step is above the rounding floor."""
    out = []
    for k in range(1, len(norms)):
        if norms[k - 1] > RATE_FLOOR * size:
            out.append(norms[k] / norms[k - 1])
    return out
