"""The certificate under constraints: Frank-Wolfe over the polytope, or a Lagrangian bound.

For multipliers ``mu_j >= 0`` on ``h_j(t) = value_j(t) - limit_j <= 0`` the
Lagrangian bounds ``U`` on the feasible set, so for any feasible ``t``::

    U* <= U(t) + sum_j mu_j slack_j + FWbox(grad U(t) - sum_j mu_j grad h_j(t))

(see the package docstring). The multipliers are estimated from ``t`` and the
bound is minimized over them one coordinate at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..certificate import Certificate, frank_wolfe_gap
from ..objective import Objective
from ..protocols import ScenarioLike
from .feasibility import constraints_of, effective_lower, slacks_of

__all__ = ["certify_constrained", "lagrangian_bound"]


def _line_minimize(
    h: np.ndarray, c: np.ndarray, s: float, t: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> float:
    """``argmin_{nu >= 0} nu s + FWbox(h - nu c)`` for ``c >= 0`` (exact).

    The derivative is ``s + sum_i c_i (t_i - lo_i) - sum_{h_i > nu c_i} c_i (hi_i - lo_i)``,
    non-decreasing in ``nu``: the minimizer is a weighted median of ``h_i / c_i``.
    """
    pos = c > 0
    base = s + float(c[pos] @ (t[pos] - lo[pos]))
    r = h[pos] / c[pos]
    w = c[pos] * (hi[pos] - lo[pos])
    order = np.argsort(-r, kind="stable")
    cs = np.cumsum(w[order])
    k = int(np.searchsorted(cs, base, side="right"))
    if k >= r.size:
        return 0.0
    return max(0.0, float(r[order[k]]))


def lagrangian_bound(
    g: np.ndarray,
    grads: np.ndarray,
    slacks: np.ndarray,
    mu: np.ndarray,
    t: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> float:
    """``sum_j mu_j slack_j + FWbox(g - sum_j mu_j grads_j)``: a bound on ``U* - U(t)``.

    Valid for every ``mu >= 0`` and every feasible ``t`` in ``[lo, hi]``.
    ``grads`` has shape ``(m, N)``.
    """
    mu = np.maximum(np.asarray(mu, dtype=float), 0.0)
    h = g - mu @ grads if len(mu) else g
    return float(mu @ slacks) + frank_wolfe_gap(h, t, lo, hi)


def _estimate_multipliers(g, grads, slacks, limits, t, lo, hi) -> np.ndarray:
    """KKT multipliers from ``t``: nonnegative least squares on the free coordinates."""
    from scipy.optimize import nnls

    m = grads.shape[0]
    mu = np.zeros(m)
    width = hi - lo
    free = (t - lo > 1e-7 * width) & (hi - t > 1e-7 * width)
    active = np.flatnonzero(slacks <= 1e-6 * np.maximum(np.abs(limits), 1e-12))
    if not free.any() or active.size == 0:
        return mu
    A = grads[active][:, free].T
    norms = np.linalg.norm(A, axis=0)
    norms[norms == 0] = 1.0
    try:
        sol, _ = nnls(A / norms, g[free], maxiter=50 * A.shape[1] + 50)
    except RuntimeError:
        return mu
    mu[active] = sol / norms
    return mu


def _lp_multipliers(g, grads, slacks, t, lo, hi) -> np.ndarray:
    """The multipliers that minimize the bound, from the LP they are the duals of.

    ``min_{mu >= 0} mu . s + FWbox(g - mu G)`` is, by LP duality, the linear
    program ``max g . d`` over ``lo - t <= d <= hi - t``, ``G d <= s`` (``m``
    rows, ``N`` bounded columns): its row duals are the minimizing ``mu``. With
    two or more constraints the coordinate search can stall at a kink of the
    piecewise-linear bound (measured: N = 8,819, token budget and utilization
    cap both active, 1.2e-5 of ``|U|`` by the search, 2e-8 with these). The LP
    (SciPy's HiGHS, scaled) only proposes ``mu``; the bound is recomputed
    exactly from it, so an inaccurate LP can only weaken it. Zeros if it fails.
    """
    from scipy.optimize import linprog  # heavy import, only with two or more constraints

    g_scale = float(np.max(np.abs(g))) or 1.0
    rows = np.linalg.norm(grads, axis=1)
    rows[rows == 0] = 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        A_ub, b_ub = grads / rows[:, None], slacks / rows
    if not (np.all(np.isfinite(A_ub)) and np.all(np.isfinite(b_ub)) and np.isfinite(g_scale)):
        return np.zeros(grads.shape[0])  # a limit like 1e308: no LP to pose, the search stays
    res = linprog(
        -g / g_scale,
        A_ub=A_ub,
        b_ub=b_ub,
        bounds=np.column_stack([lo - t, hi - t]),
        method="highs",
    )
    if res.status != 0 or res.ineqlin is None:
        return np.zeros(grads.shape[0])
    return np.maximum(-np.asarray(res.ineqlin.marginals) * g_scale / rows, 0.0)


def certify_constrained(
    scenario: ScenarioLike,
    tokens: np.ndarray,
    objective=None,
    multipliers: Sequence[float] | None = None,
    search: bool = True,
) -> Certificate:
    """Certificate of an allocation under the scenario's constraints.

    Parameters
    ----------
    scenario : Scenario
        With ``constraints``.
    tokens : array_like
        The allocation; a point that violates a constraint gets ``gap = inf``.
    objective : Objective, optional
    multipliers : sequence of float, optional
        A starting guess for the multipliers of the scalar terms (e.g. shadow
        prices from the conic duals), in :meth:`Constraints.terms` order.
    search : bool
        Minimize the bound over the multipliers (default). With ``False`` and
        ``multipliers`` given, the bound is the one those multipliers prove,
        without the search (which sorts ``N`` ratios per coordinate step: at
        ``N = 10^6`` it costs seconds); a solver that knows its KKT multipliers
        uses that first. Any ``mu >= 0`` gives a valid bound either way.

    Returns
    -------
    Certificate
        ``kind`` is ``"frank-wolfe"`` (only min_accuracy: the box ``[lo', hi]``),
        ``"frank-wolfe-polytope"`` (linear constraints) or
        ``"lagrangian-frank-wolfe"`` (the SLO); ``details["multipliers"]``
        holds the multipliers that prove the bound.
    """
    sc = scenario
    obj = objective or Objective(sc)
    cons = constraints_of(sc)
    t = np.asarray(tokens, dtype=float)
    terms = cons.terms() if cons is not None else []
    kind = (
        "lagrangian-frank-wolfe"
        if any(not tm.linear for tm in terms)
        else "frank-wolfe-polytope"
        if terms
        else "frank-wolfe"
    )
    U = obj.value(t)
    lo2 = effective_lower(sc)
    hi = sc.max_tokens
    details: dict[str, Any] = {"constraints": cons.kinds if cons is not None else []}
    if not np.isfinite(U) or np.any(t < lo2) or np.any(t > hi):
        details["infeasible"] = "outside [lo', hi] (min_tokens, min_accuracy, max_tokens)"
        return Certificate(objective=U, gap=np.inf, upper_bound=np.inf, kind=kind, details=details)
    slacks = slacks_of(sc, terms, t, ties=True)  # a tie at a limit (a few ulps) is feasible
    if np.any(slacks < 0):
        details["infeasible"] = ", ".join(
            f"{tm.kind} violated by {-s:.3g}" for tm, s in zip(terms, slacks) if s < 0
        )
        return Certificate(objective=U, gap=np.inf, upper_bound=np.inf, kind=kind, details=details)
    g = obj.gradient(t)
    if not terms:
        gap = frank_wolfe_gap(g, t, lo2, hi)
        return Certificate(objective=U, gap=gap, upper_bound=U + gap, kind=kind, details=details)
    grads = np.array([tm.gradient(sc, t) for tm in terms])
    limits = np.array([tm.limit for tm in terms])
    if multipliers is not None and not search:
        best_mu = np.maximum(np.asarray(multipliers, dtype=float), 0.0)
        gap = max(lagrangian_bound(g, grads, slacks, best_mu, t, lo2, hi), 0.0)
        details["multipliers"] = {tm.kind: float(m) for tm, m in zip(terms, best_mu)}
        return Certificate(objective=U, gap=gap, upper_bound=U + gap, kind=kind, details=details)
    starts = [np.zeros(len(terms)), _estimate_multipliers(g, grads, slacks, limits, t, lo2, hi)]
    if multipliers is not None:
        starts.append(np.maximum(np.asarray(multipliers, dtype=float), 0.0))
    if len(terms) > 1:  # one term: the weighted median is exact already
        starts.append(_lp_multipliers(g, grads, slacks, t, lo2, hi))
    best_mu, best = None, np.inf
    for mu in starts:
        mu = mu.copy()
        val = lagrangian_bound(g, grads, slacks, mu, t, lo2, hi)
        for _ in range(6 if len(terms) > 1 else 1):
            for j in range(len(terms)):
                others = mu.copy()
                others[j] = 0.0
                h = g - others @ grads
                mu[j] = _line_minimize(h, grads[j], float(slacks[j]), t, lo2, hi)
            new = lagrangian_bound(g, grads, slacks, mu, t, lo2, hi)
            if new >= val * (1 - 1e-12):
                val = min(val, new)
                break
            val = new
        if val < best:
            best, best_mu = val, mu.copy()
    # Report exactly the bound the multipliers prove (recomputed once more).
    gap = max(lagrangian_bound(g, grads, slacks, best_mu, t, lo2, hi), 0.0)
    details["multipliers"] = {tm.kind: float(m) for tm, m in zip(terms, best_mu)}
    return Certificate(objective=U, gap=gap, upper_bound=U + gap, kind=kind, details=details)
