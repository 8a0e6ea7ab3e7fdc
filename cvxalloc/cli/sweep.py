"""``cvxalloc sweep``: the frontier over the latency weight or the latency SLO."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..errors import ScenarioError
from ..queue.tail import check_quantiles
from ..solve import DEFAULT_METHOD
from ._common import (
    add_json_option,
    add_method_option,
    add_plot_option,
    add_progress_option,
    add_scenario_argument,
    add_solver_options,
    dumps,
    emit,
    parse_options,
    scenario_from_args,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="trace the accuracy-latency frontier over the latency weight or an SLO",
        description=(
            "Solve the scenario at each latency weight (--latency-weight A:B:N), each "
            "mean-latency SLO in seconds (--slo A:B:N, the max_mean_system_time constraint) "
            "or each tail SLO in seconds (--tail A:B:N, the tail constraint at --quantile), "
            "N points from A to B (geometric with --log). Prints one row per point: utility, "
            "weighted accuracy, mean system time, utilization, certified gap and the best "
            "uniform budget under the same constraints; with --tail or --quantile also the "
            "exact percentile of the system time. Points whose constraints conflict are "
            "reported as infeasible."
        ),
    )
    add_scenario_argument(p)
    grid = p.add_mutually_exclusive_group(required=True)
    grid.add_argument(
        "--latency-weight", metavar="A:B:N", help="latency weights from A to B, N points"
    )
    grid.add_argument(
        "--slo", metavar="A:B:N", help="max_mean_system_time values (seconds) from A to B, N points"
    )
    grid.add_argument(
        "--tail",
        metavar="A:B:N",
        help="tail SLO max_system_time values (seconds) from A to B, N points, at --quantile",
    )
    p.add_argument(
        "--quantile",
        type=float,
        metavar="P",
        help="the percentile level of --tail (default 0.99); with the other grids, adds the "
        "exact P-percentile of the system time at each point",
    )
    p.add_argument("--log", action="store_true", help="geometric spacing (A, B > 0)")
    add_method_option(p, help=f"solver (default: {DEFAULT_METHOD}, which honours every constraint)")
    add_solver_options(p)
    p.add_argument(
        "--no-uniform", action="store_true", help="skip the best uniform budget at each point"
    )
    p.add_argument("--csv", metavar="FILE", help="write the points as CSV to FILE")
    add_json_option(p, help="print the points as one JSON object")
    add_plot_option(p, help="draw accuracy against mean system time", metavar="PNG")
    add_progress_option(p)


def parse_grid(text: str, flag: str, log: bool) -> np.ndarray:
    """``"A:B:N"`` -> N points from A to B (geometric if ``log``)."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ScenarioError(f"{flag} {text!r}: expected A:B:N (e.g. 0.0001:0.01:20)")
    try:
        a, b = float(parts[0]), float(parts[1])
        n = int(parts[2])
    except ValueError:
        raise ScenarioError(
            f"{flag} {text!r}: A and B must be numbers and N a whole number"
        ) from None
    if not (np.isfinite(a) and np.isfinite(b)):
        raise ScenarioError(f"{flag} {text!r}: A and B must be finite")
    if n < 1:
        raise ScenarioError(f"{flag} {text!r}: N must be >= 1 (got {n})")
    if log:
        if a <= 0 or b <= 0:
            raise ScenarioError(f"{flag} {text!r}: --log needs A > 0 and B > 0")
        return np.geomspace(a, b, n)
    return np.linspace(a, b, n)


def run(args: argparse.Namespace) -> int:
    from ..sweep import sweep_latency_weight, sweep_slo, sweep_tail

    quantile = None
    if args.quantile is not None:
        quantile = check_quantiles([args.quantile], "--quantile")[0]
    if args.latency_weight is not None:
        values = parse_grid(args.latency_weight, "--latency-weight", args.log)
        if np.any(values < 0):
            raise ScenarioError("--latency-weight: values must be >= 0")
    else:
        flag = "--slo" if args.slo is not None else "--tail"
        values = parse_grid(args.slo if args.slo is not None else args.tail, flag, args.log)
        if np.any(values <= 0):
            raise ScenarioError(f"{flag}: values must be > 0 seconds")
    if args.tail is not None:
        quantile = 0.99 if quantile is None else quantile
    if args.plot is not None and not args.plot.lower().endswith(".png"):
        raise ScenarioError(f"--plot {args.plot!r}: give a .png file name")
    sc = scenario_from_args(args)
    options = parse_options(args.option)
    fn = (
        sweep_latency_weight
        if args.latency_weight is not None
        else sweep_slo
        if args.slo is not None
        else sweep_tail
    )
    if "progress" in options:
        raise ScenarioError("--option progress: use --no-progress")
    sw = fn(
        sc,
        values,
        method=args.method,
        uniform=not args.no_uniform,
        progress=False if args.no_progress else None,
        quantile=quantile,
        **options,
    )
    if not sw.solved.any():
        raise ScenarioError(f"no point of the sweep has a solution; first: {sw.messages[0]}")
    if args.csv is not None:
        emit(sw.to_csv(), args.csv)
    if args.plot is not None:
        from .. import plots

        plots.save(plots.sweep_figure(sw, sc), args.plot, what="--plot")
    if args.json:
        emit(dumps(sw.to_dict()), None)
    else:
        emit(sw.summary(), None)
    for path in (args.csv, args.plot):
        if path is not None:
            print(f"wrote {path}", file=sys.stderr)
    return 0
