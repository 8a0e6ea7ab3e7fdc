"""Certificates: solver-independent proof of how far an allocation is from optimal.

Layer: numerics.

Frank-Wolfe bound. ``U`` is concave and the box ``[lo, hi]`` contains the
feasible set, so for any feasible ``t`` with ``g = grad U(t)``::

    U* <= U(t) + max_{lo <= x <= hi} g . (x - t)
        = U(t) + sum_i max(g_i (hi_i - t_i), g_i (lo_i - t_i))

The sum is the certified gap. Anyone can recompute it from the scenario and
the allocation alone: no solver output is trusted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ._source import source
from .objective import Objective, allocation_array, at_allocation
from .protocols import ScenarioLike

__all__ = [
    "Certificate",
    "frank_wolfe_gap",
    "certificate_box",
    "certify",
    "box_certificate",
    "relative_scale",
]


def relative_scale(objective: float) -> float:
    """The scale relative tolerances refer to: ``max(|U|, 1e-12)``."""
    return max(abs(objective), 1e-12)


def frank_wolfe_gap(g: np.ndarray, t: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """``sum_i max(g_i (hi_i - t_i), g_i (lo_i - t_i))`` (>= 0 for ``lo <= t <= hi``)."""
    with np.errstate(over="ignore", invalid="ignore"):  # the branch not taken may overflow
        return float(np.sum(np.where(g > 0, g * (hi - t), g * (lo - t))))


@dataclass
class Certificate:
    """A proven bound on the optimal utility.

    Attributes
    ----------
    objective : float
        ``U`` at the certified allocation.
    gap : float
        Certified bound on ``U* - objective`` (``inf`` when nothing is proven).
    upper_bound : float
        ``objective + gap``, an upper bound on ``U*``.
    kind : str
        How it was proven (``"frank-wolfe"``).
    details : dict
        Extra evidence (for the conic reference: solver status, primal and
        dual objective and their gap).
    """

    objective: float
    gap: float
    upper_bound: float
    kind: str = "frank-wolfe"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def relative_gap(self) -> float:
        """``gap / max(|objective|, 1e-12)``."""
        return self.gap / relative_scale(self.objective)

    def within(self, rtol: float) -> bool:
        """Whether ``gap <= rtol * |objective|``, both finite (an unstable point proves nothing).

        >>> inf = float("inf")
        >>> Certificate(objective=-inf, gap=inf, upper_bound=inf).within(1.0)
        False
        """
        if not (math.isfinite(self.gap) and math.isfinite(self.objective)):
            return False
        return bool(self.gap <= rtol * relative_scale(self.objective))

    def __repr__(self) -> str:
        """Python source that rebuilds the certificate (exact floats, ``float('inf')``).

        >>> Certificate(objective=0.5, gap=float("inf"), upper_bound=float("inf"))
        Certificate(objective=0.5, gap=float('inf'), upper_bound=float('inf'), kind='frank-wolfe')
        """
        parts = [
            f"objective={source(self.objective)}",
            f"gap={source(self.gap)}",
            f"upper_bound={source(self.upper_bound)}",
            f"kind={self.kind!r}",
        ]
        if self.details:
            parts.append(f"details={source(self.details)}")
        return f"Certificate({', '.join(parts)})"

    def summary(self) -> str:
        """The gap, the bound it proves and its size relative to ``|U|``, on one line.

        >>> Certificate(objective=0.5, gap=2.5e-4, upper_bound=0.50025).summary()
        '2.500e-04  (U* <= 0.50025; 5.0e-04 of |U|)'
        """
        return f"{self.gap:.3e}  (U* <= {self.upper_bound:.10g}; {self.relative_gap:.1e} of |U|)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``gap``, ``upper_bound``, ``relative_gap``, ``kind``, ...)."""
        out = asdict(self)
        out["relative_gap"] = self.relative_gap
        if not out["details"]:
            del out["details"]
        return out


def certify(
    scenario: ScenarioLike, tokens: np.ndarray, objective: Objective | None = None
) -> Certificate:
    """Frank-Wolfe certificate of an allocation.

    Parameters
    ----------
    scenario : Scenario
    tokens : array_like or dict
        A feasible allocation (within bounds, stable): one number per task in task
        order, or a mapping task name -> tokens (:func:`cvxalloc.objective.allocation_array`).
    objective : Objective, optional
        Reuse an already built objective.

    Returns
    -------
    Certificate
        With ``gap = inf`` if ``tokens`` is unstable or outside the box.

    Examples
    --------
    >>> import cvxalloc
    >>> sc = cvxalloc.example_scenario()
    >>> cert = cvxalloc.certify(sc, sc.min_tokens)
    >>> cert.upper_bound >= cvxalloc.solve(sc, method="conic").objective
    True
    """
    t = allocation_array(scenario, tokens, finite=False)  # a wrong shape: a clear error
    if objective is None:  # a batching service_scv = "auto" is the allocation's own
        scenario = at_allocation(scenario, t)
    obj = objective or Objective(scenario)
    cons = getattr(scenario, "constraints", None)
    if cons is not None and not cons.empty:
        # Constrained: the constraints certify themselves (Frank-Wolfe over the
        # polytope or a Lagrangian bound), so this module imports none of them.
        return cons.certify(scenario, t, obj)
    return box_certificate(scenario, t, obj)


def box_certificate(
    scenario: ScenarioLike, tokens: np.ndarray, objective: Objective, value: float | None = None
) -> Certificate:
    """The Frank-Wolfe certificate over the box (no constraints), as :func:`certify` gives.

    ``value`` is ``U(tokens)`` when the caller has it already (a solver that
    has just evaluated its point), else it is computed. ``gap = inf`` where
    ``tokens`` is unstable or outside ``[min_tokens, max_tokens]``.
    """
    t = np.asarray(tokens, dtype=float)
    U = objective.value(t) if value is None else value
    lo, hi = scenario.min_tokens, scenario.max_tokens
    if not np.isfinite(U) or np.any(t < lo) or np.any(t > hi):
        return Certificate(objective=U, gap=np.inf, upper_bound=np.inf)
    gap = frank_wolfe_gap(objective.gradient(t), t, *certificate_box(scenario))
    return Certificate(objective=U, gap=gap, upper_bound=U + gap)


def certificate_box(scenario: ScenarioLike) -> tuple[np.ndarray, np.ndarray]:
    """The box of the Frank-Wolfe bound: ``[lo, hi]`` clipped to where stable points lie.

    Any convex set that holds every feasible point gives a valid bound; the box
    clipped by :meth:`Scenario.stable_max_tokens` does, and it keeps the bound
    tight when ``max_tokens`` is far beyond the stability limit (a gradient of
    1e-16 times a box of 1e12 tokens would otherwise swamp the gap).
    """
    clip = getattr(scenario, "stable_max_tokens", None)
    return scenario.min_tokens, (scenario.max_tokens if clip is None else clip())
