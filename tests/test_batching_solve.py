"""Solving with a batching server: conic vs default, brute force, refusals, CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

import cvxalloc
from cvxalloc.cli import main
from cvxalloc.errors import OptionError
from cvxalloc.queue import BatchingQueue
from cvxalloc.testing import random_scenario

PUBLISHED = {
    "model": "batching",
    "concurrency": [1, 4, 8, 16, 32, 48],
    "speedup": [1.0, 3.82, 6.85, 11.7, 17.7, 21.6],
}
EXAMPLE = str(resources.files("cvxalloc").joinpath("data/example_batching.toml"))


@pytest.fixture(scope="module")
def example():
    return cvxalloc.load_scenario(EXAMPLE)


def test_example_is_batching(example):
    assert example.server is not None and example.capacity == 21.6
    # one query at a time could not serve this load even at the minimum budgets
    assert (
        example.arrival_rate * float(example.probability @ example.service_time(example.min_tokens))
        > 1
    )


@pytest.mark.parametrize("scale", [0.25, 1.0, 2.0])
def test_conic_and_default_agree(example, scale):
    sc = example.with_(arrival_rate=example.arrival_rate * scale)
    ref = cvxalloc.solve(sc, method="conic")
    res = cvxalloc.solve(sc)
    assert ref.status == res.status == "optimal"
    assert abs(ref.objective - res.objective) <= 1e-7 * abs(res.objective)
    # each certificate bounds the other's objective
    assert res.objective <= ref.certificate.upper_bound + 1e-12 * abs(res.objective)
    assert ref.objective <= res.certificate.upper_bound + 1e-12 * abs(res.objective)
    details = ref.certificate.details
    assert details["cuts_converged"]
    # the relaxation's bound is an upper bound of U* (up to the solver's own gap)
    gap = details["duality_gap"]
    assert details["relaxation_upper_bound"] >= res.objective - gap - 1e-12


def test_rounding_takes_a_batching_server(example):
    res = cvxalloc.solve(example, method="rounding")
    assert np.all(res.tokens == np.round(res.tokens))
    cont = cvxalloc.solve(example)
    assert res.objective <= cont.certificate.upper_bound
    assert res.certificate.upper_bound >= cont.objective - 1e-12


def _brute(sc, n_grid):
    """max U over a product grid of the box (N = 1 or 2), W by the queue model on arrays."""
    grids = [np.linspace(lo, hi, n_grid) for lo, hi in zip(sc.min_tokens, sc.max_tokens)]
    acc = [
        np.array([sc.accuracy.value(np.full(sc.n, g))[i] for g in grids[i]]) for i in range(sc.n)
    ]
    pw = sc.probability * sc.weight
    queue = BatchingQueue(sc.arrival_rate, curve=sc.server)
    parts = [sc.probability[i] * (sc.base[i] + sc.per_token[i] * grids[i]) for i in range(sc.n)]
    if sc.n == 1:
        m1, A = parts[0], pw[0] * acc[0]
    else:
        m1 = parts[0][:, None] + parts[1][None, :]
        A = pw[0] * acc[0][:, None] + pw[1] * acc[1][None, :]
    return float(np.max(A - sc.latency_weight * queue.value(m1)))


CURVES = [
    PUBLISHED,
    {"model": "batching", "concurrency": [1, 2, 8], "speedup": [1.0, 1.8, 4.0]},
    {"model": "batching", "concurrency": [1], "speedup": [1.0]},
]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [1, 2])
def test_certificate_upper_bound_holds_against_brute_force(seed, n):
    base = random_scenario(seed, n, load="overloaded", latency_weight=None)
    curve = CURVES[seed % len(CURVES)]
    # push the load into the batching range: the box's top is saturated or beyond
    m1_hi = float(base.probability @ base.service_time(base.max_tokens))
    cap = curve["speedup"][-1]
    m1_lo = float(base.probability @ base.service_time(base.min_tokens))
    lam = min(1.3 * cap / m1_hi, 0.9 * cap / m1_lo)
    sc = base.with_(arrival_rate=lam, server=curve, arrival_scv=1.0)
    best = _brute(sc, 4001 if n == 1 else 401)
    for method in ("aggregate", "conic"):
        res = cvxalloc.solve(sc, method=method)
        ub = res.certificate.upper_bound
        assert best <= ub + 1e-12 * max(1.0, abs(ub)), method
        assert res.objective >= best - 1e-9 * max(1.0, abs(best))  # the grid is no better
    # the tangent-cut relaxation's own bound (the solver's dual bound) is above the grid too
    details = res.certificate.details
    if details["solver"] == "CLARABEL":
        assert best <= details["relaxation_upper_bound"] + 1e-8 * max(1.0, abs(best))


@pytest.mark.parametrize("method", ["fixed-point", "gradient", "mixed-integer"])
def test_first_order_and_mixed_integer_refuse(example, method):
    with pytest.raises(OptionError, match="does not support a batching server"):
        cvxalloc.solve(example, method=method)


def test_json_output(example, capsys):
    assert main(["solve", EXAMPLE, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    res = cvxalloc.solve(example)
    assert data["utilization"] == pytest.approx(res.utilization, rel=1e-9)
    assert data["utilization"] < 1


def _write(tmp_path, server: str) -> str:
    text = open(EXAMPLE, encoding="utf-8").read()
    start = text.index("\n[server]") + 1
    end = text.index("\n[[task]]") + 1
    path = tmp_path / "bad.toml"
    path.write_text(text[:start] + server + "\n" + text[end:], encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("server", "needle"),
    [
        (
            '[server]\nmodel = "batching"\nconcurrency = [1, 2, 10]\nspeedup = [1.0, 1.1, 9.0]',
            "non-convex",
        ),
        (
            '[server]\nmodel = "batching"\nconcurrency = [1, 4, 8]\nspeedup = [1.0, 3.0, 2.5]',
            "speedup must increase",
        ),
        (
            '[server]\nmodel = "batching"\nconcurrency = [0, 4]\nspeedup = [1.0, 3.0]',
            "concurrency must be >= 1",
        ),
        ('[server]\nmodel = "batching"\nspeedup = [1.0, 3.0]', "needs concurrency"),
        ('[server]\nmodel = "batching"\nconcurrency = [1, 4]', "needs speedup"),
    ],
)
def test_bad_curves_exit_2_one_line(tmp_path, capsys, server, needle):
    path = _write(tmp_path, server)
    assert main(["solve", path]) == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert out.out == ""


def test_bad_curve_no_traceback_from_the_console(tmp_path):
    path = _write(
        tmp_path, '[server]\nmodel = "batching"\nconcurrency = [1, 2]\nspeedup = [1.0, 2.5]'
    )
    out = subprocess.run(
        [sys.executable, "-m", "cvxalloc", "solve", path], capture_output=True, text=True
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "between concurrency 1 and 2" in out.stderr and len(out.stderr.splitlines()) == 1


def test_sensitivity_to_the_arrival_rate_matches_re_solves(example):
    """The queue's parameter partials carry sensitivity to a batching server (it was refused)."""
    from cvxalloc.sensitivity import sensitivity

    h = 1e-5
    up = cvxalloc.solve(example.with_(arrival_rate=example.arrival_rate + h)).objective
    down = cvxalloc.solve(example.with_(arrival_rate=example.arrival_rate - h)).objective
    fd = (up - down) / (2 * h)
    assert sensitivity(example).d_objective_d_arrival_rate == pytest.approx(fd, rel=1e-5)


def test_sweep_of_the_latency_weight(example):
    # sweep goes through solve(); both paths agree point by point
    for gamma in (0.0005, 0.002):
        sc = example.with_(latency_weight=gamma)
        a, c = cvxalloc.solve(sc), cvxalloc.solve(sc, method="conic")
        assert abs(a.objective - c.objective) <= 1e-7 * abs(a.objective)
