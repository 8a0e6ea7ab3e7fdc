"""Random batching instances: the conic reference against the default method (a script, not a test).

Run from the repository root::

    python benchmarks/campaign_batching.py --seed 1 --runs 150
    python benchmarks/campaign_batching.py --seed 2 --runs 60 --sizes 500 2000 5000

Each instance is :func:`cvxalloc.testing.random_scenario` (overloaded box, every family)
put on one of four capacity curves, with ``arrival_scv`` drawn from 0.3, 1, 9 and 173,
``max_running`` from none, 1, 3 and 48 (with ``service_scv`` 0.5, 1 or 4.85), the arrival
rate set so the box's top loads the server 0.05 to 20 times, and the latency weight drawn
or set to 1e-7 or 30 (every type at a bound). It prints every instance where either
method is not ``optimal``, the two differ by more than 1e-7 of ``|U|``, or a certificate
does not bound the other method's objective, then the count and the largest difference.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import cvxalloc
from cvxalloc.errors import ScenarioError
from cvxalloc.testing import random_scenario

CURVES = [
    ([1, 4, 8, 16, 32, 48], [1.0, 3.82, 6.85, 11.7, 17.7, 21.6]),
    ([1, 2, 8], [1.0, 1.8, 4.0]),
    ([1, 2], [1.0, 1.79]),
    ([1], [1.0]),
]


def instance(rng: np.random.Generator, sizes: list[int]):
    """One random batching scenario and the draws that made it."""
    draw = {
        "seed": int(rng.integers(0, 10**6)),
        "n": int(rng.choice(sizes)),
        "identical": bool(rng.random() < 0.2),
        "curve": int(rng.integers(len(CURVES))),
        "arrival_scv": float(rng.choice([0.3, 1.0, 9.0, 173.0])),
        "max_running": [None, 1, 3, 48][int(rng.integers(4))],
        "service_scv": float(rng.choice([0.5, 1.0, 4.85])),
        "fill": float(rng.choice([0.05, 0.6, 1.5, 20.0])),
        "gamma": [None, 1e-7, 30.0][int(rng.integers(3))],
    }
    base = random_scenario(
        draw["seed"],
        draw["n"],
        load="overloaded",
        identical=draw["identical"],
        latency_weight=draw["gamma"],
    )
    conc, speed = CURVES[draw["curve"]]
    server = {"model": "batching", "concurrency": conc, "speedup": speed}
    if draw["max_running"] is not None:
        server.update(max_running=draw["max_running"], service_scv=draw["service_scv"])
    sc = base.with_(server=server, arrival_scv=draw["arrival_scv"])
    m1_lo = float(sc.probability @ sc.service_time(sc.min_tokens))
    m1_hi = float(sc.probability @ sc.service_time(sc.max_tokens))
    lam = min(draw["fill"] * sc.capacity / m1_hi, 0.9 * sc.capacity / m1_lo)
    return sc.with_(arrival_rate=lam), draw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=150)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 5, 12, 50, 200])
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(args.seed)
    bad = done = 0
    worst = 0.0
    slowest = 0.0
    for _ in range(args.runs):
        try:
            sc, draw = instance(rng, args.sizes)
        except ScenarioError:
            continue
        t0 = time.perf_counter()
        ref = cvxalloc.solve(sc, method="conic")
        res = cvxalloc.solve(sc)
        slowest = max(slowest, time.perf_counter() - t0)
        done += 1
        scale = max(abs(res.objective), 1e-300)
        diff = abs(ref.objective - res.objective) / scale
        worst = max(worst, diff)
        ok = (
            ref.status == res.status == "optimal"
            and diff <= 1e-7
            and res.objective <= ref.certificate.upper_bound + 1e-12 * scale
            and ref.objective <= res.certificate.upper_bound + 1e-12 * scale
        )
        if not ok:
            bad += 1
            print(f"BAD {draw}: conic {ref.status}, default {res.status}, diff {diff:.2e}")
    print(
        f"{done} instances, {bad} bad, largest difference {worst:.2e} of |U|, "
        f"slowest pair {slowest:.1f} s"
    )


if __name__ == "__main__":
    main()
