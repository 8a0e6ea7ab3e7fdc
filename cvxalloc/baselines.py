"""Baselines beside the optimum: the best uniform budget, the minimum and maximum budgets.

Layer: solvers. This is the one home of the uniform baseline: ``cvxalloc
solve`` (its report and ``--json``), the sweeps, the figures and the
controller's uniform strategy all call :func:`best_uniform`.

Each baseline is evaluated and certified exactly as a solver's answer, so the
numbers are comparable, and it carries its own certificate. Its status says
what is proven about it (:mod:`cvxalloc.status`): ``"optimal"`` only where
that certificate is within :data:`OPTIMAL_RTOL` of ``|U|`` (e.g. one task
type), ``"feasible"`` otherwise, and ``"infeasible"`` where it breaks one of
the scenario's constraints (named in ``diagnostics["violated"]``): such a
baseline is no allocation the operator could run, so no gain over it is
claimed.

The best uniform budget gives every type the same token count ``T`` (clipped
into each type's bounds, the lower ones raised by ``min_accuracy``) and meets
every constraint. Every scalar constraint is increasing in ``T``, so the
feasible budgets are ``T <= T_max`` (found by bisection); capping each upper
bound at ``T_max`` leaves ``clip(T)`` unchanged below it. On that box ``T`` is
found exactly: between consecutive bounds the map ``T -> clip(T, lo, hi)`` is
affine, so ``f(T) = U(clip(T))`` is concave on each piece; its maximum on each
piece is found by bisection on ``f'`` to machine precision, and the best piece
wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import status as st
from ._bisect import bisect
from .constraints import check_feasible, constraints_of, slacks_of
from .objective import Objective
from .result import Result
from .solve import fixed_service_scv
from .solvers.constraint_rows import constraint_report

if TYPE_CHECKING:
    from .scenario import Scenario

__all__ = [
    "best_uniform",
    "minimum_budgets",
    "maximum_budgets",
    "baselines",
    "baseline_dict",
    "OPTIMAL_RTOL",
]

#: A baseline is called optimal only when its certificate is within this fraction of ``|U|``
#: (the default method's ``tol``).
OPTIMAL_RTOL = 1e-9


def _violated(scenario: Scenario, tokens: np.ndarray) -> list[str]:
    """Names of the constraints ``tokens`` breaks (``min_accuracy[task]`` per task)."""
    if constraints_of(scenario) is None:
        return []
    report = constraint_report(scenario, tokens)
    return [name for name, entry in report.items() if entry["slack"] < 0]


def _result(scenario: Scenario, t, name, obj, message="", **diagnostics) -> Result:
    """A baseline's result: evaluated, certified, its status what the certificate proves."""
    res = Result.from_tokens(
        scenario,
        t,
        method=name,
        status=st.FEASIBLE,
        objective=obj,
        message=message,
        diagnostics=diagnostics,
    )
    broken = _violated(scenario, res.tokens)
    if broken:
        res.status = st.INFEASIBLE
        res.diagnostics["violated"] = broken
        res.message = "; ".join(filter(None, [message, "breaks " + ", ".join(broken)]))
    elif res.certificate.within(OPTIMAL_RTOL):
        res.status = st.OPTIMAL
    return res


def _best_on_box(sc: Scenario, obj: Objective) -> float:
    """The best ``T`` for ``U(clip(T, lo, hi))`` over the scenario's box (see the module)."""
    lo, hi = sc.min_tokens, sc.max_tokens
    lam = sc.arrival_rate
    pb = sc.probability * sc.per_token
    knots = np.unique(np.concatenate([lo, hi]))

    def clip(T: float) -> np.ndarray:
        return np.clip(T, lo, hi)

    def dfdT(T: float, free: np.ndarray) -> float:
        return float(obj.gradient(clip(T))[free].sum())

    best_T, best_U = float(knots[0]), obj.value(clip(knots[0]))
    for L, R in zip(knots[:-1], knots[1:]):
        mid = 0.5 * (L + R)
        free = (lo < mid) & (hi > mid)
        rho_L = sc.utilization(clip(L))
        if rho_L >= 1:
            break
        slope = lam * float(pb[free].sum()) / sc.capacity  # d rho / dT (per replica, per c_max)
        R_eff = R
        open_right = False
        if slope > 0 and rho_L + slope * (R - L) >= 1:
            R_eff = L + (1 - rho_L) / slope
            open_right = True
        if dfdT(L, free) <= 0:
            T = L
        elif not open_right and dfdT(R_eff, free) >= 0:
            T = R_eff
        else:
            T, _ = bisect(lambda m, free=free: dfdT(m, free) > 0, L, R_eff)
        U = obj.value(clip(T))
        if U > best_U:
            best_T, best_U = float(T), U
        if open_right:
            break
    return best_T


def _feasible_box(sc: Scenario) -> Any:
    """The scenario on the box of uniform budgets that meet its constraints (no constraints
    left: ``[lo', min(hi, max(lo', T_max))]``)."""
    cons = constraints_of(sc)
    if cons is None:
        return sc
    lo2 = check_feasible(sc)
    hi = np.array(sc.max_tokens, dtype=float)
    terms = cons.terms()

    def ok(T: float) -> bool:
        return bool(np.all(slacks_of(sc, terms, np.clip(T, lo2, hi)) >= 0))

    left, right = float(np.min(lo2)), float(np.max(hi))
    if terms and not ok(right):
        left, _ = bisect(ok, left, right)  # the largest feasible uniform budget
        hi = np.maximum(lo2, np.minimum(hi, left))
    return sc.with_(min_tokens=lo2, max_tokens=hi, levels=[None] * sc.n, constraints=None)


def best_uniform(scenario: Scenario, objective: Objective | None = None) -> Result:
    """The best single budget ``T`` for every type that meets the scenario's constraints.

    ``T`` is clipped into each type's ``[lo'_i, hi_i]`` (``lo'`` raised by
    min_accuracy) and found exactly (see the module docstring). Cost: O(N) per
    evaluation times the number of distinct bounds (pieces); intended for N up
    to about 10^4.

    Returns
    -------
    Result
        ``method="uniform"``, ``diagnostics["budget"]`` the budget ``T``;
        evaluated and certified on ``scenario`` (its constraints included).

    Raises
    ------
    InfeasibleError
        If no allocation meets the constraints.

    Examples
    --------
    >>> import cvxalloc
    >>> from cvxalloc.baselines import best_uniform
    >>> uni = best_uniform(cvxalloc.example_scenario())
    >>> uni.status, round(uni.diagnostics["budget"], 1)
    ('feasible', 1970.8)
    """
    sc = fixed_service_scv(scenario)  # a batching "auto": the model the optimum fixes
    box = _feasible_box(sc)
    obj = objective or Objective(sc)
    T = _best_on_box(box, obj if box is sc else Objective(box))
    return _result(
        sc,
        np.clip(T, box.min_tokens, box.max_tokens),
        "uniform",
        obj,
        message=f"best uniform budget T = {T:.6g} tokens",
        budget=T,
    )


def minimum_budgets(scenario: Scenario, objective: Objective | None = None) -> Result:
    """Every type at its minimum budget (``"infeasible"`` where that breaks a constraint)."""
    return _result(scenario, scenario.min_tokens.copy(), "minimum", objective)


def maximum_budgets(scenario: Scenario, objective: Objective | None = None) -> Result | None:
    """Every type at its maximum budget, or None where that is unstable."""
    if scenario.utilization(scenario.max_tokens) >= 1:
        return None
    return _result(scenario, scenario.max_tokens.copy(), "maximum", objective)


def baselines(scenario: Scenario) -> dict[str, Result | None]:
    """``{"uniform": ..., "minimum": ..., "maximum": ...}`` (maximum None if unstable).

    Evaluated on ``scenario``'s model; a batching ``service_scv = "auto"`` is fixed
    at its optimum's own first (pass the optimum's ``result.scenario`` to skip the solve).
    """
    scenario = fixed_service_scv(scenario)
    obj = Objective(scenario)
    return {
        "uniform": best_uniform(scenario, obj),
        "minimum": minimum_budgets(scenario, obj),
        "maximum": maximum_budgets(scenario, obj),
    }


def baseline_dict(result: Result | None) -> dict[str, Any] | None:
    """A baseline as ``cvxalloc solve --json`` prints it (None where unstable).

    ``objective``, ``accuracy``, ``mean_system_time``, ``utilization``,
    ``tokens`` (task name -> tokens), ``status``, ``gap`` (its certificate's,
    None where nothing is proven) and ``violated`` (the constraints it breaks).
    """
    if result is None:
        return None
    gap = result.certificate.gap
    return {
        "objective": result.objective,
        "accuracy": result.accuracy,
        "mean_system_time": result.mean_system_time,
        "utilization": result.utilization,
        "tokens": dict(zip(result.names, map(float, result.tokens))),
        "status": result.status,
        "gap": float(gap) if np.isfinite(gap) else None,
        "violated": list(result.diagnostics.get("violated", [])),
    }
