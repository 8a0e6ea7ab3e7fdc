"""A certified budget policy over load: the optimum on a grid of arrival rates.

Layer: workflows. Traffic moves through the day, and the optimal budgets move
with it. A policy holds the certified optimum of one scenario at a grid of
arrival rates, from 0 up to just below the highest stable rate, and answers
for any rate in between. One module per stage, every public name re-exported
here:

* :mod:`cvxalloc.policy.build`: :func:`build_policy` solves at each grid rate
  (every grid point certified) and refines the grid where the interpolation is
  poor;
* :mod:`cvxalloc.policy.lookup`: :class:`Policy` answers ``budgets(rate)`` and
  ``gap(rate)``, the gap proven at the query rate (never interpolated);
* :mod:`cvxalloc.policy.files`: :func:`load_policy` reads and validates a
  policy file written by :meth:`Policy.save`.

Examples
--------
>>> import cvxalloc
>>> from cvxalloc.policy import build_policy
>>> pol = build_policy(cvxalloc.example_scenario())
>>> low, high = pol.rate_range
>>> t = pol.budgets(0.5 * high)
>>> bool(pol.gap(0.5 * high) <= 1e-4 * abs(pol.lookup(0.5 * high).objective))
True
"""

from __future__ import annotations

from .build import (
    DEFAULT_POINTS,
    DEFAULT_TOLERANCE,
    GRID_CERTIFICATE_TOL,
    MAX_POINTS,
    MAX_SCV_POINTS,
    TOP_FRACTION,
    build_policy,
    highest_rate,
)
from .files import load_policy, policy_from_dict
from .lookup import FORMAT, VERSION, Lookup, Policy, PolicyError

__all__ = [
    "Policy",
    "PolicyError",
    "Lookup",
    "build_policy",
    "load_policy",
    "policy_from_dict",
    "highest_rate",
    "FORMAT",
    "VERSION",
    "DEFAULT_TOLERANCE",
    "DEFAULT_POINTS",
    "TOP_FRACTION",
    "GRID_CERTIFICATE_TOL",
    "MAX_POINTS",
    "MAX_SCV_POINTS",
]
