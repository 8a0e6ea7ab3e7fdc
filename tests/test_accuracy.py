"""Accuracy families: one source of truth (value, derivatives, inverse, CVXPY form)."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

from cvxalloc.accuracy import FAMILIES, AccuracyCurves, Exponential, Logarithmic, Power
from cvxalloc.errors import ScenarioError


def _family(name: str, rng: np.random.Generator, n: int = 12):
    floor = rng.uniform(0, 0.5, n)
    ceiling = floor + rng.uniform(0.05, 1, n) * (1 - floor)
    scale = np.exp(rng.uniform(np.log(50), np.log(20000), n))
    if name == "exponential":
        return Exponential(floor=floor, ceiling=ceiling, scale=scale)
    if name == "power":
        return Power(floor=floor, ceiling=ceiling, scale=scale, exponent=rng.uniform(0.2, 2.0, n))
    return Logarithmic(floor=floor, gain=rng.uniform(0.01, 0.1, n), scale=scale)


def _points(fam, rng, n=12):
    # from 0 to a few scales out (where the curves are still resolvable in double)
    return rng.uniform(0, 5, n) * fam.scale


@pytest.mark.parametrize("name", list(FAMILIES))
def test_numeric_value_equals_cvxpy_expression(name, rng):
    fam = _family(name, rng)
    x = cp.Variable(len(fam))
    expr = fam.cvxpy(x)
    assert expr.is_concave()
    for _ in range(5):
        t = _points(fam, rng)
        x.value = t
        np.testing.assert_allclose(expr.value, fam.value(t), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_cvxpy_expression_far_out(name, rng):
    # far beyond the scale (t = 600 tau): the exponential form caps its exponent, the
    # value must still agree to double rounding
    fam = _family(name, rng)
    x = cp.Variable(len(fam))
    t = 600 * fam.scale
    x.value = t
    np.testing.assert_allclose(fam.cvxpy(x).value, fam.value(t), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_first_derivative_by_finite_differences(name, rng):
    fam = _family(name, rng)
    t = _points(fam, rng)
    h = 1e-4 * fam.scale
    fd = (fam.value(t + h) - fam.value(t - h)) / (2 * h)
    np.testing.assert_allclose(fam.d1(t), fd, rtol=1e-6)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_second_derivative_by_finite_differences(name, rng):
    fam = _family(name, rng)
    t = _points(fam, rng)
    h = 1e-4 * fam.scale
    fd = (fam.d1(t + h) - fam.d1(t - h)) / (2 * h)
    np.testing.assert_allclose(fam.d2(t), fd, rtol=1e-6)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_increasing_and_strictly_concave(name, rng):
    fam = _family(name, rng)
    t = _points(fam, rng)
    assert np.all(fam.d1(t) > 0)
    assert np.all(fam.d2(t) < 0)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_inverse_derivative_round_trip(name, rng):
    fam = _family(name, rng)
    t = _points(fam, rng)
    np.testing.assert_allclose(fam.inv_d1(fam.d1(t)), t, rtol=1e-9, atol=1e-9 * fam.scale.min())
    # and the other way: d1(inv_d1(y)) = y for y in the range of d1 on t >= 0
    y = fam.d1(t)
    np.testing.assert_allclose(fam.d1(fam.inv_d1(y)), y, rtol=1e-9)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_inverse_derivative_nonpositive_is_inf(name, rng):
    fam = _family(name, rng, n=3)
    assert np.all(np.isinf(fam.inv_d1(np.zeros(3))))
    assert np.all(np.isinf(fam.inv_d1(-np.ones(3))))


def test_family_formulas_at_hand_points():
    e = Exponential(floor=0.2, ceiling=0.8, scale=1000.0)
    assert e.value(np.array([0.0]))[0] == pytest.approx(0.2)
    assert e.value(np.array([1000.0]))[0] == pytest.approx(0.8 - 0.6 / np.e)
    p = Power(floor=0.2, ceiling=0.8, scale=1000.0, exponent=0.5)
    assert p.value(np.array([3000.0]))[0] == pytest.approx(0.8 - 0.6 / 2)
    g = Logarithmic(floor=0.5, gain=0.1, scale=100.0)
    assert g.value(np.array([100.0 * (np.e - 1)]))[0] == pytest.approx(0.6)


def test_curves_with_mixed_blocks_match_each_family(rng):
    fams = [_family(n, rng, 4) for n in FAMILIES]
    perm = rng.permutation(12)
    blocks = [(f, perm[4 * k : 4 * k + 4]) for k, f in enumerate(fams)]
    curves = AccuracyCurves(blocks, 12)
    t = rng.uniform(0, 5000, 12)
    w = rng.uniform(0.5, 2, 12)
    for method in ("value", "d1", "d2"):
        expect = np.empty(12)
        for f, idx in blocks:
            expect[idx] = getattr(f, method)(t[idx])
        np.testing.assert_allclose(getattr(curves, method)(t), expect, rtol=1e-15)
    np.testing.assert_allclose(curves.inv_d1(curves.d1(t)), t, rtol=1e-9, atol=1e-6)
    x = cp.Variable(12)
    x.value = t
    assert float(curves.weighted_cvxpy(x, w).value) == pytest.approx(
        float(w @ curves.value(t)), rel=1e-13
    )
    assert sorted(set(curves.family_names)) == sorted(FAMILIES)
    sub = curves.take(np.array([5, 0, 11]))
    np.testing.assert_allclose(sub.value(t[[5, 0, 11]]), curves.value(t)[[5, 0, 11]])
    for i in range(12):
        d = curves.param_dict(i)
        assert d["model"] == curves.family_names[i]


def test_power_with_many_exponents_cvxpy(rng):
    fam = _family("power", rng, 30)
    x = cp.Variable(30)
    x.value = _points(fam, rng, 30)
    np.testing.assert_allclose(fam.cvxpy(x).value, fam.value(x.value), rtol=1e-13)


def test_blocks_must_partition():
    e = Exponential(floor=0.2, ceiling=0.8, scale=1000.0)
    with pytest.raises(ValueError, match="exactly once"):
        AccuracyCurves([(e, np.array([0, 1]))], 3)


@pytest.mark.parametrize(
    "model, values, match",
    [
        ("exponential", {"floor": 0.2, "ceiling": 1.2, "scale": 10.0}, "ceiling must be <= 1"),
        ("exponential", {"floor": 0.8, "ceiling": 0.8, "scale": 10.0}, "ceiling must be > floor"),
        ("exponential", {"floor": -0.1, "ceiling": 0.8, "scale": 10.0}, "floor must be >= 0"),
        ("exponential", {"floor": 0.1, "ceiling": 0.8, "scale": 0.0}, "scale must be > 0"),
        ("exponential", {"floor": 0.1, "ceiling": np.nan, "scale": 1.0}, "must be a finite"),
        (
            "power",
            {"floor": 0.1, "ceiling": 0.8, "scale": 10.0, "exponent": 0.0},
            "exponent must be > 0",
        ),
        (
            "power",
            {"floor": 0.1, "ceiling": 0.8, "scale": 10.0, "exponent": np.inf},
            "must be a finite",
        ),
        ("logarithmic", {"floor": 0.1, "gain": 0.0, "scale": 10.0}, "gain must be > 0"),
        ("logarithmic", {"floor": 0.1, "gain": 0.1, "scale": -1.0}, "scale must be > 0"),
    ],
)
def test_family_checks(model, values, match):
    with pytest.raises(ScenarioError, match=match) as err:
        FAMILIES[model].check('task "x"', values)
    assert str(err.value).startswith('task "x"')
