"""Calibrating a batching server: fit_capacity and 'cvxalloc fit --throughput'."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cvxalloc
from cvxalloc.cli import main
from cvxalloc.errors import ScenarioError
from cvxalloc.fit.capacity import fit_capacity, read_throughput, server_toml

PUBLISHED = str(resources.files("cvxalloc").joinpath("data/published_batch_throughput.csv"))
EXAMPLE = str(resources.files("cvxalloc").joinpath("data/example.toml"))
BATCHING = str(resources.files("cvxalloc").joinpath("data/example_batching.toml"))


def test_published_rows_with_one_stream_at_55_give_the_example_curve():
    k, t = read_throughput(PUBLISHED)
    fit = fit_capacity(k, t, single_stream=55.0)
    assert not fit.projected and fit.max_relative_error < 1e-12
    example = cvxalloc.load_scenario(BATCHING).server
    assert fit.curve.concurrency == example.concurrency
    # the example rounds to 3 significant digits
    assert np.allclose(fit.curve.speedup, example.speedup, rtol=3e-3)


def test_extrapolated_single_stream_is_within_what_concavity_allows():
    k, t = read_throughput(PUBLISHED)
    fit = fit_capacity(k, t)
    assert fit.single_stream_source == "extrapolated"
    assert 210 / 4 <= fit.single_stream <= 210 - 3 * (377 - 210) / 4
    assert any("extrapolated" in n for n in fit.notes)


def test_superlinear_rows_are_projected_to_at_most_two_at_concurrency_two():
    fit = fit_capacity([1, 2, 4], [50.0, 120.0, 180.0])
    assert fit.projected and fit.curve.speedup[1] <= 2.0 + 1e-6


def test_measured_single_stream_wins():
    fit = fit_capacity([1, 1, 4, 8], [50.0, 52.0, 180.0, 300.0], single_stream=70.0)
    assert fit.single_stream == 51.0 and fit.single_stream_source == "measured"
    assert fit.curve.speedup[1] == pytest.approx(180 / 51)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.5, 2.0), min_size=3, max_size=6),
    st.integers(0, 10_000),
)
def test_noisy_rows_are_projected_onto_a_valid_curve(noise, seed):
    rng = np.random.default_rng(seed)
    k = np.array([1, 2, 4, 8, 16, 32][: len(noise)], dtype=float)
    t = 50.0 * np.minimum(k, 10.0 * np.sqrt(k)) * np.asarray(noise) * rng.uniform(0.9, 1.1)
    fit = fit_capacity(k, t)
    curve = fit.curve  # built: increasing, starts at (1, 1), convexity checked
    assert curve.concurrency[0] == 1 and curve.speedup[0] == 1.0
    slopes = np.diff(np.concatenate([[0.0], curve.speedup])) / np.diff(
        np.concatenate([[0.0], curve.concurrency])
    )
    assert np.all(np.diff(slopes) <= 1e-9)
    # the TOML it writes loads back
    server = cvxalloc.scenario_format.server_model(
        {
            "model": "batching",
            "concurrency": list(curve.concurrency),
            "speedup": list(curve.speedup),
        }
    )
    assert server.capacity == pytest.approx(curve.capacity)
    assert "[server]" in server_toml(curve)


@pytest.mark.parametrize(
    ("k", "t", "needle"),
    [
        ([0, 4], [10.0, 30.0], "whole number >= 1"),
        ([1, 2.5], [10.0, 30.0], "whole number >= 1"),
        ([1, 4], [10.0, -3.0], "throughput must be > 0"),
        ([4], [100.0], "one query alone"),
    ],
)
def test_bad_rows(k, t, needle):
    with pytest.raises(ScenarioError, match=needle):
        fit_capacity(k, t)


def test_cli_writes_the_template_with_a_server(tmp_path, capsys):
    out = tmp_path / "fitted.toml"
    args = ["fit", "--throughput", PUBLISHED, "--single-stream", "55"]
    assert main([*args, "--template", EXAMPLE, "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    sc = cvxalloc.load_scenario(out)
    assert sc.server is not None and sc.capacity == pytest.approx(1190 / 55)
    assert sc.names == cvxalloc.example_scenario().names
    res = cvxalloc.solve(sc)
    assert res.status == "optimal"


def test_cli_server_table_alone_and_json(tmp_path, capsys):
    out = tmp_path / "server.toml"
    assert main(["fit", "--throughput", PUBLISHED, "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["single_stream_source"] == "extrapolated" and data["output"] == str(out)
    text = out.read_text()
    assert text.count("[server]") == 1 and 'model = "batching"' in text


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        ("concurrency,throughput\n0,10\n4,30\n", "whole number >= 1"),
        ("concurrency,speed\n1,10\n4,30\n", "no column throughput"),
        ("concurrency,throughput\n1,10\n4,x\n", "line 3"),
        ("max_concurrency,output_tokens_per_second\n4,100\n", "one query alone"),
    ],
)
def test_cli_bad_files_exit_2(tmp_path, capsys, rows, needle):
    path = tmp_path / "rows.csv"
    path.write_text(rows)
    assert main(["fit", "--throughput", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_cli_needs_some_input(capsys):
    assert main(["fit"]) == 2
    assert "ACCURACY_CSV" in capsys.readouterr().err


def test_capacity_fit_repr_rebuilds_it():
    """Measured, extrapolated and projected fits come back from their reprs, field by field."""
    from cvxalloc.fit.capacity import CapacityFit
    from cvxalloc.queue import CapacityCurve

    namespace = {"np": np, "CapacityFit": CapacityFit, "CapacityCurve": CapacityCurve}
    fits = [
        fit_capacity(*read_throughput(PUBLISHED)),  # extrapolated one stream, with a note
        fit_capacity([1, 2, 4, 4], [50.0, 90.0, 150.0, 152.0]),  # measured, averaged
        fit_capacity([1, 2, 4], [50.0, 120.0, 150.0]),  # superlinear: projected
    ]
    assert [f.single_stream_source for f in fits] == ["extrapolated", "measured", "measured"]
    assert fits[2].projected
    for fit in fits:
        text = repr(fit)
        assert "object at 0x" not in text and "array(" not in text.replace("np.array(", "")
        again = eval(text, dict(namespace))  # noqa: S307 - our own repr
        assert type(again) is CapacityFit and repr(again) == text
        for f in dataclasses.fields(fit):
            a, b = getattr(fit, f.name), getattr(again, f.name)
            if isinstance(a, np.ndarray):
                assert a.dtype == b.dtype and np.array_equal(a, b)
            else:
                assert a == b and type(a) is type(b)
        assert again.summary() == fit.summary() and again.to_dict() == fit.to_dict()


# ----------------------------------------------------- calibration keeps the server (issue 19)
ACCURACY = "docs/examples/accuracy_measurements.csv"


def _accuracy_csv() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1] / ACCURACY)


def test_template_keeps_server_arrival_scv_and_constraints(tmp_path):
    # the batching template's [server] survives an accuracy fit
    out = tmp_path / "batching.toml"
    assert main(["fit", _accuracy_csv(), "--template", BATCHING, "-o", str(out)]) == 0
    fitted, template = cvxalloc.load_scenario(out), cvxalloc.load_scenario(BATCHING)
    assert fitted.server == template.server
    # arrival_scv and [constraints] of a template are kept, not reset to their defaults
    bursty = tmp_path / "bursty.toml"
    sc = cvxalloc.example_scenario().with_(arrival_scv=2.5)
    text = cvxalloc.io.scenario_toml(sc)
    bursty.write_text(text + "\n[constraints]\nmax_mean_system_time = 60.0\n")
    out2 = tmp_path / "fitted.toml"
    assert main(["fit", _accuracy_csv(), "--template", str(bursty), "-o", str(out2)]) == 0
    kept = cvxalloc.load_scenario(out2)
    assert kept.arrival_scv == 2.5
    assert kept.constraints is not None and kept.constraints.max_mean_system_time == 60.0


def test_throughput_fit_checks_stability_with_the_batching_server(tmp_path, capsys):
    # 2 queries/s is far beyond one query at a time (utilization ~15) but a third of what
    # the fitted batching server carries: the scenario is validated with that server.
    out = tmp_path / "fitted.toml"
    args = [
        "fit", _accuracy_csv(), "--throughput", PUBLISHED, "--single-stream", "55",
        "--arrival-rate", "2", "--latency-weight", "0.001", "--per-token", str(1 / 55),
        "--base", "2.8",
        "-o", str(out),
    ]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    sc = cvxalloc.load_scenario(out)
    assert sc.server is not None and sc.utilization(sc.min_tokens) < 1
    assert 2.0 * sc.probability @ sc.service_time(sc.min_tokens) > 1  # one at a time: unstable
    assert "per-token times disagree" not in capsys.readouterr().out  # 1/55 s and 55 tokens/s


def test_per_token_disagreement_is_reported_with_its_size(tmp_path, capsys):
    # the template's 1/55 s per token against the extrapolated 56.53 tokens/s alone: 2.9%
    out = tmp_path / "fitted.toml"
    assert main(["fit", "--throughput", PUBLISHED, "--template", BATCHING, "-o", str(out)]) == 0
    report = capsys.readouterr().out
    assert "per-token times disagree" in report and "+2.9%" in report
    assert "per-token times disagree" in out.read_text()  # in the file's header too


@pytest.mark.parametrize("rate", ["500", "40"])
def test_a_single_stream_that_fits_badly_is_refused_with_the_residuals(tmp_path, capsys, rate):
    out = tmp_path / "fitted.toml"
    args = ["fit", "--throughput", PUBLISHED, "--single-stream", rate, "-o", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fits the throughputs badly" in err[0]
    assert "4: 210 fitted" in err[0]  # the residuals
    assert "between 52.5 and 84.75" in err[0]  # the rates that keep the curve concave
    assert not out.exists()
    # a rate inside that range fits the points as measured
    for r1 in (53.0, 60.0, 84.0):
        fit = fit_capacity([4, 8, 16, 32, 48], [210, 377, 644, 975, 1190], single_stream=r1)
        assert not fit.projected and fit.max_relative_error < 1e-12
