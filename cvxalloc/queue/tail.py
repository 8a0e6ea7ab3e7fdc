"""Percentiles of the system time (wait plus service) that the queue models predict.

:func:`system_time_quantiles` is the one entry point: it takes a scenario and
an allocation and returns a :class:`SystemTimeQuantiles`, each queue model
with its own method:

* one FIFO server, Poisson arrivals (M/G/1): **exact**. The service law is
  the mixture of the types' gamma or constant laws (:class:`.ServiceLaw`), the
  wait has the Pollaczek-Khinchine transform and the distribution of
  ``T = W + S`` is inverted numerically (:mod:`.mg1`, absolute error about
  1e-9 in probability). Above :data:`MAX_COMPONENTS` distinct service laws,
  the law is first compressed (:mod:`.compress`): the result is then labelled
  ``compressed`` with an error estimate (twice the change from a compression
  with half as many components; the error falls about as one over their number),
  and the inversion aims at :data:`COMPRESSED_TOL` (1e-7), far below that error.
* one FIFO server, renewal arrivals (``arrival_scv != 1``): **approximation**:
  a wait with the probability of the GI/M/1 queue with gamma gaps of that scv
  (``rho`` for Poisson arrivals; regular gaps' scv moved toward 1 when the service is
  more variable than exponential). Bursty gaps (``arrival_scv > 1``): the positive
  wait is a geometric sum of the light-traffic ladder heights of gamma gaps, scaled
  toward Kingman's mean in heavy traffic (:mod:`.ladder`, :func:`_ladder_rule`);
  smoother gaps: the M/G/1 wait's shape scaled by Kingman's factor times
  ``sqrt(rho / P(wait))`` (:func:`_bursty_wait`). Both exact for Poisson arrivals
  and chosen on simulation.
* a fleet of batch-1 replicas (:mod:`.fleet`): random routing is one
  replica's queue (exact for Poisson arrivals); round-robin feeds each replica
  every ``k``-th arrival, which the bursty-arrivals approximation takes as gaps
  of scv ``c_a^2 / k`` (Erlang-``k`` for Poisson); shortest-queue:
  **approximation**, a wait with the Erlang-C probability ``C(k, k rho)``, of
  gamma law with the fleet model's mean wait and scv ``1 + max(log cs^2, 0) / 2``
  (:func:`_shortest_queue`; empirical, chosen against simulation).
* a continuous-batching server: **approximation**, ``T ~ S R`` with ``R`` the
  slowdown a query meets at arrival, ``(N + 1) / c(N + 1)`` for ``N`` the
  stationary number in system (its mean is the model's exact mean slowdown
  ``W / m1``; exact for small queries). With ``max_running = K``, a query that
  finds ``K`` or more waits first (:func:`admission_wait`: from the least of ``K``
  residual services at light load, :mod:`.residual`, toward Allen and Cunneen's M/G/c
  wait in heavy traffic; under bursty arrivals the states are the product form's at the
  load :func:`admission_load`, and the wait is shifted toward shorter, more variable
  ones at light load); ``K = 1`` is one FIFO server (the methods above).

Levels are probabilities in ``(0, 1)``; JSON keys are their shortest decimal
spelling (``"0.99"``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._lazy import special
from .._roots import brentq
from ..errors import ScenarioError
from ..protocols import ScenarioLike
from .batching import BatchingQueue
from .compress import compress
from .fifo import FIFOQueue
from .fleet import FleetQueue
from .ladder import LadderWait, ladder_moments
from .latency import queue_model
from .mg1 import MG1
from .quantile import solve_quantiles
from .residual import least_residual
from .service_law import ServiceLaw
from .waiting import MaybeWait

__all__ = [
    "DEFAULT_QUANTILES",
    "MAX_COMPONENTS",
    "SystemTimeQuantiles",
    "check_quantiles",
    "quantile_key",
    "system_time_quantiles",
]

#: The levels reported when the caller does not say.
DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)
#: Above this many distinct service laws the law is compressed to this many.
MAX_COMPONENTS = 1024
#: The inversion's target error (in probability) on a compressed law, whose own error
#: (the compression's, 1e-5 to 1e-3 of the quantiles at 10^4 types) is far larger than
#: the 1e-9 of the exact method.
COMPRESSED_TOL = 1e-7


def quantile_key(p: float) -> str:
    """The JSON key of level ``p``: its shortest decimal spelling (``0.99 -> "0.99"``)."""
    return repr(float(p))


def check_quantiles(levels: Any, where: str = "quantiles") -> tuple[float, ...]:
    """Levels as a sorted tuple of distinct floats in ``(0, 1)``; a clear error otherwise.

    ``levels`` may be a sequence of numbers or a comma-separated string
    (``"0.5,0.99"``); percentages are not accepted (``99`` is an error that
    says to write ``0.99``).
    """
    if isinstance(levels, str):
        parts = [x.strip() for x in levels.split(",") if x.strip()]
        try:
            levels = [float(x) for x in parts]
        except ValueError:
            raise ScenarioError(
                f"{where}: expected numbers separated by commas, e.g. 0.5,0.99 (got {levels!r})"
            ) from None
    try:
        vals = [float(x) for x in levels]
    except (TypeError, ValueError):
        raise ScenarioError(f"{where}: expected a list of numbers in (0, 1)") from None
    if not vals:
        raise ScenarioError(f"{where}: give at least one level, e.g. 0.99")
    for v in vals:
        if not (0.0 < v < 1.0) or not math.isfinite(v):
            hint = f"; write {v / 100:g} for the {v:g}th percentile" if 1 < v < 100 else ""
            raise ScenarioError(f"{where}: levels must be in (0, 1) (got {v:g}){hint}")
    return tuple(sorted(set(vals)))


@dataclass(frozen=True)
class SystemTimeQuantiles:
    """Predicted percentiles of the system time of one allocation.

    Attributes
    ----------
    levels : tuple of float
        The probabilities ``p``.
    seconds : ndarray
        ``q_p``: the smallest ``x`` with ``P(T <= x) >= p`` (``inf`` when unstable).
    method : str
        ``"exact"``, ``"compressed"`` (exact on a compressed service law),
        ``"approximation"``, or ``"n/a"`` (none: ``model`` says why, e.g. a type with
        mean service time 0 but positive variance, which no service law has).
    model : str
        What was computed, in words.
    error : ndarray
        Estimated absolute error in seconds (``nan`` for an approximation,
        whose error is measured against simulation in docs/tail.md).
    details : dict
        ``components`` (of the service law used), ``types``, and the
        method's own figures.
    """

    levels: tuple[float, ...]
    seconds: np.ndarray
    method: str
    model: str
    error: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, p: float) -> float:
        """``q_p`` for a level that was computed."""
        for level, value in zip(self.levels, self.seconds):
            if level == float(p):
                return float(value)
        raise KeyError(f"level {p!r} was not computed (levels: {list(self.levels)})")

    def as_dict(self) -> dict[str, float | None]:
        """``{"0.99": seconds, ...}`` (None where unstable): the JSON ``system_time_quantiles``."""
        return {
            quantile_key(p): (float(v) if math.isfinite(v) else None)
            for p, v in zip(self.levels, self.seconds)
        }

    def to_dict(self) -> dict[str, Any]:
        """How they were computed: ``method``, ``model``, ``error`` (by level), ``details``."""
        return {
            "method": self.method,
            "model": self.model,
            "error": {
                quantile_key(p): (float(e) if math.isfinite(e) else None)
                for p, e in zip(self.levels, self.error)
            },
            **self.details,
        }

    def summary(self) -> str:
        """One line: ``p50 20.1 s, p90 139 s, ... (exact)``."""
        if np.all(np.isnan(self.seconds)):
            return self.model
        parts = [f"p{_percent(p)} {_seconds(v)}" for p, v in zip(self.levels, self.seconds)]
        return ", ".join(parts) + f" ({self.method})"


def _percent(p: float) -> str:
    return f"{100 * p:.10g}"


def _seconds(v: float) -> str:
    return f"{v:.4g} s" if math.isfinite(v) else "unstable"


def system_time_quantiles(
    scenario: ScenarioLike,
    tokens,
    levels: Iterable[float] | None = None,
    *,
    max_components: int = MAX_COMPONENTS,
) -> SystemTimeQuantiles:
    """Percentiles of the system time under an allocation, by the scenario's queue model.

    Parameters
    ----------
    scenario : Scenario
    tokens : array_like
        Tokens per type, task order.
    levels : iterable of float, optional
        Default :data:`DEFAULT_QUANTILES`.
    max_components : int
        Service laws with more distinct components are compressed to this many.

    Returns
    -------
    SystemTimeQuantiles

    Examples
    --------
    >>> import cvxalloc
    >>> sc = cvxalloc.example_scenario()
    >>> q = system_time_quantiles(sc, cvxalloc.solve(sc).tokens)
    >>> q.method, round(q[0.99], 1)
    ('exact', 338.9)
    """
    levels = DEFAULT_QUANTILES if levels is None else check_quantiles(levels)
    probs = np.asarray(levels, dtype=float)
    try:
        law = ServiceLaw.of_scenario(scenario, tokens)
    except ScenarioError as exc:  # a report must not fail a solve: say why there are none
        nan = np.full(probs.size, np.nan)
        return SystemTimeQuantiles(levels, nan, "n/a", f"no percentiles: {exc}", nan)
    queue = queue_model(scenario)
    if scenario.utilization(np.asarray(tokens, dtype=float)) >= 1:
        inf = np.full(probs.size, np.inf)
        nan = np.full(probs.size, np.nan)
        return SystemTimeQuantiles(levels, inf, "exact", "unstable: no steady state", nan)
    if law.size > EXACT_SERVICE_MAX:
        return _very_many(queue, law, levels, max_components)
    return _by_model(queue, law, levels, max_components)


def _by_model(queue, law: ServiceLaw, levels: Sequence[float], max_components: int, service=None):
    """The percentiles by the queue model's own method (``service``: the law of the
    no-wait term, default ``law`` itself; see :class:`.MG1`)."""
    if isinstance(queue, BatchingQueue):
        return _batching(queue, law, levels, max_components, service)
    if isinstance(queue, FIFOQueue):
        return _fifo(queue, law, levels, max_components, service)
    if isinstance(queue, FleetQueue):  # round-robin or shortest-queue over batch-1 replicas
        return _fleet(queue, law, levels, max_components, service)
    nan = np.full(len(levels), np.nan)
    why = f"no percentiles for the queue model {type(queue).__name__} yet"
    return SystemTimeQuantiles(tuple(levels), nan, "n/a", why, nan)


#: Above this many distinct service laws, the law itself is first compressed to this many:
#: every evaluation of a distribution passes over the exact law where no one waits, so at
#: 10^6 types the percentiles cost 8 s (25 solves) against 0.3 s from this compression.
EXACT_SERVICE_MAX = 16384


def _very_many(queue, law: ServiceLaw, levels: Sequence[float], max_components: int):
    """The percentiles on the law compressed to :data:`EXACT_SERVICE_MAX` components; their
    error estimate adds twice their change from half as many (as for the wait's law)."""
    fine = _by_model(queue, law, levels, max_components, compress(law, EXACT_SERVICE_MAX))
    half = _by_model(queue, law, levels, max_components, compress(law, EXACT_SERVICE_MAX // 2))
    with np.errstate(invalid="ignore"):
        moved = 2.0 * np.abs(fine.seconds - half.seconds)
    error = np.where(np.isnan(fine.error), fine.error, np.fmax(fine.error, moved))
    method = "compressed" if fine.method == "exact" else fine.method
    model = (
        f"{fine.model}; the service law first compressed ({law.size} distinct laws -> "
        f"{EXACT_SERVICE_MAX}; error adds twice the change from {EXACT_SERVICE_MAX // 2})"
    )
    details = {**fine.details, "types": law.types, "service_components": EXACT_SERVICE_MAX}
    return SystemTimeQuantiles(fine.levels, fine.seconds, method, model, error, details)


# --- one FIFO server -------------------------------------------------------------
#: The searches start from the quantiles of a law compressed to this many components.
GUESS_COMPONENTS = 64


def _fifo(queue: FIFOQueue, law: ServiceLaw, levels: Sequence[float], max_components: int,
          service: ServiceLaw | None = None):  # fmt: skip
    """M/G/1 (exact, or exact on a compressed law); renewal arrivals: the ladder-height
    wait for bursty gaps, the scaled M/G/1 wait for smoother ones."""
    service = law if service is None else service
    lam = queue.arrival_rate
    probs = np.asarray(levels, dtype=float)
    kappa, sigma = 1.0, None
    if queue.arrival_scv > 1.0:
        rule = _ladder_rule(lam, law, queue.arrival_scv)
        if rule is not None:
            return _ladder_fifo(queue, law, levels, max_components, service, rule)
    if not queue.poisson:
        kappa, sigma = _bursty_wait(lam, law, queue.arrival_scv)
    used = compress(law, max_components)
    guess = None
    if used.size > GUESS_COMPONENTS:  # a cheap first answer, refined by a few exact steps
        guess = _mg1_quantiles(compress(law, GUESS_COMPONENTS), lam, probs, kappa, sigma=sigma)[0]
    tol = 1e-9 if used.exact else COMPRESSED_TOL
    q, err, dist = _mg1_quantiles(used, lam, probs, kappa, service, guess, sigma, tol)
    details: dict[str, Any] = {"components": used.size, "types": law.types}
    if queue.poisson and used.exact:
        model = "M/G/1 FIFO: Pollaczek-Khinchine transform, Euler inversion"
        method = "exact"
        details["euler_terms"] = dist.terms
    elif queue.poisson:
        coarse = compress(law, max(max_components // 2, 4))
        err = np.maximum(err, 2.0 * _moved(dist, MG1(coarse, lam, service=service), q))
        model = (
            f"M/G/1 FIFO on a compressed service law ({law.size} distinct laws -> "
            f"{used.size} components; error: twice the change from {coarse.size} components)"
        )
        method = "compressed"
    else:
        model = (
            "GI/G/1 FIFO approximation: the probability of a wait of the GI/M/1 queue with "
            "gamma gaps, the M/G/1 wait's shape scaled by Kingman's factor x sqrt(rho/P(wait)) "
            f"(arrival_scv {queue.arrival_scv:g}, P(wait) {dist.p_wait:.4g}, scale {kappa:.4g})"
        )
        method = "approximation"
        details.update(kappa=kappa, wait_probability=sigma)
        err = np.full(probs.size, np.nan)
    return SystemTimeQuantiles(tuple(levels), q, method, model, err, details)


def _moved(dist: MG1, other: MG1, q: np.ndarray) -> np.ndarray:
    """How far the quantiles ``q`` of ``dist`` move under ``other``: ``|dF(q)| / f(q)``."""
    c1, f1, _ = dist.evaluate(q)
    c2 = other.evaluate(q)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.abs(c2 - c1) / f1
    return np.where(np.isfinite(out), out, 0.0)


def _mg1_quantiles(
    law: ServiceLaw,
    lam: float,
    probs: np.ndarray,
    kappa: float = 1.0,
    service: ServiceLaw | None = None,
    guess: np.ndarray | None = None,
    sigma: float | None = None,
    tol: float = 1e-9,
):
    """Quantiles of ``kappa W + S`` for the M/G/1 wait ``W``; also their error and the distribution.

    ``service``: the exact law when ``law`` is its compression (see :class:`.MG1`);
    ``guess``: where the search starts (default: the gamma law with the mean and
    variance of ``T``).
    """
    dist = MG1(law, lam, wait_scale=kappa, service=service, wait_probability=sigma, tol=tol)
    if guess is None:
        guess = _gamma_guess(dist.mean, dist.variance, probs)
    q, err, _ = solve_quantiles(dist.evaluate, probs, guess, dist.atom_points(), dist.jump)
    return q, err, dist


def _ladder_rule(lam: float, law: ServiceLaw, ca2: float) -> tuple[float, float] | None:
    """``(sigma, c)`` of the ladder-height wait for gaps of scv ``ca2 > 1`` (:mod:`.ladder`).

    ``sigma`` is the GI/M/1 probability of a wait (:func:`gi_m1_wait_probability`);
    ``c`` scales the ladder heights, ``c_K^rho`` with ``c_K = m1 (ca2 + cs2) / ((1 + ca2)
    E[H_alpha])`` the scale whose mean wait in heavy traffic is Kingman's (1 for a
    single gamma law and for exponential or Poisson cases): the light-traffic ladder law
    at light load, Kingman's mean in heavy traffic. Chosen on simulation among six rules
    (``python -m validation.tail_search --part fifo``, docs/tail.md). None: no work or
    no arrivals (the caller's M/G/1 path).
    """
    parts = ladder_parts(lam, law, ca2)
    if parts is None:
        return None
    rho, sigma0, c_k = parts
    return sigma0, c_k**rho


def ladder_parts(lam: float, law: ServiceLaw, ca2: float) -> tuple[float, float, float] | None:
    """``(rho, sigma_0, c_K)`` of :func:`_ladder_rule` (None without arrivals or work)."""
    m1 = law.moment(1)
    rho = lam * m1
    if not (m1 > 0 and rho > 0):
        return None
    cs2 = law.moment(2) / (m1 * m1) - 1.0
    sigma0 = gi_m1_wait_probability(rho, ca2)
    c_k = m1 * (ca2 + cs2) / ((1.0 + ca2) * ladder_moments(law, 1.0 / ca2)[0])
    return rho, sigma0, c_k


def _ladder_fifo(queue, law, levels, max_components, service, rule):
    """The bursty FIFO percentiles by the ladder-height wait (:mod:`.ladder`)."""
    sigma, c = rule
    alpha = 1.0 / queue.arrival_scv
    used = compress(law, max_components)
    probs = np.asarray(levels, dtype=float)

    def quantiles(dist: LadderWait, guess=None) -> np.ndarray:
        if guess is None:
            guess = _gamma_guess(dist.mean, dist.variance, probs)
        return solve_quantiles(dist.evaluate, probs, guess, dist.atom_points(), dist.jump)[0]

    guess = None
    if used.size > GUESS_COMPONENTS:  # a cheap first answer, refined by a few exact steps
        guess = quantiles(LadderWait(compress(law, GUESS_COMPONENTS), sigma, alpha, c))
    q = quantiles(LadderWait(used, sigma, alpha, c, service=service), guess)
    model = (
        "GI/G/1 FIFO approximation: a wait with probability P(wait), then a geometric sum "
        "of the light-traffic ladder heights of gamma gaps, scaled "
        f"(arrival_scv {queue.arrival_scv:g}, P(wait) {sigma:.4g}, scale {c:.4g})"
    )
    details = {"components": used.size, "types": law.types, "wait_probability": sigma,
               "ladder_scale": c}  # fmt: skip
    return SystemTimeQuantiles(tuple(levels), q, "approximation", model, q * np.nan, details)


def _bursty_wait(lam: float, law: ServiceLaw, ca2: float) -> tuple[float, float | None]:
    """``(kappa, sigma)`` of the bursty-arrivals approximation ``T ~ S + [wait] kappa W+``.

    ``sigma``, the probability of a wait, is the GI/M/1 queue's with gamma
    inter-arrival gaps of scv ``ca2`` and the same mean service: the root in
    ``(0, 1)`` of ``sigma = A((1 - sigma) / m1)``, ``A(s) = (1 + s ca2 / lam)^(-1/ca2)``
    the gaps' transform (``rho`` for Poisson arrivals, whatever the service). Gaps
    more regular than Poisson (``ca2 < 1``) take the scv ``1 + (ca2 - 1)
    sqrt(min(1, 2 / (1 + cs2)))`` there (:func:`_smooth_gaps`). The
    positive wait ``W+`` has the M/G/1 shape, scaled by
    ``kappa = kappa_K sqrt(rho / sigma)``, ``kappa_K = (ca2 + cs2) / (1 + cs2)``
    (Kingman's factor): the geometric mean of Kingman's factor alone and of the
    scale that makes the mean wait Kingman's (``kappa_K rho / sigma``). Both limits
    agree for Poisson arrivals (exact) and in heavy traffic; of five such rules
    this one matched simulation best (docs/tail.md: chosen on the example, an
    empirical interpolation). Used for gaps smoother than Poisson (``ca2 < 1``);
    bursty gaps take the ladder-height wait (:func:`_ladder_rule`), which put the
    light-load median of a mix of very different services right where this shape
    had it 31% high.
    """
    m1, m2 = law.moment(1), law.moment(2)
    rho = lam * m1
    if not (m1 > 0 and rho > 0):
        return 1.0, None
    cs2 = m2 / (m1 * m1) - 1.0
    kappa_k = (ca2 + cs2) / (1.0 + cs2)
    if kappa_k <= 0:
        return 0.0, None
    sigma = gi_m1_wait_probability(rho, _smooth_gaps(ca2, cs2))
    return kappa_k * math.sqrt(rho / sigma), sigma


def _smooth_gaps(ca2: float, cs2: float) -> float:
    """The gap scv whose GI/M/1 probability of a wait the bursty rule takes: ``ca2``,
    moved toward 1 when the gaps are more regular than Poisson and the service more
    variable than exponential, ``1 + (ca2 - 1) sqrt(min(1, 2 / (1 + cs2)))``.

    Regular gaps keep a queue empty only when services are regular too: with service
    scv 4-8, gaps of scv 0.25 and utilization 0.3-0.7 the GI/M/1 probability put p50
    up to 21% low on the example's mixes (33% on a random mix). Chosen on simulation
    (``python -m validation.tail_search --part fifo``, docs/tail.md); for bursty gaps
    the same move made the example's mixes worse, so they keep ``ca2``.
    """
    if ca2 >= 1.0 or cs2 <= 1.0:
        return ca2
    return 1.0 + (ca2 - 1.0) * math.sqrt(2.0 / (1.0 + cs2))


def gi_m1_wait_probability(load: float, ca2: float) -> float:
    """The probability of a wait in the GI/M/1 queue with gamma gaps of scv ``ca2``.

    The root in ``(0, 1)`` of ``sigma = A((1 - sigma) mu)``, ``A(s) = (1 + s ca2 /
    lam)^(-1/ca2)`` the gaps' transform (``exp(-s / lam)`` for ``ca2 = 0``), at
    ``load = lam / mu < 1``; ``load`` itself for Poisson arrivals.

    >>> round(gi_m1_wait_probability(0.5, 1.0), 12)
    0.5
    """
    if load <= 0:
        return 0.0
    if ca2 == 1.0:
        return float(load)

    def g(sig: float) -> float:
        s = (1.0 - sig) / load  # the transform's argument over the arrival rate
        return (math.exp(-s) if ca2 <= 0 else (1.0 + s * ca2) ** (-1.0 / ca2)) - sig

    top = 1.0 - 1e-12
    if g(top) >= 0:  # no root below 1 to rounding: (nearly) every query waits
        sigma = top
    else:
        sigma = brentq(g, 0.0, top, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200)
    return min(max(sigma, 1e-12), 1.0)


def _gamma_guess(mean: float, variance: float, probs: np.ndarray) -> np.ndarray:
    """Quantiles of the gamma law with this mean and variance: where the search starts."""
    if not (mean > 0 and variance > 0 and math.isfinite(variance)):
        return np.full(probs.size, max(mean, 1e-12))
    shape = mean * mean / variance
    return np.maximum(special.gammaincinv(shape, probs) * variance / mean, 1e-12 * mean)


# --- fleets of batch-1 replicas ----------------------------------------------------
def _fleet(queue: FleetQueue, law: ServiceLaw, levels, max_components: int, service=None):
    """Round-robin: the replica's bursty approximation; shortest-queue: :func:`_shortest_queue`."""
    k = queue.replicas
    if queue.router == "round-robin":
        one = _fifo(queue.base, law, levels, max_components, service)
        model = (
            f"round-robin over {k} replicas: each replica a GI/G/1 queue fed every {k}-th "
            f"arrival; {one.model}"
        )
        return SystemTimeQuantiles(
            one.levels, one.seconds, "approximation", model, one.error, one.details
        )
    return _shortest_queue(queue, law, levels, max_components, service)


def erlang_c(servers: int, load: float) -> float:
    """The Erlang-C probability of a wait in the M/M/k queue, ``k = servers``, ``a = load < k``.

    ``B / (1 - (a / k)(1 - B))`` with the Erlang-B ``B = P(N = k) / P(N <= k)`` for
    ``N`` Poisson of mean ``a`` (in logarithms: any ``k``).

    >>> round(erlang_c(2, 1.0), 6)
    0.333333
    """
    k, a = int(servers), float(load)
    if a <= 0:
        return 0.0
    b = math.exp(k * math.log(a) - a - math.lgamma(k + 1.0)) / special.pdtr(k, a)
    return float(min(b / (1.0 - (a / k) * (1.0 - b)), 1.0))


def _shortest_queue(queue: FleetQueue, law: ServiceLaw, levels, max_components: int, service=None):
    """Join-the-shortest-queue over ``k`` batch-1 replicas: ``T ~ S + [wait] G``.

    A query waits when every replica is busy, with probability taken as the
    M/M/k queue's Erlang C, ``sigma = C(k, k rho)``; its wait ``G`` is gamma with
    mean ``(W_fleet - m1) / sigma`` (``W_fleet``: the fleet model's mean system
    time) and scv ``1 + max(log cs^2, 0) / 2`` (``cs^2``: the service law's scv;
    exponential for service scv up to 1). Chosen against simulation of five
    mixes (service scv 1 to 11, 2 to 8 replicas, utilization 0.3-0.9: the
    measured scv of a positive wait was 0.8-3.3, and fell toward 1 with load);
    an empirical rule, its accuracy in docs/tail.md.
    """
    k = queue.replicas
    m1, m2 = law.moment(1), law.moment(2)
    rho = queue.arrival_rate * m1 / queue.capacity
    sigma = erlang_c(k, k * rho)
    wait = max(float(queue.value(m1, m2)) - m1, 0.0)
    cs2 = m2 / (m1 * m1) - 1.0 if m1 > 0 else 0.0
    scv = 1.0 + 0.5 * max(math.log(cs2), 0.0) if cs2 > 0 else 1.0
    used = compress(law, max_components)
    service = law if service is None else service
    dist = _GammaWait(used, sigma, wait / sigma if sigma > 0 else 0.0, scv, service=service)
    probs = np.asarray(levels, dtype=float)
    q, _, _ = solve_quantiles(
        dist.evaluate,
        probs,
        _gamma_guess(dist.mean, dist.variance, probs),
        dist.atom_points(),
        dist.jump,
    )
    model = (
        f"shortest-queue over {k} replicas (approximation): a wait with the Erlang-C "
        f"probability {sigma:.4g}, gamma with the fleet model's mean wait and scv {scv:.3g}"
    )
    details = {
        "components": used.size,
        "types": law.types,
        "wait_probability": sigma,
        "wait_scv": scv,
    }
    return SystemTimeQuantiles(tuple(levels), q, "approximation", model, q * np.nan, details)


class _GammaWait(MaybeWait):
    """``T = S + G`` with probability ``sigma`` (else ``S``): ``G`` gamma, mean ``g``, scv ``c``.

    ``service`` is the exact law of the no-wait term, ``law`` (perhaps its
    compression) enters the convolution with ``G``, inverted numerically.
    """

    def __init__(self, law: ServiceLaw, sigma: float, g: float, c: float, service=None,
                 tol: float | None = None):  # fmt: skip
        self.law, self.service = law, law if service is None else service
        if tol is not None:
            self.tol = tol
        self.sigma = float(sigma) if g > 0 else 0.0
        self.wait = ServiceLaw(np.ones(1), np.array([g]), np.array([c * g * g]))
        m1 = self.service.moment(1)
        self.mean = m1 + self.sigma * g
        var_s = self.service.moment(2) - m1 * m1
        self.variance = var_s + self.sigma * g * g * (1.0 + c) - (self.sigma * g) ** 2

    def _transform(self, z: np.ndarray) -> np.ndarray:
        s, s1 = self.law.transform(z)
        w, w1 = self.wait.transform(z)
        return np.stack([(s1 + s * w1) / z, s * w])  # P(S + G > x) and its density


# --- continuous batching ---------------------------------------------------------
def _batching(queue: BatchingQueue, law: ServiceLaw, levels, max_components: int, service=None):
    """``T ~ S R``: the service law scaled by the slowdown met at arrival; with an
    admission limit ``K``, a query that finds ``K`` or more waits (a gamma time) first.
    ``K = 1`` is one FIFO server of speed ``c(1)``: the M/G/1 (exact) or bursty method."""
    service = law if service is None else service
    if queue.max_running == 1:
        one = float(queue.curve.rate(np.array([1]))[0])
        fifo = FIFOQueue(queue.arrival_rate, queue.arrival_scv)
        scaled = _scaled(service, 1.0 / one)
        res = _fifo(fifo, _scaled(law, 1.0 / one), levels, max_components, scaled)
        model = f"continuous batching with max_running = 1: one FIFO server; {res.model}"
        return SystemTimeQuantiles(
            res.levels, res.seconds, res.method, model, res.error, res.details
        )
    used = compress(law, max_components)
    m1 = law.moment(1)
    rate, weight = slowdown_distribution(queue, m1)
    cs2 = law.moment(2) / (m1 * m1) - 1.0
    p_wait, full, mean_wait, wait_scv = admission_wait(queue, m1, cs2, law)
    probs = np.asarray(levels, dtype=float)
    waiting = None
    if p_wait > 0:  # S K / c(K) after a gamma wait
        waiting = _GammaWait(
            _scaled(used, full), 1.0, mean_wait, wait_scv, service=_scaled(service, full)
        )

    def evaluate(x):
        x = np.atleast_1d(np.asarray(x, dtype=float))
        y = x[:, None] / rate[None, :]
        ccdf = used.ccdf(y) @ weight
        pdf = (used.pdf(y) / rate[None, :]) @ weight
        err = np.zeros_like(x)
        if waiting is not None:
            c, f, e = waiting.evaluate(x)
            ccdf, pdf, err = ccdf + p_wait * c, pdf + p_wait * f, p_wait * e
        return ccdf, pdf, err

    slow = float(weight @ rate)
    mean = m1 * slow + p_wait * (m1 * full + mean_wait)
    var = law.moment(2) * float(weight @ rate**2) - mean * mean
    if waiting is not None:
        var += p_wait * (
            law.moment(2) * full**2 + 2 * m1 * full * mean_wait + (1 + wait_scv) * mean_wait**2
        )
    q, _, _ = solve_quantiles(evaluate, probs, _gamma_guess(mean, var, probs))
    model = (
        "continuous batching approximation: service time times the slowdown "
        "(N + 1) / c(N + 1) met at arrival"
    )
    details = {"components": used.size, "types": law.types, "mean_slowdown": mean / m1}
    if queue.arrival_scv != 1.0 and queue.max_running is None:
        model += (
            f" (arrival_scv {queue.arrival_scv:g}: the states of Poisson arrivals; within 8% "
            "of simulation for gaps of scv 4 at utilization <= 0.9 without max_running)"
        )
    if queue.max_running is not None:
        if queue.arrival_scv != 1.0:
            model += (
                f" (arrival_scv {queue.arrival_scv:g}: the states of the product form at the "
                f"admission rule's load, gap scv {admission_load(queue, m1)[1]:.3g})"
            )
        model += (
            f"; at or above max_running = {queue.max_running} in system, a gamma wait "
            f"(probability {p_wait:.4g}, mean {mean_wait:.4g} s, scv {wait_scv:.3g}) then the "
            "full batch's slowdown"
        )
        details.update(wait_probability=p_wait, mean_wait=mean_wait, wait_scv=wait_scv)
    return SystemTimeQuantiles(tuple(levels), q, "approximation", model, q * np.nan, details)


def _scaled(law: ServiceLaw, factor: float) -> ServiceLaw:
    """The law of ``factor S``."""
    return ServiceLaw(law.weight, law.mean * factor, law.variance * factor**2, law.exact, law.types)


#: The admission rule's gaps: scv ``1 + (c_a^2 - 1) SHRINK K^-SHRINK_POWER`` (fitted).
ADMISSION_SHRINK, ADMISSION_SHRINK_POWER = 0.72, 0.2


def _state_logs(queue: BatchingQueue, x: float, top: int) -> np.ndarray:
    """``log pi(n)`` unnormalized for ``n = 0..top``: ``pi(n) ∝ x^n / (c(1) ... c(n))``."""
    n = np.arange(0, top + 1)
    logc = np.concatenate([[0.0], np.cumsum(np.log(queue.curve.rate(n[1:])))])
    with np.errstate(divide="ignore"):
        logp = n * (math.log(x) if x > 0 else -np.inf) - logc
    return np.where(n == 0, 0.0, logp)


def admission_load(queue: BatchingQueue, m1: float) -> tuple[float, float]:
    """The load ``x`` of the product form that admission-limited states take, and its scv.

    ``x = lam m1`` for Poisson arrivals. With gamma gaps of scv ``c_a^2`` and the
    limit ``K``, ``x = sigma c(K)`` with ``sigma`` the GI/M/1 probability of a wait
    (:func:`gi_m1_wait_probability`) at load ``r = lam m1 / c(K)`` for gaps of scv
    ``c_e^2 = 1 + (c_a^2 - 1) 0.72 K^-0.2``: the gaps' scv shrunk toward 1 as ``K``
    grows. An empirical rule: in simulation (docs/tail.md) the scv that makes the
    product form's ``P(N >= K)`` the measured one was nearly constant in the load
    for each ``K`` and ``c_a^2``, and little moved by the service law.
    """
    k = queue.max_running
    x = queue.arrival_rate * m1
    ca2 = queue.arrival_scv
    if k is None or ca2 == 1.0 or x <= 0:
        return x, ca2
    ce = 1.0 + (ca2 - 1.0) * ADMISSION_SHRINK * k ** (-ADMISSION_SHRINK_POWER)
    ck = float(queue.curve.rate(np.array([k]))[0])
    return gi_m1_wait_probability(x / ck, ce) * ck, ce


def admission_wait(
    queue: BatchingQueue, m1: float, cs2: float = 1.0, law: ServiceLaw | None = None
) -> tuple[float, float, float, float]:
    """With an admission limit ``K``: ``P(N >= K)``, the slowdown ``K / c(K)``, the mean
    and the scv of a positive wait.

    Below ``K`` every query decodes (the product form above, at the load
    :func:`admission_load`); from ``K`` on the total rate is ``c(K)``, so ``N`` is
    geometric of ratio ``x / c(K)`` beyond ``K``. A query that finds ``K`` or more
    waits a gamma time of mean ``f m1 / (c(K) (1 - r))`` (``r = lam m1 / c(K)``: the
    M/M/c wait times a factor ``f``) and scv ``v`` (:func:`_admission_shape`); ``f`` is
    Allen and Cunneen's ``(c_e^2 + c_s^2) / 2`` on the admission rule's gap scv
    ``c_e^2`` in heavy traffic. With ``law`` (the mixed service law) the factor and
    the scv move at lighter load toward the light-traffic wait of ``K`` busy slots,
    the least of ``K`` residual services (:func:`.residual.least_residual`); without
    it, the factor is Allen and Cunneen's at every load. ``(0, 1, 0, 1)`` without a limit.
    """
    k = queue.max_running
    if k is None or queue.arrival_rate <= 0:
        return 0.0, 1.0, 0.0, 1.0
    x, ce = admission_load(queue, m1)
    ck = float(queue.curve.rate(np.array([k]))[0])
    r = queue.arrival_rate * m1 / ck
    sigma = x / ck
    logp = _state_logs(queue, x, k)
    top = logp.max()
    below = float(np.exp(logp[:-1] - top).sum())
    at_k = float(np.exp(logp[-1] - top)) / (1.0 - sigma)
    light = None
    if law is not None:
        least, least_scv = least_residual(law, k)
        light = (k * least / m1, least_scv)
    factor, scv = _admission_shape(r, sigma, ce, queue.arrival_scv, cs2, light, k)
    mean = factor * m1 / (ck * (1.0 - r))
    return at_k / (below + at_k), k / ck, mean, scv


def _admission_shape(
    r: float,
    sigma: float,
    ce: float,
    ca2: float,
    cs2: float,
    light: tuple[float, float] | None,
    k: int = 2,
) -> tuple[float, float]:
    """The admission wait's factor on ``m1 / (c(K) (1 - r))`` and its scv.

    ``light``: ``(f_0, v_0)``, the light-traffic wait of ``K`` busy slots, the least of
    ``K`` residual services (mean ``f_0 m1 / c(K)``, scv ``v_0``), or None. Allen and
    Cunneen's factor (:func:`_bursty_admission`) is multiplied by

        g = (f_0 + (f_1 - f_0) r) / f_1,   f_1 = (1 + c_s^2) / 2,

    its value for Poisson arrivals: a query that waits waits for the first of the ``K``
    in service to end (the least residual, at light load), then for as many more ends
    as queries were ahead of it (a geometric number of mean ``r / (1 - r)``, each taken
    at Allen and Cunneen's heavy-traffic mean), so the mean is ``f_0 + f_1 r / (1 -
    r)`` times ``m1 / c(K)``. The scv is ``1 + (v_0 - 1)(1 - sigma)``, from the least
    residual's toward 1 (exponential) in heavy traffic, times the bursty shift. Both are
    exact for exponential services (``f_0 = f_1 = v_0 = 1``: the M/M/c wait) and for
    ``K = 1`` (``f_0 = f_1``). Gaps smoother than Poisson take ``g`` and the scv moved
    back toward Allen and Cunneen's factor and ``2 - sigma`` by ``1 - c_a^4`` (with gaps
    of scv 0.25 the full move put ``p50`` up to 23% low, where the rule before had 15%).
    Bursty gaps spread the wait more at a larger limit ``K``: their scv is multiplied by
    ``(min(K, 16) / 2)^(0.1 (1 - 1 / c_a^2))`` (1 at ``K = 2`` and for Poisson arrivals;
    fitted on ``K`` = 2-16, not extrapolated beyond; it does not vanish in heavy
    traffic). Without ``light``: Allen and Cunneen's factor and the scv ``2 - sigma``.
    Chosen on simulation (``python -m validation.tail_search --part batching``,
    docs/tail.md).
    """
    factor, shift = _bursty_admission(r, sigma, ce, ca2, cs2)
    if light is None:
        return factor, (2.0 - sigma) * shift
    f0, v0 = light
    f1 = 0.5 * (1.0 + cs2)
    g = (f0 + (f1 - f0) * r) / f1
    scv = 1.0 + (v0 - 1.0) * (1.0 - sigma)
    if ca2 < 1.0:
        weight = ca2 * ca2
        g = 1.0 + (g - 1.0) * weight
        scv = 2.0 - sigma + (scv - 2.0 + sigma) * weight
    if sigma > r > 0:
        scv *= (min(k, SPREAD_LIMIT) / 2.0) ** (SPREAD * (1.0 - 1.0 / ca2))
    return factor * g, scv * shift


#: Under bursty gaps the wait's scv grows with the limit as ``(min(K, 16) / 2)^(0.1 (1 - 1 /
#: c_a^2))`` (fitted on ``K`` = 2-16).
SPREAD, SPREAD_LIMIT = 0.1, 16


#: The bursty shift's power is ``BURSTY_SHIFT c_s^2 / (c_a^2 + c_s^2)`` (fitted).
BURSTY_SHIFT = 1.5


def _bursty_admission(
    r: float, sigma: float, ce: float, ca2: float, cs2: float
) -> tuple[float, float]:
    """Allen and Cunneen's factor on ``m1 / (c(K) (1 - r))`` and the scv's multiplier.

    ``((c_e^2 + c_s^2) / 2, 1)`` unless the gaps are burstier than Poisson (``sigma >
    r``); then ``((c_a^2 + c_s^2) / 2 (r / sigma)^w, (sigma / r)^w)`` with
    ``w = 1.5 c_s^2 / (c_a^2 + c_s^2)``: Allen and Cunneen's factor on the gaps' own scv
    (the heavy-traffic limit of the GI/G/c wait; the shrunk ``c_e^2`` set it up to 22%
    low at utilization 0.9), shifted at light load toward shorter, more variable waits:
    with gaps of scv 4 and a limit of 2 to 8, the simulated mean wait before admission
    was down to half the Allen-Cunneen one at utilization 0.3, the more so the more
    variable the service. An empirical rule, chosen among the candidates of ``python -m
    validation.tail_search --part batching`` (docs/tail.md): with Allen and Cunneen's
    factor alone the power was ``2 c_s^2 / (c_a^2 + c_s^2)``; on top of the
    light-traffic move of :func:`_admission_shape`, which shortens the same waits,
    three quarters of it. Gaps less bursty than Poisson keep ``c_e^2`` (the gaps' own
    scv made them worse).
    """
    if not (sigma > r > 0):
        return 0.5 * (ce + cs2), 1.0
    shift = (sigma / r) ** (BURSTY_SHIFT * cs2 / (ca2 + cs2))
    return 0.5 * (ca2 + cs2) / shift, shift


def slowdown_distribution(queue: BatchingQueue, m1: float, states: int = 64):
    """The slowdown ``(N + 1) / c(N + 1)`` at arrival and its probabilities (grouped).

    ``N`` has the product form ``pi(n) ∝ x^n / (c(1) ... c(n))`` (``x = lam m1``),
    geometric with ratio ``x / c_max`` beyond the last concurrency point; the
    states are summed until the tail is below 1e-12 and grouped into at most
    ``states`` groups of neighbouring states (weight and mean slowdown kept).
    With an admission limit ``K`` only the states below ``K`` (their weights sum
    to ``1 - P(N >= K)``, :func:`admission_wait`).
    """
    curve = queue.curve
    k = queue.max_running
    ratio = queue.arrival_rate * m1 / curve.capacity
    last = curve.concurrency[-1]
    tail_terms = 0 if ratio <= 0 else int(math.ceil(math.log(1e-12) / math.log(ratio)))
    top = last + 1 + min(max(tail_terms, 0), 200_000)
    x = admission_load(queue, m1)[0]
    logp = _state_logs(queue, x, top if k is None else k)
    p = np.exp(logp - logp.max())
    if k is None:
        p /= p.sum()
    else:
        p_wait = admission_wait(queue, m1)[0]
        p = p[:-1] * (1.0 - p_wait) / p[:-1].sum()
    n = np.arange(p.size)
    slow = (n + 1) / curve.rate(n + 1)
    if slow.size > states:
        groups = np.minimum((np.cumsum(p) / p.sum() * states).astype(int), states - 1)
        w = np.bincount(groups, p, states)
        s = np.bincount(groups, p * slow, states)
        keep = w > 0
        return s[keep] / w[keep], w[keep]
    return slow, p
