"""The tail SLO ``[constraints] tail = { quantile, max_system_time }`` and its surrogate.

* The exact set ``{t : q_p(t) <= T0}`` is not convex: a two-type counterexample.
* The surrogate is conservative (its bound is above the exact percentile, on
  random scenarios) and convex (its load at a midpoint is at most the mean).
* Under a binding p99 SLO the default method and the conic reference agree to
  1e-7 of ``|U|``, both certified; the shadow price is the slope of the optimum.
* The file form, its errors, and infeasible SLOs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cvxalloc
from cvxalloc import Constraints
from cvxalloc.constraints import ConstraintError, InfeasibleError
from cvxalloc.constraints.tail import TailPercentile, TailSLO
from cvxalloc.queue.service_law import ServiceLaw
from cvxalloc.queue.tail import _mg1_quantiles, system_time_quantiles
from cvxalloc.testing import random_scenario, scenarios


def _with_tail(sc, T0: float, p: float = 0.99):
    return sc.with_(constraints=Constraints(tail={"quantile": p, "max_system_time": T0}))


def test_the_exact_percentile_set_is_not_convex():
    # two types of gamma service (scv 0.3), Poisson arrivals of rate 1, the median:
    # feasible at both ends for T0 = 0.064, infeasible at the midpoint
    p, k = np.array([0.64572926, 0.35427074]), np.full(2, 0.3)

    def median(s):
        return _mg1_quantiles(ServiceLaw.of(p, s, k, np.zeros(2)), 1.0, np.array([0.5]))[0][0]

    a, b = np.array([0.02800283, 0.35439699]), np.array([0.10401003, 0.01277633])
    qa, qb, qm = median(a), median(b), median(0.5 * (a + b))
    assert max(qa, qb) < 0.064 < qm
    assert qm > 1.3 * max(qa, qb)


def _stable_point(sc, rng):
    for _ in range(50):
        t = rng.uniform(sc.min_tokens, sc.max_tokens)
        if sc.utilization(t) < 0.95:
            return t
    return sc.min_tokens


@settings(max_examples=30, deadline=None)
@given(
    scenarios(max_n=5, loads=("light", "heavy")),
    st.sampled_from([0.5, 0.9, 0.99]),
    st.integers(0, 2**31),
)
def test_surrogate_bound_is_above_the_exact_percentile(sc, level, seed):
    t = _stable_point(sc, np.random.default_rng(seed))
    if sc.utilization(t) >= 0.95 or sc.arrival_rate <= 0:
        return
    term = TailPercentile(TailSLO(level, 100.0))
    try:
        term.bind(sc)
    except cvxalloc.ScenarioError:  # a type with variance and no service time at lo
        return
    bound = term.bound(sc, t)
    exact = system_time_quantiles(sc, t, [level]).seconds[0]
    assert bound >= exact * (1 - 1e-9)


@settings(max_examples=30, deadline=None)
@given(scenarios(max_n=5, loads=("light", "heavy")), st.integers(0, 2**31))
def test_surrogate_load_is_convex(sc, seed):
    rng = np.random.default_rng(seed)
    term = TailPercentile(TailSLO(0.99, 1e4))
    try:
        term.bind(sc)
    except cvxalloc.ScenarioError:
        return
    a, b = _stable_point(sc, rng), _stable_point(sc, rng)
    va, vb, vm = term.value(sc, a), term.value(sc, b), term.value(sc, 0.5 * (a + b))
    if np.isfinite(va) and np.isfinite(vb):
        assert vm <= 0.5 * (va + vb) + 1e-12 * max(abs(va), abs(vb), 1.0)


@pytest.mark.parametrize("T0", [420.0, 300.0, 200.0])
def test_default_and_conic_agree_under_a_binding_p99(example, T0):
    sc = _with_tail(example, T0)
    ra, rc = cvxalloc.solve(sc), cvxalloc.solve(sc, method="conic")
    assert rc.status == "optimal"  # the reference checks its own solve before it judges
    assert ra.status == "optimal"
    assert abs(ra.objective - rc.objective) <= 1e-7 * abs(rc.objective)
    for res in (ra, rc):
        tail = res.diagnostics["constraints"]["tail"]
        assert tail["active"] and tail["value"] <= T0 and tail["slack"] >= 0
        assert tail["bound"] <= T0 * (1 + 1e-12)  # the bound itself, a root: to rounding
        assert tail["exact"] <= tail["bound"]  # the surrogate is conservative
        assert res.certificate.gap <= 1e-9 * abs(res.objective)
    unconstrained = cvxalloc.solve(example).system_time_quantiles["0.99"]
    assert ra.quantiles([0.99]).seconds[0] < unconstrained


def test_shadow_price_is_the_slope_of_the_optimum(example):
    T0, h = 300.0, 0.5
    up = cvxalloc.solve(_with_tail(example, T0 + h)).objective
    down = cvxalloc.solve(_with_tail(example, T0 - h)).objective
    price = cvxalloc.solve(_with_tail(example, T0)).diagnostics["constraints"]["tail"]
    assert price["shadow_price"] == pytest.approx((up - down) / (2 * h), rel=1e-3)


def test_random_scenarios_default_and_conic_agree():
    agreed = 0
    for seed in range(6):
        sc = random_scenario(seed, 4, load="heavy", variance=False)
        free = cvxalloc.solve(sc)
        q99 = free.system_time_quantiles["0.99"]
        term = TailPercentile(TailSLO(0.99, 1.0)).bind(sc)
        T0 = 0.9 * term.bound(sc, free.tokens)  # binding: below the bound at the free optimum
        if not T0 > term.bound(sc, sc.min_tokens):
            continue
        con = _with_tail(sc, T0)
        ra, rc = cvxalloc.solve(con), cvxalloc.solve(con, method="conic")
        if rc.status != "optimal":
            continue
        assert ra.status == "optimal", seed
        assert abs(ra.objective - rc.objective) <= 1e-7 * abs(rc.objective), seed
        assert ra.diagnostics["constraints"]["tail"]["exact"] < q99
        agreed += 1
    assert agreed >= 3


def test_file_round_trip_and_report(tmp_path, capsys):
    from cvxalloc.cli import main
    from cvxalloc.io import scenario_toml

    sc = _with_tail(cvxalloc.example_scenario(), 300.0)
    path = tmp_path / "tail.toml"
    path.write_text(scenario_toml(sc))
    assert "tail = { quantile = 0.99, max_system_time = 300 }" in path.read_text()
    assert cvxalloc.load_scenario(path).constraints.tail == TailSLO(0.99, 300.0)
    assert main(["solve", str(path), "--json", "--no-baselines"]) == 0
    out = json.loads(capsys.readouterr().out)
    tail = out["diagnostics"]["constraints"]["tail"]
    assert tail["unit"] == "s" and tail["limit"] == 300.0 and tail["exact"] < 300.0
    assert main(["solve", str(path), "--no-baselines"]) == 0
    assert "the exact p99 at this allocation is" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        (5.0, "tail must be a table"),
        ({"quantile": 99, "max_system_time": 60}, "write 0.99"),
        ({"quantile": 0.99}, "exactly quantile and max_system_time"),
        ({"quantile": 0.99, "max_system_time": 60, "x": 1}, "exactly quantile"),
        ({"quantile": 0.99, "max_system_time": -1}, "max_system_time must be > 0"),
        ({"quantile": "p99", "max_system_time": 60}, "tail.quantile must be a number"),
    ],
)
def test_bad_tables_are_named(table, needle):
    with pytest.raises(ConstraintError, match=needle):
        Constraints(tail=table)


def test_infeasible_slo_says_what_to_raise(example, tmp_path, capsys):
    from cvxalloc.cli import main
    from cvxalloc.io import scenario_toml

    sc = _with_tail(example, 30.0)
    with pytest.raises(InfeasibleError, match="raise tail.max_system_time to at least"):
        cvxalloc.solve(sc)
    path = tmp_path / "tight.toml"
    path.write_text(scenario_toml(sc))
    target = tmp_path / "out.json"
    assert main(["solve", str(path), "-o", str(target)]) == 2
    assert "tail" in capsys.readouterr().err and not target.exists()


def test_bursty_arrivals_are_refused(example):
    sc = _with_tail(example, 400.0).with_(arrival_scv=2.0)
    with pytest.raises(ConstraintError, match="arrival_scv"):
        cvxalloc.solve(sc)


def test_sweep_over_the_tail_slo(example, tmp_path, capsys):
    from cvxalloc.cli import main
    from cvxalloc.sweep import sweep_tail

    limits = [150.0, 250.0, 450.0]
    sw = sweep_tail(example, limits, uniform=False)
    ref = sweep_tail(example, limits, method="conic", uniform=False)
    assert list(sw.status) == ["optimal"] * 3 and list(ref.status) == ["optimal"] * 3
    np.testing.assert_allclose(sw.objective, ref.objective, rtol=1e-7)
    assert np.all(np.diff(sw.objective) > 0)  # a looser SLO is worth more
    assert np.all(sw.system_time_quantile <= sw.tail_bound * (1 + 1e-12))
    np.testing.assert_allclose(sw.tail_bound[:2], limits[:2], rtol=1e-9)  # binding there
    png = tmp_path / "tail.png"
    argv = ["sweep", "cvxalloc/data/example.toml", "--tail", "150:450:3", "--no-uniform"]
    assert main([*argv, "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "p99 s" in out and "bound s" in out and png.exists()


def test_policy_refuses_the_tail_slo(example):
    from cvxalloc.policy import build_policy

    with pytest.raises(cvxalloc.ScenarioError, match="tail SLO"):
        build_policy(_with_tail(example, 300.0))
