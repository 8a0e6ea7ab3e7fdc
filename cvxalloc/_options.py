"""Validation of solver options: one clear :class:`~cvxalloc.errors.OptionError` each.

Layer: parts.

Every solver checks its keyword options with these at entry, so a bad value
(from Python or from ``--option KEY=VALUE`` on the command line) gives one
message that names the option and says what it must be, and the CLI turns it
into one line and exit code 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .errors import OptionError

__all__ = ["positive", "nonnegative", "count", "flag", "choice", "mapping"]


def _real(name: str, value: Any, what: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise OptionError(f"option {name} must be {what} (got {value!r})")
    return float(value)


def positive(name: str, value: Any) -> float:
    """``value`` as a finite float > 0."""
    x = _real(name, value, "a positive number")
    if not (math.isfinite(x) and x > 0):
        raise OptionError(f"option {name} must be a positive number (got {value!r})")
    return x


def nonnegative(name: str, value: Any) -> float:
    """``value`` as a finite float >= 0."""
    x = _real(name, value, "a non-negative number")
    if not (math.isfinite(x) and x >= 0):
        raise OptionError(f"option {name} must be a non-negative number (got {value!r})")
    return x


def count(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum`` (integral floats such as ``1e4`` accepted)."""
    what = f"an integer >= {minimum}"
    x = _real(name, value, what)
    if not (math.isfinite(x) and x == int(x) and x >= minimum):
        raise OptionError(f"option {name} must be {what} (got {value!r})")
    return int(x)


def flag(name: str, value: Any) -> bool:
    """``value`` as a bool (only ``True``/``False``)."""
    if not isinstance(value, (bool, np.bool_)):
        raise OptionError(f"option {name} must be true or false (got {value!r})")
    return bool(value)


def choice(name: str, value: Any, options: Iterable[Any]) -> Any:
    """``value`` if it is one of ``options``."""
    options = list(options)
    if value not in options:
        shown = ", ".join(repr(o) for o in options)
        raise OptionError(f"option {name} must be one of {shown} (got {value!r})")
    return value


def mapping(name: str, value: Any) -> dict[str, Any]:
    """``value`` as a dict (``None`` gives an empty one)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise OptionError(
            f"option {name} must be a table of settings, e.g. "
            f"'{{\"max_iter\": 50}}' (got {value!r})"
        )
    return dict(value)
