"""The service line ``seconds = base + per_token * tokens`` and its spread (``scv``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import lsq_linear

from .._source import fields_source
from ..result import jsonable
from .measurements import POOLED, MeasurementError

__all__ = ["ServiceFit", "fit_service"]


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

    def __repr__(self) -> str:
        """Source that rebuilds the fit (``ServiceFit`` in scope; floats exact).

        >>> ServiceFit(0.5, 0.01, 0.02, 1e-4, 0.3, float("nan"), 30, 0.1)
        ServiceFit(base=0.5, per_token=0.01, base_se=0.02, per_token_se=0.0001, scv=0.3, \
scv_se=float('nan'), n_points=30, rmse=0.1)
        """
        return fields_source(self)

    def summary(self) -> str:
        """One line: points, the line with standard errors, spread, rmse."""
        return (
            f"{self.n_points} points, base {self.base:.4g} +- {self.base_se:.2g}"
            f" s, per_token {self.per_token:.4g} +- {self.per_token_se:.2g} s/token, "
            f"scv {self.scv:.3g} +- {self.scv_se:.2g}, rmse {self.rmse:.3g} s"
        )

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
