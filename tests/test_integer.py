"""Integer budgets without SCIP: grids, validation, certified rounding + local search.

Ground truth is brute-force enumeration of every grid allocation (small N) and
the continuous Frank-Wolfe bound recomputed here.
"""

from __future__ import annotations

import builtins
import itertools
import json
import pathlib
from fractions import Fraction

import numpy as np
import pytest

import cvxalloc
from cvxalloc.certificate import certify
from cvxalloc.cli import main as cli_main
from cvxalloc.errors import MissingDependencyError, ScenarioError, UnstableError
from cvxalloc.integer import Grids, _step_count, grid, local_search, round_allocation
from cvxalloc.objective import Objective
from cvxalloc.scenario import MIN_STEP_ULPS
from cvxalloc.testing import random_scenario

FAMILIES = ("exponential", "power", "logarithmic")


# --- helpers ------------------------------------------------------------------
def with_grids(rng: np.random.Generator, sc, kind: str, max_levels: int = 12):
    """Give every task a random menu (whole tokens) or a step of 2..12 levels."""
    levels, step = [], []
    for i in range(sc.n):
        lo, hi = sc.min_tokens[i], sc.max_tokens[i]
        m = int(rng.integers(2, max_levels + 1))
        k = kind if kind != "mixed" else str(rng.choice(["menu", "step"]))
        if k == "menu":
            whole = np.arange(int(np.ceil(lo)), int(np.floor(hi)) + 1)
            pts = np.sort(rng.choice(whole, size=m, replace=False)).astype(float)
            if rng.random() < 0.5:  # make the lowest budget available half the time
                pts[0] = lo
            levels.append(pts)
            step.append(1.0)
        else:
            levels.append(None)
            # not a divisor of the width half the time: max_tokens off the grid
            step.append(
                (hi - lo) / (m - 1 + (rng.uniform(0.05, 0.95) if rng.random() < 0.5 else 0.0))
            )
    return sc.with_(levels=levels, step=step)


def brute_force(sc) -> tuple[np.ndarray, float]:
    """Best grid allocation by enumeration (``-inf`` if none is stable)."""
    obj = Objective(sc)
    best_t, best_u = None, -np.inf
    for t in itertools.product(*[grid(sc, i) for i in range(sc.n)]):
        u = obj.value(np.array(t))
        if u > best_u:
            best_t, best_u = np.array(t), u
    return best_t, best_u


def stable_grid_scenario(rng, n, family, kind, load):
    """A random scenario with grids where at least one grid allocation is stable."""
    for _ in range(50):
        sc = with_grids(rng, random_scenario(rng, n, load=load, families=[family]), kind)
        lowest = np.array([grid(sc, i)[0] for i in range(sc.n)])
        if sc.utilization(lowest) < 1:
            return sc
    raise RuntimeError("no stable grid scenario drawn")


# --- grids --------------------------------------------------------------------
def test_step_grid_starts_at_min_and_stops_at_or_below_max(example):
    sc = example.with_(step=[1000.0] * example.n)
    for i in range(sc.n):
        g = grid(sc, i)
        lo, hi = sc.min_tokens[i], sc.max_tokens[i]
        assert g[0] == lo
        assert np.allclose(np.diff(g), 1000.0)
        assert g[-1] <= hi and g[-1] + 1000.0 > hi
        # max_tokens is on the grid exactly when the width is a multiple of the step
        assert (g[-1] == hi) == (float(hi - lo) % 1000.0 == 0.0)


def test_whole_token_grid_by_default(example):
    g = grid(example, 0)
    assert np.array_equal(g, np.arange(example.min_tokens[0], example.max_tokens[0] + 1))


def test_menu_grid_and_vectorized_grids_agree(rng, example):
    sc = with_grids(rng, example, "mixed")
    g = Grids(sc)
    for i in range(sc.n):
        assert np.array_equal(g.levels(i), grid(sc, i))
        assert g.size[i] == grid(sc, i).size
    k = np.array([rng.integers(0, s) for s in g.size])
    t = g.values(k)
    assert np.array_equal(g.nearest(t), k)
    assert g.contains(t).all()
    assert np.array_equal(t, [grid(sc, i)[k[i]] for i in range(sc.n)])


def test_step_that_divides_the_width_reaches_max_despite_float_error():
    sc = cvxalloc.Scenario.from_arrays(
        probability=[1.0],
        max_tokens=0.3,
        min_tokens=0.0,
        per_token=0.01,
        accuracy=cvxalloc.accuracy.Exponential(floor=0.1, ceiling=0.9, scale=1.0),
        arrival_rate=0.1,
        latency_weight=0.01,
        step=[0.1],
    )
    g = grid(sc, 0)
    assert g.size == 4 and g[-1] == pytest.approx(0.3)


# --- validation ---------------------------------------------------------------
@pytest.mark.parametrize(
    "levels, words",
    [
        ([512.0, 128.0, 2048.0], "strictly increasing"),
        ([128.0, 128.0, 2048.0], "duplicates"),
        ([128.0, 99999.0], "within [min_tokens, max_tokens]"),
        ([-1.0, 128.0], "within [min_tokens, max_tokens]"),
    ],
)
def test_bad_levels_name_the_task(example, levels, words):
    lv = [None] * example.n
    lv[2] = np.array(levels)
    with pytest.raises(ScenarioError) as err:
        example.with_(levels=lv)
    assert f'task "{example.names[2]}"' in str(err.value)
    assert words in str(err.value)


@pytest.mark.parametrize("step", [0.0, -256.0])
def test_bad_step_names_the_task(example, step):
    st = np.ones(example.n)
    st[1] = step
    with pytest.raises(ScenarioError, match=rf'task "{example.names[1]}": step must be > 0'):
        example.with_(step=st)


def _file_with(example, tmp_path, task_changes):
    data = example.to_dict()
    data["task"][1].update(task_changes)
    path = tmp_path / "sc.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"levels": [4096, 1024]}, "strictly increasing"),
        ({"levels": [16384, 16384]}, "duplicates"),
        ({"levels": [0, 10**9]}, "within [min_tokens, max_tokens]"),
        ({"step": 0}, "step must be > 0"),
        ({"step": -8}, "step must be > 0"),
        ({"step": 256, "levels": [0, 256]}, "either levels or step"),
    ],
)
def test_bad_grids_in_a_file_name_the_task(example, tmp_path, changes, words):
    path = _file_with(example, tmp_path, changes)
    with pytest.raises(ScenarioError) as err:
        cvxalloc.load_scenario(path)
    assert f'task "{example.names[1]}"' in str(err.value) and words in str(err.value)


def test_grids_round_trip_through_a_file(example, tmp_path):
    lo = int(example.min_tokens[1])
    path = _file_with(example, tmp_path, {"levels": [lo, lo + 1024, lo + 4096]})
    data = json.loads(path.read_text())
    data["task"][2]["step"] = 512
    path.write_text(json.dumps(data))
    sc = cvxalloc.load_scenario(path)
    assert np.array_equal(grid(sc, 1), [lo, lo + 1024, lo + 4096])
    assert grid(sc, 2)[1] - grid(sc, 2)[0] == 512
    assert grid(sc, 0).size == sc.max_tokens[0] - sc.min_tokens[0] + 1


# --- rounding -----------------------------------------------------------------
def _check_grid_allocation(sc, t):
    assert np.all(t >= sc.min_tokens) and np.all(t <= sc.max_tokens)
    for i in range(sc.n):
        assert np.any(grid(sc, i) == t[i]), f"type {i}: {t[i]} is not a grid point"
    assert sc.utilization(t) < 1


def _no_improving_neighbour(sc, t):
    obj = Objective(sc)
    u = obj.value(t)
    for i in range(sc.n):
        g = grid(sc, i)
        j = int(np.flatnonzero(g == t[i])[0])
        for jj in (j - 1, j + 1):
            if 0 <= jj < g.size:
                t2 = t.copy()
                t2[i] = g[jj]
                assert obj.value(t2) <= u + 1e-13 * abs(u), (i, jj)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["menu", "step", "mixed"])
def test_rounding_is_within_its_certificate_of_brute_force(rng, family, kind):
    for load in ("light", "heavy", "overloaded"):
        n = int(rng.integers(1, 5))
        sc = stable_grid_scenario(rng, n, family, kind, load)
        t_bf, u_bf = brute_force(sc)
        cont = cvxalloc.solve(sc, method="conic")
        res = round_allocation(sc, continuous=cont)
        _check_grid_allocation(sc, res.tokens)
        _no_improving_neighbour(sc, res.tokens)
        cert = res.certificate
        assert cert.kind == "integer" and res.method == "rounding"
        # the certificate is the formula, recomputed from the continuous point it used
        fw = certify(sc, cont.tokens)
        assert cert.upper_bound == pytest.approx(fw.objective + fw.gap, rel=1e-12, abs=1e-15)
        assert cert.gap == pytest.approx(cert.upper_bound - res.objective, rel=1e-9, abs=1e-15)
        # rounding is never better than the integer optimum, which the bound covers
        assert res.objective <= u_bf + 1e-13 * abs(u_bf)
        assert u_bf <= cert.upper_bound + 1e-13 * abs(u_bf)
        assert u_bf - res.objective <= cert.gap + 1e-13 * abs(u_bf)
        d = res.diagnostics
        assert d["rounding_loss"] == pytest.approx(d["continuous_objective"] - res.objective)
        assert d["continuous_upper_bound"] == cert.upper_bound


def test_rounding_whole_tokens_on_the_example(example, example_optimum):
    res = round_allocation(example, continuous=example_optimum)
    _check_grid_allocation(example, res.tokens)
    assert np.array_equal(res.tokens, np.round(res.tokens))
    assert np.all(np.abs(res.tokens - example_optimum.tokens) <= 3)
    # whole tokens cost about 1e-9 of U here; the certificate says so
    assert 0 <= res.certificate.gap <= 1e-7 * abs(res.objective)
    assert res.objective <= example_optimum.objective + example_optimum.certificate.gap


def test_rounding_never_leaves_the_stability_region(rng):
    # near saturation with menus whose nearest point is unstable
    for _ in range(20):
        sc = stable_grid_scenario(rng, 3, "power", "menu", "saturated")
        res = round_allocation(sc)
        _check_grid_allocation(sc, res.tokens)


def test_unstable_start_falls_back_to_a_stable_grid_point():
    # one type, continuous optimum just below saturation, the nearest level above it
    sc = cvxalloc.Scenario.from_arrays(
        probability=[1.0],
        max_tokens=1000.0,
        per_token=0.01,
        base=0.0,
        accuracy=cvxalloc.accuracy.Exponential(floor=0.0, ceiling=1.0, scale=1e5),
        arrival_rate=0.1,
        latency_weight=1e-6,
        levels=[[0.0, 500.0, 1000.0]],
    )
    cont = cvxalloc.solve(sc, method="conic")
    assert cont.tokens[0] > 900  # optimum hugs the saturation point t = 1000
    res = round_allocation(sc, continuous=cont)
    assert res.tokens[0] == 500.0
    assert res.diagnostics["start"] == "floor"


def test_no_stable_grid_allocation_is_a_clear_error(example):
    lv = [None] * example.n
    lv[3] = np.array([example.max_tokens[3]])
    lv[0] = np.array([example.max_tokens[0]])
    sc = example.with_(levels=lv, arrival_rate=example.arrival_rate * 2.2)
    assert sc.utilization(np.array([grid(sc, i)[0] for i in range(sc.n)])) >= 1
    with pytest.raises(UnstableError, match="no grid allocation is stable"):
        round_allocation(sc)


def test_local_search_refuses_an_unstable_start(example):
    g = Grids(example)
    with pytest.raises(ValueError):
        local_search(example.with_(arrival_rate=example.arrival_rate * 3), g.size - 1, g)


def test_rounding_is_a_method_and_takes_a_continuous_method(example):
    res = cvxalloc.solve(example, method="rounding", continuous_method="conic")
    assert res.method == "rounding" and res.status == "optimal"
    assert res.solver_stats["continuous_method"] == "conic"
    out = res.to_dict()
    assert out["certificate"]["kind"] == "integer"
    assert json.dumps(out)


def test_cli_integer_flag(capsys):
    assert cli_main(["solve", "--integer", "--json", "--no-baselines"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "rounding"
    assert out["certificate"]["kind"] == "integer"
    assert all(float(v).is_integer() for v in out["tokens"].values())
    assert out["certificate"]["gap"] >= 0


def test_mixed_integer_without_pyscipopt(monkeypatch, example, example_optimum):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "pyscipopt" or name.startswith("pyscipopt."):
            raise ImportError("No module named 'pyscipopt'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    import importlib

    real_im = importlib.import_module

    def fake_im(name, *args, **kwargs):
        if name == "pyscipopt" or name.startswith("pyscipopt."):
            raise ImportError("No module named 'pyscipopt'")
        return real_im(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake_im)
    with pytest.raises(MissingDependencyError, match=r'pip install "cvxalloc\[mi\]"'):
        cvxalloc.solve(example, method="mixed-integer")
    res = round_allocation(example, continuous=example_optimum)
    assert res.method == "rounding"


def test_operator_constraints_are_refused_not_ignored(example):
    from cvxalloc import Constraints
    from cvxalloc.constraints import ConstraintError

    sc = example.with_(constraints=Constraints(max_utilization=0.3))
    with pytest.raises(ConstraintError, match="max_utilization"):
        round_allocation(sc)
    with pytest.raises(ConstraintError, match="max_utilization"):
        cvxalloc.solve(sc, method="rounding")


# --- steps at the resolution of doubles (issue 22) -----------------------------
CASES = pathlib.Path(__file__).parent / "data" / "cases"


def _exact_step_count(lo: float, hi: float, step: float) -> int:
    """Steps K with lo + K step <= hi, in exact rational arithmetic (the ground truth)."""
    lo_q, hi_q, step_q = Fraction(lo), Fraction(hi), Fraction(step)
    return int((hi_q - lo_q) // step_q)


def test_step_count_matches_exact_arithmetic_down_to_the_resolution_limit(rng):
    for _ in range(2000):
        hi = float(10.0 ** rng.uniform(-6, 12))
        lo = hi * float(rng.choice([0.0, rng.uniform(0, 1)]))
        if hi == lo:
            continue
        # from the smallest accepted step to a few steps over the width
        resolved = MIN_STEP_ULPS * np.spacing(hi)
        step = float(np.exp(rng.uniform(np.log(resolved), np.log(2 * (hi - lo) + resolved))))
        k = int(_step_count(np.array([lo]), np.array([hi]), np.array([step]))[0])
        exact = _exact_step_count(lo, hi, step)
        # one more step only where lo + (K + 1) step is max_tokens up to rounding
        assert k in (exact, exact + 1), (lo, hi, step, k, exact)
        if k == exact + 1:
            over = Fraction(lo) + (exact + 1) * Fraction(step) - Fraction(hi)
            assert over <= 4 * Fraction(float(np.spacing(hi))), (lo, hi, step)
        g = Grids(
            cvxalloc.Scenario.from_arrays(
                probability=[1.0],
                min_tokens=lo,
                max_tokens=hi,
                per_token=1e-9 / hi,
                step=[step],
                accuracy=cvxalloc.accuracy.Exponential(floor=0.1, ceiling=0.9, scale=hi),
                arrival_rate=1.0,
                latency_weight=0.01,
            )
        )
        ends = g.values_of(0, np.array([0, g.size[0] - 1]))
        assert g.size[0] == k + 1 and ends[0] == lo and lo <= ends[1] <= hi


def test_grids_of_a_huge_count_never_overflow_the_index():
    # the arithmetic alone (no scenario): a step far below the resolution clips, never wraps
    k = _step_count(np.array([0.0, 0.0]), np.array([8192.0, 1.0]), np.array([1e-300, 5e-324]))
    assert np.all(k >= 0) and np.all(k <= 2**53)


@pytest.mark.parametrize("name", ["example_step_1e-16.toml", "example_step_1e-300.toml"])
def test_a_step_below_the_resolution_of_doubles_is_refused(name, capsys):
    with pytest.raises(ScenarioError, match=r'task "chat": step .* double precision') as err:
        cvxalloc.load_scenario(CASES / name)
    assert "give step >= 1.86e-09" in str(err.value)
    for extra in (["--integer"], ["--method", "mixed-integer"]):
        assert cli_main(["solve", str(CASES / name), "--json", *extra]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1


def test_the_smallest_accepted_step_rounds_inside_the_box(example):
    hi = example.max_tokens[0]
    resolved = MIN_STEP_ULPS * np.spacing(hi)
    with pytest.raises(ScenarioError, match="double precision"):
        example.with_(step=[resolved * 0.99] + [1.0] * (example.n - 1))
    sc = example.with_(step=[resolved] + [1.0] * (example.n - 1))
    g = Grids(sc)
    assert g.size[0] == _exact_step_count(0.0, hi, resolved) + 1
    top = g.values_of(0, g.size[0] - 1 - np.arange(4))
    assert np.all(np.diff(top) < 0) and top[0] <= hi
    res = round_allocation(sc)
    t = res.tokens
    assert np.all(t >= sc.min_tokens) and np.all(t <= sc.max_tokens) and sc.utilization(t) < 1
    assert g.contains(t).all()  # on the grid (4.4e12 points: not materialized)
    assert res.certificate.gap >= 0
    assert res.objective <= res.certificate.upper_bound


def _scaled_tokens(sc, f: float):
    """The same problem with tokens in units ``1 / f`` (bounds, steps, scales times f)."""
    data = sc.to_dict()
    for task in data["task"]:
        for key in ("min_tokens", "max_tokens", "step"):
            if key in task:
                task[key] *= f
        if "levels" in task:
            task["levels"] = [x * f for x in task["levels"]]
        task["service"]["per_token"] /= f
        task["accuracy"]["scale"] *= f
    return cvxalloc.Scenario.from_dict(data)


@pytest.mark.parametrize("f", [1e-100, 1e-12, 1e6])
def test_step_grids_at_any_token_scale_round_as_brute_force_says(rng, f):
    # the grid arithmetic is scale-free: the same problem in other token units keeps
    # its brute-force optimum, and rounding stays within its certificate of it
    for kind in ("step", "mixed"):
        base = stable_grid_scenario(rng, 3, "exponential", kind, "overloaded")
        sc = _scaled_tokens(base, f)
        _, u_base = brute_force(base)
        t_bf, u_bf = brute_force(sc)
        assert u_bf == pytest.approx(u_base, rel=1e-12)
        res = round_allocation(sc)
        _check_grid_allocation(sc, res.tokens)
        assert res.objective <= u_bf + 1e-13 * abs(u_bf)
        assert u_bf - res.objective <= res.certificate.gap + 1e-13 * abs(u_bf)
