"""The aggregate solver against the conic reference, brute force and its certificate."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from scipy.optimize import brentq

import cvxalloc
from cvxalloc import status as st
from cvxalloc.accuracy import AccuracyCurves, Exponential, Logarithmic, Power
from cvxalloc.certificate import certify, relative_scale
from cvxalloc.objective import Objective
from cvxalloc.testing import assert_near_optimal, random_scenario, scenarios

TOL = 1e-9


# --- helpers ---------------------------------------------------------------------
def solve_agg(sc, **kw):
    res = cvxalloc.solve(sc, method="aggregate", **kw)
    check_certified(sc, res)
    return res


def check_certified(sc, res, tol=TOL):
    """Status optimal only with an independently recomputed FW gap <= tol |U|."""
    assert res.status == st.OPTIMAL, res.message
    cert = certify(sc, res.tokens)  # recomputed, not the solver's own
    assert np.isfinite(cert.gap)
    assert cert.gap <= tol * relative_scale(cert.objective), cert.relative_gap
    assert abs(cert.objective - res.objective) <= 1e-14 * relative_scale(cert.objective)


def check_against_conic(sc, res):
    """Objective within 1e-7 of the certified conic optimum; tokens where not flat."""
    ref = assert_near_optimal(sc, res.tokens, rtol=1e-7)
    lo, hi = sc.min_tokens, sc.max_tokens
    width = hi - lo
    # A coordinate is pinned to 1e-3 of its box only where moving it that far
    # costs clearly more than both certified gaps (strong concavity of the
    # accuracy part: U* - U(t) >= 1/2 sum_i d_i (t_i - t*_i)^2).
    d = -(sc.probability * sc.weight) * sc.accuracy.d2(ref.tokens)
    budget = res.certificate.gap + ref.certificate.gap + 1e-12 * relative_scale(ref.objective)
    pinned = 0.5 * d * (1e-3 * width) ** 2 > 10 * budget
    off = np.abs(res.tokens - ref.tokens) > 1e-3 * width
    bad = np.flatnonzero(pinned & off)
    assert bad.size == 0, (
        f"types {bad[:5]} differ from the conic tokens by more than 1e-3 of their box: "
        f"{res.tokens[bad[:5]]} vs {ref.tokens[bad[:5]]}"
    )
    return ref


def family_blocks(rng, n):
    f = rng.uniform(0, 0.5, n)
    c = f + rng.uniform(0.05, 1, n) * (1 - f)
    tau = np.exp(rng.uniform(np.log(1.0), np.log(1e5), n))
    return [
        Exponential(floor=f, ceiling=c, scale=tau),
        Power(floor=f, ceiling=c, scale=tau, exponent=rng.uniform(0.1, 3, n)),
        Logarithmic(floor=f, gain=rng.uniform(0.01, 1, n), scale=tau),
    ]


# --- per-family marginal solvers ---------------------------------------------------
@pytest.mark.parametrize("which", [0, 1, 2], ids=["exponential", "power", "logarithmic"])
def test_solve_marginal_matches_brute_force(which):
    rng = np.random.default_rng(11 + which)
    n = 120
    fam = family_blocks(rng, n)[which]
    tau = fam.scale
    d1_0 = fam.d1(np.zeros(n))
    # alpha from far below to above A'(0) (negative roots); beta from 0 to huge
    alpha = d1_0 * np.exp(rng.uniform(-35, 5, n))
    beta = np.where(rng.random(n) < 0.2, 0.0, alpha / tau * np.exp(rng.uniform(-40, 12, n)))
    t = fam.solve_marginal(alpha, beta)
    assert np.all(np.isfinite(t))
    for i in range(n):
        one = fam.take(np.array([i]))

        def h(x, one=one, i=i):
            return one.d1(np.array([x]))[0] - alpha[i] - beta[i] * x

        left = -tau[i] * (1 - 1e-13) if which else -tau[i]
        while which == 0 and h(left) < 0:
            left *= 2
        right = tau[i]
        while h(right) > 0:
            right *= 2
        root = brentq(h, left, right, xtol=1e-300, rtol=1e-15, maxiter=500)
        assert abs(t[i] - root) <= 1e-12 * (abs(root) + tau[i]), (i, t[i], root)


def test_solve_marginal_beta_zero_is_inverse_derivative(rng):
    for fam in family_blocks(rng, 50):
        alpha = fam.d1(rng.uniform(0, 5, 50) * fam.scale)
        t = fam.solve_marginal(alpha, np.zeros(50))
        ref = fam.inv_d1(alpha)
        assert np.all(np.abs(t - ref) <= 1e-10 * np.abs(ref) + 1e-9 * fam.scale)


def test_solve_marginal_extreme_arguments():
    fam = Exponential(floor=0.1, ceiling=0.9, scale=1000.0)
    # huge omega argument (tiny beta), overflowing alpha/(beta tau), tiny argument
    alpha = np.array([1e-6, 1e-6, 1e-3, 1e-300, 5.0])
    beta = np.array([1e-300, 0.0, 1e-320, 1e-12, 1e5])
    t = fam.solve_marginal(alpha, beta)
    assert np.all(np.isfinite(t))
    resid = fam.d1(t) - alpha - beta * t
    assert np.all(np.abs(resid) <= 1e-12 * (alpha + np.abs(beta * t))), resid


def test_curves_dispatch_and_clipping(rng):
    n = 90
    blocks = family_blocks(rng, n)
    idx = rng.permutation(n)
    parts = np.array_split(idx, 3)
    curves = AccuracyCurves([(f.take(p), p) for f, p in zip(blocks, parts)], n)
    alpha = curves.d1(rng.uniform(0, 2e4, n)) * np.exp(rng.uniform(-1, 1, n))
    beta = alpha * np.exp(rng.uniform(-20, -5, n))
    free = curves.solve_marginal(alpha, beta)
    for f, p in zip(blocks, parts):
        np.testing.assert_array_equal(free[p], f.take(p).solve_marginal(alpha[p], beta[p]))
    lo = rng.uniform(0, 1e3, n)
    hi = lo + rng.uniform(0, 2e4, n)
    clipped = curves.solve_marginal(alpha, beta, t0=free * 0.9, lo=lo, hi=hi)
    np.testing.assert_allclose(clipped, np.clip(free, lo, hi), rtol=1e-11, atol=1e-9)
    assert 0 < np.sum((clipped > lo) & (clipped < hi)) < n


# --- regression against the conic reference ---------------------------------------------
@settings(max_examples=40, deadline=None)
@given(scenarios(min_n=1, max_n=6))
def test_regression_vs_conic(sc):
    res = solve_agg(sc)
    check_against_conic(sc, res)


@pytest.mark.parametrize("load", ["light", "heavy", "saturated", "overloaded"])
def test_regression_larger_n(load):
    rng = np.random.default_rng(hash(load) % 2**32)
    sc = random_scenario(rng, 300, load=load)
    res = solve_agg(sc)
    check_against_conic(sc, res)
    assert res.diagnostics["path"] == "newton"


def test_sampled_start_large_n():
    rng = np.random.default_rng(7)
    # (power curves with per-type exponents make the conic slow to compile: leave them out)
    sc = random_scenario(rng, 2000, load="heavy", families=["exponential", "logarithmic"])
    res = solve_agg(sc, sample_size=128)
    assert res.diagnostics["start"] == "sample"
    check_against_conic(sc, res)


def test_nested_fallback_gives_the_same_optimum():
    rng = np.random.default_rng(3)
    sc = random_scenario(rng, 40, load="overloaded")
    res = solve_agg(sc, max_iter=0)  # no Newton at all: bracketing only
    assert res.diagnostics["path"].startswith("nested")
    check_against_conic(sc, res)


# --- edge regimes ---------------------------------------------------------------------
def _scenario(n=4, load=0.5, gamma=0.01, seed=0, **kw):
    r = np.random.default_rng(seed)
    p = kw.pop("p", r.dirichlet(np.ones(n)))
    hi = kw.pop("hi", r.uniform(1000, 8000, n))
    a = kw.pop("base", r.uniform(0.2, 2.0, n))
    b = kw.pop("b", r.uniform(0.005, 0.02, n))
    lam = load / float(p @ (a + b * hi))
    acc = kw.pop(
        "accuracy",
        Exponential(
            floor=r.uniform(0, 0.4, n),
            ceiling=r.uniform(0.5, 1, n),
            scale=r.uniform(0.1, 0.6, n) * hi,
        ),
    )
    return cvxalloc.Scenario.from_arrays(
        probability=p,
        max_tokens=hi,
        per_token=b,
        base=a,
        accuracy=acc,
        arrival_rate=lam,
        latency_weight=gamma,
        **kw,
    )


def test_near_saturation():
    sc = _scenario(n=6, load=3.0, gamma=1e-6, scv=0.5)
    res = solve_agg(sc)
    assert res.utilization >= 0.99
    check_against_conic(sc, res)


def test_gamma_zero_puts_every_type_at_max():
    sc = _scenario(load=0.8, gamma=0.0)
    res = solve_agg(sc)
    np.testing.assert_array_equal(res.tokens, sc.max_tokens)
    assert res.certificate.gap == 0.0


def test_huge_gamma_puts_every_type_at_min():
    # (the conic reference itself reports "unbounded" at gamma = 1e9; the
    # Frank-Wolfe certificate is the ground truth here: gap 0 proves optimality)
    for gamma in (1e3, 1e9):
        sc = _scenario(load=0.8, gamma=gamma, min_tokens=np.array([0.0, 10.0, 50.0, 0.0]))
        res = solve_agg(sc)
        np.testing.assert_array_equal(res.tokens, sc.min_tokens)
        assert certify(sc, res.tokens).gap == 0.0


def test_single_type():
    sc = _scenario(n=1, load=2.0, gamma=0.01, p=np.array([1.0]))
    res = solve_agg(sc)
    check_against_conic(sc, res)


def test_identical_types_get_identical_tokens():
    n = 5
    sc = _scenario(
        n=n,
        load=1.5,
        gamma=0.01,
        p=np.full(n, 1 / n),
        hi=np.full(n, 4000.0),
        b=np.full(n, 0.01),
        base=1.0,
        accuracy=Exponential(floor=0.2, ceiling=0.9, scale=1500.0),
    )
    res = solve_agg(sc)
    assert np.ptp(res.tokens) <= 1e-9 * 4000
    check_against_conic(sc, res)


def test_one_dominant_type():
    p = np.array([1 - 1e-9, 5e-10, 5e-10])
    sc = _scenario(n=3, load=2.0, gamma=0.01, p=p)
    res = solve_agg(sc)
    check_against_conic(sc, res)


def test_bounds_active_at_both_ends():
    n = 6
    r = np.random.default_rng(5)
    acc = Exponential(
        floor=0.1,
        ceiling=np.array([0.2, 0.25, 0.9, 0.95, 0.6, 0.7]),
        scale=np.array([20.0, 30.0, 9e4, 8e4, 1500.0, 2000.0]),
    )
    sc = _scenario(
        n=n,
        load=1.2,
        gamma=2e-4,
        accuracy=acc,
        p=np.full(n, 1 / n),
        hi=np.array([6000.0, 6000.0, 500.0, 400.0, 6000.0, 6000.0]),
        min_tokens=r.uniform(100, 300, n),
    )
    res = solve_agg(sc)
    t = res.tokens
    assert np.any(t == sc.min_tokens) and np.any(t == sc.max_tokens)
    assert np.any((t > sc.min_tokens) & (t < sc.max_tokens))
    check_against_conic(sc, res)


@pytest.mark.parametrize("factor", [1e-3, 1e3])
def test_tiny_and_huge_token_scales(factor):
    base = _scenario(n=4, load=1.5, gamma=0.01, seed=2)
    sc = base.with_(
        max_tokens=base.max_tokens * factor,
        per_token=base.per_token / factor,
        accuracy=AccuracyCurves.single(
            Exponential(
                floor=0.2, ceiling=0.9, scale=np.array([500.0, 900.0, 2000.0, 3000.0]) * factor
            ),
            4,
        ),
    )
    res = solve_agg(sc)
    ref = check_against_conic(sc, res)
    unscaled = solve_agg(
        base.with_(
            accuracy=AccuracyCurves.single(
                Exponential(floor=0.2, ceiling=0.9, scale=np.array([500.0, 900.0, 2000.0, 3000.0])),
                4,
            )
        )
    )
    np.testing.assert_allclose(res.tokens / factor, unscaled.tokens, rtol=1e-6, atol=1e-6)
    assert abs(res.objective - ref.objective) <= 1e-7 * relative_scale(ref.objective)


def test_no_arrivals():
    sc = _scenario(load=0.5, gamma=0.02).with_(arrival_rate=0.0)
    res = solve_agg(sc)
    check_against_conic(sc, res)


def test_degenerate_box():
    sc = _scenario(load=0.5).with_(min_tokens=np.full(4, 500.0), max_tokens=np.full(4, 500.0))
    res = solve_agg(sc)
    np.testing.assert_array_equal(res.tokens, sc.min_tokens)


def test_every_family_with_spreads():
    rng = np.random.default_rng(17)
    for fam in ("exponential", "power", "logarithmic"):
        sc = random_scenario(rng, 30, load="overloaded", families=[fam], scv=True, variance=True)
        check_against_conic(sc, solve_agg(sc))


# --- certificate honesty, warm start, interface ------------------------------------------
def test_status_is_not_optimal_without_the_certificate():
    sc = random_scenario(np.random.default_rng(1), 50, load="heavy")
    res = cvxalloc.solve(sc, method="aggregate", tol=1e-300, polish_steps=0)
    gap = certify(sc, res.tokens).gap
    if gap > 0:
        assert res.status == st.OPTIMAL_INACCURATE
        assert "above tol" in res.message


def test_warm_start_same_answer_fewer_iterations():
    rng = np.random.default_rng(23)
    sc = random_scenario(rng, 200, load="overloaded")
    cold = solve_agg(sc)
    for warm in (cold, (cold.diagnostics["X"], cold.diagnostics["Y"])):
        again = solve_agg(sc, warm_start=warm)
        assert again.diagnostics["start"] == "warm"
        assert again.iterations < cold.iterations
        np.testing.assert_allclose(
            again.tokens, cold.tokens, rtol=1e-9, atol=1e-9 * sc.max_tokens.max()
        )
    # any method's result works as a start (its allocation's queue scalars)
    from_conic = solve_agg(sc, warm_start=cvxalloc.solve(sc, method="conic"))
    assert from_conic.iterations < cold.iterations
    np.testing.assert_allclose(
        from_conic.tokens, cold.tokens, rtol=1e-9, atol=1e-9 * sc.max_tokens.max()
    )
    # a sweep: the previous point's result starts the next one, at no more cost than a
    # cold start (which, since the cold Newton's converged point is no longer evaluated
    # twice, takes 2-4 evaluations here: a neighbour's scalars save 0-1 of them)
    nxt = sc.with_(arrival_rate=sc.arrival_rate * 1.02)
    swept = solve_agg(nxt, warm_start=cold)
    fresh = solve_agg(nxt)
    assert swept.iterations <= fresh.iterations
    assert abs(swept.objective - fresh.objective) <= 1e-9 * relative_scale(fresh.objective)


def test_predicted_start_between_solved_rates():
    """The start a policy's grid takes: fitted through neighbouring optima (exact at
    their rates), and from it the same optimum as a cold solve."""
    from cvxalloc.solvers.aggregate import predicted_start, scalars_at

    sc = random_scenario(np.random.default_rng(5), 300, load="heavy")
    rates = [0.8 * sc.arrival_rate, sc.arrival_rate, 1.3 * sc.arrival_rate]
    known = [(r, solve_agg(sc.with_arrival_rate(r))) for r in rates]
    u, m2 = predicted_start(known, rates[1])
    assert u == pytest.approx(known[1][1].diagnostics["u"], rel=1e-10)
    assert m2 == pytest.approx(known[1][1].diagnostics["m2"], rel=1e-10)
    assert predicted_start(known[:1], rates[1]) is None
    mid = sc.with_arrival_rate(1.1 * sc.arrival_rate)
    warm = solve_agg(mid, warm_start=scalars_at(mid, *predicted_start(known, 1.1 * rates[1])))
    cold = solve_agg(mid)
    assert warm.status == cold.status == st.OPTIMAL and warm.diagnostics["start"] == "warm"
    np.testing.assert_allclose(warm.tokens, cold.tokens, rtol=1e-9, atol=1e-9 * sc.max_tokens.max())


def test_warm_options_is_the_one_rule_for_a_warm_start():
    """Policies, controllers and sweeps pass a warm start only where it applies."""
    from cvxalloc.solve import warm_options

    sc = cvxalloc.example_scenario()
    prev = cvxalloc.solve(sc)
    nxt = sc.with_(arrival_rate=1.1 * sc.arrival_rate)
    assert warm_options(nxt, prev) == {"warm_start": prev}  # aggregate takes one
    assert warm_options(nxt, prev, "gradient") == {"warm_start": prev}
    assert warm_options(nxt, prev, "conic") == {}  # conic takes none
    assert warm_options(nxt, None) == {}
    assert warm_options(sc.with_(arrival_rate=0.0), prev) == {}  # no queue to start from
    again = cvxalloc.solve(nxt, **warm_options(nxt, prev))
    assert again.diagnostics["start"] == "warm"


def test_bad_warm_start_and_options_raise():
    sc = _scenario()
    with pytest.raises(ValueError, match="warm_start"):
        cvxalloc.solve(sc, method="aggregate", warm_start=(-1.0, 2.0))
    with pytest.raises(ValueError, match="warm_start"):
        cvxalloc.solve(sc, method="aggregate", warm_start="fast")
    with pytest.raises(ValueError, match="does not take"):
        cvxalloc.solve(sc, method="aggregate", solver="CLARABEL")
    with pytest.raises(ValueError, match="tol"):
        cvxalloc.solve(sc, method="aggregate", tol=0.0)


def test_diagnostics_and_json(example):
    res = solve_agg(example)
    d = res.diagnostics
    for key in ("X", "Y", "utilization", "path", "start", "newton_iterations"):
        assert key in d
    # Poisson arrivals: A = 1 + Y and B = X
    A, B, _ = Objective(example).latency.scalars(res.tokens)
    assert d["X"] == pytest.approx(B, rel=1e-12)
    assert d["Y"] == pytest.approx(A - 1.0, rel=1e-12)
    out = res.to_dict()
    assert out["method"] == "aggregate" and out["status"] == "optimal"
    assert out["certificate"]["gap"] <= TOL * abs(out["objective"])


@pytest.mark.parametrize("load", ["saturated", "overloaded"])
def test_optimum_on_the_edge_of_the_slack_bracket(load):
    # N = 1 and small N with the optimum at max_tokens or near saturation: the
    # Newton step points out of the bracket at its edge (an early bug raised here).
    rng = np.random.default_rng(22)
    for _ in range(12):
        sc = random_scenario(
            rng,
            int(rng.integers(1, 4)),
            load=load,
            latency_weight=float(np.exp(rng.uniform(-18, -4))),
        )
        check_against_conic(sc, solve_agg(sc))


@pytest.mark.parametrize("seed", [5, 8])
def test_solve_near_reuses_the_types_and_finds_the_optimum(seed):
    # a sweep over rates builds the per-type parts once (Reduced.of) and re-targets only
    # the queue; each answer must be the certified optimum at its own rate
    from cvxalloc.solvers.aggregate import predicted_start, solve_near
    from cvxalloc.solvers.reduction import Reduced

    sc = random_scenario(np.random.default_rng(seed), 300, load="heavy")
    top = 0.999 * sc.max_stable_arrival_rate(sc.min_tokens)
    red = Reduced.of(sc)
    solved = [(r, cvxalloc.solve(sc.with_arrival_rate(r))) for r in (0.2 * top, 0.6 * top)]
    for rate in (0.3 * top, 0.5 * top, 0.9 * top):
        at = sc.with_arrival_rate(rate)
        res = solve_near(at, red, predicted_start(solved, rate))
        ref = cvxalloc.solve(at)
        assert res is not None and res.status == st.OPTIMAL and ref.status == st.OPTIMAL
        assert res.certificate.within(1e-9)
        assert abs(res.objective - ref.objective) <= res.certificate.gap + ref.certificate.gap
        np.testing.assert_allclose(res.tokens, ref.tokens, rtol=1e-7, atol=1e-6)
    # where it does not apply, None (the caller solves from scratch)
    flat = sc.with_(latency_weight=0.0, arrival_rate=0.0)
    assert solve_near(flat, Reduced.of(flat), (0.5, 1.0)) is None
