"""Benchmark: building budget policies, and their proven gap at random rates.

Run: ``python benchmarks/bench_policy.py [--types N] [--rates R] [--seed S]``.

Builds the policy (:func:`cvxalloc.policy.build_policy`, default grid and tolerance) of the
built-in example and of random scenarios with ``--types`` task types
(:func:`cvxalloc.testing.random_scenario`, seeds 1 and 2), and reports for each: the build
time, the number of grid rates, the worst certified gap of a grid point relative to ``|U|``,
the time of one look-up, and over ``--rates`` random rates in the range the largest proven
gap of the policy's budgets relative to ``|U|``. On the example it also solves afresh at 50
of those rates and checks that the fresh optimum is within the stated gap. No assertion
beyond that: it prints the numbers.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import cvxalloc
from cvxalloc.policy import build_policy
from cvxalloc.testing import random_scenario


def measure(label: str, sc, rates: int, seed: int, fresh: int = 0) -> dict:
    clock, cpu = time.perf_counter(), time.process_time()
    pol = build_policy(sc)
    build, build_cpu = time.perf_counter() - clock, time.process_time() - cpu
    rng = np.random.default_rng(seed)
    low, high = pol.rate_range
    qs = rng.uniform(low, high, rates)
    clock = time.perf_counter()
    answers = [pol.lookup(r) for r in qs]
    lookup = (time.perf_counter() - clock) / rates
    rel = np.array([a.relative_gap for a in answers])
    scaled = np.array([a.scaled_gap for a in answers])
    worst_fresh = 0.0
    for r, a in list(zip(qs, answers))[:fresh]:
        opt = cvxalloc.solve(sc.with_(arrival_rate=r)).objective
        assert opt - a.objective <= a.gap + 1e-12 * abs(opt), (r, opt, a)
        worst_fresh = max(worst_fresh, (opt - a.objective) / abs(opt))
    row = {
        "label": label,
        "types": sc.n,
        "build_s": build,
        "build_cpu_s": build_cpu,
        "grid_rates": int(pol.rates.size),
        "grid_rel_gap": pol.info["max_grid_relative_gap"],
        "lookup_ms": 1e3 * lookup,
        "max_rel_gap": float(rel.max()),
        "median_rel_gap": float(np.median(rel)),
        "max_scaled_gap": float(scaled.max()),
        "fresh_checked": min(fresh, rates),
        "fresh_max_rel_loss": worst_fresh,
    }
    print(
        f"{label:<28} N={sc.n:<6} build {build:6.2f} s (CPU {build_cpu:.2f} s)  "
        f"{pol.rates.size:4d} rates  "
        f"grid gap <= {row['grid_rel_gap']:.1e} |U|  look-up {row['lookup_ms']:.2f} ms  "
        f"gap/|U| at {rates} random rates: max {row['max_rel_gap']:.2e}, "
        f"median {row['median_rel_gap']:.1e} (max over max(|U|, accuracy): "
        f"{row['max_scaled_gap']:.2e})"
        + (
            f"  (fresh solves at {row['fresh_checked']}: within the gap; largest true loss "
            f"{worst_fresh:.1e} |U|)"
            if fresh
            else ""
        ),
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", type=int, default=10_000)
    parser.add_argument("--rates", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, numpy {np.__version__}, cvxalloc "
        f"{cvxalloc.__version__}"
    )
    measure("example", cvxalloc.example_scenario(), args.rates, args.seed, fresh=50)
    for s in (1, 2):
        measure(
            f"random_scenario({s}, {args.types})",
            random_scenario(s, args.types),
            args.rates,
            args.seed,
        )


if __name__ == "__main__":
    main()
