"""Aggregate solver at N = 10^6 against the floor of its work (a script, not a test).

Run from the repository root::

    python benchmarks/bench_aggregate_floor.py
    python benchmarks/bench_aggregate_floor.py --n 1000000 --repeat 5

On one random heavy-load instance (:func:`cvxalloc.testing.random_scenario`, every
family, scv and variance on) it times, in the same run and best of ``--repeat``:

* ``cvxalloc.solve(sc)`` (the default aggregate method, certified to 1e-9 of |U|);
* one numpy pass over the same arrays (``p * s`` summed), the unit of the ratio;
* the floor the issue names: a handful (6) of such passes plus one Wright-omega
  evaluation over N doubles (what one outer step cannot avoid).

It prints the times and the ratios solve / pass and solve / floor, and the BLAS
inner product ``p @ s`` for comparison (under load it costs ~10 ms whatever N;
the solver's reductions do not use it).
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np
from scipy.special import wrightomega

import cvxalloc
from cvxalloc.testing import random_scenario


def best(fn, repeat: int) -> float:
    out = np.inf
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sc = random_scenario(np.random.default_rng(args.seed), args.n, load="heavy")
    p = np.asarray(sc.probability)
    s = sc.service_time(0.5 * (sc.min_tokens + sc.max_tokens))
    x = np.linspace(-5.0, 30.0, args.n)
    res = cvxalloc.solve(sc)
    t_solve = best(lambda: cvxalloc.solve(sc), args.repeat)
    t_pass = best(lambda: float(np.einsum("i,i->", p, s)), 5 * args.repeat)
    t_floor = best(lambda: ([float((p * s).sum()) for _ in range(6)], wrightomega(x)), args.repeat)
    t_blas = best(lambda: float(p @ s), 5 * args.repeat)
    print(f"N = {args.n:,}: status {res.status}, gap/|U| {res.certificate.relative_gap:.1e}")
    print(f"  aggregate solve        {t_solve:9.4f} s")
    print(f"  one numpy pass         {t_pass:9.6f} s   solve / pass  = {t_solve / t_pass:8.0f}")
    print(f"  floor (6 passes + wo)  {t_floor:9.4f} s   solve / floor = {t_solve / t_floor:8.2f}")
    print(f"  BLAS p @ s             {t_blas:9.6f} s   (not used by the solver)")


if __name__ == "__main__":
    main()
