"""Constrained reproducers of issue 22: the default method against the conic reference.

* c3_seed57, c3_seed161 (N = 2, a token budget and a utilization cap): the
  default method raised SolverError ("the constrained outer system did not
  converge"). With one type free, both constraints act on it through one
  combination of their multipliers; the budget is not binding at the optimum.
* c3_seed130: ``max_mean_tokens`` equal to its value at the minimum budgets
  (0.67 ulp below it in exact arithmetic) was refused as infeasible.
"""

from __future__ import annotations

import pathlib
from fractions import Fraction

import numpy as np
import pytest

import cvxalloc
from cvxalloc.constraints import InfeasibleError
from cvxalloc.constraints.terms import TIE_RTOL
from cvxalloc.solvers.multipliers import State, kkt_holds

CASES = pathlib.Path(__file__).parent / "data" / "cases"


@pytest.mark.parametrize("name", ["c3_seed57.json", "c3_seed161.json"])
def test_budget_and_utilization_cap_together_match_conic(name):
    sc = cvxalloc.load_scenario(CASES / name)
    ref = cvxalloc.solve(sc, method="conic")
    assert ref.status == "optimal" and ref.certificate.within(1e-9)  # the reference checks itself
    res = cvxalloc.solve(sc)
    assert res.method == "aggregate" and res.status == "optimal"
    assert res.certificate.within(1e-9)
    # each certificate bounds the other's objective
    assert res.objective <= ref.certificate.upper_bound + 1e-12 * abs(ref.objective)
    assert ref.objective <= res.certificate.upper_bound + 1e-12 * abs(res.objective)
    assert np.allclose(res.tokens, ref.tokens, rtol=1e-6, atol=1e-6 * sc.max_tokens)
    # the utilization cap binds, the token budget does not
    report = res.diagnostics["constraints"]
    assert report["max_utilization"]["active"] and report["max_mean_tokens"]["slack"] > 0
    assert res.diagnostics["active"] == ["max_utilization"]


def test_a_limit_tied_with_the_minimum_budgets_is_their_single_point():
    sc = cvxalloc.load_scenario(CASES / "c3_seed130.json")
    limit = sc.constraints.max_mean_tokens
    exact = sum(Fraction(p) * Fraction(t) for p, t in zip(sc.probability, sc.min_tokens))
    assert Fraction(limit) < exact  # below in exact arithmetic, by 0.67 ulp: a tie
    for method in ("aggregate", "conic"):
        res = cvxalloc.solve(sc, method=method)
        assert res.status == "optimal" and np.array_equal(res.tokens, sc.min_tokens)
        assert res.certificate.gap == 0.0


@pytest.mark.parametrize("ulps", [-3, -1, 0, 1, 2, 3])
def test_ties_within_rounding_are_feasible_and_real_conflicts_are_not(ulps):
    sc = cvxalloc.load_scenario(CASES / "c3_seed130.json")
    value = float(sc.probability @ sc.min_tokens)
    limit = value + ulps * float(np.spacing(value))
    tied = cvxalloc.Scenario.from_dict(_with_limit(sc, limit))
    assert np.array_equal(cvxalloc.solve(tied).tokens, sc.min_tokens)
    # a limit below by more than the rounding is a conflict, named with the value needed
    short = value * (1 - 4 * TIE_RTOL)
    with pytest.raises(InfeasibleError, match="raise max_mean_tokens to at least 133.503"):
        cvxalloc.solve(cvxalloc.Scenario.from_dict(_with_limit(sc, short)))


def _with_limit(sc, limit: float) -> dict:
    data = sc.to_dict()
    data["constraints"]["max_mean_tokens"] = limit
    return data


def _state(merit_residual: float, slack: list[float]) -> State:
    return State(
        z=np.array([0.5, 1.0, 0.0]),
        tokens=np.zeros(2),
        m1=1.0,
        m2=1.0,
        A=1.0,
        B=1.0,
        slack=np.array(slack),
        residual=np.array([merit_residual * 0.5, 0.0]),
    )


def test_kkt_holds_reads_feasibility_complementarity_and_the_outer_residual():
    xtol = 1e-14
    assert kkt_holds(_state(0.0, [1e-3, 3e-15]), np.array([0.0, 120.0]), xtol)
    assert kkt_holds(_state(0.0, [1e-3, -3e-15]), np.array([0.0, 120.0]), xtol)
    # a positive multiplier on a loose constraint, a violated one, an outer residual
    assert not kkt_holds(_state(0.0, [1e-3, 3e-15]), np.array([0.0044, 120.0]), xtol)
    assert not kkt_holds(_state(0.0, [1e-3, -1e-9]), np.array([0.0, 120.0]), xtol)
    assert not kkt_holds(_state(1e-9, [1e-3, 0.0]), np.array([0.0, 120.0]), xtol)
