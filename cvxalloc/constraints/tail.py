"""The tail SLO ``q_p(T) <= T0``, honoured through a convex conservative surrogate.

The exact constraint ``{t : q_p(t) <= T0}`` is not convex in general: with two
task types of gamma service (scv 0.3, as in the example) the median of the
system time at the midpoint of two allocations can exceed both ends' medians
by 36% (docs/tail.md has the counterexamples and the search). So the
optimization holds a surrogate that is convex, implies the SLO, and is
conic-representable:

* Kingman's bound for the FIFO wait: ``P(W > x) <= e^{-eta x}`` with ``eta`` the
  positive root of ``lam (M_S(eta) - 1) = eta`` (``M_S`` the service time's
  moment generating function). With ``S`` independent of ``W``,
  ``P(T > x) <= e^{-eta x} M_S(eta) = e^{-eta x} (1 + eta / lam)``, so
  ``q_p <= (L + log(1 + eta / lam)) / eta`` with ``L = log(1 / (1 - p))``.
* That bound is at most ``T0`` exactly when ``eta >= eta_0``, the root of
  ``eta T0 - log(1 + eta / lam) = L`` (a constant of the SLO), that is when
  ``lam (M_S(eta_0) - 1) <= eta_0``: one moment generating function at a fixed
  argument, a sum over types of ``p_i M_i(eta_0; s_i)``.
* Each type's law is replaced by the gamma law with the same mean and the scv
  ``c_i = k_i + v_i / s_i(lo_i)^2`` it has at its smallest budget (its largest
  over the box; exact when ``v_i = 0``). A gamma law's generating function at
  fixed mean grows with its scv, so this bounds ``M_S`` from above and keeps
  the bound valid; ``M_i = (1 - eta_0 c_i s_i)^(-1/c_i)`` (``e^{eta_0 s_i}`` for a
  constant) is convex and increasing in ``t_i``, an exponential-cone expression.

The constraint the solvers and the certificate hold is the normalized load
``lam (sum_i p_i M_i(eta_0; s_i) - 1) / eta_0 <= 1``; reports give it in seconds
(``bound``: the surrogate's percentile, ``exact``: the percentile itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._roots import brentq
from ..errors import ScenarioError
from ..protocols import ScenarioLike
from ..queue import queue_model
from ..queue.tail import system_time_quantiles
from .feasibility import effective_lower
from .terms import ConstraintError, Term

__all__ = ["TailSLO", "TailPercentile", "eta_0", "surrogate_scv"]


@dataclass(frozen=True)
class TailSLO:
    """``[constraints] tail = { quantile = p, max_system_time = T0 }``."""

    quantile: float
    max_system_time: float

    def __post_init__(self) -> None:
        for key in ("quantile", "max_system_time"):
            val = getattr(self, key)
            if isinstance(val, bool) or not isinstance(val, (int, float, np.number)):
                raise ConstraintError(f"constraints: tail.{key} must be a number (got {val!r})")
            if not math.isfinite(float(val)):
                raise ConstraintError(f"constraints: tail.{key} must be finite (got {val})")
            object.__setattr__(self, key, float(val))
        if not 0.0 < self.quantile < 1.0:
            hint = (
                f"; write {self.quantile / 100:g} for p{self.quantile:g}"
                if self.quantile > 1
                else ""
            )
            raise ConstraintError(
                f"constraints: tail.quantile must be in (0, 1) (got {self.quantile:g}){hint}"
            )
        if not self.max_system_time > 0:
            raise ConstraintError(
                "constraints: tail.max_system_time must be > 0 seconds "
                f"(got {self.max_system_time:g})"
            )

    @classmethod
    def from_table(cls, table: Any) -> TailSLO:
        """From the file's inline table; a clear error for anything else."""
        if isinstance(table, TailSLO):
            return table
        if not isinstance(table, dict):
            raise ConstraintError(
                "constraints: tail must be a table, e.g. "
                "tail = { quantile = 0.99, max_system_time = 120.0 }"
            )
        extra = set(table) - {"quantile", "max_system_time"}
        missing = {"quantile", "max_system_time"} - set(table)
        if extra or missing:
            raise ConstraintError(
                "constraints: tail takes exactly quantile and max_system_time "
                f"(got {', '.join(sorted(table)) or 'nothing'}), e.g. "
                "tail = { quantile = 0.99, max_system_time = 120.0 }"
            )
        return cls(table["quantile"], table["max_system_time"])

    def to_table(self) -> dict[str, float]:
        return {"quantile": self.quantile, "max_system_time": self.max_system_time}


def eta_0(quantile: float, max_system_time: float, arrival_rate: float) -> float:
    """The decay rate the SLO needs: the root of ``eta T0 - log(1 + eta / lam) = log(1 / (1 - p))``.

    The left side is convex in ``eta`` and negative at 0: one positive root.
    """
    L = -math.log1p(-quantile)
    T0, lam = max_system_time, arrival_rate

    def h(eta: float) -> float:
        return eta * T0 - math.log1p(eta / lam) - L

    hi = max(L / T0, 1e-300)
    while h(hi) < 0:
        hi *= 2.0
    return brentq(h, 0.0, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)


def surrogate_scv(scenario: ScenarioLike, lower: np.ndarray) -> np.ndarray:
    """Per type the scv of its law at its smallest budget, ``k_i + v_i / s_i(lo_i)^2``."""
    s = scenario.service_time(lower)
    v = np.asarray(scenario.variance, dtype=float)
    bad = (v > 0) & (s <= 0)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ScenarioError(
            f'task "{scenario.names[i]}": service.variance > 0 with no service time at its '
            "smallest budget: the tail constraint's bound needs the gamma law's scv there; "
            "raise service.base or min_tokens, or set service.variance = 0"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(scenario.scv, dtype=float) + np.where(v > 0, v / (s * s), 0.0)


class TailPercentile(Term):
    """The tail SLO's surrogate as a term ``load(t) <= 1`` (see the module docstring).

    Parameters
    ----------
    slo : TailSLO

    Notes
    -----
    ``eta_0`` (from the scenario's ``lam``) and the surrogate scv of each type
    (from its smallest budgets ``lo'``) are fixed by the scenario a method is
    called with, and remembered for it.
    """

    kind = "tail"
    unit = ""
    what = "tail bound"
    linear = False

    def __init__(self, slo: TailSLO) -> None:
        super().__init__(1.0)
        self.slo = slo
        self._key: tuple | None = None

    def bind(self, scenario: ScenarioLike) -> TailPercentile:
        """Fix ``lam``, ``eta_0`` and the surrogate scv from ``scenario`` (once per scenario)."""
        key = (id(scenario), scenario.arrival_rate, id(scenario.scv), id(scenario.variance))
        if key == self._key:
            return self
        # the queue's rate: one replica's share in a fleet with random routing (the
        # approximate routers take no constraints)
        lam = float(queue_model(scenario).arrival_rate)
        if getattr(scenario, "arrival_scv", 1.0) != 1.0:
            raise ConstraintError(
                "constraints: tail is held through Kingman's bound for Poisson arrivals; "
                "with arrival_scv != 1 no such bound is known to cvxalloc: set arrival_scv = 1 "
                "or state the SLO on the mean (max_mean_system_time)"
            )
        if lam <= 0:
            raise ConstraintError(
                "constraints: tail needs arrivals (arrival_rate > 0); without a queue the "
                "system time is the service time"
            )
        self.lam = lam
        self.eta = eta_0(self.slo.quantile, self.slo.max_system_time, lam)
        self.c = surrogate_scv(scenario, effective_lower(scenario))
        self._key = key
        return self

    def __repr__(self) -> str:
        return (
            f"TailPercentile(quantile={self.slo.quantile:g}, "
            f"max_system_time={self.slo.max_system_time:g})"
        )

    # --- per type ------------------------------------------------------------
    def mgf(
        self, s: np.ndarray, r: float | None = None, order: int = 0, c: np.ndarray | None = None
    ) -> np.ndarray:
        """``M_i(r; s)`` or its first or second derivative in ``s`` (``inf`` outside the domain).

        ``r`` defaults to ``eta_0``; ``c`` to every type's surrogate scv (pass a
        subset's with ``s`` of that subset).
        """
        r = self.eta if r is None else r
        c = self.c if c is None else c
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            x = 1.0 - r * c * s
            safe_c = np.where(c > 0, c, 1.0)
            base = np.where(
                c > 0, np.where(x > 0, np.exp(-np.log(x) / safe_c), np.inf), np.exp(r * s)
            )
            if order == 0:
                return base
            k1 = np.where(c > 0, r / x, r)  # d log M / ds
            if order == 1:
                return np.where(np.isfinite(base), base * k1, np.inf)
            k2 = np.where(c > 0, r * r * c / (x * x), 0.0)  # d^2 log M / ds^2
            return np.where(np.isfinite(base), base * (k1 * k1 + k2), np.inf)

    def domain_top(self, scenario: ScenarioLike) -> np.ndarray:
        """Per type the largest budget inside the bound's domain (``eta_0 c_i s_i < 1``)."""
        self.bind(scenario)
        with np.errstate(divide="ignore"):
            s_top = np.where(self.c > 0, 1.0 / (self.eta * self.c), np.inf)
        return (s_top - scenario.base) / scenario.per_token

    # --- the term ------------------------------------------------------------
    def value(self, scenario: ScenarioLike, t):
        self.bind(scenario)
        s = scenario.service_time(np.asarray(t, dtype=float))
        m = float(scenario.probability @ self.mgf(s))
        return self.lam * (m - 1.0) / self.eta

    def slack(self, scenario: ScenarioLike, t, ties: bool = False) -> float:
        """``1 - load(t)``; ``-inf`` outside the bound's domain (no tie with infinity)."""
        value = self.value(scenario, t)
        if not np.isfinite(value):
            return -math.inf
        return super().slack(scenario, t, ties=ties)

    def gradient(self, scenario: ScenarioLike, t):
        self.bind(scenario)
        s = scenario.service_time(np.asarray(t, dtype=float))
        p, b = scenario.probability, scenario.per_token
        return self.lam * p * b * self.mgf(s, order=1) / self.eta

    def cvxpy(self, scenario: ScenarioLike, tokens, time_unit, token_unit):
        import cvxpy as cp

        self.bind(scenario)
        s = scenario.base + cp.multiply(scenario.per_token, tokens)
        p, c, r = scenario.probability, self.c, self.eta
        parts = []
        gam = c > 0
        if np.any(gam):
            g = np.flatnonzero(gam)
            # (1 - r c s)^(-1/c) = exp(-log(1 - r c s) / c): exp of a convex expression
            inner = cp.multiply(-1.0 / c[g], cp.log(1.0 - cp.multiply(r * c[g], s[g])))
            parts.append(p[g] @ cp.exp(inner))
        if np.any(~gam):
            d = np.flatnonzero(~gam)
            parts.append(p[d] @ cp.exp(r * s[d]))
        total = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        return total <= 1.0 + self.eta / self.lam, self.lam / self.eta

    def hessian_diag(self, scenario: ScenarioLike, t) -> np.ndarray:
        """The Hessian of the load, diagonal: ``lam p_i b_i^2 M_i''(s_i) / eta_0``."""
        self.bind(scenario)
        s = scenario.service_time(np.asarray(t, dtype=float))
        p, b = scenario.probability, scenario.per_token
        return self.lam * p * b * b * self.mgf(s, order=2) / self.eta

    # --- in seconds ----------------------------------------------------------
    def decay_rate(self, scenario: ScenarioLike, t) -> float:
        """``eta`` of the surrogate law at ``t``: the root of ``lam (M(eta) - 1) = eta``."""
        self.bind(scenario)
        s = scenario.service_time(np.asarray(t, dtype=float))
        p, lam = scenario.probability, self.lam
        if lam * float(p @ s) >= 1:
            return 0.0

        def g(r: float) -> float:
            return lam * (float(p @ self.mgf(s, r)) - 1.0) - r

        with np.errstate(divide="ignore"):
            cap = float(np.min(np.where(self.c > 0, 1.0 / (self.c * s), np.inf)))
        hi = cap * (1.0 - 1e-12) if math.isfinite(cap) else 1.0 / max(float(s.max()), 1e-300)
        while not math.isfinite(cap) and g(hi) < 0:
            hi *= 2.0
        if g(hi) <= 0:  # the generating function stays below the line up to its pole
            return hi
        lo = hi
        while g(lo) >= 0:
            lo *= 0.5
        return brentq(g, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)

    def bound(self, scenario: ScenarioLike, t) -> float:
        """The surrogate's percentile ``(L + log(1 + eta / lam)) / eta`` at ``t``, seconds."""
        eta = self.decay_rate(scenario, t)
        if not eta > 0:
            return math.inf
        return (-math.log1p(-self.slo.quantile) + math.log1p(eta / self.lam)) / eta

    def seconds_per_load(self, scenario: ScenarioLike, t) -> float:
        """``d load / d T0`` at ``t`` (negative): converts a multiplier into utility per second.

        ``load = lam (M(eta_0) - 1) / eta_0`` depends on ``T0`` through ``eta_0``,
        with ``d eta_0 / d T0 = -eta_0 / (T0 - 1 / (lam + eta_0))``.
        """
        self.bind(scenario)
        s = scenario.service_time(np.asarray(t, dtype=float))
        p, lam, r, T0 = scenario.probability, self.lam, self.eta, self.slo.max_system_time
        m = float(p @ self.mgf(s))
        dm = float(p @ (s * self._dlog_dr(s) * self.mgf(s)))  # d M / d eta
        dload = lam * (dm * r - (m - 1.0)) / (r * r)
        return dload * (-r / (T0 - 1.0 / (lam + r)))

    def _dlog_dr(self, s: np.ndarray) -> np.ndarray:
        """``(d / d eta) log M_i(eta; s) / s``."""
        c = self.c
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(c > 0, 1.0 / (1.0 - self.eta * c * s), 1.0)

    def conflict(self, scenario: ScenarioLike, lower, at: str, blame: str) -> str:
        """The feasibility message: the bound at the smallest budgets, in seconds."""
        T0, p = self.slo.max_system_time, self.slo.quantile
        bound = self.bound(scenario, lower)
        return (
            f"tail = {{ quantile = {p:g}, max_system_time = {T0:g} }} is below the bound on "
            f"the p{100 * p:g} system time {at} ({bound:.6g} s, the surrogate the "
            f"optimization holds; docs/tail.md); raise tail.max_system_time to at least "
            f"{bound:.6g} s{blame}"
        )

    def describe(self, scenario: ScenarioLike, t, multiplier: float | None) -> dict[str, Any]:
        """Report fields in seconds: the SLO, the surrogate bound, the exact percentile.

        ``limit``, ``value`` and ``slack`` become seconds (``max_system_time``, the
        surrogate bound at ``t`` and their difference: the same sign as the
        normalized slack), ``shadow_price`` utility per second of
        ``max_system_time``; the normalized form stays as ``load``.
        """
        T0 = self.slo.max_system_time
        t = np.asarray(t, dtype=float)
        bound = self.bound(scenario, t)
        load = self.value(scenario, t)
        # the held form decides the side of the limit (the bound is a root, rounded)
        shown = min(bound, T0) if load <= 1.0 else max(bound, np.nextafter(T0, math.inf))
        exact = system_time_quantiles(scenario, t, [self.slo.quantile])
        out: dict[str, Any] = {
            "quantile": self.slo.quantile,
            "limit": T0,
            "value": shown,
            "slack": T0 - shown,
            "unit": "s",
            "load": load,
            "surrogate": "Kingman bound on the wait with the scv at the smallest budgets",
            "bound": bound,
            "exact": float(exact.seconds[0]),
            "exact_method": exact.method,
        }
        if multiplier is not None:
            out["multiplier"] = float(multiplier)
            out["shadow_price"] = float(multiplier) * -self.seconds_per_load(scenario, t)
        return out
