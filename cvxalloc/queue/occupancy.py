"""How many queries a batching server holds: ``G(x)``, with bursty arrivals and an admission limit.

The batching server's mean system time is ``W = G(x) / lam`` with ``x = lam m1``
the offered work (seconds-alone per second). For Poisson arrivals and processor
sharing ``G = E[N]`` of the product form (:class:`~cvxalloc.queue.CapacityCurve`),
exact for any service distribution. This module generalizes ``G`` to

* **bursty arrivals** (``arrival_scv = c_a^2``): for ``c_a^2 >= 1`` the arrivals are
  modelled as batches of geometric size (mean ``b``) arriving as a Poisson process,
  the M^X chain. With exponential work and rate ``c(n)`` in state ``n`` its
  distribution has a product form too::

      pi(n) ∝ p (x / c(n)) F(n - 1),   F(n) = prod_{k <= n} (q + p x / c(k)),   p = 1 / b = 1 - q,

  (``p = 1``: the Poisson chain). The batch size matches the heavy-traffic limit of
  processor sharing, where ``E[N] ~ rho (c_a^2 + c_s^2) / ((1 + c_s^2)(1 - rho))``: with
  the service's squared coefficient of variation ``c_s^2``, ``b = (c_a^2 + c_s^2) / (1 + c_s^2)``;
* **the engine's admission limit** (``max_running = K``): at most ``K`` decode at once
  and the rest wait FIFO. With exponential work this is the same chain on the curve
  capped at ``K``, ``c(min(n, K))``; service variability lengthens the FIFO wait by
  the M/G/c factor ``(1 + c_s^2) / 2`` (Lee and Longton), so the waiting count
  ``E[(N - K)^+]`` is weighted by ``(c_s^2 - 1) / 2`` on top of ``E[N]``. With bursts
  that weight is damped on the bursts' excess, ``D = E[(N - K)^+] - E_P[(N - K)^+]`` over
  the Poisson chain's, by the utilization ``r = x / capacity``: the weight there is
  ``(1 - (1 - r)^2) (c_s^2 - 1) / 2`` (chosen on simulation, docs/batching.md).
  Lee-Longton's factor is the stationary residual service a waiting query meets; a
  burst at light load meets a system that has just admitted fresh queries, whose short
  ones leave first, so its wait before admission is closer to the exponential-work
  chain's. In heavy traffic the full
  weight returns (Allen-Cunneen's ``(c_a^2 + c_s^2) / 2``); Poisson arrivals (``D = 0``),
  exponential work (weight 0) and processor sharing are unchanged;
* **smooth arrivals** (``c_a^2 < 1``): the Poisson chain, with the part of ``E[N]``
  above the offered work (running queries) scaled by the same heavy-traffic factor
  ``h = (c_a^2 + c_s^2) / (1 + c_s^2) < 1`` and the waiting count by ``(c_a^2 + c_s^2) / 2``.

``c_s^2`` here is the service scv the model *assumes* (``[server] service_scv``,
default 1: exponential work). It must be a constant of the model, not the
allocation's own: the cost of a burst falls as the service gets more variable
(short queries of a burst leave early), so a ``W`` that followed the allocation's
variability would decrease in ``m2`` and could not be convex in the budgets (for
three or more types there is a direction of negative curvature). With it fixed,
``G`` is a function of ``x`` alone, ``W`` depends on the budgets through ``m1``
only, and convexity is a property of ``G`` that is checked on a grid, as for the
capacity curve.

In every case::

    G(x) = alpha x + E[w1 N + w2 (N - K)^+] - w2 (1 - r)^2 D      (D = 0 but for bursts)

``c_a^2 = 1`` gives ``q = 0``, ``alpha = 0``, ``w1 = 1``, ``w2 = (c_s^2 - 1) / 2``; without
an admission limit that is today's processor-sharing model exactly (the same code path).

Derivatives are exact: with ``S_n = d log pi(n) / dx`` (up to the normalization),
``G' = alpha + Cov(psi, S)`` and ``G'' = E[psi_c (S_c^2 + S')]`` (``_c``: centred),
written so that no term of order ``1 / x^2`` is subtracted from another, and with the
tail beyond the last point (geometric, ratio ``q + p x / c_max``) in closed form.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ScenarioError
from .curve import CapacityCurve, products

__all__ = ["Occupancy", "occupancy", "MAX_ARRIVAL_SCV"]

#: Explicit states beyond the last concurrency point (or ``K``) before the geometric tail.
_EXTRA = 3
#: Below this offered work ``G`` is linear to rounding: its slope and curvature at this point.
_TINY = 1e-100
#: ``G''`` may be negative by at most this fraction of the sum of the magnitudes of its terms.
_CONVEXITY_RTOL = 1e-9
#: Entries of the (points x states) matrix evaluated at once.
_CHUNK = 1 << 21
#: Largest arrival scv the batching model takes (mean batch up to about 5e5 queries).
MAX_ARRIVAL_SCV = 1e6


def _weights(arrival_scv: float, service_scv: float) -> tuple[float, float, float, float]:
    """``(p, alpha, w1, w2)`` of ``G = alpha x + E_p[w1 N + w2 (N - K)^+]``."""
    ca, cs = float(arrival_scv), float(service_scv)
    if ca >= 1.0:
        return (1.0 + cs) / (ca + cs), 0.0, 1.0, 0.5 * (cs - 1.0)
    h = (ca + cs) / (1.0 + cs)
    return 1.0, 1.0 - h, h, 0.5 * (ca + cs) - h


@dataclass(frozen=True)
class Occupancy:
    """``G(x)``: mean number in system (weighted, see the module docstring) at offered work ``x``.

    Parameters
    ----------
    curve : CapacityCurve
        The server's capacity curve.
    arrival_scv : float
        ``c_a^2`` of the inter-arrival gaps (1: Poisson).
    max_running : int, optional
        At most this many decode together, the rest wait FIFO.
    service_scv : float
        The service scv the burst and admission terms assume (1: exponential).
    """

    curve: CapacityCurve
    arrival_scv: float = 1.0
    max_running: int | None = None
    service_scv: float = 1.0
    _p: float = field(init=False, repr=False, compare=False)
    _alpha: float = field(init=False, repr=False, compare=False)
    _w1: float = field(init=False, repr=False, compare=False)
    _w2: float = field(init=False, repr=False, compare=False)
    _c: np.ndarray = field(init=False, repr=False, compare=False)
    _logc: np.ndarray = field(init=False, repr=False, compare=False)
    _cap: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        p, alpha, w1, w2 = _weights(self.arrival_scv, self.service_scv)
        K = self.max_running
        if K is None:
            w2 = 0.0
        last = self.curve.concurrency[-1]
        flat = last if K is None else min(K, last)  # c is constant from here on
        head = max(flat, K or 0) + _EXTRA  # explicit states 0..head-1, tail from head
        n = np.arange(1, head + 1, dtype=float)
        c = self.curve.rate(np.minimum(n, flat))
        c.setflags(write=False)
        logc = np.log(c)
        logc.setflags(write=False)
        for name, value in (
            ("_p", p),
            ("_alpha", alpha),
            ("_w1", w1),
            ("_w2", w2),
            ("_c", c),
            ("_logc", logc),
            ("_cap", float(self.curve.rate(flat))),
        ):
            object.__setattr__(self, name, value)

    # --- the model ------------------------------------------------------------
    @property
    def capacity(self) -> float:
        """``c(min(K, last point))``: the load must stay below it."""
        return self._cap

    @property
    def plain(self) -> bool:
        """Whether ``G`` is the processor-sharing ``E[N]`` of the curve (today's model)."""
        K, last = self.max_running, self.curve.concurrency[-1]
        return (
            self._p == 1.0
            and self._alpha == 0.0
            and self._w1 == 1.0
            and (K is None or (K >= last and self._w2 == 0.0))
        )

    def profile(self, u: Any, x: Any = None, *, scale: bool = False):
        """``G``, ``G'``, ``G''`` at slack ``u = 1 - x / capacity`` (arrays, ``0 < u <= 1``).

        ``x`` (same shape), when given, is the offered work itself: at light load
        ``capacity (1 - u)`` has lost the relative precision that ``lam m1`` keeps.
        With ``scale=True`` also the sum of the magnitudes of the terms of ``G''``.
        """
        u = np.atleast_1d(np.asarray(u, dtype=float))
        x = self._cap * (1.0 - u) if x is None else np.atleast_1d(np.asarray(x, dtype=float))
        if self.plain:
            return self.curve.profile(u, scale=scale, x=x)
        out = self._moments(u, x, self._w1, self._w2, self._p, scale=scale)
        out[0] = out[0] + self._alpha * x
        out[1] = out[1] + self._alpha
        if self._damped:
            self._damp(u, x, out, scale)
        return tuple(out) if scale else tuple(out[:3])

    @property
    def _damped(self) -> bool:
        """Whether the bursts' excess waiting count takes a damped Lee-Longton weight."""
        return self._p < 1.0 and self.max_running is not None and self._w2 != 0.0

    def _damp(self, u, x, out: list, scale: bool) -> None:
        """Take ``w2 u^2 D`` off ``G`` (and its derivatives off ``G'``, ``G''``), ``D`` the
        bursts' excess waiting count ``E_b[(N - K)^+] - E_P[(N - K)^+]`` and ``u`` the
        slack: the Lee-Longton weight applies in full in heavy traffic only."""
        qb = self._moments(u, x, 0.0, 1.0, self._p, scale=scale)
        qp = self._moments(u, x, 0.0, 1.0, 1.0, scale=scale)
        d = [b - q for b, q in zip(qb[:3], qp[:3])]
        g1, g2, rest = _damping(u, self._cap)
        w2 = self._w2
        out[0] -= w2 * rest * d[0]
        out[1] -= w2 * (rest * d[1] - g1 * d[0])
        out[2] -= w2 * (rest * d[2] - 2.0 * g1 * d[1] - g2 * d[0])
        if scale:
            terms = rest * (qb[3] + qp[3]) + np.abs(2.0 * g1 * d[1]) + np.abs(g2 * d[0])
            out[3] += abs(w2) * terms

    def g(self, x: float) -> float:
        """``G(x)`` (``inf`` for ``x >= capacity``)."""
        u = 1.0 - x / self._cap
        return float(self.profile(u, x)[0][0]) if u > 0 else math.inf

    def arrival_scv_partials(self, u: Any, x: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``dG/dc_a^2`` and ``dG'/dc_a^2`` at fixed ``x`` (at ``c_a^2 = 1``: the bursty side)."""
        u = np.atleast_1d(np.asarray(u, dtype=float))
        x = self._cap * (1.0 - u) if x is None else np.atleast_1d(np.asarray(x, dtype=float))
        ca, cs = self.arrival_scv, self.service_scv
        if ca >= 1.0:
            dq = (1.0 + cs) / (ca + cs) ** 2  # dq/dc_a^2, q = (c_a^2 - 1) / (c_a^2 + c_s^2)
            g_q, g1_q = self._moments(u, x, self._w1, self._w2, self._p, dq=True)
            if self._damped:  # the Poisson chain's part does not depend on c_a^2
                b_q, b1_q = self._moments(u, x, 0.0, 1.0, self._p, dq=True)
                d1, _, rest = _damping(u, self._cap)
                g_q = g_q - self._w2 * rest * b_q
                g1_q = g1_q - self._w2 * (rest * b1_q - d1 * b_q)
            return dq * g_q, dq * g1_q
        g, g1, _ = self._moments(u, x, 1.0, 0.0, 1.0)
        w2 = 0.0 if self.max_running is None else 1.0
        qn, q1, _ = self._moments(u, x, 0.0, w2, 1.0)
        dh = 1.0 / (1.0 + cs)  # alpha = 1 - h, w1 = h, w2 = (c_a^2 + c_s^2) / 2 - h
        return dh * (g - x) + (0.5 - dh) * qn, dh * (g1 - 1.0) + (0.5 - dh) * q1

    # --- the chain --------------------------------------------------------------
    def _moments(self, u, x, w1, w2, p, *, scale=False, dq=False) -> list:
        """``E[psi]`` and its derivatives for ``psi(n) = w1 n + w2 (n - K)^+`` (chunked)."""
        out = [np.empty_like(u) for _ in range(2 if dq else (4 if scale else 3))]
        small = x < _TINY
        if np.any(small):  # G is linear to rounding below _TINY: evaluate there, extend
            x0 = np.array([_TINY])
            vals = self._exact(x0, 1.0 - x0 / self._cap, w1, w2, p, dq)
            if dq:
                out[0][small], out[1][small] = vals[0][0] * x[small] / _TINY, vals[1][0]
            else:
                out[0][small] = vals[0][0] * x[small] / _TINY
                for k in range(1, len(out)):
                    out[k][small] = vals[k][0]
        idx = np.flatnonzero(~small)
        step = max(1, _CHUNK // (self._c.size + 1))
        for k in range(0, idx.size, step):
            j = idx[k : k + step]
            vals = self._exact(x[j], u[j], w1, w2, p, dq)
            for m in range(len(out)):
                out[m][j] = vals[m]
        return out

    def _exact(self, x, u, w1, w2, p, dq):
        """The sums over states ``0..H-1`` and the geometric tail from ``H``, in closed form."""
        H = self._c.size  # rates c(1..H); explicit states 0..H-1, a(H) starts the tail
        q = 1.0 - p
        c = self._c[None, :]
        ratio = x[:, None] / c  # x / c(k), k = 1..H
        f = q + p * ratio
        uk = 1.0 - ratio
        uk[:, self._c == self._cap] = u[:, None]  # exact where c(k) = capacity
        near = np.abs(f - 1.0) < 0.5  # log1p(-p (1 - x/c)) keeps log f exact near f = 1
        logf = np.log(np.where(near, 1.0, f))
        logf[near] = np.log1p(-p * uk[near])
        # log a(n), n = 0..H: a(0) = 1, a(n) = p x / c(n) prod_{k<n} f_k
        la = np.empty((x.size, H + 1))
        la[:, 0] = 0.0
        la[:, 1:] = math.log(p) + np.log(x)[:, None] - self._logc[None, :]
        la[:, 2:] += np.cumsum(logf[:, : H - 1], axis=1)
        # a(n) / a(n - 1): p x / c(1), then f_{n-1} c(n-1) / c(n) = (q c(n-1) + p x) / c(n)
        ratio = np.empty((x.size, H))
        ratio[:, 0] = p * x / self._c[0]
        ratio[:, 1:] = (q * c[:, : H - 1] + p * x[:, None]) / c[:, 1:]
        a = products(ratio, la)
        h, a_t = a[:, :H], a[:, H]
        ft, one_ft = _tail_ratio(x, u, p, self._cap)
        mass_t = a_t / one_ft
        eg, vg, k3 = ft / one_ft, ft / one_ft**2, ft * (1.0 + ft) / one_ft**3
        z = h.sum(axis=1) + mass_t
        n = np.arange(H, dtype=float)
        K = self.max_running
        psi = w1 * n + (w2 * np.maximum(n - K, 0.0) if K is not None else 0.0)
        psi_h = w1 * H + (w2 * max(H - K, 0) if K is not None else 0.0)
        w = w1 + (w2 if K is not None else 0.0)  # slope of psi in the tail
        e_psi = (h @ psi + mass_t * (psi_h + w * eg)) / z
        pb = psi[None, :] - e_psi[:, None]  # centred psi, explicit states
        eb = psi_h + w * eg - e_psi  # centred psi at the tail's mean
        # S_n = d log a(n) / dx = [n >= 1] / x + D_n, D_n = sum_{k<n} delta_k
        delta = p / (c * f)  # (points, H): delta_k, k = 1..H
        D = np.zeros((x.size, H + 1))
        D[:, 2:] = np.cumsum(delta[:, : H - 1], axis=1)
        d_t = p / (self._cap * ft)
        p1 = (h[:, 1:].sum(axis=1) + mass_t) / z  # P(N >= 1), without 1 - pi(0)
        ed = ((h * D[:, :H]).sum(axis=1) + mass_t * (D[:, H] + d_t * eg)) / z
        R = D[:, :H] - ed[:, None] - (p1 / x)[:, None]  # S_c - 1/x for n >= 1
        s0 = -(p1 / x + ed)  # S_c at n = 0
        r_t = D[:, H] + d_t * eg - ed - p1 / x  # R at the tail's mean
        st0 = 1.0 / x + r_t  # S_c at the tail's mean
        if dq:
            return self._q_partials(x, u, p, f, uk, h, a_t, mass_t, z, pb, eb, w, R, s0, st0)
        # G' = E[psi_c S_c]
        sc = np.concatenate([s0[:, None], 1.0 / x[:, None] + R[:, 1:]], axis=1)
        g1 = ((h * pb * sc).sum(axis=1) + mass_t * (eb * st0 + w * d_t * vg)) / z
        # G'' = E[psi_c T2], T2 = S_c^2 + S' written without cancelling 1/x^2 terms
        E = np.zeros((x.size, H + 1))
        E[:, 2:] = np.cumsum(delta[:, : H - 1] ** 2, axis=1)
        t2 = 2.0 * R / x[:, None] + R * R - E[:, :H]
        t2[:, 0] = s0 * s0
        e_t = E[:, H] + d_t * d_t * eg
        c0 = 2.0 * r_t / x + r_t * r_t - e_t
        c1 = 2.0 * d_t / x + 2.0 * r_t * d_t - d_t * d_t
        c2 = d_t * d_t
        hq = h * pb * t2
        tail = eb * c0 + eb * c2 * vg + w * c1 * vg + w * c2 * k3
        g2 = (hq.sum(axis=1) + mass_t * tail) / z
        s = (
            np.abs(hq).sum(axis=1)
            + mass_t * (abs(eb) * (np.abs(c0) + c2 * vg) + abs(w) * (np.abs(c1) * vg + c2 * k3))
        ) / z
        return [e_psi, g1, g2, s]

    def _q_partials(self, x, u, p, f, uk, h, a_t, mass_t, z, pb, eb, w, R, s0, st0):
        """``dG/dq`` and ``dG'/dq``: ``E[psi_c T]`` and ``E[psi_c dS/dq] + E[psi_c S_c T_c]``."""
        H = self._c.size
        c = self._c[None, :]
        ft, one_ft = _tail_ratio(x, u, p, self._cap)
        eg, vg, k3 = ft / one_ft, ft / one_ft**2, ft * (1.0 + ft) / one_ft**3
        # T_n = d log a(n) / dq = -1/p + sum_{k<n} (1 - x/c_k) / f_k  (n >= 1), T_0 = 0
        tk = uk / f
        T = np.zeros((x.size, H + 1))
        T[:, 1:] = -1.0 / p
        T[:, 2:] += np.cumsum(tk[:, : H - 1], axis=1)
        tau = u / ft  # slope of T in the tail
        et = ((h * T[:, :H]).sum(axis=1) + mass_t * (T[:, H] + tau * eg)) / z
        Tc = T[:, :H] - et[:, None]
        tau0 = T[:, H] + tau * eg - et
        dg = ((h * pb * Tc).sum(axis=1) + mass_t * (eb * tau0 + w * tau * vg)) / z
        # dS_n/dq = -sum_{k<n} 1 / (c_k f_k^2)
        sig = -1.0 / (c * f * f)
        Sq = np.zeros((x.size, H + 1))
        Sq[:, 2:] = np.cumsum(sig[:, : H - 1], axis=1)
        sig_t = -1.0 / (self._cap * ft * ft)
        d_t = p / (self._cap * ft)
        sc = np.concatenate([s0[:, None], 1.0 / x[:, None] + R[:, 1:]], axis=1)
        head = (h * pb * (Sq[:, :H] + sc * Tc)).sum(axis=1)
        sq0 = Sq[:, H] + sig_t * eg
        tail = eb * sq0 + w * sig_t * vg
        tail = tail + eb * st0 * tau0 + eb * d_t * tau * vg + w * (st0 * tau + d_t * tau0) * vg
        tail = tail + w * d_t * tau * k3
        return [dg, (head + mass_t * tail) / z]

    # --- convexity ------------------------------------------------------------
    def grid(self) -> np.ndarray:
        """Slacks of the convexity grid: uniform in ``x`` and dense near 0 and saturation."""
        cap = self._cap
        x = np.concatenate(
            [
                np.linspace(0.0, cap, 4097)[:-1],
                np.geomspace(1e-8, 1.0, 81) * min(1.0, cap),
                np.asarray([s for s in self.curve.speedup if s < cap]),
            ]
        )
        u = np.concatenate([1.0 - x / cap, np.geomspace(1e-9, 1e-2, 57)])
        return np.unique(u[(u > 0) & (u <= 1)])

    def check_convex(self) -> None:
        """Refuse (ScenarioError naming the fields) a ``G`` that is not convex on the grid."""
        if self.plain:
            return  # the curve's own check ran when it was built
        u = self.grid()
        _, _, g2, s2 = self.profile(u, scale=True)
        bad = np.flatnonzero(~(g2 >= -_CONVEXITY_RTOL * s2))
        if bad.size == 0:
            return
        i = bad[np.argmin(g2[bad] / s2[bad])] if np.all(np.isfinite(g2[bad])) else bad[0]
        x = self._cap * (1.0 - u[i])
        raise ScenarioError(
            "server: with queue.arrival_scv = "
            f"{self.arrival_scv:g}, max_running = {self.max_running} and service_scv = "
            f"{self.service_scv:g} the batching model's mean system time is not convex in the "
            f"load (G''(x) = {g2[i]:.3g} < 0 at offered work x = {x:.4g}, utilization "
            f"{x / self._cap:.3g}); cvxalloc certifies only convex problems: " + _fix(self)
        )


def _damping(u, cap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first two derivatives in ``x = r cap`` of the weight ``1 - u^2`` of the bursts'
    excess (``u = 1 - r`` the slack, ``r`` the utilization), and ``u^2``, its complement."""
    u = np.asarray(u, dtype=float)
    return 2.0 * u / cap, np.full_like(u, -2.0 / (cap * cap)), u * u


def _tail_ratio(x, u, p, cap):
    """``f = q + p x / cap`` and ``1 - f = p u``, each from the form that keeps its precision."""
    direct = (1.0 - p) + p * (x / cap)
    ft = np.where(direct < 0.5, direct, 1.0 - p * u)
    return ft, np.where(direct < 0.5, 1.0 - direct, p * u)


def _fix(occ: Occupancy) -> str:
    """What to change when a combination is not convex."""
    if occ.service_scv < 1.0 and occ.max_running is not None:
        return "raise service_scv to 1 or more, or remove max_running"
    if occ.arrival_scv < 1.0:
        return "raise arrival_scv to 1 or more, or use a concave capacity curve"
    return "use a concave capacity curve (speedup gains that shrink as concurrency grows)"


@functools.lru_cache(maxsize=256)
def _occupancy(curve, arrival_scv, max_running, service_scv) -> Occupancy:
    occ = Occupancy(curve, arrival_scv, max_running, service_scv)
    occ.check_convex()
    return occ


def occupancy(
    curve: CapacityCurve,
    arrival_scv: float = 1.0,
    max_running: int | None = None,
    service_scv: float = 1.0,
) -> Occupancy:
    """A checked :class:`Occupancy` (cached: the convexity check runs once per combination).

    Raises
    ------
    ScenarioError
        If ``G`` is not convex for this combination (the message names the fields
        and what to change).
    """
    return _occupancy(curve, float(arrival_scv), max_running, float(service_scv))
