"""The constraints in the conic problem; the report of slacks and shadow prices from its duals.

Layer: solvers (how the conic reference honours a constraint; the terms are
:mod:`cvxalloc.constraints`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..constraints.feasibility import constraints_of, required_tokens
from ..constraints.terms import MeanSystemTime

if TYPE_CHECKING:  # CVXPY is imported where the conic forms are built, not here.
    import cvxpy as cp

    from ..scenario import Scenario

__all__ = ["conic_constraints", "constraint_report"]


def conic_constraints(
    scenario: Scenario,
    tokens: cp.Expression,
    x: cp.Variable,
    time_unit: float,
    slo: cp.Parameter | None = None,
    box: tuple[np.ndarray, np.ndarray] | None = None,
    latency: cp.Expression | None = None,
) -> list[tuple[Any, cp.Constraint, float]]:
    """The CVXPY constraints of the scenario, as ``(term, constraint, unit)``.

    ``slo``, a CVXPY Parameter, stands for ``max_mean_system_time`` when given
    (a sweep over the SLO compiles once); the scenario must then set one.
    ``box = (lo, hi)`` is the box ``x`` is normalized on, ``tokens = lo + (hi - lo) x``
    (default: ``min_tokens`` and :meth:`Scenario.stable_max_tokens`).
    ``latency``, optional, is ``W / time_unit`` as the model already holds it (an
    epigraph variable): the SLO then bounds it instead of a second copy of ``W``.

    ``term`` is a :class:`Term` or the string ``"min_accuracy"`` (whose
    constraint bounds the normalized variable ``x``; ``unit`` is unused).
    """
    sc = scenario
    cons = constraints_of(sc)
    if cons is None:
        return []
    out: list[tuple[Any, cp.Constraint, float]] = []
    token_unit = max(float(sc.probability @ sc.max_tokens), 1.0)
    for term in cons.terms():
        if slo is not None and isinstance(term, MeanSystemTime):
            term = MeanSystemTime(slo)
        if latency is not None and isinstance(term, MeanSystemTime):
            con, unit = latency <= term.limit / time_unit, time_unit
        else:
            con, unit = term.cvxpy(sc, tokens, time_unit, token_unit)
        if con is not None:
            out.append((term, con, unit))
    if cons.min_accuracy is not None:
        idx, lo, width = _min_accuracy_rows(sc, box)
        if idx.size:
            xm = (required_tokens(sc)[idx] - lo) / width
            out.append(("min_accuracy", x[idx] >= np.minimum(xm, 1.0), 1.0))
    return out


def _min_accuracy_rows(
    scenario: Scenario, box: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tasks whose min_accuracy raises the lower bound of a non-degenerate box, with its
    lower end and width (the box ``x`` is normalized on; see :func:`conic_constraints`)."""
    lo, hi = (scenario.min_tokens, scenario.stable_max_tokens()) if box is None else box
    idx = np.flatnonzero((required_tokens(scenario) > lo) & (hi > lo))
    return idx, lo[idx], (hi - lo)[idx]


def constraint_report(
    scenario: Scenario,
    tokens: np.ndarray,
    compiled=(),
    objective_scale: float = 1.0,
    box: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, dict[str, Any]]:
    """Slack and shadow price of every constraint at ``tokens``.

    Parameters
    ----------
    scenario : Scenario
    tokens : ndarray
        The reported allocation (slacks are evaluated here).
    compiled : sequence
        ``(term, constraint, unit)`` from :func:`conic_constraints` after the
        solve; their duals give the shadow prices.
    objective_scale : float
        The factor the conic objective was multiplied by.
    box : (ndarray, ndarray), optional
        The box the conic problem normalized ``x`` on (as in :func:`conic_constraints`).

    Returns
    -------
    dict
        ``name -> {"kind", "limit", "value", "slack", "shadow_price", "unit",
        "active"}``; ``shadow_price`` is utility gained per unit of relaxation
        (per second of SLO, per token of mean budget, per unit of utilization,
        per unit of accuracy), ``None`` where no dual is known. Per-task
        min_accuracy entries are named ``min_accuracy[task]``.
    """
    sc = scenario
    cons = constraints_of(sc)
    if cons is None:
        return {}
    t = np.asarray(tokens, dtype=float)
    duals: dict[str, Any] = {}
    for term, con, unit in compiled:
        key = term if isinstance(term, str) else term.kind
        dv = con.dual_value
        if dv is not None:
            duals[key] = np.asarray(dv, dtype=float) / (objective_scale * unit)
    out: dict[str, dict[str, Any]] = {}
    for term in cons.terms():
        value = term.value(sc, t)
        slack = term.limit - value
        dual = duals.get(term.kind)
        price = float(np.ravel(dual)[0]) if dual is not None else (0.0 if compiled else None)
        out[term.kind] = {
            "kind": term.kind,
            "limit": term.limit,
            "value": value,
            "slack": slack,
            "shadow_price": price,
            "unit": term.unit,
            "active": bool(slack <= 1e-6 * max(abs(term.limit), 1e-12)),
        }
        if hasattr(term, "describe"):  # a term reported in other units than it is held in
            out[term.kind].update(term.describe(sc, t, price))
    if cons.min_accuracy is not None:
        alpha = cons.min_accuracy
        acc = sc.accuracy.value(t)
        tau = required_tokens(sc)
        idx, _, width = _min_accuracy_rows(sc, box)
        prices = np.zeros(sc.n) if compiled else np.full(sc.n, np.nan)
        if "min_accuracy" in duals and idx.size:
            # dual per unit of x -> per token (/width) -> per unit of accuracy (/A').
            prices[idx] = duals["min_accuracy"] / (width * sc.accuracy.d1(tau)[idx])
        for i in np.flatnonzero(~np.isnan(alpha)):
            slack = float(acc[i] - alpha[i])
            out[f"min_accuracy[{sc.names[i]}]"] = {
                "kind": "min_accuracy",
                "task": sc.names[i],
                "limit": float(alpha[i]),
                "value": float(acc[i]),
                "slack": slack,
                "shadow_price": None if np.isnan(prices[i]) else float(prices[i]),
                "unit": "accuracy",
                "active": bool(slack <= 1e-9 or t[i] <= tau[i]),
            }
    return out
