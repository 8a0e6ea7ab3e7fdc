"""The simulator against the Pollaczek-Khinchine formula, the accuracy model and Ciw."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
from conftest import small_scenario
from scipy import special

import cvxalloc
from cvxalloc.errors import ScenarioError, UnstableError
from cvxalloc.simulate import (
    SimulationResult,
    TypeSampler,
    batch_means_interval,
    lindley_waits,
    sample_service,
    service_distribution,
    simulate,
)

QUERIES = 3_000_000


def _at_load(sc, tokens, rho):
    """The scenario with the arrival rate that gives utilization ``rho`` at ``tokens``."""
    return sc.with_(arrival_rate=rho * sc.max_stable_arrival_rate(tokens))


def _cases():
    ex = cvxalloc.example_scenario()
    lo = ex.min_tokens
    mid = 0.5 * (ex.min_tokens + ex.max_tokens)
    det = small_scenario(n=4, seed=3)  # k = v = 0: deterministic per type
    mixed = small_scenario(n=6, seed=5).with_(
        scv=np.array([0.0, 0.2, 1.0, 2.5, 0.5, 0.0]),
        variance=np.array([0.0, 0.5, 0.0, 1.0, 4.0, 2.0]),
    )
    hi_det = det.max_tokens
    t_mixed = 0.3 * mixed.max_tokens
    return {
        "example-rho0.5-min": (_at_load(ex, lo, 0.5), lo),
        "example-rho0.9-mid": (_at_load(ex, mid, 0.9), mid),
        "deterministic-rho0.7": (_at_load(det, hi_det, 0.7), hi_det),
        "deterministic-rho0.9": (_at_load(det, hi_det, 0.9), hi_det),
        "mixed-spread-rho0.8": (_at_load(mixed, t_mixed, 0.8), t_mixed),
        "mixed-spread-rho0.3": (_at_load(mixed, t_mixed, 0.3), t_mixed),
    }


CASES = _cases()


@pytest.fixture(scope="module")
def runs():
    return {
        name: simulate(sc, t, queries=QUERIES, seed=11 + i)
        for i, (name, (sc, t)) in enumerate(CASES.items())
    }


@pytest.mark.parametrize("name", list(CASES))
def test_pk_inside_simulated_interval(runs, name):
    sim = runs[name]
    sc, t = CASES[name]
    assert sim.utilization_model == pytest.approx(sc.utilization(t))
    low, high = sim.mean_system_time_ci
    assert low < sim.mean_system_time < high
    assert low <= sim.mean_system_time_model <= high, (name, sim.summary())
    # the interval is informative: a few percent of the mean at most
    assert high - low < 0.06 * sim.mean_system_time


@pytest.mark.parametrize("name", list(CASES))
def test_realized_accuracy_and_utility_inside_interval(runs, name):
    sim = runs[name]
    assert sim.accuracy_within_ci(), (name, sim.summary())
    ulo, uhi = sim.utility_ci
    assert ulo <= sim.utility_model <= uhi, (name, sim.summary())
    # realized utilization matches rho (busy fraction of a long run)
    assert sim.utilization == pytest.approx(sim.utilization_model, rel=0.02)


def test_percentiles_ordered_and_waiting_time(runs):
    for sim in runs.values():
        p = sim.percentiles
        assert 0 <= p["p50"] <= p["p95"] <= p["p99"]
        assert sim.mean_waiting_time < sim.mean_system_time
    # deterministic service at rho 0.9: PK waiting time lam m2 / (2 (1 - rho))
    sc, t = CASES["deterministic-rho0.9"]
    sim = runs["deterministic-rho0.9"]
    s = sc.service_time(t)
    wq = sc.arrival_rate * float(sc.probability @ s**2) / (2 * (1 - sc.utilization(t)))
    assert sim.mean_waiting_time == pytest.approx(wq, rel=0.03)


def test_same_seed_same_numbers():
    sc, t = CASES["mixed-spread-rho0.8"]
    a = simulate(sc, t, queries=200_000, seed=7, chunk_size=50_000).to_dict()
    b = simulate(sc, t, queries=200_000, seed=7, chunk_size=50_000).to_dict()
    c = simulate(sc, t, queries=200_000, seed=8, chunk_size=50_000).to_dict()
    for d in (a, b, c):
        d.pop("elapsed_seconds")
        d.pop("queries_per_second")
    assert a == b
    assert a["mean_system_time"] != c["mean_system_time"]


def test_lindley_matches_loop_across_chunks(rng):
    gaps = rng.exponential(1.0, 5000)
    serv = rng.gamma(2.0, 0.45, 5000)
    w, out = 0.0, np.empty(5000)
    prev_s = 0.0
    for n in range(5000):
        w = max(0.0, w + prev_s - gaps[n])
        out[n] = w
        prev_s = serv[n]
    pieces, pw, ps = [], 0.0, 0.0
    for lo in range(0, 5000, 777):
        wait = lindley_waits(gaps[lo : lo + 777], serv[lo : lo + 777], pw, ps)
        pw, ps = wait[-1], serv[lo : lo + 777][-1]
        pieces.append(wait)
    np.testing.assert_allclose(np.concatenate(pieces), out, rtol=1e-12, atol=1e-9)
    assert np.all(out >= 0) and np.any(out == 0) and np.any(out > 0)


@pytest.mark.parametrize("k, v", [(0.3, 0.0), (2.0, 0.5), (0.0, 1.5), (0.05, 0.0)])
def test_gamma_matches_model_moments(rng, k, v):
    s = np.array([3.0])
    shape, scale, det = service_distribution(s, np.array([k]), np.array([v]))
    assert not det[0]
    n = 1_000_000
    x = sample_service(rng, np.zeros(n, dtype=np.intp), s, shape, scale, det)
    m2_model = (1 + k) * s[0] ** 2 + v

    def moment(r):  # exact gamma moments E S^r
        a, th = shape[0], scale[0]
        return th**r * math.exp(special.gammaln(a + r) - special.gammaln(a))

    assert moment(1) == pytest.approx(s[0])
    assert moment(2) == pytest.approx(m2_model)
    se1 = math.sqrt((moment(2) - moment(1) ** 2) / n)
    se2 = math.sqrt((moment(4) - moment(2) ** 2) / n)
    assert abs(x.mean() - s[0]) < 5 * se1
    assert abs(np.mean(x**2) - m2_model) < 5 * se2
    assert x.min() > 0


def test_deterministic_service_is_constant(rng):
    s = np.array([1.5, 2.5])
    shape, scale, det = service_distribution(s, np.zeros(2), np.zeros(2))
    assert det.all()
    types = rng.integers(0, 2, 1000)
    np.testing.assert_array_equal(sample_service(rng, types, s, shape, scale, det), s[types])
    # mixed: type 0 constant, type 1 gamma
    shape, scale, det = service_distribution(s, np.array([0.0, 1.0]), np.zeros(2))
    x = sample_service(rng, types, s, shape, scale, det)
    assert np.all(x[types == 0] == 1.5)
    assert np.unique(x[types == 1]).size == np.sum(types == 1)


def test_invalid_inputs():
    sc, t = CASES["example-rho0.5-min"]
    with pytest.raises(UnstableError, match="unstable"):
        simulate(sc.with_(arrival_rate=1.01 * sc.max_stable_arrival_rate(t)), t, queries=1000)
    bad = t.copy()
    bad[0] = sc.max_tokens[0] + 10
    with pytest.raises(ScenarioError, match=sc.names[0]):
        simulate(sc, bad, queries=1000)
    with pytest.raises(ScenarioError, match="arrival_rate"):
        simulate(sc.with_(arrival_rate=0.0), t, queries=1000)
    with pytest.raises(ScenarioError, match="batch"):
        simulate(sc, t, queries=20, warmup=0, batches=30)
    with pytest.raises(ScenarioError, match="variance"):
        service_distribution(np.array([0.0]), np.array([0.0]), np.array([1.0]))


def test_accepts_result_and_reports_json(example, example_optimum):
    sim = simulate(example, example_optimum, queries=100_000, seed=3)
    d = sim.to_dict()
    assert list(d["tokens"]) == example.names
    assert d["tokens"]["math"] == pytest.approx(float(example_optimum.tokens[2]))
    assert d["mean_system_time_model"] == pytest.approx(example_optimum.mean_system_time)
    assert len(d["mean_system_time_ci"]) == 2
    import json

    json.dumps(d, allow_nan=False)


def _ciw_system_times(sc, t, customers, seed):
    ciw = pytest.importorskip("ciw")
    s = sc.service_time(t)
    shape, scale, det = service_distribution(s, sc.scv, sc.variance)
    classes = [f"Class {i}" for i in range(sc.n)]
    arrivals = {
        c: [ciw.dists.Exponential(rate=sc.arrival_rate * float(sc.probability[i]))]
        for i, c in enumerate(classes)
    }
    services = {
        c: [
            ciw.dists.Deterministic(value=float(s[i]))
            if det[i]
            else ciw.dists.Gamma(shape=float(shape[i]), scale=float(scale[i]))
        ]
        for i, c in enumerate(classes)
    }
    net = ciw.create_network(
        arrival_distributions=arrivals, service_distributions=services, number_of_servers=[1]
    )
    ciw.seed(seed)
    q = ciw.Simulation(net)
    q.simulate_until_max_customers(customers, method="Finish")
    recs = sorted(q.get_all_records(), key=lambda r: r.arrival_date)
    return np.array([r.exit_date - r.arrival_date for r in recs])


def test_agrees_with_ciw():
    """An independent simulator (Ciw) of the same M/G/1 agrees within the intervals."""
    ex = cvxalloc.example_scenario().take([0, 3])
    t = np.array([1500.0, 4000.0])
    sc = _at_load(ex, t, 0.6)
    times = _ciw_system_times(sc, t, customers=30_000, seed=5)
    warm = times.size // 10
    c_mean, (c_lo, c_hi) = batch_means_interval(times[warm:], batches=20)
    ours = simulate(sc, t, queries=QUERIES, seed=5)
    lo, hi = ours.mean_system_time_ci
    # the two intervals overlap and each brackets the other's estimate
    assert c_lo <= ours.mean_system_time <= c_hi
    assert max(lo, c_lo) <= min(hi, c_hi)
    assert c_lo <= ours.mean_system_time_model <= c_hi
    # the waiting-time distribution agrees too (median, within a few percent)
    assert np.median(times[warm:]) == pytest.approx(ours.percentiles["p50"], rel=0.05)


def test_batch_means_interval_covers_iid_mean(rng):
    x = rng.normal(2.0, 1.0, 100_000)
    mean, (lo, hi) = batch_means_interval(x, batches=25)
    assert lo < 2.0 < hi and lo < mean < hi
    with pytest.raises(ScenarioError):
        batch_means_interval(x[:10], batches=25)


@pytest.mark.parametrize("n", [1, 5, 12, 300])
def test_type_frequencies_match_probabilities(rng, n):
    """Both samplers (binary search for few types, alias table for many) draw p."""
    p = rng.dirichlet(np.ones(n))
    draw = TypeSampler(p)
    assert (draw.prob is None) == (n <= TypeSampler.SEARCH_MAX)
    m = 2_000_000
    x = draw(rng, m)
    assert x.min() >= 0 and x.max() < n
    freq = np.bincount(x, minlength=n) / m
    se = np.sqrt(p * (1 - p) / m) + 1e-300
    # every type within 5 standard errors; chi-square within its 99.99% quantile
    assert np.all(np.abs(freq - p) <= 5 * se + (p == 1))
    if n > 1:
        from scipy import stats

        chi2 = float(np.sum((freq - p) ** 2 * m / p))
        assert chi2 < stats.chi2.ppf(0.9999, n - 1)


def test_progress_bar_only_when_asked(capsys):
    sc, t = CASES["example-rho0.5-min"]
    a = simulate(sc, t, queries=300_000, seed=2, chunk_size=100_000, progress=True)
    err = capsys.readouterr().err
    assert "simulate" in err and "query" in err
    b = simulate(sc, t, queries=300_000, seed=2, chunk_size=100_000)  # stderr not a terminal
    assert capsys.readouterr().err == ""
    assert a.mean_system_time == b.mean_system_time


def assert_same_fields(again, x):
    """``again`` equals ``x`` field by field: arrays with their dtype, NaN equal to NaN."""
    assert type(again) is type(x)

    def same(a, b, where):
        if isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray) and a.dtype == b.dtype, where
            np.testing.assert_array_equal(a, b, err_msg=where)
        elif isinstance(b, dict):
            assert isinstance(a, dict) and list(a) == list(b), where
            for k in b:
                same(a[k], b[k], f"{where}[{k!r}]")
        elif isinstance(b, (list, tuple)):
            assert type(a) is type(b) and len(a) == len(b), where
            for i, (u, v) in enumerate(zip(a, b)):
                same(u, v, f"{where}[{i}]")
        elif isinstance(b, float) and math.isnan(b):
            assert isinstance(a, float) and math.isnan(a), where
        else:
            assert a == b, f"{where}: {a!r} != {b!r}"

    for f in dataclasses.fields(x):
        same(getattr(again, f.name), getattr(x, f.name), f.name)


def test_repr_rebuilds_the_simulation_result():
    sc, t = CASES["example-rho0.5-min"]
    sim = simulate(sc, t, queries=20_000, seed=4, batches=7, chunk_size=3_000)
    text = repr(sim)
    assert text.startswith("SimulationResult(tokens=np.array([")
    assert_same_fields(eval(text, {"np": np, "SimulationResult": SimulationResult}), sim)
    # non-finite numbers and other dtypes read back too
    odd = dataclasses.replace(
        sim,
        mean_system_time_ci=(-math.inf, math.inf),
        utility_model=math.nan,
        seed=None,
        batch_means={"system": np.array([1, 2], dtype=np.int32), "score": np.array([])},
    )
    assert_same_fields(eval(repr(odd), {"np": np, "SimulationResult": SimulationResult}), odd)


@pytest.mark.parametrize("limit", [None, 4])
def test_repr_rebuilds_the_batching_simulation(limit):
    from importlib import resources

    from cvxalloc.simulate import BatchingSimulation, simulate_batching

    sc = cvxalloc.load_scenario(resources.files("cvxalloc") / "data/example_batching.toml")
    sim = simulate_batching(sc, sc.min_tokens, queries=5_000, seed=2, limit=limit)
    again = eval(repr(sim), {"np": np, "BatchingSimulation": BatchingSimulation})
    assert_same_fields(again, sim)


def test_huge_weights_do_not_overflow_the_accuracy_interval(example):
    # issue 22: a weight of 1e300 squared overflowed the accuracy's variance (a traceback
    # from cvxalloc simulate); the sums are kept in units of the largest score
    w = example.weight.copy()
    w[0] = 1e300
    lo = example.min_tokens.copy()
    lo[0] = 1.0
    sc = example.with_(weight=w, min_tokens=lo)
    tokens = cvxalloc.solve(sc).tokens
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on the way either
        sim = simulate(sc, tokens, queries=20_000, seed=1)
    low, high = sim.accuracy_ci
    assert np.isfinite(sim.accuracy) and low < sim.accuracy < high
    assert np.all(np.isfinite(sim.utility_ci))
    assert sim.accuracy == pytest.approx(sim.accuracy_model, rel=0.1)
    assert "2.4" in sim.summary() and "e+299" in sim.summary()  # 6 significant digits
