"""Simulation of the server under any allocation, beside what the model predicts.

Layer: workflows. One module per stage, every public name re-exported here:

* :mod:`cvxalloc.simulate.engine`: the shared engine (service-time draws, task
  types, Lindley waits chunk by chunk, batch-means intervals);
* :mod:`cvxalloc.simulate.poisson`: :func:`simulate`, Poisson arrivals at the
  scenario's rate through one FIFO server, held against Pollaczek-Khinchine;
* :mod:`cvxalloc.simulate.replay`: :func:`simulate_replay`, a request log's
  arrival times through the same server, beside three predictions;
* :mod:`cvxalloc.simulate.batching`: :func:`simulate_batching`, an
  event-driven continuous-batching server;
* :mod:`cvxalloc.simulate.fleet`: :func:`simulate_fleet`, ``k`` replicas
  (batch-1 or batching) behind a router, Poisson or replayed arrivals.

Examples
--------
>>> import cvxalloc
>>> from cvxalloc.simulate import simulate
>>> sc = cvxalloc.example_scenario()
>>> sim = simulate(sc, sc.min_tokens, queries=200_000, seed=1)
>>> low, high = sim.mean_system_time_ci
>>> bool(low < sim.mean_system_time < high)
True
"""

from __future__ import annotations

from .batching import BatchingSimulation, simulate_batching, simulate_work, system_times
from .engine import (
    DEFAULT_CHUNK,
    TypeSampler,
    batch_means_interval,
    lindley_waits,
    percentile_intervals,
    sample_service,
    service_distribution,
)
from .fleet import DEFAULT_FLEET_QUERIES, FleetSimulation, simulate_fleet
from .poisson import DEFAULT_QUERIES, SimulationResult, simulate
from .replay import (
    DEFAULT_REPLICATIONS,
    REPLAY_SERVICES,
    ReplayResult,
    simulate_replay,
)

__all__ = [
    "SimulationResult",
    "simulate",
    "service_distribution",
    "sample_service",
    "lindley_waits",
    "TypeSampler",
    "batch_means_interval",
    "percentile_intervals",
    "DEFAULT_QUERIES",
    "DEFAULT_CHUNK",
    "simulate_replay",
    "ReplayResult",
    "DEFAULT_REPLICATIONS",
    "REPLAY_SERVICES",
    "simulate_batching",
    "BatchingSimulation",
    "system_times",
    "simulate_work",
    "simulate_fleet",
    "FleetSimulation",
    "DEFAULT_FLEET_QUERIES",
]
