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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from .errors import ScenarioError, UnstableError
from .objective import Objective

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

    def summary(self) -> str:
        """A short plain-text report."""
        lo, hi = self.mean_system_time_ci
        alo, ahi = self.accuracy_ci
        ulo, uhi = self.utility_ci
        pct = self.percentiles
        level = f"{100 * self.confidence:g}%"
        return "\n".join(
            [
                f"simulated {self.queries:,} queries (warm-up {self.warmup:,}, "
                f"{self.batches} batches, seed {self.seed})",
                f"mean system time   {self.mean_system_time:.4f} s   {level} CI "
                f"[{lo:.4f}, {hi:.4f}]   model (PK) {self.mean_system_time_model:.4f} s",
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
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * float(np.std(values, ddof=1)) / math.sqrt(n)
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
    t = _check_tokens(sc, tokens)
    queries, batches = int(queries), int(batches)
    warmup = queries // 10 if warmup is None else int(warmup)
    if sc.arrival_rate <= 0:
        raise ScenarioError("queue: arrival_rate must be > 0 to simulate (no queries arrive)")
    if not 0 < confidence < 1:
        raise ScenarioError(f"confidence must be in (0, 1) (got {confidence})")
    if batches < 2:
        raise ScenarioError(f"batches must be >= 2 (got {batches})")
    if warmup < 0 or queries - warmup < batches:
        raise ScenarioError(
            f"queries ({queries}) minus warmup ({warmup}) must leave at least one query per "
            f"batch ({batches}); raise queries"
        )
    if chunk_size < 1:
        raise ScenarioError(f"chunk_size must be >= 1 (got {chunk_size})")
    ev = Objective(sc).evaluate(t)
    if ev.utilization >= 1:
        raise UnstableError(
            f"allocation is unstable (utilization {ev.utilization:.4g} >= 1): the queue "
            "grows without bound; lower the budgets or the arrival rate"
        )

    lam = sc.arrival_rate
    mean = sc.service_time(t)
    shape, scale, det = service_distribution(mean, sc.scv, sc.variance)
    acc = np.clip(sc.accuracy.value(t), 0.0, 1.0)
    draw_types = TypeSampler(sc.probability)
    weight = sc.weight

    size = (queries - warmup) // batches
    bm = _Batches(warmup, size, batches)
    kept = np.empty(batches * size, dtype=np.float32)
    rng = np.random.default_rng(seed)

    if progress is None:
        progress = queries > chunk_size and bool(getattr(sys.stderr, "isatty", lambda: False)())
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=queries,
            unit="query",
            unit_scale=True,
            desc="simulate",
            file=sys.stderr,
            leave=False,
        )

    prev_w = prev_s = 0.0  # an empty system at time 0
    busy = span = 0.0
    wait_sum = 0.0
    acc_sum = acc_sq = 0.0
    clock = time.perf_counter()
    try:
        for start in range(0, queries, chunk_size):
            m = min(chunk_size, queries - start)
            gaps = rng.standard_exponential(m)
            gaps /= lam
            types = draw_types(rng, m)
            serv = sample_service(rng, types, mean, shape, scale, det)
            correct = rng.random(m) < acc[types]

            wait = lindley_waits(gaps, serv, prev_w, prev_s)
            prev_w, prev_s = float(wait[-1]), float(serv[-1])
            system = wait + serv

            busy += float(serv.sum())
            span += float(gaps.sum())
            score = weight[types] * correct
            bm.add("system", start, system)
            bm.add("score", start, score)
            lo, hi = max(start, warmup), min(start + m, bm.end)
            if lo < hi:
                kept[lo - warmup : hi - warmup] = system[lo - start : hi - start]
                wait_sum += float(wait[lo - start : hi - start].sum())
                sc_kept = score[lo - start : hi - start]
                acc_sum += float(sc_kept.sum())
                acc_sq += float(sc_kept @ sc_kept)
            if bar is not None:
                bar.update(m)
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - clock

    n_kept = batches * size
    sys_means = bm.means("system")
    score_means = bm.means("score")
    gamma = sc.latency_weight
    util_means = score_means - gamma * sys_means
    w_mean = float(sys_means.mean())
    a_mean = acc_sum / n_kept
    u_mean = float(util_means.mean())
    a_var = max(acc_sq / n_kept - a_mean**2, 0.0) * n_kept / max(n_kept - 1, 1)
    z = stats.t.ppf(0.5 + confidence / 2, max(n_kept - 1, 1))
    a_half = z * math.sqrt(a_var / n_kept)
    p50, p95, p99 = np.percentile(kept, [50, 95, 99])
    busy_end = span + prev_w + prev_s
    return SimulationResult(
        tokens=t,
        names=list(sc.names),
        queries=queries,
        warmup=warmup,
        batches=batches,
        seed=seed,
        confidence=confidence,
        mean_system_time=w_mean,
        mean_system_time_ci=_interval(w_mean, sys_means, confidence),
        mean_waiting_time=wait_sum / n_kept,
        percentiles={"p50": float(p50), "p95": float(p95), "p99": float(p99)},
        accuracy=a_mean,
        accuracy_ci=(a_mean - a_half, a_mean + a_half),
        utility=u_mean,
        utility_ci=_interval(u_mean, util_means, confidence),
        utilization=busy / busy_end if busy_end > 0 else 0.0,
        mean_system_time_model=float(ev.mean_system_time),
        accuracy_model=float(ev.accuracy),
        utility_model=float(ev.objective),
        utilization_model=float(ev.utilization),
        elapsed=elapsed,
        batch_means={"system": sys_means, "score": score_means, "utility": util_means},
    )
