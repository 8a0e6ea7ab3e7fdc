"""The accuracy-latency frontier: sweeps over the latency weight or the SLO.

Layer: workflows.

:func:`sweep_latency_weight` solves the scenario for each latency weight
``gamma``; :func:`sweep_slo` for each mean-latency SLO
(``max_mean_system_time``); :func:`sweep_tail` for each tail SLO
(``tail = { quantile = p, max_system_time = T0 }``), recording at each point
the exact percentile of the optimum beside the surrogate's bound (the
frontier of accuracy against p99); any sweep given ``quantile=p`` records
the exact percentile too. Each point is a full solve with its certificate;
alongside it the best uniform budget that satisfies the same constraints
(:func:`cvxalloc.baselines.best_uniform`), so a plot shows what the per-type
allocation buys.

The method is chosen as :func:`cvxalloc.solve` chooses it (its default, which
honours the SLO and every other constraint, unless ``method`` says). With the
conic reference the problem is compiled once with CVXPY Parameters for
``gamma`` or the SLO (DPP) and re-solved at each point; other methods are
called point by point, warm-started from the previous point where they
accept ``warm_start`` (the aggregate method).

Examples
--------
>>> import numpy as np, cvxalloc
>>> from cvxalloc.sweep import sweep_latency_weight
>>> sw = sweep_latency_weight(cvxalloc.example_scenario(), np.logspace(-4, -2, 3))
>>> sw.status.tolist()
['optimal', 'optimal', 'optimal']
>>> bool(np.all(np.diff(sw.mean_system_time) < 0))
True
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import status as st
from ._source import fields_source
from .baselines import best_uniform
from .constraints import InfeasibleError, TailSLO, constraints_of
from .errors import CvxallocError, OptionError
from .queue.tail import check_quantiles
from .result import Result, jsonable
from .scenario_constraints import Constraints
from .solve import choose_method, solve, warm_options

if TYPE_CHECKING:
    from .scenario import Scenario

__all__ = ["SweepResult", "sweep_latency_weight", "sweep_slo", "sweep_tail"]

#: Status of a point with no feasible allocation, or a scenario that cannot be solved.
INFEASIBLE = st.INFEASIBLE
INVALID = "invalid"


@dataclass
class SweepResult:
    """The optimum (and the best uniform budget) at each point of a sweep.

    Attributes
    ----------
    parameter : str
        ``"latency_weight"``, ``"slo"`` or ``"tail"``.
    latency_weight : ndarray, shape (k,)
        ``gamma`` at each point (constant in an SLO sweep).
    slo : ndarray or None, shape (k,)
        ``max_mean_system_time`` at each point (SLO sweeps only); for a tail
        sweep, the tail SLO's ``max_system_time``.
    quantile : float or None
        The level ``p`` of :attr:`system_time_quantile` (tail sweeps, or any
        sweep given ``quantile``).
    system_time_quantile : ndarray or None
        The exact ``p``-percentile of the system time at each optimum, seconds.
    tail_bound : ndarray or None
        Tail sweeps: the surrogate's bound on it at each optimum (the figure the
        constraint holds, at most ``max_system_time``).
    objective, accuracy, mean_system_time, utilization : ndarray, shape (k,)
        Figures of the optimum (``NaN`` where the point has no solution).
    gap : ndarray, shape (k,)
        Certified gap of each optimum.
    status : ndarray of str, shape (k,)
        The solver's status, ``"infeasible"`` where the constraints conflict,
        ``"invalid"`` where the scenario itself is invalid (message in
        :attr:`messages`).
    tokens : ndarray, shape (k, N)
        The allocations.
    uniform_objective, uniform_accuracy, uniform_mean_system_time : ndarray or None
        The best uniform budget at each point (``uniform=True``).
    uniform_budget : ndarray or None
        That budget, in tokens.
    names : list of str
        Task names (columns of :attr:`tokens`).
    method : str
        The method used.
    messages : list of str
        Why a point failed (empty string where it did not).
    """

    parameter: str
    latency_weight: np.ndarray
    objective: np.ndarray
    accuracy: np.ndarray
    mean_system_time: np.ndarray
    utilization: np.ndarray
    gap: np.ndarray
    status: np.ndarray
    tokens: np.ndarray
    names: list[str]
    method: str
    slo: np.ndarray | None = None
    uniform_objective: np.ndarray | None = None
    uniform_accuracy: np.ndarray | None = None
    uniform_mean_system_time: np.ndarray | None = None
    uniform_budget: np.ndarray | None = None
    quantile: float | None = None
    system_time_quantile: np.ndarray | None = None
    tail_bound: np.ndarray | None = None
    messages: list[str] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.objective)

    def __repr__(self) -> str:
        """Python source that rebuilds the sweep (with ``np`` and ``SweepResult`` in scope).

        Arrays are written out in full up to 100 entries (summarized beyond), every
        float exactly.
        """

        return fields_source(self)

    @property
    def values(self) -> np.ndarray:
        """The swept parameter (``latency_weight``, ``slo``, or the tail's ``max_system_time``)."""
        return self.latency_weight if self.parameter == "latency_weight" else self.slo

    @property
    def solved(self) -> np.ndarray:
        """Mask of the points that carry an allocation."""
        return np.isin(self.status, st.SOLUTION_PRESENT)

    # --- output -------------------------------------------------------------
    def columns(self) -> dict[str, np.ndarray]:
        """Per-point columns in output order (tokens as ``tokens[<task>]``)."""
        cols: dict[str, Any] = {}
        if self.parameter in ("slo", "tail"):
            cols[self.parameter] = self.slo
        cols["latency_weight"] = self.latency_weight
        cols.update(
            status=self.status,
            objective=self.objective,
            accuracy=self.accuracy,
            mean_system_time=self.mean_system_time,
            utilization=self.utilization,
            gap=self.gap,
        )
        if self.system_time_quantile is not None:
            cols["system_time_quantile"] = self.system_time_quantile
        if self.tail_bound is not None:
            cols["tail_bound"] = self.tail_bound
        if self.uniform_objective is not None:
            cols.update(
                uniform_budget=self.uniform_budget,
                uniform_objective=self.uniform_objective,
                uniform_accuracy=self.uniform_accuracy,
                uniform_mean_system_time=self.uniform_mean_system_time,
            )
        for j, name in enumerate(self.names):
            cols[f"tokens[{name}]"] = self.tokens[:, j]
        return cols

    def to_csv(self, path: str | Path | None = None) -> str:
        """One row per point; empty cells where a point has no value. Returns the text."""
        cols = self.columns()
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(list(cols))
        for k in range(len(self)):
            row = []
            for v in cols.values():
                x = v[k]
                if isinstance(x, str):
                    row.append(x)
                else:
                    row.append("" if not np.isfinite(x) else repr(float(x)))
            writer.writerow(row)
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def summary(self) -> str:
        """A plain-text table, one row per point (what ``cvxalloc sweep`` prints)."""
        label = {"slo": "SLO s", "tail": "tail SLO s"}.get(self.parameter, "latency_wt")
        head = (
            f"{label:>11}  {'status':<18} {'utility':>10} {'accuracy':>9} {'W s':>9} "
            f"{'rho':>6} {'gap':>8}"
        )
        tail = self.system_time_quantile is not None
        if tail:
            p = f"p{100 * self.quantile:g} s"
            head += f" {p:>9}" + (f" {'bound s':>9}" if self.tail_bound is not None else "")
        uniform = self.uniform_objective is not None
        if uniform:
            head += f" {'uniform U':>10} {'gain %':>7}"
        title = f"cvxalloc sweep: method {self.method}, {len(self)} points"
        lines = [title, "", head, "-" * len(head)]
        for k in range(len(self)):
            row = f"{self.values[k]:>11.4g}  {self.status[k]:<18}"
            if np.isfinite(self.objective[k]):
                row += (
                    f" {self.objective[k]:>10.6f} {self.accuracy[k]:>9.5f} "
                    f"{self.mean_system_time[k]:>9.3f} {self.utilization[k]:>6.3f} "
                    f"{self.gap[k]:>8.1e}"
                )
                if tail:
                    row += f" {self.system_time_quantile[k]:>9.4g}"
                    if self.tail_bound is not None:
                        row += f" {self.tail_bound[k]:>9.4g}"
                if uniform and np.isfinite(self.uniform_objective[k]):
                    base = self.uniform_objective[k]
                    gain = 100 * (self.objective[k] - base) / abs(base)
                    row += f" {self.uniform_objective[k]:>10.6f} {gain:>7.2f}"
            lines.append(row.rstrip())
        if self.tail_bound is not None:
            lines += [
                "",
                f"(p{100 * self.quantile:g}: the exact percentile at the optimum; bound: the "
                "convex surrogate the tail SLO holds, docs/tail.md)",
            ]
        bad = [(self.values[k], m) for k, m in enumerate(self.messages) if m]
        if bad:
            lines.append("")
            v, m = bad[0]
            lines.append(f"{len(bad)} point(s) without a solution; first ({v:.4g}): {m}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the arrays as lists (``null`` for missing values)."""

        def clean(a: Any) -> Any:
            arr = np.asarray(a)
            if arr.dtype.kind in "US O":
                return [str(x) for x in arr.tolist()]
            return jsonable(arr.astype(float))

        out: dict[str, Any] = {
            "parameter": self.parameter,
            "method": self.method,
            "names": list(self.names),
        }
        for key in (
            "latency_weight",
            "slo",
            "objective",
            "accuracy",
            "mean_system_time",
            "utilization",
            "gap",
            "status",
            "tokens",
            "uniform_budget",
            "uniform_objective",
            "uniform_accuracy",
            "uniform_mean_system_time",
            "system_time_quantile",
            "tail_bound",
        ):
            val = getattr(self, key)
            if val is not None:
                out[key] = clean(val)
        if self.quantile is not None:
            out["quantile"] = self.quantile
        out["messages"] = list(self.messages)
        return out

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text of :meth:`to_dict` (written to ``path`` if given)."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text


# ---------------------------------------------------------------------------
# sweeps


def _grid(values: Any, name: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values, dtype=float))
    if arr.ndim != 1 or arr.size == 0:
        raise CvxallocError(f"{name}: give at least one value")
    if not np.all(np.isfinite(arr)):
        raise CvxallocError(f"{name}: values must be finite numbers")
    return arr


def _progress(values: np.ndarray, desc: str, progress: bool | None):
    """``values``, wrapped in a tqdm bar on stderr when ``progress`` (default: when
    stderr is a terminal and there is more than one point)."""
    if progress is None:
        progress = values.size > 1 and bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not progress:
        return values
    from tqdm import tqdm

    return tqdm(values, unit="point", desc=desc, file=sys.stderr, leave=False)


def _run(
    scenario: Scenario,
    param: str,
    values: np.ndarray,
    method: str | None,
    uniform: bool,
    options: dict[str, Any],
    progress: bool | None = None,
    quantile: float | None = None,
) -> SweepResult:
    sc = scenario
    first = _point(sc, param, values[0], quantile) if param != "latency_weight" else sc
    name = choose_method(first, method)
    k, n = values.size, sc.n
    nan = np.full(k, np.nan)
    out = {
        key: nan.copy()
        for key in ("objective", "accuracy", "mean_system_time", "utilization", "gap")
    }
    uni = {key: nan.copy() for key in ("objective", "accuracy", "mean_system_time", "budget")}
    tokens = np.full((k, n), np.nan)
    status = np.empty(k, dtype=object)
    messages = [""] * k
    gammas = values.copy() if param == "latency_weight" else np.full(k, sc.latency_weight)
    tail = {key: nan.copy() for key in ("quantile", "bound")}

    # The conic reference: compile once with a Parameter for the swept value (DPP).
    cprob, par = (
        _compiled(sc, param, values)
        if name == "conic" and "problem" not in options
        else (None, None)
    )
    # Methods that take a warm start (the aggregate method) start from the previous point.
    warm = "warm_start" not in options
    prev = None
    t0 = time.perf_counter()
    points = _progress(values, f"sweep {param}", progress)
    for j, v in enumerate(points):
        try:
            sc_j = _point(sc, param, v, quantile)
            opts = dict(options)
            if cprob is not None:
                par.value = float(v)
                opts["problem"] = cprob
            if warm:
                opts.update(warm_options(sc_j, prev, name))
            res = solve(sc_j, method=name, **opts)
            prev = res if res.status in st.SOLUTION_PRESENT else None
        except OptionError:  # a bad option is wrong at every point: say so once
            raise
        except CvxallocError as exc:
            status[j] = INFEASIBLE if isinstance(exc, InfeasibleError) else INVALID
            messages[j] = str(exc)
            continue
        status[j] = res.status
        tokens[j] = res.tokens
        _record(out, j, res)
        if quantile is not None:
            _record_tail(tail, j, res, quantile)
        if uniform:
            _record_uniform(uni, j, best_uniform(sc_j))
    elapsed = time.perf_counter() - t0
    if points is not values:
        points.close()
    return SweepResult(
        parameter=param,
        latency_weight=gammas,
        slo=None if param == "latency_weight" else values.copy(),
        quantile=quantile,
        system_time_quantile=tail["quantile"] if quantile is not None else None,
        tail_bound=tail["bound"] if param == "tail" else None,
        status=status.astype(str),
        tokens=tokens,
        names=list(sc.names),
        method=name,
        uniform_objective=uni["objective"] if uniform else None,
        uniform_accuracy=uni["accuracy"] if uniform else None,
        uniform_mean_system_time=uni["mean_system_time"] if uniform else None,
        uniform_budget=uni["budget"] if uniform else None,
        messages=messages,
        timing={"total": elapsed, "per_point": elapsed / k},
        **out,
    )


def _compiled(sc: Scenario, param: str, values: np.ndarray):
    """The conic problem with a CVXPY Parameter for the swept value, and that Parameter.

    ``(None, None)`` when the scenario cannot be compiled (each point then
    reports its own error).
    """
    import cvxpy as cp

    from .solvers.conic import ConicProblem

    if param == "tail":  # eta_0 moves with T0 inside the cones: no Parameter, one build a point
        return None, None
    try:
        if param == "latency_weight":
            par = cp.Parameter(nonneg=True, value=float(max(values[0], 0.0)))
            return ConicProblem(sc, latency_weight=par), par
        par = cp.Parameter(pos=True, value=float(max(values[0], 1e-12)))
        return ConicProblem(_point(sc, param, max(values[0], 1e-12)), slo=par), par
    except CvxallocError:
        return None, None


def _record(out: dict[str, np.ndarray], j: int, res: Result) -> None:
    """The figures of point ``j``."""
    out["objective"][j], out["accuracy"][j] = res.objective, res.accuracy
    out["mean_system_time"][j], out["utilization"][j] = (res.mean_system_time, res.utilization)
    out["gap"][j] = res.certificate.gap


def _record_tail(tail: dict[str, np.ndarray], j: int, res: Result, quantile: float) -> None:
    """The exact percentile of point ``j`` and, under a tail SLO, the surrogate's bound."""
    tail["quantile"][j] = res.quantiles([quantile]).seconds[0]
    entry = (res.diagnostics or {}).get("constraints", {}).get("tail")
    if entry is not None:
        tail["bound"][j] = entry["bound"]


def _record_uniform(uni: dict[str, np.ndarray], j: int, u: Result) -> None:
    """The best uniform budget's figures at point ``j``."""
    uni["objective"][j], uni["accuracy"][j] = u.objective, u.accuracy
    uni["mean_system_time"][j] = u.mean_system_time
    uni["budget"][j] = u.diagnostics.get("budget", np.nan)


def _point(sc: Scenario, param: str, value: float, quantile: float | None = None):
    if param == "latency_weight":
        return sc.with_(latency_weight=float(value))
    cons = constraints_of(sc) or Constraints()
    if param == "tail":
        return sc.with_(constraints=cons.with_(tail=TailSLO(quantile, float(value))))
    return sc.with_(constraints=cons.with_(max_mean_system_time=float(value)))


def sweep_latency_weight(
    scenario: Scenario,
    weights: Any,
    method: str | None = None,
    uniform: bool = True,
    progress: bool | None = None,
    quantile: float | None = None,
    **options: Any,
) -> SweepResult:
    """Solve for each latency weight ``gamma`` in ``weights``: the frontier.

    Parameters
    ----------
    scenario : Scenario
        Its own ``latency_weight`` is replaced at each point; its constraints
        are kept.
    weights : array_like
        The latency weights (>= 0), in any order.
    method : str, optional
        Any method of :func:`cvxalloc.solve` (default: as ``solve`` chooses;
        the conic reference is compiled once with a Parameter for ``gamma``).
    uniform : bool
        Also compute the best uniform budget at each point.
    progress : bool, optional
        Show a tqdm progress bar on stderr; default: when stderr is a
        terminal.
    quantile : float, optional
        Also record the exact ``quantile``-percentile of the system time at
        each optimum (``system_time_quantile``; e.g. 0.99).
    **options
        Passed to the method.

    Returns
    -------
    SweepResult
        Points that fail carry status ``"infeasible"`` or ``"invalid"`` and
        ``NaN`` figures (e.g. ``gamma = 0`` where the maximum budgets are
        unstable); the sweep itself does not raise for them. An option the
        method refuses (:class:`~cvxalloc.errors.OptionError`) is raised at
        once, as for :func:`cvxalloc.solve`.
    """
    w = _grid(weights, "latency weights")
    if np.any(w < 0):
        raise CvxallocError(f"latency weights must be >= 0 (got {w.min():g})")
    q = None if quantile is None else check_quantiles([quantile], "quantile")[0]
    return _run(scenario, "latency_weight", w, method, uniform, options, progress, q)


def sweep_slo(
    scenario: Scenario,
    slos: Any,
    method: str | None = None,
    uniform: bool = True,
    progress: bool | None = None,
    quantile: float | None = None,
    **options: Any,
) -> SweepResult:
    """Solve for each mean-latency SLO (``max_mean_system_time``, seconds) in ``slos``.

    The scenario's ``latency_weight`` and its other constraints are kept; an
    SLO below the mean system time at the minimum budgets gives a point with
    status ``"infeasible"`` (the message in ``messages``). See
    :func:`sweep_latency_weight` for the parameters.
    """
    s = _grid(slos, "SLO values")
    if np.any(s <= 0):
        raise CvxallocError(f"SLO values must be > 0 seconds (got {s.min():g})")
    q = None if quantile is None else check_quantiles([quantile], "quantile")[0]
    return _run(scenario, "slo", s, method, uniform, options, progress, q)


def sweep_tail(
    scenario: Scenario,
    limits: Any,
    quantile: float = 0.99,
    method: str | None = None,
    uniform: bool = True,
    progress: bool | None = None,
    **options: Any,
) -> SweepResult:
    """Solve for each tail SLO ``q_p(T) <= T0``, ``T0`` in ``limits`` (seconds): the frontier
    of accuracy against the ``p``-percentile.

    The SLO is held through its convex surrogate (:mod:`cvxalloc.constraints.tail`);
    each point records the exact percentile of its optimum
    (``system_time_quantile``, at most ``T0``) and the surrogate's bound
    (``tail_bound``, equal to ``T0`` where the SLO binds). The scenario's
    ``latency_weight`` and other constraints are kept; a ``T0`` below the
    bound at the minimum budgets gives a point with status ``"infeasible"``.
    See :func:`sweep_latency_weight` for the other parameters.
    """
    s = _grid(limits, "tail limits")
    if np.any(s <= 0):
        raise CvxallocError(f"tail limits must be > 0 seconds (got {s.min():g})")
    q = check_quantiles([quantile], "quantile")[0]
    return _run(scenario, "tail", s, method, uniform, options, progress, q)
