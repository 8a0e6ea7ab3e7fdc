"""Baselines beside the optimum: best uniform budget, minimum and maximum budgets.

Each baseline is evaluated and certified exactly as a solver's answer, so the
numbers are comparable. The best uniform budget gives every type the same
token count ``T`` (clipped into each type's bounds) and is found exactly:
between consecutive bounds the map ``T -> clip(T, lo, hi)`` is affine, so
``f(T) = U(clip(T))`` is concave on each piece; its maximum on each piece is
found by bisection on ``f'`` to machine precision, and the best piece wins.
"""

from __future__ import annotations

import numpy as np

from . import status as st
from ._bisect import bisect
from .objective import Objective
from .result import Result

__all__ = ["uniform_budget", "minimum_budgets", "maximum_budgets", "baselines"]


def _result(scenario, t, name, obj, message="", **diagnostics) -> Result:
    return Result.from_tokens(
        scenario,
        t,
        method=name,
        status=st.OPTIMAL,
        objective=obj,
        message=message,
        diagnostics=diagnostics,
    )


def uniform_budget(scenario, objective: Objective | None = None) -> Result:
    """The best single token count for every type (clipped into each type's bounds).

    Cost: O(N) per evaluation times the number of distinct bounds (pieces);
    intended for N up to about 10^4.
    """
    sc = scenario
    obj = objective or Objective(sc)
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
        slope = lam * float(pb[free].sum())
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
    return _result(
        sc,
        clip(best_T),
        "uniform",
        obj,
        message=f"best uniform budget T = {best_T:.6g} tokens",
        budget=best_T,
    )


def minimum_budgets(scenario, objective: Objective | None = None) -> Result:
    """Every type at its minimum budget."""
    return _result(scenario, scenario.min_tokens.copy(), "minimum", objective)


def maximum_budgets(scenario, objective: Objective | None = None) -> Result | None:
    """Every type at its maximum budget, or None where that is unstable."""
    if scenario.utilization(scenario.max_tokens) >= 1:
        return None
    return _result(scenario, scenario.max_tokens.copy(), "maximum", objective)


def baselines(scenario) -> dict[str, Result | None]:
    """``{"uniform": ..., "minimum": ..., "maximum": ...}`` (maximum None if unstable)."""
    obj = Objective(scenario)
    return {
        "uniform": uniform_budget(scenario, obj),
        "minimum": minimum_budgets(scenario, obj),
        "maximum": maximum_budgets(scenario, obj),
    }
