"""cvxalloc.testing: the strategy draws what it promises, and assert_near_optimal fails readably."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cvxalloc
from cvxalloc.testing import LOADS, assert_near_optimal, flat_types, random_scenario, scenarios


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(min_n=2, max_n=7, loads=("heavy",), families=("power",), spreads=False))
def test_strategy_respects_its_knobs(sc):
    assert 2 <= sc.n <= 7
    assert set(sc.accuracy.family_names) == {"power"}
    assert np.all(sc.scv == 0) and np.all(sc.variance == 0)
    rho_hi = sc.utilization(sc.max_tokens)
    rho_lo = sc.utilization(sc.min_tokens)
    lo_r, hi_r = LOADS["heavy"]
    # the generator keeps the minimum budgets clearly stable, else draws the regime's load
    assert (lo_r <= rho_hi <= hi_r) or 0.3 <= rho_lo <= 0.95


@pytest.mark.parametrize("load", list(LOADS))
def test_random_scenario_regimes(load, rng):
    hits = 0
    for _ in range(20):
        sc = random_scenario(rng, 5, load=load)
        assert sc.utilization(sc.min_tokens) < 1
        rho_hi = sc.utilization(sc.max_tokens)
        lo_r, hi_r = LOADS[load]
        hits += lo_r <= rho_hi <= hi_r
        if load == "overloaded":
            assert sc.latency_weight > 0
    assert hits >= 10  # the regime is what is mostly drawn


def test_identical_and_spread_knobs(rng):
    sc = random_scenario(rng, 4, identical=True, scv=False, variance=False)
    assert np.ptp(sc.max_tokens) == 0 and np.ptp(sc.probability) == 0
    assert np.all(sc.scv == 0) and np.all(sc.variance == 0)
    sc = random_scenario(rng, 30, scv=True, variance=True)
    assert np.any(sc.scv > 0) and np.any(sc.variance > 0)


def test_reference_passes_and_minimum_fails_readably(example, example_optimum):
    assert_near_optimal(
        example, example_optimum.tokens, reference=example_optimum, tokens_rtol=1e-3
    )
    with pytest.raises(AssertionError) as exc:
        assert_near_optimal(example, example.min_tokens, reference=example_optimum)
    msg = str(exc.value)
    assert "below the reference optimum" in msg
    assert 'task "olympiad"' in msg  # the type furthest from the reference is named


def test_infeasible_allocations_fail(example, example_optimum):
    t = example_optimum.tokens.copy()
    with pytest.raises(AssertionError, match="outside bounds"):
        assert_near_optimal(example, t + example.max_tokens, reference=example_optimum)
    with pytest.raises(AssertionError, match="shape"):
        assert_near_optimal(example, t[:2], reference=example_optimum)
    with pytest.raises(AssertionError, match="NaN"):
        assert_near_optimal(example, np.full(example.n, np.nan), reference=example_optimum)
    with pytest.raises(AssertionError, match="unstable"):
        assert_near_optimal(example, example.max_tokens, reference=example_optimum)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1e-4, 1e-3, 1e-2]))
def test_token_check_is_consistent_with_the_objective(seed, size):
    """Perturbed allocations: wherever a type is declared not flat, it is within tokens_rtol.

    The allowance is a theorem (strong concavity from the accuracy part of the
    Hessian); this checks the implementation of that claim on the example.
    """
    example, ref = _example_and_reference()
    r = np.random.default_rng(seed)
    width = example.max_tokens - example.min_tokens
    t = np.clip(
        ref.tokens + r.normal(0, size, example.n) * width, example.min_tokens, example.max_tokens
    )
    if example.utilization(t) >= 1:
        return
    U = cvxalloc.evaluate(example, t).objective
    loss = ref.objective + ref.certificate.gap - U
    flat = flat_types(example, t, ref.tokens, loss, ref.certificate.gap, 1e-3)
    dist = np.abs(t - ref.tokens) / width
    assert np.all(dist[~flat] <= 1e-3)


@functools.lru_cache(maxsize=1)
def _example_and_reference():
    example = cvxalloc.example_scenario()
    return example, cvxalloc.solve(example, method="conic")


def test_flat_types_follow_the_curvature(example, example_optimum):
    t = example_optimum.tokens
    gap = example_optimum.certificate.gap
    flat = flat_types(example, t, t, gap, gap)
    # the reference is certified to ~1e-10: no type with real curvature is flat
    assert not flat[np.argmax(example.probability)]
    # with a gap as large as |U| every type is flat
    assert np.all(flat_types(example, t, t, 1.0, 1.0))


def test_a_toy_solver_is_caught(example, example_optimum):
    """A user's heuristic: one common fraction of every box (not optimal) fails the check."""
    lo, hi = example.min_tokens, example.max_tokens
    best = max(
        (cvxalloc.evaluate(example, lo + x * (hi - lo)).objective, x)
        for x in np.linspace(0, 1, 201)
        if example.utilization(lo + x * (hi - lo)) < 1
    )
    t = lo + best[1] * (hi - lo)
    with pytest.raises(AssertionError, match="below the reference optimum"):
        assert_near_optimal(example, t, rtol=1e-7, reference=example_optimum)


def test_a_failing_case_prints_the_call_that_rebuilds_it():
    seen = []

    @settings(max_examples=30, database=None, deadline=None)
    @given(scenarios(min_n=3, max_n=3, loads=("heavy",), families=("exponential", "power")))
    def fails(sc):
        seen.append(sc)
        assert sc.n < 3

    with pytest.raises(AssertionError) as exc:
        fails()
    notes = [n for n in getattr(exc.value, "__notes__", []) if n.startswith("scenario: ")]
    assert len(notes) == 1, getattr(exc.value, "__notes__", None)
    text = notes[0].removeprefix("scenario: ")
    assert text.startswith("cvxalloc.testing.random_scenario(")
    rebuilt = eval(text, {"cvxalloc": cvxalloc})  # noqa: S307 - our own report
    failing = seen[-1]  # hypothesis replays the reported case last
    for name in ("probability", "weight", "max_tokens", "min_tokens", "per_token", "scv"):
        np.testing.assert_array_equal(getattr(rebuilt, name), getattr(failing, name))
    assert rebuilt.arrival_rate == failing.arrival_rate
    assert rebuilt.latency_weight == failing.latency_weight
    t = 0.5 * failing.max_tokens
    np.testing.assert_array_equal(rebuilt.accuracy.value(t), failing.accuracy.value(t))


def test_accuracy_curves_repr_rebuilds_them(rng):
    from cvxalloc import accuracy

    for seed in range(5):
        sc = random_scenario(seed, 6)
        text = repr(sc.accuracy)
        assert "object at 0x" not in text
        curves = eval(text, vars(accuracy))  # noqa: S307 - our own repr
        assert curves.family_names == sc.accuracy.family_names
        t = rng.uniform(0, 1, sc.n) * sc.max_tokens
        for f in ("value", "d1", "d2"):
            np.testing.assert_array_equal(getattr(curves, f)(t), getattr(sc.accuracy, f)(t))
        assert repr(curves) == text
