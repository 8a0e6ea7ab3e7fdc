"""The M/G/1 term: Pollaczek-Khinchine against hand-computed cases, derivatives, CVXPY form."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from conftest import stable_point

from cvxalloc import Scenario
from cvxalloc.accuracy import Exponential
from cvxalloc.queue import Latency, pollaczek_khinchine
from cvxalloc.testing import random_scenario


def _scenario(p, base, per_token, lam, scv=0.0, variance=0.0, hi=10_000.0):
    return Scenario.from_arrays(
        probability=p,
        max_tokens=hi,
        per_token=per_token,
        base=base,
        scv=scv,
        variance=variance,
        accuracy=Exponential(floor=0.2, ceiling=0.9, scale=1000.0),
        arrival_rate=lam,
        latency_weight=0.01,
    )


def test_mm1_hand():
    # M/M/1, service rate mu = 1 (m1 = 1, m2 = 2/mu^2 = 2), lam = 0.5: W = 1/(mu - lam) = 2.
    assert pollaczek_khinchine(0.5, 1.0, 2.0) == pytest.approx(2.0, rel=1e-15)
    # mu = 4, lam = 3: W = 1/(4 - 3) = 1.
    assert pollaczek_khinchine(3.0, 0.25, 2 / 16) == pytest.approx(1.0, rel=1e-14)


def test_md1_hand():
    # M/D/1, D = 1, lam = 0.5: Wq = rho / (2 mu (1 - rho)) = 0.5 / 1 = 0.5, W = 1.5.
    assert pollaczek_khinchine(0.5, 1.0, 1.0) == pytest.approx(1.5, rel=1e-15)
    # D = 2, lam = 0.25 (rho = 0.5): Wq = lam D^2 / (2 (1 - rho)) = 0.25*4/1 = 1, W = 3.
    assert pollaczek_khinchine(0.25, 2.0, 4.0) == pytest.approx(3.0, rel=1e-15)


def test_unstable_is_inf():
    assert pollaczek_khinchine(1.0, 1.0, 2.0) == np.inf
    assert pollaczek_khinchine(2.0, 1.0, 2.0) == np.inf


def test_two_type_mix_hand():
    # Deterministic services 2 s (p = 1/4) and 1 s (p = 3/4), lam = 0.2:
    # m1 = 1/2 + 3/4 = 5/4, rho = 1/4, m2 = 4/4 + 3/4 = 7/4,
    # W = 5/4 + 0.2 * (7/4) / (2 * 3/4) = 5/4 + 7/30 = 89/60.
    sc = _scenario([0.25, 0.75], base=[1.0, 0.5], per_token=[0.001, 0.0005], lam=0.2)
    t = np.array([1000.0, 1000.0])  # s = (2, 1)
    lat = Latency(sc)
    mo = lat.moments(t)
    assert mo.m1 == pytest.approx(5 / 4, rel=1e-15)
    assert mo.m2 == pytest.approx(7 / 4, rel=1e-15)
    assert mo.rho == pytest.approx(1 / 4, rel=1e-15)
    assert lat.value(t) == pytest.approx(89 / 60, rel=1e-14)


def test_mm1_through_scv_and_through_variance():
    # One type of exponential service, mean 2 s: scv = 1, or variance = s^2 with scv = 0.
    # lam = 0.25 (rho = 1/2): W = 1 / (mu - lam) = 1 / (0.5 - 0.25) = 4.
    t = np.array([1500.0])
    via_scv = _scenario([1.0], base=0.5, per_token=0.001, lam=0.25, scv=1.0)
    via_var = _scenario([1.0], base=0.5, per_token=0.001, lam=0.25, variance=4.0)
    assert Latency(via_scv).value(t) == pytest.approx(4.0, rel=1e-14)
    assert Latency(via_var).value(t) == pytest.approx(4.0, rel=1e-14)


def test_mixture_of_exponentials_hand():
    # Hyperexponential: exp(mean 1) w.p. 1/2 and exp(mean 3) w.p. 1/2, lam = 0.25.
    # m1 = 2, m2 = (2*1 + 2*9)/2 = 10, rho = 1/2, W = 2 + 0.25*10/(2*0.5) = 4.5.
    sc = _scenario([0.5, 0.5], base=[0.0, 0.0], per_token=[0.001, 0.003], lam=0.25, scv=1.0)
    t = np.array([1000.0, 1000.0])
    assert Latency(sc).value(t) == pytest.approx(4.5, rel=1e-14)


def test_latency_is_pk_of_its_moments(rng):
    sc = random_scenario(rng, 20, load="heavy")
    t = rng.uniform(sc.min_tokens, sc.max_tokens)
    lat = Latency(sc)
    if sc.utilization(t) >= 1:
        t = sc.min_tokens
    s = sc.base + sc.per_token * t
    m1 = float(sc.probability @ s)
    m2 = float(sc.probability @ ((1 + sc.scv) * s**2 + sc.variance))
    assert lat.value(t) == pytest.approx(pollaczek_khinchine(sc.arrival_rate, m1, m2), rel=1e-13)


@pytest.mark.parametrize("spreads", [False, True])
@pytest.mark.parametrize("load", ["light", "saturated", "overloaded"])
def test_gradient_of_w_by_finite_differences(rng, load, spreads):
    sc = random_scenario(rng, 6, load=load, scv=spreads, variance=spreads)
    t = stable_point(sc, rng)
    lat = Latency(sc)
    g = lat.gradient(t)
    h = 1e-5 * (sc.max_tokens - sc.min_tokens)
    fd = np.array(
        [
            (lat.value(t + h[i] * e) - lat.value(t - h[i] * e)) / (2 * h[i])
            for i, e in enumerate(np.eye(sc.n))
        ]
    )
    # central differences with h = 1e-5 of the box: truncation and rounding both << 1e-6
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-12 * np.abs(g).max())


def test_hessian_parts_of_w_by_finite_differences(rng):
    sc = random_scenario(rng, 5, load="heavy")
    t = stable_point(sc, rng)
    lat = Latency(sc)
    d, V, M = lat.hessian_parts(t)
    H = np.diag(d) + V @ M @ V.T
    h = 1e-5 * (sc.max_tokens - sc.min_tokens)
    fd = np.column_stack(
        [
            (lat.gradient(t + h[i] * e) - lat.gradient(t - h[i] * e)) / (2 * h[i])
            for i, e in enumerate(np.eye(sc.n))
        ]
    )
    np.testing.assert_allclose(H, fd, rtol=1e-5, atol=1e-9 * np.abs(H).max())
    # W is convex: the Hessian is positive semidefinite
    assert np.linalg.eigvalsh(0.5 * (H + H.T)).min() >= -1e-12 * np.abs(H).max()


def test_marginal_formula(rng):
    sc = random_scenario(rng, 7, load="heavy")
    t = stable_point(sc, rng)
    lat = Latency(sc)
    mo = lat.moments(t)
    lam, u = sc.arrival_rate, 1 - mo.rho
    s = sc.service_time(t)
    D = 1 + lam * (1 + sc.scv) * s / u + lam**2 * mo.m2 / (2 * u**2)
    np.testing.assert_allclose(lat.marginal(t), D, rtol=1e-14)
    np.testing.assert_allclose(lat.gradient(t), sc.probability * sc.per_token * D, rtol=1e-14)


@pytest.mark.parametrize("time_unit", [1.0, 7.3])
@pytest.mark.parametrize("spreads", [False, True])
def test_cvxpy_form_equals_numeric(rng, spreads, time_unit):
    sc = random_scenario(rng, 9, load="heavy", scv=spreads, variance=spreads)
    lat = Latency(sc)
    x = cp.Variable(sc.n)
    expr = lat.cvxpy(x, time_unit=time_unit)
    assert expr.is_convex()
    for _ in range(5):
        t = stable_point(sc, rng)
        x.value = t
        assert float(expr.value) * time_unit == pytest.approx(lat.value(t), rel=1e-12)


def test_zero_arrival_rate_is_service_time(rng):
    sc = random_scenario(rng, 4, load="light").with_(arrival_rate=0.0)
    t = stable_point(sc, rng)
    assert Latency(sc).value(t) == pytest.approx(float(sc.probability @ sc.service_time(t)))
    x = cp.Variable(sc.n)
    x.value = t
    assert float(Latency(sc).cvxpy(x).value) == pytest.approx(Latency(sc).value(t), rel=1e-12)
