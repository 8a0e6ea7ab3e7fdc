"""Campaign: does the conic reference solve every regime without falling back? (a script)

Run from the repository root::

    python benchmarks/campaign_conic.py --count 500 --max-n 10000 --out /tmp/campaign.json
    python benchmarks/campaign_conic.py --count 60 --max-n 1000          # a quick look
    python benchmarks/campaign_conic.py --count 200 --max-n 3000 --only 87 199   # replay two

Instance k is drawn from the same generator state whatever ``--only`` says, so a
failure replays alone; ``--no-fallback`` turns the SCS fallback off (a Clarabel
failure is then an error record, in a second instead of minutes).

Draws instances of :func:`cvxalloc.testing.random_scenario` across the regimes of
issue 14: light, heavy, saturated and overloaded load; huge boxes (max_tokens
multiplied by 10^3 to 10^6 on some types); near-zero and huge latency weights;
skewed mixes (one type with 99% of the traffic); arrival_scv drawn from
{1, 0.3, 20}. Sizes are drawn log-uniformly up to ``--max-n`` (most small).

For each instance it records the conic status, whether Clarabel's first solve
(default settings) ended optimal, whether Clarabel produced the point at all
(its retries with other settings included, no SCS fallback), its wall
time, and the objective against the default (aggregate) method in units of
|U|, with both certificates checked against both objectives. It prints the
success counts per regime and writes every record to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

import cvxalloc
from cvxalloc.certificate import relative_scale
from cvxalloc.testing import random_scenario

LOADS = ("light", "heavy", "saturated", "overloaded")
EXTRAS = ("plain", "huge-box", "tiny-gamma", "huge-gamma", "skewed-mix")


def draw(rng: np.random.Generator, max_n: int):
    n = int(np.exp(rng.uniform(0.0, np.log(max_n))))
    load = LOADS[rng.integers(len(LOADS))]
    extra = EXTRAS[rng.integers(len(EXTRAS))]
    sc = random_scenario(int(rng.integers(2**31)), n, load=load)
    if extra == "huge-box":
        # not on logarithmic curves, which would pass accuracy 1 on a huge box
        log = np.array(sc.accuracy.family_names) == "logarithmic"
        grow = (rng.random(n) < 0.3) & ~log
        hi = sc.max_tokens * np.where(grow, 10 ** rng.uniform(3, 6, n), 1.0)
        sc = sc.with_(max_tokens=np.minimum(hi, 1e12))
    elif extra == "tiny-gamma":
        sc = sc.with_(latency_weight=sc.latency_weight * 1e-4)
    elif extra == "huge-gamma":
        sc = sc.with_(latency_weight=sc.latency_weight * 1e4)
    elif extra == "skewed-mix" and n > 1:
        p = np.full(n, 0.01 / (n - 1))
        p[int(rng.integers(n))] = 0.99
        try:
            sc = sc.with_(probability=p)
        except cvxalloc.CvxallocError:  # unstable even at the minimum budgets: keep the mix
            extra = "plain"
    ca2 = float(rng.choice([1.0, 1.0, 0.3, 20.0]))
    return sc.with_(arrival_scv=ca2), {"n": n, "load": load, "extra": extra, "arrival_scv": ca2}


def run_one(sc, fallback: str | None = "SCS") -> dict:
    rec: dict = {}
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = cvxalloc.solve(sc, method="conic", fallback=fallback)
    except cvxalloc.CvxallocError as exc:
        rec.update(status="error", error=f"{type(exc).__name__}: {exc}"[:300])
        rec["seconds"] = time.perf_counter() - t0
        return rec
    rec["seconds"] = time.perf_counter() - t0
    solver = str(res.solver_stats.get("solver", ""))
    rec.update(
        status=res.status,
        solver=solver[:300],
        # the first Clarabel solve, default settings, ended optimal
        clarabel_alone=solver.startswith("CLARABEL") and "fallback" not in solver,
        # Clarabel produced the point (possibly after its own retries), no other solver
        clarabel_any=res.fallback is None and solver.startswith("CLARABEL"),
        # the model's box was one point (the minimum budgets): certified without a solve
        no_solve=solver.startswith("none"),
        relative_gap=res.certificate.relative_gap,
    )
    ref = cvxalloc.solve(sc)
    scale = relative_scale(ref.objective)
    rec["objective_vs_default"] = (res.objective - ref.objective) / scale
    rec["bounds_hold"] = bool(
        res.certificate.upper_bound >= ref.objective - 1e-9 * scale
        and ref.certificate.upper_bound >= res.objective - 1e-9 * scale
    )
    return rec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--max-n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--out", default=None, help="write every record to this JSON file")
    parser.add_argument(
        "--only", type=int, nargs="*", default=None, help="run only these instance numbers"
    )
    parser.add_argument(
        "--no-fallback", action="store_true", help="no SCS fallback: a Clarabel failure is an error"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    records = []
    for k in range(args.count):
        sc, meta = draw(rng, args.max_n)  # drawn for every k: instance k is the same either way
        if args.only is not None and k not in args.only:
            continue
        rec = {"index": k, **meta, **run_one(sc, None if args.no_fallback else "SCS")}
        records.append(rec)
        print(
            f"{k:4d} n={meta['n']:6d} {meta['load']:10s} {meta['extra']:10s} "
            f"ca2={meta['arrival_scv']:<4g} {rec['status']:18s} "
            f"first={rec.get('clarabel_alone')} clarabel={rec.get('clarabel_any')} "
            f"{rec['seconds']:7.2f}s",
            flush=True,
        )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(records, fh, indent=1, default=float)
    summarize(records)


def summarize(records: list[dict]) -> None:
    """Print the counts over all records, then per load and per extra."""
    total = len(records)
    alone = sum(bool(r.get("clarabel_alone")) for r in records)
    anyc = sum(bool(r.get("clarabel_any")) for r in records)
    none = sum(bool(r.get("no_solve")) for r in records)
    optimal = sum(r["status"] == "optimal" for r in records)
    agree = sum(abs(r.get("objective_vs_default", np.inf)) <= 1e-6 for r in records)
    seconds = np.array([r["seconds"] for r in records])
    print(
        f"\n{total} instances: Clarabel first solve {alone}, Clarabel (with its retries, no "
        f"other solver) {anyc}, no solve needed (box of one point) {none}, status optimal "
        f"{optimal}, agree with default to 1e-6 |U| "
        f"{agree}, bounds hold {sum(bool(r.get('bounds_hold')) for r in records)}; "
        f"time median {np.median(seconds):.2f} s, max {seconds.max():.2f} s, "
        f"total {seconds.sum():.0f} s"
    )
    for key in ("load", "extra"):
        for val in sorted({r[key] for r in records}):
            sub = [r for r in records if r[key] == val]
            print(
                f"  {key}={val:12s} {len(sub):4d}: first solve "
                f"{sum(bool(r.get('clarabel_alone')) for r in sub):4d}, Clarabel "
                f"{sum(bool(r.get('clarabel_any')) for r in sub):4d}, optimal "
                f"{sum(r['status'] == 'optimal' for r in sub):4d}, max "
                f"{max(r['seconds'] for r in sub):7.2f} s"
            )


if __name__ == "__main__":
    main()
