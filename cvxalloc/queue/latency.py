"""The latency term ``W(t)``: the service model's moments fed to the queue model.

:class:`Latency` is a model term in the cvxportfolio sense: it evaluates
numerically (value, gradient, Hessian structure) and compiles to CVXPY with
the same algebra, so the conic reference and the custom solvers share it.

With ``s_i = a_i + b_i t_i``, ``m1 = sum p_i s_i``,
``m2 = sum p_i ((1 + k_i) s_i^2 + v_i)``, the queue model (:mod:`.fifo`) gives
``W(m1, m2)`` and its derivatives ``A = dW/dm1``, ``B = 2 dW/dm2``; then::

    dW/dt_i = p_i b_i D_i,   D_i = A + B (1 + k_i) s_i.

For Poisson arrivals ``A = 1 + Y`` and ``B = X`` with ``X = lam / (1 - rho)``
and ``Y = lam^2 m2 / (2 (1 - rho)^2)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._reduce import dot
from .._source import source
from ..protocols import ScenarioLike
from .batching import BatchingQueue
from .fifo import FIFOQueue
from .fleet import FleetQueue, fleet_queue

__all__ = ["Moments", "Latency", "queue_model"]


def queue_model(scenario: ScenarioLike) -> FIFOQueue | BatchingQueue | FleetQueue:
    """The queue model of a scenario.

    One FIFO server with its arrival process (``[server] model = "single"``, the
    default), or a continuous-batching server (``model = "batching"``:
    :class:`~cvxalloc.queue.batching.BatchingQueue` on the scenario's server, with
    its arrival process).
    A ``[fleet]`` of more than one replica is a layer over that model
    (:func:`~cvxalloc.queue.fleet.fleet_queue`): one replica's model at its share
    of the traffic, or a :class:`~cvxalloc.queue.fleet.FleetQueue` over it.
    """
    fleet = getattr(scenario, "fleet", None)
    if fleet is not None and fleet.replicas > 1:
        return fleet_queue(
            fleet,
            scenario.arrival_rate,
            getattr(scenario, "arrival_scv", 1.0),
            lambda rate, scv, server=None: _single_queue(_Replica(scenario, rate, scv, server)),
        )
    return _single_queue(scenario)


class _Replica:
    """The scenario as one replica sees it: its share of the rate, its gaps' scv (and,
    for a fleet pooled as one server, that server)."""

    def __init__(self, scenario, arrival_rate: float, arrival_scv: float, server=None) -> None:
        self._scenario = scenario
        self.arrival_rate, self.arrival_scv = arrival_rate, arrival_scv
        if server is not None:
            self.server = server

    def __getattr__(self, name: str):
        return getattr(self._scenario, name)


def _single_queue(scenario) -> FIFOQueue | BatchingQueue:
    """One server's queue model (the scenario's ``[server]``, at its ``[queue]``)."""
    server = getattr(scenario, "server", None)
    scv = getattr(scenario, "arrival_scv", 1.0)
    if server is not None:
        return BatchingQueue(scenario.arrival_rate, curve=server, arrival_scv=scv)
    return FIFOQueue(scenario.arrival_rate, scv)


@dataclass(frozen=True)
class Moments:
    """Service-time moments of an allocation."""

    m1: float
    m2: float
    rho: float

    def _repr_pretty_(self, p, cycle) -> None:
        """Print the repr in IPython and hypothesis (which spell a dataclass field by field)."""
        p.text(repr(self))

    def __repr__(self) -> str:
        """Python source that rebuilds the moments (exact floats, ``float('inf')``).

        >>> Moments(m1=1.5, m2=3.0, rho=float("inf"))
        Moments(m1=1.5, m2=3.0, rho=float('inf'))
        """
        return f"Moments(m1={source(self.m1)}, m2={source(self.m2)}, rho={source(self.rho)})"


class Latency:
    """Mean system time ``W(t)`` of a scenario, numeric and CVXPY forms.

    Parameters
    ----------
    scenario : Scenario
        Supplies ``lam``, ``p``, ``a``, ``b``, ``k``, ``v`` and the queue model.
    """

    def __init__(self, scenario: ScenarioLike) -> None:
        self.queue = queue_model(scenario)
        self.lam = self.queue.arrival_rate  # one replica's share in a fleet
        self.p = scenario.probability
        self.a = scenario.base
        self.b = scenario.per_token
        self.k = scenario.scv
        self.k1 = 1.0 + scenario.scv
        self.pv = dot(self.p, scenario.variance)

    # --- numeric ----------------------------------------------------------
    def moments(self, t: np.ndarray) -> Moments:
        """``m1``, ``m2`` and ``rho`` at ``t``."""
        s = self.a + self.b * t
        ps = self.p * s
        m1 = float(ps.sum())
        m2 = float(np.einsum("i,i,i->", ps, self.k1, s)) + self.pv
        return Moments(m1, m2, self.lam * m1 / self.queue.capacity)

    def value(self, t: np.ndarray) -> float:
        """``W(t)`` in seconds (``inf`` if unstable)."""
        mo = self.moments(t)
        return self.queue.value(mo.m1, mo.m2)

    def scalars(self, t: np.ndarray) -> tuple[float, float, Moments]:
        """The two scalars every type sees, ``A = dW/dm1`` and ``B = 2 dW/dm2``."""
        mo = self.moments(t)
        A, B = self.queue.derivatives(mo.m1, mo.m2)
        return A, B, mo

    def marginal(self, t: np.ndarray) -> np.ndarray:
        """``D_i(t) = A + B (1 + k_i) s_i``; the gradient is ``dW/dt_i = p_i b_i D_i``."""
        A, B, _ = self.scalars(t)
        s = self.a + self.b * t
        return A + B * self.k1 * s

    def gradient(self, t: np.ndarray) -> np.ndarray:
        """``dW/dt``."""
        return self.p * self.b * self.marginal(t)

    def value_gradient(self, t: np.ndarray) -> tuple[float, np.ndarray | None, Moments]:
        """``(W(t), dW/dt, moments)`` from one pass of the moments; ``(inf, None, moments)``
        where the queue is unstable."""
        mo = self.moments(t)
        if mo.rho >= 1:
            return np.inf, None, mo
        A, B = self.queue.derivatives(mo.m1, mo.m2)
        s = self.a + self.b * t
        return self.queue.value(mo.m1, mo.m2), self.p * self.b * (A + B * self.k1 * s), mo

    def hessian_parts(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The Hessian of ``W`` as ``diag(d) + V M V^T`` (rank-2 update).

        With ``H`` the Hessian of ``W`` in ``(m1, m2)`` (:meth:`FIFOQueue.hessian`),
        ``dm1/dt = c`` and ``dm2/dt = 2 e``.

        Returns
        -------
        d : ndarray, shape (N,)
            ``B (1+k_i) p_i b_i^2`` (from the curvature of ``m2``).
        V : ndarray, shape (N, 2)
            Columns ``c = p_i b_i`` and ``e = p_i b_i (1+k_i) s_i``.
        M : ndarray, shape (2, 2)
            ``[[H11, 2 H12], [2 H12, 4 H22]]``.
        """
        mo = self.moments(t)
        s = self.a + self.b * t
        c = self.p * self.b
        e = c * self.k1 * s
        _, B = self.queue.derivatives(mo.m1, mo.m2)
        d = B * self.k1 * self.p * self.b**2
        H = self.queue.hessian(mo.m1, mo.m2)
        M = np.array([[H[0, 0], 2.0 * H[0, 1]], [2.0 * H[0, 1], 4.0 * H[1, 1]]])
        return d, np.column_stack([c, e]), M

    # --- conic --------------------------------------------------------------
    def cvxpy(self, t: Any, time_unit: float = 1.0, **options: Any) -> Any:
        """Convex CVXPY expression of ``W(t) / time_unit``.

        ``time_unit`` rescales seconds so that the conic data are of order one;
        the queue model's perspective form (:meth:`FIFOQueue.cvxpy`) uses
        ``quad_over_lin`` with the affine denominator ``1 - lam m1(t)``, so the
        expression is DCP. For a batching server the result is instead a
        :class:`~cvxalloc.queue.batching.TangentCuts` (an epigraph variable
        ``.expr`` with its ``.constraints``): ``W`` is convex but not DCP;
        ``options`` (e.g. ``min_slack``) go to its queue model's ``cvxpy``.
        """
        import cvxpy as cp

        s = (self.a + cp.multiply(self.b, t)) / time_unit
        return self.queue.cvxpy(s, self.p, self.k, self.pv / time_unit**2, time_unit, **options)
