"""Operator constraints: latency SLO, compute budget, utilization cap, accuracy floors.

Layer: numerics.

Operators state limits more often than prices. A scenario may carry, in an
optional ``[constraints]`` table and per task:

==========================  ==========================================  ==========
key                         constraint                                  convex because
==========================  ==========================================  ==========
``max_mean_system_time``    ``W(t) <= L`` (seconds, a mean-latency SLO)  W convex
``max_mean_tokens``         ``sum_i p_i t_i <= B`` (compute budget)      linear
``max_utilization``         ``lam m1(t) <= rho_max``                     linear
``min_accuracy`` (per task) ``A_i(t_i) >= alpha_i``                      A_i concave
``tail``                    ``q_p(T) <= T0`` through a surrogate         see below
==========================  ==========================================  ==========

The tail SLO (``tail = { quantile = p, max_system_time = T0 }``) is not a
convex set in general; the optimization holds a convex conservative
surrogate of it (:mod:`cvxalloc.constraints.tail`), and reports the exact
percentile beside the surrogate's.

Each constraint is a *model term* (as the latency and accuracy terms are): it
evaluates numerically (value, slack, gradient) and compiles to CVXPY from the
same data, so the conic reference, the certificate and the reports cannot
disagree. ``A_i`` is strictly increasing, so ``A_i(t_i) >= alpha_i`` is exactly
the token bound ``t_i >= A_i^{-1}(alpha_i)``: min_accuracy raises the lower
bound of the box (that is its CVXPY form too: linear, well conditioned).

Every other constraint is increasing in every ``t_i``. Hence the feasible set
is non-empty exactly when the raised lower bounds ``lo'`` satisfy all of them;
:func:`check_feasible` tests that before any solve and names the constraints
that conflict, and :func:`restore_feasible` moves a solver's point (feasible
only to the solver's tolerance) back into the feasible set along ``lo' -> t``.

Certificate (:func:`certify_constrained`). For multipliers ``mu_j >= 0`` on
the constraints ``h_j(t) = value_j(t) - limit_j <= 0`` the Lagrangian
``L(x) = U(x) - sum_j mu_j h_j(x)`` is concave and bounds ``U`` on the feasible
set, so for any feasible ``t``::

    U* <= L(t) + max_{lo' <= x <= hi} grad L(t) . (x - t)
        = U(t) + sum_j mu_j slack_j + FWbox(grad U(t) - sum_j mu_j grad h_j(t))

Any ``mu >= 0`` gives a valid bound, recomputable from the scenario, ``t`` and
``mu`` alone. The multipliers are estimated from ``t`` (least squares on the
free coordinates) and the bound is minimized over them exactly one coordinate
at a time (a weighted median: all ``grad h_j > 0``). With only linear
constraints the minimum over ``mu`` is the Frank-Wolfe bound over the polytope
``box ∩ halfspaces`` (LP duality): ``kind = "frank-wolfe-polytope"``; with the
SLO it is a Lagrangian (dual) bound: ``kind = "lagrangian-frank-wolfe"``.

Where each part lives
---------------------
terms        the scalar terms (value, gradient, CVXPY form), KINDS and the errors
tail         the tail SLO and its convex surrogate
feasibility  min_accuracy as a token bound, the feasibility test, restoring a point
certificate  Frank-Wolfe over the polytope / the Lagrangian bound

What a constraint *is* for a scenario, the :class:`~cvxalloc.scenario_constraints.Constraints`
record with its ``[constraints]`` file structure, sits beside the scenario
(:mod:`cvxalloc.scenario_constraints`, also ``cvxalloc.Constraints``); how the
solvers honour it sits with them: the conic rows and the slack / shadow-price
report (:mod:`cvxalloc.solvers.constraint_rows`), the outer multipliers
(:mod:`cvxalloc.solvers.multipliers`) and the finishing polish
(:mod:`cvxalloc.solvers.finish`).
"""

from __future__ import annotations

from .certificate import certify_constrained, lagrangian_bound
from .feasibility import (
    check_feasible,
    constraints_of,
    effective_lower,
    required_tokens,
    restore_feasible,
    slacks_of,
)
from .tail import TailPercentile, TailSLO
from .terms import (
    KINDS,
    ConstraintError,
    InfeasibleError,
    MeanSystemTime,
    MeanTokens,
    Term,
    Utilization,
)

__all__ = [
    "KINDS",
    "ConstraintError",
    "InfeasibleError",
    "Term",
    "MeanSystemTime",
    "MeanTokens",
    "Utilization",
    "TailSLO",
    "TailPercentile",
    "constraints_of",
    "slacks_of",
    "required_tokens",
    "effective_lower",
    "check_feasible",
    "restore_feasible",
    "certify_constrained",
    "lagrangian_bound",
]
