"""Outputs follow their extension (issue 22): ``.json`` is JSON, ``.toml`` TOML, ``.txt`` the
text printed, ``.csv``/``.parquet`` a table where the output is per task; anything else is
refused with one line, exit code 2 and no file, before the command does its work."""

from __future__ import annotations

import json
import re
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import cvxalloc
import cvxalloc.testing
from cvxalloc._output import PerTask, csv_text, float_texts, json_text, toml_text
from cvxalloc.cli import main
from cvxalloc.cli._common import dumps
from cvxalloc.tables import read_allocation_table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DATA = resources.files("cvxalloc").joinpath("data")
EXAMPLE = str(DATA.joinpath("example.toml"))
THROUGHPUT = str(DATA.joinpath("published_batch_throughput.csv"))
CONV = ROOT / "validation" / "data" / "traces" / "AzureLLMInferenceTrace_conv.csv"
ACC_CSV = str(ROOT / "docs" / "examples" / "accuracy_measurements.csv")
SERVICE_CSV = str(ROOT / "docs" / "examples" / "service_times.csv")


def _log(tmp_path: Path) -> str:
    times = np.cumsum(np.random.default_rng(0).exponential(1.0, 2000))
    path = tmp_path / "log.csv"
    path.write_text("time\n" + "".join(f"{t:.4f}\n" for t in times))
    return str(path)


#: command -> (argv before --output, the extensions it writes, per task?)
COMMANDS = {
    "solve": (["solve", "--no-baselines"], True),
    "certify": (["certify", EXAMPLE, "{alloc}"], False),
    "simulate": (["simulate", "--queries", "20000", "--seed", "1"], False),
    "sensitivity": (["sensitivity"], True),
    "plan": (["plan", EXAMPLE, "--max-replicas", "2"], True),
    "control": (["control", "{log}", "--seeds", "1"], False),
}


def _argv(tmp_path: Path, command: str) -> list[str]:
    alloc = tmp_path / "alloc.toml"
    alloc.write_text("chat = 600\ncode = 3000\nmath = 800\nolympiad = 9000\nscience = 0\n")
    argv, _ = COMMANDS[command]
    return [a.replace("{alloc}", str(alloc)).replace("{log}", _log(tmp_path)) for a in argv]


def _read(path: Path):
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".toml":
        return tomllib.loads(path.read_text())
    return path.read_text()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_reports_follow_their_extension(tmp_path, capsys, command):
    argv = _argv(tmp_path, command)
    assert main([*argv, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    for ext in (".json", ".toml"):
        out = tmp_path / f"out{ext}"
        assert main([*argv, "--output", str(out)]) == 0, capsys.readouterr().err
        data = _read(out)
        assert set(data) <= set(printed) and "tokens" in data or "strategies" in data
        if "tokens" in printed and isinstance(printed["tokens"], dict):
            assert data["tokens"] == printed["tokens"]
    txt = tmp_path / "out.txt"
    assert main([*argv, "--output", str(txt)]) == 0
    assert main(argv) == 0
    assert _steady(txt.read_text()) == _steady(capsys.readouterr().out)  # what is printed


def _steady(text: str) -> list[str]:
    """The lines of a report but those that time the run."""
    return [line for line in text.splitlines() if not re.search(r"wall|elapsed|seconds", line)]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("name", ["out.yaml", "out", "out.JSONL", "out.csv"])
def test_other_extensions_are_refused_in_one_line_without_a_file(tmp_path, capsys, command, name):
    if name == "out.csv" and COMMANDS[command][1]:
        pytest.skip("a per-task output writes .csv")
    capsys.readouterr()
    argv = _argv(tmp_path, command)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([*argv, "--output", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"cvxalloc {command}: error: --output")
    assert "name it *.json" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_missing_directory_is_refused_before_the_work(tmp_path, capsys):
    assert main(["policy", "--output", str(tmp_path / "no" / "p.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("command", [c for c, (_, per_task) in COMMANDS.items() if per_task])
def test_per_task_outputs_write_a_table_of_exact_tokens(tmp_path, capsys, command):
    argv = _argv(tmp_path, command)
    assert main([*argv, "--json"]) == 0
    tokens = json.loads(capsys.readouterr().out)["tokens"]
    out = tmp_path / "tokens.csv"
    assert main([*argv, "--output", str(out)]) == 0
    cols = read_allocation_table(out)
    assert dict(zip(cols["name"].tolist(), cols["tokens"].tolist())) == tokens  # every bit


def test_solve_table_is_read_back_as_an_allocation(tmp_path, capsys):
    out = tmp_path / "tokens.csv"
    assert main(["solve", "--output", str(out)]) == 0
    assert out.read_text().splitlines()[0] == "name,tokens,accuracy,service_time"
    res = cvxalloc.solve(cvxalloc.example_scenario())
    sc = cvxalloc.example_scenario()
    assert np.array_equal(cvxalloc.io.load_allocation(out, sc), res.tokens)
    assert main(["certify", EXAMPLE, str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["feasible"] and report["certificate"]["gap"] <= 1e-9


def test_parquet_tables(tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "tokens.parquet"
    assert main(["solve", "--output", str(out)]) == 0
    res = cvxalloc.solve(cvxalloc.example_scenario())
    assert np.array_equal(read_allocation_table(out)["tokens"], res.tokens)


def test_parquet_without_pyarrow_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    out = tmp_path / "tokens.parquet"
    assert main(["solve", "--output", str(out)]) == 2
    assert "needs pyarrow" in capsys.readouterr().err and not out.exists()


def test_fit_and_traffic_write_json_that_solve_reads(tmp_path, capsys):
    """The defect of issue 22: these wrote TOML into a .json file, which solve refused."""
    fitted = tmp_path / "fitted.json"
    argv = ["fit", ACC_CSV, "--service", SERVICE_CSV, "--template", EXAMPLE, "-o", str(fitted)]
    assert main(argv) == 0
    as_toml = tmp_path / "fitted.toml"
    assert main([*argv[:-1], str(as_toml)]) == 0
    a, b = cvxalloc.load_scenario(fitted), cvxalloc.load_scenario(as_toml)
    assert a.to_dict() == b.to_dict()
    assert main(["solve", str(fitted), "--no-baselines"]) == 0
    server = tmp_path / "server.json"
    assert main(["fit", "--throughput", THROUGHPUT, "-o", str(server)]) == 0
    assert json.loads(server.read_text())["server"]["model"] == "batching"
    scen = tmp_path / "traffic.json"
    argv = ["traffic", str(CONV), "--scenario", EXAMPLE, "--output", str(scen)]
    assert main(argv) == 0
    assert main(["solve", str(scen), "--no-baselines"]) == 0
    assert cvxalloc.load_scenario(scen).arrival_rate > 0
    capsys.readouterr()
    assert main([*argv[:-1], str(tmp_path / "traffic.csv")]) == 2
    assert "name it *.toml or *.json" in capsys.readouterr().err


def test_policy_and_plot_name_their_one_format(tmp_path, capsys):
    assert main(["policy", "--output", str(tmp_path / "p.toml")]) == 2
    assert "name it *.json" in capsys.readouterr().err
    assert main(["plot", "--output", str(tmp_path / "p.svg")]) == 2
    assert "name it *.png" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bulk_json_is_the_text_of_the_plain_dict():
    """The bulk writer (columns, no dict per task) writes exactly what json.dumps
    writes for the plain result dict."""
    sc = cvxalloc.testing.random_scenario(np.random.default_rng(1), 300, load="heavy")
    res = cvxalloc.solve(sc)
    assert json_text(res.to_dict(bulk=True)) == dumps(res.to_dict())
    names = ['a "quoted" name', "é", "tab\tname", "😀", "x"]
    per = PerTask(names, {"t": np.array([1.0, np.nan, -0.0, 1e300, 5e-324]), "f": np.ones(5)})
    obj = {"k": per, "l": [1, {"m": PerTask(names, np.arange(5.0))}], "e": PerTask([], [])}
    plain = {"k": per.to_dict(), "l": [1, {"m": dict(zip(names, map(float, range(5))))}], "e": {}}
    assert json_text(obj) == dumps(plain)
    assert json.loads(json_text(obj))["k"]["é"]["t"] is None


def test_toml_text_reads_back():
    names = ['a "quoted" name', "é", "with.dot", "😀", "del\x7f", "x y"]
    data = {
        "status": "optimal",
        "n": 3,
        "gap": 1e-17,
        "bad": float("inf"),
        "skip": None,
        "tokens": PerTask(names, np.array([1.0, 2.5, 0.0, 3.0, 4.0, 5.0])),
        "nested": {"deep": {"x": [1.0, None, 2.0]}, "flag": True},
        "rows": [{"k": 1, "sub": {"a": "b"}}, {"k": 2, "sub": {"a": "c"}}],
        "empty": [],
    }
    back = tomllib.loads(toml_text(data))
    assert back["tokens"] == dict(zip(names, [1.0, 2.5, 0.0, 3.0, 4.0, 5.0]))
    assert "skip" not in back and back["bad"] == float("inf") and back["gap"] == 1e-17
    assert back["rows"] == data["rows"] and back["empty"] == [] and back["n"] == 3
    assert back["nested"]["deep"]["x"][0] == 1.0 and np.isnan(back["nested"]["deep"]["x"][1])


def test_csv_cells_are_exact_and_quoted_where_needed(tmp_path, csv_reader):
    rng = np.random.default_rng(2)
    n = 20_000
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)
    x[::7] = 0.25  # repeated values: formatted once each
    x[3], x[5] = -0.0, 5e-324
    names = [f"t{i}" for i in range(n)]
    names[1], names[2], names[4] = "a,b", 'say "hi"', "two\nlines"
    path = tmp_path / "t.csv"
    path.write_text(csv_text({"name": np.array(names, dtype=object), "tokens": x}))
    cols = read_allocation_table(path)
    assert cols["name"].tolist() == names
    assert np.array_equal(cols["tokens"].view(np.int64), x.view(np.int64))  # -0.0 kept
    assert float_texts(np.array([np.nan, np.inf, 1.5]), {"nan": ""}) == ["", "inf", "1.5"]


@pytest.mark.parametrize("quoted", [False, True])
def test_tables_are_written_exactly_by_either_writer(tmp_path, csv_reader, quoted):
    """pyarrow's CSV writer where installed, else repr: the same doubles come back."""
    from cvxalloc._output import write_table

    rng = np.random.default_rng(5)
    x = rng.standard_normal(6000) * 10.0 ** rng.integers(-200, 200, 6000)
    x[:4] = [np.nan, -0.0, 5e-324, 1.0]
    names = [f"t{i}" for i in range(x.size)]
    if quoted:
        names[7], names[8] = 'a,"b"', "two\nlines"
    path = tmp_path / "t.csv"
    write_table(path, {"name": np.array(names, dtype=object), "tokens": x})
    assert path.read_text().startswith("name,tokens\n")
    back = read_allocation_table(path)
    assert back["name"].tolist() == names
    assert np.array_equal(back["tokens"], x, equal_nan=True)
    assert np.signbit(back["tokens"][1])
