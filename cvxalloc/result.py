"""One result object for every solver (the shape of scipy's ``OptimizeResult``).

Layer: numerics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import status as st
from ._output import PerTask
from ._source import source
from .certificate import Certificate, certify
from .objective import Evaluation, Objective
from .protocols import ScenarioLike
from .queue import queue_model
from .queue.fleet import fleet_info
from .queue.tail import SystemTimeQuantiles, system_time_quantiles
from .report import solve_report

__all__ = ["Result", "jsonable"]


@dataclass
class Result:
    """The outcome of :func:`cvxalloc.solve` (any method).

    Attributes
    ----------
    status : str
        One of :mod:`cvxalloc.status` (``"optimal"``, ``"optimal_inaccurate"``,
        ``"iteration_limit"``, ...); after a polish, the certificate's (see
        :mod:`cvxalloc.status`).
    method : str
        The method that was asked for (``solve(..., method=...)``), even when it
        handed over or fell back (see the next two).
    tokens : ndarray
        Tokens per type, in the scenario's task order.
    evaluation : Evaluation
        Every figure of ``tokens`` (utility, accuracy, W, utilization, ...).
    certificate : Certificate
        Solver-independent proof: ``certificate.gap >= U* - objective``.
    raw_certificate : Certificate or None
        The certificate of the solver's own point before polishing, if polished.
    iterations : int
        Iterations of the method (0 where it has none).
    solver_stats : dict
        Times and solver-specific counters.
    diagnostics : dict
        Method-specific guarantees (bounds, steps, rates, ...).
    history : dict of list
        Per-iteration ``gap`` and ``objective`` where the method records them.
    message : str
        Human-readable explanation of the status.
    handed_over_to : str or None
        The method that produced ``tokens`` when the one asked for handed over
        (``"gradient"`` after ``method="fixed-point"`` finds no contraction
        guarantee); the reason is ``diagnostics["handed_over"]``.
    fallback : str or None
        The solver that produced ``tokens`` when the one asked for failed
        (``"SCS"`` after Clarabel, for ``method="conic"``); the attempts are in
        ``solver_stats["solver"]``.
    """

    status: str
    method: str
    tokens: np.ndarray
    evaluation: Evaluation
    certificate: Certificate
    scenario: Any = field(repr=False, default=None)
    raw_certificate: Certificate | None = None
    iterations: int = 0
    solver_stats: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    message: str = ""
    handed_over_to: str | None = None
    fallback: str | None = None
    _quantiles: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_tokens(
        cls,
        scenario: ScenarioLike,
        tokens: np.ndarray,
        *,
        method: str,
        status: str,
        objective: Objective | None = None,
        **kw: Any,
    ) -> Result:
        """Evaluate and certify ``tokens`` and wrap them in a result."""
        obj = objective or Objective(scenario)
        t = np.asarray(tokens, dtype=float)
        return cls(
            status=status,
            method=method,
            tokens=t,
            evaluation=obj.evaluate(t),
            certificate=certify(scenario, t, obj),
            scenario=scenario,
            **kw,
        )

    # --- figures --------------------------------------------------------------
    @property
    def success(self) -> bool:
        """Whether the solver reported ``optimal``."""
        return self.status == st.OPTIMAL

    @property
    def objective(self) -> float:
        """Utility ``U`` at :attr:`tokens`."""
        return self.evaluation.objective

    @property
    def accuracy(self) -> float:
        """Weighted accuracy ``sum_i p_i w_i A_i``."""
        return self.evaluation.accuracy

    @property
    def mean_system_time(self) -> float:
        """Mean system time ``W`` in seconds."""
        return self.evaluation.mean_system_time

    @property
    def utilization(self) -> float:
        """Server utilization ``rho``."""
        return self.evaluation.utilization

    @property
    def system_time_quantiles(self) -> dict[str, float | None]:
        """Predicted p50, p90, p95, p99 of the system time, seconds: ``{"0.99": ..., ...}``.

        The JSON ``system_time_quantiles`` of ``cvxalloc solve --json``, computed
        on first use by the scenario's queue model (:meth:`quantiles` for other
        levels and for how they were computed).
        """
        return self.quantiles().as_dict()

    def quantiles(self, levels=None, **options) -> SystemTimeQuantiles:
        """Predicted percentiles of the system time at :attr:`tokens` (remembered per levels).

        See :func:`cvxalloc.queue.tail.system_time_quantiles` for the levels,
        the options and the method of each queue model.
        """
        key = (None if levels is None else tuple(levels), tuple(sorted(options.items())))
        if key not in self._quantiles:
            self._quantiles[key] = system_time_quantiles(
                self.scenario, self.tokens, levels, **options
            )
        return self._quantiles[key]

    @property
    def names(self) -> list[str]:
        """Task names in order."""
        return list(self.scenario.names) if self.scenario is not None else []

    # --- output -----------------------------------------------------------------
    def to_dict(self, per_type: bool = True, quantiles=None, bulk: bool = False) -> dict[str, Any]:
        """JSON-ready dict with the stable keys of the interface contract.

        ``status``, ``method``, ``tokens`` (name -> tokens), ``objective``,
        ``accuracy``, ``mean_system_time``, ``utilization``, ``certificate``
        (``gap``, ``upper_bound``, ...) and ``system_time_quantiles`` (at the
        levels ``quantiles``, default p50, p90, p95, p99; how they were
        computed in ``system_time_quantiles_model``), plus extras
        (``handed_over_to`` and ``fallback`` only when set).

        With ``bulk``, ``tokens`` and ``per_type`` are :class:`cvxalloc._output.PerTask`
        mappings (columns, not one dict per task), which the command line's writers
        format in bulk: what ``cvxalloc solve --json`` uses at 10^6 types.
        """
        ev = self.evaluation
        names = self.names or [str(i) for i in range(len(self.tokens))]
        tokens = PerTask(names, np.asarray(self.tokens, dtype=float))
        out: dict[str, Any] = {
            "status": self.status,
            "method": self.method,
            "tokens": tokens if bulk else tokens.to_dict(),
            "objective": _num(ev.objective),
            "accuracy": ev.accuracy,
            "mean_system_time": _num(ev.mean_system_time),
            "utilization": ev.utilization,
            "certificate": jsonable(self.certificate.to_dict()),
        }
        if self.scenario is not None:
            tail = self.quantiles(quantiles)
            out["system_time_quantiles"] = tail.as_dict()
            out["system_time_quantiles_model"] = jsonable(tail.to_dict())
        if getattr(self.scenario, "server", None) is not None:  # what service_scv assumes
            out["service_scv"] = ev.m2 / (ev.m1 * ev.m1) - 1.0
        if getattr(self.scenario, "fleet", None) is not None:
            out["fleet"] = jsonable(fleet_info(self.scenario, ev, queue_model(self.scenario)))
        if self.raw_certificate is not None:
            out["raw_certificate"] = jsonable(self.raw_certificate.to_dict())
        if per_type:
            table = self.to_table()
            del table["name"]
            rows = PerTask(names, table)
            out["per_type"] = rows if bulk else rows.to_dict()
        out["iterations"] = self.iterations
        out["message"] = self.message
        if self.handed_over_to is not None:
            out["handed_over_to"] = self.handed_over_to
        if self.fallback is not None:
            out["fallback"] = self.fallback
        if self.solver_stats:
            out["solver_stats"] = jsonable(self.solver_stats)
        if self.diagnostics:
            out["diagnostics"] = jsonable(self.diagnostics)
        return out

    def to_table(self) -> dict[str, np.ndarray]:
        """One row per task: ``name``, ``tokens``, ``accuracy`` (of the task's answer at
        its tokens) and ``service_time`` (its mean, seconds), as columns: what
        ``cvxalloc solve --output tokens.csv`` writes."""
        ev = self.evaluation
        names = self.names or [str(i) for i in range(len(self.tokens))]
        return {
            "name": np.asarray(names, dtype=object),
            "tokens": np.asarray(self.tokens, dtype=float),
            "accuracy": np.asarray(ev.type_accuracy, dtype=float),
            "service_time": np.asarray(ev.service_time, dtype=float),
        }

    def summary(self, baselines: dict | None = None, quantiles=None) -> str:
        """What ``cvxalloc solve`` prints: method and status, the per-type table (tokens,
        accuracy, service time), the headline figures (system-time percentiles at
        ``quantiles``) and certificate, the constraints, and the ``baselines`` when given
        (:func:`cvxalloc.baselines.baselines`)."""
        return solve_report(self, baselines, quantiles)

    def __repr__(self) -> str:
        """A summary with what rebuilds the result: the exact tokens, method and status.

        For the continuous methods ``Result.from_tokens(scenario, tokens,
        method=..., status=...)`` with the printed values gives back the same
        evaluation and Frank-Wolfe certificate (the integer methods' certificate
        and every solver's diagnostics and history are not repeated; tokens are
        summarized beyond 100 types).

        >>> import cvxalloc
        >>> sc = cvxalloc.example_scenario()
        >>> res = cvxalloc.solve(sc)
        >>> res  # doctest: +ELLIPSIS
        Result(status='optimal', method='aggregate', objective=0.59770001762..., tokens=[680.48...])
        >>> again = Result.from_tokens(sc, res.tokens, method=res.method, status=res.status)
        >>> repr(again) == repr(res)
        True
        """
        return (
            f"Result(status={self.status!r}, method={self.method!r}, "
            f"objective={source(self.objective)}, gap={source(self.certificate.gap)}, "
            f"tokens={source(np.asarray(self.tokens, dtype=float))})"
        )


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def jsonable(obj: Any) -> Any:
    """Make numpy scalars/arrays and non-finite floats JSON-safe (non-finite -> None)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
