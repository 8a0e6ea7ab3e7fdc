"""Python source for values in reprs: ``eval`` of the text gives the value back.

Layer: parts.

The reprs of the public data classes (accuracy families and curves,
certificates, results) are built from these, so a failing test's output can be
pasted back to rebuild its case.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np

__all__ = ["REPR_MAX", "source", "array_source", "value_source", "fields_source"]

#: Arrays longer than this are summarized (not valid source) instead of written out.
REPR_MAX = 100


def source(value: Any) -> str:
    """``value`` as Python source that evaluates back to it (numpy values as Python ones).

    Floats keep every bit (``repr``); non-finite ones read ``float('inf')``;
    arrays become lists (summarized beyond :data:`REPR_MAX` entries); dicts,
    lists and tuples are converted entry by entry.

    >>> source({"gap": np.float64(1e-3), "steps": np.array([1, 2]), "bound": np.inf})
    "{'gap': 0.001, 'steps': [1, 2], 'bound': float('inf')}"
    """
    if isinstance(value, dict):
        return "{" + ", ".join(f"{source(k)}: {source(v)}" for k, v in value.items()) + "}"
    if isinstance(value, np.ndarray):
        return _summary(value) if value.size > REPR_MAX else source(value.tolist())
    if isinstance(value, list):
        return "[" + ", ".join(source(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(source(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, (bool, np.bool_)):
        return repr(bool(value))
    if isinstance(value, (int, np.integer)):
        return repr(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return repr(v) if np.isfinite(v) else f"float({str(v)!r})"
    if isinstance(value, np.str_):
        return repr(str(value))
    return repr(value)


def array_source(x: Any) -> str:
    """A parameter array as source: a scalar when it has one float entry, else a list.

    >>> array_source(np.array([0.5])), array_source(np.array([1.0, 2.5])), array_source([0, 3])
    ('0.5', '[1.0, 2.5]', '[0, 3]')
    """
    x = np.asarray(x)
    if x.size == 1 and x.dtype.kind == "f":  # a broadcast parameter
        return source(float(x.flat[0]))
    return source(x.ravel())


def value_source(value: Any) -> str:
    """:func:`source`, but an array (also inside a dict) reads ``np.array([...])``.

    Its dtype is written where the listed values would not give it back; beyond
    :data:`REPR_MAX` entries the array is summarized (not valid source).

    >>> value_source(np.array([1.0, 2.5])), value_source(np.array([2, 3], dtype=np.int32))
    ('np.array([1.0, 2.5])', "np.array([2, 3], dtype='int32')")
    >>> value_source({"edges": np.array([0.0, 1.0]), "n": 2})
    "{'edges': np.array([0.0, 1.0]), 'n': 2}"
    """
    if isinstance(value, dict):
        return "{" + ", ".join(f"{source(k)}: {value_source(v)}" for k, v in value.items()) + "}"
    if not isinstance(value, np.ndarray) or value.size > REPR_MAX:
        return source(value)
    listed = value.tolist()
    dtype = "" if np.array(listed).dtype == value.dtype else f", dtype={value.dtype.name!r}"
    return f"np.array({source(listed)}{dtype})"


def fields_source(obj: Any) -> str:
    """``Class(field=value, ...)`` of a dataclass instance, its fields as source.

    The fields its constructor takes, but private ones (``_name``: caches). The
    reprs of the package's data classes are this, so ``eval`` of one (with
    ``np`` and the class in scope) rebuilds the object.
    """
    args = ", ".join(
        f"{f.name}={value_source(getattr(obj, f.name))}"
        for f in fields(obj)
        if f.init and not f.name.startswith("_")
    )
    return f"{type(obj).__name__}({args})"


def _summary(x: np.ndarray) -> str:
    if x.dtype.kind in "biuf" and x.size:
        return f"<{x.size} values in [{x.min():g}, {x.max():g}]>"
    return f"<{x.size} values>"
