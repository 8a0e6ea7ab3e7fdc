"""Benchmark: the batching simulator's throughput and its agreement with the model.

Run: ``python benchmarks/bench_batching.py [--queries N] [--repeat R]``.

The case is the batching example (cvxalloc/data/example_batching.toml: the published
Mistral-7B / RTX 4090 vLLM capacity curve, the example's five task types, gamma service
with scv 0.3) at its optimal allocation, scaled to utilizations 0.5, 0.8 and 0.95 of the
server's capacity by the arrival rate. Each run simulates ``--queries`` queries with
processor sharing (the model) and with the engine's rule (at most 48 decoding, the rest
waiting FIFO). Prints queries per second (best of ``--repeat``), the simulated mean system
time with its 99% batch-means interval, and the model's. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from importlib import resources

import numpy as np

import cvxalloc
from cvxalloc.simulate import simulate_batching


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    path = resources.files("cvxalloc") / "data/example_batching.toml"
    sc = cvxalloc.load_scenario(path)
    t = cvxalloc.solve(sc).tokens
    m1 = float(sc.probability @ sc.service_time(t))
    print(f"# {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"# {args.queries:,} queries per run, best of {args.repeat}")
    print("rho    rule      queries/s    simulated W (99% CI)           model W   rel. error")
    for rho in (0.5, 0.8, 0.95):
        lam = rho * sc.capacity / m1
        sc_r = sc.with_(arrival_rate=lam)
        for limit in (None, 48):
            best = np.inf
            for rep in range(args.repeat):
                t0 = time.perf_counter()
                sim = simulate_batching(sc_r, t, queries=args.queries, seed=rep, limit=limit)
                best = min(best, time.perf_counter() - t0)
            low, high = sim.mean_system_time_ci
            rule = "PS" if limit is None else f"FIFO-{limit}"
            print(
                f"{rho:<6.2f} {rule:<8} {args.queries / best:>11,.0f}    "
                f"{sim.mean_system_time:8.3f} [{low:8.3f}, {high:8.3f}]    "
                f"{sim.model_mean_system_time:8.3f}   {sim.relative_error:+.2%}"
            )


if __name__ == "__main__":
    main()
