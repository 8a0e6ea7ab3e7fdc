"""The utility ``U(t) = sum_i p_i w_i A_i(t_i) - gamma W(t)`` and its derivatives.

Layer: numerics.

Vectorized over N types (numpy arrays, N up to millions). :func:`evaluate`
gives every figure of an allocation at once; :func:`utility`,
:func:`gradient` and :func:`hessian_parts` are the pieces solvers use.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._reduce import dot
from ._source import fields_source
from .errors import ScenarioError
from .protocols import ScenarioLike
from .queue import Latency

__all__ = ["Evaluation", "evaluate", "utility", "gradient", "hessian_parts", "Objective"]


@dataclass(frozen=True)
class Evaluation:
    """Every figure of one allocation.

    Attributes
    ----------
    tokens : ndarray
        The allocation.
    objective : float
        ``U(t)`` (``-inf`` if unstable and ``gamma > 0``).
    accuracy : float
        ``sum_i p_i w_i A_i(t_i)`` (weighted accuracy).
    type_accuracy : ndarray
        ``A_i(t_i)``.
    service_time : ndarray
        ``s_i(t_i)`` in seconds.
    mean_system_time : float
        ``W(t)`` in seconds (``inf`` if unstable).
    utilization : float
        ``rho``.
    m1, m2 : float
        Service-time moments.
    """

    tokens: np.ndarray
    objective: float
    accuracy: float
    type_accuracy: np.ndarray
    service_time: np.ndarray
    mean_system_time: float
    utilization: float
    m1: float
    m2: float

    @property
    def stable(self) -> bool:
        """Whether ``rho < 1``."""
        return self.utilization < 1

    def to_dict(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready dict: the figures (non-finite as None) and, per task, tokens, accuracy
        and service time (keyed by ``names``, else by index)."""
        keys = [str(i) for i in range(self.tokens.size)] if names is None else list(names)
        return {
            "objective": _finite(self.objective),
            "accuracy": float(self.accuracy),
            "mean_system_time": _finite(self.mean_system_time),
            "utilization": float(self.utilization),
            "m1": float(self.m1),
            "m2": float(self.m2),
            "per_type": {
                n: {"tokens": float(t), "accuracy": float(a), "service_time": float(s)}
                for n, t, a, s in zip(keys, self.tokens, self.type_accuracy, self.service_time)
            },
        }

    def summary(self) -> str:
        """The headline figures, one per line."""
        return "\n".join(
            [
                f"mean system time W   {self.mean_system_time:.4f} s",
                f"utilization rho      {self.utilization:.4f}",
                f"weighted accuracy    {self.accuracy:.6f}",
                f"utility U            {self.objective:.10g}",
            ]
        )

    def _repr_pretty_(self, p, cycle) -> None:
        """Print the repr in IPython and hypothesis (which spell a dataclass field by field)."""
        p.text(repr(self))

    def __repr__(self) -> str:
        """Python source that rebuilds the evaluation (with ``np`` and ``Evaluation`` in scope).

        Every float exact (``float('inf')`` when unstable); arrays summarized
        (not source) beyond 100 types.

        >>> Evaluation(np.array([1.0]), 0.5, 0.75, np.array([0.75]), np.array([2.0]),
        ...            float("inf"), 1.5, 2.0, 4.0)  # doctest: +NORMALIZE_WHITESPACE
        Evaluation(tokens=np.array([1.0]), objective=0.5, accuracy=0.75,
                   type_accuracy=np.array([0.75]), service_time=np.array([2.0]),
                   mean_system_time=float('inf'), utilization=1.5, m1=2.0, m2=4.0)
        """
        return fields_source(self)


def _finite(x: float) -> float | None:
    """``x`` as a float, or None where it is not finite (JSON has no infinity)."""
    return float(x) if math.isfinite(x) else None


class Objective:
    """``U`` of one scenario, with its terms built once (reuse inside solver loops)."""

    def __init__(self, scenario: ScenarioLike) -> None:
        self.scenario = scenario
        self.latency = Latency(scenario)
        self.pw = scenario.probability * scenario.weight
        self.gamma = scenario.latency_weight

    def value(self, t: np.ndarray) -> float:
        """``U(t)``; ``-inf`` where the queue is unstable."""
        mo = self.latency.moments(t)
        if mo.rho >= 1:
            return -np.inf
        acc = dot(self.pw, self.scenario.accuracy.value(t))
        return acc - self.gamma * self.latency.value(t)

    def gradient(self, t: np.ndarray) -> np.ndarray:
        """``dU/dt_i = p_i (w_i A_i'(t_i) - gamma b_i D_i(t))``."""
        return self.pw * self.scenario.accuracy.d1(t) - self.gamma * self.latency.gradient(t)

    def value_gradient(self, t: np.ndarray) -> tuple[float, np.ndarray | None, float]:
        """``(U(t), grad U(t), weighted accuracy)`` from one pass of the moments and one of
        the curves (what a Frank-Wolfe certificate needs); ``(-inf, None, accuracy)``
        where the queue is unstable."""
        a, d1 = self.scenario.accuracy.value_d1(t)
        acc = dot(self.pw, a)
        W, dW, _ = self.latency.value_gradient(t)
        if dW is None:
            return -np.inf, None, acc
        return acc - self.gamma * W, self.pw * d1 - self.gamma * dW, acc

    def hessian_parts(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``-Hess U = diag(d) + V M V^T`` with ``d > 0``.

        ``d_i = -p_i w_i A_i''(t_i) + gamma lam (1+k_i) p_i b_i^2 / (1-rho)`` and
        ``M = gamma * M_W`` (see :meth:`Latency.hessian_parts`).
        """
        dW, V, MW = self.latency.hessian_parts(t)
        d = -self.pw * self.scenario.accuracy.d2(t) + self.gamma * dW
        return d, V, self.gamma * MW

    def evaluate(self, t: np.ndarray) -> Evaluation:
        """All figures of allocation ``t``."""
        sc = self.scenario
        t = np.asarray(t, dtype=float)
        a = sc.accuracy.value(t)
        acc = dot(self.pw, a)
        mo = self.latency.moments(t)
        W = self.latency.value(t)
        U = acc - self.gamma * W if mo.rho < 1 else -np.inf
        return Evaluation(
            tokens=t,
            objective=U,
            accuracy=acc,
            type_accuracy=a,
            service_time=sc.service_time(t),
            mean_system_time=W,
            utilization=mo.rho,
            m1=mo.m1,
            m2=mo.m2,
        )


def allocation_array(scenario: ScenarioLike, tokens: Any, finite: bool = True) -> np.ndarray:
    """An allocation as one float per task, in task order, checked.

    ``tokens`` is an array-like with one number per task, or a mapping task name
    -> tokens naming every task. Anything else (a wrong length, a nested list, a
    mapping with a name missing or unknown, a value that is not a finite number)
    is a :class:`~cvxalloc.errors.ScenarioError` saying what is wrong and what to
    give (``finite=False`` lets non-finite values through, for a certificate that
    then proves nothing). The scenario itself must be a scenario object: a path is
    read with :func:`cvxalloc.load_scenario` first.

    >>> import cvxalloc
    >>> sc = cvxalloc.example_scenario()
    >>> allocation_array(sc, {n: 2048.0 for n in sc.names}).tolist()
    [2048.0, 2048.0, 2048.0, 2048.0, 2048.0]
    """
    if isinstance(scenario, (str, os.PathLike, Mapping)):
        raise ScenarioError(
            f"scenario must be a Scenario (got {type(scenario).__name__}); read a file with "
            "cvxalloc.load_scenario(path)"
        )
    n, names = len(scenario.names), list(scenario.names)
    if isinstance(tokens, Mapping):
        missing = [name for name in names if name not in tokens]
        unknown = [str(k) for k in tokens if k not in set(names)]
        if missing or unknown:
            raise ScenarioError(
                "allocation: a mapping task name -> tokens must name every task"
                + (f"; missing: {', '.join(missing[:5])}" if missing else "")
                + (f"; unknown: {', '.join(unknown[:5])}" if unknown else "")
            )
        tokens = [tokens[name] for name in names]
    try:
        t = np.asarray(tokens, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(
            f"allocation: one number per task expected ({n}, in task order), or a mapping "
            f"task name -> tokens ({exc})"
        ) from None
    if t.shape != (n,):
        raise ScenarioError(
            f"allocation: one number per task expected ({n}, in task order: "
            f"{', '.join(names[:5])}{', ...' if n > 5 else ''}), got shape {t.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(t)) if finite else np.zeros(0, dtype=int)
    if bad.size:
        i = int(bad[0])
        raise ScenarioError(f'allocation: task "{names[i]}": tokens must be finite (got {t[i]})')
    return t


def at_allocation(scenario: ScenarioLike, tokens: np.ndarray) -> ScenarioLike:
    """The model an allocation is judged by: a batching server's ``service_scv = "auto"``
    fixed to the allocation's own (unchanged otherwise; see
    :meth:`cvxalloc.scenario.Scenario.with_service_scv_at`)."""
    fix = getattr(scenario, "with_service_scv_at", None)
    return scenario if fix is None else fix(tokens)


def evaluate(scenario: ScenarioLike, tokens: Any) -> Evaluation:
    """Evaluate an allocation: utility, accuracy, W, utilization, per-type figures.

    ``tokens``: one number per task in task order, or a mapping task name -> tokens
    (:func:`allocation_array` checks it).
    """
    t = allocation_array(scenario, tokens)
    return Objective(at_allocation(scenario, t)).evaluate(t)


def utility(scenario: ScenarioLike, tokens: Any) -> float:
    """``U(t)`` of an allocation (``tokens`` as in :func:`evaluate`)."""
    t = allocation_array(scenario, tokens)
    return Objective(at_allocation(scenario, t)).value(t)


def gradient(scenario: ScenarioLike, tokens: Any) -> np.ndarray:
    """``grad U(t)`` (``tokens`` as in :func:`evaluate`)."""
    t = allocation_array(scenario, tokens)
    return Objective(at_allocation(scenario, t)).gradient(t)


def hessian_parts(scenario: ScenarioLike, tokens: np.ndarray):
    """``-Hess U(t) = diag(d) + V M V^T``; see :meth:`Objective.hessian_parts`."""
    t = np.asarray(tokens, dtype=float)
    return Objective(at_allocation(scenario, t)).hessian_parts(t)
