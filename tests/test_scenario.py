"""The scenario model: construction, round trips, views and derived figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cvxalloc
from cvxalloc import Scenario
from cvxalloc.accuracy import AccuracyCurves, Exponential, Logarithmic, Power
from cvxalloc.testing import random_scenario


def _same(a: Scenario, b: Scenario) -> None:
    assert a.names == b.names
    for f in (
        "probability",
        "weight",
        "min_tokens",
        "max_tokens",
        "base",
        "per_token",
        "scv",
        "variance",
        "step",
    ):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert a.arrival_rate == b.arrival_rate
    assert a.latency_weight == b.latency_weight
    assert a.accuracy.family_names == b.accuracy.family_names
    t = 0.5 * (a.min_tokens + a.max_tokens)
    np.testing.assert_array_equal(a.accuracy.value(t), b.accuracy.value(t))
    for la, lb in zip(a.levels, b.levels):
        assert (la is None and lb is None) or np.array_equal(la, lb)


def test_example_is_five_types_and_stable(example):
    assert example.n == 5 == len(example)
    assert example.names == ["chat", "code", "math", "olympiad", "science"]
    assert example.probability.sum() == pytest.approx(1.0, abs=1e-12)
    assert example.utilization(example.min_tokens) < 1
    assert sorted(set(example.accuracy.family_names)) == ["exponential", "logarithmic", "power"]


def test_dict_round_trip(example):
    _same(example, Scenario.from_dict(example.to_dict()))


def test_json_round_trip_through_a_file(example, tmp_path):
    path = tmp_path / "example.json"
    path.write_text(json.dumps(example.to_dict()))
    _same(example, cvxalloc.load_scenario(path))


def test_round_trip_with_levels_and_step(example):
    d = example.to_dict()
    d["task"][0]["levels"] = [0, 512, 1024, 4096, 8192]
    d["task"][1]["step"] = 64
    sc = Scenario.from_dict(d)
    assert sc.levels[0].tolist() == [0, 512, 1024, 4096, 8192]
    assert sc.step[1] == 64
    _same(sc, Scenario.from_dict(sc.to_dict()))


def test_random_round_trip(rng):
    sc = random_scenario(rng, 40, load="heavy")
    _same(sc, Scenario.from_dict(json.loads(json.dumps(sc.to_dict()))))


def test_defaults_of_the_file_format():
    sc = Scenario.from_dict(
        {
            "queue": {"arrival_rate": 0.01, "latency_weight": 0.001},
            "task": [
                {
                    "name": "only",
                    "probability": 1.0,
                    "max_tokens": 1000,
                    "service": {"per_token": 0.01},
                    "accuracy": {"model": "power", "floor": 0.1, "ceiling": 0.9, "scale": 100},
                }
            ],
        }
    )
    assert sc.weight[0] == 1.0
    assert sc.min_tokens[0] == 0.0
    assert sc.base[0] == 0.0 and sc.scv[0] == 0.0 and sc.variance[0] == 0.0
    assert sc.step[0] == 1.0 and sc.levels == [None]
    assert sc.accuracy.param_dict(0)["exponent"] == 1.0  # power's default exponent


def test_from_arrays_broadcasts_scalars():
    sc = Scenario.from_arrays(
        probability=[0.2, 0.3, 0.5],
        max_tokens=4096,
        per_token=0.01,
        base=[0.1, 0.2, 0.3],
        accuracy=Exponential(floor=0.3, ceiling=[0.7, 0.8, 0.9], scale=1000),
        arrival_rate=0.05,
        latency_weight=0.01,
    )
    assert sc.names == ["type0", "type1", "type2"]
    np.testing.assert_array_equal(sc.max_tokens, [4096] * 3)
    np.testing.assert_array_equal(sc.lo, sc.min_tokens)
    np.testing.assert_array_equal(sc.hi, sc.max_tokens)
    with pytest.raises(ValueError):
        sc.probability[0] = 0.9  # arrays are read-only


def test_derived_figures(example):
    t = np.array([100.0, 2000.0, 300.0, 4000.0, 50.0])
    s = example.base + example.per_token * t
    np.testing.assert_allclose(example.service_time(t), s)
    m1 = float(example.probability @ s)
    assert example.utilization(t) == pytest.approx(example.arrival_rate * m1)
    assert example.max_stable_arrival_rate(t) == pytest.approx(1 / m1)


def test_take_renormalizes_and_keeps_curves(example):
    sub = example.take([3, 0])
    assert sub.names == ["olympiad", "chat"]
    assert sub.probability.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(sub.probability, [0.05 / 0.45, 0.40 / 0.45])
    t = np.array([5000.0, 700.0])
    np.testing.assert_allclose(
        sub.accuracy.value(t), example.accuracy.value(np.array([700, 0, 0, 5000, 0.0]))[[3, 0]]
    )


def test_with_revalidates(example):
    assert example.with_(latency_weight=0.5).latency_weight == 0.5
    with pytest.raises(cvxalloc.UnstableError):
        example.with_(arrival_rate=100.0)


def test_mixed_families_from_curves():
    fams = AccuracyCurves(
        [
            (Exponential(floor=0.2, ceiling=0.8, scale=1000.0), np.array([2])),
            (Power(floor=0.1, ceiling=0.9, scale=500.0, exponent=0.7), np.array([0])),
            (Logarithmic(floor=0.3, gain=0.05, scale=200.0), np.array([1])),
        ],
        3,
    )
    sc = Scenario.from_arrays(
        probability=[0.3, 0.3, 0.4],
        max_tokens=8000,
        per_token=0.01,
        accuracy=fams,
        arrival_rate=0.01,
        latency_weight=0.01,
    )
    assert sc.accuracy.family_names == ["power", "logarithmic", "exponential"]
    _same(sc, Scenario.from_dict(sc.to_dict()))


def test_log_accuracy_above_one_is_rejected():
    with pytest.raises(cvxalloc.ScenarioError, match="accuracy reaches .* > 1 at max_tokens"):
        Scenario.from_arrays(
            probability=[1.0],
            max_tokens=10**6,
            per_token=1e-6,
            accuracy=Logarithmic(floor=0.5, gain=0.2, scale=10.0),
            arrival_rate=0.01,
            latency_weight=0.01,
        )


def test_repr(example):
    assert repr(example).startswith("Scenario.from_dict({")  # more in test_reprs.py
