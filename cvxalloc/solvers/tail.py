"""The aggregate method under a tail SLO: one more multiplier, on the surrogate's load.

The tail SLO is held through its convex surrogate (:mod:`cvxalloc.constraints.tail`),
``load(t) = lam (sum_i p_i M_i(s_i) - 1) / eta_0 <= 1``, separable over types.
With a multiplier ``mu`` on it, each type's Lagrangian condition gains the
increasing term ``kappa_i M_i'(s_i)`` (``kappa_i = mu lam b_i / (eta_0 w_i)``)::

    A_i'(t) - kappa_i M_i'(a_i + b_i t) = alpha_i + beta_i t

still one decreasing function of ``t`` against a non-decreasing one, solved per
type by safeguarded Newton inside ``[lo'_i, t_free]`` (``t_free`` the root
without the term, in closed form). :class:`PenalizedCurves` gives the
aggregate machinery (:mod:`cvxalloc.solvers.multipliers`) these roots and the
curvature for its Jacobian, so the other constraints keep their own
multipliers and active set. ``mu`` is the root of the tail's slack at the inner
solution, which increases with ``mu`` (the dual is convex); then the point is
made exactly feasible and certified against the scenario with every constraint
(:func:`cvxalloc.constraints.certify_constrained`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import constraints as cons_mod
from .. import status as st
from .._reduce import dot
from ..errors import SolverError
from ..objective import Objective
from ..queue import queue_model
from ..result import Result
from .constraint_rows import constraint_report
from .finish import finish, single_point, single_point_result
from .multipliers import Multipliers, active_set, coordinate, multiplier_root

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["PenalizedCurves", "solve_tail"]


class PenalizedCurves:
    """Accuracy curves minus ``kappa_i M_i(a_i + b_i t) / b_i``: the per-type Lagrangian.

    Implements what :class:`~cvxalloc.solvers.reduction.Reduced` asks of its
    curves (``value``, ``d1``, ``d2``, ``solve_marginal``).
    """

    def __init__(self, curves, term, a: np.ndarray, b: np.ndarray, w: np.ndarray, lam: float):
        self.curves, self.term = curves, term
        self.a, self.b, self.w, self.lam = a, b, w, lam
        self.kappa = np.zeros_like(b)

    def set_multiplier(self, mu: float) -> None:
        self.kappa = mu * self.lam * self.b / (self.term.eta * self.w)

    def _s(self, t):
        return self.a + self.b * np.asarray(t, dtype=float)

    def value(self, t):
        return self.curves.value(t) - self.kappa / self.b * self.term.mgf(self._s(t))

    def d1(self, t):
        with np.errstate(invalid="ignore"):
            return self.curves.d1(t) - self.kappa * self.term.mgf(self._s(t), order=1)

    def d2(self, t):
        with np.errstate(invalid="ignore"):
            return self.curves.d2(t) - self.kappa * self.b * self.term.mgf(self._s(t), order=2)

    def solve_marginal(self, alpha, beta, t0=None, lo=None, hi=None, d1_bounds=None):
        """Per type the root of ``d1(t) = alpha + beta t`` in ``[lo, hi]``.

        The root without the term (closed form) bounds it above; safeguarded
        Newton between ``lo`` and that bound.
        """
        free = self.curves.solve_marginal(
            alpha, beta, t0, lo, hi, (self.curves.d1(lo), self.curves.d1(hi))
        )
        if not np.any(self.kappa > 0):
            return free
        alpha = np.broadcast_to(alpha, free.shape)
        beta = np.broadcast_to(beta, free.shape)
        out = free.copy()
        at_lo = ~(self.d1(lo) - alpha - beta * lo > 0)
        out[at_lo] = lo[at_lo]
        # at hi (the free root clipped to the box) with the term still not enough: hi
        at_free = self.d1(free) - alpha - beta * free >= 0
        todo = np.flatnonzero(~at_lo & ~at_free & (free > lo))
        if todo.size:
            out[todo] = self._newton(todo, lo[todo], free[todo], alpha[todo], beta[todo])
        return out

    def _newton(self, idx, lo, hi, alpha, beta) -> np.ndarray:
        """Safeguarded Newton on ``[lo, hi]`` for the types ``idx`` (``hi`` their free roots).

        In logarithms: ``log(A'(t) - alpha - beta t) = log kappa + log M'(s(t))``
        (the left side is defined below the free root, and the generating
        function's steep growth becomes the mild ``-(1 + 1/c) log(1 - r c s)``).
        """
        curves = self.curves.take(idx)
        a_, b_, logk, c = self.a[idx], self.b[idx], np.log(self.kappa[idx]), self.term.c[idx]
        r = self.term.eta
        gam = c > 0
        lo_, hi_ = lo.copy(), hi.copy()
        # the start: the free root moved left by the term over the slope there (exact
        # as kappa -> 0, where the root hugs the free root and bisection would crawl)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            lean = self.kappa[idx] * self.term.mgf(a_ + b_ * hi, order=1, c=c)
            t = hi - lean / (beta - curves.d2(hi))
        t = np.where(np.isfinite(t) & (t > lo), t, 0.5 * (lo + hi))
        done = np.zeros(t.size, dtype=bool)
        for _ in range(200):
            s = a_ + b_ * t
            gap = curves.d1(t) - alpha - beta * t
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.where(gam, 1.0 - r * c * s, 1.0)
                log_m1 = np.where(
                    gam,
                    np.log(r) - (1.0 / np.where(gam, c, 1.0) + 1.0) * np.log(x),
                    np.log(r) + r * s,
                )
                val = np.log(gap) - logk - log_m1
                slope = (curves.d2(t) - beta) / gap - b_ * np.where(gam, r * (1.0 + c) / x, r)
            pos = (gap > 0) & (x > 0) & (val > 0)  # left of the root
            lo_ = np.where(pos, t, lo_)
            hi_ = np.where(pos, hi_, t)
            with np.errstate(divide="ignore", invalid="ignore"):
                new = t - val / slope
            ok = np.isfinite(new) & (new >= lo_) & (new <= hi_)
            new = np.where(ok, new, 0.5 * (lo_ + hi_))
            new = np.where(done, t, new)
            # a Newton step below 1e-10 t leaves an error far below the rounding of the
            # difference A' - alpha - beta t near the root: take it and stop
            done |= ok & (np.abs(new - t) <= 1e-10 * np.maximum(np.abs(t), 1.0))
            done |= hi_ - lo_ <= 4 * np.finfo(float).eps * np.maximum(np.abs(hi_), 1.0)
            t = new
            if done.all():
                break
        return t


def solve_tail(
    sc: Scenario,
    *,
    tol: float,
    max_iter: int,
    warm: tuple[float, float] | None,
    polish_steps: int,
    sample_size: int,
    xtol: float,
) -> Result:
    """Solve a scenario whose constraints include a tail SLO (see the module docstring)."""
    t_start = time.perf_counter()
    lo2 = cons_mod.check_feasible(sc)
    if single_point(sc, lo2):
        return single_point_result(sc, lo2, method="aggregate")
    terms = cons_mod.constraints_of(sc).terms()
    j_tail = next(j for j, tm in enumerate(terms) if tm.kind == "tail")
    tail = terms[j_tail].bind(sc)
    others = [tm for j, tm in enumerate(terms) if j != j_tail]
    red, pen = _reduced(sc, lo2, tail, others)
    z = np.array(warm if warm is not None else red.middle(), dtype=float)
    inner = _Inner(red, pen, tail, sc, z, (max_iter, xtol))
    scale = _tail_scale(sc, red, tail)
    mu_tail = multiplier_root(inner.slack, scale, rtol=4 * np.finfo(float).eps)
    state = inner.solve(mu_tail)
    if not inner.ok:
        raise SolverError(
            "aggregate: the tail-constrained outer system did not converge "
            f"(residual {state.merit():.2e}); use method='conic'"
        )
    mu = np.zeros(len(terms))
    mu[[j for j in range(len(terms)) if j != j_tail]] = inner.mu_others
    mu[j_tail] = mu_tail
    return _finish(sc, lo2, terms, mu, state.tokens, (tol, polish_steps), inner, t_start)


def _reduced(sc: Scenario, lo2, tail, others) -> tuple[Multipliers, PenalizedCurves]:
    """The aggregate's outer system on ``[lo', hi']`` with penalized curves.

    ``hi'`` keeps every type inside the surrogate's domain (the feasible set is).
    """
    top = tail.domain_top(sc)
    hi = np.minimum(sc.max_tokens, lo2 + (top - lo2) * (1.0 - 1e-9))
    pen = PenalizedCurves(sc.accuracy, tail, sc.base, sc.per_token, sc.weight, tail.lam)
    p = sc.probability
    red = Multipliers(
        p,
        sc.weight,
        lo2,
        hi,
        sc.base,
        sc.per_token,
        1.0 + sc.scv,
        dot(p, sc.variance),
        pen,
        queue_model(sc),
        sc.latency_weight,
    ).constrain(others)
    return red, pen


class _Inner:
    """The problem with the tail multiplier fixed: the aggregate with the other constraints."""

    def __init__(self, red, pen, tail, sc: Scenario, z0, settings):
        self.red, self.pen, self.tail, self.sc = red, pen, tail, sc
        self.z = z0
        self.max_iter, self.xtol = settings
        self.mu_others = np.zeros(len(red.kinds))
        self.active: list[int] = []
        self.ok = False
        self.state = None

    def solve(self, mu: float):
        red = self.red
        self.pen.set_multiplier(mu)
        red.d1_bounds = (self.pen.d1(red.lo), self.pen.d1(red.hi))
        red._u_bracket, red._brackets = _slack_bracket(red, self.pen), {}
        z0 = np.concatenate([self.z[:2], self.mu_others[self.active]])
        state, active, _, ok = active_set(red, z0, self.active, self.max_iter, self.xtol)
        mu_o = np.zeros(len(red.kinds))
        mu_o[active] = state.z[2:]
        if not ok and red.kinds:
            state, mu_o, ok = coordinate(red, state.z, mu_o, self.max_iter, self.xtol)
            active = [j for j in range(len(red.kinds)) if mu_o[j] > 0]
        self.ok, self.state, self.active, self.mu_others = ok, state, active, mu_o
        self.z = state.z[:2]
        return state

    def slack(self, mu: float) -> float:
        state = self.solve(mu)
        return 1.0 - self.tail.value(self.sc, state.tokens)


def _slack_bracket(red, pen) -> tuple[float, float]:
    """``[u_min, u_max]`` holding the slack ``1 - rho`` of the penalized problem's optimum.

    As :meth:`Reduced.u_bracket`, but the penalized curves are not increasing:
    ``W(t*) <= (Acc(hi) - Acc_pen(lo)) / gamma + W(lo)`` takes the accuracy
    without the penalty at ``hi`` (an upper bound of the penalized one anywhere)
    and the penalized one at ``lo'``.
    """
    u_max = 1.0 - red.lam_c * red.m1_lo
    if red.lam_c * red.m1_hi < 1:
        return 1.0 - red.lam_c * red.m1_hi, u_max
    if red.gamma <= 0:
        return min(1e-300, u_max), u_max
    pw = red.p * red.w
    acc_max = dot(pw, pen.curves.value(red.hi))
    acc_lo = dot(pw, pen.value(red.lo))
    wbar = max(acc_max - acc_lo, 0.0) / red.gamma + red.queue.value(red.m1_lo, red.m2_lo)
    u_cap = red.queue.min_slack(wbar, float(np.sum(red.p / red.k1)), red.pv)
    return min(u_cap, u_max), u_max


def _tail_scale(sc: Scenario, red, tail) -> float:
    """A multiplier of the right order: the largest marginal value at ``lo'`` per unit of load."""
    s = sc.service_time(red.lo)
    per_unit = tail.lam * sc.per_token * tail.mgf(s, order=1) / tail.eta
    value = sc.weight * sc.accuracy.d1(red.lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(per_unit > 0, value / per_unit, 0.0)
    scale = float(np.max(ratio)) if ratio.size else 0.0
    return scale if np.isfinite(scale) and scale > 0 else 1.0


def _finish(sc: Scenario, lo2, terms, mu, tokens, settings, inner, t_start) -> Result:
    """Exactly feasible tokens, their certificate (polished where above ``tol``), the result."""
    tol, polish_steps = settings
    obj = Objective(sc)
    tokens = cons_mod.restore_feasible(sc, tokens, lo2)
    cert = cons_mod.certify_constrained(sc, tokens, obj, multipliers=mu, search=False)
    if not cert.within(tol):
        cert = cons_mod.certify_constrained(sc, tokens, obj, multipliers=mu)
    raw, steps = None, 0
    if not cert.within(tol) and polish_steps > 0 and np.isfinite(cert.gap):
        again, steps, _ = finish(sc, tokens, obj, polish_rtol=tol, polish_steps=polish_steps)
        cert2 = cons_mod.certify_constrained(sc, again, obj, multipliers=mu)
        if cert2.gap < cert.gap:
            tokens, cert, raw = again, cert2, cert
        else:
            steps = 0
    report = constraint_report(sc, tokens)
    for term, price in zip(terms, mu):
        report[term.kind]["shadow_price"] = float(price)
    report["tail"].update(
        terms[[tm.kind for tm in terms].index("tail")].describe(
            sc, tokens, float(mu[[tm.kind for tm in terms].index("tail")])
        )
    )
    status = st.OPTIMAL if cert.within(tol) else st.OPTIMAL_INACCURATE
    kinds = [tm.kind for tm in terms]
    diag: dict[str, Any] = {
        "path": "tail multiplier root around newton with multipliers",
        "active": [k for k, m in zip(kinds, mu) if m > 0],
        "multipliers": dict(zip(kinds, map(float, mu))),
        "polish_steps": steps,
        "tol": tol,
        "constraints": report,
    }
    return Result(
        status=status,
        method="aggregate",
        tokens=tokens,
        evaluation=obj.evaluate(tokens),
        certificate=cert,
        scenario=sc,
        raw_certificate=raw,
        iterations=int(inner.red.evaluations),
        solver_stats={"total_time": time.perf_counter() - t_start},
        diagnostics=diag,
        message=(
            f"aggregate with a tail SLO (surrogate: Kingman bound; active: "
            f"{', '.join(diag['active']) or 'none'}): certified gap "
            f"{cert.relative_gap:.2e} of |U|"
            + ("" if status == st.OPTIMAL else f", above tol {tol:g}")
        ),
    )
