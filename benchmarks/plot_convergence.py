"""Convergence of the first-order methods: certified gap per iteration.

Writes docs/figures/convergence.png. Run:  python benchmarks/plot_convergence.py [--output FILE]

Each panel shows the fixed point, the projected gradient's default variant
(Jacobi-scaled, local curvature bounds), the scaled variant (one bound per
proven set), and the paper's Euclidean method both exactly as stated
(``shrink=False, accelerate=False``) and with both speed-ups. Left: the
built-in example (its maximum budgets are unstable, so the methods work on the
proven utilization cap). Right: a random heavy-load instance with N = 100
where the fixed-point contraction bound holds; the dashed line is the
guaranteed rate ``L^k`` of the bound.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import cvxalloc  # noqa: E402
from cvxalloc.testing import random_scenario  # noqa: E402

#: (method, options, label). The fixed point comes first (colour C0, used by its rate lines).
METHODS = [
    ("fixed-point", {}, "fixed point"),
    ("gradient", {"variant": "local"}, "gradient, local bounds (default)"),
    ("gradient", {"variant": "scaled"}, "gradient, diagonally scaled"),
    (
        "gradient",
        {"variant": "paper", "shrink": False, "accelerate": False},
        "gradient, paper (plain)",
    ),
    (
        "gradient",
        {"variant": "paper", "shrink": True, "accelerate": True},
        "gradient, paper + shrink + accelerate",
    ),
]


def contracting_instance(n: int = 100, seed: int = 0):
    """The first random heavy-load instance whose contraction bound holds (after refinement)."""
    rng = np.random.default_rng(seed)
    for _ in range(200):
        sc = random_scenario(rng, n, load="heavy")
        res = cvxalloc.solve(sc, method="fixed-point", fallback=None, max_iter=1)
        if res.diagnostics["guarantee"] and res.diagnostics["contraction_bound"] > 0.2:
            return sc
    raise RuntimeError("no contracting instance found")


def panel(ax, sc, title: str, max_iter: int) -> None:
    for method, opts, label in METHODS:
        res = cvxalloc.solve(sc, method=method, max_iter=max_iter, **opts)
        gaps = np.array(res.history["gap"])
        U = np.array(res.history["objective"])
        rel = gaps / np.maximum(np.abs(U), 1e-12)
        if res.method == method:
            ax.semilogy(
                np.arange(len(rel)), np.maximum(rel, 1e-17), label=f"{label} ({res.status})"
            )
        else:  # handed over: the curve is the other method's, drawn wide so it shows beneath
            ax.semilogy(
                np.arange(len(rel)),
                np.maximum(rel, 1e-17),
                lw=5,
                alpha=0.35,
                label=f"{label} -> handed over to {res.method} ({res.status})",
            )
        d = res.diagnostics
        if method == "fixed-point" and d.get("guarantee") and res.history.get("step"):
            L = d["contraction_bound"]
            steps = np.array(res.history["step"])
            k = np.arange(1, len(steps) + 1)
            ax.semilogy(
                k,
                steps / steps[0],
                ":",
                color="C0",
                lw=1.2,
                label=f"fixed-point step / first step ({d['norm']})",
            )
            ax.semilogy(
                k,
                L ** (k - 1),
                "k--",
                lw=0.8,
                label=f"guaranteed bound on that ratio: L^(k-1), L = {L:.3f}",
            )
    ax.axhline(1e-9, color="grey", lw=0.6)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.set_ylim(1e-16, 10)
    ax.set_xlabel("iteration")
    ax.set_ylabel("certified gap / |U|")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6.5, loc="lower left")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="docs/figures/convergence.png")
    ap.add_argument("--max-iter", type=int, default=5000)
    args = ap.parse_args(argv)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ex = cvxalloc.example_scenario()
    panel(axes[0], ex, "built-in example (N = 5, maximum budgets unstable)", args.max_iter)
    sc = contracting_instance()
    panel(axes[1], sc, f"random heavy-load instance, N = {sc.n}", args.max_iter)
    fig.tight_layout()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
