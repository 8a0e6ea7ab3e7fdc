"""Numerical inversion of Laplace transforms: the Euler algorithm of Abate and Whitt.

For a function ``f`` on ``[0, inf)`` with Laplace transform ``F(z)``, the
Bromwich integral on the line ``Re z = A / (2 x)`` discretized by the
trapezoidal rule with step ``pi / x`` gives (Abate and Whitt, "Numerical
inversion of Laplace transforms of probability distributions", ORSA J.
Computing 7, 1995)::

    f(x) ~ e^{A/2} / x * [ Re F(A / 2x) / 2 + sum_{k>=1} (-1)^k Re F((A + 2 pi i k) / 2x) ]

with a discretization error ``sum_{j>=1} e^{-jA} f((2j + 1) x)``: at most
``e^{-A} / (1 - e^{-A})`` for ``|f| <= 1`` (a distribution function or its
complement). The series is summed by Euler's binomial averaging of the
partial sums ``s_n .. s_{n+m}``, which converges fast when the terms end up
alternating (functions smooth on ``(0, inf)``), more slowly where the
function has kinks. :func:`invert` takes ``m = 11`` and ``n = 8, 16, 32, ...``
(28 transform evaluations per point for the first two), the change from one
``n`` to the next as the error estimate, and doubles ``n`` where that change is
above the tolerance, reusing the transform values it has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import comb, exp, log

import numpy as np

__all__ = ["A", "DISCRETIZATION_ERROR", "Inverted", "invert", "nodes"]

#: The contour's abscissa times ``2 x``: discretization error ``e^{-A}`` = 1e-9 on a
#: function bounded by 1; round-off is multiplied by ``e^{A/2}`` ~ 3e4.
A = 9.0 * log(10.0)
#: Bound of the discretization error for a function bounded by 1 in absolute value.
DISCRETIZATION_ERROR = exp(-A) / (1.0 - exp(-A))
#: Euler averaging of ``M + 1`` partial sums.
M = 11
#: Number of terms before averaging: the first (whose sum only serves the error estimate)
#: and the largest.
N_START, N_MAX = 8, 1024


def nodes(x: np.ndarray, k0: int, k1: int) -> np.ndarray:
    """Points ``(A + 2 pi i k) / (2 x)``, ``k0 <= k < k1``: shape ``(len(x), k1 - k0)``."""
    k = np.arange(k0, k1)
    return (A + 2j * np.pi * k)[None, :] / (2.0 * np.asarray(x, dtype=float)[:, None])


@dataclass
class Inverted:
    """Values of the inverted functions at the points, with an error estimate.

    Attributes
    ----------
    values : ndarray, shape (F, len(x))
        One row per function the transform returned.
    error : ndarray, shape (F, len(x))
        Estimated absolute error (truncation estimate plus the discretization bound).
    terms : int
        The largest ``n`` used.
    """

    values: np.ndarray
    error: np.ndarray
    terms: int


def _euler(x: np.ndarray, vals: np.ndarray, n: int) -> np.ndarray:
    """Euler sums with ``n`` terms from transform values ``(F, len(x), >= n + M + 1)``."""
    k = np.arange(n + M + 1)
    terms = np.where(k % 2 == 0, 1.0, -1.0) * vals[..., : n + M + 1].real
    terms[..., 0] *= 0.5
    partial = np.cumsum(terms, axis=-1)
    w = np.array([comb(M, j) for j in range(M + 1)], dtype=float) / 2.0**M
    return (partial[..., n : n + M + 1] @ w) * (exp(A / 2.0) / x)


def invert(
    transform: Callable[[np.ndarray], np.ndarray],
    x,
    tol: float = 1e-9,
    bound: float = 1.0,
) -> Inverted:
    """Invert the Laplace transform(s) ``transform`` at the points ``x > 0``.

    Parameters
    ----------
    transform : callable
        ``transform(z)`` for complex ``z`` of shape ``(P, K)`` returns the
        transforms of ``F`` functions at those points, shape ``(F, P, K)``.
    x : array_like
        Points (``> 0``).
    tol : float
        Target absolute error of the first function.
    bound : float
        A bound on the absolute value of the first function (for the
        discretization error).

    Returns
    -------
    Inverted
        The error estimate is the change from the Euler sum with half as many
        terms (plus the discretization bound): ``n`` doubles from 8 (up to
        960) at the points where that change is above ``tol``. Where the
        terms converge geometrically (smooth functions) or as a power of
        ``n`` (kinks), the change bounds the error of the smaller sum, hence
        of the larger.
    """
    x = np.atleast_1d(np.asarray(x, dtype=float))
    n = N_START
    vals = np.asarray(transform(nodes(x, 0, 2 * n + M + 1)))
    before = _euler(x, vals, n)
    out = _euler(x, vals, 2 * n)
    err = np.abs(out - before)
    n *= 2
    todo = np.flatnonzero(err[0] > tol)
    vals = vals[:, todo]
    while todo.size and n < N_MAX:
        n2 = min(2 * n, N_MAX)
        sub = x[todo]
        more = np.asarray(transform(nodes(sub, n + M + 1, n2 + M + 1)))
        vals = np.concatenate([vals, more], axis=-1)
        o2 = _euler(sub, vals, n2)
        e2 = np.abs(o2 - out[:, todo])
        out[:, todo], err[:, todo] = o2, e2
        keep = e2[0] > tol
        todo, vals, n = todo[keep], vals[:, keep], n2
    return Inverted(out, err + DISCRETIZATION_ERROR * bound, n)
