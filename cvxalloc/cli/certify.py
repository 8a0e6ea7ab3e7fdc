"""``cvxalloc certify``: how far a given allocation is from optimal, proven."""

from __future__ import annotations

import argparse

from ..certificate import certify
from ..io import load_allocation
from ..objective import evaluate
from ..solve import solve
from ._common import add_scenario_argument, dumps, emit, scenario_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "certify",
        help="prove how far an allocation is from optimal",
        description=(
            "Read an allocation (TOML or JSON: task name -> tokens, or the output of "
            "'cvxalloc solve --json') and print its utility and a proven bound on how far "
            "it is from optimal: the Frank-Wolfe gap (needs no solver) and, from the "
            "certified reference optimum, the interval that holds the true shortfall."
        ),
    )
    add_scenario_argument(p)
    p.add_argument("allocation", metavar="ALLOCATION", help="allocation file (.toml or .json)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE (only on success)")


def run(args: argparse.Namespace) -> int:
    sc = scenario_from_args(args)
    tokens = load_allocation(args.allocation, sc)
    ev = evaluate(sc, tokens)
    cert = certify(sc, tokens)
    ref = solve(sc, method="conic")
    low = max(ref.objective - ev.objective, 0.0)
    high = ref.certificate.upper_bound - ev.objective
    out = {
        "tokens": dict(zip(sc.names, map(float, tokens))),
        "objective": ev.objective,
        "accuracy": ev.accuracy,
        "mean_system_time": ev.mean_system_time,
        "utilization": ev.utilization,
        "certificate": cert.to_dict(),
        "optimum": {"objective": ref.objective, "upper_bound": ref.certificate.upper_bound,
                    "status": ref.status},
        "shortfall": [low, high],
    }
    if args.json:
        emit(dumps(out), args.output)
        return 0
    rel = 100 * high / max(abs(ref.objective), 1e-12)
    text = "\n".join([
        f"utility U            {ev.objective:.10g}",
        f"weighted accuracy    {ev.accuracy:.6f}",
        f"mean system time W   {ev.mean_system_time:.4f} s",
        f"utilization rho      {ev.utilization:.4f}",
        f"Frank-Wolfe gap      {cert.gap:.4e}  (proof without any solver: U* <= "
        f"{cert.upper_bound:.10g})",
        f"optimum (conic)      {ref.objective:.10g}  (status {ref.status}, U* <= "
        f"{ref.certificate.upper_bound:.10g})",
        f"shortfall U* - U     in [{low:.4e}, {high:.4e}]  (at most {rel:.3g}% of the optimum)",
    ])
    emit(text, args.output)
    return 0
