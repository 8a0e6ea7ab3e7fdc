"""One server, FIFO: Pollaczek-Khinchine (Poisson arrivals) and Kingman (GI/G/1).

The mean system time depends on the allocation only through the first two
moments of the service time, ``m1`` and ``m2``::

    W(m1, m2) = m1 + lam (m2 - (1 - c) m1^2) / (2 (1 - lam m1))      (lam m1 < 1)

with ``c = c_a^2`` the squared coefficient of variation of the inter-arrival
gaps. ``c = 1`` is the exact Pollaczek-Khinchine formula of the M/G/1 queue
(Poisson arrivals); any other ``c`` is the Kingman / Allen-Cunneen
approximation of the GI/G/1 queue, exact in the heavy-traffic limit
``rho -> 1`` and for ``c = 1``, and an approximation otherwise (see
docs/model.md for its measured error on real traces).

Convexity in the budgets for every ``c >= 0``: the numerator is
``sum p k s^2 + sum p v + sum p (s - m1)^2 + c m1^2``, a sum of squares of
affine functions of ``t``, over the affine slack ``1 - lam m1``; this is the
``quad_over_lin`` form of :meth:`FIFOQueue.cvxpy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._source import source
from ..errors import UnstableError

__all__ = ["FIFOQueue", "pollaczek_khinchine", "kingman"]


def kingman(arrival_rate: float, m1: float, m2: float, arrival_scv: float = 1.0) -> float:
    """Mean system time of a GI/G/1 FIFO queue (Kingman / Allen-Cunneen).

    Parameters
    ----------
    arrival_rate : float
        ``lam``, arrivals per second.
    m1, m2 : float
        First and second moment of the service time.
    arrival_scv : float
        ``c_a^2``, squared coefficient of variation of the inter-arrival gaps
        (1 for Poisson arrivals, where the formula is exact).

    Returns
    -------
    float
        ``m1 + lam (m2 - (1 - c_a^2) m1^2) / (2 (1 - lam m1))``, or ``inf`` when
        ``lam m1 >= 1``.

    Examples
    --------
    D/D/1 (deterministic arrivals and service) never waits:

    >>> kingman(0.5, 1.0, 1.0, arrival_scv=0.0)
    1.0
    """
    rho = arrival_rate * m1
    if rho >= 1:
        return float("inf")
    return m1 + arrival_rate * (m2 - (1.0 - arrival_scv) * m1 * m1) / (2.0 * (1.0 - rho))


def pollaczek_khinchine(arrival_rate: float, m1: float, m2: float) -> float:
    """Mean system time of an M/G/1 FIFO queue (Kingman with ``c_a^2 = 1``).

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
    return kingman(arrival_rate, m1, m2, 1.0)


def smaller_root(e: float, L: float, C: float) -> float:
    """``(e + L) / (e + C + sqrt((e + C)^2 - e (e + L)))`` without overflow, in ``(0, 1]``.

    The smaller root ``u`` of ``e (1 - u)^2 + L = 2 C u`` (:meth:`FIFOQueue.min_slack`),
    written with the square root scaled by ``e + C`` so that no intermediate leaves
    the range of doubles: ``C`` near 1e308 (a price on latency of 1e-300, weights of
    1e308) gives about ``(e + L) / (2 C)``, never an OverflowError. Where even that
    underflows, the smallest normal double stands in: still a lower bound of the
    slack, and one every solver can divide by.

    >>> smaller_root(1.0, 0.0, 0.0)
    1.0
    >>> smaller_root(1.0, 0.0, 1e300) == 0.5e-300
    True
    """
    if not math.isfinite(C):
        return _TINY
    ec = e + C
    ratio = (e / ec) * ((e + L) / ec) if ec > 0 else 1.0
    u = ((e + L) / ec) / (1.0 + math.sqrt(max(1.0 - ratio, 0.0)))
    return min(max(u, _TINY), 1.0)


#: The smallest normal double: the least slack a bracket of ``1 - rho`` may reach.
_TINY = float(np.finfo(float).tiny)


@dataclass(frozen=True)
class FIFOQueue:
    """One server, FIFO, arrivals of rate ``lam`` and gap variability ``c_a^2``.

    A queue model is to the latency term what an accuracy family is to the
    accuracy term: the one place that knows ``W`` as a function of the service
    moments, its derivatives, its stability limit and its conic form.

    Parameters
    ----------
    arrival_rate : float
        ``lam >= 0``.
    arrival_scv : float
        ``c_a^2 >= 0`` (default 1: Poisson, exact Pollaczek-Khinchine).

    Notes
    -----
    Solvers use :meth:`derivatives`: the gradient of ``W`` in the budgets is
    ``dW/dt_i = p_i b_i (A + B (1 + k_i) s_i)`` with ``A = dW/dm1`` and
    ``B = 2 dW/dm2``, so every type sees the queue through two scalars.
    """

    arrival_rate: float
    arrival_scv: float = 1.0

    #: The utilization ``lam m1 / capacity`` must stay below 1.
    capacity: float = 1.0
    name: str = "single"

    def _repr_pretty_(self, p, cycle) -> None:
        """Print the repr in IPython and hypothesis (which spell a dataclass field by field)."""
        p.text(repr(self))

    def __repr__(self) -> str:
        """Python source that rebuilds the queue (exact floats; defaults left out).

        >>> FIFOQueue(0.5, arrival_scv=0.25)
        FIFOQueue(arrival_rate=0.5, arrival_scv=0.25)
        """
        args = [f"arrival_rate={source(self.arrival_rate)}"]
        if self.arrival_scv != 1.0:
            args.append(f"arrival_scv={source(self.arrival_scv)}")
        if self.capacity != 1.0:
            args.append(f"capacity={source(self.capacity)}")
        if self.name != "single":
            args.append(f"name={self.name!r}")
        return f"FIFOQueue({', '.join(args)})"

    @property
    def poisson(self) -> bool:
        """Whether this is the exact M/G/1 case (``c_a^2 = 1``)."""
        return self.arrival_scv == 1.0

    @property
    def monotone(self) -> bool:
        """Whether ``A`` and ``B`` grow with ``m1`` and ``m2`` (true for ``c_a^2 >= 1``).

        The curvature and interval bounds of the first-order solvers rely on it.
        """
        return self.arrival_scv >= 1.0

    # --- numeric ------------------------------------------------------------
    def value(self, m1: Any, m2: Any) -> Any:
        """``W`` in seconds (``inf`` where ``lam m1 >= 1``); elementwise on arrays."""
        if np.ndim(m1) == 0 and np.ndim(m2) == 0:
            return kingman(self.arrival_rate, m1, m2, self.arrival_scv)
        lam, d = self.arrival_rate, 1.0 - self.arrival_scv
        m1, m2 = np.asarray(m1, dtype=float), np.asarray(m2, dtype=float)
        u = 1.0 - lam * m1
        with np.errstate(divide="ignore", invalid="ignore"):
            w = m1 + lam * (m2 - d * m1 * m1) / (2.0 * u)
        return np.where(u > 0, w, np.inf)

    def derivatives(self, m1: float, m2: float) -> tuple[float, float]:
        """``(A, B) = (dW/dm1, 2 dW/dm2)``; ``(inf, inf)`` where unstable."""
        lam = self.arrival_rate
        u = 1.0 - lam * m1
        if u <= 0:
            return np.inf, np.inf
        return self.scalars(u, m2)[:2]

    def scalars(self, u: float, m2: float) -> tuple[float, float, float, float, float]:
        """``A``, ``B`` and their partial derivatives in the slack ``u = 1 - lam m1`` and ``m2``.

        With ``X = lam / u``, ``Y = X^2 m2 / 2``, ``r = (1 - u) / u`` and
        ``d = 1 - c_a^2``: ``A = 1 + Y - d (r^2 / 2 + r)`` and ``B = X``, written as
        products and quotients by ``u > 0`` (``u**3`` underflows to 0 from
        ``u ~ 1e-103`` on). Where ``Y`` and the ``d`` term both overflow (``u``
        below about 1e-154), ``A`` is ``1 + d / 2 + (lam^2 m2 - d) / (2 u^2)``
        (the same, since ``r^2 / 2 + r = (1 / u^2 - 1) / 2``): ``inf`` or ``-inf``,
        never ``inf - inf``. (That form is not used throughout: at moderate ``u``
        its two ``d`` terms cancel.)

        Returns
        -------
        (A, B, dA/du, dA/dm2, dB/du) : tuple of float
            (``dB/dm2 = 0``.)
        """
        lam, d = self.arrival_rate, 1.0 - self.arrival_scv
        u, m2 = float(u), float(m2)
        X = lam / u
        Y = 0.5 * X * (X * m2)  # 0 at m2 = 0 even where X * X overflows
        A, dA_du = 1.0 + Y, -2.0 * Y / u
        if d != 0.0:
            r = (1.0 - u) / u
            A -= d * (r * (0.5 * r + 1.0))
            dA_du += d / u / u / u
            if math.isnan(A) or math.isnan(dA_du):
                excess = lam * (lam * m2) - d  # lam^2 m2 - d
                A = 1.0 + 0.5 * d + 0.5 * (excess / u / u)
                dA_du = -(excess / u / u / u)
        return A, X, dA_du, 0.5 * X * X, -X / u

    def hessian(self, m1: float, m2: float) -> np.ndarray:
        """Hessian of ``W`` in ``(m1, m2)``, a 2x2 array (see :meth:`curvature`)."""
        h11, h12 = self.curvature(1.0 - self.arrival_rate * m1, m2)
        return np.array([[h11, h12], [h12, 0.0]])

    def curvature(self, u: float, m2: float) -> tuple[float, float]:
        """``(W_11, W_12)`` at slack ``u = 1 - lam m1``; ``W_22 = 0``.

        ``W_11 = lam^3 N / u^3 - lam d / u - 2 lam^2 d m1 / u^2`` with
        ``d = 1 - c_a^2``, ``N = m2 - d m1^2``; ``W_12 = lam^2 / (2 u^2)``. For
        ``c_a^2 >= 1`` both grow with ``m1`` and ``m2``.
        """
        lam, d = self.arrival_rate, 1.0 - self.arrival_scv
        u, m2 = float(u), float(m2)
        X = lam / u  # products of X, not powers of u: inf near saturation, never an error
        h11 = X * (X * (X * m2))
        if d != 0.0:
            r = (1.0 - u) / u  # lam m1 / u
            h11 -= d * X * (r * r + 1.0 + 2.0 * r)
            if math.isnan(h11):  # both terms overflowed: (r + 1)^2 = 1 / u^2
                h11 = X * ((lam * (lam * m2) - d) / u / u)
        return h11, 0.5 * X * X

    def change(self, m1: float, m2: float, d_m1: np.ndarray, d_m2: np.ndarray) -> np.ndarray:
        """``W(m1 + d_m1, m2 + d_m2) - W(m1, m2)``, vectorized, without cancellation.

        From differences of the moments, not of two large values, so changes of
        1e-12 of ``W`` are resolved: with ``N = m2 - d m1^2`` and ``u = 1 - lam m1``,
        ``N'/u' - N/u = (dN u + N lam d_m1) / (u u')``. ``inf`` where the new
        point is unstable.
        """
        lam, d = self.arrival_rate, 1.0 - self.arrival_scv
        u = 1.0 - lam * m1
        u_new = u - lam * d_m1
        n0 = m2 - d * m1 * m1
        d_n = d_m2 - d * d_m1 * (2.0 * m1 + d_m1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = d_m1 + 0.5 * lam * (d_n * u + n0 * (lam * d_m1)) / (u * u_new)
        return np.where(u_new > 0, out, np.inf)

    def parameter_partials(self, m1: float, m2: float) -> dict[str, tuple[float, float, float]]:
        """Partials of ``(W, A, B)`` in the queue's parameters at fixed moments.

        With ``u = 1 - lam m1``, ``d = 1 - c_a^2`` and ``N = m2 - d m1^2``:

        * ``arrival_rate``: ``W_lam = N / (2 u^2)``, ``A_lam = lam N / u^3 - d m1 / u^2``,
          ``B_lam = 1 / u^2``;
        * ``arrival_scv``: ``W_c = lam m1^2 / (2 u)``,
          ``A_c = lam m1 / u + lam^2 m1^2 / (2 u^2)``, ``B_c = 0``.
        """
        lam, d = self.arrival_rate, 1.0 - self.arrival_scv
        u = 1.0 - lam * m1
        n = m2 - d * m1 * m1
        return {
            "arrival_rate": (n / (2 * u * u), lam * n / u**3 - d * m1 / (u * u), 1.0 / (u * u)),
            "arrival_scv": (
                lam * m1 * m1 / (2 * u),
                lam * m1 / u + lam * lam * m1 * m1 / (2 * u * u),
                0.0,
            ),
        }

    def lower_bound(self, m1: float, m2_min: float) -> float:
        """A lower bound of ``W`` over allocations with mean ``m1`` and ``m2 >= m2_min``.

        ``W`` increases with ``m2`` (``dW/dm2 = lam / (2 u) > 0``), so this is
        :meth:`value` at ``m2_min``.
        """
        return self.value(m1, m2_min)

    def min_slack(self, w_max: float, K: float, pv: float = 0.0) -> float:
        """A lower bound of ``1 - rho`` over allocations with ``W <= w_max``.

        The numerator of ``W`` is at least ``e m1^2 + pv`` with
        ``e = min(1, 1/K - 1 + c_a^2)``, where ``K = sum_i p_i / (1 + k_i)``
        (Cauchy-Schwarz: ``m2 >= m1^2 / K + pv``). With ``C = lam w_max`` and
        ``L = lam^2 pv``, ``W <= w_max`` gives ``e (1 - u)^2 + L <= 2 C u``, whose
        smaller root is ``u >= (e + L) / (e + C + sqrt((e + C)^2 - e (e + L)))``
        (for ``e = 1``, ``L = 0``: ``1 / (1 + c + sqrt(c^2 + 2c))``, ``c = C``).

        Raises
        ------
        UnstableError
            If ``e = 0`` and ``pv = 0`` (``c_a^2 = 0`` and deterministic service):
            the wait need not grow towards saturation, so no such bound exists.
        """
        e = max(min(1.0, 1.0 / K - 1.0 + self.arrival_scv), 0.0)
        L = self.arrival_rate**2 * pv
        if e + L <= 0:
            raise UnstableError(
                "queue: arrival_scv = 0 with deterministic service: the model's wait need not "
                "grow towards saturation, so no utilization cap holds the optimum; set "
                "arrival_scv > 0 or lower max_tokens until the box is stable"
            )
        C = self.arrival_rate * w_max
        return smaller_root(e, L, C)

    # --- conic --------------------------------------------------------------
    def numerator(
        self, s: Any, p: np.ndarray, k: np.ndarray, pv: float, constant: bool = True
    ) -> Any:
        """CVXPY vector ``q`` with ``||q||^2 = m2 - (1 - c) m1^2``, affine in ``s``.

        The numerator of ``W`` as a sum of squares of affine terms:

        * ``c = 1``: ``q = [sqrt(p (1 + k)) s ; sqrt(pv)]``;
        * ``c > 1``: the same plus ``sqrt(c - 1) m1``;
        * ``c < 1``: ``q = [sqrt(p) (s - z) ; sqrt(p k) s ; sqrt(c) m1 ; sqrt(pv)]``.

        For ``c < 1`` the centre ``z`` is ``m1`` when ``s`` is constant and
        otherwise a free scalar variable: ``sum p (s - m1)^2 = min_z sum p (s - z)^2``,
        so wherever ``W`` is minimized or bounded above (the objective, an SLO) the
        form is exact, and it keeps the cone's rows sparse (``s - m1`` written out
        is N dense rows: measured, the conic solve at N = 1000 took 59x longer).

        Parameters
        ----------
        s : cvxpy Expression or ndarray
            Service times, shape (N,).
        p, k : ndarray
            Probabilities and service scv.
        pv : float
            ``sum_i p_i v_i``.
        constant : bool
            With False the ``sqrt(pv)`` entry is 0: the linear part ``L s`` of
            ``q = L s + kappa`` (the entry keeps its place, so shapes agree).
        """
        import cvxpy as cp

        c = self.arrival_scv
        m1 = p @ s
        if c >= 1.0:
            parts = [cp.multiply(np.sqrt(p * (1.0 + k)), s)]
            if c > 1.0:
                parts.append(cp.reshape(np.sqrt(c - 1.0) * m1, (1,), order="F"))
        else:
            s_value = s if isinstance(s, np.ndarray) else (s.value if s.is_constant() else None)
            z = cp.Variable(name="service_mean") if s_value is None else float(p @ s_value)
            parts = [cp.multiply(np.sqrt(p), s - z)]
            if np.any(k > 0):
                parts.append(cp.multiply(np.sqrt(p * k), s))
            if c > 0.0:
                parts.append(cp.reshape(np.sqrt(c) * m1, (1,), order="F"))
        if pv > 0:
            parts.append(np.array([np.sqrt(pv) if constant else 0.0]))
        return parts[0] if len(parts) == 1 else cp.hstack(parts)

    def cvxpy(self, s: Any, p: np.ndarray, k: np.ndarray, pv: float, time_unit: float = 1.0) -> Any:
        """Convex CVXPY expression of ``W / time_unit`` for affine service times ``s``.

        ``W = m1 + (lam / 2) quad_over_lin(||q||, 1 - lam m1)`` with ``q`` from
        :meth:`numerator`.

        Parameters
        ----------
        s : cvxpy Expression
            Affine service times, shape (N,), in units of ``time_unit`` seconds.
        p, k : ndarray
            Probabilities and service scv.
        pv : float
            ``sum_i p_i v_i`` in units of ``time_unit`` squared.
        time_unit : float
            Seconds per unit of ``s`` (keeps the conic data of order one).
        """
        import cvxpy as cp

        lam = self.arrival_rate * time_unit
        m1 = p @ s
        if lam == 0:
            return m1
        q = self.numerator(s, p, k, pv)
        # ||q||^2 / y through a scalar r >= ||q||: a plain second-order cone plus a
        # 3-dimensional rotated one (Clarabel stalls on the (N+2)-dimensional rotated
        # cone of quad_over_lin(q, y) from N ~ 2000: measured InsufficientProgress).
        return m1 + (lam / 2) * cp.quad_over_lin(cp.norm(q), 1 - lam * m1)
