"""The aggregate method under operator constraints: feasibility, multipliers, certificate.

:func:`solve_constrained` is what :func:`cvxalloc.solvers.aggregate.solve_aggregate`
runs for a scenario with constraints:

1. the exact feasibility test (:func:`cvxalloc.constraints.check_feasible`,
   which also gives the raised lower bounds ``lo'`` of min_accuracy);
2. the outer system with one multiplier per active constraint
   (:mod:`cvxalloc.solvers.multipliers`), first on a probability-weighted
   sample of the types when ``N`` is large, then on all of them;
3. exact feasibility (:func:`cvxalloc.constraints.restore_feasible`), the
   constrained certificate started from the multipliers found, and the
   constrained polish (:func:`cvxalloc.solvers.finish.finish`) where the gap is
   above ``tol * |U|``.

The multipliers are the shadow prices reported in ``diagnostics["constraints"]``
(utility per second of SLO, per token of mean budget, per unit of utilization;
per unit of accuracy for min_accuracy, from the Lagrangian's gradient at a
raised bound).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import constraints as cons_mod
from .. import status as st
from ..errors import SolverError
from ..objective import Objective
from ..result import Result
from .constraint_rows import constraint_report
from .finish import finish, single_point, single_point_result
from .multipliers import Multipliers, State, active_set, coordinate
from .reduction import sample
from .tail import solve_tail

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["solve_constrained"]


def solve_constrained(
    sc: Scenario,
    *,
    tol: float,
    max_iter: int,
    warm: tuple[float, float] | None,
    polish_steps: int,
    sample_size: int,
    xtol: float,
) -> Result:
    """Solve a constrained scenario by the aggregate method (see the module docstring).

    ``warm`` is ``(u, m2)`` from a previous solution, or None. A tail SLO goes to
    :func:`cvxalloc.solvers.tail.solve_tail` (one more multiplier, on its surrogate).
    """
    if "tail" in cons_mod.constraints_of(sc).kinds:
        settings = dict(max_iter=max_iter, polish_steps=polish_steps, sample_size=sample_size)
        return solve_tail(sc, tol=tol, warm=warm, xtol=xtol, **settings)
    t0 = time.perf_counter()
    lo2 = cons_mod.check_feasible(sc)
    if single_point(sc, lo2):
        return single_point_result(sc, lo2, method="aggregate")
    terms = cons_mod.constraints_of(sc).terms()
    red = Multipliers.of(sc, lo=lo2).constrain(terms)
    z0, active, start, sample_iters = _start(
        sc, red, lo2, terms, warm, (max_iter, sample_size, xtol)
    )
    state, active, newton_iters, ok = active_set(red, z0, active, max_iter, xtol)
    mu = np.zeros(len(terms))
    mu[active] = state.z[2:]
    path = "newton with multipliers"
    if not ok:
        state, mu, ok = coordinate(red, state.z, mu, max_iter, xtol)
        active = [j for j in range(len(terms)) if mu[j] > 0]
        path = "coordinate multipliers (after Newton failed)"
    if not ok:
        raise SolverError(
            "aggregate: the constrained outer system did not converge (active set "
            f"{[red.kinds[j] for j in active]}, residual {state.merit():.2e}); use method='conic'"
        )
    t_reduce = time.perf_counter() - t0
    obj = Objective(sc)
    tokens, cert, polished, raw_cert = _certify_and_polish(
        sc, obj, state, lo2, mu, (tol, polish_steps)
    )
    diag: dict[str, Any] = {
        "path": path,
        "start": start,
        "active": [red.kinds[j] for j in active],
        "multipliers": dict(zip(red.kinds, map(float, mu))),
        "u": float(state.z[0]),
        "m2": float(state.z[1]),
        "newton_iterations": newton_iters,
        "sample_iterations": sample_iters,
        "polish_steps": polished,
        "tol": tol,
        "constraints": _report(sc, obj, tokens, terms, mu, lo2),
    }
    status = st.OPTIMAL if cert.within(tol) else st.OPTIMAL_INACCURATE
    return Result(
        status=status,
        method="aggregate",
        tokens=tokens,
        evaluation=obj.evaluate(tokens),
        certificate=cert,
        scenario=sc,
        raw_certificate=raw_cert,
        iterations=int(red.evaluations + sample_iters),
        solver_stats={"reduce_time": t_reduce, "total_time": time.perf_counter() - t0},
        diagnostics=diag,
        message=(
            f"aggregate ({path}, {start} start; active: "
            f"{', '.join(diag['active']) or 'none'}): certified gap {cert.relative_gap:.2e} "
            f"of |U|" + ("" if status == st.OPTIMAL else f", above tol {tol:g}")
        ),
    )


def _start(
    sc: Scenario, red: Multipliers, lo2, terms, warm, settings: tuple[int, int, float]
) -> tuple[np.ndarray, list[int], str, int]:
    """``(z0, active set, start, sample evaluations)``.

    A warm ``(u, m2)`` starts with no active constraint; for ``N`` above the
    sample size, the whole active-set solve runs first on a probability-weighted
    sample and hands over its point and active set; else the middle of the brackets.
    """
    max_iter, sample_size, xtol = settings
    if warm is not None:
        return np.array(warm, dtype=float), [], "warm", 0
    mid = np.array(red.middle())
    if sc.n <= sample_size:
        return mid, [], "cold", 0
    idx, wts = sample(sc, sample_size)
    sub = Multipliers.of(sc, idx, wts, lo=lo2).constrain(terms)
    try:
        state, active, _, _ = active_set(sub, np.array(sub.middle()), [], max_iter, xtol)
    except (ValueError, ZeroDivisionError, FloatingPointError):
        return mid, [], "cold", sub.evaluations
    z0 = np.concatenate([red.project(state.z[:2])[:2], state.z[2:]])
    return z0, active, "sample", sub.evaluations


def _certify_and_polish(
    sc: Scenario, obj: Objective, state: State, lo2, mu, settings: tuple[float, int]
):
    """Exactly feasible tokens, their certificate, polish steps kept, and the raw certificate.

    ``settings`` is ``(tol, polish_steps)``.
    """
    tol, polish_steps = settings
    tokens = cons_mod.restore_feasible(sc, state.tokens, lo2)
    cert = cons_mod.certify_constrained(sc, tokens, obj, multipliers=mu, search=False)
    if not cert.within(tol):  # the bound minimized over the multipliers
        cert = cons_mod.certify_constrained(sc, tokens, obj, multipliers=mu)
    if cert.within(tol) or polish_steps == 0 or not np.isfinite(cert.gap):
        return tokens, cert, 0, None
    again, steps, _ = finish(sc, tokens, obj, polish_rtol=tol, polish_steps=polish_steps)
    cert2 = cons_mod.certify_constrained(sc, again, obj, multipliers=mu)
    if cert2.gap < cert.gap:
        return again, cert2, steps, cert
    return tokens, cert, 0, None


def _report(sc: Scenario, obj: Objective, tokens, terms, mu, lo2) -> dict[str, dict[str, Any]]:
    """Slack and shadow price of every constraint (the multipliers, and min_accuracy's).

    A floor's price is the Lagrangian's slope at its raised bound per unit of
    accuracy, ``max(-dL/dt_i, 0) / A_i'(lo'_i)``, where the task sits at that bound.
    """
    report = constraint_report(sc, tokens)
    for term, price in zip(terms, mu):
        report[term.kind]["shadow_price"] = float(price)
    floors = [key for key in report if key.startswith("min_accuracy[")]
    if not floors:
        return report
    grad = obj.gradient(tokens)
    if terms:
        grad = grad - mu @ np.array([tm.gradient(sc, tokens) for tm in terms])
    at_floor = (lo2 > sc.min_tokens) & (tokens <= lo2)
    with np.errstate(divide="ignore", invalid="ignore"):
        prices = np.where(at_floor, np.maximum(-grad, 0.0) / sc.accuracy.d1(lo2), 0.0)
    # constraint_report lists the floors in task order
    for key, i in zip(floors, np.flatnonzero(~np.isnan(sc.constraints.min_accuracy))):
        report[key]["shadow_price"] = float(prices[i])
    return report
