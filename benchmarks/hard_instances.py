"""The hard instances of issue 14, solved by conic and by the default method (a script).

Run from the repository root::

    python benchmarks/hard_instances.py                 # every instance
    python benchmarks/hard_instances.py --only slo-1e4  # names start with the given prefixes

Each instance is built deterministically:

* ``overloaded-1000-{1,2,3}``: the three N = 1000 instances of
  ``benchmarks/bench_paper_solvers.py --load overloaded`` (seed 2026: the 7th to
  9th draws of its generator, after three N = 10 and three N = 100);
* ``saturated-5000``: ``random_scenario(5000, N=5000, load="saturated")`` with
  per-type scv on; ``near-cap-5000``: ``random_scenario(5001, N=5000,
  load="overloaded", latency_weight=1e-6)``, scv on: the stability cap clips
  the boxes and the optimum's utilization is within a few 1e-3 of 1 (printed);
* ``box-1e9``: the built-in example with ``max_tokens = 1e9`` for its first task;
* ``slo-1e4-{1,2,3}``: ``random_scenario(seed, N=10^4, load="overloaded")`` for
  seeds 1, 2, 3, with ``max_mean_system_time`` 80% of the way from the least
  mean system time (all types at min_tokens) to the unconstrained optimum's
  (binding).

For each it prints the status and wall time of ``method="conic"`` (no SCS
fallback allowed: a Clarabel failure is reported as an error) and of the
default method (``cvxalloc.solve(sc)``), the objective difference in units of
|U|, and whether each certificate's upper bound holds against the other
method's objective (to 1e-9 |U|).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np

import cvxalloc
from cvxalloc import Constraints
from cvxalloc.certificate import relative_scale
from cvxalloc.queue import Latency
from cvxalloc.testing import random_scenario


def overloaded_1000() -> Iterator[tuple[str, object]]:
    """The N = 1000 instances of bench_paper_solvers.py --load overloaded (seed 2026)."""
    rng = np.random.default_rng(2026)
    for n in (10, 100, 1000):
        for j in range(3):
            sc = random_scenario(rng, n, load="overloaded")
            if n == 1000:
                yield f"overloaded-1000-{j + 1}", sc


def saturated_5000() -> Iterator[tuple[str, object]]:
    """Utilization 0.97 to 0.9999 at max_tokens; and overloaded with a small gamma, so the
    optimum sits just below the stability cap, which clips the boxes."""
    yield "saturated-5000", random_scenario(5000, 5000, load="saturated", scv=True)
    sc = random_scenario(5001, 5000, load="overloaded", scv=True, latency_weight=1e-6)
    yield "near-cap-5000", sc


def box_1e9() -> Iterator[tuple[str, object]]:
    sc = cvxalloc.example_scenario()
    hi = sc.max_tokens.copy()
    hi[0] = 1e9
    yield "box-1e9", sc.with_(max_tokens=hi)


def slo_1e4() -> Iterator[tuple[str, object]]:
    for seed in (1, 2, 3):
        sc = random_scenario(seed, 10_000, load="overloaded")
        free = cvxalloc.solve(sc)
        w_lo = Latency(sc).value(sc.min_tokens)  # the least mean system time
        slo = w_lo + 0.8 * (free.mean_system_time - w_lo)
        yield f"slo-1e4-{seed}", sc.with_(constraints=Constraints(max_mean_system_time=slo))


BUILDERS: list[Callable[[], Iterator[tuple[str, object]]]] = [
    overloaded_1000,
    saturated_5000,
    box_1e9,
    slo_1e4,
]


def timed(sc, **options) -> tuple[object | None, float, str]:
    """``(result or None, seconds, error message)``."""
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = cvxalloc.solve(sc, **options)
    except cvxalloc.CvxallocError as exc:
        return None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"[:200]
    return res, time.perf_counter() - t0, ""


def report(name: str, sc) -> bool:
    """Solve ``sc`` both ways and print one block; True when everything holds."""
    clipped = int(np.count_nonzero(sc.stable_max_tokens() < sc.max_tokens))
    print(
        f"{name}: N = {sc.n}, utilization at max_tokens {sc.utilization(sc.max_tokens):.4g}, "
        f"{clipped} boxes clipped by the stability cap",
        flush=True,
    )
    conic, t_conic, err_conic = timed(sc, method="conic", fallback=None)
    default, t_default, err_default = timed(sc)
    for label, res, sec, err in (
        ("conic", conic, t_conic, err_conic),
        ("default", default, t_default, err_default),
    ):
        if res is None:
            print(f"  {label:8s} error after {sec:.2f} s: {err}")
        else:
            print(
                f"  {label:8s} {res.status:18s} {sec:8.2f} s  method {res.method}  "
                f"certified gap {res.certificate.relative_gap:.1e} of |U|  "
                f"solver {str(res.solver_stats.get('solver', '-'))[:60]}"
            )
    if conic is None or default is None:
        return False
    print(f"  utilization at the optimum {sc.utilization(default.tokens):.6f}")
    scale = relative_scale(default.objective)
    diff = (conic.objective - default.objective) / scale
    holds = (
        conic.certificate.upper_bound >= default.objective - 1e-9 * scale,
        default.certificate.upper_bound >= conic.objective - 1e-9 * scale,
    )
    print(
        f"  objective conic - default: {diff:+.1e} of |U|; conic's bound holds against "
        f"default: {holds[0]}, default's against conic: {holds[1]}; time ratio conic/default "
        f"{t_conic / max(t_default, 1e-9):.0f}x"
    )
    return bool(
        conic.status == "optimal"
        and default.status == "optimal"
        and abs(diff) <= 1e-6
        and all(holds)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="instance name prefixes")
    args = parser.parse_args()
    ok = total = 0
    for build in BUILDERS:
        for name, sc in build():
            if args.only and not any(name.startswith(p) for p in args.only):
                continue
            total += 1
            ok += report(name, sc)
    print(
        f"\n{ok} of {total} instances: both optimal, objectives equal to 1e-6 |U|, "
        "certificates holding both ways"
    )
    return 0 if ok == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
