"""Projected Newton polishing of a near-optimal allocation.

Interior-point solvers return points whose objective is right to ~1e-9 but
whose Frank-Wolfe gap is only ~1e-5 of ``|U|`` (flat directions of wide
boxes). A few projected Newton steps on the first-order conditions fix that.

The Hessian of ``U`` is ``-(diag(d) + V M V^T)`` with a rank-2 ``V M V^T``
(see :meth:`cvxalloc.objective.Objective.hessian_parts`), so a Newton step on
the free variables costs O(N) through a 2x2 Woodbury solve. Variables at a
bound whose gradient points out of the box are held fixed (Bertsekas'
projected Newton). Steps are safeguarded: projected onto the box, kept stable,
and accepted only when they do not lower ``U`` beyond rounding and improve
either ``U`` or the certified gap. The best point seen is returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .certificate import certificate_box, frank_wolfe_gap, relative_scale
from .objective import Objective

__all__ = ["newton_direction", "polish", "PolishInfo"]


@dataclass(frozen=True)
class PolishInfo:
    """What polishing did: Newton steps taken and the gap before and after."""

    steps: int
    gap_before: float
    gap_after: float


def newton_direction(
    d: np.ndarray, V: np.ndarray, M: np.ndarray, g: np.ndarray, free: np.ndarray
) -> np.ndarray:
    """Solve ``(diag(d) + V M V^T) x = g`` on the ``free`` coordinates (0 elsewhere).

    Uses ``x = D^{-1}(g - V z)`` with ``(I + M V^T D^{-1} V) z = M V^T D^{-1} g``,
    which needs no inverse of ``M`` (so ``gamma = 0`` or ``lam = 0`` are fine).
    """
    x = np.zeros_like(g)
    if not free.any():
        return x
    df, Vf, gf = d[free], V[free], g[free]
    Dg = gf / df
    DV = Vf / df[:, None]
    lhs = np.eye(2) + M @ (Vf.T @ DV)
    rhs = M @ (Vf.T @ Dg)
    try:
        z = np.linalg.solve(lhs, rhs)
    except np.linalg.LinAlgError:
        z = np.zeros(2)
    x[free] = Dg - DV @ z
    return x


def polish(
    scenario,
    tokens: np.ndarray,
    rtol: float = 1e-10,
    max_steps: int = 50,
    objective: Objective | None = None,
) -> tuple[np.ndarray, PolishInfo]:
    """Improve ``tokens`` by safeguarded projected Newton steps.

    Parameters
    ----------
    scenario : Scenario
    tokens : ndarray
        Starting allocation (clipped into the box; must be stable).
    rtol : float
        Stop once the Frank-Wolfe gap is within ``rtol * |U|``.
    max_steps : int
        Newton steps at most.
    objective : Objective, optional
        Reuse an already built objective.

    Returns
    -------
    tokens : ndarray
        The best point seen (never worse than the start beyond rounding).
    info : PolishInfo
    """
    obj = objective or Objective(scenario)
    # the certificate's box: clipped to where stable points lie
    lo, hi = certificate_box(scenario)
    width = hi - lo
    t = np.clip(np.asarray(tokens, dtype=float), lo, hi)
    U = obj.value(t)
    if not np.isfinite(U):
        return t, PolishInfo(0, np.inf, np.inf)
    g = obj.gradient(t)
    gap = frank_wolfe_gap(g, t, lo, hi)
    gap0 = gap
    steps = 0
    eps_bound = 1e-9 * width
    for _ in range(max_steps):
        if gap <= rtol * relative_scale(U):
            break
        at_lo = (t - lo <= eps_bound) & (g <= 0)
        at_hi = (hi - t <= eps_bound) & (g >= 0)
        free = ~(at_lo | at_hi) & (width > 0)
        d, V, M = obj.hessian_parts(t)
        step = newton_direction(d, V, M, g, free)
        alpha = 1.0
        accepted = False
        slack = 8 * np.finfo(float).eps * relative_scale(U)
        for _ in range(40):
            cand = np.clip(t + alpha * step, lo, hi)
            Uc = obj.value(cand)
            if np.isfinite(Uc) and Uc >= U - slack:
                gc = obj.gradient(cand)
                gapc = frank_wolfe_gap(gc, cand, lo, hi)
                if Uc > U or gapc < gap:
                    t, U, g, gap = cand, Uc, gc, gapc
                    accepted = True
                    break
            alpha *= 0.5
        if not accepted:
            break
        steps += 1
    return t, PolishInfo(steps, gap0, gap)
