"""Figures and the ``simulate`` / ``plot`` commands."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import small_scenario

import cvxalloc
from cvxalloc import plots
from cvxalloc.baselines import uniform_budget
from cvxalloc.cli import main


def _tiny_sweep(sc, weights):
    """The sweep, point by point (independent of cvxalloc.sweep)."""
    rows = []
    for g in weights:
        s = sc.with_(latency_weight=float(g))
        r, u = cvxalloc.solve(s), uniform_budget(s)
        rows.append((r.accuracy, r.mean_system_time, u.accuracy, u.mean_system_time))
    a, w, ua, uw = map(np.array, zip(*rows))
    return SimpleNamespace(
        latency_weight=np.asarray(weights),
        accuracy=a,
        mean_system_time=w,
        uniform_accuracy=ua,
        uniform_mean_system_time=uw,
    )


def _is_png(path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_default_weights_bracket_scenario_weight(example):
    w = plots.default_latency_weights(example, points=9, decades=1.5)
    assert w.size == 9 and np.all(np.diff(w) > 0)
    assert w[4] == pytest.approx(example.latency_weight)
    assert w[0] == pytest.approx(example.latency_weight * 10**-1.5)
    stable = small_scenario(n=3, load=0.7, gamma=0.0, seed=1)
    zero = plots.default_latency_weights(stable, points=5)
    assert np.all(zero > 0) and np.all(np.isfinite(zero))


def test_frontier_sweep_matches_pointwise_solves(example):
    weights = plots.default_latency_weights(example, points=4)
    sw = plots.frontier_sweep(example, weights)
    ref = _tiny_sweep(example, weights)
    np.testing.assert_allclose(sw.accuracy, ref.accuracy, rtol=1e-6)
    np.testing.assert_allclose(sw.mean_system_time, ref.mean_system_time, rtol=1e-5)
    np.testing.assert_allclose(sw.uniform_accuracy, ref.uniform_accuracy, rtol=1e-6)
    # a larger latency weight never buys a longer mean system time
    assert np.all(np.diff(sw.mean_system_time) <= 1e-9 * sw.mean_system_time[:-1])
    # at every weight the optimum's utility is at least the best uniform budget's
    u_opt = sw.accuracy - weights * sw.mean_system_time
    u_uni = sw.uniform_accuracy - weights * sw.uniform_mean_system_time
    assert np.all(u_opt >= u_uni - 1e-9)


def test_scenario_figure_draws_both_curves(tmp_path):
    sc = small_scenario(n=3, load=0.8, gamma=0.01, seed=2)
    weights = plots.default_latency_weights(sc, points=5)
    sweep = _tiny_sweep(sc, weights)
    fig = plots.scenario_figure(sc, sweep=sweep)
    ax_front, ax_alloc = fig.axes
    lines = ax_front.get_lines()
    assert len(lines) == 3  # optimal, uniform, the scenario's star
    np.testing.assert_allclose(np.sort(lines[0].get_xdata()), np.sort(sweep.mean_system_time))
    assert len(ax_alloc.patches) == 3 * sc.n  # bounds, optimal, uniform
    out = plots.save(fig, tmp_path / "f.png")
    assert _is_png(out)


def test_validation_figures_render(tmp_path):
    rates = np.linspace(0.1, 1.0, 5)
    f1 = plots.load_figure(
        rates,
        {"optimal": rates + 1, "uniform": rates + 0.5, "minimum": rates, "maximum": [np.nan] * 5},
        saturation=1.1,
    )
    f2 = plots.convergence_figure({"gap": 0.5 ** np.arange(20)}, {"bound": 0.6 ** np.arange(20)})
    f3 = plots.rounding_figure(["1", "16"], {"loss": [1e-9, 1e-6], "gap": [2e-9, np.nan]})
    assert len(f3.axes[0].patches) == 3
    u = np.array([0.3, 0.6, 0.9])
    w = 1 / (1 - u)
    f4 = plots.pk_figure(
        {
            "a": {
                "utilization": u,
                "model": w,
                "simulated": 1.01 * w,
                "low": 0.98 * w,
                "high": 1.04 * w,
            }
        }
    )
    for i, fig in enumerate((f1, f2, f3, f4)):
        assert _is_png(plots.save(fig, tmp_path / f"v{i}.png"))


def test_save_refuses_missing_directory(tmp_path):
    fig = plots.convergence_figure({"g": [1.0, 0.1]})
    with pytest.raises(cvxalloc.ScenarioError, match="does not exist"):
        plots.save(fig, tmp_path / "nope" / "f.png")


# --- command line --------------------------------------------------------------
def test_cli_simulate_json(tmp_path, capsys, example, example_optimum):
    out = tmp_path / "sim.json"
    assert (
        main(["simulate", "--queries", "300000", "--seed", "4", "--json", "--output", str(out)])
        == 0
    )
    d = json.loads(out.read_text())
    for key in (
        "tokens",
        "queries",
        "mean_system_time",
        "mean_system_time_ci",
        "accuracy",
        "mean_system_time_model",
    ):
        assert key in d
    assert d["queries"] == 300_000
    assert d["mean_system_time_model"] == pytest.approx(example_optimum.mean_system_time, rel=1e-6)
    lo, hi = d["mean_system_time_ci"]
    assert lo < d["mean_system_time"] < hi


def test_cli_simulate_given_tokens(tmp_path, capsys, example):
    alloc = tmp_path / "alloc.json"
    alloc.write_text(json.dumps(dict(zip(example.names, map(float, example.min_tokens)))))
    assert (
        main(["simulate", "--tokens", str(alloc), "--queries", "200000", "--seed", "1", "--json"])
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert d["tokens"] == dict(zip(example.names, map(float, example.min_tokens)))
    assert d["mean_system_time_model"] == pytest.approx(
        cvxalloc.evaluate(example, example.min_tokens).mean_system_time
    )
    assert main(["simulate", "--queries", "200000", "--seed", "1"]) == 0
    assert "Pollaczek" not in capsys.readouterr().err
    assert main(["simulate", "--queries", "5"]) == 2
    assert "raise queries" in capsys.readouterr().err


def test_cli_plot(tmp_path, capsys):
    png = tmp_path / "front.png"
    assert main(["plot", "--points", "4", "--output", str(png)]) == 0
    assert _is_png(png)
    assert main(["plot", "--points", "1", "--output", str(png)]) == 2
    assert main(["plot", "--output", str(tmp_path / "no" / "x.png"), "--points", "3"]) == 2
