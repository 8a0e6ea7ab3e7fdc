"""Feasibility: min_accuracy as a token bound, the exact feasibility test, and restoring a point.

Every scalar constraint is increasing in every ``t_i``, so the constraints are
jointly feasible exactly when they hold at the raised lower bounds ``lo'``
(:func:`effective_lower`); a solver's point is moved back into the feasible set
along ``lo' -> t`` (:func:`restore_feasible`).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._bisect import bisect, bisect_each
from ..protocols import ScenarioLike
from .terms import InfeasibleError, Term

__all__ = [
    "constraints_of",
    "required_tokens",
    "effective_lower",
    "check_feasible",
    "slacks_of",
    "restore_feasible",
]


def constraints_of(scenario: ScenarioLike) -> Any:
    """The scenario's :class:`~cvxalloc.scenario_constraints.Constraints`, or None when it has none.

    An empty set of constraints counts as none.
    """
    cons = getattr(scenario, "constraints", None)
    return None if cons is None or cons.empty else cons


#: required_tokens per scenario (a solve asks for it several times; at N = 10^6 with
#: 10^5 floors each call costs about 0.4 s). Keyed by the scenario object, checked
#: against the arrays and constraints it was computed from.
_REQUIRED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def required_tokens(scenario: ScenarioLike) -> np.ndarray:
    """Per task, the fewest tokens meeting its ``min_accuracy`` (see :func:`_required_tokens`).

    Remembered per scenario object (a copy is returned).
    """
    key = (id(scenario.min_tokens), id(scenario.max_tokens), id(scenario.accuracy))
    key += (id(getattr(scenario, "constraints", None)),)
    try:
        hit = _REQUIRED.get(scenario)
    except TypeError:  # not weak-referenceable: compute every time
        return _required_tokens(scenario)
    if hit is None or hit[0] != key:
        hit = (key, _required_tokens(scenario))
        _REQUIRED[scenario] = hit
    return hit[1].copy()


def _required_tokens(scenario: ScenarioLike) -> np.ndarray:
    """Per task, the fewest tokens meeting its ``min_accuracy`` (``lo`` where none).

    ``A_i`` is increasing, so the bound is ``A_i^{-1}(alpha_i)``, in closed form
    (:meth:`AccuracyCurves.inverse`), then moved up by a few ulps where rounding
    left ``A_i(t) < alpha_i`` in floating point. ``inf`` where even ``hi_i``
    does not reach ``alpha_i``.
    """
    sc = scenario
    lo, hi = sc.min_tokens, sc.max_tokens
    cons = constraints_of(sc)
    out = np.array(lo, dtype=float)
    if cons is None or cons.min_accuracy is None:
        return out
    alpha = cons.min_accuracy
    has = ~np.isnan(alpha)
    a_lo, a_hi = sc.accuracy.value(lo), sc.accuracy.value(hi)
    out[has & (a_hi < alpha)] = np.inf
    todo = np.flatnonzero(has & (a_lo < alpha) & (a_hi >= alpha))
    if todo.size:
        sub, target = sc.accuracy.take(todo), alpha[todo]
        t = np.clip(sub.inverse(target), lo[todo], hi[todo])
        for _ in range(16):  # rounding of the closed form: a few ulps at most
            short = sub.value(t) < target
            if not short.any():
                break
            t = np.where(short, np.minimum(np.nextafter(t, np.inf), hi[todo]), t)
        flat = np.flatnonzero(sub.value(t) < target)  # a flat tail (A near its ceiling)
        if flat.size:
            part, aim = sub.take(flat), target[flat]  # the first float reaching aim
            t[flat] = bisect_each(lambda x: part.value(x) < aim, t[flat], hi[todo][flat])[1]
        out[todo] = t
    return out


def effective_lower(scenario: ScenarioLike) -> np.ndarray:
    """``lo' = max(lo, A^{-1}(min_accuracy))``: the box lower bound the constraints imply."""
    return np.maximum(scenario.min_tokens, required_tokens(scenario))


def _names(scenario: ScenarioLike, idx: np.ndarray, limit: int = 3) -> str:
    shown = ", ".join(f'"{scenario.names[i]}"' for i in idx[:limit])
    return shown + (f" and {idx.size - limit} more" if idx.size > limit else "")


def check_feasible(scenario: ScenarioLike) -> np.ndarray:
    """Raise :class:`InfeasibleError` unless some allocation meets every constraint.

    Exact and cheap: every scalar constraint is increasing in every ``t_i``,
    so the constraints are jointly feasible iff they hold at ``lo'``
    (:func:`effective_lower`). The message names the constraints in conflict
    and the value each would need.

    Returns
    -------
    ndarray
        ``lo'``.
    """
    sc = scenario
    cons = constraints_of(sc)
    if cons is None:
        return np.array(sc.min_tokens, dtype=float)
    tau = required_tokens(sc)
    if cons.min_accuracy is not None:
        bad = np.flatnonzero(~np.isfinite(tau))
        if bad.size:
            i = bad[0]
            reach = float(sc.accuracy.value(sc.max_tokens)[i])
            raise InfeasibleError(
                f'task "{sc.names[i]}": min_accuracy {cons.min_accuracy[i]:g} is above its '
                f"accuracy at max_tokens ({reach:.6g}); lower min_accuracy or raise max_tokens"
                + (f" (also infeasible: {_names(sc, bad[1:])})" if bad.size > 1 else "")
            )
    lo2 = np.maximum(sc.min_tokens, tau)
    raised = np.flatnonzero(lo2 > sc.min_tokens)
    at = "at the minimum budgets"
    blame = ""
    if raised.size:
        at = "at the smallest budgets min_accuracy allows"
        blame = f" or lower min_accuracy (tasks {_names(sc, raised)})"
    rho = sc.utilization(lo2)
    if rho >= 1:
        raise InfeasibleError(
            f"min_accuracy: the queue is unstable (utilization {rho:.4g} >= 1) {at}; "
            f"lower min_accuracy (tasks {_names(sc, raised)}) or arrival_rate"
        )
    conflicts = []
    for term in cons.terms():
        v = term.value(sc, lo2)
        if term.slack(sc, lo2, ties=True) < 0 and hasattr(term, "conflict"):
            conflicts.append(term.conflict(sc, lo2, at, blame))  # says it in its own units
        elif term.slack(sc, lo2, ties=True) < 0:  # a tie within rounding meets the limit
            unit = f" {term.unit}" if term.unit and term.unit != "tokens" else ""
            conflicts.append(
                f"{term.kind} = {term.limit:g}{unit} is below the {term.what} {at} "
                f"({v:.6g}{unit}); raise {term.kind} to at least {v:.6g}{unit}{blame}"
            )
    if conflicts:
        raise InfeasibleError("constraints conflict: " + "; ".join(conflicts))
    return lo2


def slacks_of(
    scenario: ScenarioLike, terms: Sequence[Term], t: np.ndarray, ties: bool = False
) -> np.ndarray:
    """The slack of each term at ``t`` (>= 0 where satisfied; ``ties``: see :meth:`Term.slack`)."""
    return np.array([term.slack(scenario, t, ties) for term in terms])


def restore_feasible(
    scenario: ScenarioLike, tokens: np.ndarray, lower: np.ndarray | None = None
) -> np.ndarray:
    """A feasible point on the segment from ``lo'`` to ``tokens``, as near ``tokens`` as it takes.

    A solver meets constraints only to its tolerance (~1e-9 for conic, rounding
    for the aggregate method); the certificate needs exact feasibility. ``t`` is
    clipped into ``[lo', hi]`` and, if a scalar constraint is still violated,
    replaced by ``lo' + theta (t - lo')``: ``theta = 1 - 2^-52``, ``1 - 2^-48``,
    ... (16 times further each time) until every constraint holds, then
    bisection between the last two (every constraint is increasing in
    ``theta``; ``theta = 0`` is feasible once :func:`check_feasible` passed). A
    violation by rounding costs a few evaluations, not the 53 of a full bisection
    (each a pass over ``N`` types).
    """
    sc = scenario
    cons = constraints_of(sc)
    lo2 = effective_lower(sc) if lower is None else lower
    t = np.clip(np.asarray(tokens, dtype=float), lo2, sc.max_tokens)
    if cons is None:
        return t
    terms = cons.terms()
    if not terms or np.all(slacks_of(sc, terms, t) >= 0):
        return t

    def feasible(theta: float) -> bool:
        return bool(np.all(slacks_of(sc, terms, lo2 + theta * (t - lo2)) >= 0))

    bad, good = 1.0, 0.0
    for k in range(13):
        theta = 1.0 - 2.0 ** (4 * k - 52)
        if feasible(theta):
            good = theta
            break
        bad = theta
    if bad - good > 2.0**-30:  # far from t: narrow the bracket as before
        good, _ = bisect(feasible, good, bad)
    return np.clip(lo2 + good * (t - lo2), lo2, sc.max_tokens)
