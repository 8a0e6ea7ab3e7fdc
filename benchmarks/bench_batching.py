"""Benchmark: the batching simulator's throughput and its agreement with the model.

Run: ``python benchmarks/bench_batching.py [--queries N] [--repeat R]``, or
``python benchmarks/bench_batching.py --part solve [--sizes N ...] [--repeat R]``.

The case is the batching example (cvxalloc/data/example_batching.toml: the published
Mistral-7B / RTX 4090 vLLM capacity curve, the example's five task types, gamma service
with scv 0.3) at its optimal allocation, scaled to utilizations 0.5, 0.8 and 0.95 of the
server's capacity by the arrival rate. Each run simulates ``--queries`` queries with
processor sharing (the model) and with the engine's rule (at most 48 decoding, the rest
waiting FIFO). Prints queries per second (best of ``--repeat``), the simulated mean system
time with its 99% batch-means interval, and the model's. Asserts nothing.

``--part solve`` times the solver instead (issue 19: bursty arrivals must not cost more
than twice the Poisson solve at N = 10^6): a random heavy-load instance
(:func:`cvxalloc.testing.random_scenario`) on the published curve, loaded so the box's
top is 1.5 times the capacity, solved by the default method with ``arrival_scv`` = 1
(the Poisson model), 0.3, 9 and 173 (the Azure code trace), and 173 with ``max_running =
48`` and ``service_scv = 4.85``; each time (best of ``--repeat``) also as a ratio to the
Poisson time of the same run, with the certified relative gap.
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
from cvxalloc.testing import random_scenario

PUBLISHED = {
    "model": "batching",
    "concurrency": [1, 4, 8, 16, 32, 48],
    "speedup": [1.0, 3.82, 6.85, 11.7, 17.7, 21.6],
}
#: (label, arrival_scv, extra [server] keys) of the solve timings; the first is the reference.
SOLVE_CASES = (
    ("Poisson", 1.0, {}),
    ("scv 0.3", 0.3, {}),
    ("scv 9", 9.0, {}),
    ("scv 173", 173.0, {}),
    ("scv 173, K 48", 173.0, {"max_running": 48, "service_scv": 4.85}),
)


def solve_times(sizes: list[int], repeat: int, seed: int) -> None:
    """Default-method solve times with bursty arrivals, as ratios to the Poisson solve."""
    print(f"# {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"# default method, best of {repeat}")
    print(f"{'N':>9}  {'arrivals':<15} {'time (s)':>9} {'ratio':>6} {'gap/|U|':>9}  status")
    for n in sizes:
        base = random_scenario(np.random.default_rng(seed), n, load="heavy").with_(server=PUBLISHED)
        m1_hi = float(base.probability @ base.service_time(base.max_tokens))
        m1_lo = float(base.probability @ base.service_time(base.min_tokens))
        lam = min(1.5 * base.capacity / m1_hi, 0.9 * base.capacity / m1_lo)
        ref = None
        for label, scv, extra in SOLVE_CASES:
            sc = base.with_(arrival_rate=lam, arrival_scv=scv, server={**PUBLISHED, **extra})
            best, res = np.inf, None
            for _ in range(repeat):
                t0 = time.perf_counter()
                res = cvxalloc.solve(sc)
                best = min(best, time.perf_counter() - t0)
            ref = best if ref is None else ref
            print(
                f"{n:>9,}  {label:<15} {best:>9.3f} {best / ref:>6.2f} "
                f"{res.certificate.relative_gap:>9.1e}  {res.status}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("simulate", "solve"), default="simulate")
    ap.add_argument("--queries", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.part == "solve":
        solve_times(args.sizes, args.repeat, args.seed)
        return
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
                f"{sim.mean_system_time_model:8.3f}   {sim.relative_error:+.2%}"
            )


if __name__ == "__main__":
    main()
