"""``cvxalloc sensitivity``: how the optimal budgets move with traffic and mix."""

from __future__ import annotations

import argparse
import math

from ..errors import ScenarioError
from ._common import (
    PER_TASK,
    add_json_option,
    add_output_option,
    add_scenario_argument,
    scenario_from_args,
    write_output,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sensitivity",
        help="derivatives of the optimal budgets and utility w.r.t. arrival rate and mix",
        description=(
            "Solve the scenario, then differentiate the optimum (implicit function theorem "
            "on the active set): how the optimal budgets, utility, mean system time and "
            "utilization move when the arrival rate grows or the mix shifts toward one "
            "task. Without SCENARIO, uses the built-in example. Details: docs/sensitivity.md."
        ),
    )
    add_scenario_argument(p, optional=True)
    p.add_argument(
        "--change",
        type=float,
        default=0.10,
        metavar="FRACTION",
        help="relative traffic change shown in the report (default 0.10 = +10%%)",
    )
    add_json_option(p)
    add_output_option(p, formats=PER_TASK)


def run(args: argparse.Namespace) -> int:
    from ..sensitivity import sensitivity

    if not math.isfinite(args.change) or args.change <= -1:
        raise ScenarioError(
            f"--change must be a finite fraction > -1 (got {args.change}); 0.1 means +10%"
        )
    sc = scenario_from_args(args)
    sens = sensitivity(sc)
    write_output(
        args,
        text=lambda: sens.summary(change=args.change),
        data=sens.to_dict,
        table=sens.to_table,
    )
    return 0
