"""A server that batches: processor sharing with a concurrency-dependent total rate.

Continuous-batching engines (vLLM, SGLang, TensorRT-LLM) decode every query in
the batch together: with ``n`` queries in service each one advances at
``c(n) / n`` times its speed alone (``c`` the :class:`CapacityCurve`). By
Little's law the mean system time is::

    W = G(x) / lam,    x = lam m1 (offered work, seconds-alone per second),

with ``G`` the (weighted) mean number in system of :mod:`.occupancy`: for
Poisson arrivals and every query decoding, ``G = E[N]`` of the product form,
exact whatever the service distribution; with bursty arrivals
(``queue.arrival_scv``) a batch-Poisson chain of the same heavy-traffic
variability; with the engine's admission limit (``[server] max_running``) the
curve capped at ``K`` and a Lee-Longton term for the FIFO wait. In every case
``W`` depends on the budgets only through ``m1`` (an affine function of them),
so every type sees the queue through one scalar ``A = G'(x)``, and convexity is
``G'' >= 0``, checked on a grid when the model is built.

:class:`BatchingServer` is the ``[server]`` table (curve, ``max_running``,
``service_scv``); :class:`BatchingQueue` is the queue model the solvers use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._roots import brentq
from .._source import source
from ..errors import ScenarioError, UnstableError
from .curve import MAX_CONCURRENCY, CapacityCurve, capacity_curve
from .cuts import TangentCuts
from .occupancy import Occupancy, occupancy

__all__ = [
    "AUTO",
    "BatchingQueue",
    "BatchingServer",
    "CapacityCurve",
    "TangentCuts",
    "capacity_curve",
]

#: Largest ``service_scv`` accepted (as for the tasks' ``service.scv``).
MAX_SERVICE_SCV = 1e6
#: ``[server] service_scv = "auto"``: the mix's own service scv at the plan, found by
#: :func:`cvxalloc.solve` as a fixed point (see :meth:`Scenario.with_service_scv_at`).
AUTO = "auto"


@dataclass(frozen=True)
class BatchingServer:
    """A continuous-batching server: the ``[server]`` table of ``model = "batching"``.

    Parameters
    ----------
    curve : CapacityCurve
        Total decode rate by concurrency, over the rate of one query alone.
    max_running : int, optional
        The engine's admission limit (vLLM's ``max_num_seqs``): at most this many
        decode together, the rest wait FIFO. None: every query decodes.
    service_scv : float or "auto"
        The squared coefficient of variation of the whole mix's service time that
        the bursty-arrival and admission terms assume (default 1: exponential).
        Without bursts or a limit the model does not depend on it. ``"auto"``: the
        mix's own at the allocation, ``m2 / m1^2 - 1``; a model with it is only
        evaluated once it is fixed (:meth:`Scenario.with_service_scv_at`; ``solve``
        fixes it at its own optimum).

    Examples
    --------
    >>> s = BatchingServer(capacity_curve([1, 4, 8], [1.0, 3.5, 6.0]), max_running=4)
    >>> s.capacity   # at most 4 decode: the total rate stops at c(4)
    3.5
    """

    curve: CapacityCurve
    max_running: int | None = None
    service_scv: float | str = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.curve, CapacityCurve):
            raise ScenarioError(f"server: curve must be a CapacityCurve (got {self.curve!r})")
        object.__setattr__(self, "max_running", _max_running(self.max_running))
        object.__setattr__(self, "service_scv", _service_scv(self.service_scv))

    @property
    def concurrency(self) -> tuple[int, ...]:
        return self.curve.concurrency

    @property
    def speedup(self) -> tuple[float, ...]:
        return self.curve.speedup

    @property
    def capacity(self) -> float:
        """The largest total rate the engine reaches: ``c(min(max_running, last point))``."""
        if self.max_running is None:
            return self.curve.capacity
        return float(self.curve.rate(min(self.max_running, self.curve.concurrency[-1])))

    def rate(self, n: Any) -> np.ndarray:
        """``c(min(n, max_running))``: the total rate with ``n`` queries in the system."""
        n = np.asarray(n, dtype=float)
        return self.curve.rate(n if self.max_running is None else np.minimum(n, self.max_running))

    def uses_service_scv(self, arrival_scv: float) -> bool:
        """Whether the model depends on ``service_scv``: bursty or smooth arrivals, or a limit."""
        return arrival_scv != 1.0 or self.max_running is not None

    @property
    def auto(self) -> bool:
        """``service_scv = "auto"``, not yet fixed to an allocation's own."""
        return self.service_scv == AUTO

    def occupancy(self, arrival_scv: float = 1.0) -> Occupancy:
        """The checked ``G`` of this server under arrivals of gap scv ``arrival_scv``.

        Raises
        ------
        ScenarioError
            ``service_scv = "auto"`` where the model depends on it: the value comes
            from an allocation (:meth:`Scenario.with_service_scv_at`).
        """
        scv = self.service_scv
        if scv == AUTO:
            if self.uses_service_scv(arrival_scv):
                raise ScenarioError(
                    'server: service_scv = "auto" is the mix\'s own service scv at an '
                    "allocation, and this analysis has none: solve the scenario first (solve "
                    "fixes it at the optimum) or give service_scv a number"
                )
            scv = 1.0  # Poisson arrivals, every query decoding: the model does not use it
        return occupancy(self.curve, arrival_scv, self.max_running, scv)

    def to_dict(self) -> dict[str, Any]:
        """The ``[server]`` table (keys at their defaults left out)."""
        out = self.curve.to_dict()
        if self.max_running is not None:
            out["max_running"] = self.max_running
        if self.service_scv != 1.0:
            out["service_scv"] = self.service_scv
        return out


def _max_running(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ScenarioError(f"server: max_running must be a whole number >= 1 (got {value!r})")
    if not math.isfinite(float(value)) or float(value) != int(float(value)) or value < 1:
        raise ScenarioError(
            f"server: max_running must be a whole number >= 1 (got {value!r}); it is the "
            "engine's limit on queries decoding at once (vLLM's max_num_seqs)"
        )
    if value > MAX_CONCURRENCY:
        raise ScenarioError(
            f"server: max_running above {MAX_CONCURRENCY} is not supported (got {value!r}); "
            "remove it if the engine has no practical limit"
        )
    return int(value)


def _service_scv(value: Any) -> float | str:
    if isinstance(value, str) and value == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ScenarioError(f'server: service_scv must be a number or "auto" (got {value!r})')
    v = float(value)
    if not math.isfinite(v) or v < 0 or v > MAX_SERVICE_SCV:
        raise ScenarioError(
            f"server: service_scv must be between 0 and {MAX_SERVICE_SCV:g} (got {value!r}); "
            "it is the squared coefficient of variation of the mix's service time "
            "(1 for exponential work)"
        )
    return v


@dataclass(frozen=True)
class BatchingQueue:
    """Continuous batching: ``W = G(lam m1) / lam`` (see :mod:`.occupancy`).

    Same interface as :class:`~cvxalloc.queue.FIFOQueue`. ``W`` does not depend on
    ``m2``, so ``B = 0`` and every type sees the queue through one scalar
    ``A = G'(lam m1)``.

    Parameters
    ----------
    arrival_rate : float
        ``lam >= 0``.
    concurrency, speedup : sequence
        The capacity curve (see :class:`CapacityCurve`); or pass ``curve`` (a
        :class:`CapacityCurve`, or a :class:`BatchingServer` whose ``max_running``
        and ``service_scv`` apply where these arguments are not given).
    arrival_scv : float
        ``c_a^2`` of the inter-arrival gaps (1: Poisson, exact).
    max_running : int, optional
        At most this many decode at once, the rest wait FIFO.
    service_scv : float
        The service scv the burst and admission terms assume (default 1).

    Examples
    --------
    One stream only (``c = 1``) is the M/M/1 queue, whatever the service distribution:

    >>> q = BatchingQueue(0.5, [1], [1.0])
    >>> round(q.value(1.0, 7.0), 12)   # W = m1 / (1 - lam m1)
    2.0
    """

    arrival_rate: float
    concurrency: Any = (1,)
    speedup: Any = (1.0,)
    curve: CapacityCurve | None = None
    name: str = "batching"
    arrival_scv: float = 1.0
    max_running: int | None = None
    service_scv: float | str = 1.0

    def __post_init__(self) -> None:
        curve = self.curve or capacity_curve(self.concurrency, self.speedup)
        if isinstance(curve, BatchingServer):  # its settings apply where none are given
            if self.max_running is None:
                object.__setattr__(self, "max_running", curve.max_running)
            if self.service_scv == 1.0:
                object.__setattr__(self, "service_scv", curve.service_scv)
            curve = curve.curve
        object.__setattr__(self, "curve", curve)
        object.__setattr__(self, "concurrency", curve.concurrency)
        object.__setattr__(self, "speedup", curve.speedup)
        object.__setattr__(self, "arrival_rate", float(self.arrival_rate))
        server = BatchingServer(curve, self.max_running, self.service_scv)
        object.__setattr__(self, "max_running", server.max_running)
        object.__setattr__(self, "service_scv", server.service_scv)
        object.__setattr__(self, "arrival_scv", float(self.arrival_scv))
        object.__setattr__(self, "_occ", server.occupancy(self.arrival_scv))

    def _repr_pretty_(self, p, cycle) -> None:
        """Print the repr in IPython and hypothesis (which spell a dataclass field by field)."""
        p.text(repr(self))

    def __repr__(self) -> str:
        """Python source that rebuilds the queue (its curve as the two lists).

        >>> BatchingQueue(0.5, [1, 2], [1.0, 1.5])
        BatchingQueue(arrival_rate=0.5, concurrency=(1, 2), speedup=(1.0, 1.5))
        >>> BatchingQueue(0.5, [1, 2], [1.0, 1.5], arrival_scv=4.0, max_running=2)
        BatchingQueue(arrival_rate=0.5, concurrency=(1, 2), speedup=(1.0, 1.5), arrival_scv=4.0, max_running=2)
        """  # noqa: E501
        extra = "" if self.name == "batching" else f", name={self.name!r}"
        for key, default in (("arrival_scv", 1.0), ("max_running", None), ("service_scv", 1.0)):
            value = getattr(self, key)
            if value != default:
                extra += f", {key}={source(value)}"
        return (
            f"BatchingQueue(arrival_rate={source(self.arrival_rate)}, "
            f"concurrency={source(self.concurrency)}, speedup={source(self.speedup)}{extra})"
        )

    @property
    def occupancy(self) -> Occupancy:
        """``G``: the mean number in system as a function of the offered work."""
        return self._occ

    @property
    def capacity(self) -> float:
        """Utilization is ``lam m1 / capacity`` and must stay below 1."""
        return self._occ.capacity

    @property
    def monotone(self) -> bool:
        """``A = G'`` grows with ``m1`` (``G`` convex, checked) and ``B = 0``."""
        return True

    @property
    def poisson(self) -> bool:
        """Whether arrivals are Poisson (``arrival_scv = 1``)."""
        return self.arrival_scv == 1.0

    # --- numeric ------------------------------------------------------------
    def _slack(self, m1: float) -> float:
        return 1.0 - self.arrival_rate * m1 / self.capacity

    def _at(self, m1: float) -> tuple[float, float, float]:
        """``G, G', G''`` at ``x = lam m1`` (``x`` exact, not ``capacity (1 - u)``)."""
        x = self.arrival_rate * m1
        g, g1, g2 = self._occ.profile(1.0 - x / self.capacity, x)
        return float(g[0]), float(g1[0]), float(g2[0])

    def value(self, m1: Any, m2: Any = 0.0) -> Any:
        """``W = G(lam m1) / lam`` in seconds (``m1`` at ``lam = 0``; ``inf`` if unstable).

        Elementwise on arrays; ``m2`` does not enter.
        """
        lam = self.arrival_rate
        if np.ndim(m1) == 0:
            if lam == 0:
                return float(m1)
            if self._slack(m1) <= 0:
                return math.inf
            return self._at(m1)[0] / lam
        m1 = np.asarray(m1, dtype=float)
        if lam == 0:
            return m1.copy()
        x = lam * m1
        u = 1.0 - x / self.capacity
        out = np.full(m1.shape, np.inf)
        ok = u > 0
        if np.any(ok):
            out[ok] = self._occ.profile(u[ok], x[ok])[0] / lam
        return out

    def derivatives(self, m1: float, m2: float = 0.0) -> tuple[float, float]:
        """``(A, B) = (dW/dm1, 2 dW/dm2) = (G'(lam m1), 0)``; ``(inf, inf)`` where unstable."""
        if self._slack(m1) <= 0:
            return np.inf, np.inf
        if self.arrival_rate == 0:
            return 1.0, 0.0
        return self._at(m1)[1], 0.0

    def scalars(self, u: float, m2: float = 0.0) -> tuple[float, float, float, float, float]:
        """``A``, ``B`` and their partials in the slack ``u = 1 - lam m1 / capacity`` and ``m2``.

        ``A = G'(x)`` with ``x = capacity (1 - u)``, ``B = 0``, ``dA/du = -capacity G''(x)``,
        ``dA/dm2 = 0``, ``dB/du = 0``.
        """
        if self.arrival_rate == 0:
            return 1.0, 0.0, 0.0, 0.0, 0.0
        _, g1, g2 = self._occ.profile(u)
        return float(g1[0]), 0.0, -self.capacity * float(g2[0]), 0.0, 0.0

    def hessian(self, m1: float, m2: float = 0.0) -> np.ndarray:
        """Hessian of ``W`` in ``(m1, m2)``: ``W_11 = lam G''(lam m1)``, the rest 0."""
        lam = self.arrival_rate
        h11 = 0.0
        if lam > 0:
            h11 = lam * self._at(m1)[2] if self._slack(m1) > 0 else math.inf
        return np.array([[h11, 0.0], [0.0, 0.0]])

    def curvature(self, u: float, m2: float = 0.0) -> tuple[float, float]:
        """``(W_11, W_12) = (lam G''(x), 0)`` at slack ``u = 1 - lam m1 / capacity``; ``W_22 = 0``.

        Unlike the FIFO queue, ``W_11`` need not grow with ``m1`` (``G''`` is
        not monotone in general): bounds that assume it do not apply.
        """
        lam = self.arrival_rate
        if lam == 0:
            return 0.0, 0.0
        return lam * float(self._occ.profile(u)[2][0]), 0.0

    def change(self, m1: float, m2: float, d_m1: Any, d_m2: Any = 0.0) -> np.ndarray:
        """``W(m1 + d_m1) - W(m1)``, vectorized, without cancellation for small changes.

        A change of the load ``dx = lam d_m1`` small next to the slack is the
        integral of ``G'`` over ``[x, x + dx]`` by 4-point Gauss-Legendre (exact
        to rounding there); larger ones are plain differences. ``inf`` where the
        new point is unstable.
        """
        d_m1 = np.asarray(d_m1, dtype=float)
        lam = self.arrival_rate
        if lam == 0:
            return d_m1.copy()
        cap = self.capacity
        x0 = lam * m1
        u0 = 1.0 - x0 / cap
        dx = lam * d_m1
        du = -dx / cap  # change of the slack
        out = np.full(np.shape(d_m1), np.inf)
        u1 = u0 + du
        ok = u1 > 0
        small = ok & (np.abs(du) <= 1e-2 * u0)
        if np.any(small):
            nodes, weights = np.polynomial.legendre.leggauss(4)
            frac = 0.5 * (1.0 + nodes[None, :])
            uu = u0 + du[small][:, None] * frac
            xx = x0 + dx[small][:, None] * frac
            g1 = self._occ.profile(uu.ravel(), xx.ravel())[1].reshape(uu.shape)
            # dW = (1 / lam) int G'(x) dx with dx = lam d_m1
            out[small] = d_m1[small] * 0.5 * (g1 @ weights)
        big = ok & ~small
        if np.any(big):
            g0 = float(self._occ.profile(u0, x0)[0][0])
            out[big] = (self._occ.profile(u1[big], x0 + dx[big])[0] - g0) / lam
        return out

    def parameter_partials(self, m1: float, m2: float = 0.0) -> dict[str, tuple]:
        """Partials of ``(W, A, B)`` in the queue's parameters at fixed moments.

        ``arrival_rate``: ``W_lam = (x G'(x) - G(x)) / lam^2``, ``A_lam = m1 G''(x)``;
        ``arrival_scv``: ``W_c = G_c(x) / lam``, ``A_c = G'_c(x)`` (at ``c_a^2 = 1`` the
        derivative on the bursty side); ``B`` has none.
        """
        lam = self.arrival_rate
        if lam == 0:
            return {"arrival_rate": (0.0, 0.0, 0.0), "arrival_scv": (0.0, 0.0, 0.0)}
        g, g1, g2 = self._at(m1)
        x = lam * m1
        gc, g1c = self._occ.arrival_scv_partials(1.0 - x / self.capacity, x)
        return {
            "arrival_rate": ((x * g1 - g) / (lam * lam), m1 * g2, 0.0),
            "arrival_scv": (float(gc[0]) / lam, float(g1c[0]), 0.0),
        }

    def lower_bound(self, m1: float, m2_min: float = 0.0) -> float:
        """``W`` does not depend on ``m2``: :meth:`value`."""
        return self.value(m1, m2_min)

    def min_slack(self, w_max: float, K: float = 1.0, pv: float = 0.0) -> float:
        """A lower bound of ``1 - rho`` over allocations with ``W <= w_max``.

        ``G`` increases from 0 to infinity on ``[0, capacity)``, so ``W <= w_max``
        means ``x <= G^{-1}(lam w_max)``: solved by Brent's method in the slack
        and returned a little low (the bracket end where ``G`` is still above).
        ``K`` and ``pv`` (used by the FIFO queue) do not enter.
        """
        target = self.arrival_rate * w_max
        if not target > 0:
            return 1.0
        if not math.isfinite(target):
            raise UnstableError(
                "server: no finite bound on the mean system time, so no utilization cap "
                "holds the optimum; set latency_weight > 0 or lower max_tokens"
            )

        def h(u: float) -> float:
            return float(self._occ.profile(u)[0][0]) - target

        lo = 0.5
        while h(lo) <= 0:
            lo *= 0.5
            if lo < 1e-300:
                raise UnstableError("server: the wait bound is beyond the model's range")
        hi = 1.0 if h(1.0) <= 0 else lo
        if hi == lo:
            return lo
        root = brentq(h, lo, hi, xtol=1e-300, rtol=8 * np.finfo(float).eps, maxiter=300)
        return max(root * (1.0 - 1e-12), lo)

    # --- conic --------------------------------------------------------------
    def cvxpy(
        self,
        s: Any,
        p: np.ndarray,
        k: np.ndarray | None = None,
        pv: float = 0.0,
        time_unit: float = 1.0,
        slots: int = 96,
        min_slack: float | None = None,
    ) -> TangentCuts | Any:
        """An outer approximation of ``W / time_unit`` by tangent cuts (an epigraph).

        ``G`` is convex but not DCP-representable, so ``W`` is replaced by a
        variable ``w >= (G(x_j) + G'(x_j) (x - x_j)) / lam`` for cut points ``x_j``;
        ``w`` underestimates ``W``, so the relaxed problem's optimum bounds ``U*``
        from above (:class:`~cvxalloc.queue.cuts.TangentCuts`). ``min_slack``: a
        slack the optimum provably keeps; the load is capped there.
        """
        if self.arrival_rate == 0:
            return p @ s  # W = m1: a query runs alone
        return TangentCuts(self, s, p, time_unit, slots, min_slack)
