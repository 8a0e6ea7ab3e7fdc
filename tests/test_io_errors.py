"""Every bad input gives its error: through the Python API and through the CLI.

Through the CLI each one exits 2 with exactly one line on stderr, no traceback, and
writes no ``--output`` file.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

import cvxalloc
from cvxalloc.cli import main
from cvxalloc.errors import ScenarioError, UnstableError


@pytest.fixture(scope="module")
def base_dict():
    return cvxalloc.example_scenario().to_dict()


def _set(d, path, value):
    """``path`` like ``task.0.service.per_token``; value None deletes the key."""
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for k in keys[:-1]:
        d = d[k]
    if value is _DELETE:
        del d[keys[-1]]
    else:
        d[keys[-1]] = value


_DELETE = object()


def _m1(d, which):
    return sum(
        t["probability"] * (t["service"]["base"] + t["service"]["per_token"] * t[which])
        for t in d["task"]
    )


# (id, list of (path, value) changes, expected error class, expected message fragment)
CASES = [
    (
        "probability-negative",
        [("task.2.probability", -0.1)],
        ScenarioError,
        'task "math": probability must be > 0 (got -0.1)',
    ),
    (
        "probability-zero",
        [("task.2.probability", 0.0)],
        ScenarioError,
        'task "math": probability must be > 0',
    ),
    (
        "probability-sum",
        [("task.0.probability", 0.5)],
        ScenarioError,
        "probabilities must sum to 1",
    ),
    (
        "probability-nan",
        [("task.0.probability", math.nan)],
        ScenarioError,
        'task "chat": probability must be a finite number',
    ),
    (
        "per-token-inf",
        [("task.1.service.per_token", math.inf)],
        ScenarioError,
        'task "code": service.per_token must be a finite number',
    ),
    (
        "arrival-inf",
        [("queue.arrival_rate", math.inf)],
        ScenarioError,
        "queue: arrival_rate must be a finite number",
    ),
    (
        "arrival-negative",
        [("queue.arrival_rate", -1.0)],
        ScenarioError,
        "queue: arrival_rate must be >= 0",
    ),
    (
        "gamma-negative",
        [("queue.latency_weight", -0.5)],
        ScenarioError,
        "queue: latency_weight must be >= 0",
    ),
    (
        "per-token-zero",
        [("task.0.service.per_token", 0.0)],
        ScenarioError,
        'task "chat": service.per_token must be > 0',
    ),
    (
        "base-negative",
        [("task.0.service.base", -1.0)],
        ScenarioError,
        'task "chat": service.base must be >= 0',
    ),
    (
        "scv-negative",
        [("task.0.service.scv", -0.1)],
        ScenarioError,
        'task "chat": service.scv must be >= 0',
    ),
    (
        "variance-negative",
        [("task.3.service.variance", -2.0)],
        ScenarioError,
        'task "olympiad": service.variance must be >= 0',
    ),
    ("weight-zero", [("task.4.weight", 0.0)], ScenarioError, 'task "science": weight must be > 0'),
    (
        "min-negative",
        [("task.0.min_tokens", -5.0)],
        ScenarioError,
        'task "chat": min_tokens must be >= 0',
    ),
    (
        "scale-zero",
        [("task.0.accuracy.scale", 0.0)],
        ScenarioError,
        'task "chat": accuracy.scale must be > 0',
    ),
    (
        "ceiling-below-floor",
        [("task.0.accuracy.ceiling", 0.5)],
        ScenarioError,
        'task "chat": accuracy.ceiling must be > floor',
    ),
    (
        "ceiling-equal-floor",
        [("task.0.accuracy.ceiling", 0.533)],
        ScenarioError,
        "ceiling must be > floor",
    ),
    (
        "ceiling-above-one",
        [("task.0.accuracy.ceiling", 1.5)],
        ScenarioError,
        "accuracy.ceiling must be <= 1",
    ),
    (
        "exponent-zero",
        [("task.1.accuracy.exponent", 0.0)],
        ScenarioError,
        'task "code": accuracy.exponent must be > 0',
    ),
    (
        "gain-negative",
        [("task.2.accuracy.gain", -0.1)],
        ScenarioError,
        'task "math": accuracy.gain must be > 0',
    ),
    (
        "min-above-max",
        [("task.1.min_tokens", 20000.0)],
        ScenarioError,
        'task "code": min_tokens must be <= max_tokens (got 20000 > 16384)',
    ),
    (
        "unknown-model",
        [("task.0.accuracy.model", "sigmoid")],
        ScenarioError,
        "unknown accuracy.model 'sigmoid'; use one of",
    ),
    (
        "missing-model-param",
        [("task.0.accuracy.scale", _DELETE)],
        ScenarioError,
        'task "chat": missing accuracy.scale',
    ),
    ("duplicate-names", [("task.1.name", "chat")], ScenarioError, 'task "chat": duplicate name'),
    ("empty-tasks", [("task", [])], ScenarioError, "no tasks"),
    ("no-queue", [("queue", _DELETE)], ScenarioError, "missing [queue]"),
    (
        "unknown-task-key",
        [("task.0.probabilty", 0.4)],
        ScenarioError,
        'task "chat": unknown key "probabilty"; did you mean "probability"?',
    ),
    (
        "unknown-queue-key",
        [("queue.arival_rate", 0.1)],
        ScenarioError,
        'queue: unknown key "arival_rate"; did you mean "arrival_rate"?',
    ),
    (
        "unknown-service-key",
        [("task.0.service.per_tokens", 0.01)],
        ScenarioError,
        'did you mean "per_token"?',
    ),
    ("unknown-top-key", [("qeueu", {})], ScenarioError, 'unknown key "qeueu"'),
    (
        "number-as-string",
        [("task.0.max_tokens", "8192")],
        ScenarioError,
        'task "chat": max_tokens must be a number',
    ),
    (
        "levels-unsorted",
        [("task.0.levels", [512, 256, 1024])],
        ScenarioError,
        'task "chat": levels must be strictly increasing',
    ),
    (
        "levels-duplicated",
        [("task.0.levels", [256, 256, 1024])],
        ScenarioError,
        "levels must be strictly increasing, without duplicates",
    ),
    (
        "levels-out-of-bounds",
        [("task.0.levels", [256, 9000])],
        ScenarioError,
        'task "chat": levels must lie within [min_tokens, max_tokens] = [0, 8192]',
    ),
    ("step-zero", [("task.0.step", 0)], ScenarioError, 'task "chat": step must be > 0'),
    ("step-negative", [("task.0.step", -64)], ScenarioError, "step must be > 0"),
    (
        "gamma-zero-unstable-max",
        [("queue.latency_weight", 0.0), ("queue.arrival_rate", 0.05)],
        UnstableError,
        "latency_weight is 0 and the maximum budgets are unstable",
    ),
]


def _apply(base, changes):
    d = copy.deepcopy(base)
    for path, value in changes:
        _set(d, path, value)
    return d


@pytest.mark.parametrize(
    "changes, exc, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_python_api(base_dict, changes, exc, fragment):
    d = _apply(base_dict, changes)
    with pytest.raises(exc) as err:
        cvxalloc.Scenario.from_dict(d)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "changes, exc, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_cli_json_file(base_dict, tmp_path, capsys, changes, exc, fragment):
    d = _apply(base_dict, changes)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))  # NaN/Infinity literals: Python's json reads them
    _assert_cli_error(tmp_path, capsys, [str(path)], fragment)


def _assert_cli_error(tmp_path, capsys, args, fragment, command="solve"):
    out = tmp_path / "out.json"
    code = main([command, *args, "--json", "--output", str(out)])
    cap = capsys.readouterr()
    assert code == 2
    lines = cap.err.splitlines()
    assert len(lines) == 1, cap.err
    assert lines[0].startswith(f"cvxalloc {command}: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in cap.err
    assert cap.out == ""
    assert not out.exists()
    assert list(tmp_path.glob(".out.json.*")) == []  # no temporary left behind


def test_unstable_at_minimum_budgets_names_the_rate(base_dict, tmp_path, capsys):
    d = copy.deepcopy(base_dict)
    d["queue"]["arrival_rate"] = 10.0
    limit = 1.0 / _m1(d, "min_tokens")
    with pytest.raises(UnstableError) as err:
        cvxalloc.Scenario.from_dict(d)
    msg = str(err.value)
    assert "unstable even at the minimum budgets" in msg
    assert f"{limit:.6g}" in msg
    # the rate given is the right one: just below it the scenario is valid
    d["queue"]["arrival_rate"] = limit * (1 - 1e-9)
    d["queue"]["latency_weight"] = 0.001
    cvxalloc.Scenario.from_dict(d)
    d["queue"]["arrival_rate"] = 10.0
    path = tmp_path / "unstable.json"
    path.write_text(json.dumps(d))
    _assert_cli_error(tmp_path, capsys, [str(path)], f"{limit:.6g}")


def test_toml_nan_and_inf(tmp_path, capsys):
    text = cvxalloc.io.resources.files("cvxalloc").joinpath("data/example.toml").read_text()
    bad = text.replace("arrival_rate = 0.02", "arrival_rate = nan", 1)
    assert bad != text
    path = tmp_path / "nan.toml"
    path.write_text(bad)
    with pytest.raises(ScenarioError, match="arrival_rate must be a finite number"):
        cvxalloc.load_scenario(path)
    _assert_cli_error(tmp_path, capsys, [str(path)], "arrival_rate must be a finite number")
    bad = text.replace("per_token = 0.0122", "per_token = inf", 1)
    path.write_text(bad)
    _assert_cli_error(tmp_path, capsys, [str(path)], "per_token must be a finite number")


def test_missing_file(tmp_path, capsys):
    path = tmp_path / "nope.toml"
    with pytest.raises(ScenarioError, match="does not exist"):
        cvxalloc.load_scenario(path)
    _assert_cli_error(tmp_path, capsys, [str(path)], "does not exist")


@pytest.mark.parametrize("name", ["scenario.yaml", "scenario", "scenario.txt"])
def test_wrong_extension(tmp_path, capsys, name):
    path = tmp_path / name
    path.write_text("[queue]\n")
    with pytest.raises(ScenarioError, match="use a .toml or .json file"):
        cvxalloc.load_scenario(path)
    _assert_cli_error(tmp_path, capsys, [str(path)], "unsupported extension")


def test_invalid_toml(tmp_path, capsys):
    path = tmp_path / "broken.toml"
    path.write_text("[queue\narrival_rate = 0.1\n")
    with pytest.raises(ScenarioError, match="is not valid TOML"):
        cvxalloc.load_scenario(path)
    _assert_cli_error(tmp_path, capsys, [str(path)], "is not valid TOML")


def test_invalid_json(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text('{"queue": {"arrival_rate": 0.1,}')
    with pytest.raises(ScenarioError, match="is not valid JSON"):
        cvxalloc.load_scenario(path)
    _assert_cli_error(tmp_path, capsys, [str(path)], "is not valid JSON")


def test_json_top_level_not_an_object(tmp_path, capsys):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    _assert_cli_error(tmp_path, capsys, [str(path)], "top level")


def test_toml_empty_task_list(tmp_path, capsys):
    path = tmp_path / "empty.toml"
    path.write_text("[queue]\narrival_rate = 0.1\nlatency_weight = 0.01\n")
    with pytest.raises(ScenarioError, match="no tasks"):
        cvxalloc.load_scenario(path)
    _assert_cli_error(tmp_path, capsys, [str(path)], "no tasks")


def test_output_directory_missing(tmp_path, capsys):
    out = tmp_path / "no" / "such" / "dir.json"
    code = main(["solve", "--json", "--output", str(out)])
    cap = capsys.readouterr()
    assert code == 2
    assert len(cap.err.splitlines()) == 1
    assert "does not exist" in cap.err
    assert not out.exists()


# --- allocations (cvxalloc certify) ------------------------------------------------


@pytest.fixture
def scenario_file(tmp_path, base_dict):
    path = tmp_path / "sc.json"
    path.write_text(json.dumps(base_dict))
    return path


@pytest.mark.parametrize(
    "alloc, fragment",
    [
        (
            {"chat": 100, "code": 2000, "math": 100, "olympiad": 100},
            'missing tokens for task "science"',
        ),
        (
            {"chat": 100, "code": 2000, "math": 100, "olympiad": 100, "science": 0, "chatt": 1},
            'unknown key "chatt"',
        ),
        (
            {"chat": 100, "code": 10, "math": 100, "olympiad": 100, "science": 0},
            'task "code": tokens 10 outside [min_tokens, max_tokens] = [1024, 16384]',
        ),
        (
            {"chat": 100, "code": 2000, "math": "x", "olympiad": 100, "science": 0},
            "tokens must be a number",
        ),
        (
            {"chat": 8192, "code": 16384, "math": 16384, "olympiad": 32768, "science": 16384},
            "allocation: unstable",
        ),
    ],
)
def test_bad_allocation(tmp_path, capsys, scenario_file, alloc, fragment):
    path = tmp_path / "alloc.json"
    path.write_text(json.dumps(alloc))
    sc = cvxalloc.load_scenario(scenario_file)
    with pytest.raises(ScenarioError) as err:
        cvxalloc.load_allocation(path, sc)
    assert fragment in str(err.value)
    _assert_cli_error(
        tmp_path, capsys, [str(scenario_file), str(path)], fragment, command="certify"
    )


def test_allocation_missing_file(tmp_path, capsys, scenario_file):
    _assert_cli_error(
        tmp_path,
        capsys,
        [str(scenario_file), str(tmp_path / "a.toml")],
        "allocation file",
        command="certify",
    )


def test_from_arrays_errors():
    from cvxalloc.accuracy import Exponential

    acc = Exponential(floor=0.2, ceiling=0.8, scale=1000.0)
    kw = dict(
        probability=[0.5, 0.5],
        max_tokens=4096,
        per_token=0.01,
        accuracy=acc,
        arrival_rate=0.05,
        latency_weight=0.01,
    )
    cvxalloc.Scenario.from_arrays(**kw)
    with pytest.raises(ScenarioError, match="probabilities must sum to 1"):
        cvxalloc.Scenario.from_arrays(**{**kw, "probability": [0.5, 0.6]})
    with pytest.raises(ScenarioError, match="one entry per task"):
        cvxalloc.Scenario.from_arrays(**{**kw, "max_tokens": [1, 2, 3]})
    with pytest.raises(ScenarioError, match='task "type1": service.per_token must be > 0'):
        cvxalloc.Scenario.from_arrays(**{**kw, "per_token": [0.01, -0.01]})
    with pytest.raises(ScenarioError, match="must be a finite number"):
        cvxalloc.Scenario.from_arrays(**{**kw, "base": [0.0, np.nan]})
    with pytest.raises(ScenarioError, match="duplicate name"):
        cvxalloc.Scenario.from_arrays(**{**kw, "names": ["a", "a"]})
    with pytest.raises(ScenarioError, match="no tasks"):
        cvxalloc.Scenario.from_arrays(**{**kw, "probability": []})
