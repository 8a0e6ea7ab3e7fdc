"""How a family is chosen for a task: the criteria's names.

Layer: workflows (:mod:`cvxalloc.fit`). Light on purpose: the command line's
argument parser reads :data:`CRITERIA` without loading the fits (scipy.optimize).
"""

from __future__ import annotations

__all__ = ["CRITERIA"]

#: Family choice: Akaike's criterion, its small-sample correction, leave-one-out error.
CRITERIA = ("aic", "aicc", "loo")
