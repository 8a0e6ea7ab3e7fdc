"""The search behind the tail rules of docs/tail.md (issue 21): candidates against simulation.

Not part of ``python -m validation.run`` (minutes of simulation a part); run it when a rule
is changed::

    python -m validation.tail_search --part batching      # about 15 minutes on 2 busy cores
    python -m validation.tail_search --part fifo          # about a minute
    python -m validation.tail_search --quick              # smoke run (fewer points, queries)
    python -m validation.tail_search --part batching --save pts.pkl   # keep the simulations
    python -m validation.tail_search --part batching --load pts.pkl   # judge candidates again

Each point is simulated once with a fixed seed (``numpy.random.default_rng(seed)`` inside
the simulators, the seed a function of the point's index), then every candidate rule
predicts its percentiles (the rule patched into :mod:`cvxalloc.queue.tail` for the call);
the table gives, per candidate and group of points, the worst relative error of p50, p90,
p95 and p99 at utilization 0.3-0.9 and the mean of the per-point worst. The 99% intervals'
largest relative half-width is printed beside, so an error is judged against the noise.

* ``batching``: the batching server with ``max_running = K`` (``K`` = 2, 4, 8, 16),
  Poisson and gamma gaps of scv 0.25 and 4, on ``example_batching.toml`` and on it with
  every type's service scv 0 and 1 (in sample); out of sample, two random mixes of 12
  types (``random_scenario(seed, 12, load="heavy", variance=False)``) on the same curve.
  Two tables: the bursty shift under Allen and Cunneen's factor at every load
  (:data:`BATCHING_CANDIDATES`), then the light-traffic start (:data:`LIGHT_CANDIDATES`).
* ``fifo``: one FIFO server with gamma gaps of scv 0.25 and 4 (replays of drawn gaps), on
  the example and its service scv 0 and 1 variants (in sample), two random mixes out of
  sample; and round-robin over 2 and 4 batch-1 replicas (the fleet simulator), whose
  replicas see gaps of scv ``1 / k``.
"""

from __future__ import annotations

import argparse
import math
import pickle
from collections.abc import Callable
from importlib import resources

import numpy as np

import cvxalloc
from cvxalloc.queue import tail
from cvxalloc.queue.ladder import fractional_moment
from cvxalloc.queue.tail import system_time_quantiles
from cvxalloc.simulate import simulate_batching, simulate_fleet, simulate_replay
from cvxalloc.testing import random_scenario

LEVELS = ("p50", "p90", "p95", "p99")
UTILIZATIONS = (0.3, 0.5, 0.7, 0.9)


# --- the points ----------------------------------------------------------------------
def _batching_mixes(quick: bool) -> dict:
    base = cvxalloc.load_scenario(resources.files("cvxalloc") / "data/example_batching.toml")
    return _mixes(base, quick, server=base.server.to_dict())


def _mixes(base, quick: bool, **same) -> dict:
    """``base``, it with every type's scv 0 and 1, and (unless ``quick``) two random mixes
    of 12 types out of sample, given ``same`` (e.g. the base's server)."""
    mixes = {
        "example": base,
        "scv 0": base.with_(scv=np.zeros(base.n)),
        "scv 1": base.with_(scv=np.ones(base.n)),
    }
    if not quick:
        for seed in (1, 2):
            sc = random_scenario(seed, 12, load="heavy", variance=False)
            mixes[f"random {seed} (out of sample)"] = sc.with_(**same) if same else sc
    return mixes


def batching_points(quick: bool = False) -> list[dict]:
    """Simulate every point of the batching grid once (fixed seeds)."""
    limits = (2, 8) if quick else (2, 4, 8, 16)
    out = []
    for name, mix in _batching_mixes(quick).items():
        t = cvxalloc.solve(mix.with_(server={**mix.server.to_dict(), "max_running": None})).tokens
        for k in limits:
            for ca2 in (0.25, 1.0, 4.0):
                table = {**mix.server.to_dict(), "max_running": k}
                sk = mix.with_(server=table, arrival_scv=ca2)
                for rho in UTILIZATIONS:
                    sc = sk.with_(arrival_rate=rho * sk.max_stable_arrival_rate(t))
                    n = 200_000 if quick else (8_000_000 if rho >= 0.9 else 1_000_000)
                    sim = simulate_batching(sc, t, queries=n, seed=5000 + len(out), progress=False)
                    out.append(_point(name, sc, t, k, ca2, rho, sim))
                    print(_describe(out[-1]), flush=True)
    return out


def _fifo_mixes(quick: bool) -> dict:
    return _mixes(cvxalloc.example_scenario(), quick)


def fifo_points(quick: bool = False) -> list[dict]:
    """Replay drawn gamma gaps of scv 0.25 and 4 through one FIFO server at each point."""
    return _replayed_points((0.25, 4.0), 100_000 if quick else 400_000, (9000, 9500), quick)


def bursty_points(quick: bool = False) -> list[dict]:
    """Gaps of scv 2 and 9 on the mixes of :func:`fifo_points` (added with the ladder-height
    rule, so that it is not judged at scv 4 alone; 10^6 gaps a replay, seeds of their own)."""
    return _replayed_points((2.0, 9.0), 100_000 if quick else 1_000_000, (9300, 9400), quick)


def _replayed_points(scvs, n: int, seeds: tuple[int, int], quick: bool) -> list[dict]:
    """On each mix of :func:`_fifo_mixes`, ``n`` gamma gaps of each scv replayed at each
    utilization (fixed seeds: ``seeds`` are the gaps' and the replays' first)."""
    out = []
    for name, mix in _fifo_mixes(quick).items():
        t = cvxalloc.solve(mix).tokens
        for ca2 in scvs:
            for rho in UTILIZATIONS:
                gaps = np.random.default_rng(seeds[0] + len(out)).gamma(1 / ca2, ca2, size=n)
                sc = mix.with_(arrival_scv=ca2)
                sim = simulate_replay(
                    sc, t, np.cumsum(gaps), seed=seeds[1] + len(out), target_utilization=rho,
                    replications=4 if quick else 10, warmup=n // 10,
                )  # fmt: skip
                sc = sc.with_(arrival_rate=rho / float(mix.probability @ mix.service_time(t)))
                out.append(_point(name, sc, t, 1, ca2, rho, sim))
                print(_describe(out[-1]), flush=True)
    return out


def fleet_points(quick: bool = False) -> list[dict]:
    """Round-robin over 2 and 4 batch-1 replicas (each fed gaps of scv ``1 / k``, the
    bursty rule's smooth side), on the example and a random mix, against the fleet
    simulator."""
    mixes = _fifo_mixes(quick)
    out = []
    for name in ("example", "random 1 (out of sample)")[: 1 if quick else 2]:
        mix = mixes[name]
        t = cvxalloc.solve(mix).tokens
        m1 = float(mix.probability @ mix.service_time(t))
        for k in (2, 4):
            for rho in UTILIZATIONS:
                sc = mix.with_fleet({"replicas": k, "router": "round-robin"})
                sc = sc.with_(arrival_rate=k * rho / m1)
                n = 200_000 if quick else 2_000_000
                sim = simulate_fleet(sc, t, queries=n, seed=9800 + len(out))
                out.append(_point(f"round-robin, {name}", sc, t, k, 1.0 / k, rho, sim))
                print(_describe(out[-1]), flush=True)
    return out


def _point(name, sc, t, k, ca2, rho, sim) -> dict:
    halfwidth = max(
        (sim.percentiles_ci[key][1] - sim.percentiles_ci[key][0]) / 2 / sim.percentiles[key]
        for key in LEVELS
    )
    return {
        "mix": name,
        "scenario": sc,
        "tokens": t,
        "K": k,
        "ca2": ca2,
        "rho": rho,
        "simulated": np.array([sim.percentiles[key] for key in LEVELS]),
        "halfwidth": halfwidth,
        "mean_wait": getattr(sim, "mean_waiting_time", float("nan")),
    }


def _describe(p: dict) -> str:
    sim = ", ".join(f"{v:.4g}" for v in p["simulated"])
    return (
        f"{p['mix']:>24} K {p['K']:>2} ca2 {p['ca2']:<4g} rho {p['rho']:.1f}: "
        f"sim {sim} (99% half-width {100 * p['halfwidth']:.1f}%)"
    )


# --- the candidates ------------------------------------------------------------------
def errors(points: list[dict], patch: dict[str, Callable] | None = None) -> np.ndarray:
    """Relative errors (point x level) of the rule with ``patch`` put into the tail module."""
    saved = {name: getattr(tail, name) for name in patch or {}}
    try:
        for name, fn in (patch or {}).items():
            setattr(tail, name, fn)
        rows = []
        for p in points:
            q = system_time_quantiles(p["scenario"], p["tokens"], [0.5, 0.9, 0.95, 0.99])
            rows.append(q.seconds / p["simulated"] - 1.0)
        return np.array(rows)
    finally:
        for name, fn in saved.items():
            setattr(tail, name, fn)


def _worst(err: np.ndarray) -> float:
    return float(err.flat[np.argmax(np.abs(err))]) if err.size else math.nan


def report(points: list[dict], candidates: dict[str, dict | None], groups) -> None:
    """Per candidate and group: worst relative error (signed) and mean per-point worst."""
    errs = {name: errors(points, patch) for name, patch in candidates.items()}
    head = f"{'group':>34} {'half-w':>7} " + " ".join(f"{n[:17]:>17}" for n in errs)
    print(head)
    for label, keep in groups:
        idx = [i for i, p in enumerate(points) if keep(p)]
        if not idx:
            continue
        hw = max(points[i]["halfwidth"] for i in idx)
        cells = []
        for e in errs.values():
            sub = e[idx]
            mean = float(np.mean(np.max(np.abs(sub), axis=1)))
            cells.append(f"{100 * _worst(sub):+6.1f}% ({100 * mean:4.1f}%)")
        print(f"{label:>34} {100 * hw:6.1f}% " + " ".join(f"{c:>17}" for c in cells))
    for name, e in errs.items():
        i = int(np.argmax(np.max(np.abs(e), axis=1)))
        j = int(np.argmax(np.abs(e[i])))
        p = points[i]
        print(
            f"{name}: worst {100 * e[i, j]:+.1f}% at {p['mix']}, K {p['K']}, ca2 {p['ca2']:g}, "
            f"rho {p['rho']:.1f}, {LEVELS[j]}"
        )


def _where(p: dict) -> str:
    if p["mix"].startswith("round-robin"):
        return "round-robin"
    if p["mix"] == "scv 0":
        return "constant services"
    return "out of sample" if "out of sample" in p["mix"] else "in sample"


def _group(where: str, ca2: float, ks=None, heavy=None) -> Callable[[dict], bool]:
    def keep(p: dict) -> bool:
        return (
            _where(p) == where
            and p["ca2"] == ca2
            and (ks is None or p["K"] in ks)
            and (heavy is None or (p["rho"] >= 0.9) == heavy)
        )

    return keep


def _batching_groups():
    """In and out of sample by gap scv, ``K`` 2-4 and 8-16, utilization below 0.9 and at 0.9
    (where the intervals are widest); the mix of constant services apart (its percentiles
    sit on atoms of the service law and jump under any rule)."""
    groups = []
    for where in ("in sample", "out of sample", "constant services"):
        for ca2 in (0.25, 1.0, 4.0):
            groups.append((f"{where}, ca2 {ca2:g}", _group(where, ca2)))
            if where == "constant services":
                continue
            for ks in ((2, 4), (8, 16)):
                for heavy in (False, True):
                    label = f"  K {ks[0]}-{ks[1]}, rho {'0.9' if heavy else '< 0.9'}"
                    groups.append((label, _group(where, ca2, ks, heavy)))
    return groups


def _fifo_groups():
    groups = [
        (f"{where}, ca2 {ca2:g}", _group(where, ca2))
        for where in ("in sample", "out of sample", "constant services")
        for ca2 in (0.25, 2.0, 4.0, 9.0)
    ]
    for mix in ("example", "random 1 (out of sample)"):
        label = f"round-robin, {mix}"
        groups.append((label[:34], lambda p, m=label: p["mix"] == m))
    return groups


def _admission(gaps: str, power: Callable[[float, float], float]) -> dict:
    """A candidate for :func:`cvxalloc.queue.tail._bursty_admission` under bursty gaps:
    Allen-Cunneen's factor on the gap scv ``gaps`` (``"ce"``: the admission rule's shrunk
    one, ``"ca2"``: the gaps' own), shifted by ``(r / sigma)^w``, ``w = power(c, cs2)``."""

    def factor(r: float, sigma: float, ce: float, ca2: float, cs2: float):
        if not sigma > r > 0:
            return 0.5 * (ce + cs2), 1.0
        c = ce if gaps == "ce" else ca2
        shift = (sigma / r) ** power(c, cs2)
        return 0.5 * (c + cs2) / shift, shift

    return {"_bursty_admission": factor, "_admission_shape": _allen_cunneen_shape}


def _a26edab(r: float, sigma: float, ce: float, ca2: float, cs2: float):
    """The bursty shift of a26edab (power ``2 c_s^2 / (c_a^2 + c_s^2)``)."""
    if not sigma > r > 0:
        return 0.5 * (ce + cs2), 1.0
    shift = (sigma / r) ** (2.0 * cs2 / (ca2 + cs2))
    return 0.5 * (ca2 + cs2) / shift, shift


def _allen_cunneen_shape(r, sigma, ce, ca2, cs2, light, k=2):
    """The admission wait's factor and scv before the light-traffic interpolation (a26edab):
    Allen-Cunneen's factor at every load (shifted under bursty gaps), scv ``2 - sigma``."""
    factor, shift = tail._bursty_admission(r, sigma, ce, ca2, cs2)
    return factor, (2.0 - sigma) * shift


#: The admission wait under bursty gaps: the rule of 74bc56b (the shrunk scv, no shift),
#: the shift on it, the gaps' own scv with and without shifts, and the rule a26edab chose
#: (the last), all with Allen-Cunneen's factor at every load (before the light-traffic
#: interpolation, :data:`LIGHT_CANDIDATES`).
BATCHING_CANDIDATES: dict[str, dict | None] = {
    "74bc56b": _admission("ce", lambda c, cs2: 0.0),
    "ce, w=cs/(c+cs)": _admission("ce", lambda c, cs2: cs2 / (c + cs2)),
    "ce, w=1": _admission("ce", lambda c, cs2: 1.0),
    "ca2, w=0": _admission("ca2", lambda c, cs2: 0.0),
    "ca2, w=cs/(c+cs)": _admission("ca2", lambda c, cs2: cs2 / (c + cs2)),
    "ca2, w=1": _admission("ca2", lambda c, cs2: 1.0),
    "ca2,w=2cs/(c+cs)": _admission("ca2", lambda c, cs2: 2.0 * cs2 / (c + cs2)),
}


def _light(
    h: Callable[[float], float],
    scv: str = "light",
    bursty: float | str = 1.0,
    smooth: float | str = "light",
    scv_shift: float | None = None,
    spread: float = 0.0,
) -> dict:
    """A candidate for :func:`cvxalloc.queue.tail._admission_shape`: Allen-Cunneen's factor
    times ``g = (f_0 + (f_1 - f_0) h(r)) / f_1``, ``f_1 = (1 + c_s^2) / 2`` its M/G/c value
    and ``f_0`` the light-traffic one (the least of ``K`` residuals); scv ``"light"``:
    ``1 + (v_0 - 1)(1 - sigma)`` (``v_0`` the least residual's scv), ``"2-s"``: ``2 - sigma``.
    Bursty gaps (``sigma > r``): both times the shift ``(r / sigma)^w`` (its inverse on the
    scv), ``w = bursty 2 c_s^2 / (c_a^2 + c_s^2)`` (a26edab's ``w`` at ``bursty = 1``; 0:
    ``g`` alone), or ``bursty = "old"``: the rule of a26edab without ``g``. Smoother gaps
    (``c_a^2 < 1``): ``"light"`` as Poisson, ``"old"`` the rule of a26edab, a number ``p``:
    ``g`` and the scv moved back toward a26edab's by ``1 - c_a^(2p)``. ``scv_shift``: the
    scv's shift with this multiplier of ``w`` instead of ``bursty``'s; ``spread``: bursty
    gaps' scv times ``(K / 2)^(spread (1 - 1 / c_a^2))``."""

    def shape(r, sigma, ce, ca2, cs2, light, k=2):
        factor, shift = _a26edab(r, sigma, ce, ca2, cs2)
        old = factor, (2.0 - sigma) * shift
        if light is None or (ca2 < 1 and smooth == "old"):
            return old
        if sigma > r > 0 and bursty == "old":
            return old
        f0, v0 = light
        base = (1.0 + (v0 - 1.0) * (1.0 - sigma)) if scv == "light" else 2.0 - sigma
        f1 = 0.5 * (1.0 + cs2)
        g = (f0 + (f1 - f0) * h(r)) / f1
        if ca2 < 1 and smooth != "light":
            weight = ca2 ** (2 * smooth)
            g = 1.0 + (g - 1.0) * weight
            base = 2.0 - sigma + (base - 2.0 + sigma) * weight
        if sigma > r > 0:
            w = 2.0 * cs2 / (ca2 + cs2)
            shift = (sigma / r) ** (bursty * w)
            factor = 0.5 * (ca2 + cs2) / shift
            base *= (sigma / r) ** ((bursty if scv_shift is None else scv_shift) * w) / shift
            base *= (k / 2.0) ** (spread * (1.0 - 1.0 / ca2))
        return factor * g, base * shift

    return {"_admission_shape": shape}


#: The admission wait's M/G/c factor and scv: Allen-Cunneen's factor at every load and
#: the scv 2 - sigma (a26edab), and interpolations from the light-traffic wait (the
#: least of ``K`` residuals) to it; the rule chosen (None) is the last.
LIGHT_CANDIDATES: dict[str, dict | None] = {
    "a26edab": {"_admission_shape": _allen_cunneen_shape, "_bursty_admission": _a26edab},
    "lt r": _light(lambda r: r),
    "lt r, scv 2-s": _light(lambda r: r, "2-s"),
    "lt r^2": _light(lambda r: r * r),
    "lt sqrt r": _light(math.sqrt),
    "lt r, bursty old": _light(lambda r: r, bursty="old"),
    "lt r, no shift": _light(lambda r: r, bursty=0.0),
    "lt r, w/2": _light(lambda r: r, bursty=0.5),
    "lt r, 3w/4": _light(lambda r: r, bursty=0.75),
    "lt r,3w/4,scv 3w/2": _light(lambda r: r, bursty=0.75, scv_shift=1.5),
    "lt r,3w/4,sm old": _light(lambda r: r, bursty=0.75, smooth="old"),
    "lt r,3w/4,sm ca2": _light(lambda r: r, bursty=0.75, smooth=0.5),
    "lt r,3w/4,sm ca4": _light(lambda r: r, bursty=0.75, smooth=1.0),
    "... spread .05": _light(lambda r: r, bursty=0.75, smooth=1.0, spread=0.05),
    "... spread .15": _light(lambda r: r, bursty=0.75, smooth=1.0, spread=0.15),
    "... spread .1": None,
}


def _fifo(power: float, bursty: float) -> dict:
    """A candidate for :func:`cvxalloc.queue.tail._smooth_gaps`: the gap scv moved toward 1
    by ``min(1, 2 / (1 + cs2))^power`` (``^bursty`` for gaps of scv above 1)."""

    def gaps(ca2: float, cs2: float) -> float:
        a = power if ca2 < 1 else bursty
        return 1.0 + (ca2 - 1.0) * min(1.0, 2.0 / (1.0 + cs2)) ** a

    return {"_smooth_gaps": gaps, "_ladder_rule": _scaled_mg1}


def _scaled_mg1(lam, law, ca2):
    """No ladder rule: bursty gaps take the scaled M/G/1 wait (the rule before 9020748's
    successor; :func:`cvxalloc.queue.tail._bursty_wait`)."""
    return None


#: The FIFO rule's probability of a wait under the scaled M/G/1 wait: GI/M/1 on the gaps'
#: own scv (the rule before), the scv moved toward 1 for variable service, and the rule
#: chosen (the last; bursty gaps have taken the ladder-height wait since, below).
FIFO_CANDIDATES: dict[str, dict | None] = {
    "GI/M/1 on ca2": _fifo(0.0, 0.0),
    "a 1/4": _fifo(0.25, 0.25),
    "a 1/2": _fifo(0.5, 0.5),
    "a 1": _fifo(1.0, 1.0),
    "a 1/2, ca2>1 1/4": _fifo(0.5, 0.25),
    "a 1/2, ca2 < 1": _fifo(0.5, 0.0),
}


def _ladder(fix_sigma: bool, scale: str) -> dict:
    """A candidate for :func:`cvxalloc.queue.tail._ladder_rule` (gaps of scv above 1): the
    ladder-height wait with the GI/M/1 ``sigma_0`` (times ``r^(1 - sigma_0)`` if
    ``fix_sigma``) and the scale ``"1"``, ``"cK"`` or ``"cK^rho"``."""

    def rule(lam, law, ca2):
        parts = tail.ladder_parts(lam, law, ca2)
        if parts is None:
            return None
        rho, sigma0, c_k = parts
        m1, alpha = law.moment(1), 1.0 / ca2
        r = float(law.weight @ fractional_moment(law, alpha)) / (m1**alpha * math.gamma(1 + alpha))
        sigma = sigma0 * r ** (1.0 - sigma0) if fix_sigma else sigma0
        return sigma, {"1": 1.0, "cK": c_k, "cK^rho": c_k**rho, "cK^sig": c_k**sigma0}[scale]

    return {"_ladder_rule": rule}


#: The bursty FIFO wait (gaps of scv above 1): the scaled M/G/1 wait of 9020748, and the
#: ladder-height wait with the GI/M/1 probability of a wait or its light-traffic
#: correction, and three scales.
LADDER_CANDIDATES: dict[str, dict | None] = {
    "9020748": {"_ladder_rule": _scaled_mg1},
    "sig0, c 1": _ladder(False, "1"),
    "sig0, cK": _ladder(False, "cK"),
    "sig, c 1": _ladder(True, "1"),
    "sig, cK": _ladder(True, "cK"),
    "sig, cK^rho": _ladder(True, "cK^rho"),
    "sig0, cK^sig": _ladder(False, "cK^sig"),
    "sig0, cK^rho": None,
}


def _points(args, simulate: Callable[[], list[dict]]) -> list[dict]:
    """The points of one part: simulated (and pickled with ``--save``) or ``--load``-ed."""
    if args.load:
        with open(args.load, "rb") as f:
            return pickle.load(f)
    pts = simulate()
    if args.save:
        with open(args.save, "wb") as f:
            pickle.dump(pts, f)
    return pts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("batching", "fifo", "both"), default="both")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--save", help="pickle the simulated points to this file")
    ap.add_argument("--load", help="judge the candidates on points pickled by --save")
    args = ap.parse_args(argv)
    if args.load and args.part == "both":
        ap.error("--load needs --part batching or --part fifo (the points of one part)")
    if args.part in ("batching", "both"):
        pts = _points(args, lambda: batching_points(args.quick))
        report(pts, BATCHING_CANDIDATES, _batching_groups())
        print()
        report(pts, LIGHT_CANDIDATES, _batching_groups())
    if args.part in ("fifo", "both"):
        pts = _points(
            args,
            lambda: fifo_points(args.quick) + bursty_points(args.quick) + fleet_points(args.quick),
        )
        report(pts, FIFO_CANDIDATES, _fifo_groups())
        print()
        report(pts, LADDER_CANDIDATES, _fifo_groups())


if __name__ == "__main__":
    main()
