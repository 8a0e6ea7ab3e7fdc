"""Fitting one accuracy family to one task's points: weighted least squares in the valid region.

The model values come from the family classes of :mod:`cvxalloc.accuracy`
(the formulas live in one place); starting values come from the parameters
that enter linearly and a grid over the others. Every fit reports standard
errors, AIC, AICc and the leave-one-out prediction error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from .._source import fields_source
from ..accuracy import FAMILIES, AccuracyFamily
from ..result import jsonable
from .measurements import MeasurementError

__all__ = ["FamilyFit", "fit_family"]


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

    def __repr__(self) -> str:
        """Source that rebuilds the fit (``FamilyFit`` in scope; floats exact)."""
        return fields_source(self)

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

    def summary(self) -> str:
        """One row: family, AIC, AICc, leave-one-out and plain rmse, parameters +- SE."""
        ps = ", ".join(
            _param(k, self.params[k], self.stderr[k], k in self.fixed)
            for k in FAMILIES[self.family].params
        )
        bound = f"  [at bound: {', '.join(self.at_bound)}]" if self.at_bound else ""
        return (
            f"{self.family:<12} {self.aic:>9.3f} {number(self.aicc):>9} "
            f"{number(self.loo_rmse):>9} {self.rmse:>8.4f}  {ps}{bound}"
        )

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
    fixed = _checked_fixed(family, fixed, where)
    t = np.asarray(tokens, dtype=float)
    y = np.asarray(accuracy, dtype=float)
    n_tr = None if trials is None else np.asarray(trials, dtype=float)
    par = _Param(family, fixed)
    k, n = len(par.free), len(t)
    _check_points(family, par.free, t, where)
    params, w = _solve(family, t, y, n_tr, fixed)
    params = {key: params[key] for key in FAMILIES[family].params}
    resid = _model(family, params, t) - y
    rss = float(resid @ resid)
    chi2 = float((resid**2) @ w) if n_tr is not None else None
    se = _stderr(family, params, par.free, t, y, w, scale_by_residuals=n_tr is None)
    aic, aicc = _information_criteria(rss, chi2, n, k)
    return FamilyFit(
        family=family,
        params=params,
        stderr={key: se.get(key, 0.0) for key in FAMILIES[family].params},
        fixed=tuple(sorted(fixed)),
        n_points=n,
        n_params=k,
        weighted=n_tr is not None,
        rss=rss,
        chi2=chi2,
        aic=aic,
        aicc=aicc,
        loo_rmse=_loo_rmse(family, t, y, n_tr, fixed, params, w, k) if loo else math.nan,
        at_bound=_at_bound(par, params),
    )


def _checked_fixed(family: str, fixed: Mapping[str, float] | None, where: str) -> dict[str, float]:
    """The fixed parameters as a dict, after checking the family and its parameter names."""
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
    return fixed


def _check_points(family: str, free: list[str], t: np.ndarray, where: str) -> None:
    """At least as many points, and distinct budgets, as free parameters."""
    k, n = len(free), len(t)
    if n < k:
        raise MeasurementError(
            f"{where}{n} measurement(s), fewer than the {k} free parameters of the {family} "
            f"family ({', '.join(free)}); add measurements at more budgets or fix a "
            "parameter"
        )
    if len(np.unique(t)) < min(k, n):
        raise MeasurementError(
            f"{where}the {family} family needs measurements at >= {k} "
            f"distinct budgets (got {len(np.unique(t))})"
        )


def _information_criteria(rss: float, chi2: float | None, n: int, k: int) -> tuple[float, float]:
    """AIC (up to a constant shared by the families fitted to the same data) and AICc."""
    if chi2 is not None:
        aic = chi2 + 2 * k
    else:
        aic = n * math.log(max(rss, 1e-300) / n) + 2 * k
    aicc = aic + 2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf
    return aic, aicc


def _loo_rmse(
    family: str,
    t: np.ndarray,
    y: np.ndarray,
    n_tr: np.ndarray | None,
    fixed: Mapping[str, float],
    params: dict[str, float],
    w: np.ndarray,
    k: int,
) -> float:
    """Leave-one-out prediction error: each point predicted by a refit without it.

    Each refit is one pass from the full fit, with its binomial weights held
    fixed. NaN when there are too few points (``n <= k`` or ``n < 3``).
    """
    n = len(t)
    if not (n > k and n >= 3):
        return math.nan
    errs = []
    for j in range(n):
        keep = np.arange(n) != j
        if len(np.unique(t[keep])) < k:
            continue
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
    return math.sqrt(float(np.mean(np.square(errs)))) if errs else math.nan


def _at_bound(par: _Param, params: Mapping[str, float]) -> list[str]:
    """Parameters that ended on a bound of the valid region."""
    lo_b, hi_b = par.bounds()
    u = par.internal(params)
    return [
        ("floor" if c == "ratio" else c)
        for c, x, lo, hi in zip(par.coords, u, lo_b, hi_b)
        if (np.isfinite(lo) and x <= lo + 1e-7) or (np.isfinite(hi) and x >= hi - 1e-7)
    ]


def number(x: float) -> str:
    """``x`` to 4 significant digits, ``-`` where it is not finite (no value)."""
    return "-" if not np.isfinite(x) else f"{x:.4g}"


def _param(key: str, val: float, se: float, fixed: bool) -> str:
    if fixed:
        return f"{key} {val:.4g} (fixed)"
    return f"{key} {val:.4g} +- {number(se)}"
