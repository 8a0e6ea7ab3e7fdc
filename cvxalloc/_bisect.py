"""One bisection for every monotone search in cvxalloc (beside :mod:`cvxalloc._roots`).

Layer: parts.

:func:`bisect` narrows a bracket ``[good, bad]`` of a monotone predicate, on the
reals or on integer indices, and returns both ends, so each caller keeps the
side its guarantee needs (the feasible side of a cap, the last index where a
function is still positive); :func:`bisect_each` does the same for many real
brackets at once. Where a plain root of a continuous function is wanted, the
solvers use :func:`cvxalloc._roots.brentq` (SciPy's) instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

__all__ = ["bisect", "bisect_each", "midpoint", "integer_midpoint"]

T = TypeVar("T", float, int)


def midpoint(a: float, b: float) -> float:
    """``(a + b) / 2`` for real brackets."""
    return 0.5 * (a + b)


def integer_midpoint(a: int, b: int) -> int:
    """``(a + b) // 2`` for brackets of indices."""
    return (a + b) // 2


def bisect(
    holds: Callable[[T], bool],
    good: T,
    bad: T,
    *,
    max_iter: int = 200,
    mid: Callable[[T, T], T] = midpoint,
) -> tuple[T, T]:
    """Narrow ``[good, bad]`` where ``holds(good)`` and not ``holds(bad)``.

    ``holds`` must be monotone along the bracket (true up to some point, false
    after it, in either direction: ``good`` may be above ``bad``). Neither end
    is evaluated. Each step evaluates ``holds`` at ``mid(good, bad)`` and moves
    the matching end; it stops after ``max_iter`` steps or when the midpoint
    equals an end (adjacent floats or indices), which changes nothing that
    further steps would.

    Returns
    -------
    (good, bad) : tuple
        The last point where ``holds`` was true and the first where it was false.

    Examples
    --------
    >>> good, bad = bisect(lambda x: x * x <= 2.0, 1.0, 2.0)
    >>> good * good <= 2.0 < bad * bad, bad - good <= 2.3e-16
    (True, True)

    Indices: the last ``i`` with ``values[i] > 0`` (``-1`` stands for "before
    the first"):

    >>> values = [5, 3, 1, -2, -4]
    >>> bisect(lambda i: values[i] > 0, -1, len(values) - 1, mid=integer_midpoint)
    (2, 3)
    """
    for _ in range(max_iter):
        m = mid(good, bad)
        if m == good or m == bad:
            break
        if holds(m):
            good = m
        else:
            bad = m
    return good, bad


def bisect_each(
    holds: Callable[[np.ndarray], np.ndarray], good: np.ndarray, bad: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bisect` on many real brackets at once (``holds`` is elementwise).

    Each ``[good_i, bad_i]`` is narrowed until its ends are adjacent floats;
    one call of ``holds`` per step serves every bracket still open.

    >>> import numpy as np
    >>> good, bad = bisect_each(lambda x: x * x <= np.array([2.0, 3.0]), np.ones(2), 2 * np.ones(2))
    >>> bool(np.all(good * good <= [2.0, 3.0])), bool(np.all(bad * bad > [2.0, 3.0]))
    (True, True)
    """
    good, bad = np.array(good, dtype=float), np.array(bad, dtype=float)
    for _ in range(2100):  # enough for any pair of floats
        m = 0.5 * (good + bad)
        done = (m == good) | (m == bad)
        if done.all():
            break
        ok = holds(m)
        good = np.where(~done & ok, m, good)
        bad = np.where(~done & ~ok, m, bad)
    return good, bad
