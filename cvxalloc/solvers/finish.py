"""Finishing a solver's point: exact feasibility, then a polish that keeps its certificate honest.

Layer: solvers. The polish of a constrained point is kept only when the
certified gap shrinks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import status as st
from ..certificate import relative_scale
from ..constraints.certificate import certify_constrained
from ..constraints.feasibility import constraints_of, effective_lower, restore_feasible, slacks_of
from ..constraints.terms import Utilization
from ..errors import ScenarioError
from ..objective import Objective
from ..polish import newton_direction, polish_fully
from ..queue import Latency
from ..result import Result
from .constraint_rows import constraint_report

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["finish", "single_point", "single_point_result"]


def finish(
    scenario: Scenario,
    tokens: np.ndarray,
    objective=None,
    *,
    polish_rtol: float = 1e-10,
    polish_steps: int = 50,
) -> tuple[np.ndarray, int, str]:
    """Make a solver's point exactly feasible and polish it where that is safe.

    * The point is restored into the feasible set (:func:`restore_feasible`).
    * Only min_accuracy (a box ``[lo', hi]``): the whole polish of
      :mod:`cvxalloc.polish` on that box (:func:`~cvxalloc.polish.polish_fully`:
      Newton, then near-bound types snapped and finishing steps), exact.
    * Scalar constraints: the box polish is tried and kept only if its point
      satisfies every constraint and has the smaller certified gap (typically
      when no constraint is active); otherwise the active-set Newton steps of
      the KKT system, each kept only when the certified gap shrinks.

    Returns
    -------
    tokens : ndarray
    steps : int
        Newton steps kept (0 if none).
    note : str
        What was done, for ``solver_stats["polish"]``.
    """

    sc = scenario
    obj = objective or Objective(sc)
    cons = constraints_of(sc)
    lo2 = effective_lower(sc)
    t = restore_feasible(sc, tokens, lo2)
    if polish_steps <= 0:
        return t, 0, "restored feasibility; polish disabled"
    terms = cons.terms() if cons is not None else []
    try:
        box = sc.with_(min_tokens=lo2, levels=[None] * sc.n, constraints=None)
    except ScenarioError:
        # gamma = 0 with an unstable box: only the constraints bound the problem.
        tc, steps = _constrained_polish(sc, t, obj, lo2, terms, polish_rtol, polish_steps)
        return tc, steps, "active-set Newton on the KKT system (box alone is unbounded)"
    box_obj = Objective(box)
    tp, stats = polish_fully(box, t, box_obj, polish_rtol, polish_steps)
    steps = stats["polish_steps"] + stats.get("polish_finish_steps", 0)
    if not terms:
        return tp, steps, "projected Newton on the box [lo', hi] (min_accuracy bounds)"
    cert = certify_constrained(sc, t, obj)
    if np.all(slacks_of(sc, terms, tp) >= 0):
        # kept when its certificate is the better one (typically no constraint is active)
        if certify_constrained(sc, tp, obj).gap < cert.gap:
            return tp, steps, "box polish kept: no constraint active at the polished point"
    tc, steps = _constrained_polish(sc, t, obj, lo2, terms, polish_rtol, polish_steps, cert)
    return (
        tc,
        steps,
        ("active-set Newton on the KKT system (steps kept only when the certified gap shrinks)"),
    )


def _constrained_polish(
    sc: Scenario, t, obj, lo2, terms, rtol, max_steps, cert=None
) -> tuple[np.ndarray, int]:
    """Active-set Newton steps for ``max U`` s.t. the active constraints as equalities.

    The Hessian of the Lagrangian keeps the diagonal-plus-rank-2 form (the SLO
    adds ``nu_W Hess W``, linear constraints nothing), so each step costs a few
    O(N) Woodbury solves plus an ``m x m`` system for the multipliers. A step
    is restored to exact feasibility and kept only if the certified gap
    (:func:`certify_constrained`) shrinks, so the result is never worse than
    the start and its certificate is exactly what it proves. ``cert`` is the
    start's certificate when the caller has it.
    """

    hi = sc.max_tokens
    width = hi - lo2
    slo = [j for j, tm in enumerate(terms) if not tm.linear]
    cert = certify_constrained(sc, t, obj) if cert is None else cert
    mu = np.array([cert.details.get("multipliers", {}).get(tm.kind, 0.0) for tm in terms])
    gap = cert.gap
    steps = 0
    lat = Latency(sc)
    for _ in range(max_steps):
        U = obj.value(t)
        if not np.isfinite(gap) or gap <= rtol * relative_scale(U):
            break
        g = obj.gradient(t)
        grads = np.array([tm.gradient(sc, t) for tm in terms])
        slacks = slacks_of(sc, terms, t)
        d, V, M = _lagrangian_hessian(sc, t, obj, lat, [(terms[j], mu[j]) for j in slo])
        gl = g - mu @ grads
        # Bertsekas' epsilon-active set: near a bound with the Lagrangian gradient
        # pointing out, a variable is fixed and moved onto the bound.
        eps = 1e-6 * width
        at_lo = (t - lo2 <= eps) & (gl <= 0)
        at_hi = (hi - t <= eps) & (gl >= 0) & ~at_lo
        free = ~(at_lo | at_hi) & (width > 0)
        if not free.any():
            break
        snap = np.zeros_like(t)
        snap[at_lo] = lo2[at_lo] - t[at_lo]
        snap[at_hi] = hi[at_hi] - t[at_hi]
        limits = np.array([tm.limit for tm in terms])
        active = [
            j
            for j in range(len(terms))
            if mu[j] > 0 or slacks[j] <= 1e-6 * max(abs(limits[j]), 1e-12)
        ]
        Kg = newton_direction(d, V, M, g, free)
        KC = {j: newton_direction(d, V, M, grads[j], free) for j in active}
        nu = np.zeros(len(terms))
        while active:
            S = np.array([[grads[j] @ KC[k] for k in active] for j in active])
            rhs = np.array([grads[j] @ Kg - slacks[j] + grads[j] @ snap for j in active])
            try:
                sol = np.linalg.solve(S, rhs)
            except np.linalg.LinAlgError:
                sol = np.linalg.lstsq(S, rhs, rcond=None)[0]
            if np.all(sol >= 0):
                nu[active] = sol
                break
            active.pop(int(np.argmin(sol)))
        step = snap + Kg - sum((nu[j] * KC[j] for j in active), np.zeros_like(Kg))
        accepted = False
        alpha = 1.0
        for _ in range(30):
            cand = np.clip(t + alpha * step, lo2, hi)
            for j in slo:
                # Second-order correction: W is convex, so a step that keeps it
                # constant to first order overshoots; move back along K^{-1} grad W.
                dj = KC.get(j)
                for _ in range(3):
                    viol = -terms[j].slack(sc, cand)
                    if dj is None or not viol > 0:
                        break
                    curv = float(terms[j].gradient(sc, cand) @ dj)
                    if not curv > 0:
                        break
                    cand = np.clip(cand - (viol / curv) * dj, lo2, hi)
            cand = restore_feasible(sc, cand, lo2)
            cc = certify_constrained(sc, cand, obj, multipliers=nu)
            if cc.gap < gap:
                t, gap, accepted = cand, cc.gap, True
                mu = np.array([cc.details["multipliers"].get(tm.kind, 0.0) for tm in terms])
                break
            alpha *= 0.5
        if not accepted:
            break
        steps += 1
    return t, steps


def _lagrangian_hessian(sc: Scenario, t, obj, lat, nonlinear) -> tuple[np.ndarray, ...]:
    """``-Hess L = diag(d) + V M V^T``: ``-Hess U`` plus each nonlinear term's curvature times
    its multiplier (``nonlinear``: pairs of term and multiplier).

    The mean-latency SLO adds ``W``'s Hessian (same ``V``); a separable term (the tail
    SLO's surrogate) its diagonal ``hessian_diag``.
    """
    d, V, M = obj.hessian_parts(t)
    for term, mu in nonlinear:
        if hasattr(term, "hessian_diag"):
            d = d + mu * term.hessian_diag(sc, t)
        else:
            dW, _, MW = lat.hessian_parts(t)
            d, M = d + mu * dW, M + mu * MW
    return d, V, M


def single_point(scenario: Scenario, lower: np.ndarray, rtol: float = 1e-12) -> bool:
    """Whether a scalar constraint is tight at ``lo'``, leaving ``lo'`` the only feasible point.

    Every scalar constraint has a positive gradient in every ``t_i``, so if one
    holds with equality at ``lo'`` no other allocation meets it. Conic solvers
    struggle with such a one-point feasible set; the answer is known exactly.
    """
    cons = constraints_of(scenario)
    if (
        cons is None
        or scenario.arrival_rate == 0
        and any(isinstance(tm, Utilization) for tm in cons.terms())
    ):
        return False
    return any(tm.slack(scenario, lower) <= rtol * max(abs(tm.limit), 1.0) for tm in cons.terms())


def single_point_result(scenario: Scenario, lower: np.ndarray, method: str = "conic"):
    """The result when :func:`single_point` holds: ``lo'``, certified, no shadow prices."""

    obj = Objective(scenario)
    t = restore_feasible(scenario, lower, lower)
    return Result.from_tokens(
        scenario,
        t,
        method=method,
        status=st.OPTIMAL,
        objective=obj,
        diagnostics={"constraints": constraint_report(scenario, t)},
        message="a constraint holds with equality at the smallest budgets: they are the "
        "only feasible allocation (no solve needed)",
    )
