"""The scalar constraint terms: each evaluates numerically and compiles to CVXPY from the same data.

A term is ``value(t) <= limit`` with ``value`` increasing in every ``t_i``:
the mean-latency SLO, the compute budget and the utilization cap. The errors
and the constraint keys live here too, at the bottom of the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from .._reduce import dot
from ..errors import ScenarioError
from ..protocols import ScenarioLike
from ..queue import Latency

if TYPE_CHECKING:  # CVXPY is imported where the conic forms are built, not here.
    import cvxpy as cp

__all__ = [
    "KINDS",
    "TIE_RTOL",
    "TERMS",
    "ConstraintError",
    "InfeasibleError",
    "Term",
    "MeanSystemTime",
    "MeanTokens",
    "Utilization",
]

KINDS = ("max_mean_system_time", "max_mean_tokens", "max_utilization", "min_accuracy", "tail")

#: Relative rounding within which a constraint's value meets its limit (8 units of
#: double rounding: ties at a limit, found 0-2 ulps apart, are feasible).
TIE_RTOL = 8 * float(np.finfo(float).eps)


class ConstraintError(ScenarioError):
    """A constraint is invalid (the message names the field)."""


class InfeasibleError(ConstraintError):
    """No allocation satisfies the constraints; the message names those in conflict."""


class Term:
    """A scalar constraint ``value(t) <= limit`` that is increasing in every ``t_i``.

    Subclasses define :meth:`value`, :meth:`gradient` and :meth:`cvxpy`; the
    slack, the shadow-price conversion and the reports are shared.
    """

    kind: ClassVar[str]
    unit: ClassVar[str]
    #: What the value is, for messages.
    what: ClassVar[str]
    linear: ClassVar[bool] = True

    def __init__(self, limit: float | cp.Parameter) -> None:
        # A number, or a CVXPY Parameter (a sweep over the SLO compiles once).
        self.limit = float(limit) if isinstance(limit, (int, float, np.number)) else limit

    def __repr__(self) -> str:
        return f"{type(self).__name__}(limit={self.limit:g})"

    @property
    def name(self) -> str:
        """Key in reports (``diagnostics["constraints"]``)."""
        return self.kind

    def value(self, scenario: ScenarioLike, t: np.ndarray) -> float:  # pragma: no cover - abstract
        """The constrained quantity at ``t``."""
        raise NotImplementedError

    def gradient(self, scenario: ScenarioLike, t: np.ndarray) -> np.ndarray:  # pragma: no cover
        """``d value / dt`` (every entry >= 0)."""
        raise NotImplementedError

    def cvxpy(
        self, scenario: ScenarioLike, tokens: cp.Expression, time_unit: float, token_unit: float
    ) -> tuple[cp.Constraint | None, float]:  # pragma: no cover
        """The constraint in the conic problem's units, and that unit.

        Returns ``(constraint, unit)``: the constraint reads
        ``value / unit <= limit / unit``, so its dual times ``1 / unit`` is in
        objective units per unit of relaxation. ``None`` when it is void.
        """
        raise NotImplementedError

    def slack(self, scenario: ScenarioLike, t: np.ndarray, ties: bool = False) -> float:
        """``limit - value(t)`` (>= 0 when satisfied).

        With ``ties``, plus the rounding of the comparison: a value within
        :data:`TIE_RTOL` of its limit (relative) meets it. A limit set to the value
        at the minimum budgets, computed in another order, differs from it by a
        few ulps either way: a tie, not a conflict. The feasibility test and the
        certificate read this slack (a certificate that uses it bounds the optimum
        under the limit plus that rounding, an upper bound of the optimum); the
        solvers' points are restored to the strict one.
        """
        value = self.value(scenario, t)
        tie = TIE_RTOL * max(abs(self.limit), abs(value)) if ties else 0.0
        return self.limit - value + tie


class MeanSystemTime(Term):
    """Mean-latency SLO ``W(t) <= max_mean_system_time`` (seconds); W is convex."""

    kind = "max_mean_system_time"
    unit = "s"
    what = "mean system time"
    linear = False

    def value(self, scenario: ScenarioLike, t):
        return Latency(scenario).value(np.asarray(t, dtype=float))

    def gradient(self, scenario: ScenarioLike, t):
        return Latency(scenario).gradient(np.asarray(t, dtype=float))

    def cvxpy(self, scenario: ScenarioLike, tokens, time_unit, token_unit):
        expr = Latency(scenario).cvxpy(tokens, time_unit=time_unit)
        return expr <= self.limit / time_unit, time_unit


class MeanTokens(Term):
    """Compute budget ``sum_i p_i t_i <= max_mean_tokens`` (linear)."""

    kind = "max_mean_tokens"
    unit = "tokens"
    what = "mean tokens per query"

    def coefficients(self, scenario: ScenarioLike) -> tuple[np.ndarray, float]:
        """``(c, c0)`` with ``value = c . t + c0``."""
        return scenario.probability, 0.0

    def value(self, scenario: ScenarioLike, t):
        return dot(scenario.probability, np.asarray(t, dtype=float))

    def gradient(self, scenario: ScenarioLike, t):
        return np.array(scenario.probability, dtype=float)

    def cvxpy(self, scenario: ScenarioLike, tokens, time_unit, token_unit):
        return (scenario.probability @ tokens) / token_unit <= self.limit / token_unit, token_unit


class Utilization(Term):
    """Utilization cap ``lam sum_i p_i (a_i + b_i t_i) / capacity <= max_utilization`` (linear).

    ``capacity`` is 1 for one query at a time and ``c_max`` for a batching server
    (:attr:`Scenario.capacity`), so the cap is on the same utilization the scenario reports.
    """

    kind = "max_utilization"
    unit = ""
    what = "utilization"

    def coefficients(self, scenario: ScenarioLike) -> tuple[np.ndarray, float]:
        """``(c, c0)`` with ``value = c . t + c0``."""
        lam, p = scenario.arrival_rate / scenario.capacity, scenario.probability
        return lam * p * scenario.per_token, lam * float(p @ scenario.base)

    def value(self, scenario: ScenarioLike, t):
        return scenario.utilization(np.asarray(t, dtype=float))

    def gradient(self, scenario: ScenarioLike, t):
        return self.coefficients(scenario)[0]

    def cvxpy(self, scenario: ScenarioLike, tokens, time_unit, token_unit):
        if scenario.arrival_rate == 0:
            return None, 1.0
        c, c0 = self.coefficients(scenario)
        return c @ tokens + c0 <= self.limit, 1.0


TERMS: dict[str, type[Term]] = {
    "max_mean_system_time": MeanSystemTime,
    "max_mean_tokens": MeanTokens,
    "max_utilization": Utilization,
}
