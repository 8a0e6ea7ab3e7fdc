"""The bursty FIFO wait as a geometric sum of ladder heights (gamma gaps of scv above 1).

The FIFO wait of any GI/G/1 queue is the maximum of a random walk, hence (Wiener-Hopf)
a geometric sum: ``W = H_1 + ... + H_N`` with ``P(N >= n) = sigma^n``, ``sigma =
P(W > 0)``, and ``H`` the walk's ascending ladder height. For Poisson arrivals
``sigma = rho`` and ``H`` is the excess of the service time ``S`` (Pollaczek-Khinchine);
for exponential services ``H`` is the service law itself (GI/M/1). For gamma gaps of
shape ``alpha = 1 / c_a^2`` the light-traffic limit of ``H`` is known in the same
form: a query waits when the gap ``A`` before it is below the previous query's
remaining time ``S``, with probability about ``(alpha lam S)^alpha / Gamma(1 + alpha)``
(the gaps' density near 0 is ``~ a^(alpha - 1)``), so the wait is ``S - A`` with ``S``
tilted by ``s^alpha`` and ``A / S`` of density ``~ u^(alpha - 1)`` on ``(0, 1)``::

    H_alpha = S~ U,    S~ : S tilted by s^alpha,    U ~ Beta(1, alpha),
    P(H_alpha > y) = E[(S - y)_+^alpha] / E[S^alpha].

``alpha = 1`` is the excess (length-biased ``S`` times a uniform): the M/G/1 wait; a
gamma service of shape ``a`` tilts to shape ``a + alpha``, and for ``a = 1`` the ladder
height is exponential with the service's mean whatever ``alpha`` (the GI/M/1 wait);
for a gamma service of any shape ``E[H_alpha] = m1 (c_a^2 + c_s^2) / (1 + c_a^2)``,
so with ``sigma`` of the GI/M/1 queue the mean wait is Kingman's in heavy traffic.
Burstier gaps (smaller ``alpha``) weigh short services more than the excess does (a
query in a burst waits the whole of a short service) and spread the wait: the
positive wait of the scaled M/G/1 rule was too concentrated at light load.

For the transforms, ``U``'s law is split as ``alpha`` uniform plus ``1 - alpha`` the
rest (density ``alpha ((1 - u)^(alpha - 1) - 1) / (1 - alpha)``): the uniform part
gives ``S~`` times a uniform, in closed form (for a gamma component of shape ``b`` and
scale ``theta``, ``(1 - (1 + theta z)^(1 - b)) / ((b - 1) theta z)``); the rest is a
gamma law per component with that part's two moments. So ``H`` has its exact first two
moments, is continuous in ``alpha`` and is the exact excess at ``alpha = 1``.
"""

from __future__ import annotations

import numpy as np

from .._lazy import special
from .service_law import ServiceLaw, _exp_pair
from .waiting import MaybeWait

__all__ = ["LadderWait", "fractional_moment", "ladder_moments"]


def fractional_moment(law: ServiceLaw, r: float) -> np.ndarray:
    """``E[S_i^r]`` of every component (``r > -shape``; ``d^r`` for a constant ``d``)."""
    det = law.deterministic
    with np.errstate(divide="ignore", invalid="ignore"):
        const = np.where(law.mean > 0, law.mean, 0.0) ** r if r > 0 else law.mean**r
        a = np.where(det, 1.0, law.shape)
        th = np.where(det, 1.0, law.scale)
        gam = np.exp(r * np.log(th) + _log_poch(a, r))
    return np.where(det, const, gam)


def _log_poch(a: np.ndarray, r: float) -> np.ndarray:
    """``log(Gamma(a + r) / Gamma(a))`` without the cancellation of two ``gammaln`` at large
    ``a`` (a service of scv ``1e-12`` has shape ``1e12``): ``r log a + log1p(r (r - 1) /
    (2 a))`` above ``1e6`` (error of order ``a^-2``), SciPy's ``poch`` below."""
    big = a > 1e6
    small = np.log(special.poch(np.where(big, 1.0, a), r))
    large = r * np.log(np.where(big, a, 1.0)) + np.log1p(
        r * (r - 1.0) / (2.0 * np.where(big, a, 1.0))
    )
    return np.where(big, large, small)


def ladder_moments(law: ServiceLaw, alpha: float) -> tuple[float, float]:
    """``E[H_alpha]`` and ``E[H_alpha^2]``: ``E[S^(alpha + k)] / E[S^alpha]`` times
    ``E[U^k]`` of ``U ~ Beta(1, alpha)`` (``1 / (1 + alpha)``, ``2 / ((1 + alpha)(2 + alpha))``)."""
    w = law.weight
    base = float(w @ fractional_moment(law, alpha))
    m1 = float(w @ fractional_moment(law, alpha + 1.0)) / base
    m2 = float(w @ fractional_moment(law, alpha + 2.0)) / base
    return m1 / (1.0 + alpha), 2.0 * m2 / ((1.0 + alpha) * (2.0 + alpha))


class LadderWait(MaybeWait):
    """``T = S`` with probability ``1 - sigma``, else ``S + c (H_1 + ... + H_N)``,
    ``N >= 1`` geometric (``P(N > n) = sigma^n``), ``H`` the ladder law of gaps of
    shape ``alpha`` (module docstring).

    Parameters
    ----------
    law : ServiceLaw
        The service law the wait is built from (perhaps a compression of ``service``).
    sigma : float
        The probability of a wait, in ``[0, 1)``.
    alpha : float
        The gaps' gamma shape ``1 / c_a^2``, in ``(0, 1]``.
    scale : float
        ``c``: the ladder heights' scale (1: the light-traffic law).
    service : ServiceLaw, optional
        The exact law of the no-wait term (default ``law``).
    tol : float, optional
        Target absolute error of ``P(T > x)`` in the inversion (default ``MaybeWait.tol``).
    """

    def __init__(self, law: ServiceLaw, sigma: float, alpha: float, scale: float = 1.0,
                 service: ServiceLaw | None = None, tol: float | None = None) -> None:  # fmt: skip
        self.law, self.service = law, law if service is None else service
        if tol is not None:
            self.tol = tol
        self.sigma, self.alpha, self.c = float(sigma), float(alpha), float(scale)
        tilt = law.weight * fractional_moment(law, alpha)
        tilt = tilt / tilt.sum()
        det = law.deterministic
        # S~: gamma of shape a + alpha (same scale), or the constant itself
        b = np.where(det, 1.0, law.shape + alpha)
        mean_t = np.where(det, law.mean, b * law.scale)
        second_t = np.where(det, law.mean**2, b * (b + 1.0) * law.scale**2)
        # the uniform part S~ U (closed form) and the rest S~ V (gamma, two moments)
        self._uniform = (tilt, det, b, law.scale, law.mean)
        v1, v2 = _rest_moments(alpha)
        mean_v, second_v = mean_t * v1, second_t * v2
        self._rest = ServiceLaw(tilt, mean_v, np.maximum(second_v - mean_v**2, 0.0))
        h1, h2 = ladder_moments(law, alpha)
        s = self.sigma
        self.wait_mean = self.c * h1 / (1.0 - s)  # E[W | W > 0]
        self.wait_second = self.c**2 * (
            (h2 - h1 * h1) / (1.0 - s) + (1 + s) * h1 * h1 / (1 - s) ** 2
        )
        m1 = self.service.moment(1)
        self.mean = m1 + s * self.wait_mean
        var_s = self.service.moment(2) - m1 * m1
        self.variance = var_s + s * self.wait_second - (s * self.wait_mean) ** 2

    def ladder(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``E[exp(-z c H)]`` and one minus it."""
        z = self.c * np.asarray(z, dtype=complex)
        a = self.alpha
        u, u1 = _uniform_part(z, *self._uniform)
        r, r1 = self._rest.transform(z) if a < 1 else (0.0 * z, 0.0 * z)
        return a * u + (1 - a) * r, a * u1 + (1 - a) * r1

    def _transform(self, z: np.ndarray) -> np.ndarray:
        """Transforms of ``P(S + W+ > x)`` and of its density (``W+``: the positive wait)."""
        s, s1 = self.law.transform(z)
        h, h1 = self.ladder(z)
        den = 1.0 - self.sigma * h
        w = (1.0 - self.sigma) * h / den
        w1 = h1 / den
        return np.stack([(s1 + s * w1) / z, s * w])


def _rest_moments(alpha: float) -> tuple[float, float]:
    """``E[V]``, ``E[V^2]`` of ``V``, the part of ``Beta(1, alpha)`` beyond ``alpha`` uniform."""
    if alpha >= 1.0:
        return 0.5, 1.0 / 3.0  # unused (weight 0)
    e1 = (1.0 / (1.0 + alpha) - alpha / 2.0) / (1.0 - alpha)
    e2 = (2.0 / ((1.0 + alpha) * (2.0 + alpha)) - alpha / 3.0) / (1.0 - alpha)
    return e1, e2


def _uniform_part(z, tilt, det, b, theta, d):
    """``E[exp(-z S~ U)]`` and one minus it, ``U`` uniform on ``(0, 1)``, summed over the
    components with weights ``tilt``: ``(1 - E[exp(-z S~)] ...)`` in closed form.

    A constant ``d``: ``(1 - e^{-zd}) / (zd)``. A gamma of shape ``b`` and scale ``theta``:
    ``(1 - (1 + theta z)^(1 - b)) / ((b - 1) theta z)`` (for ``b = 1``,
    ``log(1 + theta z) / (theta z)``), summed by :func:`.service_law._exp_pair` with the
    exponent ``L = -(b - 1) log(1 + theta z)`` so that small ``|z|`` keep their accuracy.
    """
    shape = z.shape
    zr, zi = z.real.reshape(-1, 1), z.imag.reshape(-1, 1)
    total = np.zeros(zr.shape[0], dtype=complex)
    g = ~det & (tilt > 0)
    if g.any():
        th, bb = theta[g][None, :], b[g] - 1.0
        near = np.abs(bb) < 1e-9
        bb = np.where(near, 1e-9, bb)  # the b = 1 limit, to 1e-9 relative
        ta, tb = th * zr, th * zi
        lr = -0.5 * bb[None, :] * np.log1p(ta * (2.0 + ta) + tb * tb)
        li = -bb[None, :] * np.arctan2(tb, 1.0 + ta)
        total += _exp_pair(lr, li, tilt[g] / (bb * theta[g]))[1]
    k = det & (tilt > 0) & (d > 0)
    if k.any():
        dd = d[k][None, :]
        total += _exp_pair(-dd * zr, -dd * zi, tilt[k] / d[k])[1]
    flat = z.reshape(-1)
    value = total / flat
    zero = det & (tilt > 0) & (d <= 0)  # services of length 0 never make a wait
    value = value + float(tilt[zero].sum())
    return value.reshape(shape), (1.0 - value).reshape(shape)
