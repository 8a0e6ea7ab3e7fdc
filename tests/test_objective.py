"""The utility U: value, gradient and Hessian parts against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import stable_point

import cvxalloc
from cvxalloc.objective import Objective, evaluate, gradient, hessian_parts, utility
from cvxalloc.queue import Latency
from cvxalloc.testing import random_scenario


def _fd_gradient(f, t, h):
    return np.array(
        [(f(t + h[i] * e) - f(t - h[i] * e)) / (2 * h[i]) for i, e in enumerate(np.eye(t.size))]
    )


@pytest.mark.parametrize("spreads", [False, True])
@pytest.mark.parametrize("family", ["exponential", "power", "logarithmic"])
def test_gradient_by_finite_differences(rng, family, spreads):
    sc = random_scenario(rng, 6, load="heavy", families=(family,), scv=spreads, variance=spreads)
    t = stable_point(sc, rng)
    obj = Objective(sc)
    g = obj.gradient(t)
    fd = _fd_gradient(obj.value, t, 1e-5 * (sc.max_tokens - sc.min_tokens))
    # Each component is a difference of two terms; compare against their size.
    size = obj.pw * sc.accuracy.d1(t) + sc.latency_weight * obj.latency.gradient(t)
    assert np.all(np.abs(g - fd) <= 1e-5 * size + 1e-13)


def test_gradient_formula(rng):
    sc = random_scenario(rng, 8, load="saturated")
    t = stable_point(sc, rng)
    D = Latency(sc).marginal(t)
    expect = sc.probability * (sc.weight * sc.accuracy.d1(t) - sc.latency_weight * sc.per_token * D)
    np.testing.assert_allclose(gradient(sc, t), expect, rtol=1e-13, atol=1e-18)


@pytest.mark.parametrize("spreads", [False, True])
def test_hessian_parts_by_finite_differences_of_gradient(rng, spreads):
    sc = random_scenario(rng, 6, load="heavy", scv=spreads, variance=spreads)
    t = stable_point(sc, rng)
    obj = Objective(sc)
    d, V, M = hessian_parts(sc, t)
    neg_hess = np.diag(d) + V @ M @ V.T
    h = 1e-5 * (sc.max_tokens - sc.min_tokens)
    fd = -np.column_stack(
        [
            (obj.gradient(t + h[i] * e) - obj.gradient(t - h[i] * e)) / (2 * h[i])
            for i, e in enumerate(np.eye(sc.n))
        ]
    )
    np.testing.assert_allclose(neg_hess, fd, rtol=1e-5, atol=1e-8 * np.abs(neg_hess).max())
    # U strictly concave: d > 0 and -Hess U positive definite
    assert np.all(d > 0)
    assert np.linalg.eigvalsh(0.5 * (neg_hess + neg_hess.T)).min() > 0


def test_value_is_accuracy_minus_latency(rng):
    sc = random_scenario(rng, 10, load="heavy")
    t = stable_point(sc, rng)
    ev = evaluate(sc, t)
    acc = float(sc.probability * sc.weight @ sc.accuracy.value(t))
    W = Latency(sc).value(t)
    assert ev.accuracy == pytest.approx(acc, rel=1e-14)
    assert ev.mean_system_time == pytest.approx(W, rel=1e-14)
    assert ev.objective == pytest.approx(acc - sc.latency_weight * W, rel=1e-13)
    assert utility(sc, t) == ev.objective
    assert ev.utilization == pytest.approx(sc.utilization(t), rel=1e-14)
    np.testing.assert_allclose(ev.service_time, sc.base + sc.per_token * t)
    np.testing.assert_allclose(ev.type_accuracy, sc.accuracy.value(t))
    assert ev.stable


def test_unstable_allocation_is_minus_inf():
    sc = random_scenario(np.random.default_rng(1), 5, load="overloaded")
    assert sc.utilization(sc.max_tokens) >= 1
    ev = evaluate(sc, sc.max_tokens)
    assert ev.objective == -np.inf
    assert ev.mean_system_time == np.inf
    assert not ev.stable
    assert Objective(sc).value(sc.max_tokens) == -np.inf
    cert = cvxalloc.certify(sc, sc.max_tokens)
    assert cert.gap == np.inf


def test_vectorized_at_large_n():
    sc = random_scenario(np.random.default_rng(4), 200_000, load="light")
    ev = evaluate(sc, sc.min_tokens)
    assert np.isfinite(ev.objective)
    assert ev.type_accuracy.shape == (200_000,)
    assert gradient(sc, sc.min_tokens).shape == (200_000,)


def test_frank_wolfe_gap_is_an_upper_bound(rng, example, example_optimum):
    # For any feasible t: U(t) + FWgap(t) >= U* (>= U at the certified optimum).
    for _ in range(20):
        t = stable_point(example, rng)
        cert = cvxalloc.certify(example, t)
        assert cert.upper_bound >= example_optimum.objective - 1e-12
        assert cert.gap >= 0


def test_value_gradient_in_one_pass_agrees(rng):
    # what certificates use: U, grad U and the weighted accuracy from one pass
    sc = random_scenario(rng, 12, load="heavy", scv=True, variance=True)
    t = stable_point(sc, rng)
    obj = Objective(sc)
    U, g, acc = obj.value_gradient(t)
    assert U == pytest.approx(obj.value(t), rel=1e-14)
    np.testing.assert_allclose(g, obj.gradient(t), rtol=1e-12, atol=1e-18)
    assert acc == pytest.approx(evaluate(sc, t).accuracy, rel=1e-14)
    over = random_scenario(np.random.default_rng(1), 5, load="overloaded")
    U, g, _ = Objective(over).value_gradient(over.max_tokens)
    assert U == -np.inf and g is None
