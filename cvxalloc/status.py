"""Status strings shared by every solver (one set, never relabelled).

Layer: parts.

A solver reports exactly what happened. For the first-order and aggregate
methods ``OPTIMAL`` means the Frank-Wolfe gap is within the method's ``tol``;
for the conic reference after polishing it means the certificate is within
``polish_rtol`` (the raw solver's status is kept in
``solver_stats["solver_status"]``); for the integer methods it is the integer
solver's own proof. The certificate on the result says how close to optimal the
returned allocation provably is, independently of the solver.

``FEASIBLE`` is the status of an allocation that no solver optimized (a baseline
such as the best uniform budget): it meets every constraint, and its own
certificate bounds how far from optimal it is. A baseline that breaks a
constraint is ``INFEASIBLE``.
"""

from __future__ import annotations

__all__ = [
    "OPTIMAL",
    "OPTIMAL_INACCURATE",
    "ITERATION_LIMIT",
    "FEASIBLE",
    "INFEASIBLE",
    "SOLVER_ERROR",
    "SOLUTION_PRESENT",
]

OPTIMAL = "optimal"
OPTIMAL_INACCURATE = "optimal_inaccurate"
ITERATION_LIMIT = "iteration_limit"
FEASIBLE = "feasible"
INFEASIBLE = "infeasible"
SOLVER_ERROR = "solver_error"

#: Statuses that come with an allocation.
SOLUTION_PRESENT = (OPTIMAL, OPTIMAL_INACCURATE, ITERATION_LIMIT, FEASIBLE)
