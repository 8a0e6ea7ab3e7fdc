"""Figures: the accuracy-latency frontier, the allocation, and the validation plots.

Every function returns a :class:`matplotlib.figure.Figure` (Agg backend, no
display needed) and takes plain numbers or cvxalloc objects; :func:`save`
writes one to a PNG atomically. The command line (``cvxalloc plot``) and the
scripts in ``validation/`` use these.

Conventions: every axis label names its unit (utility is per query, the
latency weight in utility per second, budgets in tokens, times in seconds);
legends sit below their panel, outside the data, so no curve is hidden; values
on a log axis are drawn as markers, never as bars from an arbitrary floor; an
SLO on the mean system time is drawn where it applies, saying whether it binds.

Examples
--------
>>> import cvxalloc
>>> from cvxalloc.plots import scenario_figure
>>> fig = scenario_figure(cvxalloc.example_scenario(), points=5)
>>> len(fig.axes)
2
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ._files import write_atomic
from .baselines import best_uniform
from .objective import evaluate

__all__ = [
    "save",
    "legend_below",
    "default_latency_weights",
    "frontier_sweep",
    "frontier_axes",
    "allocation_axes",
    "scenario_figure",
    "load_figure",
    "convergence_figure",
    "rounding_figure",
    "pk_figure",
]

#: Colours used consistently: optimal, uniform, minimum, maximum, model.
COLORS = {
    "optimal": "#1f77b4",
    "uniform": "#ff7f0e",
    "minimum": "#2ca02c",
    "maximum": "#d62728",
    "model": "#444444",
}


#: Marker shapes cycled over series, so series that coincide stay distinguishable.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")

#: Axis labels (with units) shared by the figures.
UTILITY = "utility per query"
LATENCY_WEIGHT_UNIT = "utility/s"
W_LABEL = "mean system time W (s)"


def legend_below(ax, ncol: int | None = None, fontsize: float = 8):
    """A legend under ``ax`` (below its x label), outside the data: it hides no curve.

    Returns the legend, or None when nothing is labelled.
    """
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    if ncol is None:
        ncol = 1 if max(len(lab) for lab in labels) > 45 else min(len(labels), 2)
    return ax.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=ncol,
        fontsize=fontsize,
        frameon=False,
    )


def _figure(ncols: int, width: float, height: float):
    """A figure of ``ncols`` panels whose layout makes room for legends below them."""
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), layout="constrained")
    return fig, axes


def _finish(fig: Figure) -> None:
    """Tight layout for figures made elsewhere (constrained ones lay themselves out)."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()


def save(fig: Figure, path: str | os.PathLike, dpi: int = 130) -> Path:
    """Write ``fig`` to ``path`` (PNG) atomically, then close it.

    Raises
    ------
    ScenarioError
        If the directory of ``path`` does not exist.
    """
    try:
        return write_atomic(
            path,
            lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png"),
            suffix=".png",
        )
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------
# frontier
def default_latency_weights(scenario, points: int = 25, decades: float = 2.0) -> np.ndarray:
    """A geometric grid of latency weights around the scenario's own.

    ``gamma * 10^[-decades, decades]`` (``points`` values); where the
    scenario's weight is 0, the grid is centred on the weight at which one
    second of mean system time costs as much as the accuracy spread between
    the minimum and maximum budgets divided by the mean system time at the
    minimum budgets.
    """
    gamma = scenario.latency_weight
    if gamma <= 0:
        pw = scenario.probability * scenario.weight
        span = float(
            pw
            @ (
                scenario.accuracy.value(scenario.max_tokens)
                - scenario.accuracy.value(scenario.min_tokens)
            )
        )
        w_lo = evaluate(scenario, scenario.min_tokens).mean_system_time
        gamma = max(span, 1e-6) / max(w_lo, 1e-9)
    return gamma * np.logspace(-decades, decades, points)


def frontier_sweep(
    scenario,
    weights: np.ndarray | None = None,
    method: str | None = None,
    progress: bool | None = None,
):
    """Sweep the latency weight with the best uniform budget beside each point.

    :func:`cvxalloc.sweep.sweep_latency_weight` with ``uniform=True`` over
    ``weights`` (default :func:`default_latency_weights`); ``progress`` as there
    (a bar on stderr, by default when it is a terminal).
    """
    from .sweep import sweep_latency_weight

    if weights is None:
        weights = default_latency_weights(scenario)
    return sweep_latency_weight(
        scenario, np.asarray(weights, dtype=float), method=method, uniform=True, progress=progress
    )


def frontier_axes(
    ax,
    sweep,
    current: tuple[float, float] | None = None,
    title: str = "Accuracy-latency frontier",
    slo: float | None = None,
    slo_active: bool | None = None,
    legend: bool = True,
) -> None:
    """Draw weighted accuracy against mean system time: optimal and best uniform.

    Parameters
    ----------
    ax : matplotlib Axes
    sweep : object
        With arrays ``mean_system_time``, ``accuracy``, ``latency_weight`` and,
        when present, ``uniform_mean_system_time``, ``uniform_accuracy``; for an
        SLO sweep also ``slo`` (seconds). Points where the SLO binds
        (``W = SLO``, which may coincide) are circled and counted.
    current : (W, accuracy), optional
        The scenario's own optimum, marked with a star.
    slo : float, optional
        A mean-latency SLO (``max_mean_system_time``, seconds) that holds at
        every point: drawn as a vertical line.
    slo_active : bool, optional
        Whether it binds at the scenario's optimum (said in the legend).
    legend : bool
        Draw the legend below the axes.
    """
    w = np.asarray(sweep.mean_system_time, dtype=float)
    a = np.asarray(sweep.accuracy, dtype=float)
    order = np.argsort(w)
    ax.plot(
        w[order],
        a[order],
        "o-",
        color=COLORS["optimal"],
        ms=3.5,
        zorder=3,
        label="optimal per-type budgets",
    )
    uw = getattr(sweep, "uniform_mean_system_time", None)
    ua = getattr(sweep, "uniform_accuracy", None)
    if uw is not None and ua is not None:
        uw, ua = np.asarray(uw, dtype=float), np.asarray(ua, dtype=float)
        ok = np.isfinite(uw) & np.isfinite(ua)
        o = np.argsort(uw[ok])
        ax.plot(
            uw[ok][o], ua[ok][o], "s--", color=COLORS["uniform"], ms=3, label="best uniform budget"
        )
    limit = getattr(sweep, "slo", None)
    if limit is None:
        limit = slo
    if limit is not None:
        bind = w >= np.asarray(limit, dtype=float) * (1 - 1e-6)
        if bind.any():
            ax.plot(
                w[bind],
                a[bind],
                "o",
                mfc="none",
                mec="black",
                ms=8,
                zorder=4,
                label=f"SLO binds: W = SLO ({int(bind.sum())} of {w.size} points)",
            )
    if slo is not None:
        state = "" if slo_active is None else (" (binds)" if slo_active else " (not binding)")
        ax.axvline(
            slo, color=COLORS["maximum"], ls="-.", lw=1.2, label=f"SLO: W <= {slo:g} s{state}"
        )
    if current is not None:
        ax.plot(
            [current[0]],
            [current[1]],
            "*",
            color="black",
            ms=13,
            zorder=5,
            label="this scenario's optimum",
        )
    ax.set_xscale("log")
    ax.set_xlabel(W_LABEL + ", log scale")
    ax.set_ylabel(f"weighted accuracy sum_i p_i w_i A_i ({UTILITY})")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if legend:
        legend_below(ax)


def allocation_axes(
    ax, scenario, tokens: np.ndarray, uniform: np.ndarray | None = None, max_types: int = 40
) -> None:
    """Bars of the tokens per type, with each type's bounds as a grey range.

    Shows the ``max_types`` most frequent types when there are more.
    """
    t = np.asarray(tokens, dtype=float)
    idx = np.arange(scenario.n)
    if scenario.n > max_types:
        idx = np.sort(np.argsort(-scenario.probability)[:max_types])
    x = np.arange(idx.size)
    ax.bar(
        x,
        scenario.max_tokens[idx] - scenario.min_tokens[idx],
        bottom=scenario.min_tokens[idx],
        color="#dddddd",
        width=0.8,
        label="bounds [min_tokens, max_tokens]",
    )
    width = 0.38 if uniform is not None else 0.6
    shift = width / 2 if uniform is not None else 0.0
    ax.bar(x - shift, t[idx], width=width, color=COLORS["optimal"], label="optimal")
    if uniform is not None:
        ax.bar(
            x + shift,
            np.asarray(uniform, dtype=float)[idx],
            width=width,
            color=COLORS["uniform"],
            label="best uniform",
        )
    labels = [f"{scenario.names[i]}\np={scenario.probability[i]:.2g}" for i in idx]
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=8, rotation=0 if idx.size <= 8 else 90)
    ax.set_xlabel("task type (p: share of queries)")
    ax.set_ylabel("thinking-token budget (tokens per query)")
    title = "Per-type allocation"
    if idx.size < scenario.n:
        title += f" ({idx.size} most frequent of {scenario.n} types)"
    ax.set_title(title)
    legend_below(ax, ncol=3)
    ax.grid(True, axis="y", alpha=0.3)


def _slo_of(scenario, result) -> tuple[float | None, bool | None]:
    """The scenario's mean-latency SLO (seconds) and whether it binds at ``result``."""
    cons = getattr(scenario, "constraints", None)
    slo = getattr(cons, "max_mean_system_time", None) if cons is not None else None
    if slo is None:
        return None, None
    entry = (result.diagnostics.get("constraints") or {}).get("max_mean_system_time") or {}
    active = entry.get("active")
    if active is None:
        active = bool(result.mean_system_time >= float(slo) * (1 - 1e-6))
    return float(slo), bool(active)


def scenario_figure(
    scenario,
    result=None,
    sweep=None,
    points: int = 25,
    method: str | None = None,
    progress: bool | None = None,
) -> Figure:
    """The user's view of a scenario: frontier (left) and allocation (right).

    Parameters
    ----------
    scenario : Scenario
    result : Result, optional
        The optimum (solved with ``method`` when omitted).
    sweep : object, optional
        A latency-weight sweep (computed with ``points`` weights when omitted,
        with a progress bar as in :func:`frontier_sweep`).

    Notes
    -----
    A mean-latency SLO (``max_mean_system_time``) of the scenario is drawn on
    the frontier, and the legend says whether it binds at the optimum.
    """
    from .solve import solve

    if result is None:
        result = solve(scenario, method=method)
    if sweep is None:
        weights = default_latency_weights(scenario, points)
        sweep = frontier_sweep(scenario, weights, method=method, progress=progress)
    # the best uniform budget that meets the scenario's constraints, if it has any
    uni = best_uniform(scenario) if scenario.n <= 10_000 else None
    fig, (ax1, ax2) = _figure(2, 12.5, 5.6)
    slo, active = _slo_of(scenario, result)
    frontier_axes(
        ax1,
        sweep,
        current=(result.mean_system_time, result.accuracy),
        title=f"Frontier: latency weight {float(np.min(sweep.latency_weight)):.2g}"
        f" to {float(np.max(sweep.latency_weight)):.2g} {LATENCY_WEIGHT_UNIT}",
        slo=slo,
        slo_active=active,
    )
    allocation_axes(ax2, scenario, result.tokens, None if uni is None else uni.tokens)
    fig.suptitle(
        f"U = {result.objective:.5g} per query, accuracy {result.accuracy:.4f}, "
        f"W = {result.mean_system_time:.3g} s, utilization {result.utilization:.3f}"
        + ("" if uni is None else f"  (best uniform: U = {uni.objective:.5g})"),
        fontsize=10,
    )
    return fig


# --------------------------------------------------------------------------
# validation figures
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
