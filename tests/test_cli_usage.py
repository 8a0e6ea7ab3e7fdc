"""Usage errors of the later subcommands: exit 2, one stderr line, no file; file modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cvxalloc.cli import main


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            [
                "sweep",
                "cvxalloc/data/example.toml",
                "--latency-weight",
                "1e-4:1e-2:3",
                "--log",
                "--option",
                "foo=1",
            ],
            "does not take option",
        ),
        (["plot", "-o", "{tmp}/x.pdf"], "name it *.png"),
        (["sensitivity", "--change", "nan"], "--change"),
        (["sensitivity", "--change", "-2"], "--change"),
        (["simulate", "--warmup", "-5", "--queries", "1000"], "--warmup"),
        (["solve", "--option", "polish_rtol=1e-12"], "does not take option"),
        # bad values of options the method does take: the solver names the option
        (["solve", "--option", "tol=-1", "-o", "{tmp}/r.txt"], "option tol"),
        (
            ["solve", "--method", "gradient", "--option", 'variant="bogus"', "-o", "{tmp}/r.txt"],
            "option variant",
        ),
        (["solve", "--method", "gradient", "--option", "shrink=1"], "option shrink"),
        (["solve", "--method", "gradient", "--option", "step_fraction=2"], "option step_fraction"),
        (["solve", "--method", "fixed-point", "--option", "max_iter=-3"], "option max_iter"),
        (["solve", "--method", "fixed-point", "--option", 'fallback="newton"'], "option fallback"),
        (["solve", "--method", "gradient", "--option", "warm_start=[1, 2]"], "option warm_start"),
        (["solve", "--option", 'max_iter="abc"'], "option max_iter"),
        (["solve", "--option", "sample_size=-5"], "option sample_size"),
        (["solve", "--option", "polish_steps=-1"], "option polish_steps"),
        (["solve", "--option", "xtol=0"], "option xtol"),
        (["solve", "--method", "conic", "--option", "polish_rtol=-1"], "option polish_rtol"),
        (["solve", "--method", "conic", "--option", "solver_options=5"], "option solver_options"),
        (["solve", "--method", "rounding", "--option", "max_moves=-1"], "option max_moves"),
        (["solve", "--method", "mixed-integer", "--option", "time_limit=-1"], "option time_limit"),
        # names and internal arguments are refused up front, not silently replaced
        (["solve", "--method", "conic", "--option", 'solver="FOO"'], "option solver"),
        (["solve", "--method", "conic", "--option", "solver=3"], "option solver"),
        (["solve", "--method", "conic", "--option", 'fallback="XYZ"'], "option fallback"),
        (["solve", "--method", "conic", "--option", "problem=1"], "option problem is internal"),
        (["solve", "--method", "mixed-integer", "--option", "continuous=1"], "option continuous"),
        (
            ["solve", "--method", "mixed-integer", "--option", 'continuous_method="FOO"'],
            "option continuous_method",
        ),
        # a sweep with a bad option fails once, naming the option (not "no point ... solution")
        (
            [
                "sweep",
                "cvxalloc/data/example.toml",
                "--latency-weight",
                "1e-4:1e-2:3",
                "--option",
                "tol=-1",
            ],
            "option tol must be",
        ),
        (
            [
                "sweep",
                "cvxalloc/data/example.toml",
                "--latency-weight",
                "1e-4:1e-2:3",
                "--method",
                "conic",
                "--option",
                'solver="FOO"',
            ],
            "option solver must be",
        ),
    ],
)
def test_usage_error_is_one_line_exit_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    assert "no point of the sweep" not in err


def test_simulate_reports_the_seed_it_drew(capsys):
    assert main(["simulate", "--queries", "50000", "--json"]) == 0
    seed = json.loads(capsys.readouterr().out)["seed"]
    assert isinstance(seed, int)
    assert main(["simulate", "--queries", "50000", "--json", "--seed", str(seed)]) == 0


def test_output_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "s.txt"
        assert main(["solve", "--no-baselines", "-o", str(out)]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "cvxalloc", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and proc.stdout.startswith("cvxalloc ")


def test_a_solver_fallback_is_recorded_and_shown(monkeypatch, capsys):
    """Clarabel raising on every attempt: SCS answers, result.fallback and the CLI say so."""
    import cvxalloc.solvers.conic as conic

    real = conic._solve_once

    def clarabel_fails(cprob, name, opts, verbose, times):
        if name == "CLARABEL":
            raise conic.cp.error.SolverError("injected failure")
        return real(cprob, name, opts, verbose, times)

    monkeypatch.setattr(conic, "_solve_once", clarabel_fails)
    assert main(["solve", "--method", "conic", "--no-baselines"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("cvxalloc: method conic, status ")
    assert lines[1].startswith("fell back to solver SCS")
    assert main(["solve", "--method", "conic", "--no-baselines", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["method"], d["fallback"]) == ("conic", "SCS")
    assert "injected failure" in d["solver_stats"]["solver"]
    # without a fallback the failure is one line, exit 2
    assert main(["solve", "--method", "conic", "--option", "fallback=null"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "injected failure" in err and "Traceback" not in err
