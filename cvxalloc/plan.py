"""How many replicas, and which budgets: the certified joint choice.

Layer: workflows.

For each number of replicas ``k = 1..K`` the scenario's fleet (``[fleet]``
router, one replica's ``[server]``, the whole fleet's ``[queue]`` traffic) has a
certified optimum of the budgets, ``U_k`` with Frank-Wolfe gap ``g_k``
(``U*_k <= U_k + g_k``); a ``k`` whose queue is unstable even at the minimum
budgets, or whose constraints cannot be met, has no allocation and is named so
(both proven exactly, before any solve). The plan then picks

* with a replica cost ``C`` (utility per query per replica): the ``k`` that
  maximizes the net utility ``U_k - k C``;
* without one: the fewest replicas whose optimum exists (stable, meeting the
  scenario's constraints, e.g. a mean-latency SLO).

Since every ``k`` is enumerated and each optimum certified, the joint answer is
certified too: the best net utility over all ``k`` and all budgets is at most
``max_k (U_k + g_k - k C)``, so the chosen plan is within
``max_k (U_k + g_k - k C) - (U_k^ - k^ C)`` of it (:attr:`Plan.gap`).

Units: ``U`` is utility per query (weighted correct answers minus ``gamma W``),
so ``C`` is the cost of one replica per query served by the fleet. From a price
``P`` dollars per replica-hour, a value ``V`` dollars per correct answer (weight
1) and the fleet's ``lam`` queries per second: ``C = P / (3600 lam V)``. E.g.
``P = $2`` per GPU-hour (one GPU per replica), ``V = $0.01``, ``lam = 5.53``/s:
``C = 2 / (3600 x 5.53 x 0.01) = 0.01005`` (docs/fleet.md).

Each ``k`` starts the aggregate solver from its neighbour's slack and second
moment (warm start), so a plan over 64 replica counts costs a few solves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import status as st
from .baselines import best_uniform
from .errors import CvxallocError, ScenarioError, UnstableError
from .objective import at_allocation
from .queue import Latency
from .queue.fleet import ROUTERS, Fleet
from .result import Result, jsonable
from .scenario import Scenario
from .solve import choose_method, solve, warm_options

__all__ = ["Plan", "PlanEntry", "plan_fleet", "UNSTABLE", "INFEASIBLE"]

#: Status of a replica count that no allocation keeps stable.
UNSTABLE = "unstable"
#: Status of a replica count whose constraints no allocation meets.
INFEASIBLE = st.INFEASIBLE
#: Largest ``max_replicas`` accepted.
MAX_PLAN_REPLICAS = 4096


@dataclass
class PlanEntry:
    """One replica count: its certified optimum, or why it has none.

    Attributes
    ----------
    replicas : int
    status : str
        The solver's status, ``"unstable"`` or ``"infeasible"``.
    result : Result or None
        The optimum (None without one).
    message : str
        Why there is no optimum (or the solver's message).
    uniform : Result or None
        The best uniform budget at this ``k`` (:func:`cvxalloc.baselines.best_uniform`),
        when asked for.
    """

    replicas: int
    status: str
    result: Result | None = None
    message: str = ""
    uniform: Result | None = None

    @property
    def solved(self) -> bool:
        """Whether this ``k`` has a certified allocation."""
        return self.result is not None and np.isfinite(self.result.certificate.gap)

    def net(self, cost: float) -> float:
        """``U_k - k C`` (``-inf`` without an allocation)."""
        return self.result.objective - self.replicas * cost if self.solved else -math.inf

    def bound(self, cost: float) -> float:
        """``U_k + g_k - k C``: no allocation at this ``k`` does better (``-inf`` if none)."""
        if self.result is None:
            return -math.inf
        return self.result.certificate.upper_bound - self.replicas * cost

    def to_dict(self, cost: float | None) -> dict[str, Any]:
        """One entry of ``per_replicas``."""
        res = self.result
        out: dict[str, Any] = {"replicas": self.replicas, "status": self.status}
        if res is None:
            out.update(objective=None, mean_system_time=None, gap=None, message=self.message)
        else:
            out.update(
                objective=res.objective,
                mean_system_time=res.mean_system_time,
                gap=res.certificate.gap,
                utilization=res.utilization,
                accuracy=res.accuracy,
                tokens={n: float(x) for n, x in zip(res.names, res.tokens)},
            )
            if cost is not None:
                out["cost"] = self.replicas * cost
                out["net_objective"] = self.net(cost)
        if self.uniform is not None:
            u = self.uniform
            out["uniform"] = {
                "budget": u.diagnostics.get("budget"),
                "objective": u.objective,
                "mean_system_time": u.mean_system_time,
                "status": u.status,
            }
        return jsonable(out)


@dataclass
class Plan:
    """The joint choice of replicas and budgets, certified.

    Attributes
    ----------
    entries : list of PlanEntry
        ``k = 1..max_replicas`` in order.
    chosen : int or None
        The chosen ``k`` (None when no ``k`` has an allocation).
    criterion : str
        ``"net utility"`` (a replica cost was given) or ``"fewest replicas"``.
    replica_cost : float or None
        ``C``, utility per query per replica.
    router : str
    method : str
    elapsed : float
        Wall-clock seconds of the plan.
    """

    entries: list[PlanEntry]
    chosen: int | None
    criterion: str
    replica_cost: float | None
    router: str
    method: str
    elapsed: float = 0.0
    names: list[str] = field(default_factory=list)

    @property
    def best(self) -> PlanEntry | None:
        """The chosen entry."""
        return None if self.chosen is None else self.entries[self.chosen - 1]

    @property
    def upper_bound(self) -> float:
        """A bound on the best net utility over every ``k <= K`` and every allocation.

        ``inf`` when some ``k`` has neither an allocation nor a proof that it has
        none (a solver failed there): then no joint bound holds.
        """
        cost = self.replica_cost or 0.0
        if any(e.result is None and e.status not in (UNSTABLE, INFEASIBLE) for e in self.entries):
            return math.inf
        if self.criterion == "fewest replicas":
            best = self.best
            return best.bound(0.0) if best is not None else -math.inf
        return max(e.bound(cost) for e in self.entries)

    @property
    def gap(self) -> float:
        """Certified: the best plan's net utility is at most this above the chosen one's."""
        best = self.best
        if best is None:
            return math.inf
        return max(self.upper_bound - best.net(self.replica_cost or 0.0), 0.0)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``cvxalloc plan --json`` (keys in docs/cli.md)."""
        best = self.best
        res = None if best is None else best.result
        out: dict[str, Any] = {
            "replicas": self.chosen,
            "criterion": self.criterion,
            "router": self.router,
            "method": self.method,
            "replica_cost": self.replica_cost,
            "tokens": None if res is None else {n: float(x) for n, x in zip(res.names, res.tokens)},
            "objective": None if res is None else res.objective,
            "net_objective": None if best is None else best.net(self.replica_cost or 0.0),
            "accuracy": None if res is None else res.accuracy,
            "mean_system_time": None if res is None else res.mean_system_time,
            "utilization": None if res is None else res.utilization,
            "status": "no allocation" if res is None else res.status,
            "certificate": {
                "gap": self.gap,
                "upper_bound": self.upper_bound,
                "budgets_gap": None if res is None else res.certificate.gap,
                "certified": bool(np.isfinite(self.gap)),
            },
            "per_replicas": [e.to_dict(self.replica_cost) for e in self.entries],
            "elapsed_seconds": self.elapsed,
        }
        if res is not None:
            fleet = res.to_dict(per_type=False).get("fleet")
            if fleet is not None:
                out["fleet"] = fleet
        return jsonable(out)

    def summary(self) -> str:
        """The table per ``k`` and the choice, with its certificate."""
        cost = self.replica_cost
        head = f"{'k':>4}  {'status':<18} {'utility U':>11} {'W (s)':>10} {'util.':>6} "
        head += f"{'mean tokens':>11} {'gap':>9}"
        if cost is not None:
            head += f" {'U - kC':>11}"
        if any(e.uniform is not None for e in self.entries):
            head += f" {'uniform U':>11}"
        lines = [head, "-" * len(head)]
        for e in self.entries:
            lines.append(_row(e, cost, e.replicas == self.chosen))
        lines.append("")
        lines += self._choice_lines()
        return "\n".join(lines)

    def _choice_lines(self) -> list[str]:
        best = self.best
        if best is None:
            return [f"no replica count up to {len(self.entries)} has a stable allocation"]
        res = best.result
        rule = (
            f"maximizes U - k x {self.replica_cost:g}"
            if self.criterion == "net utility"
            else "is the fewest replicas with an allocation"
        )
        out = [f"chosen: {best.replicas} replicas ({self.router} routing): {rule}"]
        names = res.names
        shown = ", ".join(f"{n} {x:,.0f}" for n, x in list(zip(names, res.tokens))[:8])
        out.append(f"budgets: {shown}" + (" ..." if len(names) > 8 else ""))
        gap = self.gap
        if np.isfinite(gap):
            out.append(
                f"certified: every k <= {len(self.entries)} enumerated, each optimum certified; "
                f"the best plan is at most {gap:.3e} above this one (budgets' own gap "
                f"{res.certificate.gap:.3e})"
            )
        else:
            out.append("not certified: a replica count failed to solve (see its status)")
        out.append(f"{self.elapsed:.2f} s wall")
        return out


def _row(e: PlanEntry, cost: float | None, chosen: bool) -> str:
    mark = "*" if chosen else " "
    if e.result is None:
        text = f"{e.replicas:>3}{mark}  {e.status:<18} {'-':>11} {'-':>10} {'-':>6} "
        text += f"{'-':>11} {'-':>9}"
        if cost is not None:
            text += f" {'-':>11}"
        return text
    r = e.result
    text = (
        f"{e.replicas:>3}{mark}  {e.status:<18} {r.objective:>11.6f} {r.mean_system_time:>10.4g} "
        f"{r.utilization:>6.3f} {float(r.scenario.probability @ r.tokens):>11,.0f} "
        f"{r.certificate.gap:>9.1e}"
    )
    if cost is not None:
        text += f" {e.net(cost):>11.6f}"
    if e.uniform is not None:
        text += f" {e.uniform.objective:>11.6f}"
    return text


def plan_fleet(
    scenario: Scenario | Mapping[str, Any],
    max_replicas: int,
    *,
    replica_cost: float | None = None,
    router: str | None = None,
    method: str | None = None,
    uniform: bool = False,
    warm: bool = True,
) -> Plan:
    """The certified choice of replica count and budgets for ``k = 1..max_replicas``.

    Parameters
    ----------
    scenario : Scenario or dict
        The workload: ``[queue]`` is the whole fleet's traffic, ``[server]`` one
        replica. A dict in the file structure is accepted, so a scenario that one
        replica cannot serve (``cvxalloc traffic`` on a busy log) can be planned.
        Its ``[fleet] replicas`` is ignored (every ``k`` is tried).
    max_replicas : int
        ``K >= 1``.
    replica_cost : float, optional
        ``C >= 0``, utility per query per replica (see the module docstring for
        the conversion from dollars). None: the fewest replicas with an
        allocation.
    router : str, optional
        Replaces the scenario's ``[fleet] router`` (default: the scenario's, else
        ``"random"``).
    method : str, optional
        Solver (default: :data:`cvxalloc.solve.DEFAULT_METHOD`); ``"aggregate"``
        is warm-started from the neighbouring ``k``.
    uniform : bool
        Also find the best uniform budget at every ``k``.
    warm : bool
        Start each ``k`` from its neighbour's optimum (default; ``False`` solves each
        from scratch, for comparison).

    Raises
    ------
    ScenarioError
        Bad arguments; a router the replica's model does not take.
    """
    started = time.perf_counter()
    k_max, cost = _check_args(max_replicas, replica_cost)
    top, data, router = _top_scenario(scenario, k_max, router)
    name = choose_method(top, method) if top is not None else (method or "aggregate")
    entries: list[PlanEntry] = []
    prev = None
    for k in range(k_max, 0, -1):  # from the most replicas: the first is stable if any is
        entry, prev = _solve_k(top, data, k, router, method, prev if warm else None, uniform)
        entries.append(entry)
    entries.reverse()
    chosen = _choose(entries, cost)
    return Plan(
        entries=entries,
        chosen=chosen,
        criterion="fewest replicas" if cost is None else "net utility",
        replica_cost=cost,
        router=router,
        method=name,
        elapsed=time.perf_counter() - started,
        names=[] if top is None else list(top.names),
    )


def _check_args(max_replicas: Any, replica_cost: Any) -> tuple[int, float | None]:
    if isinstance(max_replicas, bool) or not isinstance(max_replicas, (int, np.integer)):
        raise ScenarioError(f"max_replicas must be a whole number >= 1 (got {max_replicas!r})")
    if not 1 <= max_replicas <= MAX_PLAN_REPLICAS:
        raise ScenarioError(f"max_replicas must be in 1..{MAX_PLAN_REPLICAS} (got {max_replicas})")
    if replica_cost is None:
        return int(max_replicas), None
    c = float(replica_cost)
    if not (math.isfinite(c) and c >= 0):
        raise ScenarioError(
            f"replica_cost must be a finite number >= 0 (got {replica_cost!r}); it is utility "
            "per query per replica (docs/fleet.md converts it from dollars)"
        )
    return int(max_replicas), c


def _top_scenario(scenario, k_max: int, router: str | None):
    """The scenario at ``k_max`` replicas (None if unstable there), its file structure
    (None when a Scenario was given) and the router."""
    fleet = getattr(scenario, "fleet", None)
    if isinstance(scenario, Scenario):
        data = None
        router = router or (fleet.router if fleet is not None else "random")
    else:
        data = dict(scenario)
        fleet = data.get("fleet") or {}
        if not isinstance(fleet, Mapping):
            raise ScenarioError(f"fleet must be a table (got {type(fleet).__name__})")
        router = router or fleet.get("router", "random")
    if router not in ROUTERS:
        Fleet(1, router)  # the error names the routers
    top_fleet = Fleet(k_max, router)
    try:
        if data is None:
            top = scenario.with_fleet(top_fleet)
        else:
            data["fleet"] = top_fleet.to_dict()
            top = Scenario.from_dict(data)
    except UnstableError:  # every k is unstable: each says so through the file structure
        top = None
        data = scenario.to_dict() if data is None else data
    return top, data, router


def _solve_k(top, data, k: int, router: str, method, warm, uniform: bool):
    """The entry of ``k`` replicas and the warm start it hands to ``k - 1``."""
    try:
        sc = _at(top, data, k, router)
    except UnstableError as exc:
        return PlanEntry(k, UNSTABLE, message=str(exc)), warm
    options = {}
    if warm is not None and warm_options(sc, warm, method):  # the rule of every workflow
        options["warm_start"] = _warm_start(sc, warm)
    try:
        res = solve(sc, method=method, **options)
    except UnstableError as exc:
        return PlanEntry(k, UNSTABLE, message=str(exc)), warm
    except CvxallocError as exc:
        kind = type(exc).__name__
        status = INFEASIBLE if kind == "InfeasibleError" else st.SOLVER_ERROR
        if kind in ("OptionError", "ConstraintError"):
            raise
        return PlanEntry(k, status, message=str(exc)), warm
    entry = PlanEntry(k, res.status, result=res, message=res.message)
    if uniform:
        entry.uniform = best_uniform(sc)
    return entry, res


def _at(top, data, k: int, router: str) -> Scenario:
    """The scenario at ``k`` replicas (raises UnstableError when no allocation is stable)."""
    if top is not None:
        return top.with_fleet(Fleet(k, router))
    data = dict(data)
    data["fleet"] = {"replicas": k, "router": router}
    return Scenario.from_dict(data)


def _warm_start(sc, prev: Result) -> tuple[float, float]:
    """The queue scalars ``(X, Y)`` of ``sc`` at the previous optimum's slack and ``m2``."""
    lat_prev = Latency(prev.scenario)
    mo = lat_prev.moments(prev.tokens)
    u = max(1.0 - mo.rho, 1e-12)
    X = Latency(at_allocation(sc, prev.tokens)).lam / u
    return X, 0.5 * X * X * mo.m2


def _choose(entries: list[PlanEntry], cost: float | None) -> int | None:
    solved = [e for e in entries if e.solved]
    if not solved:
        return None
    if cost is None:
        return solved[0].replicas
    best = max(solved, key=lambda e: (e.net(cost), -e.replicas))
    return best.replicas
