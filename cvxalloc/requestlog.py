"""Reading request logs: one arrival time per request, from CSV or JSON lines.

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
import gc
import json
import math
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ScenarioError

__all__ = ["RequestLog", "read_request_log", "TIME_COLUMNS", "TIME_UNITS"]

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
        Arrival times in seconds since the first arrival, sorted ascending
        (``times[0] == 0``).
    types : ndarray of str or None
        Type (task name) of each request, in the order of ``times``; None
        without a type column.
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
        ``"csv"`` or ``"jsonl"``.

    Notes
    -----
    ``repr`` is the call that reads the log again (``eval`` of it gives an
    equal log), followed by a comment with its size and span.
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

    def __repr__(self) -> str:
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


# --------------------------------------------------------------------------
# helpers
def _err(source: str, message: str) -> ScenarioError:
    return ScenarioError(f"{source}: {message}")


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
