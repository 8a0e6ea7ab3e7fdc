"""The bulk path of ``scenario_fields``: a long ``[[task]]`` list read column by column.

A list of at least :data:`cvxalloc.scenario_format.BULK_MIN` tasks is first read one
column per key; whatever that path does not take goes to the task-by-task loop. The
promise: both accept exactly the same files, build the same fields bit for bit (arrays,
accuracy blocks and their order, names, levels, step, constraints), and a bad file gets
the loop's own error, naming the task. Each test here reads the same structure both
ways (the threshold forced down and up) and compares.
"""

from __future__ import annotations

import copy
import gc
import json
import math
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cvxalloc.scenario_format as sf
from cvxalloc.errors import ScenarioError
from cvxalloc.io import load_scenario
from cvxalloc.testing import random_scenario

FAMILY_SETS = [
    ("exponential",),
    ("power",),
    ("logarithmic",),
    ("power", "logarithmic", "exponential"),
]


def _fields(data: dict, bulk: bool, mp: pytest.MonkeyPatch, chunk: int) -> dict[str, Any]:
    """``scenario_fields`` with the bulk path forced on (every list, read ``chunk``
    tasks at a time) or off."""
    with mp.context() as m:
        m.setattr(sf, "BULK_MIN", 1 if bulk else math.inf)
        m.setattr(sf, "_CHUNK", chunk)
        return sf.scenario_fields(data)


def _outcome(data: dict, bulk: bool, monkeypatch: pytest.MonkeyPatch, chunk: int) -> tuple:
    try:
        return ("ok", _fields(data, bulk, monkeypatch, chunk))
    except ScenarioError as exc:  # (ConstraintError is one)
        return ("error", type(exc), str(exc))


def _same_array(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same_fields(a: dict[str, Any], b: dict[str, Any]) -> None:
    """The two field sets are equal bit for bit (NaN and -0.0 included)."""
    assert list(a) == list(b)
    for key, x in a.items():
        y = b[key]
        if isinstance(x, np.ndarray):
            assert _same_array(x, y), key
        elif key == "accuracy":
            assert x.n == y.n and len(x.blocks) == len(y.blocks)
            for (f1, i1), (f2, i2) in zip(x.blocks, y.blocks, strict=True):
                assert type(f1) is type(f2)
                if isinstance(i1, slice):
                    assert i1 == i2
                else:
                    assert _same_array(i1, i2)
                for attr in f1.params.values():
                    assert _same_array(getattr(f1, attr), getattr(f2, attr)), attr
        elif key == "levels":
            assert len(x) == len(y)
            for u, v in zip(x, y, strict=True):
                assert (u is None and v is None) or _same_array(u, v)
        elif key == "constraints":
            assert (x is None) == (y is None)
            if x is not None:
                assert repr(x) == repr(y)
                assert (x.min_accuracy is None) == (y.min_accuracy is None)
                if x.min_accuracy is not None:
                    assert _same_array(x.min_accuracy, y.min_accuracy)
        else:
            assert type(x) is type(y) and x == y, key


def assert_same_outcome(data: dict, monkeypatch: pytest.MonkeyPatch, chunk: int = 97) -> tuple:
    """Both paths accept ``data`` with the same fields, or refuse it with the same error
    (the bulk path reading ``chunk`` tasks at a time: several chunks, the last short)."""
    bulk = _outcome(data, True, monkeypatch, chunk)
    loop = _outcome(data, False, monkeypatch, chunk)
    assert bulk[0] == loop[0], (bulk, loop)
    if bulk[0] == "ok":
        assert_same_fields(bulk[1], loop[1])
    else:
        assert bulk[1:] == loop[1:]
    return loop


def _vary(data: dict, rng: np.random.Generator) -> dict:
    """The same scenario spelled otherwise: defaults left out on some tasks, integral
    values as ints, keys in another order."""
    data = copy.deepcopy(data)
    short = sf.without_defaults(data)["task"]
    tasks = []
    for task, brief in zip(data["task"], short, strict=True):
        task = brief if rng.random() < 0.5 else task
        if rng.random() < 0.3:
            task["max_tokens"] = int(task["max_tokens"])
        if rng.random() < 0.2:
            task["step"] = 1 if rng.random() < 0.5 else 2.0
        if rng.random() < 0.2:
            task = dict(reversed(list(task.items())))
            task["service"] = dict(reversed(list(task["service"].items())))
        tasks.append(task)
    data["task"] = tasks
    return data


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    families=st.sampled_from(FAMILY_SETS),
    vary=st.booleans(),
    chunk=st.integers(1, 70),
)
def test_bulk_and_loop_build_the_same_fields(seed, n, families, vary, chunk):
    rng = np.random.default_rng(seed)
    data = random_scenario(rng, n, families=families).to_dict()
    if vary:
        data = _vary(data, rng)
    assert sf._bulk_tasks(data["task"]) is not None  # the bulk path takes it
    with pytest.MonkeyPatch.context() as mp:
        assert assert_same_outcome(data, mp, chunk)[0] == "ok"


def _long(seed: int = 3) -> dict:
    """A valid scenario at the threshold, all families mixed."""
    return random_scenario(seed, sf.BULK_MIN, load="light").to_dict()


#: Corruptions of one task: (label, function of the task dict), each applied at a random row.
CORRUPTIONS = {
    "probability a string": lambda t: t.update(probability="0.1"),
    "weight a bool": lambda t: t.update(weight=True),
    "min_tokens None": lambda t: t.update(min_tokens=None),
    "max_tokens beyond a float": lambda t: t.update(max_tokens=10**400),
    "max_tokens missing": lambda t: t.pop("max_tokens"),
    "unknown key": lambda t: t.update(max_token=5.0),
    "name empty": lambda t: t.update(name=""),
    "name a number": lambda t: t.update(name=7),
    "levels and step": lambda t: t.update(levels=[1.0, 2.0], step=2.0),
    "step a string": lambda t: t.update(step="2"),
    "service a list": lambda t: t.update(service=[1.0]),
    "service per_token missing": lambda t: t["service"].pop("per_token"),
    "service unknown key": lambda t: t["service"].update(per_tokens=0.1),
    "service scv a list": lambda t: t["service"].update(scv=[0.0]),
    "accuracy unknown model": lambda t: t["accuracy"].update(model="powr"),
    "accuracy model a list": lambda t: t["accuracy"].update(model=["power"]),
    "accuracy model missing": lambda t: t["accuracy"].pop("model"),
    "accuracy scale missing": lambda t: t["accuracy"].pop("scale"),
    "accuracy key of another family": lambda t: t["accuracy"].update(gain=0.1, exponent=1.0),
    "accuracy scale negative": lambda t: t["accuracy"].update(scale=-1.0),
    "accuracy floor nan": lambda t: t["accuracy"].update(floor=float("nan")),
    "accuracy floor infinite": lambda t: t["accuracy"].update(floor=float("inf")),
    "accuracy scale a bool": lambda t: t["accuracy"].update(scale=True),
    "min_accuracy out of range": lambda t: t.update(min_accuracy=1.5),
    "min_accuracy a string": lambda t: t.update(min_accuracy="0.5"),
}


@pytest.mark.parametrize("label", sorted(CORRUPTIONS))
def test_a_bad_task_gets_the_loops_error(label, monkeypatch):
    data = _long()
    row = int(np.random.default_rng(len(label)).integers(sf.BULK_MIN))
    CORRUPTIONS[label](data["task"][row])
    outcome = assert_same_outcome(data, monkeypatch)
    assert outcome[0] == "error"
    if label not in ("name empty", "name a number"):
        assert f'task "{data["task"][row]["name"]}"' in outcome[2]  # the loop names the task
    # the default threshold gives it too
    with pytest.raises(ScenarioError) as err:
        sf.scenario_fields(data)
    assert str(err.value) == outcome[2]


def test_a_task_that_is_not_a_table_gets_the_loops_error(monkeypatch):
    data = _long()
    data["task"][17] = [1, 2]
    assert assert_same_outcome(data, monkeypatch)[2] == "task 18 must be a table (got list)"


#: Valid tasks the bulk path leaves to the loop, or edge values it reads: (label, change).
UNUSUAL_OR_EDGE = {
    "levels": lambda t: t.update(levels=[10.0, 20, 40.0]),
    "min_accuracy": lambda t: t.update(min_accuracy=0.25),
    "min_accuracy an int": lambda t: t.update(min_accuracy=0),
    "an ordered dict": lambda t: t.update(service=OrderedDict(t["service"])),
    "a numpy float": lambda t: t.update(probability=np.float64(t["probability"])),
    "a str subclass as name": lambda t: t.update(name=type("S", (str,), {})(t["name"])),
    "-0.0 and a large int": lambda t: t.update(min_tokens=-0.0, max_tokens=2**70),
}


@pytest.mark.parametrize("label", sorted(UNUSUAL_OR_EDGE))
def test_an_unusual_valid_task_reads_the_same(label, monkeypatch):
    data = _long(5)
    row = int(np.random.default_rng(len(label)).integers(sf.BULK_MIN))
    UNUSUAL_OR_EDGE[label](data["task"][row])
    assert assert_same_outcome(data, monkeypatch)[0] == "ok"


def test_bulk_reads_ints_and_omitted_defaults_exactly(monkeypatch):
    """Every number given as an int where it is integral, every default left out on
    alternate tasks: the columns mix present and absent keys and both types."""
    data = sf.without_defaults(_long(7))
    for i, task in enumerate(data["task"]):
        if i % 2:
            task["weight"], task["min_tokens"], task["step"] = 3, 0, 4
            task["service"]["base"] = 2
            task["accuracy"]["scale"] = 64
    assert sf._bulk_tasks(data["task"]) is not None
    assert assert_same_outcome(data, monkeypatch)[0] == "ok"


@pytest.mark.parametrize("collecting", [True, False])
@pytest.mark.parametrize("good", [True, False])
def test_loading_leaves_the_garbage_collector_as_it_was(collecting, good, tmp_path):
    """load_scenario pauses the cyclic collector while it parses and builds (a parsed
    tree has no cycles); after it, loaded or refused, the collector is as before."""
    data = _long()
    if not good:
        data["task"][-1]["weight"] = "heavy"
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    was = gc.isenabled()
    try:
        (gc.enable if collecting else gc.disable)()
        if good:
            assert load_scenario(path).n == sf.BULK_MIN
        else:
            with pytest.raises(ScenarioError, match="weight must be a number"):
                load_scenario(path)
        assert gc.isenabled() is collecting
    finally:
        (gc.enable if was else gc.disable)()
