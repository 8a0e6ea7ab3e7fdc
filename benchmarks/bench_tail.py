"""Benchmark of the system-time percentiles (a script, not a test).

Run from the repository root::

    python benchmarks/bench_tail.py              # N = 10 .. 10^4
    python benchmarks/bench_tail.py --n 10000 --seeds 5

For random instances of :func:`cvxalloc.testing.random_scenario` (heavy load,
every accuracy family, scv and variance on, as benchmarks/bench_aggregate.py)
it times, in one run and on the same instance:

* ``solve``: ``cvxalloc.solve(sc)`` (the default method), best of ``--repeat``;
* ``quantiles``: ``system_time_quantiles`` at the optimum (p50, p90, p95, p99 with
  the default settings: exact up to ``MAX_COMPONENTS`` distinct service laws,
  compressed above), best of ``--repeat``;
* ``cli``: ``cvxalloc solve FILE --json --no-baselines`` end to end (read the file,
  solve, percentiles, JSON), once, and the same run's percentile share;

and prints the ratios ``quantiles / solve`` and ``quantiles / cli``. With
``--exact`` it also times the uncompressed computation and prints the
compressed result's error against it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

import cvxalloc
from cvxalloc.queue.tail import MAX_COMPONENTS, system_time_quantiles
from cvxalloc.testing import random_scenario


def best(fn, repeat: int):
    out, t_best = None, np.inf
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        t_best = min(t_best, time.perf_counter() - t0)
    return t_best, out


def cli_time(sc) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "scenario.json")
        with open(path, "w") as f:
            json.dump(sc.to_dict(), f)
        cmd = [sys.executable, "-m", "cvxalloc", "solve", path, "--json", "--no-baselines"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - t0


def row(n: int, seed: int, repeat: int, exact: bool, cli: bool, arrival_scv: float) -> None:
    sc = random_scenario(np.random.default_rng(seed), n, load="heavy")
    sc = sc.with_(arrival_scv=arrival_scv)
    cvxalloc.solve(sc)  # warm up
    t_solve, res = best(lambda: cvxalloc.solve(sc), repeat)
    t_q, q = best(lambda: system_time_quantiles(sc, res.tokens), repeat)
    line = (
        f"N={n:>6} seed={seed}  rho={res.utilization:.3f}  solve {1e3 * t_solve:8.2f} ms  "
        f"quantiles {1e3 * t_q:8.2f} ms ({q.method}, {q.details['components']} comp.)  "
        f"ratio {t_q / t_solve:7.2f}"
    )
    if cli:
        t_cli = cli_time(sc)
        line += f"  cli {t_cli:6.2f} s  ratio to cli {t_q / t_cli:.3f}"
    print(line, flush=True)
    if exact and q.method == "compressed":
        t_x, qx = best(lambda: system_time_quantiles(sc, res.tokens, max_components=10**9), 1)
        rel = np.abs(q.seconds / qx.seconds - 1)
        est = q.error / qx.seconds
        print(
            f"    exact {1e3 * t_x:9.1f} ms; compressed error by level {_sci(rel)}"
            f", estimated {_sci(est)}",
            flush=True,
        )


def _sci(values: np.ndarray) -> str:
    return "[" + " ".join(f"{v:.1e}" for v in values) + "]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="*", default=[10, 100, 1000, 10_000])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--exact", action="store_true", help="also the uncompressed computation")
    ap.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI timing")
    ap.add_argument(
        "--arrival-scv", type=float, default=1.0, help="gaps' scv (1: Poisson, exact method)"
    )
    args = ap.parse_args()
    print(
        f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}; MAX_COMPONENTS = {MAX_COMPONENTS}"
    )
    for n in args.n:
        for seed in range(args.seeds):
            row(n, seed, args.repeat, args.exact, not args.no_cli, args.arrival_scv)


if __name__ == "__main__":
    main()
