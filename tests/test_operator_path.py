"""The operator's path on a batching server, end to end without a hand edit (issue 19).

``traffic LOG --scenario`` -> ``fit --throughput ... --template`` -> ``solve`` ->
``simulate --arrivals LOG`` -> ``policy``, on the Azure code trace (8,819 requests,
gap scv 173) and the batching example's published server: every step reads what the
previous one wrote, the log's burstiness and the server survive every step, and the
replay's model column is the batching model at the log's rate and burstiness.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

import cvxalloc
from cvxalloc.cli import main

DATA = resources.files("cvxalloc").joinpath("data")
TRACE = Path(__file__).resolve().parents[1] / "validation" / "data" / "traces"
CODE = str(TRACE / "AzureLLMInferenceTrace_code.csv")


def _json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_traffic_fit_solve_simulate_policy(tmp_path, capsys):
    measured = tmp_path / "measured.toml"
    assert main(["traffic", CODE, "--scenario", str(DATA / "example_batching.toml"),
                 "-o", str(measured)]) == 0  # fmt: skip
    capsys.readouterr()
    log = cvxalloc.load_scenario(measured)
    assert log.arrival_scv == pytest.approx(172.956, rel=1e-4)
    assert log.arrival_rate == pytest.approx(2.5664, rel=1e-4) and log.server is not None

    fitted = tmp_path / "fitted.toml"
    assert main(["fit", "--throughput", str(DATA / "published_batch_throughput.csv"),
                 "--template", str(measured), "-o", str(fitted)]) == 0  # fmt: skip
    capsys.readouterr()
    sc = cvxalloc.load_scenario(fitted)
    # the log's traffic and the fitted server, both kept
    assert (sc.arrival_rate, sc.arrival_scv) == (log.arrival_rate, log.arrival_scv)
    assert sc.server is not None and sc.server.curve != log.server.curve

    solved = _json(capsys, ["solve", str(fitted), "--json", "--no-baselines"])
    assert solved["status"] == "optimal"
    assert solved["certificate"]["gap"] <= 1e-9 * abs(solved["objective"])

    replay = _json(capsys, ["simulate", str(fitted), "--arrivals", CODE, "--seed", "3",
                            "--json"])  # fmt: skip
    assert replay["server"] == "batching" and replay["arrivals"] == "replay"
    assert replay["queries"] == 8819 and replay["seed"] == 3
    assert replay["arrival_scv"] == pytest.approx(sc.arrival_scv, rel=1e-9)
    # the model column is the batching model at the replay's rate and burstiness
    model = cvxalloc.evaluate(sc, [solved["tokens"][n] for n in sc.names])
    assert replay["mean_system_time_model"] == pytest.approx(model.mean_system_time, rel=1e-9)

    policy = tmp_path / "policy.json"
    assert main(["policy", str(fitted), "-o", str(policy)]) == 0, capsys.readouterr().err
    loaded = cvxalloc.load_policy(policy)
    assert loaded.rate_range[1] > sc.arrival_rate
    t = loaded.budgets(sc.arrival_rate)
    assert loaded.gap(sc.arrival_rate) <= 1e-4 * max(abs(solved["objective"]), 1.0)
    assert cvxalloc.evaluate(sc, t).objective == pytest.approx(solved["objective"], abs=1e-4)


def test_batching_replay_options(tmp_path, capsys):
    scenario = str(DATA / "example_batching.toml")
    out = _json(capsys, ["simulate", scenario, "--arrivals", CODE, "--target-utilization",
                         "0.5", "--seed", "1", "--json"])  # fmt: skip
    assert out["utilization"] == pytest.approx(0.5, rel=0.05)  # measured, rescaled time
    for extra, needle in (
        (["--replications", "4"], "one pass through the log"),
        (["--service", "deterministic"], "not supported on a batching server"),
    ):
        assert main(["simulate", scenario, "--arrivals", CODE, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0]
