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

import importlib
from typing import Any

from ..io import scenario_toml

#: Public name -> the submodule that defines it. The submodules are imported on first
#: use (PEP 562): the fits need scipy.optimize, about 0.15 s that every other command
#: (whose argument parser builds `fit`'s) would pay at start-up.
_WHERE = {
    "build_scenario": "assemble",
    "CapacityFit": "capacity",
    "fit_capacity": "capacity",
    "per_token_note": "capacity",
    "read_throughput": "capacity",
    "server_toml": "capacity",
    "CRITERIA": "criteria",
    "TaskFit": "compare",
    "fit_task": "compare",
    "FamilyFit": "families",
    "fit_family": "families",
    "POOLED": "measurements",
    "AccuracyData": "measurements",
    "MeasurementError": "measurements",
    "ServiceData": "measurements",
    "read_accuracy_csv": "measurements",
    "read_service_csv": "measurements",
    "Calibration": "pipeline",
    "calibrate": "pipeline",
    "ServiceFit": "service",
    "fit_service": "service",
}


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


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
