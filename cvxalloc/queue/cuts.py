"""The conic form of the batching server's latency: tangent cuts of ``G`` (an outer approximation).

``W = G(lam m1) / lam`` is convex in the budgets but ``G`` (a ratio of power series,
:mod:`.occupancy`) is not representable by CVXPY's atoms, so the conic reference
replaces ``W`` by an epigraph variable above finitely many tangents of ``G``. The
tangents underestimate ``W``: the relaxed problem's optimum bounds ``U*`` from above,
and adding a tangent at the solver's load tightens it (Kelley's cutting planes, run
by :mod:`cvxalloc.solvers.conic`). The tangents are CVXPY Parameters, so adding one
does not recompile the problem.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["TangentCuts"]


class TangentCuts:
    """The epigraph ``w >= max_j (G(x_j) + G'(x_j)(x - x_j)) / lam`` in CVXPY.

    Attributes
    ----------
    expr : cvxpy.Variable
        ``w``, the latency in units of ``time_unit`` seconds.
    constraints : list
        The cuts and ``x <= capacity``.
    load : cvxpy.Expression
        ``x = lam m1`` (affine).
    points : list of float
        Offered work of each cut placed so far.
    """

    def __init__(
        self,
        queue: Any,
        s: Any,
        p: np.ndarray,
        time_unit: float,
        slots: int,
        min_slack: float | None = None,
    ):
        import cvxpy as cp

        self.queue, self.time_unit, self.slots = queue, float(time_unit), int(slots)
        lam = queue.arrival_rate
        cmax = queue.capacity
        self.load = (lam * self.time_unit) * (p @ s)
        self.expr = cp.Variable(name="w_batching")
        self._slope = cp.Parameter(self.slots, name="cut_slope")
        self._icpt = cp.Parameter(self.slots, name="cut_intercept")
        u_min = None if min_slack is None else min(max(float(min_slack), 1e-12), 1.0)
        self.constraints = [
            self.expr >= cp.multiply(self._slope, self.load) + self._icpt,
            self.load <= cmax * (1.0 - (u_min or 0.0)),
        ]
        # initial cuts: uniform in x plus dense near saturation (where G bends most)
        if u_min is None:
            u0 = np.concatenate([np.linspace(1.0, 0.1, 10), np.geomspace(0.05, 0.005, 4)])
        else:
            u1 = max(u_min, 0.005)  # steeper cuts only where the solver goes
            u0 = np.unique(np.concatenate([np.linspace(u1, 1.0, 8), np.geomspace(u1, 1.0, 8)]))
        self._slopes: list[float] = []
        self._icpts: list[float] = []
        self.points: list[float] = []
        for u in u0:
            self._add_slack(float(u))
        self._publish()

    @property
    def full(self) -> bool:
        """No slot left for another cut."""
        return len(self.points) >= self.slots

    def _add_slack(self, u: float) -> None:
        q = self.queue
        lam, cmax = q.arrival_rate, q.capacity
        g, g1, _ = q.occupancy.profile(u)
        x = cmax * (1.0 - u)
        scale = lam * self.time_unit
        # w >= (g + g' (X - x)) / (lam T0), X = lam m1 = load
        self._slopes.append(float(g1[0]) / scale)
        self._icpts.append((float(g[0]) - float(g1[0]) * x) / scale)
        self.points.append(x)

    def _publish(self) -> None:
        # Unused slots hold w >= -j (j = 1, 2, ...): valid, inactive and all distinct
        # (copies of an active cut make the KKT system degenerate: measured, Clarabel
        # stops with InsufficientProgress).
        pad = self.slots - len(self._slopes)
        self._slope.value = np.array(self._slopes + [0.0] * pad)
        self._icpt.value = np.array(self._icpts + [-1.0 - j for j in range(pad)])

    def add(self, x: float) -> bool:
        """Add the tangent at offered work ``x`` (moved inside ``[0, c_max)``); False if full."""
        if self.full:
            return False
        cmax = self.queue.capacity
        u = 1.0 - min(max(float(x), 0.0), cmax) / cmax
        if u <= 0.0:
            u = 0.5 * (1.0 - max(self.points) / cmax)
        self._add_slack(min(max(u, 1e-15), 1.0))
        self._publish()
        return True

    def pop(self) -> None:
        """Drop the cut added last (a re-solve with it failed)."""
        if len(self.points) > 0:
            self._slopes.pop()
            self._icpts.pop()
            self.points.pop()
            self._publish()

    def gap(self, x: float) -> float:
        """``W(x) - w_cuts(x)``, seconds: how far the cuts are below ``W`` at ``x``."""
        q = self.queue
        if x >= q.capacity:
            return math.inf
        cut = max(a * x + b for a, b in zip(self._slopes, self._icpts)) * self.time_unit
        return q.occupancy.g(x) / q.arrival_rate - cut
