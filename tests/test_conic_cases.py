"""Conic reproducers of issue 22 and the fallback's time limit.

c1_seed307 (N = 200, arrival_scv 50) and c1_seed336 (N = 2000, arrival_scv 173):
minimum budgets at utilization 0.988 and 0.992. Every Clarabel attempt stopped
with InsufficientProgress and SCS ran for about 146 s (N = 2000). The optimum is
the minimum budgets: the marginal latency cost there (dW/dm1 at lo, a floor for
every allocation above it when arrival_scv >= 1) exceeds every type's marginal
accuracy, so the model's box is one point and the answer is certified without a
solve.
"""

from __future__ import annotations

import gzip
import pathlib

import numpy as np
import pytest

import cvxalloc
from cvxalloc.cli import main as cli_main
from cvxalloc.solvers.conic import optimum_box
from cvxalloc.testing import random_scenario

CASES = pathlib.Path(__file__).parent / "data" / "cases"


def _case(name: str, tmp_path: pathlib.Path) -> pathlib.Path:
    if name.endswith(".gz"):
        path = tmp_path / name[:-3]
        path.write_bytes(gzip.decompress((CASES / name).read_bytes()))
        return path
    return CASES / name


@pytest.mark.parametrize(
    "name", ["c1_seed307_scs_fallback.json", "c1_seed336_scs_fallback.json.gz"]
)
def test_minimum_budgets_near_saturation_are_certified_without_scs(name, tmp_path, capsys):
    path = _case(name, tmp_path)
    sc = cvxalloc.load_scenario(path)
    res = cvxalloc.solve(sc, method="conic", fallback=None)  # no SCS to fall back on
    assert res.status == "optimal" and res.certificate.within(1e-10)
    assert np.array_equal(res.tokens, sc.min_tokens)
    # the default method, an independent solver, finds the same point
    ref = cvxalloc.solve(sc)
    assert ref.status == "optimal"
    assert ref.objective <= res.certificate.upper_bound + 1e-12 * abs(res.objective)
    assert res.objective <= ref.certificate.upper_bound + 1e-12 * abs(ref.objective)
    # the command line: the result, or one line (the report's system-time percentiles
    # refuse a type whose service time has mean 0 and a positive variance at its minimum)
    code = cli_main(["solve", str(path), "--method", "conic", "--json", "--no-baselines"])
    captured = capsys.readouterr()
    assert code in (0, 2) and "Traceback" not in captured.err
    if code == 0:
        assert '"status": "optimal"' in captured.out
    else:
        assert len(captured.err.strip().splitlines()) == 1


def test_the_loaded_floor_keeps_every_optimum_in_the_box():
    # near saturation at lo with arrival_scv >= 1 the floor is A(lo), far above 1:
    # the box it gives must still hold the certified optimum
    for seed in range(8):
        sc = random_scenario(300 + seed, 30, load="overloaded").with_(arrival_scv=20.0)
        lam_max = 1.0 / float(sc.probability @ sc.service_time(sc.min_tokens))
        sc = sc.with_(arrival_rate=0.97 * lam_max)
        res = cvxalloc.solve(sc)
        assert res.certificate.within(1e-9)
        lo, ub = optimum_box(sc)
        assert np.all(res.tokens <= ub + 1e-9 * np.maximum(sc.max_tokens - lo, 1.0))


def test_the_fallback_stops_at_its_time_limit_with_a_clear_status():
    sc = random_scenario(3, 400, load="overloaded")
    # an invalid Clarabel setting makes every Clarabel attempt raise: SCS runs
    res = cvxalloc.solve(
        sc,
        method="conic",
        solver_options={"max_step_fraction": 2.0},
        fallback_time_limit=1e-3,
    )
    assert res.fallback == "SCS"
    assert res.solver_stats["time_limit_reached"] is True
    assert "SCS stopped at its time limit of 0.001 s" in res.message
    # the polished point is certified, or the status says the limit stopped it
    if res.status == "optimal":
        assert res.certificate.within(1e-10)
    else:
        assert res.status == "iteration_limit"
    raw = cvxalloc.solve(
        sc,
        method="conic",
        solver_options={"max_step_fraction": 2.0},
        fallback_time_limit=1e-3,
        polish_steps=0,
    )
    assert raw.status == "iteration_limit"
