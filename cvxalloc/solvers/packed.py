"""The aggregate method at full size: every type swept once per step, in cache-sized chunks.

At N = 10^6 a numpy operation on whole arrays costs more in memory than in arithmetic:
each temporary is 8 MB that malloc hands back to the kernel when it is freed and takes
again, zeroed page by page, for the next one (measured here: five operations in a row,
9.8 ms on whole arrays, 1.3 ms with the allocator told to keep its memory, 1.1 ms over
chunks of 16384 types), and every array read is 8 MB more through memory. So this phase
sweeps the types chunk by chunk: every per-type quantity of a step lives inside one
chunk, in cache; only sums leave it, and only the tokens and two numbers per type are
kept from one sweep to the next. The types are grouped by accuracy family first
(:meth:`AccuracyCurves.grouped`), so a chunk holds one family and each family's own
formulas run on views of its parameters.

The method (the derivation of the outer system is in :mod:`cvxalloc.solvers.aggregate`):

* :meth:`Packed.sample`: an importance sample of the types, whose outer system
  (:class:`Reduced`) gives the starting queue scalars;
* :meth:`Packed.newton`: the first sweep puts each type at its root of
  ``A_i'(t) = alpha_i + beta_i t`` for those scalars (the family's
  ``solve_marginal``), clipped to its box; then Newton's method runs on the whole
  first-order system at once, the tokens and the slack ``u`` and second moment ``m2``
  together. With ``h_i = A_i'(t_i) - g_i (A + B v_i)``, ``g_i = gamma b_i / w_i``,
  ``v_i = (1 + k_i) s_i`` and ``(A, B)`` the queue model's scalars at ``(u, m2)``
  (:meth:`FIFOQueue.scalars`), linearizing ``h_i = 0`` gives
  ``dt_i = r_i (h_i - g_i (dA + dB v_i))`` with ``r_i = 1 / (B g_i (1 + k_i) b_i -
  A_i''(t_i)) > 0``, and ``dt_i = 0`` for a type held at a bound by the sign of
  ``h_i``. Put into the two moment equations ``1 - lam m1(t) / cap = u`` and
  ``m2(t) = m2`` this is a 2x2 linear system in ``(du, dm2)`` whose coefficients are
  weighted sums over the types: one sweep moves the tokens by the last step and
  computes the moments, ``r h``, ``r`` and those sums. Convergence is quadratic: from
  a start within a few percent, two or three sweeps after the first;
* :meth:`Packed.finish`: the last step and the certificate in one sweep: every figure
  of the evaluation and the Frank-Wolfe bound (each family sharing its exponential or
  power between ``A(t)`` and ``A'(t)``).

The queue enters only through its model's ``scalars``, ``derivatives`` and ``value``:
a batching server (``B = 0``), GI/G/1 arrivals or a fleet's router (``B`` moving with
``m2``) need no branch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..accuracy import AccuracyCurves
from ..certificate import Certificate
from ..objective import Evaluation
from ..queue import queue_model
from .reduction import Reduced

__all__ = ["Packed", "NewtonState", "CHUNK"]

#: Types per chunk: 16384 doubles (128 KB) per array keeps a step's temporaries in a
#: core's cache, and the inner products below the size where a threaded BLAS wakes its
#: threads (see :mod:`cvxalloc._reduce`). Fewer types per chunk cost more in Python
#: calls (measured: 2048 types, twice the time of a sweep).
CHUNK = 16384
#: :meth:`Packed.newton` stops when the error its last step leaves is predicted below
#: this (of ``u``, ``m2`` and each type's box).
STOP = 1e-8


@dataclass
class NewtonState:
    """Where :meth:`Packed.newton` stopped: the scalars, how it got there, and the step
    still to apply (:meth:`Packed.finish` applies it)."""

    u: float
    m2: float
    step: tuple[float, float] | tuple[()]
    sweeps: int
    converged: bool
    merits: list[float]


class Packed:
    """A scenario's per-type data grouped by accuracy family, swept in chunks.

    Parameters
    ----------
    sc : Scenario
        Without constraints (the constrained method has its own outer system).
    chunk : int, optional
        Types per chunk (:data:`CHUNK`; tests use small ones to cross chunk edges).
    """

    def __init__(self, sc, chunk: int | None = None) -> None:
        order, ranges = sc.accuracy.grouped()
        self.order, self.sc, self.n = order, sc, sc.n
        # what every sweep reads is reordered once; the rest is read per chunk (:meth:`at`)
        fields = (sc.probability, sc.min_tokens, sc.max_tokens, sc.base, sc.per_token)
        self.p, self.lo, self.hi, self.a, self.b = (
            fields if order is None else (np.take(x, order) for x in fields)
        )
        self.pv = float(_dot(sc.probability, sc.variance))
        self.queue = queue_model(sc)
        # the queue's rate: one replica's share in a fleet
        self.lam, self.gamma = float(self.queue.arrival_rate), float(sc.latency_weight)
        self.lam_c = self.lam / float(self.queue.capacity)
        self.ranges = ranges
        self.chunks = [
            (fam if len(fam) == 1 else fam.part(s - start, e - start), slice(s, e))
            for fam, start, stop in ranges
            for s, e in _spans(start, stop, chunk or CHUNK)
        ]
        #: The tokens (packed order) and, per type, ``r h`` and ``r`` of the last sweep.
        self.t, self.rh, self.r = np.empty(self.n), np.empty(self.n), np.empty(self.n)
        self.m1_lo, self.m1_hi = self._coefficients()
        self.u_max = 1.0 - self.lam_c * self.m1_lo

    def at(self, sl: slice | np.ndarray) -> slice | np.ndarray:
        """The scenario's positions of the packed positions ``sl``."""
        return sl if self.order is None else self.order[sl]

    def _coefficients(self) -> tuple[float, float]:
        """Fill ``1 + k`` and ``g = gamma b / w`` and the sample's masses (:meth:`sample`,
        in a buffer the sweeps reuse); return ``m1`` at the lower and the upper bounds."""
        self.k1, self.g = np.empty(self.n), np.empty(self.n)
        m1_lo = m1_hi = 0.0
        for _, sl in self.chunks:
            p, a, b, there = self.p[sl], self.a[sl], self.b[sl], self.at(sl)
            np.add(1.0, self.sc.scv[there], out=self.k1[sl])
            np.multiply(self.gamma / self.sc.weight[there], b, out=self.g[sl])
            s_lo, s_hi = a + b * self.lo[sl], a + b * self.hi[sl]
            m1_lo += _dot(p, s_lo)
            m1_hi += _dot(p, s_hi)
            np.multiply(p, _typical(s_lo, s_hi), out=self.r[sl])
        return m1_lo, m1_hi

    # --- the sample that starts it --------------------------------------------
    def sample(self, size: int) -> Reduced:
        """The outer system on a systematic sample of ``size`` draws, the types drawn in
        proportion to ``p q`` and weighted by ``1 / q`` (importance sampling).

        ``q = sqrt(s(lo) s(hi))`` (:func:`_typical`) stands for a type's service time at
        the optimum, which lies between the two: the moments are sums of ``p s`` and
        ``p (1 + k) s^2``, so drawing by ``p`` alone leaves the rare long types, which
        weigh most, to chance (measured at N = 10^6: the sample's ``(u, m2)`` 10-20%
        off, against 1-5% drawn by ``p q``; each decade closer saves the full-size
        Newton about a sweep). Call it once, before :meth:`newton` (the masses share a
        buffer with the sweeps).
        """
        cdf = np.cumsum(self.r, out=self.r)
        pos = (np.arange(size) + 0.5) / size * cdf[-1]
        idx, counts = np.unique(np.searchsorted(cdf, pos), return_counts=True)
        idx = np.minimum(idx, self.n - 1)
        a, b = self.a[idx], self.b[idx]
        q = _typical(a + b * self.lo[idx], a + b * self.hi[idx])
        keep = q > 0  # (q = 0 only where s = 0 on the whole box: nothing to weigh)
        return self.reduced(idx[keep], cdf[-1] * counts[keep] / (size * q[keep]))

    def reduced(self, idx: np.ndarray, weights: np.ndarray) -> Reduced:
        """:class:`Reduced` on the types ``idx`` (packed positions, increasing), moments
        weighted by ``weights``."""
        blocks = []
        for fam, start, stop in self.ranges:
            k0, k1 = np.searchsorted(idx, [start, stop])
            if k1 > k0:
                sub = fam if len(fam) == 1 else fam.take(idx[k0:k1] - start)
                blocks.append((sub, np.arange(k0, k1)))
        return Reduced(
            weights,
            self.sc.weight[self.at(idx)],
            self.lo[idx],
            self.hi[idx],
            self.a[idx],
            self.b[idx],
            self.k1[idx],
            self.pv,  # exact: the sample would only estimate it
            AccuracyCurves(blocks, len(idx)),
            self.queue,
            self.gamma,
        )

    # --- Newton on tokens and scalars together -----------------------------------
    def newton(self, u: float, m2: float, max_sweeps: int, xtol: float = STOP) -> NewtonState:
        """Newton's method on the tokens and ``(u, m2)`` together, from the roots at
        ``(u, m2)``; :meth:`finish` applies its last step and certifies.

        Each sweep's step is measured relative to ``u`` and ``m2`` and, per type, to
        the width of its box. Convergence is quadratic, so once the steps fall fast
        the error left after a step ``m_k`` is about ``m_k^3 / m_(k-1)^2``: the method
        stops when that is below ``xtol`` (the certificate judges the result;
        :meth:`refine` sweeps on if it must). It gives up (``converged`` False) on a
        step that is not finite or steps that stop falling; the caller then falls back
        to :class:`Reduced`.
        """
        self._merits: list[float] = []
        return self._iterate(u, m2, None, max_sweeps, xtol)

    def more(self, state: NewtonState, max_sweeps: int = 1, xtol: float = STOP) -> NewtonState:
        """More sweeps from where :meth:`newton` stopped (its last step not yet applied)."""
        return self._iterate(state.u, state.m2, state.step, max_sweeps, xtol)

    def refine(self, state: NewtonState, max_sweeps: int = 3) -> NewtonState:
        """More sweeps from where :meth:`finish` left the tokens (the next stop ten
        times stricter)."""
        return self._iterate(state.u, state.m2, (), max_sweeps, 0.1 * STOP)

    def _iterate(self, u, m2, step, max_sweeps: int, xtol: float) -> NewtonState:
        merits = self._merits
        for _ in range(max_sweeps):
            sums = self._sweep(u, m2, step)
            du, dm = self._solve_step(u, m2, sums)
            merit = max(abs(du) / u, abs(dm) / m2, sums[7])
            last = merits[-1] if merits else math.inf
            merits.append(merit)
            if not math.isfinite(abs(du) / u + abs(dm) / m2):
                return NewtonState(u, m2, (), len(merits), False, merits)
            u_new = min(max(u + du, 0.1 * u, 1.0 - self.lam_c * self.m1_hi), self.u_max)
            m2_new = max(m2 + dm, 0.1 * m2)
            Au, Am, Bu, Bm = self._partials(u, m2)
            du, dm = u_new - u, m2_new - m2
            step = (Au * du + Am * dm, Bu * du + Bm * dm)
            u, m2 = u_new, m2_new
            # the error left after this step: C merit^2, with C = merit / last^2 measured
            # (1 on the first step)
            rate = merit / last**2 if math.isfinite(last) else 1.0
            left = merit**2 * rate if merit < min(last, 1e-3) else math.inf
            if left <= xtol or merit <= 1e-12:
                return NewtonState(u, m2, step, len(merits), True, merits)
            if len(merits) >= 6 and merit > 0.5 * min(merits[-4:-1]):
                break
        return NewtonState(u, m2, step, len(merits), False, merits)

    def _sweep(self, u: float, m2: float, step) -> np.ndarray:
        """Move the tokens, then evaluate them at ``(u, m2)``.

        ``step = (dA, dB)`` moves each type by its Newton step
        ``dt = r h - r g (dA + dB v)`` from the ``r h`` and ``r`` the last sweep stored,
        clipped to the box; ``step = None`` puts it at its root for the scalars of
        ``(u, m2)`` (the family's ``solve_marginal``, rough), clipped; ``step = ()``
        leaves it. Then stores ``r h`` and ``r`` of the new tokens and returns the sums
        ``[m1, m2 - pv, S1h, S1g, S1c, S2h, S2c, move]`` with ``S1(h, g, c) = sum p b r
        (h, g, c)`` and ``S2(h, c) = sum 2 p b r v (h, c)`` over the free types,
        ``c = g v``, and ``move`` the largest move ``r h`` of a free type
        over its box's width, at most 1 (0 after ``step = None``: every type at its root).
        """
        A, B = self.queue.scalars(u, m2)[:2]
        out = np.zeros(8)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for fam, sl in self.chunks:
                p, a, b, lo, hi = self.p[sl], self.a[sl], self.b[sl], self.lo[sl], self.hi[sl]
                k1, g, tt = self.k1[sl], self.g[sl], self.t[sl]
                gk = g * k1
                if step is None:
                    root = fam.solve_marginal(g * A + (B * a) * gk, (B * b) * gk, rough=True)
                    _clip(root, lo, hi, tt)
                elif step:
                    dt = self.rh[sl] - (self.r[sl] * g) * (step[0] + step[1] * (k1 * (a + b * tt)))
                    _clip(tt + dt, lo, hi, tt)
                s = a + b * tt
                ps, v = p * s, k1 * s
                out[0] += ps.sum()
                out[1] += _dot(ps, v)
                d1, d2 = fam.d1_d2(tt)
                c = g * v
                h = d1 - (g * A + B * c)
                r = np.divide(1.0, (B * b) * gk - d2, out=self.r[sl])
                rh = np.multiply(r, h, out=self.rh[sl])
                # a type held at a bound does not move with the scalars; its r h and r
                # stay stored, so the next step moves it if the new scalars free it
                free = ~(((tt <= lo) & (h <= 0)) | ((tt >= hi) & (h >= 0)))
                pr = (p * b) * (r * free)
                prv = pr * v
                out[2:7] += (
                    _dot(pr, h),
                    _dot(pr, g),
                    _dot(pr, c),
                    2.0 * _dot(prv, h),
                    2.0 * _dot(prv, c),
                )
                if step is not None:  # (0 / 0 = nan where the box is a point: fmax skips it)
                    move = np.fmax.reduce(np.abs(rh * free) / (hi - lo), initial=0.0)
                    out[7] = max(out[7], min(move, 1.0))
        return out

    def _partials(self, u: float, m2: float) -> tuple[float, float, float, float]:
        """``dA/du, dA/dm2, dB/du, dB/dm2`` of the queue model (``dB/dm2 = 0`` for one
        server; a fleet's router may couple them)."""
        _, _, Au, Am, Bu, *rest = self.queue.scalars(u, m2)
        return Au, Am, Bu, (rest[0] if rest else 0.0)

    def _solve_step(self, u: float, m2: float, sums: np.ndarray) -> tuple[float, float]:
        """The Newton step ``(du, dm2)`` from a sweep's sums."""
        Au, Am, Bu, Bm = self._partials(u, m2)
        S1h, S1g, S1c, S2h, S2c = sums[2:7]
        S2g = 2.0 * S1c  # sum 2 p b r v g = 2 sum p b r c
        lam = self.lam_c
        F1, F2 = 1.0 - lam * sums[0] - u, sums[1] + self.pv - m2
        J = np.array(
            [
                [lam * (Au * S1g + Bu * S1c) - 1.0, lam * (Am * S1g + Bm * S1c)],
                [-(Au * S2g + Bu * S2c), -(Am * S2g + Bm * S2c) - 1.0],
            ]
        )
        try:
            du, dm = np.linalg.solve(J, [-F1 + lam * S1h, -F2 - S2h])
        except np.linalg.LinAlgError:
            return math.nan, math.nan
        return float(du), float(dm)

    # --- the last step and the certificate ---------------------------------------
    def finish(self, state: NewtonState) -> tuple[Evaluation, Certificate]:
        """Apply the last step of ``state`` and certify the tokens, in one sweep.

        The Frank-Wolfe bound of :func:`cvxalloc.certificate.certify` (on its box,
        :func:`certificate_box`) needs the gradient at the queue scalars of the new
        tokens, known only once the sweep has summed their moments. So the sweep
        takes it at the predicted scalars ``(A', B')`` of ``state`` and adds what the
        true ones can change: with ``D_i = max(hi_i - t_i, t_i - lo_i)``, each term
        ``max(g_i (hi_i - t_i), g_i (lo_i - t_i))`` moves by at most
        ``|g_i - g'_i| D_i <= gamma p_i b_i (|A - A'| + |B - B'| v_i) D_i``. The bound
        stays proven; the added part (``diagnostics["certificate_slack"]`` of the
        result) is of the order of the step's square. Returns the evaluation (in the
        scenario's type order) and the certificate.
        """
        q, step = self.queue, state.step
        Ap, Bp = q.scalars(state.u, state.m2)[:2]
        slack = self._slack()
        sums = np.zeros(6)  # m1, m2 - pv, accuracy, gap at (A', B'), sum p b D, sum p b v D
        # tokens, accuracy, service time (the tokens are kept where the order is the scenario's)
        out = [self.t if self.order is None else np.empty(self.n), np.empty(self.n), None]
        out[2] = np.empty(self.n)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            for fam, sl in self.chunks:
                p, a, b, lo, hi = self.p[sl], self.a[sl], self.b[sl], self.lo[sl], self.hi[sl]
                k1, tt, there = self.k1[sl], self.t[sl], self.at(sl)
                if step:
                    dt = self.rh[sl] - (self.r[sl] * self.g[sl]) * (
                        step[0] + step[1] * (k1 * (a + b * tt))
                    )
                    _clip(tt + dt, lo, hi, tt)
                s = a + b * tt
                ps, v, pb = p * s, k1 * s, p * b
                val, d1 = fam.value_d1(tt)
                out[1][there], out[2][there] = val, s
                if self.order is not None:
                    out[0][there] = tt
                pw = p * self.sc.weight[there]
                g = pw * d1 - self.gamma * pb * (Ap + Bp * v)
                if slack is not None:  # the box clipped where no stable point lies
                    hi = np.minimum(hi, lo + slack / pb)
                up, down = hi - tt, lo - tt
                pbd = pb * np.maximum(up, -down)
                sums += (
                    ps.sum(),
                    _dot(ps, v),
                    _dot(pw, val),
                    np.maximum(g * up, g * down).sum(),  # (up >= 0 >= down)
                    pbd.sum(),
                    _dot(pbd, v),
                )
        return self._certificate(sums, out, Ap, Bp)

    def _certificate(self, sums, out, Ap: float, Bp: float) -> tuple[Evaluation, Certificate]:
        """The evaluation and certificate from :meth:`finish`'s sums."""
        q = self.queue
        m1, m2 = float(sums[0]), float(sums[1]) + self.pv
        rho = self.lam_c * m1
        W = q.value(m1, m2)
        U = float(sums[2]) - self.gamma * W if rho < 1 else -math.inf
        gap = math.inf
        if rho < 1 and math.isfinite(U):
            A, B = q.derivatives(m1, m2)
            self.certificate_slack = self.gamma * (abs(A - Ap) * sums[4] + abs(B - Bp) * sums[5])
            gap = float(sums[3]) + self.certificate_slack
        if not math.isfinite(gap):
            gap = math.inf
        ev = Evaluation(
            tokens=out[0],
            objective=U,
            accuracy=float(sums[2]),
            type_accuracy=out[1],
            service_time=out[2],
            mean_system_time=W,
            utilization=rho,
            m1=m1,
            m2=m2,
        )
        return ev, Certificate(objective=U, gap=gap, upper_bound=U + gap)

    def certify(self, ev: Evaluation) -> Certificate:
        """The Frank-Wolfe certificate of the tokens :meth:`finish` left, at their own queue
        scalars (one more sweep, no slack): for when :meth:`finish`'s bound falls short."""
        A, B = self.queue.derivatives(ev.m1, ev.m2)
        slack = self._slack()
        gap = 0.0
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            for fam, sl in self.chunks:
                p, b, lo, hi, tt = self.p[sl], self.b[sl], self.lo[sl], self.hi[sl], self.t[sl]
                pb, v = p * b, self.k1[sl] * (self.a[sl] + b * tt)
                d1 = fam.d1_d2(tt)[0]
                g = (p * self.sc.weight[self.at(sl)]) * d1 - self.gamma * pb * (A + B * v)
                if slack is not None:
                    hi = np.minimum(hi, lo + slack / pb)
                gap += np.maximum(g * (hi - tt), g * (lo - tt)).sum()
        U = ev.objective
        if not (ev.utilization < 1 and math.isfinite(U) and math.isfinite(gap)):
            gap = math.inf
        self.certificate_slack = 0.0
        return Certificate(objective=U, gap=gap, upper_bound=U + gap)

    def _slack(self) -> float | None:
        """``cap / lam - m1(lo)``, by which :meth:`Scenario.stable_max_tokens` clips the
        box, or None when it clips nothing (``lam m1(hi) < cap``: the whole box stable)."""
        if self.lam_c * self.m1_hi < 1:
            return None
        return max(1.0 / self.lam_c - self.m1_lo, 0.0)


def _clip(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, out: np.ndarray | None = None):
    """``min(max(x, lo), hi)`` (``np.clip``'s checks cost more than the clipping here)."""
    out = np.maximum(x, lo, out=out)
    return np.minimum(out, hi, out=out)


def _typical(s_lo: np.ndarray, s_hi: np.ndarray) -> np.ndarray:
    """A type's typical service time on its box, ``sqrt(s(lo) s(hi))`` (``s(lo)`` raised
    to ``1e-3 s(hi)`` so a box from 0 still counts)."""
    return np.sqrt(np.maximum(s_lo, 1e-3 * s_hi) * s_hi)


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    """``sum x y`` by numpy's own loop (a threaded BLAS ``ddot`` wakes its threads on
    every call: measured 1.5 ms a call here, inside these sweeps)."""
    return np.einsum("i,i->", x, y)


def _spans(start: int, stop: int, size: int):
    """``(s, e)`` pieces of ``range(start, stop)`` of at most ``size``."""
    for s in range(start, stop, size):
        yield s, min(s + size, stop)
