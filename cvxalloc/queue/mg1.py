"""The exact distribution of the system time of the M/G/1 FIFO queue, by transform inversion.

With Poisson arrivals of rate ``lam``, service law ``S`` (a :class:`ServiceLaw`,
mean ``m1``, ``rho = lam m1 < 1``) and FIFO order, the wait ``W`` has the
Pollaczek-Khinchine transform, a geometric sum of excess laws ``Y`` (density
``P(S > y) / m1``)::

    E[e^{-zW}] = (1 - rho) / (1 - rho Y(z)),    Y(z) = (1 - S(z)) / (m1 z),

and the system time ``T = W + S`` (``S`` independent of ``W``) has the
transform ``T(z) = W(z) S(z)``. Expanding the geometric sum::

    T(z) = (1 - rho) S(z)                       (no wait: exactly S)
         + (1 - rho) rho Y(z) D(z)              (one excess, constant services)
         + (1 - rho) rho Y(z) G(z) + (1 - rho) rho^2 Y(z)^2 S(z) / (1 - rho Y(z))

with ``D`` the constant (atom) components of ``S`` and ``G`` the gamma ones.
The first two terms are evaluated exactly in the time domain: the first is
``(1 - rho) P(S <= x)``, which holds every jump of the distribution of ``T``
(the atoms of ``S`` when no one waits), the second
``(1 - rho) rho sum_j pi_j P(Y <= x - d_j)`` with ``P(Y <= y) = E[min(S, y)] / m1``,
which holds the jumps of the density at the atoms. The rest, ``R``, has a
continuous density; its distribution and density are inverted numerically
(:func:`~cvxalloc.queue.inversion.invert`, the Euler algorithm), to an
absolute error of about 1e-9 where the law is smooth (gamma services) and
with more terms where constant or nearly constant services leave kinks
(measured against the M/D/1 formula, see the tests).
"""

from __future__ import annotations

import numpy as np

from ..errors import UnstableError
from .inversion import Inverted, invert
from .service_law import ServiceLaw

__all__ = ["MG1"]


class MG1:
    """System time ``T`` of the M/G/1 FIFO queue with service law ``law``.

    Parameters
    ----------
    law : ServiceLaw
    arrival_rate : float
        ``lam >= 0``; ``lam m1 < 1`` is required.
    tol : float
        Target absolute error of the numerical part of the distribution.
    wait_scale : float
        ``kappa``: the distribution of ``T = kappa W + S`` instead (1, the
        default, is the M/G/1 system time; see :mod:`.tail` for its use as an
        approximation of bursty arrivals).
    wait_probability : float, optional
        ``sigma``: the probability of a wait, in place of ``rho``: ``T = S`` with
        probability ``1 - sigma``, else ``kappa W+ + S`` with ``W+`` the M/G/1 wait
        given that it is positive (default ``rho``: the M/G/1 system time).
    service : ServiceLaw, optional
        The law of the ``(1 - rho) P(S <= x)`` term (default ``law``): with
        ``law`` a compression of ``service``, every jump and every sharp
        service law is kept exact where no one waits, and the compression
        only enters the parts smoothed by a wait.

    Raises
    ------
    UnstableError
        If ``lam m1 >= 1``.
    """

    def __init__(
        self,
        law: ServiceLaw,
        arrival_rate: float,
        tol: float = 1e-9,
        wait_scale: float = 1.0,
        service: ServiceLaw | None = None,
        wait_probability: float | None = None,
    ) -> None:
        self.law = law
        self.service = law if service is None else service
        self.kappa = float(wait_scale)
        self.lam = float(arrival_rate)
        self.m1 = law.moment(1)
        self.rho = self.lam * self.m1
        if self.rho >= 1:
            raise UnstableError(
                f"utilization {self.rho:.6g} >= 1: the system time has no steady state"
            )
        self.tol = float(tol)
        atoms = law.deterministic
        self.waits = self.rho > 0 and self.kappa > 0
        #: ``P(W > 0)`` as the distribution sees it (0 when waits are scaled away).
        sigma = self.rho if wait_probability is None else float(wait_probability)
        self.p_wait = sigma if self.waits else 0.0
        #: The waiting part's weight over the M/G/1's (1 unless ``wait_probability``).
        self.share = sigma / self.rho if self.waits else 0.0
        self.atoms = law.take(atoms) if atoms.any() and self.waits else None
        self.gammas = law.take(~atoms) if (~atoms).any() else None
        self.mass_atoms = float(law.weight[atoms].sum())
        # mass of the numerically inverted part R
        r = self.rho
        self.mass_r = (1 - r) * r * (1.0 - self.mass_atoms) + r * r if self.waits else 0.0
        self.terms = 0

    # --- moments ----------------------------------------------------------------
    @property
    def mean(self) -> float:
        """``E[T] = m1 + kappa lam m2 / (2 (1 - rho))`` (Pollaczek-Khinchine)."""
        w = self.lam * self.law.moment(2) / (2.0 * (1.0 - self.rho))
        return self.m1 + self.kappa * self.share * w

    @property
    def variance(self) -> float:
        """``Var T = kappa^2 Var W + Var S`` with ``E[W^2] = 2 E[W]^2 + lam m3 / (3 (1 - rho))``."""
        w = self.lam * self.law.moment(2) / (2.0 * (1.0 - self.rho))
        w2 = 2.0 * w * w + self.lam * self.law.moment(3) / (3.0 * (1.0 - self.rho))
        f = self.share
        return self.kappa**2 * (f * w2 - (f * w) ** 2) + (self.law.moment(2) - self.m1**2)

    @property
    def wait_probability(self) -> float:
        """``P(W > 0)``: ``rho`` for the M/G/1 queue."""
        return self.p_wait

    # --- the inverted part ------------------------------------------------------
    def _transform(self, z: np.ndarray) -> np.ndarray:
        """Transforms of the complement of the distribution of ``R`` and of its density."""
        r, k = self.rho, self.kappa
        s, one_minus = self.law.transform(z)
        if k != 1.0:
            one_minus = self.law.transform(k * z)[1]
        y = one_minus / (self.m1 * k * z)
        cont = s
        if self.atoms is not None:
            d, _ = self.atoms.transform(z)
            cont = s - d
        rz = (1 - r) * r * y * cont + (1 - r) * r * r * y * y * s / (1.0 - r * y)
        return np.stack([(self.mass_r - rz) / z, rz])

    def _numeric(self, x: np.ndarray) -> Inverted:
        inv = invert(self._transform, x, tol=self.tol, bound=max(self.mass_r, 1e-300))
        self.terms = max(self.terms, inv.terms)
        return inv

    # --- distribution -----------------------------------------------------------
    def evaluate(self, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``P(T > x)``, the density of ``T`` (its continuous part) and the error estimate.

        The error estimate bounds the numerical part; the exact terms add
        only rounding.
        """
        x = np.atleast_1d(np.asarray(x, dtype=float))
        r = self.p_wait
        if self.m1 <= 0:  # every service takes no time
            return (x < 0).astype(float), np.zeros_like(x), np.zeros_like(x)
        ccdf = (1 - r) * self.service.ccdf(x)
        pdf = (1 - r) * self.service.pdf(x)
        err = np.zeros_like(x)
        if self.atoms is not None:
            k = self.kappa
            y = (x[:, None] - self.atoms.mean[None, :]) / k
            fy = self.law.mean_min(y) / self.m1
            dens = np.where(y > 0, self.law.ccdf(np.maximum(y, 0.0)), 0.0) / (self.m1 * k)
            w = (1 - self.rho) * self.rho * self.share * self.atoms.weight
            ccdf += (1.0 - fy) @ w
            pdf += dens @ w
        if self.waits:
            pos = x > 0
            inv = self._numeric(x[pos])
            ccdf[pos] += self.share * inv.values[0]
            pdf[pos] += self.share * inv.values[1]
            err[pos] = self.share * inv.error[0]
            ccdf[~pos] += self.share * self.mass_r
        return np.clip(ccdf, 0.0, 1.0), np.maximum(pdf, 0.0), err

    def ccdf(self, x) -> np.ndarray:
        """``P(T > x)``."""
        return self.evaluate(x)[0]

    def jump(self, x) -> np.ndarray:
        """``P(T = x)``: the atoms of ``S`` met with no wait (``(1 - rho) P(S = x)``)."""
        return (1 - self.p_wait) * self.service.atoms(x)

    def atom_points(self) -> np.ndarray:
        """Where the distribution of ``T`` jumps (sorted)."""
        return self.service.atom_points()
