"""Stress: the first-order methods against the conic reference on random instances.

For every load regime of :data:`cvxalloc.testing.LOADS`, ``--count`` random
instances with N drawn from 1..``--max-n`` (``random_scenario``, rng ``--seed``)
are solved by the conic reference and by each method; a method fails an
instance when its objective falls short of the reference by more than 1e-7 of
|U|. Prints the failures and, per method, the number that ended ``optimal``
(certified gap <= 1e-9 of |U|), the failures, the worst shortfall, the
iteration counts and the total time.

Run:  python benchmarks/stress_first_order.py [--methods local,scaled,paper,fixed-point]
      [--max-n 30] [--count 15] [--seed 11]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import cvxalloc
from cvxalloc.certificate import relative_scale
from cvxalloc.testing import LOADS, random_scenario

#: Method labels and how each is called.
METHODS = {
    "local": ("gradient", {"variant": "local"}),
    "scaled": ("gradient", {"variant": "scaled"}),
    "paper": ("gradient", {"variant": "paper"}),
    "paper-plain": ("gradient", {"variant": "paper", "shrink": False, "accelerate": False}),
    "fixed-point": ("fixed-point", {}),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--methods",
        default="local,scaled,fixed-point",
        help=f"comma-separated, from {', '.join(METHODS)}",
    )
    ap.add_argument("--max-n", type=int, default=30)
    ap.add_argument("--count", type=int, default=15, help="instances per load regime")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    names = args.methods.split(",")
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        ap.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    rng = np.random.default_rng(args.seed)
    stats = {m: {"optimal": 0, "fail": 0, "worst": 0.0, "iters": [], "time": 0.0} for m in names}
    total = 0
    for load in LOADS:
        for _ in range(args.count):
            n = int(rng.integers(1, args.max_n + 1))
            sc = random_scenario(rng, n, load=load)
            ref = cvxalloc.solve(sc, method="conic")
            total += 1
            for m in names:
                method, opts = METHODS[m]
                t0 = time.perf_counter()
                res = cvxalloc.solve(sc, method=method, **opts)
                s = stats[m]
                s["time"] += time.perf_counter() - t0
                short = (ref.objective - res.objective) / relative_scale(ref.objective)
                s["worst"] = max(s["worst"], short)
                s["iters"].append(res.iterations)
                s["optimal"] += res.status == "optimal"
                if short > 1e-7:
                    s["fail"] += 1
                    print(
                        f"  {m}: {load} N={n} status={res.status} "
                        f"iterations={res.iterations} shortfall={short:.2e}",
                        flush=True,
                    )
    print(f"{total} instances, N in 1..{args.max_n}, seed {args.seed}")
    for m, s in stats.items():
        it = np.array(s["iters"])
        print(
            f"{m}: optimal {s['optimal']}/{total}, shortfall > 1e-7|U|: {s['fail']}, "
            f"worst shortfall {s['worst']:.2e}, iterations median {np.median(it):.0f} "
            f"max {it.max()}, time {s['time']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
