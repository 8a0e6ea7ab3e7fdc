"""The budget policy over load: certified grid, proven gaps off the grid, file errors, CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cvxalloc
from cvxalloc.cli import main
from cvxalloc.policy import (
    DEFAULT_TOLERANCE,
    GRID_CERTIFICATE_TOL,
    PolicyError,
    build_policy,
    load_policy,
    policy_from_dict,
)
from cvxalloc.testing import random_scenario, scenarios


@pytest.fixture(scope="module")
def example_policy():
    return build_policy(cvxalloc.example_scenario())


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory, example_policy):
    path = tmp_path_factory.mktemp("policy") / "policy.json"
    example_policy.save(path)
    return path


def _fresh(sc, rate):
    return cvxalloc.solve(sc.with_(arrival_rate=rate))


def test_grid_points_certified_and_range(example_policy):
    pol = example_policy
    sc = pol.scenario
    low, high = pol.rate_range
    assert low == 0.0
    top = sc.max_stable_arrival_rate(sc.min_tokens)
    assert 0.999 * top < high < top
    for rate, t in zip(pol.rates, pol.grid_budgets):
        res = cvxalloc.certify(sc.with_(arrival_rate=rate), t)
        assert res.gap <= GRID_CERTIFICATE_TOL * max(abs(res.objective), 1e-12)
    assert pol.info["tolerance_met"]
    assert pol.info["interpolation_max_relative_gap"] <= DEFAULT_TOLERANCE


def test_off_grid_rates_within_stated_gap(example_policy, rng):
    pol = example_policy
    sc = pol.scenario
    low, high = pol.rate_range
    for rate in rng.uniform(low, high, 60):
        ans = pol.lookup(rate)
        fresh = _fresh(sc, rate)
        assert sc.with_(arrival_rate=rate).utilization(ans.tokens) < 1
        # the fresh optimum is within the stated gap of the policy's budgets
        assert fresh.objective - ans.objective <= ans.gap + 1e-12 * abs(fresh.objective)
        assert ans.gap >= -1e-15
        assert ans.gap <= DEFAULT_TOLERANCE * abs(ans.objective)
        np.testing.assert_array_equal(pol.budgets(rate), ans.tokens)
        assert pol.gap(rate) == ans.gap


@settings(max_examples=25, deadline=None)
@given(frac=st.floats(0.0, 1.0))
def test_budgets_stable_and_gap_proven_everywhere(example_policy, frac):
    pol = example_policy
    low, high = pol.rate_range
    rate = low + frac * (high - low)
    t = pol.budgets(rate)
    sc = pol.scenario.with_(arrival_rate=rate)
    assert sc.utilization(t) < 1
    assert np.all(t >= sc.min_tokens) and np.all(t <= sc.max_tokens)
    assert _fresh(pol.scenario, rate).objective <= pol.lookup(rate).upper_bound + 1e-12


def test_large_scenario_in_seconds():
    sc = random_scenario(2, 10_000)
    clock = time.perf_counter()
    pol = build_policy(sc)
    assert time.perf_counter() - clock < 30
    assert pol.info["max_grid_relative_gap"] <= GRID_CERTIFICATE_TOL
    rng = np.random.default_rng(3)
    low, high = pol.rate_range
    for rate in rng.uniform(low, high, 4):
        ans = pol.lookup(rate)
        fresh = _fresh(sc, rate)
        assert fresh.objective - ans.objective <= ans.gap + 1e-12 * abs(fresh.objective)
        assert ans.relative_gap <= DEFAULT_TOLERANCE


def test_integer_policy_on_the_grid(rng):
    sc = cvxalloc.example_scenario().with_(step=[256.0] * 5)
    pol = build_policy(sc)
    assert pol.integer
    from cvxalloc.integer import Grids

    g = Grids(sc)
    low, high = pol.rate_range
    for rate in rng.uniform(low, high, 15):
        ans = pol.lookup(rate)
        assert g.contains(ans.tokens, atol=1e-9).all()
        at = sc.with_(arrival_rate=rate)
        assert at.utilization(ans.tokens) < 1
        best = cvxalloc.solve(at, method="rounding")
        # the integer certificate bounds the continuous optimum, hence any grid allocation
        assert best.objective - ans.objective <= ans.gap + 1e-12
        assert _fresh(sc, rate).objective <= ans.upper_bound + 1e-12


def test_menu_scenario_is_integer():
    sc = cvxalloc.example_scenario()
    levels = [np.array([lo, 0.5 * (lo + hi), hi]) for lo, hi in zip(sc.min_tokens, sc.max_tokens)]
    pol = build_policy(sc.with_(levels=levels), points=5)
    assert pol.integer
    t = pol.budgets(0.5 * pol.rate_range[1])
    assert all(np.any(np.isclose(x, lv)) for x, lv in zip(t, levels))


def test_roundtrip_file(example_policy, policy_file):
    pol = load_policy(policy_file)
    np.testing.assert_array_equal(pol.rates, example_policy.rates)
    np.testing.assert_array_equal(pol.grid_budgets, example_policy.grid_budgets)
    assert pol.names == example_policy.names
    assert pol.scenario.to_dict() == example_policy.scenario.to_dict()
    rate = 0.37 * pol.rate_range[1]
    np.testing.assert_array_equal(pol.budgets(rate), example_policy.budgets(rate))
    assert cvxalloc.load_policy is load_policy and isinstance(pol, cvxalloc.Policy)


def _data(policy_file):
    return json.loads(policy_file.read_text())


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d: d.pop("rates"), 'missing key "rates"'),
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d["rates"].reverse(), "strictly increasing"),
        (lambda d: d["rates"].__setitem__(3, float("nan")), "non-finite"),
        (lambda d: d["gaps"].pop(), "one entry per grid rate"),
        (lambda d: d["budgets"]["chat"].__setitem__(0, -5.0), "leave [min_tokens"),
        (lambda d: d["budgets"].pop("math"), 'no budgets for task "math"'),
        (lambda d: d["scenario"]["queue"].update(latency_weight=-1), "scenario"),
        (lambda d: d["budgets"]["olympiad"].__setitem__(-1, 32768.0), "unstable"),
    ],
)
def test_bad_policy_files(tmp_path, policy_file, change, words):
    data = _data(policy_file)
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PolicyError, match=None) as info:
        load_policy(path)
    assert words in str(info.value)


def test_rate_outside_range(example_policy):
    with pytest.raises(PolicyError, match="outside the policy's range"):
        example_policy.budgets(2 * example_policy.rate_range[1])
    with pytest.raises(PolicyError, match="outside"):
        example_policy.gap(-0.1)
    with pytest.raises(PolicyError, match="outside"):
        example_policy.budgets(float("nan"))
    with pytest.raises(PolicyError, match="not in the policy"):
        example_policy.budget("poetry", 0.01)


def test_not_json_and_missing(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("{not json")
    with pytest.raises(PolicyError, match="not valid JSON"):
        load_policy(path)
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "none.json")
    with pytest.raises(PolicyError, match="object"):
        policy_from_dict([1, 2])  # type: ignore[arg-type]


def test_constraints_refused():
    sc = cvxalloc.example_scenario()
    from cvxalloc import Constraints

    cons = Constraints(max_mean_system_time=60.0)
    with pytest.raises(cvxalloc.ScenarioError, match="constraints"):
        build_policy(sc.with_(constraints=cons))


def test_batching_supported():
    path = Path(cvxalloc.__file__).parent / "data" / "example_batching.toml"
    sc = cvxalloc.load_scenario(path)
    pol = build_policy(sc, points=9)
    high = pol.rate_range[1]
    assert high > sc.max_stable_arrival_rate(sc.min_tokens) * 0.999
    rate = 0.6 * high
    ans = pol.lookup(rate)
    assert _fresh(sc, rate).objective - ans.objective <= ans.gap + 1e-12


def test_cli_build_and_query(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["policy", "--output", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tolerance_met"] and summary["max_grid_relative_gap"] <= 1e-9
    data = json.loads(out.read_text())
    assert data["format"] == "cvxalloc-policy" and data["version"] == 1
    assert set(data["budgets"]) == set(data["tasks"]) and "scenario" in data
    assert main(["policy", "--query", str(out), "--rate", "0.05", "--json"]) == 0
    ans = json.loads(capsys.readouterr().out)
    pol = load_policy(out)
    assert ans["tokens"]["math"] == pytest.approx(pol.budget("math", 0.05))
    assert ans["gap"] == pytest.approx(pol.gap(0.05))
    assert main(["policy", "--query", str(out), "--rate", "0.05", "--task", "code"]) == 0
    assert float(capsys.readouterr().out) == pytest.approx(pol.budget("code", 0.05))
    assert main(["policy", "--query", str(out), "--rate", "0.05"]) == 0
    assert "proven gap" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--rate", "5"], "outside the policy's range"),
        (["--rate", "0.01", "--task", "nope"], "not in the policy"),
        ([], "needs --rate"),
    ],
)
def test_cli_query_errors(tmp_path, capsys, policy_file, argv, words):
    assert main(["policy", "--query", str(policy_file), *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_cli_bad_file_exit_2(tmp_path, capsys):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"format": "cvxalloc-policy", "version": 1}))
    assert main(["policy", "--query", str(path), "--rate", "0.01"]) == 2
    assert 'missing key "tasks"' in capsys.readouterr().err


def test_cli_build_errors(tmp_path, capsys):
    assert main(["policy", "--points", "1", "--output", str(tmp_path / "p.json")]) == 2
    assert "points" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()
    assert main(["policy", "--rate", "0.1"]) == 2
    assert "--query" in capsys.readouterr().err


def test_route_request_example_runs(policy_file):
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "docs" / "examples" / "route_request.py"
    argv = [sys.executable, str(script), "--policy", str(policy_file)]
    out = subprocess.run(
        argv + ["--type", "math", "--rate", "0.05"], capture_output=True, text=True, check=True
    ).stdout
    pol = load_policy(policy_file)
    budget = int(pol.budget("math", 0.05))
    assert f"thinking budget {budget} tokens" in out
    body = json.loads(out.strip().splitlines()[-1])  # vLLM's request (the default format)
    assert body["thinking_token_budget"] == budget and body["max_tokens"] > budget
    # the Messages API takes no budget in (0, 1024): refused, pointing to a menu policy
    assert 0 < budget < 1024
    bad = subprocess.run(
        argv + ["--type", "math", "--rate", "0.05", "--format", "anthropic"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert "below the Messages API's smallest thinking budget (1,024)" in bad.stderr
    out = subprocess.run(
        argv + ["--text", "Prove this AIME problem", "--rate", "5", "--queue", "3"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "task olympiad" in out and "held at the policy's top" in out


def test_route_request_with_the_menu_policy_sends_valid_budgets(tmp_path, capsys):
    # the menu scenario's budgets are 0 or >= 1,024: every request it answers is valid
    import importlib.util

    root = Path(__file__).resolve().parent.parent
    menu = build_policy(cvxalloc.load_scenario(root / "docs" / "examples" / "example_menu.toml"))
    path = tmp_path / "menu.json"
    path.write_text(json.dumps(menu.to_dict()))
    spec = importlib.util.spec_from_file_location(
        "route_request", root / "docs" / "examples" / "route_request.py"
    )
    router = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(router)
    for task in menu.names:
        for rate in ("0", "0.05", "0.2"):
            argv = ["--policy", str(path), "--type", task, "--rate", rate, "--format", "anthropic"]
            assert router.main(argv) == 0
            out = capsys.readouterr().out
            thinking = json.loads(out.strip().splitlines()[-1])["thinking"]
            assert thinking["type"] == "disabled" or thinking["budget_tokens"] >= 1024


@settings(max_examples=4, deadline=None)
@given(sc=scenarios(max_n=6), fracs=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3))
def test_random_scenarios_within_stated_gap(sc, fracs):
    pol = build_policy(sc, points=9)
    assert pol.info["max_grid_relative_gap"] <= GRID_CERTIFICATE_TOL
    low, high = pol.rate_range
    for f in fracs:
        rate = low + f * (high - low)
        ans = pol.lookup(rate)
        at = sc.with_(arrival_rate=rate)
        assert at.utilization(ans.tokens) < 1
        fresh = cvxalloc.solve(at)
        assert fresh.objective - ans.objective <= ans.gap + 1e-9 * max(abs(fresh.objective), 1)
        if pol.info["tolerance_met"]:
            assert ans.scaled_gap <= DEFAULT_TOLERANCE


@pytest.fixture(scope="module")
def scv_policy():
    return build_policy(cvxalloc.example_scenario(), arrival_scv=[1.0, 1.4])


def test_arrival_scv_grid(scv_policy, rng, tmp_path):
    pol = scv_policy
    sc = pol.scenario
    assert pol.arrival_scv_range == (1.0, 1.4) and len(pol.by_arrival_scv) >= 2
    low, high = pol.rate_range
    for rate, c in zip(rng.uniform(low, high, 25), rng.uniform(1.0, 1.4, 25)):
        ans = pol.lookup(rate, c)
        at = sc.with_(arrival_rate=rate, arrival_scv=c)
        assert at.utilization(ans.tokens) < 1
        fresh = cvxalloc.solve(at)
        assert fresh.objective - ans.objective <= ans.gap + 1e-12 * abs(fresh.objective)
    # the scenario's own arrival_scv is the top level
    np.testing.assert_array_equal(pol.budgets(0.05), pol.budgets(0.05, sc.arrival_scv))
    path = tmp_path / "p.json"
    pol.save(path)
    again = load_policy(path)
    np.testing.assert_array_equal(again.budgets(0.05, 1.3), pol.budgets(0.05, 1.3))
    with pytest.raises(PolicyError, match="outside the policy's range"):
        pol.budgets(0.05, 3.0)
    data = json.loads(path.read_text())
    data["by_arrival_scv"].reverse()
    path.write_text(json.dumps(data))
    with pytest.raises(PolicyError, match="increasing"):
        load_policy(path)


def test_arrival_scv_grid_refusals(example_policy):
    with pytest.raises(PolicyError, match="grid of them"):
        example_policy.budgets(0.05, 2.0)
    sc = cvxalloc.example_scenario().with_(step=[256.0] * 5)
    with pytest.raises(cvxalloc.ScenarioError, match="continuous budgets only"):
        build_policy(sc, arrival_scv=[1.0, 1.4])
    with pytest.raises(cvxalloc.ScenarioError, match=">= 0"):
        build_policy(cvxalloc.example_scenario(), arrival_scv=[1.0, -2.0])


def test_cli_arrival_scv(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["policy", "--arrival-scv", "1,1.1", "--output", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["arrival_scv_range"] == [1.0, 1.1]
    argv = ["policy", "--query", str(out), "--rate", "0.05", "--arrival-scv", "1.05", "--json"]
    assert main(argv) == 0
    ans = json.loads(capsys.readouterr().out)
    assert ans["tokens"]["olympiad"] == pytest.approx(
        load_policy(out).budget("olympiad", 0.05, 1.05)
    )
    assert main(["policy", "--query", str(out), "--rate", "0.05", "--arrival-scv", "9"]) == 2
    assert "outside" in capsys.readouterr().err
    assert main(["policy", "--arrival-scv", "a,b"]) == 2
    assert "--arrival-scv" in capsys.readouterr().err


def test_repr_is_a_summary_and_the_dict_rebuilds(example_policy):
    """A policy's repr is not source (it would write out the whole scenario and grid):
    ``policy_from_dict(pol.to_dict())`` is the round trip."""
    text = repr(example_policy)
    low, high = example_policy.rate_range
    assert text == (
        f"Policy(n=5, rates={example_policy.rates.size}, rate_range=({low:g}, {high:g}), "
        "continuous)"
    )
    again = policy_from_dict(json.loads(json.dumps(example_policy.to_dict())))
    assert again.to_dict() == example_policy.to_dict()
    assert repr(again) == text


def test_lookup_repr_rebuilds_it(example_policy):
    from dataclasses import fields

    from cvxalloc.policy import Lookup

    for rate in (0.0, 0.37 * example_policy.rate_range[1], example_policy.rates[3]):
        ans = example_policy.lookup(rate)
        again = eval(repr(ans), {"np": np, "Lookup": Lookup})
        for f in fields(ans):
            np.testing.assert_equal(getattr(again, f.name), getattr(ans, f.name), f.name)
        assert again.tokens.dtype == ans.tokens.dtype and repr(again) == repr(ans)


def test_reported_interpolation_gap_is_the_largest_answer_gap_at_the_probes(rng):
    # probes are first bounded by the interpolated budgets' certificate; the gap the
    # policy reports must still be the largest gap of the answers themselves there
    from cvxalloc.policy.build import _CHECK_PROBES, _REFINE_PROBES

    sc = random_scenario(rng, 40, load="heavy")
    pol = build_policy(sc, points=5)
    info = pol.info
    assert pol.lookup(info["interpolation_worst_rate"]).scaled_gap == pytest.approx(
        info["interpolation_max_relative_gap"], rel=1e-12
    )
    r = pol.rates
    for j in range(r.size - 1):
        for th in _REFINE_PROBES + _CHECK_PROBES:  # probed in every interval
            ans = pol.lookup(r[j] + th * (r[j + 1] - r[j]))
            assert ans.scaled_gap <= info["interpolation_max_relative_gap"] * (1 + 1e-12)
    assert info["tolerance_met"]


@pytest.mark.parametrize("seed", [3, 11])
def test_warm_started_grid_is_the_cold_optimum(seed):
    # grid solves start from scalars predicted off their neighbours; each grid point must
    # be what a cold solve at its rate finds, and certified on its own (recomputed here)
    sc = random_scenario(np.random.default_rng(seed), 60, load="heavy")
    pol = build_policy(sc, points=9)
    for rate, tokens in zip(pol.rates, pol.continuous_budgets):
        at = sc.with_arrival_rate(float(rate))
        cold = cvxalloc.solve(at)
        assert cold.status == "optimal" and cold.diagnostics.get("start") != "warm"
        cert = cvxalloc.certify(at, tokens)
        acc = float(at.probability * at.weight @ at.accuracy.value(tokens))
        assert cert.gap <= GRID_CERTIFICATE_TOL * max(abs(cert.objective), acc)
        # both proven within their gaps of the same optimum
        assert abs(cert.objective - cold.objective) <= cert.gap + cold.certificate.gap + 1e-14
        span = at.max_tokens - at.min_tokens
        np.testing.assert_allclose(tokens, cold.tokens, rtol=0, atol=1e-9 * span.max())


@pytest.mark.parametrize("seed", [2, 9])
def test_probe_bounds_never_below_the_answers_gap(seed):
    # refinement settles a probe by certifying the answer's candidates one by one (the
    # interpolation, its responses, then the neighbours) and stops once the target is
    # proven: whatever it stops with must bound the gap of the answer a lookup gives,
    # and when it certifies them all it must be that gap
    from cvxalloc.policy import build
    from cvxalloc.policy.lookup import _d1_bounds

    sc = random_scenario(np.random.default_rng(seed), 30, load="heavy")
    pol = build_policy(sc, points=4, max_points=4)  # coarse on purpose: probes over target
    rates, cont, d1 = pol.rates, pol.continuous_budgets, _d1_bounds(sc)
    seen = {True: 0, False: 0}
    for j in range(rates.size - 1):
        for th in (0.1, 0.5, 0.9):
            g0, found = build._interpolated_gap(sc, rates, cont, j, th, d1)
            ans = pol.lookup(rates[j] + th * (rates[j + 1] - rates[j]))
            assert g0 >= ans.scaled_gap * (1 - 1e-12)
            for target in (0.0, 0.5 * g0):
                g, exact = build._bounded_gap(sc, rates, cont, j, th, d1, found, target)
                seen[exact] += 1
                if exact:
                    assert g == pytest.approx(ans.scaled_gap, rel=1e-12, abs=1e-300)
                else:
                    assert g <= target and g >= ans.scaled_gap * (1 - 1e-12)
    assert seen[True] > 0 and seen[False] > 0, seen


def test_far_failed_intervals_split_on_the_halving_lattice():
    # an interval failed by far at its midpoint is split at its quarters or eighths at once:
    # the very floats successive halvings give, so the grid stays on the same lattice
    from cvxalloc.policy.build import _EIGHTHS_AT, _QUARTERS_AT, _dyadic, _split_depth

    lo, hi = 0.1, 0.7
    mid = 0.5 * (lo + hi)
    assert _dyadic(lo, hi, 1) == [mid]
    assert _dyadic(lo, hi, 2) == [0.5 * (lo + mid), mid, 0.5 * (mid + hi)]
    assert _dyadic(lo, hi, 3)[1::2] == _dyadic(lo, hi, 2)
    assert [_split_depth(r) for r in (1.0, _QUARTERS_AT, _EIGHTHS_AT, 1e9)] == [1, 2, 3, 3]
    sc = random_scenario(np.random.default_rng(4), 200, load="heavy")
    pol = build_policy(sc, points=3)
    top = pol.rates[-1]
    # every rate is k / 2^d of the way along one of the two initial intervals
    for r in pol.rates:
        x = r / (0.5 * top)
        assert any(abs(x * 2**d - round(x * 2**d)) < 1e-9 for d in range(20))
    assert pol.info["tolerance_met"] and pol.info["max_grid_relative_gap"] <= GRID_CERTIFICATE_TOL


@pytest.mark.parametrize("kind", ["batching", "fleet"])
def test_rates_added_between_solved_ones_are_the_cold_optimum_for_other_queues(kind):
    # the refinement re-solves a rate between two solved ones on per-type parts built once
    # and only the queue re-targeted (Reduced.with_queue): a batching server (no m2 in W)
    # and a fleet's router must come out as a cold solve at that rate does
    from cvxalloc.queue.fleet import Fleet

    if kind == "batching":
        sc = cvxalloc.load_scenario(
            Path(cvxalloc.__file__).parent / "data" / "example_batching.toml"
        )
    else:
        sc = random_scenario(np.random.default_rng(3), 40, load="heavy")
        sc = sc.with_fleet(Fleet(3, "shortest-queue"))
    pol = build_policy(sc, points=5)
    assert pol.rates.size > 9  # refined: most rates were added between solved ones
    for rate, tokens in zip(pol.rates, pol.continuous_budgets):
        at = sc.with_arrival_rate(float(rate))
        cold = cvxalloc.solve(at)
        assert cold.status == "optimal"
        span = (at.max_tokens - at.min_tokens).max()
        np.testing.assert_allclose(tokens, cold.tokens, rtol=0, atol=1e-9 * span)
    assert pol.info["tolerance_met"] and pol.info["max_grid_relative_gap"] <= GRID_CERTIFICATE_TOL
