"""Default and conic agree on batching servers with bursty arrivals and an admission limit.

Random scenarios across regimes (light to overloaded boxes, one type, identical types,
minimum budgets, latency weights that pin every type at a bound), arrival scv 0.3, 1,
9 and 173 (the Azure code trace), with and without ``max_running``: the conic reference
(tangent cuts, Clarabel, then the Frank-Wolfe certificate) and the default method agree
to 1e-7 of ``|U|`` and each certificate bounds the other's objective. The reference
checks its own solve (status optimal) before it judges.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import cvxalloc
from cvxalloc.testing import random_scenario

CURVES = [
    ([1, 4, 8, 16, 32, 48], [1.0, 3.82, 6.85, 11.7, 17.7, 21.6]),
    ([1, 2, 8], [1.0, 1.8, 4.0]),
    ([1, 2], [1.0, 1.79]),
    ([1], [1.0]),
]
CASES = Path(__file__).parent / "data" / "cases"


def _batching(base, curve, arrival_scv, max_running, service_scv, fill):
    """``base`` on a batching server, the arrival rate set so the box's top loads it ``fill``."""
    conc, speed = curve
    server = {"model": "batching", "concurrency": conc, "speedup": speed}
    if max_running is not None:
        server.update(max_running=max_running, service_scv=service_scv)
    sc = base.with_(server=server, arrival_scv=arrival_scv)
    m1_lo = float(sc.probability @ sc.service_time(sc.min_tokens))
    m1_hi = float(sc.probability @ sc.service_time(sc.max_tokens))
    lam = min(fill * sc.capacity / m1_hi, 0.9 * sc.capacity / m1_lo)
    return sc.with_(arrival_rate=lam)


def _agree(sc):
    ref = cvxalloc.solve(sc, method="conic")
    res = cvxalloc.solve(sc)
    assert ref.status == "optimal", (ref.status, ref.message)  # the reference checks itself
    assert res.status == "optimal", (res.status, res.message)
    scale = max(abs(res.objective), 1e-300)
    assert abs(ref.objective - res.objective) <= 1e-7 * scale
    assert res.objective <= ref.certificate.upper_bound + 1e-12 * scale
    assert ref.objective <= res.certificate.upper_bound + 1e-12 * scale
    return ref, res


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.sampled_from([1, 2, 5, 12]),
    identical=st.booleans(),
    curve=st.sampled_from(range(len(CURVES))),
    arrival_scv=st.sampled_from([0.3, 1.0, 9.0, 173.0]),
    max_running=st.sampled_from([None, 1, 3, 48]),
    service_scv=st.sampled_from([0.5, 1.0, 4.85]),
    fill=st.sampled_from([0.05, 0.6, 1.5, 20.0]),
    gamma=st.sampled_from([None, 1e-7, 30.0]),
)
@example(0, 1, False, 0, 173.0, 48, 4.85, 1.5, None)
@example(1, 5, True, 1, 0.3, 3, 0.5, 20.0, None)
def test_default_and_conic_agree(
    seed, n, identical, curve, arrival_scv, max_running, service_scv, fill, gamma
):
    base = random_scenario(seed, n, load="overloaded", identical=identical, latency_weight=gamma)
    sc = _batching(base, CURVES[curve], arrival_scv, max_running, service_scv, fill)
    _agree(sc)


@pytest.mark.parametrize(
    ("name", "defect"),
    [
        ("c2_seed69_batching", "conic optimal_inaccurate, gap 2.6e-2 of |U|"),
        ("c2_seed27_batching", "conic optimal_inaccurate, gap 1.9e-4 of |U|"),
    ],
)
def test_issue_22_conic_reproducers_are_certified(name, defect):
    """A failed re-solve after a new cut left its point behind; a flat type broke the polish."""
    sc = cvxalloc.Scenario.from_dict(json.loads((CASES / f"{name}.json").read_text()))
    ref, res = _agree(sc)
    assert ref.certificate.relative_gap <= 1e-10, defect


def test_the_tail_of_a_trace_with_a_limit_plans_fewer_tokens():
    """Bursts and the admission limit price tokens higher: the optimum spends fewer."""
    ex = cvxalloc.load_scenario(Path(cvxalloc.__file__).parent / "data" / "example_batching.toml")
    poisson = cvxalloc.solve(ex)
    table = {**ex.server.to_dict(), "max_running": 48, "service_scv": 4.85}
    bursty = cvxalloc.solve(ex.with_(arrival_scv=173.0, server=table))
    mean = ex.probability @ poisson.tokens
    assert ex.probability @ bursty.tokens < mean
    assert np.all(bursty.tokens <= poisson.tokens + 1e-9 * (ex.max_tokens - ex.min_tokens))
