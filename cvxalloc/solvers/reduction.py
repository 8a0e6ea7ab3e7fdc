"""The aggregate method's outer system: N per-type equations tied by two queue scalars.

Given the queue scalars ``(A, B)`` (from the slack ``u = 1 - rho`` and the
second moment ``m2``, :meth:`FIFOQueue.scalars`), each type's optimal tokens
solve ``A_i'(t) = alpha_i + beta_i t`` in closed form or by a vectorized
Newton (:meth:`AccuracyCurves.solve_marginal`). :class:`Reduced` holds what
that needs, for all types or a probability-weighted sample, and solves
``F(u, m2) = 0`` by damped Newton with the exact 2x2 Jacobian
(:meth:`Reduced.newton`) or by nested bracketing (:meth:`Reduced.nested`).
The derivation is in :mod:`cvxalloc.solvers.aggregate`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._reduce import dot
from .._roots import brentq
from ..queue import FIFOQueue, queue_model

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["Point", "Reduced", "decreasing_root", "sample"]

_EPS = np.finfo(float).eps


@dataclass
class Point:
    """One evaluation of the outer map at ``(u, m2)``."""

    u: float
    m2: float
    X: float
    Y: float
    tokens: np.ndarray
    r1: float
    r2: float

    def merit(self, us: float, ms: float) -> float:
        return max(abs(self.r1) / us, abs(self.r2) / ms)


class Reduced:
    """What the outer problem needs, for all types or for a weighted sample.

    ``p`` are the weights of the moments (the probabilities, or sample
    frequencies); the per-type equations do not involve them.
    """

    def __init__(self, p, w, lo, hi, a, b, k1, pv, curves, queue: FIFOQueue, gamma) -> None:
        self.p, self.w, self.lo, self.hi = p, w, lo, hi
        self.a, self.b, self.k1, self.pv = a, b, k1, float(pv)
        self.curves, self.queue, self.gamma = curves, queue, float(gamma)
        self.lam = float(queue.arrival_rate)
        # rho = lam m1 / capacity (capacity 1 for one server: the FIFO case is unchanged)
        self.cap = float(queue.capacity)
        self.lam_c = self.lam if self.cap == 1.0 else self.lam / self.cap
        # a queue whose W ignores m2 (batching: B = 0) has a one-dimensional outer system
        self.uses_m2 = getattr(queue, "uses_m2", getattr(queue, "name", "single") != "batching")
        with np.errstate(over="ignore"):  # inf for a weight of 5e-324: that type stays at lo
            self.gb_w = gamma * b / w
            # alpha = gb_w A + B ca, beta = B cb (fewer passes over N per evaluation)
            self.ca = self.gb_w * k1 * a
            self.cb = self.gb_w * b * k1
        self.pk1 = p * k1
        self.m1_lo, self.m2_lo = self.moments(lo)
        self.m1_hi, self.m2_hi = self.moments(hi)
        self.evaluations = 0
        self._u_bracket: tuple[float, float] | None = None
        self._acc_ends: tuple[float, float] | None = None
        self.d1_bounds = (curves.d1(lo), curves.d1(hi))

    @classmethod
    def of(
        cls,
        sc: Scenario,
        idx: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        lo: np.ndarray | None = None,
    ):
        """The whole scenario, or the types ``idx`` with moment weights ``weights``.

        ``lo`` (all types) replaces ``min_tokens`` as the lower end of the box
        (the bounds min_accuracy raises).
        """
        lo = sc.min_tokens if lo is None else lo
        if idx is None:
            p = sc.probability
            return cls(
                p,
                sc.weight,
                lo,
                sc.max_tokens,
                sc.base,
                sc.per_token,
                1.0 + sc.scv,
                dot(p, sc.variance),
                sc.accuracy,
                queue_model(sc),
                sc.latency_weight,
            )
        return cls(
            weights,
            sc.weight[idx],
            lo[idx],
            sc.max_tokens[idx],
            sc.base[idx],
            sc.per_token[idx],
            1.0 + sc.scv[idx],
            dot(weights, sc.variance[idx]),
            sc.accuracy.take(idx),
            queue_model(sc),
            sc.latency_weight,
        )

    def with_queue(self, queue: FIFOQueue) -> Reduced:
        """The same types under another queue (e.g. the scenario at another arrival rate).

        What does not depend on the queue (the per-type coefficients, the moments and
        slopes at the box's ends) is shared, not recomputed: re-solving one scenario over
        many rates (a policy's grid) builds it once.
        """
        new = copy.copy(self)
        new.queue, new.lam, new.cap = queue, float(queue.arrival_rate), float(queue.capacity)
        new.lam_c = new.lam if new.cap == 1.0 else new.lam / new.cap
        new.uses_m2 = getattr(queue, "uses_m2", getattr(queue, "name", "single") != "batching")
        new.evaluations, new._u_bracket = 0, None
        return new

    # --- pieces -------------------------------------------------------------
    def moments(self, t: np.ndarray) -> tuple[float, float]:
        s = self.a + self.b * t
        return dot(self.p, s), float(np.einsum("i,i,i->", self.pk1, s, s)) + self.pv

    def tokens(self, A: float, B: float, t0: np.ndarray | None = None) -> np.ndarray:
        """The per-type optimum given the queue scalars ``(A, B)``, clipped to the box."""
        self.evaluations += 1
        if not (A < math.inf and B < math.inf):
            # the price of a token overflowed (or is inf - inf, both of its parts past
            # 1e308): only far below any resolvable slack, where it is infinite
            return self.lo.copy()
        with np.errstate(over="ignore"):
            alpha = self.gb_w * A + B * self.ca
            beta = B * self.cb
        return self.curves.solve_marginal(alpha, beta, t0, self.lo, self.hi, self.d1_bounds)

    def u_bracket(self) -> tuple[float, float]:
        """``[u_min, u_max]`` holding the optimal slack ``1 - rho*``.

        ``u_max = 1 - lam m1(lo) / c`` (``c`` the queue's capacity, 1 for one
        server); ``u_min`` is ``1 - lam m1(hi) / c`` where that is positive,
        else the cap of the model: ``W(t*) <= Wbar = W(lo) + (Acc_max -
        Acc(lo)) / gamma`` and the queue's ``min_slack``.
        """
        if self._u_bracket is not None:
            return self._u_bracket
        lam_c, pw = self.lam_c, self.p * self.w
        u_max = 1.0 - lam_c * self.m1_lo
        if lam_c * self.m1_hi < 1:
            # the whole box is stable: 1 - lam m1(hi) / c bounds the slack already
            self._u_bracket = (1.0 - lam_c * self.m1_hi, u_max)
            return self._u_bracket
        if self._acc_ends is None:  # independent of the queue: kept by with_queue
            self._acc_ends = (
                dot(pw, self.curves.value(self.hi)),
                dot(pw, self.curves.value(self.lo)),
            )
        acc_max, acc_lo = self._acc_ends
        w_lo = self.queue.value(self.m1_lo, self.m2_lo)
        wbar = max(acc_max - acc_lo, 0.0) / self.gamma + w_lo
        u_cap = self.queue.min_slack(wbar, float(np.sum(self.p / self.k1)), self.pv)
        self._u_bracket = (min(u_cap, u_max), u_max)
        return self._u_bracket

    def middle(self) -> tuple[float, float]:
        """The cold start ``(u, m2)``: the geometric middle of the slack's bracket
        (it spans decades near saturation) and the middle of ``[m2(lo), m2(hi)]``."""
        u_lo, u_hi = self.u_bracket()
        return math.sqrt(u_lo) * math.sqrt(u_hi), 0.5 * (self.m2_lo + self.m2_hi)

    def point(self, u: float, m2: float, t0: np.ndarray | None = None) -> Point:
        A, B = self.queue.scalars(u, m2)[:2]
        t = self.tokens(A, B, t0)
        m1n, m2n = self.moments(t)
        X = self.lam / u
        return Point(u, m2, X, 0.5 * X * X * m2, t, 1.0 - self.lam_c * m1n - u, m2n - m2)

    def jacobian(self, pt: Point) -> np.ndarray:
        """``dF/d(u, m2)`` by implicit differentiation of the per-type equations.

        For a type strictly inside its box, ``dt/dA = -psi`` with
        ``psi = gamma b / (gamma B (1+k) b^2 - w A''(t)) > 0`` and
        ``dt/dB = (1+k) s dt/dA``; types at a bound do not move. The queue model
        gives ``(A, B)`` and their partials in ``(u, m2)``.
        """
        t, u = pt.tokens, pt.u
        _, B, dA_du, dA_dm2, dB_du, *rest = self.queue.scalars(u, pt.m2)
        dB_dm2 = rest[0] if rest else 0.0  # 0 for one server (a fleet's router may not be)
        fi = np.flatnonzero((t > self.lo) & (t < self.hi))
        b, k1 = self.b[fi], self.k1[fi]
        ks = k1 * (self.a[fi] + b * t[fi])
        with np.errstate(divide="ignore", invalid="ignore"):
            psi = (
                self.gamma * b / (self.gamma * B * k1 * b * b - self.w[fi] * self.curves.d2(t)[fi])
            )
        psi[~np.isfinite(psi)] = 0.0
        c1 = self.p[fi] * b * psi
        c2 = 2.0 * c1 * ks
        A1, B1 = dot(c1, ks), float(c1.sum())
        A2, B2 = dot(c2, ks), float(c2.sum())
        # dt/du = -psi (dA/du + k1 s dB/du) ; dt/dm2 = -psi (dA/dm2 + k1 s dB/dm2)
        m1u, m1m = -(dA_du * B1 + dB_du * A1), -(dA_dm2 * B1 + dB_dm2 * A1)
        m2u, m2m = -(dA_du * B2 + dB_du * A2), -(dA_dm2 * B2 + dB_dm2 * A2)
        return np.array([[-self.lam_c * m1u - 1.0, -self.lam_c * m1m], [m2u, m2m - 1.0]])

    # --- the two outer methods ----------------------------------------------
    def solve(self, max_iter: int, xtol: float) -> tuple[float, float]:
        """``(u, m2)`` solving the outer system: Newton from :meth:`middle`, else nested
        bracketing; the middle itself when both fail (a start, not an answer)."""
        pt, _ = self.solve_point(max_iter, xtol)
        return (pt.u, pt.m2) if pt is not None else self.middle()

    def solve_point(self, max_iter: int, xtol: float) -> tuple[Point | None, int]:
        """What :meth:`solve` finds, as its :class:`Point` (None when both methods fail),
        and Newton's iterations when Newton converged (0 otherwise): a caller that
        would start Newton again from a converged point need not evaluate it again."""
        try:
            pt, iters, ok = self.newton(*self.middle(), max_iter, xtol)
            if not ok:
                pt, _ = self.nested()
                iters = 0
            return pt, iters
        except (ValueError, ZeroDivisionError, FloatingPointError):
            return None, 0

    def newton(self, u0: float, m20: float, max_iter: int, xtol: float) -> tuple[Point, int, bool]:
        """Damped Newton on ``F``; returns (last point, iterations, converged)."""
        u_lo, u_hi = self.u_bracket()
        m_lo, m_hi = self.m2_lo, self.m2_hi
        u0 = min(max(u0, u_lo), u_hi)
        m20 = min(max(m20, m_lo), m_hi)
        pt = self.point(u0, m20)
        tiny = 1e-300
        for it in range(1, max_iter + 1):
            us, ms = max(pt.u, tiny), max(pt.m2, m_hi * 1e-300, tiny)
            merit = pt.merit(us, ms)
            if merit <= xtol:
                return pt, it, True
            J = self.jacobian(pt)
            try:
                du, dm = np.linalg.solve(J, [-pt.r1, -pt.r2])
            except np.linalg.LinAlgError:
                return pt, it, False
            if not (np.isfinite(du) and np.isfinite(dm)):
                return pt, it, False
            step, trial = 1.0, None
            un, mn = pt.u, pt.m2
            for _ in range(40):
                un = min(max(pt.u + step * du, u_lo), u_hi)
                mn = min(max(pt.m2 + step * dm, m_lo), m_hi)
                if un == pt.u and mn == pt.m2:
                    break
                trial = self.point(un, mn, pt.tokens)
                if trial.merit(us, ms) <= (1.0 - 1e-4 * step) * merit:
                    break
                step *= 0.5
            else:
                trial = None
            rel = max(abs(step * du) / us, abs(step * dm) / ms)
            if trial is None or (un == pt.u and mn == pt.m2):
                # no decrease possible: converged to rounding or stuck
                return pt, it, merit <= 1e3 * xtol + 1e3 * _EPS / us
            pt = trial
            if rel <= xtol:
                return pt, it + 1, True
        return pt, max_iter, False

    def nested(self) -> tuple[Point, int]:
        """Brent on ``u`` over its bracket, Brent on ``Y`` inside (guaranteed)."""
        u_lo, u_hi = self.u_bracket()
        lam = self.lam
        cache: dict[str, Any] = {}
        if not self.uses_m2:
            return self._nested_1d(u_lo, u_hi)
        if not isinstance(self.queue, FIFOQueue):
            return self._nested_m2(u_lo, u_hi)

        def inner(u: float) -> float:
            X = lam / u
            A0 = self.queue.scalars(u, 0.0)[0]  # A = A0 + Y, Y = X^2 m2 / 2
            y_lo, y_hi = 0.5 * X * X * self.m2_lo, 0.5 * X * X * self.m2_hi

            def k(Y: float) -> float:
                t = self.tokens(A0 + Y, X, cache.get("t"))
                cache["t"] = t
                return 0.5 * X * X * self.moments(t)[1] - Y

            if y_hi > y_lo and k(y_lo) > 0 and k(y_hi) < 0:
                Y = brentq(k, y_lo, y_hi, xtol=1e-300, rtol=4 * _EPS, maxiter=200)
            else:
                Y = y_lo if k(y_lo) <= 0 else y_hi
            t = self.tokens(A0 + Y, X, cache.get("t"))
            cache["t"], cache["Y"] = t, Y
            return 1.0 - lam * self.moments(t)[0] - u

        outer = 0

        def h(u: float) -> float:
            nonlocal outer
            outer += 1
            return inner(u)

        u = decreasing_root(h, u_lo, u_hi)
        h(u)
        X = lam / u
        m2 = 2.0 * cache["Y"] / (X * X)
        return self.point(u, m2, cache["t"]), outer

    def _nested_m2(self, u_lo: float, u_hi: float) -> tuple[Point, int]:
        """Brent on ``u``, Brent on ``m2`` inside, for any queue whose ``(A, B)`` grow with
        ``m2`` (a fleet's router): then ``m2(T(u, m2)) - m2`` decreases in ``m2``."""
        outer = 0
        cache: dict[str, Any] = {}

        def inner(u: float) -> float:
            def k(m2: float) -> float:
                pt = self.point(u, m2, cache.get("t"))
                cache["t"] = pt.tokens
                return pt.r2

            m_lo, m_hi = self.m2_lo, self.m2_hi
            if m_hi > m_lo and k(m_lo) > 0 and k(m_hi) < 0:
                m2 = brentq(k, m_lo, m_hi, xtol=1e-300, rtol=4 * _EPS, maxiter=200)
            else:
                m2 = m_lo if k(m_lo) <= 0 else m_hi
            pt = self.point(u, m2, cache.get("t"))
            cache["t"], cache["m2"] = pt.tokens, m2
            return pt.r1

        def h(u: float) -> float:
            nonlocal outer
            outer += 1
            return inner(u)

        u = decreasing_root(h, u_lo, u_hi)
        h(u)
        return self.point(u, cache["m2"], cache["t"]), outer

    def _nested_1d(self, u_lo: float, u_hi: float) -> tuple[Point, int]:
        """Brent on ``u`` alone: the queue's scalars do not depend on ``m2``."""
        outer = 0
        t_prev: list[np.ndarray | None] = [None]

        def h(u: float) -> float:
            nonlocal outer
            outer += 1
            pt = self.point(u, self.m2_lo, t_prev[0])
            t_prev[0] = pt.tokens
            return pt.r1

        u = decreasing_root(h, u_lo, u_hi)
        pt = self.point(u, self.m2_lo, t_prev[0])
        return self.point(u, self.moments(pt.tokens)[1], pt.tokens), outer


def decreasing_root(h, lo: float, hi: float) -> float:
    """The root of a decreasing ``h`` on ``[lo, hi]``, or the end where ``h`` keeps its sign.

    ``lo`` when ``h(lo) <= 0``, ``hi`` when ``h(hi) >= 0``, else Brent's root to
    the last bits (the nested fallback's brackets).
    """
    if h(lo) <= 0:
        return lo
    if h(hi) >= 0:
        return hi
    if lo > 0 and hi > _DECADES * lo:
        # a bracket over many decades (the slack near saturation reaches 1e-300):
        # narrow it to a factor exp(1e-3) in log u first, where Brent's steps are even
        s = brentq(lambda x: h(math.exp(x)), math.log(lo), math.log(hi), xtol=1e-3, rtol=4 * _EPS)
        a, b = max(lo, math.exp(s - 2e-3)), min(hi, math.exp(s + 2e-3))
        if h(a) > 0 > h(b):
            lo, hi = a, b
    return brentq(h, lo, hi, xtol=1e-300, rtol=4 * _EPS, maxiter=200)


#: A bracket whose ends differ by more than this factor is first narrowed in log space.
_DECADES = 1e3


def sample(sc: Scenario, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A systematic probability-weighted sample of the types: (indices, weights)."""
    cdf = np.cumsum(sc.probability)
    pos = (np.arange(size) + 0.5) / size * cdf[-1]
    idx = np.minimum(np.searchsorted(cdf, pos), sc.n - 1)
    uniq, counts = np.unique(idx, return_counts=True)
    return uniq, counts / counts.sum()
