"""What every figure shares: the Agg backend, colours, markers, labels, legends, saving.

Layer: workflows (:mod:`cvxalloc.plots`).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .._files import write_atomic  # noqa: E402

__all__ = [
    "save",
    "legend_below",
    "COLORS",
    "MARKERS",
    "UTILITY",
    "LATENCY_WEIGHT_UNIT",
    "W_LABEL",
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


def save(fig: Figure, path: str | os.PathLike, dpi: int = 130, what: str = "--output") -> Path:
    """Write ``fig`` to ``path`` (PNG) atomically, then close it.

    Raises
    ------
    ScenarioError
        If the directory of ``path`` does not exist (named as ``what``, the option
        that gave the path).
    """
    try:
        return write_atomic(
            path,
            lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png"),
            what=what,
            suffix=".png",
        )
    finally:
        plt.close(fig)
