"""(a) Optimal against uniform, minimum and maximum budgets, light load to saturation.

The built-in example's arrival rate is swept geometrically from 0.1% to 99%
of the rate at which even the minimum budgets saturate. At each rate the
conic reference (certified) is compared with the best uniform budget, every
type at its minimum, and every type at its maximum (where that is stable).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import cvxalloc
from cvxalloc.plots import load_figure, save

from .common import Section, progress, table


def run(out_dir: Path, quick: bool = False) -> Section:
    sc = cvxalloc.example_scenario()
    lam_sat = sc.max_stable_arrival_rate(sc.min_tokens)
    lam_max = sc.max_stable_arrival_rate(sc.max_tokens)
    n = 8 if quick else 24
    rates = lam_sat * np.concatenate(
        [np.geomspace(1e-3, 0.5, n, endpoint=False), np.linspace(0.5, 0.99, n // 2)]
    )
    rates = np.unique(np.concatenate([rates, [sc.arrival_rate]]))
    rows: dict[str, list[float]] = {k: [] for k in ("optimal", "uniform", "minimum", "maximum")}
    tokens: dict[str, list[float]] = {n: [] for n in sc.names}
    rho, gaps = [], []
    for lam in progress(rates, "(a) load", unit="rate"):
        s = sc.with_(arrival_rate=float(lam))
        res = cvxalloc.solve(s, method="conic")
        base = cvxalloc.baselines(s)
        rows["optimal"].append(res.objective)
        for k in ("uniform", "minimum", "maximum"):
            rows[k].append(np.nan if base[k] is None else base[k].objective)
        for n, t in zip(sc.names, res.tokens):
            tokens[n].append(float(t))
        rho.append(res.utilization)
        gaps.append(res.certificate.gap)
    arr = {k: np.array(v) for k, v in rows.items()}
    fig = load_figure(
        rates,
        arr,
        saturation=lam_sat,
        tokens=tokens,
        logx=True,
        title="Built-in example: utility against arrival rate",
    )
    name = "validation_load.png"
    save(fig, out_dir / name)

    # every fixed policy is at most the optimum (certified), the optimum is never beaten
    worst = max(float(np.nanmax(arr[k] - arr["optimal"])) for k in arr if k != "optimal")
    ok = worst <= 1e-9 and max(gaps) <= 1e-6
    picks = [
        int(np.argmin(np.abs(rates - x)))
        for x in (rates[0], lam_max * 0.5, sc.arrival_rate, 0.5 * lam_sat, 0.9 * lam_sat, rates[-1])
    ]
    picks = sorted(set(picks))
    tab = table(
        [
            "arrival rate (q/s)",
            "rho (optimal)",
            "U optimal",
            "U uniform",
            "U minimum",
            "U maximum",
            "gain over uniform",
        ],
        [
            [
                f"{rates[i]:.4g}",
                f"{rho[i]:.3f}",
                f"{arr['optimal'][i]:.5f}",
                f"{arr['uniform'][i]:.5f}",
                f"{arr['minimum'][i]:.5f}",
                "unstable" if np.isnan(arr["maximum"][i]) else f"{arr['maximum'][i]:.5f}",
                f"{arr['optimal'][i] - arr['uniform'][i]:.2e}",
            ]
            for i in picks
        ],
    )
    i_ex = int(np.argmin(np.abs(rates - sc.arrival_rate)))
    gain_ex = arr["optimal"][i_ex] - arr["uniform"][i_ex]
    gain = arr["optimal"] - arr["uniform"]
    i_best = int(np.argmax(gain))
    zero_from = next((rates[i] for i in range(len(rates)) if np.all(gain[i:] <= 1e-9)), None)
    floor_at = {}
    for j, n in enumerate(sc.names):
        t = np.array(tokens[n])
        at_lo = t <= sc.min_tokens[j] + 1e-6
        k = next((i for i in range(len(rates)) if at_lo[i:].all()), None)
        floor_at[n] = None if k is None else float(rates[k])
    order = ", ".join(
        f"{n} ({'never' if r is None else f'{r:.3g} q/s'})"
        for n, r in sorted(floor_at.items(), key=lambda kv: np.inf if kv[1] is None else kv[1])
    )
    text = f"""\
The arrival rate runs over {len(rates)} values from {rates[0]:.3g} to {rates[-1]:.3g} queries/s
(0.1% to 99% of {lam_sat:.4g} q/s, where even the minimum budgets saturate; the maximum
budgets saturate already at {lam_max:.4g} q/s). Every optimum is certified (largest
Frank-Wolfe gap {max(gaps):.1e}); no fixed policy beats it by more than that (largest
excess of a fixed policy over the optimum: {worst:.1e}, where both coincide at the minimum
budgets).

{tab}

* At the example's own load ({sc.arrival_rate:g} q/s) the optimum gains
  {gain_ex:.4f} utility over the best uniform budget
  ({100 * gain_ex / abs(arr["uniform"][i_ex]):.1f}%).
* The largest gain over uniform, {gain[i_best]:.4f}, is at {rates[i_best]:.3g} q/s
  (utilization {rho[i_best]:.2f}); it shrinks as the load grows, because the queue leaves
  fewer tokens to distribute.
* Near saturation the optimum collapses onto the minimum budgets (every type at its
  floor{"" if zero_from is None else f"; identical utility from {zero_from:.3g} q/s on"}),
  and utility falls steeply as W = m1 + lam m2 / (2 (1 - rho)) explodes.
* The right panel shows the allocation giving up thinking tokens type by type as load
  rises; the order in which types reach their minimum: {order}."""
    return Section(
        key="a-load",
        title="(a) Optimal against fixed budgets, light load to saturation",
        figures=[name],
        text=text,
        ok=ok,
        numbers={
            "rates": rates.tolist(),
            **{k: v.tolist() for k, v in arr.items()},
            "utilization": rho,
            "max_gap": max(gaps),
            "max_excess_over_optimal": worst,
            "saturation_rate_minimum": lam_sat,
            "saturation_rate_maximum": lam_max,
        },
    )
