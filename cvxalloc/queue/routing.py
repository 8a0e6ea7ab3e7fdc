"""How a router turns one replica's wait into the fleet's: convex transforms ``F``.

A fleet of ``k`` replicas behind a router (:mod:`cvxalloc.queue.fleet`) sees
each query wait, in units of its mean service time ``m1``, ``F(y) - 1`` where
``y = omega / m1`` is the wait ``omega`` of one replica fed at rate
``lam / k`` (its *base* queue, :class:`~cvxalloc.queue.FIFOQueue` or
:class:`~cvxalloc.queue.BatchingQueue`). The fleet's mean system time is then
the perspective::

    W = m1 F(omega / m1),

which is convex in the budgets whenever ``F`` is convex and nondecreasing on
``y >= 0``: ``omega(t)`` is convex (the base queue's wait), ``m1(t)`` is affine,
and the perspective of a convex function is jointly convex and nondecreasing in
``omega``. Each transform here states ``F``, ``F'``, ``F''`` (vectorized,
exact to rounding) and is checked convex when it is built.

* :class:`RoundRobin`: every ``k``-th query goes to a replica, so a replica's
  gaps are sums of ``k`` gaps (scv ``c_a^2 / k`` for renewal arrivals; Erlang-k
  for Poisson). The base is GI/G/1 with that scv; Kingman overestimates the wait
  of such smooth arrivals (18% at ``k = 16``, utilization 0.5, exponential
  service), so its wait is corrected by Kraemer and Langenbach-Belz (1976):
  ``F(y) = 1 + y exp(-beta / y)``, ``beta = (1 - c)^2 / 3`` with ``c`` the
  replica's gap scv (``c < 1``). In the perspective this is exactly their
  formula, ``W_q = W_q^Kingman exp(-2 (1 - rho) (1 - c)^2 / (3 rho (c + c_s^2)))``.
* :class:`ShortestQueue`: join the replica with the fewest queries. Nelson and
  Philips (1993) map GI/G/k to the M/M/k system at the effective load
  ``phi = y / (1 + y)`` (where an M/M/1 queue waits as long as the replica does,
  relative to its service time) and take the wait of balanced queues there,
  ``C(k, k phi) / (1 - phi^k)`` (``C`` Erlang's delay probability). That
  function is not convex (its slope overshoots the heavy-traffic slope ``1/k``),
  so the model is its greatest convex minorant: itself up to the point ``y*``
  where its slope first reaches ``1 / k``, the tangent line of slope ``1 / k``
  beyond (the heavy-traffic law: ``k`` pooled replicas wait ``1 / k`` as long as
  one). Measured against simulation in docs/fleet.md.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .._lazy import special
from .._roots import brentq
from ..errors import ScenarioError

__all__ = ["RoundRobin", "ShortestQueue", "shortest_queue"]

#: ``F''`` may be negative by at most this fraction of ``F'' `` 's scale (rounding).
_CONVEXITY_RTOL = 1e-9


def _jet_div(x, z):
    """``(x / z, (x / z)', (x / z)'')`` from the jets of ``x`` and ``z``."""
    q = x[0] / z[0]
    q1 = (x[1] - q * z[1]) / z[0]
    q2 = (x[2] - 2.0 * q1 * z[1] - q * z[2]) / z[0]
    return q, q1, q2


@dataclass(frozen=True)
class RoundRobin:
    """``F(y) = 1 + y exp(-beta / y)``: Kraemer and Langenbach-Belz for smooth arrivals.

    Parameters
    ----------
    scv : float
        ``c``, the squared coefficient of variation of one replica's gaps
        (``c_a^2 / k``), in ``[0, 1)``; ``beta = (1 - c)^2 / 3``.
    """

    scv: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.scv < 1.0:
            raise ValueError(f"RoundRobin: scv must be in [0, 1) (got {self.scv})")

    @property
    def beta(self) -> float:
        return (1.0 - self.scv) ** 2 / 3.0

    def jet(self, y):
        """``(F, F', F'')`` at ``y >= 0`` (arrays)."""
        y = np.asarray(y, dtype=float)
        beta = self.beta
        pos = y > 0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            r = np.where(pos, beta / np.where(pos, y, 1.0), np.inf)
            e = np.exp(-r)
            f = 1.0 + np.where(pos, y * e, 0.0)
            f1 = np.where(pos, e * (1.0 + r), 0.0)
            f2 = np.where(pos & (e > 0), e * r * r / np.where(pos, y, 1.0), 0.0)
        return f, f1, f2

    def scv_jet(self, y):
        """``(dF/dc, dF'/dc)`` at ``y``: the dependence on the replica's gap scv ``c``."""
        y = np.asarray(y, dtype=float)
        beta = self.beta
        d_beta = -2.0 * (1.0 - self.scv) / 3.0
        pos = y > 0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ys = np.where(pos, y, 1.0)
            e = np.where(pos, np.exp(-beta / ys), 0.0)
            f_b = -e
            f1_b = np.where(pos & (e > 0), -e * beta / (ys * ys), 0.0)
        return f_b * d_beta, f1_b * d_beta

    def describe(self) -> str:
        return f"Kraemer-Langenbach-Belz (gap scv {self.scv:.4g})"


@dataclass(frozen=True)
class ShortestQueue:
    """The greatest convex minorant of Nelson and Philips' balanced-queue wait.

    ``F(y) = 1 + C(k, k phi) / (1 - phi^k)`` with ``phi = y / (1 + y)`` up to
    ``y_star`` (where ``F' = 1 / k`` first), the tangent of slope ``1 / k`` beyond.
    Build it with :func:`shortest_queue` (cached, convexity checked).
    """

    replicas: int
    y_star: float
    f_star: float

    def _np_jet(self, y: np.ndarray):
        """``(F, F', F'')`` of Nelson and Philips' form at ``y`` (before the minorant)."""
        k = self.replicas
        y = np.asarray(y, dtype=float)
        eps = 1.0 / (1.0 + y)  # 1 - phi, exact near saturation
        phi = y * eps
        a = k * phi
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_b = (
                k * np.log(a) - a - special.gammaln(k + 1.0) - np.log(special.gammaincc(k + 1.0, a))
            )
            b = np.where(a > 0, np.exp(log_b), 0.0)  # Erlang's loss probability B(k, a)
            g = k / a - 1.0 + b
            b1 = np.where(a > 0, b * g, 1.0 if k == 1 else 0.0)
            b2 = np.where(a > 0, b1 * g + b * (b1 - k / (a * a)), 1.0 if k == 2 else 0.0)
        bj = (b, k * b1, k * k * b2)  # jets in phi
        d = (eps + phi * b, -1.0 + b + phi * bj[1], 2.0 * bj[1] + phi * bj[2])
        c = _jet_div(bj, d)  # Erlang's delay probability C = B / (1 - phi (1 - B))
        with np.errstate(divide="ignore"):
            p0 = -np.expm1(-k * np.log1p(1.0 / np.where(y > 0, y, np.inf)))  # 1 - phi^k
        p = (np.where(y > 0, p0, 1.0), -k * phi ** (k - 1), -k * (k - 1) * phi ** max(k - 2, 0))
        e = _jet_div(c, p)
        d1, d2 = eps * eps, -2.0 * eps**3  # phi'(y), phi''(y)
        return 1.0 + e[0], e[1] * d1, e[2] * d1 * d1 + e[1] * d2

    def jet(self, y):
        """``(F, F', F'')`` at ``y >= 0`` (arrays)."""
        y = np.asarray(y, dtype=float)
        inner = np.minimum(y, self.y_star)
        f, f1, f2 = self._np_jet(inner)
        tail = y > self.y_star
        k = self.replicas
        f = np.where(tail, self.f_star + (y - self.y_star) / k, f)
        f1 = np.where(tail, 1.0 / k, f1)
        f2 = np.where(tail, 0.0, f2)
        return f, f1, f2

    def scv_jet(self, y):
        """``(dF/dc, dF'/dc)``: ``F`` does not depend on the gap scv (zeros)."""
        z = np.zeros(np.shape(y))
        return z, z

    def describe(self) -> str:
        return (
            f"Nelson-Philips, convex minorant (linear beyond y* = {self.y_star:.4g}, "
            f"slope 1/{self.replicas})"
        )


@functools.lru_cache(maxsize=256)
def shortest_queue(replicas: int) -> ShortestQueue:
    """The shortest-queue transform of ``replicas`` replicas, its convexity checked.

    Raises
    ------
    ScenarioError
        If the form is not convex on ``[0, y*]`` beyond rounding (then no
        certificate would hold); the message names the replicas.
    """
    k = int(replicas)
    if k < 2:
        raise ValueError("shortest_queue: replicas must be >= 2")
    probe = ShortestQueue(k, math.inf, math.nan)
    ys = np.geomspace(1e-4, 1e6, 2001)
    slope = probe._np_jet(ys)[1] - 1.0 / k
    up = np.flatnonzero(slope > 0)
    if up.size == 0 or up[0] == 0:
        raise ScenarioError(
            f"fleet: the shortest-queue model has no convex form for replicas = {k} (its slope "
            'never reaches 1/k); use router = "random" or "round-robin"'
        )
    i = int(up[0])
    y_star = brentq(
        lambda y: float(probe._np_jet(np.array([y]))[1][0]) - 1.0 / k,
        float(ys[i - 1]),
        float(ys[i]),
        xtol=1e-14,
        rtol=4 * np.finfo(float).eps,
    )
    grid = np.concatenate([np.linspace(0.0, y_star, 4001), np.geomspace(1e-6, y_star, 400)])
    f, f1, f2 = probe._np_jet(grid)
    scale = np.abs(f1) / np.maximum(grid, 1e-300) + np.abs(f2)
    if np.any(f2 < -_CONVEXITY_RTOL * scale) or np.any(f1 < 0):
        j = int(np.argmin(f2))
        raise ScenarioError(
            f"fleet: the shortest-queue model is not convex for replicas = {k} (F'' = "
            f"{f2[j]:.3g} at y = {grid[j]:.4g}), so it cannot be certified; use "
            'router = "random" or "round-robin"'
        )
    f_star = float(probe._np_jet(np.array([y_star]))[0][0])
    return ShortestQueue(k, float(y_star), f_star)
