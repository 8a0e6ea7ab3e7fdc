"""Accuracy-versus-tokens families: the single source of truth for each curve.

Layer: parts.

Each family is one small class holding its parameters as numpy arrays (one
entry per task type that uses it). It defines, in one place, the value
``A(t)``, the first and second derivatives, the inverse of the (strictly
decreasing) first derivative and the CVXPY expression used by the conic
reference, so the conic model and the custom solvers cannot drift apart.

Families (``t`` in tokens, all increasing and strictly concave):

* ``exponential``: ``A(t) = c - (c - f) exp(-t / tau)``
* ``power``:       ``A(t) = c - (c - f) (1 + t / tau) ** (-eta)``
* ``logarithmic``: ``A(t) = f + g log(1 + t / tau)``

:class:`AccuracyCurves` combines the families of a whole scenario and
evaluates them vectorized over all N types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ._source import array_source
from ._wright import wright_omega
from .errors import ScenarioError

if TYPE_CHECKING:  # CVXPY is imported by the conic forms only, when they are built.
    import cvxpy as cp

__all__ = [
    "AccuracyFamily",
    "Exponential",
    "Power",
    "Logarithmic",
    "AccuracyCurves",
    "FAMILIES",
]

ArrayLike = np.ndarray | float | Sequence[float]

#: Newton steps of the power family's solve before the bracketed fallback takes the rest
#: (from its starting point the error falls as e -> e^2 / 2: six steps from the worst).
_POWER_STEPS = 12
#: Exponents beyond this are capped in the exponential family's CVXPY form
#: (exp(-40) ~ 4e-18: invisible in double precision next to accuracies of order 1).
_EXP_CAP = 40.0


def _arr(x: ArrayLike) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=float))


def _log_ratio(t: cp.Expression, scale: np.ndarray, upper: np.ndarray | None) -> cp.Expression:
    """CVXPY ``log(1 + t / scale)`` for the log-based families' conic forms.

    Written ``log(scale + t) - log(scale)`` (measured to solve where
    ``log(1 + t/scale)`` stalls Clarabel) or, given an upper bound ``upper`` of
    ``t``, ``log((scale + t) / ref) + log(ref / scale)`` with ``ref = scale + upper``:
    the cone's argument is then at most one instead of a token count. Neither
    form suits Clarabel on every instance: the conic reference solves the
    unscaled one first and the scaled one when that fails (docs/solvers.md).
    """
    import cvxpy as cp

    if upper is None:
        return cp.log(_c(scale) + t) - np.log(_c(scale))
    ref = scale + np.asarray(upper, dtype=float)
    return cp.log(cp.multiply(_c(1.0 / ref), _c(scale) + t)) + _c(np.log(ref / scale))


def _c(x: np.ndarray) -> float | np.ndarray:
    """A parameter array as CVXPY wants it: a scalar when it is broadcast."""
    return float(x.flat[0]) if x.size == 1 else x


class AccuracyFamily:
    """Base class of an accuracy family with vectorized parameters.

    Subclasses set :attr:`name`, :attr:`params` (schema key -> attribute) and
    implement the numeric methods. All methods broadcast over the parameter
    arrays, so ``t`` has the length of the block (or is a scalar).
    """

    name: ClassVar[str]
    #: scenario-file key -> attribute name, in the order of the schema.
    params: ClassVar[dict[str, str]]
    #: keys that may be omitted, with their defaults.
    defaults: ClassVar[dict[str, float]] = {}

    def __len__(self) -> int:
        return int(np.broadcast(*[getattr(self, a) for a in self.params.values()]).size)

    def __repr__(self) -> str:
        """Python source that rebuilds the family (arrays summarized beyond 100 entries).

        >>> Exponential(floor=0.1, ceiling=[0.9, 0.8], scale=100)
        Exponential(floor=0.1, ceiling=[0.9, 0.8], scale=100.0)
        """
        args = ", ".join(f"{a}={array_source(getattr(self, a))}" for a in self.params.values())
        return f"{type(self).__name__}({args})"

    # --- numeric form -----------------------------------------------------
    def value(self, t: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Accuracy ``A(t)``."""
        raise NotImplementedError

    def d1(self, t: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """First derivative ``A'(t) > 0``."""
        raise NotImplementedError

    def d2(self, t: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Second derivative ``A''(t) < 0``."""
        raise NotImplementedError

    def d1_d2(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(A'(t), A''(t))`` together (families share their exponential or power)."""
        return self.d1(t), self.d2(t)

    def value_d1(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(A(t), A'(t))`` together (families share their exponential or power)."""
        return self.value(t), self.d1(t)

    def inverse(self, a: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Inverse of the accuracy: the ``t`` with ``A(t) = a`` (``inf`` where ``a`` is at
        or above the curve's ceiling; below ``A(0)`` the root is negative)."""
        raise NotImplementedError

    def inv_d1(self, y: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Inverse of the first derivative: the ``t`` with ``A'(t) = y``.

        Defined for ``y > 0`` (it may be negative when ``y > A'(0)``); returns
        ``+inf`` where ``y <= 0``.
        """
        raise NotImplementedError

    def solve_marginal(
        self,
        alpha: np.ndarray,
        beta: np.ndarray,
        t0: np.ndarray | None = None,
        rough: bool = False,
    ) -> np.ndarray:  # pragma: no cover - abstract
        """The ``t`` with ``A'(t) = alpha + beta t`` (``beta >= 0``; ``alpha > 0`` if ``beta = 0``).

        The per-type optimality condition of the aggregate solver: the
        marginal accuracy equals a marginal cost that grows linearly in ``t``.
        ``A'`` is strictly decreasing and the right side non-decreasing, so
        the root is unique (it may be negative; callers clip it to the box).
        Vectorized over the block; ``t0`` is an optional starting guess for
        the families solved iteratively. With ``rough`` the root may be off by
        about 1e-7 of itself or of ``tau`` (fewer refinements): a start for a
        method that refines it, such as the aggregate method's full-size Newton.
        """
        raise NotImplementedError

    # --- conic form -------------------------------------------------------
    def cvxpy(
        self, t: cp.Expression, upper: np.ndarray | None = None
    ) -> cp.Expression:  # pragma: no cover - abstract
        """Concave CVXPY expression of ``A(t)`` for an affine expression ``t``.

        ``upper``, optional, is an upper bound of ``t`` (per type): families whose
        conic form takes ``log(scale + t)`` divide its argument by ``scale + upper``,
        so the exponential cone holds entries of at most one instead of
        ``scale + t`` tokens (the same function; only the cone's scaling changes).
        """
        raise NotImplementedError

    # --- bookkeeping ------------------------------------------------------
    def take(self, idx: np.ndarray) -> AccuracyFamily:
        """The same family restricted to entries ``idx`` of its parameter arrays."""
        n = len(self)
        kw = {a: np.broadcast_to(getattr(self, a), (n,))[idx] for a in self.params.values()}
        return type(self)(**kw)

    def part(self, start: int, stop: int) -> AccuracyFamily:
        """The family on entries ``start:stop`` of its parameter arrays, as views (no copy).

        A parameter given once for every entry stays as it is.
        """
        kw = {}
        for a in self.params.values():
            v = getattr(self, a)
            kw[a] = v if v.size == 1 else v[start:stop]
        return type(self)(**kw)

    def param_dict(self, j: int) -> dict[str, float | str]:
        """Scenario-file parameters of entry ``j`` (``model`` plus the family keys)."""
        n = len(self)
        out: dict[str, float | str] = {"model": self.name}
        for key, attr in self.params.items():
            out[key] = float(np.broadcast_to(getattr(self, attr), (n,))[j])
        return out

    @classmethod
    def check(cls, where: str, values: Mapping[str, float]) -> None:
        """Raise :class:`ScenarioError` if one type's parameters are invalid."""
        for key, val in values.items():
            if not np.isfinite(val):
                raise ScenarioError(f"{where}: accuracy.{key} must be a finite number (got {val})")
        if values["scale"] <= 0:
            raise ScenarioError(
                f"{where}: accuracy.scale must be > 0 tokens (got {values['scale']})"
            )


@dataclass(eq=False, repr=False)
class Exponential(AccuracyFamily):
    """``A(t) = c - (c - f) exp(-t / tau)`` with ``f < c <= 1``, ``tau > 0``."""

    floor: np.ndarray
    ceiling: np.ndarray
    scale: np.ndarray

    name: ClassVar[str] = "exponential"
    params: ClassVar[dict[str, str]] = {"floor": "floor", "ceiling": "ceiling", "scale": "scale"}

    def __post_init__(self) -> None:
        self.floor, self.ceiling, self.scale = map(_arr, (self.floor, self.ceiling, self.scale))

    def value(self, t):
        return self.ceiling - (self.ceiling - self.floor) * np.exp(-t / self.scale)

    def d1(self, t):
        return (self.ceiling - self.floor) / self.scale * np.exp(-t / self.scale)

    def d2(self, t):
        return -(self.ceiling - self.floor) / self.scale / self.scale * np.exp(-t / self.scale)

    def d1_d2(self, t):
        rate, span, neg, k = self._rates
        d1 = k * np.exp(t * neg)
        return d1, d1 * neg

    def value_d1(self, t):
        rate, span, neg, _ = self._rates
        gap = span * np.exp(t * neg)
        return self.ceiling - gap, gap * rate

    @cached_property
    def _rates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(1 / tau, c - f, -1 / tau, (c - f) / tau)``, kept for the solvers' repeated
        sweeps (parameters are not changed after construction)."""
        rate, span = 1.0 / self.scale, self.ceiling - self.floor
        return rate, span, -rate, span * rate

    def inv_d1(self, y):
        y = np.asarray(y, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -self.scale * np.log(y * self.scale / (self.ceiling - self.floor))
        return np.where(y > 0, t, np.inf)

    def inverse(self, a):
        a = np.asarray(a, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = self.scale * np.log((self.ceiling - self.floor) / (self.ceiling - a))
        return np.where(a < self.ceiling, t, np.inf)

    def solve_marginal(self, alpha, beta, t0=None, rough=False):
        """Closed form through the Wright omega function.

        With ``C = c - f``, ``L = log(C / (beta tau^2))`` and
        ``x = L + alpha / (beta tau)``, the root is ``t = tau (L - log w)`` where
        ``w = omega(x)`` solves ``w + log w = x``. For ``x <= 1`` the same root
        is computed as ``tau (w - alpha / (beta tau))`` (no underflow of ``w``);
        where ``beta = 0`` or ``x`` overflows, ``t = tau log(C / (alpha tau))``
        (the limit, exact to rounding there).
        """
        alpha, beta = np.asarray(alpha, dtype=float), np.asarray(beta, dtype=float)
        tau = self.scale
        rate, span = self._rates[:2]
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            L = self._log_span_rate2 - np.log(beta)  # log(C / (beta tau^2))
            q = alpha / (beta * tau)
            x = L + q
            flat = ~np.isfinite(x)  # beta = 0, or x beyond floats
            if flat.any():
                x = np.where(flat, 0.0, x)
            w = wright_omega(x, 1 if rough else 2)
            t = tau * np.where(x > 1.0, L - np.log(w), w - q)
            if flat.any():
                t = np.where(flat, tau * np.log(span * rate / alpha), t)
        return t

    @cached_property
    def _log_span_rate2(self) -> np.ndarray:
        """``log((c - f) / tau^2)``, kept for :meth:`solve_marginal`."""
        rate, span = self._rates[:2]
        return np.log(span * rate * rate)

    def cvxpy(self, t, upper=None):
        import cvxpy as cp

        # exp(-min(t/tau, 40)) differs from exp(-t/tau) by < 5e-18 (below double
        # rounding of A), but keeps the exponential cone away from exp(-600), on
        # which Clarabel stalls (measured: wide boxes, N = 2000).
        u = cp.minimum(t / _c(self.scale), _EXP_CAP)
        return _c(self.ceiling) - cp.multiply(_c(self.ceiling - self.floor), cp.exp(-u))

    @classmethod
    def check(cls, where, values):
        super().check(where, values)
        f, c = values["floor"], values["ceiling"]
        if not c <= 1:
            raise ScenarioError(f"{where}: accuracy.ceiling must be <= 1 (got {c})")
        if not f < c:
            raise ScenarioError(
                f"{where}: accuracy.ceiling must be > floor (got ceiling {c} <= floor {f})"
            )
        if f < 0:
            raise ScenarioError(f"{where}: accuracy.floor must be >= 0 (got {f})")


@dataclass(eq=False, repr=False)
class Power(AccuracyFamily):
    """``A(t) = c - (c - f) (1 + t / tau) ** (-eta)`` with ``f < c <= 1``, ``eta > 0``."""

    floor: np.ndarray
    ceiling: np.ndarray
    scale: np.ndarray
    exponent: np.ndarray

    name: ClassVar[str] = "power"
    params: ClassVar[dict[str, str]] = {
        "floor": "floor",
        "ceiling": "ceiling",
        "scale": "scale",
        "exponent": "exponent",
    }
    defaults: ClassVar[dict[str, float]] = {"exponent": 1.0}

    def __post_init__(self) -> None:
        self.floor, self.ceiling, self.scale, self.exponent = map(
            _arr, (self.floor, self.ceiling, self.scale, self.exponent)
        )

    def value(self, t):
        return self.ceiling - (self.ceiling - self.floor) * (1 + t / self.scale) ** (-self.exponent)

    def d1(self, t):
        e = self.exponent
        return (self.ceiling - self.floor) * e / self.scale * (1 + t / self.scale) ** (-e - 1)

    def d2(self, t):
        e = self.exponent
        return (
            -(self.ceiling - self.floor)
            * e
            * (e + 1)
            / self.scale
            / self.scale
            * (1 + t / self.scale) ** (-e - 2)
        )

    def d1_d2(self, t):
        rate, k, _, ne1, ne1_rate = self._rates
        z = 1.0 + t * rate
        d1 = k * z**ne1
        return d1, d1 * ne1_rate / z

    def value_d1(self, t):
        rate, k, _, ne1, _ = self._rates
        z = 1.0 + t * rate
        d1 = k * z**ne1
        return self.ceiling - d1 * z / (self.exponent * rate), d1

    @cached_property
    def _rates(self) -> tuple[np.ndarray, ...]:
        """``(1 / tau, K = (c - f) eta / tau, eta + 1, -(eta + 1), -(eta + 1) / tau)``,
        kept for the solvers' repeated sweeps (parameters are not changed after
        construction)."""
        rate, e1 = 1.0 / self.scale, self.exponent + 1.0
        return rate, (self.ceiling - self.floor) * self.exponent * rate, e1, -e1, -e1 * rate

    def inv_d1(self, y):
        y = np.asarray(y, dtype=float)
        e = self.exponent
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            base = y * self.scale / ((self.ceiling - self.floor) * e)
            t = self.scale * (base ** (-1.0 / (e + 1)) - 1)
        return np.where(y > 0, t, np.inf)

    def inverse(self, a):
        a = np.asarray(a, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ratio = (self.ceiling - self.floor) / (self.ceiling - a)
            t = self.scale * np.expm1(np.log(ratio) / self.exponent)
        return np.where(a < self.ceiling, t, np.inf)

    def solve_marginal(self, alpha, beta, t0=None, rough=False):
        """Newton from above on a convex increasing form of the equation.

        With ``K = (c - f) eta / tau``, ``e1 = eta + 1``, ``c0 = alpha - beta tau``
        and ``c1 = beta tau`` the equation ``K z^(-e1) = c0 + c1 z`` in
        ``z = 1 + t / tau`` reads, for ``c0 >= 0`` in ``x = log z``,
        ``e1 x + log(c0 + c1 e^x) - log K = 0``, and for ``c0 < 0`` in
        ``x = log(alpha + beta t)``, ``x + e1 log(e^x - c0) - e1 log c1 - log K = 0``.
        Both are ``G(x) = m x + n log(P + Q e^x) - R = 0`` with ``P, Q >= 0`` and
        ``m, n > 0``: convex and increasing. Dropping either term of the sum
        lowers ``G``, so ``x0 = min((R - n log P) / m, (R - n log Q) / (m + n))``
        lies above the root, and Newton's iterates from there decrease to it
        monotonically, each error at most half the square of the previous one
        (``G'' / 2G' <= 1/2``): a few vectorized steps over every type, no
        bracketing. Types it leaves unconverged (none measured) go to
        :meth:`_solve_bracketed`, which ``t0`` may start.
        """
        alpha, beta = np.asarray(alpha, dtype=float), np.asarray(beta, dtype=float)
        tau, e1 = self.scale, self.exponent + 1.0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            logk = self._log_k
            c1 = beta * tau
            c0 = alpha - c1
            up = c0 >= 0  # x = log z; else x = log(alpha + beta t)
            P, Q = np.abs(c0), np.where(up, c1, 1.0)
            m, n = np.where(up, e1, 1.0), np.where(up, 1.0, e1)
            R = np.where(up, logk, logk + e1 * np.log(c1))
            x = np.minimum((R - n * np.log(P)) / m, (R - n * np.log(Q)) / (m + n))
            # A step of 1e-9 leaves an error of its square; rough, 1e-3 leaves below 1e-6.
            # Measured from the start above: three steps leave at most 4e-7 of the root
            # (rough), four rounding; the test waits until then.
            small = 1e-3 if rough else 1e-9
            for k in range(_POWER_STEPS):
                E = Q * np.exp(x)
                D = P + E
                step = (m * x + n * np.log(D) - R) / (m + n * (E / D))
                x = x - step
                if k >= 2:
                    done = np.abs(step) <= small * np.maximum(1.0, np.abs(x))
                    if done.all():
                        break
            t = np.where(up, tau * np.expm1(x), (np.exp(x) - alpha) / beta)
        bad = ~(done & np.isfinite(t))
        if bad.any():
            t = np.array(np.atleast_1d(t), dtype=float)
            idx = np.flatnonzero(np.broadcast_to(bad, t.shape))
            sub = self if len(self) == 1 else self.take(idx)

            def part(v):
                return np.broadcast_to(np.asarray(v, dtype=float), t.shape)[idx]

            t[idx] = sub._solve_bracketed(part(alpha), part(beta), None if t0 is None else part(t0))
        return t

    @cached_property
    def _log_k(self) -> np.ndarray:
        """``log((c - f) eta / tau)``, kept for :meth:`solve_marginal`."""
        return np.log(self._rates[1])

    def _solve_bracketed(self, alpha, beta, t0=None):
        """Safeguarded vectorized Newton in ``u = log(1 + t / tau)`` (the fallback).

        With ``K = (c - f) eta / tau`` the equation is
        ``G(u) = (eta + 1) u + log(alpha + beta tau (e^u - 1)) - log K = 0``,
        increasing in ``u``. For ``alpha > 0`` the root lies between 0 and
        ``u_a = log(K / alpha) / (eta + 1)`` (the root for ``beta = 0``); for
        ``alpha <= 0`` (and ``beta > 0``) between ``log(1 - alpha / (beta tau))``,
        where the right side vanishes, and ``log(1 + (K - alpha) / (beta tau))``,
        where it reaches ``K >= A'``. The bracket holds every Newton step; steps
        leaving it bisect it.
        """
        alpha, beta = np.asarray(alpha, dtype=float), np.asarray(beta, dtype=float)
        tau, e1 = self.scale, self.exponent + 1.0
        K = (self.ceiling - self.floor) * self.exponent / tau
        shape = np.broadcast_shapes(alpha.shape, beta.shape, tau.shape, e1.shape)
        alpha, beta = np.broadcast_to(alpha, shape), np.broadcast_to(beta, shape)
        bt, e1 = np.broadcast_to(beta * tau, shape), np.broadcast_to(e1, shape)
        logk = np.broadcast_to(np.log(K), shape)
        tau_b = np.broadcast_to(tau, shape)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ua = (logk - np.log(alpha)) / e1
            lo_u, hi_u = np.minimum(ua, 0.0), np.maximum(ua, 0.0)
            # alpha <= 0 (a queue whose marginal delay can be negative, c_a^2 < 1):
            # the root has a positive right side, t > -alpha / beta, and
            # A' <= K bounds it above: alpha + beta tau (e^u - 1) <= K.
            neg = alpha <= 0
            lo_u = np.where(neg, np.log1p(np.maximum(-alpha, 0.0) / bt), lo_u)
            hi_u = np.where(neg, np.log1p((np.exp(logk) - alpha) / bt), hi_u)
        if t0 is None:
            # G is convex where alpha >= beta tau (Newton from the right end
            # converges monotonically), concave otherwise (from the left end).
            # (alpha <= 0: from the right end too; the left end is G's pole.)
            u = np.where((alpha >= bt) | neg, hi_u, lo_u)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                u = np.log1p(np.maximum(np.broadcast_to(t0, shape) / tau_b, -1 + 1e-300))
            u = np.clip(np.nan_to_num(u, nan=0.0), lo_u, hi_u)
        u, lo_u, hi_u = u.copy(), lo_u.copy(), hi_u.copy()
        act = np.flatnonzero(hi_u > lo_u)
        for _ in range(200):
            if act.size == 0:
                break
            ua_, al, b_, e_, lk = u[act], alpha[act], bt[act], e1[act], logk[act]
            eu = np.exp(ua_)
            rhs = al + b_ * (eu - 1.0)
            ok = rhs > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                g = np.where(ok, e_ * ua_ + np.log(np.where(ok, rhs, 1.0)) - lk, -np.inf)
                dg = e_ + b_ * eu / rhs
                new = ua_ - g / dg
            lo_a = np.where(g <= 0, ua_, lo_u[act])
            hi_a = np.where(g >= 0, ua_, hi_u[act])
            bad = ~np.isfinite(new) | (new < lo_a) | (new > hi_a)
            # Near the pole of log(rhs) Newton's steps are tiny while g is far from
            # 0 (a tiny step would pass the test below): bisect there instead.
            pole = b_ * eu > 1e3 * e_ * rhs
            bad |= pole & (np.abs(new - ua_) < 1e-3 * (hi_a - lo_a)) & (np.abs(g) > 1e-6)
            new = np.where(bad, 0.5 * (lo_a + hi_a), new)
            scale = np.maximum(1.0, np.abs(new))
            # A Newton step of relative size <= 1e-9 leaves an error of order its
            # square (quadratic convergence): below rounding.
            done = (
                (g == 0)
                | (~bad & (np.abs(new - ua_) <= 1e-9 * scale))
                | (hi_a - lo_a <= 4e-16 * scale)
            )
            u[act], lo_u[act], hi_u[act] = new, lo_a, hi_a
            act = act[~done]
        return tau_b * np.expm1(u)

    def cvxpy(self, t, upper=None):
        # (1 + t/tau)^(-eta) = exp(-eta (log(tau + t) - log(tau))): exp of a convex
        # argument, so DCP with a vector of exponents and exact (no rational
        # approximation of eta). Measured against cp.power(..., approx=False): one
        # atom per distinct exponent took minutes to compile at N = 2000 and
        # Clarabel stalled (InsufficientProgress) on power cones at N = 10^4,
        # where this form compiles in 0.3 s and solves optimal.
        import cvxpy as cp

        r = _log_ratio(t, self.scale, upper)
        decay = cp.exp(-cp.multiply(_c(self.exponent), r))
        return _c(self.ceiling) - cp.multiply(_c(self.ceiling - self.floor), decay)

    @classmethod
    def check(cls, where, values):
        Exponential.check(where, {k: values[k] for k in ("floor", "ceiling", "scale")})
        for key, val in values.items():
            if not np.isfinite(val):
                raise ScenarioError(f"{where}: accuracy.{key} must be a finite number (got {val})")
        if values["exponent"] <= 0:
            raise ScenarioError(
                f"{where}: accuracy.exponent must be > 0 (got {values['exponent']})"
            )


@dataclass(eq=False, repr=False)
class Logarithmic(AccuracyFamily):
    """``A(t) = f + g log(1 + t / tau)`` with ``g > 0``, ``tau > 0``."""

    floor: np.ndarray
    gain: np.ndarray
    scale: np.ndarray

    name: ClassVar[str] = "logarithmic"
    params: ClassVar[dict[str, str]] = {"floor": "floor", "gain": "gain", "scale": "scale"}

    def __post_init__(self) -> None:
        self.floor, self.gain, self.scale = map(_arr, (self.floor, self.gain, self.scale))

    def value(self, t):
        return self.floor + self.gain * np.log1p(t / self.scale)

    def d1(self, t):
        return self.gain / (self.scale + t)

    def d2(self, t):
        return -self.gain / (self.scale + t) / (self.scale + t)

    def d1_d2(self, t):
        z = self.scale + t
        d1 = self.gain / z
        return d1, -d1 / z

    def inv_d1(self, y):
        y = np.asarray(y, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = self.gain / y - self.scale
        return np.where(y > 0, t, np.inf)

    def inverse(self, a):
        a = np.asarray(a, dtype=float)
        with np.errstate(over="ignore"):
            return self.scale * np.expm1((a - self.floor) / self.gain)

    def solve_marginal(self, alpha, beta, t0=None, rough=False):
        """Closed form: with ``z = tau + t``, ``beta z^2 + (alpha - beta tau) z - g = 0``.

        The positive root is taken in the cancellation-free form for the sign
        of ``alpha - beta tau``.
        """
        alpha, beta = np.asarray(alpha, dtype=float), np.asarray(beta, dtype=float)
        tau, g = self.scale, self.gain
        c = alpha - beta * tau
        root = np.sqrt(c * c + 4.0 * beta * g)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(c >= 0, 2.0 * g / (c + root), (root - c) / (2.0 * beta))
        return z - tau

    def cvxpy(self, t, upper=None):
        import cvxpy as cp

        return _c(self.floor) + cp.multiply(_c(self.gain), _log_ratio(t, self.scale, upper))

    @classmethod
    def check(cls, where, values):
        super().check(where, values)
        if values["gain"] <= 0:
            raise ScenarioError(f"{where}: accuracy.gain must be > 0 (got {values['gain']})")
        if values["floor"] < 0:
            raise ScenarioError(f"{where}: accuracy.floor must be >= 0 (got {values['floor']})")


FAMILIES: dict[str, type[AccuracyFamily]] = {
    cls.name: cls for cls in (Exponential, Power, Logarithmic)
}


class AccuracyCurves:
    """The accuracy curves of all N types: blocks of families with their indices.

    Parameters
    ----------
    blocks : sequence of (AccuracyFamily, index array)
        Each family instance covers the types at the given indices; together
        the indices partition ``range(n)``.
    n : int
        Number of task types.
    """

    def __init__(self, blocks: Sequence[tuple[AccuracyFamily, np.ndarray]], n: int) -> None:
        self.n = int(n)
        self.blocks: list[tuple[AccuracyFamily, np.ndarray | slice]] = []
        seen = np.zeros(self.n, dtype=int)
        for fam, idx in blocks:
            idx = np.asarray(idx, dtype=np.intp)
            if len(idx) == 0:
                continue
            if len(fam) not in (1, len(idx)):
                raise ValueError("family parameter length does not match its indices")
            seen[idx] += 1
            full = len(idx) == self.n and np.array_equal(idx, np.arange(self.n))
            self.blocks.append((fam, slice(None) if full else idx))
        if not np.all(seen == 1):
            raise ValueError("accuracy blocks must cover every type exactly once")

    def __repr__(self) -> str:
        """Python source that rebuilds the curves (names from :mod:`cvxalloc.accuracy`).

        >>> AccuracyCurves([(Power(0.2, 0.9, 50.0, [1.0, 2.0]), [0, 2]),
        ...                 (Logarithmic(0.1, 0.05, 10.0), [1])], 3)
        AccuracyCurves([(Power(floor=0.2, ceiling=0.9, scale=50.0, exponent=[1.0, 2.0]), [0, 2]), \
(Logarithmic(floor=0.1, gain=0.05, scale=10.0), [1])], n=3)
        """
        if len(self.blocks) == 1 and isinstance(self.blocks[0][1], slice):
            return f"AccuracyCurves.single({self.blocks[0][0]!r}, n={self.n})"
        blocks = ", ".join(
            f"({fam!r}, {array_source(np.arange(self.n)[idx])})" for fam, idx in self.blocks
        )
        return f"AccuracyCurves([{blocks}], n={self.n})"

    @classmethod
    def single(cls, family: AccuracyFamily, n: int) -> AccuracyCurves:
        """All ``n`` types use one family instance (parameters broadcast)."""
        return cls([(family, np.arange(n))], n)

    def _apply(self, method: str, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        out = np.empty(self.n)
        for fam, idx in self.blocks:
            out[idx] = getattr(fam, method)(x[idx] if x.ndim else x)
        return out

    def value(self, t: np.ndarray) -> np.ndarray:
        """Accuracy of every type at ``t``."""
        return self._apply("value", t)

    def inverse(self, a: np.ndarray) -> np.ndarray:
        """Per type, the ``t`` with ``A_i(t) = a_i`` (closed form in every family).

        >>> from cvxalloc.accuracy import Exponential
        >>> c = AccuracyCurves.single(Exponential(floor=0.2, ceiling=0.9, scale=1000.0), 2)
        >>> t = c.inverse(np.array([0.5, 0.95]))
        >>> bool(np.isclose(c.value(t[:1])[0], 0.5)), bool(t[1] == np.inf)
        (True, True)
        """
        return self._apply("inverse", a)

    def d1(self, t: np.ndarray) -> np.ndarray:
        """First derivatives at ``t``."""
        return self._apply("d1", t)

    def value_d1(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(A(t), A'(t))`` of every type in one pass (families share their exponential
        or power: about 40% less than :meth:`value` and :meth:`d1` apart)."""
        x = np.asarray(t, dtype=float)
        val, der = np.empty(self.n), np.empty(self.n)
        for fam, idx in self.blocks:
            val[idx], der[idx] = fam.value_d1(x[idx] if x.ndim else x)
        return val, der

    def d2(self, t: np.ndarray) -> np.ndarray:
        """Second derivatives at ``t``."""
        return self._apply("d2", t)

    def inv_d1(self, y: np.ndarray) -> np.ndarray:
        """Per type, the ``t`` with ``A_i'(t) = y_i`` (``+inf`` where ``y_i <= 0``)."""
        return self._apply("inv_d1", y)

    def solve_marginal(
        self,
        alpha: np.ndarray,
        beta: np.ndarray,
        t0: np.ndarray | None = None,
        lo: np.ndarray | None = None,
        hi: np.ndarray | None = None,
        d1_bounds: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Per type, the ``t`` with ``A_i'(t) = alpha_i + beta_i t``.

        See :meth:`AccuracyFamily.solve_marginal`; ``beta >= 0`` and ``alpha > 0``
        where ``beta = 0`` (arrays of length ``n``), ``t0`` an optional starting guess. With
        ``lo`` and ``hi`` the root is returned clipped to ``[lo, hi]``, and
        types whose root lies outside are decided by the signs at the bounds
        without solving; ``d1_bounds = (d1(lo), d1(hi))`` may be passed to reuse
        them across calls.
        """
        alpha = np.broadcast_to(np.asarray(alpha, dtype=float), (self.n,))
        beta = np.broadcast_to(np.asarray(beta, dtype=float), (self.n,))
        if (lo is None) != (hi is None):
            raise ValueError("give both lo and hi, or neither")
        out = np.empty(self.n)
        for fam, idx in self.blocks:
            al, be = alpha[idx], beta[idx]
            guess = None if t0 is None else np.asarray(t0, dtype=float)[idx]
            if lo is None:
                out[idx] = fam.solve_marginal(al, be, guess)
                continue
            lo_b, hi_b = np.asarray(lo, dtype=float)[idx], np.asarray(hi, dtype=float)[idx]
            # A' - (alpha + beta t) is decreasing: its signs at the bounds tell
            # which types are clipped, and only the others need the root.
            if d1_bounds is None:
                d_lo, d_hi = fam.d1(lo_b), fam.d1(hi_b)
            else:
                d_lo, d_hi = d1_bounds[0][idx], d1_bounds[1][idx]
            # (0 * inf is 0 here: an infinite price on tokens at zero tokens costs nothing)
            with np.errstate(invalid="ignore"):
                at_lo = d_lo <= al + np.where(lo_b > 0, be * lo_b, 0.0)
                at_hi = ~at_lo & (d_hi >= al + be * hi_b)
            res = np.where(at_lo, lo_b, hi_b)
            inner = np.flatnonzero(~(at_lo | at_hi))
            if inner.size:
                sub = fam if len(fam) == 1 else fam.take(inner)
                g_in = None if guess is None else guess[inner]
                res[inner] = np.clip(
                    sub.solve_marginal(al[inner], be[inner], g_in), lo_b[inner], hi_b[inner]
                )
            out[idx] = res
        return out

    def weighted_cvxpy(
        self, t: cp.Expression, weights: np.ndarray, upper: np.ndarray | None = None
    ) -> cp.Expression:
        """CVXPY expression of ``sum_i weights_i A_i(t_i)`` (concave for weights >= 0).

        ``upper``, optional, bounds ``t`` above per type and scales the cones
        (see :meth:`AccuracyFamily.cvxpy`).
        """
        import cvxpy as cp

        terms = []
        for fam, idx in self.blocks:
            up = None if upper is None else np.asarray(upper, dtype=float)[idx]
            if isinstance(idx, slice):
                terms.append(weights @ fam.cvxpy(t, up))
            else:
                terms.append(weights[idx] @ fam.cvxpy(t[idx], up))
        return cp.sum(cp.hstack(terms)) if len(terms) > 1 else terms[0]

    def family_of(self, i: int) -> tuple[AccuracyFamily, int]:
        """The family covering type ``i`` and ``i``'s position inside it."""
        for fam, idx in self.blocks:
            if isinstance(idx, slice):
                return fam, (i if len(fam) > 1 else 0)
            pos = np.flatnonzero(idx == i)
            if pos.size:
                return fam, (int(pos[0]) if len(fam) > 1 else 0)
        raise IndexError(i)

    def param_dict(self, i: int) -> dict[str, float | str]:
        """Scenario-file accuracy table of type ``i``."""
        fam, j = self.family_of(i)
        return fam.param_dict(j)

    def take(self, idx: np.ndarray) -> AccuracyCurves:
        """Curves of the types ``idx`` (in that order)."""
        idx = np.asarray(idx, dtype=np.intp)
        where = np.full(self.n, -1, dtype=np.intp)
        where[idx] = np.arange(len(idx))
        blocks = []
        for fam, bidx in self.blocks:
            members = np.arange(self.n)[bidx]
            keep = where[members] >= 0
            if not keep.any():
                continue
            sub = fam if len(fam) == 1 else fam.take(np.flatnonzero(keep))
            blocks.append((sub, where[members[keep]]))
        return AccuracyCurves(blocks, len(idx))

    def grouped(self) -> tuple[np.ndarray | None, list[tuple[AccuracyFamily, int, int]]]:
        """The types reordered so that each family instance covers a contiguous range.

        Returns ``(order, ranges)``: ``order`` the permutation (types ``order[j]``,
        in that order, are the new positions ``j``; ``None`` when the curves are
        one block already, the common case, so nothing is copied) and ``ranges``
        the ``(family, start, stop)`` of each block in the new order. Solvers
        that sweep every type many times (:class:`cvxalloc.solvers.packed.Packed`)
        reorder their arrays once instead of gathering each block on every pass.
        """
        if len(self.blocks) == 1 and isinstance(self.blocks[0][1], slice):
            return None, [(self.blocks[0][0], 0, self.n)]
        order = np.concatenate(
            [np.arange(self.n)[idx] if isinstance(idx, slice) else idx for _, idx in self.blocks]
        )
        ranges, start = [], 0
        for fam, idx in self.blocks:
            size = self.n if isinstance(idx, slice) else len(idx)
            ranges.append((fam, start, start + size))
            start += size
        return order, ranges

    @property
    def family_names(self) -> list[str]:
        """Family name of each type."""
        names = np.empty(self.n, dtype=object)
        for fam, idx in self.blocks:
            names[idx] = fam.name
        return list(names)
