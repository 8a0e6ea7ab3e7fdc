"""Status strings shared by every solver (one set, never relabelled).

A solver reports exactly what happened. ``OPTIMAL`` means the solver's own
stopping test passed; the certificate on the result says how close to optimal
the returned allocation provably is, independently of the solver.
"""

from __future__ import annotations

__all__ = [
    "OPTIMAL",
    "OPTIMAL_INACCURATE",
    "ITERATION_LIMIT",
    "INFEASIBLE",
    "SOLVER_ERROR",
    "SOLUTION_PRESENT",
]

OPTIMAL = "optimal"
OPTIMAL_INACCURATE = "optimal_inaccurate"
ITERATION_LIMIT = "iteration_limit"
INFEASIBLE = "infeasible"
SOLVER_ERROR = "solver_error"

#: Statuses that come with an allocation.
SOLUTION_PRESENT = (OPTIMAL, OPTIMAL_INACCURATE, ITERATION_LIMIT)
