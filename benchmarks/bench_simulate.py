"""Benchmark: simulated queries per second, against Ciw on the same case.

Run: ``python benchmarks/bench_simulate.py [--queries N] [--ciw-customers M]``.

The case is the built-in example at its optimal allocation (five types, gamma
service times with squared coefficient of variation 0.3), plus the same with
deterministic service per type. cvxalloc.simulate is timed on ``--queries``
queries (best of ``--repeat`` runs); Ciw (an independent discrete-event
simulator, one Python event at a time) on ``--ciw-customers`` customers of the
same M/G/1 (one customer class per type, Poisson rate ``lam p_i``, the same
gamma distribution). Both report their mean system time with a 99%
batch-means interval, so the speed comparison is between runs that agree.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import cvxalloc
from cvxalloc.simulate import batch_means_interval, service_distribution, simulate


def ciw_run(sc, t, customers: int, seed: int):
    import ciw

    s = sc.service_time(t)
    shape, scale, det = service_distribution(s, sc.scv, sc.variance)
    classes = [f"Class {i}" for i in range(sc.n)]
    net = ciw.create_network(
        arrival_distributions={
            c: [ciw.dists.Exponential(rate=sc.arrival_rate * float(sc.probability[i]))]
            for i, c in enumerate(classes)
        },
        service_distributions={
            c: [
                ciw.dists.Deterministic(value=float(s[i]))
                if det[i]
                else ciw.dists.Gamma(shape=float(shape[i]), scale=float(scale[i]))
            ]
            for i, c in enumerate(classes)
        },
        number_of_servers=[1],
    )
    ciw.seed(seed)
    start, c0 = time.perf_counter(), time.process_time()
    q = ciw.Simulation(net)
    q.simulate_until_max_customers(customers, method="Finish")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - c0
    recs = sorted(q.get_all_records(), key=lambda r: r.arrival_date)
    times = np.array([r.exit_date - r.arrival_date for r in recs])
    mean, ci = batch_means_interval(times[times.size // 10 :], batches=20)
    return elapsed, cpu, len(recs), mean, ci


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=20_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ciw-customers", type=int, default=50_000)
    args = ap.parse_args()

    ex = cvxalloc.example_scenario()
    t = cvxalloc.solve(ex, method="conic").tokens
    cases = {
        "example, gamma service (k = 0.3)": ex,
        "example, deterministic per type": ex.with_(scv=0.0, variance=0.0),
    }
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}; numpy {np.__version__}"
    )
    print(f"case: built-in example at its optimum, utilization {ex.utilization(t):.3f}")
    for label, sc in cases.items():
        best, cpu = None, np.inf
        for r in range(args.repeat):
            c0 = time.process_time()
            sim = simulate(sc, t, queries=args.queries, seed=r, progress=False)
            cpu = min(cpu, time.process_time() - c0)
            if best is None or sim.elapsed < best.elapsed:
                best = sim
        lo, hi = best.mean_system_time_ci
        c_el, c_cpu, c_n, c_mean, (c_lo, c_hi) = ciw_run(sc, t, args.ciw_customers, seed=1)
        ours_qps, ciw_qps = best.queries_per_second, c_n / c_el
        ours_cpu, ciw_cpu = args.queries / cpu, c_n / c_cpu
        print(f"\n[{label}]")
        print(
            f"  cvxalloc.simulate: {args.queries:,} queries in {best.elapsed:.2f} s "
            f"(best of {args.repeat}) = {ours_qps:,.0f} queries/s; "
            f"W {best.mean_system_time:.3f} s, 99% CI [{lo:.3f}, {hi:.3f}]"
        )
        print(
            f"  Ciw:               {c_n:,} customers in {c_el:.2f} s = {ciw_qps:,.0f} "
            f"queries/s; W {c_mean:.3f} s, 99% CI [{c_lo:.3f}, {c_hi:.3f}]"
        )
        print(
            f"  PK model W {best.mean_system_time_model:.3f} s; "
            f"speed ratio cvxalloc / Ciw = {ours_qps / ciw_qps:,.0f}x (wall), "
            f"{ours_cpu / ciw_cpu:,.0f}x (CPU)"
        )
        print(
            f"  per CPU-second: cvxalloc {ours_cpu:,.0f} queries, Ciw {ciw_cpu:,.0f}; "
            f"target 1e7 queries/s {'met' if ours_qps >= 1e7 else 'NOT met'} (wall), "
            f"{'met' if ours_cpu >= 1e7 else 'NOT met'} (per CPU-second)"
        )


if __name__ == "__main__":
    main()
