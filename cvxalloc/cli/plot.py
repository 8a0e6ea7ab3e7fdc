"""``cvxalloc plot``: the accuracy-latency frontier and the allocation, as a PNG."""

from __future__ import annotations

import argparse
import sys

from ..errors import ScenarioError
from ._common import (
    add_method_option,
    add_output_option,
    add_progress_option,
    add_scenario_argument,
    scenario_from_args,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="draw the accuracy-latency frontier and the per-type allocation to a PNG",
        description=(
            "Sweep the latency weight over a geometric grid around the scenario's own "
            "(optimal and best uniform budget at each weight) and draw weighted accuracy "
            "against mean system time, with the scenario's optimum marked; beside it, the "
            "optimal tokens of each type within its bounds. Without SCENARIO, the built-in "
            "example."
        ),
    )
    add_scenario_argument(p, optional=True)
    add_output_option(
        p,
        help="PNG file to write (default: cvxalloc_frontier.png)",
        metavar="PNG",
        default="cvxalloc_frontier.png",
        formats=(".png",),
    )
    p.add_argument(
        "--points", type=int, default=25, help="latency weights in the sweep (default: 25)"
    )
    p.add_argument(
        "--decades",
        type=float,
        default=2.0,
        help="the sweep spans latency_weight x 10^[-D, D] (default: 2)",
    )
    add_method_option(p)
    add_progress_option(p)


def run(args: argparse.Namespace) -> int:
    from ..plots import default_latency_weights, frontier_sweep, save, scenario_figure

    if args.points < 2:
        raise ScenarioError(f"--points must be >= 2 (got {args.points})")
    if args.decades <= 0:
        raise ScenarioError(f"--decades must be > 0 (got {args.decades})")
    if not str(args.output).lower().endswith(".png"):
        raise ScenarioError(f"--output {args.output!r}: the figure is a PNG; name it *.png")
    sc = scenario_from_args(args)
    weights = default_latency_weights(sc, args.points, args.decades)
    progress = False if args.no_progress else None
    sweep = frontier_sweep(sc, weights, method=args.method, progress=progress)
    fig = scenario_figure(sc, sweep=sweep, method=args.method)
    path = save(fig, args.output)
    print(f"wrote {path}", file=sys.stderr)
    return 0
