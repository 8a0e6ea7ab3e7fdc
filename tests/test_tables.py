"""Task tables (``tasks = "tasks.csv"``): read in bulk, the same scenario as [[task]] tables,
every error naming the row, the column and the fix."""

from __future__ import annotations

import numpy as np
import pytest

import cvxalloc
from cvxalloc.errors import ScenarioError
from cvxalloc.tables import COLUMNS
from cvxalloc.testing import random_scenario

CELLS = {
    "probability": ("probability",),
    "weight": ("weight",),
    "min_tokens": ("min_tokens",),
    "max_tokens": ("max_tokens",),
    "service.base": ("service", "base"),
    "service.per_token": ("service", "per_token"),
    "service.scv": ("service", "scv"),
    "service.variance": ("service", "variance"),
}


def _write(tmp_path, sc, columns=None, edit=None, queue_extra=""):
    """``sc`` as a scenario file with its tasks in ``tasks.csv`` (exact floats)."""
    data = sc.to_dict()
    columns = columns or [c for c in COLUMNS if c != "step"]
    rows = [",".join(columns)]
    for task in data["task"]:
        cells = []
        for col in columns:
            if col == "name":
                cells.append(task["name"])
            elif col.startswith("accuracy."):
                value = task["accuracy"].get(col.split(".", 1)[1], "")
                cells.append(value if isinstance(value, str) else repr(value))
            else:
                keys = CELLS[col]
                value = task[keys[0]] if len(keys) == 1 else task[keys[0]][keys[1]]
                cells.append(repr(value))
        rows.append(",".join(cells))
    if edit:
        rows = edit(rows)
    (tmp_path / "tasks.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    q = data["queue"]
    path = tmp_path / "scenario.toml"
    path.write_text(
        f'tasks = "tasks.csv"\n[queue]\narrival_rate = {q["arrival_rate"]!r}\n'
        f"latency_weight = {q['latency_weight']!r}\n{queue_extra}",
        encoding="utf-8",
    )
    return path


def test_a_table_is_the_same_scenario_as_its_task_tables(tmp_path, csv_reader):
    sc = random_scenario(np.random.default_rng(3), 40, load="heavy")  # every family
    loaded = cvxalloc.load_scenario(_write(tmp_path, sc))
    assert loaded.to_dict() == sc.to_dict()
    assert cvxalloc.solve(loaded).objective == cvxalloc.solve(sc).objective


def test_optional_columns_and_empty_cells_take_their_defaults(tmp_path, csv_reader):
    sc = random_scenario(np.random.default_rng(4), 12, load="light", scv=False, variance=False)
    sc = sc.with_(weight=np.ones(sc.n), min_tokens=np.zeros(sc.n))
    cols = ["name", "probability", "max_tokens", "service.base", "service.per_token"]
    cols += ["accuracy.model", "accuracy.floor", "accuracy.ceiling", "accuracy.scale"]
    cols += ["accuracy.exponent", "accuracy.gain"]
    loaded = cvxalloc.load_scenario(_write(tmp_path, sc, cols))
    assert loaded.to_dict() == sc.to_dict()


def _one_row(rows, col, value, row=3):
    header = rows[0].split(",")
    cells = rows[row].split(",")
    cells[header.index(col)] = value
    rows[row] = ",".join(cells)
    return rows


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda r: _one_row(r, "probability", "lots"), "row 3, column 'probability'"),
        (lambda r: _one_row(r, "max_tokens", ""), "row 3, column 'max_tokens': empty"),
        (lambda r: _one_row(r, "accuracy.model", "linear"), "row 3, column 'accuracy.model'"),
        (lambda r: _one_row(r, "accuracy.scale", "-5"), "row 3: accuracy.scale must be > 0"),
        (lambda r: _one_row(r, "service.per_token", "0"), "service.per_token must be > 0"),
        (lambda r: [r[0].replace("weight", "wieght"), *r[1:]], 'did you mean "weight"'),
        (lambda r: [r[0].replace(",service.per_token", ""), *r[1:]], "missing column"),
    ],
)
def test_errors_name_the_row_and_the_column(tmp_path, edit, words, csv_reader):
    sc = random_scenario(np.random.default_rng(5), 6, load="heavy", families=["exponential"])
    path = _write(tmp_path, sc, edit=edit)
    with pytest.raises(ScenarioError, match=words.replace("(", r"\(").replace(")", r"\)")):
        cvxalloc.load_scenario(path)


def test_cli_solves_a_table_and_a_bad_cell_exits_2(tmp_path, capsys):
    from cvxalloc.cli import main

    sc = random_scenario(np.random.default_rng(6), 30, load="heavy")
    path = _write(tmp_path, sc)
    assert main(["solve", str(path), "--json"]) == 0
    bad = _write(tmp_path, sc, edit=lambda r: _one_row(r, "weight", "heavy", row=7))
    assert main(["solve", str(bad)]) == 2
    assert "row 7, column 'weight'" in capsys.readouterr().err


def test_a_missing_table_and_tasks_beside_task_tables_are_errors(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('tasks = "nowhere.csv"\n[queue]\narrival_rate = 1\nlatency_weight = 1\n')
    with pytest.raises(ScenarioError, match="does not exist"):
        cvxalloc.load_scenario(path)
    with pytest.raises(ScenarioError, match="load the scenario with"):
        cvxalloc.Scenario.from_dict({"tasks": "t.csv", "queue": {}})


def test_parquet_reads_the_same_scenario(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.csv as pc
    import pyarrow.parquet as pq

    sc = random_scenario(np.random.default_rng(7), 25, load="overloaded")
    path = _write(tmp_path, sc)
    table = pc.read_csv(tmp_path / "tasks.csv")
    assert isinstance(table, pa.Table)
    pq.write_table(table, tmp_path / "tasks.parquet")
    text = path.read_text().replace("tasks.csv", "tasks.parquet")
    path.write_text(text)
    assert cvxalloc.load_scenario(path).to_dict() == sc.to_dict()
