"""Fleet simulator speed: queries per wall-clock second for k = 8 replicas, every router.

The promise (issue 20) is at least 10^6 queries a minute (16,667 per second) for k = 8.
Batch-1 replicas serve the built-in example's optimum, batching replicas the batching
example's, at per-replica utilization 0.8, Poisson arrivals.

Run: ``python benchmarks/bench_fleet_simulation.py`` (speeds depend on the machine).
"""

from __future__ import annotations

from importlib import resources

import cvxalloc
from cvxalloc.simulate import simulate_fleet

PROMISE = 1e6 / 60  # queries per second


def main(k: int = 8, queries: int = 1_000_000) -> None:
    servers = {
        "batch-1": cvxalloc.example_scenario(),
        "batching": cvxalloc.load_scenario(
            resources.files("cvxalloc") / "data/example_batching.toml"
        ),
    }
    for label, sc in servers.items():
        t = cvxalloc.solve(sc).tokens
        m1 = float(sc.probability @ sc.service_time(t))
        for router in ("random", "round-robin", "shortest-queue"):
            data = sc.to_dict()
            data["fleet"] = {"replicas": k, "router": router}
            data["queue"]["arrival_rate"] = 0.8 * k * sc.capacity / m1
            try:
                fleet = cvxalloc.Scenario.from_dict(data)
            except cvxalloc.ScenarioError as exc:
                print(f"{label}, {router}: not modelled ({exc})")
                continue
            sim = simulate_fleet(fleet, t, queries=queries, seed=1)
            qps = sim.queries_per_second
            print(
                f"{label}, k = {k}, {router}: {queries:,} queries in {sim.elapsed:.2f} s, "
                f"{qps:,.0f} queries/s ({qps / PROMISE:.0f}x the 10^6 per minute promised); "
                f"W {sim.mean_system_time:.4g} s, model {sim.mean_system_time_model:.4g} s"
            )


if __name__ == "__main__":
    main()
