"""Discrete-event simulation of the FIFO server under any allocation.

The simulated system is exactly the one the model describes: queries arrive as
a Poisson process of rate ``lam``, a query is of type ``i`` with probability
``p_i``, its service time has mean ``s_i = a_i + b_i t_i`` and second moment
``(1 + k_i) s_i^2 + v_i`` (a gamma distribution with those two moments, a
constant when ``k_i = v_i = 0``), and its answer is correct with probability
``A_i(t_i)``. One server serves in arrival order.

Waiting times follow the Lindley recursion ``W_n = max(0, W_{n-1} + S_{n-1} -
A_n)`` (``A_n`` the inter-arrival time). With the increments ``X_n = S_{n-1} -
A_n``, their running sum ``C_n`` and an initial wait ``w0``, its solution is

    W_n = C_n - min(-w0, min_{j <= n} C_j),

one cumulative sum and one running minimum, computed chunk by chunk (the last
wait and service carry over), so there is no Python loop per query.

The mean system time and the realized utility get a confidence interval from
batch means after a warm-up (a FIFO queue's system times are correlated, so
the plain standard error would be too small); the realized accuracy gets the
interval of independent draws (correctness is independent across queries).

Examples
--------
>>> import cvxalloc
>>> from cvxalloc.simulate import simulate
>>> sc = cvxalloc.example_scenario()
>>> sim = simulate(sc, sc.min_tokens, queries=200_000, seed=1)
>>> low, high = sim.mean_system_time_ci
>>> bool(low < sim.mean_system_time < high)
True
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from ._source import fields_source
from .errors import ScenarioError, UnstableError
from .objective import Objective, evaluate
from .queue import kingman, pollaczek_khinchine

__all__ = [
    "SimulationResult",
    "simulate",
    "service_distribution",
    "sample_service",
    "lindley_waits",
    "TypeSampler",
    "batch_means_interval",
    "DEFAULT_QUERIES",
    "DEFAULT_CHUNK",
    "simulate_replay",
    "ReplayResult",
    "DEFAULT_REPLICATIONS",
    "REPLAY_SERVICES",
]

#: Queries simulated when the caller does not say.
DEFAULT_QUERIES = 2_000_000
#: Queries drawn per vectorized chunk (memory ~ 60 bytes x chunk).
DEFAULT_CHUNK = 1 << 20


# --------------------------------------------------------------------------
# service-time distribution
def service_distribution(
    mean: np.ndarray, scv: np.ndarray, variance: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gamma parameters matching the model's first two service-time moments.

    Parameters
    ----------
    mean : ndarray
        ``s_i`` in seconds.
    scv, variance : ndarray
        ``k_i`` and ``v_i``: the variance of a type-``i`` service is
        ``k_i s_i^2 + v_i`` (second moment ``(1 + k_i) s_i^2 + v_i``).

    Returns
    -------
    shape, scale : ndarray
        Gamma shape ``s^2 / var`` and scale ``var / s`` (``nan`` where the
        service is deterministic).
    deterministic : ndarray of bool
        ``True`` where the variance is 0: the service time is exactly ``s_i``.

    Raises
    ------
    ScenarioError
        Where a type has mean service 0 but positive variance (no
        non-negative distribution has those moments).
    """
    mean = np.asarray(mean, dtype=float)
    var = np.asarray(scv, dtype=float) * mean**2 + np.asarray(variance, dtype=float)
    det = var <= 0
    bad = ~det & (mean <= 0)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ScenarioError(
            f"task {i + 1}: mean service time is 0 but service.variance is {var[i]:g}; "
            "no non-negative service time has these moments: raise service.base or set "
            "service.variance = 0"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        shape = np.where(det, np.nan, mean**2 / np.where(det, 1.0, var))
        scale = np.where(det, np.nan, var / np.where(mean > 0, mean, 1.0))
    return shape, scale, det


def sample_service(
    rng: np.random.Generator,
    types: np.ndarray,
    mean: np.ndarray,
    shape: np.ndarray,
    scale: np.ndarray,
    deterministic: np.ndarray,
) -> np.ndarray:
    """Service times of queries of the given types (gamma, or constant).

    Types that share one gamma shape (the usual case: a common ``k`` and no
    ``v``) are drawn with a scalar shape, which is faster than a per-query one.
    """
    if deterministic.all():
        return mean[types]
    random_types = ~deterministic
    shapes = np.unique(shape[random_types])
    if shapes.size == 1:
        out = rng.standard_gamma(shapes[0], size=types.size)
    else:
        out = rng.standard_gamma(np.where(deterministic, 1.0, shape)[types])
    if deterministic.any():
        scale_or_mean = np.where(deterministic, mean, scale)
        out *= scale_or_mean[types]
        det_q = deterministic[types]
        out[det_q] = mean[types[det_q]]
    else:
        out *= scale[types]
    return out


def lindley_waits(
    gaps: np.ndarray, service: np.ndarray, prev_wait: float = 0.0, prev_service: float = 0.0
) -> np.ndarray:
    """Waiting times of consecutive FIFO queries, without a loop per query.

    Solves ``W_n = max(0, W_{n-1} + S_{n-1} - A_n)`` as
    ``W_n = C_n - min(-w0, min_{j <= n} C_j)`` with ``C`` the running sum of
    ``S_{n-1} - A_n``.

    Parameters
    ----------
    gaps : ndarray
        Inter-arrival times ``A_n`` (the first one measured from the previous
        query, or from time 0).
    service : ndarray
        Service times ``S_n`` of the same queries.
    prev_wait, prev_service : float, optional
        Wait and service of the query before ``gaps[0]`` (0 and 0: an empty
        system).

    Returns
    -------
    ndarray
        ``W_n`` for every query.
    """
    m = gaps.size
    c = np.empty(m)
    if m == 0:
        return c
    c[0] = prev_service - gaps[0]
    np.subtract(service[:-1], gaps[1:], out=c[1:])
    np.cumsum(c, out=c)
    low = np.minimum.accumulate(c)
    np.minimum(low, -prev_wait, out=low)
    return np.subtract(c, low, out=c)


def batch_means_interval(
    values: np.ndarray, batches: int = 30, confidence: float = 0.99
) -> tuple[float, tuple[float, float]]:
    """Mean of a correlated sequence and its batch-means interval.

    ``values`` (after any warm-up) is cut into ``batches`` equal consecutive
    batches (the remainder at the end is dropped); the interval is Student-t
    on the batch means. Used on this module's output and on other
    simulators' records alike.

    Returns
    -------
    mean : float
    (low, high) : tuple of float
    """
    values = np.asarray(values, dtype=float)
    size = values.size // batches
    if batches < 2 or size < 1:
        raise ScenarioError(
            f"need at least {batches} values for {batches} batches (got {values.size})"
        )
    means = values[: size * batches].reshape(batches, size).mean(axis=1)
    mean = float(means.mean())
    return mean, _interval(mean, means, confidence)


class TypeSampler:
    """Draws task types with probabilities ``p`` (Walker's alias method).

    One uniform per query: its integer part picks a column, its fraction
    decides between the column and its alias (O(1) per draw). For few types
    (at most :attr:`SEARCH_MAX`, where it is faster) and above
    :attr:`ALIAS_MAX` types (where building the table in Python is slow) types
    come from the cumulative probabilities instead: the number of them at or
    below the uniform, counted by one comparison per type up to
    :attr:`SCAN_MAX` types, by binary search above.
    """

    #: Up to this many types, count ``u >= cdf_k`` type by type (fastest).
    SCAN_MAX = 8
    #: Up to this many types, a binary search is faster than the alias table.
    SEARCH_MAX = 16
    #: Largest number of types for which the alias table is built.
    ALIAS_MAX = 1 << 16

    def __init__(self, probability: np.ndarray) -> None:
        p = np.asarray(probability, dtype=float)
        self.n = p.size
        if self.n <= self.SEARCH_MAX or self.n > self.ALIAS_MAX:
            self.cdf = np.cumsum(p) / p.sum()
            self.prob = self.alias = None
            return
        q = p * (self.n / p.sum())
        prob = np.ones(self.n)
        alias = np.arange(self.n)
        small = [i for i in range(self.n) if q[i] < 1.0]
        large = [i for i in range(self.n) if q[i] >= 1.0]
        while small and large:
            j, k = small.pop(), large.pop()
            prob[j], alias[j] = q[j], k
            q[k] -= 1.0 - q[j]
            (small if q[k] < 1.0 else large).append(k)
        self.prob, self.alias = prob, alias  # leftovers keep prob 1 (rounding)

    def __call__(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """``m`` types (int array)."""
        u = rng.random(m)
        if self.n <= self.SCAN_MAX:
            small = np.zeros(m, dtype=np.int8)
            for c in self.cdf[:-1]:
                small += u >= c
            return small.astype(np.intp)
        if self.prob is None:
            types = np.searchsorted(self.cdf, u, side="right")
            return np.minimum(types, self.n - 1, out=types)
        u *= self.n
        col = u.astype(np.intp)
        np.minimum(col, self.n - 1, out=col)
        u -= col
        return np.where(u < self.prob[col], col, self.alias[col])


# --------------------------------------------------------------------------
# result
@dataclass
class SimulationResult:
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
        ``{"p50": ..., "p95": ..., "p99": ...}`` of the system time, seconds.
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

    def model_within_ci(self) -> bool:
        """Whether the Pollaczek-Khinchine ``W`` lies inside the simulated interval."""
        low, high = self.mean_system_time_ci
        return bool(low <= self.mean_system_time_model <= high)

    def accuracy_within_ci(self) -> bool:
        """Whether the model's weighted accuracy lies inside the realized interval."""
        low, high = self.accuracy_ci
        return bool(low <= self.accuracy_model <= high)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``tokens`` as task name -> tokens)."""
        return {
            "tokens": {n: float(x) for n, x in zip(self.names, self.tokens)},
            "queries": self.queries,
            "warmup": self.warmup,
            "batches": self.batches,
            "seed": self.seed,
            "confidence": self.confidence,
            "mean_system_time": self.mean_system_time,
            "mean_system_time_ci": list(self.mean_system_time_ci),
            "mean_system_time_model": self.mean_system_time_model,
            "model_within_ci": self.model_within_ci(),
            "mean_waiting_time": self.mean_waiting_time,
            "system_time_percentiles": dict(self.percentiles),
            "accuracy": self.accuracy,
            "accuracy_ci": list(self.accuracy_ci),
            "accuracy_model": self.accuracy_model,
            "utility": self.utility,
            "utility_ci": list(self.utility_ci),
            "utility_model": self.utility_model,
            "utilization": self.utilization,
            "utilization_model": self.utilization_model,
            "elapsed_seconds": self.elapsed,
            "queries_per_second": self.queries_per_second,
        }

    def _tail_lines(self) -> list[str]:
        """The report's lines after the mean system time (percentiles to speed)."""
        alo, ahi = self.accuracy_ci
        ulo, uhi = self.utility_ci
        pct = self.percentiles
        level = f"{100 * self.confidence:g}%"
        return [
            f"system time p50 / p95 / p99   {pct['p50']:.3f} / {pct['p95']:.3f} / "
            f"{pct['p99']:.3f} s",
            f"mean waiting time  {self.mean_waiting_time:.4f} s",
            f"utilization        {self.utilization:.4f}   model {self.utilization_model:.4f}",
            f"weighted accuracy  {self.accuracy:.5f}   {level} CI [{alo:.5f}, {ahi:.5f}]   "
            f"model {self.accuracy_model:.5f}",
            f"utility            {self.utility:.5f}   {level} CI [{ulo:.5f}, {uhi:.5f}]   "
            f"model {self.utility_model:.5f}",
            f"{self.elapsed:.2f} s wall ({self.queries_per_second:,.0f} queries/s)",
        ]

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


# --------------------------------------------------------------------------
class _Batches:
    """Sums of a per-query quantity over the batches that follow the warm-up."""

    def __init__(self, warmup: int, size: int, count: int) -> None:
        self.warmup, self.size, self.count = warmup, size, count
        self.end = warmup + size * count
        self.sums: dict[str, np.ndarray] = {}

    def add(self, key: str, start: int, values: np.ndarray) -> None:
        sums = self.sums.setdefault(key, np.zeros(self.count))
        lo = max(start, self.warmup)
        hi = min(start + values.size, self.end)
        if lo >= hi:
            return
        b0 = (lo - self.warmup) // self.size
        b1 = (hi - 1 - self.warmup) // self.size
        cuts = self.warmup + self.size * np.arange(b0 + 1, b1 + 1)
        offsets = np.concatenate([[lo], cuts]) - lo
        sums[b0 : b1 + 1] += np.add.reduceat(values[lo - start : hi - start], offsets)

    def means(self, key: str) -> np.ndarray:
        return self.sums[key] / self.size


def _interval(mean: float, values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (batch means or draws)."""
    n = values.size
    if n < 2:
        return (-math.inf, math.inf)
    half = (
        special.stdtrit(n - 1, 0.5 + confidence / 2) * float(np.std(values, ddof=1)) / math.sqrt(n)
    )
    return (mean - half, mean + half)


def _check_tokens(scenario, tokens: Any) -> np.ndarray:
    t = np.asarray(getattr(tokens, "tokens", tokens), dtype=float)
    if t.shape != (scenario.n,):
        raise ScenarioError(
            f"tokens must have one entry per task ({scenario.n}), got shape {t.shape}"
        )
    if not np.all(np.isfinite(t)):
        raise ScenarioError("tokens must be finite numbers")
    tol = 1e-9 * np.maximum(1.0, np.abs(scenario.max_tokens))
    bad = (t < scenario.min_tokens - tol) | (t > scenario.max_tokens + tol)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ScenarioError(
            f'task "{scenario.names[i]}": tokens {t[i]:g} outside [min_tokens, max_tokens] = '
            f"[{scenario.min_tokens[i]:g}, {scenario.max_tokens[i]:g}]"
        )
    return np.clip(t, scenario.min_tokens, scenario.max_tokens)


def _check_run(confidence: float, chunk_size: int) -> None:
    """The run parameters :func:`simulate` and :func:`simulate_replay` both take."""
    if not 0 < confidence < 1:
        raise ScenarioError(f"confidence must be in (0, 1) (got {confidence})")
    if chunk_size < 1:
        raise ScenarioError(f"chunk_size must be >= 1 (got {chunk_size})")


class _FifoServer:
    """The draws of one FIFO server, chunk by chunk, and what a chunk hands to the next.

    :meth:`serve` draws a chunk's service times and correctness from ``rng`` (in
    that order) and solves its waits, carrying the last wait and service over;
    ``busy`` sums the service times since :meth:`reset` (an empty system).
    """

    def __init__(
        self,
        mean: np.ndarray,
        scv: Any,
        variance: Any,
        accuracy: np.ndarray,
        weight: np.ndarray,
    ) -> None:
        self.mean = mean
        self.scv = np.asarray(scv, dtype=float)
        self.variance = np.asarray(variance, dtype=float)
        self.shape, self.scale, self.det = service_distribution(mean, self.scv, self.variance)
        self.accuracy, self.weight = accuracy, weight
        self.reset()

    @classmethod
    def of(cls, scenario, tokens: np.ndarray, deterministic: bool = False) -> _FifoServer:
        """The scenario's server under ``tokens`` (every service its mean if ``deterministic``)."""
        zeros = np.zeros(scenario.n)
        return cls(
            scenario.service_time(tokens),
            zeros if deterministic else scenario.scv,
            zeros if deterministic else scenario.variance,
            np.clip(scenario.accuracy.value(tokens), 0.0, 1.0),
            np.asarray(scenario.weight, dtype=float),
        )

    def reset(self) -> None:
        self.prev_wait = self.prev_service = 0.0
        self.busy = 0.0

    def serve(
        self, rng: np.random.Generator, types: np.ndarray, gaps: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Waits, service times and scores (``w_type x correct``) of one chunk of queries."""
        serv = sample_service(rng, types, self.mean, self.shape, self.scale, self.det)
        correct = rng.random(types.size) < self.accuracy[types]
        wait = lindley_waits(gaps, serv, self.prev_wait, self.prev_service)
        self.prev_wait, self.prev_service = float(wait[-1]), float(serv[-1])
        self.busy += float(serv.sum())
        return wait, serv, self.weight[types] * correct

    def utilization(self, span: float) -> float:
        """Busy fraction up to the last departure, the last arrival ``span`` after time 0."""
        busy_end = span + self.prev_wait + self.prev_service
        return self.busy / busy_end if busy_end > 0 else 0.0

    def moments(self, mix: np.ndarray) -> tuple[float, float]:
        """First two moments of the service time of a query drawn from ``mix``."""
        m1 = float(mix @ self.mean)
        m2 = float(mix @ ((1 + self.scv) * self.mean**2 + self.variance))
        return m1, m2


class _Kept:
    """What the statistics keep of the queries ``warmup .. end - 1`` of each replication.

    System times go to ``records`` (float32, one block per replication, for the
    percentiles); waits, scores and squared scores are summed over the run,
    system times and scores also per replication (``rep_system``,
    ``rep_score``); with ``scores``, one replication's scores are recorded too.
    """

    def __init__(self, warmup: int, end: int, replications: int = 1, scores: bool = False):
        self.warmup, self.end = warmup, end
        self.records = np.empty(replications * (end - warmup), dtype=np.float32)
        self.scores = np.empty(end - warmup) if scores else None
        self.wait = self.score = self.score_sq = 0.0
        self.replication(0)

    def replication(self, r: int) -> None:
        """Start replication ``r`` (its records and per-replication sums)."""
        self.offset = r * (self.end - self.warmup)
        self.rep_system = self.rep_score = 0.0

    def add(self, start: int, wait: np.ndarray, serv: np.ndarray, score: np.ndarray) -> None:
        """A chunk of queries from query ``start`` on: keep its part in ``[warmup, end)``."""
        lo, hi = max(start, self.warmup), min(start + wait.size, self.end)
        if lo >= hi:
            return
        a, b = lo - start, hi - start
        at = lo - self.warmup
        system = wait[a:b] + serv[a:b]
        self.records[self.offset + at : self.offset + at + b - a] = system
        self.rep_system += float(system.sum())
        self.wait += float(wait[a:b].sum())
        kept = score[a:b]
        s = float(kept.sum())
        self.rep_score += s
        self.score += s
        self.score_sq += float(kept @ kept)
        if self.scores is not None:
            self.scores[at : at + b - a] = kept

    def fields(self, confidence: float) -> dict[str, Any]:
        """Result fields of the kept queries: mean wait, system-time percentiles, accuracy.

        The accuracy's interval is that of independent draws (correctness is
        independent across queries).
        """
        total = self.records.size
        a_mean = self.score / total
        a_var = max(self.score_sq / total - a_mean**2, 0.0) * total / max(total - 1, 1)
        z = special.stdtrit(max(total - 1, 1), 0.5 + confidence / 2)
        a_half = z * math.sqrt(a_var / total)
        p50, p95, p99 = np.percentile(self.records, [50, 95, 99])
        return {
            "mean_waiting_time": self.wait / total,
            "percentiles": {"p50": float(p50), "p95": float(p95), "p99": float(p99)},
            "accuracy": a_mean,
            "accuracy_ci": (a_mean - a_half, a_mean + a_half),
        }


def _mean_fields(
    system: np.ndarray,
    score: np.ndarray,
    gamma: float,
    confidence: float,
    exact: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Result fields from batch (or replication) means of system time and score.

    The intervals are Student-t on those means, centered on ``exact`` (mean
    system time and utility) when given, else on the mean of the means.
    """
    utility = score - gamma * system
    if exact is None:
        w_mean, u_mean = float(system.mean()), float(utility.mean())
    else:
        w_mean, u_mean = exact
    return {
        "mean_system_time": w_mean,
        "mean_system_time_ci": _interval(w_mean, system, confidence),
        "utility": u_mean,
        "utility_ci": _interval(u_mean, utility, confidence),
        "batch_means": {"system": system, "score": score, "utility": utility},
    }


def simulate(
    scenario,
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
        **kept.fields(confidence),
        utilization=server.utilization(span),
        mean_system_time_model=float(ev.mean_system_time),
        accuracy_model=float(ev.accuracy),
        utility_model=float(ev.objective),
        utilization_model=float(ev.utilization),
        elapsed=elapsed,
    )


def _check_simulate(
    sc, tokens: Any, queries: int, warmup: int | None, batches: int, confidence, chunk_size
) -> tuple[np.ndarray, int, int, int]:
    """:func:`simulate`'s arguments checked: tokens, queries, warm-up, batches."""
    if getattr(sc, "server", None) is not None:
        raise ScenarioError(
            "simulate: this simulator serves one query at a time (FIFO) and the scenario has "
            'a batching server ([server] model = "batching"); use '
            "cvxalloc.simulate_batching.simulate_batching (the CLI does)"
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


@contextmanager
def _progress(show: bool | None, total: int, chunk_size: int) -> Iterator[Any]:
    """A tqdm bar on stderr, or None; by default shown on a terminal for more than one chunk."""
    if show is None:
        show = total > chunk_size and bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not show:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(
        total=total, unit="query", unit_scale=True, desc="simulate", file=sys.stderr, leave=False
    )
    try:
        yield bar
    finally:
        bar.close()


def _poisson_chunks(
    rng: np.random.Generator,
    sc,
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


# --------------------------------------------------------------------------
# trace replay
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


def _replay_types(scenario, types: Any) -> np.ndarray:
    """Task indices of the log's types (task names, or integer indices)."""
    arr = np.asarray(types)
    if arr.dtype.kind in "iu":
        idx = arr.astype(np.intp)
        bad = (idx < 0) | (idx >= scenario.n)
        if bad.any():
            raise ScenarioError(
                f"types: index {idx[np.flatnonzero(bad)[0]]} is not a task (0..{scenario.n - 1})"
            )
        return idx
    names, inverse = np.unique(arr.astype(str), return_inverse=True)
    lookup = {name: i for i, name in enumerate(scenario.names)}
    unknown = [str(x) for x in names if str(x) not in lookup]
    if unknown:
        raise ScenarioError(
            f"the log's type {unknown[0]!r} is not a task of the scenario (tasks: "
            f"{', '.join(scenario.names)}); rename it in the log or drop --type-column"
        )
    return np.array([lookup[str(x)] for x in names], dtype=np.intp)[inverse.ravel()]


def simulate_replay(
    scenario,
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
        Arrival times in seconds (any origin; sorted stably if they are not).
        A :class:`~cvxalloc.requestlog.RequestLog` also gives ``source``, and
        its ``types`` when it has a type column.
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
    t, times, type_idx, where, log_tokens = _replay_input(sc, tokens, arrival_times, types, source)
    n = times.size
    replications, batches, warmup = _check_replay(
        n, service, replications, batches, warmup, confidence, chunk_size
    )

    # what is simulated: the scenario's mix, or the log's types, at the replay's time scale
    server = _FifoServer.of(sc, t, deterministic=service == "deterministic")
    mix = sc.probability if type_idx is None else np.bincount(type_idx, minlength=sc.n) / n
    mix = np.asarray(mix, dtype=float)
    m1, m2 = server.moments(mix)
    gaps, clock = _replay_clock(times, m1, target_utilization)
    lam = clock["rate"]
    w_model, u_model = _replay_model(sc, t, service, mix, type_idx is not None, lam)

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
        span=float(times[-1] - times[0]) * clock["rescale"],
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
        **kept.fields(confidence),
        utilization=utilization,
        mean_system_time_model=w_model,
        accuracy_model=float((mix * server.weight) @ server.accuracy),
        utility_model=float(u_model),
        utilization_model=lam * m1,
        elapsed=elapsed,
        replications=replications,
        service=service,
        arrivals={
            "source": where,
            "requests": n,
            **clock,
            "types": "drawn" if type_idx is None else "log",
            **({} if log_tokens is None else {"tokens": log_tokens}),
        },
        predictions=_replay_predictions(sc, w_model, clock, m1, m2),
    )


def _replay_input(sc, tokens: Any, arrival_times: Any, types: Any, source: str | None):
    """Checked tokens, sorted arrival times, their task indices (None: drawn), the log's
    name and tokens summary."""
    if getattr(sc, "server", None) is not None:
        raise ScenarioError(
            "the replay simulates one FIFO server serving one query at a time; this scenario's "
            "[server] model (continuous batching) is not simulated: remove [server] to replay "
            "against the single-server model"
        )
    t = _check_tokens(sc, tokens)
    times, types, source, log_tokens = _unpack_log(arrival_times, types, source)
    where = source or "arrival_times"
    times, type_idx = _sorted_arrivals(sc, times, types, where)
    return t, times, type_idx, where, log_tokens


def _unpack_log(
    arrival_times: Any, types: Any, source: str | None
) -> tuple[np.ndarray, Any, str | None, dict[str, Any] | None]:
    """Times, types, name and tokens summary of a RequestLog (or of plain times)."""
    log_types = log_tokens = None
    if hasattr(arrival_times, "times"):  # a RequestLog
        source = arrival_times.source if source is None else source
        log_types = getattr(arrival_times, "types", None)
        if getattr(arrival_times, "tokens", None) is not None:
            x = np.asarray(arrival_times.tokens, dtype=float)
            mean_x = float(x.mean())
            log_tokens = {
                "column": arrival_times.tokens_column,
                "mean": mean_x,
                "scv": float(x.var() / mean_x**2) if mean_x > 0 else None,
            }
        arrival_times = arrival_times.times
    times = np.asarray(arrival_times, dtype=float).ravel()
    return times, log_types if types is None else types, source, log_tokens


def _sorted_arrivals(sc, times: np.ndarray, types: Any, where: str):
    """Finite arrival times in order, with their task indices (None: to be drawn)."""
    n = times.size
    if n < 2:
        raise ScenarioError(f"{where}: a replay needs at least two arrivals (got {n})")
    if not np.all(np.isfinite(times)):
        raise ScenarioError(f"{where}: arrival times must be finite numbers")
    type_idx = None if types is None else _replay_types(sc, types)
    if type_idx is not None and type_idx.shape != (n,):
        raise ScenarioError(f"types: one per arrival ({n}), got {type_idx.size}")
    if np.any(times[1:] < times[:-1]):
        order = np.argsort(times, kind="stable")
        times = times[order]
        type_idx = None if type_idx is None else type_idx[order]
    if not float(times[-1] - times[0]) > 0:
        raise ScenarioError(f"{where}: all arrivals at one instant; no rate to replay")
    return times, type_idx


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


def _replay_clock(
    times: np.ndarray, m1: float, target_utilization: float | None
) -> tuple[np.ndarray, dict[str, float]]:
    """Gaps of the replayed times and their ``rate``, ``arrival_scv``, ``rescale``, ``log_rate``.

    The times are multiplied by ``rescale``: 1, or what brings ``rate x m1`` to
    the target utilization.
    """
    n = times.size
    span = float(times[-1] - times[0])
    rate_log = (n - 1) / span
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
    gaps = np.diff(times, prepend=times[0])
    gaps *= factor
    mean_gap = span * factor / (n - 1)
    return gaps, {
        "rate": rate_log / factor,
        "arrival_scv": float(np.var(gaps[1:]) / mean_gap**2),
        "rescale": factor,
        "log_rate": rate_log,
    }


def _replay_model(
    sc, t: np.ndarray, service: str, mix: np.ndarray, log_types: bool, lam: float
) -> tuple[float, float]:
    """Mean system time and utility the scenario's queue model predicts at the replay's rate.

    With the log's types, over the types present in their measured mix;
    ``(inf, -inf)`` where the model has no steady state.
    """
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
        ev = evaluate(model_sc.with_(**kw), model_t)
    except ScenarioError:  # e.g. unstable even at the minimum budgets at this rate
        return math.inf, -math.inf
    return float(ev.mean_system_time), float(ev.objective)


def _replay_predictions(
    sc, w_model: float, clock: dict[str, float], m1: float, m2: float
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
