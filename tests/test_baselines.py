"""Baselines: the best uniform budget is exact; minimum and maximum budgets; optimum wins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cvxalloc
from cvxalloc.baselines import (
    OPTIMAL_RTOL,
    baselines,
    best_uniform,
    maximum_budgets,
    minimum_budgets,
)
from cvxalloc.objective import Objective
from cvxalloc.testing import random_scenario


def _grid_best(sc, points=20001):
    """Dense grid search of U(clip(T, lo, hi)) over T in [min lo, max hi]."""
    obj = Objective(sc)
    Ts = np.linspace(sc.min_tokens.min(), sc.max_tokens.max(), points)
    Us = np.array([obj.value(np.clip(T, sc.min_tokens, sc.max_tokens)) for T in Ts])
    k = int(np.argmax(Us))
    return Ts[k], Us[k], Ts[1] - Ts[0]


@pytest.mark.parametrize("load", ["light", "heavy", "saturated", "overloaded"])
def test_uniform_is_the_best_common_budget(load):
    sc = random_scenario(np.random.default_rng(17), 7, load=load)
    res = best_uniform(sc)
    T = res.diagnostics["budget"]
    np.testing.assert_allclose(res.tokens, np.clip(T, sc.min_tokens, sc.max_tokens))
    T_grid, U_grid, h = _grid_best(sc)
    # exact: never below any grid point, and the grid's best is within one cell of it
    assert res.objective >= U_grid - 1e-13 * abs(U_grid)
    # (concave on each piece: the grid point next to the optimum loses at most O(h^2))
    assert res.objective - U_grid <= 1e-6 * abs(U_grid)
    assert res.utilization < 1
    # a baseline is called optimal only where its own certificate proves it
    assert res.status == ("optimal" if res.certificate.within(OPTIMAL_RTOL) else "feasible")
    assert res.status == "feasible"  # seven types with different curves: not uniform at U*


@pytest.mark.parametrize("rate", [0.2, 2.0])
def test_uniform_is_the_best_common_budget_on_a_batching_server(rate):
    # the utilization grows as lam m1 / c_max: a search that forgot c_max stopped
    # 21.6 times too early (U = 0.511 at 326 tokens where 0.542 at 2,473 is reachable)
    sc = cvxalloc.load_scenario(
        Path(cvxalloc.__file__).parent / "data" / "example_batching.toml"
    ).with_(arrival_rate=rate)
    res = best_uniform(sc)
    _, U_grid, _ = _grid_best(sc)
    assert res.objective >= U_grid - 1e-13 * abs(U_grid)
    assert res.objective - U_grid <= 1e-6 * abs(U_grid)


def test_uniform_on_the_example(example):
    res = best_uniform(example)
    T_grid, U_grid, h = _grid_best(example, 40001)
    assert res.objective >= U_grid - 1e-13
    assert abs(res.diagnostics["budget"] - T_grid) <= 2 * h


def test_uniform_with_one_type_is_the_optimum():
    sc = random_scenario(np.random.default_rng(3), 1, load="heavy")
    opt = cvxalloc.solve(sc, method="conic")
    uni = best_uniform(sc)
    assert uni.objective == pytest.approx(opt.objective, rel=1e-9)
    assert uni.certificate.within(OPTIMAL_RTOL) and uni.status == "optimal"


def test_minimum_and_maximum(example):
    mn = minimum_budgets(example)
    np.testing.assert_array_equal(mn.tokens, example.min_tokens)
    assert mn.objective == Objective(example).value(example.min_tokens)
    # the example's maximum budgets overload the server
    assert example.utilization(example.max_tokens) >= 1
    assert maximum_budgets(example) is None
    light = random_scenario(np.random.default_rng(2), 5, load="light")
    mx = maximum_budgets(light)
    np.testing.assert_array_equal(mx.tokens, light.max_tokens)
    assert mx.objective == Objective(light).value(light.max_tokens)


@pytest.mark.parametrize("load", ["light", "heavy", "saturated", "overloaded"])
def test_optimum_beats_every_baseline(load):
    sc = random_scenario(np.random.default_rng(23), 12, load=load)
    opt = cvxalloc.solve(sc, method="conic")
    base = baselines(sc)
    assert set(base) == {"uniform", "minimum", "maximum"}
    for name, b in base.items():
        if b is None:
            assert name == "maximum" and sc.utilization(sc.max_tokens) >= 1
            continue
        assert opt.objective >= b.objective - 1e-12 * abs(b.objective), name
        # and every baseline's own certificate bounds the optimum from above
        assert b.certificate.upper_bound >= opt.objective - 1e-12 * abs(opt.objective), name


def _constrained(example):
    """The example with a compute budget the unconstrained uniform breaks and a floor the
    minimum budgets break."""
    from cvxalloc import Constraints

    floor = [0.56, np.nan, np.nan, np.nan, np.nan]
    cons = Constraints(max_mean_system_time=40.0, max_mean_tokens=1500.0, min_accuracy=floor)
    return example.with_(constraints=cons)


def test_constrained_baselines_meet_the_constraints_or_say_which_they_break(example):
    sc = _constrained(example)
    free = best_uniform(example)
    assert free.diagnostics["budget"] > 1500  # without the constraints it would break them
    base = baselines(sc)
    uni = base["uniform"]
    assert uni.status == "feasible" and "violated" not in uni.diagnostics
    assert uni.objective < free.objective  # the constraints cost the uniform budget utility
    assert sc.probability @ uni.tokens <= 1500.0
    assert uni.mean_system_time <= 40.0
    assert np.isfinite(uni.certificate.gap)  # its own (Lagrangian) certificate
    mn = base["minimum"]
    assert mn.status == "infeasible" and mn.diagnostics["violated"] == ["min_accuracy[chat]"]
    assert mn.certificate.gap == np.inf  # nothing is proven about a point outside the set
    assert "breaks min_accuracy[chat]" in mn.message


def test_solve_claims_no_gain_over_a_baseline_that_breaks_a_constraint(example, tmp_path, capsys):
    import json

    from cvxalloc.cli import main

    sc = _constrained(example)
    path = tmp_path / "constrained.json"
    path.write_text(json.dumps(sc.to_dict()))
    assert main(["solve", str(path)]) == 0
    text = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in text.split("against baselines")[1].splitlines()[1:]}
    assert "optimum gains" in lines["uniform"]
    assert "optimum gains" not in lines["minimum"]
    assert "breaks min_accuracy[chat]: no gain claimed" in lines["minimum"]
    uni = best_uniform(sc)
    assert f"at {uni.diagnostics['budget']:,.1f} tokens" in lines["uniform"]
    assert main(["solve", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["baselines"]
    assert out["uniform"]["status"] == "feasible" and out["uniform"]["violated"] == []
    assert out["uniform"]["objective"] == uni.objective
    assert out["uniform"]["gap"] == uni.certificate.gap
    assert out["minimum"] == {**out["minimum"], "status": "infeasible", "gap": None}
    assert out["minimum"]["violated"] == ["min_accuracy[chat]"]
