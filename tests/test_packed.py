"""The aggregate method's full-size phase (solvers/packed.py) and the pieces it runs on.

Checked against independent references: scipy's Wright omega and the equation it
solves, each family's precise roots and derivatives, the whole-array outer system
(:class:`Reduced`, the method's small-N path) and the Frank-Wolfe certificate
recomputed from the scenario alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import wrightomega

import cvxalloc
from cvxalloc import status as st
from cvxalloc._wright import wright_omega
from cvxalloc.accuracy import AccuracyCurves, Exponential, Logarithmic, Power
from cvxalloc.certificate import certify, relative_scale
from cvxalloc.objective import Objective
from cvxalloc.queue.fleet import Fleet
from cvxalloc.solvers import packed
from cvxalloc.solvers.packed import Packed
from cvxalloc.testing import random_scenario

EPS = np.finfo(float).eps
SERVER = {
    "model": "batching",
    "concurrency": [1, 4, 8, 16, 32, 48],
    "speedup": [1.0, 3.82, 6.85, 11.7, 17.7, 21.6],
}


# --- Wright omega -------------------------------------------------------------------
def test_wright_omega_against_scipy_and_its_equation():
    x = np.concatenate(
        [
            np.linspace(-800, 800, 40001),
            np.linspace(-5, 30, 40001),
            -np.logspace(-12, 2.9, 2001),
            np.logspace(-12, 300, 2001),
            [-746.0, -745.0, -700.0, -2.0, 0.0, 1.0, 710.0],
        ]
    )
    ref = wrightomega(x)
    w = wright_omega(x)
    assert np.all(np.isfinite(w)) and np.all(w >= 0)
    # relative to scipy: limited by the conditioning |x| eps of omega at x << 0 (both
    # underflow to 0 together)
    assert np.array_equal(w == 0, ref == 0)
    pos = ref > 0
    assert np.all(np.abs(w - ref)[pos] / ref[pos] <= 8 * EPS * np.maximum(1.0, np.abs(x[pos])))
    ok = x > -700  # w + log w = x holds to rounding (below, w = e^x exactly)
    resid = np.abs(w[ok] + np.log(w[ok]) - x[ok])
    assert np.all(resid <= 4 * EPS * np.maximum(1.0, np.abs(x[ok])))
    rough = wright_omega(x, refine=1)
    assert np.all(np.abs(rough - ref) <= 1e-8 * ref + 1e-300)


# --- what the families give the sweeps -------------------------------------------------
def _families(rng, n):
    f = rng.uniform(0, 0.5, n)
    c = f + rng.uniform(0.05, 1, n) * (1 - f)
    tau = np.exp(rng.uniform(np.log(1.0), np.log(1e5), n))
    return [
        Exponential(floor=f, ceiling=c, scale=tau),
        Power(floor=f, ceiling=c, scale=tau, exponent=rng.uniform(0.1, 3, n)),
        Logarithmic(floor=f, gain=rng.uniform(0.01, 1, n), scale=tau),
    ]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["exponential", "power", "logarithmic"])
def test_rough_roots_are_close_to_the_precise_ones(which, rng):
    n = 2000
    fam = _families(rng, n)[which]
    alpha = fam.d1(np.zeros(n)) * np.exp(rng.uniform(-30, 3, n))
    beta = np.where(rng.random(n) < 0.1, 0.0, alpha / fam.scale * np.exp(rng.uniform(-30, 8, n)))
    precise = fam.solve_marginal(alpha, beta)
    rough = fam.solve_marginal(alpha, beta, rough=True)
    assert np.all(np.abs(rough - precise) <= 1e-6 * (np.abs(precise) + fam.scale))


@pytest.mark.parametrize("which", [0, 1, 2], ids=["exponential", "power", "logarithmic"])
def test_joint_derivatives_and_parts(which, rng):
    n = 300
    fam = _families(rng, n)[which]
    t = rng.uniform(0, 5, n) * fam.scale
    d1, d2 = fam.d1_d2(t)
    value, d1b = fam.value_d1(t)
    np.testing.assert_allclose(d1, fam.d1(t), rtol=1e-14)
    np.testing.assert_allclose(d2, fam.d2(t), rtol=1e-14)
    np.testing.assert_allclose(value, fam.value(t), rtol=1e-14)
    np.testing.assert_allclose(d1b, fam.d1(t), rtol=1e-14)
    part = fam.part(40, 90)
    np.testing.assert_array_equal(part.d1(t[40:90]), fam.take(np.arange(40, 90)).d1(t[40:90]))


def test_grouped_makes_each_family_one_range(rng):
    n = 30
    fams = _families(rng, n)
    idx = rng.permutation(n)
    parts = np.array_split(idx, 3)
    curves = AccuracyCurves([(f.take(p), p) for f, p in zip(fams, parts)], n)
    order, ranges = curves.grouped()
    assert sorted(order) == list(range(n))
    t = rng.uniform(0, 2e4, n)
    for fam, start, stop in ranges:
        np.testing.assert_array_equal(fam.d1(t[order[start:stop]]), curves.d1(t)[order[start:stop]])
    assert AccuracyCurves.single(fams[0], n).grouped()[0] is None


# --- the full-size Newton against the whole-array outer system ------------------------------
def _instance(load: str, change: str, n: int = 3000):
    sc = random_scenario(np.random.default_rng(5), n, load=load)  # every family, interleaved
    if change == "narrow":  # (overloaded: boxes 2% wide at a stable level)
        top = sc.max_tokens if load != "overloaded" else 0.05 * sc.max_tokens
        sc = sc.with_(min_tokens=0.98 * top, max_tokens=top)
    elif change == "scv":
        sc = sc.with_(arrival_scv=0.3 if load == "overloaded" else 3.0)
    elif change == "batching":
        sc = sc.with_(server=SERVER, arrival_rate=sc.arrival_rate * SERVER["speedup"][-1])
    elif change == "fleet":  # the queue model's partials couple B to m2
        fleet = Fleet(4, "shortest-queue")
        sc = sc.with_(fleet=fleet, arrival_rate=4 * sc.arrival_rate, arrival_scv=2.0)
    return sc


@pytest.mark.parametrize("change", ["", "narrow", "scv", "batching", "fleet"])
@pytest.mark.parametrize("load", ["light", "heavy", "overloaded"])
def test_sweeps_agree_with_the_whole_array_solve(load, change, monkeypatch):
    sc = _instance(load, change)
    monkeypatch.setattr(packed, "CHUNK", 700)  # chunk edges inside every family's range
    res = cvxalloc.solve(sc, sample_size=200)
    assert res.diagnostics["start"] == "sample"  # the full-size Newton ran
    ref = cvxalloc.solve(sc, sample_size=10**9)  # whole arrays (Reduced)
    assert ref.status == st.OPTIMAL
    cert = certify(sc, res.tokens)  # recomputed from the scenario alone
    scale = relative_scale(cert.objective)
    assert res.status == st.OPTIMAL and cert.gap <= 1e-9 * scale
    assert res.certificate.gap >= cert.gap - 1e-13 * scale  # the solver's bound is a bound
    assert (
        abs(res.objective - ref.objective)
        <= res.certificate.gap + ref.certificate.gap + 1e-12 * scale
    )
    ev = Objective(sc).evaluate(res.tokens)  # the evaluation, in the scenario's order
    np.testing.assert_allclose(res.evaluation.type_accuracy, ev.type_accuracy, rtol=1e-13)
    np.testing.assert_allclose(res.evaluation.service_time, ev.service_time, rtol=1e-13)
    assert res.utilization == pytest.approx(ev.utilization, rel=1e-12)
    assert res.mean_system_time == pytest.approx(ev.mean_system_time, rel=1e-11)


def test_finish_bounds_the_gap_before_convergence():
    sc = _instance("overloaded", "scv")
    pk = Packed(sc, chunk=500)
    sub = pk.sample(200)
    start = sub.newton(*sub.middle(), 50, 1e-14)[0]
    for sweeps in (1, 2):  # stopped early on purpose: the certificate must still bound
        pk = Packed(sc, chunk=500)
        pk.sample(200)
        ev, cert = pk.finish(pk.newton(start.u, start.m2, sweeps, 0.0))
        true = certify(sc, ev.tokens)
        assert cert.gap >= true.gap - 1e-13 * relative_scale(true.objective)
        assert cert.objective == pytest.approx(true.objective, rel=1e-13)
        assert pk.certify(ev).gap == pytest.approx(true.gap, rel=1e-6, abs=1e-15)


def test_full_size_newton_giving_up_falls_back_to_whole_arrays():
    sc = _instance("overloaded", "")
    res = cvxalloc.solve(sc, sample_size=200, max_iter=1)  # one sweep: it gives up
    assert res.status == st.OPTIMAL
    assert certify(sc, res.tokens).gap <= 1e-9 * relative_scale(res.objective)
