"""The batching queue model: E[N] against brute-force sums, exact derivatives, convexity check."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cvxalloc
from cvxalloc.errors import ScenarioError
from cvxalloc.queue import BatchingQueue, CapacityCurve, Latency

PUBLISHED = ([1, 4, 8, 16, 32, 48], [1.0, 3.82, 6.85, 11.7, 17.7, 21.6])


def _brute(curve: CapacityCurve, x: float, nmax: int = 400_000) -> float:
    """E[N] by a long truncated sum (the tail beyond nmax is below rounding here)."""
    n = np.arange(nmax + 1, dtype=float)
    c = curve.rate(n[1:])
    la = n * np.log(x) - np.concatenate([[0.0], np.cumsum(np.log(c))])
    a = np.exp(la - la.max())
    return float(a @ n / a.sum())


def _profile(curve, x):
    g, g1, g2 = curve.profile(1.0 - x / curve.capacity)
    return float(g[0]), float(g1[0]), float(g2[0])


def test_mm1_closed_form():
    # c = 1 everywhere: M/M/1 in the number in system, E[N] = x / (1 - x).
    curve = CapacityCurve((1,), (1.0,))
    for x in (1e-6, 0.1, 0.5, 0.9, 0.999):
        g, g1, g2 = _profile(curve, x)
        assert g == pytest.approx(x / (1 - x), rel=1e-13)
        assert g1 == pytest.approx(1 / (1 - x) ** 2, rel=1e-12)
        assert g2 == pytest.approx(2 / (1 - x) ** 3, rel=1e-11)


def test_mm2_closed_form():
    # c(1) = 1, c(n) = 2 for n >= 2: M/M/2 with unit servers. E[N] = 2 r / (1 - r^2), r = x / 2.
    curve = CapacityCurve((1, 2), (1.0, 2.0))
    for x in (0.2, 1.0, 1.9):
        r = x / 2
        assert _profile(curve, x)[0] == pytest.approx(2 * r / (1 - r * r), rel=1e-13)


def test_linear_curve_is_erlang_c():
    # c(n) = min(n, 8): the number in system of M/M/8 (E[N] = x + C(8, x) x / (8 - x)).
    from math import factorial

    curve = CapacityCurve((1, 8), (1.0, 8.0))
    for x in (0.5, 4.0, 7.5):
        head = sum(x**k / factorial(k) for k in range(8))
        top = x**8 / factorial(8) * 8 / (8 - x)
        erlang_c = top / (head + top)
        assert _profile(curve, x)[0] == pytest.approx(x + erlang_c * x / (8 - x), rel=1e-13)


@pytest.mark.parametrize("x", [0.05, 1.0, 5.0, 12.0, 20.0, 21.3])
def test_published_curve_against_brute_force_sum(x):
    curve = CapacityCurve(*PUBLISHED)
    assert _profile(curve, x)[0] == pytest.approx(_brute(curve, x), rel=1e-11)


@pytest.mark.parametrize("x", [1e-3, 0.4, 3.0, 11.0, 18.0, 21.0])
def test_derivatives_against_finite_differences(x):
    curve = CapacityCurve(*PUBLISHED)
    g, g1, g2 = _profile(curve, x)
    h = 1e-6 * max(x, 1e-2)
    gp, gm = _profile(curve, x + h), _profile(curve, x - h)
    assert g1 == pytest.approx((gp[0] - gm[0]) / (2 * h), rel=1e-7)
    assert g2 == pytest.approx((gp[1] - gm[1]) / (2 * h), rel=1e-6)


def test_small_load_limits():
    # g(x) = x + (2 / c(2) - 1) x^2 + O(x^3): g'(0) = 1, g''(0) = 4 / c(2) - 2.
    curve = CapacityCurve(*PUBLISHED)
    c2 = float(curve.rate(2))
    for u in (1.0, 1.0 - 1e-120, 1.0 - 2**-30):
        x = curve.capacity * (1.0 - u)
        g, g1, g2 = (float(v[0]) for v in curve.profile(u))
        assert g == pytest.approx(x, rel=1e-7, abs=1e-300)
        assert g1 == pytest.approx(1.0, rel=1e-8)
        assert g2 == pytest.approx(4 / c2 - 2, rel=1e-6)


def test_queue_interface():
    lam = 0.4
    q = BatchingQueue(lam, *PUBLISHED)
    assert q.capacity == 21.6 and q.monotone and q.name == "batching"
    m1 = 20.0  # x = 8
    W = q.value(m1, 123.0)
    assert W == pytest.approx(_profile(q.curve, lam * m1)[0] / lam, rel=1e-15)
    assert q.value(m1, 1e6) == W  # insensitive to m2
    A, B = q.derivatives(m1, 5.0)
    assert B == 0.0
    h = 1e-4
    assert A == pytest.approx((q.value(m1 + h) - q.value(m1 - h)) / (2 * h), rel=1e-7)
    H = q.hessian(m1, 5.0)
    assert H[0, 1] == H[1, 0] == H[1, 1] == 0.0
    d1p, d1m = q.derivatives(m1 + h)[0], q.derivatives(m1 - h)[0]
    assert H[0, 0] == pytest.approx((d1p - d1m) / (2 * h), rel=1e-6)
    u = 1 - lam * m1 / q.capacity
    A2, B2, dA_du, dA_dm2, dB_du = q.scalars(u, 7.0)
    assert (A2, B2, dA_dm2, dB_du) == (A, 0.0, 0.0, 0.0)
    assert dA_du == pytest.approx(
        (q.scalars(u + 1e-7)[0] - q.scalars(u - 1e-7)[0]) / 2e-7, rel=1e-6
    )
    assert q.value(q.capacity / lam) == np.inf
    # no arrivals: a query runs alone
    q0 = BatchingQueue(0.0, *PUBLISHED)
    assert q0.value(3.0) == 3.0 and q0.derivatives(3.0) == (1.0, 0.0)


@pytest.mark.parametrize("w_max", [0.5, 3.0, 40.0, 1e4])
def test_min_slack_is_the_largest_load_with_that_wait(w_max):
    lam = 0.4
    q = BatchingQueue(lam, *PUBLISHED)
    u = q.min_slack(w_max, 1.0)
    x = q.capacity * (1 - u)
    # a lower bound of the slack: at most the exact one, by a hair
    assert q.curve.g(x) / lam >= w_max * (1 - 1e-12)
    assert q.curve.g(x * (1 - 1e-9)) / lam <= w_max


@pytest.mark.parametrize(
    ("conc", "speed", "needle"),
    [
        ([1, 2], [1.0, 2.5], "between concurrency 1 and 2"),
        ([1, 2, 10], [1.0, 1.1, 9.0], "between concurrency 2 and 10"),
        ([1, 16, 17], [1.0, 2.0, 10.0], "between concurrency 16 and 17"),
        ([1, 4, 8], [1.0, 3.0, 3.0], "speedup must increase"),
        ([1, 4, 8], [1.0, 3.0, 2.0], "speedup must increase"),
        ([0, 4], [0.0, 3.0], "concurrency must be >= 1"),
        ([2, 4], [1.0, 3.0], "first point must be concurrency 1"),
        ([1, 4], [1.2, 3.0], "first point must be concurrency 1"),
        ([1, 8, 4], [1.0, 3.0, 5.0], "strictly increasing"),
        ([1, 4], [1.0], "same length"),
        ([1, 4.5], [1.0, 3.0], "whole numbers"),
        ([], [], "must not be empty"),
        ([1, 20_000], [1.0, 50.0], "above 16384 is not supported"),
    ],
)
def test_bad_curves_are_refused(conc, speed, needle):
    with pytest.raises(ScenarioError, match=needle):
        CapacityCurve(conc, speed)


@st.composite
def concave_curves(draw):
    """Concave increasing curves: per-step gains that shrink, c(2) <= 2."""
    k = draw(st.integers(1, 6))
    steps = sorted(draw(st.lists(st.integers(1, 40), min_size=k, max_size=k)))
    conc = [1]
    for s_ in steps:
        conc.append(conc[-1] + s_)
    slope = draw(st.floats(0.05, 1.0))
    speed = [1.0]
    for i in range(1, len(conc)):
        speed.append(speed[-1] + slope * (conc[i] - conc[i - 1]))
        slope *= draw(st.floats(0.05, 1.0))
    return conc, speed


@settings(max_examples=60, deadline=None)
@given(concave_curves())
def test_concave_curves_give_convex_profiles(curve):
    # the check accepts them, and second differences of g agree
    c = CapacityCurve(*curve)
    x = np.linspace(0, c.capacity * 0.999, 400)
    g = c.profile(1.0 - x / c.capacity)[0]
    d2 = g[2:] - 2 * g[1:-1] + g[:-2]
    assert np.all(d2 >= -1e-9 * np.abs(g[1:-1]) - 1e-12)


def _scenario(**server):
    sc = cvxalloc.example_scenario()
    return sc.with_(server=server or None)


def test_scenario_server_round_trip_and_utilization():
    sc = _scenario(model="batching", concurrency=PUBLISHED[0], speedup=PUBLISHED[1])
    assert sc.capacity == 21.6
    d = sc.to_dict()
    assert d["server"] == {
        "model": "batching",
        "concurrency": PUBLISHED[0],
        "speedup": PUBLISHED[1],
    }
    back = cvxalloc.Scenario.from_dict(d)
    assert back.server == sc.server
    t = 0.5 * (sc.min_tokens + sc.max_tokens)
    assert sc.utilization(t) == pytest.approx(Latency(sc).moments(t).rho, rel=1e-15)
    assert sc.take([0, 2]).server == sc.server
    single = _scenario(model="single")
    assert single.server is None and "server" not in single.to_dict()


@pytest.mark.parametrize(
    ("server", "needle"),
    [
        ({"model": "batching", "speedup": [1.0, 2.0]}, "needs concurrency"),
        ({"model": "batching", "concurrency": [1, 2]}, "needs speedup"),
        ({"model": "batched"}, "unknown model"),
        ({"model": "single", "concurrency": [1]}, 'model = "batching" only'),
        ({"model": "batching", "concurency": [1], "speedup": [1.0]}, 'did you mean "concurrency"'),
    ],
)
def test_bad_server_tables(server, needle):
    with pytest.raises(ScenarioError, match=needle):
        _scenario(**server)


def test_batching_takes_bursty_arrivals():
    """arrival_scv enters the batching model (it was refused): W grows with the burstiness."""
    sc = cvxalloc.example_scenario()
    server = {"model": "batching", "concurrency": PUBLISHED[0], "speedup": PUBLISHED[1]}
    t = sc.min_tokens + 0.3 * (sc.max_tokens - sc.min_tokens)
    w = [Latency(sc.with_(arrival_scv=c, server=server)).value(t) for c in (0.3, 1.0, 9.0, 173.0)]
    assert w[0] < w[1] < w[2] < w[3]


def test_stability_uses_capacity():
    sc = cvxalloc.example_scenario()
    m1_lo = float(sc.probability @ sc.service_time(sc.min_tokens))
    lam = 1.5 / m1_lo  # unstable for one query at a time, fine when batching
    with pytest.raises(ScenarioError, match="unstable"):
        sc.with_(arrival_rate=lam)
    b = sc.with_(
        arrival_rate=lam,
        server={"model": "batching", "concurrency": PUBLISHED[0], "speedup": PUBLISHED[1]},
    )
    assert b.utilization(b.min_tokens) == pytest.approx(1.5 / 21.6, rel=1e-12)


def test_from_arrays_takes_a_server():
    from cvxalloc.accuracy import Exponential

    kw = dict(
        probability=[0.5, 0.5],
        max_tokens=4096,
        per_token=0.02,
        base=0.5,
        accuracy=Exponential(floor=0.3, ceiling=[0.8, 0.9], scale=1000),
        arrival_rate=2.0,
        latency_weight=0.01,
    )
    a = cvxalloc.Scenario.from_arrays(**kw, server=CapacityCurve(*PUBLISHED))
    b = cvxalloc.Scenario.from_arrays(
        **kw, server={"model": "batching", "concurrency": PUBLISHED[0], "speedup": PUBLISHED[1]}
    )
    assert a.server == b.server and a.capacity == 21.6
    assert "batching" in repr(a)
