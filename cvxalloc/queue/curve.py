"""The capacity curve of a batching server and its processor-sharing profile ``g(x) = E[N]``.

Continuous-batching engines (vLLM, SGLang, TensorRT-LLM) decode every query in
the batch together: with ``n`` queries in service each one advances at
``c(n) / n`` times its speed alone, where ``c`` is the server's *capacity
curve* (total decode rate at concurrency ``n`` over the rate of one query
alone; ``c(1) = 1``). Between measured concurrencies ``c`` is linear, after the
last one it is flat at ``c_max``.

With Poisson arrivals of rate ``lam`` this is a symmetric (processor-sharing)
queue with state-dependent rate, so the number in system has the product form::

    pi(n) ∝ x^n / (c(1) c(2) ... c(n)),    x = lam m1 (offered work, seconds-alone per second),

whatever the distribution of the service times (the queue is *insensitive*).
It is stable while ``x < c_max``. ``E[N] = g(x)`` is computed with its *exact*
geometric tail (beyond the last concurrency point ``pi(n + 1) / pi(n) = x / c_max``).

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

from ..errors import ScenarioError

__all__ = ["CapacityCurve", "capacity_curve", "products", "MAX_CONCURRENCY"]

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
    def profile(self, u: Any, *, scale: bool = False, x: Any = None):
        """``g``, ``g'``, ``g''`` at slack ``u = 1 - x / c_max`` (arrays, ``0 < u <= 1``).

        Taking the slack rather than ``x`` keeps ``1 - x / c_max`` exact near
        saturation; ``x`` itself (same shape), when given, keeps the relative
        precision that ``c_max (1 - u)`` loses at light load. With ``scale=True``
        also returns the sum of the magnitudes of the terms of ``g''`` (its
        rounding scale).
        """
        u = np.atleast_1d(np.asarray(u, dtype=float))
        if x is None:
            x = self.capacity * (1.0 - u)
        else:
            x = np.atleast_1d(np.asarray(x, dtype=float))
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
        a = products(x[:, None] / self._c[None, :head], la)
        h, a_t = a[:, :head], a[:, head]
        nh = n[:head]
        r = np.where(x < 0.5 * self.capacity, x / self.capacity, 1.0 - u)
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
        return float(self.profile(u, x=x)[0][0]) if u > 0 else math.inf

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


def products(ratio: np.ndarray, log_a: np.ndarray) -> np.ndarray:
    """``a(n) / max_m a(m)`` for ``a(0) = 1``, ``a(n) = ratio_1 ... ratio_n`` (rows: points).

    ``log_a`` (the logarithms, possibly rounded) only locates each row's largest
    term; the weights are products of the ratios outward from it, so each is
    within a few ulps (``exp(log a)`` is off by ``|log a|`` ulps: 16 at ``a = 1e-7``).
    Products away from the largest term are at most 1: nothing overflows.
    """
    m, H = ratio.shape
    star = np.argmax(log_a, axis=1)[:, None]
    k = np.arange(1, H + 1)[None, :]
    forward = np.cumprod(np.where(k > star, ratio, 1.0), axis=1)
    with np.errstate(divide="ignore"):
        inverse = np.where(k <= star, 1.0 / ratio, 1.0)
    backward = np.cumprod(inverse[:, ::-1], axis=1)[:, ::-1]  # prod_{k > n} of the inverses
    a = np.empty((m, H + 1))
    n = np.arange(H + 1)[None, :]
    a[:, 1:] = forward
    a[:, :H] = np.where(n[:, :H] < star, backward, a[:, :H])
    a[:, 0] = np.where(star[:, 0] == 0, 1.0, a[:, 0])
    return a


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
