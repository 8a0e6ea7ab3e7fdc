"""Constraints in the aggregate method, held against the conic reference and the certificates.

The aggregate method's constrained outer system (:mod:`cvxalloc.solvers.multipliers`)
must reach the conic optimum to 1e-6 of |U| on random scenarios across regimes (light
to overloaded load, arrival_scv, N = 1, identical types, gamma = 0 bounded by the
constraints), with each certificate bounding the other's objective.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_constraints
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cvxalloc
from cvxalloc import Constraints
from cvxalloc.certificate import relative_scale
from cvxalloc.constraints import InfeasibleError, check_feasible, constraints_of
from cvxalloc.solvers.multipliers import Multipliers, active_set, coordinate
from cvxalloc.testing import scenarios


def _assert_agree(res, ref) -> None:
    scale = relative_scale(ref.objective)
    assert res.method == "aggregate" and res.status == "optimal", res.message
    assert abs(res.objective - ref.objective) <= 1e-6 * scale
    assert res.certificate.upper_bound >= ref.objective - 1e-9 * scale
    assert ref.certificate.upper_bound >= res.objective - 1e-9 * scale
    assert all(v["slack"] >= 0 for v in res.diagnostics.get("constraints", {}).values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc0=scenarios(max_n=12), seed=st.integers(0, 2**32 - 1), ca2=st.sampled_from([1.0, 0.3, 20]))
def test_matches_conic_across_regimes(sc0, seed, ca2):
    sc0 = sc0.with_(arrival_scv=ca2)
    sc = sc0.with_(constraints=random_constraints(sc0, np.random.default_rng(seed)))
    try:
        check_feasible(sc)
    except InfeasibleError:
        with pytest.raises(InfeasibleError):
            cvxalloc.solve(sc)
        return
    _assert_agree(cvxalloc.solve(sc), cvxalloc.solve(sc, method="conic"))


@pytest.mark.parametrize("seed", range(3))
def test_sample_start_matches_full_start(seed):
    """Above sample_size the active set and multipliers come from a sample first."""
    sc0 = cvxalloc.testing.random_scenario(seed, 3000, load="saturated")
    r0, low = cvxalloc.solve(sc0), cvxalloc.evaluate(sc0, sc0.min_tokens)
    T0, T_lo = float(sc0.probability @ r0.tokens), float(sc0.probability @ sc0.min_tokens)
    W0, W_lo = r0.mean_system_time, low.mean_system_time
    limits = [
        dict(max_mean_system_time=W_lo + 0.5 * (W0 - W_lo)),
        dict(max_mean_tokens=T_lo + 0.6 * (T0 - T_lo), max_utilization=0.99 * r0.utilization),
        dict(
            max_mean_system_time=W_lo + 0.8 * (W0 - W_lo), max_mean_tokens=T_lo + 0.8 * (T0 - T_lo)
        ),
    ][seed]
    sc = sc0.with_(constraints=Constraints(**limits))
    small = cvxalloc.solve(sc, sample_size=200)
    full = cvxalloc.solve(sc)
    assert small.diagnostics["start"] == "sample" and full.diagnostics["start"] == "cold"
    assert small.diagnostics["active"]
    _assert_agree(small, full)


def test_coordinate_fallback_reaches_the_newton_multipliers():
    """The fallback (dual coordinate minimization) finds Newton's multipliers on its own."""
    sc0 = cvxalloc.example_scenario()
    r0 = cvxalloc.solve(sc0)
    T0 = float(sc0.probability @ r0.tokens)
    cons = Constraints(max_mean_system_time=0.8 * r0.mean_system_time, max_mean_tokens=0.8 * T0)
    sc = sc0.with_(constraints=cons)
    lo2 = check_feasible(sc)
    terms = constraints_of(sc).terms()
    red = Multipliers.of(sc, lo=lo2).constrain(terms)
    z0 = np.array(red.middle())
    st_n, active, _, ok = active_set(red, z0, [], 50, 1e-14)
    assert ok and active
    mu_n = np.zeros(len(terms))
    mu_n[active] = st_n.z[2:]
    st_c, mu_c, ok_c = coordinate(red, z0, np.zeros(len(terms)), 50, 1e-14)
    assert ok_c
    np.testing.assert_allclose(mu_c, mu_n, rtol=1e-7, atol=1e-14)
    np.testing.assert_allclose(st_c.tokens, st_n.tokens, rtol=1e-7)


def test_warm_start_and_reported_prices():
    sc0 = cvxalloc.example_scenario()
    r0 = cvxalloc.solve(sc0)
    sc = sc0.with_(constraints=Constraints(max_mean_system_time=0.7 * r0.mean_system_time))
    cold = cvxalloc.solve(sc)
    warm = cvxalloc.solve(sc, warm_start=r0)
    assert warm.diagnostics["start"] == "warm"
    _assert_agree(warm, cold)
    report = cold.diagnostics["constraints"]["max_mean_system_time"]
    assert report["active"] and report["shadow_price"] > 0
    assert cold.diagnostics["multipliers"]["max_mean_system_time"] == report["shadow_price"]
