"""Calibration: fit accuracy curves and service lines to measurements.

Operators rarely know their accuracy curves; they have measurements. This
module turns two CSV files into a scenario that ``cvxalloc solve`` reads:

* accuracy measurements, one row per (task, budget): columns
  ``task,tokens,accuracy[,trials]`` (``accuracy`` in [0, 1]; ``trials`` the
  number of graded answers behind it, which makes the fit binomially
  weighted);
* service-time measurements, one row per query: columns
  ``tokens,seconds[,task]`` (a row without a task, or a file without the
  column, is pooled into one line used by every task without rows of its own).

Each accuracy family of :mod:`cvxalloc.accuracy` is fitted by (weighted) least
squares with :func:`scipy.optimize.least_squares` inside the family's valid
region (``0 <= floor < ceiling <= 1``, ``scale > 0``, ``exponent > 0``,
``gain > 0``); the model values come from the family classes themselves, so
the formulas live in one place. Every fit reports its parameters with
standard errors, AIC, AICc and the leave-one-out prediction error, so the
families can be compared. The service line ``s = base + per_token * tokens`` is
fitted by weighted least squares with bounds ``base >= 0``, ``per_token > 0``;
the spread of the residuals relative to the line gives ``scv``.

See ``docs/calibration.md`` for the file formats and a worked example on the
published data of ``cvxalloc/data``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares, lsq_linear

from .accuracy import FAMILIES, AccuracyCurves, AccuracyFamily
from .errors import CvxallocError
from .io import scenario_toml
from .result import jsonable
from .scenario import Scenario

__all__ = [
    "MeasurementError",
    "AccuracyData",
    "ServiceData",
    "FamilyFit",
    "TaskFit",
    "ServiceFit",
    "Calibration",
    "read_accuracy_csv",
    "read_service_csv",
    "fit_family",
    "fit_task",
    "fit_service",
    "build_scenario",
    "calibrate",
    "scenario_toml",
    "CRITERIA",
    "POOLED",
]

#: Family-selection criteria accepted by :func:`fit_task`.
CRITERIA = ("aic", "aicc", "loo")
#: Key of the pooled service line (rows without a task).
POOLED = "*"

#: Parameters that enter each family linearly (used for starting values) and
#: nonlinearly (searched on a grid before the least-squares refinement).
_LINEAR = {
    "exponential": ("floor", "ceiling"),
    "power": ("floor", "ceiling"),
    "logarithmic": ("floor", "gain"),
}
_NONLINEAR = {"exponential": ("scale",), "power": ("scale", "exponent"), "logarithmic": ("scale",)}
_EXPONENT_GRID = (0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
_TINY = 1e-9


class MeasurementError(CvxallocError):
    """A measurement file is invalid, or the data cannot support a fit."""


# ----------------------------------------------------------------------------
# Reading the CSV files
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class AccuracyData:
    """Accuracy measurements of one task.

    Attributes
    ----------
    tokens, accuracy : ndarray
        Budgets and measured accuracies (in [0, 1]).
    trials : ndarray or None
        Graded answers behind each accuracy (binomial weights), if given.
    rows : ndarray
        Line numbers in the CSV (for messages).
    """

    tokens: np.ndarray
    accuracy: np.ndarray
    trials: np.ndarray | None = None
    rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class ServiceData:
    """Service-time measurements of one line (a task, or pooled)."""

    tokens: np.ndarray
    seconds: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)


def _read_rows(path: str | Path, what: str, required: Sequence[str]):
    """Header and data rows of a CSV (``#`` lines are comments), with line numbers."""
    path = Path(path)
    if not path.is_file():
        raise MeasurementError(f"{what} CSV {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MeasurementError(f"{what} CSV {str(path)!r} cannot be read: {exc}") from None
    lines = [
        (n, line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise MeasurementError(
            f"{what} CSV {str(path)!r} is empty (expected a header row "
            f"with columns {','.join(required)})"
        )
    reader = csv.reader([line for _, line in lines])
    header = [h.strip().lower() for h in next(reader)]
    missing = [c for c in required if c not in header]
    if missing:
        raise MeasurementError(
            f"{what} CSV {str(path)!r}: missing column {missing[0]!r} "
            f"(found columns: {', '.join(header) or 'none'}; required: {', '.join(required)})"
        )
    rows = []
    for (lineno, _), values in zip(lines[1:], reader):
        if len(values) != len(header):
            raise MeasurementError(
                f"{what} CSV {str(path)!r} line {lineno}: {len(values)} fields, "
                f"header has {len(header)}"
            )
        rows.append((lineno, dict(zip(header, (v.strip() for v in values)))))
    if not rows:
        raise MeasurementError(f"{what} CSV {str(path)!r} has a header but no data rows")
    return str(path), header, rows


def _num(where: str, column: str, text: str) -> float:
    try:
        val = float(text)
    except ValueError:
        raise MeasurementError(
            f"{where}: column {column!r} must be a number (got {text!r})"
        ) from None
    if not math.isfinite(val):
        raise MeasurementError(f"{where}: column {column!r} must be finite (got {text!r})")
    return val


def read_accuracy_csv(path: str | Path) -> dict[str, AccuracyData]:
    """Read accuracy measurements: columns ``task,tokens,accuracy[,trials]``.

    Parameters
    ----------
    path : str or Path
        The CSV file. Extra columns are ignored; lines starting with ``#`` are
        comments. ``trials`` may be given for all rows of a task or none.

    Returns
    -------
    dict
        Task name -> :class:`AccuracyData`, in order of first appearance.

    Raises
    ------
    MeasurementError
        Missing file or column, a non-numeric value, ``tokens < 0``,
        ``accuracy`` outside [0, 1], ``trials`` not a positive count, or
        ``trials`` given for only some rows of a task; the message names the
        line and the column.
    """
    name, header, rows = _read_rows(path, "accuracy", ("task", "tokens", "accuracy"))
    has_trials = "trials" in header
    acc: dict[str, list[tuple[int, float, float, float | None]]] = {}
    for lineno, row in rows:
        where = f"accuracy CSV {name!r} line {lineno}"
        task = row["task"]
        if not task:
            raise MeasurementError(f"{where}: column 'task' is empty")
        t = _num(where, "tokens", row["tokens"])
        if t < 0:
            raise MeasurementError(f"{where}: column 'tokens' must be >= 0 (got {t:g})")
        a = _num(where, "accuracy", row["accuracy"])
        if not 0 <= a <= 1:
            hint = " (percent? divide by 100)" if 1 < a <= 100 else ""
            raise MeasurementError(
                f"{where}: column 'accuracy' must be in [0, 1] (got {a:g}){hint}"
            )
        n: float | None = None
        if has_trials and row["trials"] != "":
            n = _num(where, "trials", row["trials"])
            if n < 1 or n != round(n):
                raise MeasurementError(
                    f"{where}: column 'trials' must be a positive whole number (got {n:g})"
                )
        acc.setdefault(task, []).append((lineno, t, a, n))
    out: dict[str, AccuracyData] = {}
    for task, items in acc.items():
        given = [n is not None for *_, n in items]
        if any(given) and not all(given):
            bad = items[given.index(False)][0]
            raise MeasurementError(
                f"accuracy CSV {name!r} line {bad}: column 'trials' is empty but other rows "
                f'of task "{task}" give it; give trials for all rows of a task or none'
            )
        arr = np.array([(t, a) for _, t, a, _ in items], dtype=float)
        out[task] = AccuracyData(
            tokens=arr[:, 0],
            accuracy=arr[:, 1],
            trials=np.array([n for *_, n in items], dtype=float) if all(given) else None,
            rows=np.array([r for r, *_ in items]),
        )
    return out


def read_service_csv(path: str | Path) -> dict[str, ServiceData]:
    """Read service-time measurements: columns ``tokens,seconds[,task]``.

    One row per query: its thinking tokens and its service time in seconds
    (without queueing). Rows without a task (or a file without the column)
    form the pooled line, key :data:`POOLED`.

    Raises
    ------
    MeasurementError
        Missing file or column, non-numeric values, ``tokens < 0`` or
        ``seconds <= 0``; the message names the line and the column.
    """
    name, header, rows = _read_rows(path, "service", ("tokens", "seconds"))
    lines: dict[str, list[tuple[float, float]]] = {}
    for lineno, row in rows:
        where = f"service CSV {name!r} line {lineno}"
        t = _num(where, "tokens", row["tokens"])
        if t < 0:
            raise MeasurementError(f"{where}: column 'tokens' must be >= 0 (got {t:g})")
        s = _num(where, "seconds", row["seconds"])
        if s <= 0:
            raise MeasurementError(f"{where}: column 'seconds' must be > 0 (got {s:g})")
        task = row.get("task", "") or POOLED
        lines.setdefault(task, []).append((t, s))
    return {k: ServiceData(*np.array(v, dtype=float).T) for k, v in lines.items()}


# ----------------------------------------------------------------------------
# Accuracy fits
# ----------------------------------------------------------------------------
@dataclass
class FamilyFit:
    """One accuracy family fitted to one task's measurements.

    Attributes
    ----------
    family : str
        ``"exponential"``, ``"power"`` or ``"logarithmic"``.
    params : dict
        Fitted (and fixed) parameters, scenario-file keys.
    stderr : dict
        Standard errors of the fitted parameters (NaN where not identifiable;
        0 for fixed ones).
    fixed : tuple of str
        Parameters held at given values.
    n_points, n_params : int
        Measurements and free parameters.
    weighted : bool
        Binomial weights (``trials`` given): the standard errors use the known
        binomial variance; otherwise they use the residual variance.
    rss : float
        Residual sum of squares (accuracy units).
    chi2 : float or None
        Weighted residual sum of squares (weighted fits only).
    aic, aicc : float
        Akaike information criterion and its small-sample correction
        (``inf`` where ``n_points <= n_params + 1``).
    loo_rmse : float
        Leave-one-out root-mean-square prediction error (NaN if
        ``n_points <= n_params``).
    at_bound : list of str
        Parameters that ended on a bound of the valid region (their standard
        errors are not reliable).
    """

    family: str
    params: dict[str, float]
    stderr: dict[str, float]
    fixed: tuple[str, ...]
    n_points: int
    n_params: int
    weighted: bool
    rss: float
    chi2: float | None
    aic: float
    aicc: float
    loo_rmse: float
    at_bound: list[str] = field(default_factory=list)

    @property
    def rmse(self) -> float:
        """Root-mean-square residual of the fit."""
        return math.sqrt(self.rss / self.n_points)

    def curve(self) -> AccuracyFamily:
        """The fitted curve as a :mod:`cvxalloc.accuracy` family instance."""
        return _family(self.family, self.params)

    def score(self, criterion: str) -> float:
        """The value of a selection criterion (smaller is better)."""
        return {"aic": self.aic, "aicc": self.aicc, "loo": self.loo_rmse}[criterion]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return jsonable(
            {
                "family": self.family,
                "params": self.params,
                "stderr": self.stderr,
                "fixed": list(self.fixed),
                "n_points": self.n_points,
                "n_params": self.n_params,
                "weighted": self.weighted,
                "rss": self.rss,
                "rmse": self.rmse,
                "chi2": self.chi2,
                "aic": self.aic,
                "aicc": self.aicc,
                "loo_rmse": self.loo_rmse,
                "at_bound": self.at_bound,
            }
        )


def _family(name: str, params: Mapping[str, float]) -> AccuracyFamily:
    cls = FAMILIES[name]
    return cls(**{attr: np.array([params[key]]) for key, attr in cls.params.items()})


def _model(name: str, params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
    return _family(name, params).value(t)


def _to_internal(name: str, key: str, val: float) -> float:
    """Map a parameter to the unconstrained-or-boxed coordinate the optimizer sees."""
    if key in ("scale", "exponent", "gain"):
        return math.log(val)
    return val


def _bounds(name: str, key: str) -> tuple[float, float]:
    if key in ("scale", "exponent", "gain"):
        return (-np.inf, np.inf)
    if key == "ceiling":
        return (_TINY, 1.0)
    if key == "ratio":  # floor / ceiling of the saturating families
        return (0.0, 1.0 - 1e-6)
    return (0.0, 1.0)  # floor of the logarithmic family


class _Param:
    """The map between the optimizer's vector and a family's parameters.

    Saturating families use ``(ceiling, ratio = floor / ceiling)`` so that
    ``0 <= floor < ceiling <= 1`` is a box; positive parameters are fitted on
    a log scale.
    """

    def __init__(self, name: str, fixed: Mapping[str, float]) -> None:
        self.name = name
        self.fixed = dict(fixed)
        keys = list(FAMILIES[name].params)
        saturating = "ceiling" in keys
        coords = []
        for key in keys:
            if key in self.fixed:
                continue
            coords.append("ratio" if (saturating and key == "floor") else key)
        self.coords = coords
        self.free = [("floor" if c == "ratio" else c) for c in coords]
        self.saturating = saturating

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        b = [_bounds(self.name, c) for c in self.coords]
        return np.array([x[0] for x in b]), np.array([x[1] for x in b])

    def params(self, u: np.ndarray) -> dict[str, float]:
        vals = dict(self.fixed)
        for c, x in zip(self.coords, u):
            if c in ("scale", "exponent", "gain"):
                vals[c] = math.exp(min(max(x, -300.0), 300.0))
            elif c != "ratio":
                vals[c] = float(x)
        if "ratio" in self.coords:
            vals["floor"] = float(u[self.coords.index("ratio")]) * vals["ceiling"]
        return vals

    def internal(self, params: Mapping[str, float]) -> np.ndarray:
        u = []
        for c in self.coords:
            if c == "ratio":
                u.append(params["floor"] / params["ceiling"])
            else:
                u.append(_to_internal(self.name, c, params[c]))
        lo, hi = self.bounds()
        return np.clip(np.array(u, dtype=float), lo, hi)


def _starts(
    name: str, t: np.ndarray, y: np.ndarray, w: np.ndarray, fixed: Mapping[str, float]
) -> list[dict[str, float]]:
    """Starting points: a grid over the nonlinear parameters, linear ones by WLS."""
    tpos = t[t > 0]
    tmin = float(tpos.min()) if tpos.size else 1.0
    tmax = float(t.max()) if t.max() > 0 else 1.0
    scales = [fixed["scale"]] if "scale" in fixed else list(np.geomspace(tmin / 20, tmax * 20, 25))
    expos = (
        [fixed.get("exponent", 1.0)]
        if "exponent" in fixed or name != "power"
        else list(_EXPONENT_GRID)
    )
    lin = [k for k in _LINEAR[name] if k not in fixed]
    sw = np.sqrt(w)
    cands = []
    for tau in scales:
        for eta in expos:
            base = {"scale": tau, "exponent": eta, **{k: 0.0 for k in _LINEAR[name]}}
            base.update({k: v for k, v in fixed.items() if k in _LINEAR[name]})
            offset = _model(name, _keep(name, base), t)
            cols = []
            for k in lin:
                unit = dict(base)
                unit[k] = 1.0
                cols.append(_model(name, _keep(name, unit), t) - offset)
            if cols:
                X = np.column_stack(cols)
                coef, *_ = np.linalg.lstsq(X * sw[:, None], (y - offset) * sw, rcond=None)
                base.update(dict(zip(lin, coef)))
            p = _keep(name, base)
            p = _valid(name, p)
            r = (y - _model(name, p, t)) * sw
            cands.append((float(r @ r), p))
    cands.sort(key=lambda c: c[0])
    return [p for _, p in cands[:4]]


def _keep(name: str, params: Mapping[str, float]) -> dict[str, float]:
    return {k: float(params[k]) for k in FAMILIES[name].params}


def _valid(name: str, p: dict[str, float]) -> dict[str, float]:
    """Clip a starting point into the family's valid region."""
    p = dict(p)
    if "ceiling" in p:
        p["ceiling"] = float(np.clip(p["ceiling"], 0.02, 1.0))
        p["floor"] = float(np.clip(p["floor"], 0.0, 0.98 * p["ceiling"]))
    else:
        p["floor"] = float(np.clip(p["floor"], 0.0, 1.0))
        p["gain"] = max(p["gain"], 1e-6)
    for k in ("scale", "exponent"):
        if k in p:
            p[k] = max(p[k], 1e-6)
    return p


def _weights(y_fit: np.ndarray, trials: np.ndarray | None) -> np.ndarray:
    """Inverse binomial variances ``n / (A (1 - A))`` (A kept away from 0 and 1)."""
    if trials is None:
        return np.ones_like(y_fit)
    a = np.clip(y_fit, 0.5 / trials, 1 - 0.5 / trials)
    return trials / (a * (1 - a))


def _solve(
    name: str,
    t,
    y,
    trials,
    fixed,
    start: dict[str, float] | None = None,
    weights: np.ndarray | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """Least-squares fit (with binomial reweighting); returns params and weights.

    The first pass starts from the best grid points (or from ``start`` only);
    the reweighting passes start from the previous pass's fit. Given
    ``weights``, one pass with those fixed weights.
    """
    par = _Param(name, fixed)
    lo, hi = par.bounds()
    w = _weights(y, trials) if weights is None else weights
    best: tuple[float, dict[str, float]] | None = None
    for _ in range(3 if trials is not None and weights is None else 1):
        sw = np.sqrt(w)

        def resid(u, sw=sw):
            return (_model(name, par.params(u), t) - y) * sw

        if best is not None:
            starts = [best[1]]
        elif start is not None:
            starts = [start]
        else:
            starts = _starts(name, t, y, w, fixed)
        best = None
        for p0 in starts:
            try:
                sol = least_squares(
                    resid,
                    par.internal(p0),
                    bounds=(lo, hi),
                    method="trf",
                    x_scale="jac",
                    xtol=1e-10,
                    ftol=1e-12,
                    gtol=1e-12,
                    max_nfev=500,
                )
            except ValueError:
                continue
            cost = float(sol.fun @ sol.fun)
            if best is None or cost < best[0]:
                best = (cost, par.params(sol.x))
        if best is None:
            raise MeasurementError(f"the {name} fit failed from every starting point")
        w = _weights(_model(name, best[1], t), trials)
    assert best is not None
    return best[1], w


def _stderr(
    name: str, params: dict[str, float], free: list[str], t, y, w, scale_by_residuals: bool
) -> dict[str, float]:
    """Standard errors from the Jacobian in the natural parameters (delta method)."""
    k = len(free)
    J = np.empty((len(t), k))
    for j, key in enumerate(free):
        h = 1e-6 * max(abs(params[key]), 1e-3)
        up, dn = dict(params), dict(params)
        up[key] += h
        dn[key] -= h
        J[:, j] = (_model(name, up, t) - _model(name, dn, t)) / (2 * h)
    sw = np.sqrt(w)
    Jw = J * sw[:, None]
    r = (_model(name, params, t) - y) * sw
    n = len(t)
    if scale_by_residuals:
        s2 = float(r @ r) / (n - k) if n > k else np.nan
    else:
        s2 = 1.0
    try:
        cov = np.linalg.inv(Jw.T @ Jw) * s2
        cond = np.linalg.cond(Jw.T @ Jw)
        if not np.isfinite(cond) or cond > 1e14:
            raise np.linalg.LinAlgError
        se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    except np.linalg.LinAlgError:
        se = np.full(k, np.nan)
    return {key: float(s) for key, s in zip(free, se)}


def fit_family(
    tokens: Sequence[float] | np.ndarray,
    accuracy: Sequence[float] | np.ndarray,
    family: str,
    *,
    trials: Sequence[float] | np.ndarray | None = None,
    fixed: Mapping[str, float] | None = None,
    loo: bool = True,
    task: str | None = None,
) -> FamilyFit:
    """Fit one accuracy family to (tokens, accuracy) measurements.

    Parameters
    ----------
    tokens, accuracy : array_like
        Budgets and measured accuracies in [0, 1].
    family : str
        ``"exponential"``, ``"power"`` or ``"logarithmic"``.
    trials : array_like, optional
        Graded answers behind each accuracy. Given, the fit is weighted by
        the inverse binomial variance ``n / (A (1 - A))`` (iteratively, with
        ``A`` the fitted value) and the standard errors use that known
        variance; otherwise the fit is unweighted and the standard errors use
        the residual variance ``RSS / (n - k)``.
    fixed : dict, optional
        Parameters held at given values (e.g. ``{"exponent": 0.5}``).
    loo : bool
        Compute the leave-one-out prediction error (``n`` refits).
    task : str, optional
        Task name, for error messages.

    Returns
    -------
    FamilyFit

    Raises
    ------
    MeasurementError
        Unknown family or fixed parameter, or fewer points than free parameters.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array([0, 500, 1000, 2000, 4000, 8000.0])
    >>> a = 0.8 - 0.5 * np.exp(-t / 1500)
    >>> fit = fit_family(t, a, "exponential")
    >>> round(fit.params["ceiling"], 6), round(fit.params["scale"], 3)
    (0.8, 1500.0)
    """
    where = f'task "{task}": ' if task else ""
    if family not in FAMILIES:
        raise MeasurementError(
            f"{where}unknown family {family!r}; use one of " + ", ".join(FAMILIES)
        )
    fixed = dict(fixed or {})
    for key in fixed:
        if key not in FAMILIES[family].params:
            raise MeasurementError(
                f"{where}{family} has no parameter {key!r} to fix "
                f"(its parameters: {', '.join(FAMILIES[family].params)})"
            )
    t = np.asarray(tokens, dtype=float)
    y = np.asarray(accuracy, dtype=float)
    n_tr = None if trials is None else np.asarray(trials, dtype=float)
    par = _Param(family, fixed)
    k, n = len(par.free), len(t)
    if n < k:
        raise MeasurementError(
            f"{where}{n} measurement(s), fewer than the {k} free parameters of the {family} "
            f"family ({', '.join(par.free)}); add measurements at more budgets or fix a "
            "parameter"
        )
    if len(np.unique(t)) < min(k, n):
        raise MeasurementError(
            f"{where}the {family} family needs measurements at >= {k} "
            f"distinct budgets (got {len(np.unique(t))})"
        )
    params, w = _solve(family, t, y, n_tr, fixed)
    params = {key: params[key] for key in FAMILIES[family].params}
    resid = _model(family, params, t) - y
    rss = float(resid @ resid)
    chi2 = float((resid**2) @ w) if n_tr is not None else None
    se = _stderr(family, params, par.free, t, y, w, scale_by_residuals=n_tr is None)
    stderr = {key: se.get(key, 0.0) for key in FAMILIES[family].params}
    # AIC up to a constant shared by the families fitted to the same data.
    if n_tr is not None:
        aic = chi2 + 2 * k
    else:
        aic = n * math.log(max(rss, 1e-300) / n) + 2 * k
    aicc = aic + 2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf
    loo_rmse = math.nan
    if loo and n > k and n >= 3:
        errs = []
        for j in range(n):
            keep = np.arange(n) != j
            if len(np.unique(t[keep])) < k:
                continue
            # one pass from the full fit, with its binomial weights held fixed
            pj, _ = _solve(
                family,
                t[keep],
                y[keep],
                None if n_tr is None else n_tr[keep],
                fixed,
                start=params,
                weights=w[keep],
            )
            errs.append(float(_model(family, pj, t[j : j + 1])[0] - y[j]))
        if errs:
            loo_rmse = math.sqrt(float(np.mean(np.square(errs))))
    lo_b, hi_b = par.bounds()
    u = par.internal(params)
    at_bound = [
        ("floor" if c == "ratio" else c)
        for c, x, lo, hi in zip(par.coords, u, lo_b, hi_b)
        if (np.isfinite(lo) and x <= lo + 1e-7) or (np.isfinite(hi) and x >= hi - 1e-7)
    ]
    return FamilyFit(
        family=family,
        params=params,
        stderr=stderr,
        fixed=tuple(sorted(fixed)),
        n_points=n,
        n_params=k,
        weighted=n_tr is not None,
        rss=rss,
        chi2=chi2,
        aic=aic,
        aicc=aicc,
        loo_rmse=loo_rmse,
        at_bound=at_bound,
    )


@dataclass
class TaskFit:
    """All family fits of one task and the chosen one.

    Attributes
    ----------
    task : str
    data : AccuracyData
    fits : dict
        Family name -> :class:`FamilyFit`.
    skipped : dict
        Family name -> why it was not fitted (too few points).
    chosen : str
        The family written to the scenario.
    criterion : str
        How ``chosen`` was picked (``"aic"``, ``"aicc"``, ``"loo"`` or ``"given"``).
    """

    task: str
    data: AccuracyData
    fits: dict[str, FamilyFit]
    skipped: dict[str, str]
    chosen: str
    criterion: str

    @property
    def best(self) -> FamilyFit:
        """The chosen fit."""
        return self.fits[self.chosen]

    def ranked(self) -> list[str]:
        """Fitted families, best first by the criterion (the chosen one first)."""
        crit = "aic" if self.criterion == "given" else self.criterion
        rest = sorted(
            (f.score(crit) if np.isfinite(f.score(crit)) else np.inf, f.aic, k)
            for k, f in self.fits.items()
            if k != self.chosen
        )
        return [self.chosen] + [k for *_, k in rest]

    def restrict_to(self, max_tokens: float) -> str | None:
        """Choose the best family whose curve stays <= 1 up to ``max_tokens``.

        An unbounded (logarithmic) curve fitted on short budgets can exceed 1
        when extrapolated; the scenario would be invalid. Returns a note when
        the choice changed; raises :class:`MeasurementError` if no fitted
        family is valid (or the family was given explicitly).
        """
        for k in self.ranked():
            if float(self.fits[k].curve().value(np.array([max_tokens]))[0]) <= 1.0:
                if k == self.chosen:
                    return None
                if self.criterion == "given":
                    break
                old, self.chosen = self.chosen, k
                return (
                    f'task "{self.task}": {old} (best by {self.criterion}) exceeds '
                    f"accuracy 1 by max_tokens {max_tokens:g}; using {k}"
                )
        raise MeasurementError(
            f'task "{self.task}": the fitted {self.chosen} curve exceeds accuracy 1 at '
            f"max_tokens {max_tokens:g}; lower --max-tokens for this task or use another "
            "family"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "task": self.task,
            "n_points": len(self.data),
            "weighted": self.data.trials is not None,
            "chosen": self.chosen,
            "criterion": self.criterion,
            "fits": {k: f.to_dict() for k, f in self.fits.items()},
            "skipped": dict(self.skipped),
        }


def fit_task(
    data: AccuracyData,
    families: Sequence[str] | None = None,
    *,
    fixed: Mapping[str, Mapping[str, float]] | None = None,
    criterion: str = "aic",
    task: str = "",
) -> TaskFit:
    """Fit several families to one task and choose one.

    Parameters
    ----------
    data : AccuracyData
    families : sequence of str, optional
        Families to fit (default: all three). With one family it is chosen
        (criterion ``"given"``); otherwise the one with the smallest
        ``criterion`` among those that could be fitted. A family with more
        free parameters than measurements is skipped (and reported); if none
        can be fitted, :class:`MeasurementError` says how many points are needed.
    fixed : dict, optional
        Family name -> fixed parameters.
    criterion : {"aic", "aicc", "loo"}
    task : str
        Task name, for messages.
    """
    if criterion not in CRITERIA:
        raise MeasurementError(
            f"unknown criterion {criterion!r}; use one of " + ", ".join(CRITERIA)
        )
    fams = list(families or FAMILIES)
    fixed = fixed or {}
    fits: dict[str, FamilyFit] = {}
    skipped: dict[str, str] = {}
    errors: list[str] = []
    for fam in fams:
        try:
            fits[fam] = fit_family(
                data.tokens, data.accuracy, fam, trials=data.trials, fixed=fixed.get(fam), task=task
            )
        except MeasurementError as exc:
            if len(fams) == 1:
                raise
            skipped[fam] = str(exc)
            errors.append(str(exc))
    if not fits:
        raise MeasurementError(errors[0])
    if len(fams) == 1:
        return TaskFit(task, data, fits, skipped, fams[0], "given")
    scored = [
        (f.score(criterion), name) for name, f in fits.items() if np.isfinite(f.score(criterion))
    ]
    used = criterion
    if not scored:  # e.g. AICc or LOO undefined for so few points: fall back to AIC
        used = "aic"
        scored = [(f.aic, name) for name, f in fits.items()]
    chosen = min(scored)[1]
    return TaskFit(task, data, fits, skipped, chosen, used)


# ----------------------------------------------------------------------------
# Service line
# ----------------------------------------------------------------------------
@dataclass
class ServiceFit:
    """A service-time line ``s = base + per_token * tokens`` and its spread.

    Attributes
    ----------
    base, per_token : float
        Fitted line (seconds, seconds per token).
    base_se, per_token_se : float
        Standard errors.
    scv : float
        Squared coefficient of variation of the service time around the line,
        ``mean(((s - line) / line)^2)`` with a degrees-of-freedom correction
        (the model ``Var S = scv * line^2``; ``variance = 0``).
    scv_se : float
        Standard error of ``scv`` (from the spread of the squared relative residuals).
    n_points : int
    rmse : float
        Root-mean-square residual in seconds.
    """

    base: float
    per_token: float
    base_se: float
    per_token_se: float
    scv: float
    scv_se: float
    n_points: int
    rmse: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return jsonable(dict(self.__dict__))


def fit_service(
    tokens: Sequence[float] | np.ndarray, seconds: Sequence[float] | np.ndarray, *, line: str = ""
) -> ServiceFit:
    """Fit ``seconds = base + per_token * tokens`` and the relative spread ``scv``.

    Weighted least squares with weights ``1 / line^2`` (the model's standard
    deviation is proportional to the mean), two passes from an ordinary
    least-squares start, with bounds ``base >= 0`` and ``per_token > 0``
    (:func:`scipy.optimize.lsq_linear`). ``scv`` is the weighted residual
    variance ``sum(((s - line) / line)^2) / (n - 2)``.

    Raises
    ------
    MeasurementError
        Fewer than 3 measurements, or fewer than 2 distinct token counts.
    """
    t = np.asarray(tokens, dtype=float)
    s = np.asarray(seconds, dtype=float)
    n = len(t)
    what = f"service line {line!r}" if line and line != POOLED else "service line"
    if n < 3:
        raise MeasurementError(
            f"{what}: {n} measurement(s); need >= 3 (2 for the line "
            "base + per_token, 1 more for the spread scv)"
        )
    if len(np.unique(t)) < 2:
        raise MeasurementError(
            f"{what}: all measurements are at {t[0]:g} tokens; "
            "per_token needs >= 2 distinct token counts"
        )
    X = np.column_stack([np.ones(n), t])
    w = np.ones(n)
    coef = np.zeros(2)
    for _ in range(3):
        sw = np.sqrt(w)
        sol = lsq_linear(
            X * sw[:, None],
            s * sw,
            bounds=([0.0, 1e-15], [np.inf, np.inf]),
            lsmr_tol="auto",
            method="bvls",
        )
        coef = sol.x
        w = 1.0 / np.maximum(X @ coef, 1e-12) ** 2
    line_s = X @ coef
    z2 = ((s - line_s) / line_s) ** 2
    scv = float(z2.sum() / (n - 2))
    sw = np.sqrt(w)
    Xw = X * sw[:, None]
    try:
        cov = np.linalg.inv(Xw.T @ Xw) * scv
        se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    except np.linalg.LinAlgError:
        se = np.full(2, np.nan)
    scv_se = float(np.std(z2, ddof=1) / math.sqrt(n) * n / (n - 2))
    rmse = float(np.sqrt(np.mean((s - line_s) ** 2)))
    return ServiceFit(
        base=float(coef[0]),
        per_token=float(coef[1]),
        base_se=float(se[0]),
        per_token_se=float(se[1]),
        scv=scv,
        scv_se=scv_se,
        n_points=n,
        rmse=rmse,
    )


# ----------------------------------------------------------------------------
# Scenario
# ----------------------------------------------------------------------------
def _per_task(
    name: str, values: Mapping[str, float] | float | None, task: str, default: Any = None
) -> Any:
    if values is None:
        return default
    if isinstance(values, Mapping):
        if task in values:
            return values[task]
        return values.get(POOLED, default)
    return values


def build_scenario(
    task_fits: Mapping[str, TaskFit],
    service_fits: Mapping[str, ServiceFit] | None = None,
    *,
    template=None,
    arrival_rate: float | None = None,
    latency_weight: float | None = None,
    probability: Mapping[str, float] | None = None,
    weight: Mapping[str, float] | float | None = None,
    min_tokens: Mapping[str, float] | float | None = None,
    max_tokens: Mapping[str, float] | float | None = None,
    base: Mapping[str, float] | float | None = None,
    per_token: Mapping[str, float] | float | None = None,
    scv: Mapping[str, float] | float | None = None,
    notes: list[str] | None = None,
):
    """Assemble a :class:`~cvxalloc.scenario.Scenario` from the fits.

    Precedence for every field: explicit argument, then the fit, then the
    ``template`` scenario (a :class:`Scenario`), then the default. Per-task
    arguments are dicts ``task -> value`` (key :data:`POOLED` = every task)
    or one number for all tasks.

    Without a template the tasks are the measured ones; ``arrival_rate`` and
    ``latency_weight`` are required, ``probability`` defaults to uniform,
    ``weight`` to 1, ``min_tokens`` to 0 and ``max_tokens`` to the largest
    measured budget of the task (no extrapolation beyond the data). With a
    template the tasks are the template's; each measured task must be one of
    them and gets the fitted curve (and service line, if measured).

    A chosen curve that exceeds accuracy 1 before ``max_tokens`` is replaced by
    the next best fitted family that does not (see :meth:`TaskFit.restrict_to`);
    the change is appended to ``notes``.

    Raises
    ------
    MeasurementError
        A required value is missing or a measured task is not in the template.
    ScenarioError
        The assembled scenario is invalid (e.g. probabilities not summing to 1).
    """
    service_fits = dict(service_fits or {})
    if template is not None:
        names = list(template.names)
        unknown = [t for t in task_fits if t not in names]
        if unknown:
            raise MeasurementError(
                f'measured task "{unknown[0]}" is not in the template scenario '
                f"(its tasks: {', '.join(names)})"
            )
    else:
        names = list(task_fits)
    lam = (
        arrival_rate
        if arrival_rate is not None
        else (template.arrival_rate if template is not None else None)
    )
    gamma = (
        latency_weight
        if latency_weight is not None
        else (template.latency_weight if template is not None else None)
    )
    if lam is None:
        raise MeasurementError("arrival_rate is required (give --arrival-rate or --template)")
    if gamma is None:
        raise MeasurementError("latency_weight is required (give --latency-weight or --template)")
    n = len(names)
    if probability is not None:
        missing = [t for t in names if t not in probability]
        if missing:
            raise MeasurementError(
                f'probability missing for task "{missing[0]}" '
                "(give --probability TASK=P for every task)"
            )
        extra = [t for t in probability if t not in names]
        if extra:
            raise MeasurementError(
                f'probability given for unknown task "{extra[0]}" (tasks: {", ".join(names)})'
            )

    def tmpl(attr: str, i_t: int | None, default: Any) -> Any:
        if template is None or i_t is None:
            return default
        return float(getattr(template, attr)[i_t])

    cols: dict[str, list[float]] = {
        k: []
        for k in (
            "probability",
            "weight",
            "min_tokens",
            "max_tokens",
            "base",
            "per_token",
            "scv",
            "variance",
        )
    }
    blocks: list[tuple[AccuracyFamily, np.ndarray]] = []
    for i, task in enumerate(names):
        it = names.index(task) if template is not None else None
        tf = task_fits.get(task)
        cols["probability"].append(
            probability[task] if probability is not None else tmpl("probability", it, 1.0 / n)
        )
        cols["weight"].append(_per_task("weight", weight, task, tmpl("weight", it, 1.0)))
        cols["min_tokens"].append(
            _per_task("min_tokens", min_tokens, task, tmpl("min_tokens", it, 0.0))
        )
        hi_default = float(tf.data.tokens.max()) if tf is not None else None
        hi = _per_task(
            "max_tokens",
            max_tokens,
            task,
            hi_default if template is None else tmpl("max_tokens", it, hi_default),
        )
        cols["max_tokens"].append(hi)
        sf = service_fits.get(task, service_fits.get(POOLED))
        for key in ("base", "per_token", "scv"):
            arg = {"base": base, "per_token": per_token, "scv": scv}[key]
            val = _per_task(key, arg, task, None)
            if val is None and sf is not None:
                val = getattr(sf, key)
            if val is None:
                val = tmpl(key, it, 0.0 if key != "per_token" else None)
            if val is None:
                raise MeasurementError(
                    f'task "{task}": no service time: give a service CSV with rows for it '
                    "(or pooled rows), --per-token, or --template"
                )
            cols[key].append(float(val))
        cols["variance"].append(tmpl("variance", it, 0.0) if sf is None else 0.0)
        if tf is not None:
            note = tf.restrict_to(float(hi))
            if notes is not None:
                if note:
                    notes.append(note)
                if hi > tf.data.tokens.max():
                    notes.append(
                        f'task "{task}": max_tokens {hi:g} extrapolates the curve '
                        f"beyond the largest measured budget {tf.data.tokens.max():g}"
                    )
            blocks.append((tf.best.curve(), np.array([i])))
        else:
            fam, j = template.accuracy.family_of(it)
            blocks.append((fam.take(np.array([j])) if len(fam) > 1 else fam, np.array([i])))
    return Scenario(
        names=names,
        **{k: np.array(v, dtype=float) for k, v in cols.items()},
        accuracy=AccuracyCurves(blocks, n),
        arrival_rate=float(lam),
        latency_weight=float(gamma),
        levels=[None] * n if template is None else list(template.levels),
        step=np.ones(n) if template is None else template.step,
        **(
            {}
            if getattr(template, "constraints", None) is None
            else {"constraints": template.constraints}
        ),
    )


@dataclass
class Calibration:
    """Everything :func:`calibrate` produced.

    Attributes
    ----------
    tasks : dict
        Task name -> :class:`TaskFit`.
    service : dict
        Line (task name or :data:`POOLED`) -> :class:`ServiceFit`.
    scenario : Scenario or None
        The assembled scenario (None when no scenario was requested).
    notes : list of str
        Defaults that were applied (e.g. a uniform mix).
    """

    tasks: dict[str, TaskFit]
    service: dict[str, ServiceFit]
    scenario: Any = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (fits, service lines, notes, and the scenario)."""
        return {
            "tasks": {k: v.to_dict() for k, v in self.tasks.items()},
            "service": {k: v.to_dict() for k, v in self.service.items()},
            "notes": list(self.notes),
            "scenario": None if self.scenario is None else self.scenario.to_dict(),
        }

    def report(self) -> str:
        """A readable report: per task, each family's parameters +- SE and scores."""
        lines: list[str] = []
        for name, tf in self.tasks.items():
            d = tf.data
            kind = "binomial weights (trials)" if d.trials is not None else "unweighted"
            lines.append(
                f'task "{name}": {len(d)} points, tokens {d.tokens.min():g}..'
                f"{d.tokens.max():g}, {kind}"
            )
            lines.append(
                f"  {'family':<12} {'AIC':>9} {'AICc':>9} {'LOO rmse':>9} "
                f"{'rmse':>8}  parameters (+- standard error)"
            )
            for fam, f in tf.fits.items():
                mark = "*" if fam == tf.chosen else " "
                ps = ", ".join(
                    _fmt_param(k, f.params[k], f.stderr[k], k in f.fixed)
                    for k in FAMILIES[fam].params
                )
                bound = f"  [at bound: {', '.join(f.at_bound)}]" if f.at_bound else ""
                lines.append(
                    f" {mark}{fam:<12} {f.aic:>9.3f} {_g(f.aicc):>9} "
                    f"{_g(f.loo_rmse):>9} {f.rmse:>8.4f}  {ps}{bound}"
                )
            for fam, why in tf.skipped.items():
                lines.append(f"  {fam:<12} skipped: {why}")
            lines.append(f"  chosen: {tf.chosen} ({tf.criterion})")
        for key, sf in self.service.items():
            label = "all tasks (pooled)" if key == POOLED else f'task "{key}"'
            lines.append(
                f"service {label}: {sf.n_points} points, base {sf.base:.4g} +- {sf.base_se:.2g}"
                f" s, per_token {sf.per_token:.4g} +- {sf.per_token_se:.2g} s/token, "
                f"scv {sf.scv:.3g} +- {sf.scv_se:.2g}, rmse {sf.rmse:.3g} s"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _g(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:.4g}"


def _fmt_param(key: str, val: float, se: float, fixed: bool) -> str:
    if fixed:
        return f"{key} {val:.4g} (fixed)"
    return f"{key} {val:.4g} +- {_g(se)}"


def _precheck(tasks: list[str], sfits: Mapping[str, ServiceFit], args: Mapping[str, Any]) -> None:
    """Fail fast (before the fits) on scenario arguments that cannot work."""
    if args.get("template") is not None:
        return
    for key, flag in (("arrival_rate", "--arrival-rate"), ("latency_weight", "--latency-weight")):
        if args.get(key) is None:
            raise MeasurementError(f"{key} is required (give {flag} or --template)")
    prob = args.get("probability")
    if prob is not None:
        for t in tasks:
            if t not in prob:
                raise MeasurementError(
                    f'probability missing for task "{t}" (give --probability TASK=P for every task)'
                )
    per_token = args.get("per_token")
    for t in tasks:
        if t not in sfits and POOLED not in sfits and _per_task("per_token", per_token, t) is None:
            raise MeasurementError(
                f'task "{t}": no service time: give a service CSV with rows for it '
                "(or pooled rows), --per-token, or --template"
            )


def calibrate(
    accuracy_csv: str | Path,
    service_csv: str | Path | None = None,
    *,
    families: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
    fixed: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    criterion: str = "aic",
    build: bool = True,
    **scenario_args: Any,
) -> Calibration:
    """Read the measurement CSVs, fit every task, and assemble a scenario.

    Parameters
    ----------
    accuracy_csv : str or Path
        ``task,tokens,accuracy[,trials]`` (see :func:`read_accuracy_csv`).
    service_csv : str or Path, optional
        ``tokens,seconds[,task]`` (see :func:`read_service_csv`).
    families : sequence or dict, optional
        Families to try for every task, or ``task -> families`` (key
        :data:`POOLED` for the rest). Default: all three, chosen by ``criterion``.
    fixed : dict, optional
        ``task (or POOLED) -> family -> {parameter: value}``.
    criterion : {"aic", "aicc", "loo"}
    build : bool
        Assemble the scenario (needs ``arrival_rate`` and ``latency_weight``
        or a ``template``).
    **scenario_args
        Passed to :func:`build_scenario`.

    Returns
    -------
    Calibration
    """
    data = read_accuracy_csv(accuracy_csv)
    service = read_service_csv(service_csv) if service_csv is not None else {}
    sfits = {key: fit_service(s.tokens, s.seconds, line=key) for key, s in service.items()}
    if build:
        _precheck(list(data), sfits, scenario_args)
    tasks: dict[str, TaskFit] = {}
    for name, d in data.items():
        if isinstance(families, Mapping):
            fams = families.get(name, families.get(POOLED))
        else:
            fams = families
        fx = {} if fixed is None else (fixed.get(name) or fixed.get(POOLED) or {})
        tasks[name] = fit_task(d, fams, fixed=fx, criterion=criterion, task=name)
    notes: list[str] = []
    cal = Calibration(tasks, sfits, None, notes)
    if build:
        tmpl = scenario_args.get("template")
        if scenario_args.get("probability") is None and tmpl is None:
            notes.append("no --probability given: the mix is uniform over the measured tasks")
        if scenario_args.get("max_tokens") is None and tmpl is None:
            notes.append(
                "max_tokens = the largest measured budget of each task "
                "(give --max-tokens to extrapolate)"
            )
        cal.scenario = build_scenario(tasks, sfits, notes=notes, **scenario_args)
    return cal
