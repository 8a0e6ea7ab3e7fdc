"""Sensitivity of the optimum to the arrival rate and to the task mix.

Layer: workflows.

At the optimum ``t*`` of ``U(t; theta)`` over the box, every free type
(``lo_i < t_i < hi_i``) satisfies ``dU/dt_i = 0``. While the active set does
not change, the implicit function theorem gives

    d t_F / d theta = -(H_FF)^{-1} d(grad_F U)/d theta,     d t_B / d theta = 0,

with ``H`` the Hessian of ``U`` (``-H = diag(d) + V M V^T``, see
:meth:`cvxalloc.objective.Objective.hessian_parts`), solved in O(N) by
:func:`cvxalloc.polish.newton_direction`. The optimal value moves by the
envelope theorem: ``dU*/d theta = dU/d theta`` at fixed ``t*`` (the bounds do
not depend on theta).

Parameters differentiated:

* the arrival rate ``lam``;
* the mix ``p``, which must stay on the simplex. The mix direction *toward
  type i* is ``p(eps) = (1 - eps) p + eps e_i``: a fraction ``eps`` of the
  traffic is replaced by type-``i`` queries, the rest shrinks in proportion
  (``dp/deps = e_i - p``). Any other direction ``dp`` with ``sum(dp) = 0`` is
  available through :meth:`Sensitivity.directional`; e.g. ``e_i - e_j`` moves
  traffic from ``j`` to ``i``.

Types at a bound whose gradient vanishes (a kink of the active set) have only
one-sided derivatives; they are listed in :attr:`Sensitivity.kinks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._source import fields_source
from .certificate import certify, relative_scale
from .errors import CvxallocError, UnstableError
from .objective import Objective
from .polish import newton_direction, polish
from .queue.fleet import scenario_partials
from .solve import fixed_service_scv, solve

if TYPE_CHECKING:
    from .scenario import Scenario

__all__ = ["Sensitivity", "Derivative", "sensitivity", "MIX_MATRIX_MAX_TYPES", "OPTIMALITY_RTOL"]

#: Above this many types the full mix matrix (N directions, O(N^2)) is not computed.
MIX_MATRIX_MAX_TYPES = 2000
#: A type is at a bound when within this fraction of its box width.
_BOUND_RTOL = 1e-7
#: The allocation differentiated must be certified within this relative gap.
OPTIMALITY_RTOL = 1e-6


@dataclass(frozen=True)
class Derivative:
    """Derivatives of the optimum along one parameter direction.

    Attributes
    ----------
    tokens : ndarray
        ``d t* / d theta`` per type (0 for types held at a bound).
    objective : float
        ``d U* / d theta`` (envelope theorem).
    mean_system_time : float
        ``d W(t*) / d theta`` (seconds per unit of theta).
    utilization : float
        ``d rho(t*) / d theta``.
    accuracy : float
        ``d (sum p_i w_i A_i(t*_i)) / d theta``.
    """

    tokens: np.ndarray
    objective: float
    mean_system_time: float
    utilization: float
    accuracy: float

    def _repr_pretty_(self, p, cycle) -> None:
        """Print the repr in IPython and hypothesis (which spell a dataclass field by field)."""
        p.text(repr(self))

    def __repr__(self) -> str:
        """Python source that rebuilds the derivative (with ``np`` and ``Derivative`` in scope).

        >>> Derivative(np.array([2.5, 0.0]), -0.125, 0.5, 0.25, 0.0)
        Derivative(tokens=np.array([2.5, 0.0]), objective=-0.125, mean_system_time=0.5, \
utilization=0.25, accuracy=0.0)
        """
        return fields_source(self)


@dataclass
class Sensitivity:
    """Derivatives of the optimal allocation and utility.

    Attributes
    ----------
    scenario : Scenario
    tokens : ndarray
        The optimum ``t*`` differentiated.
    free : ndarray of bool
        Types strictly inside their box (their budgets move).
    kinks : list of str
        Types at a bound with (numerically) zero gradient: their derivative is
        one-sided, the reported 0 holds only in the direction that keeps them
        at the bound.
    arrival_rate : Derivative
        Derivatives with respect to ``lam``.
    arrival_rate_range : tuple of float
        ``(lam_low, lam_high)``: the linearized range of ``lam`` over which
        the active set (and so these derivatives' form) stays the same.
    arrival_scv : Derivative
        Derivatives with respect to ``c_a^2`` (the burstiness of arrivals).
    mix : list of Derivative or None
        ``mix[i]``: derivatives along the direction toward type ``i``
        (``dp = e_i - p``); None above :data:`MIX_MATRIX_MAX_TYPES` types.
    replicas : dict or None
        A fleet's replica count is whole, so its "derivative" is a finite
        difference of certified optima: ``replicas`` (``k``), ``objective``
        (``U*`` at ``k``), ``one_fewer`` and ``one_more`` (``U*`` at ``k - 1`` and
        ``k + 1``, None where no allocation is stable), ``backward`` and
        ``forward`` (``U*(k) - U*(k - 1)`` and ``U*(k + 1) - U*(k)``, each exact up
        to the certified gaps, ``gap``). None without a ``[fleet]``.
    """

    scenario: Any
    tokens: np.ndarray
    free: np.ndarray
    kinks: list[str]
    arrival_rate: Derivative
    arrival_rate_range: tuple[float, float]
    arrival_scv: Derivative | None = None
    mix: list[Derivative] | None = None
    replicas: dict[str, Any] | None = None
    _objective: Objective | None = field(default=None, repr=False)

    def _repr_pretty_(self, p, cycle) -> None:
        """Print the repr in IPython and hypothesis (which spell a dataclass field by field)."""
        p.text(repr(self))

    def __repr__(self) -> str:
        """Python source that rebuilds the sensitivity (its scenario's repr inside).

        ``eval`` needs ``np``, :class:`Sensitivity`, :class:`Derivative` and
        :class:`~cvxalloc.Scenario` in scope; it is source as long as the
        scenario's repr is (up to 50 types) and arrays are written out (up to
        100 entries; the mix matrix has N rows of N).
        """
        return fields_source(self)

    # --- convenient names ------------------------------------------------
    @property
    def d_tokens_d_arrival_rate(self) -> np.ndarray:
        """``d t* / d lam`` (tokens per unit of queries/second)."""
        return self.arrival_rate.tokens

    @property
    def d_objective_d_arrival_rate(self) -> float:
        """``d U* / d lam``."""
        return self.arrival_rate.objective

    @property
    def elasticity_arrival_rate(self) -> np.ndarray:
        """``(lam / t_i) d t_i / d lam``: percent budget change per percent of traffic."""
        with np.errstate(divide="ignore", invalid="ignore"):
            e = self.scenario.arrival_rate * self.arrival_rate.tokens / self.tokens
        return np.where(self.tokens > 0, e, 0.0)

    @property
    def d_tokens_d_mix(self) -> np.ndarray:
        """Matrix ``[i, j] = d t*_j / d eps`` along the direction toward type ``i``."""
        if self.mix is None:
            raise CvxallocError(
                f"the mix matrix is not computed above {MIX_MATRIX_MAX_TYPES} types; use "
                "Sensitivity.directional(dp=...) for the directions you need"
            )
        return np.array([m.tokens for m in self.mix])

    @property
    def d_objective_d_mix(self) -> np.ndarray:
        """``d U* / d eps`` along the direction toward each type."""
        if self.mix is None:
            return self.d_tokens_d_mix  # raises the explanatory error
        return np.array([m.objective for m in self.mix])

    # --- any direction --------------------------------------------------
    def directional(
        self, dp: np.ndarray | None = None, dlam: float = 0.0, dscv: float = 0.0
    ) -> Derivative:
        """Derivatives along ``(p, lam, c_a^2) + eps (dp, dlam, dscv)``.

        Parameters
        ----------
        dp : array_like, optional
            Change of the mix; must sum to 0 (the mix stays on the simplex).
        dlam : float
            Change of the arrival rate.
        dscv : float
            Change of the arrival scv ``c_a^2``.
        """
        n = self.scenario.n
        dp = np.zeros(n) if dp is None else np.asarray(dp, dtype=float)
        if dp.shape != (n,):
            raise CvxallocError(f"dp must have one entry per task ({n}), got shape {dp.shape}")
        if abs(dp.sum()) > 1e-9 * max(1.0, np.abs(dp).sum()):
            raise CvxallocError(
                f"dp must sum to 0 so the mix stays on the simplex (sums to {dp.sum():.3g}); "
                "e.g. e_i - p (toward type i) or e_i - e_j (from j to i)"
            )
        return _derivative(
            self.scenario, self._obj(), self.tokens, self.free, dp, float(dlam), float(dscv)
        )

    def _obj(self) -> Objective:
        if self._objective is None:
            self._objective = Objective(self.scenario)
        return self._objective

    # --- output ----------------------------------------------------------
    def to_table(self) -> dict[str, np.ndarray]:
        """One row per task (``cvxalloc sensitivity --output FILE.csv``): ``name``,
        ``tokens``, ``free`` (strictly inside its bounds), ``d_tokens_d_arrival_rate``,
        ``elasticity_arrival_rate`` and, where defined, ``d_tokens_d_arrival_scv``."""
        out = {
            "name": np.asarray(self.scenario.names, dtype=object),
            "tokens": np.asarray(self.tokens, dtype=float),
            "free": np.asarray(self.free, dtype=bool),
            "d_tokens_d_arrival_rate": np.asarray(self.arrival_rate.tokens, dtype=float),
            "elasticity_arrival_rate": np.asarray(self.elasticity_arrival_rate, dtype=float),
        }
        if self.arrival_scv is not None:
            out["d_tokens_d_arrival_scv"] = np.asarray(self.arrival_scv.tokens, dtype=float)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (per-type values keyed by task name)."""
        names = self.scenario.names

        def per(x):
            return {n: float(v) for n, v in zip(names, x)}

        def der(d: Derivative) -> dict[str, Any]:
            return {
                "tokens": per(d.tokens),
                "objective": d.objective,
                "mean_system_time": d.mean_system_time,
                "utilization": d.utilization,
                "accuracy": d.accuracy,
            }

        lo_r, hi_r = self.arrival_rate_range
        out: dict[str, Any] = {
            "arrival_rate": self.scenario.arrival_rate,
            "tokens": per(self.tokens),
            "free": {n: bool(f) for n, f in zip(names, self.free)},
            "kinks": list(self.kinks),
            "d_arrival_rate": der(self.arrival_rate),
            "elasticity_arrival_rate": per(self.elasticity_arrival_rate),
            "arrival_rate_range": [lo_r, hi_r if np.isfinite(hi_r) else None],
            "arrival_scv": self.scenario.arrival_scv,
            "d_arrival_scv": None if self.arrival_scv is None else der(self.arrival_scv),
            "mix_direction": "toward type i: p(eps) = (1 - eps) p + eps e_i",
            "d_mix": None if self.mix is None else {n: der(m) for n, m in zip(names, self.mix)},
        }
        if self.replicas is not None:
            out["replicas"] = dict(self.replicas)
        return out

    def summary(self, change: float = 0.10, top: int = 20) -> str:
        """Readable summary: "if traffic grows 10%, these budgets move by ...".

        Parameters
        ----------
        change : float
            Relative change of the arrival rate to illustrate (0.10 = +10%).
        top : int
            At most this many types listed (largest moves first).
        """
        sc = self.scenario
        lam = sc.arrival_rate
        dl = change * lam
        d = self.arrival_rate
        lines = [
            f"arrival rate {lam:.6g}/s; if traffic changes by {change:+.0%} "
            f"(to {lam + dl:.6g}/s), to first order:"
        ]
        lines.append(f"  utility U*       {dl * d.objective:+.6g}   (dU*/dlam = {d.objective:.6g})")
        lines.append(f"  mean system time {dl * d.mean_system_time:+.6g} s")
        lines.append(f"  utilization      {dl * d.utilization:+.6g}")
        lines.append(f"  weighted accuracy {dl * d.accuracy:+.6g}")
        order = np.argsort(-np.abs(d.tokens))[:top]
        lines.append(f"  {'task':<14} {'tokens':>10} {'change':>10} {'%':>8}  status")
        for i in order:
            nearer_min = self.tokens[i] - sc.min_tokens[i] <= sc.max_tokens[i] - self.tokens[i]
            status = "free" if self.free[i] else ("at min" if nearer_min else "at max")
            if sc.names[i] in self.kinks:
                status += " (kink: one-sided)"
            pct = 100 * dl * d.tokens[i] / self.tokens[i] if self.tokens[i] > 0 else 0.0
            lines.append(
                f"  {sc.names[i]:<14} {self.tokens[i]:>10.1f} "
                f"{dl * d.tokens[i]:>+10.1f} {pct:>+7.2f}%  {status}"
            )
        lo_r, hi_r = self.arrival_rate_range
        hi_txt = f"{hi_r:.6g}" if np.isfinite(hi_r) else "inf"
        lines.append(
            f"  (same active set, to first order, for arrival rate in [{lo_r:.6g}, {hi_txt}])"
        )
        lines += self._scv_lines(change, top=min(top, 5))
        if self.mix is not None and sc.n <= 12:
            lines.append("")
            lines.append("mix: move 1% of the traffic to type i (p -> 0.99 p + 0.01 e_i):")
            head = (
                "  "
                + f"{'toward':<12} {'dU*':>10} {'dW s':>9}  "
                + " ".join(f"{n[:9]:>9}" for n in sc.names)
            )
            lines.append(head)
            for i, m in enumerate(self.mix):
                lines.append(
                    f"  {sc.names[i][:12]:<12} {0.01 * m.objective:>+10.3g} "
                    f"{0.01 * m.mean_system_time:>+9.3g}  "
                    + " ".join(f"{0.01 * x:>+9.1f}" for x in m.tokens)
                )
            lines.append("  (columns: change of each type's budget, tokens)")
        if self.replicas is not None:
            lines += _replica_lines(self.replicas)
        return "\n".join(lines)

    #: The former name of :meth:`summary`.
    report = summary

    def _scv_lines(self, change: float, top: int) -> list[str]:
        """The burstiness block of :meth:`summary`: a relative change of ``arrival_scv``."""
        d, c = self.arrival_scv, self.scenario.arrival_scv
        if d is None or c <= 0:
            return []
        dc = change * c
        moves = ", ".join(
            f"{self.scenario.names[i]} {dc * d.tokens[i]:+.1f}"
            for i in np.argsort(-np.abs(d.tokens))[:top]
        )
        return [
            "",
            f"arrival_scv {c:.6g}; if the gaps' variability changes by {change:+.0%} "
            f"(to {c + dc:.6g}), to first order:",
            f"  utility U*       {dc * d.objective:+.6g}   (dU*/dc_a^2 = {d.objective:.6g})",
            f"  mean system time {dc * d.mean_system_time:+.6g} s",
            f"  tokens           {moves}",
        ]


def _partials(
    sc: Scenario, obj: Objective, t: np.ndarray, dp: np.ndarray, dlam: float, dscv: float = 0.0
):
    """Partial derivatives at fixed ``t``: of grad U, U, W, rho and accuracy.

    Along ``(p, lam, c_a^2) + eps (dp, dlam, dscv)``. The queue model gives ``W``'s
    derivatives ``A = dW/dm1``, ``B = 2 dW/dm2``, its Hessian in the moments and
    its partials in its parameters; ``D_i = A + B (1 + k_i) s_i``.
    """
    lat = obj.latency
    queue = lat.queue
    lam, gamma = sc.arrival_rate, sc.latency_weight
    p, w, b, k1 = sc.probability, sc.weight, sc.per_token, 1.0 + sc.scv
    s = sc.service_time(t)
    mo = lat.moments(t)
    if mo.rho >= 1:
        raise CvxallocError("the allocation is unstable (utilization >= 1)")
    m2_terms = k1 * s * s + sc.variance
    dm1 = float(dp @ s)
    dm2 = float(dp @ m2_terms)
    drho = (lam * dm1 + dlam * mo.m1) / sc.capacity  # rho = lam m1 / capacity
    A, B = queue.derivatives(mo.m1, mo.m2)
    H = queue.hessian(mo.m1, mo.m2)
    par = scenario_partials(sc, queue, mo.m1, mo.m2)  # in the fleet's rate and scv
    W_l, A_l, B_l = par["arrival_rate"]
    W_c, A_c, B_c = par["arrival_scv"]
    dA = H[0, 0] * dm1 + H[0, 1] * dm2 + A_l * dlam + A_c * dscv
    dB = 2.0 * H[0, 1] * dm1 + 2.0 * H[1, 1] * dm2 + B_l * dlam + B_c * dscv
    dD = dA + dB * k1 * s
    D = A + B * k1 * s
    h = w * sc.accuracy.d1(t) - gamma * b * D
    dg = dp * h - gamma * p * b * dD
    dW = A * dm1 + 0.5 * B * dm2 + W_l * dlam + W_c * dscv
    dacc = float(dp @ (w * sc.accuracy.value(t)))
    dU = dacc - gamma * dW
    return dg, dU, dW, drho, dacc


def _derivative(sc: Scenario, obj: Objective, t, free, dp, dlam, dscv: float = 0.0) -> Derivative:
    dg, dU, dW, drho, dacc = _partials(sc, obj, t, dp, dlam, dscv)
    d, V, M = obj.hessian_parts(t)
    dt = newton_direction(d, V, M, dg, free)
    gW = obj.latency.gradient(t)
    p = sc.probability
    return Derivative(
        tokens=dt,
        objective=dU,
        mean_system_time=dW + float(gW @ dt),
        utilization=drho + sc.arrival_rate / sc.capacity * float(p @ (sc.per_token * dt)),
        accuracy=dacc + float((p * sc.weight * sc.accuracy.d1(t)) @ dt),
    )


def _active_range(sc: Scenario, obj, t, free, g, dt_lam) -> tuple[float, float]:
    """Linearized interval of ``lam`` keeping the active set (free types inside, bound
    types' gradients of the same sign)."""
    lam = sc.arrival_rate
    lo, hi = sc.min_tokens, sc.max_tokens
    steps_up, steps_dn = [np.inf], [np.inf]
    with np.errstate(divide="ignore", invalid="ignore"):
        f = free
        up = np.where(
            dt_lam[f] > 0,
            (hi[f] - t[f]) / dt_lam[f],
            np.where(dt_lam[f] < 0, (lo[f] - t[f]) / dt_lam[f], np.inf),
        )
        dn = np.where(
            dt_lam[f] < 0,
            (t[f] - hi[f]) / dt_lam[f],
            np.where(dt_lam[f] > 0, (t[f] - lo[f]) / dt_lam[f], np.inf),
        )
        steps_up.append(np.min(up, initial=np.inf))
        steps_dn.append(np.min(dn, initial=np.inf))
        # bound types: total derivative of their gradient, dg_B + H_BF dt_F
        B = ~free
        if B.any():
            dg, *_ = _partials(sc, obj, t, np.zeros(sc.n), 1.0)
            d, V, M = obj.hessian_parts(t)
            coupling = V[B] @ (M @ (V.T @ dt_lam))  # (V M V^T dt)_B; diag part is 0 on B
            dgB = dg[B] - coupling
            gB = g[B]
            # the gradient crosses zero at lam + s with s = -g / dg
            s = -gB / dgB
            steps_up.append(np.min(np.where((s > 0) & np.isfinite(s), s, np.inf), initial=np.inf))
            steps_dn.append(np.min(np.where((s < 0) & np.isfinite(s), -s, np.inf), initial=np.inf))
    lam_hi = lam + min(steps_up)
    lam_lo = max(lam - min(steps_dn), 0.0)
    return float(lam_lo), float(lam_hi)


def sensitivity(scenario: Scenario, result=None, *, mix: bool | None = None) -> Sensitivity:
    """Derivatives of the optimal budgets and utility w.r.t. arrival rate and mix.

    Parameters
    ----------
    scenario : Scenario
        A scenario without extra constraints (box bounds only).
    result : Result or array_like, optional
        The optimum (a :class:`~cvxalloc.result.Result` or token array);
        default: solved here with the conic reference. It is polished (a few
        Newton steps) and must be certified within :data:`OPTIMALITY_RTOL`,
        else :class:`~cvxalloc.errors.CvxallocError`. The derivatives are as
        accurate as this optimum.
    mix : bool, optional
        Compute the derivative toward every type (N directions, O(N^2));
        default: when ``N <=`` :data:`MIX_MATRIX_MAX_TYPES`.

    Returns
    -------
    Sensitivity

    Examples
    --------
    >>> import cvxalloc
    >>> from cvxalloc.sensitivity import sensitivity
    >>> s = sensitivity(cvxalloc.example_scenario())
    >>> bool(s.d_objective_d_arrival_rate < 0)   # more traffic, more queueing
    True
    """
    sc = fixed_service_scv(scenario)  # a batching "auto": at the optimum's own
    cons = getattr(sc, "constraints", None)
    if cons is not None and not getattr(cons, "empty", True):
        raise CvxallocError(
            "sensitivity: scenarios with a [constraints] table are not supported (only the "
            "box lo <= t <= hi); remove the constraints or use finite differences of re-solves"
        )
    if result is None:
        result = solve(sc, method="conic")
    t = np.asarray(getattr(result, "tokens", result), dtype=float)
    if t.shape != (sc.n,):
        raise CvxallocError(f"result must have one token count per task ({sc.n})")
    obj = Objective(sc)
    lo, hi = sc.min_tokens, sc.max_tokens
    width = hi - lo
    rho = sc.utilization(np.clip(t, lo, hi))
    if not rho < 1:
        raise CvxallocError(
            f"sensitivity: the allocation is not an optimum: it is unstable (utilization "
            f"{rho:.4g} >= 1); pass the result of cvxalloc.solve(scenario) or omit it"
        )
    # sharpen the active set (a few O(N) Newton steps; no-op on a polished optimum)
    t, _ = polish(sc, t, rtol=1e-12, objective=obj)
    cert = certify(sc, t, objective=obj)
    if not (np.isfinite(cert.gap) and cert.within(OPTIMALITY_RTOL)):
        raise CvxallocError(
            f"sensitivity: the allocation is not an optimum (certified relative gap "
            f"{cert.relative_gap:.2g} > {OPTIMALITY_RTOL:g}); the derivatives hold only at "
            "the optimum: pass the result of cvxalloc.solve(scenario) or omit it"
        )
    g = obj.gradient(t)
    tol = _BOUND_RTOL * np.maximum(width, 1.0)
    at_lo = t - lo <= tol
    at_hi = hi - t <= tol
    free = ~(at_lo | at_hi) & (width > 0)
    # kinks: at a bound, but the gradient is ~0 (compare with the gradient's scale)
    U = obj.value(t)
    gscale = 1e-7 * relative_scale(U) / np.maximum(width, 1.0)
    kinks = [sc.names[i] for i in np.flatnonzero(~free & (width > 0) & (np.abs(g) <= gscale))]
    d_lam = _derivative(sc, obj, t, free, np.zeros(sc.n), 1.0)
    d_scv = _derivative(sc, obj, t, free, np.zeros(sc.n), 0.0, 1.0)
    rng = _active_range(sc, obj, t, free, g, d_lam.tokens)
    want_mix = sc.n <= MIX_MATRIX_MAX_TYPES if mix is None else mix
    mixes = None
    if want_mix:
        p = sc.probability
        mixes = []
        for i in range(sc.n):
            dp = -p.copy()
            dp[i] += 1.0
            mixes.append(_derivative(sc, obj, t, free, dp, 0.0))
    return Sensitivity(
        scenario=sc,
        tokens=t,
        free=free,
        kinks=kinks,
        arrival_rate=d_lam,
        arrival_rate_range=rng,
        arrival_scv=d_scv,
        mix=mixes,
        replicas=_replica_differences(sc, obj.value(t), cert.gap),
        _objective=obj,
    )


def _replica_differences(sc, U: float, gap: float) -> dict[str, Any] | None:
    """``U*`` at one replica fewer and one more, and the differences (None without a fleet)."""
    fleet = getattr(sc, "fleet", None)
    if fleet is None:
        return None
    k = fleet.replicas
    out: dict[str, Any] = {"replicas": k, "objective": U}
    gaps = [gap]
    for key, kk in (("one_fewer", k - 1), ("one_more", k + 1)):
        value = None
        if kk >= 1:
            try:
                res = solve(sc.with_fleet(type(fleet)(kk, fleet.router)))
                value = res.objective
                gaps.append(res.certificate.gap)
            except UnstableError:
                pass
        out[key] = value
    out["backward"] = None if out["one_fewer"] is None else U - out["one_fewer"]
    out["forward"] = None if out["one_more"] is None else out["one_more"] - U
    out["gap"] = float(sum(gaps))
    return out


def _replica_lines(rep: dict[str, Any]) -> list[str]:
    """The summary's lines on one replica more or fewer."""
    k = rep["replicas"]

    def txt(x):
        return "no stable allocation" if x is None else f"{x:+.6g}"

    return [
        "",
        f"replicas (whole numbers: differences of certified optima, within {rep['gap']:.1e}):",
        f"  one more ({k + 1}):  U* {txt(rep['forward'])}",
        f"  one fewer ({k - 1}): U* {txt(None if rep['backward'] is None else -rep['backward'])}",
    ]
