"""Projected gradient (paper and diagonally scaled) against the conic reference, and its bounds."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from conftest import small_scenario
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cvxalloc
from cvxalloc import status
from cvxalloc.accuracy import Exponential, Logarithmic, Power
from cvxalloc.certificate import relative_scale
from cvxalloc.objective import Objective
from cvxalloc.solvers._iterate import optimum_box, project, utilization_cap
from cvxalloc.solvers.gradient import curvature_bound, solve_gradient
from cvxalloc.testing import assert_near_optimal, random_scenario, scenarios

TOL = 1e-9


def check_honest(sc, res, tol=TOL):
    lo, hi = sc.min_tokens, sc.max_tokens
    assert np.all(res.tokens >= lo) and np.all(res.tokens <= hi)
    assert res.utilization < 1
    assert res.history["gap"][-1] == pytest.approx(res.certificate.gap, rel=1e-12, abs=1e-300)
    assert len(res.history["objective"]) == res.iterations + 1
    within = res.certificate.gap <= tol * relative_scale(res.objective)
    if res.status == status.OPTIMAL:
        assert within
    else:
        assert res.status in (status.ITERATION_LIMIT, status.OPTIMAL_INACCURATE) and not within
        assert "gap" in res.message


def check_ascent(res):
    """With step 1/L the objective never decreases (beyond rounding of U).

    ``U = Acc - gamma W`` is a difference of sums of N terms: its rounding is a
    few ulps of ``Acc + gamma W`` per term, not of ``|U|``.
    """
    U = np.array(res.history["objective"])
    ev = res.evaluation
    sc = res.scenario
    magnitude = abs(ev.accuracy) + sc.latency_weight * ev.mean_system_time
    slack = 4 * (sc.n + 4) * np.finfo(float).eps * magnitude
    assert np.all(np.diff(U) >= -slack)


def _points_in_set(sc, obj, lower, upper, rho_cap, rng, n):
    lam = sc.arrival_rate
    a = sc.probability * sc.per_token
    cap = rho_cap / lam - float(sc.probability @ sc.base) if lam > 0 and rho_cap < 1 else None
    for _ in range(n):
        y = lower + rng.random(sc.n) ** rng.choice([0.2, 1, 5]) * (upper - lower)
        yield project(y, lower, upper, a if cap is not None else None, cap)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(max_n=5), st.integers(0, 2**32 - 1))
def test_curvature_bound_bounds_the_hessian(sc, seed):
    """lambda_max of -Hess U (plain and Jacobi-scaled) at points of S never exceeds the bound."""
    obj = Objective(sc)
    lo, hi = sc.min_tokens, sc.max_tokens
    rho_bar = utilization_cap(obj)
    rho_cap = rho_bar if rho_bar < sc.utilization(hi) else 1.0
    box = optimum_box(obj, rho_cap, 20)
    r = np.random.default_rng(seed)
    r_sub = np.random.default_rng(seed + 1)
    # random sub-boxes with a cap between rho(lower) and 1, as the local variant builds
    sub_l = lo + r_sub.random(sc.n) * (hi - lo)
    sub_u = sub_l + r_sub.random(sc.n) * (hi - sub_l)
    rho_l = sc.utilization(sub_l)
    sub_cap = rho_l + r_sub.random() * (1 - rho_l) if rho_l < 1 else None
    boxes = [(lo, hi, rho_cap), (box.lower, box.upper, rho_cap)]
    if sub_cap is not None:
        boxes.append((sub_l, sub_u, sub_cap))
    for lower, upper, rho_cap in boxes:
        if rho_cap >= 1 and sc.utilization(upper) >= 1:
            continue
        q = curvature_bound(obj, lower, upper, rho_cap)["diagonal"]
        L = curvature_bound(obj, lower, upper, rho_cap)["L"]
        Lq = curvature_bound(obj, lower, upper, rho_cap, q)["L"]
        # the one-call Jacobi form the solver uses gives the same metric and bound
        jac = curvature_bound(obj, lower, upper, rho_cap, jacobi=True)
        np.testing.assert_array_equal(jac["metric"], np.where(q > 0, q, 1.0))
        assert jac["L"] == curvature_bound(obj, lower, upper, rho_cap, jac["metric"])["L"]
        for t in _points_in_set(sc, obj, lower, upper, rho_cap, r, 8):
            d, V, M = obj.hessian_parts(t)
            H = np.diag(d) + V @ M @ V.T
            assert np.linalg.eigvalsh(H)[-1] <= L * (1 + 1e-9)
            # a type with q_i = 0 has a zero row and column in H (PSD, H_ii <= q_i):
            # the scaled bound is over the others (1/sqrt(q) there would divide by 0)
            m = q > 0
            Hq = H[np.ix_(m, m)] / np.sqrt(np.outer(q[m], q[m]))
            assert not m.any() or np.linalg.eigvalsh(Hq)[-1] <= Lq * (1 + 1e-9)
            assert np.all(np.diag(H) <= q * (1 + 1e-9))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(max_n=6))
def test_regression_against_conic(sc):
    """The default method (variant local) reaches the conic optimum on every instance."""
    res = cvxalloc.solve(sc, method="gradient")
    assert res.diagnostics["variant"] == "local"
    check_honest(sc, res)
    check_ascent(res)
    ref = cvxalloc.solve(sc, method="conic")
    assert res.certificate.upper_bound >= ref.objective - 1e-12 * relative_scale(ref.objective)
    assert ref.certificate.upper_bound >= res.objective - 1e-12 * relative_scale(ref.objective)
    assert res.status == status.OPTIMAL, res.message
    assert_near_optimal(sc, res.tokens, rtol=1e-7, reference=ref, tokens_rtol=1e-3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(max_n=6), st.booleans(), st.booleans())
def test_scaled_regression_against_conic(sc, shrink, accelerate):
    """The global-bound scaled variant: honest always, at the optimum whenever it says so."""
    res = cvxalloc.solve(
        sc, method="gradient", variant="scaled", shrink=shrink, accelerate=accelerate
    )
    check_honest(sc, res)
    check_ascent(res)
    ref = cvxalloc.solve(sc, method="conic")
    assert res.certificate.upper_bound >= ref.objective - 1e-12 * relative_scale(ref.objective)
    assert ref.certificate.upper_bound >= res.objective - 1e-12 * relative_scale(ref.objective)
    assert res.diagnostics["set_utilization"] < 1
    if res.status == status.OPTIMAL:
        assert_near_optimal(sc, res.tokens, rtol=1e-7, reference=ref, tokens_rtol=1e-3)


@pytest.mark.parametrize("seed", [0, 3, 4, 5])
def test_local_variant_where_the_global_bound_stalls(seed):
    """Overloaded N = 24 instances on which the scaled variant (one global bound) still has
    a certified gap of 8-69% of |U| after 3000 iterations; the local variant finishes."""
    sc = random_scenario(np.random.default_rng(seed), 24, load="overloaded")
    res = solve_gradient(sc)
    check_honest(sc, res)
    check_ascent(res)
    assert res.status == status.OPTIMAL, res.message
    d = res.diagnostics
    assert d["step"] == pytest.approx(1 / d["curvature_bound"])
    assert d["curvature_bound"] <= d["largest_curvature_bound"]
    assert_near_optimal(sc, res.tokens, rtol=1e-7, tokens_rtol=1e-3)


def _box_regime(draw_seed: int, n: int, family: str, gamma_zero: bool):
    """Instances where the paper's method provably finishes: few types, narrow curvature range."""
    r = np.random.default_rng(draw_seed)
    tau = r.uniform(200, 3000, n)
    hi = tau * r.uniform(0.5, 2.0, n)
    p = r.dirichlet(np.full(n, 20.0))
    fam = {
        "exponential": Exponential(floor=0.2, ceiling=r.uniform(0.5, 0.9, n), scale=tau),
        "power": Power(
            floor=0.2, ceiling=r.uniform(0.5, 0.9, n), scale=tau, exponent=r.uniform(0.5, 2, n)
        ),
        "logarithmic": Logarithmic(floor=0.2, gain=r.uniform(0.05, 0.3, n), scale=tau),
    }[family]
    b = r.uniform(0.005, 0.02, n)
    a = r.uniform(0.2, 2, n)
    lam = r.uniform(0.05, 0.4) / float(p @ (a + b * hi))
    return cvxalloc.Scenario.from_arrays(
        probability=p,
        max_tokens=hi,
        per_token=b,
        base=a,
        accuracy=fam,
        arrival_rate=lam,
        latency_weight=0.0 if gamma_zero else r.uniform(1e-4, 1e-2),
        scv=r.uniform(0, 1, n),
    )


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 3),
    st.sampled_from(["exponential", "power", "logarithmic"]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_paper_variant_finishes_within_its_iteration_bound(
    seed, n, family, gamma_zero, shrink, accelerate
):
    """The bound is proven for the plain method and for every speed-up (each step is at
    least as good as a plain step on a set holding t*)."""
    sc = _box_regime(seed, n, family, gamma_zero)
    res = solve_gradient(sc, variant="paper", max_iter=20_000, shrink=shrink, accelerate=accelerate)
    check_honest(sc, res)
    check_ascent(res)
    bound = res.diagnostics.get("iteration_bound")
    if bound is not None and bound <= 20_000:
        assert res.status == status.OPTIMAL
        assert res.iterations <= bound
    if res.status == status.OPTIMAL:
        assert_near_optimal(sc, res.tokens, rtol=1e-7, tokens_rtol=1e-3)


def test_paper_variant_has_a_finite_bound_on_the_box():
    sc = _box_regime(3, 2, "exponential", True)
    res = solve_gradient(sc, variant="paper", max_iter=20_000, shrink=False, accelerate=False)
    assert res.diagnostics["set"] == "box"
    assert 1 <= res.diagnostics["iteration_bound"] <= 20_000
    assert res.status == status.OPTIMAL


def test_paper_variant_on_tiny_probabilities_says_it_stopped():
    """Gradients scale with p_i: the paper's step leaves rare types behind, and says so."""
    sc = small_scenario(n=3, load=0.5, gamma=0.01, seed=1)
    p = np.array([1 - 2e-4, 1e-4, 1e-4])
    sc = sc.with_(probability=p)
    res = solve_gradient(sc, variant="paper", max_iter=2000, shrink=False, accelerate=False)
    assert res.status == status.ITERATION_LIMIT
    assert res.iterations == 2000
    assert "iteration limit" in res.message and "gap" in res.message
    assert res.certificate.gap > TOL * abs(res.objective)
    check_honest(sc, res)
    # the diagonally scaled variants do not suffer from it
    for variant in ("scaled", "local"):
        scaled = solve_gradient(sc, max_iter=2000, variant=variant)
        assert scaled.status == status.OPTIMAL
        assert_near_optimal(sc, scaled.tokens, rtol=1e-7, tokens_rtol=1e-3)


def test_overloaded_box_uses_the_cap_and_stays_stable(rng):
    sc = random_scenario(rng, 4, load="overloaded")
    for variant in ("paper", "scaled", "local"):
        res = solve_gradient(sc, variant=variant, max_iter=500)
        d = res.diagnostics
        assert "rho_bar" in d["set"] and d["rho_bar"] < 1
        # the set's cap is the last one it was built with; the best proven cap may be tighter
        assert d["rho_bar"] <= d["set_utilization"] < 1
        assert sc.utilization(res.tokens) <= d["set_utilization"] * (1 + 1e-12)
        ref = cvxalloc.solve(sc, method="conic")
        assert ref.utilization <= d["rho_bar"]
        check_honest(sc, res)
        check_ascent(res)


@pytest.mark.parametrize("variant", ["paper", "scaled", "local"])
def test_gamma_zero_and_no_arrivals(variant):
    sc = small_scenario(n=3, load=0.5, gamma=0.0)
    res = solve_gradient(sc, variant=variant, shrink=False, accelerate=False)
    check_honest(sc, res)
    check_ascent(res)
    if variant != "paper":  # the optimum box is [hi - 1e-7 width, hi]: found at once
        assert res.status == status.OPTIMAL
        np.testing.assert_allclose(res.tokens, sc.max_tokens, rtol=1e-6)
    else:  # A'' spans exp((hi - lo)/tau) over the box: slow, but it must say so
        bound = res.diagnostics["iteration_bound"]
        assert res.status == status.OPTIMAL or bound > 10_000
    sc0 = small_scenario(n=3, load=0.5, gamma=0.01).with_(arrival_rate=0.0)
    res = solve_gradient(sc0, variant=variant, max_iter=20_000)
    check_honest(sc0, res)
    if res.status == status.OPTIMAL:
        assert_near_optimal(sc0, res.tokens, rtol=1e-7, tokens_rtol=1e-3)


@pytest.mark.parametrize("variant", ["scaled", "local"])
def test_example(example, example_optimum, variant):
    res = solve_gradient(example, variant=variant)
    assert res.status == status.OPTIMAL
    d = res.diagnostics
    assert d["step"] == pytest.approx(1 / d["curvature_bound"])
    assert d["initial_step"] == pytest.approx(1 / d["initial_curvature_bound"])
    assert_near_optimal(example, res.tokens, rtol=1e-7, reference=example_optimum, tokens_rtol=1e-3)


def test_speed_ups_keep_the_plain_guarantees(example):
    """Shrinking and acceleration never make an iteration worse than the plain one,
    and on the example they cut the iterations of the global-bound variants."""
    for variant in ("scaled", "paper"):
        plain = solve_gradient(
            example, variant=variant, shrink=False, accelerate=False, max_iter=3000
        )
        fast = solve_gradient(example, variant=variant, max_iter=3000)
        check_ascent(plain)
        check_ascent(fast)
        assert fast.status == status.OPTIMAL
        assert fast.iterations < plain.iterations
        assert fast.diagnostics["restarts"] >= 1
        # every rebuilt set is smaller: its bound is never above the first one
        assert fast.diagnostics["curvature_bound"] <= fast.diagnostics["initial_curvature_bound"]


def test_gap_box_holds_the_optimum(rng):
    """The box from a point's separable strong-concavity bound always holds t*."""
    from cvxalloc.solvers._iterate import gap_box

    for load in ("light", "heavy", "saturated", "overloaded"):
        sc = random_scenario(rng, 8, load=load)
        ref = cvxalloc.solve(sc, method="conic")
        obj = Objective(sc)
        lo, hi = sc.min_tokens, sc.max_tokens
        rho_bar = utilization_cap(obj)
        for frac in (1.0, 1e-2, 1e-4, 1e-6):
            # points between a stable corner and the optimum, closer and closer
            t = np.clip(ref.tokens + frac * (lo - ref.tokens), lo, hi)
            if sc.utilization(t) >= rho_bar:
                continue
            lower, upper, beta = gap_box(obj, t, obj.gradient(t), lo, hi)
            assert np.all(lower <= ref.tokens + 1e-9 * (hi - lo))
            assert np.all(ref.tokens <= upper + 1e-9 * (hi - lo))
            # beta bounds U* - U(t) and is never above the Frank-Wolfe gap
            assert ref.objective - obj.value(t) <= beta * (1 + 1e-9) + 1e-15
            assert beta <= cvxalloc.certify(sc, t).gap * (1 + 1e-9) + 1e-15


def test_warm_start(example, example_optimum):
    # a previous Result works too (what cvxalloc.sweep passes)
    for variant in ("scaled", "local"):
        res = solve_gradient(example, variant=variant, warm_start=example_optimum, tol=1e-8)
        assert res.iterations <= 2 and res.status == status.OPTIMAL


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 8), st.booleans())
def test_projection_is_exact(seed, n, metric):
    r = np.random.default_rng(seed)
    lower = r.uniform(0, 1, n)
    upper = lower + r.uniform(0, 2, n)
    a = r.uniform(0.1, 2, n)
    cap = float(a @ lower) + r.uniform(0, 1) * float(a @ (upper - lower))
    q = r.uniform(0.1, 10, n) if metric else None
    y = r.normal(0, 3, n)
    x = project(y, lower, upper, a, cap, q)
    qq = np.ones(n) if q is None else q
    v = cp.Variable(n)
    prob = cp.Problem(
        cp.Minimize(cp.sum(cp.multiply(qq, cp.square(v - y)))),
        [v >= lower, v <= upper, a @ v <= cap],
    )
    prob.solve(solver="CLARABEL")
    assert np.all(x >= lower) and np.all(x <= upper) and a @ x <= cap * (1 + 1e-12) + 1e-12
    f = float(qq @ (x - y) ** 2)
    assert f <= prob.value + 1e-7 * (1 + abs(prob.value))  # as good as Clarabel's
    # exact KKT: x = clip(y - mu a / q) with one multiplier mu >= 0, complementary
    r = a / qq
    free = (x > lower + 1e-12) & (x < upper - 1e-12)
    scale = 1 + np.max(np.abs(y))
    mu = float(np.median((y[free] - x[free]) / r[free])) if free.any() else None
    if mu is None:  # every coordinate at a bound: some mu >= 0 must reproduce them
        lo_mu = np.max(np.where(x >= upper - 1e-12, -np.inf, (y - lower) / r), initial=0.0)
        mu = max(lo_mu, 0.0)
    assert mu >= -1e-9 * scale
    np.testing.assert_allclose(x, np.clip(y - mu * r, lower, upper), atol=1e-9 * scale)
    if a @ x < cap - 1e-9 * abs(cap):
        assert abs(mu) <= 1e-9 * scale


def test_bad_options():
    sc = small_scenario()
    with pytest.raises(ValueError, match="variant"):
        solve_gradient(sc, variant="adam")
    with pytest.raises(ValueError, match="shrink"):
        solve_gradient(sc, shrink="yes")
    with pytest.raises(ValueError, match="accelerate"):
        solve_gradient(sc, accelerate=1)
    with pytest.raises(ValueError, match="step_fraction"):
        solve_gradient(sc, step_fraction=2.0)
    with pytest.raises(ValueError, match="tol"):
        solve_gradient(sc, tol=-1)


def test_cli_method_gradient(tmp_path):
    import json

    from cvxalloc.cli import main

    out = tmp_path / "r.json"
    assert (
        main(
            [
                "solve",
                "--method",
                "gradient",
                "--option",
                'variant="paper"',
                "--json",
                "--no-baselines",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    d = json.loads(out.read_text())
    assert d["method"] == "gradient" and d["status"] == "optimal"
    assert d["diagnostics"]["curvature_bound"] > 0 and d["diagnostics"]["step"] > 0
