"""Reading the measurements: accuracy per (task, budget) and service times per query, from CSV."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._source import fields_source
from ..errors import CvxallocError

__all__ = [
    "MeasurementError",
    "POOLED",
    "AccuracyData",
    "ServiceData",
    "read_accuracy_csv",
    "read_service_csv",
]


class MeasurementError(CvxallocError):
    """A measurement file is invalid, or the data cannot support a fit."""


#: Key of the pooled service line (rows without a task).
POOLED = "*"


# ----------------------------------------------------------------------------
# Reading the CSV files
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class AccuracyData:
    """Accuracy measurements of one task.

    Attributes
    ----------
    tokens, accuracy : ndarray
        Budgets and measured accuracies (in [0, 1]).
    trials : ndarray or None
        Graded answers behind each accuracy (binomial weights), if given.
    rows : ndarray
        Line numbers in the CSV (for messages).
    """

    tokens: np.ndarray
    accuracy: np.ndarray
    trials: np.ndarray | None = None
    rows: np.ndarray | None = None

    def __repr__(self) -> str:
        """Source that rebuilds the data (``np`` and ``AccuracyData`` in scope).

        >>> AccuracyData(np.array([100.0, 200.0]), np.array([0.5, 0.6]))
        AccuracyData(tokens=np.array([100.0, 200.0]), accuracy=np.array([0.5, 0.6]), \
trials=None, rows=None)
        """
        return fields_source(self)

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class ServiceData:
    """Service-time measurements of one line (a task, or pooled)."""

    tokens: np.ndarray
    seconds: np.ndarray

    def __repr__(self) -> str:
        """Source that rebuilds the data (``np`` and ``ServiceData`` in scope)."""
        return fields_source(self)

    def __len__(self) -> int:
        return len(self.tokens)


def _read_rows(path: str | Path, what: str, required: Sequence[str]):
    """Header and data rows of a CSV (``#`` lines are comments), with line numbers."""
    path = Path(path)
    if not path.is_file():
        raise MeasurementError(f"{what} CSV {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MeasurementError(f"{what} CSV {str(path)!r} cannot be read: {exc}") from None
    lines = [
        (n, line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise MeasurementError(
            f"{what} CSV {str(path)!r} is empty (expected a header row "
            f"with columns {','.join(required)})"
        )
    reader = csv.reader([line for _, line in lines])
    header = [h.strip().lower() for h in next(reader)]
    missing = [c for c in required if c not in header]
    if missing:
        raise MeasurementError(
            f"{what} CSV {str(path)!r}: missing column {missing[0]!r} "
            f"(found columns: {', '.join(header) or 'none'}; required: {', '.join(required)})"
        )
    rows = []
    for (lineno, _), values in zip(lines[1:], reader):
        if len(values) != len(header):
            raise MeasurementError(
                f"{what} CSV {str(path)!r} line {lineno}: {len(values)} fields, "
                f"header has {len(header)}"
            )
        rows.append((lineno, dict(zip(header, (v.strip() for v in values)))))
    if not rows:
        raise MeasurementError(f"{what} CSV {str(path)!r} has a header but no data rows")
    return str(path), header, rows


def _num(where: str, column: str, text: str) -> float:
    try:
        val = float(text)
    except ValueError:
        raise MeasurementError(
            f"{where}: column {column!r} must be a number (got {text!r})"
        ) from None
    if not math.isfinite(val):
        raise MeasurementError(f"{where}: column {column!r} must be finite (got {text!r})")
    return val


def read_accuracy_csv(path: str | Path) -> dict[str, AccuracyData]:
    """Read accuracy measurements: columns ``task,tokens,accuracy[,trials]``.

    Parameters
    ----------
    path : str or Path
        The CSV file. Extra columns are ignored; lines starting with ``#`` are
        comments. ``trials`` may be given for all rows of a task or none.

    Returns
    -------
    dict
        Task name -> :class:`AccuracyData`, in order of first appearance.

    Raises
    ------
    MeasurementError
        Missing file or column, a non-numeric value, ``tokens < 0``,
        ``accuracy`` outside [0, 1], ``trials`` not a positive count, or
        ``trials`` given for only some rows of a task; the message names the
        line and the column.
    """
    name, header, rows = _read_rows(path, "accuracy", ("task", "tokens", "accuracy"))
    has_trials = "trials" in header
    acc: dict[str, list[tuple[int, float, float, float | None]]] = {}
    for lineno, row in rows:
        where = f"accuracy CSV {name!r} line {lineno}"
        task = row["task"]
        if not task:
            raise MeasurementError(f"{where}: column 'task' is empty")
        t = _num(where, "tokens", row["tokens"])
        if t < 0:
            raise MeasurementError(f"{where}: column 'tokens' must be >= 0 (got {t:g})")
        a = _num(where, "accuracy", row["accuracy"])
        if not 0 <= a <= 1:
            hint = " (percent? divide by 100)" if 1 < a <= 100 else ""
            raise MeasurementError(
                f"{where}: column 'accuracy' must be in [0, 1] (got {a:g}){hint}"
            )
        n: float | None = None
        if has_trials and row["trials"] != "":
            n = _num(where, "trials", row["trials"])
            if n < 1 or n != round(n):
                raise MeasurementError(
                    f"{where}: column 'trials' must be a positive whole number (got {n:g})"
                )
        acc.setdefault(task, []).append((lineno, t, a, n))
    out: dict[str, AccuracyData] = {}
    for task, items in acc.items():
        given = [n is not None for *_, n in items]
        if any(given) and not all(given):
            bad = items[given.index(False)][0]
            raise MeasurementError(
                f"accuracy CSV {name!r} line {bad}: column 'trials' is empty but other rows "
                f'of task "{task}" give it; give trials for all rows of a task or none'
            )
        arr = np.array([(t, a) for _, t, a, _ in items], dtype=float)
        out[task] = AccuracyData(
            tokens=arr[:, 0],
            accuracy=arr[:, 1],
            trials=np.array([n for *_, n in items], dtype=float) if all(given) else None,
            rows=np.array([r for r, *_ in items]),
        )
    return out


def read_service_csv(path: str | Path) -> dict[str, ServiceData]:
    """Read service-time measurements: columns ``tokens,seconds[,task]``.

    One row per query: its thinking tokens and its service time in seconds
    (without queueing). Rows without a task (or a file without the column)
    form the pooled line, key :data:`POOLED`.

    Raises
    ------
    MeasurementError
        Missing file or column, non-numeric values, ``tokens < 0`` or
        ``seconds <= 0``; the message names the line and the column.
    """
    name, header, rows = _read_rows(path, "service", ("tokens", "seconds"))
    lines: dict[str, list[tuple[float, float]]] = {}
    for lineno, row in rows:
        where = f"service CSV {name!r} line {lineno}"
        t = _num(where, "tokens", row["tokens"])
        if t < 0:
            raise MeasurementError(f"{where}: column 'tokens' must be >= 0 (got {t:g})")
        s = _num(where, "seconds", row["seconds"])
        if s <= 0:
            raise MeasurementError(f"{where}: column 'seconds' must be > 0 (got {s:g})")
        task = row.get("task", "") or POOLED
        lines.setdefault(task, []).append((t, s))
    return {k: ServiceData(*np.array(v, dtype=float).T) for k, v in lines.items()}
