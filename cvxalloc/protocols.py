"""The shape of a scenario, as the lower layers read it.

Layer: parts. The parts (queue models, accuracy curves) and the numerics
(objective, certificates, constraint terms, polish) are written against any
*scenario-shaped* object and never import :class:`cvxalloc.scenario.Scenario`,
which sits above them: a :class:`ScenarioLike` is what they may read. Modules
from the scenario layer up annotate with :class:`~cvxalloc.scenario.Scenario`
itself.

Examples
--------
>>> import cvxalloc
>>> from cvxalloc.protocols import ScenarioLike
>>> isinstance(cvxalloc.example_scenario(), ScenarioLike)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["ScenarioLike"]


@runtime_checkable
class ScenarioLike(Protocol):
    """Per-task arrays (task order), the queue's parameters and the model's components.

    Attributes
    ----------
    names : sequence of str
    probability, weight, min_tokens, max_tokens : ndarray
        ``p_i``, ``w_i``, ``lo_i``, ``hi_i``.
    base, per_token, scv, variance : ndarray
        The service time: mean ``a_i + b_i t_i``, spread ``k_i`` and ``v_i``.
    accuracy : AccuracyCurves
        ``A_i`` with its derivatives and inverse.
    arrival_rate, latency_weight, arrival_scv : float
        ``lam``, ``gamma`` and the ``c_a^2`` of the gaps.
    levels : sequence of (ndarray or None)
        Each type's menu of allowed budgets (None: any on its grid).
    step : ndarray
        Each type's grid step for integer budgets.
    constraints, server : object or None
        Operator constraints and a batching server's capacity curve.
    fleet : Fleet or None
        Replicas behind a router (:mod:`cvxalloc.queue.fleet`); read with
        ``getattr(scenario, "fleet", None)`` (None: one server).
    """

    names: Sequence[str]
    probability: np.ndarray
    weight: np.ndarray
    min_tokens: np.ndarray
    max_tokens: np.ndarray
    base: np.ndarray
    per_token: np.ndarray
    scv: np.ndarray
    variance: np.ndarray
    accuracy: Any
    arrival_rate: float
    latency_weight: float
    arrival_scv: float
    levels: Sequence[Any]
    step: np.ndarray
    constraints: Any
    server: Any

    @property
    def n(self) -> int:
        """Number of task types."""
        ...

    @property
    def capacity(self) -> float:
        """Total service rate of the server (1 for one query at a time)."""
        ...

    def service_time(self, tokens: np.ndarray) -> np.ndarray:
        """Mean service time of each type at ``tokens``, seconds."""
        ...

    def utilization(self, tokens: np.ndarray) -> float:
        """``lam m1(tokens) / capacity``."""
        ...
