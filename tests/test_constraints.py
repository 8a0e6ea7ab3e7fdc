"""Operator constraints: independent CVXPY optimum, shadow prices, infeasibility, certificate."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from conftest import small_scenario
from scipy.optimize import linprog

import cvxalloc
from cvxalloc import Constraints
from cvxalloc.constraints import (
    ConstraintError,
    InfeasibleError,
    certify_constrained,
    effective_lower,
    required_tokens,
)
from cvxalloc.objective import Objective

# ---------------------------------------------------------------------------
# an independent formulation: variables are service times in seconds, no scaling


def _accuracy_of_seconds(sc, i: int, s: cp.Expression) -> cp.Expression:
    """``A_i`` as a CVXPY expression of the service time ``s`` (t = (s - a) / b)."""
    par = sc.accuracy.param_dict(i)
    t = (s - sc.base[i]) / sc.per_token[i]
    if par["model"] == "exponential":
        return par["ceiling"] - (par["ceiling"] - par["floor"]) * cp.exp(-t / par["scale"])
    if par["model"] == "power":
        return par["ceiling"] - (par["ceiling"] - par["floor"]) * cp.power(
            1 + t / par["scale"], -par["exponent"]
        )
    return par["floor"] + par["gain"] * cp.log(1 + t / par["scale"])


def independent_optimum(sc, cons: Constraints) -> tuple[float, np.ndarray]:
    """The constrained optimum from a plain CVXPY model written here."""
    n = sc.n
    p, a, b = sc.probability, sc.base, sc.per_token
    lam, gamma = sc.arrival_rate, sc.latency_weight
    s = cp.Variable(n)
    acc = [_accuracy_of_seconds(sc, i, s[i]) for i in range(n)]
    weighted = sum(p[i] * sc.weight[i] * acc[i] for i in range(n))
    q = cp.hstack([cp.multiply(np.sqrt(p * (1 + sc.scv)), s), np.array([np.sqrt(p @ sc.variance)])])
    W = p @ s + (lam / 2) * cp.quad_over_lin(q, 1 - lam * (p @ s))
    tokens = cp.multiply(1 / b, s - a)
    con = [s >= a + b * sc.min_tokens, s <= a + b * sc.max_tokens, lam * (p @ s) <= 1]
    if cons.max_mean_system_time is not None:
        con.append(W <= cons.max_mean_system_time)
    if cons.max_mean_tokens is not None:
        con.append(p @ tokens <= cons.max_mean_tokens)
    if cons.max_utilization is not None:
        con.append(lam * (p @ s) <= cons.max_utilization)
    if cons.min_accuracy is not None:
        con += [
            acc[i] >= cons.min_accuracy[i] for i in range(n) if not np.isnan(cons.min_accuracy[i])
        ]
    prob = cp.Problem(cp.Maximize(weighted - gamma * W), con)
    prob.solve(solver="CLARABEL")
    assert prob.status == "optimal", prob.status
    return float(prob.value), (s.value - a) / b


@pytest.fixture(scope="module")
def base():
    """The example and its unconstrained optimum."""
    sc = cvxalloc.example_scenario()
    return sc, cvxalloc.solve(sc)


def _combos(sc, r0):
    W0, T0, R0 = r0.mean_system_time, float(sc.probability @ r0.tokens), r0.utilization
    floors = np.array([0.58, np.nan, 0.8, 0.3, np.nan])
    return {
        "slo": Constraints(max_mean_system_time=0.8 * W0),
        "tokens": Constraints(max_mean_tokens=0.7 * T0),
        "utilization": Constraints(max_utilization=0.8 * R0),
        "min_accuracy": Constraints(min_accuracy=floors),
        "slo+tokens": Constraints(max_mean_system_time=0.85 * W0, max_mean_tokens=0.8 * T0),
        "all": Constraints(
            max_mean_system_time=0.9 * W0,
            max_mean_tokens=0.95 * T0,
            max_utilization=0.85 * R0,
            min_accuracy=floors,
        ),
        "inactive": Constraints(max_mean_system_time=2 * W0, max_utilization=0.99),
    }


COMBOS = ["slo", "tokens", "utilization", "min_accuracy", "slo+tokens", "all", "inactive"]


@pytest.mark.parametrize("combo", COMBOS)
def test_matches_independent_cvxpy(base, combo):
    sc0, r0 = base
    cons = _combos(sc0, r0)[combo]
    sc = sc0.with_(constraints=cons)
    res = cvxalloc.solve(sc, method="conic")
    U_ind, t_ind = independent_optimum(sc, cons)
    assert res.status == "optimal"
    # Same optimum: objective to 1e-7 relative, tokens to 1e-3 of each box.
    assert res.objective == pytest.approx(U_ind, rel=1e-7)
    width = sc.max_tokens - sc.min_tokens
    assert np.max(np.abs(res.tokens - t_ind) / width) < 1e-3
    # The certificate is valid (bounds the independent optimum) and tight.
    assert res.certificate.upper_bound >= U_ind - 1e-9 * abs(U_ind)
    assert res.certificate.within(1e-8), res.certificate
    # Every constraint holds exactly at the returned allocation.
    report = res.diagnostics["constraints"]
    assert report and all(v["slack"] >= 0 for v in report.values())
    assert set(cons.kinds) == {v["kind"] for v in report.values()}
    if combo == "inactive":
        assert res.objective == pytest.approx(r0.objective, rel=1e-10)
        assert all(not v["active"] for v in report.values())
        assert all(abs(v["shadow_price"]) < 1e-6 for v in report.values())


def test_certificate_kinds(base):
    sc0, r0 = base
    combos = _combos(sc0, r0)
    kinds = {
        name: cvxalloc.solve(sc0.with_(constraints=combos[name])).certificate.kind
        for name in ("slo", "tokens", "min_accuracy")
    }
    assert kinds == {
        "slo": "lagrangian-frank-wolfe",
        "tokens": "frank-wolfe-polytope",
        "min_accuracy": "frank-wolfe",
    }
    # Unconstrained: exactly the box Frank-Wolfe bound, unchanged.
    cert = cvxalloc.certify(sc0, r0.tokens)
    g = Objective(sc0).gradient(r0.tokens)
    gap = np.sum(
        np.where(g > 0, g * (sc0.max_tokens - r0.tokens), g * (sc0.min_tokens - r0.tokens))
    )
    assert cert.kind == "frank-wolfe" and cert.gap == pytest.approx(gap, rel=1e-12)


def _relaxed(sc, cons, key, value):
    return sc.with_(constraints=cons.with_(**{key: value}))


@pytest.mark.parametrize(
    "key,factor",
    [
        ("max_mean_system_time", 0.8),
        ("max_mean_tokens", 0.7),
        ("max_utilization", 0.8),
    ],
)
def test_shadow_price_matches_finite_differences(base, key, factor):
    sc0, r0 = base
    ref = {
        "max_mean_system_time": r0.mean_system_time,
        "max_mean_tokens": float(sc0.probability @ r0.tokens),
        "max_utilization": r0.utilization,
    }[key]
    limit = factor * ref
    cons = Constraints(**{key: limit})
    res = cvxalloc.solve(sc0.with_(constraints=cons))
    price = res.diagnostics["constraints"][key]["shadow_price"]
    assert price > 0
    h = 1e-3 * limit
    up = cvxalloc.solve(_relaxed(sc0, cons, key, limit + h)).objective
    down = cvxalloc.solve(_relaxed(sc0, cons, key, limit - h)).objective
    assert (up - down) / (2 * h) == pytest.approx(price, rel=1e-3)
    # And the certificate's multiplier is the same price.
    assert res.certificate.details["multipliers"][key] == pytest.approx(price, rel=1e-4)


def test_min_accuracy_shadow_price_matches_finite_differences(base):
    sc0, _ = base
    floors = np.array([0.58, np.nan, 0.8, np.nan, np.nan])
    res = cvxalloc.solve(sc0.with_(constraints=Constraints(min_accuracy=floors)))
    for i, name in ((0, "chat"), (2, "math")):
        entry = res.diagnostics["constraints"][f"min_accuracy[{name}]"]
        assert entry["active"] and entry["shadow_price"] > 0
        h = 1e-4
        vals = []
        for sign in (+1, -1):
            f = floors.copy()
            f[i] -= sign * h  # relaxing = lowering the floor
            vals.append(
                cvxalloc.solve(sc0.with_(constraints=Constraints(min_accuracy=f))).objective
            )
        assert (vals[0] - vals[1]) / (2 * h) == pytest.approx(entry["shadow_price"], rel=1e-3)


def test_polytope_certificate_equals_linear_program(base):
    """Linear constraints only: the bound is the LP over box ∩ halfspaces (scipy HiGHS)."""
    sc0, r0 = base
    cons = Constraints(
        max_mean_tokens=0.8 * float(sc0.probability @ r0.tokens),
        max_utilization=0.9 * r0.utilization,
    )
    sc = sc0.with_(constraints=cons)
    # A feasible but far from optimal point: a fraction of the way from lo.
    t = sc.min_tokens + 0.3 * (r0.tokens - sc.min_tokens)
    cert = certify_constrained(sc, t)
    g = Objective(sc).gradient(t)
    A = np.vstack([sc.probability, sc.arrival_rate * sc.probability * sc.per_token])
    b = np.array(
        [cons.max_mean_tokens, cons.max_utilization - sc.arrival_rate * sc.probability @ sc.base]
    )
    lp = linprog(-g, A_ub=A, b_ub=b, bounds=list(zip(sc.min_tokens, sc.max_tokens)), method="highs")
    assert lp.status == 0
    fw = float(g @ (lp.x - t))
    assert cert.kind == "frank-wolfe-polytope"
    assert cert.gap == pytest.approx(fw, rel=1e-6)
    assert cert.gap >= fw - 1e-12


@pytest.mark.parametrize("combo", ["slo", "all", "slo+tokens"])
def test_certificate_of_any_feasible_point_bounds_the_optimum(base, rng, combo):
    sc0, r0 = base
    cons = _combos(sc0, r0)[combo]
    sc = sc0.with_(constraints=cons)
    U_star, _ = independent_optimum(sc, cons)
    lo2 = effective_lower(sc)
    opt = cvxalloc.solve(sc).tokens
    for _ in range(5):
        theta = rng.uniform(0, 1, sc.n)
        t = lo2 + theta * (opt - lo2)  # feasible: every scalar constraint is increasing
        cert = certify_constrained(sc, t)
        assert np.isfinite(cert.gap) and cert.gap >= 0
        assert cert.upper_bound >= U_star - 1e-9 * abs(U_star)


def test_infeasible_point_is_not_certified(base):
    sc0, r0 = base
    sc = sc0.with_(constraints=Constraints(max_mean_tokens=100.0))
    cert = certify_constrained(sc, r0.tokens)
    assert cert.gap == np.inf and "max_mean_tokens" in cert.details["infeasible"]


# ---------------------------------------------------------------------------
# infeasible combinations


def test_infeasible_slo(base):
    sc0, _ = base
    W_lo = cvxalloc.evaluate(sc0, sc0.min_tokens).mean_system_time
    sc = sc0.with_(constraints=Constraints(max_mean_system_time=0.9 * W_lo))
    with pytest.raises(InfeasibleError, match="max_mean_system_time.*minimum budgets"):
        cvxalloc.solve(sc)


def test_infeasible_token_budget(base):
    sc0, _ = base
    need = float(sc0.probability @ sc0.min_tokens)
    sc = sc0.with_(constraints=Constraints(max_mean_tokens=0.5 * need))
    with pytest.raises(InfeasibleError, match=f"max_mean_tokens.*at least {need:.6g}"):
        cvxalloc.solve(sc)


def test_infeasible_utilization(base):
    sc0, _ = base
    rho = sc0.utilization(sc0.min_tokens)
    sc = sc0.with_(constraints=Constraints(max_utilization=0.5 * rho))
    with pytest.raises(InfeasibleError, match="max_utilization"):
        cvxalloc.solve(sc)


def test_infeasible_min_accuracy_above_reach(base):
    sc0, _ = base
    reach = sc0.accuracy.value(sc0.max_tokens)
    floors = np.full(sc0.n, np.nan)
    floors[2] = min(1.0, reach[2] + 0.01)
    sc = sc0.with_(constraints=Constraints(min_accuracy=floors))
    with pytest.raises(InfeasibleError, match='task "math": min_accuracy.*max_tokens'):
        cvxalloc.solve(sc)


def test_infeasible_pair_names_both(base):
    """Each alone is feasible; together the accuracy floors exceed the SLO."""
    sc0, r0 = base
    floors = np.array([np.nan, np.nan, np.nan, 0.9, np.nan])
    lo2 = effective_lower(sc0.with_(constraints=Constraints(min_accuracy=floors)))
    W_need = cvxalloc.evaluate(sc0, lo2).mean_system_time
    W_lo = cvxalloc.evaluate(sc0, sc0.min_tokens).mean_system_time
    slo = 0.5 * (W_lo + W_need)
    cvxalloc.solve(sc0.with_(constraints=Constraints(max_mean_system_time=slo)))
    cvxalloc.solve(sc0.with_(constraints=Constraints(min_accuracy=floors)))
    both = sc0.with_(constraints=Constraints(max_mean_system_time=slo, min_accuracy=floors))
    with pytest.raises(InfeasibleError, match="max_mean_system_time.*min_accuracy.*olympiad"):
        cvxalloc.solve(both)


def test_boundary_feasible_single_point(base):
    """An SLO exactly at W(lo') leaves one feasible allocation: lo'."""
    sc0, _ = base
    W_lo = cvxalloc.evaluate(sc0, sc0.min_tokens).mean_system_time
    res = cvxalloc.solve(sc0.with_(constraints=Constraints(max_mean_system_time=W_lo)))
    assert res.diagnostics["constraints"]["max_mean_system_time"]["slack"] >= 0
    assert np.allclose(res.tokens, sc0.min_tokens, atol=1e-6 * sc0.max_tokens)
    assert "only feasible" in res.message and res.certificate.gap <= 1e-12


# ---------------------------------------------------------------------------
# methods, model and file format


def test_methods_without_support_refuse(base):
    sc0, _ = base
    sc = sc0.with_(constraints=Constraints(max_mean_tokens=1000.0))
    able = ["conic", "aggregate"]
    others = [m for m in cvxalloc.available_methods() if m not in able]
    assert others
    # Without a method, solve() uses the default, which honours every constraint.
    assert cvxalloc.solve(sc).method == "aggregate"
    for m in others:
        with pytest.raises(ConstraintError, match=r"max_mean_tokens.*'conic' or 'aggregate'"):
            cvxalloc.solve(sc, method=m)


def test_required_tokens_inverts_accuracy(base):
    sc0, _ = base
    floors = np.array([0.55, 0.5, 0.8, 0.3, 0.3])
    sc = sc0.with_(constraints=Constraints(min_accuracy=floors))
    tau = required_tokens(sc)
    acc = sc.accuracy.value(tau)
    above = tau > sc.min_tokens
    assert np.all(acc[above] >= floors[above])
    assert np.allclose(acc[above], floors[above], rtol=1e-12, atol=1e-14)
    # The science floor 0.3 is above A(lo) = 0.275: raised; none below A(lo) raised.
    assert np.all(above == (sc.accuracy.value(sc.min_tokens) < floors))


def test_validation_names_fields():
    with pytest.raises(ConstraintError, match="max_utilization must be in"):
        Constraints(max_utilization=1.5)
    with pytest.raises(ConstraintError, match="max_mean_system_time must be > 0"):
        Constraints(max_mean_system_time=-1)
    with pytest.raises(ConstraintError, match="max_mean_tokens must be a number"):
        Constraints(max_mean_tokens="lots")
    with pytest.raises(ConstraintError, match="min_accuracy must be in"):
        Constraints(min_accuracy=[0.5, 1.2])
    sc = small_scenario(3)
    with pytest.raises(ConstraintError, match="one entry per task"):
        sc.with_(constraints=Constraints(min_accuracy=[0.5, 0.5]))


def test_file_round_trip_and_errors(tmp_path):
    sc = small_scenario(3).with_(
        constraints=Constraints(
            max_mean_system_time=30.0, max_mean_tokens=2000.0, min_accuracy=[0.3, np.nan, 0.2]
        )
    )
    data = sc.to_dict()
    assert data["constraints"] == {"max_mean_system_time": 30.0, "max_mean_tokens": 2000.0}
    assert "min_accuracy" not in data["task"][1]
    back = cvxalloc.Scenario.from_dict(data)
    assert back.constraints.to_table() == sc.constraints.to_table()
    assert np.array_equal(
        back.constraints.min_accuracy, sc.constraints.min_accuracy, equal_nan=True
    )
    assert back.take([1, 2]).constraints.min_accuracy[1] == 0.2
    bad = dict(data, constraints={"max_latency": 3})
    with pytest.raises(ConstraintError, match='unknown key "max_latency"'):
        cvxalloc.Scenario.from_dict(bad)
    bad = dict(data, constraints={"min_accuracy": 0.3})
    with pytest.raises(ConstraintError, match="set per task"):
        cvxalloc.Scenario.from_dict(bad)
    tasks = [dict(t) for t in data["task"]]
    tasks[0]["min_accuracy"] = 1.5
    with pytest.raises(ConstraintError, match="min_accuracy must be in"):
        cvxalloc.Scenario.from_dict(dict(data, task=tasks))
    # No constraints in the file: none on the scenario, and none written back.
    plain = small_scenario(3)
    assert plain.constraints is None and "constraints" not in plain.to_dict()


def test_cli_json_reports_constraints(tmp_path, capsys):
    import json

    from cvxalloc.cli import main

    sc = small_scenario(3)
    r0 = cvxalloc.solve(sc)
    data = sc.to_dict()
    data["constraints"] = {"max_mean_system_time": 0.9 * r0.mean_system_time}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    assert main(["solve", str(path), "--json", "--no-baselines"]) == 0
    out = json.loads(capsys.readouterr().out)
    entry = out["diagnostics"]["constraints"]["max_mean_system_time"]
    assert entry["slack"] >= 0 and entry["shadow_price"] > 0
    assert out["certificate"]["kind"] == "lagrangian-frank-wolfe"
    data["constraints"] = {"max_mean_system_time": 1e-3}
    path.write_text(json.dumps(data))
    assert main(["solve", str(path)]) == 2
    assert "max_mean_system_time" in capsys.readouterr().err


@pytest.mark.parametrize("seed", range(12))
def test_random_scenarios_match_independent_cvxpy(seed):
    """Random sizes, loads (up to an unstable box) and constraint mixes."""
    r = np.random.default_rng(seed)
    n = int(r.integers(2, 9))
    sc0 = small_scenario(n, load=float(r.choice([0.3, 0.8, 1.3])), gamma=0.01, seed=seed)
    r0 = cvxalloc.solve(sc0)
    lo_acc = sc0.accuracy.value(sc0.min_tokens)
    hi_acc = sc0.accuracy.value(sc0.max_tokens)
    floors = np.where(
        r.uniform(size=n) < 0.5, lo_acc + r.uniform(0.1, 0.6, n) * (hi_acc - lo_acc), np.nan
    )
    cand = {
        "max_mean_system_time": r.uniform(0.6, 1.1) * r0.mean_system_time,
        "max_mean_tokens": r.uniform(0.5, 1.1) * float(sc0.probability @ r0.tokens),
        "max_utilization": r.uniform(0.6, 1.1) * r0.utilization,
        "min_accuracy": floors,
    }
    keys = [k for k in cand if r.uniform() < 0.6] or ["max_mean_system_time"]
    cons = Constraints(**{k: cand[k] for k in keys})
    sc = sc0.with_(constraints=cons)
    try:
        res = cvxalloc.solve(sc)
    except InfeasibleError:
        # Then the exact test says lo' violates a constraint: check it independently.
        lo2 = effective_lower(sc)
        ev = cvxalloc.evaluate(sc0, lo2)
        assert any(
            [
                ev.utilization >= 1,
                cons.max_mean_system_time is not None
                and ev.mean_system_time > cons.max_mean_system_time,
                cons.max_mean_tokens is not None and sc0.probability @ lo2 > cons.max_mean_tokens,
                cons.max_utilization is not None and ev.utilization > cons.max_utilization,
            ]
        )
        return
    U_ind, _ = independent_optimum(sc, cons)
    assert res.objective == pytest.approx(U_ind, rel=1e-7, abs=1e-10)
    assert res.certificate.upper_bound >= U_ind - 1e-9 * abs(U_ind)
    assert res.certificate.within(1e-7), (res.certificate, res.solver_stats["polish"])
    assert all(v["slack"] >= 0 for v in res.diagnostics["constraints"].values())


@pytest.mark.parametrize(
    "cons",
    [
        Constraints(max_mean_system_time=30.0),
        Constraints(max_utilization=0.6, max_mean_tokens=1500.0),
    ],
)
def test_zero_latency_weight_bounded_by_constraints(base, cons):
    """gamma = 0 with unstable maximum budgets: an SLO or a cap < 1 makes it well posed."""
    sc0, _ = base
    assert sc0.utilization(sc0.max_tokens) >= 1
    with pytest.raises(cvxalloc.UnstableError, match="max_mean_system_time or max_utilization"):
        sc0.with_(latency_weight=0.0)
    sc = sc0.with_(latency_weight=0.0, constraints=cons)
    res = cvxalloc.solve(sc)
    U_ind, _ = independent_optimum(sc, cons)
    assert res.objective == pytest.approx(U_ind, rel=1e-7)
    assert res.certificate.upper_bound >= U_ind - 1e-9 * abs(U_ind)
    assert res.certificate.within(1e-8)
    assert all(v["slack"] >= 0 for v in res.diagnostics["constraints"].values())
