"""cvxalloc: certified thinking-token budgets for an LLM server.

Layer: facade (the public names of every layer; the whole list is docs/api.md).

Maximize ``U(t) = sum_i p_i w_i A_i(t_i) - gamma W(t)`` over per-type budgets
``lo <= t <= hi`` with ``W`` the mean system time of the scenario's queue model
(:mod:`cvxalloc.queue`: one FIFO server with Poisson arrivals, Pollaczek-Khinchine,
or bursty ones, Kingman; or a continuous-batching server), and prove how close
the answer is to optimal.

Main entry points
-----------------
load_scenario      read a scenario (.toml or .json)
example_scenario   the built-in example (five task types, published data)
Scenario           the scenario model (also :meth:`Scenario.from_arrays`)
Constraints        operator constraints a scenario may carry (SLO, token budget, ...)
solve              one entry point for every solver (``method=``)
Result             the result object of every solver
certify            Frank-Wolfe certificate of any allocation
evaluate           utility, accuracy, W, utilization of any allocation
baselines          best uniform, minimum and maximum budgets
load_policy        a certified budget policy over arrival rates (``cvxalloc policy``)

Examples
--------
>>> import cvxalloc
>>> sc = cvxalloc.example_scenario()
>>> res = cvxalloc.solve(sc, method="conic")
>>> res.certificate.gap <= 1e-6 * abs(res.objective)
True
"""

from __future__ import annotations

from ._version import __version__ as __version__
from .baselines import baselines
from .certificate import Certificate, certify
from .errors import (
    CvxallocError,
    MissingDependencyError,
    OptionError,
    ScenarioError,
    SolverError,
    UnstableError,
)
from .io import example_scenario, load_allocation, load_scenario
from .objective import Evaluation, evaluate
from .policy import Policy, load_policy
from .result import Result
from .scenario import Scenario
from .scenario_constraints import Constraints
from .solve import METHODS, available_methods, solve

__all__ = [
    "Certificate",
    "Constraints",
    "CvxallocError",
    "Evaluation",
    "METHODS",
    "MissingDependencyError",
    "OptionError",
    "Policy",
    "Result",
    "Scenario",
    "ScenarioError",
    "SolverError",
    "UnstableError",
    "available_methods",
    "baselines",
    "certify",
    "evaluate",
    "example_scenario",
    "load_allocation",
    "load_policy",
    "load_scenario",
    "solve",
]
