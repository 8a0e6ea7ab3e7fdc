"""Event-driven simulation of a continuous-batching server.

Layer: workflows (:mod:`cvxalloc.simulate`).

The simulated server is the one :class:`cvxalloc.queue.BatchingQueue` models,
or the real engine's admission rule:

* queries arrive as a Poisson process of rate ``lam``; a query is of type
  ``i`` with probability ``p_i`` and brings ``S`` seconds of work *alone*
  (mean ``s_i = a_i + b_i t_i``, second moment ``(1 + k_i) s_i^2 + v_i``: a
  gamma distribution with those moments, as in :mod:`cvxalloc.simulate.engine`);
* with ``n`` queries decoding, each advances at ``c(n) / n`` seconds-alone per
  second (``c`` the capacity curve, flat after its last point); a query leaves
  when its work is done;
* ``limit=None``: every query in the system decodes (processor sharing, the
  model); ``limit=K``: at most ``K`` decode and the rest wait in FIFO order,
  each admitted when a decoding query leaves (vLLM's ``max_num_seqs``).

Implementation: a *virtual time* ``V`` with ``dV/dt = c(n) / n`` is the work
each decoding query has received since any fixed instant, so a query admitted
at virtual time ``V0`` with work ``S`` leaves when ``V = V0 + S``; a heap of
those finishing virtual times gives the next departure in ``O(log n)``. One
Python loop step per arrival and per departure (about 10^6 queries in a few
seconds, :file:`benchmarks/bench_batching.py`).

The mean system time gets a batch-means confidence interval after a warm-up
(:func:`cvxalloc.simulate.engine.batch_means_interval`); realized accuracy counts
correct answers drawn with probability ``A_i(t_i)``.

Examples
--------
>>> from importlib import resources
>>> import cvxalloc
>>> from cvxalloc.simulate import simulate_batching
>>> sc = cvxalloc.load_scenario(resources.files("cvxalloc") / "data/example_batching.toml")
>>> sim = simulate_batching(sc, cvxalloc.solve(sc).tokens, queries=100_000, seed=1)
>>> low, high = sim.mean_system_time_ci
>>> bool(low <= sim.model_mean_system_time <= high)
True
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import special

from .._source import fields_source
from ..errors import ScenarioError, UnstableError
from ..objective import Objective
from ..queue import BatchingQueue
from ..queue.batching import CapacityCurve, capacity_curve
from .engine import (
    TypeSampler,
    batch_means_interval,
    model_percentiles,
    percentile_intervals,
    sample_service,
    service_distribution,
)

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["system_times", "simulate_batching", "BatchingSimulation", "simulate_work"]


def _rates(curve: CapacityCurve, n_max: int) -> list[float]:
    """Per-query speed ``c(n) / n`` for ``n = 0..n_max`` (entry 0 unused)."""
    n = np.arange(1, n_max + 1, dtype=float)
    return [0.0, *(curve.rate(n) / n).tolist()]


def system_times(
    gaps: np.ndarray, work: np.ndarray, curve: CapacityCurve, limit: int | None = None
) -> np.ndarray:
    """System time of each query (arrival order), starting from an empty server.

    Parameters
    ----------
    gaps : ndarray
        Inter-arrival times (the first from time 0), seconds.
    work : ndarray
        Each query's work, in seconds when it runs alone.
    curve : CapacityCurve
        ``c(n)``.
    limit : int, optional
        At most this many decode together, the rest wait FIFO (None: all of
        them, processor sharing).

    Returns
    -------
    ndarray
        Departure minus arrival time of every query.
    """
    if limit is not None and (int(limit) != limit or limit < 1):
        raise ScenarioError(f"limit must be a whole number >= 1 or None (got {limit!r})")
    arrivals = np.cumsum(np.asarray(gaps, dtype=float)).tolist()
    w = np.asarray(work, dtype=float).tolist()
    m = len(arrivals)
    depart = [0.0] * m
    cap_n = 1024 if limit is None else int(limit)
    rate = _rates(curve, cap_n)
    cmax = curve.capacity
    heap: list[tuple[float, int]] = []
    push, pop = heapq.heappush, heapq.heappop
    waiting: deque[int] = deque()
    now = V = 0.0
    K = math.inf if limit is None else int(limit)
    n = 0
    for i in range(m + 1):
        a = arrivals[i] if i < m else math.inf
        # departures before the next arrival
        while n:
            fv = heap[0][0]
            r = rate[n] if n < len(rate) else cmax / n
            t_done = now + (fv - V) / r
            if t_done > a:
                break
            now, V = t_done, fv
            j = pop(heap)[1]
            depart[j] = now
            if waiting:
                k = waiting.popleft()
                push(heap, (V + w[k], k))
            else:
                n -= 1
        if i == m:
            break
        if n:
            V += (a - now) * (rate[n] if n < len(rate) else cmax / n)
        now = a
        if n < K:
            push(heap, (V + w[i], i))
            n += 1
        else:
            waiting.append(i)
    return np.asarray(depart) - np.asarray(arrivals)


def simulate_work(
    curve: Any,
    arrival_rate: float,
    work: np.ndarray,
    *,
    limit: int | None = None,
    seed: int | None = 0,
    warmup: float = 0.1,
    batches: int = 30,
    confidence: float = 0.99,
) -> tuple[float, tuple[float, float]]:
    """Mean system time and its batch-means interval for given per-query work.

    Parameters
    ----------
    curve : CapacityCurve or (concurrency, speedup)
    arrival_rate : float
        Poisson rate.
    work : ndarray
        Work of the queries in arrival order (seconds alone).
    warmup : float
        Fraction of queries discarded from the start.
    """
    if not isinstance(curve, CapacityCurve):
        curve = capacity_curve(*curve)
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / arrival_rate, size=len(work))
    T = system_times(gaps, work, curve, limit)
    start = int(warmup * T.size)
    return batch_means_interval(T[start:], batches, confidence)


@dataclass
class BatchingSimulation:
    """What one simulation of the batching server measured.

    Attributes
    ----------
    mean_system_time : float
        After the warm-up, seconds.
    mean_system_time_ci : (float, float)
        Batch-means interval.
    model_mean_system_time : float
        ``g(lam m1) / lam`` (processor sharing) at the simulated allocation.
    utilization : float
        Offered load over capacity, ``lam m1 / c_max`` (the model's).
    realized_accuracy, realized_accuracy_ci : float, (float, float)
        Weighted share of correct answers ``mean(w_type * correct)``.
    realized_utility, realized_utility_ci : float, (float, float)
        ``realized_accuracy - gamma * mean_system_time`` (intervals added).
    limit : int or None
        Admission limit (None: processor sharing).
    queries, warmup : int
    seconds : float
        Wall time of the simulation.
    extra : dict
        ``model_utility``: the model's utility at the simulated allocation.
    percentiles, percentiles_ci : dict
        p50, p90, p95, p99 of the system time after the warm-up and their
        intervals at ``confidence`` (sectioning over the batches,
        :func:`~cvxalloc.simulate.engine.percentile_intervals`).
    percentiles_model : dict
        The model's prediction of them (an approximation for this server,
        docs/tail.md; processor sharing, whatever ``limit``).

    Notes
    -----
    ``repr`` is Python source that rebuilds the result (with the class in
    scope), every float exact.
    """

    mean_system_time: float
    mean_system_time_ci: tuple[float, float]
    model_mean_system_time: float
    utilization: float
    realized_accuracy: float
    realized_accuracy_ci: tuple[float, float]
    realized_utility: float
    realized_utility_ci: tuple[float, float]
    limit: int | None
    queries: int
    warmup: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    percentiles: dict[str, float] = field(default_factory=dict)
    percentiles_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    percentiles_model: dict[str, float | None] = field(default_factory=dict)

    def __repr__(self) -> str:
        """Python source that rebuilds the result (the class in scope).

        >>> BatchingSimulation(1.5, (1.25, 1.75), 1.5, 0.5, 0.75, (0.7, 0.8), 0.7, (0.6, 0.8),
        ...                    None, 1000, 100, 0.25)  # doctest: +NORMALIZE_WHITESPACE
        BatchingSimulation(mean_system_time=1.5, mean_system_time_ci=(1.25, 1.75),
            model_mean_system_time=1.5, utilization=0.5, realized_accuracy=0.75,
            realized_accuracy_ci=(0.7, 0.8), realized_utility=0.7, realized_utility_ci=(0.6, 0.8),
            limit=None, queries=1000, warmup=100, seconds=0.25, extra={}, percentiles={},
            percentiles_ci={}, percentiles_model={})
        """
        return fields_source(self)

    def _repr_pretty_(self, p, cycle) -> None:
        """Print the repr in IPython and hypothesis (which spell a dataclass field by field)."""
        p.text(repr(self))

    @property
    def relative_error(self) -> float:
        """``(model - simulated) / simulated`` of the mean system time."""
        return (self.model_mean_system_time - self.mean_system_time) / self.mean_system_time

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for JSON (``server`` is ``"batching"``: which simulator ran)."""
        return {
            "server": "batching",
            "mean_system_time": self.mean_system_time,
            "mean_system_time_ci": list(self.mean_system_time_ci),
            "model_mean_system_time": self.model_mean_system_time,
            "utilization": self.utilization,
            "realized_accuracy": self.realized_accuracy,
            "realized_accuracy_ci": list(self.realized_accuracy_ci),
            "realized_utility": self.realized_utility,
            "realized_utility_ci": list(self.realized_utility_ci),
            "limit": self.limit,
            "queries": self.queries,
            "warmup": self.warmup,
            "seconds": self.seconds,
            "system_time_percentiles": dict(self.percentiles),
            "system_time_percentiles_ci": {k: list(v) for k, v in self.percentiles_ci.items()},
            "system_time_percentiles_model": dict(self.percentiles_model),
        }

    def _percentile_line(self, key: str, value: float) -> str:
        lo, hi = self.percentiles_ci[key]
        model = self.percentiles_model.get(key)
        tail = "" if model is None else f"; model {model:.4g} s"
        return f"\nsystem time {key} {value:.4g} s, 99% interval [{lo:.4g}, {hi:.4g}]{tail}"

    def summary(self) -> str:
        """A short plain-text report (what ``cvxalloc simulate`` prints for a batching server;
        its interval is at :func:`simulate_batching`'s default level, 99%)."""
        lo, hi = self.mean_system_time_ci
        rule = "processor sharing" if self.limit is None else f"at most {self.limit} decoding"
        return (
            f"batching server ({rule}), {self.queries:,} queries "
            f"({self.warmup:,} warm-up), utilization {self.utilization:.4g} of capacity\n"
            f"mean system time {self.mean_system_time:.6g} s, 99% interval [{lo:.6g}, "
            f"{hi:.6g}]; model {self.model_mean_system_time:.6g} s\n"
            f"realized utility {self.realized_utility:.6g}, accuracy {self.realized_accuracy:.6g}"
            + "".join(self._percentile_line(k, v) for k, v in self.percentiles.items())
        )


def simulate_batching(
    scenario: Scenario,
    tokens: Any,
    *,
    queries: int = 200_000,
    seed: int | None = 0,
    warmup: float = 0.1,
    limit: int | None = None,
    batches: int = 30,
    confidence: float = 0.99,
    curve: Any = None,
) -> BatchingSimulation:
    """Simulate the batching server of ``scenario`` under an allocation.

    Parameters
    ----------
    scenario : Scenario
        With ``[server] model = "batching"`` (or pass ``curve``: then any
        scenario's tasks and load are simulated on that curve, e.g. to see how
        a batch-1 optimum fares on a batching server).
    tokens : array_like
        Budgets, task order.
    queries : int
        Queries simulated, warm-up included.
    limit : int, optional
        The engine's rule: at most ``limit`` decode, the rest wait FIFO.
    warmup : float
        Fraction of queries discarded from the start (the server starts empty).

    Raises
    ------
    ScenarioError
        No capacity curve, no arrivals, or too few queries.
    UnstableError
        ``lam m1 >= c_max``: the simulation would not settle.
    """
    sc = scenario
    if curve is None:
        curve = sc.server
    elif not isinstance(curve, CapacityCurve):
        curve = capacity_curve(curve["concurrency"], curve["speedup"])
    if curve is None:
        raise ScenarioError(
            'simulate_batching: the scenario has no [server] model = "batching"; '
            "add one or pass curve="
        )
    lam = sc.arrival_rate
    if lam <= 0:
        raise ScenarioError("queue: arrival_rate must be > 0 to simulate (no queries arrive)")
    queries = int(queries)
    if queries < 10 * batches:
        raise ScenarioError(f"queries must be at least {10 * batches} (got {queries})")
    t = np.clip(np.asarray(tokens, dtype=float), sc.min_tokens, sc.max_tokens)
    s = sc.service_time(t)
    m1 = float(sc.probability @ s)
    rho = lam * m1 / curve.capacity
    if rho >= 1:
        raise UnstableError(
            f"allocation is unstable on this server (utilization {rho:.4g} >= 1): lower the "
            "budgets or the arrival rate"
        )
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    types = TypeSampler(sc.probability)(rng, queries)
    shape, scale, det = service_distribution(s, sc.scv, sc.variance)
    work = sample_service(rng, types, s, shape, scale, det)
    gaps = rng.exponential(1.0 / lam, size=queries)
    T = system_times(gaps, work, curve, limit)
    acc = np.clip(sc.accuracy.value(t), 0.0, 1.0)
    correct = rng.random(queries) < acc[types]
    start = int(warmup * queries)
    mean_T, ci_T = batch_means_interval(T[start:], batches, confidence)
    pct, pct_ci = percentile_intervals(T[start:], batches, confidence)
    score = np.where(correct, sc.weight[types], 0.0)[start:]
    mean_a = float(score.mean())
    z = float(special.ndtri(0.5 + confidence / 2))
    half_a = z * float(score.std(ddof=1)) / math.sqrt(score.size)
    gamma = sc.latency_weight
    model = BatchingQueue(lam, curve=curve).value(m1)
    u = mean_a - gamma * mean_T
    half_u = half_a + gamma * 0.5 * (ci_T[1] - ci_T[0])
    return BatchingSimulation(
        mean_system_time=mean_T,
        mean_system_time_ci=ci_T,
        model_mean_system_time=float(model),
        utilization=rho,
        realized_accuracy=mean_a,
        realized_accuracy_ci=(mean_a - half_a, mean_a + half_a),
        realized_utility=u,
        realized_utility_ci=(u - half_u, u + half_u),
        limit=limit,
        queries=queries,
        warmup=start,
        seconds=time.perf_counter() - started,
        extra={"model_utility": Objective(sc.with_(server=curve)).value(t)},
        percentiles=pct,
        percentiles_ci=pct_ci,
        percentiles_model=model_percentiles(sc.with_(server=curve), t),
    )
