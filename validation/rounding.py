"""(c) The loss of integer budgets: rounding the continuous optimum.

The built-in example is given integer grids of growing coarseness (whole
tokens, then steps of 4 to 4096 tokens, and a menu of powers of two). For each
grid, :func:`cvxalloc.integer.round_allocation` rounds the continuous optimum
and improves it by local search; its certified gap is measured against the
continuous bound ``U(t_c) + FWgap(t_c)``. Where the grid has at most a few
million allocations, the exact integer optimum is found by brute force
(every allocation evaluated, vectorized) as independent ground truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import cvxalloc
from cvxalloc.plots import rounding_figure, save
from cvxalloc.queue import queue_model

from .common import Section, table

STEPS = (1, 4, 16, 64, 256, 1024, 2048, 4096)
#: Largest grid (number of allocations) solved by brute force.
BRUTE_MAX = 3_000_000


def _accuracy_at(sc, i: int, values: np.ndarray) -> np.ndarray:
    t = np.tile(sc.min_tokens[:, None], (1, values.size))
    t[i] = values
    return np.array([sc.accuracy.value(t[:, j])[i] for j in range(values.size)])


def run(out_dir: Path, quick: bool = False) -> Section:
    from cvxalloc.integer import grid, round_allocation

    sc0 = cvxalloc.example_scenario()
    cont = cvxalloc.solve(sc0, method="conic")
    U_c = cont.objective
    upper = U_c + cont.certificate.gap
    cases = [(f"step {s}", sc0.with_(step=float(s))) for s in STEPS]
    menu = []
    for i in range(sc0.n):
        pw2 = 2.0 ** np.arange(8, 16)
        lv = np.unique(
            np.concatenate(
                [
                    [sc0.min_tokens[i], sc0.max_tokens[i]],
                    pw2[(pw2 > sc0.min_tokens[i]) & (pw2 < sc0.max_tokens[i])],
                ]
            )
        )
        menu.append(lv)
    cases.append(("menu 2^k", sc0.with_(levels=menu)))
    labels, naive, searched, exact, gaps, rows = [], [], [], [], [], []
    ok = True
    for label, sc in cases:
        r = round_allocation(sc, continuous=cont)
        d = r.diagnostics
        grids = [grid(sc, i) for i in range(sc.n)]
        size = float(np.prod([float(g.size) for g in grids]))
        if size <= BRUTE_MAX:
            U_star, _ = brute_force(sc, grids)
            ex_loss = U_c - U_star
            # ground truth: rounding is never better than the exact integer optimum, the
            # certificate covers the true loss, and the exact optimum is below the bound
            ok &= r.objective <= U_star + 1e-12 and U_star <= upper + 1e-12
            ok &= r.certificate.gap >= U_star - r.objective - 1e-12
            found = (
                "yes"
                if U_star - r.objective <= 1e-12 * abs(U_star)
                else (f"no ({U_star - r.objective:.1e} short)")
            )
        else:
            ex_loss, found = np.nan, "(grid too large)"
        ok &= r.certificate.gap >= 0 and r.certificate.gap >= d["rounding_loss"]
        labels.append(label)
        naive.append(U_c - d["rounded_objective"])
        searched.append(d["rounding_loss"])
        exact.append(ex_loss)
        gaps.append(r.certificate.gap)
        rows.append(
            [
                label,
                f"{size:.3g}",
                f"{naive[-1]:.2e}",
                f"{searched[-1]:.2e}",
                "-" if np.isnan(ex_loss) else f"{ex_loss:.2e}",
                found,
                f"{r.certificate.gap:.2e}",
                f"{r.certificate.gap / abs(r.objective):.1e}",
                ", ".join(f"{x:g}" for x in r.tokens),
            ]
        )
    fig = rounding_figure(
        labels,
        {
            "nearest grid point": naive,
            "rounding + local search": searched,
            "exact integer optimum (brute force)": exact,
            "certified gap of the rounded allocation": gaps,
        },
        title="Built-in example: utility lost by integer budgets",
    )
    name = "validation_rounding.png"
    save(fig, out_dir / name)
    st = np.array(STEPS, dtype=float)
    ls = np.array(searched[: len(STEPS)])
    fit = np.polyfit(np.log(st[ls > 0]), np.log(ls[ls > 0]), 1)[0] if np.sum(ls > 0) > 2 else None
    tab = table(
        [
            "grid",
            "allocations",
            "loss, nearest point",
            "loss, rounding + search",
            "loss, exact integer optimum",
            "rounding finds it",
            "certified gap",
            "gap / |U|",
            "tokens",
        ],
        rows,
    )
    text = f"""\
The continuous optimum of the example has U = {U_c:.10f} (certified gap
{cont.certificate.gap:.1e}). Loss = U(continuous) - U(integer); the certified gap is
U(t_c) + FWgap(t_c) - U(t_int), a proven bound on how far the integer allocation is from the
best integer allocation.

{tab}

* Whole tokens cost nothing that matters: loss {searched[0]:.1e} ({searched[0] / abs(U_c):.0e}
  of U), far below any accuracy difference one could measure on a benchmark.
* The loss grows roughly like step^{"?" if fit is None else f"{fit:.2f}"} (least-squares
  slope in log-log over the steps): U is smooth at the optimum, so a rounding error e
  costs about e^2 times the curvature.
* Where the grid is small enough to enumerate, the brute-force integer optimum shows how
  close rounding + local search gets (column "rounding finds it"), and the certified gap
  always covers the true loss (checked)."""
    return Section(
        key="c-rounding",
        title="(c) The loss of integer rounding",
        figures=[name],
        text=text,
        ok=bool(ok),
        numbers={
            "labels": labels,
            "loss_nearest": naive,
            "loss_rounding": searched,
            "loss_exact": exact,
            "certified_gap": gaps,
            "loss_slope": fit,
        },
    )


def brute_force(sc, grids: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """The best allocation on the product of ``grids``: every allocation evaluated.

    Accuracy, m1 and m2 are sums of per-type terms, so each is an outer sum of
    one small array per type; W and U follow elementwise.
    """
    n = sc.n
    p, w = sc.probability, sc.weight
    parts_acc = [p[i] * w[i] * _accuracy_at(sc, i, g) for i, g in enumerate(grids)]
    s = [sc.base[i] + sc.per_token[i] * grids[i] for i in range(n)]
    parts_m1 = [p[i] * s[i] for i in range(n)]
    parts_m2 = [p[i] * ((1 + sc.scv[i]) * s[i] ** 2 + sc.variance[i]) for i in range(n)]

    def total(parts):
        out = np.zeros([g.size for g in grids])
        for i, part in enumerate(parts):
            shape = [1] * n
            shape[i] = part.size
            out = out + part.reshape(shape)
        return out

    A, M1, M2 = total(parts_acc), total(parts_m1), total(parts_m2)
    W = queue_model(sc).value(M1, M2)
    U = A - sc.latency_weight * W
    k = np.unravel_index(int(np.argmax(U)), U.shape)
    return float(U[k]), np.array([grids[i][k[i]] for i in range(n)])
