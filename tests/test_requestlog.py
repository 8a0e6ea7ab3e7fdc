"""Reading request logs: the Azure traces against a direct parse, formats, sorting, errors."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvxalloc.errors import ScenarioError
from cvxalloc.requestlog import RequestLog, read_request_log

TRACES = Path(__file__).resolve().parent.parent / "validation" / "data" / "traces"
CODE = TRACES / "AzureLLMInferenceTrace_code.csv"
CONV = TRACES / "AzureLLMInferenceTrace_conv.csv"


def _direct_seconds(path: Path) -> np.ndarray:
    """Arrival times of an Azure trace parsed line by line, without numpy datetimes."""
    out = []
    with open(path, encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            stamp = line.split(",")[0]
            day, clock = stamp.split(" ")
            hh, mm, ss = clock.split(":")
            days = dt.date.fromisoformat(day).toordinal()
            whole, frac = ss.split(".")
            out.append(
                (
                    days * 86400 + int(hh) * 3600 + int(mm) * 60 + int(whole),
                    int(frac) / 10 ** len(frac),
                )
            )
    whole = np.array([w for w, _ in out], dtype=np.int64)
    frac = np.array([f for _, f in out])
    first = min(range(len(out)), key=lambda i: out[i])
    return (whole - whole[first]) + (frac - frac[first])


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("path", "requests", "rate", "scv"),
    [(CODE, 8819, 2.5664, 172.96), (CONV, 19366, 5.5301, 1.1972)],
)
def test_azure_trace_matches_a_direct_parse(path, requests, rate, scv):
    log = read_request_log(path)
    assert log.time_column == "TIMESTAMP" and log.time_unit == "datetime"
    assert log.columns == ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
    assert log.requests == requests and log.sorted
    direct = _direct_seconds(path)
    assert direct.size == requests
    np.testing.assert_allclose(log.times, np.sort(direct), rtol=0, atol=1e-6)
    gaps = np.diff(np.sort(direct))
    assert (requests - 1) / (direct.max() - direct.min()) == pytest.approx(rate, rel=1e-4)
    assert np.var(gaps) / np.mean(gaps) ** 2 == pytest.approx(scv, rel=1e-4)


def test_tokens_and_types_columns_follow_the_rows():
    log = read_request_log(CODE, tokens_column="generatedtokens", type_column="ContextTokens")
    assert log.tokens_column == "GeneratedTokens" and log.type_column == "ContextTokens"
    with open(CODE, encoding="utf-8") as fh:
        rows = [line.strip().split(",") for line in fh][1:]
    np.testing.assert_array_equal(log.tokens, [float(r[2]) for r in rows])
    assert log.types.tolist() == [r[1] for r in rows]


def test_repr_reads_the_log_again():
    log = read_request_log(CONV, tokens_column="ContextTokens")
    text = repr(log)
    assert text.startswith("read_request_log(") and "19,366 requests" in text
    again = eval(text, {"read_request_log": read_request_log})
    np.testing.assert_array_equal(again.times, log.times)
    np.testing.assert_array_equal(again.tokens, log.tokens)
    assert repr(again) == text


def test_json_lines_with_millisecond_stamps(tmp_path):
    stamps = [1_700_000_000_123, 1_700_000_000_623, 1_700_000_002_123, 1_700_000_002_123]
    lines = [json.dumps({"ts": s, "model": "m", "kind": k}) for s, k in zip(stamps, "abab")]
    path = _write(tmp_path, "log.csv", "\n".join(lines) + "\n")  # the extension does not decide
    log = read_request_log(path, time_unit="ms", type_column="kind")
    assert log.format == "jsonl" and log.time_unit == "ms"
    assert log.columns == ("ts", "model", "kind")
    np.testing.assert_allclose(log.times, [0.0, 0.5, 2.0, 2.0])
    assert log.types.tolist() == ["a", "b", "a", "b"]
    assert "time_unit='ms'" in repr(log)


def test_json_lines_with_iso_strings_and_offsets(tmp_path):
    objs = [
        {"created_at": "2024-01-02T03:04:05.5Z"},
        {"created_at": "2024-01-02T04:04:06.5+01:00"},  # the same hour in UTC + 1 s
        {"created_at": "2024-01-02 03:04:08"},
    ]
    path = _write(tmp_path, "log.jsonl", "\n\n".join(json.dumps(o) for o in objs))
    log = read_request_log(path)
    assert log.time_column == "created_at" and log.time_unit == "datetime"
    np.testing.assert_allclose(log.times, [0.0, 1.0, 2.5])


def test_microseconds_and_assumed_seconds(tmp_path):
    path = _write(tmp_path, "a.csv", "Time,x\n5000000,1\n5250000,2\n6000000,3\n")
    assert read_request_log(path, time_unit="us").times.tolist() == [0.0, 0.25, 1.0]
    log = read_request_log(path)
    assert log.time_unit == "s (assumed)"
    assert log.times.tolist() == [0.0, 250000.0, 1000000.0]
    assert "time_unit" not in repr(log)


def test_many_simultaneous_arrivals_are_valid(tmp_path):
    stamps = [0.0] * 500 + [1.0] * 300 + [2.5] * 200
    path = _write(tmp_path, "burst.csv", "arrival\n" + "\n".join(map(str, stamps)) + "\n")
    log = read_request_log(path, time_unit="s")
    assert log.requests == 1000 and log.sorted
    assert np.count_nonzero(np.diff(log.times) == 0) == 997


def test_unsorted_input_is_sorted_stably(tmp_path):
    rows = [(3.0, "c"), (1.0, "a1"), (2.0, "b"), (1.0, "a2"), (0.5, "z")]
    text = "ts,type\n" + "".join(f"{t},{k}\n" for t, k in rows)
    log = read_request_log(_write(tmp_path, "u.csv", text), type_column="type")
    assert not log.sorted
    assert log.times.tolist() == [0.0, 0.5, 0.5, 1.5, 2.5]
    assert log.types.tolist() == ["z", "a1", "a2", "b", "c"]
    assert "sorted on reading" in repr(log)


def test_tabs_bom_quotes_and_blank_lines(tmp_path):
    text = "\ufeffid\tTimeStamp\n1\t2023-01-01 00:00:00\n\n2\t2023-01-01 00:00:02\n"
    log = read_request_log(_write(tmp_path, "t.tsv", text))
    assert log.columns == ("id", "TimeStamp") and log.times.tolist() == [0.0, 2.0]
    quoted = 'ts,note\n1,"a, b"\n2,"two\nlines"\n4,x\n'
    log = read_request_log(_write(tmp_path, "q.csv", quoted))
    assert log.times.tolist() == [0.0, 1.0, 3.0]
    bad = 'ts,note\n1,"a, b"\n2,"two\nlines"\nnope,x\n'
    with pytest.raises(ScenarioError, match="line 5: cannot read time 'nope'"):
        read_request_log(_write(tmp_path, "bad.csv", bad))


ERRORS = [
    ("empty.csv", "", "the file is empty"),
    ("blank.csv", "\n  \n", "the file is empty"),
    ("header.csv", "timestamp,x\n", "header only"),
    ("one.csv", "timestamp\n2023-01-01 00:00:00\n", "only one request (line 2)"),
    ("one.jsonl", '{"ts": 3}\n', "only one request (line 1)"),
    ("instant.csv", "ts\n5\n5\n5\n", "all 3 requests arrive at the same instant"),
    ("badtime.csv", "ts\n2023-01-01 00:00:00\n2023-01-01 00:00:01\nsoon\n", "line 4: cannot read"),
    ("badnum.csv", "ts\n1\n2\n\n3x\n", "line 5: cannot read time '3x'"),
    ("nantime.csv", "ts\n1\nnan\n3\n", "line 3: time 'nan'"),
    ("emptytime.csv", "ts,x\n1,a\n,b\n", "line 3: cannot read time ''"),
    ("nat.csv", "ts\n2023-01-01\nNaT\n", "line 3: time 'NaT'"),
    ("nocol.csv", "when,size\n1,2\n3,4\n", "no time column found (columns: 'when', 'size')"),
    ("nohead.csv", "1,2\n3,4\n", "must be a header row"),
    ("ragged.csv", "ts,x\n1,2\n3\n", "line 3: 1 fields where the header has 2"),
    ("badjson.jsonl", '{"ts": 1}\n{"ts": 2\n', "line 2: not a JSON object"),
    ("listjson.jsonl", '{"ts": 1}\n[2]\n', "line 2: a JSON list"),
    ("keyjson.jsonl", '{"ts": 1}\n{"t": 2}\n', "line 2: the object has no key 'ts'"),
    ("binary.csv", b"ts\n1\n\x00\x01\x02", "not a text file (NUL byte at line 3)"),
    ("latin1.csv", "ts,name\n1,caf\xe9\n2,b\n".encode("latin-1"), "line 2: not UTF-8"),
    ("units.csv", "ts\n2023-01-01\n2023-01-02\n", "drop --time-unit"),
]


@pytest.mark.parametrize(("name", "content", "needle"), ERRORS)
def test_errors_name_the_file_and_the_line(tmp_path, name, content, needle):
    path = _write(tmp_path, name, content)
    kw = {"time_unit": "s"} if name == "units.csv" else {}
    with pytest.raises(ScenarioError) as info:
        read_request_log(path, **kw)
    msg = str(info.value)
    assert msg.startswith(str(path)) and needle in msg, msg
    assert "\n" not in msg


def test_named_column_errors_list_the_columns(tmp_path):
    path = _write(tmp_path, "a.csv", "ts,kind\n1,a\n2,b\n")
    with pytest.raises(
        ScenarioError, match=r"no column 'type' \(columns: 'ts', 'kind'\).*--type-col"
    ):
        read_request_log(path, type_column="type")
    with pytest.raises(ScenarioError, match="no column 'when'.*--time-column"):
        read_request_log(path, time_column="when")
    with pytest.raises(ScenarioError, match=r"line 2: cannot read tokens 'a'"):
        read_request_log(path, tokens_column="kind")
    with pytest.raises(ScenarioError, match="'h' is not a unit; use one of s, ms, us"):
        read_request_log(path, time_unit="h")
    with pytest.raises(ScenarioError, match="no such file"):
        read_request_log(tmp_path / "missing.csv")
    with pytest.raises(ScenarioError, match="is a directory"):
        read_request_log(tmp_path)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stamps=st.lists(st.integers(0, 10**7), min_size=2, max_size=300).filter(
        lambda s: max(s) > min(s)
    ),
    unit=st.sampled_from(["s", "ms", "us"]),
    jsonl=st.booleans(),
)
def test_random_logs_equal_a_direct_computation(tmp_path_factory, stamps, unit, jsonl):
    d = tmp_path_factory.mktemp("h")
    if jsonl:
        text = "\n".join(json.dumps({"i": i, "time": s}) for i, s in enumerate(stamps))
    else:
        text = "i,time\n" + "".join(f"{i},{s}\n" for i, s in enumerate(stamps))
    log = read_request_log(_write(d, "log.txt", text), time_unit=unit)
    scale = {"s": 1.0, "ms": 1e-3, "us": 1e-6}[unit]
    x = np.array(stamps, dtype=float)
    expect = np.sort(x - x.min()) * scale
    np.testing.assert_allclose(log.times, expect, rtol=1e-12, atol=1e-12)
    assert log.sorted == all(a <= b for a, b in zip(stamps, stamps[1:]))
    assert log.times[0] == 0 and math.isclose(log.duration, (max(stamps) - min(stamps)) * scale)


def test_request_log_is_frozen():
    log = read_request_log(CODE)
    assert isinstance(log, RequestLog)
    with pytest.raises(AttributeError):
        log.source = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        log.times[0] = 1.0


# --------------------------------------------------------------------------
# one normal form: RequestLog.of and what a log computes once
def test_of_plain_times_sorts_them_with_their_columns():
    log = RequestLog.of([4.0, 1.0, 2.0, 2.0], types=["d", "a", "b", "c"], tokens=[4, 1, 2, 3])
    assert log.times.tolist() == [1.0, 2.0, 2.0, 4.0] and not log.sorted
    assert log.types.tolist() == ["a", "b", "c", "d"]  # stable: b before c
    assert log.tokens.tolist() == [1, 2, 3, 4]
    assert RequestLog.of(log) is log
    renamed = RequestLog.of(log, types=[0, 1, 1, 0], source="x")
    assert renamed.source == "x" and renamed.task_indices(["p", "q"]).tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize(
    "times, needle",
    [
        ([1.0], "at least two arrivals"),
        ([0.0, np.nan], "finite"),
        ([2.0, 2.0, 2.0], "one instant"),
    ],
)
def test_of_refuses_what_is_not_a_log(times, needle):
    with pytest.raises(ScenarioError, match=needle):
        RequestLog.of(times)


def test_a_log_made_directly_is_checked_too():
    kw = dict(types=None, tokens=None, source="t", columns=("ts",), time_column="ts")
    with pytest.raises(ScenarioError, match="ascending order"):
        RequestLog(times=np.array([0.0, 2.0, 1.0]), time_unit="s", **kw)
    with pytest.raises(ScenarioError, match="types: one per arrival"):
        RequestLog(times=np.array([0.0, 1.0]), time_unit="s", **{**kw, "types": np.array(["a"])})


def test_rate_scv_mix_and_tokens_against_the_definitions():
    rng = np.random.default_rng(4)
    times = np.cumsum(rng.exponential(0.5, 2001))
    names = rng.choice(["x", "y", "z"], size=times.size, p=[0.5, 0.3, 0.2])
    tok = rng.integers(0, 900, size=times.size).astype(float)
    log = RequestLog.of(times, types=names, tokens=tok)
    gaps = [b - a for a, b in zip(times[:-1], times[1:])]
    mean = sum(gaps) / len(gaps)
    var = sum((g - mean) ** 2 for g in gaps) / len(gaps)
    assert log.arrival_rate == pytest.approx(1 / mean, rel=1e-12)
    assert log.arrival_scv == pytest.approx(var / mean**2, rel=1e-9)
    assert list(log.type_mix) == ["x", "y", "z"]
    assert log.type_mix["y"] == pytest.approx(np.mean(names == "y"), rel=1e-15)
    m, v = log.token_moments
    assert m == pytest.approx(tok.mean()) and v == pytest.approx(tok.var())
    assert log.token_summary["scv"] == pytest.approx(tok.var() / tok.mean() ** 2)
    assert log.arrival_scv is log.arrival_scv  # computed once


def test_task_indices_names_and_indices():
    from cvxalloc.requestlog import task_indices

    assert task_indices(np.array([2, 0]), ["a", "b", "c"]).tolist() == [2, 0]
    with pytest.raises(ScenarioError, match="index 3 is not a task"):
        task_indices(np.array([3]), ["a", "b", "c"])
    with pytest.raises(ScenarioError, match="type 'q' is not a task of the scenario.*a, b"):
        task_indices(["a", "q"], ["a", "b"])


def test_traffic_replay_and_controller_read_the_same_log_figures():
    """The three workflows report the log's own rate and SCV (computed by RequestLog)."""
    import cvxalloc
    from cvxalloc.controller import replay_controller
    from cvxalloc.simulate import simulate_replay
    from cvxalloc.traffic import measure_traffic

    log = read_request_log(CODE)
    sc = cvxalloc.example_scenario()
    tr = measure_traffic(log)
    assert (tr.arrival_rate, tr.arrival_scv) == (log.arrival_rate, log.arrival_scv)
    rep = simulate_replay(sc, sc.min_tokens, log, seed=1, replications=2)
    assert rep.arrivals["log_rate"] == log.arrival_rate
    assert rep.arrivals["arrival_scv"] == log.arrival_scv
    first = RequestLog.of(log.times[:400], source=log.source)
    ctl = replay_controller(sc, first, seeds=1, strategies=("static",))
    assert ctl.settings["log_rate"] == first.arrival_rate
