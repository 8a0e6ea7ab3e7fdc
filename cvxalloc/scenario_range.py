"""The numeric range of a scenario: what the model computes must stay a resolved double.

Layer: scenario.

A scenario can hold values that are valid one by one (positive, finite) and still
take the model's arithmetic out of the range of doubles: a squared coefficient of
variation of 1e308 overflows the second moment of the service time, a latency
weight of 1e308 overflows ``gamma W``, an accuracy scale of 5e-324 tokens
overflows the slope of the curve, and a latency weight of 1e-300 puts the optimum
closer to saturation than any utilization can be told from 1. Each check here
refuses such a scenario with one :class:`ScenarioError` that names the extreme
field and what to give instead; :meth:`Scenario._validate` calls them.
"""

from __future__ import annotations

import math

import numpy as np

from ._reduce import dot
from .errors import ScenarioError, UnstableError
from .protocols import ScenarioLike
from .queue import Latency

__all__ = [
    "MAX_SCV",
    "MAX_VARIANCE",
    "SLACK_RESOLVED",
    "check_range",
    "check_resolvable",
]

#: Largest squared coefficient of variation accepted (service ``scv`` and
#: ``arrival_scv``): a standard deviation 1000 times the mean is beyond any measured
#: service or arrival process, and larger values only carry the moments towards overflow.
MAX_SCV = 1e6
#: Largest extra service-time variance accepted, in seconds squared: the square of the
#: longest service time accepted (:data:`cvxalloc.scenario.MAX_SERVICE_SECONDS`).
MAX_VARIANCE = 1e24
#: The least slack ``1 - rho`` a utilization can be told from 1 by (the spacing of
#: doubles at 1): an optimum provably closer to saturation is refused, not approximated.
SLACK_RESOLVED = float(np.finfo(float).eps)


def check_range(sc: ScenarioLike) -> None:
    """Refuse values whose arithmetic leaves the doubles at the minimum budgets.

    In order: the spreads of the service and arrival processes (bounded by
    :data:`MAX_SCV` and :data:`MAX_VARIANCE`), the price on latency (``gamma W``
    and ``gamma dW/dt`` finite at the minimum budgets, which are stable) and the
    accuracy curves (their slope, times the weight, finite at ``min_tokens``):
    the certificate needs ``U`` and its gradient there.
    """
    _check_spreads(sc)
    _check_latency_price(sc)
    _check_slopes(sc)


def _check_spreads(sc: ScenarioLike) -> None:
    """Service ``scv``, ``variance`` and ``arrival_scv`` within their bounds."""
    for label, arr, bound, what in (
        ("service.scv", sc.scv, MAX_SCV, "a squared coefficient of variation: 1 for exponential"),
        ("service.variance", sc.variance, MAX_VARIANCE, "seconds squared"),
    ):
        hits = np.flatnonzero(arr > bound)
        if hits.size:
            i = int(hits[0])
            raise ScenarioError(
                f'task "{sc.names[i]}": {label} {arr[i]:g} is beyond what the arithmetic of the '
                f"model holds (the second moment of the service time overflows); give at most "
                f"{bound:g} ({what})"
            )
    if sc.arrival_scv > MAX_SCV:
        raise ScenarioError(
            f"queue: arrival_scv {sc.arrival_scv:g} is beyond what the arithmetic of the model "
            f"holds (the wait's numerator overflows); give at most {MAX_SCV:g} (the squared "
            "coefficient of variation of the gaps between arrivals: 1 for Poisson)"
        )


def _check_latency_price(sc: ScenarioLike) -> None:
    """``gamma W`` and ``gamma dW/dt`` finite at the minimum budgets."""
    gamma = sc.latency_weight
    if gamma == 0:
        return
    # service_scv = "auto": the model at the minimum budgets' own, where it is evaluated
    lat = Latency(sc.with_service_scv_at(sc.min_tokens))
    width = sc.max_tokens - sc.min_tokens
    with np.errstate(over="ignore", invalid="ignore"):
        w_lo = float(lat.value(sc.min_tokens))
        price = gamma * w_lo
        # the certificate multiplies the slope by the box's width
        slope = gamma * np.max(lat.gradient(sc.min_tokens) * np.maximum(width, 1.0))
    if math.isfinite(price) and math.isfinite(slope):
        return
    raise ScenarioError(
        f"queue: latency_weight {gamma:g} times the mean system time at the minimum budgets "
        f"({w_lo:.3g} s) overflows a double; give latency_weight in utility per second of "
        "mean system time, and scale it and the weights down together (only their ratio "
        "matters)"
    )


def _check_slopes(sc: ScenarioLike) -> None:
    """Slope and curvature of every accuracy curve finite at ``min_tokens``, and weight x
    slope x the box's width (a term of the certificate).

    The certificate needs the gradient there, the solvers' Newton steps the curvature.
    """
    lo = sc.min_tokens
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        d1, d2 = sc.accuracy.d1(lo), sc.accuracy.d2(lo)
        # the certificate multiplies the slope by the box's width
        wd1 = sc.weight * d1 * np.maximum(sc.max_tokens - lo, 1.0)
    bad = np.flatnonzero(~(np.isfinite(wd1) & np.isfinite(d2)))
    if not bad.size:
        return
    i = int(bad[0])
    where = f'task "{sc.names[i]}"'
    if np.isfinite(d1[i]) and np.isfinite(d2[i]):
        raise ScenarioError(
            f"{where}: weight {sc.weight[i]:g} times the slope of its accuracy curve over its "
            "token range overflows a double; give smaller weights and latency_weight together "
            "(only their ratio matters)"
        )
    params = sc.accuracy.param_dict(i)
    shape = ", ".join(f"{k} {params[k]:g}" for k in ("scale", "exponent") if k in params)
    fix = "a larger scale" + (" or a smaller exponent" if "exponent" in params else "")
    raise ScenarioError(
        f"{where}: the accuracy curve ({params['model']}, {shape}) is too steep at min_tokens: "
        f"its {'slope' if not np.isfinite(d1[i]) else 'curvature'} overflows a double (the "
        f"whole gain within a sliver of a token); give {fix}"
    )


def check_resolvable(sc: ScenarioLike) -> None:
    """Refuse a latency price so small that the optimum's slack ``1 - rho`` is below
    what doubles resolve (call it where the maximum budgets are unstable and nothing
    else caps the utilization; one server, FIFO).

    A type ``j`` below ``max_tokens`` at the optimum has ``w_j A_j'(hi_j) <= gamma
    b_j D_j``, and for a slack ``u <= 1`` ``D_j <= K_j / u^2`` with ``K_j = 1 + lam
    (1 + k_j) s_j(hi) + lam^2 m2(hi) / 2 + 1.5 max(c_a^2 - 1, 0)``, so
    ``u <= u_j = sqrt(gamma b_j K_j / (w_j A_j'(hi_j)))``. Take the types in
    increasing ``u_j``, up to the first set ``J`` whose maximum budgets (the others
    at their minimum) are already unstable: some type of ``J`` is below its maximum
    at the optimum, so the slack is at most the largest ``u_j`` in ``J``. (All types
    would do; the prefix keeps the bound tight when a type whose curve is flat would
    sit at its minimum anyway.) Below :data:`SLACK_RESOLVED` no allocation's
    utilization can be told from 1 (measured on the example: the bound is 13 times
    the solved slack, from latency_weight 1e-4 to 1e-60).
    """
    lam, gamma = sc.arrival_rate, sc.latency_weight
    s_hi = sc.service_time(sc.max_tokens)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        m2_hi = dot(sc.probability, (1.0 + sc.scv) * s_hi * s_hi + sc.variance)
        k = 1.0 + lam * (1.0 + sc.scv) * s_hi + 0.5 * lam * lam * m2_hi
        k += 1.5 * max(sc.arrival_scv - 1.0, 0.0)
        ratio = sc.per_token * k / (sc.weight * sc.accuracy.d1(sc.max_tokens))
        u_j = math.sqrt(gamma) * np.sqrt(ratio)
    u_j = np.where(np.isnan(u_j), np.inf, u_j)
    if not np.min(u_j) < SLACK_RESOLVED:
        return  # the bound is one of the u_j: no need to order them (O(N), not a sort)
    order = np.argsort(u_j, kind="stable")
    grow = (sc.probability * sc.per_token * (sc.max_tokens - sc.min_tokens))[order]
    m1 = dot(sc.probability, sc.service_time(sc.min_tokens)) + np.cumsum(grow)
    first = np.flatnonzero(lam * m1 >= sc.capacity)
    u_max = float(u_j[order[first[0]]]) if first.size else float(np.max(u_j))
    if not u_max < SLACK_RESOLVED:
        return
    # the bound grows with sqrt(gamma): the price that lifts it to a slack of 1e-6
    need = (math.sqrt(gamma) * _SLACK_WELL_RESOLVED / u_max) ** 2 if u_max > 0 else math.inf
    raise UnstableError(
        f"queue: latency_weight {gamma:g} is too small against the accuracy at stake "
        f"(weights up to {float(np.max(sc.weight)):g}): the optimum lies within "
        f"{u_max:.2g} of saturation, closer than double precision resolves a utilization "
        f"({SLACK_RESOLVED:.2g}); raise latency_weight (to {need:.2g} or more for an "
        "optimum well clear of saturation; only its ratio to the weights matters), or add a "
        "max_utilization < 1 constraint"
    )


#: The slack a suggested latency weight aims at (the optimum then resolves to ~1e-10).
_SLACK_WELL_RESOLVED = 1e-6
