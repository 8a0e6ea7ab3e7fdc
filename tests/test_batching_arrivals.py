"""The batching server with bursty arrivals and the engine's admission limit (queue/occupancy.py).

Independent references: the balance equations of the batch-Poisson chain solved as a
linear system, closed forms (M^X/M/1, Pollaczek-Khinchine, Erlang C), exact rational
arithmetic at light load, finite differences, and short seeded simulations.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cvxalloc
from cvxalloc.errors import ScenarioError
from cvxalloc.queue import BatchingQueue, BatchingServer, Latency, capacity_curve
from cvxalloc.queue.occupancy import Occupancy
from cvxalloc.simulate import batch_means_interval
from cvxalloc.simulate_batching import system_times

PUBLISHED = ([1, 4, 8, 16, 32, 48], [1.0, 3.82, 6.85, 11.7, 17.7, 21.6])
CASES = Path(__file__).parent / "data" / "cases"


def _balance(curve, x: float, ca2: float, K, cs: float = 1.0, n_max: int = 3000):
    """``E[N]`` and ``E[(N - K)^+]`` from the generator of the truncated chain (a linear solve).

    Batches of geometric size (mean ``(c_a^2 + c_s^2) / (1 + c_s^2)``) arrive as a
    Poisson process; work is exponential (mean 1), so with ``n`` in the system the
    departure rate is ``c(min(n, K))``; offered work ``x`` queries-alone per second.
    """
    b = (ca2 + cs) / (1.0 + cs)
    p = 1.0 / b
    lam_b = x / b  # batch rate: x queries per unit time on average
    n = np.arange(n_max + 1)
    c = curve.rate(np.minimum(n, K if K else n_max))
    Q = np.zeros((n_max + 1, n_max + 1))
    for i in range(n_max + 1):
        if i > 0:
            Q[i, i - 1] = c[i]
        k = np.arange(1, n_max - i + 1)
        if k.size:
            prob = p * (1 - p) ** (k - 1)
            prob[-1] += (1 - p) ** k[-1]  # lump the overflow into the last state
            Q[i, i + k] = lam_b * prob
        Q[i, i] = -Q[i].sum()
    A = Q.T.copy()
    A[-1] = 1.0
    rhs = np.zeros(n_max + 1)
    rhs[-1] = 1.0
    pi = np.linalg.solve(A, rhs)
    return float(pi @ n), float(pi @ np.maximum(n - (K or n_max), 0))


@pytest.mark.parametrize("ca2", [3.0, 9.0])
@pytest.mark.parametrize("K", [None, 4, 16])
@pytest.mark.parametrize("frac", [0.2, 0.7])
def test_chain_matches_its_balance_equations(ca2, K, frac):
    curve = capacity_curve(*PUBLISHED)
    occ = Occupancy(curve, ca2, K, 1.0)
    x = frac * occ.capacity
    en, q = _balance(curve, x, ca2, K, n_max=900)
    assert float(occ.profile(1 - frac, x)[0][0]) == pytest.approx(en, rel=1e-9)
    if K:
        # service_scv 3: G = E[N] + (g Q + (1 - g) Q_P), the Lee-Longton weight
        # (c_s^2 - 1) / 2 = 1 on the waiting count Q of its own batches, damped on their
        # excess over the Poisson chain's Q_P by g = 1 - (1 - r)^2, r = frac the utilization
        occ2 = Occupancy(curve, ca2, K, 3.0)
        en2, q2 = _balance(curve, x, ca2, K, cs=3.0, n_max=900)
        _, qp = _balance(curve, x, 1.0, K, cs=3.0, n_max=900)
        g = 1.0 - (1.0 - frac) ** 2
        expected = en2 + g * q2 + (1.0 - g) * qp
        assert float(occ2.profile(1 - frac, x)[0][0]) == pytest.approx(expected, rel=1e-9)


@given(
    ca2=st.sampled_from([0.0, 0.3, 1.0, 2.0, 9.0, 173.0]),
    K=st.sampled_from([None, 1, 4, 48, 100]),
    cs=st.sampled_from([0.0, 0.5, 1.0, 4.85]),
    rho=st.floats(0.001, 0.995),
)
def test_derivatives_match_finite_differences(ca2, K, cs, rho):
    occ = Occupancy(capacity_curve(*PUBLISHED), ca2, K, cs)
    cap = occ.capacity
    x = rho * cap
    h = 1e-4 * min(x, cap - x)

    def at(y):
        return [float(v[0]) for v in occ.profile(1 - y / cap, y)]

    g, g1, g2 = at(x)
    up, down = at(x + h), at(x - h)
    assert g1 == pytest.approx((up[0] - down[0]) / (2 * h), rel=1e-6)
    assert g2 == pytest.approx((up[1] - down[1]) / (2 * h), rel=1e-5, abs=1e-9 * g1 / x)
    if ca2 != 1.0:
        dc = 1e-5 * max(ca2, 1.0)
        hi, lo = (Occupancy(occ.curve, ca2 + s * dc, K, cs) for s in (1, -1))
        gc, g1c = (float(v[0]) for v in occ.arrival_scv_partials(1 - rho, x))
        fd = [
            (float(a[0]) - float(b[0])) / (2 * dc)
            for a, b in zip(hi.profile(1 - rho, x), lo.profile(1 - rho, x))
        ]
        assert gc == pytest.approx(fd[0], rel=1e-4, abs=1e-10 * g)
        assert g1c == pytest.approx(fd[1], rel=1e-4, abs=1e-8)


def test_poisson_without_a_limit_is_the_processor_sharing_model():
    """arrival_scv = 1 and no max_running: the product form, the same code path, bit for bit."""
    curve = capacity_curve(*PUBLISHED)
    for cs in (0.3, 1.0, 7.0):
        q = BatchingQueue(0.4, curve=curve, service_scv=cs)
        assert q.occupancy.plain
        for m1 in (1e-3, 10.0, 50.0):
            x = 0.4 * m1
            assert q.value(m1) == curve.g(x) / 0.4
    # a limit at or above the last point changes nothing for exponential work either
    assert BatchingQueue(0.4, curve=curve, max_running=48).value(30.0) == curve.g(12.0) / 0.4


@pytest.mark.parametrize("ca2", [1.0, 4.0, 40.0])
@pytest.mark.parametrize("rho", [0.1, 0.6, 0.95])
def test_one_stream_is_the_batch_poisson_single_server(ca2, rho):
    """c = 1: M^X/M/1 (``E[N] = rho (1 + c_a^2) / (2 (1 - rho))``); P-K with service_scv."""
    m1 = 2.0
    lam = rho / m1
    q = BatchingQueue(lam, [1], [1.0], arrival_scv=ca2)
    assert q.value(m1) == pytest.approx(m1 * (1 + ca2) / (2 * (1 - rho)), rel=1e-12)
    if ca2 == 1.0:
        for cs in (0.0, 2.5):  # one query at a time, FIFO: Pollaczek-Khinchine
            fifo = BatchingQueue(lam, [1], [1.0], max_running=1, service_scv=cs)
            pk = m1 + lam * (1 + cs) * m1 * m1 / (2 * (1 - rho))
            assert fifo.value(m1) == pytest.approx(pk, rel=1e-12)


@pytest.mark.parametrize("rho", [0.3, 0.8, 0.97])
def test_linear_curve_with_a_limit_is_erlang_c(rho):
    """c(n) = n up to K = 8, Poisson, exponential work: M/M/8, W = m1 + C(8, x) m1 / (8 - x)."""
    K, m1 = 8, 3.0
    x = rho * K
    q = BatchingQueue(x / m1, [1, 16], [1.0, 16.0], max_running=K)
    assert q.capacity == 8.0
    terms = [x**k / math.factorial(k) for k in range(K)]
    top = x**K / math.factorial(K) * K / (K - x)
    erlang_c = top / (sum(terms) + top)
    assert q.value(m1) == pytest.approx(m1 + erlang_c * m1 / (K - x), rel=1e-12)


def _exact_w(curve, lam: Fraction, m1: Fraction, terms: int = 14) -> float:
    """``E[N] / lam`` of the Poisson product form in rational arithmetic (tail below 1e-40)."""
    x = lam * m1
    conc = [Fraction(k) for k in curve.concurrency]
    speed = [Fraction(s) for s in curve.speedup]

    def c(n):
        for j in range(1, len(conc)):
            if n <= conc[j]:
                return speed[j - 1] + (speed[j] - speed[j - 1]) * (n - conc[j - 1]) / (
                    conc[j] - conc[j - 1]
                )
        return speed[-1]

    weight, z, en = Fraction(1), Fraction(1), Fraction(0)
    for n in range(1, terms):
        weight *= x / c(n)
        z += weight
        en += n * weight
    return float(en / z / lam)


@pytest.mark.parametrize("lam", [1e-3, 1e-7, 1e-9])
def test_light_load_is_exact_to_a_few_ulps(lam):
    """Issue 22: W was off by 1e-8 relative at lam = 1e-9 (x = c_max (1 - u) lost its digits)."""
    curve = capacity_curve(*PUBLISHED)
    q = BatchingQueue(lam, curve=curve)
    for m1 in (0.37, 12.5, 300.0):
        exact = _exact_w(curve, Fraction(lam), Fraction(m1))
        assert abs(q.value(m1) - exact) <= 4 * math.ulp(exact)
        assert abs(float(q.value(np.array([m1]))[0]) - exact) <= 4 * math.ulp(exact)


def test_light_load_reproducer_certificate_holds():
    """Issue 22 (c2_seed101): the optimum at offered work 7.8e-5; U's true value under the bound."""
    sc = cvxalloc.Scenario.from_dict(json.loads((CASES / "c2_seed101_batching.json").read_text()))
    res = cvxalloc.solve(sc)
    t = res.tokens
    s = [
        Fraction(float(a)) + Fraction(float(b)) * Fraction(float(tt))
        for a, b, tt in zip(sc.base, sc.per_token, t)
    ]
    m1 = sum(Fraction(float(p)) * si for p, si in zip(sc.probability, s))
    w = _exact_w(sc.server.curve, Fraction(sc.arrival_rate), m1)
    acc = float(sc.probability @ (sc.weight * sc.accuracy.value(t)))
    u_true = acc - sc.latency_weight * w
    assert res.mean_system_time == pytest.approx(w, rel=8 * np.finfo(float).eps)
    assert u_true <= res.certificate.upper_bound + 4 * np.finfo(float).eps * abs(u_true)


def test_a_limit_below_the_last_point_caps_the_capacity():
    sc = cvxalloc.load_scenario(Path(cvxalloc.__file__).parent / "data" / "example_batching.toml")
    limited = sc.with_(server={**sc.server.to_dict(), "max_running": 16})
    assert limited.capacity == 11.7 and limited.server.max_running == 16
    t = limited.min_tokens
    assert limited.utilization(t) == pytest.approx(sc.utilization(t) * 21.6 / 11.7, rel=1e-14)
    q = Latency(limited).queue
    m1 = 11.7 / limited.arrival_rate
    assert q.value(m1 * 0.999) < math.inf and q.value(m1) == math.inf


def test_server_table_round_trip_with_the_new_keys(example):
    table = {
        "model": "batching",
        "concurrency": PUBLISHED[0],
        "speedup": PUBLISHED[1],
        "max_running": 48,
        "service_scv": 4.85,
    }
    sc = example.with_(server=table, arrival_scv=9.0)
    assert sc.to_dict()["server"] == table
    back = cvxalloc.Scenario.from_dict(sc.to_dict())
    assert back.server == sc.server == BatchingServer(capacity_curve(*PUBLISHED), 48, 4.85)
    assert eval(repr(sc), {"Scenario": cvxalloc.Scenario}).to_dict() == sc.to_dict()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"max_running": 0}, "whole number >= 1"),
        ({"max_running": 2.5}, "whole number >= 1"),
        ({"max_running": "48"}, "whole number >= 1"),
        ({"max_running": 1 << 15}, "above 16384"),
        ({"service_scv": -1.0}, "service_scv must be between 0"),
        ({"service_scv": float("nan")}, "service_scv must be between 0"),
        ({"max_runing": 8}, 'did you mean "max_running"'),
    ],
)
def test_bad_server_values_are_refused_naming_the_field(example, extra, needle):
    table = {"model": "batching", "concurrency": PUBLISHED[0], "speedup": PUBLISHED[1], **extra}
    with pytest.raises(ScenarioError, match=needle):
        example.with_(server=table)


def test_single_server_refuses_batching_keys(example):
    with pytest.raises(ScenarioError, match='model = "batching" only'):
        example.with_(server={"model": "single", "max_running": 4})


def test_a_combination_that_is_not_convex_is_refused(example):
    """Smooth arrivals, deterministic service and a limit can bend G the wrong way."""
    server = {
        "model": "batching",
        "concurrency": [1, 5, 30, 38],
        "speedup": [1.0, 2.306, 3.527, 4.173],
        "max_running": 38,
        "service_scv": 0.0,
    }
    with pytest.raises(ScenarioError, match="not convex.*raise service_scv"):
        example.with_(server=server, arrival_scv=0.5)
    example.with_(server={**server, "service_scv": 1.0}, arrival_scv=0.5)  # accepted


def _simulate(curve, lam, ca2, limit, work, rng):
    gaps = (
        rng.exponential(1 / lam, work.size)
        if ca2 == 1
        else rng.gamma(1 / ca2, ca2 / lam, work.size)
    )
    T = system_times(gaps, work, curve, limit)
    return batch_means_interval(T[work.size // 10 :], 20, 0.99)


def test_bursty_renewal_arrivals_against_simulation():
    """Gamma gaps (c_a^2 = 9), exponential work (the model's reference): within 12%."""
    rng = np.random.default_rng(5)
    curve = capacity_curve(*PUBLISHED)
    m1, n = 20.0, 300_000
    for rho in (0.3, 0.7):
        lam = rho * curve.capacity / m1
        mean, ci = _simulate(curve, lam, 9.0, None, rng.exponential(m1, n), rng)
        model = BatchingQueue(lam, curve=curve, arrival_scv=9.0).value(m1)
        poisson = BatchingQueue(lam, curve=curve).value(m1)
        assert abs(model / mean - 1) < 0.12
        assert abs(poisson / mean - 1) > 2 * abs(model / mean - 1)  # and far better than P-K


@pytest.mark.parametrize("scv", [0.0, 4.0])
def test_admission_limit_against_simulation(scv):
    """Poisson, at most 48 decoding, gamma work of scv 0 and 4 at utilization 0.85: within 10%."""
    rng = np.random.default_rng(11)
    curve = capacity_curve(*PUBLISHED)
    m1, n, rho = 20.0, 400_000, 0.85
    lam = rho * curve.capacity / m1
    work = np.full(n, m1) if scv == 0 else rng.gamma(1 / scv, scv * m1, n)
    mean, ci = _simulate(curve, lam, 1.0, 48, work, rng)
    model = BatchingQueue(lam, curve=curve, max_running=48, service_scv=scv).value(m1)
    assert abs(model / mean - 1) < 0.10


def test_bursts_with_a_limit_against_simulation():
    """Gamma gaps of scv 100, at most 48 decoding, gamma work of scv 4.85 (the batching
    example's mix) at utilization 0.3: within 10% (the Lee-Longton weight undamped on the
    bursts' excess put it 16% high; 2 x 10^6 queries, 99% interval about 2.5%)."""
    rng = np.random.default_rng(4)
    curve = capacity_curve(*PUBLISHED)
    m1, n, cs, ca2 = 20.0, 2_000_000, 4.85, 100.0
    lam = 0.3 * curve.capacity / m1
    work = rng.gamma(1 / cs, cs * m1, n)
    gaps = rng.gamma(1 / ca2, ca2 / lam, n)
    mean, ci = batch_means_interval(system_times(gaps, work, curve, 48)[n // 10 :], 20, 0.99)
    q = BatchingQueue(lam, curve=curve, arrival_scv=ca2, max_running=48, service_scv=cs)
    assert ci[1] - ci[0] < 0.06 * mean  # the simulation resolves the difference
    assert abs(q.value(m1) / mean - 1) < 0.10


def test_change_is_cancellation_free_with_bursts_and_a_limit():
    """``W(m1 + d) - W(m1)``: resolved at d = 1e-12 (the plain difference is off by 0.3%)."""
    q = BatchingQueue(
        0.3, curve=capacity_curve(*PUBLISHED), arrival_scv=9.0, max_running=16, service_scv=3.0
    )
    m1 = 20.0
    slope = q.derivatives(m1)[0]
    tiny = float(q.change(m1, 0.0, np.array([1e-12]))[0])
    assert tiny == pytest.approx(slope * 1e-12, rel=1e-10)
    big = float(q.change(m1, 0.0, np.array([1.0]))[0])
    assert big == pytest.approx(q.value(m1 + 1.0) - q.value(m1), rel=1e-12)
    parts = q.parameter_partials(m1)["arrival_scv"]
    up = BatchingQueue(0.3, curve=q.curve, arrival_scv=9.001, max_running=16, service_scv=3.0)
    down = BatchingQueue(0.3, curve=q.curve, arrival_scv=8.999, max_running=16, service_scv=3.0)
    assert parts[0] == pytest.approx((up.value(m1) - down.value(m1)) / 0.002, rel=1e-6)
