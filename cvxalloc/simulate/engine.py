"""The simulation engine shared by every FIFO run: draws, waits, statistics.

Layer: workflows (:mod:`cvxalloc.simulate`).

Waiting times follow the Lindley recursion ``W_n = max(0, W_{n-1} + S_{n-1} -
A_n)`` (``A_n`` the inter-arrival time). With the increments ``X_n = S_{n-1} -
A_n``, their running sum ``C_n`` and an initial wait ``w0``, its solution is

    W_n = C_n - min(-w0, min_{j <= n} C_j),

one cumulative sum and one running minimum, computed chunk by chunk (the last
wait and service carry over), so there is no Python loop per query.

A service time has mean ``s_i = a_i + b_i t_i`` and second moment ``(1 + k_i)
s_i^2 + v_i`` (a gamma distribution with those two moments, a constant when
``k_i = v_i = 0``); task types are drawn by :class:`TypeSampler`. The mean
system time and the realized utility get a confidence interval from batch
means after a warm-up (a FIFO queue's system times are correlated, so the
plain standard error would be too small); the realized accuracy gets the
interval of independent draws (correctness is independent across queries).
The Poisson runs (:mod:`cvxalloc.simulate.poisson`) and the replays of a log
(:mod:`cvxalloc.simulate.replay`) are built from these parts.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import special
from ..errors import ScenarioError
from ..queue.tail import system_time_quantiles

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = [
    "service_distribution",
    "sample_service",
    "lindley_waits",
    "TypeSampler",
    "batch_means_interval",
    "percentile_intervals",
    "model_percentiles",
    "PERCENTILES",
    "DEFAULT_CHUNK",
]

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
# the server and the statistics, shared by the Poisson runs and the replays
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


#: The percentiles of the system time every simulator reports, with their intervals.
PERCENTILES = (50, 90, 95, 99)


def percentile_intervals(
    values: np.ndarray, sections: int, confidence: float = 0.99, levels=PERCENTILES
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Percentiles of a correlated sequence and their intervals, by sectioning.

    ``values`` is one run cut into ``sections`` consecutive sections of equal
    length (the remainder at the end left out of the sections), or a 2-D array
    of independent replications (one section each). The estimate is the
    percentile of all the values; its interval is Student-t with
    ``sections - 1`` degrees of freedom on the sections' percentiles, centred on
    the estimate (sectioning, Asmussen and Glynn, *Stochastic Simulation*
    IV.5: the sections' own small-sample bias does not move the centre).

    Returns
    -------
    points : dict
        ``{"p50": ..., "p90": ..., ...}``.
    intervals : dict
        ``{"p50": (low, high), ...}`` at ``confidence``.
    """
    values = np.asarray(values)
    qs = np.asarray(levels, dtype=float)
    if values.ndim == 2:
        parts = values
        flat = values.ravel()
    else:
        size = values.size // max(sections, 1)
        parts = values[: size * sections].reshape(sections, size) if size else values[None, :]
        flat = values
    point = np.percentile(flat, qs)
    by_part = np.percentile(parts, qs, axis=1)  # (levels, sections)
    points, intervals = {}, {}
    for q, est, row in zip(levels, point, by_part):
        key = f"p{q:g}"
        points[key] = float(est)
        lo, hi = _interval(float(est), row.astype(float), confidence)
        # values stored in single precision (the simulators' records) are rounded:
        # widen by that rounding (matters at an atom, where every section agrees)
        pad = float(np.spacing(np.abs(est).astype(flat.dtype))) if flat.dtype.itemsize < 8 else 0.0
        intervals[key] = (lo - pad, hi + pad)
    return points, intervals


def model_percentiles(scenario: Scenario, tokens, levels=PERCENTILES) -> dict[str, float | None]:
    """``{"p50": ..., ...}`` predicted by the scenario's queue model (None where unstable)."""
    pred = system_time_quantiles(scenario, tokens, [q / 100 for q in levels])
    return {f"p{q:g}": v for q, v in zip(levels, pred.as_dict().values())}


def _interval(mean: float, values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (batch means or draws).

    The spread is taken in units of the largest ``|value|``, so values up to the
    largest doubles (weights of 1e300) do not overflow when squared.
    """
    n = values.size
    if n < 2:
        return (-math.inf, math.inf)
    unit = float(np.max(np.abs(values))) or 1.0
    if not math.isfinite(unit):
        return (-math.inf, math.inf)
    sd = float(np.std(values / unit, ddof=1)) * unit
    half = special.stdtrit(n - 1, 0.5 + confidence / 2) * sd / math.sqrt(n)
    return (mean - half, mean + half)


def _check_tokens(scenario: Scenario, tokens: Any) -> np.ndarray:
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
    def of(cls, scenario: Scenario, tokens: np.ndarray, deterministic: bool = False) -> _FifoServer:
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


def figure(x: float) -> str:
    """A realized accuracy or utility: 5 decimals, or 6 significant digits when huge."""
    return f"{x:.5f}" if not math.isfinite(x) or abs(x) < 1e6 else f"{x:.6g}"


def percentile_lines(result: Any, level: str) -> list[str]:
    """One report line per percentile of a simulation result: simulated, interval, model."""
    out = []
    for key, value in result.percentiles.items():
        ci = result.percentiles_ci.get(key)
        tail = f"   {level} CI [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""
        model = result.percentiles_model.get(key)
        tail += "   model not modelled" if model is None else f"   model {model:.4g} s"
        out.append(f"system time {key:<6} {value:.4g} s{tail}")
    return out


def figure_lines(result: Any, level: str, wait: str = "") -> list[str]:
    """The report lines every single-server simulator shares, after the mean system time:
    percentiles, mean wait (``wait`` says which), utilization, accuracy, utility, speed."""
    alo, ahi = result.accuracy_ci
    ulo, uhi = result.utility_ci
    return [
        *percentile_lines(result, level),
        f"mean waiting time  {result.mean_waiting_time:.4f} s{wait}",
        f"utilization        {result.utilization:.4f}   model {result.utilization_model:.4f}",
        f"weighted accuracy  {figure(result.accuracy)}   {level} CI [{figure(alo)}, "
        f"{figure(ahi)}]   model {figure(result.accuracy_model)}",
        f"utility            {figure(result.utility)}   {level} CI [{figure(ulo)}, "
        f"{figure(uhi)}]   model {figure(result.utility_model)}",
        f"{result.elapsed:.2f} s wall ({result.queries_per_second:,.0f} queries/s)",
    ]


class MeanAgainstModel:
    """What every simulation result says of the model's mean system time beside its own:
    its relative error and whether it lies inside the simulated interval (a mixin of the
    result classes, which hold ``mean_system_time``, ``mean_system_time_ci`` and
    ``mean_system_time_model``)."""

    mean_system_time: float
    mean_system_time_ci: tuple[float, float]
    mean_system_time_model: float

    @property
    def relative_error(self) -> float:
        """``(model - simulated) / simulated`` of the mean system time."""
        return (self.mean_system_time_model - self.mean_system_time) / self.mean_system_time

    def model_within_ci(self) -> bool:
        """Whether the model's ``W`` lies inside the simulated interval."""
        low, high = self.mean_system_time_ci
        return bool(low <= self.mean_system_time_model <= high)


def run_fields(result: Any) -> dict[str, Any]:
    """The JSON keys every single-server simulator shares that say what was run."""
    return {
        "tokens": {n: float(x) for n, x in zip(result.names, result.tokens)},
        "queries": result.queries,
        "warmup": result.warmup,
        "batches": result.batches,
        "seed": result.seed,
        "confidence": result.confidence,
    }


def figure_fields(result: Any) -> dict[str, Any]:
    """The JSON keys every single-server simulator shares for what it measured (the
    figures of :func:`figure_lines`, each beside its interval and the model's value)."""
    return {
        "mean_system_time": result.mean_system_time,
        "mean_system_time_ci": list(result.mean_system_time_ci),
        "mean_system_time_model": result.mean_system_time_model,
        "model_within_ci": result.model_within_ci(),
        "mean_waiting_time": result.mean_waiting_time,
        "system_time_percentiles": dict(result.percentiles),
        "system_time_percentiles_ci": {k: list(v) for k, v in result.percentiles_ci.items()},
        "system_time_percentiles_model": dict(result.percentiles_model),
        "accuracy": result.accuracy,
        "accuracy_ci": list(result.accuracy_ci),
        "accuracy_model": result.accuracy_model,
        "utility": result.utility,
        "utility_ci": list(result.utility_ci),
        "utility_model": result.utility_model,
        "utilization": result.utilization,
        "utilization_model": result.utilization_model,
        "elapsed_seconds": result.elapsed,
        "queries_per_second": result.queries_per_second,
    }


class _Kept:
    """What the statistics keep of the queries ``warmup .. end - 1`` of each replication.

    System times go to ``records`` (float32, one block per replication, for the
    percentiles); waits, scores and squared scores are summed over the run,
    system times and scores also per replication (``rep_system``,
    ``rep_score``); with ``scores``, one replication's scores are recorded too.
    The run's score sums are kept in units of ``unit``, a power of two at least
    the largest score seen, so that squares of weights up to 1e308 do not overflow.
    """

    def __init__(self, warmup: int, end: int, replications: int = 1, scores: bool = False):
        self.warmup, self.end = warmup, end
        self.records = np.empty(replications * (end - warmup), dtype=np.float32)
        self.scores = np.empty(end - warmup) if scores else None
        self.wait = self.score = self.score_sq = 0.0
        self.unit = 1.0
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
        self.rep_score += float(kept.sum())
        top = float(np.max(np.abs(kept)))
        if top > self.unit:  # rescale the sums to a unit at least the largest score
            unit = 2.0 ** math.ceil(math.log2(top))
            ratio = self.unit / unit
            self.score, self.score_sq, self.unit = (
                self.score * ratio,
                self.score_sq * ratio**2,
                unit,
            )
        scaled = kept / self.unit
        self.score += float(scaled.sum())
        self.score_sq += float(scaled @ scaled)
        if self.scores is not None:
            self.scores[at : at + b - a] = kept

    def fields(self, confidence: float, sections: int = 30) -> dict[str, Any]:
        """Result fields of the kept queries: mean wait, system-time percentiles, accuracy.

        The percentiles' intervals are by sectioning (:func:`percentile_intervals`):
        over the replications when there are two or more, else over ``sections``
        consecutive sections of the one run. The accuracy's interval is that of
        independent draws (correctness is independent across queries).
        """
        total = self.records.size
        mean_u = self.score / total  # in units of self.unit
        var_u = max(self.score_sq / total - mean_u**2, 0.0) * total / max(total - 1, 1)
        z = special.stdtrit(max(total - 1, 1), 0.5 + confidence / 2)
        a_mean = mean_u * self.unit
        a_half = z * math.sqrt(var_u / total) * self.unit
        reps = self.records.size // (self.end - self.warmup)
        runs = self.records.reshape(reps, -1) if reps >= 2 else self.records
        points, intervals = percentile_intervals(runs, sections, confidence)
        return {
            "mean_waiting_time": self.wait / total,
            "percentiles": points,
            "percentiles_ci": intervals,
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
