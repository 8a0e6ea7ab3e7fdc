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

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _options as _opt
from .. import status as st
from ..certificate import box_certificate
from ..constraints import constraints_of
from ..errors import OptionError, SolverError
from ..objective import Objective
from ..polish import polish
from ..queue import Latency
from ..result import Result
from .constrained import solve_constrained
from .reduction import Reduced, sample

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["solve_aggregate"]

_EPS = np.finfo(float).eps


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
            lat = Latency(warm_start.scenario)
            mo = lat.moments(warm_start.tokens)
            X = lat.lam / (1.0 - mo.rho) if mo.rho < 1 else 0.0
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
    scenario: Scenario,
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
    lam = Latency(sc).lam  # the queue's rate: one replica's share in a fleet
    if constraints_of(sc) is not None:
        warm = _warm(warm_start, lam)
        settings = dict(max_iter=max_iter, polish_steps=polish_steps, sample_size=sample_size)
        return solve_constrained(sc, tol=tol, warm=warm, xtol=xtol, **settings)
    t_start = time.perf_counter()
    gamma = sc.latency_weight
    lo, hi = sc.min_tokens, sc.max_tokens
    diag: dict[str, Any] = {}
    start = "closed-form"
    iters = 0
    if gamma == 0:
        # Accuracy is increasing and the scenario guarantees hi is stable.
        tokens = hi.copy()
        path = "gamma=0: every type at max_tokens"
    elif lam == 0 or np.all(hi == lo):
        red = Reduced.of(sc)
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
    sc: Scenario, red: Reduced, warm_start: Any, max_iter: int, sample_size: int, xtol: float
) -> tuple[float, float, str, int]:
    """``(u0, m2_0, start, sample iterations)``: a warm start, or the solution of a
    probability-weighted sample (large N), or the middle of the brackets."""
    warm = _warm(warm_start, red.lam)
    if warm is not None:
        return warm[0], warm[1], "warm", 0
    if sc.n > sample_size:
        idx, wts = sample(sc, sample_size)
        sub = Reduced.of(sc, idx, wts)
        start = "sample"
    else:
        sub, start = red, "cold"
    try:
        pt, _, ok = sub.newton(*sub.middle(), max_iter, xtol)
        if not ok:
            pt, _ = sub.nested()
        u0, m20 = pt.u, pt.m2
    except (ValueError, ZeroDivisionError, FloatingPointError):
        u0, m20 = red.middle()
    sample_iters = sub.evaluations if sub is not red else 0
    if sub is red:
        sample_iters, red.evaluations = red.evaluations, 0
    return u0, m20, start, sample_iters


def _reduce(
    sc: Scenario, warm_start: Any, max_iter: int, sample_size: int, xtol: float
) -> tuple[np.ndarray, int, str, str, dict[str, Any]]:
    """Solve the two-scalar outer system: Newton, then nested bracketing if it fails.

    Returns ``(tokens, iterations, path, start, diagnostics)``.
    """
    red = Reduced.of(sc)
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
    sc: Scenario,
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
    obj = Objective(sc)
    lam = obj.latency.lam
    ev = obj.evaluate(tokens)
    cert = box_certificate(sc, ev.tokens, obj, ev.objective)
    raw_cert = None
    polished = 0
    if not cert.within(tol) and polish_steps > 0 and np.isfinite(cert.gap):
        raw_cert = cert
        tokens, info = polish(sc, tokens, rtol=tol, max_steps=polish_steps, objective=obj)
        polished = info.steps
        ev = obj.evaluate(tokens)
        cert = box_certificate(sc, ev.tokens, obj, ev.objective)
    if not np.isfinite(cert.gap):
        raise SolverError(_no_certificate(ev, diag))
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


def _no_certificate(ev, diag: dict[str, Any]) -> str:
    """Why the allocation found cannot be certified, and what to do."""
    u = diag.get("u")
    if ev.utilization >= 1 and u is not None and u < 1e3 * _EPS:
        return (
            f"aggregate: the optimum lies within {u:.2g} of saturation, so close that its "
            f"allocation rounds to utilization {ev.utilization:.17g} >= 1; raise "
            "latency_weight (only its ratio to the weights matters) or add a "
            "max_utilization < 1 constraint"
        )
    return "aggregate: the allocation found is unstable or outside the box; use method='conic'"
