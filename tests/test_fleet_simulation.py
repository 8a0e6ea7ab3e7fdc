"""The fleet simulator: routers, replicas, intervals, against exact models and naive loops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cvxalloc
from cvxalloc.cli import main
from cvxalloc.errors import ScenarioError, UnstableError
from cvxalloc.queue.batching import capacity_curve
from cvxalloc.simulate import simulate, simulate_fleet
from cvxalloc.simulate.batching import system_times
from cvxalloc.simulate.fleet import _jsq_batching, _jsq_fifo, route

BATCHING = Path(cvxalloc.__file__).parent / "data" / "example_batching.toml"


def fleet_of(sc, replicas: int, router: str, rate: float):
    data = sc.to_dict()
    data["fleet"] = {"replicas": replicas, "router": router}
    data["queue"]["arrival_rate"] = rate
    return cvxalloc.Scenario.from_dict(data)


def _naive_jsq_fifo(arrivals, work, k):
    """Join the shortest queue by counting, at each arrival, each replica's queries still in."""
    departures = [[] for _ in range(k)]
    system = np.empty(arrivals.size)
    for i, (a, s) in enumerate(zip(arrivals, work)):
        sizes = [sum(d > a for d in dep) for dep in departures]
        j = int(np.argmin(sizes))
        start = max(a, departures[j][-1]) if departures[j] else a
        departures[j].append(start + s)
        system[i] = start + s - a
    return system


def test_shortest_queue_of_fifo_replicas_matches_a_naive_loop(rng):
    arrivals = np.cumsum(rng.exponential(0.3, 3000))
    work = rng.gamma(0.5, 2.0, 3000)
    fast, where = _jsq_fifo(arrivals, work, 3)
    np.testing.assert_allclose(fast, _naive_jsq_fifo(arrivals, work, 3), rtol=1e-12)
    assert set(where.tolist()) == {0, 1, 2}


def test_shortest_queue_of_one_batching_replica_is_the_batching_server(rng):
    curve = capacity_curve([1, 4, 8], [1.0, 3.0, 5.0])
    arrivals = np.cumsum(rng.exponential(0.5, 5000))
    work = rng.gamma(2.0, 1.0, 5000)
    for limit in (None, 4):
        one, _ = _jsq_batching(arrivals, work, 1, curve, limit)
        ref = system_times(np.diff(arrivals, prepend=0.0), work, curve, limit)
        np.testing.assert_allclose(one, ref, rtol=1e-9, atol=1e-9)


def test_batching_replicas_that_never_share_serve_every_query_alone(rng):
    # c(n) = n: every decoding query runs at its own speed, so its system time is its work
    curve = capacity_curve([1, 64], [1.0, 64.0])
    arrivals = np.cumsum(rng.exponential(0.2, 2000))
    work = rng.gamma(2.0, 1.0, 2000)
    system, where = _jsq_batching(arrivals, work, 3, curve, None)
    np.testing.assert_allclose(system, work, rtol=1e-9)
    assert np.all(np.bincount(where, minlength=3) > 500)  # the load is spread over all three


def test_state_blind_routes(rng):
    assert route("round-robin", 3, 7, rng).tolist() == [0, 1, 2, 0, 1, 2, 0]
    counts = np.bincount(route("random", 4, 40_000, rng), minlength=4)
    assert np.all(np.abs(counts - 10_000) < 5 * np.sqrt(10_000))
    with pytest.raises(ValueError, match="state"):
        route("shortest-queue", 2, 3, rng)


@pytest.mark.parametrize("router", ["random", "round-robin", "shortest-queue"])
def test_one_replica_is_the_single_server(example, router):
    sc = fleet_of(example, 1, router, example.arrival_rate)
    t = example.min_tokens + 100
    fleet = simulate_fleet(sc, t, queries=50_000, seed=5)
    assert fleet.replicas == 1 and fleet.utilization == pytest.approx(
        example.utilization(t), rel=0.05
    )
    one = simulate(example, t, queries=50_000, seed=5)
    assert fleet.mean_system_time_model == pytest.approx(one.mean_system_time_model, rel=1e-14)


def test_random_routing_agrees_with_the_exact_model_within_its_interval(example):
    t = example.min_tokens + 200
    m1 = float(example.probability @ example.service_time(t))
    sc = fleet_of(example, 4, "random", 4 * 0.7 / m1)
    sim = simulate_fleet(sc, t, queries=400_000, seed=11)
    assert sim.model == "exact" and sim.utilization_model == pytest.approx(0.7, rel=1e-12)
    assert sim.model_within_ci(), (sim.mean_system_time_ci, sim.mean_system_time_model)
    assert np.allclose(sim.replica_utilization, 0.7, atol=0.02)
    # the replica's exact percentiles (Pollaczek-Khinchine transform) inside their intervals
    for key in ("p50", "p90", "p99"):
        lo, hi = sim.percentiles_ci[key]
        assert lo <= sim.percentiles_model[key] <= hi, key


def test_random_routing_of_batching_replicas_agrees_with_the_model():
    sc = cvxalloc.load_scenario(BATCHING)
    t = sc.min_tokens + 500
    m1 = float(sc.probability @ sc.service_time(t))
    fleet = fleet_of(sc, 3, "random", 3 * 0.8 * sc.server.capacity / m1)
    sim = simulate_fleet(fleet, t, queries=200_000, seed=4)
    assert sim.server == "batching" and sim.model_within_ci()


def test_poisson_runs_refuse_an_unstable_fleet_and_bad_arguments(example):
    sc = fleet_of(example, 2, "random", 2 * example.arrival_rate)
    with pytest.raises(UnstableError, match="per replica"):
        simulate_fleet(sc, example.max_tokens, queries=10_000)
    with pytest.raises(ScenarioError, match="limit applies to batching"):
        simulate_fleet(sc, example.min_tokens, queries=10_000, limit=4)
    with pytest.raises(ScenarioError, match="raise queries"):
        simulate_fleet(sc, example.min_tokens, queries=100)


def test_single_server_simulators_refuse_a_fleet(example):
    sc = fleet_of(example, 2, "random", example.arrival_rate)
    with pytest.raises(ScenarioError, match="simulate_fleet"):
        simulate(sc, example.min_tokens, queries=1000)


def test_a_replay_is_rescaled_to_the_target_utilization_per_replica(example, rng):
    sc = fleet_of(example, 3, "round-robin", example.arrival_rate)
    times = np.cumsum(rng.exponential(1.0, 20_000))
    t = example.min_tokens + 50
    sim = simulate_fleet(sc, t, arrival_times=times, target_utilization=0.6, replications=4, seed=2)
    assert sim.interval == "replications" and sim.replications == 4
    assert sim.utilization_model == pytest.approx(0.6, rel=1e-12)
    assert sim.utilization == pytest.approx(0.6, rel=0.05)
    assert sim.arrivals["kind"] == "replay" and sim.arrivals["requests"] == 20_000


def test_cli_simulates_a_fleet(example, tmp_path, capsys):
    path = tmp_path / "fleet.toml"
    path.write_text(cvxalloc.io.scenario_toml(fleet_of(example, 3, "shortest-queue", 0.5)))
    assert main(["simulate", str(path), "--queries", "30000", "--seed", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fleet"] == {"replicas": 3, "router": "shortest-queue", "model": "approximate"}
    assert len(out["replica_utilization"]) == 3
    assert out["mean_system_time_ci"][0] < out["mean_system_time"] < out["mean_system_time_ci"][1]
