"""The command line: solve (table and JSON), certify, help, the console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import cvxalloc
from cvxalloc.cli import SUBCOMMANDS, main
from cvxalloc.testing import random_scenario

#: The keys of MODEL.md's result contract.
KEYS = (
    "status",
    "method",
    "tokens",
    "objective",
    "accuracy",
    "mean_system_time",
    "utilization",
    "certificate",
)


def _run(capsys, argv):
    code = main(argv)
    cap = capsys.readouterr()
    assert code == 0, cap.err
    return cap.out


def _check_contract(out: dict, sc) -> None:
    for key in KEYS:
        assert key in out, key
    assert out["status"] == "optimal"
    assert list(out["tokens"]) == sc.names
    t = np.array([out["tokens"][n] for n in sc.names])
    ev = cvxalloc.evaluate(sc, t)
    # the figures are those of the printed tokens
    assert out["objective"] == pytest.approx(ev.objective, rel=1e-12)
    assert out["accuracy"] == pytest.approx(ev.accuracy, rel=1e-12)
    assert out["mean_system_time"] == pytest.approx(ev.mean_system_time, rel=1e-12)
    assert out["utilization"] == pytest.approx(ev.utilization, rel=1e-12)
    cert = out["certificate"]
    assert cert["gap"] >= 0
    assert cert["upper_bound"] == pytest.approx(out["objective"] + cert["gap"], rel=1e-14)
    assert cert["gap"] <= 1e-6 * abs(out["objective"])
    # ... and the certificate is the one anyone recomputes from the tokens
    assert cvxalloc.certify(sc, t).gap == pytest.approx(cert["gap"], rel=1e-9, abs=1e-15)


def test_solve_prints_the_table(capsys, example_optimum):
    out = _run(capsys, ["solve", "--method", "conic"])
    for name in ("chat", "code", "math", "olympiad", "science"):
        assert name in out
    for label in (
        "tokens",
        "accuracy",
        "service s",
        "mean system time W",
        "utilization rho",
        "utility U",
        "certified gap",
        "uniform",
        "minimum",
        "maximum",
    ):
        assert label in out, label
    # the optimum's utility is printed
    assert f"{example_optimum.objective:.10g}" in out
    # the gain against the uniform baseline is printed in absolute and %
    uni = cvxalloc.baselines(example_optimum.scenario)["uniform"]
    diff = example_optimum.objective - uni.objective
    assert f"{diff:+.6f}" in out
    assert f"({100 * diff / abs(uni.objective):+.2f}%)" in out


def test_solve_json_example(capsys, example):
    out = json.loads(_run(capsys, ["solve", "--json", "--method", "conic"]))
    _check_contract(out, example)
    assert out["method"] == "conic"
    assert "raw_certificate" in out
    assert set(out["baselines"]) == {"uniform", "minimum", "maximum"}


def test_solve_json_default_method(capsys, example):
    out = json.loads(_run(capsys, ["solve", "--json"]))
    _check_contract(out, example)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_solve_json_of_a_file(capsys, tmp_path, suffix):
    rng = np.random.default_rng(8)
    sc = random_scenario(rng, 6, load="heavy")
    path = tmp_path / f"sc{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(sc.to_dict()))
    else:
        path.write_text(_to_toml(sc.to_dict()))
    loaded = cvxalloc.load_scenario(path)
    out = json.loads(_run(capsys, ["solve", str(path), "--json", "--method", "conic"]))
    _check_contract(out, loaded)
    ref = cvxalloc.solve(sc, method="conic")
    assert out["objective"] == pytest.approx(ref.objective, rel=1e-9)


def test_solve_output_file(capsys, tmp_path, example):
    dest = tmp_path / "res.json"
    out = _run(capsys, ["solve", "--json", "--method", "conic", "--output", str(dest)])
    assert out == ""
    _check_contract(json.loads(dest.read_text()), example)


def test_solve_option_passes_through(capsys):
    out = json.loads(
        _run(
            capsys,
            [
                "solve",
                "--json",
                "--method",
                "conic",
                "--no-baselines",
                "--option",
                "polish_steps=0",
            ],
        )
    )
    assert "raw_certificate" not in out
    assert "baselines" not in out


def test_bad_option_is_one_line(capsys):
    # an unknown solver option is a usage error: exit 2 with one line, no traceback
    code = main(["solve", "--method", "conic", "--option", "nonsense=1"])
    cap = capsys.readouterr()
    assert code == 2
    assert len(cap.err.splitlines()) == 1
    assert "nonsense" in cap.err


def test_certify_optimum_and_minimum(capsys, tmp_path, example, example_optimum):
    opt = tmp_path / "opt.json"
    opt.write_text(json.dumps(dict(zip(example.names, example_optimum.tokens.tolist()))))
    out = json.loads(
        _run(capsys, ["certify", str(_example_file(tmp_path, example)), str(opt), "--json"])
    )
    assert out["certificate"]["gap"] <= 1e-8 * abs(out["objective"])
    low, high = out["shortfall"]
    assert 0 <= low <= high <= 1e-8 * abs(out["objective"])

    mn = tmp_path / "min.toml"
    mn.write_text("".join(f"{n} = {t:.1f}\n" for n, t in zip(example.names, example.min_tokens)))
    out = json.loads(
        _run(capsys, ["certify", str(_example_file(tmp_path, example)), str(mn), "--json"])
    )
    low, high = out["shortfall"]
    U_min = cvxalloc.evaluate(example, example.min_tokens).objective
    assert out["objective"] == pytest.approx(U_min, rel=1e-12)
    # a positive interval that holds the true shortfall U* - U(min)
    true = example_optimum.objective - U_min
    assert 0 < low <= true + 1e-12 <= high + 2e-12
    assert high - low <= 1e-8
    # text form
    text = _run(capsys, ["certify", str(_example_file(tmp_path, example)), str(mn)])
    assert "Frank-Wolfe gap" in text and "shortfall U* - U" in text


def test_certify_reads_solve_json(capsys, tmp_path, example):
    res = tmp_path / "res.json"
    _run(capsys, ["solve", "--json", "--method", "conic", "-o", str(res)])
    out = json.loads(
        _run(capsys, ["certify", str(_example_file(tmp_path, example)), str(res), "--json"])
    )
    assert out["shortfall"][1] <= 1e-8 * abs(out["objective"])


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_of_each_subcommand(capsys, command):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cvxalloc {command}")
    assert "--help" in out


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in SUBCOMMANDS:
        assert command in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: cvxalloc" in capsys.readouterr().out


def test_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["solve", "--method", "nope"])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_console_script(tmp_path):
    exe = shutil.which("cvxalloc")
    argv = [exe] if exe else [sys.executable, "-m", "cvxalloc.cli"]
    done = subprocess.run(
        [*argv, "solve", "--json", "--method", "conic"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for key in KEYS:
        assert key in out
    bad = subprocess.run(
        [*argv, "solve", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert len(bad.stderr.splitlines()) == 1
    assert "Traceback" not in bad.stderr


# --- helpers -------------------------------------------------------------------------


def _example_file(tmp_path, example):
    path = tmp_path / "example.json"
    if not path.exists():
        path.write_text(json.dumps(example.to_dict()))
    return path


def _toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(float(v)) if isinstance(v, float) else repr(v)


def _to_toml(d: dict) -> str:
    """The scenario structure as TOML text (enough for Scenario.to_dict output)."""
    lines = ["[queue]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in d["queue"].items()]
    for task in d["task"]:
        lines.append("\n[[task]]")
        tables = {k: v for k, v in task.items() if isinstance(v, dict)}
        lines += [f"{k} = {_toml_value(v)}" for k, v in task.items() if k not in tables]
        for name, table in tables.items():
            lines.append(f"[task.{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
