"""A fleet: ``k`` identical replicas behind a router, as a layer over one replica's model.

The scenario's ``[queue]`` (``arrival_rate = lam``, ``arrival_scv = c_a^2``) is
the whole fleet's traffic; ``[server]`` describes one replica; ``[fleet]`` says
how many replicas there are and how queries are routed (:class:`Fleet`). Every
replica serves the same mix under the same budgets and receives ``lam / k``
queries per second, so the *utilization* is one replica's,
``rho = lam m1 / (k c_max)`` (``c_max = 1`` for a batch-1 server), and the
fleet is stable while ``rho < 1``.

:func:`fleet_queue` builds the fleet's queue model from the single-replica
model (a function ``single(rate, scv)`` that :func:`cvxalloc.queue.queue_model`
supplies), so a solver sees the same interface as for one server:

* ``random``: each replica sees the stream thinned by ``1 / k``; for renewal
  arrivals the thinned gaps are a geometric sum of gaps, with scv
  ``1 + (c_a^2 - 1) / k`` (Poisson stays Poisson). The fleet's ``W`` is
  *exactly* one replica's at rate ``lam / k`` with that scv: the model is that
  replica's queue model itself.
* ``round-robin``: each replica sees every ``k``-th arrival; for renewal
  arrivals its gaps are sums of ``k`` gaps, scv ``c_a^2 / k`` (Erlang-``k`` for
  Poisson). A batch-1 replica is GI/G/1 with that scv, corrected by Kraemer and
  Langenbach-Belz when it is below 1 (:class:`~cvxalloc.queue.routing.RoundRobin`);
  a batching replica's gaps are taken as Poisson when that scv is below 1 (processor
  sharing hardly feels smooth arrivals: measured); approximate.
* ``shortest-queue``: join the replica with the fewest queries; approximate.
  Batch-1 replicas: the convexified Nelson-Philips approximation over one
  replica's wait at rate ``lam / k`` with the fleet's ``c_a^2``
  (:class:`~cvxalloc.queue.routing.ShortestQueue`). Batching replicas (processor
  sharing): the queries kept evenly balanced, so the fleet is one batching
  server whose capacity curve is ``k`` replicas sharing ``n`` queries,
  ``c_F(n) = k c(n / k)`` (``n`` alone up to ``n = k``): :func:`pooled_curve`.

The approximate routers are :class:`FleetQueue`: ``W = m1 F(omega / m1)`` with
``omega`` the base replica's wait, convex in the budgets (see
:mod:`cvxalloc.queue.routing`), with the same methods as
:class:`~cvxalloc.queue.FIFOQueue` (value, derivatives, the scalars in the slack
and ``m2`` with their partials, Hessian, changes without cancellation,
parameter partials, stability cap) and a cutting-plane conic form
(:class:`PerspectiveCuts`). With ``replicas = 1`` the scenario's model is
exactly the single server's.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._source import source
from ..errors import ScenarioError
from .batching import MAX_CONCURRENCY, BatchingServer, capacity_curve
from .routing import RoundRobin, ShortestQueue, shortest_queue

__all__ = [
    "Fleet",
    "FleetQueue",
    "PerspectiveCuts",
    "ROUTERS",
    "fleet_queue",
    "scenario_partials",
    "fleet_from_table",
    "fleet_info",
    "pooled_curve",
    "pooled_server",
]

#: The routers a ``[fleet]`` table may name.
ROUTERS = ("random", "round-robin", "shortest-queue")
#: Keys of ``[fleet]`` and their defaults.
FLEET_KEYS = {"replicas": 1, "router": "random"}
#: Largest number of replicas accepted.
MAX_REPLICAS = 1 << 20


@dataclass(frozen=True)
class Fleet:
    """``replicas`` identical copies of the server behind a ``router``.

    Parameters
    ----------
    replicas : int
        ``k >= 1``.
    router : str
        ``"random"``, ``"round-robin"`` or ``"shortest-queue"``.
    """

    replicas: int = 1
    router: str = "random"

    def __post_init__(self) -> None:
        k = self.replicas
        if isinstance(k, bool) or not isinstance(k, (int, float, np.integer, np.floating)):
            raise ScenarioError(f"fleet: replicas must be a whole number >= 1 (got {k!r})")
        if not (math.isfinite(float(k)) and float(k) == int(k) and k >= 1):
            raise ScenarioError(f"fleet: replicas must be a whole number >= 1 (got {k!r})")
        if k > MAX_REPLICAS:
            raise ScenarioError(f"fleet: replicas must be at most {MAX_REPLICAS} (got {k})")
        object.__setattr__(self, "replicas", int(k))
        if self.router not in ROUTERS:
            close = difflib.get_close_matches(str(self.router), ROUTERS, n=1)
            hint = (
                f'did you mean "{close[0]}"?'
                if close
                else "use one of " + ", ".join(f'"{r}"' for r in ROUTERS)
            )
            raise ScenarioError(f"fleet: unknown router {self.router!r}; {hint}")

    def __repr__(self) -> str:
        """Python source that rebuilds the fleet.

        >>> Fleet(4, "shortest-queue")
        Fleet(replicas=4, router='shortest-queue')
        """
        return f"Fleet(replicas={source(self.replicas)}, router={self.router!r})"

    @property
    def exact(self) -> bool:
        """Whether the fleet's model is exact given the replica's (one replica, or random)."""
        return self.replicas == 1 or self.router == "random"

    def replica_scv(self, arrival_scv: float) -> float:
        """The gap scv the base replica model is given: thinned (random, round-robin) or
        the fleet's own (shortest-queue, whose approximation takes the input's)."""
        k, c = self.replicas, float(arrival_scv)
        if k == 1 or self.router == "shortest-queue":
            return c
        if self.router == "random":
            return 1.0 + (c - 1.0) / k
        return c / k

    @property
    def scv_factor(self) -> float:
        """``d (replica scv) / d (fleet scv)``: ``1 / k`` (random, round-robin) or 1."""
        k = self.replicas
        return 1.0 if (k == 1 or self.router == "shortest-queue") else 1.0 / k

    def to_dict(self) -> dict[str, Any]:
        """The ``[fleet]`` table."""
        return {"replicas": self.replicas, "router": self.router}

    def describe(self) -> str:
        """E.g. ``4 replicas, shortest-queue routing (approximate)``."""
        if self.replicas == 1:
            return "1 replica"
        how = "exact" if self.exact else "approximate"
        return f"{self.replicas} replicas, {self.router} routing ({how})"


def fleet_from_table(value: Any) -> Fleet | None:
    """A :class:`Fleet` from a ``[fleet]`` table (or a Fleet, or None); errors name the key."""
    if value is None or isinstance(value, Fleet):
        return value
    if not isinstance(value, Mapping):
        raise ScenarioError(
            f"fleet must be a table with replicas and router (got {type(value).__name__})"
        )
    for key in value:
        if key not in FLEET_KEYS:
            close = difflib.get_close_matches(str(key), list(FLEET_KEYS), n=1)
            hint = f'did you mean "{close[0]}"?' if close else "allowed: replicas, router"
            raise ScenarioError(f'fleet: unknown key "{key}"; {hint}')
    return Fleet(value.get("replicas", 1), value.get("router", "random"))


def fleet_queue(fleet: Fleet, arrival_rate: float, arrival_scv: float, single: Callable) -> Any:
    """The fleet's queue model, from ``single(rate, scv)``, one replica's model.

    ``random`` returns one replica's model at ``lam / k`` with the thinned scv
    (exact); ``round-robin`` the same with scv ``c_a^2 / k``, wrapped in the
    Kraemer-Langenbach-Belz correction for a batch-1 replica when that is below 1;
    ``shortest-queue`` a :class:`FleetQueue` over one batch-1 replica at
    ``lam / k`` with the fleet's scv, or for batching replicas one batching server
    at ``lam`` on the :func:`pooled_curve`. ``single(rate, scv, curve=None)``
    builds one server's model (``curve`` replaces the scenario's capacity curve).

    Raises
    ------
    ScenarioError
        When the replica's model cannot take the gap scv the router gives it
        (a batching replica that assumes Poisson arrivals).
    """
    k = fleet.replicas
    scv = fleet.replica_scv(arrival_scv)
    base = single(arrival_rate / k, scv)
    _check_base_scv(base, scv, fleet)
    if k > 1 and fleet.router == "shortest-queue" and _is_batching(base):
        return single(arrival_rate, scv, pooled_server(base, k))
    if k == 1 or fleet.router == "random":
        return base
    if fleet.router == "round-robin":
        if scv >= 1.0:
            return base  # the replica's own model of that scv (Kingman for batch-1)
        if _is_batching(base):
            # processor sharing of variable work hardly feels smooth arrivals: measured
            # (validation/fleet.py), round-robin within 1% of Poisson gaps at one replica,
            # and 7-23% below them with the batching model's smooth-arrival scaling
            return single(arrival_rate / k, 1.0)
        return FleetQueue(base, RoundRobin(scv), k, fleet.router)
    return FleetQueue(base, shortest_queue(k), k, fleet.router)


def pooled_server(base: Any, replicas: int) -> Any:
    """The batching server that ``replicas`` copies of ``base``'s server make when they
    share their queries evenly: the :func:`pooled_curve`, ``replicas`` times the
    admission limit (``max_running``) and the same service scv."""
    limit = getattr(base, "max_running", None)
    return BatchingServer(
        pooled_curve(base.curve, replicas),
        None if limit is None else int(replicas) * int(limit),
        getattr(base, "service_scv", 1.0),
    )


def pooled_curve(curve: Any, replicas: int) -> Any:
    """The capacity curve of ``replicas`` batching replicas sharing their queries evenly.

    With ``n = q k + r`` queries (``0 <= r < k``), ``k - r`` replicas decode
    ``q`` and ``r`` decode ``q + 1``: total rate ``(k - r) c(q) + r c(q + 1)``,
    which is ``k c(n / k)`` for the piecewise-linear ``c`` with ``c(0) = 0``. As a
    curve: ``n`` for ``n <= k`` (each query alone on a replica), then the points
    ``(k n_j, k c(n_j))``. Shortest-queue routing keeps the replicas within one
    query of each other most of the time, which is what this assumes.

    Raises
    ------
    ScenarioError
        When ``k`` times the curve's last concurrency exceeds what a curve may
        hold (:data:`cvxalloc.queue.batching.MAX_CONCURRENCY`).
    """
    k = int(replicas)
    conc = [1] + [k * int(n) for n in curve.concurrency]
    speed = [1.0] + [k * float(c) for c in curve.speedup]
    if conc[-1] > MAX_CONCURRENCY:
        raise ScenarioError(
            f"fleet: {k} batching replicas behind shortest-queue routing decode up to "
            f"{conc[-1]} queries together, beyond the {MAX_CONCURRENCY} a model holds; use "
            'fewer replicas or router = "random"'
        )
    return capacity_curve(conc, speed)


def _jet1(transform: Any, y: float) -> tuple[float, float, float]:
    """``(F, F', F'')`` at one ratio ``y``, as floats."""
    f, f1, f2 = transform.jet(np.array([y]))
    return float(f[0]), float(f1[0]), float(f2[0])


def _is_batching(queue: Any) -> bool:
    return getattr(queue, "name", "single") == "batching"


def _check_base_scv(base: Any, scv: float, fleet: Fleet) -> None:
    """Refuse a replica model that would ignore the gap scv the router gives it."""
    own = getattr(base, "arrival_scv", None)
    if scv != 1.0 and (own is None or own != scv):
        raise ScenarioError(
            f"fleet: {fleet.router} routing gives each replica gaps of scv {scv:.4g}, and this "
            "batching server's model assumes Poisson arrivals (scv 1); use "
            'router = "random" or "shortest-queue" with Poisson arrivals (arrival_scv = 1), '
            'or a batch-1 server (model = "single")'
        )


def scenario_partials(scenario, queue: Any, m1: float, m2: float) -> Mapping[str, tuple]:
    """Partials of ``(W, A, B)`` in the *scenario's* ``arrival_rate`` and ``arrival_scv``.

    The queue model's :meth:`parameter_partials` are in its own parameters (one
    replica's rate ``lam / k`` and gap scv); the chain rule gives the fleet's:
    ``1 / k`` for the rate, :attr:`Fleet.scv_factor` for the scv. Without a
    fleet (or with one replica) the queue's own partials, unchanged.
    """
    par = queue.parameter_partials(m1, m2)
    fleet = getattr(scenario, "fleet", None)
    if fleet is None or fleet.replicas == 1:
        return par
    lam = scenario.arrival_rate
    # the queue's rate is proportional to the fleet's: lam / k, or lam (a pooled curve)
    rate = queue.arrival_rate / lam if lam > 0 else 1.0 / fleet.replicas
    factors = {"arrival_rate": rate, "arrival_scv": fleet.scv_factor}
    out = type(par)()
    for key, factor in factors.items():
        if key in par:
            out[key] = tuple(factor * v for v in par[key])
    return out


def approximation(fleet: Fleet, queue: Any) -> str | None:
    """What approximates the router in ``queue`` (None when the model is exact)."""
    if fleet.exact:
        return None
    if isinstance(queue, FleetQueue):
        return queue.transform.describe()
    if fleet.router == "shortest-queue":
        return "balanced pooling: one batching server on the replicas' pooled capacity curve"
    scv = getattr(queue, "arrival_scv", 1.0)
    if scv == 1.0:
        return "Poisson gaps at one batching replica (round-robin's smoothing left out)"
    return f"renewal gaps of scv {scv:.4g} (c_a^2 / k) at one replica"


def fleet_info(scenario, evaluation: Any, queue: Any) -> dict[str, Any] | None:
    """The ``fleet`` entry of a result's JSON (None without a ``[fleet]``).

    ``replicas``, ``router``, ``model`` (``"exact"`` or ``"approximate"``),
    ``approximation`` (what approximates the router, or None),
    ``arrival_rate_per_replica`` (queries/s), ``utilization_per_replica`` (the
    result's ``utilization``) and ``max_arrival_rate`` (the fleet's stability
    limit at these budgets, ``k c_max / m1``, queries/s). ``queue`` is the
    scenario's queue model (:func:`cvxalloc.queue.queue_model`).
    """
    fleet = getattr(scenario, "fleet", None)
    if fleet is None:
        return None
    m1 = float(evaluation.m1)
    return {
        "replicas": fleet.replicas,
        "router": fleet.router,
        "model": "exact" if fleet.exact else "approximate",
        "approximation": approximation(fleet, queue),
        "arrival_rate_per_replica": scenario.arrival_rate / fleet.replicas,
        "utilization_per_replica": float(evaluation.utilization),
        "max_arrival_rate": scenario.capacity / m1 if m1 > 0 else math.inf,
    }


# ----------------------------------------------------------------------------
# the approximate routers: W = m1 F(omega / m1)
@dataclass(frozen=True)
class FleetQueue:
    """A router's fleet over one replica's queue: ``W = m1 F(omega / m1)``.

    Same interface as :class:`~cvxalloc.queue.FIFOQueue`; ``arrival_rate`` and
    ``capacity`` are one replica's (utilization ``lam m1 / (k c_max)``).

    Parameters
    ----------
    base : FIFOQueue
        One batch-1 replica fed at ``lam / k``; ``omega = W_base - m1`` is its wait.
        (The methods use only the base's queue interface; the conic form needs its
        second-order cone.)
    transform : RoundRobin or ShortestQueue
        ``F`` (:mod:`cvxalloc.queue.routing`).
    replicas : int
    router : str
    """

    base: Any
    transform: RoundRobin | ShortestQueue
    replicas: int
    router: str
    name: str = "fleet"

    def _repr_pretty_(self, p, cycle) -> None:
        """Print the repr in IPython and hypothesis."""
        p.text(repr(self))

    def __repr__(self) -> str:
        return (
            f"FleetQueue(base={self.base!r}, transform={self.transform!r}, "
            f"replicas={self.replicas}, router={self.router!r})"
        )

    # --- what solvers ask of a queue ------------------------------------------
    @property
    def arrival_rate(self) -> float:
        """One replica's arrival rate ``lam / k``."""
        return self.base.arrival_rate

    @property
    def arrival_scv(self) -> float:
        """The base replica's gap scv."""
        return float(getattr(self.base, "arrival_scv", 1.0))

    @property
    def capacity(self) -> float:
        """One replica's capacity (``1`` for batch-1, ``c_max`` when batching)."""
        return self.base.capacity

    @property
    def poisson(self) -> bool:
        return False

    @property
    def monotone(self) -> bool:
        """Not claimed: the first-order solvers' corner bounds do not apply."""
        return False

    @property
    def uses_m2(self) -> bool:
        """Whether ``W`` depends on ``m2`` (the base is batch-1)."""
        return not _is_batching(self.base)

    def describe(self) -> str:
        return (
            f"{self.replicas} replicas, {self.router} routing (approximate: "
            f"{self.transform.describe()})"
        )

    # --- numeric ------------------------------------------------------------
    def _jets(self, m1: float, m2: float):
        """``y``, ``omega_1 = A_b - 1``, ``B_b`` and ``(F, F', F'')`` at ``y``."""
        w_b = float(self.base.value(m1, m2))
        a_b, b_b = self.base.derivatives(m1, m2)
        y = (w_b - m1) / m1 if m1 > 0 else 0.0
        f, f1, f2 = _jet1(self.transform, max(y, 0.0))
        return max(y, 0.0), a_b - 1.0, b_b, f, f1, f2

    def value(self, m1: Any, m2: Any = 0.0) -> Any:
        """``W = m1 F(omega / m1)`` in seconds (``inf`` where unstable); elementwise."""
        scalar = np.ndim(m1) == 0 and np.ndim(m2) == 0
        m1a = np.asarray(m1, dtype=float)
        w_b = np.asarray(self.base.value(m1, m2), dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(m1a > 0, (w_b - m1a) / np.where(m1a > 0, m1a, 1.0), 0.0)
        ok = np.isfinite(w_b)
        f = self.transform.jet(np.where(ok, np.maximum(y, 0.0), 0.0))[0]
        out = np.where(ok, m1a * f, np.inf)
        return float(out) if scalar else out

    def derivatives(self, m1: float, m2: float = 0.0) -> tuple[float, float]:
        """``(A, B) = (dW/dm1, 2 dW/dm2)``; ``(inf, inf)`` where unstable.

        ``A = F - y F' + F' (A_b - 1)``, ``B = F' B_b`` with the base's ``A_b``, ``B_b``.
        """
        if 1.0 - self.arrival_rate * m1 / self.capacity <= 0:
            return np.inf, np.inf
        y, om1, b_b, f, f1, _ = self._jets(m1, m2)
        return f - y * f1 + f1 * om1, f1 * b_b

    def _m1(self, u: float) -> float:
        return (1.0 - u) * self.capacity / self.arrival_rate

    def scalars(self, u: float, m2: float = 0.0) -> tuple[float, ...]:
        """``A``, ``B`` and their partials in the slack ``u`` and ``m2``.

        Returns
        -------
        (A, B, dA/du, dA/dm2, dB/du, dB/dm2) : tuple of float
            Unlike one server's queue, ``dB/dm2`` need not be 0.
        """
        if self.arrival_rate == 0:
            return 1.0, 0.0, 0.0, 0.0, 0.0, 0.0
        m1 = self._m1(u)
        base = self.base.scalars(u, m2)
        a_b, b_b, da_b_du, da_b_dm2, db_b_du = base[:5]
        w_b = float(self.base.value(m1, m2))
        y = max((w_b - m1) / m1, 0.0) if m1 > 0 else 0.0
        f, f1, f2 = _jet1(self.transform, y)
        om1 = a_b - 1.0
        mu = -self.capacity / self.arrival_rate  # dm1/du
        y_u = mu * (om1 - y) / m1 if m1 > 0 else 0.0
        y_m2 = 0.5 * b_b / m1 if m1 > 0 else 0.0
        A = f - y * f1 + f1 * om1
        B = f1 * b_b
        return (
            A,
            B,
            f2 * (om1 - y) * y_u + f1 * da_b_du,
            f2 * (om1 - y) * y_m2 + f1 * da_b_dm2,
            f2 * y_u * b_b + f1 * db_b_du,
            f2 * y_m2 * b_b,
        )

    def hessian(self, m1: float, m2: float = 0.0) -> np.ndarray:
        """Hessian of ``W`` in ``(m1, m2)``: ``F' H_b + (F'' / m1) v v^T``,
        ``v = (A_b - 1 - y, B_b / 2)``."""
        if 1.0 - self.arrival_rate * m1 / self.capacity <= 0:
            return np.full((2, 2), np.inf)
        y, om1, b_b, _, f1, f2 = self._jets(m1, m2)
        v = np.array([om1 - y, 0.5 * b_b])
        return f1 * np.asarray(self.base.hessian(m1, m2), dtype=float) + (f2 / m1) * np.outer(v, v)

    def change(self, m1: float, m2: float, d_m1: Any, d_m2: Any = 0.0) -> np.ndarray:
        """``W(m1 + d_m1, m2 + d_m2) - W(m1, m2)``, vectorized, without cancellation.

        ``m1' F(y') - m1 F(y) = d_m1 F(y') + m1 (F(y') - F(y))``; the base gives
        ``d omega`` without cancellation and ``F(y') - F(y)`` is the integral of
        ``F'`` (4-point Gauss-Legendre) where ``y' - y`` is small.
        """
        d_m1 = np.asarray(d_m1, dtype=float)
        d_m2 = np.broadcast_to(np.asarray(d_m2, dtype=float), d_m1.shape)
        om0 = float(self.base.value(m1, m2)) - m1
        d_om = np.asarray(self.base.change(m1, m2, d_m1, d_m2), dtype=float) - d_m1
        m1n = m1 + d_m1
        out = np.full(d_m1.shape, np.inf)
        ok = np.isfinite(d_om) & (m1n > 0) & (m1 > 0)
        if not np.any(ok):
            return out
        y0 = max(om0 / m1, 0.0)
        dy = (d_om[ok] * m1 - om0 * d_m1[ok]) / (m1 * m1n[ok])
        yn = np.maximum(y0 + dy, 0.0)
        f_new = self.transform.jet(yn)[0]
        d_f = f_new - float(self.transform.jet(np.array([y0]))[0][0])
        small = np.abs(dy) <= 1e-2 * max(y0, 1e-300)
        if np.any(small):
            nodes, weights = np.polynomial.legendre.leggauss(4)
            ys = y0 + 0.5 * dy[small][:, None] * (1.0 + nodes[None, :])
            f1 = self.transform.jet(ys.ravel())[1].reshape(ys.shape)
            d_f[small] = dy[small] * 0.5 * (f1 @ weights)
        out[ok] = d_m1[ok] * f_new + m1 * d_f
        return out

    def parameter_partials(self, m1: float, m2: float = 0.0) -> Mapping[str, tuple]:
        """Partials of ``(W, A, B)`` in one replica's ``arrival_rate`` and gap scv.

        From the base's partials ``(omega_t, A_b_t, B_b_t)`` and the transform's
        own dependence on the scv (:meth:`RoundRobin.scv_jet`): with
        ``y_t = omega_t / m1``, ``W_t = F' omega_t + m1 F_t``,
        ``A_t = F'' y_t (A_b - 1 - y) + F' A_b_t + F_t - y F'_t + F'_t (A_b - 1)``,
        ``B_t = (F'' y_t + F'_t) B_b + F' B_b_t``. :func:`scenario_partials` turns
        them into the fleet's.
        """
        y, om1, b_b, _, f1, f2 = self._jets(m1, m2)
        base = self.base.parameter_partials(m1, m2)
        out = type(base)()
        for key in ("arrival_rate", "arrival_scv"):
            if key not in base:
                continue
            w_t, a_t, b_t = base[key]
            ft, f1t = (0.0, 0.0)
            if key == "arrival_scv":
                ft, f1t = (float(v[0]) for v in self.transform.scv_jet(np.array([y])))
            y_t = w_t / m1
            out[key] = (
                f1 * w_t + m1 * ft,
                f2 * y_t * (om1 - y) + f1 * a_t + ft - y * f1t + f1t * om1,
                (f2 * y_t + f1t) * b_b + f1 * b_t,
            )
        return out

    def lower_bound(self, m1: float, m2_min: float = 0.0) -> float:
        """``W`` grows with ``m2`` (``F' >= 0``, the base wait grows): :meth:`value`."""
        return self.value(m1, m2_min)

    def min_slack(self, w_max: float, K: float = 1.0, pv: float = 0.0) -> float:
        """A lower bound of ``1 - rho`` over allocations with ``W <= w_max``.

        A tangent of ``F`` at ``y0`` with ``F(y0) >= y0 F'(y0)`` gives
        ``W >= F'(y0) omega``, and ``F >= 1`` gives ``m1 <= W``: so
        ``W_base = m1 + omega <= w_max (1 + 1 / F'(y0))`` and the base's
        ``min_slack`` of that bound holds (the steepest such tangent is used).
        """
        ys = np.geomspace(1e-4, 1e8, 241)
        f, f1, _ = self.transform.jet(ys)
        ok = (f - ys * f1 >= 0) & (f1 > 0)
        slope = float(np.max(f1[ok])) if np.any(ok) else 0.0
        if slope <= 0:
            return self.base.min_slack(math.inf, K, pv)
        return self.base.min_slack(w_max * (1.0 + 1.0 / slope), K, pv)

    # --- conic --------------------------------------------------------------
    def cvxpy(
        self,
        s: Any,
        p: np.ndarray,
        k: np.ndarray | None = None,
        pv: float = 0.0,
        time_unit: float = 1.0,
        **options: Any,
    ) -> PerspectiveCuts:
        """An outer approximation of ``W / time_unit`` by cuts of the perspective.

        ``F(y) >= F(y_j) + F'(y_j) (y - y_j)`` times ``m1`` is linear in
        ``(omega, m1)``: ``W >= F'(y_j) omega + (F(y_j) - y_j F'(y_j)) m1``. The
        base's wait enters as ``omega >= W_base(t) - m1``, a second-order cone
        (the batch-1 queue's form). See :class:`PerspectiveCuts`.
        """
        k = np.zeros(np.size(p)) if k is None else k
        return PerspectiveCuts(self, s, p, k, pv, time_unit)


class PerspectiveCuts:
    """The epigraph ``w >= max_j (a_j omega + b_j m1 + c_j)``, ``omega >= W_base - m1``.

    The same protocol as :class:`~cvxalloc.queue.batching.TangentCuts` for the
    conic solver's refinement: ``expr``, ``constraints``, ``points``, ``full``,
    :meth:`locate` (where a point is), :meth:`gap` and :meth:`add`.
    """

    def __init__(self, queue: FleetQueue, s, p, k, pv: float, time_unit: float, slots: int = 64):
        import cvxpy as cp

        self.queue, self.time_unit, self.slots = queue, float(time_unit), int(slots)
        self.m1 = p @ s  # in time units
        self.expr = cp.Variable(name="w_fleet")
        self.omega = cp.Variable(name="replica_wait")
        w_base = queue.base.cvxpy(s, p, k, pv, time_unit)  # a second-order cone (batch-1)
        self._a = cp.Parameter(self.slots, name="cut_wait")
        self._b = cp.Parameter(self.slots, name="cut_mean")
        self._c = cp.Parameter(self.slots, name="cut_pad")
        self.constraints = [
            self.omega >= w_base - self.m1,
            self.omega >= 0,
            self.expr >= cp.multiply(self._a, self.omega) + self._b * self.m1 + self._c,
        ]
        self.points: list[float] = []
        self._cuts: list[tuple[float, float]] = []
        top = getattr(queue.transform, "y_star", math.inf)
        grid = np.geomspace(1e-3, min(top, 1e4), 12) if math.isfinite(top) else None
        for y in np.concatenate([[0.0], grid if grid is not None else np.geomspace(1e-3, 1e4, 16)]):
            self._add_ratio(float(y))
        if math.isfinite(top):
            self._add_ratio(float(top))
        self._publish()

    @property
    def full(self) -> bool:
        """No slot left for another cut."""
        return len(self.points) >= self.slots

    def _add_ratio(self, y: float) -> None:
        f, f1, _ = _jet1(self.queue.transform, y)
        self._cuts.append((f1, f - y * f1))
        self.points.append(y)

    def _publish(self) -> None:
        pad = self.slots - len(self._cuts)
        self._a.value = np.array([a for a, _ in self._cuts] + [0.0] * pad)
        self._b.value = np.array([b for _, b in self._cuts] + [0.0] * pad)
        self._c.value = np.array([0.0] * len(self._cuts) + [-1.0 - j for j in range(pad)])

    def locate(self, moments: Any) -> tuple[float, float]:
        """``(m1, m2)`` of a point's moments (what :meth:`gap` and :meth:`add` take)."""
        return float(moments.m1), float(moments.m2)

    def _relaxed(self, m1: float, m2: float) -> float:
        """The smallest ``w`` (seconds) the cuts allow at ``(m1, m2)``."""
        omega = max(float(self.queue.base.value(m1, m2)) - m1, 0.0)
        return max(a * omega + b * m1 for a, b in self._cuts)

    def gap(self, where: tuple[float, float]) -> float:
        """``W - w_cuts`` at ``where = (m1, m2)``, seconds."""
        m1, m2 = where
        w = float(self.queue.value(m1, m2))
        return w - self._relaxed(m1, m2) if math.isfinite(w) else math.inf

    def add(self, where: tuple[float, float]) -> bool:
        """Cut at the point's ratio ``y = omega / m1``; False if full."""
        if self.full:
            return False
        m1, m2 = where
        w_b = float(self.queue.base.value(m1, m2))
        if not math.isfinite(w_b) or m1 <= 0:
            return False
        self._add_ratio(max(w_b - m1, 0.0) / m1)
        self._publish()
        return True
