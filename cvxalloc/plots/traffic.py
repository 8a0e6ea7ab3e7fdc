"""The traffic figure: a request log's arrival rate per window over time.

Layer: workflows (:mod:`cvxalloc.plots`).
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import ScenarioError
from .base import save

__all__ = ["traffic_figure", "plot_traffic"]


def traffic_figure(summary) -> Figure:
    """Figure of the arrival rate per window over time (matplotlib, Agg canvas).

    ``summary`` is a :class:`~cvxalloc.traffic.TrafficSummary`.

    The x axis is the time since the first request, in minutes when the log
    spans 20 minutes or more, else in seconds; the y axis the rate in
    requests/s. A dashed line marks the overall rate ``(n - 1) / span``.
    """
    minutes = summary.duration_seconds >= 1200
    scale, unit = (60.0, "min") if minutes else (1.0, "s")
    fig = Figure(figsize=(8, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.stairs(summary.window_rates, summary.window_edges / scale, color="C0", linewidth=1.2)
    ax.axhline(
        summary.arrival_rate,
        color="C1",
        linestyle="--",
        linewidth=1,
        label=f"overall {summary.arrival_rate:.3g} requests/s (SCV of gaps "
        f"{summary.arrival_scv:.3g})",
    )
    ax.set_xlabel(f"time since the first request ({unit})")
    ax.set_ylabel("arrival rate (requests/s)")
    ax.set_title(
        f"{Path(summary.source).name}: {summary.requests:,} requests, "
        f"rate per {summary.window_seconds:g} s window",
        fontsize=10,
    )
    top = max(float(summary.window_rates.max()), summary.arrival_rate)
    ax.set_ylim(0, 1.2 * top if top > 0 else 1.0)  # room for the legend above the peaks
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_traffic(summary, path: str | os.PathLike) -> Path:
    """Write :func:`traffic_figure` to ``path`` (PNG) atomically.

    Raises
    ------
    ScenarioError
        If ``path`` does not end in ``.png`` or its directory does not exist.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ScenarioError(f"--plot {str(path)!r}: the figure is a PNG; name it *.png")
    return save(traffic_figure(summary), path, what="--plot")
