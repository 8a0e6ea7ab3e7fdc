"""The projected fixed-point iteration against the conic reference, and its contraction bound."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_scenario
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cvxalloc
from cvxalloc import status
from cvxalloc.certificate import relative_scale
from cvxalloc.objective import Objective
from cvxalloc.solvers._iterate import optimum_box, utilization_cap
from cvxalloc.solvers.fixed_point import (
    RATE_FLOOR,
    contraction_bound,
    fixed_point_map,
    solve_fixed_point,
)
from cvxalloc.testing import assert_near_optimal, random_scenario, scenarios

TOL = 1e-9
#: Ratios of steps longer than RATE_FLOOR (1e-4) of the box corner carry rounding of
#: about 2e-13 / (1 - rho(u)) / RATE_FLOOR; this is that rounding (rho(u) <= 0.998),
#: not a tolerance on the rate.
RATE_ROUNDING = 1e-6


def check_honest(sc, res, tol=TOL):
    """What every result must satisfy, converged or not."""
    lo, hi = sc.min_tokens, sc.max_tokens
    assert np.all(res.tokens >= lo) and np.all(res.tokens <= hi)
    assert res.utilization < 1
    cert = cvxalloc.certify(sc, res.tokens)
    assert cert.gap == pytest.approx(res.certificate.gap, rel=1e-12, abs=1e-300)
    assert res.history["gap"][-1] == pytest.approx(res.certificate.gap, rel=1e-12, abs=1e-300)
    assert len(res.history["gap"]) == len(res.history["objective"]) == res.iterations + 1
    within = res.certificate.gap <= tol * relative_scale(res.objective)
    if res.status == status.OPTIMAL:
        assert within
    else:
        assert res.status in (status.ITERATION_LIMIT, status.OPTIMAL_INACCURATE)
        assert not within
        assert "gap" in res.message


def check_rate(res):
    d = res.diagnostics
    if d.get("guarantee") and d["measured_rate"] is not None:
        assert d["measured_rate"] <= d["contraction_bound"] + RATE_ROUNDING


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(max_n=6))
def test_regression_against_conic(sc):
    res = cvxalloc.solve(sc, method="fixed-point")
    check_honest(sc, res)
    ref = cvxalloc.solve(sc, method="conic")
    # upper bounds are never below a feasible objective, both ways
    assert res.certificate.upper_bound >= ref.objective - 1e-12 * relative_scale(ref.objective)
    assert ref.certificate.upper_bound >= res.objective - 1e-12 * relative_scale(ref.objective)
    fp = res.diagnostics.get("fixed_point", res.diagnostics)
    assert res.method == "fixed-point"  # the method asked for, hand-over or not
    if fp["guarantee"]:
        assert res.handed_over_to is None
        check_rate(res)
        if fp["contraction_bound"] > 0.99:  # 10^4 steps at a rate > 0.99 may not suffice
            if res.status != status.OPTIMAL:
                return
    else:  # handed over to the gradient's default variant, which must finish
        assert res.handed_over_to == "gradient" and res.diagnostics["handed_over"]
    assert res.status == status.OPTIMAL, res.message
    assert_near_optimal(sc, res.tokens, rtol=1e-7, reference=ref, tokens_rtol=1e-3)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(max_n=5, loads=("light", "heavy")), st.integers(0, 2**32 - 1))
def test_contraction_bound_is_a_lipschitz_bound(sc, seed):
    """||F(x) - F(y)|| <= L ||x - y|| on random pairs of the box the bound was computed on."""
    obj = Objective(sc)
    box = optimum_box(obj, 1.0, 0)
    lower, upper = box.lower, box.upper
    if sc.utilization(upper) >= 1:
        return
    cb = contraction_bound(obj, lower, upper)
    pb = sc.probability * sc.per_token
    norms = {"max": lambda z: np.max(sc.per_token * np.abs(z)), "one": lambda z: pb @ np.abs(z)}
    r = np.random.default_rng(seed)
    for _ in range(20):
        x = lower + r.random(sc.n) * (upper - lower)
        y = np.clip(
            x + (r.random(sc.n) - 0.5) * (upper - lower) * r.choice([1e-3, 0.1, 1]), lower, upper
        )
        fx, fy = fixed_point_map(obj, x, lower, upper), fixed_point_map(obj, y, lower, upper)
        for key, bound in (("max", cb["bound_max_norm"]), ("one", cb["bound_one_norm"])):
            n = norms[key]
            assert n(fx - fy) <= bound * n(x - y) * (1 + 1e-9) + 1e-12 * n(upper)


def test_example_is_guaranteed_or_honest(example, example_optimum):
    """The iteration itself (no hand-over) on the example: converged under its guarantee, or a
    result that says it has none and does not claim optimality it has not certified."""
    res = cvxalloc.solve(example, method="fixed-point", fallback=None, max_iter=500)
    assert res.method == "fixed-point" and res.iterations > 0
    check_honest(example, res)
    fp = res.diagnostics
    if fp["guarantee"]:
        assert fp["contraction_bound"] < 1 and res.status == status.OPTIMAL, res.message
        check_rate(res)
    else:
        assert fp["contraction_bound"] >= 1 and fp["handed_over"] is None
        assert "no guarantee" in res.message
    if res.status == status.OPTIMAL:
        assert_near_optimal(
            example, res.tokens, rtol=1e-7, reference=example_optimum, tokens_rtol=1e-3
        )
    # By default a missing guarantee hands over to the gradient, which finishes.
    default = cvxalloc.solve(example, method="fixed-point")
    check_honest(example, default)
    assert default.method == "fixed-point"
    assert default.handed_over_to == (None if fp["guarantee"] else "gradient")
    assert default.status == status.OPTIMAL, default.message
    assert_near_optimal(
        example, default.tokens, rtol=1e-7, reference=example_optimum, tokens_rtol=1e-3
    )


@pytest.mark.parametrize("seed", range(4))
def test_contracting_instances_converge_at_the_bound(seed):
    sc = small_scenario(n=4, load=0.5, gamma=0.01, seed=seed)
    res = solve_fixed_point(sc)
    d = res.diagnostics
    assert d["guarantee"] and d["contraction_bound"] < 1
    assert res.method == "fixed-point" and res.status == status.OPTIMAL
    assert d["rate_samples"] >= 1
    check_rate(res)
    assert_near_optimal(sc, res.tokens, rtol=1e-7, tokens_rtol=1e-3)
    # every step is at most L times the previous one in the stated norm
    steps = np.array(res.history["step"])
    big = steps[:-1] > RATE_FLOOR * steps.max()
    assert big.sum() >= 2
    assert np.all(steps[1:][big] <= d["contraction_bound"] * steps[:-1][big] * (1 + RATE_ROUNDING))


def test_gamma_zero_takes_the_maximum_budgets():
    sc = small_scenario(n=3, load=0.5, gamma=0.0)
    res = solve_fixed_point(sc)
    assert res.status == status.OPTIMAL
    assert res.diagnostics["contraction_bound"] == 0
    np.testing.assert_array_equal(res.tokens, sc.max_tokens)


def test_no_arrivals_solves_each_type_alone():
    sc = small_scenario(n=3, load=0.5, gamma=0.01).with_(arrival_rate=0.0)
    res = solve_fixed_point(sc)
    assert res.status == status.OPTIMAL and res.diagnostics["contraction_bound"] == 0
    # with lam = 0: w_i A_i'(t_i) = gamma b_i, solved per type
    want = np.clip(
        sc.accuracy.inv_d1(sc.latency_weight * sc.per_token / sc.weight),
        sc.min_tokens,
        sc.max_tokens,
    )
    np.testing.assert_allclose(res.tokens, want, rtol=1e-12)


def test_single_type_and_identical_types(rng):
    for sc in (
        random_scenario(rng, 1, load="heavy"),
        random_scenario(rng, 6, load="heavy", identical=True),
    ):
        res = cvxalloc.solve(sc, method="fixed-point")
        check_honest(sc, res)
        assert res.status == status.OPTIMAL
        assert_near_optimal(sc, res.tokens, rtol=1e-7, tokens_rtol=1e-3)
        if sc.n > 1:  # identical types get identical tokens
            assert np.ptp(res.tokens) <= 1e-6 * sc.max_tokens[0]


def test_hand_over_is_reported():
    """No contraction on the token box and no refinement allowed: the gradient takes over."""
    sc = cvxalloc.example_scenario()
    res = solve_fixed_point(sc, refine_rounds=0)
    assert res.method == "fixed-point" and res.handed_over_to == "gradient"
    assert res.to_dict()["handed_over_to"] == "gradient"
    assert "handed over" in res.message
    assert res.diagnostics["fixed_point"]["guarantee"] is False
    assert res.diagnostics["handed_over"]
    check_honest(sc, res)


def test_without_fallback_iterates_honestly_and_stays_stable(rng):
    sc = random_scenario(rng, 5, load="overloaded")
    res = solve_fixed_point(sc, refine_rounds=0, fallback=None, max_iter=300)
    assert res.method == "fixed-point"
    assert res.diagnostics["guarantee"] is False
    check_honest(sc, res)
    assert all(np.isfinite(res.history["objective"]))  # every iterate was stable


def test_iteration_limit_is_reported(example):
    res = solve_fixed_point(example, max_iter=1, tol=1e-15)
    assert res.status == status.ITERATION_LIMIT
    assert res.iterations == 1
    assert "iteration limit" in res.message
    check_honest(example, res, tol=1e-15)


def test_warm_start_at_the_optimum_stops_at_once(example, example_optimum):
    res = solve_fixed_point(example, warm_start=example_optimum.tokens, tol=1e-8)
    assert res.iterations <= 1 and res.status == status.OPTIMAL


def test_utilization_cap_holds_at_the_optimum(rng):
    for load in ("heavy", "saturated", "overloaded"):
        sc = random_scenario(rng, 6, load=load)
        ref = cvxalloc.solve(sc, method="conic")
        cap = utilization_cap(Objective(sc))
        assert ref.utilization <= cap < 1


def test_bad_options():
    sc = small_scenario()
    with pytest.raises(ValueError, match="tol"):
        solve_fixed_point(sc, tol=0)
    with pytest.raises(ValueError, match="max_iter"):
        solve_fixed_point(sc, max_iter=-1)
    with pytest.raises(ValueError, match="fallback"):
        solve_fixed_point(sc, fallback="newton")
    with pytest.raises(ValueError, match="warm_start"):
        solve_fixed_point(sc, warm_start=[1.0])
    with pytest.raises(ValueError, match="does not take"):
        cvxalloc.solve(sc, method="fixed-point", step=3)


def test_cli_method_fixed_point(tmp_path):
    import json

    from cvxalloc.cli import main

    out = tmp_path / "r.json"
    assert (
        main(["solve", "--method", "fixed-point", "--json", "--no-baselines", "-o", str(out)]) == 0
    )
    d = json.loads(out.read_text())
    assert d["method"] == "fixed-point" and d["status"] == "optimal"
    assert d.get("handed_over_to") in (None, "gradient")
    assert "contraction_bound" in json.dumps(d["diagnostics"])


def test_cli_shows_the_hand_over(capsys):
    """cvxalloc solve names the method asked for and, under it, the hand-over and why."""
    import json

    from cvxalloc.cli import main

    assert main(["solve", "--method", "fixed-point", "--no-baselines"]) == 0
    head, second = capsys.readouterr().out.splitlines()[:2]
    assert head.startswith("cvxalloc: method fixed-point, status optimal")
    assert second.startswith("handed over to method gradient: ")
    assert main(["solve", "--method", "fixed-point", "--no-baselines", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["method"], d["handed_over_to"]) == ("fixed-point", "gradient")
