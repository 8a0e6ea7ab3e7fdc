"""The validation figures: load, convergence, rounding, Pollaczek-Khinchine against simulation.

Layer: workflows (:mod:`cvxalloc.plots`). The scripts in ``validation/`` draw these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .base import COLORS, MARKERS, UTILITY, _figure, _finish, legend_below

__all__ = [
    "load_figure",
    "convergence_figure",
    "rounding_figure",
    "pk_figure",
    "tail_validation_figure",
    "tail_frontier_figure",
]


def load_figure(
    rates: np.ndarray,
    rows: Mapping[str, Sequence[float]],
    saturation: float | None = None,
    ylabel: str = f"utility U ({UTILITY})",
    title: str = "",
    tokens: Mapping[str, Sequence[float]] | None = None,
    logx: bool = False,
) -> Figure:
    """Utility (and its loss) of each policy against the arrival rate.

    Parameters
    ----------
    rates : ndarray
        Arrival rates (queries/s).
    rows : mapping
        Policy name (``optimal``, ``uniform``, ``minimum``, ``maximum``) ->
        utility at each rate (``nan`` where unstable).
    saturation : float, optional
        The rate at which even the minimum budgets saturate (vertical line).
    tokens : mapping, optional
        Task name -> optimal tokens at each rate (a third panel).
    logx : bool, optional
        Log-scale arrival-rate axis.

    Notes
    -----
    The optimum is drawn last, above the fixed policies it coincides with near
    saturation; every series has its own marker.
    """
    ncols = 3 if tokens else 2
    fig, axes = _figure(ncols, 6.2 * ncols, 5.4)
    ax1, ax2 = axes[0], axes[1]
    opt = np.asarray(rows["optimal"], dtype=float)
    for j, (name, vals) in enumerate(rows.items()):
        vals = np.asarray(vals, dtype=float)
        is_opt = name == "optimal"
        style = dict(marker=MARKERS[j % len(MARKERS)], ms=4 if is_opt else 3.5, mfc="none")
        ax1.plot(
            rates,
            vals,
            "-" if is_opt else "--",
            color=COLORS.get(name),
            zorder=3 if is_opt else 2,
            label=name,
            **style,
        )
        if not is_opt:
            loss = opt - vals
            ax2.plot(
                rates,
                np.where(loss > 0, loss, np.nan),
                "--",
                color=COLORS.get(name),
                label=f"optimal - {name}",
                **style,
            )
    if tokens:
        for j, (name, vals) in enumerate(tokens.items()):
            axes[2].plot(
                rates,
                vals,
                "-",
                marker=MARKERS[j % len(MARKERS)],
                markevery=max(len(rates) // 8, 1),
                ms=4,
                mfc="none",
                label=name,
            )
        axes[2].set_ylabel("optimal budget (tokens per query)")
        axes[2].set_title("Optimal allocation per type")
    for ax in axes:
        if saturation is not None:
            ax.axvline(
                saturation,
                color="black",
                lw=0.8,
                ls=":",
                label=f"minimum budgets saturate ({saturation:.3g} queries/s)",
            )
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel("arrival rate lam (queries/s" + (", log scale)" if logx else ")"))
        ax.grid(True, alpha=0.3)
        legend_below(ax)
    ax1.set_ylabel(ylabel)
    ax1.set_title(title or "Utility against load")
    ax2.set_ylabel(f"utility lost against the optimum ({UTILITY})")
    ax2.set_yscale("log")
    ax2.set_title("Loss of each fixed policy (log scale)")
    return fig


def convergence_figure(
    curves: Mapping[str, Sequence[float]],
    bounds: Mapping[str, Sequence[float]] | None = None,
    title: str = "Convergence (certified gap)",
    ax=None,
    logx: bool = False,
) -> Figure:
    """Certified gap against iteration on a log scale, with predicted bounds.

    Parameters
    ----------
    curves : mapping
        Label -> certified gap per iteration (utility per query).
    bounds : mapping, optional
        Label -> a predicted bound per iteration, drawn dashed in the colour
        of the curve with the same position (the j-th bound goes with the
        j-th curve).
    ax : matplotlib Axes, optional
        Draw into this axes (one panel of a larger figure).
    logx : bool, optional
        Log-scale iteration axis (for runs of very different lengths).

    Notes
    -----
    Each curve has its own hollow marker (a few per curve), so curves that
    run together, or runs of one or two points at the same place, stay
    visible; the legend sits below the panel.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 5.4), layout="constrained")
    else:
        fig = ax.figure
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, (label, gap) in enumerate(curves.items()):
        g = np.asarray(gap, dtype=float)
        g = np.where(g > 0, g, np.nan)
        x = np.arange(g.size) + (1 if logx else 0)
        ax.semilogy(
            x,
            g,
            ls="-" if g.size > 2 else "none",
            marker=MARKERS[j % len(MARKERS)],
            markevery=_mark_every(g.size, logx),
            ms=max(9 - j, 4) if g.size <= 2 else 4,
            mfc="none",
            color=colors[j % len(colors)],
            label=label + (f" ({g.size - 1} iterations)" if g.size <= 2 else ""),
        )
    for j, (label, bound) in enumerate((bounds or {}).items()):
        b = np.asarray(bound, dtype=float)
        ax.semilogy(
            np.arange(b.size) + (1 if logx else 0),
            b,
            "--",
            color=colors[j % len(colors)],
            lw=1,
            label=label,
        )
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("iteration" + (" + 1 (log scale)" if logx else ""))
    ax.set_ylabel(f"certified gap U* - U(t) <= gap ({UTILITY})")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    legend_below(ax, fontsize=7)
    _finish(fig)
    return fig


def _mark_every(size: int, logx: bool):
    """About eight markers along a curve (evenly spaced on the axis's scale)."""
    if size <= 8:
        return None
    if logx:
        idx = np.unique(np.geomspace(1, size, 8).astype(int) - 1)
        return [int(i) for i in idx]
    return max(size // 8, 1)


def rounding_figure(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    title: str = "Loss of integer budgets",
    ylabel: str = f"utility below the continuous optimum ({UTILITY})",
    xlabel: str = "integer grid (step in tokens, or a menu of budgets)",
) -> Figure:
    """Markers per case (e.g. per grid step) and series, on a log scale.

    A log axis has no zero, so bars would start from an arbitrary floor and
    their lengths would mean nothing: each value is a marker at its height.
    ``nan`` and non-positive values cannot be drawn; the legend says how many
    of a series are left out.

    Parameters
    ----------
    labels : sequence of str
        One per case.
    series : mapping
        Label -> one value per case (e.g. loss of nearest rounding, of
        rounding with local search, of the exact integer optimum, and the
        certified gap).
    """
    fig, ax = plt.subplots(figsize=(max(7.5, 1.1 * len(labels) + 3), 5.2), layout="constrained")
    x = np.arange(len(labels))
    k = max(len(series), 1)
    width = 0.6 / k
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, (name, vals) in enumerate(series.items()):
        v = np.asarray(vals, dtype=float)
        ok = np.isfinite(v) & (v > 0)
        missing = int(np.sum(~ok))
        ax.plot(
            x[ok] - 0.3 + width * (j + 0.5),
            v[ok],
            ls="none",
            marker=MARKERS[j % len(MARKERS)],
            ms=7,
            color=colors[j % len(colors)],
            label=name + (f" ({missing} of {v.size} not drawn: none or 0)" if missing else ""),
        )
    for edge in x[:-1] + 0.5:
        ax.axvline(edge, color="#cccccc", lw=0.6)
    ax.set_yscale("log")
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    legend_below(ax)
    return fig


def pk_figure(
    series: Mapping[str, Mapping[str, Sequence[float]]], confidence: float = 0.99
) -> Figure:
    """Pollaczek-Khinchine against simulation across utilizations.

    Parameters
    ----------
    series : mapping
        Label -> mapping with arrays ``utilization``, ``model`` (PK ``W``, s),
        ``simulated`` (mean system time, s) and its interval ``low``, ``high``.

    Left: both mean system times (model as a line, simulation with its
    interval). Right: the relative difference ``simulated / model - 1`` with
    the interval.
    """
    fig, (ax1, ax2) = _figure(2, 12.5, 5.6)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    level = f"{100 * confidence:g}%"
    for j, (label, d) in enumerate(series.items()):
        col = colors[j % len(colors)]
        u = np.asarray(d["utilization"], dtype=float)
        model = np.asarray(d["model"], dtype=float)
        sim = np.asarray(d["simulated"], dtype=float)
        low, high = np.asarray(d["low"], dtype=float), np.asarray(d["high"], dtype=float)
        marker = MARKERS[j % len(MARKERS)]
        ax1.semilogy(u, model, "-", color=col, lw=1, label=f"{label}: PK")
        ax1.errorbar(
            u,
            sim,
            yerr=[sim - low, high - sim],
            fmt=marker,
            ms=4,
            mfc="none",
            color=col,
            capsize=3,
            label=f"{label}: simulated ({level} CI)",
        )
        ax2.errorbar(
            u + 0.01 * (j - (len(series) - 1) / 2),  # side by side, not on top of each other
            100 * (sim / model - 1),
            yerr=[100 * (sim - low) / model, 100 * (high - sim) / model],
            fmt=marker,
            ms=4,
            mfc="none",
            color=col,
            capsize=3,
            label=label,
        )
    ax1.set_xlabel("utilization rho (fraction of time busy)")
    ax1.set_ylabel("mean system time W (s, log scale)")
    ax1.set_title("Mean system time: Pollaczek-Khinchine and simulation")
    ax1.grid(True, which="both", alpha=0.3)
    legend_below(ax1, fontsize=7)
    ax2.axhline(0, color=COLORS["model"], lw=1)
    ax2.set_xlabel("utilization rho (fraction of time busy)")
    ax2.set_ylabel("simulated / PK - 1 (%)")
    ax2.set_title(f"Relative difference with {level} interval")
    ax2.grid(True, alpha=0.3)
    legend_below(ax2, fontsize=7)
    return fig


def tail_validation_figure(points: Sequence[Mapping], approx: Sequence[Mapping]) -> Figure:
    """Predicted against simulated percentiles of the system time.

    Parameters
    ----------
    points : sequence of mapping
        The exact method's comparisons: ``utilization``, ``level`` (``"p99"``...),
        ``predicted``, ``simulated``, ``low``, ``high``, ``scv``, ``mix``.
    approx : sequence of mapping
        The approximations': ``model``, ``utilization``, ``level``, ``error``
        (predicted over simulated, minus 1).

    Left: ``simulated / predicted - 1`` of the exact method's p99 with the
    simulated interval, by utilization, one series per service scv. Right: the
    approximations' relative errors by utilization.
    """
    fig, (ax1, ax2) = _figure(2, 12.5, 5.6)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    p99 = [d for d in points if d["level"] == "p99"]
    for j, scv in enumerate(sorted({d["scv"] for d in p99})):
        sel = [d for d in p99 if d["scv"] == scv]
        u = np.array([d["utilization"] for d in sel]) + 0.006 * (j - 1.5)
        pred = np.array([d["predicted"] for d in sel])
        sim = np.array([d["simulated"] for d in sel])
        lo, hi = np.array([d["low"] for d in sel]), np.array([d["high"] for d in sel])
        ax1.errorbar(
            u,
            100 * (sim / pred - 1),
            yerr=[100 * (sim - lo) / pred, 100 * (hi - sim) / pred],
            fmt=MARKERS[j % len(MARKERS)],
            ms=4,
            mfc="none",
            color=colors[j % len(colors)],
            capsize=2,
            label=f"service scv {scv:g}",
        )
    ax1.axhline(0, color="black", lw=0.8)
    ax1.set_xlabel("utilization")
    ax1.set_ylabel("simulated p99 / predicted - 1, % (99% interval)")
    ax1.set_title("One FIFO server, Poisson: exact p99 against simulation")
    ax1.grid(alpha=0.3)
    legend_below(ax1)
    models = list(dict.fromkeys(d["model"] for d in approx))
    for j, model in enumerate(models):
        for k, level in enumerate(("p50", "p99")):
            sel = [d for d in approx if d["model"] == model and d["level"] == level]
            if not sel:
                continue
            ax2.plot(
                [d["utilization"] for d in sel],
                [100 * d["error"] for d in sel],
                ("o-", "s--")[k],
                color=colors[j % len(colors)],
                ms=4,
                label=f"{model.replace(' (example_batching.toml)', '')}: {level}",
            )
    ax2.axhspan(-15, 15, color="0.9", zorder=0, label="within 15%")
    ax2.axhline(0, color="black", lw=0.8)
    ax2.set_xlabel("utilization")
    ax2.set_ylabel("predicted / simulated - 1, %")
    ax2.set_title("Approximations against simulation")
    ax2.grid(alpha=0.3)
    legend_below(ax2)
    return fig


def tail_frontier_figure(weight_sweep, tail_sweep) -> Figure:
    """Accuracy against the mean system time and against p99 (two panels).

    ``weight_sweep`` is a latency-weight sweep that recorded the p99
    (:func:`cvxalloc.sweep.sweep_latency_weight` with ``quantile=0.99``);
    ``tail_sweep`` a tail-SLO sweep (:func:`cvxalloc.sweep.sweep_tail`). Left:
    the mean-W frontier. Right: accuracy against p99 along both: the p99 of the
    mean-optimal allocations, and under each tail SLO the exact p99 and the
    surrogate's bound.
    """
    fig, (ax1, ax2) = _figure(2, 12.5, 5.6)
    w = np.asarray(weight_sweep.mean_system_time)
    a = np.asarray(weight_sweep.accuracy)
    o = np.argsort(w)
    ax1.plot(w[o], a[o], "o-", color=COLORS["optimal"], ms=3.5, label="latency-weight sweep")
    wt, at = np.asarray(tail_sweep.mean_system_time), np.asarray(tail_sweep.accuracy)
    ok = np.isfinite(at)
    o = np.argsort(wt[ok])
    ax1.plot(wt[ok][o], at[ok][o], "^:", color=COLORS["maximum"], ms=3.5, label="tail-SLO sweep")
    ax1.set_xlabel("mean system time W, s")
    ax1.set_ylabel("weighted accuracy")
    ax1.set_title("Accuracy against the mean")
    ax1.grid(alpha=0.3)
    legend_below(ax1)
    q = np.asarray(weight_sweep.system_time_quantile)
    o = np.argsort(q)
    ax2.plot(
        q[o],
        a[o],
        "o-",
        color=COLORS["optimal"],
        ms=3.5,
        label="latency-weight sweep: p99 of its optima",
    )
    qt, bt = np.asarray(tail_sweep.system_time_quantile)[ok], np.asarray(tail_sweep.tail_bound)[ok]
    o = np.argsort(qt)
    ax2.plot(
        qt[o], at[ok][o], "^-", color=COLORS["maximum"], ms=3.5, label="tail-SLO sweep: exact p99"
    )
    ax2.plot(
        bt[o],
        at[ok][o],
        "v:",
        color=COLORS["uniform"],
        ms=3,
        label="tail-SLO sweep: surrogate bound (= SLO where it binds)",
    )
    ax2.set_xlabel("p99 of the system time, s")
    ax2.set_ylabel("weighted accuracy")
    ax2.set_title("Accuracy against p99")
    ax2.grid(alpha=0.3)
    legend_below(ax2)
    return fig
