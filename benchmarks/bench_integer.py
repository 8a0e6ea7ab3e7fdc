"""Integer budgets: mixed-integer time against N and grid size; rounding loss.

Run from the repository root::

    python benchmarks/bench_integer.py [--seeds 2] [--instances 200] [--time-limit 60]

Part 1: ``solve(sc, method="mixed-integer")`` on random heavy-load scenarios
(:func:`cvxalloc.testing.random_scenario`) with step grids of L levels per type,
for N in 2..50 and L in 4..256. Reported: wall time (median over seeds), the
continuous reference time in the same run and the ratio, SCIP status, cutting-plane
rounds, whether SCIP improved on rounding.

Part 2: over random instances (N 2-20, every load regime, every family; whole
tokens, 16-level steps and 4-level menus) the rounding loss relative to the
continuous bound, ``(U_c + FWgap_c - U_round) / |U_round|`` (the certified relative
gap of rounding; token bounds made whole numbers), and, on the coarse grids, how
often the mixed-integer optimum beats rounding and by how much.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

import cvxalloc
from cvxalloc.integer import round_allocation
from cvxalloc.testing import LOADS, random_scenario


def _quiet():
    """Silence C-level stdout/stderr (SoPlex prints tolerance notices) for a block."""

    class _Q:
        def __enter__(self):
            sys.stdout.flush()
            sys.stderr.flush()
            self.saved = os.dup(1), os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.close(devnull)

        def __exit__(self, *exc):
            sys.stdout.flush()
            os.dup2(self.saved[0], 1)
            os.dup2(self.saved[1], 2)
            os.close(self.saved[0])
            os.close(self.saved[1])

    return _Q()


def with_levels(sc, levels: int):
    """Step grids with ``levels`` points from min to max tokens."""
    width = sc.max_tokens - sc.min_tokens
    step = np.maximum(width / (levels - 1), 1e-9)
    return sc.with_(step=step)


def with_menus(rng, sc, m: int):
    """Menus of ``m`` whole-token budgets, the lowest one at min_tokens."""
    lv = []
    for lo, hi in zip(sc.min_tokens, sc.max_tokens):
        inner = np.sort(
            rng.choice(
                np.arange(int(np.ceil(lo)) + 1, int(np.floor(hi)) + 1), size=m - 1, replace=False
            )
        ).astype(float)
        lv.append(np.concatenate([[lo], inner]))
    return sc.with_(levels=lv)


def part1(seeds: int, time_limit: float) -> None:
    print("== mixed-integer time vs N and grid size (heavy load, step grids) ==")
    print(
        f"{'N':>4} {'levels':>6} {'MI s':>8} {'cont s':>7} {'ratio':>7} {'status':>15} "
        f"{'rounds':>6} {'scip>round':>10} {'MI-round rel':>12}"
    )
    for n in (2, 5, 10, 20, 50):
        for levels in (4, 16, 64, 256):
            times, cont_times, rows = [], [], []
            for seed in range(seeds):
                rng = np.random.default_rng(1000 * n + levels + seed)
                sc = with_levels(random_scenario(rng, n, load="heavy"), levels)
                t0 = time.perf_counter()
                cont = cvxalloc.solve(sc, method="conic")
                cont_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                with _quiet():
                    res = cvxalloc.solve(
                        sc, method="mixed-integer", continuous=cont, time_limit=time_limit
                    )
                times.append(time.perf_counter() - t0 + cont_times[-1])
                rows.append(res)
            med, cmed = float(np.median(times)), float(np.median(cont_times))
            stat = ",".join(sorted({r.diagnostics["scip_status"] for r in rows}))
            rounds = max(r.diagnostics["rounds"] for r in rows)
            better = sum(r.diagnostics["source"].startswith("scip") for r in rows)
            gain = max(r.diagnostics["improvement_over_rounding"] / abs(r.objective) for r in rows)
            print(
                f"{n:>4} {levels:>6} {med:>8.2f} {cmed:>7.3f} {med / cmed:>7.1f} "
                f"{stat:>15} {rounds:>6} {better:>5}/{seeds:<4} {gain:>12.2e}",
                flush=True,
            )


def part2(instances: int, time_limit: float) -> None:
    print("\n== rounding loss relative to the continuous bound ==")
    rng = np.random.default_rng(7)
    kinds = {"whole tokens": [], "16-level step": [], "4-level menu": []}
    mi_gain = {"16-level step": [], "4-level menu": []}
    loads = list(LOADS)
    for j in range(instances):
        n = int(rng.integers(2, 21))
        sc0 = random_scenario(rng, n, load=loads[j % len(loads)])
        # token bounds are whole numbers in practice (random_scenario draws reals:
        # a fractional max_tokens alone costs up to 1e-3 of |U| when whole tokens stop
        # short of it)
        sc0 = sc0.with_(min_tokens=np.ceil(sc0.min_tokens), max_tokens=np.floor(sc0.max_tokens))
        cont = cvxalloc.solve(sc0, method="conic")
        for kind in kinds:
            if kind == "whole tokens":
                sc = sc0
            elif kind == "16-level step":
                sc = with_levels(sc0, 16)
            else:
                sc = with_menus(rng, sc0, 4)
            try:
                r = round_allocation(sc, continuous=cont)
            except cvxalloc.UnstableError:
                continue
            kinds[kind].append(r.certificate.relative_gap)
            if kind in mi_gain and j < instances // 2:
                with _quiet():
                    m = cvxalloc.solve(
                        sc, method="mixed-integer", continuous=cont, time_limit=time_limit
                    )
                mi_gain[kind].append((m.objective - r.objective) / abs(m.objective))
    qs = (50, 90, 99, 100)
    print(f"{'grid':>14} {'count':>6} " + " ".join(f"{'p' + str(q):>9}" for q in qs))
    for kind, vals in kinds.items():
        v = np.array(vals)
        print(f"{kind:>14} {v.size:>6} " + " ".join(f"{np.percentile(v, q):>9.2e}" for q in qs))
    print("\nmixed-integer improvement over rounding (relative to |U|), coarse grids:")
    for kind, vals in mi_gain.items():
        v = np.array(vals)
        print(
            f"{kind:>14}: {v.size} instances, rounding optimal in "
            f"{np.mean(v <= 1e-12):.1%}, max gain {v.max():.2e}, "
            f"p90 gain {np.percentile(v, 90):.2e}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--instances", type=int, default=200)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--skip-part1", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if not args.skip_part1:
        part1(args.seeds, args.time_limit)
    part2(args.instances, args.time_limit)


if __name__ == "__main__":
    main()
