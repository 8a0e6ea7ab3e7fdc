"""Sweeps over the latency weight and the SLO: each point against independent solves."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from conftest import small_scenario

import cvxalloc
from cvxalloc import Constraints
from cvxalloc.baselines import best_uniform
from cvxalloc.cli import main
from cvxalloc.objective import Objective
from cvxalloc.sweep import sweep_latency_weight, sweep_slo

WEIGHTS = np.geomspace(1e-4, 1e-2, 5)


@pytest.fixture(scope="module")
def example():
    return cvxalloc.example_scenario()


@pytest.fixture(scope="module")
def gamma_sweep(example):
    return sweep_latency_weight(example, WEIGHTS, method="conic")


def _agree(U1, gap1, U2, gap2):
    """Two certified answers to the same problem agree within their gaps."""
    return abs(U1 - U2) <= gap1 + gap2 + 1e-14


def test_latency_weight_points_match_independent_solves(example, gamma_sweep):
    sw = gamma_sweep
    assert sw.parameter == "latency_weight" and np.array_equal(sw.latency_weight, WEIGHTS)
    assert sw.method == "conic"
    assert sw.tokens.shape == (WEIGHTS.size, example.n)
    assert list(sw.status) == ["optimal"] * WEIGHTS.size
    for k, w in enumerate(WEIGHTS):
        ref = cvxalloc.solve(example.with_(latency_weight=w), method="conic")
        assert _agree(sw.objective[k], sw.gap[k], ref.objective, ref.certificate.gap)
        assert sw.gap[k] <= 1e-8 * abs(sw.objective[k])
        # The reported figures are those of the reported tokens.
        ev = cvxalloc.evaluate(example.with_(latency_weight=w), sw.tokens[k])
        assert ev.objective == pytest.approx(sw.objective[k], rel=1e-12)
        assert ev.mean_system_time == pytest.approx(sw.mean_system_time[k], rel=1e-12)
        assert ev.accuracy == pytest.approx(sw.accuracy[k], rel=1e-12)
        assert ev.utilization == pytest.approx(sw.utilization[k], rel=1e-12)


def test_frontier_is_monotone_and_beats_uniform(example, gamma_sweep):
    sw = gamma_sweep
    # A higher price on latency buys lower W with lower accuracy.
    assert np.all(np.diff(sw.mean_system_time) < 0)
    assert np.all(np.diff(sw.accuracy) < 0)
    # The best uniform budget is the baseline of cvxalloc.baselines, and never wins.
    for k, w in enumerate(WEIGHTS):
        u = best_uniform(example.with_(latency_weight=w))
        assert sw.uniform_objective[k] == pytest.approx(u.objective, rel=1e-12)
        assert sw.uniform_mean_system_time[k] == pytest.approx(u.mean_system_time, rel=1e-12)
        assert sw.uniform_accuracy[k] == pytest.approx(u.accuracy, rel=1e-12)
    assert np.all(sw.objective >= sw.uniform_objective - sw.gap)


def test_parameterized_and_rebuilt_conic_agree(example, gamma_sweep):
    rebuilt = sweep_latency_weight(example, WEIGHTS, method="conic", uniform=False, problem=None)
    assert rebuilt.uniform_objective is None
    for k in range(WEIGHTS.size):
        assert _agree(
            gamma_sweep.objective[k], gamma_sweep.gap[k], rebuilt.objective[k], rebuilt.gap[k]
        )


def test_other_method_sweeps(example, gamma_sweep):
    agg = sweep_latency_weight(example, WEIGHTS, method="aggregate", uniform=False)
    assert agg.method == "aggregate"
    for k in range(WEIGHTS.size):
        assert _agree(gamma_sweep.objective[k], gamma_sweep.gap[k], agg.objective[k], agg.gap[k])


def test_invalid_point_is_reported_not_raised(example):
    """gamma = 0 with unstable maximum budgets has no optimum: that point only fails."""
    assert example.utilization(example.max_tokens) >= 1
    sw = sweep_latency_weight(example, [0.0, 1e-3], uniform=False)
    assert list(sw.status) == ["invalid", "optimal"]
    assert np.isnan(sw.objective[0]) and np.all(np.isnan(sw.tokens[0]))
    assert "latency_weight" in sw.messages[0] and sw.messages[1] == ""


@pytest.fixture(scope="module")
def slo_sweep(example):
    W_lo = cvxalloc.evaluate(example, example.min_tokens).mean_system_time
    W_free = cvxalloc.solve(example).mean_system_time
    slos = np.array([0.5 * W_lo, 1.5 * W_lo, 0.5 * (W_lo + W_free), 2 * W_free])
    return slos, W_free, sweep_slo(example, slos)


def test_slo_sweep(example, slo_sweep):
    slos, W_free, sw = slo_sweep
    assert sw.parameter == "slo" and np.array_equal(sw.slo, slos)
    assert sw.method == "aggregate"  # the default honours the SLO
    assert np.all(sw.latency_weight == example.latency_weight)
    assert sw.status[0] == "infeasible" and "max_mean_system_time" in sw.messages[0]
    assert np.isnan(sw.objective[0]) and np.isnan(sw.uniform_objective[0])
    ok = sw.solved
    assert list(ok) == [False, True, True, True]
    assert np.all(sw.mean_system_time[ok] <= slos[ok])
    # Binding SLOs are met with equality; a loose one leaves the unconstrained optimum.
    assert sw.mean_system_time[1] == pytest.approx(slos[1], rel=1e-9)
    assert sw.mean_system_time[3] == pytest.approx(W_free, rel=1e-6)
    assert np.all(np.diff(sw.objective[ok]) > 0)
    for k in np.flatnonzero(ok):
        sc = example.with_(constraints=Constraints(max_mean_system_time=slos[k]))
        ref = cvxalloc.solve(sc)
        assert _agree(sw.objective[k], sw.gap[k], ref.objective, ref.certificate.gap)
        assert sw.uniform_mean_system_time[k] <= slos[k]
        assert sw.objective[k] >= sw.uniform_objective[k] - sw.gap[k]


def test_constrained_best_uniform_is_best_on_a_grid(example):
    W_lo = cvxalloc.evaluate(example, example.min_tokens).mean_system_time
    sc = example.with_(
        constraints=Constraints(
            max_mean_system_time=2 * W_lo, min_accuracy=[np.nan, np.nan, 0.8, np.nan, np.nan]
        )
    )
    u = best_uniform(sc)
    assert u.mean_system_time <= 2 * W_lo
    lo2 = np.maximum(sc.min_tokens, cvxalloc.constraints.required_tokens(sc))
    obj = Objective(example)
    best = -np.inf
    for T in np.linspace(0, sc.max_tokens.max(), 20001):
        t = np.clip(T, lo2, sc.max_tokens)
        if cvxalloc.evaluate(example, t).mean_system_time <= 2 * W_lo:
            best = max(best, obj.value(t))
    assert u.objective >= best - 1e-12
    assert u.objective <= best + 1e-4 * abs(best)  # the grid is fine enough to come close


def test_csv_and_json(example, slo_sweep, tmp_path):
    _, _, sw = slo_sweep
    text = sw.to_csv(tmp_path / "s.csv")
    assert (tmp_path / "s.csv").read_text() == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(sw)
    assert rows[0]["status"] == "infeasible" and rows[0]["objective"] == ""
    assert float(rows[2]["objective"]) == sw.objective[2]
    assert float(rows[2][f"tokens[{example.names[1]}]"]) == sw.tokens[2, 1]
    data = json.loads(sw.to_json())
    assert data["parameter"] == "slo" and data["names"] == example.names
    assert data["objective"][0] is None and data["objective"][2] == sw.objective[2]
    assert np.array(data["tokens"][2]) == pytest.approx(sw.tokens[2], rel=0, abs=0)
    for key in (
        "latency_weight",
        "slo",
        "accuracy",
        "mean_system_time",
        "utilization",
        "status",
        "uniform_objective",
        "uniform_accuracy",
        "uniform_mean_system_time",
    ):
        assert len(data[key]) == len(sw)


def test_cli_sweep(tmp_path, capsys):
    sc = small_scenario(3, load=0.6)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(sc.to_dict()))
    out_csv, png = tmp_path / "f.csv", tmp_path / "f.png"
    code = main(
        [
            "sweep",
            str(path),
            "--latency-weight",
            "0.001:0.1:4",
            "--log",
            "--csv",
            str(out_csv),
            "--plot",
            str(png),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "latency_wt" in table and table.count("optimal") == 4
    assert len(out_csv.read_text().splitlines()) == 5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["sweep", str(path), "--slo", "1:100:3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["parameter"] == "slo" and len(data["slo"]) == 3


def _exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse usage errors
        return int(exc.code)


@pytest.mark.parametrize(
    "args",
    [
        ["--latency-weight", "1:2"],
        ["--latency-weight", "a:2:3"],
        ["--latency-weight", "0:1:3", "--log"],
        ["--latency-weight", "0.1:1:0"],
        ["--slo=-1:1:2"],
        ["--slo", "0.001:0.002:2"],  # every point infeasible
        ["--slo", "1:2:2", "--plot", "x.pdf"],
        [],  # neither grid
    ],
)
def test_cli_errors_exit_2(tmp_path, capsys, args):
    sc = small_scenario(3, load=0.6)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(sc.to_dict()))
    assert _exit_code(["sweep", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err
    assert not (tmp_path / "x.pdf").exists()
