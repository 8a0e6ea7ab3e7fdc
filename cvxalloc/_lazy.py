"""Modules loaded on first use: :data:`special` is :mod:`scipy.special`, imported when read.

Layer: parts.

``from scipy import special`` costs about 0.1 s of every ``import cvxalloc`` (it
pulls in SciPy's array-API layer, and with it ``numpy.f2py``), while the paths
that need it (gamma quantiles for simulated service times and percentiles,
Student-t and normal quantiles for intervals, the routers' Erlang formulas) run
after start-up, if at all. A module writes ``from ._lazy import special`` and
uses ``special.ndtri(...)`` as before; the first attribute read imports SciPy.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["LazyModule", "special"]


class LazyModule:
    """A stand-in for module ``name`` that imports it the first time an attribute is read.

    Examples
    --------
    >>> math_ = LazyModule("math")
    >>> math_.sqrt(4.0)
    2.0
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded yet"
        return f"<lazy module {self._name!r} ({state})>"


#: :mod:`scipy.special`, imported on first use.
special = LazyModule("scipy.special")
