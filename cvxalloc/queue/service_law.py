"""The service-time law of an allocation: a mixture over task types of gamma or constant laws.

A type-``i`` query takes ``S_i`` seconds with mean ``s_i`` and variance
``k_i s_i^2 + v_i`` (the model's two moments). The law that has those moments
is the one the simulator draws (:func:`cvxalloc.simulate.service_distribution`,
held to agree by a test): a gamma law with shape ``s_i^2 / var_i`` and scale
``var_i / s_i``, or the constant ``s_i`` where the variance is 0. The service
time of a query is the mixture ``S = S_I`` with ``P(I = i) = p_i``.

:class:`ServiceLaw` holds the mixture as components (weight, mean, variance)
and evaluates what the tail computations need, vectorized over components:
the distribution function, the density of its continuous part, the
Laplace-Stieltjes transform ``E[exp(-z S)]`` at complex points (with
``1 - E[exp(-z S)]`` computed without cancellation), and ``E[min(S, y)]``.

Equal components are merged, so a mixture of many types with few distinct
laws costs what those few cost. Above ``max_components`` distinct laws
:meth:`ServiceLaw.compressed` replaces it by a smaller mixture that keeps the
first three moments of every cell of similar laws (:mod:`.compress`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._lazy import special
from ..errors import ScenarioError
from ..protocols import ScenarioLike

__all__ = ["ServiceLaw"]


@dataclass(frozen=True, eq=False)
class ServiceLaw:
    """A mixture of gamma and constant service-time laws.

    Parameters
    ----------
    weight : ndarray
        Probability of each component (positive; they sum to 1).
    mean : ndarray
        Mean of each component in seconds (``>= 0``).
    variance : ndarray
        Variance of each component (``>= 0``; 0 is a constant law).
    exact : bool
        False when the components are a compression of the types' laws.
    types : int
        Number of task types the law stands for.
    """

    weight: np.ndarray
    mean: np.ndarray
    variance: np.ndarray
    exact: bool = True
    types: int = 0

    def __post_init__(self) -> None:
        arrays = (self.weight, self.mean, self.variance)
        w, m, v = (np.atleast_1d(np.asarray(a, dtype=float)) for a in arrays)
        det = v <= 0
        with np.errstate(divide="ignore", invalid="ignore"):
            shape = np.where(det, np.inf, m * m / np.where(det, 1.0, v))
            scale = np.where(det, 0.0, v / np.where(m > 0, m, 1.0))
        lg = special.gammaln(np.where(det, 1.0, shape))
        log_scale = np.log(np.where(det, 1.0, np.maximum(scale, 1e-300)))
        for name, val in (
            ("weight", w),
            ("mean", m),
            ("variance", np.where(det, 0.0, v)),
            ("deterministic", det),
            ("shape", shape),
            ("scale", scale),
            ("_lognorm", np.where(det, 0.0, -lg - log_scale)),
            ("_lgamma1", lg + np.log(np.where(det, 1.0, shape))),
        ):
            val.setflags(write=False)
            object.__setattr__(self, name, val)
        object.__setattr__(self, "types", int(self.types or w.size))

    # --- construction ---------------------------------------------------------
    @classmethod
    def of(cls, probability, mean, scv, variance) -> ServiceLaw:
        """The law of the types: mean ``s_i``, variance ``k_i s_i^2 + v_i``; equal laws merged.

        Raises
        ------
        ScenarioError
            Where a type has mean 0 but positive variance (no non-negative law
            has these moments), as the simulator does.
        """
        p = np.asarray(probability, dtype=float)
        s = np.asarray(mean, dtype=float)
        var = np.asarray(scv, dtype=float) * s * s + np.asarray(variance, dtype=float)
        bad = (var > 0) & (s <= 0)
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise ScenarioError(
                f"task {i + 1}: mean service time is 0 but service.variance is {var[i]:g}; "
                "no non-negative service time has these moments: raise service.base or set "
                "service.variance = 0"
            )
        keep = p > 0
        p, s, var = p[keep], s[keep], np.maximum(var[keep], 0.0)
        n = int(keep.sum())
        uniq, inverse = np.unique(s + 1j * var, return_inverse=True)  # (mean, variance) pairs
        if uniq.size < p.size:
            p = np.bincount(inverse.ravel(), weights=p, minlength=uniq.size)
            s, var = uniq.real.copy(), uniq.imag.copy()
        return cls(p / p.sum(), s, var, exact=True, types=n)

    @classmethod
    def of_scenario(cls, scenario: ScenarioLike, tokens) -> ServiceLaw:
        """The service law of ``scenario`` under the allocation ``tokens``."""
        return cls.of(
            scenario.probability,
            scenario.service_time(np.asarray(tokens, dtype=float)),
            scenario.scv,
            scenario.variance,
        )

    @property
    def size(self) -> int:
        """Number of components."""
        return int(self.weight.size)

    def take(self, mask: np.ndarray) -> ServiceLaw:
        """The components in ``mask`` (weights not renormalized: a defective law)."""
        return ServiceLaw(
            self.weight[mask], self.mean[mask], self.variance[mask], self.exact, self.types
        )

    # --- moments --------------------------------------------------------------
    def moment(self, r: int) -> float:
        """``E[S^r]`` for ``r = 0, 1, 2, 3, ...`` (gamma: ``s^r prod_{j<r} (1 + j c)``)."""
        m = self.mean
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(m > 0, self.variance / np.where(m > 0, m * m, 1.0), 0.0)
        out = np.ones_like(m)
        for j in range(r):
            out = out * m * (1.0 + j * c)
        return float(self.weight @ out)

    # --- distribution ---------------------------------------------------------
    def cdf(self, x) -> np.ndarray:
        """``P(S <= x)`` elementwise on ``x`` (atoms included at their point)."""
        return 1.0 - self.ccdf(x)

    def atoms(self, x) -> np.ndarray:
        """``P(S = x)``: the mass of the deterministic services at each ``x``."""
        x = np.atleast_1d(np.asarray(x, dtype=float))
        det = self.deterministic
        if not det.any():
            return np.zeros_like(x)
        return (self.mean[det][None, :] == x[:, None]) @ self.weight[det]

    def atom_points(self) -> np.ndarray:
        """Where the service distribution jumps (the deterministic services, sorted)."""
        det = self.deterministic
        return np.sort(self.mean[det]) if det.any() else np.zeros(0)

    def ccdf(self, x) -> np.ndarray:
        """``P(S > x)`` elementwise on ``x``.

        A gamma component's term is 0 to rounding (below ``e^{-40}``) where
        ``y = x / scale > a + 12 sqrt(a) + 40``, and 1 where
        ``P(S <= x) <= y^a / Gamma(a + 1) < e^{-40}``; only the others are computed.
        """
        x = np.asarray(x, dtype=float)
        flat = x.reshape(-1, 1)
        det = self.deterministic
        out = np.zeros(flat.shape[0])
        if det.any():
            out += (self.mean[det][None, :] > flat) @ self.weight[det]
        g = ~det
        if g.any():
            a, w = self.shape[g], self.weight[g]
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.maximum(flat, 0.0) / self.scale[g][None, :]
                low = a[None, :] * np.log(y) - self._lgamma1[g][None, :] < -40.0
            live = (y <= (a + 12.0 * np.sqrt(a) + 40.0)[None, :]) & ~low
            rows, cols = np.nonzero(live)
            vals = _upper_gamma(a[cols], y[rows, cols], self._lgamma1[g][cols]) * w[cols]
            out += np.bincount(rows, vals, flat.shape[0]) + low @ w
        return out.reshape(x.shape)

    def pdf(self, x) -> np.ndarray:
        """Density of the continuous (gamma) part at ``x > 0`` (atoms left out)."""
        x = np.asarray(x, dtype=float)
        flat = x.reshape(-1, 1)
        g = ~self.deterministic
        if not g.any():
            return np.zeros(x.shape)
        a, th = self.shape[g][None, :], self.scale[g][None, :]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            y = flat / th
            logf = (a - 1.0) * np.log(y) - y + self._lognorm[g][None, :]
            dens = np.where(flat > 0, np.exp(logf), 0.0)
        return (dens @ self.weight[g]).reshape(x.shape)

    def mean_min(self, y) -> np.ndarray:
        """``E[min(S, y)]`` elementwise on ``y`` (0 for ``y <= 0``).

        For a gamma component ``E[min(S, y)] = y P(S > y) + s P(S' <= y)`` with
        ``S'`` gamma of shape ``a + 1`` and the same scale (size-biased law).
        """
        y = np.asarray(y, dtype=float)
        flat = np.maximum(y.reshape(-1, 1), 0.0)
        det = self.deterministic
        out = np.zeros(flat.shape[0])
        if det.any():
            out += np.minimum(self.mean[det][None, :], flat) @ self.weight[det]
        g = ~det
        if g.any():
            a, th, s = self.shape[g][None, :], self.scale[g][None, :], self.mean[g][None, :]
            u = flat / th
            val = flat * special.gammaincc(a, u) + s * special.gammainc(a + 1.0, u)
            out += val @ self.weight[g]
        return out.reshape(y.shape)

    # --- transform ------------------------------------------------------------
    def transform(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``E[exp(-z S)]`` and ``1 - E[exp(-z S)]`` at complex ``z`` (``Re z >= 0``).

        Both are sums over components of ``exp(L)`` and ``-expm1(L)`` with
        ``L = -a log(1 + theta z)`` (gamma) or ``L = -s z`` (constant), written
        in real arithmetic (``log1p``, ``atan2``) so that ``1 - E[exp(-z S)]``
        keeps its relative accuracy for small ``|z|``.
        """
        z = np.asarray(z, dtype=complex)
        shape = z.shape
        zr, zi = z.real.reshape(-1, 1), z.imag.reshape(-1, 1)
        det = self.deterministic
        lst = np.zeros(zr.shape[0], dtype=complex)
        one_minus = np.zeros(zr.shape[0], dtype=complex)
        g = ~det
        if g.any():
            th, a = self.scale[g][None, :], self.shape[g][None, :]
            ta, tb = th * zr, th * zi
            lr = np.log1p(ta * (2.0 + ta) + tb * tb)
            lr *= -0.5 * a
            li = np.arctan2(tb, 1.0 + ta)
            li *= -a
            e, om = _exp_pair(lr, li, self.weight[g])
            lst += e
            one_minus += om
        if det.any():
            s = self.mean[det][None, :]
            e, om = _exp_pair(-s * zr, -s * zi, self.weight[det])
            lst += e
            one_minus += om
        return lst.reshape(shape), one_minus.reshape(shape)


#: Below this argument the regularized incomplete gamma function is summed as a series
#: (SciPy's takes 1 to 3 microseconds there for shapes below 1, against 0.1 above).
SERIES_BELOW = 2.0
SERIES_TERMS = 32


def _upper_gamma(a: np.ndarray, y: np.ndarray, lgamma1: np.ndarray) -> np.ndarray:
    """``Q(a, y) = P(G > y)`` for ``G`` gamma of shape ``a`` and scale 1, elementwise.

    For ``y < 2`` as ``1 - P(a, y)`` with the series
    ``P(a, y) = y^a e^{-y} / Gamma(a + 1) sum_k y^k / ((a + 1) ... (a + k))``
    (32 terms: the remainder is below ``2^32 / 32! ~ 2e-26`` of the sum),
    elsewhere SciPy's ``gammaincc``. ``lgamma1`` is ``log Gamma(a + 1)``.
    """
    out = np.empty_like(y)
    small = y < SERIES_BELOW
    big = ~small
    out[big] = special.gammaincc(a[big], y[big])
    if small.any():
        aa, yy = a[small], y[small]
        term = np.ones_like(yy)
        total = np.ones_like(yy)
        for k in range(1, SERIES_TERMS + 1):
            term *= yy / (aa + k)
            total += term
        with np.errstate(divide="ignore"):
            pref = np.exp(aa * np.log(yy) - yy - lgamma1[small])
        out[small] = 1.0 - pref * total
    return out


def _half_angle(li: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``2 sin(li / 2)^2`` and ``sin(li)``, through ``tan`` of a quarter of the reduced angle.

    (NumPy's float64 ``tan`` is vectorized, ``sin`` and ``cos`` are not: about 1 ns
    per value against 25.) With ``r = li - 2 pi k`` in ``[-pi, pi]`` and
    ``u = tan(r / 4)`` in ``[-1, 1]``: ``sin(r / 2) = 2u / (1 + u^2)``,
    ``cos(r / 2) = (1 - u^2) / (1 + u^2)``; the shift by ``2 pi k`` changes the sign
    of both, which the two results do not see.
    """
    r = li - (2.0 * np.pi) * np.round(li * (0.5 / np.pi))
    u = np.tan(0.25 * r)
    u2 = u * u
    inv = 1.0 / (1.0 + u2)
    h = 2.0 * u * inv  # sin(r / 2)
    hc = (1.0 - u2) * inv  # cos(r / 2)
    return 2.0 * h * h, 2.0 * h * hc


def _exp_pair(lr: np.ndarray, li: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sum_j w_j exp(L_j)`` and ``-sum_j w_j expm1(L_j)`` for ``L = lr + i li`` (rows summed).

    The second keeps its relative accuracy for small ``|L|``:
    ``expm1(L) = expm1(lr) cos li - 2 sin(li / 2)^2 + i exp(lr) sin li``.
    """
    h2, sin_li = _half_angle(li)
    cos_li = 1.0 - h2
    big = np.exp(lr)
    im = (big * sin_li) @ w
    re = (big * cos_li) @ w
    om = (h2 - np.expm1(lr) * cos_li) @ w
    return re + 1j * im, om - 1j * im
