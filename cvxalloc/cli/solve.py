"""``cvxalloc solve``: the optimal per-type budgets, certified."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..baselines import baseline_dict, baselines
from ..solve import solve
from ._common import (
    PER_TASK,
    add_json_option,
    add_method_option,
    add_output_option,
    add_quantiles_argument,
    add_scenario_argument,
    add_solver_options,
    parse_options,
    quantiles_from_args,
    scenario_from_args,
    write_output,
)

#: Above this many types the baselines (uniform budget search) are skipped.
BASELINE_MAX_TYPES = 10_000


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "solve",
        help="find the optimal per-type token budgets, with a certificate",
        description=(
            "Solve a scenario: maximize weighted accuracy minus latency_weight x mean system "
            "time. Prints a per-type table (tokens, accuracy, service time), W, utilization, "
            "the utility against the best uniform, minimum and maximum budgets, and the "
            "certified (Frank-Wolfe) gap. Without SCENARIO, solves the built-in example."
        ),
    )
    add_scenario_argument(p, optional=True)
    add_method_option(p)
    add_json_option(p, help="print the result as one JSON object (keys in docs/cli.md)")
    add_output_option(p, formats=PER_TASK)
    add_solver_options(p)
    p.add_argument(
        "--no-baselines", action="store_true", help="skip the uniform/minimum/maximum comparison"
    )
    add_quantiles_argument(p)
    p.add_argument(
        "--integer",
        action="store_true",
        help="round the continuous optimum to the allowed budgets (levels/step, "
        "default whole tokens) with a local search; certified against the "
        "continuous bound (exact optimum: --method mixed-integer)",
    )


def run(args: argparse.Namespace) -> int:
    sc = scenario_from_args(args)
    levels = quantiles_from_args(args)
    result = solve(sc, method=args.method, **parse_options(args.option))
    if args.integer and result.method not in ("rounding", "mixed-integer"):
        from ..integer import round_allocation

        result = round_allocation(sc, continuous=result)
    if result.method not in ("rounding", "mixed-integer"):
        _warn_off_menu(sc)
    base = None
    if not args.no_baselines and sc.n <= BASELINE_MAX_TYPES:
        base = baselines(result.scenario)  # the model the optimum was certified on

    def data() -> dict:
        out = result.to_dict(quantiles=levels, bulk=True)
        if base is not None:
            out["baselines"] = {name: baseline_dict(b) for name, b in base.items()}
        return out

    write_output(args, text=lambda: result.summary(base, levels), data=data, table=result.to_table)
    return 0


def _warn_off_menu(sc) -> None:
    """Say so when continuous budgets ignore the scenario's menus (levels) or grid steps."""
    if set(map(type, sc.levels)) == {type(None)} and bool(np.all(sc.step == 1.0)):
        return  # (at 10^6 types the loop below costs 0.07 s)
    named = [
        name
        for name, levels, step in zip(sc.names, sc.levels, sc.step)
        if levels is not None or step != 1.0
    ]
    if not named:
        return
    shown = ", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else "")
    print(
        f"cvxalloc solve: warning: {shown} allow only the budgets of their levels or step; "
        "these continuous budgets are off them: add --integer (rounded, certified against "
        "the continuous bound) or --method mixed-integer (exact)",
        file=sys.stderr,
    )
