"""Benchmark: the aggregate method with operator constraints against the same scenario without.

Run from the repository root::

    python benchmarks/bench_constrained.py              # N = 10^6
    python benchmarks/bench_constrained.py --n 100000 --conic   # also the conic reference

On one random heavy-load instance (:func:`cvxalloc.testing.random_scenario`) it
solves the unconstrained scenario, then the same scenario under each kind of
constraint, set to bind: a mean-latency SLO at 80% of the unconstrained ``W``, a
token budget at 80% of its mean tokens, a utilization cap at 95% of its
utilization, accuracy floors on 10% of the tasks (half-way between their
accuracy at min and max tokens), and all four together. Each time is the best of
``--repeat`` solves (the first solve of a constrained scenario also pays its
one-time costs: inverting the floors, importing SciPy's root finder; it is
printed too). Ratios are against the unconstrained time of the same run. With
``--conic`` the conic reference solves each scenario too and the objectives are
compared in units of ``|U|``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import cvxalloc
from cvxalloc import Constraints
from cvxalloc.certificate import relative_scale
from cvxalloc.testing import random_scenario


def timed(sc, repeat: int, **options):
    """(result, first time, best time) over ``repeat`` solves."""
    times, res = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = cvxalloc.solve(sc, **options)
        times.append(time.perf_counter() - t0)
    return res, times[0], min(times)


def limits(sc, free, seed: int) -> dict[str, Constraints]:
    """The binding constraints of the benchmark, from the unconstrained optimum ``free``."""
    W0, T0 = free.mean_system_time, float(sc.probability @ free.tokens)
    lo_acc, hi_acc = sc.accuracy.value(sc.min_tokens), sc.accuracy.value(sc.max_tokens)
    rng = np.random.default_rng(seed)
    floors = np.where(rng.uniform(size=sc.n) < 0.1, lo_acc + 0.5 * (hi_acc - lo_acc), np.nan)
    return {
        "slo": Constraints(max_mean_system_time=0.8 * W0),
        "tokens": Constraints(max_mean_tokens=0.8 * T0),
        "utilization": Constraints(max_utilization=0.95 * free.utilization),
        "floors": Constraints(min_accuracy=floors),
        "all four": Constraints(
            max_mean_system_time=0.85 * W0,
            max_mean_tokens=0.85 * T0,
            max_utilization=0.97 * free.utilization,
            min_accuracy=floors,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--conic", action="store_true", help="also solve with method='conic'")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    sc = random_scenario(np.random.default_rng(args.seed), args.n, load="heavy")
    free, first, base = timed(sc, args.repeat)
    print(f"N = {args.n:,}, heavy load; best of {args.repeat} solves per row")
    print(
        f"{'constraints':12s} {'first s':>8s} {'best s':>8s} {'ratio':>6s}  status"
        "   gap/|U|   active"
    )
    print(
        f"{'none':12s} {first:8.3f} {base:8.3f} {1.0:6.2f}  {free.status}  "
        f"{free.certificate.relative_gap:.1e}"
    )
    for name, cons in limits(sc, free, args.seed + 1).items():
        scc = sc.with_(constraints=cons)
        res, first, best = timed(scc, args.repeat)
        active = ", ".join(res.diagnostics.get("active", [])) or "-"
        line = (
            f"{name:12s} {first:8.3f} {best:8.3f} {best / base:6.2f}  {res.status}  "
            f"{res.certificate.relative_gap:.1e}   {active}"
        )
        if args.conic:
            ref, _, t_conic = timed(scc, 1, method="conic")
            diff = (res.objective - ref.objective) / relative_scale(ref.objective)
            line += f"   conic {ref.status} {t_conic:.1f} s, objective diff {diff:+.1e} |U|"
        print(line, flush=True)


if __name__ == "__main__":
    main()
