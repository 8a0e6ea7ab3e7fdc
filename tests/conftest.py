"""Shared fixtures: the example scenario, a seeded rng and small reference scenarios."""

from __future__ import annotations

import numpy as np
import pytest

import cvxalloc
from cvxalloc.accuracy import Exponential


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
