"""The fleet plan figure: utility, mean system time and budgets against the replicas.

Layer: workflows (:mod:`cvxalloc.plots`).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .base import COLORS, MARKERS, UTILITY, W_LABEL, _figure, legend_below

__all__ = ["plan_figure"]


def plan_figure(plan, max_types: int = 8) -> Figure:
    """A fleet plan against the number of replicas: utility, ``W`` and tokens.

    Left: each ``k``'s certified optimum ``U`` (with the best uniform budget's
    when the plan has it, and the net utility ``U - k C`` with a replica cost);
    middle: the mean system time ``W``; right: the budgets of the (up to
    ``max_types`` most likely) task types. Replica counts without an allocation
    (unstable, infeasible) are left blank and named in the title; the chosen ``k``
    is marked.

    Parameters
    ----------
    plan : cvxalloc.plan.Plan
    """
    fig, axes = _figure(3, 15, 4.4)
    solved = [e for e in plan.entries if e.result is not None]
    ks = np.array([e.replicas for e in solved], dtype=float)
    U = np.array([e.result.objective for e in solved])
    W = np.array([e.result.mean_system_time for e in solved])
    ax = axes[0]
    ax.plot(ks, U, "o-", color=COLORS["optimal"], ms=4, label="optimal budgets (certified)")
    uni = [(e.replicas, e.uniform.objective) for e in solved if e.uniform is not None]
    if uni:
        ax.plot(*zip(*uni), "s--", color=COLORS["uniform"], ms=4, label="best uniform budget")
    if plan.replica_cost is not None:
        net = U - ks * plan.replica_cost
        ax.plot(ks, net, "^-", color="0.4", ms=4, label=f"U - k x {plan.replica_cost:g}")
    ax.set_ylabel(UTILITY)
    axes[1].plot(ks, W, "o-", color=COLORS["optimal"], ms=4)
    axes[1].set_yscale("log")
    axes[1].set_ylabel(W_LABEL)
    _plan_tokens(axes[2], solved, ks, max_types)
    missing = [e.replicas for e in plan.entries if e.result is None]
    note = f"; no allocation at k = {_ranges(missing)}" if missing else ""
    for ax in axes:
        ax.set_xlabel("replicas k")
        if plan.chosen is not None:
            ax.axvline(plan.chosen, color="0.6", lw=0.8, ls=":")
    axes[0].set_title(
        f"{plan.router} routing; chosen k = {plan.chosen} ({plan.criterion}){note}", fontsize=9
    )
    axes[1].set_title("mean system time at the optimum", fontsize=9)
    legend_below(axes[0])
    return fig


def _plan_tokens(ax, solved, ks: np.ndarray, max_types: int) -> None:
    """Budgets per type against ``k`` (the most likely types)."""
    if not solved:
        return
    res = solved[0].result
    p = res.scenario.probability
    order = np.argsort(-p, kind="stable")[:max_types]
    for j, i in enumerate(order):
        tokens = [e.result.tokens[i] for e in solved]
        ax.plot(ks, tokens, MARKERS[j % len(MARKERS)] + "-", ms=4, label=res.names[i])
    ax.set_ylabel("tokens")
    ax.set_title("budgets of the optimum", fontsize=9)
    legend_below(ax, ncol=min(4, len(order)))


def _ranges(values: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)
