"""Event-driven simulation of a continuous-batching server.

Layer: workflows (:mod:`cvxalloc.simulate`).

The simulated server is the one :class:`cvxalloc.queue.BatchingQueue` models, with the
engine's admission rule:

* queries arrive as a Poisson process, as a renewal process with gamma gaps of squared
  coefficient of variation ``arrival_scv`` (the scenario's by default), or at given
  times (a replayed log); a query is of type ``i`` with probability ``p_i`` and brings
  ``S`` seconds of work *alone* (mean ``s_i = a_i + b_i t_i``, second moment
  ``(1 + k_i) s_i^2 + v_i``: a gamma distribution with those moments, as in
  :mod:`cvxalloc.simulate.engine`); its answer is correct with probability ``A_i(t_i)``;
* with ``n`` queries decoding, each advances at ``c(n) / n`` seconds-alone per second
  (``c`` the capacity curve, flat after its last point); a query leaves when its work
  is done;
* ``limit=K`` (the scenario's ``[server] max_running`` by default): at most ``K``
  decode and the rest wait in FIFO order, each admitted when a decoding query leaves
  (vLLM's ``max_num_seqs``); ``limit=None``: every query decodes (processor sharing).

Implementation: the event loop is :class:`~cvxalloc.simulate.batching_engine.BatchingEngine`
(virtual time, a heap of finishing times; one Python step per arrival and per departure).
Arrivals are drawn and served chunk by chunk and the statistics are streamed (batch sums
by arrival index, a log-spaced histogram of system times for the percentiles), so memory
does not grow with the number of queries; only the queries in the system are held.

Examples
--------
>>> from importlib import resources
>>> import cvxalloc
>>> from cvxalloc.simulate import simulate_batching
>>> sc = cvxalloc.load_scenario(resources.files("cvxalloc") / "data/example_batching.toml")
>>> sim = simulate_batching(sc, cvxalloc.solve(sc).tokens, queries=100_000, seed=1)
>>> sim.model_within_ci()
True
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import special
from .._source import fields_source
from ..errors import ScenarioError, UnstableError
from ..queue import BatchingQueue, BatchingServer
from ..requestlog import RequestLog
from .batching_engine import (
    BatchingEngine,
    Departures,
    _plain_curve,
    simulate_work,
    system_times,
)
from .engine import (
    DEFAULT_CHUNK,
    PERCENTILES,
    MeanAgainstModel,
    TypeSampler,
    _check_run,
    _check_tokens,
    _interval,
    _progress,
    figure_fields,
    figure_lines,
    model_percentiles,
    run_fields,
    sample_service,
    service_distribution,
)
from .poisson import DEFAULT_QUERIES
from .replay import replay_clock

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = [
    "system_times",
    "simulate_batching",
    "BatchingSimulation",
    "simulate_work",
    "BatchingEngine",
    "Departures",
]

#: The admission limit of the scenario's ``[server] max_running`` (the default of ``limit``).
SCENARIO = "scenario"
#: Histogram of system times for the percentiles: bins per doubling, and the range (seconds).
_BINS_PER_OCTAVE = 256
_LOG2_LO, _LOG2_HI = -40, 60


class _Tally:
    """Streaming statistics of the queries ``warmup .. end - 1``: batch sums, a histogram."""

    def __init__(self, warmup: int, size: int, count: int) -> None:
        self.warmup, self.size, self.count = warmup, size, count
        self.end = warmup + size * count
        self.system = np.zeros(count)
        self.wait = np.zeros(count)
        self.score = np.zeros(count)
        self.score_sq = 0.0
        bins = (_LOG2_HI - _LOG2_LO) * _BINS_PER_OCTAVE
        # one histogram per batch (sectioning for the percentiles' intervals), with
        # under- and overflow bins at the ends
        self.hist = np.zeros((count, bins + 2), dtype=np.int64)

    def _batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = (idx >= self.warmup) & (idx < self.end)
        return keep, (idx[keep] - self.warmup) // self.size

    def departures(self, out: Departures) -> None:
        idx, system, wait = out.arrays()
        keep, b = self._batch(idx)
        if not b.size:
            return
        T = system[keep]
        self.system += np.bincount(b, T, self.count)
        self.wait += np.bincount(b, wait[keep], self.count)
        with np.errstate(divide="ignore"):
            pos = np.floor((np.log2(T) - _LOG2_LO) * _BINS_PER_OCTAVE) + 1
        width = self.hist.shape[1]
        pos = np.clip(np.nan_to_num(pos, nan=0.0, neginf=0.0), 0, width - 1).astype(np.int64)
        flat = np.bincount(b * width + pos, minlength=self.hist.size)
        self.hist += flat.reshape(self.hist.shape)

    def scores(self, first: int, score: np.ndarray) -> None:
        keep, b = self._batch(np.arange(first, first + score.size))
        kept = score[keep]
        self.score += np.bincount(b, kept, self.count)
        self.score_sq += float(kept @ kept)

    @staticmethod
    def _percentile(hist: np.ndarray, q: float) -> float:
        """The ``q``-th percentile of a histogram's values, to its bins' 0.3%."""
        cum = np.cumsum(hist)
        k = int(np.searchsorted(cum, q / 100 * cum[-1]))
        before = cum[k - 1] if k > 0 else 0
        frac = (q / 100 * cum[-1] - before) / max(hist[k], 1)
        return float(2.0 ** (_LOG2_LO + (k - 1 + frac) / _BINS_PER_OCTAVE))

    def percentiles(self, confidence: float) -> tuple[dict, dict]:
        """p50, p90, p95, p99 and their intervals by sectioning over the batches
        (:func:`cvxalloc.simulate.engine.percentile_intervals`, from histograms)."""
        whole = self.hist.sum(axis=0)
        points, intervals = {}, {}
        for q in PERCENTILES:
            key = f"p{q:g}"
            points[key] = self._percentile(whole, q)
            parts = np.array([self._percentile(h, q) for h in self.hist])
            intervals[key] = _interval(points[key], parts, confidence)
        return points, intervals

    def fields(self, gamma: float, confidence: float) -> dict[str, Any]:
        n = self.size * self.count
        system, score = self.system / self.size, self.score / self.size
        utility = score - gamma * system
        w, u, a = float(system.mean()), float(utility.mean()), float(score.mean())
        a_var = max(self.score_sq / n - a * a, 0.0) * n / max(n - 1, 1)
        a_half = special.stdtrit(max(n - 1, 1), 0.5 + confidence / 2) * math.sqrt(a_var / n)
        points, intervals = self.percentiles(confidence)
        return {
            "mean_system_time": w,
            "mean_system_time_ci": _interval(w, system, confidence),
            "mean_waiting_time": float(self.wait.sum() / n),
            "percentiles": points,
            "percentiles_ci": intervals,
            "accuracy": a,
            "accuracy_ci": (a - a_half, a + a_half),
            "utility": u,
            "utility_ci": _interval(u, utility, confidence),
            "batch_means": {"system": system, "score": score, "utility": utility},
        }


@dataclass
class BatchingSimulation(MeanAgainstModel):
    """What one simulation of the batching server measured, beside the model.

    The fields shared with :class:`~cvxalloc.simulate.SimulationResult` (the FIFO
    simulator's) mean the same; ``utilization`` is the offered work of the run over
    the server's capacity (``sum of work / (capacity x time of the last arrival)``),
    ``mean_waiting_time`` the time before admission (0 with processor sharing), and the
    percentiles come from a histogram with bins 0.3% wide.

    Attributes
    ----------
    tokens : ndarray
    names : list of str
    queries, warmup, batches : int
    seed : int
    confidence : float
    mean_system_time, mean_system_time_ci, mean_waiting_time
    percentiles, percentiles_ci, percentiles_model : dict
        p50, p90, p95, p99 of the system time, their intervals (sectioning over the
        batches) and the model's prediction (an approximation for this server,
        docs/tail.md; None where it has none).
    accuracy, accuracy_ci, utility, utility_ci, utilization
    mean_system_time_model, accuracy_model, utility_model, utilization_model : float
        The batching model's ``W`` (with the run's arrival scv and limit), ``sum p_i w_i
        A_i``, ``U`` and ``rho``.
    limit : int or None
        The admission limit simulated (None: processor sharing).
    arrivals : str
        ``"poisson"``, ``"gamma gaps"`` or ``"replay"``.
    arrival_scv : float
        The gap scv drawn (renewal arrivals) or measured (replay).
    elapsed : float
        Wall-clock seconds.
    batch_means : dict of ndarray

    Notes
    -----
    ``repr`` is Python source that rebuilds the result (``np`` and the class in scope).
    """

    tokens: np.ndarray
    names: list[str]
    queries: int
    warmup: int
    batches: int
    seed: int
    confidence: float
    mean_system_time: float
    mean_system_time_ci: tuple[float, float]
    mean_waiting_time: float
    percentiles: dict[str, float]
    accuracy: float
    accuracy_ci: tuple[float, float]
    utility: float
    utility_ci: tuple[float, float]
    utilization: float
    mean_system_time_model: float
    accuracy_model: float
    utility_model: float
    utilization_model: float
    limit: int | None
    arrivals: str
    arrival_scv: float
    elapsed: float = 0.0
    batch_means: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    percentiles_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    percentiles_model: dict[str, float | None] = field(default_factory=dict)

    def __repr__(self) -> str:
        """Python source that rebuilds the result (``np`` and the class in scope)."""
        return fields_source(self)

    def _repr_pretty_(self, p, cycle) -> None:
        """Print the repr in IPython and hypothesis (which spell a dataclass field by field)."""
        p.text(repr(self))

    @property
    def queries_per_second(self) -> float:
        """Simulated queries per wall-clock second."""
        return self.queries / self.elapsed if self.elapsed > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the FIFO simulator's keys, plus ``server``, ``limit``, ``arrivals``,
        ``arrival_scv``."""
        return {
            "server": "batching",
            **run_fields(self),
            "limit": self.limit,
            "arrivals": self.arrivals,
            "arrival_scv": self.arrival_scv,
            **figure_fields(self),
        }

    def summary(self) -> str:
        """A short plain-text report (what ``cvxalloc simulate`` prints for a batching server)."""
        lo, hi = self.mean_system_time_ci
        level = f"{100 * self.confidence:g}%"
        rule = "processor sharing" if self.limit is None else f"at most {self.limit} decoding"
        arrivals = self.arrivals + (
            f", gap scv {self.arrival_scv:.4g}" if self.arrivals != "poisson" else ""
        )
        return "\n".join(
            [
                f"batching server ({rule}; {arrivals}): simulated {self.queries:,} queries "
                f"(warm-up {self.warmup:,}, {self.batches} batches, seed {self.seed})",
                f"mean system time   {self.mean_system_time:.4f} s   {level} CI "
                f"[{lo:.4f}, {hi:.4f}]   model {self.mean_system_time_model:.4f} s",
                *figure_lines(self, level, " (before admission)"),
            ]
        )


def simulate_batching(
    scenario: Scenario,
    tokens: Any,
    *,
    queries: int = DEFAULT_QUERIES,
    seed: int | None = None,
    warmup: int | None = None,
    batches: int = 30,
    confidence: float = 0.99,
    limit: Any = SCENARIO,
    arrival_scv: float | None = None,
    arrival_times: Any = None,
    target_utilization: float | None = None,
    curve: Any = None,
    chunk_size: int = DEFAULT_CHUNK,
    progress: bool | None = None,
) -> BatchingSimulation:
    """Simulate the batching server of ``scenario`` under an allocation and measure it.

    Parameters
    ----------
    scenario : Scenario
        With ``[server] model = "batching"`` (or pass ``curve``: then any scenario's
        tasks and load are simulated on that curve, e.g. to see how a batch-1 optimum
        fares on a batching server).
    tokens : array_like or Result
        Budgets, task order.
    queries : int
        Queries simulated, warm-up included (with ``arrival_times``: their number).
    seed : int, optional
        Seed of :func:`numpy.random.default_rng`; default: a fresh one, drawn here and
        reported in the result (``seed``), so any run can be repeated (with the same
        ``chunk_size``: draws are made chunk by chunk).
    warmup : int, optional
        Queries discarded from the start (the server starts empty); default
        ``queries // 10``.
    batches : int
        Batches of the batch-means intervals (at least 2).
    confidence : float
        Level of every interval (default 0.99).
    limit : int or None
        At most ``limit`` decode, the rest wait FIFO (None: processor sharing);
        default: the scenario's ``[server] max_running``.
    arrival_scv : float, optional
        Squared coefficient of variation of the gamma gaps (1: Poisson, 0: regular);
        default: the scenario's ``arrival_scv``.
    arrival_times : array_like or RequestLog, optional
        Replay these arrival times (seconds, sorted) instead of drawing gaps; the model
        column then takes their rate and gap scv.
    target_utilization : float, optional
        With ``arrival_times``: rescale time so that the replay's utilization
        ``rate x m1 / c_max`` equals this (the gaps' scv does not change); default:
        the times as they are.
    curve : CapacityCurve, BatchingServer or dict, optional
        The server to simulate instead of the scenario's.
    chunk_size : int
        Queries drawn per vectorized step.
    progress : bool, optional
        A tqdm bar on stderr; default: when stderr is a terminal and the run has more
        than one chunk.

    Raises
    ------
    ScenarioError
        No batching server, no arrivals, or inconsistent run parameters (each names
        the argument).
    UnstableError
        ``lam m1 >= capacity``: the simulation would not settle.
    """
    sc = scenario
    if getattr(sc, "replicas", 1) > 1:
        raise ScenarioError(
            f"simulate_batching: the scenario has a [fleet] of {sc.replicas} replicas and this "
            "simulates one server; use cvxalloc.simulate.simulate_fleet (the CLI does)"
        )
    server = sc.server if curve is None else curve
    if server is None:
        raise ScenarioError(
            'simulate_batching: the scenario has no [server] model = "batching"; '
            "add one or pass curve="
        )
    if not isinstance(server, BatchingServer):
        server = BatchingServer(_plain_curve(server))
    if isinstance(limit, str) and limit == SCENARIO:
        limit = server.max_running
    elif limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1
    ):
        raise ScenarioError(f"limit must be a whole number >= 1 or None (got {limit!r})")
    t = _check_tokens(sc, tokens)
    if curve is None and sc.auto_service_scv:  # the model column: the allocation's own
        sc = sc.with_service_scv_at(t)
        server = dataclasses.replace(sc.server, max_running=server.max_running)
    if arrival_times is not None:
        arrival_times = _replayed_times(sc, t, server, arrival_times, target_utilization)
    elif target_utilization is not None:
        raise ScenarioError("target_utilization applies to a replay: give arrival_times too")
    run = _Run.of(sc, queries, warmup, batches, confidence, chunk_size, arrival_scv, arrival_times)
    if seed is None:  # drawn here and reported, so the run can be repeated
        seed = int(np.random.SeedSequence().entropy % 2**32)
    model = _model(sc, t, server, limit, run)
    engine = BatchingEngine(server.curve, limit)
    tally = _Tally(run.warmup, (run.queries - run.warmup) // run.batches, run.batches)
    rng = np.random.default_rng(seed)
    with _progress(progress, run.queries, chunk_size) as bar:
        clock = time.perf_counter()
        offered, last = _stream(rng, sc, t, engine, tally, run, bar)
    elapsed = time.perf_counter() - clock
    return BatchingSimulation(
        tokens=t,
        names=list(sc.names),
        queries=run.queries,
        warmup=run.warmup,
        batches=run.batches,
        seed=seed,
        confidence=confidence,
        **tally.fields(sc.latency_weight, confidence),
        utilization=offered / (engine.cap * last) if last > 0 else 0.0,
        **model,
        limit=limit,
        arrivals=run.kind,
        arrival_scv=run.scv,
        elapsed=elapsed,
    )


def _replayed_times(sc, t, server: BatchingServer, times: Any, target: float | None):
    """The replayed arrival times, rescaled to ``target`` utilization of ``server`` if given."""
    if isinstance(times, RequestLog):
        times = times.times
    if target is None:
        return times
    log = RequestLog.of(times)
    m1 = float(sc.probability @ sc.service_time(t))
    gaps, _ = replay_clock(log, m1 / server.capacity, target)
    return np.cumsum(gaps)


@dataclass
class _Run:
    """The checked run parameters of :func:`simulate_batching`."""

    queries: int
    warmup: int
    batches: int
    chunk_size: int
    kind: str
    scv: float
    rate: float
    times: np.ndarray | None

    @classmethod
    def of(cls, sc, queries, warmup, batches, confidence, chunk_size, scv, times) -> _Run:
        _check_run(confidence, chunk_size)
        if times is not None:
            times = np.asarray(times, dtype=float)
            if times.ndim != 1 or times.size < 3 or not np.all(np.isfinite(times)):
                raise ScenarioError("arrival_times must be at least 3 finite arrival times")
            if np.any(np.diff(times) < 0):
                raise ScenarioError("arrival_times must be sorted (non-decreasing)")
            gaps = np.diff(times)
            span = float(times[-1] - times[0])
            if not span > 0:
                raise ScenarioError("arrival_times must span a positive time")
            queries, rate = times.size, (times.size - 1) / span
            kind, scv = "replay", float(gaps.var() / gaps.mean() ** 2)
        else:
            rate = sc.arrival_rate
            if not rate > 0:
                raise ScenarioError(
                    "queue: arrival_rate must be > 0 to simulate (no queries arrive)"
                )
            scv = float(sc.arrival_scv if scv is None else scv)
            if not (math.isfinite(scv) and 0 <= scv <= 1e6):
                raise ScenarioError(f"arrival_scv must be between 0 and 1e6 (got {scv})")
            kind = "poisson" if scv == 1.0 else "gamma gaps"
        queries, batches = int(queries), int(batches)
        warmup = queries // 10 if warmup is None else int(warmup)
        if batches < 2:
            raise ScenarioError(f"batches must be >= 2 (got {batches})")
        if warmup < 0 or queries - warmup < batches:
            raise ScenarioError(
                f"queries ({queries}) minus warmup ({warmup}) must leave at least one query per "
                f"batch ({batches}); raise queries"
            )
        return cls(queries, warmup, batches, int(chunk_size), kind, scv, rate, times)


def _model(sc, t, server: BatchingServer, limit, run: _Run) -> dict[str, float]:
    """The batching model's figures for what is simulated (its arrivals and its limit)."""
    lam = run.rate
    s = sc.service_time(t)
    m1 = float(sc.probability @ s)
    queue = BatchingQueue(
        lam,
        curve=server.curve,
        arrival_scv=run.scv,
        max_running=limit,
        service_scv=server.service_scv,
    )
    rho = lam * m1 / queue.capacity
    if rho >= 1:
        raise UnstableError(
            f"allocation is unstable on this server (utilization {rho:.4g} >= 1): lower the "
            "budgets or the arrival rate"
        )
    acc = float(sc.probability @ (sc.weight * sc.accuracy.value(t)))
    w = float(queue.value(m1))
    simulated = sc.with_(
        arrival_rate=lam,
        arrival_scv=run.scv,
        server=BatchingServer(server.curve, limit, server.service_scv),
    )
    try:
        pct = model_percentiles(simulated, t)
    except ScenarioError:  # a service law the percentiles do not take: no prediction
        pct = {f"p{q:g}": None for q in PERCENTILES}
    return {
        "mean_system_time_model": w,
        "accuracy_model": acc,
        "utility_model": acc - sc.latency_weight * w,
        "utilization_model": rho,
        "percentiles_model": pct,
    }


def _stream(
    rng, sc, t, engine: BatchingEngine, tally: _Tally, run: _Run, bar
) -> tuple[float, float]:
    """Draw and serve the arrivals chunk by chunk; the offered work and the last arrival."""
    draw_types = TypeSampler(sc.probability)
    s = sc.service_time(t)
    shape, scale, det = service_distribution(s, sc.scv, sc.variance)
    acc = np.clip(sc.accuracy.value(t), 0.0, 1.0)
    weight = np.asarray(sc.weight, dtype=float)
    clock = offered = 0.0
    t0 = None if run.times is None else float(run.times[0])
    for start in range(0, run.queries, run.chunk_size):
        m = min(run.chunk_size, run.queries - start)
        types = draw_types(rng, m)
        work = sample_service(rng, types, s, shape, scale, det)
        tally.scores(start, np.where(rng.random(m) < acc[types], weight[types], 0.0))
        if run.times is None:
            gaps = _gaps(rng, m, run.scv, run.rate)
            arrivals = clock + np.cumsum(gaps)
            clock = float(arrivals[-1])
        else:
            arrivals = run.times[start : start + m] - t0
            clock = float(arrivals[-1])
        offered += float(work.sum())
        out = Departures()
        engine.serve(start, arrivals.tolist(), work.tolist(), out)
        tally.departures(out)
        if bar is not None:
            bar.update(m)
    out = Departures()
    engine.drain(out)
    tally.departures(out)
    return offered, clock


def _gaps(rng: np.random.Generator, m: int, scv: float, rate: float) -> np.ndarray:
    """``m`` gaps of mean ``1 / rate``: exponential, gamma of scv ``scv``, or constant."""
    if scv == 1.0:
        return rng.standard_exponential(m) / rate
    if scv == 0.0:
        return np.full(m, 1.0 / rate)
    return rng.gamma(1.0 / scv, scv / rate, m)
