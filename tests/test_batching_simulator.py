"""The batching simulator as a tool: arrivals, warm-up, seed, argument checks, memory, JSON keys."""

from __future__ import annotations

import json
import tracemalloc
from importlib import resources

import numpy as np
import pytest

import cvxalloc
from cvxalloc.cli import main
from cvxalloc.errors import ScenarioError
from cvxalloc.simulate import simulate, simulate_batching, system_times

EXAMPLE = str(resources.files("cvxalloc").joinpath("data/example_batching.toml"))
PUBLISHED = {
    "model": "batching",
    "concurrency": [1, 4, 8, 16, 32, 48],
    "speedup": [1.0, 3.82, 6.85, 11.7, 17.7, 21.6],
}


@pytest.fixture(scope="module")
def example():
    sc = cvxalloc.load_scenario(EXAMPLE)
    return sc, cvxalloc.solve(sc).tokens


def _one_type(arrival_rate: float, **server):
    """One task type with deterministic service of 30 s: no randomness but the draws' order."""
    from cvxalloc.accuracy import Exponential

    return cvxalloc.Scenario.from_arrays(
        probability=[1.0],
        max_tokens=1000.0,
        per_token=0.03,
        accuracy=Exponential(floor=0.2, ceiling=0.9, scale=300.0),
        arrival_rate=arrival_rate,
        latency_weight=0.001,
        server={**PUBLISHED, **server},
    )


def test_warmup_is_honoured_and_matches_the_event_sequence():
    """Regular arrivals and deterministic work: the mean over [warmup, end) is exact."""
    sc = _one_type(0.5)
    t = np.array([1000.0])  # 30 s each, offered work 15 of 21.6
    sim = simulate_batching(sc, t, queries=5_000, warmup=1_234, batches=10, arrival_scv=0.0)
    T = system_times(np.full(5_000, 2.0), np.full(5_000, 30.0), sc.server)
    end = 1_234 + (5_000 - 1_234) // 10 * 10
    assert sim.warmup == 1_234
    assert sim.mean_system_time == pytest.approx(T[1_234:end].mean(), rel=1e-12)
    assert sim.percentiles["p50"] == pytest.approx(np.median(T[1_234:end]), rel=5e-3)


def test_seed_is_reported_and_reproduces_the_run(example):
    sc, t = example
    first = simulate_batching(sc, t, queries=20_000)
    again = simulate_batching(sc, t, queries=20_000, seed=first.seed)
    a, b = first.to_dict(), again.to_dict()
    for key in ("elapsed_seconds", "queries_per_second"):
        a.pop(key), b.pop(key)
    assert isinstance(first.seed, int) and a == b


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"batches": 0}, "batches must be >= 2"),
        ({"batches": 1}, "batches must be >= 2"),
        ({"warmup": -1}, "minus warmup"),
        ({"queries": 10, "batches": 30}, "at least one query per batch"),
        ({"confidence": 1.5}, "confidence"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"limit": 0}, "limit must be a whole number"),
        ({"arrival_scv": -1.0}, "arrival_scv must be between 0"),
        ({"arrival_times": [3.0, 1.0, 2.0]}, "sorted"),
    ],
)
def test_bad_arguments_are_one_clear_error(example, kwargs, needle):
    sc, t = example
    with pytest.raises(ScenarioError, match=needle):
        simulate_batching(sc, t, **{"queries": 2_000, **kwargs})


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--batches", "0"], "batches must be >= 2"), (["--warmup", "-5"], "--warmup")],
)
def test_cli_bad_arguments_exit_2_one_line(capsys, args, needle):
    assert main(["simulate", EXAMPLE, "--queries", "5000", *args]) == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and out.out == ""


def test_memory_does_not_grow_with_the_queries(example):
    """Streaming statistics: the peak for 4x the queries stays the same (chunks of 20,000)."""
    sc, t = example
    peaks = []
    for n in (60_000, 240_000):
        tracemalloc.start()
        simulate_batching(sc, t, queries=n, seed=1, chunk_size=20_000)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.3 * peaks[0]


def test_json_has_the_fifo_simulators_keys(example, capsys):
    sc, t = example
    fifo = simulate(
        cvxalloc.example_scenario(),
        cvxalloc.example_scenario().min_tokens,
        queries=2_000,
        seed=1,
        batches=4,
    )
    batching = simulate_batching(sc, t, queries=2_000, seed=1, batches=4)
    assert set(fifo.to_dict()) <= set(batching.to_dict())
    assert main(["simulate", EXAMPLE, "--queries", "4000", "--seed", "7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["seed"] == 7 and out["server"] == "batching" and out["limit"] is None
    assert set(fifo.to_dict()) <= set(out)


def test_renewal_and_replayed_arrivals(example):
    sc, t = example
    bursty = simulate_batching(sc, t, queries=50_000, seed=2, arrival_scv=9.0)
    assert bursty.arrivals == "gamma gaps" and bursty.arrival_scv == 9.0
    # the model column is the batching model with the same arrivals
    q = cvxalloc.queue.BatchingQueue(sc.arrival_rate, curve=sc.server, arrival_scv=9.0)
    assert bursty.mean_system_time_model == q.value(sc.probability @ sc.service_time(t))
    times = np.cumsum(np.random.default_rng(3).exponential(1 / sc.arrival_rate, 20_000))
    replay = simulate_batching(sc, t, arrival_times=times, seed=2)
    assert replay.arrivals == "replay" and replay.queries == 20_000
    assert replay.arrival_scv == pytest.approx(1.0, abs=0.05)


def test_the_scenarios_admission_limit_is_simulated_by_default(example):
    sc, t = example
    limited = sc.with_(server={**sc.server.to_dict(), "max_running": 16})
    sim = simulate_batching(limited, t, queries=2_000, seed=1)
    assert sim.limit == 16
    assert simulate_batching(limited, t, queries=2_000, seed=1, limit=None).limit is None
