"""What a controller replay measured: figures per strategy, intervals over seeds.

Layer: workflows (:mod:`cvxalloc.controller`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .._lazy import special
from .._source import fields_source, source
from ..result import jsonable

__all__ = ["ControlReplay", "StrategyStats"]


@dataclass
class StrategyStats:
    """Replay figures of one strategy (means over seeds, intervals over seeds)."""

    name: str
    accuracy: float
    accuracy_ci: tuple[float, float]
    mean_system_time: float
    mean_system_time_ci: tuple[float, float]
    p95: float
    p95_ci: tuple[float, float]
    p99: float
    p99_ci: tuple[float, float]
    utility: float
    utility_ci: tuple[float, float]
    utility_vs_static: float
    utility_vs_static_ci: tuple[float, float]
    mean_tokens: float
    utilization: float

    def __repr__(self) -> str:
        """Python source that rebuilds the figures (every float exact).

        >>> StrategyStats("static", 0.5, (0.4, 0.6), 1.0, (0.9, 1.1), 2.0, (1.9, 2.1), 3.0,
        ...               (2.9, 3.1), 0.1, (0.0, 0.2), 0.0, (0.0, 0.0), 400.0, 0.7)
        ... # doctest: +ELLIPSIS
        StrategyStats(name='static', accuracy=0.5, accuracy_ci=(0.4, 0.6), ..., utilization=0.7)
        """
        parts = [f"{f.name}={source(getattr(self, f.name))}" for f in fields(self)]
        return f"StrategyStats({', '.join(parts)})"

    def summary(self) -> str:
        """One row: accuracy, mean W, p95, p99, utility with its interval, and the paired
        difference against ``static`` with its interval."""
        lo, hi = self.utility_ci
        dlo, dhi = self.utility_vs_static_ci
        return (
            f"{self.name:<13} {self.accuracy:9.4f} {self.mean_system_time:11.4g} "
            f"{self.p95:9.4g} {self.p99:9.4g} {self.utility:9.4f}  [{lo:.4f}, {hi:.4f}]  "
            f"{self.utility_vs_static:+.4f} [{dlo:+.4f}, {dhi:+.4f}]"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (intervals as lists)."""
        out = dict(self.__dict__)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = [float(x) for x in v]
        return out


@dataclass
class ControlReplay:
    """The outcome of :func:`replay_controller`.

    Attributes
    ----------
    strategies : dict of str -> StrategyStats
    windows : dict
        Per window (arrays over windows): ``start`` (seconds of the replay),
        ``true_rate``, ``planned_rate`` (the adaptive controller's effective
        rate, mean over seeds), and per strategy ``mean_tokens`` (budget per
        query, mean over seeds) and ``system_time`` (mean over the window's
        queries and the seeds; NaN for an empty window).
    settings : dict
        Window, seeds, rescale factor, average rate and utilization, backlog
        rule, what was estimated, plan certificates.

    Notes
    -----
    ``repr`` is Python source that rebuilds the replay (with ``np``,
    ``ControlReplay`` and ``StrategyStats`` in scope): every float exact, the
    window arrays as ``np.array([...])`` up to 100 windows (summarized beyond,
    so a longer replay's repr does not evaluate).
    """

    strategies: dict[str, StrategyStats]
    windows: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        """Python source that rebuilds the replay (see the class notes)."""
        return fields_source(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: settings, the strategies' figures, the per-window series."""
        return {
            "settings": jsonable(self.settings),
            "strategies": {k: jsonable(v.to_dict()) for k, v in self.strategies.items()},
            "windows": jsonable(self.windows),
        }

    def summary(self) -> str:
        """The replay's settings, then one row per strategy (what ``cvxalloc control`` prints)."""
        s = self.settings
        level = f"{100 * s['confidence']:g}%"
        lines = [
            f"replayed {s['source']}: {s['requests']:,} requests, times x {s['rescale']:.6g}, "
            f"average rate {s['average_rate']:.6g}/s (static plan utilization "
            f"{s['static_utilization']:.3f}), {s['windows']} windows of {s['window']:.6g} s, "
            f"{s['seeds']} seeds, {s['estimator']} rate estimate, backlog term "
            f"{'on' if s['backlog'] else 'off'}",
            f"{'strategy':<13} {'accuracy':>9} {'mean W (s)':>11} {'p95 (s)':>9} "
            f"{'p99 (s)':>9} {'utility':>9}  {level} CI of utility     vs static",
        ]
        lines += [st.summary() for st in self.strategies.values()]
        lines.append(f"{s['elapsed']:.2f} s wall")
        return "\n".join(lines)


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    m = float(values.mean())
    if values.size < 2:
        return (m, m)
    half = special.stdtrit(values.size - 1, 0.5 + confidence / 2) * values.std(ddof=1)
    half /= math.sqrt(values.size)
    return (m - half, m + half)


class _Runs:
    """One strategy's figures over the replications."""

    def __init__(self, K: int) -> None:
        self.figures: dict[str, list[float]] = {}
        self.windows: dict[str, list[np.ndarray]] = {"tokens": [], "system": []}
        self.planned: list[np.ndarray] = []

    def add(self, figures: dict[str, float], rep: Any, planned) -> None:
        for key, value in figures.items():
            self.figures.setdefault(key, []).append(value)
        self.windows["tokens"].append(rep.window_tokens)
        self.windows["system"].append(rep.window_system)
        if planned is not None:
            self.planned.append(planned.copy())

    def window_mean(self, key: str) -> np.ndarray:
        return np.mean(self.windows[key], axis=0)

    def planned_rates(self) -> np.ndarray:
        """The adaptive controller's planned rate per window (mean over seeds; NaN at 0)."""
        return np.mean(self.planned, axis=0)

    def array(self, key: str) -> np.ndarray:
        return np.asarray(self.figures[key], dtype=float)


def _summaries(runs: dict[str, _Runs], names: list[str], confidence: float):
    """Means over seeds with Student-t intervals; paired differences against static."""
    out: dict[str, StrategyStats] = {}
    base_U = runs["static"].array("U")
    for s in names:
        r = runs[s]
        diff = r.array("U") - base_U
        kw = {}
        for key, name in (
            ("acc", "accuracy"),
            ("W", "mean_system_time"),
            ("p95", "p95"),
            ("p99", "p99"),
            ("U", "utility"),
        ):
            kw[name] = float(r.array(key).mean())
            kw[f"{name}_ci"] = _interval(r.array(key), confidence)
        out[s] = StrategyStats(
            name=s,
            **kw,
            utility_vs_static=float(diff.mean()),
            utility_vs_static_ci=_interval(diff, confidence),
            mean_tokens=float(r.array("tok").mean()),
            utilization=float(r.array("busy").mean()),
        )
    return out
