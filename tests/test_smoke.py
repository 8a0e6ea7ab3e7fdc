"""Smoke test of the main job: the example solves optimal and certified."""

import cvxalloc


def test_example_solves_certified(example_optimum):
    assert example_optimum.status == "optimal"
    assert example_optimum.certificate.within(1e-6)
    assert (
        cvxalloc.certify(example_optimum.scenario, example_optimum.tokens).upper_bound
        >= example_optimum.objective
    )


def test_error_line_names_the_command_once(tmp_path, capsys):
    """A message that starts with its command's name is not prefixed twice."""
    from importlib import resources

    from cvxalloc.cli import main
    from cvxalloc.io import EXAMPLE_PATH

    text = resources.files("cvxalloc").joinpath(EXAMPLE_PATH).read_text(encoding="utf-8")
    scenario = tmp_path / "constrained.toml"
    scenario.write_text(text + "\n[constraints]\nmax_mean_tokens = 3000\n", encoding="utf-8")
    assert main(["sensitivity", str(scenario)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cvxalloc sensitivity: error: ")
    assert err.count("sensitivity:") == 1, err
    assert "[constraints]" in err


def test_reprs_rebuild_certificate_and_result(example, example_optimum):
    """The reprs of the public data classes are source that rebuilds them."""
    import numpy as np

    from cvxalloc import Certificate, Result

    for cert in (
        example_optimum.certificate,
        cvxalloc.certify(example, example.max_tokens),  # unstable: an infinite gap
        Certificate(objective=0.5, gap=1e-3, upper_bound=0.501, details={"steps": np.arange(3)}),
    ):
        again = eval(repr(cert), {"Certificate": Certificate})  # noqa: S307 - our own repr
        assert repr(again) == repr(cert)
        assert again.gap == cert.gap and again.upper_bound == cert.upper_bound
    res = cvxalloc.solve(example, method="gradient")
    assert "object at 0x" not in repr(res)
    tokens = eval(repr(res).split("tokens=")[1][:-1])  # noqa: S307 - our own repr
    again = Result.from_tokens(example, tokens, method=res.method, status=res.status)
    np.testing.assert_array_equal(again.tokens, res.tokens)
    assert repr(again) == repr(res)


def test_validation_run_shows_progress_on_a_terminal_only(tmp_path, capsys, monkeypatch):
    import sys
    from pathlib import Path

    # validation/ is a folder of the repository, not of the installed package
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    from validation import run

    argv = ["--only", "c", "--quick", "--out", str(tmp_path)]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert run.main(argv) == 0
    err = capsys.readouterr().err
    assert "validation:" in err and "/1 " in err  # the bar over the experiments
    assert "[c]" in err and (tmp_path / "report.md").exists()
    assert run.main([*argv, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "validation:" not in err and "[c]" in err


def test_every_validation_experiment_imports(monkeypatch):
    # an experiment that cannot be imported fails only when validation runs (hours later)
    import importlib
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    from validation import run

    for name in run.EXPERIMENTS.values():
        importlib.import_module(f"validation.{name}")


def test_sweep_repr_rebuilds_the_sweep(example):
    import numpy as np

    from cvxalloc.sweep import SweepResult, sweep_latency_weight

    # gamma = 0 is an invalid point here: NaN figures and a message round-trip too
    sw = sweep_latency_weight(example, [0.0, 1e-3, 1e-2], progress=False)
    assert sw.status[0] == "invalid" and sw.messages[0]
    again = eval(repr(sw), {"np": np, "SweepResult": SweepResult})  # noqa: S307 - our own repr
    assert repr(again) == repr(sw)
    assert again.to_csv() == sw.to_csv() and again.to_json() == sw.to_json()
    np.testing.assert_array_equal(again.tokens, sw.tokens)
