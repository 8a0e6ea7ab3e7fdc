"""``[server] service_scv = "auto"``: the batching model at the plan's own service scv.

The burst and admission terms of the batching model take the mix's service scv ``c``
as a constant (so ``W`` is convex); ``"auto"`` asks for the ``c`` the plan has.
Held here against the definition (a fixed point: the model's ``c`` is the optimum's
own ``m2 / m1^2 - 1``), against explicit solves at that ``c`` (same optimum, same
certificate), and through every workflow that takes a scenario.
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

import cvxalloc
from cvxalloc.baselines import baselines
from cvxalloc.cli import main
from cvxalloc.policy import build_policy
from cvxalloc.sensitivity import sensitivity
from cvxalloc.solve import SERVICE_SCV_RTOL

BATCHING = resources.files("cvxalloc").joinpath("data/example_batching.toml")


def _auto(ca2: float, max_running=None, rate: float = 0.2) -> cvxalloc.Scenario:
    sc = cvxalloc.load_scenario(BATCHING)
    server = {**sc.server.curve.to_dict(), "service_scv": "auto"}
    if max_running is not None:
        server["max_running"] = max_running
    return sc.with_(arrival_rate=rate, arrival_scv=ca2, server=server)


@pytest.mark.parametrize(
    ("ca2", "max_running", "rate"),
    [(173.0, None, 0.2), (9.0, None, 0.5), (0.3, 48, 0.2), (1.0, 8, 0.2)],
)
def test_solve_finds_the_plan_own_service_scv(ca2, max_running, rate):
    sc = _auto(ca2, max_running, rate)
    assert sc.auto_service_scv
    res = cvxalloc.solve(sc)
    info = res.diagnostics["service_scv"]
    c = info["value"]
    # a fixed point: the plan's own scv is the one its model assumed
    own = sc.service_scv_at(res.tokens)
    assert abs(own - c) <= SERVICE_SCV_RTOL * max(1.0, c)
    assert info["own"] == pytest.approx(own, rel=1e-12) and 1 <= info["solves"] <= 10
    # the result is the certified optimum of the model with that c, as an explicit solve
    assert res.scenario.server.service_scv == c and res.status == "optimal"
    explicit = cvxalloc.solve(sc.with_service_scv(c), method="conic")
    scale = abs(explicit.objective)
    assert abs(res.objective - explicit.objective) <= 1e-7 * scale
    assert res.certificate.upper_bound >= explicit.objective - 1e-9 * scale
    assert explicit.certificate.upper_bound >= res.objective - 1e-9 * scale
    # and "auto" is not "1": the plan's own is far from exponential here
    assert abs(c - 1.0) > 1.0


def test_poisson_without_a_limit_ignores_it():
    sc = _auto(1.0)
    assert not sc.auto_service_scv  # the model does not use service_scv
    res, plain = cvxalloc.solve(sc), cvxalloc.solve(cvxalloc.load_scenario(BATCHING))
    assert "service_scv" not in res.diagnostics
    np.testing.assert_array_equal(res.tokens, plain.tokens)


def test_an_allocation_is_judged_at_its_own_service_scv():
    sc = _auto(9.0, rate=0.5)
    t = 0.3 * sc.max_tokens
    fixed = sc.with_service_scv(sc.service_scv_at(t))
    assert cvxalloc.evaluate(sc, t).objective == cvxalloc.evaluate(fixed, t).objective
    assert cvxalloc.certify(sc, t).gap == cvxalloc.certify(fixed, t).gap
    with pytest.raises(cvxalloc.ScenarioError, match='service_scv = "auto"'):
        cvxalloc.objective.Objective(sc)  # a model needs a number: the error says so


def test_round_trip_and_bad_values(tmp_path):
    sc = _auto(9.0)
    assert sc.to_dict()["server"]["service_scv"] == "auto"
    assert cvxalloc.Scenario.from_dict(sc.to_dict()).auto_service_scv
    for bad in ("automatic", True, -1.0):
        with pytest.raises(cvxalloc.ScenarioError, match="service_scv"):
            sc.with_(server={**sc.server.curve.to_dict(), "service_scv": bad})


def test_every_workflow_takes_it(tmp_path, capsys):
    sc = _auto(9.0, max_running=48, rate=0.5)
    c = cvxalloc.solve(sc).diagnostics["service_scv"]["value"]
    base = baselines(sc)
    assert base["uniform"].scenario.server.service_scv == c  # the optimum's model
    sens = sensitivity(sc)
    assert sens.scenario.server.service_scv == c
    policy = build_policy(sc)
    assert policy.gap(0.5) <= 1e-4
    path = tmp_path / "auto.toml"
    path.write_text(cvxalloc.io.scenario_toml(sc))
    for argv in (
        ["sweep", str(path), "--latency-weight", "0.0005:0.002:2", "--no-progress"],
        ["plan", str(path), "--max-replicas", "2", "--uniform"],
        ["simulate", str(path), "--queries", "20000", "--seed", "1"],
    ):
        assert main(argv) == 0, (argv, capsys.readouterr().err)
    capsys.readouterr()
    assert main(["solve", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["service_scv"] == pytest.approx(c, rel=SERVICE_SCV_RTOL)


def test_traffic_writes_auto_for_bursty_arrivals_on_a_batching_server(tmp_path):
    log = tmp_path / "log.csv"
    gaps = np.random.default_rng(0).gamma(0.25, 4.0, 2000)  # scv 4
    log.write_text("time\n" + "".join(f"{t:.6f}\n" for t in np.cumsum(gaps)))
    out = tmp_path / "out.toml"
    assert main(["traffic", str(log), "--scenario", str(BATCHING), "-o", str(out)]) == 0
    assert cvxalloc.load_scenario(out).server.service_scv == "auto"
