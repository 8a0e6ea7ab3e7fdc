"""Aggregate solver at N = 10^6 against the floor of its work, on a profile of instances.

Run from the repository root (a script, not a test)::

    python benchmarks/bench_aggregate_floor.py                 # the whole profile
    python benchmarks/bench_aggregate_floor.py --only mixed-heavy,exponential-overloaded
    python benchmarks/bench_aggregate_floor.py --n 1000000 --repeat 7

The floor (issue 24) is what one outer step cannot avoid: 6 numpy passes over N
doubles (``p * s`` summed) plus one Wright-omega evaluation over N doubles
(``scipy.special.wrightomega`` on ``linspace(-5, 30, N)``). For each instance of the
profile (:data:`PROFILE`: every accuracy family alone and mixed, overloaded and
light load, narrow and wide boxes, ``arrival_scv`` below and above 1, a batching
server) it times ``cvxalloc.solve(sc)`` (the default aggregate method, certified to
1e-9 of |U|) and the floor alternately, each the best of ``--repeat``, and prints
solve / floor for each instance and the worst. The machine may be shared: only
ratios measured in the same run mean anything.

Also printed: one numpy pass, cvxalloc's own Wright omega (:mod:`cvxalloc._wright`)
over the same N doubles, and the BLAS inner product ``p @ s`` (under load a threaded
``ddot`` costs ~10 ms whatever N; the solver's reductions do not use it). With
``--phases`` it also splits the solve of the best and the worst instance into its phases
(:mod:`cvxalloc.solvers.packed`: set-up, importance sample, first sweep, each later
sweep, last step and certificate), each in numpy passes (CPU time over one pass's).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

import numpy as np
from scipy.special import wrightomega

import cvxalloc
from cvxalloc.testing import random_scenario

try:  # (absent before issue 24: the script also times older versions)
    from cvxalloc._wright import wright_omega
except ImportError:  # pragma: no cover
    wright_omega = None

#: The capacity curve of the built-in batching example (cvxalloc/data/example_batching.toml).
SERVER = {
    "model": "batching",
    "concurrency": [1, 4, 8, 16, 32, 48],
    "speedup": [1.0, 3.82, 6.85, 11.7, 17.7, 21.6],
}
ALL = ("exponential", "power", "logarithmic")


def _narrow(sc):
    """Boxes 2% wide: ``min_tokens = 0.98 max_tokens``."""
    return sc.with_(min_tokens=0.98 * sc.max_tokens)


def _wide(sc):
    """Boxes from 0 to 30 times the drawn maximum (most of it beyond the stability limit;
    exponential and power curves, which stay below their ceiling)."""
    return sc.with_(min_tokens=np.zeros(sc.n), max_tokens=30.0 * sc.max_tokens)


def _batching(sc):
    """The same load on a batching server: arrival rate times its capacity 21.6."""
    return sc.with_(server=SERVER, arrival_rate=sc.arrival_rate * SERVER["speedup"][-1])


#: name -> (families, load, seed, change): :func:`random_scenario` then ``change``.
PROFILE: dict[str, tuple[tuple[str, ...], str, int, Callable | None]] = {
    "mixed-heavy": (ALL, "heavy", 0, None),
    "exponential-heavy": (("exponential",), "heavy", 0, None),
    "power-heavy": (("power",), "heavy", 0, None),
    "logarithmic-heavy": (("logarithmic",), "heavy", 0, None),
    "exponential-overloaded": (("exponential",), "overloaded", 4, None),
    "power-overloaded": (("power",), "overloaded", 4, None),
    "logarithmic-overloaded": (("logarithmic",), "overloaded", 4, None),
    "mixed-overloaded": (ALL, "overloaded", 7, None),
    "exponential-light": (("exponential",), "light", 0, None),
    "power-light": (("power",), "light", 0, None),
    "mixed-saturated": (ALL, "saturated", 0, None),
    "mixed-narrow": (ALL, "heavy", 0, _narrow),
    "mixed-wide": (("exponential", "power"), "heavy", 0, _wide),
    "mixed-scv-0.3": (ALL, "overloaded", 0, lambda sc: sc.with_(arrival_scv=0.3)),
    "mixed-scv-3": (ALL, "heavy", 0, lambda sc: sc.with_(arrival_scv=3.0)),
    "mixed-batching": (ALL, "heavy", 0, _batching),
}


def instance(name: str, n: int):
    """The scenario ``name`` of :data:`PROFILE` with ``n`` types."""
    families, load, seed, change = PROFILE[name]
    sc = random_scenario(np.random.default_rng(seed), n, load=load, families=families)
    return sc if change is None else change(sc)


def best(fn: Callable[[], object], repeat: int, clock=time.perf_counter) -> float:
    out = np.inf
    for _ in range(repeat):
        gc.collect()
        t0 = clock()
        fn()
        out = min(out, clock() - t0)
    return out


def paired(solve: Callable[[], object], floor: Callable[[], object], repeat: int):
    """Best of ``repeat`` of each, run alternately (so load hits both alike), in wall
    time and in this process's CPU time (which other processes disturb less)."""
    wall, cpu = [np.inf, np.inf], [np.inf, np.inf]
    for _ in range(repeat):
        for j, fn in enumerate((solve, floor)):
            gc.collect()
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            c1, w1 = time.process_time(), time.perf_counter()
            wall[j], cpu[j] = min(wall[j], w1 - w0), min(cpu[j], c1 - c0)
    return wall, cpu


def phases(sc, repeat: int, t_pass: float) -> str:
    """The solve's phases, each the best of ``repeat`` CPU times, in numpy passes."""
    from cvxalloc.solvers.packed import Packed

    best_of: dict[str, float] = {}
    for _ in range(repeat):
        clock = time.process_time
        t0 = clock()
        pk = Packed(sc)
        t1 = clock()
        u, m2 = pk.sample(16384).solve(50, 1e-14)
        t2 = clock()
        state = pk.newton(u, m2, 1)
        times = {"set-up": t1 - t0, "sample": t2 - t1, "first sweep": clock() - t2}
        while not state.converged and state.sweeps < 50:
            t3 = clock()
            state = pk.more(state)
            times[f"sweep {state.sweeps}"] = clock() - t3
        t4 = clock()
        pk.finish(state)
        times["last step + certificate"] = clock() - t4
        for key, val in times.items():
            best_of[key] = min(best_of.get(key, np.inf), val)
    return ", ".join(f"{key} {val / t_pass:.0f}" for key, val in best_of.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated instance names")
    parser.add_argument("--phases", action="store_true", help="split best and worst into phases")
    args = parser.parse_args()
    names = [x for x in args.only.split(",") if x] or list(PROFILE)
    x = np.linspace(-5.0, 30.0, args.n)
    rows = []
    for name in names:
        sc = instance(name, args.n)
        p = np.asarray(sc.probability)
        s = sc.service_time(0.5 * (sc.min_tokens + sc.max_tokens))

        def floor(p=p, s=s):
            return [float((p * s).sum()) for _ in range(6)], wrightomega(x)

        res = cvxalloc.solve(sc)
        wall, cpu = paired(lambda sc=sc: cvxalloc.solve(sc), floor, args.repeat)
        rows.append((name, wall[0] / wall[1], cpu[0] / cpu[1]))
        d = res.diagnostics
        print(
            f"{name:24s} {res.status:8s} gap/|U| {res.certificate.relative_gap:8.1e}  "
            f"solve {wall[0]:6.3f} s floor {wall[1]:6.3f} s: {rows[-1][1]:5.2f}x wall, "
            f"{rows[-1][2]:5.2f}x cpu  ({d.get('start')}, {d.get('newton_iterations')} sweeps, "
            f"polish {d.get('polish_steps')})",
            flush=True,
        )
    for col, clock in ((1, "wall"), (2, "cpu")):
        top = min(rows, key=lambda r: r[col])
        worst = max(rows, key=lambda r: r[col])
        print(
            f"solve/floor ({clock} time): best {top[0]} {top[col]:.2f}x, "
            f"worst {worst[0]} {worst[col]:.2f}x"
        )
    sc = instance(names[0], args.n)
    p, s = np.asarray(sc.probability), sc.service_time(sc.max_tokens)
    t_pass = best(lambda: float(np.einsum("i,i->", p, s)), 5 * args.repeat)
    if args.phases:
        c_pass = best(lambda: float(np.einsum("i,i->", p, s)), 5 * args.repeat, time.process_time)
        for name in dict.fromkeys(
            (min(rows, key=lambda r: r[2])[0], max(rows, key=lambda r: r[2])[0])
        ):
            split = phases(instance(name, args.n), args.repeat, c_pass)
            print(f"phases of {name} (numpy passes): {split}")
    t_wo = best(lambda: wrightomega(x), args.repeat)
    t_own = best(lambda: wright_omega(x), args.repeat) if wright_omega else np.nan
    t_blas = best(lambda: float(p @ s), 5 * args.repeat)
    print(f"one numpy pass {t_pass:.6f} s; scipy wrightomega {t_wo:.4f} s; ", end="")
    print(f"cvxalloc wright_omega {t_own:.4f} s (whole array); BLAS p @ s {t_blas:.6f} s")


if __name__ == "__main__":
    main()
