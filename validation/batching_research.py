"""Research: candidate models of the batching server under bursty arrivals and an admission limit.

Run: ``python -m validation.batching_research simulate --out validation/output`` (caches the
simulated and replayed mean system times in ``batching_research.json``), then
``python -m validation.batching_research compare --out validation/output`` (prints each
candidate's relative error against every measured point); ``... limit`` checks the
admission limit under Poisson arrivals for one service law of scv 0 to 4 (about a minute).

Measured points (the batching example's optimal budgets held fixed, the arrival rate set by
the utilization ``lam m1 / c_max``):

* renewal arrivals with gamma gaps of scv ``c_a^2`` in {0.3, 1, 2, 5, 20, 100}, processor
  sharing and at most 48 decoding (the rest FIFO);
* Poisson arrivals, at most 48 decoding, service scv 0, 0.3, 1, 2, 4;
* replays of both Azure traces (real arrival times rescaled to the utilization, services
  drawn from the scenario, 20 replications), with and without the limit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from importlib import resources
from pathlib import Path

import numpy as np

import cvxalloc
from cvxalloc.simulate import (
    TypeSampler,
    batch_means_interval,
    sample_service,
    service_distribution,
)
from cvxalloc.simulate_batching import system_times

from .traces import gap_stats, load_trace

UTIL = (0.3, 0.5, 0.7, 0.85, 0.95)
CA2 = (0.3, 1.0, 2.0, 5.0, 20.0, 100.0)
SCV = (0.0, 0.3, 1.0, 2.0, 4.0)
LIMIT = 48


def example():
    sc = cvxalloc.load_scenario(resources.files("cvxalloc") / "data/example_batching.toml")
    return sc, cvxalloc.solve(sc).tokens


def moments(sc, t):
    s = sc.service_time(t)
    m1 = float(sc.probability @ s)
    m2 = float(sc.probability @ ((1 + sc.scv) * s * s + sc.variance))
    return m1, m2


def _work(sc, t, rng, n):
    s = sc.service_time(t)
    types = TypeSampler(sc.probability)(rng, n)
    shape, scale, det = service_distribution(s, sc.scv, sc.variance)
    return sample_service(rng, types, s, shape, scale, det)


def simulate_renewal(sc, t, lam, ca2, limit, n, seed):
    rng = np.random.default_rng(seed)
    work = _work(sc, t, rng, n)
    if ca2 == 1.0:
        gaps = rng.exponential(1.0 / lam, size=n)
    else:
        gaps = rng.gamma(1.0 / ca2, ca2 / lam, size=n)
    T = system_times(gaps, work, sc.server, limit)
    mean, ci = batch_means_interval(T[n // 10 :], 30, 0.99)
    return mean, ci


def replay(sc, t, times, lam, limit, reps, seed):
    rate = (times.size - 1) / (times[-1] - times[0])
    arr = (times - times[0]) * (rate / lam)
    gaps = np.diff(arr, prepend=0.0)
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(reps):
        work = _work(sc, t, rng, times.size)
        means.append(float(system_times(gaps, work, sc.server, limit).mean()))
    means = np.array(means)
    half = 2.861 * means.std(ddof=1) / math.sqrt(reps)  # t_{0.995, 19}
    return float(means.mean()), (float(means.mean() - half), float(means.mean() + half))


def cmd_simulate(out: Path, n: int) -> None:
    sc, t = example()
    m1, m2 = moments(sc, t)
    rows = []
    seed = 0
    for ca2 in CA2:
        for rho in UTIL:
            for limit in (None, LIMIT):
                lam = rho * sc.capacity / m1
                k = n * (3 if rho >= 0.85 else 1) * (2 if ca2 >= 20 else 1)
                w, ci = simulate_renewal(sc, t, lam, ca2, limit, k, seed)
                seed += 1
                rows.append(
                    dict(
                        kind="renewal",
                        ca2=ca2,
                        scv=0.3,
                        rho=rho,
                        limit=limit,
                        lam=lam,
                        m1=m1,
                        m2=m2,
                        W=w,
                        ci=ci,
                    )
                )
                print(rows[-1], file=sys.stderr)
    for scv in SCV:
        v = sc.with_(scv=scv, variance=0.0)
        vm1, vm2 = moments(v, t)
        for rho in (0.5, 0.7, 0.8, 0.9, 0.95):
            lam = rho * sc.capacity / vm1
            k = n * (3 if rho >= 0.85 else 1)
            w, ci = simulate_renewal(v, t, lam, 1.0, LIMIT, k, seed)
            seed += 1
            rows.append(
                dict(
                    kind="poisson-limit",
                    ca2=1.0,
                    scv=scv,
                    rho=rho,
                    limit=LIMIT,
                    lam=lam,
                    m1=vm1,
                    m2=vm2,
                    W=w,
                    ci=ci,
                )
            )
            print(rows[-1], file=sys.stderr)
    for name in ("code", "conversation"):
        times = load_trace(name).times
        _, ca2 = gap_stats(times)
        for rho in UTIL:
            for limit in (None, LIMIT):
                lam = rho * sc.capacity / m1
                w, ci = replay(sc, t, times, lam, limit, 20, seed)
                seed += 1
                rows.append(
                    dict(
                        kind=f"trace-{name}",
                        ca2=ca2,
                        scv=0.3,
                        rho=rho,
                        limit=limit,
                        lam=lam,
                        m1=m1,
                        m2=m2,
                        W=w,
                        ci=ci,
                    )
                )
                print(rows[-1], file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batching_research.json").write_text(json.dumps(rows, indent=1))


# --- candidate models (research code: brute-force sums) -------------------------------
def _curve_rates(curve, K, H):
    n = np.arange(1, H + 1, dtype=float)
    c = curve.rate(np.minimum(n, K if K else n))
    return c


def chain(curve, x, q=0.0, K=None):
    """E[N] and E[(N - K)^+] of the M^X (geometric, parameter q) chain with exponential work.

    pi(n) = (1 - q) x / c(n) F(n - 1), F(n) = F(n - 1) (q + (1 - q) x / c(n)), c capped at K.
    """
    L = max(curve.concurrency[-1], K or 0) + 2
    cK = curve.rate(min(K, curve.concurrency[-1]) if K else curve.concurrency[-1])
    cmax = float(cK) if K else curve.capacity
    c = _curve_rates(curve, K, L)
    f = q + (1 - q) * x / c
    logF = np.concatenate([[0.0], np.cumsum(np.log(f))])  # F(0..L)
    pis = np.log((1 - q) * x / c) + logF[:-1]  # pi(1..L)
    ft = q + (1 - q) * x / cmax  # ratio beyond L
    # tail n = L + 1 + j: pi = (1-q) x / cmax F(L) ft^j
    logt = math.log((1 - q) * x / cmax) + logF[-1]
    mx = max(pis.max(), logt, 0.0)
    p = np.exp(pis - mx)
    p0 = math.exp(-mx)
    pt = math.exp(logt - mx)
    n = np.arange(1, L + 1, dtype=float)
    z = p0 + p.sum() + pt / (1 - ft)
    en = (p @ n + pt * ((L + 1) / (1 - ft) + ft / (1 - ft) ** 2)) / z
    Q = 0.0
    if K:
        Q = (p[K:] @ (n[K:] - K) + pt * ((L + 1 - K) / (1 - ft) + ft / (1 - ft) ** 2)) / z
    return en, Q


def shipped(r, curve, service_scv):
    """The model cvxalloc ships (queue/occupancy.py) at this point."""
    from cvxalloc.queue import BatchingQueue

    cs = r["m2"] / r["m1"] ** 2 - 1 if service_scv is None else service_scv
    q = BatchingQueue(
        r["lam"], curve=curve.curve, arrival_scv=r["ca2"], max_running=r["limit"], service_scv=cs
    )
    return q.value(r["m1"])


def candidates(r, curve):
    lam, m1, m2, ca2, K = r["lam"], r["m1"], r["m2"], r["ca2"], r["limit"]
    x = lam * m1
    cs2 = m2 / m1**2 - 1
    g, Q = chain(curve, x, 0.0, K)
    ps = g - x - Q  # running beyond offered work
    fifo = lam * (m2 - (1 - ca2) * m1 * m1) / (2 * x * x) * Q  # (ca2 + cs2)/2 Q / lam * ...
    out = {"poisson": g / lam}
    out["scale_ca2"] = m1 + ca2 * ps / lam + fifo
    out["scale_half"] = m1 + 0.5 * (1 + ca2) * ps / lam + fifo
    out["scale_ht"] = m1 + (ca2 + cs2) / (1 + cs2) * ps / lam + fifo
    if ca2 >= 1:
        q = (ca2 - 1) / (ca2 + 1)
        gq, Qq = chain(curve, x, q, K)
        out["mx"] = gq / lam
        # M^X for the running part, Kingman factor for the FIFO part
        out["mx_fifo"] = (gq - Qq) / lam + (m2 - (1 - ca2) * m1 * m1) / (2 * m1 * m1) * Qq / lam
    if ca2 >= 1 and K:
        # the shipped M^X chain (batches of mean (c_a^2 + c_s^2) / (1 + c_s^2)) with the
        # Lee-Longton term on the bursts' excess waiting count damped by rho^a: a burst
        # meeting an emptier system waits on fresh services, short ones leaving first
        qb = (ca2 - 1) / (ca2 + cs2)
        gb, Qb = chain(curve, x, qb, K)
        _, Qp = chain(curve, x, 0.0, K)
        rho = x / float(curve.rate(min(K, curve.concurrency[-1])))
        weights = {"undamped": 1.0, "sqrt_r": rho**0.5, "r": rho, "1-(1-r)^2": 1 - (1 - rho) ** 2}
        for name, weight in weights.items():
            damped = Qp + weight * (Qb - Qp)
            out[name] = (gb + 0.5 * (cs2 - 1) * damped) / lam
    out["cvxalloc_1"] = shipped(r, curve, 1.0)  # default service_scv = 1
    out["cvxalloc_cs2"] = shipped(r, curve, None)  # service_scv = the mix's own
    return out


def cmd_compare(out: Path) -> None:
    sc, _ = example()
    rows = json.loads((out / "batching_research.json").read_text())
    names = None
    for r in rows:
        c = candidates(r, sc.server)
        if names is None:
            names = list(candidates({**r, "ca2": 2.0, "limit": LIMIT}, sc.server))
            print(
                f"{'kind':18} {'ca2':>6} {'scv':>4} {'rho':>5} {'K':>4} {'sim W':>9} "
                + " ".join(f"{k:>10}" for k in names)
            )
        errs = " ".join(
            f"{(c[k] / r['W'] - 1) * 100:+9.1f}%" if k in c else f"{'-':>10}" for k in names
        )
        print(
            f"{r['kind']:18} {r['ca2']:6.3g} {r['scv']:4.2g} {r['rho']:5.2f} "
            f"{str(r['limit'] or '-'):>4} {r['W']:9.2f} {errs}"
        )


def cmd_limit() -> None:
    """Issue 19's check of the admission limit: Poisson arrivals, at most 48 decoding, one
    gamma service law of scv 0 to 4 (mean 20 s alone) on the published curve, utilization
    0.8 and 0.9 (4 and 8 x 10^6 queries): the model against the simulation."""
    from cvxalloc.queue import BatchingQueue, capacity_curve

    curve = capacity_curve([1, 4, 8, 16, 32, 48], [1.0, 3.82, 6.85, 11.7, 17.7, 21.6])
    m1 = 20.0
    for scv in (0.0, 1.0, 2.0, 4.0):
        for rho, n in ((0.8, 4_000_000), (0.9, 8_000_000)):
            rng = np.random.default_rng(17)
            lam = rho * curve.capacity / m1
            work = np.full(n, m1) if scv == 0 else rng.gamma(1 / scv, scv * m1, n)
            gaps = rng.exponential(1 / lam, n)
            T = system_times(gaps, work, curve, LIMIT)
            mean, (lo, hi) = batch_means_interval(T[n // 10 :], 30, 0.99)
            model = BatchingQueue(lam, curve=curve, max_running=LIMIT, service_scv=scv).value(m1)
            print(
                f"service scv {scv:g}, utilization {rho}: simulated {mean:.2f} [{lo:.2f}, "
                f"{hi:.2f}], model {model:.2f} ({model / mean - 1:+.1%})"
            )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=("simulate", "compare", "limit"))
    ap.add_argument("--out", default="validation/output")
    ap.add_argument("--queries", type=int, default=1_000_000)
    a = ap.parse_args(argv)
    if a.cmd == "simulate":
        cmd_simulate(Path(a.out), a.queries)
    elif a.cmd == "limit":
        cmd_limit()
    else:
        cmd_compare(Path(a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
