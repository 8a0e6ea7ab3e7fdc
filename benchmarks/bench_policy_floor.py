"""Why a policy's grid rate costs what it does: the floor under its grid solves.

Run from the repository root (a script, not a test)::

    python benchmarks/bench_policy_floor.py             # N = 10^4, seed 1
    python benchmarks/bench_policy_floor.py --n 2000 --seed 5

On a random scenario (``cvxalloc.testing.random_scenario``, heavy load) it measures:

1. **How well the scalars are predicted.** While ``build_policy`` refines its grid, at each
   rate it adds between two solved ones: the relative error of the slack ``u = 1 - rho``
   and the second moment ``m2`` predicted by a polynomial (in the rate, of their
   logarithms) through the 3, 4 or 5 nearest solved rates (the build uses 3), and by a
   cubic Hermite rule through the two neighbours with their exact slopes (differentiated
   here by two extra solves each). Newton's error after one step is about the square of
   the start's.
2. **What an error in the scalars costs the certificate.** At 0.3, 0.8 and 0.99 of the
   range: the Frank-Wolfe gap, relative to ``max(|U|, weighted accuracy)``, of the
   budgets the aggregate method gives at the optimal scalars off by a relative error.
   With the two together: how many Newton steps a grid solve needs for a gap of 1e-9.
3. **Another trade.** A look-up that re-solves at the query rate from the scalars
   predicted off a coarse grid (``cvxalloc.solvers.aggregate.solve_near``): its CPU time,
   outer evaluations and gaps at random rates, against the refined policy's look-up.

4. **How far a failed interval ends up split** (``--splits``). With halvings only (the
   refinement's quarters and eighths switched off): for each interval whose midpoint
   failed, the answer's gap there over the target and how many intervals of the final grid
   it ended in; then, on 25 random scenarios (2 to 2,000 types, light and heavy) and the
   built-in example, the grid with and without splitting in four or eight at once.

CPU time of this process (``time.process_time``); only ratios in one run mean anything.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np

import cvxalloc
from cvxalloc.policy import build, build_policy
from cvxalloc.solvers.aggregate import predicted_start, solve_near
from cvxalloc.solvers.reduction import Reduced
from cvxalloc.testing import random_scenario


def _scaled(gap: float, objective: float, accuracy: float) -> float:
    """A gap over ``max(|U|, weighted accuracy)``, as the policy measures it."""
    return gap / max(abs(objective), accuracy, 1e-12)


def _log_scalars(res) -> np.ndarray:
    return np.log([res.diagnostics["u"], res.diagnostics["m2"]])


def _hermite(sc, solved: dict, rate: float, slopes: dict) -> np.ndarray | None:
    """``log (u, m2)`` at ``rate`` by the cubic Hermite rule through its two neighbours."""
    lo = max(r for r in solved if r < rate)
    hi = min(r for r in solved if r > rate)
    if lo <= 0:
        return None
    for r in (lo, hi):
        if r not in slopes:
            e = 1e-6 * r
            a, b = (cvxalloc.solve(sc.with_arrival_rate(r + s * e)) for s in (-1, 1))
            slopes[r] = (_log_scalars(b) - _log_scalars(a)) / (2 * e)
    h, t = hi - lo, (rate - lo) / (hi - lo)
    w = (2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t, 3 * t**2 - 2 * t**3, t**3 - t**2)
    y0, y1 = _log_scalars(solved[lo][0]), _log_scalars(solved[hi][0])
    return w[0] * y0 + w[1] * h * slopes[lo] + w[2] * y1 + w[3] * h * slopes[hi]


def prediction_errors(sc) -> dict[str, np.ndarray]:
    """Relative errors of the predicted scalars at the rates the refinement adds."""
    errs: dict[str, list[float]] = {"3 rates": [], "4 rates": [], "5 rates": [], "Hermite": []}
    slopes: dict[float, np.ndarray] = {}
    near = build._RateGrid._near

    def recorded(self, rate, start):
        res = near(self, rate, start)
        if res is None:
            return res
        true = _log_scalars(res)
        solved = sorted(r for r in self.solved if r > 0)
        for k in (3, 4, 5):
            pts = sorted(solved, key=lambda r: abs(r - rate))[:k]
            guess = predicted_start([(r, self.solved[r][0]) for r in pts], rate)
            if guess is not None:
                errs[f"{k} rates"].append(np.abs(np.expm1(np.log(guess) - true)).max())
        herm = _hermite(sc, self.solved, rate, slopes)
        if herm is not None:
            errs["Hermite"].append(np.abs(np.expm1(herm - true)).max())
        return res

    build._RateGrid._near = recorded
    try:
        build_policy(sc)
    finally:
        build._RateGrid._near = near
    return {k: np.array(v) for k, v in errs.items()}


def gap_per_error(sc, fractions=(0.3, 0.8, 0.99), errors=(1e-6, 1e-8, 1e-10)):
    """The relative Frank-Wolfe gap of the budgets at the optimal scalars off by ``errors``."""
    top = build.highest_rate(sc)
    out = {}
    for f in fractions:
        at = sc.with_arrival_rate(f * top)
        res, red = cvxalloc.solve(at), Reduced.of(at)
        u, m2 = res.diagnostics["u"], res.diagnostics["m2"]
        pw = at.probability * at.weight
        for e in errors:
            t = red.point(u * (1 + e), m2 * (1 - e)).tokens
            cert = cvxalloc.certify(at, t)
            out[(f, e)] = _scaled(cert.gap, cert.objective, float(pw @ at.accuracy.value(t)))
    return out


def resolving_lookup(sc, points: int = 17, queries: int = 200) -> dict[str, float]:
    """A look-up by Newton from scalars predicted off ``points`` evenly spaced rates."""
    top = build.highest_rate(sc)
    grid = np.linspace(0.0, top, points)
    clock = time.process_time()
    solved = [cvxalloc.solve(sc.with_arrival_rate(float(r))) for r in grid]
    build_cpu = time.process_time() - clock
    red = Reduced.of(sc)
    times, evals, gaps = [], [], []
    for rate in np.random.default_rng(0).uniform(grid[1], top, queries):
        clock = time.process_time()
        near = sorted(range(1, points), key=lambda i: abs(grid[i] - rate))[:3]
        at = copy.copy(sc)
        at.arrival_rate = float(rate)
        res = solve_near(at, red, predicted_start([(grid[i], solved[i]) for i in near], rate))
        times.append(time.process_time() - clock)
        if res is None:  # pragma: no cover - a measurement: say so
            gaps.append(np.inf)
            continue
        evals.append(res.iterations)
        gaps.append(_scaled(res.certificate.gap, res.objective, res.evaluation.accuracy))
    return {
        "build_cpu": build_cpu,
        "mean_ms": 1e3 * float(np.mean(times)),
        "max_ms": 1e3 * float(np.max(times)),
        "evaluations": float(np.mean(evals)),
        "max_evaluations": float(np.max(evals)),
        "max_gap": float(np.max(gaps)),
    }


def policy_lookup_ms(sc, queries: int = 200) -> tuple[float, float]:
    """The refined policy's look-up: mean CPU ms and largest scaled gap at random rates."""
    pol = build_policy(sc)
    low, high = pol.rate_range
    times, gaps = [], []
    for rate in np.random.default_rng(0).uniform(low, high, queries):
        clock = time.process_time()
        ans = pol.lookup(float(rate))
        times.append(time.process_time() - clock)
        gaps.append(ans.scaled_gap)
    return 1e3 * float(np.mean(times)), float(np.max(gaps))


def _halvings_only(fn, *args):
    """``fn(*args)`` with the refinement's quarters and eighths switched off."""
    depth = build._split_depth
    build._split_depth = lambda ratio: 1
    try:
        return fn(*args)
    finally:
        build._split_depth = depth


def split_outcomes(sc) -> np.ndarray:
    """``(gap / target at the failed midpoint, final intervals inside)`` per split, halving."""
    fails = []
    probe = build._RateGrid.probe

    def recorded(self, rates, cont, j):
        g, at = probe(self, rates, cont, j)
        lo, hi, target = float(rates[j]), float(rates[j + 1]), 0.5 * self.tolerance
        if g > target and abs((at - lo) / (hi - lo) - 0.5) < 1e-9:
            fails.append((lo, hi, g / target))
        return g, at

    build._RateGrid.probe = recorded
    try:
        rates = _halvings_only(build_policy, sc).rates
    finally:
        build._RateGrid.probe = probe
    return np.array([(r, np.sum((rates > lo) & (rates < hi)) + 1) for lo, hi, r in fails])


def grid_sizes() -> list[tuple[int, int]]:
    """Grid rates with and without the quarters and eighths on 25 scenarios."""
    rng = np.random.default_rng(42)
    cases = [cvxalloc.example_scenario()]
    for i in range(24):
        n = int(rng.choice([2, 5, 20, 100, 500, 2000]))
        cases.append(
            random_scenario(np.random.default_rng(100 + i), n, load=("heavy", "light")[i % 2])
        )
    return [(build_policy(c).rates.size, _halvings_only(build_policy, c).rates.size) for c in cases]


def print_splits(sc) -> None:
    rows = split_outcomes(sc)
    print("4. midpoints that failed (halvings only): gap / target -> intervals they ended in:")
    for a, b in ((1, 4), (4, 16), (16, 64), (64, np.inf)):
        m = (rows[:, 0] >= a) & (rows[:, 0] < b)
        if m.any():
            print(
                f"   [{a:g}, {b:g}): {m.sum()} splits, median {np.median(rows[m, 1]):g}, "
                f"least {rows[m, 1].min():g}"
            )
    sizes = grid_sizes()
    same = sum(a == b for a, b in sizes)
    more = [(a, b) for a, b in sizes if a != b]
    print(
        f"   grid rates on 25 scenarios: the same in {same}; "
        f"with quarters/eighths vs halvings only: {more}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--splits", action="store_true", help="also measure the refinement's splits")
    args = ap.parse_args()
    sc = random_scenario(np.random.default_rng(args.seed), args.n, load="heavy")
    print(f"N = {args.n:,} (seed {args.seed})")
    print("1. relative error of the predicted (u, m2) at the rates the refinement adds:")
    for name, e in prediction_errors(sc).items():
        print(
            f"   {name:<8} median {np.median(e):.1e}, 90th percentile {np.quantile(e, 0.9):.1e}"
            f" ({e.size} rates)"
        )
    print("2. Frank-Wolfe gap / max(|U|, acc.) at the optimal scalars off by a relative error:")
    for (f, e), g in gap_per_error(sc).items():
        print(f"   at {f:g} of the range, error {e:.0e}: gap {g:.1e}")
    alt = resolving_lookup(sc)
    ms, worst = policy_lookup_ms(sc)
    print(
        f"3. look-up re-solving from a 17-rate grid (its solves {alt['build_cpu']:.2f} s CPU): "
        f"{alt['mean_ms']:.2f} ms mean, {alt['max_ms']:.2f} ms max, "
        f"{alt['evaluations']:.1f} outer evaluations (at most {alt['max_evaluations']:.0f}), "
        f"largest gap {alt['max_gap']:.1e}; the refined policy's look-up {ms:.2f} ms mean, "
        f"largest gap {worst:.1e}"
    )
    if args.splits:
        print_splits(sc)


if __name__ == "__main__":
    main()
