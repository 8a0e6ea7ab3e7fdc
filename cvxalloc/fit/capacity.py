"""Calibrating a batching server: a capacity curve from measured throughputs.

Input: rows of (concurrency, throughput), e.g. a concurrency sweep of the
serving engine's benchmark tool (``vllm bench serve --max-concurrency K``,
SGLang's ``bench_serving``) reporting output tokens per second at each
concurrency ``K``. Output: the ``[server]`` table of a batching scenario,
``speedup = throughput / r1`` with ``r1`` the throughput of one query alone.

``r1`` is the row at concurrency 1 when there is one (the mean of several);
else ``single_stream`` when given; else the per-stream speed
``throughput / concurrency`` extrapolated linearly to concurrency 1 from the two
lowest concurrencies, clamped to the values a concave curve through the
points allows (``[T(k1) / k1, T(k1) - (k1 - 1) s12]``, ``s12`` the slope
between the two lowest points). Measure it: the extrapolation is a guess.

The curve is the measured points when they are already increasing and
concave with ``c(2) <= 2`` (the shape :class:`~cvxalloc.queue.CapacityCurve`
needs for a convex model); otherwise their least-squares projection (relative
errors) onto such curves (a small QP). Either way the result passes the
convexity check or the error says why not.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._source import fields_source
from ..errors import ScenarioError
from ..queue.batching import CapacityCurve

__all__ = [
    "BAD_FIT",
    "CapacityFit",
    "fit_capacity",
    "per_token_note",
    "read_throughput",
    "server_toml",
]

#: Accepted column names (first match wins).
CONCURRENCY_COLUMNS = ("concurrency", "max_concurrency")
THROUGHPUT_COLUMNS = ("throughput", "output_tokens_per_second", "output_throughput")


def read_throughput(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read (concurrency, throughput) rows from a CSV file.

    Columns: ``concurrency`` or ``max_concurrency``; ``throughput``,
    ``output_tokens_per_second`` or ``output_throughput``. Other columns are
    ignored (e.g. the published file's source and latency columns).
    """
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"throughput file {str(path)!r} does not exist")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ScenarioError(f"throughput file {str(path)!r} cannot be read: {exc}") from None
    if not rows:
        raise ScenarioError(f"throughput file {str(path)!r} has no rows")
    header = list(rows[0])
    ccol = next((c for c in CONCURRENCY_COLUMNS if c in header), None)
    tcol = next((c for c in THROUGHPUT_COLUMNS if c in header), None)
    for col, names in ((ccol, CONCURRENCY_COLUMNS), (tcol, THROUGHPUT_COLUMNS)):
        if col is None:
            raise ScenarioError(
                f"throughput file {str(path)!r}: no column {' or '.join(names)} "
                f"(columns: {', '.join(header)})"
            )
    conc, tput = [], []
    for line, row in enumerate(rows, start=2):
        try:
            k, t = float(row[ccol]), float(row[tcol])
        except (TypeError, ValueError):
            raise ScenarioError(
                f"throughput file {str(path)!r} line {line}: {ccol} and {tcol} must be numbers "
                f"(got {row[ccol]!r}, {row[tcol]!r})"
            ) from None
        conc.append(k)
        tput.append(t)
    return np.array(conc), np.array(tput)


@dataclass
class CapacityFit:
    """A fitted capacity curve.

    Attributes
    ----------
    curve : CapacityCurve
    single_stream : float
        ``r1``, throughput of one query alone (units of the input).
    single_stream_source : str
        ``measured``, ``given`` or ``extrapolated``.
    concurrency, throughput : ndarray
        The points used (duplicates averaged, sorted).
    fitted : ndarray
        ``r1 c(k)`` at those points.
    projected : bool
        Whether the points had to be moved to make the curve concave.
    """

    curve: CapacityCurve
    single_stream: float
    single_stream_source: str
    concurrency: np.ndarray
    throughput: np.ndarray
    fitted: np.ndarray
    projected: bool
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        """Source that rebuilds the fit (``np``, ``CapacityFit`` and
        ``CapacityCurve`` in scope).

        >>> fit_capacity([1, 2, 4], [50.0, 90.0, 150.0])  # doctest: +NORMALIZE_WHITESPACE
        CapacityFit(curve=CapacityCurve(concurrency=(1, 2, 4), speedup=(1.0, 1.8, 3.0)),
          single_stream=50.0, single_stream_source='measured',
          concurrency=np.array([1.0, 2.0, 4.0]), throughput=np.array([50.0, 90.0, 150.0]),
          fitted=np.array([50.0, 90.0, 150.0]), projected=False, notes=[])
        """
        return fields_source(self)

    @property
    def max_relative_error(self) -> float:
        """Largest ``|fitted - measured| / measured``."""
        return float(np.max(np.abs(self.fitted - self.throughput) / self.throughput))

    def server(self) -> dict[str, Any]:
        """The ``[server]`` table."""
        return self.curve.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``[server]`` table, the points, measured and fitted)."""
        return {
            "server": self.server(),
            "single_stream": self.single_stream,
            "single_stream_source": self.single_stream_source,
            "seconds_per_token_alone": 1.0 / self.single_stream,
            "capacity": self.curve.capacity,
            "points": [
                {"concurrency": int(k), "throughput": float(t), "fitted": float(f)}
                for k, t, f in zip(self.concurrency, self.throughput, self.fitted)
            ],
            "projected": self.projected,
            "max_relative_error": self.max_relative_error,
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """The curve's points, measured and fitted, its notes and its ``[server]`` table."""
        lines = [
            f"capacity curve: {len(self.curve.concurrency)} points, c_max = "
            f"{self.curve.capacity:.4g} (total rate / rate of one query alone)",
            f"one query alone: {self.single_stream:.4g} per second ({self.single_stream_source}); "
            f"service.per_token for a query alone = {1.0 / self.single_stream:.4g} s",
            "",
            "concurrency  throughput     fitted   speedup",
        ]
        for k, t, f in zip(self.concurrency, self.throughput, self.fitted):
            lines.append(f"{int(k):>11}  {t:>10.4g} {f:>10.4g}  {f / self.single_stream:>8.4g}")
        lines.append(
            ("projected onto concave curves" if self.projected else "points used as measured")
            + f"; largest relative error {self.max_relative_error:.2e}"
        )
        lines += self.notes
        lines += ["", server_toml(self.curve)]
        return "\n".join(lines)

    #: The former name of :meth:`summary`.
    report = summary


def server_toml(curve: CapacityCurve) -> str:
    """The ``[server]`` table as TOML text (6 significant digits if the curve stays valid)."""
    short = [float(f"{x:.6g}") for x in curve.speedup]
    try:
        CapacityCurve(curve.concurrency, tuple(short))
    except ScenarioError:
        short = list(curve.speedup)
    return (
        '[server]\nmodel = "batching"\n'
        f"concurrency = [{', '.join(str(k) for k in curve.concurrency)}]\n"
        f"speedup = [{', '.join(repr(x) for x in short)}]\n"
    )


def _concave(k: np.ndarray, y: np.ndarray) -> bool:
    """Increasing, concave through the origin too (so ``c(2) <= 2``)."""
    kk = np.concatenate([[0.0], k])
    yy = np.concatenate([[0.0], y])
    slopes = np.diff(yy) / np.diff(kk)
    return bool(np.all(slopes > 0) and np.all(np.diff(slopes) <= 0))


def _project(k: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares (relative) onto increasing concave curves with ``c(1) = 1``."""
    import cvxpy as cp

    c = cp.Variable(k.size)
    kk = np.concatenate([[0.0], k])
    vals = cp.hstack([np.zeros(1), c])
    slopes = cp.multiply(1.0 / np.diff(kk), vals[1:] - vals[:-1])
    tiny = 1e-6
    cons = [c[0] == 1.0, slopes[1:] <= slopes[:-1], slopes >= tiny]
    prob = cp.Problem(cp.Minimize(cp.sum_squares(cp.multiply(1.0 / y, c - y))), cons)
    prob.solve(solver="CLARABEL")
    if c.value is None:
        raise ScenarioError("fit: no increasing concave curve found through the throughputs")
    out = np.asarray(c.value, dtype=float)
    out[0] = 1.0
    # strictly increasing after rounding
    for i in range(1, out.size):
        out[i] = max(out[i], out[i - 1] * (1 + 1e-9))
    return out


def fit_capacity(
    concurrency: Any, throughput: Any, *, single_stream: float | None = None
) -> CapacityFit:
    """Fit a capacity curve to (concurrency, throughput) measurements.

    Parameters
    ----------
    concurrency : array_like
        Whole numbers >= 1 (duplicates are averaged).
    throughput : array_like
        Total throughput at that concurrency (tokens/s or any unit), > 0.
    single_stream : float, optional
        Throughput of one query alone, same unit (default: the row at
        concurrency 1, else extrapolated; see the module docs).

    Returns
    -------
    CapacityFit

    Examples
    --------
    The published sweep (Mistral-7B on one RTX 4090, vLLM) with one stream at 55 tokens/s:

    >>> fit = fit_capacity([4, 8, 16, 32, 48], [210, 377, 644, 975, 1190], single_stream=55)
    >>> [round(s, 2) for s in fit.curve.speedup]
    [1.0, 3.82, 6.85, 11.71, 17.73, 21.64]
    """
    k = np.asarray(concurrency, dtype=float).ravel()
    t = np.asarray(throughput, dtype=float).ravel()
    if k.size != t.size or k.size == 0:
        raise ScenarioError(
            f"fit: need as many throughputs as concurrencies, at least one (got {k.size} "
            f"and {t.size})"
        )
    if not (np.all(np.isfinite(k)) and np.all(np.isfinite(t))):
        raise ScenarioError("fit: concurrency and throughput must be finite numbers")
    if np.any(k < 1) or np.any(k != np.round(k)):
        bad = k[(k < 1) | (k != np.round(k))][0]
        raise ScenarioError(f"fit: concurrency must be a whole number >= 1 (got {bad:g})")
    if np.any(t <= 0):
        raise ScenarioError(f"fit: throughput must be > 0 (got {t[t <= 0][0]:g})")
    uk = np.unique(k)
    ut = np.array([t[k == v].mean() for v in uk])
    notes: list[str] = []
    if uk.size < len(k):
        notes.append(f"averaged {len(k) - uk.size} repeated concurrencies")
    if uk[0] == 1:
        r1, source = float(ut[0]), "measured"
        if single_stream is not None:
            notes.append("single_stream ignored: the data have a row at concurrency 1")
        ks, ts = uk[1:], ut[1:]
    else:
        ks, ts = uk, ut
        if single_stream is not None:
            r1, source = float(single_stream), "given"
            if not (math.isfinite(r1) and r1 > 0):
                raise ScenarioError(f"fit: single_stream must be > 0 (got {single_stream!r})")
        elif ks.size >= 2:
            per = ts[:2] / ks[:2]
            slope = (per[1] - per[0]) / (ks[1] - ks[0])
            guess = per[0] - slope * (ks[0] - 1.0)
            lo = ts[0] / ks[0]
            hi = ts[0] - (ks[0] - 1.0) * (ts[1] - ts[0]) / (ks[1] - ks[0])
            r1 = float(min(max(guess, lo), max(hi, lo)))
            source = "extrapolated"
            notes.append(
                "one query alone was not measured: extrapolated from the per-stream speed at "
                f"concurrency {int(ks[0])} and {int(ks[1])}; measure it (concurrency 1) or "
                "pass single_stream"
            )
        else:
            raise ScenarioError(
                "fit: one concurrency above 1 and no row at concurrency 1: give the "
                "throughput of one query alone (single_stream / --single-stream)"
            )
    k_all = np.concatenate([[1.0], ks])
    y = np.concatenate([[1.0], ts / r1])
    projected = not _concave(k_all, y)
    if projected:
        y = _project(k_all, y)
        notes.append("the measured points were not increasing and concave: projected")
    curve = CapacityCurve(tuple(int(v) for v in k_all), tuple(float(v) for v in y))
    fitted = r1 * np.asarray(curve.rate(uk))
    fit = CapacityFit(curve, r1, source, uk, ut, fitted, projected, notes)
    if source == "given" and fit.max_relative_error > BAD_FIT:
        raise ScenarioError(_bad_single_stream(fit, ks, ts))
    return fit


#: A given single-stream rate whose curve misses a measured throughput by more than this
#: (relative) is refused: the speedups would describe another server than the one measured.
BAD_FIT = 0.05


def _concave_range(ks: np.ndarray, ts: np.ndarray) -> tuple[float, float] | None:
    """Single-stream rates ``r1`` that make ``(1, r1), (k, t)...`` increasing and concave.

    From the origin through ``(1, r1)`` and the first two measured points: the slope
    ``r1`` must be at least the next one, ``(t1 - r1) / (k1 - 1)`` (so ``r1 >= t1 / k1``),
    and ``(t1 - r1) / (k1 - 1)`` at least ``(t2 - t1) / (k2 - k1)``. None when the
    measured points are not increasing and concave themselves (no ``r1`` helps).
    """
    if ks.size > 1:
        slopes = np.diff(ts) / np.diff(ks)
        if not (np.all(slopes > 0) and np.all(np.diff(slopes) <= 0)):
            return None
    lo = float(ts[0] / ks[0])
    hi = float(ts[0])
    if ks.size > 1:
        hi = min(hi, float(ts[0] - (ks[0] - 1.0) * (ts[1] - ts[0]) / (ks[1] - ks[0])))
    return (lo, hi) if lo <= hi else None


def _bad_single_stream(fit: CapacityFit, ks: np.ndarray, ts: np.ndarray) -> str:
    """The refusal of a given single-stream rate, with the fit's residuals and the fix."""
    rows = ", ".join(
        f"{int(k)}: {t:.4g} fitted {f:.4g} ({(f - t) / t:+.1%})"
        for k, t, f in zip(fit.concurrency, fit.throughput, fit.fitted)
    )
    span = _concave_range(ks, ts)
    fix = (
        f"give --single-stream between {span[0]:.4g} and {span[1]:.4g}, or measure concurrency 1"
        if span is not None
        else "the measured throughputs are not increasing and concave themselves: check them"
    )
    return (
        f"fit: single_stream {fit.single_stream:g} fits the throughputs badly (largest "
        f"relative error {fit.max_relative_error:.1%} > {BAD_FIT:.0%}; concurrency: measured, "
        f"fitted: {rows}); {fix}"
    )


def per_token_note(fit: CapacityFit, per_token: np.ndarray, names: list[str]) -> str | None:
    """A warning where the tasks' seconds per token disagree with the fitted rate alone.

    The capacity curve's speedups are relative to ``fit.single_stream`` (tokens per
    second alone, if the throughputs are in tokens per second), so a task's
    ``service.per_token`` is consistent with the curve when it is ``1 / single_stream``.
    Returns None when every task is within 1%.
    """
    alone = 1.0 / fit.single_stream
    rel = np.asarray(per_token, dtype=float) / alone - 1.0
    worst = int(np.argmax(np.abs(rel)))
    if abs(rel[worst]) <= 0.01:
        return None
    return (
        "per-token times disagree: service.per_token of the tasks (up to "
        f'{per_token[worst]:.4g} s for "{names[worst]}") differs from one query alone in the '
        "throughput fit "
        f"(1/{fit.single_stream:.4g} = {alone:.4g} s per token, if the throughputs are "
        f"tokens per second) by up to {rel[worst]:+.1%}: the speedups are relative to "
        f"{fit.single_stream:.4g} per second alone; give --per-token {alone:.4g} to use the "
        "fit's, or --single-stream with the measured rate of one query alone"
    )
