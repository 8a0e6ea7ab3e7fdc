"""A smaller mixture in place of a service law with very many components.

Each evaluation of the system-time distribution costs a pass over every
component at every transform point, so a law of ``10^4`` task types is first
compressed. Components are grouped into cells of similar laws:

* gamma components on a grid in ``(log s, log c)`` (``c = var / s^2``), the
  cells of a row ``sqrt(c)`` times narrower in ``log s`` (a gamma law's
  distribution moves on the scale ``sqrt(c)`` in ``log s``);
* constant components (atoms) on a grid in ``log s``.

A cell of gamma laws becomes two gamma laws: the two-point Gauss rule of the
cell's distribution of ``log s`` (exact for polynomials of degree 3 in
``log s``), each node with the cell's ``c`` regressed on ``log s``, then the
means scaled and ``c`` shifted so that the cell's weight, mean and second
moment of ``S`` are exact. A cell of atoms becomes two atoms by the Gauss rule
of its distribution of ``S`` (weight and three moments exact). So the mean
system time of the compressed law equals the model's exactly; its
distribution differs by the cells' spread (measured, see docs).

The grid step is the first (from a fine one, corrected by the count's scaling) that fits
the budget.
"""

from __future__ import annotations

import numpy as np

from .service_law import ServiceLaw

__all__ = ["compress"]

#: First grid step (natural-log units) tried.
FIRST_STEP = 0.02


def _gauss2(x: np.ndarray, w: np.ndarray, cell: np.ndarray, cells: int):
    """Per cell, the two-point Gauss rule of the measure ``sum w delta_x``.

    Returns the nodes ``mean + d1``, ``mean + d2`` (as ``mean, d1, d2``), their
    weights, the deviations of the points from their cell's mean and the cells'
    variances. A cell with no spread gets all its weight on the first node.
    """
    W = np.bincount(cell, w, cells)
    mean = np.bincount(cell, w * x, cells) / W
    dev = x - mean[cell]
    var = np.bincount(cell, w * dev * dev, cells) / W
    third = np.bincount(cell, w * dev**3, cells) / W
    spread = var > 1e-300
    safe = np.where(spread, var, 1.0)
    r = np.where(spread, third / safe, 0.0)
    root = np.sqrt(0.25 * r * r + var)
    d1, d2 = 0.5 * r - root, 0.5 * r + root
    w1 = np.where(spread, d2 / np.where(spread, d2 - d1, 1.0), 1.0)
    return mean, d1, d2, W * w1, W * (1.0 - w1), dev, var


def _cell_keys(law: ServiceLaw, step: float) -> np.ndarray:
    """A whole-number key (as float, from 0) of each component's cell on the
    ``(log s, log c)`` grid of step ``step``."""
    u = np.log(law.mean)
    c = np.maximum(law.variance / law.mean**2, 1e-8)
    row = np.floor(np.log(c) / step)
    width = step * np.sqrt(np.exp((row + 0.5) * step))
    col = np.floor(u / width)
    return (row - row.min()) * (col.max() - col.min() + 1.0) + (col - col.min())


def _gamma_cells(law: ServiceLaw, step: float) -> np.ndarray:
    """Cell index of each component on the ``(log s, log c)`` grid of step ``step``."""
    return np.unique(_cell_keys(law, step), return_inverse=True)[1].ravel()


def _count_cells(law: ServiceLaw, step: float) -> int:
    """How many cells :func:`_gamma_cells` has, without sorting when the keys are few
    (a mark per key: the step search counts cells several times over 10^6 components)."""
    key = _cell_keys(law, step)
    top = float(key.max()) + 1.0
    if top > 4.0 * key.size + 1024:
        return int(np.unique(key).size)
    marks = np.zeros(int(top), dtype=bool)
    marks[key.astype(np.int64)] = True
    return int(np.count_nonzero(marks))


def _merge_gammas(law: ServiceLaw, cell: np.ndarray) -> tuple[np.ndarray, ...]:
    """Two gamma laws per cell: Gauss in ``log s``, ``c`` regressed, mean and ``E[S^2]`` exact."""
    cells = int(cell.max()) + 1
    w, s, var = law.weight, law.mean, law.variance
    u, c = np.log(s), var / (s * s)
    mean, d1, d2, w1, w2, dev, uvar = _gauss2(u, w, cell, cells)
    W = w1 + w2
    cbar = np.bincount(cell, w * c, cells) / W
    cov = np.bincount(cell, w * dev * (c - cbar[cell]), cells) / W
    slope = np.where(uvar > 1e-300, cov / np.where(uvar > 1e-300, uvar, 1.0), 0.0)
    weight = np.stack([w1, w2], axis=1)
    nodes = np.exp(mean[:, None] + np.stack([d1, d2], axis=1))
    scv = np.maximum(cbar[:, None] + slope[:, None] * np.stack([d1, d2], axis=1), 0.0)
    m1 = np.bincount(cell, w * s, cells)
    m2 = np.bincount(cell, w * (s * s + var), cells)
    nodes *= (m1 / (weight * nodes).sum(axis=1))[:, None]
    sq = weight * nodes * nodes
    shift = (m2 - ((1.0 + scv) * sq).sum(axis=1)) / sq.sum(axis=1)
    scv = np.maximum(scv + shift[:, None], 0.0)
    return weight.ravel(), nodes.ravel(), (scv * nodes * nodes).ravel()


def _merge_atoms(law: ServiceLaw, step: float) -> tuple[np.ndarray, ...]:
    """Two atoms per cell of width ``step`` in ``log s`` (weight and three moments exact)."""
    s, w = law.mean, law.weight
    u = np.log(np.maximum(s, 1e-300))
    _, cell = np.unique(np.floor(u / step), return_inverse=True)
    cell = cell.ravel()
    cells = int(cell.max()) + 1
    mean, d1, d2, w1, w2, _, _ = _gauss2(s, w, cell, cells)
    weight = np.concatenate([w1, w2])
    nodes = np.maximum(np.concatenate([mean + d1, mean + d2]), 0.0)
    return weight, nodes, np.zeros_like(nodes)


def _fit_step(count, budget: int, dims: int) -> float:
    """A grid step whose number of cells ``count(step)`` is at most ``budget``.

    The count falls about as ``step^-dims``; a few corrected guesses from
    :data:`FIRST_STEP` (the last one is grown until it fits).
    """
    step = FIRST_STEP
    for _ in range(8):
        cells = count(step)
        if cells <= budget or step > 64:
            return step
        step *= (cells / budget) ** (1.0 / dims) * 1.05
    return step


def compress(law: ServiceLaw, max_components: int) -> ServiceLaw:
    """``law`` itself if it has at most ``max_components`` components, else a compression.

    Parameters
    ----------
    law : ServiceLaw
    max_components : int
        Budget (at least 4); the constant and gamma parts share it in
        proportion to their numbers of components, two components per cell.

    Returns
    -------
    ServiceLaw
        With ``exact = False`` when compressed.
    """
    if law.size <= max_components:
        return law
    # a law is immutable: its compressions are kept with it (the percentiles of 10^6
    # types ask for the same ones several times, at 0.3 s each)
    memo = law.__dict__.setdefault("_compressions", {})
    if max_components not in memo:
        memo[max_components] = _compress(law, max_components)
    return memo[max_components]


def _compress(law: ServiceLaw, max_components: int) -> ServiceLaw:
    atoms = law.deterministic
    n_atoms = int(atoms.sum())
    budget_atoms = 0 if n_atoms == 0 else max(2, round(max_components * n_atoms / law.size))
    parts = []
    if n_atoms:
        part = law.take(atoms)
        u = np.log(np.maximum(part.mean, 1e-300))
        step = _fit_step(lambda h: np.unique(np.floor(u / h)).size, max(budget_atoms // 2, 1), 1)
        parts.append(_merge_atoms(part, step))
    if n_atoms < law.size:
        part = law.take(~atoms)
        budget = max((max_components - budget_atoms) // 2, 1)
        step = _fit_step(lambda h: _count_cells(part, h), budget, 2)
        parts.append(_merge_gammas(part, _gamma_cells(part, step)))
    weight, mean, variance = (np.concatenate(col) for col in zip(*parts))
    keep = weight > 0
    return ServiceLaw(weight[keep], mean[keep], variance[keep], exact=False, types=law.types)
