"""Benchmark of the conic reference (a script, not a test).

Run from the repository root::

    python benchmarks/bench_conic.py                    # N = 10, 100, 1000, 10^4; 3 each
    python benchmarks/bench_conic.py --sizes 10 100 --instances 5

For each N it solves a few random instances of two kinds, loads cycling light /
heavy / saturated / overloaded: ``mixed`` from
:func:`cvxalloc.testing.random_scenario` (every accuracy family, scv and variance
on, boxes up to 32k tokens) and ``narrow`` (exponential curves, boxes up to 8k
tokens, the kind of the N = 10^4 test in tests/test_conic.py), with
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


def narrow_scenario(rng: np.random.Generator, n: int, load: str) -> cvxalloc.Scenario:
    """Exponential curves only, boxes [0, 1000..8000] tokens, scales 300..4000 tokens."""
    from cvxalloc.accuracy import Exponential

    target = {"light": 0.3, "heavy": 0.9, "saturated": 0.99, "overloaded": 3.0}[load]
    p = rng.dirichlet(np.ones(n))
    hi = rng.uniform(1000, 8000, n)
    a = rng.uniform(0.2, 2.0, n)
    b = rng.uniform(0.005, 0.02, n)
    return cvxalloc.Scenario.from_arrays(
        probability=p,
        max_tokens=hi,
        per_token=b,
        base=a,
        scv=0.3,
        accuracy=Exponential(
            floor=rng.uniform(0, 0.4, n),
            ceiling=rng.uniform(0.5, 1, n),
            scale=rng.uniform(300, 4000, n),
        ),
        arrival_rate=target / float(p @ (a + b * hi)),
        latency_weight=0.01,
    )


GENERATORS = {
    "mixed": lambda rng, n, load: random_scenario(rng, n, load=load),
    "narrow": narrow_scenario,
}


def bench(n: int, instances: int, seed: int, kind: str = "mixed") -> dict:
    """Solve ``instances`` random scenarios of ``n`` types; return the row figures."""
    rows, statuses, failures = [], [], 0
    for k in range(instances):
        sc = GENERATORS[kind](np.random.default_rng(seed + 1000 * n + k), n, LOADS[k % len(LOADS)])
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
        rows.append(
            {
                "build": s["build_time"],
                "compile": s["compile_time"],
                "solve": s["solve_time"],
                "total": s["total_time"],
                "wall": wall,
                "polish": s.get("polish_steps", 0),
                "gap": res.certificate.relative_gap,
                "raw_gap": res.raw_certificate.relative_gap if res.raw_certificate else np.nan,
            }
        )

    def med(key):
        return statistics.median(r[key] for r in rows) if rows else float("nan")

    return {
        "n": n,
        "build": med("build"),
        "compile": med("compile"),
        "solve": med("solve"),
        "total": med("total"),
        "wall": med("wall"),
        "polish": med("polish"),
        "optimal": sum(s == "optimal" for s in statuses),
        "instances": instances,
        "other": ", ".join(sorted(set(s for s in statuses if s != "optimal"))) or "-",
        "gap": max((r["gap"] for r in rows), default=float("nan")),
        "raw_gap": max((r["raw_gap"] for r in rows), default=float("nan")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10_000])
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", nargs="+", default=list(GENERATORS), choices=list(GENERATORS))
    args = ap.parse_args()
    print(
        f"cvxalloc {cvxalloc.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}; medians over the instances that returned a point"
    )
    for kind in args.kinds:
        table(kind, args)


def table(kind: str, args: argparse.Namespace) -> None:
    """Print the markdown table of one instance generator."""
    print(
        f"\n{kind}: {GENERATORS[kind].__doc__ or 'cvxalloc.testing.random_scenario'}\n"
        if kind == "narrow"
        else "\nmixed: cvxalloc.testing.random_scenario (all families, scv and variance on)\n"
    )
    print(
        "| N | build s | compile s | Clarabel solve s | total s | wall s (with polish) "
        "| polish steps | optimal | other statuses | max FW gap/|U| | max raw gap/|U| |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|:---:|:---|---:|---:|")
    for n in args.sizes:
        r = bench(n, args.instances, args.seed, kind)
        print(
            f"| {r['n']} | {r['build']:.3f} | {r['compile']:.3f} | {r['solve']:.3f} | "
            f"{r['total']:.3f} | {r['wall']:.3f} | {r['polish']:.0f} | "
            f"{r['optimal']}/{r['instances']} | {r['other']} | {r['gap']:.1e} | "
            f"{r['raw_gap']:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
