"""The reprs of the model and workflow data classes are source that rebuilds them.

Each case builds an instance, evaluates its repr in a namespace holding numpy
as ``np`` and cvxalloc's classes, and compares the copy field by field (a
scenario by its ``to_dict()``, which is what its repr writes).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings

import cvxalloc
from cvxalloc import Constraints, Evaluation, Scenario
from cvxalloc.accuracy import FAMILIES, AccuracyCurves
from cvxalloc.queue import BatchingQueue, CapacityCurve, FIFOQueue, Latency, Moments
from cvxalloc.scenario import REPR_MAX_TYPES
from cvxalloc.sensitivity import Derivative, Sensitivity, sensitivity
from cvxalloc.testing import random_scenario, scenarios

NAMESPACE = {
    "np": np,
    "Scenario": Scenario,
    "Constraints": Constraints,
    "Evaluation": Evaluation,
    "FIFOQueue": FIFOQueue,
    "BatchingQueue": BatchingQueue,
    "CapacityCurve": CapacityCurve,
    "Moments": Moments,
    "Derivative": Derivative,
    "Sensitivity": Sensitivity,
    "AccuracyCurves": AccuracyCurves,
    **{fam.__name__: fam for fam in FAMILIES.values()},
}
BATCHING = {"model": "batching", "concurrency": [1, 2, 8], "speedup": [1.0, 1.75, 4.0]}


def rebuilt(x):
    """``eval(repr(x))``, checked to print the same again."""
    text = repr(x)
    assert "object at 0x" not in text and "array(" not in text.replace("np.array(", "")
    again = eval(text, dict(NAMESPACE))  # noqa: S307 - our own repr
    assert type(again) is type(x)
    assert repr(again) == text
    return again


def assert_same(a, b):
    """Equal field by field: arrays (and their dtype) exactly, scenarios by ``to_dict()``."""
    if isinstance(a, Scenario):
        assert isinstance(b, Scenario) and a.to_dict() == b.to_dict()
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            if f.repr:
                assert_same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, (float, np.floating)):
        assert isinstance(b, float)
        assert float(a) == b or (np.isnan(a) and np.isnan(b)), (a, b)
    else:
        assert type(a) is type(b) and a == b, (a, b)


def scenario_cases(example):
    lv = [None, np.array([1024.0, 2048.0, 4096.0]), None, None, None]
    nan = float("nan")
    return {
        "example": example,
        "constraints": example.with_(
            constraints=Constraints(
                max_mean_system_time=60.0,
                max_mean_tokens=3000.5,
                min_accuracy=[0.5, nan, 0.25, nan, nan],
            )
        ),
        "batching": example.with_(server=BATCHING),
        "arrival_scv": example.with_(arrival_scv=0.37),
        "levels and step": example.with_(levels=lv, step=[1.0, 1.0, 64.0, 1.0, 0.5]),
        "defaults off": example.with_(
            weight=np.linspace(1.0, 1.5, 5),
            min_tokens=-0.0,
            base=0.0,
            scv=1.0 / 3.0,
            variance=1e-300,
        ),
        "random, largest printed": random_scenario(11, REPR_MAX_TYPES, load="heavy"),
        "one type": random_scenario(12, 1, families=["power"]),
    }


def test_scenario_repr_rebuilds_it(example):
    for name, sc in scenario_cases(example).items():
        text = repr(sc)
        assert text.startswith("Scenario.from_dict({"), name
        again = rebuilt(sc)
        assert_same(sc, again)
        # every float bit for bit, -0.0 included
        for f in ("probability", "weight", "min_tokens", "max_tokens", "per_token", "variance"):
            np.testing.assert_array_equal(np.signbit(getattr(again, f)), np.signbit(getattr(sc, f)))
        t = 0.5 * (sc.min_tokens + sc.max_tokens)
        np.testing.assert_array_equal(again.accuracy.value(t), sc.accuracy.value(t))
        assert again.arrival_scv == sc.arrival_scv and again.server == sc.server


def test_scenario_repr_leaves_defaults_out(example):
    text = repr(example.with_(arrival_scv=1.0))
    assert "arrival_scv" not in text and "'variance'" not in text
    assert "arrival_scv': 0.37" in repr(example.with_(arrival_scv=0.37))


def test_large_scenario_repr_is_a_short_summary():
    big = random_scenario(3, 10**4, load="light")
    text = repr(big)
    assert len(text) < 300, text
    assert text.startswith("<Scenario of 10,000 types") and text.endswith(">")
    assert "not source" in text and "to_dict()" in text
    assert repr(random_scenario(3, REPR_MAX_TYPES + 1)).startswith("<Scenario of 51 types")
    with pytest.raises(SyntaxError):
        eval(text, dict(NAMESPACE))  # noqa: S307 - a summary is not mistaken for source


def test_hypothesis_prints_a_failing_scenario_as_source():
    seen = []

    @settings(max_examples=20, database=None, deadline=None)
    @given(scenarios(min_n=2, max_n=2, loads=("heavy",)))
    def fails(sc):
        seen.append(sc)
        assert sc.n < 2

    with pytest.raises(AssertionError) as exc:
        fails()
    notes = getattr(exc.value, "__notes__", [])
    assert any(n.startswith("scenario: cvxalloc.testing.random_scenario(") for n in notes)
    text = "\n".join(notes)
    start = text.index("Scenario.from_dict(")
    line = text[start:].splitlines()[0].split("  # ")[0].rstrip().rstrip(",")
    again = eval(line, dict(NAMESPACE))  # noqa: S307 - our own repr
    assert again.to_dict() == seen[-1].to_dict()


def test_constraints_repr_rebuilds_them():
    nan = float("nan")
    cases = [
        Constraints(),
        Constraints(max_utilization=0.9),
        Constraints(max_mean_system_time=1 / 3, max_mean_tokens=0.0, min_accuracy=[nan, 0.1]),
        Constraints(min_accuracy=np.full(3, nan)),  # no bound at all: None
    ]
    for c in cases:
        assert_same(c, rebuilt(c))
    assert repr(Constraints(max_utilization=0.5)) == "Constraints(max_utilization=0.5)"
    big = repr(Constraints(min_accuracy=np.r_[np.full(200, nan), 0.5]))
    assert big.startswith("Constraints(min_accuracy=<201 values, 1 set")


def test_evaluation_repr_rebuilds_it(example):
    for t in (
        0.5 * (example.min_tokens + example.max_tokens),
        example.max_tokens,  # unstable: infinite system time, -inf objective
    ):
        ev = cvxalloc.evaluate(example, t)
        again = rebuilt(ev)
        assert_same(ev, again)
        assert again.stable == ev.stable


def test_queue_reprs_rebuild_them(example):
    t = 0.5 * (example.min_tokens + example.max_tokens)
    curve = CapacityCurve((1, 2, 8), (1.0, 1.75, 4.0))
    cases = [
        FIFOQueue(0.02),
        FIFOQueue(np.float64(0.125), arrival_scv=0.4),
        FIFOQueue(0.5, capacity=2.0, name="custom"),
        BatchingQueue(0.5, [1, 2, 8], [1.0, 1.75, 4.0]),
        BatchingQueue(0.25, curve=curve),
        curve,
        Latency(example).moments(t),
        Latency(example).moments(example.max_tokens),
        Latency(example.with_(server=BATCHING)).moments(t),
        Moments(m1=float("inf"), m2=float("nan"), rho=1.0),
    ]
    for q in cases:
        assert_same(q, rebuilt(q))
    assert repr(FIFOQueue(0.5)) == "FIFOQueue(arrival_rate=0.5)"


def test_sensitivity_reprs_rebuild_them(example):
    sens = sensitivity(example)
    assert sens.mix is not None and sens.arrival_scv is not None
    again = rebuilt(sens)
    assert_same(sens, again)
    for d in (sens.arrival_rate, sens.mix[0]):
        assert_same(d, rebuilt(d))
    # the rebuilt sensitivity still works: its objective is rebuilt from the scenario
    assert_same(again.directional(dlam=1.0), sens.directional(dlam=1.0))
