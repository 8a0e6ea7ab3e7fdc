"""Sweep timing: conic compiled once with a Parameter (DPP) vs rebuilt per point, and aggregate.

The SLO sweeps run conic (both ways) and the default method, which honours the SLO.

Run: ``python benchmarks/bench_sweep.py`` (ratios are meaningful only within one run).
"""

from __future__ import annotations

import time
import warnings

import numpy as np

import cvxalloc
from cvxalloc.sweep import sweep_latency_weight, sweep_slo
from cvxalloc.testing import random_scenario


def _time(k, fn, *args, **kw):
    t = time.perf_counter()
    res = fn(*args, **kw)
    return (time.perf_counter() - t) / k * 1000, res


def main() -> None:
    warnings.simplefilter("ignore")
    cases = [
        ("example", cvxalloc.example_scenario(), 25),
        ("random N=200", random_scenario(np.random.default_rng(1), 200), 10),
    ]
    for label, sc, k in cases:
        ws = sc.latency_weight * np.logspace(-1, 1, k)
        dpp, a = _time(k, sweep_latency_weight, sc, ws, method="conic", uniform=False)
        reb, _ = _time(k, sweep_latency_weight, sc, ws, method="conic", uniform=False, problem=None)
        agg, _ = _time(k, sweep_latency_weight, sc, ws, method="aggregate", uniform=False)
        print(
            f"{label}: latency weight, {k} points: DPP {dpp:.1f} ms/point, rebuilt "
            f"{reb:.1f} ms/point ({reb / dpp:.1f}x), aggregate {agg:.1f} ms/point; "
            f"statuses {sorted(set(a.status.tolist()))}"
        )
        W_lo = cvxalloc.evaluate(sc, sc.min_tokens).mean_system_time
        slos = np.linspace(1.0, 1.5, k) * W_lo
        dpp, a = _time(k, sweep_slo, sc, slos, method="conic", uniform=False)
        reb, _ = _time(k, sweep_slo, sc, slos, method="conic", uniform=False, problem=None)
        agg, b = _time(k, sweep_slo, sc, slos, uniform=False)  # the default: aggregate
        print(
            f"{label}: SLO, {k} points: DPP {dpp:.1f} ms/point, rebuilt {reb:.1f} ms/point "
            f"({reb / dpp:.1f}x), {b.method} {agg:.1f} ms/point; max relative gap "
            f"{np.nanmax(a.gap / np.abs(a.objective)):.1e} (conic), "
            f"{np.nanmax(b.gap / np.abs(b.objective)):.1e} ({b.method})"
        )


if __name__ == "__main__":
    main()
