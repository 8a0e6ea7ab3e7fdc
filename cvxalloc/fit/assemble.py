"""Assembling a scenario from the fitted curves and service lines (and the operator's numbers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..accuracy import AccuracyCurves, AccuracyFamily
from ..scenario import Scenario
from .compare import TaskFit
from .measurements import POOLED, MeasurementError
from .service import ServiceFit

__all__ = ["build_scenario"]


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
