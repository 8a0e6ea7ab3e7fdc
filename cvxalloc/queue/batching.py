"""A server that batches: processor sharing with a concurrency-dependent total rate.

Continuous-batching engines (vLLM, SGLang, TensorRT-LLM) decode every query in
the batch together: with ``n`` queries in service each one advances at
``c(n) / n`` times its speed alone, where ``c`` is the server's *capacity
curve* (total decode rate at concurrency ``n`` over the rate of one query
alone; ``c(1) = 1``). Service times keep their meaning: seconds when the query
runs alone. Between measured concurrencies ``c`` is linear, after the last one
it is flat at ``c_max``.

With Poisson arrivals of rate ``lam`` this is a symmetric (processor-sharing)
queue with state-dependent rate, so the number in system has the product form::

    pi(n) ∝ x^n / (c(1) c(2) ... c(n)),    x = lam m1 (offered work, seconds-alone per second),

whatever the distribution of the service times (the queue is *insensitive*:
their scv and variance do not enter, only the mean ``m1``). It is stable
while ``x < c_max``, and by Little's law the mean system time is::

    W = E[N](x) / lam = g(x) / lam.

So ``W`` depends on the budgets only through ``m1``, an affine function of
them. ``E[N]`` is computed with its *exact* geometric tail (beyond the last
concurrency point ``pi(n + 1) / pi(n) = x / c_max``), not a truncated sum.

Derivatives are exact: ``pi`` is an exponential family in ``log x``, so
``g'(x) = Var(N) / x`` and ``g''(x) = E[(N - mu)^2 (N - mu - 1)] / x^2``
(``mu = E[N]``), each sum written out term by term (no cancellation at small
``x``) with the tail in closed form.

Convexity is checked, not assumed: a :class:`CapacityCurve` evaluates ``g''``
on a fine grid of ``[0, c_max)`` when it is built and refuses a curve on which
it is negative (beyond rounding), naming the concurrency segment. Concave
curves, such as measured ones (per-stream speed falls as concurrency grows),
pass; a superlinear start (``c(2) > 2``) makes ``g`` concave near 0 and fails.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._roots import brentq
from .._source import source
from ..errors import ScenarioError, UnstableError

__all__ = ["BatchingQueue", "CapacityCurve", "TangentCuts", "capacity_curve"]

#: Explicit terms of the distribution beyond the last concurrency point before
#: the geometric tail (so every term of order ``x^2`` at small ``x`` is explicit).
_EXTRA = 3
#: Below this offered work the second-order Taylor expansion is exact to rounding.
_TINY = 1e-100
#: ``g''`` may be negative by at most this fraction of the sum of the magnitudes of its terms.
_CONVEXITY_RTOL = 1e-9
#: Entries of the (points x states) matrix evaluated at once.
_CHUNK = 1 << 21
#: Largest concurrency point accepted.
MAX_CONCURRENCY = 1 << 14


@dataclass(frozen=True)
class CapacityCurve:
    """A validated capacity curve ``c(n)`` and the profile ``g(x) = E[N]``.

    Parameters
    ----------
    concurrency : sequence of int
        Queries decoding together, strictly increasing, starting at 1.
    speedup : sequence of float
        Total decode rate at that concurrency over the rate of one query alone,
        strictly increasing, starting at 1.0.

    Raises
    ------
    ScenarioError
        On a malformed curve, or one for which ``g`` is not convex (the
        message names the concurrency segment).
    """

    concurrency: tuple[int, ...]
    speedup: tuple[float, ...]
    _c: np.ndarray = field(init=False, repr=False, compare=False)
    _logp: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        conc, speed = _check_points(self.concurrency, self.speedup)
        object.__setattr__(self, "concurrency", conc)
        object.__setattr__(self, "speedup", speed)
        last = conc[-1]
        head = last + _EXTRA
        n = np.arange(1, head + 1, dtype=float)
        c = np.interp(n, np.asarray(conc, dtype=float), np.asarray(speed))
        c.setflags(write=False)
        logp = np.concatenate([[0.0], np.cumsum(np.log(c))])  # log c(1)...c(n), n = 0..head
        logp.setflags(write=False)
        object.__setattr__(self, "_c", c)
        object.__setattr__(self, "_logp", logp)
        self._check_convex()

    # --- the curve ----------------------------------------------------------
    @property
    def capacity(self) -> float:
        """``c_max``: the total rate at and beyond the last concurrency point."""
        return self.speedup[-1]

    def rate(self, n: Any) -> np.ndarray:
        """``c(n)`` (0 at ``n = 0``; linear between points, flat after the last)."""
        n = np.asarray(n, dtype=float)
        out = np.interp(n, np.asarray(self.concurrency, float), np.asarray(self.speedup))
        return np.where(n <= 0, 0.0, out)

    def to_dict(self) -> dict[str, Any]:
        """The ``[server]`` table."""
        return {
            "model": "batching",
            "concurrency": list(self.concurrency),
            "speedup": list(self.speedup),
        }

    # --- g(x) = E[N] and its derivatives --------------------------------------
    def profile(self, u: Any, *, scale: bool = False):
        """``g``, ``g'``, ``g''`` at slack ``u = 1 - x / c_max`` (arrays, ``0 < u <= 1``).

        Taking the slack rather than ``x`` keeps ``1 - x / c_max`` exact near
        saturation. With ``scale=True`` also returns the sum of the magnitudes
        of the terms of ``g''`` (its rounding scale).
        """
        u = np.atleast_1d(np.asarray(u, dtype=float))
        cmax = self.capacity
        x = cmax * (1.0 - u)
        g, g1, g2, s2 = (np.empty_like(u) for _ in range(4))
        small = x < _TINY
        if np.any(small):
            c2 = float(self._c[1])
            e = 2.0 / c2 - 1.0
            xs = x[small]
            g[small], g1[small], g2[small] = xs + e * xs * xs, 1.0 + 2.0 * e * xs, 2.0 * e
            s2[small] = 2.0 + 4.0 / c2
        idx = np.flatnonzero(~small)
        step = max(1, _CHUNK // self._logp.size)  # bound the (points x states) matrix
        for k in range(0, idx.size, step):
            j = idx[k : k + step]
            g[j], g1[j], g2[j], s2[j] = self._exact(x[j], u[j])
        return (g, g1, g2, s2) if scale else (g, g1, g2)

    def _exact(self, x: np.ndarray, u: np.ndarray):
        head = self._logp.size - 1  # explicit states n = 0..head-1, tail from n = head
        n = np.arange(head + 1, dtype=float)
        la = np.log(x)[:, None] * n[None, :] - self._logp[None, :]
        la -= la.max(axis=1, keepdims=True)
        a = np.exp(la)
        h, a_t = a[:, :head], a[:, head]
        nh = n[:head]
        r = 1.0 - u
        # tail n = head + G, G geometric on {0, 1, ...} with ratio r = x / c_max
        mass_t = a_t / u
        eg, vg, k3g = r / u, r / (u * u), r * (1.0 + r) / (u * u * u)
        z = h.sum(axis=1) + mass_t
        mu = (h @ nh + mass_t * (head + eg)) / z
        d = nh[None, :] - mu[:, None]
        e = head + eg - mu
        d2 = d * d
        v = ((h * d2).sum(axis=1) + mass_t * (vg + e * e)) / z
        q_t = (k3g + 3.0 * vg * e + e**3) - (vg + e * e)
        hq = h * d2 * ((nh - 1.0)[None, :] - mu[:, None])  # d - 1 without cancellation
        q = (hq.sum(axis=1) + mass_t * q_t) / z
        s = (
            np.abs(hq).sum(axis=1) + mass_t * (k3g + 3.0 * vg * abs(e) + abs(e) ** 3 + vg + e * e)
        ) / z
        return mu, v / x, q / (x * x), s / (x * x)

    def g(self, x: float) -> float:
        """``E[N]`` at offered work ``x`` (``inf`` for ``x >= c_max``)."""
        u = 1.0 - x / self.capacity
        return float(self.profile(u)[0][0]) if u > 0 else math.inf

    # --- convexity ------------------------------------------------------------
    def grid(self) -> np.ndarray:
        """Slacks of the convexity grid: uniform in ``x`` and dense near 0 and ``c_max``."""
        cmax = self.capacity
        x = np.concatenate(
            [
                np.linspace(0.0, cmax, 4097)[:-1],
                np.geomspace(1e-8, 1.0, 81) * min(1.0, cmax),
                np.asarray(self.speedup[:-1]),
            ]
        )
        u = np.concatenate([1.0 - x / cmax, np.geomspace(1e-9, 1e-2, 57)])
        return np.unique(u[(u > 0) & (u <= 1)])

    def _check_convex(self) -> None:
        u = self.grid()
        _, _, g2, s2 = self.profile(u, scale=True)
        bad = np.flatnonzero(g2 < -_CONVEXITY_RTOL * s2)
        if bad.size == 0:
            return
        i = bad[np.argmin(g2[bad] / s2[bad])]
        x = self.capacity * (1.0 - u[i])
        j = int(np.searchsorted(np.asarray(self.speedup), x, side="right"))
        j = min(max(j, 1), len(self.concurrency) - 1)
        k0, k1 = self.concurrency[j - 1], self.concurrency[j]
        raise ScenarioError(
            f"server: the capacity curve makes the mean system time non-convex in the load "
            f"(g''(x) = {g2[i]:.3g} < 0 at offered work x = {x:.4g}, between concurrency {k0} "
            f"and {k1}, speedup {self.speedup[j - 1]:g} to {self.speedup[j]:g}); cvxalloc "
            "certifies only convex problems: use a concave curve (speedup gains that shrink "
            "as concurrency grows, at most 2 at concurrency 2), e.g. refit it with 'cvxalloc fit'"
        )


def _check_points(concurrency: Any, speedup: Any) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Validate the two lists of ``[server]``; errors name the field and the fix."""
    w = "server"
    for key, val in (("concurrency", concurrency), ("speedup", speedup)):
        if isinstance(val, (str, bytes)) or not isinstance(val, (Sequence, np.ndarray)):
            raise ScenarioError(f"{w}: {key} must be a list of numbers (got {val!r})")
        if len(val) == 0:
            raise ScenarioError(f"{w}: {key} must not be empty; start it at 1")
        for v in val:
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ScenarioError(f"{w}: {key} must hold numbers (got {v!r})")
            if not math.isfinite(float(v)):
                raise ScenarioError(f"{w}: {key} must hold finite numbers (got {v!r})")
    if len(concurrency) != len(speedup):
        raise ScenarioError(
            f"{w}: concurrency and speedup must have the same length "
            f"(got {len(concurrency)} and {len(speedup)}); give one speedup per concurrency"
        )
    conc = []
    for v in concurrency:
        if float(v) != int(float(v)):
            raise ScenarioError(f"{w}: concurrency must hold whole numbers (got {v!r})")
        conc.append(int(float(v)))
    speed = [float(v) for v in speedup]
    if conc[0] < 1:
        raise ScenarioError(
            f"{w}: concurrency must be >= 1 (got {conc[0]}); the first point is "
            "concurrency 1 with speedup 1.0"
        )
    if conc[0] != 1 or speed[0] != 1.0:
        raise ScenarioError(
            f"{w}: the first point must be concurrency 1 with speedup 1.0 (got concurrency "
            f"{conc[0]}, speedup {speed[0]:g}); speedup is the total rate over the rate of "
            "one query alone: divide the measured throughputs by the one at concurrency 1"
        )
    if conc[-1] > MAX_CONCURRENCY:
        raise ScenarioError(
            f"{w}: concurrency above {MAX_CONCURRENCY} is not supported (got {conc[-1]}); end "
            "the curve at the concurrency where the throughput stops growing (it is flat after)"
        )
    for i in range(1, len(conc)):
        if conc[i] <= conc[i - 1]:
            raise ScenarioError(
                f"{w}: concurrency must be strictly increasing (got {conc[i - 1]} then "
                f"{conc[i]}); sort the points and drop duplicates"
            )
        if not speed[i] > speed[i - 1]:
            raise ScenarioError(
                f"{w}: speedup must increase with concurrency (got {speed[i - 1]:g} at "
                f"concurrency {conc[i - 1]} and {speed[i]:g} at {conc[i]}); the curve is flat "
                "after its last point, so end it at the first concurrency that adds no throughput"
            )
    return tuple(conc), tuple(speed)


@functools.lru_cache(maxsize=64)
def _curve(concurrency: tuple, speedup: tuple) -> CapacityCurve:
    return CapacityCurve(concurrency, speedup)


def capacity_curve(concurrency: Any, speedup: Any) -> CapacityCurve:
    """A validated :class:`CapacityCurve` (cached: the convexity check runs once per curve)."""
    try:
        key = (tuple(concurrency), tuple(speedup))
        hash(key)
    except TypeError:
        return CapacityCurve(concurrency, speedup)
    return _curve(*key)


class _Partials(dict):
    """Parameter partials; a parameter the batching model does not have is a clear error."""

    def __missing__(self, key):
        raise ScenarioError(
            f"server: the batching model has no {key} parameter (it assumes Poisson "
            "arrivals), so this analysis does not support a batching server yet; "
            'use model = "single" for it'
        )


@dataclass(frozen=True)
class BatchingQueue:
    """Continuous batching: processor sharing with total rate ``c(n)``, Poisson arrivals.

    Same interface as :class:`~cvxalloc.queue.FIFOQueue`. ``W(m1, m2) =
    g(lam m1) / lam`` does not depend on ``m2`` (insensitivity), so ``B = 0``
    and every type sees the queue through one scalar ``A = g'(lam m1)``.

    Parameters
    ----------
    arrival_rate : float
        ``lam >= 0``.
    concurrency, speedup : sequence
        The capacity curve (see :class:`CapacityCurve`); or pass ``curve``.

    Examples
    --------
    One stream only (``c = 1``) is the M/M/1 queue, whatever the service distribution:

    >>> q = BatchingQueue(0.5, [1], [1.0])
    >>> round(q.value(1.0, 7.0), 12)   # W = m1 / (1 - lam m1)
    2.0
    """

    arrival_rate: float
    concurrency: Any = (1,)
    speedup: Any = (1.0,)
    curve: CapacityCurve | None = None
    name: str = "batching"

    def __post_init__(self) -> None:
        curve = self.curve or capacity_curve(self.concurrency, self.speedup)
        object.__setattr__(self, "curve", curve)
        object.__setattr__(self, "concurrency", curve.concurrency)
        object.__setattr__(self, "speedup", curve.speedup)
        object.__setattr__(self, "arrival_rate", float(self.arrival_rate))

    def _repr_pretty_(self, p, cycle) -> None:
        """Print the repr in IPython and hypothesis (which spell a dataclass field by field)."""
        p.text(repr(self))

    def __repr__(self) -> str:
        """Python source that rebuilds the queue (its curve as the two lists).

        >>> BatchingQueue(0.5, [1, 2], [1.0, 1.5])
        BatchingQueue(arrival_rate=0.5, concurrency=(1, 2), speedup=(1.0, 1.5))
        """
        name = "" if self.name == "batching" else f", name={self.name!r}"
        return (
            f"BatchingQueue(arrival_rate={source(self.arrival_rate)}, "
            f"concurrency={source(self.concurrency)}, speedup={source(self.speedup)}{name})"
        )

    @property
    def capacity(self) -> float:
        """``c_max``: utilization is ``lam m1 / c_max`` and must stay below 1."""
        return self.curve.capacity

    @property
    def monotone(self) -> bool:
        """``A = g'`` grows with ``m1`` (``g`` convex) and ``B = 0``."""
        return True

    @property
    def poisson(self) -> bool:
        return True

    # --- numeric ------------------------------------------------------------
    def _slack(self, m1: float) -> float:
        return 1.0 - self.arrival_rate * m1 / self.capacity

    def value(self, m1: Any, m2: Any = 0.0) -> Any:
        """``W = g(lam m1) / lam`` in seconds (``m1`` at ``lam = 0``; ``inf`` if unstable).

        Elementwise on arrays; ``m2`` is ignored (insensitivity).
        """
        lam = self.arrival_rate
        if np.ndim(m1) == 0:
            if lam == 0:
                return float(m1)
            u = self._slack(m1)
            if u <= 0:
                return math.inf
            return float(self.curve.profile(u)[0][0]) / lam
        m1 = np.asarray(m1, dtype=float)
        if lam == 0:
            return m1.copy()
        u = 1.0 - lam * m1 / self.capacity
        out = np.full(m1.shape, np.inf)
        ok = u > 0
        if np.any(ok):
            out[ok] = self.curve.profile(u[ok])[0] / lam
        return out

    def derivatives(self, m1: float, m2: float = 0.0) -> tuple[float, float]:
        """``(A, B) = (dW/dm1, 2 dW/dm2) = (g'(lam m1), 0)``; ``(inf, inf)`` where unstable."""
        u = self._slack(m1)
        if u <= 0:
            return np.inf, np.inf
        return self.scalars(u, m2)[:2]

    def scalars(self, u: float, m2: float = 0.0) -> tuple[float, float, float, float, float]:
        """``A``, ``B`` and their partials in the slack ``u = 1 - lam m1 / c_max`` and ``m2``.

        ``A = g'(x)`` with ``x = c_max (1 - u)``, ``B = 0``, ``dA/du = -c_max g''(x)``,
        ``dA/dm2 = 0``, ``dB/du = 0``.
        """
        if self.arrival_rate == 0:
            return 1.0, 0.0, 0.0, 0.0, 0.0
        _, g1, g2 = self.curve.profile(u)
        return float(g1[0]), 0.0, -self.capacity * float(g2[0]), 0.0, 0.0

    def hessian(self, m1: float, m2: float = 0.0) -> np.ndarray:
        """Hessian of ``W`` in ``(m1, m2)``: ``W_11 = lam g''(lam m1)``, the rest 0."""
        lam = self.arrival_rate
        h11 = 0.0
        if lam > 0:
            u = self._slack(m1)
            h11 = lam * float(self.curve.profile(u)[2][0]) if u > 0 else math.inf
        return np.array([[h11, 0.0], [0.0, 0.0]])

    def curvature(self, u: float, m2: float = 0.0) -> tuple[float, float]:
        """``(W_11, W_12) = (lam g''(x), 0)`` at slack ``u = 1 - lam m1 / c_max``; ``W_22 = 0``.

        Unlike the FIFO queue, ``W_11`` need not grow with ``m1`` (``g''`` is
        not monotone in general): bounds that assume it do not apply.
        """
        lam = self.arrival_rate
        if lam == 0:
            return 0.0, 0.0
        return lam * float(self.curve.profile(u)[2][0]), 0.0

    def change(self, m1: float, m2: float, d_m1: Any, d_m2: Any = 0.0) -> np.ndarray:
        """``W(m1 + d_m1) - W(m1)``, vectorized, without cancellation for small changes.

        A change of the load ``dx = lam d_m1`` small next to the slack is the
        integral of ``g'`` over ``[x, x + dx]`` by 4-point Gauss-Legendre (exact
        to rounding there); larger ones are plain differences. ``inf`` where the
        new point is unstable.
        """
        d_m1 = np.asarray(d_m1, dtype=float)
        lam = self.arrival_rate
        if lam == 0:
            return d_m1.copy()
        cmax = self.capacity
        u0 = self._slack(m1)
        du = -lam * d_m1 / cmax  # change of the slack
        out = np.full(np.shape(d_m1), np.inf)
        u1 = u0 + du
        ok = u1 > 0
        small = ok & (np.abs(du) <= 1e-2 * u0)
        if np.any(small):
            nodes, weights = np.polynomial.legendre.leggauss(4)
            dus = du[small]
            uu = u0 + 0.5 * dus[:, None] * (1.0 + nodes[None, :])
            g1 = self.curve.profile(uu.ravel())[1].reshape(uu.shape)
            # dW = (1 / lam) int g'(x) dx with dx = lam d_m1
            out[small] = d_m1[small] * 0.5 * (g1 @ weights)
        big = ok & ~small
        if np.any(big):
            g0 = float(self.curve.profile(u0)[0][0])
            out[big] = (self.curve.profile(u1[big])[0] - g0) / lam
        return out

    def parameter_partials(self, m1: float, m2: float = 0.0) -> dict[str, tuple]:
        """Partials of ``(W, A, B)`` in the queue's parameters at fixed moments.

        ``arrival_rate``: ``W_lam = (x g'(x) - g(x)) / lam^2``, ``A_lam = m1 g''(x)``,
        ``B_lam = 0``. The model assumes Poisson arrivals: asking for the
        ``arrival_scv`` entry raises a :class:`ScenarioError` saying so.
        """
        lam = self.arrival_rate
        if lam == 0:
            return _Partials({"arrival_rate": (0.0, 0.0, 0.0)})
        g, g1, g2 = (float(v[0]) for v in self.curve.profile(self._slack(m1)))
        x = lam * m1
        return _Partials({"arrival_rate": ((x * g1 - g) / (lam * lam), m1 * g2, 0.0)})

    def lower_bound(self, m1: float, m2_min: float = 0.0) -> float:
        """``W`` does not depend on ``m2``: :meth:`value`."""
        return self.value(m1, m2_min)

    def min_slack(self, w_max: float, K: float = 1.0, pv: float = 0.0) -> float:
        """A lower bound of ``1 - rho`` over allocations with ``W <= w_max``.

        ``g`` increases from 0 to infinity on ``[0, c_max)``, so ``W <= w_max``
        means ``x <= g^{-1}(lam w_max)``: solved by Brent's method in the slack
        and returned a little low (the bracket end where ``g`` is still above).
        ``K`` and ``pv`` (used by the FIFO queue) do not enter.
        """
        target = self.arrival_rate * w_max
        if not target > 0:
            return 1.0
        if not math.isfinite(target):
            raise UnstableError(
                "server: no finite bound on the mean system time, so no utilization cap "
                "holds the optimum; set latency_weight > 0 or lower max_tokens"
            )

        def h(u: float) -> float:
            return float(self.curve.profile(u)[0][0]) - target

        lo = 0.5
        while h(lo) <= 0:
            lo *= 0.5
            if lo < 1e-300:
                raise UnstableError("server: the wait bound is beyond the model's range")
        hi = 1.0 if h(1.0) <= 0 else lo
        if hi == lo:
            return lo
        root = brentq(h, lo, hi, xtol=1e-300, rtol=8 * np.finfo(float).eps, maxiter=300)
        return max(root * (1.0 - 1e-12), lo)

    # --- conic --------------------------------------------------------------
    def cvxpy(
        self,
        s: Any,
        p: np.ndarray,
        k: np.ndarray | None = None,
        pv: float = 0.0,
        time_unit: float = 1.0,
        slots: int = 96,
        min_slack: float | None = None,
    ) -> TangentCuts:
        """An outer approximation of ``W / time_unit`` by tangent cuts (an epigraph).

        ``g`` is convex but not DCP-representable, so ``W`` is replaced by a
        variable ``w >= (g(x_j) + g'(x_j) (x - x_j)) / lam`` for cut points
        ``x_j``; ``w`` underestimates ``W``, so the relaxed problem's optimum
        bounds ``U*`` from above. The cuts are CVXPY Parameters (DPP): the conic
        solver adds cuts at its own points and re-solves without recompiling
        until the bound is tight (:class:`TangentCuts`).

        ``min_slack``: a slack ``u_min`` the optimum provably keeps (e.g. from
        :meth:`min_slack` with a bound on ``W``); the load is capped at
        ``c_max (1 - u_min)`` and the first cuts span ``[u_min, 1]``, so no cut
        is steeper than needed (without it: ``x <= c_max`` and cuts down to
        ``u = 0.005``).
        """
        if self.arrival_rate == 0:
            return p @ s  # W = m1: a query runs alone
        return TangentCuts(self, s, p, time_unit, slots, min_slack)


class TangentCuts:
    """The epigraph ``w >= max_j (g(x_j) + g'(x_j)(x - x_j)) / lam`` in CVXPY.

    Attributes
    ----------
    expr : cvxpy.Variable
        ``w``, the latency in units of ``time_unit`` seconds.
    constraints : list
        The cuts and ``x <= c_max``.
    load : cvxpy.Expression
        ``x = lam m1`` (affine).
    points : list of float
        Offered work of each cut placed so far.
    """

    def __init__(
        self,
        queue: BatchingQueue,
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
        # initial cuts: uniform in x plus dense near saturation (where g bends most)
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
        g, g1, _ = q.curve.profile(u)
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

    def gap(self, x: float) -> float:
        """``W(x) - w_cuts(x)``, seconds: how far the cuts are below ``W`` at ``x``."""
        q = self.queue
        if x >= q.capacity:
            return math.inf
        cut = max(a * x + b for a, b in zip(self._slopes, self._icpts)) * self.time_unit
        return q.curve.g(x) / q.arrival_rate - cut
