"""``cvxalloc simulate``: simulate the server under an allocation, beside the model."""

from __future__ import annotations

import argparse

import numpy as np

from ..errors import ScenarioError
from ..io import load_allocation
from ..simulate import DEFAULT_QUERIES, simulate
from ..solve import DEFAULT_METHOD, available_methods, solve
from ._common import add_scenario_argument, dumps, emit, scenario_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate the FIFO server under an allocation and compare with the model",
        description=(
            "Simulate Poisson arrivals, the type mix, gamma service times with the model's "
            "two moments and Bernoulli correctness; report the mean system time with a 99% "
            "batch-means interval, its p50/p95/p99, realized accuracy and utility, beside "
            "the Pollaczek-Khinchine prediction. Without --tokens, simulates the optimal "
            "allocation. Without SCENARIO, the built-in example."
        ),
    )
    add_scenario_argument(p, optional=True)
    p.add_argument(
        "--tokens",
        metavar="ALLOCATION",
        help="allocation file (task = tokens, or a 'cvxalloc solve --json' output); "
        "default: solve for the optimum",
    )
    p.add_argument(
        "--method",
        default=None,
        choices=available_methods(),
        help=f"solver for the optimum when --tokens is absent (default: {DEFAULT_METHOD})",
    )
    p.add_argument(
        "--queries",
        type=int,
        default=DEFAULT_QUERIES,
        metavar="N",
        help=f"queries to simulate, warm-up included (default: {DEFAULT_QUERIES:,})",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        metavar="N",
        help="queries discarded at the start (default: 10%% of --queries)",
    )
    p.add_argument(
        "--batches", type=int, default=30, help="batches of the batch-means intervals (default: 30)"
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default: fresh)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="write the output to FILE instead of stdout (written only on success)",
    )
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")


def run(args: argparse.Namespace) -> int:
    if args.warmup is not None and args.warmup < 0:
        raise ScenarioError(f"--warmup must be >= 0 queries (got {args.warmup})")
    if args.seed is None:  # draw one and report it, so the run can be repeated
        args.seed = int(np.random.SeedSequence().entropy % 2**32)
    sc = scenario_from_args(args)
    if args.tokens is not None:
        tokens, source = load_allocation(args.tokens, sc), f"allocation {args.tokens}"
    else:
        res = solve(sc, method=args.method)
        tokens, source = res.tokens, f"optimal allocation ({res.method}, {res.status})"
    sim = simulate(
        sc,
        tokens,
        queries=args.queries,
        seed=args.seed,
        warmup=args.warmup,
        batches=args.batches,
        progress=False if args.no_progress else None,
    )
    if args.json:
        out = sim.to_dict()
        out["allocation"] = source
        emit(dumps(out), args.output)
    else:
        emit(f"{source}\n{sim.summary()}", args.output)
    return 0
