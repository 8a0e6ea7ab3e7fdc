"""The controller figures: rate, budgets and system time over a replayed log, per strategy.

Layer: workflows (:mod:`cvxalloc.plots`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["control_figure", "control_comparison_figure", "STRATEGY_COLORS"]

#: One colour per strategy of :data:`cvxalloc.controller.STRATEGIES`.
STRATEGY_COLORS = {
    "static": "0.5",
    "uniform": "tab:orange",
    "adaptive": "tab:green",
    "adaptive-mix": "tab:purple",
    "oracle": "tab:blue",
}


def _control_axes(axes: Sequence, rep, labels: Sequence[str]) -> None:
    """Rate (with the adaptive plan's), budget per query and system time of one replay in
    three stacked axes; ``labels`` are their y labels."""
    win = rep.windows
    hours = (np.asarray(win["start"]) + 0.5 * np.asarray(win["length"])) / 3600.0
    axes[0].step(hours, win["true_rate"], where="mid", color="0.3", label="true rate per window")
    if win.get("planned_rate") is not None:
        axes[0].step(
            hours,
            win["planned_rate"],
            where="mid",
            color="tab:green",
            lw=1,
            label="adaptive: planned rate (estimate + backlog / window)",
        )
    for s, series in win["mean_tokens"].items():
        color = STRATEGY_COLORS[s]
        axes[1].step(hours, series, where="mid", color=color, lw=1, label=s)
        axes[2].plot(hours, win["system_time"][s], ".-", ms=2, lw=0.7, color=color, label=s)
    for ax, label in zip(axes, labels):
        ax.set_ylabel(label)
    axes[2].set_yscale("log")
    axes[2].set_xlabel("replay time (hours)")


def control_figure(rep, title: str = "") -> Figure:
    """Rate, budgets and system time over time, per strategy (``cvxalloc control --plot``).

    ``rep`` is a :class:`~cvxalloc.controller.ControlReplay`.
    """
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    labels = ("queries/s", "budget per query (tokens)", "mean system time (s)")
    _control_axes(axes, rep, labels)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[1].legend(fontsize=7, ncol=5, loc="upper right")
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    return fig


def control_comparison_figure(reps: Mapping[str, object]) -> Figure:
    """One column per replay (e.g. per trace), titled by its name and static utilization;
    one legend below all of them."""
    fig, axes = plt.subplots(3, len(reps), figsize=(12, 8.5), sharex="col", squeeze=False)
    labels = (
        "arrival rate (queries/s)",
        "budget per query (tokens, mean over the mix)",
        "mean system time in the window (s)",
    )
    for col, (name, rep) in enumerate(reps.items()):
        _control_axes(axes[:, col], rep, labels)
        axes[0, col].set_title(
            f"{name} trace, static plan at utilization {rep.settings['target_utilization']:g}"
        )
    handles, names = axes[0, 0].get_legend_handles_labels()
    h2, n2 = axes[1, 0].get_legend_handles_labels()
    fig.legend(handles + h2, names + n2, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig
