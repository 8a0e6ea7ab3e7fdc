"""Traffic statistics against direct computations; `cvxalloc traffic` and its errors."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cvxalloc
from cvxalloc.cli import main
from cvxalloc.errors import ScenarioError
from cvxalloc.plots import traffic_figure
from cvxalloc.requestlog import RequestLog, read_request_log
from cvxalloc.traffic import TrafficSummary, measure_traffic, window_rates

TRACES = Path(__file__).resolve().parent.parent / "validation" / "data" / "traces"
CODE = TRACES / "AzureLLMInferenceTrace_code.csv"
CONV = TRACES / "AzureLLMInferenceTrace_conv.csv"

FAST = """\
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
[task.accuracy]
model = "power"
floor = 0.3
ceiling = 0.9
scale = 800
exponent = 1.2
"""


def _log(times, types=None, tokens=None) -> RequestLog:
    t = np.asarray(times, dtype=float)
    return RequestLog(
        times=t - t[0],
        types=None if types is None else np.asarray(types, dtype=str),
        tokens=None if tokens is None else np.asarray(tokens, dtype=float),
        source="test",
        columns=("ts",),
        time_column="ts",
        time_unit="s",
        tokens_column=None if tokens is None else "tok",
    )


def _direct_dispersion(t: np.ndarray, w: float) -> float | None:
    """Counts per complete window by a plain loop."""
    k = math.floor((t[-1] - t[0]) / w)
    if k < 2:
        return None
    counts = [0] * k
    for x in t:
        j = math.floor((x - t[0]) / w)
        if j < k:
            counts[j] += 1
    mean = sum(counts) / k
    return sum((c - mean) ** 2 for c in counts) / k / mean


@pytest.mark.parametrize(("path", "scv"), [(CODE, 173.0), (CONV, 1.2)])
def test_azure_statistics_equal_numpy(path, scv):
    log = read_request_log(path, tokens_column="GeneratedTokens")
    tr = measure_traffic(log)
    t = log.times
    gaps = np.diff(t)
    assert tr.requests == t.size
    assert tr.duration_seconds == t[-1] - t[0]
    assert tr.arrival_rate == pytest.approx((t.size - 1) / (t[-1] - t[0]), rel=1e-12)
    assert tr.arrival_scv == pytest.approx(np.var(gaps) / np.mean(gaps) ** 2, rel=1e-9)
    assert tr.arrival_scv == pytest.approx(scv, rel=0.01)
    for w in (1.0, 10.0, 60.0):
        assert tr.dispersion[f"{w:g}s"] == pytest.approx(_direct_dispersion(t, w), rel=1e-9)
    # per-window rates times window lengths count every request once
    assert np.sum(tr.window_rates * np.diff(tr.window_edges)) == pytest.approx(t.size)
    assert tr.window_edges[-1] == pytest.approx(tr.duration_seconds)
    tok = log.tokens
    assert tr.tokens["mean"] == pytest.approx(tok.mean())
    assert tr.tokens["scv"] == pytest.approx(tok.var() / tok.mean() ** 2)
    assert tr.type_mix is None


def test_code_trace_is_bursty_and_conv_is_nearly_poisson():
    code = measure_traffic(read_request_log(CODE))
    conv = measure_traffic(read_request_log(CONV))
    assert code.arrival_scv > 100 > 2 > conv.arrival_scv > 1
    assert code.dispersion["60s"] > code.dispersion["1s"] > 1


def test_type_mix_tokens_and_simultaneous_arrivals():
    times = [0, 0, 0, 1, 1, 2, 4, 4]
    types = ["b", "a", "a", "c", "a", "b", "a", "c"]
    tr = measure_traffic(_log(times, types, tokens=[1, 2, 3, 4, 5, 6, 7, 8]), window=3)
    assert tr.type_mix == {"a": 0.5, "b": 0.25, "c": 0.25}
    assert list(tr.type_mix) == ["a", "b", "c"]
    assert tr.zero_gaps == 4  # 0-0, 0-0, 1-1, 4-4
    assert tr.tokens == {"column": "tok", "mean": 4.5, "scv": pytest.approx(5.25 / 4.5**2),
                         "min": 1.0, "max": 8.0}  # fmt: skip
    np.testing.assert_allclose(tr.window_edges, [0, 3, 4])
    np.testing.assert_allclose(tr.window_rates, [6 / 3, 2 / 1])
    d = tr.to_dict()
    assert d["windows"] == {"seconds": 3.0, "count": 2, "last_seconds": 1.0, "rates": [2.0, 2.0]}


@settings(max_examples=80, deadline=None)
@given(
    gaps=st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 50.0)), min_size=1, max_size=400).filter(
        lambda g: sum(g) > 0
    ),
    window=st.floats(0.5, 200.0),
)
def test_random_logs_equal_a_direct_computation(gaps, window):
    t = np.concatenate([[0.0], np.cumsum(gaps)])
    tr = measure_traffic(_log(t), window=window)
    n = t.size
    mean = (t[-1] - t[0]) / (n - 1)
    var = sum((g - mean) ** 2 for g in np.diff(t)) / (n - 1)
    assert tr.arrival_rate == pytest.approx(1 / mean, rel=1e-9)
    assert tr.arrival_scv == pytest.approx(var / mean**2, rel=1e-7, abs=1e-9)
    assert tr.zero_gaps == sum(1 for g in np.diff(t) if g == 0)
    for w in (1.0, 10.0, 60.0):
        direct = _direct_dispersion(t, w)
        got = tr.dispersion[f"{w:g}s"]
        assert (got is None) == (direct is None)
        if direct is not None:
            assert got == pytest.approx(direct, rel=1e-9, abs=1e-12)
    counts = np.round(tr.window_rates * np.diff(tr.window_edges)).astype(int)
    assert counts.sum() == n and np.all(np.diff(tr.window_edges) > 0)
    json.dumps(tr.to_dict(), allow_nan=False)


def test_window_edges_when_the_span_is_a_multiple():
    edges, rates = window_rates(np.array([0.0, 1.0, 2.0, 3.0]), 1.0)
    np.testing.assert_allclose(edges, [0, 1, 2, 3])
    np.testing.assert_allclose(rates, [1, 1, 2])  # the last arrival closes the last window
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ScenarioError, match="window"):
            window_rates(np.array([0.0, 1.0]), bad)


def test_figure_axes_carry_units():
    fig = traffic_figure(measure_traffic(read_request_log(CONV)))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time since the first request (min)"
    assert ax.get_ylabel() == "arrival rate (requests/s)"
    short = traffic_figure(measure_traffic(_log([0, 1, 3, 7]), window=2))
    assert short.axes[0].get_xlabel().endswith("(s)")


# --------------------------------------------------------------------------
# the command
def test_cli_json_keys_and_values(capsys):
    assert main(["traffic", str(CODE), "--json", "--tokens-column", "GeneratedTokens"]) == 0
    out = json.loads(capsys.readouterr().out)
    tr = measure_traffic(read_request_log(CODE, tokens_column="GeneratedTokens"))
    for key in ("requests", "duration_seconds", "arrival_rate", "arrival_scv"):
        assert out[key] == getattr(tr, key)
    assert set(out["dispersion"]) == {"1s", "10s", "60s"}
    assert out["windows"]["seconds"] == 60 and len(out["windows"]["rates"]) == 58
    assert out["type_mix"] is None and out["tokens"]["column"] == "GeneratedTokens"
    assert out["source"] == str(CODE) and out["time_unit"] == "datetime"


def test_cli_table(capsys):
    assert main(["traffic", str(CONV), "--window", "600"]) == 0
    out = capsys.readouterr().out
    assert "19,366 over 3,501.72 s" in out and "arrival SCV       1.19721" in out
    assert "rate per 600 s" in out and "(6 windows)" in out


def test_cli_writes_the_scenario_and_the_plot(tmp_path, capsys):
    src = tmp_path / "in.toml"
    src.write_text(FAST)
    out, png = tmp_path / "out.toml", tmp_path / "rate.png"
    argv = ["traffic", str(CODE), "--scenario", str(src), "--output", str(out), "--plot", str(png)]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scenario_written"] == str(out) and report["plot"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before, after = cvxalloc.load_scenario(src), cvxalloc.load_scenario(out)
    assert after.arrival_rate == report["arrival_rate"]
    assert after.arrival_scv == report["arrival_scv"]
    b, a = before.to_dict(), after.to_dict()
    assert a["task"] == b["task"] and a["queue"]["latency_weight"] == b["queue"]["latency_weight"]


def _cli_error(argv, tmp_path, capsys, needle):
    files = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # nothing written
    return err


CLI_ERRORS = [
    ("empty.csv", "", [], "the file is empty"),
    ("header.csv", "timestamp,x\n", [], "header only"),
    ("one.csv", "ts\n3\n", [], "only one request"),
    ("instant.csv", "ts\n2023-01-01 00:00:00\n2023-01-01 00:00:00\n", [], "same instant"),
    ("row.csv", "ts\n1\n2\nthree\n", [], "line 4: cannot read time 'three'"),
    ("col.csv", "a,b\n1,2\n3,4\n", ["--time-column", "c"], "no column 'c' (columns: 'a', 'b')"),
    ("bin.csv", b"\x89PNG\r\n\x1a\n\x00\x00", [], "not a text file"),
    ("unit.csv", "ts\n1\n2\n", ["--time-unit", "h"], "--time-unit 'h' is not a unit"),
    ("w0.csv", "ts\n1\n2\n", ["--window", "0"], "--window"),
    ("wneg.csv", "ts\n1\n2\n", ["--window", "-5"], "--window"),
    ("wnan.csv", "ts\n1\n2\n", ["--window", "nan"], "--window"),
    ("winf.csv", "ts\n1\n2\n", ["--window", "inf"], "--window"),
    ("wtiny.csv", "ts\n0\n100000\n", ["--window", "1e-6"], "use a longer window"),
    ("png.csv", "ts\n1\n2\n", ["--plot", "{tmp}/rate.pdf"], "name it *.png"),
    ("dir.csv", "ts\n1\n2\n", ["--plot", "{tmp}/no/rate.png"], "does not exist"),
    ("pair.csv", "ts\n1\n2\n", ["--output", "{tmp}/o.toml"], "go together"),
    ("pair2.csv", "ts\n1\n2\n", ["--scenario", "{tmp}/in.toml"], "go together"),
]


@pytest.mark.parametrize(("name", "content", "extra", "needle"), CLI_ERRORS)
def test_cli_errors_are_one_line_exit_2_no_file(tmp_path, capsys, name, content, extra, needle):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    argv = ["traffic", str(path), *[a.replace("{tmp}", str(tmp_path)) for a in extra]]
    _cli_error(argv, tmp_path, capsys, needle)


def test_cli_unstable_scenario_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "in.toml"
    src.write_text(FAST.replace("base = 0.02", "base = 2.0"))  # 2.6 requests/s x 1.4 s
    argv = ["traffic", str(CODE), "--scenario", "in.toml", "-o", "out.toml", "--plot", "r.png"]
    _cli_error(argv, tmp_path, capsys, "unstable")
    assert not os.path.exists("out.toml") and not os.path.exists("r.png")


def _same_fields(a, b):
    from dataclasses import fields

    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and y.dtype == x.dtype, f.name
        np.testing.assert_equal(y, x, err_msg=f.name)
        assert type(y) is type(x), f.name


@pytest.mark.parametrize(
    ("path", "kw"),
    [(CODE, {}), (CONV, {"tokens_column": "GeneratedTokens", "type_column": "ContextTokens"})],
)
def test_repr_rebuilds_the_summary(path, kw):
    tr = measure_traffic(read_request_log(path, **kw), window=60.0)
    assert tr.window_rates.size <= 100
    again = eval(repr(tr), {"np": np, "TrafficSummary": TrafficSummary})
    _same_fields(tr, again)
    assert repr(again) == repr(tr)
    assert "values in" not in repr(tr)  # no array summarized


def test_repr_of_a_summary_with_undefined_dispersion_and_scv():
    log = RequestLog(
        times=np.array([0.0, 0.5, 0.5]),
        types=np.array(["a", "b", "a"]),
        tokens=np.zeros(3),
        source="t",
        columns=("ts", "kind", "n"),
        time_column="ts",
        time_unit="s",
        tokens_column="n",
        sorted=False,
    )
    tr = measure_traffic(log, window=0.25)
    assert tr.dispersion["1s"] is None and tr.tokens["scv"] is None
    _same_fields(tr, eval(repr(tr), {"np": np, "TrafficSummary": TrafficSummary}))
