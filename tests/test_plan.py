"""cvxalloc plan: the joint choice of replicas and budgets against brute enumeration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cvxalloc
from cvxalloc.cli import main
from cvxalloc.errors import ScenarioError
from cvxalloc.plan import UNSTABLE, plan_fleet
from cvxalloc.scenario import Scenario

BATCHING = Path(cvxalloc.__file__).parent / "data" / "example_batching.toml"
CONV = (
    Path(__file__).parents[1] / "validation" / "data" / "traces" / "AzureLLMInferenceTrace_conv.csv"
)


def _data(sc, rate: float, router: str = "random", **queue) -> dict:
    data = sc.to_dict()
    data["queue"]["arrival_rate"] = rate
    data["queue"].update(queue)
    data["fleet"] = {"replicas": 1, "router": router}
    return data


def _brute(data: dict, k_max: int, cost: float):
    """Every k solved by the conic reference (checked optimal): the best net utility's k."""
    best = None
    nets = {}
    for k in range(1, k_max + 1):
        d = dict(data, fleet={**data["fleet"], "replicas": k})
        try:
            sc = Scenario.from_dict(d)
        except cvxalloc.UnstableError:
            continue
        ref = cvxalloc.solve(sc, method="conic")
        assert ref.status == "optimal", (k, ref.status)
        nets[k] = (ref.objective - k * cost, ref)
        if best is None or nets[k][0] > nets[best][0]:
            best = k
    return best, nets


CASES = [
    ("example", 1.0, "random", 0.004),
    ("example", 1.0, "shortest-queue", 0.004),
    ("example", 0.6, "round-robin", 0.002),
    ("batching", 6.0, "random", 0.003),
    ("batching", 6.0, "shortest-queue", 0.003),
]


@pytest.mark.parametrize("which, rate, router, cost", CASES)
def test_plan_picks_the_k_and_budgets_of_brute_enumeration_with_the_conic_reference(
    example, which, rate, router, cost
):
    sc = example if which == "example" else cvxalloc.load_scenario(BATCHING)
    data = _data(sc, rate, router)
    k_max = 8
    best, nets = _brute(data, k_max, cost)
    ranked = sorted(v[0] for v in nets.values())
    assert ranked[-1] - ranked[-2] > 1e-6  # a clear winner, so the comparison means something
    plan = plan_fleet(data, k_max, replica_cost=cost)
    assert plan.chosen == best
    ref = nets[best][1]
    res = plan.best.result
    assert res.status == "optimal"
    assert abs(res.objective - ref.objective) <= 1e-8 * abs(ref.objective)
    np.testing.assert_allclose(res.tokens, ref.tokens, rtol=1e-4, atol=1e-3 * sc.max_tokens.max())
    # the joint certificate bounds every k's reference optimum
    assert all(net <= plan.upper_bound + 1e-12 for net, _ in nets.values())
    assert 0 <= plan.gap <= 1e-8 * abs(res.objective)
    # unstable k are named, not solved
    for e in plan.entries:
        assert (e.status == UNSTABLE) == (e.replicas not in nets)


@pytest.mark.parametrize("router", ["random", "shortest-queue"])
def test_without_a_cost_the_fewest_replicas_meeting_the_slo(example, router):
    data = _data(example, 1.0, router)
    data["constraints"] = {"max_mean_system_time": 12.0}
    plan = plan_fleet(data, 12)
    assert plan.criterion == "fewest replicas"
    chosen = plan.best
    assert chosen.result.mean_system_time <= 12.0 * (1 + 1e-9)
    for e in plan.entries[: plan.chosen - 1]:  # every smaller k proven without an allocation
        assert e.result is None and e.status in (UNSTABLE, "infeasible")
    ref = cvxalloc.solve(chosen.result.scenario, method="conic")
    assert ref.status == "optimal"
    assert abs(chosen.result.objective - ref.objective) <= 1e-8 * abs(ref.objective)
    # one fewer replica cannot meet the SLO whatever the budgets: the conic reference agrees
    fewer = Scenario.from_dict(dict(data, fleet={"replicas": plan.chosen - 1, "router": router}))
    with pytest.raises(cvxalloc.ScenarioError):
        cvxalloc.solve(fewer, method="conic")


def test_plan_json_has_the_contract_keys(example):
    plan = plan_fleet(_data(example, 1.0), 6, replica_cost=0.004, uniform=True)
    out = plan.to_dict()
    for key in ("replicas", "tokens", "objective", "certificate", "per_replicas"):
        assert key in out
    assert {"gap", "upper_bound"} <= set(out["certificate"])
    assert [e["replicas"] for e in out["per_replicas"]] == list(range(1, 7))
    for e in out["per_replicas"]:
        assert {"replicas", "status", "objective", "mean_system_time", "gap"} <= set(e)
    solved = [e for e in out["per_replicas"] if e["objective"] is not None]
    assert all(e["uniform"]["objective"] <= e["objective"] + 1e-12 for e in solved)
    json.dumps(out, allow_nan=False)


def test_nothing_stable_is_said_so(example):
    plan = plan_fleet(_data(example, 50.0), 3)
    assert plan.chosen is None and all(e.status == UNSTABLE for e in plan.entries)
    assert "no replica count up to 3" in plan.summary()


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"max_replicas": 0}, "max_replicas must be in"),
        ({"max_replicas": 2.5}, "max_replicas must be a whole number"),
        ({"max_replicas": 3, "replica_cost": -1.0}, "replica_cost must be a finite number >= 0"),
        ({"max_replicas": 3, "router": "fastest"}, "unknown router"),
    ],
)
def test_bad_arguments_are_refused(example, kwargs, words):
    with pytest.raises(ScenarioError, match=words):
        plan_fleet(_data(example, 1.0), **kwargs)


@pytest.mark.parametrize("example, k_max", [("example.toml", 30), ("example_batching.toml", 6)])
def test_the_operator_path_from_a_busy_log_to_a_plan_needs_no_hand_edit(
    tmp_path, capsys, example, k_max
):
    # one server cannot carry the conversation log (5.53 queries/s): traffic writes a
    # scenario with the fewest replicas that can, and plan runs on it as written
    out = tmp_path / "conv.toml"
    example = Path(cvxalloc.__file__).parent / "data" / example
    assert main(["traffic", str(CONV), "--scenario", str(example), "--output", str(out)]) == 0
    assert "cannot carry" in capsys.readouterr().out
    sc = cvxalloc.load_scenario(out)
    assert sc.arrival_rate == pytest.approx(5.53, abs=0.01) and sc.replicas > 1
    assert sc.arrival_scv == pytest.approx(1.197, abs=1e-3)
    argv = ["plan", str(out), "--max-replicas", str(k_max), "--replica-cost", "0.002", "--json"]
    code = main(argv)
    assert code == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["replicas"] >= sc.replicas and plan["certificate"]["gap"] <= 1e-9
    assert plan["per_replicas"][0]["status"] == "unstable"


def test_cli_plan_errors_exit_2_without_a_traceback(example, tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(cvxalloc.io.scenario_toml(example))
    assert main(["plan", str(path), "--max-replicas", "0"]) == 2
    assert main(["plan", str(path), "--max-replicas", "3", "--replica-cost", "nan"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--max-replicas must be >= 1" in err


def test_cli_plan_reads_a_task_table_beside_the_scenario(tmp_path, capsys):
    (tmp_path / "tasks.csv").write_text(
        "name,probability,max_tokens,service.base,service.per_token,accuracy.model,"
        "accuracy.floor,accuracy.ceiling,accuracy.scale\n"
        "math,0.3,8192,0.4,0.02,exponential,0.35,0.82,2500\n"
        "chat,0.7,2048,0.2,0.01,exponential,0.5,0.6,400\n"
    )
    # m1 at the minimum budgets is 0.26 s: at 4 queries/s one replica is at 1.04, two at 0.52
    path = tmp_path / "s.toml"
    path.write_text(
        'tasks = "tasks.csv"\n[queue]\narrival_rate = 4.0\nlatency_weight = 0.02\n'
        '[fleet]\nrouter = "shortest-queue"\n'
    )
    assert main(["plan", str(path), "--max-replicas", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [e["status"] for e in out["per_replicas"]][0] == "unstable"
    assert out["replicas"] == 2 and out["router"] == "shortest-queue"
