"""The conic model's box and cone scaling: the box holds the optimum, the scaled forms are exact."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

import cvxalloc
from cvxalloc import Constraints
from cvxalloc.accuracy import FAMILIES
from cvxalloc.solvers.conic import _marginal_floor, optimum_box
from cvxalloc.testing import random_scenario


@pytest.mark.parametrize("arrival_scv", [1.0, 0.3, 20.0])
@pytest.mark.parametrize("load", ["light", "heavy", "saturated", "overloaded"])
def test_optimum_box_holds_the_certified_optimum(load, arrival_scv):
    """Every type's optimal tokens (default method, certified) lie in the model's box."""
    clipped = 0
    for seed in range(6):
        sc = random_scenario(100 + seed, 40, load=load).with_(arrival_scv=arrival_scv)
        res = cvxalloc.solve(sc)
        assert res.certificate.within(1e-8)
        lo, ub = optimum_box(sc)
        hi = sc.stable_max_tokens()
        assert np.all(lo <= ub) and np.all(ub <= hi)
        assert np.all(res.tokens <= ub + 1e-9 * np.maximum(hi - lo, 1.0))
        clipped += int(np.count_nonzero(ub < hi))
    assert clipped > 0  # the bound is not vacuous


def test_optimum_box_leaves_a_swept_gamma_alone():
    sc = random_scenario(3, 20, load="heavy")
    lo, ub = optimum_box(sc, latency_weight=cp.Parameter(nonneg=True, value=0.1))
    assert np.array_equal(ub, sc.stable_max_tokens())
    assert np.array_equal(lo, sc.min_tokens)


def test_marginal_floor_is_a_lower_bound_of_dW_dm1():
    """``A = dW/dm1`` and ``B`` never drop below the floors over stable points above lo.

    The points: ``m1 >= m1(lo)``, ``m2 >= max(m2(lo), m1^2)`` (moments grow with tokens).
    """
    from cvxalloc.queue import FIFOQueue, Moments

    rng = np.random.default_rng(0)
    for c in (0.28, 0.3, 0.6, 1.0, 20.0):
        queue = FIFOQueue(2.0, arrival_scv=c)
        for m1_lo in (0.0, 0.2, 0.45):
            at_lo = Moments(m1_lo, 1.3 * m1_lo**2, 2.0 * m1_lo)
            floor = _marginal_floor(queue, at_lo)
            assert floor is not None and floor[0] > 0 and floor[1] >= 2.0
            m1 = rng.uniform(m1_lo, 0.5, 20000)  # rho = 2 m1 < 1
            m2 = np.maximum(at_lo.m2, m1**2) * (
                1 + rng.exponential(1.0, m1.size) * (rng.random(m1.size) < 0.5)
            )
            AB = np.array([queue.derivatives(a, b) for a, b in zip(m1, m2, strict=True)])
            assert AB[:, 0].min() >= floor[0] - 1e-12 and AB[:, 1].min() >= floor[1] - 1e-12
            if c < 1 and m1_lo == 0.0:  # the bound is attained near z = d / c with m2 = m1^2
                assert AB[:, 0].min() <= floor[0] + 0.05
            if c >= 1 and m1_lo == 0.45:  # loaded: the floor is far above 1 (the old one)
                assert floor[0] > 50
    assert _marginal_floor(FIFOQueue(2.0, arrival_scv=0.26), Moments(0.0, 0.0, 0.0)) is None


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_scaled_conic_form_is_the_same_function(name):
    """With ``upper`` the cone is scaled, the function is not (to rounding)."""
    rng = np.random.default_rng(1)
    sc = random_scenario(5, 30, families=[name])
    t = rng.uniform(0, 1, sc.n) * sc.max_tokens * 1e3
    upper = t * rng.uniform(1, 1e6, sc.n)
    x = cp.Variable(sc.n)
    x.value = t
    fam = sc.accuracy.blocks[0][0]
    value = fam.cvxpy(x, upper).value
    np.testing.assert_allclose(value, fam.value(t), rtol=1e-12, atol=1e-14)


def test_min_accuracy_on_a_box_clipped_by_stability():
    """min_accuracy bounds ``x`` on the model's box, not on ``max_tokens``.

    A huge ``max_tokens`` is clipped by the stability cap; measured before
    the fix, the floor was then scaled by the unclipped width and the
    accuracy floor held only loosely.
    """
    sc = random_scenario(11, 12, load="heavy", families=["exponential"])
    hi = sc.max_tokens.copy()
    hi[0] *= 1e6
    sc = sc.with_(max_tokens=hi)
    target = float(sc.accuracy.value(sc.stable_max_tokens())[0]) * 0.999
    floors = np.full(sc.n, np.nan)
    floors[0] = target
    sc = sc.with_(constraints=Constraints(min_accuracy=floors))
    res = cvxalloc.solve(sc, method="conic", fallback=None)
    assert res.status == "optimal"
    assert sc.accuracy.value(res.tokens)[0] >= target - 1e-12
    report = res.diagnostics["constraints"]["min_accuracy[" + sc.names[0] + "]"]
    assert report["slack"] >= -1e-12


def test_a_former_scs_case_solves_with_clarabel():
    """``random_scenario(1974, 184, heavy, gamma=0)`` needed the SCS fallback before."""
    sc = random_scenario(1974, 184, load="heavy", latency_weight=0.0)
    res = cvxalloc.solve(sc, method="conic", fallback=None)
    assert res.status == "optimal" and res.fallback is None
    ref = cvxalloc.solve(sc)
    assert abs(res.objective - ref.objective) <= 1e-9 * max(abs(ref.objective), 1.0)


def test_both_log_scalings_are_the_same_problem():
    """The retries' scaled model has the unscaled one's optimum (to Clarabel's tolerance)."""
    from cvxalloc.solvers.conic import ConicProblem

    sc = random_scenario(21, 30, load="heavy", families=["power", "logarithmic"])
    values = []
    for scaled in (True, False):
        prob = ConicProblem(sc, scaled_logs=scaled)
        prob.problem.solve(solver="CLARABEL")
        assert prob.problem.status == "optimal"
        values.append(prob.problem.value / prob.objective_scale)
    assert values[0] == pytest.approx(values[1], rel=1e-6)


def test_clarabel_is_retried_on_both_models_before_the_fallback():
    from cvxalloc.solvers.conic import CLARABEL_RETRIES, _attempts

    attempts = _attempts("CLARABEL", "SCS", {})
    assert attempts[0] == ("CLARABEL", {}, False) and attempts[1] == ("CLARABEL", {}, True)
    assert attempts[-1][0] == "SCS"
    assert len(attempts) == 2 + 2 * len(CLARABEL_RETRIES) + 1
    # a setting the caller fixed is not overridden by a retry
    fixed = _attempts("CLARABEL", None, {"equilibrate_enable": True})
    assert all("equilibrate_enable" not in extra for _, extra, _ in fixed)


def test_an_unstable_solver_point_is_not_kept():
    """A point past the stability limit is refused as a retry's starting point."""
    from cvxalloc.solvers.conic import ConicProblem

    sc = random_scenario(4, 20, load="overloaded")
    # a swept gamma keeps the stable box, whose top is unstable when every type is there
    prob = ConicProblem(sc, latency_weight=cp.Parameter(nonneg=True, value=0.1))
    prob.x.value = np.zeros(sc.n)
    assert prob.stable_point()
    prob.x.value = np.ones(sc.n)  # max_tokens clipped by the stability cap: still unstable
    assert sc.utilization(prob.hi) >= 1 and not prob.stable_point()


def test_an_slo_shares_the_objectives_latency_cone():
    """With an SLO the model holds the N-dimensional latency cone once, not twice."""
    from cvxalloc.solvers.conic import ConicProblem

    sc = random_scenario(8, 40, load="heavy")
    free = cvxalloc.solve(sc)
    slo = sc.with_(constraints=Constraints(max_mean_system_time=0.9 * free.mean_system_time))

    def soc_sizes(s):
        data, _, _ = ConicProblem(s).problem.get_problem_data("CLARABEL")
        return sorted(data["dims"].soc)

    assert soc_sizes(slo) == soc_sizes(sc)
    res = cvxalloc.solve(slo, method="conic", fallback=None)
    assert res.status == "optimal"
    assert res.mean_system_time <= 0.9 * free.mean_system_time * (1 + 1e-9)
    ref = cvxalloc.solve(slo)
    assert abs(res.objective - ref.objective) <= 1e-8 * abs(ref.objective)
