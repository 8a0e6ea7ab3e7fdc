"""Task tables: a scenario's tasks as one row per task in a CSV (or Parquet) file.

Layer: scenario.

A scenario file may give its tasks as ``tasks = "tasks.csv"`` (a path relative to the
scenario file) instead of ``[[task]]`` tables: one row per task, the fields of a
``[[task]]`` flattened into columns (:data:`COLUMNS`: ``name, probability, weight,
min_tokens, max_tokens, step, service.base, service.per_token, service.scv,
service.variance, accuracy.model, accuracy.floor, accuracy.ceiling, accuracy.scale,
accuracy.exponent, accuracy.gain``). Optional columns may be left out, and a cell may be
empty where its column does not apply (``accuracy.gain`` of an exponential task) or
where the key has a default. The table is read in bulk into one numpy array per
column (numpy's own CSV parser; Parquet through pyarrow where it is installed, never
required), never one Python object per task, and every error names the row and the
column and the fix.
"""

from __future__ import annotations

import csv
import difflib
import io
import mmap
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._output import write_table
from .accuracy import FAMILIES, AccuracyCurves
from .errors import ScenarioError

__all__ = [
    "COLUMNS",
    "read_task_table",
    "read_table",
    "read_allocation_table",
    "table_fields",
    "task_columns",
    "write_task_table",
]

#: Columns of a task table; ``None`` marks a required column, else its default.
COLUMNS: dict[str, float | None] = {
    "name": None,
    "probability": None,
    "weight": 1.0,
    "min_tokens": 0.0,
    "max_tokens": None,
    "step": 1.0,
    "service.base": 0.0,
    "service.per_token": None,
    "service.scv": 0.0,
    "service.variance": 0.0,
    "accuracy.model": None,
    "accuracy.floor": None,
    "accuracy.ceiling": None,
    "accuracy.scale": None,
    "accuracy.exponent": None,
    "accuracy.gain": None,
}
_TEXT = ("name", "accuracy.model")
#: A comma that ends an empty cell's predecessor: before a comma or the end of a line.
_EMPTY_CELL = re.compile(rb",(?=[,\r\n])")
#: Whether pyarrow's CSV reader runs on several threads. Yes: at 10^6 rows (220 MB) on
#: two cores, the parse alone took 0.46 s of CPU at best on two threads and 0.51 s on one
#: (median 0.55 s and 0.69 s, six runs each), the whole ``cvxalloc solve`` 1.50 s of wall
#: time at best against 1.70 s, for the same CPU time.
ARROW_THREADS = True
#: Columns every table needs (the other accuracy parameters depend on the model).
_REQUIRED = ("name", "probability", "max_tokens", "service.per_token", "accuracy.model",
             "accuracy.scale")  # fmt: skip
#: Scenario field of each per-task number column.
_FIELDS = {
    "probability": "probability",
    "weight": "weight",
    "min_tokens": "min_tokens",
    "max_tokens": "max_tokens",
    "step": "step",
    "service.base": "base",
    "service.per_token": "per_token",
    "service.scv": "scv",
    "service.variance": "variance",
}


def read_task_table(path: str | Path) -> dict[str, np.ndarray]:
    """The columns of a task table: numbers as float arrays (empty cells NaN), ``name``
    and ``accuracy.model`` as arrays of str. ``.csv``, or ``.parquet`` with pyarrow."""
    path = Path(path)
    where = f"task table {str(path)!r}"
    if not path.is_file():
        raise ScenarioError(f"{where} does not exist (tasks = ... is relative to the scenario)")
    return read_table(path, where, _TEXT, _check_columns)


def read_table(
    path: Path,
    where: str,
    text: Sequence[str],
    check: Callable[[list[str], str], None],
    usecols: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """The columns of a ``.csv`` or ``.parquet`` table, read in bulk.

    The columns named in ``text`` are arrays of str, the others float arrays (an
    empty cell NaN); only those in ``usecols`` are read, if given.
    ``check(header, where)`` judges the header first. A CSV is
    read by pyarrow where it is installed (multi-threaded, several times faster
    than numpy's parser at 10^6 rows), else by ``numpy.loadtxt``; a cell pyarrow
    cannot read is read again by numpy, whose error names the row and column.
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        header = _header(path, where)
        check(header, where)
        use = header if usecols is None else [c for c in header if c in usecols]
        cols = _read_csv_arrow(path, header, use, text)
        return cols if cols is not None else _read_csv(path, where, header, use, text)
    if suffix == ".parquet":
        cols = _read_parquet(path, where, text, check, usecols)
        return cols
    raise ScenarioError(f"{where}: unsupported extension {suffix!r}; use .csv or .parquet")


def _header(path: Path, where: str) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        first = f.readline()
    return [h.strip() for h in next(csv.reader([first]), [])]


def _check_columns(header: list[str], where: str) -> None:
    for col in header:
        if col not in COLUMNS:
            close = difflib.get_close_matches(col, list(COLUMNS), n=1)
            hint = f'did you mean "{close[0]}"?' if close else "allowed: " + ", ".join(COLUMNS)
            raise ScenarioError(f'{where}: unknown column "{col}"; {hint}')
    for col in _REQUIRED:
        if col not in header:
            raise ScenarioError(f"{where}: missing column {col!r}; add it, one value per task")
    if len(set(header)) != len(header):
        raise ScenarioError(f"{where}: a column appears twice in the header; keep one")


def _read_csv_arrow(path: Path, header: list[str], use: list[str], text: Sequence[str]):
    """The columns by pyarrow's CSV reader, or None (no pyarrow, or a cell it cannot
    read: numpy then reads the file and names the cell)."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        return None
    types = {c: pa.string() if c in text else pa.float64() for c in use}
    options = pacsv.ConvertOptions(
        include_columns=use,
        column_types=types,
        null_values=[""],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    # a quoted cell may hold a line break, which pyarrow's reader must be told of
    parse = pacsv.ParseOptions(newlines_in_values=_has_quotes(path))
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(encoding="utf8", use_threads=ARROW_THREADS),
            parse_options=parse,
            convert_options=options,
        )
    except (pa.ArrowException, ValueError, OSError):
        return None
    if table.column_names != use:
        return None
    return {c: _from_arrow(table.column(c), c in text, c == "accuracy.model") for c in use}


def _has_quotes(path: Path) -> bool:
    """Whether the file holds a double quote (searched in the mapped file, not copied)."""
    with path.open("rb") as f:
        try:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                return m.find(b'"') >= 0
        except ValueError:  # an empty file cannot be mapped
            return False


def _from_arrow(column, is_text: bool, few: bool = False) -> np.ndarray:
    """An arrow column as numpy: text as an object array of str, numbers as floats
    (a missing value NaN). A text column of few distinct values (``accuracy.model``)
    is built from its dictionary: one Python str per value, not per row."""
    if is_text and not few:
        return np.array(column.to_pylist(), dtype=object)
    if is_text:
        coded = column.dictionary_encode().combine_chunks()
        values = coded.dictionary.to_pylist()
        if len(values) * 4 > len(coded):
            return np.array(column.to_pylist(), dtype=object)
        return np.array(values, dtype=object)[coded.indices.to_numpy(zero_copy_only=False)]
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=float)


def _read_csv(path: Path, where: str, header: list[str], use: list[str], text: Sequence[str]):
    data = path.read_bytes()
    if b",," in data or b",\n" in data or b",\r" in data or data.endswith(b","):
        # numpy's parser reads no empty number: an empty cell becomes nan (judged by
        # the caller), in one pass (10^6 rows: 0.8 s, against 1.3 s for three replaces)
        data = _EMPTY_CELL.sub(b",nan", data)
        if data.endswith(b","):
            data += b"nan"
    dtype = [(f"c{j}", object if col in text else float) for j, col in enumerate(use)]
    try:
        rows = np.loadtxt(
            io.BytesIO(data), delimiter=",", skiprows=1, dtype=dtype, encoding="utf-8",
            quotechar='"', ndmin=1, usecols=[header.index(c) for c in use],
        )  # fmt: skip
    except ValueError as exc:
        raise _cell_error(exc, header, where) from None
    return {col: rows[f"c{j}"] for j, col in enumerate(use)}


def _cell_error(exc: ValueError, header: list[str], where: str) -> ScenarioError:
    """numpy's parse error as a row and a column."""
    text = str(exc)
    m = re.search(r"string '(.*)' to \w+ at row (\d+), column (\d+)", text)
    if m:
        # numpy counts data rows from 0 and columns from 1
        value, row, col = m.group(1), int(m.group(2)) + 1, int(m.group(3))
        name = header[col - 1] if 0 < col <= len(header) else f"column {col}"
        return ScenarioError(
            f"{where}, row {row}, column {name!r}: {value!r} is not a number; give a number"
        )
    m = re.search(r"row (\d+)", text)
    row = f", row {int(m.group(1)) + 1}" if m else ""
    return ScenarioError(
        f"{where}{row}: {text}; every row needs {len(header)} comma-separated cells "
        "(quote a name that holds a comma)"
    )


def _read_parquet(
    path: Path, where: str, text: Sequence[str], check, usecols: Sequence[str] | None
) -> dict[str, np.ndarray]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ScenarioError(
            f"{where}: reading Parquet needs pyarrow (pip install pyarrow); or give the "
            "table as .csv"
        ) from None
    try:
        tab = pq.read_table(path)
    except Exception as exc:  # pyarrow's own errors
        raise ScenarioError(f"{where} cannot be read as Parquet: {exc}") from None
    header = list(tab.column_names)
    check(header, where)
    out = {}
    for col in header if usecols is None else [c for c in header if c in usecols]:
        if col in text:
            out[col] = _from_arrow(tab.column(col), True, col == "accuracy.model")
            continue
        try:
            out[col] = _from_arrow(tab.column(col), False)
        except (TypeError, ValueError):
            raise ScenarioError(f"{where}, column {col!r}: not numbers; give numbers") from None
    return out


def read_allocation_table(path: str | Path) -> dict[str, np.ndarray]:
    """An allocation as a table (``.csv`` or ``.parquet``): columns ``name`` and
    ``tokens`` (others, such as a solve's ``accuracy``, are ignored)."""
    path = Path(path)
    where = f"allocation file {str(path)!r}"
    if not path.is_file():
        raise ScenarioError(f"{where} does not exist")

    def check(header: list[str], where: str) -> None:
        for col in ("name", "tokens"):
            if col not in header:
                raise ScenarioError(
                    f"{where}: missing column {col!r} (name, tokens: one row per task)"
                )

    cols = read_table(path, where, ("name",), check, usecols=("name", "tokens"))
    return {"name": cols["name"], "tokens": cols["tokens"]}


def table_fields(cols: dict[str, np.ndarray], where: str) -> dict[str, Any]:
    """The per-task keyword arguments of ``Scenario(...)`` from a table's columns.

    Missing optional columns and empty optional cells take their defaults; every
    check names the row (1 = the first task) and the column.
    """
    names = cols["name"]
    names = names.tolist() if isinstance(names, np.ndarray) else list(names)
    n = len(names)
    if n == 0:
        raise ScenarioError(f"{where} has no rows: add one row per task")
    if set(map(type, names)) != {str} or "" in names:  # (checked in bulk first)
        bad = [i for i, x in enumerate(names) if not isinstance(x, str) or not x]
        if bad:
            raise ScenarioError(f"{where}, row {bad[0] + 1}, column 'name': empty; name every task")
        names = list(map(str, names))
    out: dict[str, Any] = {"names": names}
    for col, field in _FIELDS.items():
        out[field] = _numbers(cols, col, n, where, COLUMNS[col])
    out["accuracy"] = _curves(cols, n, where)
    return out


def _numbers(cols, col: str, n: int, where: str, default: float | None) -> np.ndarray:
    """Column ``col`` as floats; empty cells take ``default`` or are an error."""
    if col not in cols:
        return np.full(n, default)
    x = np.asarray(cols[col], dtype=float)
    empty = np.isnan(x)
    if empty.any():
        if default is None:
            raise ScenarioError(
                f"{where}, row {np.flatnonzero(empty)[0] + 1}, column {col!r}: empty; give a number"
            )
        x = np.where(empty, default, x)
    return x


def _curves(cols, n: int, where: str) -> AccuracyCurves:
    """The accuracy curves, one family block per model named in ``accuracy.model``."""
    models = np.asarray(cols["accuracy.model"], dtype=object)
    known = np.zeros(n, dtype=bool)
    blocks = []
    for model, fam in FAMILIES.items():
        idx = np.flatnonzero(models == model)
        if not idx.size:
            continue
        known[idx] = True
        values = {}
        for key in fam.params:
            col = f"accuracy.{key}"
            if col not in cols and key not in fam.defaults:
                raise ScenarioError(
                    f"{where}: missing column {col!r}, which model {model!r} needs "
                    f"(row {idx[0] + 1})"
                )
            x = cols[col][idx] if col in cols else np.full(idx.size, np.nan)
            values[key] = _cells(x, fam.defaults.get(key), where, col, idx)
        _check_family(fam, values, where, idx)
        blocks.append((fam(**{fam.params[k]: v for k, v in values.items()}), idx))
    if not known.all():
        row = np.flatnonzero(~known)[0]
        raise ScenarioError(
            f"{where}, row {row + 1}, column 'accuracy.model': unknown model "
            f"{models[row]!r}; use one of " + ", ".join(f'"{m}"' for m in FAMILIES)
        )
    return AccuracyCurves(blocks, n)


def _cells(x, default, where: str, col: str, idx: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    empty = np.isnan(x)
    if empty.any():
        if default is None:
            row = idx[np.flatnonzero(empty)[0]] + 1
            raise ScenarioError(f"{where}, row {row}, column {col!r}: empty; give a number")
        x = np.where(empty, default, x)
    return x


def invalid_rows(values: dict[str, np.ndarray]) -> np.ndarray:
    """Where one family's parameter columns fail :meth:`AccuracyFamily.check`, screened
    over whole columns: the same rules (non-finite, ``scale <= 0``, ``ceiling > 1``,
    ``floor >= ceiling``, ``floor < 0``, ``exponent <= 0``, ``gain <= 0``), as a mask."""
    bad = np.zeros(len(values["scale"]), dtype=bool)
    for x in values.values():
        bad |= ~np.isfinite(x)
    bad |= values["scale"] <= 0
    if "ceiling" in values:
        bad |= (values["ceiling"] > 1) | (values["floor"] >= values["ceiling"])
    if "floor" in values:
        bad |= values["floor"] < 0
    for key in ("exponent", "gain"):
        if key in values:
            bad |= values[key] <= 0
    return bad


def _check_family(fam, values: dict[str, np.ndarray], where: str, idx: np.ndarray) -> None:
    """The family's own checks (:meth:`AccuracyFamily.check`) on the first row that fails
    the same rules screened over the whole column (:func:`invalid_rows`)."""
    bad = invalid_rows(values)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        fam.check(f"{where}, row {idx[j] + 1}", {k: float(v[j]) for k, v in values.items()})
        raise ScenarioError(f"{where}, row {idx[j] + 1}: invalid accuracy parameters")


def task_columns(scenario: Any) -> dict[str, np.ndarray]:
    """A scenario's tasks as the columns of a task table (:func:`table_fields` reads them
    back): one array per column, an accuracy parameter NaN (an empty cell) where the
    task's model does not take it, optional columns left out where every task holds
    the default. Tasks restricted to ``levels`` have no table form.

    Raises
    ------
    ScenarioError
        If a task has ``levels`` (a menu of budgets) or ``min_accuracy``: keep
        ``[[task]]`` tables.
    """
    sc = scenario
    menu = [i for i, lv in enumerate(sc.levels) if lv is not None]
    if menu:
        raise ScenarioError(
            f'task "{sc.names[menu[0]]}" has levels (a menu of budgets), which a task table '
            "does not hold; keep [[task]] tables, or give it a step instead"
        )
    mins = getattr(sc.constraints, "min_accuracy", None)
    if mins is not None and not np.all(np.isnan(mins)):
        i = int(np.flatnonzero(~np.isnan(mins))[0])
        raise ScenarioError(
            f'task "{sc.names[i]}" has min_accuracy, which a task table does not hold; '
            "keep [[task]] tables"
        )
    n = sc.n
    cols: dict[str, np.ndarray] = {"name": np.asarray(sc.names, dtype=object)}
    for col, field in _FIELDS.items():
        cols[col] = np.asarray(getattr(sc, field), dtype=float)
    models = np.empty(n, dtype=object)
    params: dict[str, np.ndarray] = {}
    for fam, idx in sc.accuracy.blocks:
        models[idx] = fam.name
        for key, attr in fam.params.items():
            col = params.setdefault(f"accuracy.{key}", np.full(n, np.nan))
            col[idx] = np.broadcast_to(getattr(fam, attr), (len(models[idx]),))
    cols["accuracy.model"] = models
    for col in COLUMNS:
        if col.startswith("accuracy.") and col in params:
            cols[col] = params[col]
    for col, default in COLUMNS.items():  # an optional column at its default: left out
        if default is not None and col in cols and _all_default(cols[col], default):
            del cols[col]
    return {col: cols[col] for col in COLUMNS if col in cols}


def _all_default(x: np.ndarray, default: float) -> bool:
    """Every entry is ``default`` bit for bit (so a column of -0.0 is kept)."""
    return bool(np.all(x.view(np.int64) == np.float64(default).view(np.int64)))


def write_task_table(path: str | Path, scenario: Any, what: str = "--output") -> Path:
    """Write a scenario's tasks as a task table (``.csv``, or ``.parquet`` with pyarrow)."""
    return write_table(path, task_columns(scenario), what)
