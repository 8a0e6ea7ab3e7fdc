"""Shared fixtures: the example scenario, a seeded rng and small reference scenarios.

Hypothesis profiles (docs/testing.md):

* ``ci`` (the default): derandomized and database-free, so ``pytest -q`` draws the
  same examples on every machine and every run: CI and a newcomer's first run see
  the same draws, and a failure reproduces anywhere.
* ``seeded``: random draws from ``--hypothesis-seed=N`` (selected automatically when
  that option is given without a profile), database-free; ``.ci/run`` runs the
  property tests once more this way with a second, fixed seed.
* ``explore``: fresh random draws each run, with the example database, for
  looking for new failures locally (``pytest --hypothesis-profile=explore``).

A draw that fails is pinned with ``@example`` beside its test and its cause fixed.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from hypothesis import settings

import cvxalloc
from cvxalloc import Constraints
from cvxalloc.accuracy import Exponential

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("seeded", derandomize=False, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    """``--hypothesis-seed`` without a profile means the seeded profile (else the seed is moot)."""
    seeded = config.getoption("hypothesis_seed", None) is not None
    if seeded and config.getoption("hypothesis_profile", None) is None:
        settings.load_profile("seeded")


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator (use it instead of scattered seeds)."""
    return np.random.default_rng(20261127)


@pytest.fixture(scope="session")
def example():
    """The built-in example scenario."""
    return cvxalloc.example_scenario()


@pytest.fixture(scope="session")
def example_optimum(example):
    """The conic reference optimum of the example (solved once)."""
    return cvxalloc.solve(example, method="conic")


def small_scenario(n: int = 3, load: float = 0.5, gamma: float = 0.01, seed: int = 0):
    """A small random exponential-family scenario, ``load`` = utilization at max budgets."""
    r = np.random.default_rng(seed)
    p = r.dirichlet(np.ones(n))
    hi = r.uniform(1000, 8000, n)
    a = r.uniform(0.2, 2.0, n)
    b = r.uniform(0.005, 0.02, n)
    lam = load / float(p @ (a + b * hi))
    return cvxalloc.Scenario.from_arrays(
        probability=p,
        max_tokens=hi,
        per_token=b,
        base=a,
        accuracy=Exponential(
            floor=r.uniform(0, 0.4, n), ceiling=r.uniform(0.5, 1, n), scale=r.uniform(300, 4000, n)
        ),
        arrival_rate=lam,
        latency_weight=gamma,
    )


def stable_point(sc, rng):
    """A random allocation in the box with utilization below 0.95 (else the minimum budgets)."""
    for _ in range(100):
        t = rng.uniform(sc.min_tokens, sc.max_tokens)
        if sc.utilization(t) < 0.95:
            return t
    return sc.min_tokens.copy()


#: The operator constraints a random draw may combine.
CONSTRAINT_KEYS = ("max_mean_system_time", "max_mean_tokens", "max_utilization", "min_accuracy")


def random_constraints(sc, rng: np.random.Generator) -> Constraints:
    """Limits drawn around the unconstrained optimum (binding or not), floors on some tasks."""
    if sc.latency_weight > 0:
        r0 = cvxalloc.solve(sc)
        W0, T0, R0 = r0.mean_system_time, float(sc.probability @ r0.tokens), r0.utilization
    else:  # the box is stable (the scenario says so): scale from its top
        ev = cvxalloc.evaluate(sc, sc.max_tokens)
        W0, T0, R0 = ev.mean_system_time, float(sc.probability @ sc.max_tokens), ev.utilization
    lo_acc, hi_acc = sc.accuracy.value(sc.min_tokens), sc.accuracy.value(sc.max_tokens)
    floors = np.where(
        rng.uniform(size=sc.n) < 0.3,
        lo_acc + rng.uniform(0.05, 0.7, sc.n) * (hi_acc - lo_acc),
        np.nan,
    )
    cand = {
        "max_mean_system_time": rng.uniform(0.5, 1.2) * W0,
        "max_mean_tokens": rng.uniform(0.3, 1.2) * T0,
        "max_utilization": min(rng.uniform(0.5, 1.2) * R0, 1.0),
        "min_accuracy": floors,
    }
    keys = [k for k in CONSTRAINT_KEYS if rng.uniform() < 0.5]
    keys = keys or [CONSTRAINT_KEYS[int(rng.integers(3))]]
    return Constraints(**{k: cand[k] for k in keys})


@pytest.fixture(params=["numpy", "pyarrow"])
def csv_reader(request, monkeypatch):
    """CSV tables read by numpy's parser (pyarrow hidden) and by pyarrow's, where installed."""
    if request.param == "numpy":
        monkeypatch.setitem(sys.modules, "pyarrow", None)
    else:
        pytest.importorskip("pyarrow")
    return request.param
