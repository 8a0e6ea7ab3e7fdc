"""Campaign: the aggregate method under constraints against the conic reference (a script).

Run from the repository root::

    python benchmarks/campaign_constrained.py --count 500 --max-n 10000
    python benchmarks/campaign_constrained.py --count 50 --max-n 300     # a quick look
    python benchmarks/campaign_constrained.py --seed 3 --only 100        # replay one instance

Draws instances of :func:`cvxalloc.testing.random_scenario` (sizes log-uniform up
to ``--max-n``; light, heavy, saturated and overloaded load; arrival_scv from
{1, 0.3, 20}; 15% with ``latency_weight = 0`` where the box allows it) and a
random mix of constraints around the unconstrained optimum (an SLO at 0.5-1.2
of its ``W``, a token budget at 0.3-1.2 of its mean tokens, a utilization cap at
0.5-1.2 of its utilization, floors on 30% of the tasks; a ``gamma = 0`` scenario
always gets an SLO or a cap). Infeasible draws (refused by both methods before
any solve) are counted and skipped.

For each instance it records both statuses, the objective difference in units
of ``|U|``, whether each certificate bounds the other's objective, and both
times. An instance is *bad* when the aggregate method is not ``optimal``,
disagrees with an ``optimal`` conic result beyond 1e-6 of ``|U|``, or a
certificate is beaten; conic results short of ``optimal`` are counted (and
printed) apart, since then the certificates say which point is right.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import cvxalloc
from cvxalloc import Constraints
from cvxalloc.certificate import relative_scale
from cvxalloc.constraints import InfeasibleError
from cvxalloc.testing import random_scenario

LOADS = ("light", "heavy", "saturated", "overloaded")
KEYS = ("max_mean_system_time", "max_mean_tokens", "max_utilization", "min_accuracy")


def draw(rng: np.random.Generator, max_n: int):
    """One constrained scenario and a description of it."""
    n = int(np.exp(rng.uniform(0, np.log(max_n))))
    load = LOADS[rng.integers(4)]
    seed = int(rng.integers(2**31))
    sc0 = random_scenario(seed, n, load=load).with_(
        arrival_scv=float(rng.choice([1.0, 1.0, 0.3, 20.0]))
    )
    if rng.random() < 0.15:
        try:
            sc0 = sc0.with_(latency_weight=0.0)
        except cvxalloc.CvxallocError:
            pass  # an unstable box needs gamma > 0
    if sc0.latency_weight > 0:
        r0 = cvxalloc.solve(sc0)
        W0, T0, R0 = r0.mean_system_time, float(sc0.probability @ r0.tokens), r0.utilization
    else:
        W0, T0, R0 = 100.0, float(sc0.probability @ sc0.max_tokens), 0.9
    lo_acc, hi_acc = sc0.accuracy.value(sc0.min_tokens), sc0.accuracy.value(sc0.max_tokens)
    floors = np.where(
        rng.uniform(size=n) < 0.3, lo_acc + rng.uniform(0.05, 0.7, n) * (hi_acc - lo_acc), np.nan
    )
    cand = {
        "max_mean_system_time": rng.uniform(0.5, 1.2) * W0,
        "max_mean_tokens": rng.uniform(0.3, 1.2) * T0,
        "max_utilization": min(rng.uniform(0.5, 1.2) * R0, 1.0),
        "min_accuracy": floors,
    }
    keys = [k for k in KEYS if rng.uniform() < 0.5] or ["max_mean_system_time"]
    if sc0.latency_weight == 0 and not {"max_mean_system_time", "max_utilization"} & set(keys):
        keys.append("max_utilization")
    sc = sc0.with_(constraints=Constraints(**{k: cand[k] for k in keys}))
    return sc, {"n": n, "load": load, "seed": seed, "gamma0": sc0.latency_weight == 0, "keys": keys}


def compare(sc) -> dict:
    """Solve with both methods and compare (raises InfeasibleError for an infeasible draw)."""
    t0 = time.perf_counter()
    agg = cvxalloc.solve(sc, method="aggregate")
    t_agg = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = cvxalloc.solve(sc, method="conic")
    t_conic = time.perf_counter() - t0
    scale = relative_scale(ref.objective)
    return {
        "aggregate": agg.status,
        "conic": ref.status,
        "diff": (agg.objective - ref.objective) / scale,
        "bounds_hold": bool(
            agg.certificate.upper_bound >= ref.objective - 1e-9 * scale
            and ref.certificate.upper_bound >= agg.objective - 1e-9 * scale
        ),
        "active": agg.diagnostics.get("active", []),
        "path": agg.diagnostics.get("path", ""),
        "t_aggregate": t_agg,
        "t_conic": t_conic,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--max-n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--only", type=int, default=None, help="replay instance K only")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(args.seed)
    bad = infeasible = solved = conic_short = 0
    t_agg, t_conic = [], []
    for k in range(args.count):
        sc, meta = draw(rng, args.max_n)
        if args.only is not None and k != args.only:
            continue
        try:
            rec = compare(sc)
        except InfeasibleError:
            infeasible += 1
            continue
        except cvxalloc.CvxallocError as exc:
            bad += 1
            print(f"BAD {k} {meta}: {type(exc).__name__}: {exc}", flush=True)
            continue
        solved += 1
        t_agg.append(rec["t_aggregate"])
        t_conic.append(rec["t_conic"])
        agree = abs(rec["diff"]) <= 1e-6 or rec["conic"] != "optimal"
        ok = rec["aggregate"] == "optimal" and agree and rec["bounds_hold"]
        bad += not ok
        conic_short += rec["conic"] != "optimal"
        if not ok or rec["conic"] != "optimal" or args.only is not None:
            print(f"{'BAD ' if not ok else ''}{k} {meta} {rec}", flush=True)
    print(
        f"{solved} solved, {infeasible} infeasible draws, {bad} bad, conic short of optimal "
        f"{conic_short}; aggregate median "
        f"{np.median(t_agg):.3f} s max {max(t_agg):.2f} s; conic median "
        f"{np.median(t_conic):.3f} s max {max(t_conic):.2f} s"
    )


if __name__ == "__main__":
    main()
