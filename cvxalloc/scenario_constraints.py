"""The constraints of a scenario: the :class:`Constraints` record and its file structure.

Layer: scenario. What a constraint *is* (the data a scenario carries, its
parsing and validation) lives here, beside the scenario model; the terms that
evaluate it, its feasibility and its certificate are :mod:`cvxalloc.constraints`
(numerics), and how solvers honour it (conic rows, multipliers, the finishing
polish) is in :mod:`cvxalloc.solvers`.

``[constraints]`` holds the scalar limits; ``min_accuracy`` is set per task.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._source import REPR_MAX, source
from .certificate import Certificate
from .constraints.certificate import certify_constrained
from .constraints.tail import TailPercentile, TailSLO
from .constraints.terms import KINDS, TERMS, ConstraintError, Term
from .errors import did_you_mean
from .objective import Objective
from .protocols import ScenarioLike

__all__ = ["Constraints", "constraints_from_file"]


def _opt_number(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ConstraintError(f"constraints: {key} must be a number (got {value!r})")
    try:
        value = float(value)
    except OverflowError:  # an integer beyond a double
        raise ConstraintError(
            f"constraints: {key} is beyond the range of a float (an integer of "
            f"{len(str(abs(int(value))))} digits); give a realistic value"
        ) from None
    if not math.isfinite(value):
        raise ConstraintError(f"constraints: {key} must be a finite number (got {value})")
    return value


@dataclass(eq=False)
class Constraints:
    """The operator constraints of a scenario (every field optional).

    Attributes
    ----------
    max_mean_system_time : float or None
        Upper bound on ``W`` in seconds (> 0).
    max_mean_tokens : float or None
        Upper bound on ``sum_i p_i t_i`` (>= 0).
    max_utilization : float or None
        Upper bound on ``rho``, in ``(0, 1]``.
    min_accuracy : ndarray or None
        Per task, a lower bound on ``A_i(t_i)`` in ``[0, 1]``; ``NaN`` where
        the task has none.
    tail : TailSLO or None
        ``q_p(T) <= max_system_time``: a percentile of the system time
        (``{"quantile": p, "max_system_time": T0}`` is accepted), held through
        a convex conservative surrogate (:mod:`cvxalloc.constraints.tail`).
    """

    max_mean_system_time: float | None = None
    max_mean_tokens: float | None = None
    max_utilization: float | None = None
    min_accuracy: np.ndarray | None = None
    tail: TailSLO | None = None

    def __post_init__(self) -> None:
        if self.tail is not None:
            self.tail = TailSLO.from_table(self.tail)
        for key in TERMS:
            setattr(self, key, _opt_number(key, getattr(self, key)))
        if self.max_mean_system_time is not None and self.max_mean_system_time <= 0:
            raise ConstraintError(
                f"constraints: max_mean_system_time must be > 0 seconds "
                f"(got {self.max_mean_system_time:g})"
            )
        if self.max_mean_tokens is not None and self.max_mean_tokens < 0:
            raise ConstraintError(
                f"constraints: max_mean_tokens must be >= 0 (got {self.max_mean_tokens:g})"
            )
        if self.max_utilization is not None and not 0 < self.max_utilization <= 1:
            raise ConstraintError(
                f"constraints: max_utilization must be in (0, 1] (got {self.max_utilization:g})"
            )
        if self.min_accuracy is not None:
            m = np.atleast_1d(np.asarray(self.min_accuracy, dtype=float))
            if m.ndim != 1:
                raise ConstraintError("min_accuracy must be one value per task")
            if np.all(np.isnan(m)):
                m = None
            else:
                bad = np.flatnonzero(~np.isnan(m) & ((m < 0) | (m > 1) | ~np.isfinite(m)))
                if bad.size:
                    raise ConstraintError(
                        f"task {bad[0] + 1}: min_accuracy must be in [0, 1] (got {m[bad[0]]:g})"
                    )
                m.setflags(write=False)
            self.min_accuracy = m

    def _repr_pretty_(self, p, cycle) -> None:
        """Print the repr in IPython and hypothesis (which spell a dataclass field by field)."""
        p.text(repr(self))

    def __repr__(self) -> str:
        """Python source that rebuilds the constraints (the ones set; NaN where a task has none).

        ``min_accuracy`` is summarized (not source) beyond 100 tasks.

        >>> Constraints(max_mean_system_time=30, min_accuracy=[0.5, float("nan")])
        Constraints(max_mean_system_time=30.0, min_accuracy=[0.5, float('nan')])
        """
        args = [f"{k}={source(getattr(self, k))}" for k in TERMS if getattr(self, k) is not None]
        m = self.min_accuracy
        if m is not None and m.size > REPR_MAX:
            set_ = m[~np.isnan(m)]
            args.append(
                f"min_accuracy=<{m.size} values, {set_.size} set, in "
                f"[{set_.min():g}, {set_.max():g}]>"
            )
        elif m is not None:
            args.append(f"min_accuracy={source(m)}")
        if self.tail is not None:
            args.append(f"tail={source(self.tail.to_table())}")
        return f"Constraints({', '.join(args)})"

    # --- structure ----------------------------------------------------------
    @property
    def empty(self) -> bool:
        """Whether no constraint is set."""
        return not self.kinds

    @property
    def kinds(self) -> list[str]:
        """The constraint keys that are set, in :data:`KINDS` order."""
        out = [k for k in TERMS if getattr(self, k) is not None]
        if self.min_accuracy is not None:
            out.append("min_accuracy")
        if self.tail is not None:
            out.append("tail")
        return out

    def terms(self) -> list[Term]:
        """The scalar terms (SLO, token budget, utilization cap) that are set."""
        out = [cls(getattr(self, k)) for k, cls in TERMS.items() if getattr(self, k) is not None]
        if self.tail is not None:
            out.append(TailPercentile(self.tail))
        return out

    def certify(
        self, scenario: ScenarioLike, tokens: np.ndarray, objective: Objective
    ) -> Certificate:
        """Certificate of an allocation under these constraints (:func:`certify_constrained`)."""
        return certify_constrained(scenario, tokens, objective)

    def check(self, scenario: ScenarioLike) -> None:
        """Validate against a scenario (one min_accuracy per task); errors name the task."""
        if self.min_accuracy is not None and self.min_accuracy.size != scenario.n:
            raise ConstraintError(
                f"min_accuracy must have one entry per task ({scenario.n}), "
                f"got {self.min_accuracy.size}"
            )

    def with_(self, **changes: Any) -> Constraints:
        """A copy with some fields replaced (``None`` removes a constraint)."""
        kw = {k: getattr(self, k) for k in KINDS}
        kw.update(changes)
        return Constraints(**kw)

    def take(self, idx: Sequence[int] | np.ndarray) -> Constraints:
        """The constraints of the task subset ``idx`` (scalars unchanged)."""
        m = None if self.min_accuracy is None else self.min_accuracy[np.asarray(idx, np.intp)]
        return self.with_(min_accuracy=m)

    # --- file structure -------------------------------------------------------
    def to_table(self) -> dict[str, float]:
        """The ``[constraints]`` table (scalar constraints only)."""
        table: dict[str, Any] = {
            k: float(getattr(self, k)) for k in TERMS if getattr(self, k) is not None
        }
        if self.tail is not None:
            table["tail"] = self.tail.to_table()
        return table

    def write_dict(self, data: dict[str, Any]) -> dict[str, Any]:
        """Add the ``[constraints]`` table and per-task ``min_accuracy`` to a scenario dict."""
        table = self.to_table()
        if table:
            data["constraints"] = table
        if self.min_accuracy is not None:
            for task, m in zip(data["task"], self.min_accuracy):
                if not np.isnan(m):
                    task["min_accuracy"] = float(m)
        return data


def constraints_from_file(data: Mapping[str, Any], tasks: Sequence[Any]) -> Constraints | None:
    """The constraints of a scenario file (``None`` when it sets none).

    Parameters
    ----------
    data : mapping
        The whole scenario structure (reads its ``constraints`` table).
    tasks : sequence of mapping
        The ``task`` tables (reads each optional ``min_accuracy``).
    """
    table = data.get("constraints")
    if table is None:
        table = {}
    if not isinstance(table, Mapping):
        raise ConstraintError(f"constraints must be a table (got {type(table).__name__})")
    for key in table:
        if key not in TERMS and key != "tail":
            hint = did_you_mean(key, KINDS, [*TERMS, "tail"])
            if key == "min_accuracy":
                hint = "; min_accuracy is set per task ([[task]] min_accuracy = ...)"
            raise ConstraintError(f'constraints: unknown key "{key}"{hint}')
    mins = []
    for i, task in enumerate(tasks):
        val = task.get("min_accuracy") if isinstance(task, Mapping) else None
        if val is None:
            mins.append(np.nan)
            continue
        where = f'task "{task.get("name", i + 1)}"'
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            raise ConstraintError(f"{where}: min_accuracy must be a number (got {val!r})")
        if not 0 <= val <= 1:  # (an integer beyond a double is shown by its size)
            got = f"{val:g}" if isinstance(val, float) or abs(val) < 2**53 else "a huge integer"
            raise ConstraintError(f"{where}: min_accuracy must be in [0, 1] (got {got})")
        mins.append(float(val))
    cons = Constraints(
        **{k: table.get(k) for k in TERMS},
        min_accuracy=np.array(mins) if mins else None,
        tail=table.get("tail"),
    )
    return None if cons.empty else cons
