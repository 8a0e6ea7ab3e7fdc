"""Benchmark: the paper's solvers (fixed point, projected gradient) against the conic reference.

For N = 10, 100, 10^3, 10^4 (``--sizes``), on the same random instances in one
run (``--per-size`` instances per N, in the load regime ``--load``), every
method solves every instance: the conic reference, the default solver
(``aggregate``, for reference), the fixed point, and the projected gradient in
its variants (``local``, the default; ``scaled``; ``paper`` exactly as stated,
``shrink=False, accelerate=False``; and ``paper`` with both speed-ups). The
table gives iterations, wall time, the time ratio against the conic reference,
the status (``->m`` where the fixed point handed over to method ``m``), the
certified relative gap and the objective shortfall against the reference.
Then, on ``--share-instances`` random instances per regime, the share where
the fixed-point contraction condition holds (on the token box alone, and after
the interval refinement).

Run (one regime per run; ``--load`` is one of light, heavy, saturated, overloaded):

    python benchmarks/bench_paper_solvers.py --max-iter 10000
    python benchmarks/bench_paper_solvers.py --load overloaded --sizes 10 100 1000

Options: ``--per-size 3``, ``--max-iter 5000`` (first-order methods only),
``--json out.json``, ``--seed 2026``, ``--share-instances 100`` (0 skips the share).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

import cvxalloc
from cvxalloc.certificate import relative_scale
from cvxalloc.objective import Objective
from cvxalloc.solvers._iterate import optimum_box, utilization_cap
from cvxalloc.solvers.fixed_point import contraction_bound
from cvxalloc.testing import LOADS, random_scenario

#: (label, method, options); the first is the reference the ratios are taken against.
METHODS: list[tuple[str, str, dict[str, Any]]] = [
    ("conic", "conic", {}),
    ("aggregate (default solver)", "aggregate", {}),
    ("fixed-point", "fixed-point", {}),
    ("gradient (local, default)", "gradient", {"variant": "local"}),
    ("gradient (scaled)", "gradient", {"variant": "scaled"}),
    (
        "gradient (paper, plain)",
        "gradient",
        {"variant": "paper", "shrink": False, "accelerate": False},
    ),
    (
        "gradient (paper + shrink + accelerate)",
        "gradient",
        {"variant": "paper", "shrink": True, "accelerate": True},
    ),
]

#: Methods that take ``--max-iter`` (the aggregate solver's ``max_iter`` counts Newton steps).
FIRST_ORDER = ("fixed-point", "gradient")


def run_sizes(sizes, per_size, load, max_iter, seed) -> list[dict[str, Any]]:
    rows = []
    rng = np.random.default_rng(seed)
    for n in sizes:
        for j in range(per_size):
            sc = random_scenario(rng, n, load=load)
            ref_time = None
            ref_U = None
            for label, method, opts in METHODS:
                kw = dict(opts)
                if method in FIRST_ORDER:
                    kw["max_iter"] = max_iter
                t0 = time.perf_counter()
                res = cvxalloc.solve(sc, method=method, **kw)
                dt = time.perf_counter() - t0
                if method == "conic":
                    ref_time, ref_U = dt, res.objective
                d = res.diagnostics
                fp = d.get("fixed_point", d)
                rows.append(
                    {
                        "n": n,
                        "instance": j,
                        "method": label,
                        "solver": method,
                        "used": res.method,
                        "status": res.status,
                        "iterations": res.iterations,
                        "time": dt,
                        "time_ratio": dt / ref_time,
                        "relative_gap": res.certificate.relative_gap,
                        "shortfall": (ref_U - res.objective) / relative_scale(ref_U),
                        "contraction_bound": fp.get("contraction_bound"),
                        "curvature_bound": d.get("curvature_bound"),
                    }
                )
                print(
                    f"  N={n:>6} #{j} {label:<38} {res.status:<16} it={res.iterations:>6} "
                    f"{dt:8.3f}s  gap={res.certificate.relative_gap:.1e}",
                    flush=True,
                )
    return rows


def contraction_share(n_values, per_regime, seed) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed + 1)
    out = {}
    for load in LOADS:
        box_ok = refined_ok = 0
        for _ in range(per_regime):
            sc = random_scenario(rng, int(rng.choice(n_values)), load=load)
            obj = Objective(sc)
            lo, hi = sc.min_tokens, sc.max_tokens
            box_ok += contraction_bound(obj, lo, hi)["bound"] < 1
            rho_bar = utilization_cap(obj)
            rho_cap = rho_bar if rho_bar < sc.utilization(hi) else 1.0
            box = optimum_box(
                obj,
                rho_cap,
                100,
                stop=lambda lw, up, o=obj: contraction_bound(o, lw, up)["bound"] < 1,
            )
            refined_ok += contraction_bound(obj, box.lower, box.upper)["bound"] < 1
        out[load] = {
            "token_box": box_ok / per_regime,
            "refined_box": refined_ok / per_regime,
            "instances": per_regime,
        }
    return out


def table(rows) -> str:
    lines = [
        "| N | method | status (count) | iterations (median) | time s (median) | "
        "time / conic | max rel. gap | max shortfall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted(
        {(r["n"], r["method"]) for r in rows},
        key=lambda k: (k[0], [m[0] for m in METHODS].index(k[1])),
    )
    for n, m in keys:
        rs = [r for r in rows if r["n"] == n and r["method"] == m]
        sts: dict[str, int] = {}
        for r in rs:
            s = r["status"] + ("" if r["used"] == r["solver"] else f"→{r['used']}")
            sts[s] = sts.get(s, 0) + 1
        lines.append(
            f"| {n} | {m} | {', '.join(f'{k} ({v})' for k, v in sts.items())} | "
            f"{np.median([r['iterations'] for r in rs]):.0f} | "
            f"{np.median([r['time'] for r in rs]):.3g} | "
            f"{np.median([r['time_ratio'] for r in rs]):.2g} | "
            f"{max(r['relative_gap'] for r in rs):.1e} | "
            f"{max(r['shortfall'] for r in rs):.1e} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    ap.add_argument("--per-size", type=int, default=3)
    ap.add_argument("--load", default="heavy", choices=list(LOADS))
    ap.add_argument("--max-iter", type=int, default=5000)
    ap.add_argument("--share-instances", type=int, default=100)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = run_sizes(args.sizes, args.per_size, args.load, args.max_iter, args.seed)
    share = (
        contraction_share([1, 10, 100], args.share_instances, args.seed)
        if args.share_instances > 0
        else {}
    )
    print()
    print(
        f"load regime: {args.load}; max_iter {args.max_iter}; tol 1e-9 of |U|; "
        f"{args.per_size} instances per N (seed {args.seed})"
    )
    print(table(rows))
    if share:
        print()
        print(
            "share of random instances (N in {1, 10, 100}) where the contraction condition holds:"
        )
        print("| regime | on the token box | after interval refinement | instances |")
        print("|---|---|---|---|")
        for load, s in share.items():
            print(f"| {load} | {s['token_box']:.0%} | {s['refined_box']:.0%} | {s['instances']} |")
    print(f"\ntotal benchmark time {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {"rows": rows, "contraction_share": share, "args": vars(args)},
                fh,
                indent=1,
                default=float,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
