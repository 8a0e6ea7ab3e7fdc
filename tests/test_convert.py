"""``cvxalloc convert``: a scenario between [[task]] tables and a task table, round trips exact."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import cvxalloc
from cvxalloc.cli import main
from cvxalloc.io import write_scenario
from cvxalloc.testing import random_scenario

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _rich(seed: int) -> cvxalloc.Scenario:
    """A random scenario with every section the table form keeps beside its tasks."""
    sc = random_scenario(np.random.default_rng(seed), 60, load="heavy")
    d = sc.to_dict()
    d["queue"]["latency_weight"] *= 1.5
    d["fleet"] = {"replicas": 2, "router": "random"}
    d["constraints"] = {"max_utilization": 0.95, "tail": {"quantile": 0.99, "max_system_time": 1e6}}
    d["task"][3]["step"] = 16.0
    d["task"][5]["name"] = 'a, "quoted" name é'
    return cvxalloc.Scenario.from_dict(d)


@pytest.mark.parametrize("table", ["tasks.csv", "tasks.parquet"])
def test_round_trips_are_exact(tmp_path, capsys, table):
    if table.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    sc = _rich(1)
    start = tmp_path / "start.toml"
    write_scenario(sc, start)
    assert cvxalloc.load_scenario(start).to_dict() == sc.to_dict()
    small = tmp_path / "small.toml"
    assert main(["convert", str(start), str(small), "--tasks", table]) == 0
    assert tomllib.loads(small.read_text())["tasks"] == table  # no [[task]] in the file
    assert "[[task]]" not in small.read_text() and (tmp_path / table).is_file()
    assert cvxalloc.load_scenario(small).to_dict() == sc.to_dict()
    full = tmp_path / "full.json"
    assert main(["convert", str(small), str(full)]) == 0
    assert len(json.loads(full.read_text())["task"]) == sc.n
    assert cvxalloc.load_scenario(full).to_dict() == sc.to_dict()
    small_json = tmp_path / "small.json"
    assert main(["convert", str(full), str(small_json), "--tasks", "sub.csv"]) == 0
    back = cvxalloc.load_scenario(small_json)
    assert back.to_dict() == sc.to_dict()
    assert cvxalloc.solve(back).objective == cvxalloc.solve(sc).objective
    assert capsys.readouterr().err.count("wrote ") == 5


def test_a_table_in_another_directory_is_named_relative_to_the_file(tmp_path):
    sc = _rich(2)
    (tmp_path / "data").mkdir()
    out = tmp_path / "s.toml"
    write_scenario(sc, tmp_path / "in.toml")
    assert main(["convert", str(tmp_path / "in.toml"), str(out), "--tasks", "data/t.csv"]) == 0
    assert (tmp_path / "data" / "t.csv").is_file()
    assert cvxalloc.load_scenario(out).to_dict() == sc.to_dict()


def test_large_json_is_one_task_per_line(tmp_path):
    sc = random_scenario(np.random.default_rng(3), 10_001, load="light")
    path = tmp_path / "big.json"
    write_scenario(sc, path)
    assert len(path.read_text().splitlines()) == sc.n + 2
    assert cvxalloc.load_scenario(path).to_dict() == sc.to_dict()


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d: d["task"][0].update(levels=[0.0, 100.0]), "has levels"),
        (lambda d: d["task"][1].update(min_accuracy=0.1), "has min_accuracy"),
    ],
)
def test_what_a_table_cannot_hold_is_refused(tmp_path, capsys, change, words):
    d = cvxalloc.example_scenario().to_dict()
    change(d)
    path = tmp_path / "in.json"
    path.write_text(json.dumps(d))
    assert main(["convert", str(path), str(tmp_path / "out.toml"), "--tasks", "t.csv"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and words in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.json"]


@pytest.mark.parametrize(
    "out, extra, words",
    [
        ("out.yaml", [], "name it *.toml or *.json"),
        ("out.toml", ["--tasks", "t.txt"], "name it *.csv or *.parquet"),
        ("in.toml", [], "is IN"),
        ("no/out.toml", [], "does not exist"),
    ],
)
def test_bad_names_are_refused_in_one_line(tmp_path, capsys, out, extra, words):
    write_scenario(cvxalloc.example_scenario(), tmp_path / "in.toml")
    before = (tmp_path / "in.toml").read_text()
    assert main(["convert", str(tmp_path / "in.toml"), str(tmp_path / out), *extra]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and words in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.toml"]
    assert (tmp_path / "in.toml").read_text() == before
