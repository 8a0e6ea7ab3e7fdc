"""Reprs of the fit results that are source: ``eval`` gives the result back.

A result's repr names its class and writes every field with
:func:`cvxalloc._source.source` (floats exact, ``float('nan')``), arrays as
``np.array([...])`` (with their dtype when a list would not give it back),
nested results by their own reprs. Evaluate it with numpy as ``np`` and the
classes of :mod:`cvxalloc.fit` in scope (plus
:class:`~cvxalloc.scenario.Scenario` for a calibration's scenario and
:class:`~cvxalloc.queue.CapacityCurve` for a capacity fit). Arrays of more
than :data:`~cvxalloc._source.REPR_MAX` entries are summarized, as everywhere.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np

from .._source import REPR_MAX, source

__all__ = ["fields_source", "value_source"]


def value_source(value: Any) -> str:
    """One field as source: an array as ``np.array([...])``, anything else by :func:`source`.

    >>> value_source(np.array([1.0, 2.5])), value_source(np.array([2, 3], dtype=np.int32))
    ('np.array([1.0, 2.5])', "np.array([2, 3], dtype='int32')")
    """
    if not isinstance(value, np.ndarray):
        return source(value)
    if value.size > REPR_MAX:
        return source(value)
    listed = value.tolist()
    dtype = "" if np.array(listed).dtype == value.dtype else f", dtype={value.dtype.name!r}"
    return f"np.array({source(listed)}{dtype})"


def fields_source(obj: Any) -> str:
    """``Class(field=value, ...)`` for a dataclass instance, every field as source."""
    args = ", ".join(f"{f.name}={value_source(getattr(obj, f.name))}" for f in fields(obj))
    return f"{type(obj).__name__}({args})"
