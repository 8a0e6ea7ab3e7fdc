"""Figures and the ``simulate`` / ``plot`` commands."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import small_scenario
from matplotlib.backends.backend_agg import FigureCanvasAgg

import cvxalloc
from cvxalloc import plots
from cvxalloc.baselines import best_uniform
from cvxalloc.cli import main


def _tiny_sweep(sc, weights):
    """The sweep, point by point (independent of cvxalloc.sweep)."""
    rows = []
    for g in weights:
        s = sc.with_(latency_weight=float(g))
        r, u = cvxalloc.solve(s), best_uniform(s)
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


def _line(ax, label):
    """The one line of ``ax`` with this legend label."""
    found = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(found) == 1, [ln.get_label() for ln in ax.get_lines()]
    return found[0]


def _bars(ax, label):
    """Heights and bottoms of the bar series with this label."""
    found = [c for c in ax.containers if c.get_label() == label]
    assert len(found) == 1, [c.get_label() for c in ax.containers]
    return (
        np.array([p.get_height() for p in found[0]]),
        np.array([p.get_y() for p in found[0]]),
    )


def _legend(ax) -> list[str]:
    """The legend's entries, after checking it is readable.

    Readable: it lies outside the axes (so it hides no data) and no two of its
    entries overlap.
    """
    leg = ax.get_legend()
    assert leg is not None, f"no legend on {ax.get_title()!r}"
    canvas = FigureCanvasAgg(ax.figure)  # also for a figure already saved and closed
    canvas.draw()
    renderer = canvas.get_renderer()
    assert not leg.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    boxes = [t.get_window_extent(renderer) for t in leg.get_texts()]
    for i, bi in enumerate(boxes):
        for bj in boxes[i + 1 :]:
            assert not bi.overlaps(bj), "legend entries drawn on top of each other"
    return [t.get_text() for t in leg.get_texts()]


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


def test_scenario_figure_shows_the_sweep_and_the_allocation(tmp_path):
    sc = small_scenario(n=3, load=0.8, gamma=0.01, seed=2)
    weights = plots.default_latency_weights(sc, points=5)
    sweep = _tiny_sweep(sc, weights)
    res = cvxalloc.solve(sc)
    fig = plots.scenario_figure(sc, result=res, sweep=sweep)
    ax_front, ax_alloc = fig.axes

    order = np.argsort(sweep.mean_system_time)
    opt = _line(ax_front, "optimal per-type budgets")
    np.testing.assert_array_equal(opt.get_xdata(), sweep.mean_system_time[order])
    np.testing.assert_array_equal(opt.get_ydata(), sweep.accuracy[order])
    uo = np.argsort(sweep.uniform_mean_system_time)
    uni = _line(ax_front, "best uniform budget")
    np.testing.assert_array_equal(uni.get_xdata(), sweep.uniform_mean_system_time[uo])
    np.testing.assert_array_equal(uni.get_ydata(), sweep.uniform_accuracy[uo])
    star = _line(ax_front, "this scenario's optimum")
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (res.mean_system_time, res.accuracy)
    assert ax_front.get_xlabel().startswith("mean system time W (s)")
    assert "(utility per query)" in ax_front.get_ylabel()
    assert ax_front.get_title().endswith(f"{weights.max():.2g} utility/s")
    assert _legend(ax_front) == [
        "optimal per-type budgets",
        "best uniform budget",
        "this scenario's optimum",
    ]

    height, bottom = _bars(ax_alloc, "optimal")
    np.testing.assert_array_equal(height, res.tokens)
    np.testing.assert_array_equal(bottom, 0.0)
    height, bottom = _bars(ax_alloc, "bounds [min_tokens, max_tokens]")
    np.testing.assert_array_equal(bottom, sc.min_tokens)
    np.testing.assert_allclose(bottom + height, sc.max_tokens, rtol=1e-15)
    height, _ = _bars(ax_alloc, "best uniform")
    np.testing.assert_array_equal(height, best_uniform(sc).tokens)
    assert "(tokens per query)" in ax_alloc.get_ylabel()
    assert [t.get_text().split("\n")[0] for t in ax_alloc.get_xticklabels()] == list(sc.names)
    assert set(_legend(ax_alloc)) == {"bounds [min_tokens, max_tokens]", "optimal", "best uniform"}
    assert _is_png(plots.save(fig, tmp_path / "f.png"))


@pytest.mark.parametrize(("slo", "binds"), [(30.0, True), (10_000.0, False)])
def test_an_slo_is_drawn_and_says_whether_it_binds(example, slo, binds):
    from cvxalloc import Constraints

    sc = example.with_(constraints=Constraints(max_mean_system_time=slo))
    res = cvxalloc.solve(sc)
    weights = plots.default_latency_weights(sc, points=3, decades=1.0)
    fig = plots.scenario_figure(sc, result=res, sweep=plots.frontier_sweep(sc, weights))
    ax = fig.axes[0]
    state = "binds" if binds else "not binding"
    line = _line(ax, f"SLO: W <= {slo:g} s ({state})")
    np.testing.assert_array_equal(line.get_xdata(), [slo, slo])
    entries = _legend(ax)
    assert f"SLO: W <= {slo:g} s ({state})" in entries
    circled = [e for e in entries if e.startswith("SLO binds")]
    if binds:
        # the points stacked at W = SLO are counted, not hidden under each other
        (label,) = circled
        k = len(_line(ax, label).get_xdata())
        assert label == f"SLO binds: W = SLO ({k} of 3 points)"
        np.testing.assert_allclose(_line(ax, label).get_xdata(), slo, rtol=1e-6)
        assert res.mean_system_time == pytest.approx(slo, rel=1e-6)
    else:
        assert circled == [] and res.mean_system_time < slo


def test_load_figure_draws_each_policy_and_its_loss():
    rates = np.linspace(0.1, 1.0, 5)
    rows = {
        "optimal": rates + 1,
        "uniform": rates + 0.5,
        "minimum": np.full(5, 1.2),
        "maximum": [1.5, 1.0, np.nan, np.nan, np.nan],
    }
    tokens = {"chat": 100 / rates, "code": 50 + 0 * rates}
    fig = plots.load_figure(rates, rows, saturation=1.1, tokens=tokens)
    ax1, ax2, ax3 = fig.axes
    for name, vals in rows.items():
        np.testing.assert_array_equal(_line(ax1, name).get_ydata(), vals)
        np.testing.assert_array_equal(_line(ax1, name).get_xdata(), rates)
    for name in ("uniform", "minimum", "maximum"):
        loss = rows["optimal"] - np.asarray(rows[name])
        want = np.where(loss > 0, loss, np.nan)  # a log axis: only positive losses
        np.testing.assert_array_equal(_line(ax2, f"optimal - {name}").get_ydata(), want)
    for name, vals in tokens.items():
        np.testing.assert_array_equal(_line(ax3, name).get_ydata(), vals)
    sat = "minimum budgets saturate (1.1 queries/s)"
    for ax in fig.axes:
        np.testing.assert_array_equal(_line(ax, sat).get_xdata(), [1.1, 1.1])
        assert ax.get_xlabel() == "arrival rate lam (queries/s)"
        assert sat in _legend(ax)
    assert ax1.get_ylabel() == "utility U (utility per query)"
    assert "(utility per query)" in ax2.get_ylabel() and ax2.get_yscale() == "log"
    assert ax3.get_ylabel() == "optimal budget (tokens per query)"
    # the optimum is drawn above the policies it meets near saturation
    assert _line(ax1, "optimal").get_zorder() > max(
        _line(ax1, n).get_zorder() for n in ("uniform", "minimum", "maximum")
    )
    assert len({_line(ax1, n).get_marker() for n in rows}) == len(rows)


def test_convergence_figure_draws_gaps_and_their_bounds():
    gap = 0.5 ** np.arange(20)
    bound = 0.6 ** np.arange(20)
    fig = plots.convergence_figure(
        {"gap": gap, "done at once": [1e-3, 0.0]}, {"bound": bound}, title="t"
    )
    (ax,) = fig.axes
    line = _line(ax, "gap")
    np.testing.assert_array_equal(line.get_xdata(), np.arange(20))
    np.testing.assert_array_equal(line.get_ydata(), gap)
    short = _line(ax, "done at once (1 iterations)")
    np.testing.assert_array_equal(short.get_ydata(), [1e-3, np.nan])  # no zero on a log axis
    assert short.get_marker() not in ("None", "") and short.get_linestyle() == "None"
    b = _line(ax, "bound")
    np.testing.assert_array_equal(b.get_ydata(), bound)
    assert b.get_linestyle() == "--" and b.get_color() == line.get_color()
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "iteration"
    assert "(utility per query)" in ax.get_ylabel()
    assert _legend(ax) == ["gap", "done at once (1 iterations)", "bound"]


def test_rounding_figure_draws_markers_not_bars_on_its_log_axis():
    fig = plots.rounding_figure(
        ["step 1", "step 16"], {"loss": [1e-9, 1e-6], "gap": [2e-9, np.nan]}
    )
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    assert not ax.patches  # a bar on a log axis starts from an arbitrary floor
    loss = _line(ax, "loss")
    np.testing.assert_array_equal(loss.get_ydata(), [1e-9, 1e-6])
    assert loss.get_linestyle() == "None" and loss.get_marker() not in ("None", "")
    gap = _line(ax, "gap (1 of 2 not drawn: none or 0)")
    np.testing.assert_array_equal(gap.get_ydata(), [2e-9])
    # each marker stays within its case's column
    assert np.all(np.abs(loss.get_xdata() - np.arange(2)) < 0.5)
    assert "tokens" in ax.get_xlabel() and "(utility per query)" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["step 1", "step 16"]
    assert _legend(ax) == ["loss", "gap (1 of 2 not drawn: none or 0)"]


def test_pk_figure_draws_model_and_simulation():
    u = np.array([0.3, 0.6, 0.9])
    w = 1 / (1 - u)
    d = {"utilization": u, "model": w, "simulated": 1.01 * w, "low": 0.98 * w, "high": 1.04 * w}
    fig = plots.pk_figure({"a": d, "b": {**d, "simulated": 0.99 * w}})
    ax1, ax2 = fig.axes
    np.testing.assert_array_equal(_line(ax1, "a: PK").get_ydata(), w)
    sims = {c.get_label(): c for c in ax1.containers}
    np.testing.assert_array_equal(sims["a: simulated (99% CI)"].lines[0].get_ydata(), 1.01 * w)
    rel = {c.get_label(): c.lines[0] for c in ax2.containers}
    np.testing.assert_allclose(rel["a"].get_ydata(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(rel["b"].get_ydata(), -1.0, rtol=1e-12)
    # the two series sit side by side at each utilization, not on top of each other
    assert np.all(rel["a"].get_xdata() < rel["b"].get_xdata())
    assert ax1.get_ylabel().startswith("mean system time W (s")
    assert ax2.get_ylabel() == "simulated / PK - 1 (%)"
    assert ax1.get_xlabel().startswith("utilization rho")
    assert _legend(ax1) == ["a: PK", "b: PK", "a: simulated (99% CI)", "b: simulated (99% CI)"]
    assert _legend(ax2) == ["a", "b"]


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
    # the model lies inside the simulated interval (seed fixed), which is narrow
    lo, hi = d["mean_system_time_ci"]
    assert lo <= d["mean_system_time_model"] <= hi and d["model_within_ci"] is True
    assert hi - lo < 0.1 * d["mean_system_time_model"]
    alo, ahi = d["accuracy_ci"]
    assert alo <= d["accuracy_model"] <= ahi


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


def test_cli_plot(tmp_path, capsys, monkeypatch, example):
    drawn = []
    real_save = plots.save

    def keep(fig, path):
        drawn.append(fig)
        return real_save(fig, path)

    monkeypatch.setattr(plots, "save", keep)
    png = tmp_path / "front.png"
    assert main(["plot", "--points", "4", "--output", str(png)]) == 0
    assert _is_png(png)
    (fig,) = drawn
    ax_front, ax_alloc = fig.axes
    assert len(_line(ax_front, "optimal per-type budgets").get_xdata()) == 4
    res = cvxalloc.solve(example)
    star = _line(ax_front, "this scenario's optimum")
    assert star.get_xdata()[0] == pytest.approx(res.mean_system_time, rel=1e-9)
    np.testing.assert_allclose(_bars(ax_alloc, "optimal")[0], res.tokens, rtol=1e-9)
    assert main(["plot", "--points", "1", "--output", str(png)]) == 2
    assert main(["plot", "--output", str(tmp_path / "no" / "x.png"), "--points", "3"]) == 2


def test_cli_sweep_plot_marks_where_the_slo_binds(tmp_path, capsys, monkeypatch):
    from importlib import resources

    from cvxalloc.io import EXAMPLE_PATH

    drawn = []
    real_save = plots.save
    monkeypatch.setattr(
        plots, "save", lambda fig, path, **kw: drawn.append(fig) or real_save(fig, path, **kw)
    )
    scenario = tmp_path / "example.toml"
    scenario.write_text(resources.files("cvxalloc").joinpath(EXAMPLE_PATH).read_text("utf-8"))
    png = tmp_path / "slo.png"
    assert main(["sweep", str(scenario), "--slo", "20:80:3", "--plot", str(png), "--json"]) == 0
    sw = json.loads(capsys.readouterr().out)
    (fig,) = drawn
    (ax,) = fig.axes
    w = np.array(sw["mean_system_time"])
    binds = w >= np.array(sw["slo"]) * (1 - 1e-6)
    assert 0 < binds.sum() < 3  # the example's own optimum (W = 50 s) meets the 80 s SLO
    label = f"SLO binds: W = SLO ({binds.sum()} of 3 points)"
    np.testing.assert_array_equal(_line(ax, label).get_xdata(), w[binds])
    assert ax.get_title().endswith("20 to 80 s")
    assert label in _legend(ax)


@pytest.mark.parametrize("command", ["plot", "sweep"])
def test_progress_on_a_terminal_only_and_never_with_no_progress(
    tmp_path, capsys, monkeypatch, command
):
    from importlib import resources

    from cvxalloc.io import EXAMPLE_PATH

    scenario = tmp_path / "example.toml"
    scenario.write_text(resources.files("cvxalloc").joinpath(EXAMPLE_PATH).read_text("utf-8"))
    png = str(tmp_path / "f.png")
    if command == "plot":
        argv = ["plot", str(scenario), "--points", "3", "--output", png]
    else:
        argv = ["sweep", str(scenario), "--latency-weight", "0.0001:0.01:3", "--log"]
    assert main(argv) == 0  # stderr is not a terminal under capsys: no bar
    assert "point" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "sweep latency_weight" in err and "/3 " in err  # tqdm's bar over the 3 points
    assert main([*argv, "--no-progress"]) == 0
    assert "sweep latency_weight" not in capsys.readouterr().err
