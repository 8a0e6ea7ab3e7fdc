"""The controller figure: rate, budgets and system time over a replayed log, per strategy.

Layer: workflows (:mod:`cvxalloc.plots`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["control_figure"]


def control_figure(rep, title: str = "") -> Figure:
    """Rate, budgets and system time over time, per strategy (a matplotlib figure).

    ``rep`` is a :class:`~cvxalloc.controller.ControlReplay`.
    """
    win = rep.windows
    hours = (np.asarray(win["start"]) + 0.5 * np.asarray(win["length"])) / 3600.0
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    ax = axes[0]
    ax.step(hours, win["true_rate"], where="mid", color="0.3", label="true rate per window")
    if win.get("planned_rate") is not None:
        ax.step(
            hours,
            win["planned_rate"],
            where="mid",
            color="tab:green",
            lw=1,
            label="adaptive: planned rate (estimate + backlog / window)",
        )
    ax.set_ylabel("queries/s")
    ax.legend(fontsize=7, loc="upper right")
    colors = {
        "static": "0.5",
        "uniform": "tab:orange",
        "adaptive": "tab:green",
        "adaptive-mix": "tab:purple",
        "oracle": "tab:blue",
    }
    for s, series in win["mean_tokens"].items():
        axes[1].step(hours, series, where="mid", color=colors[s], lw=1, label=s)
        axes[2].plot(hours, win["system_time"][s], ".-", ms=2, lw=0.7, color=colors[s], label=s)
    axes[1].set_ylabel("budget per query (tokens)")
    axes[2].set_ylabel("mean system time (s)")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("replay time (hours)")
    axes[1].legend(fontsize=7, ncol=5, loc="upper right")
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    return fig
