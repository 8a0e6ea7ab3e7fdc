"""Extreme but parseable values end in a result or one clear error (issue 22).

Each case sets one field of the built-in example to an extreme value. The
promise: a result whose certificate holds, or a :class:`ScenarioError` that names
the extreme field and what to give instead (the CLI: exit 2, one line), never a
traceback, and no RuntimeWarning from the model's arithmetic on the way.
"""

from __future__ import annotations

import copy
import math
import pathlib
import warnings
from fractions import Fraction

import pytest

import cvxalloc
from cvxalloc.cli import main as cli_main
from cvxalloc.errors import ScenarioError
from cvxalloc.queue import FIFOQueue
from cvxalloc.queue.fifo import smaller_root
from cvxalloc.scenario_range import SLACK_RESOLVED
from cvxalloc.solvers.reduction import decreasing_root

CASES = pathlib.Path(__file__).parent / "data" / "cases"


def _example_with(path: tuple, value: float) -> dict:
    data = copy.deepcopy(cvxalloc.example_scenario().to_dict())
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    "name, words",
    [
        ("example_gamma_5e-324.toml", "latency_weight 4.94066e-324 is too small"),
        ("example_gamma_1e-300.toml", "latency_weight 1e-300 is too small"),
        ("example_scv_1e308.toml", "arrival_scv 1e+308 is beyond"),
    ],
)
def test_reproducers_are_one_clear_line(name, words, capsys):
    # were: ZeroDivisionError in FIFOQueue.scalars, OverflowError in min_slack
    assert cli_main(["solve", str(CASES / name)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], captured.err
    assert captured.out == ""


REFUSED = [
    (("queue", "latency_weight"), 1e308, "latency_weight 1e+308 times the mean system time"),
    (("queue", "latency_weight"), 1e-40, "latency_weight 1e-40 is too small"),
    (("queue", "arrival_scv"), 1e308, "arrival_scv 1e+308"),
    (("task", 0, "service", "scv"), 1e308, 'task "chat": service.scv 1e+308'),
    (("task", 0, "service", "variance"), 1e308, 'task "chat": service.variance 1e+308'),
    (("task", 0, "service", "per_token"), 1e308, "service time at max_tokens overflows"),
    (("task", 0, "accuracy", "scale"), 5e-324, 'task "chat": the accuracy curve (exponential'),
    (("task", 0, "accuracy", "scale"), 1e-300, "too steep at min_tokens"),
    (("task", 1, "accuracy", "exponent"), 1e308, "power, scale 2761, exponent 1e+308"),
    (("task", 2, "accuracy", "gain"), 1e308, 'task "math": accuracy reaches inf > 1'),
]


@pytest.mark.parametrize("path, value, words", REFUSED)
def test_extreme_values_are_refused_naming_the_field(path, value, words):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on the way to the message
        with pytest.raises(ScenarioError) as err:
            cvxalloc.Scenario.from_dict(_example_with(path, value))
    assert words in str(err.value)
    assert "unstable ... use method='conic'" not in str(err.value)


SOLVED = [
    (("task", 0, "weight"), 5e-324),
    (("task", 0, "weight"), 1e-300),
    (("task", 0, "weight"), 1e308),
    (("task", 0, "accuracy", "scale"), 1e308),
    (("queue", "latency_weight"), 1e-16),
    (("queue", "arrival_rate"), 5e-324),
    (("task", 0, "service", "per_token"), 5e-324),
]


@pytest.mark.parametrize("path, value", SOLVED)
def test_extreme_values_that_have_an_answer_are_solved_and_certified(path, value):
    sc = cvxalloc.Scenario.from_dict(_example_with(path, value))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = cvxalloc.solve(sc)
    assert res.status == "optimal"
    assert res.certificate.within(1e-9)
    # the certificate is the solver-independent Frank-Wolfe bound, recomputed
    cert = cvxalloc.certify(sc, res.tokens)
    assert cert.gap == pytest.approx(res.certificate.gap, rel=1e-6, abs=1e-12 * abs(cert.objective))
    if path[-1] == "weight" and value < 1e-100:
        assert res.tokens[0] == sc.min_tokens[0]  # worth nothing: no tokens


def test_a_latency_weight_is_refused_only_where_the_optimum_is_unresolvable(example):
    # the optimal slack 1 - rho* grows as sqrt(latency_weight) near saturation: measure
    # it where it resolves, then every refused price is one whose slack is below eps
    ref = cvxalloc.solve(example.with_(latency_weight=1e-16))
    assert ref.status == "optimal"
    slack = 1.0 - ref.utilization
    for gamma in (1e-36, 1e-37, 1e-40, 1e-100, 1e-300, 5e-324):
        predicted = slack * math.sqrt(gamma / 1e-16)
        try:
            example.with_(latency_weight=gamma)
        except ScenarioError as err:
            assert predicted < SLACK_RESOLVED, (gamma, predicted)
            assert "max_utilization" in str(err)
        else:
            assert predicted > SLACK_RESOLVED / 100, (gamma, predicted)


# --- the arithmetic ---------------------------------------------------------------
def test_smaller_root_is_the_closed_form_and_never_overflows(rng):
    checked = 0
    while checked < 500:
        e, L, C = rng.uniform(0, 1), 10 ** rng.uniform(-5, 3), 10 ** rng.uniform(-5, 5)
        if rng.random() < 0.2:
            L = 0.0
        if (e + C) ** 2 < e * (e + L):
            continue  # no real root: W <= w_max is out of reach, not a case of min_slack
        closed = (e + L) / (e + C + math.sqrt((e + C) ** 2 - e * (e + L)))
        assert smaller_root(e, L, C) == pytest.approx(min(closed, 1.0), rel=1e-12)
        checked += 1
    for C in (1e200, 1e300, 1.7e308, math.inf):
        u = smaller_root(1.0, 0.0, C)
        assert 0 < u <= 1 and (not math.isfinite(C) or u == pytest.approx(0.5 / C, rel=1e-12))


@pytest.mark.parametrize("c", [0.0, 0.5, 1.0, 4.0])
def test_queue_scalars_near_saturation_are_inf_not_errors(c):
    lam = 0.02
    q = FIFOQueue(lam, arrival_scv=c)
    for u in (0.3, 1e-3, 1e-60):
        m1 = (1 - u) / lam
        m2 = 1.5 * m1 * m1  # a consistent second moment (m2 >= m1^2)
        A, B, dA_du, dA_dm2, dB_du = q.scalars(u, m2)
        # the textbook form, in exact rational arithmetic
        uq, mq, dq = Fraction(u), Fraction(m2), 1 - Fraction(c)
        Xq = Fraction(lam) / uq
        rq = (1 - uq) / uq
        Aq = 1 + Xq * Xq * mq / 2 - dq * (rq * rq / 2 + rq)
        assert A == pytest.approx(float(Aq), rel=1e-12)
        assert B == pytest.approx(float(Xq), rel=1e-15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A, B, dA_du, dA_dm2, dB_du = q.scalars(1e-200, 4e6)
        assert A == math.inf and B == pytest.approx(2e198) and dB_du == -math.inf
        h11, h12 = q.curvature(1e-120, 4e6)
        assert h11 == math.inf and h12 == pytest.approx(2e236)
        for m2 in (0.0, 400.0, 4e6):  # consistent or not: a number or +-inf, never nan
            A, _, dA_du, _, _ = q.scalars(1e-300, m2)
            assert not (math.isnan(A) or math.isnan(dA_du))


def test_decreasing_root_across_three_hundred_decades():
    for root in (1e-290, 3.7e-150, 1e-20, 0.3):
        u = decreasing_root(lambda x, r=root: math.log(r) - math.log(x), 1e-300, 1.0)
        assert u == pytest.approx(root, rel=1e-13)


def test_a_flat_curve_does_not_hide_an_unresolvable_optimum():
    # math's curve flat (scale 1e300): it stays at its minimum, the other four saturate
    # the server; the bound takes the types that saturate it, not the flat one
    data = _example_with(("task", 2, "accuracy", "scale"), 1e300)
    data["queue"]["latency_weight"] = 1e-16
    ref = cvxalloc.solve(cvxalloc.Scenario.from_dict(data))
    assert ref.status == "optimal" and ref.tokens[2] == 0.0
    slack = 1.0 - ref.utilization
    for gamma in (1e-40, 1e-300, 5e-324):
        data["queue"]["latency_weight"] = gamma
        assert slack * math.sqrt(gamma / 1e-16) < SLACK_RESOLVED
        with pytest.raises(ScenarioError, match="too small against the accuracy at stake"):
            cvxalloc.Scenario.from_dict(data)


def test_a_budget_range_below_one_token_is_said_for_what_it_is(capsys):
    # max_tokens = 5e-324 or 0 solved silently: the report now says what that means
    data = _example_with(("task", 0, "max_tokens"), 5e-324)
    data["task"][2]["max_tokens"] = 0.0
    sc = cvxalloc.Scenario.from_dict(data)
    text = cvxalloc.solve(sc).summary()
    assert 'note: task "chat": max_tokens - min_tokens = 4.94e-324 is less than one token' in text
    assert 'note: task "math": min_tokens = max_tokens = 0: its budget is fixed' in text
    assert "note:" not in cvxalloc.solve(cvxalloc.example_scenario()).summary()
