"""Replay of a request log's arrival times through the FIFO server, beside three predictions.

Layer: workflows (:mod:`cvxalloc.simulate`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ScenarioError
from ..objective import evaluate
from ..queue import kingman, pollaczek_khinchine
from ..requestlog import RequestLog
from .engine import (
    DEFAULT_CHUNK,
    TypeSampler,
    _check_run,
    _check_tokens,
    _FifoServer,
    _Kept,
    _mean_fields,
    model_percentiles,
)
from .poisson import SimulationResult

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["simulate_replay", "ReplayResult", "DEFAULT_REPLICATIONS", "REPLAY_SERVICES"]

#: Replications of a trace replay when the caller does not say.
DEFAULT_REPLICATIONS = 10
#: Service-time distributions of a replay.
REPLAY_SERVICES = ("gamma", "deterministic")


@dataclass(repr=False)  # SimulationResult's repr: source that rebuilds it
class ReplayResult(SimulationResult):
    """A replay of a request log's arrival times, beside three predictions.

    Everything of :class:`SimulationResult` (``queries`` is the number of
    requests replayed per replication), plus:

    Attributes
    ----------
    replications : int
        Independent replays of the same arrival times (fresh types, services
        and correctness each time).
    interval : str
        How the intervals were made: ``"replications"`` (Student-t over the
        replication means; ``batches`` is then the number of replications) or
        ``"batch means"`` (one replication, ``batches`` batches).
    service : str
        ``"gamma"`` (the model's two moments) or ``"deterministic"``.
    arrivals : dict
        ``source``, ``requests``, ``rate`` (of the replayed, rescaled times),
        ``arrival_scv`` of their gaps, ``rescale`` (factor the times were
        multiplied by), ``log_rate`` (before rescaling), ``types`` (``"drawn"``
        or ``"log"``), and ``tokens`` (``column``, ``mean``, ``scv``) when the
        log has a tokens column (reported only: service times come from the
        allocation).
    predictions : dict
        Mean system time predicted at the replay's rate by ``model`` (the
        scenario's queue model), ``pollaczek_khinchine`` (Poisson arrivals)
        and ``kingman_measured_scv`` (Kingman with the log's measured
        ``arrival_scv``); None where the prediction is unstable or undefined.
        Also ``arrival_rate``, ``model_arrival_scv``, ``measured_arrival_scv``,
        ``m1``, ``m2``.
    """

    replications: int = 1
    interval: str = "batch means"
    service: str = "gamma"
    arrivals: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, Any] = field(default_factory=dict)

    @property
    def queries_per_second(self) -> float:
        """Replayed queries (all replications) per wall-clock second."""
        total = self.queries * self.replications
        return total / self.elapsed if self.elapsed > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """The keys of :meth:`SimulationResult.to_dict` plus the replay's."""
        out = super().to_dict()
        for key in ("mean_system_time_model", "utility_model"):  # unstable: no prediction
            out[key] = _finite_or_none(out[key])
        out["replications"] = self.replications
        out["interval"] = self.interval
        out["service"] = self.service
        out["arrivals"] = dict(self.arrivals)
        out["predictions"] = dict(self.predictions)
        return out

    def summary(self) -> str:
        """A short plain-text report."""
        lo, hi = self.mean_system_time_ci
        arr, pred = self.arrivals, self.predictions
        level = f"{100 * self.confidence:g}%"
        how = (
            f"{self.replications} replications"
            if self.interval == "replications"
            else f"one replication, {self.batches} batches"
        )

        def w(x: float | None) -> str:
            return "unstable" if x is None else f"{x:.4f} s"

        rescale = "" if arr["rescale"] == 1 else f", times x {arr['rescale']:.6g}"
        return "\n".join(
            [
                f"replayed {arr['source']}: {self.queries:,} requests{rescale}, "
                f"rate {arr['rate']:.6g}/s, arrival SCV {arr['arrival_scv']:.4g}, "
                f"types {arr['types']}",
                f"{how} (warm-up {self.warmup:,}, seed {self.seed}, {self.service} service)",
                f"mean system time   {self.mean_system_time:.4f} s   {level} CI "
                f"[{lo:.4f}, {hi:.4f}] over {self.interval}",
                f"  predicted: model {w(pred['model'])} (arrival SCV "
                f"{pred['model_arrival_scv']:g})   P-K {w(pred['pollaczek_khinchine'])}   "
                f"Kingman at measured SCV {w(pred['kingman_measured_scv'])}",
            ]
            + self._tail_lines()
        )


def _finite_or_none(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def simulate_replay(
    scenario: Scenario,
    tokens: Any,
    arrival_times: Any,
    *,
    types: Any = None,
    seed: int | None = None,
    target_utilization: float | None = None,
    warmup: int = 0,
    service: str = "gamma",
    replications: int = DEFAULT_REPLICATIONS,
    batches: int = 30,
    confidence: float = 0.99,
    source: str | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> ReplayResult:
    """Replay a log's arrival times through the FIFO server under an allocation.

    Arrivals are the given times (optionally rescaled) instead of a Poisson
    process; everything else is as in :func:`simulate`: each query's type is
    drawn from the scenario's mix (or taken from ``types``), its service time
    from the model's two moments, its correctness as Bernoulli ``A_i(t_i)``;
    waits follow the Lindley recursion from an empty system at the first
    arrival.

    Parameters
    ----------
    scenario : Scenario
        Mix, service and accuracy models; its ``arrival_rate`` is not used
        (the log sets the arrivals), its queue model gives ``predictions["model"]``.
    tokens : array_like or Result
        Tokens per type (task order).
    arrival_times : array_like or RequestLog
        Arrival times in seconds (any origin; made a log, sorted stably, by
        :meth:`RequestLog.of <cvxalloc.requestlog.RequestLog.of>`). A
        :class:`~cvxalloc.requestlog.RequestLog` also gives ``source``, its
        ``types`` when it has a type column, and its rate, gaps' SCV and token
        summary.
    types : array_like, optional
        Type of each arrival: task names or indices, in the order of
        ``arrival_times``. Default: drawn from the scenario's probabilities.
    seed : int, optional
        Seed of the replications (:class:`numpy.random.SeedSequence`, one
        child per replication).
    target_utilization : float, optional
        Rescale time so that the replay's utilization ``rate x m1`` equals this
        (the times are multiplied by ``rate_log x m1 / target``; the gaps' SCV
        does not change). Default: replay the times as they are.
    warmup : int, optional
        Requests left out of the statistics at the start of each replication
        (default 0: the replay starts from an empty system, as the log did).
    service : {"gamma", "deterministic"}, optional
        ``"gamma"``: gamma service with the model's mean and second moment
        (constant where a type's variance is 0), as :func:`simulate`;
        ``"deterministic"``: every service equals its type's mean.
    replications : int, optional
        Independent replays of the same times; with 2 or more, the intervals
        are Student-t over the replication means (the trace is fixed, so they
        measure the randomness of types, services and correctness given these
        arrivals); with 1, batch means over ``batches`` batches.
    batches : int, optional
        Batches of the batch-means intervals when ``replications == 1``.
    confidence : float, optional
        Level of the intervals (default 0.99).
    source : str, optional
        Name of the log in the report.
    chunk_size : int, optional
        Queries per vectorized step.

    Returns
    -------
    ReplayResult

    Raises
    ------
    ScenarioError
        Fewer than two arrivals or no time span, non-finite times, a type that
        is not a task, a bad ``target_utilization``, ``warmup``,
        ``replications``, ``batches`` or ``service``; a scenario with a
        ``[server]`` (batching) model, which this single-server replay does not
        simulate.

    Examples
    --------
    >>> import numpy as np, cvxalloc
    >>> from cvxalloc.simulate import simulate_replay
    >>> sc = cvxalloc.example_scenario()
    >>> times = np.cumsum(np.random.default_rng(0).exponential(1.0, 20_000))
    >>> rep = simulate_replay(sc, sc.min_tokens, times, seed=1, target_utilization=0.5)
    >>> round(rep.utilization_model, 12), rep.interval
    (0.5, 'replications')
    """
    sc = scenario
    t, log = _replay_input(sc, tokens, arrival_times, types, source)
    type_idx = log.task_indices(sc.names)
    n = log.requests
    replications, batches, warmup = _check_replay(
        n, service, replications, batches, warmup, confidence, chunk_size
    )

    # what is simulated: the scenario's mix, or the log's types, at the replay's time scale
    server = _FifoServer.of(sc, t, deterministic=service == "deterministic")
    mix = sc.probability if type_idx is None else np.bincount(type_idx, minlength=sc.n) / n
    mix = np.asarray(mix, dtype=float)
    m1, m2 = server.moments(mix)
    gaps, clock = replay_clock(log, m1, target_utilization)
    lam = clock["rate"]
    w_model, u_model = _replay_model(sc, t, service, mix, type_idx is not None, lam)
    pct_model, pct_pred = _replay_percentiles(
        _replay_scenario(sc, t, service, mix, type_idx is not None, lam), clock["arrival_scv"]
    )

    kept = _Kept(warmup, n, replications, scores=replications == 1)
    started = time.perf_counter()
    rep_sys, rep_score, utilization = _replay_runs(
        np.random.SeedSequence(seed).spawn(replications),
        server,
        gaps,
        type_idx,
        TypeSampler(sc.probability) if type_idx is None else None,
        chunk_size,
        kept,
        span=log.duration * clock["rescale"],
    )
    elapsed = time.perf_counter() - started
    return ReplayResult(
        tokens=t,
        names=list(sc.names),
        queries=n,
        warmup=warmup,
        batches=replications if replications >= 2 else batches,
        seed=seed,
        confidence=confidence,
        **_replay_means(rep_sys, rep_score, kept, batches, sc.latency_weight, confidence),
        **kept.fields(confidence, batches),
        utilization=utilization,
        mean_system_time_model=w_model,
        accuracy_model=float((mix * server.weight) @ server.accuracy),
        utility_model=float(u_model),
        utilization_model=lam * m1,
        elapsed=elapsed,
        replications=replications,
        service=service,
        arrivals={
            "source": log.source,
            "requests": n,
            **clock,
            "types": "drawn" if type_idx is None else "log",
            **_tokens_entry(log),
        },
        predictions={
            **_replay_predictions(sc, w_model, clock, m1, m2),
            "system_time_percentiles": pct_pred,
        },
        percentiles_model=pct_model,
    )


def _replay_input(
    sc: Scenario, tokens: Any, arrival_times: Any, types: Any, source: str | None
) -> tuple[np.ndarray, RequestLog]:
    """Checked tokens and the log (checked and time-ordered by :meth:`RequestLog.of`)."""
    if getattr(sc, "replicas", 1) > 1:
        raise ScenarioError(
            f"replay: the scenario has a [fleet] of {sc.replicas} replicas and this simulates "
            "one server; use cvxalloc.simulate.simulate_fleet (the CLI does)"
        )
    if getattr(sc, "server", None) is not None:
        raise ScenarioError(
            "the replay simulates one FIFO server serving one query at a time; this scenario's "
            "[server] model (continuous batching) is not simulated: remove [server] to replay "
            "against the single-server model"
        )
    t = _check_tokens(sc, tokens)
    return t, RequestLog.of(arrival_times, types=types, source=source)


def _tokens_entry(log: RequestLog) -> dict[str, Any]:
    """``{"tokens": {column, mean, scv}}`` of the log's token column (reported only), or {}."""
    summary = log.token_summary
    if summary is None:
        return {}
    return {"tokens": {key: summary[key] for key in ("column", "mean", "scv")}}


def _check_replay(
    n: int, service: str, replications, batches, warmup, confidence, chunk_size
) -> tuple[int, int, int]:
    """:func:`simulate_replay`'s run parameters for ``n`` arrivals, checked."""
    if service not in REPLAY_SERVICES:
        raise ScenarioError(
            f"service must be one of {', '.join(REPLAY_SERVICES)} (got {service!r})"
        )
    replications, batches, warmup = int(replications), int(batches), int(warmup)
    if replications < 1:
        raise ScenarioError(f"replications must be >= 1 (got {replications})")
    _check_run(confidence, chunk_size)
    if warmup < 0 or warmup >= n:
        raise ScenarioError(f"warmup must be in [0, {n - 1}] requests (got {warmup})")
    if replications == 1 and (batches < 2 or n - warmup < batches):
        raise ScenarioError(
            f"one replication needs batches >= 2 and at least one request per batch after the "
            f"warm-up ({n - warmup} requests, {batches} batches); raise replications or lower "
            "batches"
        )
    return replications, batches, warmup


def replay_clock(
    log: RequestLog, m1: float, target_utilization: float | None
) -> tuple[np.ndarray, dict[str, float]]:
    """Gaps of the replayed times and their ``rate``, ``arrival_scv``, ``rescale``, ``log_rate``.

    The times are multiplied by ``rescale``: 1, or what brings ``rate x m1`` to
    the target utilization (the gaps' SCV, the log's, does not change with it).
    """
    rate_log = log.arrival_rate
    if target_utilization is None:
        factor = 1.0
    else:
        target = float(target_utilization)
        if not (math.isfinite(target) and target > 0):
            raise ScenarioError(
                f"target utilization must be a finite number > 0 (got {target_utilization})"
            )
        if m1 <= 0:
            raise ScenarioError("mean service time is 0: no time scale reaches a utilization")
        factor = rate_log * m1 / target
    times = np.asarray(log.times, dtype=float)
    gaps = np.diff(times, prepend=times[0])
    gaps *= factor
    return gaps, {
        "rate": rate_log / factor,
        "arrival_scv": log.arrival_scv,
        "rescale": factor,
        "log_rate": rate_log,
    }


def _replay_model(
    sc: Scenario, t: np.ndarray, service: str, mix: np.ndarray, log_types: bool, lam: float
) -> tuple[float, float]:
    """Mean system time and utility the scenario's queue model predicts at the replay's rate.

    With the log's types, over the types present in their measured mix;
    ``(inf, -inf)`` where the model has no steady state.
    """
    model = _replay_scenario(sc, t, service, mix, log_types, lam)
    if model is None:
        return math.inf, -math.inf
    ev = evaluate(*model)
    return float(ev.mean_system_time), float(ev.objective)


def _replay_scenario(
    sc: Scenario, t: np.ndarray, service: str, mix: np.ndarray, log_types: bool, lam
):
    """The scenario (and tokens) the model sees at the replay's rate, or None (no steady state)."""
    kw: dict[str, Any] = {"arrival_rate": lam}
    if service == "deterministic":
        kw.update(scv=np.zeros(sc.n), variance=np.zeros(sc.n))
    model_sc, model_t = sc, t
    if log_types:
        present = np.flatnonzero(mix > 0)
        model_sc, model_t = sc.take(present), t[present]
        kw["probability"] = mix[present]
        if service == "deterministic":
            kw.update(scv=np.zeros(present.size), variance=np.zeros(present.size))
    try:
        model_sc = model_sc.with_(**kw)
    except ScenarioError:  # e.g. unstable even at the minimum budgets at this rate
        return None
    return model_sc, model_t


def _replay_percentiles(model, ca2: float) -> tuple[dict, dict]:
    """The model's percentiles at the replay's rate (its own ``arrival_scv``), and those of
    Pollaczek-Khinchine and of the bursty-arrivals approximation at the measured one
    (docs/tail.md; the JSON key keeps its first name, ``kingman_measured_scv``)."""
    if model is None:
        return {}, {}
    sc, t = model
    return model_percentiles(sc, t), {
        "pollaczek_khinchine": model_percentiles(sc.with_(arrival_scv=1.0), t),
        "kingman_measured_scv": model_percentiles(sc.with_(arrival_scv=max(ca2, 0.0)), t),
    }


def _replay_predictions(
    sc: Scenario, w_model: float, clock: dict[str, float], m1: float, m2: float
) -> dict[str, Any]:
    """Mean system time at the replay's rate by the scenario's model, Pollaczek-Khinchine
    and Kingman at the measured arrival SCV (None where unstable), and their inputs."""
    lam, ca2 = clock["rate"], clock["arrival_scv"]
    return {
        "model": _finite_or_none(w_model),
        "pollaczek_khinchine": _finite_or_none(pollaczek_khinchine(lam, m1, m2)),
        "kingman_measured_scv": _finite_or_none(kingman(lam, m1, m2, ca2)),
        "arrival_rate": lam,
        "model_arrival_scv": float(getattr(sc, "arrival_scv", 1.0)),
        "measured_arrival_scv": ca2,
        "m1": m1,
        "m2": m2,
    }


def _replay_runs(
    children: list[np.random.SeedSequence],
    server: _FifoServer,
    gaps: np.ndarray,
    type_idx: np.ndarray | None,
    draw_types: TypeSampler | None,
    chunk_size: int,
    kept: _Kept,
    span: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Replay the gaps once per seed, from an empty system each time.

    Returns each replication's mean system time and mean score and the mean
    utilization (the last arrival ``span`` after the first).
    """
    n, count = gaps.size, len(children)
    kept_n = n - kept.warmup
    rep_sys, rep_score = np.empty(count), np.empty(count)
    utilization = 0.0
    for r, child in enumerate(children):
        rng = np.random.default_rng(child)
        server.reset()
        kept.replication(r)
        for start in range(0, n, chunk_size):
            m = min(chunk_size, n - start)
            ty = type_idx[start : start + m] if draw_types is None else draw_types(rng, m)
            wait, serv, score = server.serve(rng, ty, gaps[start : start + m])
            kept.add(start, wait, serv, score)
        rep_sys[r] = kept.rep_system / kept_n
        rep_score[r] = kept.rep_score / kept_n
        utilization += server.utilization(span)
    return rep_sys, rep_score, utilization / count


def _replay_means(
    rep_sys: np.ndarray,
    rep_score: np.ndarray,
    kept: _Kept,
    batches: int,
    gamma: float,
    confidence: float,
) -> dict[str, Any]:
    """Mean system time and utility with their intervals, and how they were made.

    Over replications (Student-t on the replication means) when there are two
    or more; else the one replication's exact means with batch-means intervals.
    """
    if rep_sys.size >= 2:
        fields = _mean_fields(rep_sys, rep_score, gamma, confidence)
        return {"interval": "replications", **fields}
    size = kept.records.size // batches
    sys_b = kept.records[: size * batches].astype(float).reshape(batches, size).mean(axis=1)
    sc_b = kept.scores[: size * batches].reshape(batches, size).mean(axis=1)
    exact = (float(rep_sys[0]), float(rep_score[0] - gamma * rep_sys[0]))
    return {"interval": "batch means", **_mean_fields(sys_b, sc_b, gamma, confidence, exact)}
