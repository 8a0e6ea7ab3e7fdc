"""Trace replay (``simulate --arrivals``) against an independent Lindley loop and the formulas."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_simulate import assert_same_fields

import cvxalloc
from cvxalloc.cli import main
from cvxalloc.errors import ScenarioError
from cvxalloc.objective import evaluate
from cvxalloc.queue import kingman, pollaczek_khinchine
from cvxalloc.requestlog import read_request_log
from cvxalloc.simulate import ReplayResult, simulate_replay

TRACES = Path(__file__).resolve().parent.parent / "validation" / "data" / "traces"
CODE = TRACES / "AzureLLMInferenceTrace_code.csv"
CONV = TRACES / "AzureLLMInferenceTrace_conv.csv"

ONE_TYPE = """\
[queue]
arrival_rate = 1.0
latency_weight = 0.05

[[task]]
name = "only"
probability = 1.0
max_tokens = 1000
[task.service]
base = {base}
per_token = 0.0002
[task.accuracy]
model = "exponential"
floor = 0.3
ceiling = 0.9
scale = 400
"""

TWO_TYPES = """\
[queue]
arrival_rate = 1.0
latency_weight = 0.02

[[task]]
name = "chat"
probability = 0.7
max_tokens = 2000
[task.service]
base = 0.02
per_token = 0.00005
scv = 0.5
[task.accuracy]
model = "exponential"
floor = 0.4
ceiling = 0.8
scale = 500

[[task]]
name = "code"
probability = 0.3
max_tokens = 4000
[task.service]
base = 0.03
per_token = 0.00004
variance = 0.001
[task.accuracy]
model = "power"
floor = 0.3
ceiling = 0.9
scale = 800
exponent = 1.2
"""


def _load(text: str, tmp_path: Path, name: str = "sc.toml"):
    path = tmp_path / name
    path.write_text(text)
    return cvxalloc.load_scenario(path), path


def lindley_loop(times, service):
    """System and waiting times of a FIFO single server, one arrival at a time."""
    waits, systems = [], []
    w = 0.0
    for n, t in enumerate(times):
        if n > 0:
            w = max(0.0, w + service[n - 1] - (t - times[n - 1]))
        waits.append(w)
        systems.append(w + service[n])
    return waits, systems


@pytest.mark.parametrize("path", [CODE, CONV])
@pytest.mark.parametrize(("target", "warmup", "replications"), [(None, 0, 3), (0.8, 50, 1)])
def test_deterministic_replay_equals_the_lindley_loop(tmp_path, path, target, warmup, replications):
    sc, _ = _load(ONE_TYPE.format(base=0.05), tmp_path)
    tokens = np.array([500.0])  # service 0.05 + 0.1 = 0.15 s, every query
    s = 0.15
    log = read_request_log(path)
    rep = simulate_replay(
        sc,
        tokens,
        log,
        seed=4,
        target_utilization=target,
        warmup=warmup,
        replications=replications,
        batches=10,
    )
    raw = [float(x) for x in log.times]
    rate = (len(raw) - 1) / (raw[-1] - raw[0])
    factor = 1.0 if target is None else rate * s / target
    times = [x * factor for x in raw]
    waits, systems = lindley_loop(times, [s] * len(times))
    kept_w, kept_s = waits[warmup:], systems[warmup:]
    assert rep.arrivals["rescale"] == pytest.approx(factor, rel=1e-12)
    assert rep.mean_system_time == pytest.approx(sum(kept_s) / len(kept_s), rel=1e-9)
    assert rep.mean_waiting_time == pytest.approx(sum(kept_w) / len(kept_w), rel=1e-9)
    pooled = np.tile(kept_s, replications)  # percentiles pool every replication's records
    for q in (50, 95, 99):
        expect = np.percentile(pooled, q)
        assert rep.percentiles[f"p{q}"] == pytest.approx(expect, rel=1e-5, abs=1e-6)
    busy_end = times[-1] + waits[-1] + s
    assert rep.utilization == pytest.approx(s * len(times) / busy_end, rel=1e-9)
    # deterministic service: every replication is the same, the interval has no width
    if replications > 1:
        low, high = rep.mean_system_time_ci
        assert high - low == pytest.approx(0.0, abs=1e-9)
    assert rep.interval == ("replications" if replications > 1 else "batch means")


def test_log_types_follow_their_own_service(tmp_path):
    sc, _ = _load(TWO_TYPES, tmp_path)
    tokens = np.array([1000.0, 2000.0])
    s = sc.service_time(tokens)
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.exponential(0.12, 5000))
    names = rng.choice(["chat", "code"], size=times.size, p=[0.4, 0.6])
    rep = simulate_replay(
        sc, tokens, times, types=names, seed=1, service="deterministic", replications=2
    )
    service = [float(s[0] if k == "chat" else s[1]) for k in names]
    waits, systems = lindley_loop([float(x) for x in times], service)
    assert rep.mean_system_time == pytest.approx(np.mean(systems), rel=1e-9)
    assert rep.arrivals["types"] == "log" and rep.service == "deterministic"
    mix = np.array([np.mean(names == "chat"), np.mean(names == "code")])
    assert rep.predictions["m1"] == pytest.approx(mix @ s)
    assert rep.predictions["m2"] == pytest.approx(mix @ s**2)
    with pytest.raises(ScenarioError, match="type 'math' is not a task.*chat, code"):
        simulate_replay(sc, tokens, times[:3], types=["chat", "math", "code"])


def test_predictions_and_rescaling_match_the_formulas(tmp_path):
    sc, _ = _load(TWO_TYPES, tmp_path)
    tokens = np.array([1200.0, 1500.0])
    log = read_request_log(CODE)
    rep = simulate_replay(sc, tokens, log, seed=2, target_utilization=0.6)
    s = sc.service_time(tokens)
    p = sc.probability
    m1 = float(p @ s)
    m2 = float(p @ ((1 + sc.scv) * s**2 + sc.variance))
    t = log.times
    rate_log = (t.size - 1) / (t[-1] - t[0])
    factor = rate_log * m1 / 0.6
    gaps = np.diff(t) * factor
    ca2 = np.var(gaps) / np.mean(gaps) ** 2
    lam = rate_log / factor
    assert rep.arrivals["rescale"] == pytest.approx(factor)
    assert rep.arrivals["rate"] == pytest.approx(lam) and lam * m1 == pytest.approx(0.6)
    assert rep.arrivals["arrival_scv"] == pytest.approx(ca2) == pytest.approx(172.956, rel=1e-4)
    assert rep.arrivals["log_rate"] == pytest.approx(rate_log)
    assert rep.utilization_model == pytest.approx(0.6)
    pred = rep.predictions
    assert pred["pollaczek_khinchine"] == pytest.approx(pollaczek_khinchine(lam, m1, m2))
    w_k = m1 + lam * (m2 - (1 - ca2) * m1**2) / (2 * (1 - lam * m1))
    assert pred["kingman_measured_scv"] == pytest.approx(w_k)
    assert pred["kingman_measured_scv"] == pytest.approx(kingman(lam, m1, m2, ca2))
    model = evaluate(sc.with_(arrival_rate=lam), tokens).mean_system_time
    assert pred["model"] == pytest.approx(model) == pytest.approx(rep.mean_system_time_model)
    # the bursty code trace waits far longer than Poisson arrivals would
    assert rep.mean_system_time > 5 * pred["pollaczek_khinchine"]


def test_poisson_log_agrees_with_pollaczek_khinchine():
    sc = cvxalloc.example_scenario()
    t = 0.5 * (sc.min_tokens + sc.max_tokens)
    times = np.cumsum(np.random.default_rng(7).exponential(1.0, 1_000_000))
    rep = simulate_replay(sc, t, times, seed=3, target_utilization=0.5, replications=2)
    pk = rep.predictions["pollaczek_khinchine"]
    assert rep.arrivals["arrival_scv"] == pytest.approx(1.0, abs=0.01)
    assert rep.mean_system_time == pytest.approx(pk, rel=0.05)
    assert rep.accuracy == pytest.approx(rep.accuracy_model, abs=0.003)
    assert rep.utilization == pytest.approx(0.5, abs=0.01)


def test_same_seed_same_numbers_and_overload_gives_no_prediction():
    sc = cvxalloc.example_scenario()
    times = np.cumsum(np.random.default_rng(1).exponential(1.0, 20_000))
    a = simulate_replay(sc, sc.min_tokens, times, seed=9, target_utilization=0.7)
    b = simulate_replay(sc, sc.min_tokens, times, seed=9, target_utilization=0.7)
    c = simulate_replay(sc, sc.min_tokens, times, seed=10, target_utilization=0.7)
    assert a.mean_system_time == b.mean_system_time != c.mean_system_time
    hot = simulate_replay(sc, sc.min_tokens, times, seed=9, target_utilization=1.3)
    assert hot.predictions["pollaczek_khinchine"] is None
    assert hot.predictions["kingman_measured_scv"] is None and hot.predictions["model"] is None
    d = hot.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["mean_system_time_model"] is None and d["utility_model"] is None


def test_replay_argument_errors():
    sc = cvxalloc.example_scenario()
    t = sc.min_tokens
    for times, kw, needle in [
        ([1.0], {}, "at least two arrivals"),
        ([1.0, 1.0, 1.0], {}, "one instant"),
        ([0.0, np.nan], {}, "finite"),
        ([0.0, 1.0], {"target_utilization": 0.0}, "target utilization"),
        ([0.0, 1.0], {"target_utilization": np.inf}, "target utilization"),
        ([0.0, 1.0], {"warmup": 2}, "warmup"),
        ([0.0, 1.0], {"replications": 0}, "replications"),
        ([0.0, 1.0], {"service": "lognormal"}, "service"),
        ([0.0, 1.0, 2.0], {"replications": 1, "batches": 30}, "batches"),
    ]:
        with pytest.raises(ScenarioError, match=needle):
            simulate_replay(sc, t, times, **kw)


# --------------------------------------------------------------------------
# the command
def test_cli_replay_keeps_the_simulate_keys(tmp_path, capsys):
    _, scen = _load(TWO_TYPES, tmp_path)
    alloc = tmp_path / "alloc.toml"
    alloc.write_text("chat = 1000\ncode = 2000\n")
    assert main(["simulate", str(scen), "--tokens", str(alloc), "--queries", "20000",
                 "--seed", "1", "--json"]) == 0  # fmt: skip
    plain = json.loads(capsys.readouterr().out)
    argv = ["simulate", str(scen), "--tokens", str(alloc), "--arrivals", str(CONV),
            "--seed", "1", "--target-utilization", "0.5", "--json"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(plain) <= set(out)
    assert out["tokens"] == {"chat": 1000.0, "code": 2000.0}
    assert out["queries"] == 19366 and out["replications"] == 10
    assert set(out["arrivals"]) >= {"source", "rate", "arrival_scv", "rescale"}
    assert set(out["predictions"]) >= {"model", "pollaczek_khinchine", "kingman_measured_scv"}
    assert out["arrivals"]["source"] == str(CONV)
    assert out["utilization_model"] == pytest.approx(0.5)
    assert main([*argv[:-1], "-o", str(tmp_path / "r.txt")]) == 0
    text = (tmp_path / "r.txt").read_text()
    assert "replayed" in text and "Kingman at measured SCV" in text


def _cli_error(argv, tmp_path, capsys, needle):
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and needle in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--target-utilization", "0.5"], "add --arrivals"),
        (["--time-column", "ts"], "--time-column applies to a trace replay"),
        (["--replications", "3"], "add --arrivals"),
        (["--arrivals", "{conv}", "--queries", "1000"], "--queries does not apply"),
        (["--arrivals", "{conv}", "--target-utilization", "0"], "--target-utilization"),
        (["--arrivals", "{conv}", "--target-utilization", "nan"], "--target-utilization"),
        (["--arrivals", "{conv}", "--replications", "0"], "--replications"),
        (["--arrivals", "{tmp}/missing.csv"], "no such file"),
        (["--arrivals", "{tmp}/header.csv"], "header only"),
        (["--arrivals", "{conv}", "--time-unit", "h"], "is not a unit"),
        (["--arrivals", "{conv}", "--type-column", "ContextTokens"], "is not a task"),
        (["--arrivals", "{conv}", "--warmup", "19366"], "warmup"),
    ],
)
def test_cli_replay_errors(tmp_path, capsys, extra, needle):
    _, scen = _load(TWO_TYPES, tmp_path)
    alloc = tmp_path / "alloc.toml"
    alloc.write_text("chat = 1000\ncode = 2000\n")
    (tmp_path / "header.csv").write_text("timestamp,x\n")
    extra = [a.replace("{conv}", str(CONV)).replace("{tmp}", str(tmp_path)) for a in extra]
    argv = ["simulate", str(scen), "--tokens", str(alloc), *extra, "-o", str(tmp_path / "o.json")]
    _cli_error(argv, tmp_path, capsys, needle)


def test_log_tokens_are_reported_beside_the_replay(tmp_path):
    sc, _ = _load(TWO_TYPES, tmp_path)
    log = read_request_log(CODE, tokens_column="GeneratedTokens")
    rep = simulate_replay(sc, np.array([1000.0, 2000.0]), log, seed=1, replications=2)
    tok = log.tokens
    assert rep.arrivals["tokens"] == {
        "column": "GeneratedTokens",
        "mean": pytest.approx(tok.mean()),
        "scv": pytest.approx(tok.var() / tok.mean() ** 2),
    }
    plain = simulate_replay(sc, np.array([1000.0, 2000.0]), read_request_log(CODE), seed=1)
    assert "tokens" not in plain.arrivals


def test_batching_server_is_refused_not_silently_simulated_as_fifo():
    class Batching:  # only the attribute the replay looks at first
        server = object()

    with pytest.raises(ScenarioError, match=r"\[server\] model"):
        simulate_replay(Batching(), [1.0], [0.0, 1.0])


@pytest.mark.parametrize(
    ("target", "replications", "tokens_column"),
    [(None, 1, "GeneratedTokens"), (1.3, 3, None)],  # batch means; overload: no predictions
)
def test_repr_rebuilds_the_replay_result(tmp_path, target, replications, tokens_column):
    sc, _ = _load(TWO_TYPES, tmp_path)
    log = read_request_log(CODE, tokens_column=tokens_column)
    rep = simulate_replay(
        sc,
        np.array([1000.0, 2000.0]),
        log,
        seed=5,
        target_utilization=target,
        replications=replications,
        batches=12,
        warmup=20,
    )
    text = repr(rep)
    assert text.startswith("ReplayResult(tokens=np.array([1000.0, 2000.0]), ")
    again = eval(text, {"np": np, "ReplayResult": ReplayResult})
    assert_same_fields(again, rep)
    assert again.to_dict() == rep.to_dict()
