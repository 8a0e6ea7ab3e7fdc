"""Root finding for the model and the solvers, with SciPy's optimizer loaded on first use.

Layer: parts.

``import scipy.optimize`` costs about 0.1 s (it pulls in linprog, the sparse
linear algebra and more); the paths that need a bracketing root finder are
fallbacks and bounds, not the everyday solve, so the import waits until one runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["brentq"]


def brentq(f: Callable[[float], float], a: float, b: float, **options: Any) -> float:
    """:func:`scipy.optimize.brentq` (same arguments, same result), imported when first called."""
    from scipy.optimize import brentq as _brentq  # heavy import, deferred (see module docstring)

    return _brentq(f, a, b, **options)
