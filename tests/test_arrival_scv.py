"""Bursty arrivals (issue 11): the Kingman queue model against independent ground truth.

* the formula against hand cases and against Pollaczek-Khinchine at ``c_a^2 = 1``;
* the queue model's derivatives, Hessian, slack scalars and parameter partials
  against finite differences;
* the numeric latency term against its CVXPY form;
* the default method and the conic reference against an independent CVXPY model
  (written here, always in the variance form of the numerator), certificates both ways;
* integer budgets against brute force; sensitivity in ``c_a^2`` against re-solves.
"""

from __future__ import annotations

import itertools
import json
import warnings

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

import cvxalloc
from cvxalloc.errors import OptionError, ScenarioError, UnstableError
from cvxalloc.objective import Objective
from cvxalloc.queue import FIFOQueue, Latency, kingman, pollaczek_khinchine
from cvxalloc.sensitivity import sensitivity
from cvxalloc.testing import random_scenario, scenarios

#: Arrival scv values drawn in the random tests: smooth, Poisson, bursty, the Azure code trace.
SCVS = (0.0, 0.3, 1.0, 2.5, 173.0)


# --------------------------------------------------------------------- formula
def test_kingman_hand_cases():
    # D/D/1: deterministic arrivals and service never wait.
    assert kingman(0.5, 1.0, 1.0, arrival_scv=0.0) == 1.0
    # GI/M/1 heavy-traffic form: Wq = lam (c_a^2 + c_s^2) m1^2 / (2 (1 - rho)) with c_s^2 = 1.
    lam, m1, ca2 = 0.4, 2.0, 3.0
    wq = lam * (ca2 + 1.0) * m1**2 / (2 * (1 - lam * m1))
    assert kingman(lam, m1, 2 * m1**2, ca2) == pytest.approx(m1 + wq, rel=1e-15)
    assert kingman(1.0, 1.0, 2.0, 5.0) == np.inf


@given(
    lam=st.floats(0.0, 10.0),
    m1=st.floats(1e-3, 10.0),
    spread=st.floats(1.0, 5.0),
)
def test_kingman_at_one_is_pollaczek_khinchine_exactly(lam, m1, spread):
    m2 = spread * m1 * m1
    assert kingman(lam, m1, m2, 1.0) == pollaczek_khinchine(lam, m1, m2)


# --------------------------------------------------------------- derivatives
@settings(max_examples=60, deadline=None)
@given(
    lam=st.floats(0.05, 2.0),
    rho=st.floats(0.05, 0.95),
    spread=st.floats(1.0, 4.0),
    ca2=st.sampled_from(SCVS),
)
def test_queue_model_derivatives_match_finite_differences(lam, rho, spread, ca2):
    q = FIFOQueue(lam, ca2)
    m1 = rho / lam
    m2 = spread * m1 * m1
    h1, h2 = 1e-6 * m1, 1e-6 * m2

    def grad(a, b):
        A, B = q.derivatives(a, b)
        return np.array([A, 0.5 * B])

    num_g = [
        (q.value(m1 + h1, m2) - q.value(m1 - h1, m2)) / (2 * h1),
        (q.value(m1, m2 + h2) - q.value(m1, m2 - h2)) / (2 * h2),
    ]
    scale = q.value(m1, m2) / m1
    np.testing.assert_allclose(grad(m1, m2), num_g, rtol=1e-5, atol=1e-7 * scale)
    num_h = np.column_stack(
        [
            (grad(m1 + h1, m2) - grad(m1 - h1, m2)) / (2 * h1),
            (grad(m1, m2 + h2) - grad(m1, m2 - h2)) / (2 * h2),
        ]
    )
    H = q.hessian(m1, m2)
    np.testing.assert_allclose(H, num_h, rtol=1e-4, atol=1e-6 * np.abs(H).max())
    # slack coordinates: A, B and their partials in (u, m2)
    u = 1.0 - rho
    A, B, dA_du, dA_dm2, dB_du = q.scalars(u, m2)
    np.testing.assert_allclose([A, B], q.derivatives(m1, m2), rtol=1e-12)
    hu = 1e-6 * u
    up, dn = q.scalars(u + hu, m2), q.scalars(u - hu, m2)
    # dA/du is a difference of terms of order (A + B) / u that can cancel to ~0
    # (lam=1.75, rho=0.5, spread=4, ca2=0): the difference quotient is then
    # accurate only to its rounding relative to those terms, not to dA/du itself.
    np.testing.assert_allclose(
        [dA_du, dB_du],
        [(up[0] - dn[0]) / (2 * hu), (up[1] - dn[1]) / (2 * hu)],
        rtol=1e-5,
        atol=1e-7 * (abs(A) + abs(B)) / u,
    )
    assert dA_dm2 == pytest.approx((q.scalars(u, m2 + h2)[0] - q.scalars(u, m2 - h2)[0]) / (2 * h2))
    # partials in the queue's parameters
    par = q.parameter_partials(m1, m2)
    hl, hc = 1e-6 * lam, 1e-6 * max(ca2, 1.0)

    def wab(qq):
        return np.array([qq.value(m1, m2), *qq.derivatives(m1, m2)])

    d_lam = (wab(FIFOQueue(lam + hl, ca2)) - wab(FIFOQueue(lam - hl, ca2))) / (2 * hl)
    d_c = (wab(FIFOQueue(lam, ca2 + hc)) - wab(FIFOQueue(lam, max(ca2 - hc, 0.0)))) / (
        ca2 + hc - max(ca2 - hc, 0.0)
    )
    np.testing.assert_allclose(par["arrival_rate"], d_lam, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(par["arrival_scv"], d_c, rtol=1e-4, atol=1e-9)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(max_n=6), ca2=st.sampled_from(SCVS), data=st.data())
def test_latency_numeric_equals_cvxpy_form(sc, ca2, data):
    sc = sc.with_(arrival_scv=ca2)
    seed = data.draw(st.integers(0, 2**31))
    lo, hi = sc.min_tokens, sc.max_tokens
    t = lo + np.random.default_rng(seed).random(sc.n) * (hi - lo)
    lat = Latency(sc)
    if lat.moments(t).rho >= 0.999:
        t = lo.copy()
    W = lat.value(t)
    expr = lat.cvxpy(cp.Constant(t), time_unit=2.0)
    assert 2.0 * float(expr.value) == pytest.approx(W, rel=1e-9)
    # the change helper of the integer search equals the difference of two values
    s = sc.service_time(t)
    mo = lat.moments(t)
    s_new = sc.service_time(lo)
    d_m1 = sc.probability * (s_new - s)
    d_m2 = sc.probability * (1 + sc.scv) * (s_new - s) * (s_new + s)
    change = lat.queue.change(mo.m1, mo.m2, d_m1, d_m2)
    direct = lat.queue.value(mo.m1 + d_m1, mo.m2 + d_m2) - W
    np.testing.assert_allclose(change, direct, rtol=1e-7, atol=1e-12 * W)


# ------------------------------------------------------------------ optimum
def _independent_optimum(sc) -> tuple[np.ndarray, bool]:
    """An independent CVXPY model: numerator sum p k s^2 + pv + sum p (s - m1)^2 + c m1^2.

    Returns the point and whether the model's own solve is verified: Clarabel
    reports ``optimal`` at the tight tolerances, or at its default ones on a
    second try. A reference that did not verify its own solve (``optimal_inaccurate``
    on about one draw in eight) still gives a feasible point, hence a lower bound
    on U*, but it cannot judge how close another method came to the optimum.
    """
    lo, hi = sc.min_tokens, sc.max_tokens
    x = cp.Variable(sc.n)
    t = lo + cp.multiply(hi - lo, x)
    unit = float(sc.probability @ sc.service_time(0.5 * (lo + hi)))
    s = (sc.base + cp.multiply(sc.per_token, t)) / unit
    p, lam, c = sc.probability, sc.arrival_rate * unit, sc.arrival_scv
    m1 = p @ s
    terms = [
        cp.multiply(np.sqrt(p), s - m1),
        cp.multiply(np.sqrt(p * sc.scv), s),
        cp.reshape(np.sqrt(c) * m1, (1,), order="F"),
        np.array([np.sqrt(p @ sc.variance) / unit]),
    ]
    W = m1 + lam / 2 * cp.quad_over_lin(cp.hstack(terms), 1 - lam * m1)
    obj = sc.accuracy.weighted_cvxpy(t, p * sc.weight) - sc.latency_weight * unit * W
    problem = cp.Problem(cp.Maximize(obj), [x >= 0, x <= 1])
    tight = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
    for settings_ in (tight, {}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Solution may be inaccurate"
            problem.solve(solver="CLARABEL", **settings_)
        if problem.status == cp.OPTIMAL:
            break
    point = np.clip(lo + (hi - lo) * x.value, lo, hi)
    return point, problem.status == cp.OPTIMAL


# The draw of issue 22: latency weight 0, so the optimum is every type at its maximum;
# both cvxalloc methods return it with gap 0 while the reference stops
# optimal_inaccurate 2.4e-6 short (it judged them wrong before it checked its own status).
ISSUE_22_DRAW = dict(
    rng=12869,
    n=8,
    load="light",
    families=["logarithmic"],
    identical=False,
    scv=False,
    variance=False,
    lower_bounds=False,
    latency_weight=0.0,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(max_n=8), ca2=st.sampled_from(SCVS))
@example(sc=random_scenario(**ISSUE_22_DRAW), ca2=0.3)
@example(sc=random_scenario(**ISSUE_22_DRAW), ca2=173.0)
def test_default_and_conic_agree_with_an_independent_model(sc, ca2):
    sc = sc.with_(arrival_scv=ca2)
    assume(not _no_cap(sc))
    agg = cvxalloc.solve(sc)
    con = cvxalloc.solve(sc, method="conic")
    t_ind, verified = _independent_optimum(sc)
    U_ind = Objective(sc).value(t_ind)
    scale = abs(agg.objective)
    assert agg.status == "optimal"
    assert agg.certificate.gap <= 1e-9 * scale
    assert abs(agg.objective - con.objective) <= 1e-6 * scale
    # certificates hold both ways: no allocation, the reference's included, beats an
    # upper bound (this needs only that the reference's point is feasible)
    slack = 1e-12 * scale
    for res in (agg, con):
        assert res.certificate.upper_bound >= max(agg.objective, con.objective, U_ind) - slack
    event(f"independent reference verified: {verified}")
    if verified:
        assert abs(agg.objective - U_ind) <= 1e-6 * scale


def _no_cap(sc) -> bool:
    """c_a^2 = 0, deterministic service and an unstable box: no utilization cap exists."""
    deterministic = not (np.any(sc.scv > 0) or np.any(sc.variance > 0))
    return sc.arrival_scv == 0 and deterministic and sc.utilization(sc.max_tokens) >= 1


def test_no_cap_regime_is_a_clear_error():
    sc = random_scenario(0, 1, load="overloaded", scv=False, variance=False)
    sc = sc.with_(arrival_scv=0.0)
    assert _no_cap(sc)
    with pytest.raises(UnstableError, match="arrival_scv = 0 with deterministic service"):
        cvxalloc.solve(sc)


def test_default_arrival_scv_is_poisson(example):
    assert example.arrival_scv == 1.0
    lat = Latency(example)
    t = example.max_tokens * 0.1
    mo = lat.moments(t)
    assert lat.value(t) == pollaczek_khinchine(example.arrival_rate, mo.m1, mo.m2)


def test_burstier_traffic_buys_fewer_tokens(example):
    base = cvxalloc.solve(example)
    bursty = cvxalloc.solve(example.with_(arrival_scv=20.0))
    smooth = cvxalloc.solve(example.with_(arrival_scv=0.2))
    assert np.all(bursty.tokens <= base.tokens + 1e-9)
    assert bursty.tokens.sum() < base.tokens.sum() < smooth.tokens.sum()


@pytest.mark.parametrize("method", ["fixed-point", "gradient"])
@pytest.mark.parametrize("ca2", [1.5, 173.0])
def test_first_order_methods_take_bursty_arrivals(method, ca2):
    for seed, load in enumerate(("light", "heavy", "saturated", "overloaded")):
        sc = random_scenario(seed, 6, load=load).with_(arrival_scv=ca2)
        res = cvxalloc.solve(sc, method=method)
        ref = cvxalloc.solve(sc)
        assert res.status == "optimal"
        assert res.objective >= ref.objective - 1e-7 * abs(ref.objective)
        assert res.certificate.upper_bound >= ref.objective - 1e-12 * abs(ref.objective)


@pytest.mark.parametrize("method", ["fixed-point", "gradient"])
def test_first_order_methods_refuse_smooth_arrivals(example, method):
    with pytest.raises(OptionError, match="arrival_scv >= 1"):
        cvxalloc.solve(example.with_(arrival_scv=0.5), method=method)


@pytest.mark.parametrize("ca2", [0.0, 0.3, 4.0, 60.0])
def test_integer_budgets_equal_brute_force(ca2):
    pytest.importorskip("pyscipopt")
    for seed in range(4):
        sc = random_scenario(seed, 2, load=("heavy", "overloaded")[seed % 2])
        levels = [
            np.floor(np.linspace(np.ceil(sc.min_tokens[i]), sc.max_tokens[i], 6))
            for i in range(sc.n)
        ]
        sc = sc.with_(arrival_scv=ca2, levels=levels)
        obj = Objective(sc)
        best = max(obj.value(np.array(t)) for t in itertools.product(*levels))
        for method in ("mixed-integer", "rounding"):
            res = cvxalloc.solve(sc, method=method)
            # the certificate holds against brute force ...
            assert res.certificate.upper_bound >= best - 1e-12 * abs(best)
            if method == "mixed-integer":  # ... and the exact path finds it
                assert res.objective >= best - 1e-9 * abs(best)


def test_sensitivity_in_arrival_scv_matches_resolves(example):
    sc = example.with_(arrival_scv=3.0)
    sens = sensitivity(sc, cvxalloc.solve(sc))
    h = 1e-3
    up = cvxalloc.solve(sc.with_(arrival_scv=3.0 + h))
    dn = cvxalloc.solve(sc.with_(arrival_scv=3.0 - h))
    fd_tokens = (up.tokens - dn.tokens) / (2 * h)
    fd_u = (up.objective - dn.objective) / (2 * h)
    d = sens.arrival_scv
    assert d.objective < 0  # burstier traffic costs utility
    assert d.objective == pytest.approx(fd_u, rel=1e-4)
    np.testing.assert_allclose(d.tokens, fd_tokens, rtol=1e-3, atol=1e-3 * np.abs(fd_tokens).max())
    # and the arrival-rate derivative still matches its re-solves under Kingman
    hl = 1e-4 * sc.arrival_rate
    upl = cvxalloc.solve(sc.with_(arrival_rate=sc.arrival_rate + hl))
    dnl = cvxalloc.solve(sc.with_(arrival_rate=sc.arrival_rate - hl))
    assert sens.arrival_rate.objective == pytest.approx(
        (upl.objective - dnl.objective) / (2 * hl), rel=1e-4
    )
    assert json.dumps(sens.to_dict())  # JSON-ready, with d_arrival_scv


# ------------------------------------------------------------------ scenario file
def test_scenario_file_key(tmp_path, example):
    d = example.to_dict()
    assert d["queue"]["arrival_scv"] == 1.0
    d["queue"]["arrival_scv"] = 173.0
    sc = cvxalloc.Scenario.from_dict(d)
    assert sc.arrival_scv == 173.0
    assert cvxalloc.Scenario.from_dict(sc.to_dict()).arrival_scv == 173.0
    del d["queue"]["arrival_scv"]
    assert cvxalloc.Scenario.from_dict(d).arrival_scv == 1.0
    d["queue"]["arrival_scv"] = -0.5
    with pytest.raises(ScenarioError, match="arrival_scv"):
        cvxalloc.Scenario.from_dict(d)


def test_cli_solves_a_bursty_scenario(tmp_path, capsys, example):
    from cvxalloc.cli import main

    d = example.to_dict()
    d["queue"]["arrival_scv"] = 173.0
    path = tmp_path / "bursty.json"
    path.write_text(json.dumps(d))
    assert main(["solve", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "optimal"
    ref = cvxalloc.solve(cvxalloc.load_scenario(path))
    assert out["objective"] == pytest.approx(ref.objective, rel=1e-12)
    d["queue"]["arrival_scv"] = "high"
    path.write_text(json.dumps(d))
    assert main(["solve", str(path)]) == 2
    err = capsys.readouterr().err
    assert "arrival_scv" in err and "Traceback" not in err


# ------------------------------------------------------------------ workflows
def test_sweep_takes_arrival_scv(example):
    from cvxalloc.sweep import sweep_latency_weight

    sc = example.with_(arrival_scv=20.0)
    weights = np.logspace(-4, -2, 4)
    conic = sweep_latency_weight(sc, weights, method="conic")
    agg = sweep_latency_weight(sc, weights, method="aggregate")
    for g, u_c, u_a in zip(weights, conic.objective, agg.objective):
        fresh = cvxalloc.solve(sc.with_(latency_weight=g))
        assert u_a == pytest.approx(fresh.objective, rel=1e-9)
        assert u_c == pytest.approx(fresh.objective, rel=1e-7)


def test_slo_constraint_holds_under_kingman(example):
    d = example.to_dict()
    d["queue"]["arrival_scv"] = 20.0
    d["constraints"] = {"max_mean_system_time": 30.0}
    sc = cvxalloc.Scenario.from_dict(d)
    res = cvxalloc.solve(sc)
    assert res.status == "optimal"
    # the SLO binds (the unconstrained Kingman optimum is slower) and is met under Kingman
    free = cvxalloc.solve(example.with_(arrival_scv=20.0))
    assert free.evaluation.mean_system_time > 30.0
    assert res.evaluation.mean_system_time == pytest.approx(30.0, rel=1e-6)
    assert Latency(sc).value(res.tokens) <= 30.0 * (1 + 1e-9)


def test_poisson_simulation_is_held_against_pk(example):
    """``simulate`` draws Poisson arrivals: its model column is P-K, not the plan's Kingman."""
    from cvxalloc.simulate import simulate

    bursty = example.with_(arrival_scv=20.0)
    t = cvxalloc.solve(bursty).tokens
    sim = simulate(bursty, t, queries=200_000, seed=5)
    mo = Latency(example).moments(t)
    assert sim.mean_system_time_model == pytest.approx(
        pollaczek_khinchine(example.arrival_rate, mo.m1, mo.m2), rel=1e-12
    )
    lo, hi = sim.mean_system_time_ci
    assert lo <= sim.mean_system_time_model <= hi
