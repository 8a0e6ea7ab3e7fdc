"""Figures: the one home of every figure cvxalloc draws.

Layer: workflows. Every function returns a :class:`matplotlib.figure.Figure`
(Agg backend, no display needed) and takes plain numbers or cvxalloc objects;
:func:`save` writes one to a PNG atomically. The command line (``cvxalloc
plot``, ``sweep --plot``, ``traffic --plot``, ``control --plot``) and the
scripts in ``validation/`` use these; no other module draws.

* :mod:`cvxalloc.plots.base`: colours, markers, axis labels, legends, :func:`save`
  (importing it selects the Agg backend; it is imported first);
* :mod:`cvxalloc.plots.frontier`: the accuracy-latency frontier, the allocation,
  :func:`scenario_figure` and :func:`sweep_figure`;
* :mod:`cvxalloc.plots.traffic`: :func:`traffic_figure`, a log's rate over time;
* :mod:`cvxalloc.plots.control`: :func:`control_figure`, a controller replay, and
  :func:`control_comparison_figure`, several side by side;
* :mod:`cvxalloc.plots.fleet`: :func:`plan_figure`, a fleet plan against the replicas;
* :mod:`cvxalloc.plots.validation`: the figures of ``validation/``.

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

from .base import (
    COLORS,
    LATENCY_WEIGHT_UNIT,
    MARKERS,
    UTILITY,
    W_LABEL,
    legend_below,
    save,
)
from .control import control_comparison_figure, control_figure
from .fleet import plan_figure
from .frontier import (
    allocation_axes,
    default_latency_weights,
    frontier_axes,
    frontier_sweep,
    scenario_figure,
    sweep_figure,
    tail_frontier_axes,
)
from .traffic import plot_traffic, traffic_figure
from .validation import (
    convergence_figure,
    load_figure,
    pk_figure,
    rounding_figure,
    tail_frontier_figure,
    tail_validation_figure,
)

__all__ = [
    "save",
    "legend_below",
    "default_latency_weights",
    "frontier_sweep",
    "frontier_axes",
    "tail_frontier_axes",
    "allocation_axes",
    "scenario_figure",
    "sweep_figure",
    "traffic_figure",
    "plot_traffic",
    "control_figure",
    "control_comparison_figure",
    "plan_figure",
    "load_figure",
    "convergence_figure",
    "rounding_figure",
    "pk_figure",
    "tail_validation_figure",
    "tail_frontier_figure",
    "COLORS",
    "MARKERS",
    "UTILITY",
    "LATENCY_WEIGHT_UNIT",
    "W_LABEL",
]
