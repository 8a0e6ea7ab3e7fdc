"""Projected Newton polishing of a near-optimal allocation.

Layer: numerics.

Interior-point solvers return points whose objective is right to ~1e-9 but
whose Frank-Wolfe gap is only ~1e-5 of ``|U|`` (flat directions of wide
boxes). A few projected Newton steps on the first-order conditions fix that.

The Hessian of ``U`` is ``-(diag(d) + V M V^T)`` with a rank-2 ``V M V^T``
(see :meth:`cvxalloc.objective.Objective.hessian_parts`), so a Newton step on
the free variables costs O(N) through a 2x2 Woodbury solve. Variables at a
bound whose gradient points out of the box are held fixed (Bertsekas'
projected Newton). Steps are safeguarded: projected onto the box, kept stable,
and accepted only when they do not lower ``U`` beyond rounding and improve
either ``U`` or the certified gap. Where no halving of the Newton step is
accepted, a damped one is tried, each type's curvature raised to at least
``|g_i| / width_i`` (so no type's own step exceeds its box): on a batching server
the latency adds no diagonal curvature, a type on the flat end of its accuracy
curve has ``d_i`` near 1e-49, and the undamped Woodbury solve is no ascent
direction (measured on c2_seed27: ``g . step = -1.6e27``). The best point seen
is returned.

Two finishing steps follow when the gap is still above the tolerance (the conic
reference uses them): :func:`snap_and_polish` moves types left just inside a
bound by an interior-point solver onto it and polishes again, and
:func:`finish_newton` takes Newton steps that lower the certified gap while
``U`` changes by no more than the rounding of its sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .certificate import certificate_box, frank_wolfe_gap, relative_scale
from .objective import Objective
from .protocols import ScenarioLike

__all__ = [
    "polish_fully",
    "newton_direction",
    "polish",
    "PolishInfo",
    "snap_and_polish",
    "finish_newton",
    "SNAP_WIDTH",
]


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
    A coordinate whose curvature ``d`` is too small for ``g / d`` and ``V / d`` to be
    finite (an accuracy curve flat to double precision, with no latency price) has
    no Newton step: it is held.
    """
    x = np.zeros_like(g)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        Dg_all = g / d
        DV_all = V / d[:, None]
    free = free & (d > 0) & np.isfinite(Dg_all) & np.all(np.isfinite(DV_all), axis=1)
    if not free.any():
        return x
    Vf, Dg, DV = V[free], Dg_all[free], DV_all[free]
    with np.errstate(over="ignore", invalid="ignore"):
        lhs = np.eye(2) + M @ (Vf.T @ DV)
        rhs = M @ (Vf.T @ Dg)
    try:
        z = np.linalg.solve(lhs, rhs)
    except np.linalg.LinAlgError:
        z = np.zeros(2)
    if not np.all(np.isfinite(z)):  # the rank-2 part overflowed: the diagonal step alone
        z = np.zeros(2)
    x[free] = Dg - DV @ z
    return x


def polish(
    scenario: ScenarioLike,
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
    # U's rounding scales with its terms, not with |U| (cancellation can make |U|
    # small: measured, |U| = 9e-4 with accuracies of order one, where the Newton
    # step that ended the polish lowered U by 5e-16 and was refused)
    terms = _terms(obj, t)
    for _ in range(max_steps):
        if gap <= rtol * relative_scale(U):
            break
        at_lo = (t - lo <= eps_bound) & (g <= 0)
        at_hi = (hi - t <= eps_bound) & (g >= 0)
        free = ~(at_lo | at_hi) & (width > 0)
        d, V, M = obj.hessian_parts(t)
        slack = 8 * np.finfo(float).eps * terms
        found = None
        for damped in (False, True):
            if not damped and not np.all(d[free] > 0):
                continue  # a flat type: the undamped system is singular
            dd = np.maximum(d, np.abs(g) / np.where(width > 0, width, 1.0)) if damped else d
            found = _line_search(obj, t, U, gap, newton_direction(dd, V, M, g, free), slack)
            if found is not None:
                break
        if found is None:
            break
        t, U, g, gap = found
        steps += 1
    return t, PolishInfo(steps, gap0, gap)


def _line_search(obj: Objective, t, U, gap, step, slack):
    """The first of ``t + step / 2^k`` (projected, ``k < 40``) that keeps ``U`` to its rounding
    and raises ``U`` or lowers the certified gap: ``(t, U, g, gap)``, or None."""
    lo, hi = certificate_box(obj.scenario)
    alpha = 1.0
    for _ in range(40):
        cand = np.clip(t + alpha * step, lo, hi)
        Uc = obj.value(cand)
        if np.isfinite(Uc) and Uc >= U - slack:
            gc = obj.gradient(cand)
            gapc = frank_wolfe_gap(gc, cand, lo, hi)
            if Uc > U or gapc < gap:
                return cand, Uc, gc, gapc
        alpha *= 0.5
    return None


#: Types this close to a bound (a fraction of their box width), with the gradient
#: pointing out of the box, are moved onto it before a second polish. Interior-point
#: points stop about this far inside a bound; the Newton polish holds such a type
#: fixed (it is "at" the bound to 1e-9 of the width) but the Frank-Wolfe gap still
#: counts ``g_i (hi_i - t_i)``: measured, this left gaps of 1e-9 to 2e-7 of |U| on 14
#: of 40 random instances, and 1e-14 or less after snapping.
SNAP_WIDTH = 1e-6


def snap_and_polish(
    sc: ScenarioLike, tokens: np.ndarray, obj: Objective, polish_rtol: float, polish_steps: int
) -> tuple[np.ndarray, int]:
    """Snap near-bound types whose gradient points outward onto the bound and polish again.

    Returns the better point (``U`` higher beyond its rounding, or ``U`` not
    lower beyond rounding and a smaller certified gap) and how many types were
    snapped (0 when the first point is kept).
    """
    lo, hi = certificate_box(sc)
    width = hi - lo
    g = obj.gradient(tokens)
    to_lo = (tokens - lo <= SNAP_WIDTH * width) & (g <= 0)
    to_hi = (hi - tokens <= SNAP_WIDTH * width) & (g >= 0)
    snapped = int(np.count_nonzero((to_lo & (tokens > lo)) | (to_hi & (tokens < hi))))
    if snapped == 0:
        return tokens, 0
    start = np.where(to_lo, lo, np.where(to_hi, hi, tokens))
    if sc.utilization(start) >= 1:
        return tokens, 0
    again, _ = polish(sc, start, rtol=polish_rtol, max_steps=polish_steps, objective=obj)
    U0, U1 = obj.value(tokens), obj.value(again)
    slack = _rounding_of_sum(obj, tokens)
    gap0 = frank_wolfe_gap(g, tokens, lo, hi)
    gap1 = frank_wolfe_gap(obj.gradient(again), again, lo, hi)
    # better: a gain in U beyond its rounding, or U kept and a smaller gap
    if np.isfinite(U1) and (U1 > U0 + slack or (U1 >= U0 - slack and gap1 < gap0)):
        return again, snapped
    return tokens, 0


def _terms(obj: Objective, t: np.ndarray) -> float:
    """``max(|U|, |Acc| + gamma W)`` at ``t``: the scale of ``U``'s rounding."""
    ev = obj.evaluate(t)
    terms = abs(ev.accuracy) + abs(obj.gamma * ev.mean_system_time)
    return max(terms, relative_scale(ev.objective)) if np.isfinite(terms) else np.inf


def _rounding_of_sum(obj: Objective, t: np.ndarray) -> float:
    """A bound of the rounding of ``U(t)``: ``8 (N + 4) eps (|Acc| + gamma W)``.

    ``U = Acc - gamma W`` is a difference of sums of ``N`` terms: its rounding
    scales with the terms, not with ``|U|``, which cancellation can make small
    (measured: ``|U| = 9e-4`` next to accuracies of order one).
    """
    return 8 * (len(t) + 4) * np.finfo(float).eps * _terms(obj, t)


def finish_newton(
    sc: ScenarioLike, tokens: np.ndarray, obj: Objective, polish_rtol: float, max_steps: int = 5
) -> tuple[np.ndarray, int]:
    """Newton steps accepted on a smaller certified gap with ``U`` unchanged to its rounding.

    :func:`cvxalloc.polish.polish` accepts a step only when ``U`` does not drop by
    more than 8 ulps of ``|U|``; near the optimum a step's true gain (``g^2/H``) is
    far below that, while ``U``, a sum of ``N`` terms, rounds by up to about ``N``
    ulps. Measured (N = 190 identical types, overloaded): the full Newton step took
    the gap from 1.6e-10 to 1e-15 of ``|U|`` but ``U`` rounded 3e-15 lower, so the
    polish stopped. Here ``U`` may drop by the rounding bound of its sum,
    ``8 (N + 4) eps (|Acc| + gamma W)`` (:func:`_rounding_of_sum`), no more.
    Returns the point and the steps taken.
    """
    lo, hi = certificate_box(sc)
    width = hi - lo
    t = tokens
    U, g = obj.value(t), obj.gradient(t)
    gap = frank_wolfe_gap(g, t, lo, hi)
    slack = _rounding_of_sum(obj, t)
    steps = 0
    while steps < max_steps and gap > polish_rtol * relative_scale(U):
        at_lo = (t - lo <= 1e-9 * width) & (g <= 0)
        at_hi = (hi - t <= 1e-9 * width) & (g >= 0)
        d, V, M = obj.hessian_parts(t)
        cand = np.clip(t + newton_direction(d, V, M, g, ~(at_lo | at_hi) & (width > 0)), lo, hi)
        Uc = obj.value(cand)
        if not (np.isfinite(Uc) and Uc >= U - slack):
            break
        gc = obj.gradient(cand)
        gapc = frank_wolfe_gap(gc, cand, lo, hi)
        if not gapc < gap:
            break
        t, U, g, gap = cand, Uc, gc, gapc
        steps += 1
    return t, steps


def polish_fully(
    sc: ScenarioLike, tokens: np.ndarray, obj: Objective, rtol: float, max_steps: int
) -> tuple[np.ndarray, dict[str, int]]:
    """The whole polish of a solver's point on the box: :func:`polish`, then, if needed,
    :func:`snap_and_polish` and :func:`finish_newton`.

    The polish aims 1000 times below ``rtol`` (Newton steps are cheap near the
    optimum, and a point that just meets the tolerance can sit 1e-5 tokens off: a
    gap of 7.6e-11 of ``|U|``, which finite differences of re-solves in
    ``tests/test_sensitivity.py`` turned into 0.2% errors). If the gap is still
    above ``rtol``, near-bound types are snapped and at most five finishing
    steps are taken, whatever the polish used: it can spend its whole budget on
    gap decreases of 1e-20 while the one step that ends it lowers ``U`` below its
    rounding (``|U|`` = 9e-4 with terms of order one).

    Returns the tokens and ``{"polish_steps", "polish_snapped", "polish_finish_steps"}``
    (the last two only when they ran).
    """
    t, info = polish(sc, tokens, rtol=rtol * 1e-3, max_steps=max_steps, objective=obj)
    stats = {"polish_steps": info.steps}
    if info.gap_after > rtol * relative_scale(obj.value(t)):
        t, stats["polish_snapped"] = snap_and_polish(sc, t, obj, rtol, max_steps)
        t, stats["polish_finish_steps"] = finish_newton(sc, t, obj, rtol, min(5, max_steps))
    return t, stats
