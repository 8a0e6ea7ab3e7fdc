"""``cvxalloc control``: replay a request log under a budget controller and static plans."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import ScenarioError
from ..io import example_scenario, load_scenario
from ._common import (
    add_json_option,
    add_output_option,
    add_plot_option,
    write_output,
)
from .traffic import add_log_arguments, read_log_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "control",
        help="replay a request log under an adaptive budget controller, static plans, an oracle",
        description=(
            "Replay a request log's arrival times through the scenario's server (one FIFO server, "
            "or a batching [server] with its max_running) while a controller "
            "re-plans the budgets at window boundaries from what it has seen (the rate of "
            "the last window, never below the long-run average the static plan is for, plus "
            "the queue's backlog / window; with --type-column or --tokens-column also the "
            "type mix and answer lengths). Beside it on the same replay: the static optimum "
            "at the log's average, "
            "the best uniform budget, and an oracle that knows each window's rate. Prints "
            "realized accuracy, mean and p95/p99 system time and realized utility per "
            "strategy, with intervals over seeds."
        ),
    )
    p.add_argument("log", metavar="LOG", help="request log (.csv or JSON lines)")
    p.add_argument(
        "--scenario",
        metavar="FILE",
        help="scenario (.toml or .json; default: the built-in example)",
    )
    p.add_argument(
        "--policy",
        metavar="FILE",
        help="policy file for the adaptive controller (default: built from the scenario "
        "for the log's average mix and answer lengths); its scenario is used",
    )
    add_log_arguments(p)
    p.add_argument(
        "--utilization",
        type=float,
        default=0.7,
        metavar="U",
        help="rescale time so the static plan runs at this utilization (default 0.7; "
        "0 replays the times as they are)",
    )
    p.add_argument(
        "--window",
        type=float,
        metavar="SECONDS",
        help="seconds of the replay between re-plans (default: the span / 60)",
    )
    p.add_argument("--seeds", type=int, default=10, metavar="K", help="replications (default 10)")
    p.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    p.add_argument(
        "--estimator",
        choices=("floor", "cautious", "last"),
        default="floor",
        help="rate estimate: max(last window, the log's average rate) (default 'floor'), "
        "max(last window, average so far) ('cautious') or the last window ('last')",
    )
    p.add_argument(
        "--no-backlog", action="store_true", help="leave the backlog term Q / window out"
    )
    add_json_option(p)
    add_plot_option(p, help="rate, budgets and system time over time")
    add_output_option(p)


def run(args: argparse.Namespace) -> int:
    from ..controller import replay_controller
    from ..policy import load_policy

    u = args.utilization
    if not (math.isfinite(u) and 0 <= u < 1):
        raise ScenarioError(f"--utilization {u:g}: give a number in (0, 1), or 0 for no rescale")
    if args.seeds < 1:
        raise ScenarioError(f"--seeds {args.seeds}: give at least 1")
    if args.window is not None and not (math.isfinite(args.window) and args.window > 0):
        raise ScenarioError(f"--window {args.window:g}: give a number of seconds > 0")
    for opt, path in (("--plot", args.plot), ("--output", args.output)):
        if path is not None and not Path(path).parent.is_dir():
            raise ScenarioError(f"{opt} {path!r}: directory does not exist")
    if args.plot is not None and not args.plot.lower().endswith(".png"):
        raise ScenarioError(f"--plot {args.plot!r}: the figure is a PNG; name it *.png")
    if args.policy is not None and args.scenario is not None:
        raise ScenarioError("give --scenario or --policy, not both: a policy holds its scenario")
    policy = None if args.policy is None else load_policy(args.policy)
    if policy is not None:
        sc = policy.scenario
    else:
        sc = example_scenario() if args.scenario is None else load_scenario(args.scenario)
    log = read_log_from_args(args.log, args)
    rep = replay_controller(
        sc,
        log,
        target_utilization=None if u == 0 else u,
        window=args.window,
        seeds=args.seeds,
        seed=args.seed,
        backlog=not args.no_backlog,
        estimator=args.estimator,
        policy=policy,
    )
    if args.plot is not None:
        from .. import plots

        plots.save(plots.control_figure(rep, title=Path(args.log).name), args.plot, 110, "--plot")
    write_output(args, text=rep.summary, data=rep.to_dict)
    return 0
