"""The batching server composes with every analysis (issue 19 item 3).

Bursty arrivals and the admission limit enter the batching model through the queue
interface, so every constraint, the sensitivity, the SLO sweep and the menus work on a
batching server as on the FIFO one. Held here against independent ground truth:

* the default method against the conic reference (each with its own certificate) on
  random batching scenarios with each constraint binding, arrival_scv in
  {0.3, 1, 9, 173}, with and without ``max_running``;
* shadow prices against re-solves with the limit moved;
* sensitivity in the arrival rate and in ``arrival_scv`` against re-solves.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
from conftest import random_constraints
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import cvxalloc
from cvxalloc import Constraints
from cvxalloc.certificate import relative_scale
from cvxalloc.cli import main
from cvxalloc.constraints import InfeasibleError, check_feasible
from cvxalloc.sensitivity import sensitivity
from cvxalloc.testing import scenarios

BATCHING = str(resources.files("cvxalloc").joinpath("data/example_batching.toml"))
#: Arrival variability drawn: smooth, Poisson, bursty, the Azure code trace's.
SCVS = (0.3, 1.0, 9.0, 173.0)


@pytest.fixture(scope="module")
def example():
    return cvxalloc.load_scenario(BATCHING)


def _server(max_running) -> dict:
    """The batching example's [server] table, with an admission limit or without."""
    table = cvxalloc.load_scenario(BATCHING).server.curve.to_dict()
    return table if max_running is None else {**table, "max_running": max_running}


def _on_the_example_server(sc, ca2: float, max_running):
    """``sc``'s tasks at about the same utilization on the batching example's server."""
    batching = sc.with_(server=_server(max_running))
    return batching.with_(arrival_rate=sc.arrival_rate * batching.capacity, arrival_scv=ca2)


def _assert_agree(res, ref) -> None:
    """Default and conic within 1e-7 of |U|, each certificate bounding the other's point.

    The default method is certified to 1e-9 of |U|; the conic reference's status is
    honest (``optimal`` exactly when its polished point is certified within polish_rtol
    1e-10, else ``optimal_inaccurate``: seen at 1.7e-10 on one draw).
    """
    scale = relative_scale(ref.objective)
    assert res.status == "optimal", res.message
    assert ref.status in ("optimal", "optimal_inaccurate"), ref.message
    assert (ref.status == "optimal") == ref.certificate.within(1e-10), ref.message
    assert abs(res.objective - ref.objective) <= 1e-7 * scale
    assert res.certificate.upper_bound >= ref.objective - 1e-9 * scale
    assert ref.certificate.upper_bound >= res.objective - 1e-9 * scale
    for report in res.diagnostics.get("constraints", {}).values():
        assert report["slack"] >= 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sc0=scenarios(max_n=6, loads=("light", "heavy", "saturated")),
    seed=st.integers(0, 2**32 - 1),
    ca2=st.sampled_from(SCVS),
    max_running=st.sampled_from([None, 8, 48]),
)
def test_every_constraint_default_and_conic_agree(sc0, seed, ca2, max_running):
    try:
        sc0 = _on_the_example_server(sc0, ca2, max_running)
    except cvxalloc.errors.ScenarioError:
        event("unstable at the minimum budgets on this server")
        return  # nothing to solve
    sc = sc0.with_(constraints=random_constraints(sc0, np.random.default_rng(seed)))
    try:
        check_feasible(sc)
    except InfeasibleError:
        event("infeasible")
        with pytest.raises(InfeasibleError):
            cvxalloc.solve(sc)
        return
    event(f"solved, max_running={max_running}")
    conic = cvxalloc.solve(sc, method="conic")
    event(f"conic {conic.status}")
    _assert_agree(cvxalloc.solve(sc), conic)


@pytest.mark.parametrize("ca2", SCVS)
@pytest.mark.parametrize(
    "kind", ["max_mean_system_time", "max_mean_tokens", "max_utilization", "min_accuracy"]
)
def test_each_constraint_binds_with_its_shadow_price(example, kind, ca2):
    sc0 = example.with_(arrival_scv=ca2, arrival_rate=0.5)
    r0 = cvxalloc.solve(sc0)
    limit = {
        "max_mean_system_time": 0.8 * r0.mean_system_time,
        "max_mean_tokens": 0.7 * float(sc0.probability @ r0.tokens),
        "max_utilization": 0.8 * r0.utilization,
        "min_accuracy": float(sc0.accuracy.value(r0.tokens)[0]) + 0.004,
    }[kind]

    def constrained(value: float):
        if kind == "min_accuracy":
            floors = np.full(sc0.n, np.nan)
            floors[0] = value
            return sc0.with_(constraints=Constraints(min_accuracy=floors))
        return sc0.with_(constraints=Constraints(**{kind: value}))

    res = cvxalloc.solve(constrained(limit))
    _assert_agree(res, cvxalloc.solve(constrained(limit), method="conic"))
    key = f"{kind}[{sc0.names[0]}]" if kind == "min_accuracy" else kind
    report = res.diagnostics["constraints"][key]
    assert report["active"] and report["shadow_price"] > 0
    # the shadow price is dU*/d(limit): loosening (a cap up, a floor down) gains utility
    h = 1e-4 * abs(limit)
    sign = -1.0 if kind == "min_accuracy" else 1.0
    up = cvxalloc.solve(constrained(limit + sign * h)).objective
    down = cvxalloc.solve(constrained(limit - sign * h)).objective
    assert (up - down) / (2 * h) == pytest.approx(report["shadow_price"], rel=1e-3)


@pytest.mark.parametrize("ca2", [0.3, 9.0])
@pytest.mark.parametrize("max_running", [None, 8])
def test_sensitivity_in_rate_and_burstiness_matches_re_solves(example, ca2, max_running):
    sc = example.with_(server=_server(max_running), arrival_scv=ca2)
    sens = sensitivity(sc)
    for name, key, h in (
        ("arrival_rate", "arrival_rate", 1e-5 * sc.arrival_rate),
        ("arrival_scv", "arrival_scv", 1e-5 * ca2),
    ):
        d = getattr(sens, name)
        plus = cvxalloc.solve(sc.with_(**{key: getattr(sc, key) + h}))
        minus = cvxalloc.solve(sc.with_(**{key: getattr(sc, key) - h}))
        assert (plus.objective - minus.objective) / (2 * h) == pytest.approx(
            d.objective, rel=1e-4, abs=1e-9
        )
        assert (plus.utilization - minus.utilization) / (2 * h) == pytest.approx(
            d.utilization, rel=1e-3, abs=1e-9
        )
        scale = np.max(np.abs(d.tokens)) + 1e-12
        np.testing.assert_allclose(
            (plus.tokens - minus.tokens) / (2 * h), d.tokens, rtol=1e-3, atol=1e-3 * scale
        )


def test_sweep_of_the_slo_matches_point_solves(example, capsys):
    w0 = cvxalloc.solve(example).mean_system_time
    lo, hi = 0.6 * w0, 0.95 * w0
    assert main(["sweep", BATCHING, "--slo", f"{lo}:{hi}:3", "--json", "--no-progress"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["slo"] == pytest.approx(np.linspace(lo, hi, 3).tolist())
    for slo, status, objective in zip(out["slo"], out["status"], out["objective"]):
        sc = example.with_(constraints=Constraints(max_mean_system_time=float(slo)))
        ref = cvxalloc.solve(sc, method="conic")
        assert status == "optimal" and ref.status == "optimal"
        assert objective == pytest.approx(ref.objective, rel=1e-7)


def test_menus_with_plain_solve_are_named(tmp_path, capsys):
    text = open(BATCHING, encoding="utf-8").read()
    menu = text.replace(
        'name = "chat"\n', 'name = "chat"\nlevels = [0, 256, 512, 1024, 2048, 4096, 8192]\n'
    )
    path = tmp_path / "menu.toml"
    path.write_text(menu)
    assert main(["solve", str(path), "--no-baselines"]) == 0
    err = capsys.readouterr().err
    assert "chat" in err and "--integer" in err  # off-menu budgets are named, with the fix
    assert main(["solve", str(path), "--no-baselines", "--integer", "--json"]) == 0
    out, err = capsys.readouterr()
    import json

    assert json.loads(out)["tokens"]["chat"] in (0, 256, 512, 1024, 2048, 4096, 8192)
    assert "--integer" not in err
