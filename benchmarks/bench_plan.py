"""Fleet plan timing: k = 1..64 replicas at N = 10^4 task types, every router.

Each plan (from a Scenario, as the Python API holds it) solves every k with the default
(aggregate) method, warm-started from the neighbouring k, and certifies each optimum; the
cold column solves every k from scratch (the same plan without the warm start), for the
ratio. The first plan of a router also builds (and checks the convexity of) each k's
transform, which later plans reuse; it is timed apart. The scenario is a random one of
``cvxalloc.testing.random_scenario`` with its arrival rate raised so that one replica is
unstable and the plan has to find how many it needs.

Run: ``python benchmarks/bench_plan.py`` (times depend on the machine; the ratio and the
statuses are the point).
"""

from __future__ import annotations

import time

import numpy as np

from cvxalloc.plan import plan_fleet
from cvxalloc.testing import random_scenario


def main(n: int = 10_000, k_max: int = 64) -> None:
    sc = random_scenario(np.random.default_rng(7), n, load="heavy")
    m1_lo = float(sc.probability @ sc.service_time(sc.min_tokens))
    data = sc.to_dict()
    data["queue"]["arrival_rate"] = 6.0 / m1_lo  # needs at least 7 replicas
    t = time.perf_counter()
    plan_fleet(data, 1)  # what cvxalloc plan pays once to read the file's structure
    print(
        f"N = {n:,}: reading the scenario's structure (once per plan from a file) "
        f"{time.perf_counter() - t:.2f} s"
    )
    sc = sc.with_(arrival_rate=data["queue"]["arrival_rate"], fleet={"replicas": 7})
    for router in ("random", "round-robin", "shortest-queue"):
        t = time.perf_counter()
        plan_fleet(sc, k_max, router=router, replica_cost=1e-4)
        first = time.perf_counter() - t  # also builds and checks each k's transform (cached)
        t = time.perf_counter()
        plan = plan_fleet(sc, k_max, router=router, replica_cost=1e-4)
        warm = time.perf_counter() - t
        t = time.perf_counter()
        cold = plan_fleet(sc, k_max, router=router, replica_cost=1e-4, warm=False)
        t_cold = time.perf_counter() - t
        statuses = sorted({e.status for e in plan.entries})
        print(
            f"N = {n:,}, k = 1..{k_max}, {router}: {warm:.2f} s warm-started "
            f"({1000 * warm / k_max:.1f} ms per k; the first plan {first:.2f} s), "
            f"{t_cold:.2f} s cold ({t_cold / warm:.1f}x); "
            f"chosen k = {plan.chosen} (cold: {cold.chosen}), gap {plan.gap:.1e}; "
            f"statuses {statuses}"
        )


if __name__ == "__main__":
    main()
