"""Sensitivity of the optimum: checked against central differences of conic re-solves."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import cvxalloc
from cvxalloc.cli import main
from cvxalloc.errors import CvxallocError
from cvxalloc.sensitivity import sensitivity
from cvxalloc.testing import random_scenario

H = 1e-4  # relative step of the central differences


def resolve(sc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cvxalloc.solve(sc, method="conic")
    assert res.status == "optimal"
    return res


def figures(res):
    return res.tokens, np.array(
        [res.objective, res.mean_system_time, res.utilization, res.accuracy]
    )


def active(sc, t):
    tol = 1e-7 * np.maximum(sc.max_tokens - sc.min_tokens, 1.0)
    return np.where(t - sc.min_tokens <= tol, -1, np.where(sc.max_tokens - t <= tol, 1, 0))


def central(sc, make, h):
    """Central differences of the re-solved optimum along ``make(eps)``; None when the
    active set differs at +-h (the step crosses a kink)."""
    rp, rm = resolve(make(h)), resolve(make(-h))
    if not (np.array_equal(active(sc, rp.tokens), active(sc, rm.tokens))):
        return None
    (tp, fp), (tm, fm) = figures(rp), figures(rm)
    return (tp - tm) / (2 * h), (fp - fm) / (2 * h), active(sc, rp.tokens)


def check(der, fd, base_active, sc, step):
    """Compare with central differences taken with step ``step`` (direction units)."""
    dt, dfig = fd
    scale = max(np.abs(dt).max(), 1e-12)
    free = base_active == 0
    assert np.allclose(der.tokens[free], dt[free], rtol=1e-3, atol=1e-4 * scale), (der.tokens, dt)
    # types at a bound: exactly 0 here; the re-solves move them only by solver rounding
    # (the conic solution sits within 1e-7 of the box width of the bound)
    assert np.all(der.tokens[~free] == 0)
    noise = 2e-7 * np.maximum(sc.max_tokens - sc.min_tokens, 1.0) / (2 * step)
    assert np.all(np.abs(dt[~free]) <= noise[~free]), (dt, noise)
    ours = np.array([der.objective, der.mean_system_time, der.utilization, der.accuracy])
    assert np.allclose(ours, dfig, rtol=1e-3, atol=1e-6 * np.abs(dfig).max()), (ours, dfig)


def test_example_matches_finite_differences(example, example_optimum):
    sc = example
    s = sensitivity(sc, example_optimum)
    assert not s.kinks
    base = active(sc, s.tokens)
    assert (base != 0).any() and (base == 0).any()  # both kinds of types are exercised
    lam = sc.arrival_rate
    fd = central(sc, lambda e: sc.with_(arrival_rate=lam * (1 + e)), H)
    assert fd is not None
    dt, dfig, _ = fd
    check(s.arrival_rate, (dt / lam, dfig / lam), base, sc, H * lam)
    p = sc.probability
    for i in range(sc.n):
        dp = -p.copy()
        dp[i] += 1
        fd = central(sc, lambda e, dp=dp: sc.with_(probability=p + e * dp), H)
        assert fd is not None
        check(s.mix[i], fd[:2], base, sc, H)


def test_pairwise_mix_direction(example, example_optimum):
    sc, p = example, example.probability
    s = sensitivity(sc, example_optimum, mix=False)
    dp = np.zeros(sc.n)
    dp[0], dp[3] = 1.0, -1.0  # traffic from "olympiad" to "chat"
    fd = central(sc, lambda e: sc.with_(probability=p + e * dp), H)
    check(s.directional(dp=dp), fd[:2], active(sc, s.tokens), sc, H)
    # linear in the direction: a combination of lam and mix directions adds up
    both = s.directional(dp=dp, dlam=2.0)
    assert np.allclose(both.tokens, s.directional(dp=dp).tokens + 2 * s.arrival_rate.tokens)


def test_random_scenarios_match_finite_differences(rng):
    tested = 0
    for draw in range(30):
        load = ("light", "heavy", "saturated")[draw % 3]
        sc = random_scenario(rng, int(rng.integers(2, 7)), load=load)
        res = resolve(sc)
        s = sensitivity(sc, res)
        base = active(sc, s.tokens)
        width = sc.max_tokens - sc.min_tokens
        # stay away from kinks: free types well inside, bound types not degenerate
        inner = (base != 0) | (
            (s.tokens - sc.min_tokens > 0.01 * width) & (sc.max_tokens - s.tokens > 0.01 * width)
        )
        if s.kinks or not inner.all() or not (base == 0).any():
            continue
        lam = sc.arrival_rate
        fd = central(sc, lambda e, sc=sc, lam=lam: sc.with_(arrival_rate=lam * (1 + e)), H)
        if fd is None or not np.array_equal(fd[2], base):
            continue
        check(s.arrival_rate, (fd[0] / lam, fd[1] / lam), base, sc, H * lam)
        i = int(np.argmax(sc.probability))
        dp = -sc.probability.copy()
        dp[i] += 1
        fd = central(sc, lambda e, sc=sc, dp=dp: sc.with_(probability=sc.probability + e * dp), H)
        if fd is not None and np.array_equal(fd[2], base):
            check(s.mix[i], fd[:2], base, sc, H)
        tested += 1
        if tested == 8:
            break
    assert tested >= 6, f"only {tested} instances away from kinks"


def test_types_at_bounds_do_not_move(example, example_optimum):
    s = sensitivity(example, example_optimum)
    bound = ~s.free
    assert bound.any()
    assert np.all(s.d_tokens_d_arrival_rate[bound] == 0)
    assert np.all(s.d_tokens_d_mix[:, bound] == 0)


def test_signs_and_range(example, example_optimum):
    """More traffic: less utility, shorter budgets (here every free type shrinks)."""
    s = sensitivity(example, example_optimum)
    assert s.d_objective_d_arrival_rate < 0
    assert np.all(s.d_tokens_d_arrival_rate[s.free] < 0)
    lo, hi = s.arrival_rate_range
    assert lo < example.arrival_rate < hi
    # envelope theorem: dU*/dlam = -gamma dW/dlam at fixed t = -gamma m2 / (2 (1-rho)^2)
    ev = cvxalloc.evaluate(example, s.tokens)
    assert s.d_objective_d_arrival_rate == pytest.approx(
        -example.latency_weight * ev.m2 / (2 * (1 - ev.utilization) ** 2), rel=1e-12
    )


def test_bad_direction_and_missing_mix(example, example_optimum):
    s = sensitivity(example, example_optimum, mix=False)
    with pytest.raises(CvxallocError, match="sum to 0"):
        s.directional(dp=np.ones(example.n))
    with pytest.raises(CvxallocError, match="one entry per task"):
        s.directional(dp=np.zeros(2))
    with pytest.raises(CvxallocError, match="mix matrix"):
        _ = s.d_tokens_d_mix


def test_allocation_is_polished_and_certified(example, example_optimum):
    """A rough start is polished to the certified optimum before differentiating; an
    allocation that cannot be (here: unstable) is refused."""
    s = sensitivity(example, example.min_tokens, mix=False)
    ref = sensitivity(example, example_optimum, mix=False)
    assert np.allclose(s.tokens, ref.tokens, rtol=1e-6, atol=1e-6)
    assert s.d_objective_d_arrival_rate == pytest.approx(ref.d_objective_d_arrival_rate, rel=1e-6)
    assert example.utilization(example.max_tokens) >= 1
    with pytest.raises(CvxallocError, match="not an optimum"):
        sensitivity(example, example.max_tokens)


def test_refuses_constraints(example, example_optimum):
    from cvxalloc import Constraints

    cons = Constraints(max_mean_tokens=float(example.probability @ example_optimum.tokens))
    sc = example.with_(constraints=cons)
    with pytest.raises(CvxallocError, match="constraints"):
        sensitivity(sc, example_optimum)


def test_cli_text_and_json(capsys):
    assert main(["sensitivity"]) == 0
    text = capsys.readouterr().out
    assert "if traffic changes by +10%" in text and "mix:" in text
    assert main(["sensitivity", "--json", "--change", "0.2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["d_arrival_rate"]) >= {
        "tokens",
        "objective",
        "mean_system_time",
        "utilization",
        "accuracy",
    }
    assert set(out["d_mix"]) == set(cvxalloc.example_scenario().names)


def test_cli_missing_file_exits_2(capsys):
    assert main(["sensitivity", "/nonexistent.toml"]) == 2
    assert "does not exist" in capsys.readouterr().err
