"""The batching simulator against the processor-sharing formula, and hand cases."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import cvxalloc
from cvxalloc.errors import ScenarioError, UnstableError
from cvxalloc.queue import CapacityCurve
from cvxalloc.simulate import simulate, simulate_batching, simulate_work, system_times

CURVES = {
    "published": CapacityCurve((1, 4, 8, 16, 32, 48), (1.0, 3.82, 6.85, 11.7, 17.7, 21.6)),
    "concave": CapacityCurve((1, 2, 4, 8, 16), (1.0, 1.9, 3.5, 6.0, 9.0)),
    "eight-servers": CapacityCurve((1, 8), (1.0, 8.0)),  # c(n) = min(n, 8): M/G/8-PS
}


def test_one_query_alone_and_two_sharing():
    curve = CapacityCurve((1, 2), (1.0, 1.5))
    # alone: its work
    assert system_times(np.array([1.0]), np.array([3.0]), curve)[0] == pytest.approx(3.0)
    # two arrive at 0 with work 1 and 2: both at 0.75/s until t = 4/3, then alone at 1/s
    T = system_times(np.array([0.0, 0.0]), np.array([1.0, 2.0]), curve)
    assert T == pytest.approx([4 / 3, 4 / 3 + 1.0])
    # limit 1: FIFO one at a time
    T1 = system_times(np.array([0.0, 0.0]), np.array([1.0, 2.0]), curve, limit=1)
    assert T1 == pytest.approx([1.0, 3.0])


@pytest.mark.parametrize("name", list(CURVES))
@pytest.mark.parametrize("rho", [0.1, 0.5, 0.8, 0.95])
def test_processor_sharing_mean_inside_the_interval(name, rho):
    curve = CURVES[name]
    x = rho * curve.capacity
    rng = np.random.default_rng(11)
    n = 1_000_000 if rho >= 0.9 else 200_000
    # gamma work with scv 2 (PS is insensitive to it), mean 1 s alone
    work = rng.gamma(0.5, 2.0, size=n)
    mean, (low, high) = simulate_work(curve, x, work, seed=12)
    model = curve.g(x) / x
    assert low <= model <= high, (mean, model)


def test_fifo_admission_equals_ps_for_exponential_work_in_distribution():
    # with exponential work both rules give the same birth-death chain for N
    curve = CURVES["concave"]
    x = 0.8 * curve.capacity
    work = np.random.default_rng(3).exponential(1.0, size=400_000)
    _, (low, high) = simulate_work(curve, x, work, seed=4, limit=16)
    assert low <= curve.g(x) / x <= high


def test_simulate_batching_on_the_example():
    path = str(resources.files("cvxalloc").joinpath("data/example_batching.toml"))
    sc = cvxalloc.load_scenario(path)
    res = cvxalloc.solve(sc)
    sim = simulate_batching(sc, res.tokens, queries=300_000, seed=5)
    low, high = sim.mean_system_time_ci
    assert low <= sim.mean_system_time_model <= high
    assert sim.utilization_model == pytest.approx(res.utilization, rel=1e-12)
    assert sim.utilization == pytest.approx(res.utilization, rel=0.02)
    ulow, uhigh = sim.utility_ci
    assert ulow <= res.objective <= uhigh


def test_simulate_batching_errors():
    sc = cvxalloc.example_scenario()
    with pytest.raises(ScenarioError, match="no \\[server\\]"):
        simulate_batching(sc, sc.min_tokens)
    with pytest.raises(UnstableError, match="unstable"):
        simulate_batching(
            sc.with_(arrival_rate=5.0),
            sc.max_tokens,
            curve={"concurrency": [1, 2], "speedup": [1.0, 1.5]},
        )


def test_cli_simulates_the_batching_server(capsys):
    """``cvxalloc simulate`` on a batching scenario runs the batching simulator, not FIFO."""
    import json

    from cvxalloc.cli import main

    path = str(Path(cvxalloc.__file__).parent / "data" / "example_batching.toml")
    assert main(["simulate", path, "--seed", "3", "--queries", "60000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["server"] == "batching"
    lo, hi = out["mean_system_time_ci"]
    # the FIFO simulator would report ~1e6 s here (batch-1 utilization > 1)
    assert out["mean_system_time_model"] < 1e3 and lo < hi < 1e3


def test_fifo_simulator_refuses_a_batching_scenario():
    sc = cvxalloc.load_scenario(Path(cvxalloc.__file__).parent / "data" / "example_batching.toml")
    with pytest.raises(ScenarioError, match="batching server"):
        simulate(sc, sc.min_tokens, queries=1000)


def test_the_former_module_path_still_works():
    """``cvxalloc.simulate_batching`` (the module before ``cvxalloc/simulate/``) re-exports."""
    import cvxalloc.simulate_batching as former

    assert former.simulate_batching is simulate_batching
    assert former.system_times is system_times and former.simulate_work is simulate_work
