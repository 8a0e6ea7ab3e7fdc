"""Does bursty arrivals (``arrival_scv != 1``) cost solver time? (a script, not a test)

Run from the repository root::

    python benchmarks/bench_arrival_scv.py
    python benchmarks/bench_arrival_scv.py --sizes 1000 10000 --repeat 5

For random heavy-load instances (:func:`cvxalloc.testing.random_scenario`, every
family, scv and variance on) it solves the same instance with ``arrival_scv`` =
1 (Poisson, exact P-K), 0.3 (smoother) and 173 (the Azure code trace) by the
default method (aggregate) at each N, and by the conic reference at the
smaller sizes, and prints each time as a ratio to the ``arrival_scv = 1`` time
in the same run, with the certified relative gap. Times are wall-clock, best of
``--repeat`` runs (one run for conic).
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np

import cvxalloc
from cvxalloc.testing import random_scenario

SCVS = (1.0, 0.3, 173.0)


def timed(fn, repeat: int):
    best, out = np.inf, None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000, 100_000])
    parser.add_argument("--conic-max-n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"{'N':>8} {'method':>9} {'scv':>6} {'time (s)':>10} {'ratio to scv=1':>15} "
        f"{'gap/|U|':>9} {'status':>10}"
    )
    for n in args.sizes:
        base = random_scenario(np.random.default_rng(args.seed), n, load="heavy")
        methods = [("aggregate", args.repeat)]
        if n <= args.conic_max_n:
            methods.append(("conic", 1))
        for method, repeat in methods:
            ref = None
            for c in SCVS:
                sc = base.with_(arrival_scv=c)
                secs, res = timed(lambda sc=sc, m=method: cvxalloc.solve(sc, method=m), repeat)
                ref = secs if ref is None else ref
                print(
                    f"{n:>8} {method:>9} {c:>6g} {secs:>10.4f} {secs / ref:>15.2f} "
                    f"{res.certificate.relative_gap:>9.1e} {res.status:>10}"
                )


if __name__ == "__main__":
    main()
