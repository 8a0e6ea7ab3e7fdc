"""``cvxalloc plan``: how many replicas, and which budgets, certified together."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from pathlib import Path

from ..errors import ScenarioError, UnstableError
from ..io import read_structured_file
from ..plan import plan_fleet
from ..queue.fleet import ROUTERS
from ..scenario import Scenario
from ..scenario_format import scenario_fields
from ..solve import DEFAULT_METHOD
from ..tables import read_task_table
from ._common import (
    PER_TASK,
    add_json_option,
    add_method_option,
    add_output_option,
    add_plot_option,
    write_output,
)

_DESCRIPTION = (
    "For every number of replicas k = 1..K of the scenario's server behind its router "
    "([fleet] router; [queue] is the whole fleet's traffic), the certified optimum of the "
    "budgets, or why there is none (unstable, infeasible); then the k that maximizes "
    "U - k x C with --replica-cost C, or else the fewest replicas with an allocation. Every k "
    "is enumerated and each optimum certified, so the joint choice is certified: its gap is "
    "printed. C is utility per query per replica: from P dollars per replica-hour, V dollars "
    "per correct answer and lam queries/s, C = P / (3600 lam V) (docs/fleet.md). A scenario "
    "that one replica cannot serve (e.g. written by 'cvxalloc traffic' from a busy log) is "
    "accepted."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="choose the number of replicas and the budgets together, certified",
        description=_DESCRIPTION,
    )
    p.add_argument("scenario", metavar="SCENARIO", help="scenario file (.toml or .json)")
    p.add_argument(
        "--max-replicas",
        type=int,
        required=True,
        metavar="K",
        help="try k = 1..K replicas",
    )
    p.add_argument(
        "--replica-cost",
        type=float,
        metavar="C",
        help="utility per query per replica; the plan maximizes U - k C (default: the fewest "
        "replicas with an allocation)",
    )
    p.add_argument(
        "--router",
        choices=list(ROUTERS),
        help="replace the scenario's [fleet] router (default: the scenario's, else random)",
    )
    add_method_option(p, help=f"solver at each k (default: {DEFAULT_METHOD})")
    p.add_argument("--uniform", action="store_true", help="also the best uniform budget at each k")
    add_json_option(p, help="print one JSON object (keys in docs/cli.md)")
    add_output_option(p, formats=PER_TASK)
    add_plot_option(p, help="draw utility, W and tokens against k")


def _scenario(path: str, k_max: int, router: str | None) -> Scenario | dict:
    """The file's structure, or, when its tasks are a table (``tasks = "file.csv"``, read
    relative to the file), its scenario at ``k_max`` replicas (the most stable count; the
    plan changes only the replicas)."""
    data = read_structured_file(path)
    if not isinstance(data.get("tasks"), str):
        return data  # plan_fleet reads it, also when one replica cannot carry the load
    fleet = data.get("fleet") or {}
    if not isinstance(fleet, Mapping):
        raise ScenarioError(f"fleet must be a table (got {type(fleet).__name__})")
    fleet = {**fleet, "replicas": k_max, **({"router": router} if router else {})}
    cols = read_task_table(Path(path).parent / data["tasks"])
    try:
        return Scenario(**scenario_fields({**data, "fleet": fleet}, cols))
    except UnstableError as exc:
        raise UnstableError(
            f"{exc}; even {k_max} replicas cannot carry it: raise --max-replicas"
        ) from None


def run(args: argparse.Namespace) -> int:
    if args.max_replicas < 1:
        raise ScenarioError(f"--max-replicas must be >= 1 (got {args.max_replicas})")
    cost = args.replica_cost
    if cost is not None and not (math.isfinite(cost) and cost >= 0):
        raise ScenarioError(f"--replica-cost must be a finite number >= 0 (got {cost:g})")
    if args.plot is not None and not str(args.plot).lower().endswith(".png"):
        raise ScenarioError(f"--plot {args.plot!r}: the figure is a PNG; name it *.png")
    plan = plan_fleet(
        _scenario(args.scenario, args.max_replicas, args.router),
        args.max_replicas,
        replica_cost=cost,
        router=args.router,
        method=args.method,
        uniform=args.uniform,
    )
    if args.plot is not None:
        from ..plots import plan_figure, save

        save(plan_figure(plan), args.plot, what="--plot")
    write_output(args, text=plan.summary, data=plan.to_dict, table=lambda: _table(plan))
    if args.plot is not None:
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _table(plan) -> dict:
    """The chosen replica count's budgets, one row per task (``--output FILE.csv``)."""
    best = plan.best
    if best is None or best.result is None:
        raise ScenarioError("no replica count has an allocation: there is no table to write")
    return best.result.to_table()
