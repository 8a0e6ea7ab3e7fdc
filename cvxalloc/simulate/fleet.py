"""A fleet of replicas behind a router, simulated query by query beside the model.

Layer: workflows (:mod:`cvxalloc.simulate`).

The simulated system is the one :mod:`cvxalloc.queue.fleet` models: queries
arrive at the fleet (a Poisson process at the scenario's ``arrival_rate``, or a
request log's arrival times), each is of type ``i`` with probability ``p_i``,
brings a service time with the model's two moments (gamma, as
:mod:`cvxalloc.simulate.engine`) and is correct with probability ``A_i(t_i)``;
a router sends it to one of ``k`` identical replicas:

* ``random``: a replica drawn uniformly;
* ``round-robin``: replica ``n mod k`` for the ``n``-th arrival;
* ``shortest-queue``: the replica with the fewest queries in it (waiting or in
  service; ties to the lowest index), known at the arrival instant.

Each replica is the scenario's server: batch-1 FIFO, or continuous batching
(processor sharing with the capacity curve, and at most ``limit`` decoding
when given: vLLM's ``max_num_seqs``).

Implementation. Random and round-robin routing split the stream once
(vectorized); each replica's FIFO waits are then one Lindley recursion
(:func:`~cvxalloc.simulate.engine.lindley_waits`), a batching replica's system
times the event loop of :func:`~cvxalloc.simulate.batching.system_times`.
Shortest-queue routing needs the replicas' states at every arrival: one Python
loop over arrivals, the departures of each replica kept in a deque (FIFO: they
leave in order) or, for batching replicas, a heap of finishing virtual times
per replica (:mod:`cvxalloc.simulate.batching`). Measured in
``benchmarks/bench_fleet_simulation.py``.

Statistics: the fleet's mean system time (arrival order, after a warm-up) with
a batch-means interval, or over replications for a replay (Student-t on the
replication means, the arrivals fixed); percentiles; each replica's utilization
(its work over the time span, per unit of capacity) and mean system time;
realized accuracy and utility.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._source import fields_source
from ..errors import ScenarioError, UnstableError
from ..objective import Objective, at_allocation
from ..queue.batching import CapacityCurve
from ..requestlog import RequestLog
from .batching import system_times
from .engine import (
    PERCENTILES,
    MeanAgainstModel,
    TypeSampler,
    _check_tokens,
    _interval,
    batch_means_interval,
    figure,
    lindley_waits,
    model_percentiles,
    percentile_intervals,
    percentile_lines,
    sample_service,
    service_distribution,
)

__all__ = ["FleetSimulation", "simulate_fleet", "route", "DEFAULT_FLEET_QUERIES"]

#: Queries simulated (Poisson arrivals) when the caller does not say.
DEFAULT_FLEET_QUERIES = 1_000_000


@dataclass
class FleetSimulation(MeanAgainstModel):
    """What one simulation of a fleet measured, beside the model.

    Attributes
    ----------
    replicas, router : int, str
        The fleet.
    server : str
        ``"single"`` (batch-1 FIFO) or ``"batching"``.
    limit : int or None
        Queries decoding at once on a batching replica (None: all).
    arrivals : dict
        ``kind`` (``"poisson"`` or ``"replay"``), ``rate`` (queries/s),
        ``arrival_scv`` (of the simulated gaps), and for a replay ``source``,
        ``requests``, ``rescale`` (factor the log's times were multiplied by).
    queries, warmup : int
        Queries per replication, and left out of the statistics at the start.
    replications : int
        Independent runs over the same arrivals (replays); 1 for Poisson.
    interval : str
        ``"batch means"`` or ``"replications"``.
    seed : int or None
    confidence : float
    mean_system_time, mean_system_time_ci : float, (float, float)
        The fleet's, seconds.
    percentiles, percentiles_ci : dict
        ``p50``, ``p90``, ``p95``, ``p99`` of the system time and their intervals
        (sectioning over the batches, or over a replay's replications).
    percentiles_model : dict
        The same percentiles by the scenario's model at the simulated rate (None
        where it has none: unstable, or a router it does not model).
    replica_utilization : list of float
        Each replica's work over the span, per unit of capacity (the model's
        utilization is their common expected value).
    replica_mean_system_time : list of float
        Each replica's mean system time (one replication).
    accuracy, accuracy_ci, utility, utility_ci : float, (float, float)
        Realized weighted accuracy and ``accuracy - gamma W``.
    mean_system_time_model, utilization_model, utility_model : float
        The scenario's model at the simulated rate (``inf`` / ``-inf`` when
        unstable); for Poisson arrivals with ``arrival_scv = 1``.
    model : str
        ``"exact"`` or ``"approximate"`` (the router's model).
    elapsed : float
        Wall-clock seconds.
    """

    replicas: int
    router: str
    server: str
    limit: int | None
    arrivals: dict[str, Any]
    queries: int
    warmup: int
    replications: int
    interval: str
    seed: int | None
    confidence: float
    mean_system_time: float
    mean_system_time_ci: tuple[float, float]
    percentiles: dict[str, float]
    percentiles_ci: dict[str, tuple[float, float]]
    percentiles_model: dict[str, float | None]
    replica_utilization: list[float]
    replica_mean_system_time: list[float]
    accuracy: float
    accuracy_ci: tuple[float, float]
    utility: float
    utility_ci: tuple[float, float]
    mean_system_time_model: float
    utilization_model: float
    utility_model: float
    model: str
    elapsed: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        """Python source that rebuilds the result (the class in scope)."""
        return fields_source(self)

    def _repr_pretty_(self, p, cycle) -> None:
        """Print the repr in IPython and hypothesis."""
        p.text(repr(self))

    @property
    def utilization(self) -> float:
        """Mean of the replicas' utilizations."""
        return float(np.mean(self.replica_utilization))

    @property
    def queries_per_second(self) -> float:
        """Simulated queries (all replications) per wall-clock second."""
        total = self.queries * self.replications
        return total / self.elapsed if self.elapsed > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the keys of ``simulate --json`` where they apply)."""
        w = self.mean_system_time_model
        return {
            "fleet": {"replicas": self.replicas, "router": self.router, "model": self.model},
            "server": self.server,
            "limit": self.limit,
            "arrivals": dict(self.arrivals),
            "queries": self.queries,
            "warmup": self.warmup,
            "replications": self.replications,
            "interval": self.interval,
            "seed": self.seed,
            "confidence": self.confidence,
            "mean_system_time": self.mean_system_time,
            "mean_system_time_ci": list(self.mean_system_time_ci),
            "mean_system_time_model": w if math.isfinite(w) else None,
            "model_within_ci": self.model_within_ci(),
            "relative_error": self.relative_error if math.isfinite(w) else None,
            "system_time_percentiles": dict(self.percentiles),
            "system_time_percentiles_ci": {k: list(v) for k, v in self.percentiles_ci.items()},
            "system_time_percentiles_model": dict(self.percentiles_model),
            "utilization": self.utilization,
            "replica_utilization": list(self.replica_utilization),
            "replica_mean_system_time": list(self.replica_mean_system_time),
            "utilization_model": self.utilization_model,
            "accuracy": self.accuracy,
            "accuracy_ci": list(self.accuracy_ci),
            "utility": self.utility,
            "utility_ci": list(self.utility_ci),
            "utility_model": self.utility_model if math.isfinite(self.utility_model) else None,
            **{k: (v if math.isfinite(v) else None) for k, v in self.extra.items()},
            "elapsed_seconds": self.elapsed,
            "queries_per_second": self.queries_per_second,
        }

    def summary(self) -> str:
        """A short plain-text report."""
        lo, hi = self.mean_system_time_ci
        arr = self.arrivals
        level = f"{100 * self.confidence:g}%"
        w = self.mean_system_time_model
        model = f"{w:.4f} s ({self.model})" if math.isfinite(w) else "unstable"
        util = ", ".join(f"{u:.3f}" for u in self.replica_utilization[:16])
        more = " ..." if self.replicas > 16 else ""
        source = "Poisson arrivals" if arr["kind"] == "poisson" else f"replay of {arr['source']}"
        how = (
            f"{self.replications} replications"
            if self.interval == "replications"
            else f"batch means, warm-up {self.warmup:,}"
        )
        return "\n".join(
            [
                f"fleet of {self.replicas} {self.server} replicas, {self.router} routing; "
                f"{source} at {arr['rate']:.6g}/s (gap SCV {arr['arrival_scv']:.4g})",
                f"{self.queries:,} queries ({how}, seed {self.seed})",
                f"mean system time   {self.mean_system_time:.4f} s   {level} CI "
                f"[{lo:.4f}, {hi:.4f}]   model {model}",
                *percentile_lines(self, level),
                f"utilization per replica  {util}{more}   model {self.utilization_model:.4f}",
                f"weighted accuracy  {figure(self.accuracy)}   utility {figure(self.utility)}   "
                f"model {figure(self.utility_model)}",
                f"{self.elapsed:.2f} s wall ({self.queries_per_second:,.0f} queries/s)",
            ]
        )


# ----------------------------------------------------------------------------
# routing and the replicas
def route(router: str, replicas: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """The replica of each of ``n`` arrivals for the state-blind routers."""
    if router == "random":
        return rng.integers(replicas, size=n)
    if router == "round-robin":
        return np.arange(n) % replicas
    raise ValueError(f"route: {router!r} depends on the replicas' state")


def _split_fifo(arrivals: np.ndarray, work: np.ndarray, where: np.ndarray, k: int) -> np.ndarray:
    """System times of FIFO replicas, each fed the arrivals routed to it (Lindley)."""
    out = np.empty(arrivals.size)
    for j in range(k):
        idx = np.flatnonzero(where == j)
        if idx.size == 0:
            continue
        a = arrivals[idx]
        gaps = np.diff(a, prepend=a[0])
        out[idx] = lindley_waits(gaps, work[idx]) + work[idx]
    return out


def _split_batching(
    arrivals: np.ndarray, work: np.ndarray, where: np.ndarray, k: int, curve, limit
) -> np.ndarray:
    """System times of batching replicas, each fed the arrivals routed to it."""
    out = np.empty(arrivals.size)
    for j in range(k):
        idx = np.flatnonzero(where == j)
        if idx.size == 0:
            continue
        a = arrivals[idx]
        gaps = np.diff(a, prepend=a[0])
        out[idx] = system_times(gaps, work[idx], curve, limit)
    return out


def _jsq_fifo(arrivals: np.ndarray, work: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Join-the-shortest-queue over ``k`` FIFO replicas: system times and replicas."""
    arr, w = arrivals.tolist(), work.tolist()
    n = len(arr)
    queues: list[deque] = [deque() for _ in range(k)]
    last = [0.0] * k
    system = [0.0] * n
    where = [0] * n
    for i in range(n):
        a = arr[i]
        best, fewest = 0, n + 1
        for j in range(k):
            q = queues[j]
            while q and q[0] <= a:
                q.popleft()
            size = len(q)
            if size < fewest:
                best, fewest = j, size
                if size == 0:
                    break
        done = (last[best] if last[best] > a else a) + w[i]
        last[best] = done
        queues[best].append(done)
        system[i] = done - a
        where[i] = best
    return np.asarray(system), np.asarray(where)


def _speeds(curve: CapacityCurve, limit: int | None) -> list[float]:
    """Per-query speed ``c(n) / n`` for ``n = 0..`` the curve's last point or the limit
    (entry 0 unused); beyond it the speed is ``c_max / n``."""
    size = max(curve.concurrency[-1], limit or 0) + 1
    n = np.arange(1, size + 1, dtype=float)
    return [0.0, *(curve.rate(n) / n).tolist()]


class _PSReplica:
    """One batching replica's state: virtual time, finishing heap, waiting line."""

    __slots__ = ("now", "V", "heap", "waiting", "n")

    def __init__(self) -> None:
        self.now = self.V = 0.0
        self.heap: list[tuple[float, int]] = []
        self.waiting: deque[int] = deque()
        self.n = 0  # decoding


def _jsq_batching(
    arrivals: np.ndarray, work: np.ndarray, k: int, curve: CapacityCurve, limit: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Join-the-shortest-queue over ``k`` batching replicas (processor sharing by
    concurrency, at most ``limit`` decoding): system times and replicas."""
    arr, w = arrivals.tolist(), work.tolist()
    n = len(arr)
    rate = _speeds(curve, limit)
    cmax = curve.capacity
    K = math.inf if limit is None else int(limit)
    reps = [_PSReplica() for _ in range(k)]
    depart = [0.0] * n
    where = [0] * n
    push, pop = heapq.heappush, heapq.heappop

    def advance(r: _PSReplica, until: float) -> None:
        while r.n:
            fv, j = r.heap[0]
            speed = rate[r.n] if r.n < len(rate) else cmax / r.n
            t_done = r.now + (fv - r.V) / speed
            if t_done > until:
                r.V += (until - r.now) * speed
                break
            r.now, r.V = t_done, fv
            pop(r.heap)
            depart[j] = t_done
            if r.waiting:
                nxt = r.waiting.popleft()
                push(r.heap, (r.V + w[nxt], nxt))
            else:
                r.n -= 1
        r.now = until

    for i in range(n):
        a = arr[i]
        best, fewest = 0, n + 1
        for j in range(k):
            r = reps[j]
            advance(r, a)
            size = r.n + len(r.waiting)
            if size < fewest:
                best, fewest = j, size
        r = reps[best]
        if r.n < K:
            push(r.heap, (r.V + w[i], i))
            r.n += 1
        else:
            r.waiting.append(i)
        where[i] = best
    for r in reps:
        advance(r, math.inf)
    return np.asarray(depart) - arrivals, np.asarray(where)


def _serve(sc, arrivals, work, rng, router: str, limit) -> tuple[np.ndarray, np.ndarray]:
    """System times of the fleet's queries (arrival order) and their replicas."""
    k = sc.replicas
    curve = getattr(sc.server, "curve", sc.server)  # the capacity curve of a BatchingServer
    if router == "shortest-queue":
        if curve is None:
            return _jsq_fifo(arrivals, work, k)
        return _jsq_batching(arrivals, work, k, curve, limit)
    where = route(router, k, arrivals.size, rng)
    if curve is None:
        return _split_fifo(arrivals, work, where, k), where
    return _split_batching(arrivals, work, where, k, curve, limit), where


# ----------------------------------------------------------------------------
# the run
def simulate_fleet(
    scenario,
    tokens: Any,
    *,
    queries: int = DEFAULT_FLEET_QUERIES,
    arrival_times: Any = None,
    target_utilization: float | None = None,
    replications: int = 10,
    seed: int | None = None,
    warmup: int | None = None,
    batches: int = 30,
    confidence: float = 0.99,
    limit: int | None = None,
) -> FleetSimulation:
    """Simulate the scenario's fleet under an allocation and measure it.

    Parameters
    ----------
    scenario : Scenario
        With a ``[fleet]`` (one replica without: then the single server).
    tokens : array_like or Result
        Budgets per type (task order).
    queries : int
        Poisson arrivals simulated, warm-up included (not with ``arrival_times``).
    arrival_times : array_like or RequestLog, optional
        Replay these arrival times (seconds, any origin) at the fleet instead of
        Poisson arrivals; types are drawn from the mix.
    target_utilization : float, optional
        With ``arrival_times``: rescale time so that the replay's per-replica
        utilization ``rate m1 / (k c_max)`` equals this.
    replications : int
        With ``arrival_times``: independent runs over the same arrivals (fresh
        types, services, correctness and random routes); intervals over them
        (Student-t), or batch means when 1.
    seed : int, optional
        Seed of :func:`numpy.random.default_rng` (replications: one child each).
    warmup : int, optional
        Queries left out at the start (default: 10% for Poisson, 0 for a replay).
    batches : int
        Batches of the batch-means interval.
    confidence : float
        Level of the intervals (default 0.99).
    limit : int, optional
        Batching replicas: at most this many decode at once, the rest wait FIFO
        (default: the server's ``max_running``; without one, every query decodes).

    Raises
    ------
    ScenarioError
        Bad tokens or run parameters; a replay with fewer than two arrivals.
    UnstableError
        Per-replica utilization at or above 1 (Poisson arrivals).
    """
    sc = scenario
    t = _check_tokens(sc, tokens)
    router = "random" if sc.fleet is None else sc.fleet.router
    limit = _check_limit(sc, limit)
    _check_run_args(batches, confidence, replications)
    s = sc.service_time(t)
    m1 = float(sc.probability @ s)
    started = time.perf_counter()
    if arrival_times is None:
        arrivals, info, warm = _poisson_arrivals(sc, m1, queries, warmup, batches, seed)
        runs = [np.random.default_rng(seed)]
    else:
        arrivals, info = _replay_arrivals(sc, m1, arrival_times, target_utilization)
        warm = 0 if warmup is None else int(warmup)
        if not 0 <= warm < arrivals.size - batches:
            raise ScenarioError(f"warmup must be in [0, {arrivals.size - batches}) (got {warm})")
        runs = [np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(replications)]
    stats = [_one_run(sc, t, s, arrivals, rng, router, limit, warm) for rng in runs]
    elapsed = time.perf_counter() - started
    return _result(sc, t, m1, info, stats, warm, batches, confidence, seed, limit, elapsed)


def _check_limit(sc, limit) -> int | None:
    """The admission limit: the one given, else the server's ``max_running`` (None: all)."""
    if limit is None:
        return getattr(sc.server, "max_running", None)
    if sc.server is None:
        raise ScenarioError('limit applies to batching replicas ([server] model = "batching")')
    if isinstance(limit, bool) or int(limit) != limit or limit < 1:
        raise ScenarioError(f"limit must be a whole number >= 1 or None (got {limit!r})")
    return int(limit)


def _check_run_args(batches: int, confidence: float, replications: int) -> None:
    if int(batches) < 2:
        raise ScenarioError(f"batches must be >= 2 (got {batches})")
    if not 0 < confidence < 1:
        raise ScenarioError(f"confidence must be in (0, 1) (got {confidence})")
    if int(replications) < 1:
        raise ScenarioError(f"replications must be >= 1 (got {replications})")


def _poisson_arrivals(sc, m1, queries, warmup, batches, seed):
    """Arrival times of ``queries`` Poisson arrivals, their description, the warm-up."""
    queries = int(queries)
    warm = queries // 10 if warmup is None else int(warmup)
    if sc.arrival_rate <= 0:
        raise ScenarioError("queue: arrival_rate must be > 0 to simulate (no queries arrive)")
    if warm < 0 or queries - warm < 10 * batches:
        raise ScenarioError(
            f"queries ({queries}) minus warmup ({warm}) must leave at least 10 per batch "
            f"({batches} batches); raise queries"
        )
    rho = sc.arrival_rate * m1 / sc.capacity
    if rho >= 1:
        raise UnstableError(
            f"allocation is unstable (utilization {rho:.4g} >= 1 per replica): the queues "
            "grow without bound; lower the budgets or the arrival rate, or add replicas"
        )
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    arrivals = np.cumsum(rng.standard_exponential(queries)) / sc.arrival_rate
    info = {"kind": "poisson", "rate": sc.arrival_rate, "arrival_scv": 1.0}
    return arrivals, info, warm


def _replay_arrivals(sc, m1, arrival_times, target):
    """The log's arrival times from 0, rescaled to ``target`` utilization, described."""
    log = RequestLog.of(arrival_times)  # checked: two arrivals or more, a time span
    where = log.source
    times = log.times - log.times[0]
    n = times.size
    rate_log = (n - 1) / float(times[-1])
    factor = 1.0
    if target is not None:
        target = float(target)
        if not (math.isfinite(target) and target > 0):
            raise ScenarioError(f"target utilization must be a finite number > 0 (got {target})")
        factor = rate_log * m1 / sc.capacity / target
    gaps = np.diff(times) * factor
    info = {
        "kind": "replay",
        "source": where,
        "requests": n,
        "rate": rate_log / factor,
        "arrival_scv": float(np.var(gaps) / np.mean(gaps) ** 2),
        "rescale": factor,
        "log_rate": rate_log,
    }
    return times * factor, info


def _one_run(sc, t, s, arrivals, rng, router, limit, warm) -> dict[str, Any]:
    """One replication: system times, per-replica figures, scores (after the warm-up)."""
    n = arrivals.size
    types = TypeSampler(sc.probability)(rng, n)
    shape, scale, det = service_distribution(s, sc.scv, sc.variance)
    work = sample_service(rng, types, s, shape, scale, det)
    correct = rng.random(n) < np.clip(sc.accuracy.value(t), 0.0, 1.0)[types]
    system, where = _serve(sc, arrivals, work, rng, router, limit)
    span = float(arrivals[-1] - arrivals[0]) or 1.0
    one = 1.0 if sc.server is None else sc.server.capacity
    busy = np.bincount(where, weights=work, minlength=sc.replicas) / (span * one)
    kept = slice(warm, n)
    per = np.bincount(where[kept], weights=system[kept], minlength=sc.replicas)
    count = np.bincount(where[kept], minlength=sc.replicas)
    return {
        "system": system[kept],
        "score": np.where(correct, sc.weight[types], 0.0)[kept],
        "busy": busy,
        "replica_w": np.divide(per, count, out=np.full(sc.replicas, np.nan), where=count > 0),
    }


def _result(sc, t, m1, info, stats, warm, batches, confidence, seed, limit, elapsed):
    """The :class:`FleetSimulation` of the runs, beside the model at the simulated rate."""
    first = stats[0]
    gamma = sc.latency_weight
    if len(stats) >= 2:
        w_means = np.array([r["system"].mean() for r in stats])
        a_means = np.array([r["score"].mean() for r in stats])
        w, w_ci = float(w_means.mean()), _interval(float(w_means.mean()), w_means, confidence)
        interval = "replications"
    else:
        w, w_ci = batch_means_interval(first["system"], batches, confidence)
        size = first["score"].size // batches
        a_means = first["score"][: size * batches].reshape(batches, size).mean(axis=1)
        interval = "batch means"
    acc = float(a_means.mean())
    acc_ci = _interval(acc, a_means, confidence)
    u_half = 0.5 * (acc_ci[1] - acc_ci[0]) + gamma * 0.5 * (w_ci[1] - w_ci[0])
    scv = 1.0 if info["kind"] == "poisson" else info["arrival_scv"]
    model_w, model_u = _model(sc, t, info["rate"], scv)
    extra = {}
    if info["kind"] == "replay":  # the model as planned (the scenario's scv), and Poisson
        extra["model_scenario_scv"] = _model(sc, t, info["rate"], sc.arrival_scv)[0]
        extra["model_poisson"] = _model(sc, t, info["rate"], 1.0)[0]
    if len(stats) >= 2:
        pct, pct_ci = percentile_intervals(np.array([r["system"] for r in stats]), 0, confidence)
    else:
        pct, pct_ci = percentile_intervals(first["system"], batches, confidence)
    return FleetSimulation(
        replicas=sc.replicas,
        router="random" if sc.fleet is None else sc.fleet.router,
        server="single" if sc.server is None else "batching",
        limit=limit,
        arrivals=info,
        queries=int(first["system"].size + warm),
        warmup=warm,
        replications=len(stats),
        interval=interval,
        seed=seed,
        confidence=confidence,
        mean_system_time=w,
        mean_system_time_ci=w_ci,
        percentiles=pct,
        percentiles_ci=pct_ci,
        percentiles_model=_model_percentiles(sc, t, info["rate"], scv),
        replica_utilization=np.mean([r["busy"] for r in stats], axis=0).tolist(),
        replica_mean_system_time=first["replica_w"].tolist(),
        accuracy=acc,
        accuracy_ci=acc_ci,
        utility=acc - gamma * w,
        utility_ci=(acc - gamma * w - u_half, acc - gamma * w + u_half),
        mean_system_time_model=model_w,
        utilization_model=info["rate"] * m1 / sc.capacity,
        utility_model=model_u,
        model="exact" if sc.fleet is None or sc.fleet.exact else "approximate",
        elapsed=elapsed,
        extra=extra,
    )


def _model_percentiles(sc, t, rate: float, scv: float) -> dict[str, float | None]:
    """The model's percentiles at ``rate`` and ``scv`` (None where it has none)."""
    try:
        return model_percentiles(sc.with_(arrival_rate=rate, arrival_scv=scv), t)
    except ScenarioError:
        return {f"p{q:g}": None for q in PERCENTILES}


def _model(sc, t, rate: float, scv: float) -> tuple[float, float]:
    """The model's ``W`` and ``U`` at ``rate`` and gap ``scv`` (``inf``, ``-inf`` where
    unstable or where the model does not take that scv)."""
    try:
        ev = Objective(at_allocation(sc.with_(arrival_rate=rate, arrival_scv=scv), t)).evaluate(t)
    except ScenarioError:
        return math.inf, -math.inf
    return float(ev.mean_system_time), float(ev.objective)
