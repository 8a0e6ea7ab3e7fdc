"""``cvxalloc policy``: certified budgets over a range of arrival rates, and look-ups."""

from __future__ import annotations

import argparse
import math

from ..errors import ScenarioError
from ._common import (
    add_json_option,
    add_method_option,
    add_output_option,
    dumps,
    emit,
    scenario_from_args,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "policy",
        help="certified budgets over arrival rates (a policy file), or look one up",
        description=(
            "Build: solve the scenario at a grid of arrival rates from 0 to just below the "
            "highest stable rate (every grid point certified to 1e-9), refine the grid "
            "until the proven gap of the budgets it answers is under --tolerance at "
            "every probed rate (both relative to max(|U|, weighted accuracy)), and write a "
            "JSON policy file. Query: with --query FILE "
            "--rate R, print the budgets at rate R and their proven gap (evaluated at R)."
        ),
    )
    p.add_argument(
        "scenario",
        nargs="?",
        metavar="SCENARIO",
        help="scenario file (.toml or .json); default: the built-in example",
    )
    add_output_option(p, help="where to write the policy (.json)", formats=(".json",))
    p.add_argument(
        "--points",
        type=int,
        default=None,
        metavar="K",
        help="grid rates before refinement (default: 17)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        metavar="REL",
        help="bound on the interpolation gap relative to max(|U|, weighted accuracy) "
        "(default: 1e-4)",
    )
    add_method_option(
        p,
        help="solver at the grid rates (default: aggregate); 'rounding' for integer budgets",
        metavar="NAME",
    )
    p.add_argument(
        "--arrival-scv",
        metavar="C[,C...]",
        help="build: replace the scenario's [queue] arrival_scv (bursty arrivals, Kingman), "
        "or with several values a policy over arrival_scv too (e.g. 0.5,4,16); query: the "
        "arrival_scv to answer for (default: the scenario's)",
    )
    p.add_argument("--query", metavar="FILE", help="a policy file to look up (with --rate)")
    p.add_argument("--rate", type=float, metavar="R", help="arrival rate, queries per second")
    p.add_argument("--task", metavar="NAME", help="print only this task type's budget")
    add_json_option(p)


def _scv_values(text: str | None) -> list[float] | None:
    """``--arrival-scv 0.5,4,16`` -> [0.5, 4.0, 16.0] (numbers >= 0)."""
    if text is None:
        return None
    out = []
    for part in str(text).split(","):
        try:
            c = float(part)
        except ValueError:
            raise ScenarioError(
                f"--arrival-scv {text!r}: give numbers >= 0 separated by commas"
            ) from None
        if not (math.isfinite(c) and c >= 0):
            raise ScenarioError(f"--arrival-scv {text!r}: every value must be a number >= 0")
        out.append(c)
    return out


def _query(args: argparse.Namespace) -> int:
    from ..policy import load_policy

    if args.rate is None:
        raise ScenarioError("--query FILE needs --rate R (queries per second)")
    extra = [
        o
        for o, v in (
            ("SCENARIO", args.scenario),
            ("--output", args.output),
            ("--points", args.points),
            ("--tolerance", args.tolerance),
            ("--method", args.method),
        )
        if v is not None
    ]
    if extra:
        raise ScenarioError(
            f"--query looks up an existing policy; {', '.join(extra)} apply to building one"
        )
    scv = _scv_values(args.arrival_scv)
    if scv is not None and len(scv) != 1:
        raise ScenarioError("--query answers for one --arrival-scv value")
    c = None if scv is None else scv[0]
    pol = load_policy(args.query)
    ans = pol.lookup(args.rate, c)
    if args.task is not None:
        value = pol.budget(args.task, args.rate, c)
        if args.json:
            emit(
                dumps({"task": args.task, "rate": ans.rate, "tokens": value, "gap": ans.gap}), None
            )
        else:
            emit(f"{value:.10g}", None)
        return 0
    if args.json:
        emit(dumps(ans.to_dict(pol.names)), None)
        return 0
    head = (
        f"rate {ans.rate:.6g} queries/s  (policy range {pol.rate_range[0]:g} to "
        f"{pol.rate_range[1]:.6g})"
    )
    emit(f"{head}\n{ans.summary(pol.names)}", None)
    return 0


def run(args: argparse.Namespace) -> int:
    from ..policy import DEFAULT_POINTS, DEFAULT_TOLERANCE, build_policy

    if args.query is not None:
        return _query(args)
    if args.rate is not None or args.task is not None:
        raise ScenarioError("--rate and --task look up a policy: give --query FILE")
    tol = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if not (math.isfinite(tol) and tol > 0):
        raise ScenarioError(f"--tolerance {tol:g}: give a number > 0")
    points = DEFAULT_POINTS if args.points is None else args.points
    scv = _scv_values(args.arrival_scv)
    sc = scenario_from_args(args)
    pol = build_policy(
        sc,
        points=points,
        tolerance=tol,
        method=args.method,
        arrival_scv=None if scv is None else (scv[0] if len(scv) == 1 else scv),
    )
    text = dumps(pol.to_dict())
    if args.output is None:
        emit(text, None)
        return 0
    emit(text, args.output)
    info = pol.info
    summary = {
        "output": args.output,
        "rates": int(pol.rates.size),
        "rate_range": list(pol.rate_range),
        "integer": pol.integer,
        "arrival_scv_range": list(pol.arrival_scv_range),
        "max_grid_relative_gap": info["max_grid_relative_gap"],
        "interpolation_max_relative_gap": info["interpolation_max_relative_gap"],
        "tolerance_met": info["tolerance_met"],
        "seconds": info["seconds"],
    }
    if args.json:
        emit(dumps(summary), None)
    else:
        emit(f"wrote {args.output}: {pol.summary()}", None)
    return 0
