"""``cvxalloc simulate``: simulate the server under an allocation, beside the model."""

from __future__ import annotations

import argparse
import math

import numpy as np

from ..errors import ScenarioError
from ..io import load_allocation
from ..simulate import (
    DEFAULT_FLEET_QUERIES,
    DEFAULT_QUERIES,
    DEFAULT_REPLICATIONS,
    REPLAY_SERVICES,
    simulate,
    simulate_batching,
    simulate_fleet,
    simulate_replay,
)
from ..solve import DEFAULT_METHOD, solve
from ._common import (
    add_json_option,
    add_method_option,
    add_output_option,
    add_progress_option,
    add_scenario_argument,
    scenario_from_args,
    write_output,
)
from .traffic import add_log_arguments, read_log_from_args

#: Options that only a replay (--arrivals) takes, with their defaults.
_REPLAY_ONLY = {
    "time_column": None,
    "time_unit": None,
    "type_column": None,
    "tokens_column": None,
    "target_utilization": None,
    "replications": None,
    "service": None,
}


#: ``cvxalloc simulate --help``'s description.
_DESCRIPTION = (
    "Simulate Poisson arrivals, the type mix, gamma service times with the model's "
    "two moments and Bernoulli correctness; report the mean system time with a 99% "
    "batch-means interval, its p50/p95/p99, realized accuracy and utility, beside "
    "the Pollaczek-Khinchine prediction. Without --tokens, simulates the optimal "
    "allocation. Without SCENARIO, the built-in example. With --arrivals LOG, replay "
    "the arrival times of a request log instead of Poisson arrivals (optionally "
    "rescaled to --target-utilization), beside the model, Pollaczek-Khinchine and "
    "Kingman with the log's measured arrival SCV. A scenario with a [fleet] of more than one "
    "replica is simulated as that fleet: every replica (batch-1 or batching) behind its "
    "router, Poisson or replayed arrivals, each replica's utilization and the fleet's mean "
    "system time with its interval, beside the fleet's model."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate the server under an allocation and compare with the model",
        description=_DESCRIPTION,
    )
    add_scenario_argument(p, optional=True)
    _add_allocation_arguments(p)
    _add_run_arguments(p)
    _add_replay_arguments(p.add_argument_group("trace replay"))
    _add_output_arguments(p)


def _add_allocation_arguments(p: argparse.ArgumentParser) -> None:
    """What to simulate: an allocation file, or the optimum by a method."""
    p.add_argument(
        "--tokens",
        metavar="ALLOCATION",
        help="allocation file (task = tokens, or a 'cvxalloc solve --json' output); "
        "default: solve for the optimum",
    )
    add_method_option(
        p, help=f"solver for the optimum when --tokens is absent (default: {DEFAULT_METHOD})"
    )


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """How long to simulate and how the intervals are made."""
    p.add_argument(
        "--queries",
        type=int,
        default=None,
        metavar="N",
        help=f"queries to simulate, warm-up included (default: {DEFAULT_QUERIES:,}; "
        "not with --arrivals, where the log sets them)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        metavar="N",
        help="queries discarded at the start (default: 10%% of --queries; 0 with --arrivals)",
    )
    p.add_argument(
        "--batches",
        type=int,
        default=30,
        help="batches of the batch-means intervals (default: 30; with --arrivals, used only "
        "with --replications 1)",
    )


def _add_replay_arguments(g: argparse._ArgumentGroup) -> None:
    """The trace replay's options (all of :data:`_REPLAY_ONLY`, and --arrivals)."""
    g.add_argument(
        "--arrivals",
        metavar="LOG",
        help="replay the arrival times of this request log (CSV or JSON lines)",
    )
    add_log_arguments(g, replay=True)
    g.add_argument(
        "--target-utilization",
        type=float,
        metavar="RHO",
        help="rescale the log's time so that rate x m1 = RHO (default: replay as logged)",
    )
    g.add_argument(
        "--replications",
        type=int,
        metavar="R",
        help=f"independent replays of the log (default: {DEFAULT_REPLICATIONS}); intervals "
        "over replications, or batch means when R = 1",
    )
    g.add_argument(
        "--service",
        choices=list(REPLAY_SERVICES),
        help="service times of the replay: gamma with the model's two moments (default) or "
        "each type's mean",
    )


def _add_output_arguments(p: argparse.ArgumentParser) -> None:
    """Seed, output format and destination, progress."""
    p.add_argument("--seed", type=int, default=None, help="random seed (default: fresh)")
    add_json_option(p)
    add_output_option(p)
    add_progress_option(p)


def _check_replay_options(args: argparse.Namespace) -> None:
    if args.arrivals is None:
        for key, default in _REPLAY_ONLY.items():
            if getattr(args, key) != default:
                option = "--" + key.replace("_", "-")
                raise ScenarioError(f"{option} applies to a trace replay; add --arrivals LOG")
        return
    if args.queries is not None:
        raise ScenarioError(
            "--queries does not apply with --arrivals: the log sets the queries "
            "(use --replications to replay it more times)"
        )
    rho = args.target_utilization
    if rho is not None and not (math.isfinite(rho) and rho > 0):
        raise ScenarioError(f"--target-utilization {rho:g}: give a finite utilization > 0")
    if args.replications is not None and args.replications < 1:
        raise ScenarioError(f"--replications must be >= 1 (got {args.replications})")


def run(args: argparse.Namespace) -> int:
    if args.warmup is not None and args.warmup < 0:
        raise ScenarioError(f"--warmup must be >= 0 queries (got {args.warmup})")
    _check_replay_options(args)
    if args.seed is None:  # draw one and report it, so the run can be repeated
        args.seed = int(np.random.SeedSequence().entropy % 2**32)
    sc = scenario_from_args(args)
    log = None if args.arrivals is None else read_log_from_args(args.arrivals, args)
    if args.tokens is not None:
        tokens, source = load_allocation(args.tokens, sc), f"allocation {args.tokens}"
    else:
        res = solve(sc, method=args.method)
        tokens, source = res.tokens, f"optimal allocation ({res.method}, {res.status})"
    if sc.replicas > 1:
        sim = _simulate_fleet(sc, tokens, log, args)
    elif sc.server is not None:
        sim = _simulate_batching(sc, tokens, log, args)
    elif log is not None:
        sim = simulate_replay(
            sc,
            tokens,
            log,
            seed=args.seed,
            target_utilization=args.target_utilization,
            warmup=args.warmup or 0,
            service=args.service or "gamma",
            replications=args.replications or DEFAULT_REPLICATIONS,
            batches=args.batches,
        )
    else:
        sim = simulate(
            sc,
            tokens,
            queries=DEFAULT_QUERIES if args.queries is None else args.queries,
            seed=args.seed,
            warmup=args.warmup,
            batches=args.batches,
            progress=False if args.no_progress else None,
        )
    write_output(
        args,
        text=lambda: f"{source}\n{sim.summary()}",
        data=lambda: {**sim.to_dict(), "allocation": source},
    )
    return 0


def _simulate_batching(sc, tokens, log, args: argparse.Namespace):
    """``simulate`` on a batching server: its arrivals (gamma gaps) or the log's, replayed."""
    if log is None:
        return simulate_batching(
            sc,
            tokens,
            queries=DEFAULT_QUERIES if args.queries is None else args.queries,
            seed=args.seed,
            warmup=args.warmup,
            batches=args.batches,
            progress=False if args.no_progress else None,
        )
    if args.replications not in (None, 1):
        raise ScenarioError(
            "--replications: a batching replay is one pass through the log, with batch-means "
            "intervals; omit --replications (or give 1)"
        )
    if args.service not in (None, "gamma"):
        raise ScenarioError(
            "--service deterministic is not supported on a batching server; omit it"
        )
    return simulate_batching(
        sc,
        tokens,
        arrival_times=log,
        target_utilization=args.target_utilization,
        seed=args.seed,
        warmup=args.warmup or 0,
        batches=args.batches,
        progress=False if args.no_progress else None,
    )


def _simulate_fleet(sc, tokens, log, args: argparse.Namespace):
    """``simulate`` on a fleet: Poisson arrivals or the log's, through every replica."""
    if args.service not in (None, "gamma"):
        raise ScenarioError("--service deterministic is not supported for a fleet; omit it")
    if log is None:
        return simulate_fleet(
            sc,
            tokens,
            queries=DEFAULT_FLEET_QUERIES if args.queries is None else args.queries,
            seed=args.seed,
            warmup=args.warmup,
            batches=args.batches,
        )
    return simulate_fleet(
        sc,
        tokens,
        arrival_times=log,
        target_utilization=args.target_utilization,
        replications=args.replications or DEFAULT_REPLICATIONS,
        seed=args.seed,
        warmup=args.warmup or 0,
        batches=args.batches,
    )
