"""Benchmark of the aggregate solver (a script, not a test).

Run from the repository root::

    python benchmarks/bench_aggregate.py            # the full run (N up to 10^7)
    python benchmarks/bench_aggregate.py --max-n 1e6

It prints, for random instances of :func:`cvxalloc.testing.random_scenario`
(every accuracy family mixed, power exponents per type,
scv and variance on, heavy load; the conic comparison without power curves,
see CONIC_FAMILIES):

1. N = 10^4: aggregate vs the conic reference (CVXPY compile + Clarabel solve +
   polish), same instance: times, their ratio, objective difference in |U|.
2. N = 10^6: time, Frank-Wolfe gap / |U|, peak memory (tracemalloc, in a
   separate run so tracing does not distort the time).
3. N = 10^2 .. 10^7: time and time per type.
4. scipy.optimize L-BFGS-B at N = 10^3, 10^4 (variables normalized to [0, 1] over each box,
   objective multiplied by N / sum p_i w_i, exact gradient) on the same
   instances: time, objective shortfall and certified gap, ratio of times.

Times are wall-clock, best of ``--repeat`` runs for the aggregate solver (one
run for the conic reference and L-BFGS-B).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
import tracemalloc

import numpy as np
from scipy.optimize import minimize

import cvxalloc
from cvxalloc.certificate import certify, relative_scale
from cvxalloc.objective import Objective
from cvxalloc.testing import random_scenario

#: Families of the conic comparison: all three (the power family's CVXPY form is
#: exp(-eta log(1 + t/tau)), which compiles in a fraction of a second at N = 10^4).
CONIC_FAMILIES = ("exponential", "power", "logarithmic")


def instance(n: int, seed: int = 0, load: str = "heavy", families=None):
    kw = {} if families is None else {"families": families}
    return random_scenario(np.random.default_rng(seed), n, load=load, **kw)


def timed(fn, repeat: int = 1):
    best, out = np.inf, None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def lbfgsb(sc, maxiter: int = 3000):
    """L-BFGS-B on the scaled problem: x in [0, 1]^N, minimize -S U(lo + w x)."""
    obj = Objective(sc)
    lo, width = sc.min_tokens, sc.max_tokens - sc.min_tokens
    scale = sc.n / float(np.sum(sc.probability * sc.weight))
    x0 = np.zeros(sc.n)  # the minimum budgets are stable by validation

    def f(x):
        t = lo + width * x
        U = obj.value(t)
        if not np.isfinite(U):
            return 1e30, np.zeros_like(x)
        return -scale * U, -scale * obj.gradient(t) * width

    res = minimize(
        f,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, 1.0)] * sc.n,
        options={"maxiter": maxiter, "maxfun": 2 * maxiter, "ftol": 1e-15, "gtol": 1e-12},
    )
    # lo + width * 1 can round above hi: clip to the box so the certificate applies
    return np.clip(lo + width * res.x, lo, sc.max_tokens), res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-n", type=float, default=1e7)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    max_n = int(args.max_n)
    print(
        f"# bench_aggregate: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, numpy {np.__version__}, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )

    # 1. aggregate vs conic at N = 10^4
    sc = instance(10_000, families=CONIC_FAMILIES)
    t_agg, agg = timed(lambda: cvxalloc.solve(sc, method="aggregate"), args.repeat)
    t_con, con = timed(lambda: cvxalloc.solve(sc, method="conic"))
    diff = (agg.objective - con.objective) / relative_scale(con.objective)
    print(
        "\n## N = 10^4, same instance (all three families): aggregate vs "
        "conic reference (build + compile + solve + polish)"
    )
    print("| method | status | time s | objective U | FW gap/|U| |")
    print("|---|---|---|---|---|")
    for name, t, r in (("aggregate", t_agg, agg), ("conic", t_con, con)):
        print(
            f"| {name} | {r.status} | {t:.4f} | {r.objective:.12f} | "
            f"{r.certificate.relative_gap:.2e} |"
        )
    print(
        f"speed-up conic/aggregate: {t_con / t_agg:.0f}x; "
        f"(U_agg - U_conic)/|U| = {diff:.2e} (target >= -1e-7)"
    )

    # 2. N = 10^6: time, gap, peak memory
    if max_n >= 10**6:
        sc6 = instance(10**6, seed=1)
        t6, r6 = timed(lambda: cvxalloc.solve(sc6, method="aggregate"), args.repeat)
        gc.collect()
        tracemalloc.start()
        cvxalloc.solve(sc6, method="aggregate")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        inputs = sum(
            getattr(sc6, f).nbytes
            for f in (
                "probability",
                "weight",
                "min_tokens",
                "max_tokens",
                "base",
                "per_token",
                "scv",
                "variance",
            )
        )
        cert = certify(sc6, r6.tokens)
        print("\n## N = 10^6")
        print(
            f"time {t6:.3f} s (best of {args.repeat}), status {r6.status}, "
            f"FW gap/|U| {cert.relative_gap:.2e} (recomputed), "
            f"outer evaluations {r6.iterations} "
            f"(Newton {r6.diagnostics['newton_iterations']}, "
            f"sample {r6.diagnostics['sample_iterations']}), "
            f"peak traced memory {peak / 2**20:.0f} MiB = {peak / 10**6:.0f} bytes/type "
            f"(the scenario's 8 arrays: {inputs / 2**20:.0f} MiB)"
        )

    # 3. scaling
    print("\n## Scaling (aggregate)")
    print("| N | time s | us/type | FW gap/|U| | outer evals | status |")
    print("|---|---|---|---|---|---|")
    n = 100
    while n <= max_n:
        scn = instance(n, seed=2)
        rep = args.repeat if n <= 10**6 else 1
        tn, rn = timed(lambda scn=scn: cvxalloc.solve(scn, method="aggregate"), rep)
        print(
            f"| {n:.0e} | {tn:.4f} | {1e6 * tn / n:.3f} | "
            f"{rn.certificate.relative_gap:.1e} | {rn.iterations} | {rn.status} |"
        )
        del scn, rn
        gc.collect()
        n *= 10

    # 4. L-BFGS-B
    print("\n## scipy.optimize L-BFGS-B (scaled), same instances")
    print("| N | L-BFGS-B s | its | (U* - U)/|U| | FW gap/|U| | aggregate s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for n in (10**3, 10**4):
        if n > max_n:
            break
        scn = instance(n, seed=3)
        ta, ra = timed(lambda scn=scn: cvxalloc.solve(scn, method="aggregate"), args.repeat)
        tl, (tok, res) = timed(lambda scn=scn: lbfgsb(scn))
        cl = certify(scn, tok)
        short = (ra.objective - cl.objective) / relative_scale(ra.objective)
        print(
            f"| {n:.0e} | {tl:.3f} | {res.nit} | {short:.1e} | {cl.relative_gap:.1e} | "
            f"{ta:.4f} | {tl / ta:.0f}x |"
        )


if __name__ == "__main__":
    main()
