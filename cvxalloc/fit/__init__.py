"""Calibration: fit accuracy curves and service lines to measurements.

Layer: workflows.

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

Modules
-------
measurements  reading the accuracy and service-time CSVs
families      fitting one accuracy family (least squares, standard errors, AIC, LOO)
compare       choosing a family per task (AIC, AICc, leave-one-out)
service       the service line and its spread
assemble      a scenario from the fits and the operator's numbers
pipeline      :func:`calibrate`: all of the above in one call
capacity      a batching server's capacity curve from measured throughputs
"""

from __future__ import annotations

from ..io import scenario_toml
from .assemble import build_scenario
from .capacity import CapacityFit, fit_capacity, per_token_note, read_throughput, server_toml
from .compare import CRITERIA, TaskFit, fit_task
from .families import FamilyFit, fit_family
from .measurements import (
    POOLED,
    AccuracyData,
    MeasurementError,
    ServiceData,
    read_accuracy_csv,
    read_service_csv,
)
from .pipeline import Calibration, calibrate
from .service import ServiceFit, fit_service

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
    "CapacityFit",
    "fit_capacity",
    "per_token_note",
    "read_throughput",
    "server_toml",
]
