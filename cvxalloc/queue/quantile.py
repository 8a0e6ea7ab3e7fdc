"""Quantiles of a distribution known through its complement, its density and its atoms.

:func:`solve_quantiles` finds ``q_p = inf {x : P(T <= x) >= p}`` for several
``p`` at once: safeguarded Newton steps on ``P(T > x) - (1 - p)`` (one
vectorized evaluation per step for all ``p``), kept inside a bracket that
every evaluation narrows, with bisection when a step leaves it. A Newton step
that follows another and is below ``1e-5 x`` is the last (the next would be
of order ``1e-10 x``). Where the
distribution jumps (an atom at ``d``), the jump is tested directly: ``q_p = d``
when ``P(T > d) <= 1 - p < P(T > d) + P(T = d)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["solve_quantiles"]

#: Relative width of the bracket (or Newton step) at which a quantile is accepted.
RTOL = 1e-10
#: A second Newton step in a row below this (relative) is taken as the last one.
QUADRATIC = 1e-5
MAX_STEPS = 200


def solve_quantiles(
    evaluate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
    probs: np.ndarray,
    guess: np.ndarray,
    atoms: np.ndarray | None = None,
    jump: Callable[[np.ndarray], np.ndarray] | None = None,
    rtol: float = RTOL,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Quantiles ``q_p`` of ``T >= 0`` and an estimate of their absolute error.

    Parameters
    ----------
    evaluate : callable
        ``x -> (P(T > x), density, error of P(T > x))`` elementwise.
    probs : ndarray
        Levels ``p`` in ``(0, 1)``.
    guess : ndarray
        Starting points (``> 0``), one per level.
    atoms, jump : optional
        Sorted points where ``P(T = x) > 0`` and ``x -> P(T = x)``.
    rtol : float
        Relative accuracy of the returned points.

    Returns
    -------
    q : ndarray
    error : ndarray
        ``|error of P(T > q)| / density``: what the numerical error of the
        distribution leaves uncertain in ``q`` (0 at an atom).
    evaluations : int
        Calls of ``evaluate``.
    """
    probs = np.asarray(probs, dtype=float)
    tail = 1.0 - probs
    n = probs.size
    q = np.full(n, np.nan)
    err = np.zeros(n)
    calls = 1
    at0 = evaluate(np.zeros(1))[0][0]
    zero = at0 <= tail  # P(T > 0) <= 1 - p: the quantile is 0
    q[zero] = 0.0
    a = np.zeros(n)
    b = np.full(n, np.inf)
    x = np.maximum(np.asarray(guess, dtype=float), 1e-300)
    active = np.flatnonzero(~zero)
    newton = np.zeros(n, dtype=bool)  # the last move was a Newton step
    atoms = np.zeros(0) if atoms is None else np.asarray(atoms, dtype=float)
    for _ in range(MAX_STEPS):
        if active.size == 0:
            break
        xa = x[active]
        g, f, e = evaluate(xa)
        calls += 1
        g = g - tail[active]
        low = g > 0
        a[active] = np.where(low, xa, a[active])
        b[active] = np.where(low, b[active], xa)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(f > 0, g / f, np.inf)
            new = xa + step
        aa, bb = a[active], b[active]
        inside = np.isfinite(new) & (new > aa) & (new < bb)
        new = np.where(inside, new, _middle(aa, bb, xa))
        # Two Newton steps in a row, the second below QUADRATIC * x: the next one would be
        # below about rtol * x (quadratic convergence), so take this step and stop.
        small = np.abs(new - xa)
        done = (
            (small <= rtol * xa)
            | (np.isfinite(bb) & (bb - aa <= rtol * bb))
            | (inside & newton[active] & (small <= QUADRATIC * xa))
        )
        newton[active] = inside
        idx = active[done]
        q[idx] = np.where(inside[done], new[done], xa[done])
        with np.errstate(divide="ignore", invalid="ignore"):
            err[idx] = np.where(f[done] > 0, e[done] / f[done], 0.0)
        x[active] = new
        active = active[~done]
        if atoms.size and active.size and jump is not None:
            active = _atoms(evaluate, tail, atoms, jump, a, b, x, q, active)
            calls += 1
    if active.size:
        q[active] = 0.5 * (a[active] + b[active])
        err[active] = b[active] - a[active]
    return q, err, calls


def _atoms(evaluate, tail, atoms, jump, a, b, x, q, active) -> np.ndarray:
    """Test the atom nearest to each next point inside its bracket; returns the levels still open.

    At an atom ``d``: ``q = d`` if ``P(T > d) <= 1 - p < P(T > d) + P(T = d)``;
    else the bracket moves to ``d`` on the side the test says.
    """
    lo = np.searchsorted(atoms, a[active], side="right")
    hi = np.searchsorted(atoms, b[active], side="right")  # atoms in (a, b]
    has = hi > lo
    if not has.any():
        return active
    idx = active[has]
    pos = np.clip(np.searchsorted(atoms, x[idx]), lo[has], hi[has] - 1)
    near = atoms[pos]
    g = evaluate(near)[0] - tail[idx]
    before = g + jump(near)
    hit = (g <= 0) & (before > 0)
    q[idx[hit]] = near[hit]
    right = g > 0  # still above the target at d: the quantile is beyond
    a[idx] = np.where(right, near, a[idx])
    b[idx] = np.where(~right & ~hit, near, b[idx])
    xi, ai, bi = x[idx], a[idx], b[idx]
    x[idx] = np.where((xi > ai) & (xi < bi), xi, _middle(ai, bi, xi))
    return np.setdiff1d(active, idx[hit], assume_unique=True)


def _middle(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A point inside ``(a, b)``: the midpoint, or beyond ``a`` when ``b`` is still infinite."""
    return np.where(np.isfinite(b), 0.5 * (a + b), np.maximum(2.0 * np.maximum(a, x), 1e-300))
