"""Arrival statistics of a request log: rate, burstiness, mix, per-window rates.

Layer: workflows.

The queue model needs two numbers about arrivals: the rate ``lam`` and the
squared coefficient of variation ``c_a^2`` of the inter-arrival gaps (1 for a
Poisson process). :func:`measure_traffic` measures them from a
:class:`~cvxalloc.requestlog.RequestLog`, with the statistics that show whether
they describe the log well.

With ``n`` arrival times ``T_1 <= ... <= T_n`` and gaps ``G_j = T_{j+1} - T_j``:

* ``arrival_rate = (n - 1) / (T_n - T_1)``, the inverse of the mean gap;
* ``arrival_scv = var(G) / mean(G)^2`` with the population variance
  (``numpy.var``, ``ddof = 0``): the ``c_a^2`` of the GI/G/1 approximations;
* the index of dispersion of counts over windows of ``w`` = 1 s, 10 s, 60 s:
  cut ``[T_1, T_n)`` into the ``floor((T_n - T_1) / w)`` complete windows of
  length ``w`` (a partial last window is left out), count the arrivals in each,
  and report ``var(counts) / mean(counts)`` (``ddof = 0``). It is 1 for a
  Poisson process at every ``w``; growing with ``w`` means bursts that last
  longer than single gaps (slow changes of the rate), which ``c_a^2`` alone
  does not show. ``None`` when fewer than two complete windows fit;
* the rate per window over time: ``[T_1, T_n]`` cut into windows of
  ``window`` seconds (the last one shorter, ending at ``T_n``), arrivals per
  window divided by its length;
* the type mix (share of each type) and the mean and squared coefficient of
  variation (``ddof = 0``) of a token column, when the log has them.

Examples
--------
>>> import numpy as np
>>> from cvxalloc.requestlog import RequestLog
>>> from cvxalloc.traffic import measure_traffic
>>> log = RequestLog(times=np.array([0.0, 1.0, 1.0, 4.0]), types=None, tokens=None,
...                  source="example", columns=("ts",), time_column="ts", time_unit="s")
>>> tr = measure_traffic(log, window=2.0)
>>> tr.arrival_rate, round(tr.arrival_scv, 12)   # gaps 1, 0, 3: mean 4/3, var 14/9
(0.75, 0.875)
>>> tr.window_rates                   # windows [0, 2) and [2, 4]
array([1.5, 0.5])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._source import fields_source
from .errors import ScenarioError
from .requestlog import RequestLog

__all__ = [
    "TrafficSummary",
    "Quantization",
    "measure_traffic",
    "quantization",
    "dispersion_of_counts",
    "window_rates",
    "DISPERSION_WINDOWS",
    "MAX_WINDOWS",
]

#: Window lengths (seconds) of the index of dispersion of counts.
DISPERSION_WINDOWS = (1.0, 10.0, 60.0)
#: Largest number of windows :func:`window_rates` accepts (memory guard).
MAX_WINDOWS = 10_000_000


#: Relative tolerance of "a gap is a whole number of grid steps" (stamps written as
#: decimals carry rounding of this order, not more).
_GRID_RTOL = 1e-6
#: The grid is reported as distorting the gaps when at least this share of them is 0 ...
_ZERO_SHARE_WARN = 0.01
#: ... or when one grid step is at least this share of the mean gap.
_STEP_WARN = 0.1
#: Positive gaps needed before a common step counts as a grid.
_GRID_EVIDENCE = 3
#: Seed of the de-quantized estimate's jitter (so a report is reproducible).
DEQUANTIZE_SEED = 0


@dataclass(frozen=True)
class Quantization:
    """Time stamps on a grid: how coarse it is against the gaps, and what it does.

    Attributes
    ----------
    step_seconds : float
        The grid step ``h``: every positive gap is a whole number of steps.
    zero_gap_share : float
        Share of the gaps that are exactly 0 (arrivals in the same grid step).
    distorts : bool
        Whether the grid distorts the gap statistics: at least 1% of the gaps are 0,
        or ``h`` is at least a tenth of the mean gap.
    arrival_scv_dequantized : float
        The gap SCV after spreading each arrival uniformly over its grid step
        (``T + U h``, ``U`` uniform on ``[0, 1)`` drawn with seed
        :data:`DEQUANTIZE_SEED``): given the counts per step, the arrival times of
        a Poisson process in a step are independent and uniform on it, so this is
        the estimate that assumes nothing finer than the grid.
    """

    step_seconds: float
    zero_gap_share: float
    distorts: bool
    arrival_scv_dequantized: float

    def warning(self, arrival_scv: float) -> str | None:
        """One sentence for the report when the grid distorts the gaps, else None."""
        if not self.distorts:
            return None
        return (
            f"time stamps are on a {self.step_seconds:g} s grid and "
            f"{100 * self.zero_gap_share:.0f}% of the gaps are 0: the gap SCV "
            f"{arrival_scv:.4g} measures the grid, not the traffic; spreading each arrival "
            f"over its {self.step_seconds:g} s step gives {self.arrival_scv_dequantized:.4g} "
            "(--dequantize uses it)"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``quantization`` of ``cvxalloc traffic --json``)."""
        return {
            "step_seconds": self.step_seconds,
            "zero_gap_share": self.zero_gap_share,
            "distorts": self.distorts,
            "arrival_scv_dequantized": self.arrival_scv_dequantized,
        }


def quantization(times: np.ndarray) -> Quantization | None:
    """The time grid of sorted arrival times, or None when the gaps are on none.

    The step is the smallest positive gap when every positive gap is a whole
    number of it (to a relative 1e-6), from three positive gaps on; a log whose
    stamps are continuous has no such step. See :class:`Quantization` for the
    de-quantized estimate.

    Examples
    --------
    A Poisson log of 3 arrivals a second written to the nearest 3 s below:

    >>> rng = np.random.default_rng(1)
    >>> t = np.cumsum(rng.exponential(1 / 3.0, 20_000))
    >>> q = quantization(3.0 * np.floor(t / 3.0))
    >>> q.step_seconds, round(q.zero_gap_share, 2), q.distorts
    (3.0, 0.89, True)
    >>> bool(abs(q.arrival_scv_dequantized - 1.0) < 0.05)
    True
    """
    t = np.asarray(times, dtype=float)
    gaps = np.diff(t)
    positive = gaps[gaps > 0]
    if positive.size < _GRID_EVIDENCE:  # one or two gaps are "a grid" whatever the stamps
        return None
    h = float(positive.min())
    ratio = positive / h
    if np.any(np.abs(ratio - np.round(ratio)) > _GRID_RTOL * np.maximum(ratio, 1.0)):
        return None
    zero_share = float(np.count_nonzero(gaps == 0) / gaps.size)
    mean_gap = float(t[-1] - t[0]) / gaps.size
    spread = np.sort(t + h * np.random.default_rng(DEQUANTIZE_SEED).random(t.size))
    g = np.diff(spread)
    return Quantization(
        step_seconds=h,
        zero_gap_share=zero_share,
        distorts=bool(zero_share >= _ZERO_SHARE_WARN or h >= _STEP_WARN * mean_gap),
        arrival_scv_dequantized=float(g.var() / g.mean() ** 2),
    )


def _label(seconds: float) -> str:
    return f"{seconds:g}s"


def dispersion_of_counts(times: np.ndarray, window: float) -> float | None:
    """Index of dispersion of counts ``var / mean`` over complete windows.

    Parameters
    ----------
    times : ndarray
        Sorted arrival times in seconds.
    window : float
        Window length in seconds.

    Returns
    -------
    float or None
        ``var(counts) / mean(counts)`` (``ddof = 0``) over the
        ``floor(span / window)`` complete windows from the first arrival;
        None when fewer than two fit.
    """
    t = np.asarray(times, dtype=float)
    span = float(t[-1] - t[0])
    k = math.floor(span / window)
    if k < 2 or k > MAX_WINDOWS:
        return None
    idx = np.floor((t - t[0]) / window).astype(np.int64)
    counts = np.bincount(idx[idx < k], minlength=k)
    mean = counts.mean()
    return float(counts.var() / mean)


def window_rates(times: np.ndarray, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Arrival rate per window of ``window`` seconds, from the first to the last arrival.

    Returns
    -------
    edges : ndarray
        Window edges in seconds since the first arrival: ``0, w, 2w, ...``
        and last the span ``T_n - T_1`` (the last window may be shorter).
    rates : ndarray
        Arrivals in each window (the last one includes ``T_n``) divided by its
        length, requests per second.

    Raises
    ------
    ScenarioError
        If ``window`` is not a positive finite number, or gives more than
        :data:`MAX_WINDOWS` windows.
    """
    _check_window(window)
    t = np.asarray(times, dtype=float)
    t = t - t[0]
    span = float(t[-1])
    k = max(1, math.ceil(span / window))
    if k > MAX_WINDOWS:
        raise ScenarioError(
            f"--window {window:g}: {k:,} windows over {span:g} s (at most {MAX_WINDOWS:,}); "
            "use a longer window"
        )
    edges = np.append(window * np.arange(k, dtype=float), span)
    if k > 1 and edges[-1] <= edges[-2]:  # rounding: ceil gave one window too many
        k -= 1
        edges = np.append(edges[:k], span)
    idx = np.minimum(np.floor(t / window).astype(np.int64), k - 1)
    counts = np.bincount(idx, minlength=k)
    return edges, counts / np.diff(edges)


def _check_window(window: float) -> None:
    try:
        w = float(window)
    except (TypeError, ValueError):
        raise ScenarioError(f"--window {window!r}: give a number of seconds > 0") from None
    if not (math.isfinite(w) and w > 0):
        raise ScenarioError(
            f"--window {window!r}: the window must be a finite number of seconds > 0"
        )


@dataclass(frozen=True, eq=False)
class TrafficSummary:
    """What :func:`measure_traffic` measured (see the module docstring for the formulas).

    Attributes
    ----------
    requests : int
        Number of requests ``n``.
    duration_seconds : float
        ``T_n - T_1``.
    arrival_rate : float
        ``(n - 1) / (T_n - T_1)``, requests per second.
    arrival_scv : float
        ``var(G) / mean(G)^2`` of the gaps (population variance).
    zero_gaps : int
        Gaps of length 0 (simultaneous arrivals).
    dispersion : dict
        ``"1s"``, ``"10s"``, ``"60s"`` -> index of dispersion of counts, or None.
    window_seconds : float
        Length of the windows of :attr:`window_rates`.
    window_edges, window_rates : ndarray
        See :func:`window_rates`.
    type_mix : dict or None
        Type -> share of the requests (largest first), when the log has types.
    tokens : dict or None
        ``column``, ``mean``, ``scv``, ``min``, ``max`` of the token column.
    source, time_column, time_unit : str
        Where the log came from and how its times were read.
    sorted : bool
        Whether the file was in time order.
    quantization : Quantization or None
        The grid of the time stamps (None when they are on none); its
        :meth:`~Quantization.warning` says when it distorts ``arrival_scv``.

    Notes
    -----
    ``repr`` is Python source that rebuilds the summary (with ``np`` and
    ``TrafficSummary`` in scope): every float exact, the window arrays as
    ``np.array([...])`` up to 100 windows (summarized beyond, so a longer one
    does not evaluate; ``measure_traffic`` of the log rebuilds it).
    """

    requests: int
    duration_seconds: float
    arrival_rate: float
    arrival_scv: float
    zero_gaps: int
    dispersion: dict[str, float | None]
    window_seconds: float
    window_edges: np.ndarray = field(repr=False)
    window_rates: np.ndarray = field(repr=False)
    type_mix: dict[str, float] | None
    tokens: dict[str, Any] | None
    source: str
    time_column: str
    time_unit: str
    sorted: bool = True
    quantization: Quantization | None = None

    @property
    def warning(self) -> str | None:
        """The grid's warning (:meth:`Quantization.warning`), or None."""
        return None if self.quantization is None else self.quantization.warning(self.arrival_scv)

    def __repr__(self) -> str:
        """Python source that rebuilds the summary (see the class notes).

        >>> from cvxalloc.requestlog import RequestLog
        >>> log = RequestLog(times=np.array([0.0, 1.0, 3.0]), types=None, tokens=None,
        ...                  source="x", columns=("ts",), time_column="ts", time_unit="s")
        >>> tr = measure_traffic(log, window=2.0)
        >>> tr  # doctest: +ELLIPSIS
        TrafficSummary(requests=3, ..., window_edges=np.array([0.0, 2.0, 3.0]), ...)
        >>> eval(repr(tr)).to_dict() == tr.to_dict()
        True
        """
        return fields_source(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the keys of ``cvxalloc traffic --json``)."""
        return {
            "requests": self.requests,
            "duration_seconds": self.duration_seconds,
            "arrival_rate": self.arrival_rate,
            "arrival_scv": self.arrival_scv,
            "zero_gaps": self.zero_gaps,
            "dispersion": dict(self.dispersion),
            "windows": {
                "seconds": self.window_seconds,
                "count": int(self.window_rates.size),
                "last_seconds": float(self.window_edges[-1] - self.window_edges[-2]),
                "rates": [float(r) for r in self.window_rates],
            },
            "type_mix": None if self.type_mix is None else dict(self.type_mix),
            "tokens": None if self.tokens is None else dict(self.tokens),
            "source": self.source,
            "time_column": self.time_column,
            "time_unit": self.time_unit,
            "sorted": self.sorted,
            "quantization": None if self.quantization is None else self.quantization.to_dict(),
            "warning": self.warning,
        }

    def summary(self) -> str:
        """A plain-text table."""
        d = self.duration_seconds
        span = f"{d:,.2f} s ({d / 60:,.1f} min)" if d >= 120 else f"{d:,.4g} s"
        rates = self.window_rates
        lines = [
            f"request log       {self.source}",
            f"time column       {self.time_column}   unit {self.time_unit}"
            + ("" if self.sorted else ", not in time order: sorted"),
            f"requests          {self.requests:,} over {span}",
            f"arrival rate      {self.arrival_rate:.6g} requests/s   ((n - 1) / (last - first))",
            f"arrival SCV       {self.arrival_scv:.6g}   (var / mean^2 of the gaps; Poisson 1)",
            f"zero gaps         {self.zero_gaps:,}   (simultaneous arrivals)",
            *(
                [
                    f"time grid         {self.quantization.step_seconds:g} s   "
                    f"({100 * self.quantization.zero_gap_share:.1f}% of the gaps are 0; "
                    f"de-quantized SCV {self.quantization.arrival_scv_dequantized:.6g})"
                ]
                if self.quantization is not None
                else []
            ),
            "dispersion        "
            + "   ".join(
                f"{k} {'-' if v is None else f'{v:.4g}'}" for k, v in self.dispersion.items()
            )
            + "   (var / mean of counts per window; Poisson 1)",
            f"{f'rate per {self.window_seconds:g} s':<17} min {rates.min():.4g}   median "
            f"{float(np.median(rates)):.4g}   max {rates.max():.4g} requests/s   "
            f"({rates.size:,} windows)",
        ]
        if self.type_mix is not None:
            shown = list(self.type_mix.items())
            mix = "   ".join(f"{k} {v:.4f}" for k, v in shown[:8])
            if len(shown) > 8:
                mix += f"   ... ({len(shown)} types)"
            lines.append(f"type mix          {mix}")
        if self.tokens is not None:
            tk = self.tokens
            scv = "-" if tk["scv"] is None else f"{tk['scv']:.4g}"
            lines.append(
                f"tokens            {tk['column']}: mean {tk['mean']:.6g}   scv {scv}   "
                f"min {tk['min']:g}   max {tk['max']:g}"
            )
        if self.warning is not None:
            lines.append(f"warning: {self.warning}")
        return "\n".join(lines)


def measure_traffic(log: RequestLog, window: float = 60.0) -> TrafficSummary:
    """Measure the arrival statistics of a request log.

    Parameters
    ----------
    log : RequestLog or array_like
        From :func:`cvxalloc.requestlog.read_request_log`, or arrival times
        (normalized by :meth:`RequestLog.of <cvxalloc.requestlog.RequestLog.of>`,
        which computes the rate, the gaps' SCV, the type mix and the token summary).
    window : float, optional
        Window length in seconds of the rate-over-time series (default 60).

    Returns
    -------
    TrafficSummary

    Raises
    ------
    ScenarioError
        If ``window`` is not a positive finite number (or gives too many
        windows), or plain times that do not make a log (fewer than two, or no
        time span).
    """
    _check_window(window)
    log = RequestLog.of(log)
    t = np.asarray(log.times, dtype=float)
    edges, rates = window_rates(t, window)
    return TrafficSummary(
        requests=log.requests,
        duration_seconds=log.duration,
        arrival_rate=log.arrival_rate,
        arrival_scv=log.arrival_scv,
        zero_gaps=int(np.count_nonzero(log.gaps == 0)),
        dispersion={_label(w): dispersion_of_counts(t, w) for w in DISPERSION_WINDOWS},
        window_seconds=float(window),
        window_edges=edges,
        window_rates=rates,
        type_mix=log.type_mix,
        tokens=log.token_summary,
        source=log.source,
        time_column=log.time_column,
        time_unit=log.time_unit,
        sorted=log.sorted,
        quantization=quantization(t),
    )
