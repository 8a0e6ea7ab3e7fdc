"""Reading request logs: one arrival time per request, from CSV or JSON lines.

Layer: parts.

A request log is a text file with one row per request: a CSV file with a
header row, or JSON lines (one object per line). The format is decided by the
content, not the extension: a file whose first non-blank character is ``{``
is JSON lines, anything else is CSV (comma-separated, or tab-separated when
the header has tabs and no commas).

Times
-----
The time column is ``time_column`` when given, else the first column whose
name is, ignoring case, one of :data:`TIME_COLUMNS` (``timestamp``, ``time``,
``arrival_time``, ``arrival``, ``ts``, ``created_at``). It holds either

* date-times, e.g. the Azure traces' ``2023-11-16 18:15:46.6805900`` (space or
  ``T`` between date and time, up to 9 fractional digits, an optional ``Z`` or
  ``+hh:mm`` offset, which is applied), read without a unit; or
* numbers in the unit ``time_unit`` (``"s"``, ``"ms"`` or ``"us"``). When
  numbers come without a unit they are taken as seconds, and the log records
  ``time_unit = "s (assumed)"`` so every report shows the assumption.

The whole column is converted by numpy at once (``datetime64[ns]`` or
``float64``), so a 10^6-row log reads in about a second. Times are returned as
float seconds since the first arrival, sorted ascending; a log that is not
sorted is sorted (stably, so simultaneous requests keep their order) and
:attr:`RequestLog.sorted` says it was not. Simultaneous arrivals (zero gaps)
are valid.

One normal form
---------------
:class:`RequestLog` is the one place where a log is normalized: every log is
time-ordered and checked when it is made (at least two requests, finite times,
not all at one instant; :meth:`RequestLog.of` also takes plain arrival times
and sorts them), and it computes once what the workflows read from it: the
arrival rate, the squared coefficient of variation of the gaps, the type mix,
the token summary, and the task index of each request for a scenario
(:meth:`RequestLog.task_indices`). :mod:`cvxalloc.traffic`,
:mod:`cvxalloc.simulate` (the replay) and :mod:`cvxalloc.controller` take a log
and read these; none sorts or checks times again.

Errors
------
Every failure is a :class:`~cvxalloc.errors.ScenarioError` whose message names
the file, the line (1-based, as an editor shows it) or the column, and what to
do: an empty file, a header and no requests, a single request, all requests at
one instant, a time that does not parse, a missing column (the message lists
the columns present), a binary or non-UTF-8 file, an unknown ``time_unit``.

Examples
--------
>>> import os, tempfile
>>> from cvxalloc.requestlog import read_request_log
>>> d = tempfile.mkdtemp()
>>> path = os.path.join(d, "log.csv")
>>> with open(path, "w") as fh:
...     _ = fh.write("ts,kind\\n1000,a\\n1500,b\\n1500,a\\n3000,a\\n")
>>> log = read_request_log(path, time_unit="ms", type_column="kind")
>>> log.times
array([0. , 0.5, 0.5, 2. ])
>>> log.types.tolist()
['a', 'b', 'a', 'a']
>>> log.time_column, log.time_unit, log.sorted
('ts', 'ms', True)
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import json
import math
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ScenarioError

__all__ = ["RequestLog", "read_request_log", "task_indices", "TIME_COLUMNS", "TIME_UNITS"]

#: Column names recognized as the arrival time, in order of preference (case-insensitive).
TIME_COLUMNS = ("timestamp", "time", "arrival_time", "arrival", "ts", "created_at")
#: Units of numeric time stamps: seconds per unit.
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
#: ``time_unit`` recorded for date-time stamps.
DATETIME = "datetime"
#: ``time_unit`` recorded for numbers read without a unit.
ASSUMED_SECONDS = "s (assumed)"

_FIX_TIME = (
    "expected a date-time such as 2023-11-16 18:15:46.68 or a number "
    "(with --time-unit s|ms|us); fix that line or choose another --time-column"
)


@dataclass(frozen=True, eq=False)
class RequestLog:
    """Arrival times (and optionally types and token counts) of a request log.

    Attributes
    ----------
    times : ndarray of float
        Arrival times in seconds, sorted ascending: since the first arrival
        (``times[0] == 0``) for a log read from a file, the given origin for
        :meth:`of` plain times.
    types : ndarray of str (or int) or None
        Type (task name, or task index) of each request, in the order of
        ``times``; None without a type column.
    tokens : ndarray of float or None
        Token count of each request, in the order of ``times``; None without a
        tokens column.
    source : str
        The file read.
    columns : tuple of str
        Every column of the file (CSV header, or keys of the JSON objects in
        order of first appearance).
    time_column : str
        The column the times came from.
    time_unit : str
        ``"datetime"`` (date-time strings), ``"s"``, ``"ms"``, ``"us"``, or
        ``"s (assumed)"`` for numbers read without a unit.
    type_column, tokens_column : str or None
        The columns of ``types`` and ``tokens``.
    sorted : bool
        Whether the file listed the requests in time order (when not, they were
        stably sorted).
    format : str
        ``"csv"`` or ``"jsonl"`` (read from a file), ``"array"`` (:meth:`of` plain times).

    Notes
    -----
    ``repr`` is the call that reads the log again (``eval`` of it gives an
    equal log), followed by a comment with its size and span.

    A log is checked when it is made: at least two requests, finite times in
    ascending order, not all at one instant, one type and one token count per
    request where given (:class:`~cvxalloc.errors.ScenarioError` otherwise).
    """

    times: np.ndarray
    types: np.ndarray | None
    tokens: np.ndarray | None
    source: str
    columns: tuple[str, ...]
    time_column: str
    time_unit: str
    type_column: str | None = None
    tokens_column: str | None = None
    sorted: bool = True
    format: str = "csv"

    def __post_init__(self) -> None:
        _check_times(self.source, np.asarray(self.times, dtype=float))
        for name, column in (("types", self.types), ("tokens", self.tokens)):
            if column is not None and len(column) != self.times.size:
                raise _err(
                    self.source,
                    f"{name}: one per arrival ({self.times.size:,}), got {len(column):,}",
                )

    @classmethod
    def of(
        cls,
        log: Any,
        *,
        types: Any = None,
        tokens: Any = None,
        source: str | None = None,
    ) -> RequestLog:
        """A checked, time-ordered log from a :class:`RequestLog` or plain arrival times.

        Parameters
        ----------
        log : RequestLog or array_like
            A log (returned as it is unless ``types`` replaces its types or
            ``source`` its name), or arrival times in seconds (any origin, sorted
            stably with their types and tokens when they are not in order).
        types, tokens : array_like, optional
            One per arrival, in the order of the given times: task names or
            indices, and token counts.
        source : str, optional
            The log's name in messages and reports (default ``"arrival_times"``).

        Examples
        --------
        >>> log = RequestLog.of([3.0, 1.0, 2.0, 5.0], types=["b", "a", "a", "b"])
        >>> log.times, log.types.tolist(), log.sorted
        (array([1., 2., 3., 5.]), ['a', 'a', 'b', 'b'], False)
        >>> log.arrival_rate, log.arrival_scv   # gaps 1, 1, 2
        (0.75, 0.125)
        """
        if isinstance(log, RequestLog):
            if types is None and source is None:
                return log
            return dataclasses.replace(
                log,
                types=log.types if types is None else np.asarray(types),
                source=log.source if source is None else source,
            )
        where = source or "arrival_times"
        times = np.asarray(log, dtype=float).ravel()
        if times.size >= 2 and np.all(np.isfinite(times)):
            types = None if types is None else _one_each(where, "types", types, times.size)
            tokens = None if tokens is None else _one_each(where, "tokens", tokens, times.size)
            in_order, times, types, tokens = _in_time_order(times, types, tokens)
        else:
            in_order = True  # refused below, naming what is wrong
        return cls(
            times=times,
            types=types,
            tokens=tokens,
            source=where,
            columns=(),
            time_column="",
            time_unit="s",
            sorted=in_order,
            format="array",
        )

    def __len__(self) -> int:
        return int(self.times.size)

    @property
    def requests(self) -> int:
        """Number of requests."""
        return int(self.times.size)

    @property
    def duration(self) -> float:
        """Seconds from the first to the last arrival."""
        return float(self.times[-1] - self.times[0])

    @cached_property
    def gaps(self) -> np.ndarray:
        """The ``n - 1`` inter-arrival gaps ``T_{j+1} - T_j``, seconds."""
        return np.diff(np.asarray(self.times, dtype=float))

    @cached_property
    def arrival_rate(self) -> float:
        """``(n - 1) / (T_n - T_1)``, requests per second (the inverse of the mean gap)."""
        return (self.requests - 1) / self.duration

    @cached_property
    def arrival_scv(self) -> float:
        """``var(G) / mean(G)^2`` of the gaps (population variance; 1 for Poisson)."""
        mean_gap = self.duration / (self.requests - 1)
        return float(self.gaps.var() / mean_gap**2)

    @cached_property
    def type_mix(self) -> dict[str, float] | None:
        """Type -> share of the requests, largest first (None without types)."""
        if self.types is None:
            return None
        names, counts = np.unique(np.asarray(self.types), return_counts=True)
        order = sorted(range(names.size), key=lambda i: (-counts[i], str(names[i])))
        return {str(names[i]): float(counts[i] / self.requests) for i in order}

    @cached_property
    def token_moments(self) -> tuple[float, float] | None:
        """``(mean, variance)`` of the token column (population variance), or None."""
        if self.tokens is None:
            return None
        x = np.asarray(self.tokens, dtype=float)
        return float(x.mean()), float(x.var())

    @cached_property
    def token_summary(self) -> dict[str, Any] | None:
        """``column``, ``mean``, ``scv`` (None at mean 0), ``min``, ``max`` of the token
        column, or None without one."""
        if self.token_moments is None:
            return None
        x = np.asarray(self.tokens, dtype=float)
        mean, var = self.token_moments
        return {
            "column": self.tokens_column,
            "mean": mean,
            "scv": float(var / mean**2) if mean > 0 else None,
            "min": float(x.min()),
            "max": float(x.max()),
        }

    def task_indices(self, names: Sequence[str]) -> np.ndarray | None:
        """Each request's task index among ``names`` (None without types).

        See :func:`task_indices`.
        """
        return None if self.types is None else task_indices(self.types, names)

    def __repr__(self) -> str:
        if self.format == "array":
            return (
                f"RequestLog.of(<{self.requests:,} arrival times>, source={self.source!r})  "
                f"# over {self.duration:,.6g} s"
            )
        args = [repr(self.source), f"time_column={self.time_column!r}"]
        if self.time_unit in TIME_UNITS:
            args.append(f"time_unit={self.time_unit!r}")
        if self.type_column is not None:
            args.append(f"type_column={self.type_column!r}")
        if self.tokens_column is not None:
            args.append(f"tokens_column={self.tokens_column!r}")
        note = f"{self.requests:,} requests over {self.duration:,.6g} s, time unit {self.time_unit}"
        if not self.sorted:
            note += ", sorted on reading"
        return f"read_request_log({', '.join(args)})  # {note}"


def task_indices(types: Any, names: Sequence[str]) -> np.ndarray:
    """Task indices of request types: task names, or integer indices, checked.

    Raises
    ------
    ScenarioError
        An index outside ``0 .. len(names) - 1``, or a name that is not a task
        (the message lists the tasks).

    Examples
    --------
    >>> task_indices(["code", "chat", "code"], ["chat", "code"]).tolist()
    [1, 0, 1]
    """
    arr = np.asarray(types)
    n = len(names)
    if arr.dtype.kind in "iu":
        idx = arr.astype(np.intp)
        bad = (idx < 0) | (idx >= n)
        if bad.any():
            raise ScenarioError(
                f"types: index {idx[np.flatnonzero(bad)[0]]} is not a task (0..{n - 1})"
            )
        return idx
    found, inverse = np.unique(arr.astype(str), return_inverse=True)
    lookup = {name: i for i, name in enumerate(names)}
    unknown = [str(x) for x in found if str(x) not in lookup]
    if unknown:
        raise ScenarioError(
            f"the log's type {unknown[0]!r} is not a task of the scenario (tasks: "
            f"{', '.join(names)}); rename it in the log or drop --type-column"
        )
    return np.array([lookup[str(x)] for x in found], dtype=np.intp)[inverse.ravel()]


# --------------------------------------------------------------------------
# helpers
def _err(source: str, message: str) -> ScenarioError:
    return ScenarioError(f"{source}: {message}")


def _one_each(source: str, name: str, values: Any, n: int) -> np.ndarray:
    """``values`` as an array of one entry per arrival."""
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size != n:
        raise _err(source, f"{name}: one per arrival ({n:,}), got {arr.size:,}")
    return arr


def _check_times(source: str, times: np.ndarray) -> None:
    """At least two finite arrival times, in ascending order, not all at one instant."""
    n = times.size
    if times.ndim != 1 or n < 2:
        raise _err(source, f"a request log needs at least two arrivals (got {n})")
    if not np.all(np.isfinite(times)):
        raise _err(source, "arrival times must be finite numbers")
    if np.any(times[1:] < times[:-1]):
        raise _err(source, "arrival times must be in ascending order (RequestLog.of sorts them)")
    if not times[-1] > times[0]:
        raise _err(source, f"all {n:,} arrivals at one instant; no arrival rate to measure")


def _decode(path: Path, source: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _err(
            source, "no such file; give the path of a CSV or JSON-lines request log"
        ) from None
    except IsADirectoryError:
        raise _err(source, "is a directory; give the path of a request log file") from None
    except OSError as exc:
        raise _err(source, f"cannot read the file ({exc.strerror or exc})") from None
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise _err(
            source,
            f"not a text file (NUL byte at line {line}); give a CSV or JSON-lines request log",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _err(
            source,
            f"line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
            "save the log as UTF-8 CSV or JSON lines",
        ) from None


def _find_column(
    source: str, columns: Sequence[str], name: str | None, option: str, candidates: Sequence[str]
) -> str:
    """The column called ``name`` (exact, else the one equal ignoring case), or a candidate."""
    present = ", ".join(repr(c) for c in columns) or "none"
    if name is not None:
        if name in columns:
            return name
        folded = [c for c in columns if c.lower() == name.lower()]
        if len(folded) == 1:
            return folded[0]
        hint = ""
        if _looks_like_data(columns):
            hint = "; the first line must be a header row naming the columns"
        raise _err(source, f"no column {name!r} (columns: {present}){hint}; fix {option}")
    lower = {c.lower(): c for c in reversed(columns)}
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    hint = (
        "; the first line must be a header row naming the columns"
        if _looks_like_data(columns)
        else ""
    )
    raise _err(
        source,
        f"no time column found (columns: {present}){hint}; name it with --time-column "
        f"(recognized names: {', '.join(candidates)})",
    )


def _looks_like_data(columns: Sequence[str]) -> bool:
    """Whether a 'header' looks like a data row (numbers or date-times)."""
    for c in columns:
        try:
            float(c)
            return True
        except ValueError:
            pass
        if len(c) >= 10 and c[:4].isdigit() and c[4:5] == "-":
            return True
    return False


def _is_number(text: str) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _first_bad(values: Sequence[Any], ok) -> int:
    for i, v in enumerate(values):
        if not ok(v):
            return i
    return -1  # pragma: no cover - only called after a failure


def _parse_datetime(text: Any) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v = np.datetime64(str(text).strip(), "ns")
    except (ValueError, TypeError, OverflowError):
        return False
    return not np.isnat(v)


def _times_seconds(
    source: str,
    column: str,
    values: list[Any],
    lines: np.ndarray,
    time_unit: str | None,
) -> tuple[np.ndarray, str]:
    """Convert the raw time column to float seconds (relative to the earliest stamp)."""
    if time_unit is not None and time_unit not in TIME_UNITS:
        raise _err(
            source,
            f"--time-unit {time_unit!r} is not a unit; use one of {', '.join(TIME_UNITS)}",
        )
    numeric = True
    try:
        x = np.array(values, dtype=float)
    except (ValueError, TypeError):
        numeric = False
    if not numeric:
        first = next((v for v in values if str(v).strip()), "")
        if _is_number(first):  # a numeric column with a bad value somewhere
            i = _first_bad(values, _is_number)
            raise _err(
                source,
                f"line {lines[i]}: cannot read time {values[i]!r} in column {column!r}; "
                f"{_FIX_TIME}",
            )
        if time_unit is not None:
            raise _err(
                source,
                f"column {column!r} holds date-times ({str(first)!r}), which need no "
                f"--time-unit; drop --time-unit {time_unit}",
            )
        strings = [v if isinstance(v, str) else str(v) for v in values]
        try:
            with warnings.catch_warnings():  # '+01:00' offsets are applied; numpy warns
                warnings.simplefilter("ignore")
                d = np.array(strings, dtype="datetime64[ns]")
        except (ValueError, TypeError, OverflowError):
            i = _first_bad(strings, _parse_datetime)
            raise _err(
                source,
                f"line {lines[i]}: cannot read time {strings[i]!r} in column {column!r}; "
                f"{_FIX_TIME}",
            ) from None
        nat = np.isnat(d)
        if nat.any():
            i = int(np.flatnonzero(nat)[0])
            raise _err(
                source,
                f"line {lines[i]}: time {strings[i]!r} in column {column!r} is empty or "
                f"NaT; {_FIX_TIME}",
            )
        ns = d.view(np.int64)
        return (ns - ns.min()).astype(np.float64) * 1e-9, DATETIME
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _err(
            source,
            f"line {lines[i]}: time {values[i]!r} in column {column!r} is not a finite "
            f"number; {_FIX_TIME}",
        )
    unit = ASSUMED_SECONDS if time_unit is None else time_unit
    scale = TIME_UNITS["s" if time_unit is None else time_unit]
    return (x - x.min()) * scale, unit


def _csv_rows(source: str, text: str) -> tuple[list[str], list[list[str]], np.ndarray]:
    """Header, data rows and their 1-based line numbers (blank lines skipped)."""
    lines = text.splitlines()
    line_no = [i + 1 for i, line in enumerate(lines) if line.strip()]
    body = [lines[i - 1] for i in line_no]
    if not body:
        raise _err(
            source, "the file is empty; a request log needs a header row and one row per request"
        )
    delim = "\t" if ("\t" in body[0] and "," not in body[0]) else ","
    if '"' not in text:
        rows = [line.split(delim) for line in body]
        numbers = np.asarray(line_no, dtype=np.intp)
    else:
        reader = csv.reader(body, delimiter=delim)
        rows, starts, consumed = [], [], 0
        for row in reader:  # a quoted field may span lines: number a row by its first line
            rows.append(row)
            starts.append(line_no[consumed])
            consumed = reader.line_num
        numbers = np.asarray(starts, dtype=np.intp)
    header = [c.strip() for c in rows[0]]
    return header, rows[1:], numbers[1:]


def _csv_columns(
    source: str, header: list[str], rows: list[list[str]], lines: np.ndarray, wanted: list[str]
) -> dict[str, list[str]]:
    width = len(header)
    lens = np.fromiter(map(len, rows), dtype=np.intp, count=len(rows))
    bad = lens != width
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _err(
            source,
            f"line {lines[i]}: {lens[i]} fields where the header has {width}; "
            "fix that line (quote fields that contain the separator)",
        )
    out = {}
    for name in wanted:
        j = header.index(name)
        out[name] = [r[j].strip() for r in rows]
    return out


def _jsonl_rows(source: str, text: str) -> tuple[list[str], list[dict], np.ndarray]:
    lines = text.splitlines()
    line_no = [i + 1 for i, line in enumerate(lines) if line.strip()]
    body = [lines[i - 1] for i in line_no]
    try:
        objs = json.loads("[" + ",".join(body) + "]")
        if len(objs) != len(body):  # a line holding '1, 2' parses as two values
            raise ValueError
    except (ValueError, RecursionError):
        objs = []
        for n, line in zip(line_no, body):
            try:
                objs.append(json.loads(line))
            except (ValueError, RecursionError) as exc:
                raise _err(
                    source,
                    f"line {n}: not a JSON object ({getattr(exc, 'msg', exc)}); "
                    "JSON lines need one object per line",
                ) from None
    for n, obj in zip(line_no, objs):
        if not isinstance(obj, dict):
            raise _err(
                source,
                f"line {n}: a JSON {type(obj).__name__} where an object was expected; "
                "JSON lines need one object per line",
            )
    columns: dict[str, None] = {}
    for obj in objs[:1000]:
        columns.update(dict.fromkeys(obj))
    if len(objs) > 1000:
        for obj in objs[1000:]:
            if obj.keys() - columns.keys():
                columns.update(dict.fromkeys(obj))
    return list(columns), objs, np.asarray(line_no, dtype=np.intp)


def _jsonl_column(source: str, objs: list[dict], lines: np.ndarray, name: str) -> list[Any]:
    missing = object()
    values = [o.get(name, missing) for o in objs]
    for i, v in enumerate(values):
        if v is missing or v is None or isinstance(v, (dict, list, bool)):
            what = "has no key" if v is missing else f"has {json.dumps(v)} for"
            raise _err(source, f"line {lines[i]}: the object {what} {name!r}; fix that line")
    return values


def _tokens(source: str, column: str, values: list[Any], lines: np.ndarray) -> np.ndarray:
    try:
        x = np.array(values, dtype=float)
    except (ValueError, TypeError):
        i = _first_bad(values, _is_number)
        raise _err(
            source,
            f"line {lines[i]}: cannot read tokens {values[i]!r} in column {column!r}; "
            "expected a number",
        ) from None
    bad = ~np.isfinite(x) | (x < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _err(
            source,
            f"line {lines[i]}: tokens {values[i]!r} in column {column!r} is not a finite "
            "number >= 0; fix that line",
        )
    return x


# --------------------------------------------------------------------------
def read_request_log(
    path: str | Path,
    *,
    time_column: str | None = None,
    time_unit: str | None = None,
    type_column: str | None = None,
    tokens_column: str | None = None,
) -> RequestLog:
    """Read a request log (CSV with a header row, or JSON lines).

    Parameters
    ----------
    path : str or Path
        The log. JSON lines when its first non-blank character is ``{``, CSV
        otherwise, whatever the extension.
    time_column : str, optional
        Column of the arrival times (exact name, or the only one equal to it
        ignoring case); default: the first of :data:`TIME_COLUMNS` present.
    time_unit : {"s", "ms", "us"}, optional
        Unit of numeric time stamps. Numbers without a unit are read as
        seconds and the log says ``time_unit = "s (assumed)"``. Date-time
        stamps take no unit.
    type_column : str, optional
        Column of the request type (task name), kept as strings.
    tokens_column : str, optional
        Column of a token count per request (numbers >= 0).

    Returns
    -------
    RequestLog
        Times in seconds since the first arrival, sorted (stably).

    Raises
    ------
    ScenarioError
        With the file, the line or column, and the fix: empty file, header
        only, one request, all requests at one instant, an unreadable time or
        token count, a missing column, a binary or non-UTF-8 file, a bad
        ``time_unit``.
    """
    source = str(path)
    _check_time_unit(source, time_unit)
    text = _decode(Path(path), source)
    fmt = _log_format(source, text)
    with _collector_paused():
        columns, lines, raw, (tcol, ycol, kcol) = _read_columns(
            source, text, fmt, time_column, type_column, tokens_column
        )
        times, unit = _times_seconds(source, tcol, raw[tcol], lines, time_unit)
        types = None if ycol is None else np.array([str(v) for v in raw[ycol]], dtype=str)
        tokens = None if kcol is None else _tokens(source, kcol, raw[kcol], lines)
    del raw
    is_sorted, times, types, tokens = _in_time_order(times, types, tokens)
    _check_span(source, times, tcol)
    for arr in (times, types, tokens):
        if arr is not None:
            arr.flags.writeable = False
    return RequestLog(
        times=times,
        types=types,
        tokens=tokens,
        source=source,
        columns=tuple(columns),
        time_column=tcol,
        time_unit=unit,
        type_column=ycol,
        tokens_column=kcol,
        sorted=is_sorted,
        format=fmt,
    )


def _check_time_unit(source: str, time_unit: str | None) -> None:
    if time_unit is not None and time_unit not in TIME_UNITS:
        raise _err(
            source, f"--time-unit {time_unit!r} is not a unit; use one of {', '.join(TIME_UNITS)}"
        )


def _log_format(source: str, text: str) -> str:
    """``"jsonl"`` when the first non-blank character is ``{``, else ``"csv"``."""
    stripped = text.lstrip()
    if not stripped:
        raise _err(
            source, "the file is empty; a request log needs a header row and one row per request"
        )
    return "jsonl" if stripped.startswith("{") else "csv"


@contextmanager
def _collector_paused():
    """No cyclic garbage collection inside: millions of small lists would triple the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_columns(
    source: str,
    text: str,
    fmt: str,
    time_column: str | None,
    type_column: str | None,
    tokens_column: str | None,
) -> tuple[list[str], np.ndarray, dict[str, list[Any]], tuple[str, str | None, str | None]]:
    """Every column, each request's line, the raw values of the columns asked for, and
    the names of the time, type and tokens columns (at least two requests)."""
    if fmt == "csv":
        columns, rows, lines = _csv_rows(source, text)
        if not rows:
            raise _err(
                source,
                f"header only (columns: {', '.join(columns)}), no requests; "
                "add one row per request",
            )
    else:
        columns, objs, lines = _jsonl_rows(source, text)
    tcol = _find_column(source, columns, time_column, "--time-column", TIME_COLUMNS)
    ycol = _optional_column(source, columns, type_column, "--type-column")
    kcol = _optional_column(source, columns, tokens_column, "--tokens-column")
    wanted = [c for c in dict.fromkeys([tcol, ycol, kcol]) if c is not None]
    if fmt == "csv":
        raw: dict[str, list[Any]] = _csv_columns(source, columns, rows, lines, wanted)
    else:
        raw = {c: _jsonl_column(source, objs, lines, c) for c in wanted}
    if len(raw[tcol]) == 1:
        raise _err(
            source,
            f"only one request (line {lines[0]}); measuring an arrival rate needs at least two",
        )
    return columns, lines, raw, (tcol, ycol, kcol)


def _optional_column(source: str, columns: list[str], name: str | None, option: str) -> str | None:
    return None if name is None else _find_column(source, columns, name, option, ())


def _in_time_order(times: np.ndarray, types: np.ndarray | None, tokens: np.ndarray | None):
    """``(was sorted, times, types, tokens)``, stably sorted by time when they were not."""
    is_sorted = bool(np.all(times[1:] >= times[:-1]))
    if not is_sorted:
        order = np.argsort(times, kind="stable")
        times = times[order]
        types = None if types is None else types[order]
        tokens = None if tokens is None else tokens[order]
    return is_sorted, times, types, tokens


def _check_span(source: str, times: np.ndarray, tcol: str) -> None:
    """Refuse a log whose requests all arrive at one instant (or whose span overflows)."""
    if times[-1] <= times[0]:
        raise _err(
            source,
            f"all {times.size:,} requests arrive at the same instant (column {tcol!r}); no "
            "arrival rate can be measured: check the time column and --time-unit",
        )
    if not math.isfinite(float(times[-1])):  # pragma: no cover - finite inputs, finite span
        raise _err(source, f"column {tcol!r}: the time span overflows")
