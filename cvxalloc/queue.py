"""The M/G/1 FIFO latency term: Pollaczek-Khinchine mean system time.

:class:`Latency` is a model term in the cvxportfolio sense: it evaluates
numerically (value, gradient, Hessian structure) and compiles to CVXPY with
the same algebra, so the conic reference and the custom solvers share it.

With ``s_i = a_i + b_i t_i``, ``m1 = sum p_i s_i``,
``m2 = sum p_i ((1 + k_i) s_i^2 + v_i)`` and ``rho = lam m1``::

    W(t) = m1 + lam m2 / (2 (1 - rho))                       (rho < 1)
         = m1 + (lam / 2) quad_over_lin(q(t), 1 - rho)       (conic form)

with ``q = [sqrt(p_i (1 + k_i)) s_i]_i ++ [sqrt(sum p_i v_i)]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np

__all__ = ["pollaczek_khinchine", "Moments", "Latency"]


def pollaczek_khinchine(arrival_rate: float, m1: float, m2: float) -> float:
    """Mean system time of an M/G/1 FIFO queue.

    Parameters
    ----------
    arrival_rate : float
        Poisson arrival rate ``lam``.
    m1, m2 : float
        First and second moment of the service time.

    Returns
    -------
    float
        ``m1 + lam m2 / (2 (1 - lam m1))``, or ``inf`` when ``lam m1 >= 1``.

    Examples
    --------
    M/M/1 with rate 1 service and arrival rate 0.5 (``m2 = 2``): ``W = 1 / (1 - 0.5)``.

    >>> pollaczek_khinchine(0.5, 1.0, 2.0)
    2.0
    """
    rho = arrival_rate * m1
    if rho >= 1:
        return float("inf")
    return m1 + arrival_rate * m2 / (2.0 * (1.0 - rho))


@dataclass(frozen=True)
class Moments:
    """Service-time moments of an allocation."""

    m1: float
    m2: float
    rho: float


class Latency:
    """Mean system time ``W(t)`` of a scenario, numeric and CVXPY forms.

    Parameters
    ----------
    scenario : Scenario
        Supplies ``lam``, ``p``, ``a``, ``b``, ``k``, ``v``.
    """

    def __init__(self, scenario) -> None:
        self.lam = scenario.arrival_rate
        self.p = scenario.probability
        self.a = scenario.base
        self.b = scenario.per_token
        self.k1 = 1.0 + scenario.scv
        self.pv = float(self.p @ scenario.variance)

    # --- numeric ----------------------------------------------------------
    def moments(self, t: np.ndarray) -> Moments:
        """``m1``, ``m2`` and ``rho`` at ``t``."""
        s = self.a + self.b * t
        ps = self.p * s
        m1 = float(ps.sum())
        m2 = float((ps * self.k1) @ s) + self.pv
        return Moments(m1, m2, self.lam * m1)

    def value(self, t: np.ndarray) -> float:
        """``W(t)`` in seconds (``inf`` if unstable)."""
        mo = self.moments(t)
        return pollaczek_khinchine(self.lam, mo.m1, mo.m2)

    def queue_scalars(self, t: np.ndarray) -> tuple[float, float, Moments]:
        """The two scalars every type sees: ``X = lam/(1-rho)``, ``Y = lam^2 m2/(2(1-rho)^2)``."""
        mo = self.moments(t)
        u = 1.0 - mo.rho
        if u <= 0:
            return np.inf, np.inf, mo
        return self.lam / u, self.lam**2 * mo.m2 / (2 * u * u), mo

    def marginal(self, t: np.ndarray) -> np.ndarray:
        """``D_i(t) = 1 + lam (1+k_i) s_i / (1-rho) + lam^2 m2 / (2 (1-rho)^2)``.

        The gradient is ``dW/dt_i = p_i b_i D_i``.
        """
        x, y, _ = self.queue_scalars(t)
        s = self.a + self.b * t
        return 1.0 + x * self.k1 * s + y

    def gradient(self, t: np.ndarray) -> np.ndarray:
        """``dW/dt``."""
        return self.p * self.b * self.marginal(t)

    def hessian_parts(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The Hessian of ``W`` as ``diag(d) + V M V^T`` (rank-2 update).

        Returns
        -------
        d : ndarray, shape (N,)
            ``lam (1+k_i) p_i b_i^2 / (1-rho)``.
        V : ndarray, shape (N, 2)
            Columns ``c = p_i b_i`` and ``e = p_i b_i (1+k_i) s_i``.
        M : ndarray, shape (2, 2)
            ``[[lam^3 m2/(1-rho)^3, lam^2/(1-rho)^2], [lam^2/(1-rho)^2, 0]]``.
        """
        mo = self.moments(t)
        u = 1.0 - mo.rho
        s = self.a + self.b * t
        c = self.p * self.b
        e = c * self.k1 * s
        d = self.lam * self.k1 * self.p * self.b**2 / u
        lam = self.lam
        M = np.array([[lam**3 * mo.m2 / u**3, lam**2 / u**2], [lam**2 / u**2, 0.0]])
        return d, np.column_stack([c, e]), M

    # --- conic --------------------------------------------------------------
    def cvxpy(self, t: cp.Expression, time_unit: float = 1.0) -> cp.Expression:
        """Convex CVXPY expression of ``W(t) / time_unit``.

        ``time_unit`` rescales seconds so that the conic data are of order one;
        the perspective form uses ``quad_over_lin`` with the affine denominator
        ``1 - lam m1(t)``, so the expression is DCP.
        """
        s = (self.a + cp.multiply(self.b, t)) / time_unit
        m1 = self.p @ s
        coef = np.sqrt(self.p * self.k1)
        q = cp.multiply(coef, s)
        if self.pv > 0:
            q = cp.hstack([q, np.array([np.sqrt(self.pv) / time_unit])])
        y = 1 - (self.lam * time_unit) * m1
        if self.lam == 0:
            return m1
        # ||q||^2 / y through a scalar r >= ||q||: a plain second-order cone plus a
        # 3-dimensional rotated one (Clarabel stalls on the (N+2)-dimensional rotated
        # cone of quad_over_lin(q, y) from N ~ 2000: measured InsufficientProgress).
        return m1 + (self.lam * time_unit / 2) * cp.quad_over_lin(cp.norm(q), y)
