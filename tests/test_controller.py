"""The controller replay: same replay for every strategy, no look-ahead, figures, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cvxalloc
from cvxalloc.cli import main
from cvxalloc.controller import (
    STRATEGIES,
    ControlReplay,
    StrategyStats,
    replay_controller,
)
from cvxalloc.plots import control_comparison_figure, control_figure
from cvxalloc.policy import build_policy
from cvxalloc.queue import pollaczek_khinchine
from cvxalloc.requestlog import RequestLog

TRACES = Path(__file__).resolve().parent.parent / "validation" / "data" / "traces"


@pytest.fixture(scope="module")
def policy():
    return build_policy(cvxalloc.example_scenario())


def _log(times, types=None, tokens=None):
    return RequestLog(
        times=np.asarray(times, dtype=float),
        types=None if types is None else np.asarray(types),
        tokens=None if tokens is None else np.asarray(tokens, dtype=float),
        source="synthetic",
        columns=("time",),
        time_column="time",
        time_unit="s",
    )


def test_poisson_log_static_matches_pk(policy):
    sc = cvxalloc.example_scenario()
    times = np.cumsum(np.random.default_rng(5).exponential(1.0, 60_000))
    rep = replay_controller(sc, _log(times), target_utilization=0.5, seeds=4, policy=policy)
    st = rep.strategies["static"]
    lam = rep.settings["average_rate"]
    res = cvxalloc.solve(sc.with_(arrival_rate=lam))
    assert res.evaluation.utilization == pytest.approx(0.5, abs=1e-6)
    W = res.evaluation.mean_system_time
    assert abs(st.mean_system_time / W - 1) < 0.1
    assert abs(st.accuracy - res.evaluation.accuracy) < 0.02
    assert set(rep.strategies) == {"static", "uniform", "adaptive", "oracle"}
    # on stationary Poisson traffic adapting to noise cannot pay much
    assert abs(rep.strategies["adaptive"].utility_vs_static) < 0.01
    lo, hi = st.utility_ci
    assert lo <= st.utility <= hi
    assert st.p95 <= st.p99


@pytest.mark.parametrize("max_running", [None, 8])
def test_batching_server_static_plan_matches_the_model(max_running):
    # a batching [server] (issue 19): the replay serves the log through the batching
    # engine, clock moved window by window; on Poisson traffic the static plan's mean
    # system time is the batching model's at the replay's rate
    path = Path(cvxalloc.__file__).parent / "data" / "example_batching.toml"
    sc = cvxalloc.load_scenario(path)
    if max_running is not None:
        sc = sc.with_(server={**sc.server.curve.to_dict(), "max_running": max_running})
    times = np.cumsum(np.random.default_rng(3).exponential(1.0, 40_000))
    rep = replay_controller(sc, _log(times), target_utilization=0.5, seeds=3)
    st = rep.strategies["static"]
    res = cvxalloc.solve(sc.with_(arrival_rate=rep.settings["average_rate"]))
    assert res.evaluation.utilization == pytest.approx(0.5, abs=1e-6)
    assert abs(st.mean_system_time / res.evaluation.mean_system_time - 1) < 0.1
    assert abs(st.accuracy - res.evaluation.accuracy) < 0.02
    # the oracle plans each window knowing its rate: on stationary traffic it cannot
    # lose much to the static plan, and every strategy keeps the server stable
    assert rep.strategies["oracle"].utility_vs_static > -0.01
    for s in rep.strategies.values():
        assert s.p95 <= s.p99 and np.isfinite(s.mean_system_time)


def test_fixed_plans_and_window_zero(policy):
    sc = cvxalloc.example_scenario()
    times = np.cumsum(np.random.default_rng(1).exponential(1.0, 5_000))
    rep = replay_controller(sc, _log(times), seeds=2, policy=policy)
    win = rep.windows
    assert np.ptp(win["mean_tokens"]["static"]) < 1e-9
    assert np.ptp(win["mean_tokens"]["uniform"]) < 1e-9
    # the first window runs the static plan (nothing seen yet)
    assert win["mean_tokens"]["adaptive"][0] == pytest.approx(win["mean_tokens"]["static"][0])
    assert rep.settings["windows"] == 60 and np.isnan(win["planned_rate"][0])


def test_no_look_ahead(policy):
    sc = cvxalloc.example_scenario()
    rng = np.random.default_rng(2)
    gaps = rng.exponential(10.0, 4_000)
    times = np.cumsum(gaps)
    later = gaps.copy()
    later[2_001:] = np.sort(later[2_001:])  # same count, span and average; other timing
    other = np.cumsum(later)
    kw = dict(target_utilization=None, window=500.0, seeds=2, policy=policy)
    a = replay_controller(sc, _log(times), **kw)
    b = replay_controller(sc, _log(other), **kw)
    k_cut = int(times[2_000] // 500.0)  # windows up to k_cut are planned before the change
    ta, tb = a.windows["mean_tokens"]["adaptive"], b.windows["mean_tokens"]["adaptive"]
    np.testing.assert_allclose(ta[: k_cut + 1], tb[: k_cut + 1], rtol=1e-12)
    assert not np.allclose(ta[k_cut + 2 :], tb[k_cut + 2 :])


def test_backlog_lowers_budgets_after_a_burst(policy):
    sc = cvxalloc.example_scenario()
    rng = np.random.default_rng(3)
    quiet = np.cumsum(rng.exponential(20.0, 600))
    burst = quiet[-1] + np.cumsum(rng.exponential(1.0, 300))
    calm = burst[-1] + np.cumsum(rng.exponential(20.0, 600))
    times = np.concatenate([quiet, burst, calm])
    kw = dict(target_utilization=None, window=300.0, seeds=3, policy=policy)
    on = replay_controller(sc, _log(times), **kw)
    off = replay_controller(sc, _log(times), backlog=False, **kw)
    after = int(burst[-1] // 300.0) + 2  # the burst is over; its queue is not
    assert on.windows["planned_rate"][after] > off.windows["planned_rate"][after]
    assert (
        on.windows["mean_tokens"]["adaptive"][after] < off.windows["mean_tokens"]["adaptive"][after]
    )


def test_types_and_tokens_from_the_log(policy):
    sc = cvxalloc.example_scenario()
    rng = np.random.default_rng(4)
    n = 6_000
    times = np.cumsum(rng.exponential(1.0, n))
    types = rng.choice(sc.names, size=n, p=sc.probability)
    tokens = rng.integers(10, 400, n)
    rep = replay_controller(sc, _log(times, types, tokens), seeds=2)
    assert "adaptive-mix" in rep.strategies
    assert rep.settings["types"] == "log" and rep.settings["answer_tokens"]["mean"] > 0
    d = rep.to_dict()
    json.dumps(d, allow_nan=False)
    assert set(d["strategies"]) == set(STRATEGIES)


def test_azure_code_trace_runs(policy):
    from cvxalloc.requestlog import read_request_log

    log = read_request_log(TRACES / "AzureLLMInferenceTrace_code.csv")
    rep = replay_controller(cvxalloc.example_scenario(), log, seeds=2, policy=policy)
    fig = control_figure(rep, "code")
    assert len(fig.axes) == 3
    both = control_comparison_figure({"code": rep, "again": rep})
    assert len(both.axes) == 6 and both.axes[0].get_title().startswith("code trace")
    for st in rep.strategies.values():
        assert np.isfinite(st.utility) and st.mean_system_time > 0


def test_errors():
    sc = cvxalloc.example_scenario()
    times = np.arange(100.0)
    with pytest.raises(cvxalloc.ScenarioError, match="utilization"):
        replay_controller(sc, _log(times), target_utilization=1.2)
    with pytest.raises(cvxalloc.ScenarioError, match="two"):
        replay_controller(sc, _log([1.0]))
    with pytest.raises(cvxalloc.ScenarioError, match="strategy"):
        replay_controller(sc, _log(times), strategies=("magic",))
    with pytest.raises(cvxalloc.ScenarioError, match="estimator"):
        replay_controller(sc, _log(times), estimator="psychic")
    assert pollaczek_khinchine(0.0, 1.0, 1.0) == 1.0


def _csv(tmp_path, n=3_000):
    times = np.cumsum(np.random.default_rng(0).exponential(1.0, n))
    path = tmp_path / "log.csv"
    path.write_text("time,tokens\n" + "".join(f"{t:.4f},{i % 300}\n" for i, t in enumerate(times)))
    return path


def test_cli_control(tmp_path, capsys):
    log = _csv(tmp_path)
    png = tmp_path / "c.png"
    argv = ["control", str(log), "--seeds", "2", "--json", "--plot", str(png)]
    assert main(argv + ["--tokens-column", "tokens"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["strategies"]) == set(STRATEGIES) and png.stat().st_size > 0
    for key in ("accuracy", "mean_system_time", "p95", "p99", "utility", "utility_ci"):
        assert key in out["strategies"]["adaptive"]
    assert main(["control", str(log), "--seeds", "2", "--no-backlog", "--estimator", "last"]) == 0
    text = capsys.readouterr().out
    assert "oracle" in text and "backlog term off" in text


def test_cli_control_with_policy_file(tmp_path, capsys, policy):
    log = _csv(tmp_path)
    path = tmp_path / "p.json"
    policy.save(path)
    assert main(["control", str(log), "--seeds", "2", "--policy", str(path)]) == 0
    assert "adaptive" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--utilization", "1.5"], "--utilization"),
        (["--seeds", "0"], "--seeds"),
        (["--window", "-3"], "--window"),
        (["--plot", "x.pdf"], "PNG"),
        (["--scenario", "a.toml", "--policy", "b.json"], "not both"),
    ],
)
def test_cli_control_errors(tmp_path, capsys, extra, words):
    log = _csv(tmp_path, 50)
    assert main(["control", str(log), *extra]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_repr_rebuilds_the_replay(policy):
    sc = cvxalloc.example_scenario()
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.exponential(1.0, 3_000))
    types = rng.choice(sc.names, times.size)
    rep = replay_controller(sc, _log(times, types=types), seeds=2, policy=policy)
    assert rep.settings["windows"] <= 100 and np.isnan(rep.windows["planned_rate"][0])
    scope = {"np": np, "ControlReplay": ControlReplay, "StrategyStats": StrategyStats}
    again = eval(repr(rep), scope)
    assert again.strategies == rep.strategies  # StrategyStats compare field by field
    assert list(again.strategies) == list(rep.strategies)
    assert again.settings == rep.settings
    np.testing.assert_equal(again.windows, rep.windows)  # NaN where a window is empty

    def arrays(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from arrays(v, prefix + k + ".")
            elif isinstance(v, np.ndarray):
                yield prefix + k, v

    for (name, a), (_, b) in zip(arrays(rep.windows), arrays(again.windows)):
        assert b.dtype == a.dtype, name
    for st in rep.strategies.values():
        assert eval(repr(st), scope) == st
    assert repr(again) == repr(rep)
