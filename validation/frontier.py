"""(e) The accuracy-latency frontier, sweeping the latency weight.

The built-in example is solved for latency weights from 1/100 to 100 times its
own (the conic reference at each), beside the best uniform budget at each
weight. A few frontier points are also simulated to show the model's W is
what the server would see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import cvxalloc
from cvxalloc.plots import (
    default_latency_weights,
    frontier_sweep,
    legend_below,
    save,
    scenario_figure,
)
from cvxalloc.simulate import simulate

from .common import PROGRESS, Section, progress, table


def run(out_dir: Path, quick: bool = False) -> Section:
    sc = cvxalloc.example_scenario()
    weights = default_latency_weights(sc, 13 if quick else 41, decades=2.0)
    sweep = frontier_sweep(sc, weights, method="conic", progress=PROGRESS["on"])
    res = cvxalloc.solve(sc, method="conic")
    fig = scenario_figure(sc, result=res, sweep=sweep)
    # simulate three frontier points and mark them
    ax = fig.axes[0]
    sims = []
    nq = 1_000_000 if quick else 4_000_000
    points = (weights[len(weights) // 4], sc.latency_weight, weights[3 * len(weights) // 4])
    # Bonferroni over the 2 x 3 checks (W and accuracy at each point): an exact model
    # fails any of them with probability at most 1%
    level = 1.0 - 0.01 / (2 * len(points))
    for g in progress(points, "(e) simulations", unit="simulation"):
        r = cvxalloc.solve(sc.with_(latency_weight=float(g)), method="conic")
        sim = simulate(sc, r.tokens, queries=nq, seed=7, progress=False, confidence=level)
        sims.append((g, r, sim))
        lo, hi = sim.mean_system_time_ci
        alo, ahi = sim.accuracy_ci
        ax.errorbar(
            [sim.mean_system_time],
            [sim.accuracy],
            xerr=[[sim.mean_system_time - lo], [hi - sim.mean_system_time]],
            yerr=[[sim.accuracy - alo], [ahi - sim.accuracy]],
            fmt="D",
            ms=4,
            color="#2ca02c",
            capsize=2,
            label="simulated (Bonferroni 99% family-wise CI)" if len(sims) == 1 else None,
        )
    legend_below(ax)
    name = "validation_frontier.png"
    save(fig, out_dir / name)

    weights = np.asarray(sweep.latency_weight, dtype=float)  # the sweep's own order
    w_opt, a_opt = np.asarray(sweep.mean_system_time), np.asarray(sweep.accuracy)
    w_uni, a_uni = np.asarray(sweep.uniform_mean_system_time), np.asarray(sweep.uniform_accuracy)
    # the optimal frontier at the uniform budget's latency (log-W interpolation)
    order = np.argsort(w_opt)
    lw, la = np.log(w_opt[order]), a_opt[order]
    k0 = int(np.argmin(np.abs(weights - sc.latency_weight)))
    inside = (w_uni >= w_opt.min()) & (w_uni <= w_opt.max())
    acc_gain = np.where(inside, np.interp(np.log(w_uni), lw, la) - a_uni, np.nan)
    # the latency the optimal frontier needs to reach the uniform budget's accuracy
    o2 = np.argsort(a_opt)
    reach = (a_uni >= a_opt.min()) & (a_uni <= a_opt.max())
    w_same_acc = np.where(reach, np.exp(np.interp(a_uni, a_opt[o2], np.log(w_opt[o2]))), np.nan)
    speedup = w_uni / w_same_acc
    u_gain = (a_opt - weights * w_opt) - (a_uni - weights * w_uni)
    ok = bool(np.all(u_gain >= -1e-9) and np.all(acc_gain[inside] >= -1e-6))
    sim_rows = []
    for g, r, sim in sims:
        lo, hi = sim.mean_system_time_ci
        alo, ahi = sim.accuracy_ci
        ok &= sim.model_within_ci() and sim.accuracy_within_ci()
        sim_rows.append(
            [
                f"{g:.3g}",
                f"{r.mean_system_time:.4g}",
                f"[{lo:.4g}, {hi:.4g}]",
                f"{r.accuracy:.4f}",
                f"[{alo:.4f}, {ahi:.4f}]",
            ]
        )
    text = f"""\
{len(weights)} latency weights from {weights[0]:.3g} to {weights[-1]:.3g} (the example uses
{sc.latency_weight:g}). Left: weighted accuracy against mean system time for the optimal
per-type budgets (blue) and the best uniform budget (orange); the star is the example's
optimum; green diamonds are simulations of three frontier points with their intervals
(Bonferroni: 99% for the six checks together).
Right: the example's optimal tokens per type within its bounds, beside the best uniform budget.

* At the example's weight the optimum reaches accuracy {a_opt[k0]:.4f} at W = {w_opt[k0]:.1f} s;
  the best uniform budget reaches {a_uni[k0]:.4f} at W = {w_uni[k0]:.1f} s. At the uniform
  budget's own latency the optimal frontier is {acc_gain[k0]:.4f} more accurate
  ({100 * acc_gain[k0] / a_uni[k0]:.1f}%); to match the uniform budget's accuracy it needs
  {w_same_acc[k0]:.1f} s instead of {w_uni[k0]:.1f} s ({speedup[k0]:.2f}x shorter).
* Over the sweep the accuracy gain at equal latency ranges from
  {np.nanmin(acc_gain):.4f} to {np.nanmax(acc_gain):.4f}, and the optimum's utility is never
  below the uniform budget's beyond solver precision (smallest margin {u_gain.min():.2e},
  largest {u_gain.max():.4f}).
* Simulated frontier points ({nq / 1e6:g} million queries each) agree with the model:

{
        table(
            [
                "latency weight",
                "PK W (s)",
                "simulated W, interval",
                "model accuracy",
                "realized accuracy, interval",
            ],
            sim_rows,
        )
    }"""
    return Section(
        key="e-frontier",
        title="(e) Accuracy-latency frontier",
        figures=[name],
        text=text,
        ok=ok,
        numbers={
            "latency_weight": weights.tolist(),
            "accuracy": a_opt.tolist(),
            "mean_system_time": w_opt.tolist(),
            "uniform_accuracy": a_uni.tolist(),
            "uniform_mean_system_time": w_uni.tolist(),
            "accuracy_gain_at_equal_latency": acc_gain.tolist(),
        },
    )
