"""What the Python API and the commands take (issue 22): paths, dicts, allocations, outputs.

* ``cvxalloc.solve("file.toml")`` failed with AttributeError: a path (or the file's
  structure as a dict) is read first.
* ``evaluate`` and ``certify`` with a wrong-length or dict allocation raised raw
  IndexError / TypeError: a mapping naming every task is taken, anything else is
  one ScenarioError saying what to give.
* ``traffic --output x.json`` and ``fit -o z.json`` wrote TOML, which ``solve``
  then refused as "not valid JSON": outputs follow their extension (.toml, .json),
  anything else is refused before any work, nothing written.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import cvxalloc
from cvxalloc.cli import main
from cvxalloc.errors import ScenarioError

EXAMPLE = Path(str(resources.files("cvxalloc").joinpath("data/example.toml")))
PUBLISHED = str(resources.files("cvxalloc").joinpath("data/published_batch_throughput.csv"))
ACCURACY = Path(__file__).resolve().parents[1] / "docs" / "examples" / "accuracy_measurements.csv"


@pytest.mark.parametrize("given", [str(EXAMPLE), EXAMPLE, "dict"])
def test_solve_takes_a_path_or_the_files_structure(example, given):
    scenario = example.to_dict() if given == "dict" else given
    res = cvxalloc.solve(scenario)
    ref = cvxalloc.solve(example)
    assert res.status == "optimal" and np.array_equal(res.tokens, ref.tokens)


def test_solve_refuses_what_is_not_a_scenario():
    with pytest.raises(ScenarioError, match="scenario must be a Scenario, a path"):
        cvxalloc.solve(42)
    with pytest.raises(ScenarioError, match="no such file|does not exist|not found"):
        cvxalloc.solve("no_such_scenario.toml")


def test_evaluate_and_certify_take_a_mapping_by_name(example):
    by_name = {n: float(t) for n, t in zip(example.names, example.min_tokens)}
    assert cvxalloc.evaluate(example, by_name).objective == pytest.approx(
        cvxalloc.evaluate(example, example.min_tokens).objective, rel=0, abs=0
    )
    assert (
        cvxalloc.certify(example, by_name).gap == cvxalloc.certify(example, example.min_tokens).gap
    )


@pytest.mark.parametrize(
    "tokens, words",
    [
        ([1.0, 2.0], "one number per task expected (5, in task order"),
        ([[0.0] * 5], "got shape (1, 5)"),
        ({"chat": 5.0}, "missing: code, math, olympiad, science"),
        ({"chat": 1, "code": 1024, "math": 1, "olympiad": 1, "science": 1, "x": 1}, "unknown: x"),
        (["a"] * 5, "one number per task expected"),
        ([0.0, 1024.0, 0.0, 0.0, float("nan")], 'task "science": tokens must be finite'),
    ],
)
def test_a_bad_allocation_is_one_clear_error(example, tokens, words):
    with pytest.raises(ScenarioError) as err:
        cvxalloc.evaluate(example, tokens)
    assert words in str(err.value)
    if "finite" not in words:  # a certificate of a non-finite point proves nothing, no error
        with pytest.raises(ScenarioError):
            cvxalloc.certify(example, tokens)


def test_certify_and_evaluate_point_to_load_scenario_for_a_path(example):
    for func in (cvxalloc.evaluate, cvxalloc.certify):
        with pytest.raises(ScenarioError, match=r"read a file with cvxalloc.load_scenario"):
            func(str(EXAMPLE), example.min_tokens)


def _log(tmp_path) -> str:
    t = np.cumsum(np.random.default_rng(3).exponential(0.5, 500))
    path = tmp_path / "log.csv"
    path.write_text("timestamp\n" + "".join(f"{x:.6f}\n" for x in t))
    return str(path)


@pytest.mark.parametrize("ext", [".json", ".toml"])
def test_traffic_output_follows_its_extension(tmp_path, capsys, ext):
    out = tmp_path / f"out{ext}"
    assert main(["traffic", _log(tmp_path), "--scenario", str(EXAMPLE), "-o", str(out)]) == 0
    capsys.readouterr()
    text = out.read_text()
    assert text.lstrip().startswith("{") == (ext == ".json")
    sc = cvxalloc.load_scenario(out)
    assert sc.arrival_rate == pytest.approx(2.0, rel=0.1)
    assert main(["solve", str(out), "--no-baselines"]) == 0


@pytest.mark.parametrize("ext", [".json", ".toml"])
def test_fit_output_follows_its_extension(tmp_path, capsys, ext):
    out = tmp_path / f"fitted{ext}"
    assert main(["fit", str(ACCURACY), "--template", str(EXAMPLE), "-o", str(out)]) == 0
    capsys.readouterr()
    assert out.read_text().lstrip().startswith("{") == (ext == ".json")
    assert cvxalloc.load_scenario(out).n == cvxalloc.load_scenario(EXAMPLE).n
    server = tmp_path / f"server{ext}"  # the [server] table alone
    assert main(["fit", "--throughput", PUBLISHED, "-o", str(server)]) == 0
    capsys.readouterr()
    text = server.read_text()
    if ext == ".json":
        assert json.loads(text)["server"]["model"] == "batching"
    else:
        assert "[server]" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["traffic", "{log}", "--scenario", str(EXAMPLE), "-o", "{tmp}/out.yaml"],
        ["fit", str(ACCURACY), "--template", str(EXAMPLE), "-o", "{tmp}/out.txt"],
        ["fit", "--throughput", PUBLISHED, "-o", "{tmp}/server"],
    ],
)
def test_other_extensions_are_refused_before_any_work(tmp_path, capsys, argv):
    log = _log(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.format(log=log, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "name it *.toml or *.json" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
