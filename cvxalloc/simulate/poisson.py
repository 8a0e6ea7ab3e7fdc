"""Poisson runs: the FIFO server simulated under any allocation, beside the model.

Layer: workflows (:mod:`cvxalloc.simulate`).

The simulated system is exactly the one the model describes: queries arrive as
a Poisson process of rate ``lam``, a query is of type ``i`` with probability
``p_i``, its service time has mean ``s_i = a_i + b_i t_i`` and second moment
``(1 + k_i) s_i^2 + v_i`` (a gamma distribution with those two moments, a
constant when ``k_i = v_i = 0``), and its answer is correct with probability
``A_i(t_i)``. One server serves in arrival order; the waits, draws and
intervals come from :mod:`cvxalloc.simulate.engine`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._source import fields_source
from ..errors import ScenarioError, UnstableError
from ..objective import Objective
from .engine import (
    DEFAULT_CHUNK,
    MeanAgainstModel,
    TypeSampler,
    _Batches,
    _check_run,
    _check_tokens,
    _FifoServer,
    _Kept,
    _mean_fields,
    _progress,
    figure_fields,
    figure_lines,
    model_percentiles,
    run_fields,
)

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["SimulationResult", "simulate", "DEFAULT_QUERIES"]

#: Queries simulated when the caller does not say.
DEFAULT_QUERIES = 2_000_000


# --------------------------------------------------------------------------
# result
@dataclass
class SimulationResult(MeanAgainstModel):
    """What one simulation run measured, beside what the model predicts.

    Attributes
    ----------
    tokens : ndarray
        The simulated allocation.
    names : list of str
        Task names in order.
    queries, warmup, batches : int
        Queries simulated, queries discarded before the statistics, number of
        batches of the batch-means intervals.
    seed : int or None
        The seed of :func:`numpy.random.default_rng`.
    confidence : float
        Level of every interval (default 0.99).
    mean_system_time : float
        Mean of arrival-to-departure time after the warm-up, in seconds.
    mean_system_time_ci : tuple of float
        Batch-means interval ``(low, high)``.
    mean_waiting_time : float
        Mean time in queue before service starts.
    percentiles : dict
        ``{"p50": ..., "p90": ..., "p95": ..., "p99": ...}`` of the system time, seconds.
    percentiles_ci : dict
        Their intervals ``(low, high)`` at ``confidence``, by sectioning: the
        spread of each percentile over the batches (or the replications of a
        replay), :func:`~cvxalloc.simulate.engine.percentile_intervals`.
    percentiles_model : dict
        The same percentiles predicted by the model
        (:func:`cvxalloc.queue.tail.system_time_quantiles`; exact for one FIFO
        server with Poisson arrivals), ``None`` where there is no prediction.
    accuracy : float
        Realized weighted accuracy: mean of ``w_type x correct``.
    accuracy_ci : tuple of float
        Interval of independent draws.
    utility : float
        Realized ``accuracy - gamma x mean system time``.
    utility_ci : tuple of float
        Batch-means interval.
    utilization : float
        Busy fraction of the server over the run.
    mean_system_time_model, accuracy_model, utility_model, utilization_model : float
        Pollaczek-Khinchine ``W``, ``sum p_i w_i A_i``, ``U`` and ``rho``.
    elapsed : float
        Wall-clock seconds of the run.
    batch_means : dict of ndarray
        ``system``, ``score`` and ``utility`` means of the batches the
        intervals are made from.

    Notes
    -----
    ``repr`` is Python source that rebuilds the result (with ``np`` and the
    class in scope): every float exact, arrays as ``np.array([...])`` up to
    100 entries (summarized beyond, and then not source).
    """

    tokens: np.ndarray
    names: list[str]
    queries: int
    warmup: int
    batches: int
    seed: int | None
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
    elapsed: float = 0.0
    batch_means: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    percentiles_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    percentiles_model: dict[str, float | None] = field(default_factory=dict)

    def __repr__(self) -> str:
        """Python source that rebuilds the result (``np`` and the class in scope).

        >>> import cvxalloc
        >>> sc = cvxalloc.example_scenario()
        >>> sim = simulate(sc, sc.min_tokens, queries=2_000, seed=1, batches=4)
        >>> sim  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
        SimulationResult(tokens=np.array([0.0, 1024.0, 0.0, 0.0, 0.0]), names=[...],
            queries=2000, ..., batch_means={'system': np.array([...]), ...})
        >>> again = eval(repr(sim))
        >>> again.to_dict() == sim.to_dict()
        True
        >>> np.array_equal(again.batch_means["utility"], sim.batch_means["utility"])
        True
        """
        return fields_source(self)

    def _repr_pretty_(self, p, cycle) -> None:
        """Print the repr in IPython and hypothesis (which spell a dataclass field by field)."""
        p.text(repr(self))

    @property
    def queries_per_second(self) -> float:
        """Simulated queries per wall-clock second."""
        return self.queries / self.elapsed if self.elapsed > 0 else math.inf

    def accuracy_within_ci(self) -> bool:
        """Whether the model's weighted accuracy lies inside the realized interval."""
        low, high = self.accuracy_ci
        return bool(low <= self.accuracy_model <= high)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``tokens`` as task name -> tokens)."""
        return {**run_fields(self), **figure_fields(self)}

    def _tail_lines(self) -> list[str]:
        """The report's lines after the mean system time (percentiles to speed)."""
        return figure_lines(self, f"{100 * self.confidence:g}%")

    def summary(self) -> str:
        """A short plain-text report."""
        lo, hi = self.mean_system_time_ci
        level = f"{100 * self.confidence:g}%"
        return "\n".join(
            [
                f"simulated {self.queries:,} queries (warm-up {self.warmup:,}, "
                f"{self.batches} batches, seed {self.seed})",
                f"mean system time   {self.mean_system_time:.4f} s   {level} CI "
                f"[{lo:.4f}, {hi:.4f}]   model (PK) {self.mean_system_time_model:.4f} s",
            ]
            + self._tail_lines()
        )


def simulate(
    scenario: Scenario,
    tokens: Any,
    *,
    queries: int = DEFAULT_QUERIES,
    seed: int | None = None,
    warmup: int | None = None,
    batches: int = 30,
    confidence: float = 0.99,
    chunk_size: int = DEFAULT_CHUNK,
    progress: bool | None = None,
) -> SimulationResult:
    """Simulate the FIFO server under an allocation and measure it.

    Parameters
    ----------
    scenario : Scenario
        The workload (arrival rate, mix, service and accuracy models).
    tokens : array_like or Result
        Tokens per type (task order), e.g. ``cvxalloc.solve(sc).tokens``.
    queries : int, optional
        Queries to simulate, warm-up included.
    seed : int, optional
        Seed of :func:`numpy.random.default_rng`; the same seed (and
        ``chunk_size``) gives the same numbers.
    warmup : int, optional
        Queries discarded from the start (the queue starts empty); default
        ``queries // 10``.
    batches : int, optional
        Number of batches of the batch-means intervals (at least 2).
    confidence : float, optional
        Level of the intervals, default 0.99.
    chunk_size : int, optional
        Queries drawn per vectorized step.
    progress : bool, optional
        Show a tqdm progress bar on stderr; default: when stderr is a terminal
        and the run has more than one chunk.

    Returns
    -------
    SimulationResult
        Mean, percentiles and interval of the system time, realized accuracy
        and utility, beside the model's predictions.

    Raises
    ------
    ScenarioError
        If the allocation is outside the bounds, the arrival rate is 0, or the
        run parameters are inconsistent.
    UnstableError
        If the allocation is unstable (utilization >= 1): no steady state
        exists to measure.
    """
    sc = scenario
    t, queries, warmup, batches = _check_simulate(
        sc, tokens, queries, warmup, batches, confidence, chunk_size
    )
    # The arrivals drawn here are Poisson, so the model to hold them against is P-K,
    # whatever arrival_scv the scenario plans for (replay a log for bursty traffic).
    poisson = sc if sc.arrival_scv == 1.0 else sc.with_(arrival_scv=1.0)
    ev = Objective(poisson).evaluate(t)
    if ev.utilization >= 1:
        raise UnstableError(
            f"allocation is unstable (utilization {ev.utilization:.4g} >= 1): the queue "
            "grows without bound; lower the budgets or the arrival rate"
        )
    server = _FifoServer.of(sc, t)
    bm = _Batches(warmup, (queries - warmup) // batches, batches)
    kept = _Kept(warmup, bm.end)
    rng = np.random.default_rng(seed)
    with _progress(progress, queries, chunk_size) as bar:
        clock = time.perf_counter()
        span = _poisson_chunks(rng, sc, server, queries, chunk_size, bm, kept, bar)
    elapsed = time.perf_counter() - clock
    return SimulationResult(
        tokens=t,
        names=list(sc.names),
        queries=queries,
        warmup=warmup,
        batches=batches,
        seed=seed,
        confidence=confidence,
        **_mean_fields(bm.means("system"), bm.means("score"), sc.latency_weight, confidence),
        **kept.fields(confidence, batches),
        percentiles_model=model_percentiles(poisson, t),
        utilization=server.utilization(span),
        mean_system_time_model=float(ev.mean_system_time),
        accuracy_model=float(ev.accuracy),
        utility_model=float(ev.objective),
        utilization_model=float(ev.utilization),
        elapsed=elapsed,
    )


def _check_simulate(
    sc: Scenario,
    tokens: Any,
    queries: int,
    warmup: int | None,
    batches: int,
    confidence,
    chunk_size,
) -> tuple[np.ndarray, int, int, int]:
    """:func:`simulate`'s arguments checked: tokens, queries, warm-up, batches."""
    if getattr(sc, "replicas", 1) > 1:
        raise ScenarioError(
            f"simulate: the scenario has a [fleet] of {sc.replicas} replicas and this simulates "
            "one server; use cvxalloc.simulate.simulate_fleet (the CLI does)"
        )
    if getattr(sc, "server", None) is not None:
        raise ScenarioError(
            "simulate: this simulator serves one query at a time (FIFO) and the scenario has "
            'a batching server ([server] model = "batching"); use '
            "cvxalloc.simulate.simulate_batching (the CLI does)"
        )
    t = _check_tokens(sc, tokens)
    queries, batches = int(queries), int(batches)
    warmup = queries // 10 if warmup is None else int(warmup)
    if sc.arrival_rate <= 0:
        raise ScenarioError("queue: arrival_rate must be > 0 to simulate (no queries arrive)")
    _check_run(confidence, chunk_size)
    if batches < 2:
        raise ScenarioError(f"batches must be >= 2 (got {batches})")
    if warmup < 0 or queries - warmup < batches:
        raise ScenarioError(
            f"queries ({queries}) minus warmup ({warmup}) must leave at least one query per "
            f"batch ({batches}); raise queries"
        )
    return t, queries, warmup, batches


def _poisson_chunks(
    rng: np.random.Generator,
    sc: Scenario,
    server: _FifoServer,
    queries: int,
    chunk_size: int,
    bm: _Batches,
    kept: _Kept,
    bar: Any,
) -> float:
    """Serve ``queries`` Poisson arrivals chunk by chunk; the time of the last arrival."""
    lam = sc.arrival_rate
    draw_types = TypeSampler(sc.probability)
    span = 0.0
    for start in range(0, queries, chunk_size):
        m = min(chunk_size, queries - start)
        gaps = rng.standard_exponential(m)
        gaps /= lam
        wait, serv, score = server.serve(rng, draw_types(rng, m), gaps)
        span += float(gaps.sum())
        bm.add("system", start, wait + serv)
        bm.add("score", start, score)
        kept.add(start, wait, serv, score)
        if bar is not None:
            bar.update(m)
    return span
