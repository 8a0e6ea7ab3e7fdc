"""A fleet behind a router: the [fleet] table, the queue layer, solvers and certificates.

Ground truths: one replica's exact model (random routing), finite differences
of the model's own value (derivatives), the conic reference and the
Frank-Wolfe certificate (optima), and the definition of convexity along
random segments (the approximate routers). Simulation is in test_fleet_simulation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cvxalloc
from cvxalloc.constraints import ConstraintError
from cvxalloc.errors import OptionError, ScenarioError
from cvxalloc.objective import Objective
from cvxalloc.queue import BatchingQueue, FIFOQueue, queue_model
from cvxalloc.queue.fleet import Fleet, FleetQueue, fleet_queue
from cvxalloc.queue.routing import RoundRobin, shortest_queue
from cvxalloc.sensitivity import sensitivity

ROUTERS = ("random", "round-robin", "shortest-queue")
BATCHING = Path(cvxalloc.__file__).parent / "data" / "example_batching.toml"


def fleet_of(sc, replicas: int, router: str, load: float = 1.0, **queue):
    """``sc`` as ``replicas`` replicas at ``load`` times its rate each (same per-replica rate)."""
    data = sc.to_dict()
    data["fleet"] = {"replicas": replicas, "router": router}
    data["queue"]["arrival_rate"] = sc.arrival_rate * replicas * load
    data["queue"].update(queue)
    return cvxalloc.Scenario.from_dict(data)


# --- the [fleet] table ------------------------------------------------------------
@pytest.mark.parametrize(
    "table, words",
    [
        ({"replica": 2}, 'unknown key "replica"; did you mean "replicas"?'),
        ({"replicas": 0}, "replicas must be a whole number >= 1 (got 0)"),
        ({"replicas": 2.5}, "replicas must be a whole number >= 1 (got 2.5)"),
        ({"replicas": True}, "replicas must be a whole number >= 1 (got True)"),
        ({"replicas": 2, "router": "shortest"}, 'did you mean "shortest-queue"?'),
        ({"replicas": 2, "router": "least-loaded"}, 'use one of "random", "round-robin"'),
    ],
)
def test_bad_fleet_tables_are_refused_naming_the_key(example, table, words):
    data = example.to_dict()
    data["fleet"] = table
    with pytest.raises(ScenarioError, match="fleet") as err:
        cvxalloc.Scenario.from_dict(data)
    assert words in str(err.value)


def test_fleet_round_trips_through_the_file_structure(example, tmp_path):
    sc = fleet_of(example, 3, "shortest-queue")
    assert sc.to_dict()["fleet"] == {"replicas": 3, "router": "shortest-queue"}
    again = eval(repr(sc), {"Scenario": cvxalloc.Scenario})
    assert again.fleet == sc.fleet and again.to_dict() == sc.to_dict()
    path = tmp_path / "fleet.toml"
    path.write_text(cvxalloc.io.scenario_toml(sc))
    assert cvxalloc.load_scenario(path).fleet == Fleet(3, "shortest-queue")


def test_utilization_and_capacity_are_one_replicas(example):
    sc = fleet_of(example, 4, "random", load=1.0)
    t = example.max_tokens * 0.01
    assert sc.capacity == 4.0 and sc.replicas == 4
    assert sc.utilization(t) == pytest.approx(example.utilization(t), rel=1e-15)
    assert sc.max_stable_arrival_rate(t) == pytest.approx(4 * example.max_stable_arrival_rate(t))
    # the stability limit is the fleet's: k times one replica's
    with pytest.raises(ScenarioError, match="add replicas"):
        fleet_of(example, 4, "random", load=1.01 / example.utilization(example.min_tokens))


# --- one replica is exactly today's model; random routing is one replica's ------------
@pytest.mark.parametrize("router", ROUTERS)
def test_one_replica_is_bit_for_bit_the_single_server(example, router):
    sc = fleet_of(example, 1, router, arrival_scv=0.3)
    plain = example.with_(arrival_scv=0.3)
    assert queue_model(sc) == queue_model(plain)
    a, b = cvxalloc.solve(sc), cvxalloc.solve(plain)
    assert np.array_equal(a.tokens, b.tokens) and a.objective == b.objective


@pytest.mark.parametrize("scv", [1.0, 0.3, 4.0])
@pytest.mark.parametrize("k", [2, 7, 16])
def test_random_routing_is_one_replica_at_its_share_with_the_thinned_scv(example, k, scv):
    sc = fleet_of(example, k, "random", load=1.3, arrival_scv=scv)
    replica = example.with_(arrival_rate=sc.arrival_rate / k, arrival_scv=1 + (scv - 1) / k)
    rng = np.random.default_rng(k)
    for _ in range(5):
        t = rng.uniform(example.min_tokens, example.stable_max_tokens() * 0.5)
        a, b = Objective(sc).evaluate(t), Objective(replica).evaluate(t)
        assert a.mean_system_time == pytest.approx(b.mean_system_time, rel=1e-14)
        assert a.utilization == pytest.approx(b.utilization, rel=1e-14)
    res, one = cvxalloc.solve(sc), cvxalloc.solve(replica)
    assert res.status == one.status == "optimal"
    np.testing.assert_allclose(res.tokens, one.tokens, rtol=1e-9, atol=1e-9)


def test_random_routing_of_batching_replicas_is_one_replica_at_its_share():
    sc = cvxalloc.load_scenario(BATCHING)
    fleet = fleet_of(sc, 5, "random", load=3.0)
    replica = sc.with_(arrival_rate=fleet.arrival_rate / 5)
    t = sc.min_tokens + 300.0
    assert Objective(fleet).latency.value(t) == pytest.approx(
        Objective(replica).latency.value(t), rel=1e-14
    )


@pytest.mark.parametrize("scv, replica_scv", [(2.0, 1.0), (12.0, 3.0)])
def test_round_robin_of_batching_replicas_is_one_replica_at_poisson_or_bursty_gaps(
    scv, replica_scv
):
    # smooth gaps (c_a^2 / k < 1) are taken as Poisson at a batching replica; bursty ones kept
    sc = cvxalloc.load_scenario(BATCHING)
    fleet = fleet_of(sc, 4, "round-robin", load=3.0, arrival_scv=scv)
    q = queue_model(fleet)
    assert isinstance(q, BatchingQueue) and q.arrival_scv == replica_scv
    replica = sc.with_(arrival_rate=fleet.arrival_rate / 4, arrival_scv=replica_scv)
    t = sc.min_tokens + 300.0
    assert Objective(fleet).latency.value(t) == Objective(replica).latency.value(t)


def test_shortest_queue_of_batching_replicas_pools_the_admission_limit():
    data = cvxalloc.load_scenario(BATCHING).to_dict()
    data["server"]["max_running"] = 16
    sc = fleet_of(cvxalloc.Scenario.from_dict(data), 3, "shortest-queue", load=2.0)
    q = queue_model(sc)
    assert q.max_running == 48 and q.capacity == pytest.approx(3 * sc.server.capacity)


# --- the approximate routers: derivatives, convexity ---------------------------------
def _fleet_queues():
    out = []
    for router, scv in (("round-robin", 1.0), ("shortest-queue", 1.0)):
        for k in (2, 5, 16):
            out.append((router, scv, k, "fifo"))
    return out + [("round-robin", 2.5, 5, "fifo"), ("shortest-queue", 0.4, 3, "fifo")]


def test_round_robin_of_bursty_arrivals_is_kingman_at_the_replicas_scv():
    # c_a^2 / k >= 1: no correction for smooth arrivals applies
    q = fleet_queue(Fleet(2, "round-robin"), 1.8, 2.5, FIFOQueue)
    assert q == FIFOQueue(0.9, 1.25)


def _queue(router, scv, k, base):
    return fleet_queue(Fleet(k, router), 0.9 * k, scv, FIFOQueue)


@pytest.mark.parametrize("router, scv, k, base", _fleet_queues())
@pytest.mark.parametrize("rho", [0.4, 0.8])
def test_fleet_queue_derivatives_match_differences(router, scv, k, base, rho):
    q = _queue(router, scv, k, base)
    assert isinstance(q, FleetQueue)
    m1 = rho * q.capacity / q.arrival_rate
    m2 = 2.3 * m1 * m1
    A, B = q.derivatives(m1, m2)
    h1, h2 = 1e-6 * m1, 1e-6 * m2

    def d(f, i, x=(m1, m2)):
        e = [h1, 0.0] if i == 0 else [0.0, h2]
        return (f(x[0] + e[0], x[1] + e[1]) - f(x[0] - e[0], x[1] - e[1])) / (2 * (e[0] + e[1]))

    assert A == pytest.approx(d(q.value, 0), rel=1e-7)
    assert B == pytest.approx(2 * d(q.value, 1), rel=1e-7, abs=1e-12)
    H = q.hessian(m1, m2)
    assert H[0, 0] == pytest.approx(d(lambda a, b: q.derivatives(a, b)[0], 0), rel=1e-5)
    assert H[0, 1] == pytest.approx(d(lambda a, b: q.derivatives(a, b)[0], 1), rel=1e-5, abs=1e-9)
    assert 2 * H[1, 1] == pytest.approx(
        d(lambda a, b: q.derivatives(a, b)[1], 1), rel=1e-5, abs=1e-9
    )
    # the scalars in the slack u = 1 - rho and m2
    u = 1 - rho
    S = q.scalars(u, m2)
    assert S[:2] == pytest.approx((A, B), rel=1e-12)
    hu = 1e-6 * u
    up, dn = q.scalars(u + hu, m2), q.scalars(u - hu, m2)
    hi, lo = q.scalars(u, m2 + h2), q.scalars(u, m2 - h2)
    assert S[2] == pytest.approx((up[0] - dn[0]) / (2 * hu), rel=1e-5)
    assert S[3] == pytest.approx((hi[0] - lo[0]) / (2 * h2), rel=1e-5, abs=1e-9)
    assert S[4] == pytest.approx((up[1] - dn[1]) / (2 * hu), rel=1e-5, abs=1e-9)
    assert S[5] == pytest.approx((hi[1] - lo[1]) / (2 * h2), rel=1e-5, abs=1e-9)
    # changes without cancellation
    dm1, dm2 = np.array([1e-3 * m1, 0.05 * m1]), np.array([-1e-3 * m2, 0.1 * m2])
    exact = [q.value(m1 + a, m2 + b) - q.value(m1, m2) for a, b in zip(dm1, dm2)]
    np.testing.assert_allclose(q.change(m1, m2, dm1, dm2), exact, rtol=1e-9)


@pytest.mark.parametrize("router, scv, k, base", _fleet_queues())
def test_fleet_queue_parameter_partials_match_rebuilt_queues(router, scv, k, base):
    q = _queue(router, scv, k, base)
    m1 = 0.7 * q.capacity / q.arrival_rate
    m2 = 1.9 * m1 * m1
    lam = 0.9 * k
    par = q.parameter_partials(m1, m2)

    def at(rate, c):
        qq = fleet_queue(Fleet(k, router), rate, c, FIFOQueue)
        return (qq.value(m1, m2), *qq.derivatives(m1, m2))

    h = 1e-6
    fd = (np.array(at(lam * (1 + h), scv)) - np.array(at(lam * (1 - h), scv))) / (2 * h * lam / k)
    np.testing.assert_allclose(par["arrival_rate"], fd, rtol=1e-6, atol=1e-10)
    if "arrival_scv" in par:
        # the queue's own scv: one replica's (round-robin thins it by k)
        f = Fleet(k, router).scv_factor
        fd = (np.array(at(lam, scv + h)) - np.array(at(lam, scv - h))) / (2 * h * f)
        np.testing.assert_allclose(par["arrival_scv"], fd, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("k", [2, 3, 4, 8, 16, 64, 256, 4096])
def test_shortest_queue_transform_is_convex_nondecreasing_with_the_heavy_traffic_slope(k):
    tr = shortest_queue(k)
    y = np.concatenate([np.linspace(0, 3 * tr.y_star, 3001), np.geomspace(1e-6, 1e9, 3001)])
    f, f1, f2 = tr.jet(y)
    assert f[0] == 1.0 and np.all(np.diff(f[np.argsort(y)]) >= -1e-15)
    assert np.all(f2 >= 0) and np.all(f1 >= 0) and f1.max() == pytest.approx(1 / k)
    # the minorant lies below Nelson and Philips' form and touches it up to y*
    g = tr._np_jet(y)[0]
    assert np.all(f <= g * (1 + 1e-14))
    inside = y <= tr.y_star
    np.testing.assert_allclose(f[inside], g[inside], rtol=1e-14)


def test_round_robin_transform_is_kraemer_langenbach_belz():
    c, rho, cs2 = 0.25, 0.6, 0.7
    kingman = rho * (c + cs2) / (2 * (1 - rho))  # the wait in units of m1
    klb = kingman * np.exp(-2 * (1 - rho) * (1 - c) ** 2 / (3 * rho * (c + cs2)))
    assert RoundRobin(c).jet(np.array([kingman]))[0][0] == pytest.approx(1 + klb, rel=1e-14)


@pytest.mark.parametrize("router", ["round-robin", "shortest-queue"])
@pytest.mark.parametrize("k", [2, 8])
def test_fleet_latency_is_convex_in_the_budgets_along_random_segments(example, router, k):
    sc = fleet_of(example, k, router, load=2.0, arrival_scv=0.5)
    lat = Objective(sc).latency
    rng = np.random.default_rng(k)
    hi = sc.stable_max_tokens()
    worst = 0.0
    for _ in range(200):
        a, b = rng.uniform(sc.min_tokens, hi), rng.uniform(sc.min_tokens, hi)
        wa, wb, wm = lat.value(a), lat.value(b), lat.value(0.5 * (a + b))
        if np.isfinite(wa) and np.isfinite(wb):
            worst = max(worst, (wm - 0.5 * (wa + wb)) / max(wa, wb))
    assert worst <= 1e-12


# --- solvers ----------------------------------------------------------------------
@pytest.mark.parametrize("router", ["round-robin", "shortest-queue"])
@pytest.mark.parametrize("k, load", [(2, 1.5), (8, 3.0)])
def test_aggregate_and_conic_agree_and_are_certified(example, router, k, load):
    sc = fleet_of(example, k, router, load=load, arrival_scv=0.6)
    ref = cvxalloc.solve(sc, method="conic")
    res = cvxalloc.solve(sc)
    assert ref.status == "optimal" and res.status == "optimal"
    assert res.certificate.relative_gap <= 1e-9
    assert abs(res.objective - ref.objective) <= 1e-8 * abs(ref.objective)
    np.testing.assert_allclose(res.tokens, ref.tokens, rtol=1e-4, atol=1e-2 * sc.max_tokens.max())
    assert res.to_dict()["fleet"]["model"] == "approximate"


def test_shortest_queue_of_batching_replicas_is_one_server_on_the_pooled_curve():
    sc = fleet_of(cvxalloc.load_scenario(BATCHING), 3, "shortest-queue", load=5.0)
    q = queue_model(sc)
    # n queries spread evenly over 3 replicas: total rate 3 c(n / 3), n alone up to 3
    n = np.arange(0, 200)
    c = np.interp(n / 3, [0, *sc.server.concurrency], [0, *sc.server.speedup])  # c(0) = 0
    np.testing.assert_allclose(q.curve.rate(n), 3 * c, rtol=1e-12, atol=1e-12)
    assert q.arrival_rate == sc.arrival_rate and q.capacity == sc.capacity


def test_shortest_queue_of_batching_replicas_agrees_with_conic():
    sc = fleet_of(cvxalloc.load_scenario(BATCHING), 4, "shortest-queue", load=8.0)
    ref = cvxalloc.solve(sc, method="conic")
    res = cvxalloc.solve(sc)
    assert ref.status == res.status == "optimal"
    assert abs(res.objective - ref.objective) <= 1e-8 * abs(ref.objective)


@pytest.mark.parametrize("method", ["fixed-point", "gradient", "mixed-integer"])
def test_other_methods_refuse_an_approximate_router_but_take_random(example, method):
    sc = fleet_of(example, 3, "shortest-queue")
    with pytest.raises(OptionError, match="shortest-queue routing"):
        cvxalloc.solve(sc, method=method)
    rnd = fleet_of(example, 3, "random", load=1.5)
    ref = cvxalloc.solve(rnd, method="conic")
    res = cvxalloc.solve(rnd, method=method)
    assert ref.status == "optimal"
    assert res.objective >= ref.objective - 1e-6 * abs(ref.objective)


@pytest.mark.parametrize("router", ["round-robin", "shortest-queue"])
@pytest.mark.parametrize(
    "cons",
    [
        {"max_mean_system_time": 14.0},
        {"max_mean_system_time": 16.0, "max_mean_tokens": 900.0},
        {"max_utilization": 0.7},
    ],
)
def test_constraints_with_an_approximate_router_agree_with_conic(example, router, cons):
    data = fleet_of(example, 3, router, load=10.0 / 3).to_dict()
    data["constraints"] = cons
    sc = cvxalloc.Scenario.from_dict(data)
    ref = cvxalloc.solve(sc, method="conic")
    res = cvxalloc.solve(sc)
    assert ref.status == res.status == "optimal"
    assert abs(res.objective - ref.objective) <= 1e-8 * abs(ref.objective)
    if "max_mean_system_time" in cons:
        assert res.mean_system_time <= cons["max_mean_system_time"] * (1 + 1e-9)


def test_a_tail_slo_with_an_approximate_router_is_refused(example):
    data = fleet_of(example, 3, "shortest-queue").to_dict()
    data["constraints"] = {"tail": {"quantile": 0.99, "max_system_time": 100.0}}
    sc = cvxalloc.Scenario.from_dict(data)
    with pytest.raises(ConstraintError, match="tail constraint is not supported"):
        cvxalloc.solve(sc)


def test_constraints_with_random_routing_are_per_replica(example):
    data = fleet_of(example, 4, "random", load=1.0).to_dict()
    data["constraints"] = {"max_utilization": 0.2}
    sc = cvxalloc.Scenario.from_dict(data)
    res = cvxalloc.solve(sc)
    ref = cvxalloc.solve(sc, method="conic")
    assert res.status == ref.status == "optimal"
    assert res.utilization <= 0.2 * (1 + 1e-9)
    assert abs(res.objective - ref.objective) <= 1e-8 * abs(ref.objective)


@pytest.mark.parametrize("router", ROUTERS)
def test_sensitivity_of_a_fleet_matches_re_solves(example, router):
    sc = fleet_of(example, 4, router, load=2.0, arrival_scv=1.7)
    s = sensitivity(sc, cvxalloc.solve(sc))
    h = 1e-6
    for key, scale in (("arrival_rate", sc.arrival_rate), ("arrival_scv", 1.0)):
        up = cvxalloc.solve(sc.with_(**{key: getattr(sc, key) + h * scale}))
        dn = cvxalloc.solve(sc.with_(**{key: getattr(sc, key) - h * scale}))
        d = getattr(s, key)
        fd = (up.objective - dn.objective) / (2 * h * scale)
        assert d.objective == pytest.approx(fd, rel=1e-5)
        assert d.utilization == pytest.approx(
            (up.utilization - dn.utilization) / (2 * h * scale), rel=1e-5
        )


def test_sensitivity_to_replicas_is_the_difference_of_certified_optima(example):
    sc = fleet_of(example, 3, "shortest-queue", load=2.5)
    rep = sensitivity(sc, cvxalloc.solve(sc)).replicas
    assert rep["replicas"] == 3
    for key, k in (("one_more", 4), ("one_fewer", 2)):
        ref = cvxalloc.solve(sc.with_fleet(Fleet(k, "shortest-queue")), method="conic")
        assert ref.status == "optimal"
        assert rep[key] == pytest.approx(ref.objective, rel=1e-8)
    assert rep["forward"] > 0 > -rep["backward"]  # a replica more helps, one fewer hurts


def test_a_tail_slo_on_a_random_fleet_is_one_replicas(example):
    # the tail constraint's Kingman bound takes the replica's rate, not the fleet's
    data = example.to_dict()
    data["constraints"] = {"tail": {"quantile": 0.99, "max_system_time": 250.0}}
    one = cvxalloc.Scenario.from_dict(data)
    fleet = fleet_of(one, 3, "random")
    a, b = cvxalloc.solve(fleet), cvxalloc.solve(one)
    assert a.status == b.status == "optimal"
    np.testing.assert_allclose(a.tokens, b.tokens, rtol=1e-9, atol=1e-6)
