"""Baselines: the best uniform budget is exact; minimum and maximum budgets; optimum wins."""

from __future__ import annotations

import numpy as np
import pytest

import cvxalloc
from cvxalloc.baselines import baselines, maximum_budgets, minimum_budgets, uniform_budget
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
    res = uniform_budget(sc)
    T = res.diagnostics["budget"]
    np.testing.assert_allclose(res.tokens, np.clip(T, sc.min_tokens, sc.max_tokens))
    T_grid, U_grid, h = _grid_best(sc)
    # exact: never below any grid point, and the grid's best is within one cell of it
    assert res.objective >= U_grid - 1e-13 * abs(U_grid)
    # (concave on each piece: the grid point next to the optimum loses at most O(h^2))
    assert res.objective - U_grid <= 1e-6 * abs(U_grid)
    assert res.utilization < 1
    assert res.status == "optimal"


def test_uniform_on_the_example(example):
    res = uniform_budget(example)
    T_grid, U_grid, h = _grid_best(example, 40001)
    assert res.objective >= U_grid - 1e-13
    assert abs(res.diagnostics["budget"] - T_grid) <= 2 * h


def test_uniform_with_one_type_is_the_optimum():
    sc = random_scenario(np.random.default_rng(3), 1, load="heavy")
    opt = cvxalloc.solve(sc, method="conic")
    assert uniform_budget(sc).objective == pytest.approx(opt.objective, rel=1e-9)


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
