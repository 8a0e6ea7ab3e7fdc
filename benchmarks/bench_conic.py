"""Benchmark of the conic reference (a script, not a test).

Run from the repository root::

    python benchmarks/bench_conic.py                    # N = 10, 100, 1000, 10^4; 3 each
    python benchmarks/bench_conic.py --sizes 10 100 --instances 5

For each N it solves a few random instances of
:func:`cvxalloc.testing.random_scenario` (every accuracy family mixed, scv and
variance on, loads cycling light / heavy / saturated / overloaded) with
``cvxalloc.solve(sc, method="conic")`` and prints a markdown table of the
medians of the times the result records in ``solver_stats``: building the CVXPY
problem, CVXPY's compilation to conic data, Clarabel's solve, the total (build,
compile, solve, unpack) and the wall time including polishing and certification;
the polish steps; how many instances ended ``optimal``; and the worst certified
relative gap (Frank-Wolfe gap / |U|) of the returned point and of Clarabel's
raw point.

No fallback solver is used (``fallback=None``): a Clarabel failure is counted
as a failure, not hidden behind a slow SCS run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import numpy as np

import cvxalloc
from cvxalloc.errors import SolverError
from cvxalloc.testing import random_scenario

LOADS = ("light", "heavy", "saturated", "overloaded")


def bench(n: int, instances: int, seed: int) -> dict:
    """Solve ``instances`` random scenarios of ``n`` types; return the row figures."""
    rows, statuses, failures = [], [], 0
    for k in range(instances):
        sc = random_scenario(np.random.default_rng(seed + 1000 * n + k), n,
                             load=LOADS[k % len(LOADS)])
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = cvxalloc.solve(sc, method="conic", fallback=None)
        except SolverError:
            failures += 1
            statuses.append("failed")
            continue
        wall = time.perf_counter() - t0
        s = res.solver_stats
        statuses.append(res.status)
        rows.append({
            "build": s["build_time"], "compile": s["compile_time"], "solve": s["solve_time"],
            "total": s["total_time"], "wall": wall, "polish": s.get("polish_steps", 0),
            "gap": res.certificate.relative_gap,
            "raw_gap": res.raw_certificate.relative_gap if res.raw_certificate else np.nan,
        })

    def med(key):
        return statistics.median(r[key] for r in rows) if rows else float("nan")

    return {
        "n": n,
        "build": med("build"), "compile": med("compile"), "solve": med("solve"),
        "total": med("total"), "wall": med("wall"), "polish": med("polish"),
        "optimal": sum(s == "optimal" for s in statuses), "instances": instances,
        "other": ", ".join(sorted(set(s for s in statuses if s != "optimal"))) or "-",
        "gap": max((r["gap"] for r in rows), default=float("nan")),
        "raw_gap": max((r["raw_gap"] for r in rows), default=float("nan")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10_000])
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"cvxalloc {cvxalloc.__version__}, Python {platform.python_version()}, "
          f"{platform.machine()}; medians over the instances that returned a point\n")
    print("| N | build s | compile s | Clarabel solve s | total s | wall s (with polish) "
          "| polish steps | optimal | other statuses | max FW gap/|U| | max raw gap/|U| |")
    print("|---:|---:|---:|---:|---:|---:|---:|:---:|:---|---:|---:|")
    for n in args.sizes:
        r = bench(n, args.instances, args.seed)
        print(f"| {r['n']} | {r['build']:.3f} | {r['compile']:.3f} | {r['solve']:.3f} | "
              f"{r['total']:.3f} | {r['wall']:.3f} | {r['polish']:.0f} | "
              f"{r['optimal']}/{r['instances']} | {r['other']} | {r['gap']:.1e} | "
              f"{r['raw_gap']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
