"""Inner products that multi-threaded BLAS cannot slow down.

Layer: parts.

Under load, a threaded BLAS ``ddot`` costs about 10 ms for any vector longer
than ~2x10^4 (measured here: 9.5 ms at N = 10^6 against 0.23 ms for numpy's
own loop), and the aggregate solver takes a few dozen per solve. ``einsum``
without ``optimize`` runs numpy's single-threaded SIMD loop: one pass, no
temporary, no thread pool.
"""

from __future__ import annotations

import numpy as np

__all__ = ["dot"]


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """``sum_i a_i b_i`` of two vectors, as a float.

    >>> dot(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    11.0
    """
    return float(np.einsum("i,i->", a, b))
