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

Up to ``sample_size`` types it is solved over whole arrays (:class:`Reduced`) by
Newton's method on ``F`` with the exact 2x2 Jacobian (implicit differentiation of
the per-type equations, O(N)), a backtracking line search and the box
``[u_min, 1 - lam m1(lo)] x [m2(lo), m2(hi)]`` that provably holds the root
(``u_min`` from the utilization cap of the model). If Newton fails the solver
falls back to nested bracketing (Brent on ``u``, Brent on ``Y`` inside), which
converges on that box by monotonicity. Above ``sample_size`` types the problem is
first solved on an importance sample of the types, and from there Newton's method
runs on the tokens and the two scalars together, in chunked sweeps that also
certify (:class:`~cvxalloc.solvers.packed.Packed`); if it gives up, the
whole-array method takes over from its last point. The answer is certified by the
Frank-Wolfe gap and polished with projected Newton steps (:mod:`cvxalloc.polish`)
where the gap exceeds ``tol * |U|``; the status is ``optimal`` only when the
certificate says so.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _options as _opt
from .. import status as st
from ..certificate import Certificate, box_certificate
from ..constraints import constraints_of
from ..errors import OptionError, SolverError
from ..objective import Objective
from ..polish import polish
from ..queue import Latency, queue_model
from ..result import Result
from .constrained import solve_constrained
from .packed import Packed
from .reduction import Reduced

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["solve_aggregate", "solve_near"]

_EPS = np.finfo(float).eps


def _warm(warm_start, lam: float) -> tuple[float, float] | None:
    """``(u, m2)`` from a previous Result (its optimum's slack ``1 - rho`` and second
    moment, held: at a nearby rate the slack moves less than ``X = lam / u``, measured
    4.9 against 5.4 outer evaluations between grid rates) or an ``(X, Y)`` pair."""
    if warm_start is None:
        return None
    if isinstance(warm_start, Result):
        diag = warm_start.diagnostics
        if _held(diag.get("u"), diag.get("m2")):
            return float(diag["u"]), float(diag["m2"])
        if warm_start.scenario is not None and warm_start.scenario.arrival_rate > 0:
            # any other method's result: the queue scalars of its allocation
            mo = Latency(warm_start.scenario).moments(warm_start.tokens)
            if _held(1.0 - mo.rho, mo.m2):
                return 1.0 - mo.rho, mo.m2
            X, Y = 0.0, 0.0  # refused below
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


def _held(u, m2) -> bool:
    """Whether a previous slack and second moment can start the outer system."""
    return u is not None and m2 is not None and 0 < u <= 1 and 0 <= m2 < np.inf


def predicted_start(
    known: Sequence[tuple[float, Result]], rate: float
) -> tuple[float, float] | None:
    """The outer system's root ``(u, m2)`` at arrival rate ``rate``, predicted from aggregate
    results at nearby rates: ``log u`` and ``log m2`` fitted by a polynomial in the rate
    (quadratic through three results, linear through two) and evaluated at ``rate``.

    A warm start for re-solving one scenario over rates (a policy's grid, a
    controller's windows): between two solved rates it lands about ten times closer
    to the root than either neighbour's own scalars. None when fewer than two results
    (at rates > 0, with the diagnostics ``u`` and ``m2``) are given.
    """
    pts = [
        (float(r), float(res.diagnostics["u"]), float(res.diagnostics["m2"]))
        for r, res in known
        if r > 0 and "u" in res.diagnostics and "m2" in res.diagnostics
    ]
    pts = [p for p in pts if p[1] > 0 and p[2] > 0 and np.isfinite(p[1:]).all()]
    if len(pts) < 2 or not rate > 0:
        return None
    x = np.array([p[0] for p in pts]) - rate
    if np.unique(x).size < len(pts):
        return None
    logs = np.log(np.array([p[1:] for p in pts]))
    coef = np.polyfit(x, logs, len(pts) - 1)
    u, m2 = np.exp(coef[-1])
    if not (np.isfinite(u) and np.isfinite(m2) and 0 < u <= 1):
        return None
    return float(u), float(m2)


def scalars_at(scenario: Scenario, u: float, m2: float) -> tuple[float, float]:
    """The ``warm_start`` pair ``(X, Y)`` that starts :func:`solve_aggregate` on ``scenario``
    at the slack ``u`` and second moment ``m2``."""
    X = Latency(scenario).lam / u
    return X, 0.5 * X * X * m2


def solve_near(
    scenario: Scenario,
    reduced: Reduced,
    start: tuple[float, float],
    *,
    tol: float = 1e-9,
    max_iter: int = 50,
    xtol: float = 1e-14,
) -> Result | None:
    """Re-solve a scenario close to a solved one: Newton on the outer system from
    ``start = (u, m2)`` (e.g. :func:`predicted_start`), certified, not polished.

    ``reduced`` holds the per-type parts of the scenario's types (``Reduced.of`` of any
    scenario with the same tasks, built once); only the queue is the scenario's. A
    sweep over arrival rates (a policy's grid) builds them once instead of per rate.
    The scenario is taken as valid at its rate (not validated again). None where
    this does not apply (constraints, ``latency_weight = 0``, no arrivals, a fixed
    box) or Newton does not converge: then :func:`solve_aggregate` is the way.
    """
    t_start = time.perf_counter()
    lo, hi = scenario.min_tokens, scenario.max_tokens
    if constraints_of(scenario) is not None or scenario.latency_weight <= 0 or np.all(hi == lo):
        return None
    red = reduced.with_queue(queue_model(scenario))
    if not red.lam > 0:
        return None
    pt, newton_iters, ok = red.newton(*start, max_iter, xtol)
    if not ok:
        return None
    diag = _diagnostics(pt, newton_iters, 0)
    t_reduce = time.perf_counter() - t_start
    return _polish_and_certify(
        scenario, pt.tokens, tol, 0, diag, "newton", "warm", red.evaluations, t_start, t_reduce
    )


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
        A previous result, whose slack ``1 - rho`` and second moment are held (an
        aggregate one's ``diagnostics["u"]``, ``["m2"]``, or those of any other
        result's allocation), or the queue scalars ``(X, Y)`` themselves, e.g.
        predicted by :func:`predicted_start` and :func:`scalars_at`.
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
    pre = None
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
        warm = _warm(warm_start, lam)
        big = sc.n > sample_size
        done = _reduce_packed(sc, warm, max_iter, sample_size, xtol, tol) if big else None
        if isinstance(done, _Packed):
            tokens, iters, path, start, diag = (
                done.tokens,
                done.iters,
                "newton",
                done.start,
                done.diag,
            )
            pre = (done.evaluation, done.certificate)
        else:
            # small N, or the full-size Newton gave up: whole arrays from its last point
            begin = (warm, "warm") if done is None else (done, "sample")
            tokens, iters, path, start, diag = _reduce(sc, *begin, max_iter, xtol)
    t_reduce = time.perf_counter() - t_start
    return _polish_and_certify(
        sc, tokens, tol, polish_steps, diag, path, start, iters, t_start, t_reduce, pre
    )


@dataclass
class _Packed:
    """What the full-size Newton of :class:`Packed` hands to the certification."""

    tokens: np.ndarray
    iters: int
    start: str
    diag: dict[str, Any]
    evaluation: Any
    certificate: Certificate


def _reduce_packed(
    sc: Scenario,
    warm: tuple[float, float] | None,
    max_iter: int,
    sample_size: int,
    xtol: float,
    tol: float,
) -> _Packed | tuple[float, float]:
    """Large N: a start (warm, or the sample's solution), the cold roots at it, then
    Newton on tokens and scalars together over chunked sweeps (:class:`Packed`).

    Returns the certified result, or the start ``(u, m2)`` for :func:`_reduce` when
    the full-size Newton does not converge.
    """
    pk = Packed(sc)
    if warm is not None:
        (u0, m20), start, sample_iters = warm, "warm", 0
    else:
        sub = pk.sample(sample_size)
        (u0, m20), start = sub.solve(max_iter, xtol), "sample"
        sample_iters = sub.evaluations
    state = pk.newton(u0, m20, max_iter)
    if not state.converged:
        return state.u, state.m2
    ev, cert = pk.finish(state)
    for _ in range(2):
        if cert.within(tol):
            break
        if Certificate(cert.objective, cert.gap - pk.certificate_slack, 0.0).within(tol):
            cert = pk.certify(ev)  # the bound's slack is all that is missing
        else:  # the stopping rule guessed short: sweep on
            state = pk.refine(state)
            ev, cert = pk.finish(state)
    # the queue scalars of the tokens themselves (a warm start from them is exact)
    u = 1.0 - ev.utilization
    X = pk.lam / u
    diag = {
        "X": X,
        "Y": 0.5 * X * X * ev.m2,
        "u": u,
        "m2": ev.m2,
        "residual": [u - state.u, ev.m2 - state.m2],
        "newton_iterations": state.sweeps,
        "sample_iterations": sample_iters,
        "certificate_slack": pk.certificate_slack,
    }
    iters = state.sweeps + sample_iters
    return _Packed(ev.tokens, iters, start, diag, ev, cert)


def _reduce(
    sc: Scenario, start_at: tuple[float, float] | None, label: str, max_iter: int, xtol: float
) -> tuple[np.ndarray, int, str, str, dict[str, Any]]:
    """Solve the two-scalar outer system over whole arrays (:class:`Reduced`): Newton
    from ``start_at`` (whose kind ``label`` names); without one, Newton from the middle
    of the brackets, whose point is the answer when it converged (else where a second
    Newton starts); then nested bracketing if Newton fails.

    Returns ``(tokens, iterations, path, start, diagnostics)``.
    """
    red = Reduced.of(sc)
    cold, newton_iters, sample_iters, start = None, 0, 0, label
    if start_at is None:
        cold, newton_iters = red.solve_point(max_iter, xtol)
        start_at, start = ((cold.u, cold.m2) if cold else red.middle()), "cold"
    if newton_iters:  # the cold Newton converged: its point is the answer
        pt, ok = cold, True
    else:
        sample_iters, red.evaluations = red.evaluations, 0
        pt, newton_iters, ok = red.newton(*start_at, max_iter, xtol)
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
    diag = _diagnostics(pt, newton_iters, sample_iters)
    return pt.tokens, red.evaluations + sample_iters, path, start, diag


def _diagnostics(pt: Any, newton_iters: int, sample_iters: int) -> dict[str, Any]:
    """The outer system's point and work, as ``Result.info`` reports them."""
    return {
        "X": pt.X,
        "Y": pt.Y,
        "u": pt.u,
        "m2": pt.m2,
        "residual": [pt.r1, pt.r2],
        "newton_iterations": newton_iters,
        "sample_iterations": sample_iters,
    }


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
    pre: tuple[Any, Certificate] | None = None,
) -> Result:
    """Certify ``tokens``, polish them if the gap is above ``tol``, and wrap them.

    ``pre``, the evaluation and certificate of ``tokens`` when the solver computed
    them already (:meth:`Packed.finish`).
    """
    obj = Objective(sc)
    lam = obj.latency.lam
    if pre is None:
        ev = obj.evaluate(tokens)
        cert = box_certificate(sc, ev.tokens, obj, ev.objective)
    else:
        ev, cert = pre
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
