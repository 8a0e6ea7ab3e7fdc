"""The aggregate solver: N per-type equations tied together by two scalars.

The gradient of ``U`` is ``p_i (w_i A_i'(t_i) - gamma b_i D_i)`` with
``D_i = A + B (1 + k_i) s_i``, where ``A = dW/dm1`` and ``B = 2 dW/dm2`` come
from the queue model (:mod:`cvxalloc.queue`); for Poisson arrivals
``A = 1 + Y``, ``B = X``, ``X = lam / (1 - rho)`` and
``Y = lam^2 m2 / (2 (1 - rho)^2)``. ``p_i`` cancels in each type's optimality
condition, so given ``(A, B)`` type ``i``'s optimal tokens are the root of
``A_i'(t) = alpha_i + beta_i t`` clipped to its box, with
``alpha_i = gamma b_i (A + B (1 + k_i) a_i) / w_i`` and
``beta_i = gamma b_i^2 B (1 + k_i) / w_i`` (:meth:`AccuracyCurves.solve_marginal`).

The outer problem has two unknowns, the slack ``u = 1 - rho`` and the second
moment ``m2``, which fix ``(A, B)`` (:meth:`FIFOQueue.scalars`); they must equal
the slack and second moment of the allocation they induce::

    F(u, m2) = (1 - lam m1(T(u, m2)) - u,  m2(T(u, m2)) - m2) = 0.

Every root gives an allocation that satisfies the first-order conditions of
the strictly concave problem, so the root is unique and is the optimum.

It is solved by Newton's method on ``F`` with the exact 2x2 Jacobian (implicit
differentiation of the per-type equations, O(N)), a backtracking line search
and the box ``[u_min, 1 - lam m1(lo)] x [m2(lo), m2(hi)]`` that provably holds
the root (``u_min`` from the utilization cap of the model). If Newton fails the
solver falls back to nested bracketing (Brent on ``u``, Brent on ``Y`` inside),
which converges on that box by monotonicity. A cold start first solves the
problem on a probability-weighted sample of the types, so the full-size Newton
starts close. The answer is then certified by the Frank-Wolfe gap and polished
with projected Newton steps (:mod:`cvxalloc.polish`) where the gap exceeds
``tol * |U|``; the status is ``optimal`` only when the certificate says so.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _options as _opt
from .. import status as st
from .._reduce import dot
from .._roots import brentq
from ..certificate import Certificate, certificate_box, frank_wolfe_gap
from ..errors import OptionError, SolverError
from ..objective import Objective
from ..polish import polish
from ..queue import FIFOQueue, Latency, queue_model
from ..result import Result

__all__ = ["solve_aggregate"]

_EPS = np.finfo(float).eps


@dataclass
class _Point:
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


class _Reduced:
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
        self.uses_m2 = getattr(queue, "name", "single") != "batching"
        self.gb_w = gamma * b / w
        # alpha = gb_w A + B ca, beta = B cb (fewer passes over N per evaluation)
        self.ca = self.gb_w * k1 * a
        self.cb = self.gb_w * b * k1
        self.pk1 = p * k1
        self.m1_lo, self.m2_lo = self.moments(lo)
        self.m1_hi, self.m2_hi = self.moments(hi)
        self.evaluations = 0
        self._u_bracket: tuple[float, float] | None = None
        self.d1_bounds = (curves.d1(lo), curves.d1(hi))

    @classmethod
    def of(cls, sc, idx: np.ndarray | None = None, weights: np.ndarray | None = None):
        """The whole scenario, or the types ``idx`` with moment weights ``weights``."""
        if idx is None:
            p = sc.probability
            return cls(
                p,
                sc.weight,
                sc.min_tokens,
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
            sc.min_tokens[idx],
            sc.max_tokens[idx],
            sc.base[idx],
            sc.per_token[idx],
            1.0 + sc.scv[idx],
            dot(weights, sc.variance[idx]),
            sc.accuracy.take(idx),
            queue_model(sc),
            sc.latency_weight,
        )

    # --- pieces -------------------------------------------------------------
    def moments(self, t: np.ndarray) -> tuple[float, float]:
        s = self.a + self.b * t
        return dot(self.p, s), float(np.einsum("i,i,i->", self.pk1, s, s)) + self.pv

    def tokens(self, A: float, B: float, t0: np.ndarray | None = None) -> np.ndarray:
        """The per-type optimum given the queue scalars ``(A, B)``, clipped to the box."""
        self.evaluations += 1
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
        acc_max = dot(pw, self.curves.value(self.hi))
        acc_lo = dot(pw, self.curves.value(self.lo))
        w_lo = self.queue.value(self.m1_lo, self.m2_lo)
        wbar = max(acc_max - acc_lo, 0.0) / self.gamma + w_lo
        u_cap = self.queue.min_slack(wbar, float(np.sum(self.p / self.k1)), self.pv)
        self._u_bracket = (u_cap, u_max)
        return self._u_bracket

    def point(self, u: float, m2: float, t0: np.ndarray | None = None) -> _Point:
        A, B = self.queue.scalars(u, m2)[:2]
        t = self.tokens(A, B, t0)
        m1n, m2n = self.moments(t)
        X = self.lam / u
        return _Point(u, m2, X, 0.5 * X * X * m2, t, 1.0 - self.lam_c * m1n - u, m2n - m2)

    def jacobian(self, pt: _Point) -> np.ndarray:
        """``dF/d(u, m2)`` by implicit differentiation of the per-type equations.

        For a type strictly inside its box, ``dt/dA = -psi`` with
        ``psi = gamma b / (gamma B (1+k) b^2 - w A''(t)) > 0`` and
        ``dt/dB = (1+k) s dt/dA``; types at a bound do not move. The queue model
        gives ``(A, B)`` and their partials in ``(u, m2)``.
        """
        t, u = pt.tokens, pt.u
        _, B, dA_du, dA_dm2, dB_du = self.queue.scalars(u, pt.m2)
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
        # dt/du = -psi (dA/du + k1 s dB/du) ; dt/dm2 = -psi dA/dm2
        m1u, m1m = -(dA_du * B1 + dB_du * A1), -dA_dm2 * B1
        m2u, m2m = -(dA_du * B2 + dB_du * A2), -dA_dm2 * B2
        return np.array([[-self.lam_c * m1u - 1.0, -self.lam_c * m1m], [m2u, m2m - 1.0]])

    # --- the two outer methods ----------------------------------------------
    def newton(self, u0: float, m20: float, max_iter: int, xtol: float) -> tuple[_Point, int, bool]:
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

    def nested(self) -> tuple[_Point, int]:
        """Brent on ``u`` over its bracket, Brent on ``Y`` inside (guaranteed)."""
        u_lo, u_hi = self.u_bracket()
        lam = self.lam
        cache: dict[str, Any] = {}
        if not self.uses_m2:
            return self._nested_1d(u_lo, u_hi)

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

        u = _decreasing_root(h, u_lo, u_hi)
        h(u)
        X = lam / u
        m2 = 2.0 * cache["Y"] / (X * X)
        return self.point(u, m2, cache["t"]), outer

    def _nested_1d(self, u_lo: float, u_hi: float) -> tuple[_Point, int]:
        """Brent on ``u`` alone: the queue's scalars do not depend on ``m2``."""
        outer = 0
        t_prev: list[np.ndarray | None] = [None]

        def h(u: float) -> float:
            nonlocal outer
            outer += 1
            pt = self.point(u, self.m2_lo, t_prev[0])
            t_prev[0] = pt.tokens
            return pt.r1

        u = _decreasing_root(h, u_lo, u_hi)
        pt = self.point(u, self.m2_lo, t_prev[0])
        return self.point(u, self.moments(pt.tokens)[1], pt.tokens), outer


def _decreasing_root(h, lo: float, hi: float) -> float:
    """The root of a decreasing ``h`` on ``[lo, hi]``, or the end where ``h`` keeps its sign.

    ``lo`` when ``h(lo) <= 0``, ``hi`` when ``h(hi) >= 0``, else Brent's root to
    the last bits (the nested fallback's brackets).
    """
    if h(lo) <= 0:
        return lo
    if h(hi) >= 0:
        return hi
    return brentq(h, lo, hi, xtol=1e-300, rtol=4 * _EPS, maxiter=200)


def _sample(sc, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A systematic probability-weighted sample of the types: (indices, weights)."""
    cdf = np.cumsum(sc.probability)
    pos = (np.arange(size) + 0.5) / size * cdf[-1]
    idx = np.minimum(np.searchsorted(cdf, pos), sc.n - 1)
    uniq, counts = np.unique(idx, return_counts=True)
    return uniq, counts / counts.sum()


def _warm(warm_start, lam: float) -> tuple[float, float] | None:
    """``(u, m2)`` from a previous Result or an ``(X, Y)`` pair."""
    if warm_start is None:
        return None
    if isinstance(warm_start, Result):
        diag = warm_start.diagnostics
        if "X" in diag and "Y" in diag:
            X, Y = float(diag["X"]), float(diag["Y"])
        elif warm_start.scenario is not None and warm_start.scenario.arrival_rate > 0:
            # any other method's result: the queue scalars of its allocation
            mo = Latency(warm_start.scenario).moments(warm_start.tokens)
            X = warm_start.scenario.arrival_rate / (1.0 - mo.rho) if mo.rho < 1 else 0.0
            Y = 0.5 * X * X * mo.m2
        else:
            raise OptionError(
                "option warm_start: the Result has no diagnostics X and Y and no "
                "scenario with arrivals to compute them from"
            )
    else:
        try:
            X, Y = map(float, warm_start)
        except (TypeError, ValueError) as exc:
            raise OptionError(
                "option warm_start must be a Result of method='aggregate' or a pair "
                f"(X, Y) of floats (got {warm_start!r})"
            ) from exc
    if not (np.isfinite(X) and np.isfinite(Y) and X > 0 and Y >= 0):
        raise OptionError(f"option warm_start: X must be > 0 and Y >= 0, finite (got {X}, {Y})")
    return lam / X, 2.0 * Y / (X * X)


def solve_aggregate(
    scenario,
    *,
    tol: float = 1e-9,
    max_iter: int = 50,
    warm_start: Any = None,
    polish_steps: int = 50,
    sample_size: int = 16384,
    xtol: float = 1e-14,
) -> Result:
    """Solve by the two-scalar reduction; O(N) time and memory per iteration.

    Parameters
    ----------
    scenario : Scenario
    tol : float
        Required Frank-Wolfe gap relative to ``|U|`` for status ``optimal``
        (default 1e-9); the answer is polished by projected Newton steps if
        the reduction alone does not reach it.
    max_iter : int
        Newton iterations on the outer system at most (then the nested
        bracketing fallback runs).
    warm_start : Result or (X, Y), optional
        A previous result (an aggregate one's ``diagnostics["X"]``, ``["Y"]``, or
        the queue scalars of any other result's allocation) or the pair
        itself, e.g. from the previous point of a sweep.
    polish_steps : int
        Projected Newton steps at most when polishing.
    sample_size : int
        Types in the probability-weighted sample solved first on a cold start
        (the whole scenario when ``N`` is at most this).
    xtol : float
        Relative tolerance of the outer system (residuals and steps).

    Returns
    -------
    Result
        ``iterations`` counts the full-size evaluations of the outer map;
        ``diagnostics`` holds ``X``, ``Y``, ``utilization``, ``m2``, the path
        taken (``newton`` or ``nested``), the start (``cold``, ``sample``,
        ``warm``) and the outer iterations of each phase.
    """
    tol = _opt.positive("tol", tol)
    max_iter = _opt.count("max_iter", max_iter)
    polish_steps = _opt.count("polish_steps", polish_steps)
    sample_size = _opt.count("sample_size", sample_size, minimum=2)
    xtol = _opt.positive("xtol", xtol)
    sc = scenario
    t_start = time.perf_counter()
    lam, gamma = sc.arrival_rate, sc.latency_weight
    lo, hi = sc.min_tokens, sc.max_tokens
    diag: dict[str, Any] = {}
    start = "closed-form"
    iters = 0
    if gamma == 0:
        # Accuracy is increasing and the scenario guarantees hi is stable.
        tokens = hi.copy()
        path = "gamma=0: every type at max_tokens"
    elif lam == 0 or np.all(hi == lo):
        red = _Reduced.of(sc)
        tokens = red.tokens(1.0, 0.0) if lam == 0 else lo.copy()
        iters = red.evaluations
        path = "lam=0: no queueing" if lam == 0 else "lo == hi"
    else:
        tokens, iters, path, start, diag = _reduce(sc, warm_start, max_iter, sample_size, xtol)
    t_reduce = time.perf_counter() - t_start
    return _polish_and_certify(
        sc, tokens, tol, polish_steps, diag, path, start, iters, t_start, t_reduce
    )


def _start(
    sc, red: _Reduced, warm_start: Any, max_iter: int, sample_size: int, xtol: float
) -> tuple[float, float, str, int]:
    """``(u0, m2_0, start, sample iterations)``: a warm start, or the solution of a
    probability-weighted sample (large N), or the middle of the brackets."""
    warm = _warm(warm_start, sc.arrival_rate)
    if warm is not None:
        return warm[0], warm[1], "warm", 0
    if sc.n > sample_size:
        idx, wts = _sample(sc, sample_size)
        sub = _Reduced.of(sc, idx, wts)
        start = "sample"
    else:
        sub, start = red, "cold"
    try:
        u_lo, u_hi = sub.u_bracket()
        pt, _, ok = sub.newton(
            math.sqrt(u_lo * u_hi), 0.5 * (sub.m2_lo + sub.m2_hi), max_iter, xtol
        )
        if not ok:
            pt, _ = sub.nested()
        u0, m20 = pt.u, pt.m2
    except (ValueError, ZeroDivisionError, FloatingPointError):
        u_lo, u_hi = red.u_bracket()
        u0, m20 = math.sqrt(u_lo * u_hi), 0.5 * (red.m2_lo + red.m2_hi)
    sample_iters = sub.evaluations if sub is not red else 0
    if sub is red:
        sample_iters, red.evaluations = red.evaluations, 0
    return u0, m20, start, sample_iters


def _reduce(
    sc, warm_start: Any, max_iter: int, sample_size: int, xtol: float
) -> tuple[np.ndarray, int, str, str, dict[str, Any]]:
    """Solve the two-scalar outer system: Newton, then nested bracketing if it fails.

    Returns ``(tokens, iterations, path, start, diagnostics)``.
    """
    red = _Reduced.of(sc)
    u0, m20, start, sample_iters = _start(sc, red, warm_start, max_iter, sample_size, xtol)
    pt, newton_iters, ok = red.newton(u0, m20, max_iter, xtol)
    path = "newton"
    if not ok:
        try:
            pt, _ = red.nested()
        except ValueError as exc:
            raise SolverError(
                f"aggregate: the outer system did not converge (Newton and bracketing "
                f"failed: {exc}); use method='conic'"
            ) from exc
        path = "nested (after Newton failed)"
    diag = {
        "X": pt.X,
        "Y": pt.Y,
        "u": pt.u,
        "m2": pt.m2,
        "residual": [pt.r1, pt.r2],
        "newton_iterations": newton_iters,
        "sample_iterations": sample_iters,
    }
    return pt.tokens, red.evaluations + sample_iters, path, start, diag


def _polish_and_certify(
    sc,
    tokens: np.ndarray,
    tol: float,
    polish_steps: int,
    diag: dict[str, Any],
    path: str,
    start: str,
    iters: int,
    t_start: float,
    t_reduce: float,
) -> Result:
    """Certify ``tokens``, polish them if the gap is above ``tol``, and wrap them."""
    lam, lo, hi = sc.arrival_rate, sc.min_tokens, sc.max_tokens
    obj = Objective(sc)
    ev = obj.evaluate(tokens)
    cert = _certify(obj, ev, lo, hi)
    raw_cert = None
    polished = 0
    if not cert.within(tol) and polish_steps > 0 and np.isfinite(cert.gap):
        raw_cert = cert
        tokens, info = polish(sc, tokens, rtol=tol, max_steps=polish_steps, objective=obj)
        polished = info.steps
        ev = obj.evaluate(tokens)
        cert = _certify(obj, ev, lo, hi)
    if not np.isfinite(cert.gap):
        raise SolverError(
            "aggregate: the allocation found is unstable or outside the box; use method='conic'"
        )
    status = st.OPTIMAL if cert.within(tol) else st.OPTIMAL_INACCURATE
    rho = ev.utilization
    diag.update(
        {"path": path, "start": start, "utilization": rho, "polish_steps": polished, "tol": tol}
    )
    if "X" not in diag and lam > 0 and rho < 1:
        diag["X"], diag["Y"] = lam / (1 - rho), lam**2 * ev.m2 / (2 * (1 - rho) ** 2)
    total = time.perf_counter() - t_start
    msg = f"aggregate ({path}, {start} start): Frank-Wolfe gap {cert.relative_gap:.2e} of |U|" + (
        "" if status == st.OPTIMAL else f", above tol {tol:g}"
    )
    return Result(
        status=status,
        method="aggregate",
        tokens=tokens,
        evaluation=ev,
        certificate=cert,
        scenario=sc,
        raw_certificate=raw_cert,
        iterations=int(iters),
        solver_stats={"reduce_time": t_reduce, "total_time": total},
        diagnostics=diag,
        message=msg,
    )


def _certify(obj: Objective, ev, lo: np.ndarray, hi: np.ndarray) -> Certificate:
    """Frank-Wolfe certificate of an evaluated allocation (as :func:`certificate.certify`)."""
    t, U = ev.tokens, ev.objective
    if not np.isfinite(U) or np.any(t < lo) or np.any(t > hi):
        return Certificate(objective=U, gap=np.inf, upper_bound=np.inf)
    gap = frank_wolfe_gap(obj.gradient(t), t, *certificate_box(obj.scenario))
    return Certificate(objective=U, gap=gap, upper_bound=U + gap)
