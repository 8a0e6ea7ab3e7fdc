"""One entry point for every solver: :func:`solve` with a method registry.

Layer: solvers.
"""

from __future__ import annotations

import importlib
import inspect
import math
from typing import TYPE_CHECKING, Any

from .constraints import ConstraintError
from .errors import OptionError, SolverError
from .io import as_scenario
from .queue import queue_model
from .result import Result

if TYPE_CHECKING:
    from .scenario import Scenario

__all__ = [
    "solve",
    "METHODS",
    "DEFAULT_METHOD",
    "available_methods",
    "choose_method",
    "method_options",
    "warm_options",
    "fixed_service_scv",
    "CONSTRAINT_SUPPORT",
]

#: method name -> "module:function" (imported on first use). Each function takes
#: the scenario and keyword options and returns a :class:`~cvxalloc.result.Result`.
METHODS: dict[str, str] = {
    "conic": "cvxalloc.solvers.conic:solve_conic",
    "fixed-point": "cvxalloc.solvers.fixed_point:solve_fixed_point",
    "gradient": "cvxalloc.solvers.gradient:solve_gradient",
    "mixed-integer": "cvxalloc.solvers.mixed_integer:solve_mixed_integer",
    "rounding": "cvxalloc.integer:solve_rounding",
    "aggregate": "cvxalloc.solvers.aggregate:solve_aggregate",
}

#: The method used when ``method`` is None.
DEFAULT_METHOD = "aggregate"

#: method -> operator constraints it honours (see :mod:`cvxalloc.constraints`).
#: A method not listed refuses any constrained scenario instead of ignoring it.
CONSTRAINT_SUPPORT: dict[str, tuple[str, ...]] = {
    "conic": ("max_mean_system_time", "max_mean_tokens", "max_utilization", "min_accuracy", "tail"),
    "aggregate": (
        "max_mean_system_time",
        "max_mean_tokens",
        "max_utilization",
        "min_accuracy",
        "tail",
    ),
}

#: Methods that take a batching server (``[server] model = "batching"``); the
#: others rely on the FIFO queue's structure and refuse it.
BATCHING_SUPPORT: tuple[str, ...] = ("aggregate", "conic", "rounding")

#: Methods that take a fleet whose router is approximated over the replica's queue
#: (``[fleet]`` round-robin or shortest-queue, :class:`cvxalloc.queue.fleet.FleetQueue`);
#: a random router is exactly one replica's queue, which every method takes.
FLEET_SUPPORT: tuple[str, ...] = ("aggregate", "conic", "rounding")


def available_methods() -> list[str]:
    """Names accepted by ``solve(..., method=...)``."""
    return list(METHODS)


def choose_method(scenario: Scenario, method: str | None = None) -> str:
    """The method :func:`solve` uses: ``method``, else :data:`DEFAULT_METHOD`, unless the
    scenario has constraints the default cannot honour: then the first method that can."""
    if method is not None:
        return method
    kinds = set(getattr(getattr(scenario, "constraints", None), "kinds", None) or [])
    if kinds <= set(CONSTRAINT_SUPPORT.get(DEFAULT_METHOD, ())):
        return DEFAULT_METHOD
    return next((m for m in METHODS if kinds <= set(CONSTRAINT_SUPPORT.get(m, ()))), DEFAULT_METHOD)


def _resolve(method: str):
    module, func = METHODS[method].split(":")
    return getattr(importlib.import_module(module), func)


def method_options(method: str) -> set[str]:
    """Keyword options of a registered method (empty for an unknown name; imports the solver)."""
    if method not in METHODS:
        return set()
    return set(inspect.signature(_resolve(method)).parameters)


def warm_options(
    scenario: Scenario, warm: Result | None, method: str | None = None
) -> dict[str, Any]:
    """``{"warm_start": warm}`` where a warm start applies, else ``{}``: the options to pass
    :func:`solve` when re-solving ``scenario`` near a previous result.

    It applies when the method :func:`solve` uses for ``scenario`` (see
    :func:`choose_method`) takes ``warm_start`` and both ``warm``'s scenario and
    ``scenario`` have arrivals (at rate 0 there is no queue to start from).
    Workflows that solve a sequence of nearby scenarios (policies over rates,
    controllers over windows, sweeps) ask here, so the rule is written once.
    """
    if warm is None or getattr(warm, "scenario", None) is None:
        return {}
    if not (warm.scenario.arrival_rate > 0 and scenario.arrival_rate > 0):
        return {}
    if "warm_start" not in method_options(choose_method(scenario, method)):
        return {}
    return {"warm_start": warm}


def solve(scenario: Scenario, method: str | None = None, **options: Any) -> Result:
    """Find the allocation that maximizes ``U``, with a certificate.

    Parameters
    ----------
    scenario : Scenario, path or dict
        From :func:`cvxalloc.load_scenario`, :meth:`Scenario.from_arrays`, ...; or a
        path to a ``.toml`` / ``.json`` scenario file, or the file's structure.
    method : str, optional
        One of :data:`METHODS` (default :data:`DEFAULT_METHOD`; for a scenario
        with constraints it does not support, the first method that does, see
        :func:`choose_method`). ``"conic"`` is the certified reference (CVXPY +
        Clarabel, polished).
    **options
        Method-specific options (see each solver's docstring); an unknown
        option raises :class:`~cvxalloc.errors.OptionError` (a ``ValueError``) naming
        the accepted ones.

    Returns
    -------
    Result
        ``status``, ``tokens``, ``objective``, ``certificate``, ...

    Examples
    --------
    >>> import cvxalloc
    >>> res = cvxalloc.solve(cvxalloc.example_scenario(), method="conic")
    >>> res.status, res.certificate.relative_gap < 1e-6
    ('optimal', True)

    A path to a scenario file, or the file's structure as a dict, is read first
    (:func:`cvxalloc.io.as_scenario`): ``cvxalloc.solve("scenario.toml")``.
    """
    scenario = as_scenario(scenario)
    name = choose_method(scenario, method)
    if name not in METHODS:
        raise OptionError(
            f"unknown method {name!r}; choose one of: {', '.join(available_methods())}"
        )
    if getattr(scenario, "auto_service_scv", False):
        return _solve_at_own_service_scv(scenario, name, options)
    _check_server(scenario, name)
    _check_fleet(scenario, name)
    func = _resolve(name)
    params = inspect.signature(func).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not accepts_any:
        allowed = [k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        bad = [k for k in options if k not in allowed]
        if bad:
            raise OptionError(
                f"method {name!r} does not take option(s) {', '.join(map(repr, bad))}; "
                f"it accepts: {', '.join(allowed) or 'none'}"
            )
    kinds = getattr(getattr(scenario, "constraints", None), "kinds", None) or []
    missing = [k for k in kinds if k not in CONSTRAINT_SUPPORT.get(name, ())]
    if missing:
        able = [m for m in METHODS if set(kinds) <= set(CONSTRAINT_SUPPORT.get(m, ()))]
        raise ConstraintError(
            f"method {name!r} does not support the constraint(s) {', '.join(missing)}; "
            f"use method {' or '.join(map(repr, able)) or '(none)'}, or remove the constraint"
        )
    return func(scenario, **options)


#: ``[server] service_scv = "auto"``: the plan's own service scv and the one its model
#: assumed agree to this relative distance (the model's constant, not the certificate).
SERVICE_SCV_RTOL = 1e-4
#: Solves allowed before "auto" is declared unsettled.
SERVICE_SCV_MAX_SOLVES = 30


def _solve_at_own_service_scv(scenario: Scenario, method: str, options: dict) -> Result:
    """Solve a batching scenario whose ``service_scv`` is ``"auto"``: the plan's own.

    The batching model's burst and admission terms take the mix's service scv
    ``c`` as a constant, so that ``W`` is convex in the budgets; ``"auto"`` asks
    for the ``c`` the optimum itself has. Each solve is at a fixed ``c`` and
    certified for that model; ``c`` is moved to the plan's own, ``m2 / m1^2 - 1``
    (secant steps on ``own(t*(c)) - c`` after the first plain one, from the
    minimum budgets' own), until the two agree to :data:`SERVICE_SCV_RTOL`. The
    result is the last solve: its scenario has ``c`` fixed, and
    ``diagnostics["service_scv"]`` says how it was found.
    """
    res: Result | None = None
    c, previous = scenario.service_scv_at(scenario.min_tokens), None
    for solves in range(1, SERVICE_SCV_MAX_SOLVES + 1):
        fixed = scenario.with_service_scv(c)
        warm = {} if "warm_start" in options else warm_options(fixed, res, method)
        res = solve(fixed, method, **options, **warm)
        own = scenario.service_scv_at(res.tokens)
        gap = own - c
        if abs(gap) <= SERVICE_SCV_RTOL * max(1.0, c):
            res.diagnostics["service_scv"] = {"auto": True, "value": c, "own": own,
                                              "solves": solves}  # fmt: skip
            res.message += (
                f'; service_scv "auto" fixed at {c:.4g} (the plan\'s own, {solves} solves)'
            )
            return res
        step = own
        if previous is not None and gap != previous[1]:  # secant on own(t*(c)) - c
            secant = c - gap * (c - previous[0]) / (gap - previous[1])
            step = secant if math.isfinite(secant) and secant >= 0 else own
        previous, c = (c, gap), step
    raise SolverError(
        f'server: service_scv = "auto" did not settle in {SERVICE_SCV_MAX_SOLVES} solves (the '
        f"model assumed {previous[0]:.6g}, the plan had {previous[0] + previous[1]:.6g}); give "
        "service_scv a number"
    )


def fixed_service_scv(scenario: Scenario, method: str | None = None) -> Scenario:
    """``scenario`` with a batching ``service_scv = "auto"`` fixed at its own optimum's.

    What :func:`solve` finds; workflows that solve many nearby scenarios (policies
    over rates, sweeps, fleet plans, the controller, sensitivity) take the model
    fixed once, at the scenario's own rate, and keep it across their grid.
    Unchanged where ``service_scv`` is a number or the model does not use it.
    """
    if not getattr(scenario, "auto_service_scv", False):
        return scenario
    return solve(scenario, method).scenario


def _check_server(scenario: Scenario, name: str) -> None:
    """Refuse a batching server where the method (or a constraint) does not support it."""
    if getattr(scenario, "server", None) is None:
        return
    if name not in BATCHING_SUPPORT:
        raise OptionError(
            f"method {name!r} does not support a batching server ([server] model = "
            f'"batching"); use method {" or ".join(map(repr, BATCHING_SUPPORT))}'
        )


def _check_fleet(scenario, name: str) -> None:
    """Refuse a fleet's approximate router where the method (or a constraint) cannot take it."""
    fleet = getattr(scenario, "fleet", None)
    if fleet is None or fleet.replicas == 1:
        return
    if getattr(queue_model(scenario), "name", "single") != "fleet":
        return  # one replica's own queue model: as without a fleet
    if name not in FLEET_SUPPORT:
        raise OptionError(
            f"method {name!r} does not support {fleet.router} routing ([fleet] router = "
            f'"{fleet.router}"); use method {" or ".join(map(repr, FLEET_SUPPORT))}, or '
            'router = "random"'
        )
    kinds = getattr(getattr(scenario, "constraints", None), "kinds", None) or []
    if "tail" in kinds:  # its Kingman bound is one server's, and has no router in it
        raise ConstraintError(
            f"the tail constraint is not supported with {fleet.router} routing ([fleet] "
            f'router = "{fleet.router}") yet; state the SLO on the mean '
            '(max_mean_system_time) or use router = "random"'
        )
