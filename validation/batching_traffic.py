"""(i) Batching server: bursty arrivals and the engine's admission limit, against simulation.

Run alone: ``python -m validation.batching_traffic --out validation/output [--quick]``.

The batching example's optimal budgets (cvxalloc/data/example_batching.toml: the
published vLLM curve, five task types; the service mix's scv at those budgets is 4.85)
are held fixed while the arrival rate sets the utilization ``lam m1 / c_max`` from 0.3 to
0.95, with and without the engine's limit of 48 decoding (``max_running = 48``):

1. **Replays of both Azure traces** (validation/data/traces: real arrival times, rescaled
   so their rate gives the utilization; services drawn from the scenario; replications of
   the service draws): the Poisson model (what cvxalloc used before ``arrival_scv``
   entered the batching model), and the batching model with the trace's measured
   ``arrival_scv`` and ``service_scv`` 1 (the default) and 4.85 (the mix's own).
2. **Renewal arrivals** (gamma gaps of scv 0.3, 2, 5, 20, 100): the same three models
   against :func:`cvxalloc.simulate.simulate_batching`.
3. **What planning with the burstiness is worth**: the example at its arrival rate and at
   1.5 times it, planned with Poisson arrivals, with the trace's ``arrival_scv`` (default
   ``service_scv``) and with the plan's own ``service_scv`` (three fixed-point solves),
   each replayed on the trace at that rate; realized utility (weighted share of correct
   answers minus gamma times the replayed mean system time) with its interval.

Check (stated false-alarm rate): with Poisson arrivals and processor sharing the model is
exact, so at every such point (renewal with ``c_a^2 = 1`` is part 2's control row) the
model must lie inside the simulation's interval at level ``1 - 0.01 / k`` (Bonferroni over
the ``k`` points): a correct model fails it with probability at most 1%. The other rows
are approximations and are reported as measured, not checked.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import special

import cvxalloc
from cvxalloc.queue import BatchingQueue
from cvxalloc.simulate import simulate_batching

from .common import Section, progress, table
from .traces import gap_stats, load_trace

UTILIZATIONS = (0.3, 0.5, 0.7, 0.85, 0.95)
RENEWAL_SCV = (0.3, 1.0, 2.0, 5.0, 20.0, 100.0)
LIMIT = 48
FAMILY_ALPHA = 0.01
RATE_MULTIPLES = (1.0, 1.5)


def _example():
    sc = cvxalloc.load_scenario(resources.files("cvxalloc") / "data/example_batching.toml")
    return sc, cvxalloc.solve(sc).tokens


def _mix_scv(sc, t) -> float:
    s = sc.service_time(t)
    m1 = float(sc.probability @ s)
    m2 = float(sc.probability @ ((1 + sc.scv) * s * s + sc.variance))
    return m2 / (m1 * m1) - 1.0


def _models(sc, t, lam, ca2, limit, cs_own) -> dict[str, float]:
    m1 = float(sc.probability @ sc.service_time(t))
    curve = sc.server.curve
    out = {"poisson": BatchingQueue(lam, curve=curve).value(m1)}
    for key, cs in (("cs1", 1.0), ("own", cs_own)):
        q = BatchingQueue(lam, curve=curve, arrival_scv=ca2, max_running=limit, service_scv=cs)
        out[key] = q.value(m1)
    return out


def _replications(sc, t, times, lam, limit, reps, seed, level) -> tuple[float, float]:
    """Mean of the replay's mean system time over ``reps`` service draws, and its half-width."""
    rate = (times.size - 1) / (times[-1] - times[0])
    scaled = (times - times[0]) * (rate / lam)
    means = [
        simulate_batching(
            sc, t, arrival_times=scaled, seed=seed + r, warmup=0, batches=2, limit=limit
        ).mean_system_time
        for r in range(reps)
    ]
    means = np.asarray(means)
    half = special.stdtrit(reps - 1, 0.5 + level / 2) * means.std(ddof=1) / math.sqrt(reps)
    return float(means.mean()), float(half)


def part_traces(sc, t, cs_own, quick: bool) -> list[dict]:
    reps = 5 if quick else 20
    rows = []
    runs = [
        (name, rho, limit)
        for name in ("code", "conversation")
        for rho in UTILIZATIONS
        for limit in (None, LIMIT)
    ]
    logs = {name: load_trace(name).times for name in ("code", "conversation")}
    m1 = float(sc.probability @ sc.service_time(t))
    for k, (name, rho, limit) in enumerate(progress(runs, "(i) trace replays")):
        times = logs[name]
        _, ca2 = gap_stats(times)
        lam = rho * sc.capacity / m1
        w, half = _replications(sc, t, times, lam, limit, reps, 1000 * k, 0.99)
        rows.append(
            {
                "trace": name,
                "utilization": rho,
                "limit": limit,
                "arrival_scv": ca2,
                "replay": w,
                "half": half,
                **_models(sc, t, lam, ca2, limit, cs_own),
            }
        )
    return rows


def part_renewal(sc, t, cs_own, quick: bool) -> tuple[list[dict], float]:
    queries = 300_000 if quick else 2_000_000
    runs = [(c, rho, limit) for c in RENEWAL_SCV for rho in UTILIZATIONS for limit in (None, LIMIT)]
    exact = [r for r in runs if r[0] == 1.0 and r[2] is None]
    level = 1.0 - FAMILY_ALPHA / len(exact)
    m1 = float(sc.probability @ sc.service_time(t))
    rows = []
    for k, (c, rho, limit) in enumerate(progress(runs, "(i) renewal arrivals")):
        lam = rho * sc.capacity / m1
        n = queries * (3 if rho >= 0.85 else 1) * (2 if c >= 20 else 1)
        sim = simulate_batching(
            sc.with_(arrival_rate=lam),
            t,
            queries=n,
            seed=7 + k,
            arrival_scv=c,
            limit=limit,
            confidence=level,
        )
        lo, hi = sim.mean_system_time_ci
        rows.append(
            {
                "arrival_scv": c,
                "utilization": rho,
                "limit": limit,
                "sim": sim.mean_system_time,
                "lo": lo,
                "hi": hi,
                **_models(sc, t, lam, c, limit, cs_own),
            }
        )
    return rows, level


def _self_consistent(sc, rounds: int = 3):
    """Solve with ``service_scv`` set to the plan's own, ``rounds`` times."""
    res = cvxalloc.solve(sc)
    for _ in range(rounds):
        server = {**sc.server.to_dict(), "service_scv": _mix_scv(sc, res.tokens)}
        sc = sc.with_(server=server)
        res = cvxalloc.solve(sc)
    return res, sc.server.service_scv


def part_plans(quick: bool) -> list[dict]:
    reps = 5 if quick else 20
    base, _ = _example()
    out = []
    runs = [
        (name, mult, limit)
        for name in ("code", "conversation")
        for mult in RATE_MULTIPLES
        for limit in (None, LIMIT)
    ]
    for k, (name, mult, limit) in enumerate(progress(runs, "(i) plans replayed")):
        times = load_trace(name).times
        _, ca2 = gap_stats(times)
        lam = base.arrival_rate * mult
        server = {**base.server.to_dict(), "max_running": limit} if limit else None
        sc = (
            base.with_(arrival_rate=lam)
            if server is None
            else base.with_(arrival_rate=lam, server=server)
        )
        plans = {
            "Poisson": (cvxalloc.solve(sc), 1.0),
            "arrival_scv": (cvxalloc.solve(sc.with_(arrival_scv=ca2)), 1.0),
        }
        plans["arrival_scv, own service_scv"] = _self_consistent(sc.with_(arrival_scv=ca2))
        for label, (res, cs) in plans.items():
            utilities = []
            rate = (times.size - 1) / (times[-1] - times[0])
            scaled = (times - times[0]) * (rate / lam)
            for r in range(reps):
                sim = simulate_batching(
                    sc,
                    res.tokens,
                    arrival_times=scaled,
                    seed=5000 + 100 * k + r,
                    warmup=0,
                    batches=2,
                )
                utilities.append(sim.utility)
            u = np.asarray(utilities)
            half = special.stdtrit(reps - 1, 0.995) * u.std(ddof=1) / math.sqrt(reps)
            out.append(
                {
                    "trace": name,
                    "arrival_rate": lam,
                    "limit": limit,
                    "plan": label,
                    "service_scv": cs,
                    "mean_tokens": float(sc.probability @ res.tokens),
                    "utilization": res.utilization,
                    "predicted_W": res.mean_system_time,
                    "utility": float(u.mean()),
                    "half": float(half),
                }
            )
    return out


def _pct(model: float, ref: float) -> str:
    return f"{(model / ref - 1) * 100:+.1f}%"


def _tables(traces, renewal, plans, level) -> str:
    rows1 = [
        [
            r["trace"],
            f"{r['arrival_scv']:.3g}",
            f"{r['utilization']:.2f}",
            "-" if r["limit"] is None else str(r["limit"]),
            f"{r['replay']:.1f} ± {r['half']:.1f}",
            _pct(r["poisson"], r["replay"]),
            _pct(r["cs1"], r["replay"]),
            _pct(r["own"], r["replay"]),
        ]
        for r in traces
    ]
    rows2 = [
        [
            f"{r['arrival_scv']:g}",
            f"{r['utilization']:.2f}",
            "-" if r["limit"] is None else str(r["limit"]),
            f"{r['sim']:.1f} [{r['lo']:.1f}, {r['hi']:.1f}]",
            _pct(r["poisson"], r["sim"]),
            _pct(r["cs1"], r["sim"]),
            _pct(r["own"], r["sim"]),
        ]
        for r in renewal
    ]
    rows3 = [
        [
            p["trace"],
            f"{p['arrival_rate']:g}",
            "-" if p["limit"] is None else str(p["limit"]),
            p["plan"],
            f"{p['service_scv']:.3g}",
            f"{p['mean_tokens']:.0f}",
            f"{p['utilization']:.3f}",
            f"{p['predicted_W']:.1f}",
            f"{p['utility']:.4f} ± {p['half']:.4f}",
        ]
        for p in plans
    ]
    head = [
        "model: Poisson (before)",
        "arrival_scv, service_scv 1",
        "arrival_scv, service_scv 4.85",
    ]
    return "\n\n".join(
        [
            "Part 1: replays of the Azure traces (mean system time, seconds, over replications "
            "with its 99% half-width; model minus replay, relative):",
            table(["trace", "c_a^2", "utilization", "limit", "replay W", *head], rows1),
            f"Part 2: renewal arrivals (gamma gaps), simulated ({100 * level:.3f}% intervals, "
            "Bonferroni over the exact rows):",
            table(["c_a^2", "utilization", "limit", "simulated W", *head], rows2),
            "Part 3: plans replayed on the traces (realized utility, 99% interval over "
            "replications):",
            table(
                [
                    "trace",
                    "rate",
                    "limit",
                    "planned with",
                    "service_scv",
                    "mean tokens",
                    "planned util.",
                    "predicted W",
                    "realized utility",
                ],
                rows3,
            ),
        ]
    )


def run(out_dir: Path, quick: bool = False) -> Section:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sc, t = _example()
    cs_own = _mix_scv(sc, t)
    traces = part_traces(sc, t, cs_own, quick)
    renewal, level = part_renewal(sc, t, cs_own, quick)
    plans = part_plans(quick)
    exact = [r for r in renewal if r["arrival_scv"] == 1.0 and r["limit"] is None]
    inside = sum(r["lo"] <= r["poisson"] <= r["hi"] for r in exact)
    text = (
        f"Service scv of the example's mix at its optimum: {cs_own:.3g}. Poisson arrivals, "
        f"processor sharing (exact): model inside the Bonferroni interval at {inside} of "
        f"{len(exact)} points (family-wise false alarm at most {FAMILY_ALPHA:g}).\n\n"
        + _tables(traces, renewal, plans, level)
    )
    numbers = {
        "service_scv_of_mix": cs_own,
        "traces": traces,
        "renewal": renewal,
        "plans": plans,
        "exact_inside": inside,
        "exact_points": len(exact),
    }
    return Section(
        key="i-batching-traffic",
        title="(i) batching server: bursty arrivals and the admission limit",
        figures=[],
        text=text,
        numbers=numbers,
        ok=inside == len(exact),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m validation.batching_traffic", description=__doc__)
    ap.add_argument("--out", default="validation/output")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    sec = run(Path(args.out), quick=args.quick)
    out = Path(args.out)
    (out / "batching_traffic.md").write_text(f"## {sec.title}\n\n{sec.text}\n")
    (out / "batching_traffic.json").write_text(json.dumps(sec.numbers, indent=1, default=str))
    print(sec.text)
    return 0 if sec.ok else 1


if __name__ == "__main__":
    sys.exit(main())
