"""Writing what a command produces, in the format its file name asks for.

Layer: parts.

One place decides what a file name means (:data:`FORMATS`): ``.json`` is JSON,
``.toml`` TOML, ``.txt`` the text a command prints, ``.csv`` and ``.parquet`` a
table (one row per task). The writers here are built for 10^6 task types: per-task
values travel as columns (:class:`PerTask`, a table's ``dict`` of arrays) and are
formatted in bulk, never as one Python dict per task; every float keeps all its
bits (``repr``, so reading the file gives the same double back).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

import numpy as np

from ._files import write_atomic, write_text
from .errors import ScenarioError

__all__ = [
    "FORMATS",
    "PerTask",
    "output_format",
    "float_texts",
    "json_text",
    "toml_text",
    "toml_string",
    "csv_text",
    "write_table",
]

#: File extension -> the format written.
FORMATS = {
    ".json": "json",
    ".toml": "toml",
    ".txt": "text",
    ".csv": "csv",
    ".parquet": "parquet",
    ".png": "png",
}
#: Above this many values a float column is checked for repeats (each distinct value is
#: then formatted once: constant columns and few-valued ones cost a sort, not N reprs).
_DEDUP_MIN = 4096
#: A TOML bare key.
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def output_format(path: str | Path) -> str | None:
    """The format :data:`FORMATS` gives the extension of ``path`` (None: not one of them)."""
    return FORMATS.get(Path(path).suffix.lower())


class PerTask(Mapping):
    """Per-task values keyed by task name, held as columns.

    ``values`` is one array (task name -> number) or a dict of arrays (task name ->
    ``{field: number}``). Reading it as a mapping builds the entries one by one; the
    writers of this module (:func:`json_text`, :func:`csv_text`) format the columns
    in bulk instead.
    """

    def __init__(self, names: Sequence[str], values: np.ndarray | Mapping[str, np.ndarray]):
        self.names = names
        self.values = values
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __getitem__(self, name: str) -> Any:
        if self._index is None:
            self._index = {n: i for i, n in enumerate(self.names)}
        i = self._index[name]
        if isinstance(self.values, Mapping):
            return {k: _scalar(v[i]) for k, v in self.values.items()}
        return _scalar(self.values[i])

    def to_dict(self) -> dict[str, Any]:
        """The entries as a plain dict (one Python object per task)."""
        if isinstance(self.values, Mapping):
            cols = {k: np.asarray(v).tolist() for k, v in self.values.items()}
            return {
                n: {k: _finite(c[i]) for k, c in cols.items()} for i, n in enumerate(self.names)
            }
        return dict(zip(self.names, map(_finite, np.asarray(self.values).tolist())))

    def json(self, indent: int) -> str:
        """JSON text of the object, its entries at ``indent + 2`` spaces (as
        ``json.dumps(..., indent=2)`` lays them out)."""
        if not len(self.names):
            return "{}"
        pad, inner = " " * (indent + 2), " " * (indent + 4)
        keys = list(map(encode_basestring_ascii, self.names))
        if isinstance(self.values, Mapping):
            fields = list(self.values)
            texts = [_json_values(self.values[k]) for k in fields]
            row = (
                pad + "%s: {\n"
                + ",\n".join(inner + encode_basestring_ascii(k) + ": %s" for k in fields)
                + "\n" + pad + "}"
            )  # fmt: skip
            body = ",\n".join(map(row.__mod__, zip(keys, *texts)))
        else:
            row = pad + "%s: %s"
            body = ",\n".join(map(row.__mod__, zip(keys, _json_values(self.values))))
        return "{\n" + body + "\n" + " " * indent + "}"


def _scalar(x: Any) -> Any:
    return _finite(x.item() if isinstance(x, np.generic) else x)


def _finite(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def float_texts(x: np.ndarray, nonfinite: Mapping[str, str] | None = None) -> list[str]:
    """``repr`` of every entry of ``x`` (exact: ``float(text)`` gives the double back).

    ``nonfinite`` replaces the texts ``"nan"``, ``"inf"`` and ``"-inf"`` (e.g. by an
    empty cell or ``null``). A long column with repeated values formats each distinct
    value once (bit patterns compared, so ``-0.0`` stays itself).
    """
    x = np.ascontiguousarray(x, dtype=float).ravel()
    n = x.size
    texts: list[str]
    if n > _DEDUP_MIN:
        bits = x.view(np.int64)
        sample = bits[:: n // 1024]
        if np.unique(sample).size <= sample.size // 2:
            distinct, inverse = np.unique(bits, return_inverse=True)
            uniq = np.array(list(map(repr, distinct.view(float).tolist())), dtype=object)
            texts = uniq[inverse].tolist()
            return _replace_nonfinite(texts, x, nonfinite)
    texts = list(map(repr, x.tolist()))
    return _replace_nonfinite(texts, x, nonfinite)


def _replace_nonfinite(texts: list[str], x: np.ndarray, nonfinite) -> list[str]:
    if nonfinite is None:
        return texts
    bad = np.flatnonzero(~np.isfinite(x))
    for i in bad.tolist():
        texts[i] = nonfinite.get(texts[i], texts[i])
    return texts


_JSON_NONFINITE = {"nan": "null", "inf": "null", "-inf": "null"}


def _column_texts(x: Any, strings: Callable[[list[str]], list[str]], nonfinite) -> list[str]:
    """Texts of a column's values: booleans ``true``/``false``, integers, ``strings`` of
    its text values, exact floats (``nonfinite`` maps ``nan``, ``inf``, ``-inf``)."""
    x = np.asarray(x)
    if x.dtype == bool:
        return ["true" if v else "false" for v in x.tolist()]
    if x.dtype.kind in "iu":
        return list(map(str, x.tolist()))
    if x.dtype.kind in "OUS":
        return strings([str(v) for v in x.tolist()])
    return float_texts(x, nonfinite)


def _json_values(x: Any) -> list[str]:
    """JSON texts of a column: numbers (non-finite as null), booleans, strings."""
    return _column_texts(x, lambda t: list(map(encode_basestring_ascii, t)), _JSON_NONFINITE)


# --- JSON -----------------------------------------------------------------------------
def json_text(obj: Any) -> str:
    """JSON text (indent 2, no NaN), :class:`PerTask` entries formatted in bulk."""
    bulk: dict[str, PerTask] = {}

    def swap(o: Any) -> Any:
        if isinstance(o, PerTask):
            key = f"\x00{len(bulk)}\x00"
            bulk[key] = o
            return key
        if isinstance(o, Mapping):
            return {k: swap(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [swap(v) for v in o]
        return o

    text = json.dumps(swap(obj), indent=2, allow_nan=False)
    if not bulk:
        return text
    parts = []
    pos = 0
    for key, per_task in bulk.items():
        token = json.dumps(key)
        at = text.index(token, pos)
        line = text.rfind("\n", 0, at) + 1
        indent = len(text[line:at]) - len(text[line:at].lstrip(" "))
        parts += [text[pos:at], per_task.json(indent)]
        pos = at + len(token)
    parts.append(text[pos:])
    return "".join(parts)


# --- TOML -----------------------------------------------------------------------------
def toml_text(obj: Mapping[str, Any]) -> str:
    """TOML text of a nested dict: plain keys first, then tables, then arrays of tables.

    TOML has no null: a key whose value is None is left out, and a None inside a
    list is written ``nan``. Floats keep every bit (``repr``; ``nan``, ``inf``).
    """
    lines: list[str] = []
    _toml_table(lines, (), _plain(obj), header=None)
    return "\n".join(lines).lstrip("\n") + "\n"


def _plain(o: Any) -> Any:
    if isinstance(o, PerTask):
        return o.to_dict()
    if isinstance(o, Mapping):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple, np.ndarray)):
        return [_plain(v) for v in (o.tolist() if isinstance(o, np.ndarray) else o)]
    if isinstance(o, np.generic):
        return o.item()
    return o


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _toml_table(lines: list[str], path: tuple[str, ...], table: Mapping, header: str | None):
    if header is not None:
        lines += ["", header]
    subs = []
    for k, v in table.items():
        if v is None:
            continue
        if isinstance(v, Mapping) or _is_table_array(v):
            subs.append((k, v))
        else:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in subs:
        sub = (*path, _toml_key(k))
        if isinstance(v, Mapping):
            _toml_table(lines, sub, v, f"[{'.'.join(sub)}]")
        else:
            for item in v:
                _toml_table(lines, sub, item, f"[[{'.'.join(sub)}]]")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def toml_string(s: str) -> str:
    """A TOML basic string (JSON's escapes, the code points TOML forbids raw escaped)."""
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(v: Any) -> str:
    if v is None:
        return "nan"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


# --- tables ---------------------------------------------------------------------------
_CSV_NONFINITE = {"nan": ""}
_NEEDS_QUOTES = re.compile(r'[",\r\n]')


def _cell_texts(x: Any) -> list[str]:
    """CSV cells of a column: numbers exact (NaN an empty cell), text quoted where needed."""
    return _column_texts(x, _quoted_where_needed, _CSV_NONFINITE)


def _quoted_where_needed(texts: list[str]) -> list[str]:
    """The texts, each quoted if any needs it (one search over all of them)."""
    if _NEEDS_QUOTES.search("\x1f".join(texts)):
        return [_quote(s) for s in texts]
    return texts


def _quote(s: str) -> str:
    return '"' + s.replace('"', '""') + '"' if _NEEDS_QUOTES.search(s) else s


def csv_text(columns: Mapping[str, Any]) -> str:
    """CSV text of equal-length columns: a header, then one line per row."""
    header = ",".join(_quote(c) for c in columns)
    cells = [_cell_texts(v) for v in columns.values()]
    return header + "\n" + "\n".join(map(",".join, zip(*cells))) + "\n"


def write_table(path: str | Path, columns: Mapping[str, Any], what: str = "--output") -> Path:
    """Write equal-length columns as ``.csv`` or ``.parquet`` (pyarrow), all or nothing."""
    fmt = output_format(path)
    if fmt == "csv":
        write = _arrow_csv(columns)
        if write is None:
            return write_text(path, csv_text(columns), what)
        return write_atomic(path, write, what)
    if fmt != "parquet":
        raise ScenarioError(f"{what} {str(path)!r}: a table is written as .csv or .parquet")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ScenarioError(
            f"{what} {str(path)!r}: writing Parquet needs pyarrow (pip install pyarrow); "
            "or name the file .csv"
        ) from None
    table = pa.table({k: _arrow_column(pa, v) for k, v in columns.items()})
    return write_atomic(path, lambda tmp: pq.write_table(table, tmp), what)


def _arrow_csv(columns: Mapping[str, Any]):
    """A writer of the CSV by pyarrow (C++, about 3x faster than ``repr`` at 10^6 rows;
    shortest round-trip floats, e.g. ``1`` for 1.0), or None without pyarrow. The
    header is :func:`csv_text`'s; text cells are quoted only where one needs it."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        return None
    text = [np.asarray(v, dtype=object).tolist() for v in columns.values()
            if np.asarray(v).dtype.kind in "OUS"]  # fmt: skip
    quote = any(_NEEDS_QUOTES.search("\x1f".join(map(str, t))) for t in text)
    table = pa.table({k: _arrow_column(pa, v) for k, v in columns.items()})
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed" if quote else "none")
    header = (",".join(_quote(c) for c in columns) + "\n").encode()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(header)
            pacsv.write_csv(table, fh, write_options=options)

    return write


def _arrow_column(pa, x: Any):
    x = np.asarray(x)
    if x.dtype.kind in "OUS":
        return pa.array([str(v) for v in x.tolist()], type=pa.string())
    if x.dtype.kind == "f":  # NaN is an empty cell, as in CSV
        return pa.array(x, mask=np.isnan(x))
    return pa.array(x)
