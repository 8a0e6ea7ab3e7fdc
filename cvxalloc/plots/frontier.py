"""The user's figures: the accuracy-latency frontier, the allocation, a sweep.

Layer: workflows (:mod:`cvxalloc.plots`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from ..baselines import best_uniform
from ..objective import evaluate
from ..solve import solve
from ..sweep import sweep_latency_weight
from .base import COLORS, LATENCY_WEIGHT_UNIT, UTILITY, W_LABEL, _figure, legend_below

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = [
    "default_latency_weights",
    "frontier_sweep",
    "frontier_axes",
    "tail_frontier_axes",
    "allocation_axes",
    "scenario_figure",
    "sweep_figure",
]


def default_latency_weights(
    scenario: Scenario, points: int = 25, decades: float = 2.0
) -> np.ndarray:
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
    scenario: Scenario,
    weights: np.ndarray | None = None,
    method: str | None = None,
    progress: bool | None = None,
):
    """Sweep the latency weight with the best uniform budget beside each point.

    :func:`cvxalloc.sweep.sweep_latency_weight` with ``uniform=True`` over
    ``weights`` (default :func:`default_latency_weights`); ``progress`` as there
    (a bar on stderr, by default when it is a terminal).
    """
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


def tail_frontier_axes(ax, sweep, title: str = "Accuracy against the tail", legend=True) -> None:
    """Draw weighted accuracy against a percentile of the system time, beside the mean.

    ``sweep`` is a :class:`~cvxalloc.sweep.SweepResult` that recorded
    ``system_time_quantile`` (a tail sweep, or any sweep given ``quantile``):
    the exact percentile of each optimum, its mean system time, and for a tail
    sweep the surrogate's bound (the figure the constraint holds).
    """
    p = 100 * float(sweep.quantile)
    ok = np.isfinite(np.asarray(sweep.accuracy, dtype=float))
    a = np.asarray(sweep.accuracy, dtype=float)[ok]
    q = np.asarray(sweep.system_time_quantile, dtype=float)[ok]
    w = np.asarray(sweep.mean_system_time, dtype=float)[ok]
    o = np.argsort(q)
    ax.plot(
        q[o],
        a[o],
        "o-",
        color=COLORS["optimal"],
        ms=3.5,
        zorder=3,
        label=f"p{p:g} of the system time (exact)",
    )
    bound = getattr(sweep, "tail_bound", None)
    if bound is not None:
        b = np.asarray(bound, dtype=float)[ok]
        ax.plot(
            b[o],
            a[o],
            "^:",
            color=COLORS["maximum"],
            ms=3,
            label=f"surrogate bound on p{p:g} (held <= SLO)",
        )
    o = np.argsort(w)
    ax.plot(w[o], a[o], "s--", color=COLORS["uniform"], ms=3, label="mean system time W")
    ax.set_xlabel("system time, s")
    ax.set_ylabel("weighted accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend:
        legend_below(ax)


def allocation_axes(
    ax,
    scenario: Scenario,
    tokens: np.ndarray,
    uniform: np.ndarray | None = None,
    max_types: int = 40,
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


def _slo_of(scenario: Scenario, result) -> tuple[float | None, bool | None]:
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
    scenario: Scenario,
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


def sweep_figure(sweep, scenario: Scenario = None) -> Figure:
    """The frontier of a sweep's solved points (``cvxalloc sweep --plot``).

    Parameters
    ----------
    sweep : SweepResult
        Over the latency weight or the SLO (:mod:`cvxalloc.sweep`).
    scenario : Scenario, optional
        The swept scenario: an SLO of its own holds at every point of a
        latency-weight sweep and is drawn.
    """
    fig, ax = _figure(1, 6.4, 5.4)
    ok = sweep.solved
    if getattr(sweep, "system_time_quantile", None) is not None:  # the tail frontier
        what = {"tail": "tail SLO", "slo": "SLO on mean system time"}.get(
            sweep.parameter, "latency weight"
        )
        tail_frontier_axes(
            ax,
            sweep,
            title=f"Accuracy against p{100 * sweep.quantile:g}, over the {what}: "
            f"{sweep.values[ok].min():.3g} to {sweep.values[ok].max():.3g}",
        )
        return fig
    if sweep.parameter == "slo":
        what, unit, slo = "SLO on mean system time", "s", None
    else:
        # an SLO of the scenario holds at every point of a latency-weight sweep
        cons = getattr(scenario, "constraints", None)
        what, unit = "latency weight", LATENCY_WEIGHT_UNIT
        slo = None if cons is None else cons.max_mean_system_time
    frontier_axes(
        ax,
        _Solved(sweep, ok),
        title=f"Frontier over the {what}: {sweep.values[ok].min():.3g} to "
        f"{sweep.values[ok].max():.3g} {unit}",
        slo=slo,
    )
    return fig


class _Solved:
    """The solved points of a sweep (what the frontier figure reads)."""

    def __init__(self, sw, mask: np.ndarray) -> None:
        for key in (
            "mean_system_time",
            "accuracy",
            "latency_weight",
            "slo",
            "uniform_mean_system_time",
            "uniform_accuracy",
        ):
            val = getattr(sw, key)
            setattr(self, key, None if val is None else np.asarray(val)[mask])
