"""Assembling a scenario from the fitted curves and service lines (and the operator's numbers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..accuracy import AccuracyCurves, AccuracyFamily
from ..scenario import ARRAY_FIELDS, Scenario
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
    server: Any = None,
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

    The template's queue is kept whole: its ``arrival_scv``, its ``[server]``
    (unless ``server`` gives another one, e.g. a capacity curve fitted by
    :func:`~cvxalloc.fit.fit_capacity`) and its constraints, levels and steps.
    The scenario is validated once, with the server it will have, so a load that
    only a batching server can carry is checked against that server.

    Raises
    ------
    MeasurementError
        A required value is missing or a measured task is not in the template.
    ScenarioError
        The assembled scenario is invalid (e.g. probabilities not summing to 1).
    """
    service_fits = dict(service_fits or {})
    names = _task_names(task_fits, template)
    lam, gamma = _rates(arrival_rate, latency_weight, template)
    _check_probability(probability, names)
    given = {
        "weight": weight,
        "min_tokens": min_tokens,
        "max_tokens": max_tokens,
        "base": base,
        "per_token": per_token,
        "scv": scv,
    }
    cols: dict[str, list[float]] = {k: [] for k in ARRAY_FIELDS}
    blocks: list[tuple[AccuracyFamily, np.ndarray]] = []
    for i, task in enumerate(names):
        it = names.index(task) if template is not None else None
        tf = task_fits.get(task)
        sf = service_fits.get(task, service_fits.get(POOLED))
        row = _task_row(task, it, len(names), tf, sf, template, probability, given)
        for key in ARRAY_FIELDS:
            cols[key].append(row[key])
        curve = _task_curve(task, it, tf, row["max_tokens"], template, notes)
        blocks.append((curve, np.array([i])))
    return _scenario(names, cols, blocks, lam, gamma, template, server)


def _task_names(task_fits: Mapping[str, TaskFit], template) -> list[str]:
    """The template's tasks (every measured task must be one), else the measured ones."""
    if template is None:
        return list(task_fits)
    names = list(template.names)
    unknown = [t for t in task_fits if t not in names]
    if unknown:
        raise MeasurementError(
            f'measured task "{unknown[0]}" is not in the template scenario '
            f"(its tasks: {', '.join(names)})"
        )
    return names


def _rates(
    arrival_rate: float | None, latency_weight: float | None, template
) -> tuple[float, float]:
    """``(arrival_rate, latency_weight)``: given, else the template's; required."""
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
    return lam, gamma


def _check_probability(probability: Mapping[str, float] | None, names: list[str]) -> None:
    """A given mix names every task and no other."""
    if probability is None:
        return
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


def _from_template(template, attr: str, it: int | None, default: Any) -> Any:
    """The template's value of a per-task column for task ``it``, else ``default``."""
    if template is None or it is None:
        return default
    return float(getattr(template, attr)[it])


def _task_row(
    task: str,
    it: int | None,
    n: int,
    tf: TaskFit | None,
    sf: ServiceFit | None,
    template,
    probability: Mapping[str, float] | None,
    given: Mapping[str, Any],
) -> dict[str, Any]:
    """One task's column values (argument, else fit, else template, else default)."""

    def tmpl(attr: str, default: Any) -> Any:
        return _from_template(template, attr, it, default)

    hi_default = float(tf.data.tokens.max()) if tf is not None else None
    row = {
        "probability": (
            probability[task] if probability is not None else tmpl("probability", 1.0 / n)
        ),
        "weight": _per_task("weight", given["weight"], task, tmpl("weight", 1.0)),
        "min_tokens": _per_task("min_tokens", given["min_tokens"], task, tmpl("min_tokens", 0.0)),
        "max_tokens": _per_task(
            "max_tokens",
            given["max_tokens"],
            task,
            hi_default if template is None else tmpl("max_tokens", hi_default),
        ),
    }
    for key in ("base", "per_token", "scv"):
        val = _per_task(key, given[key], task, None)
        if val is None and sf is not None:
            val = getattr(sf, key)
        if val is None:
            val = tmpl(key, 0.0 if key != "per_token" else None)
        if val is None:
            raise MeasurementError(
                f'task "{task}": no service time: give a service CSV with rows for it '
                "(or pooled rows), --per-token, or --template"
            )
        row[key] = float(val)
    row["variance"] = tmpl("variance", 0.0) if sf is None else 0.0
    return row


def _task_curve(
    task: str, it: int | None, tf: TaskFit | None, hi: float, template, notes: list[str] | None
) -> AccuracyFamily:
    """A measured task's fitted curve (valid up to ``hi``, noted), else the template's."""
    if tf is None:
        fam, j = template.accuracy.family_of(it)
        return fam.take(np.array([j])) if len(fam) > 1 else fam
    note = tf.restrict_to(float(hi))
    if notes is not None:
        if note:
            notes.append(note)
        if hi > tf.data.tokens.max():
            notes.append(
                f'task "{task}": max_tokens {hi:g} extrapolates the curve '
                f"beyond the largest measured budget {tf.data.tokens.max():g}"
            )
    return tf.best.curve()


def _scenario(
    names: list[str],
    cols: Mapping[str, list[float]],
    blocks: list[tuple[AccuracyFamily, np.ndarray]],
    lam: float,
    gamma: float,
    template,
    server: Any = None,
) -> Scenario:
    """The scenario of the columns and curves; everything else from the template, if any."""
    n = len(names)
    fields: dict[str, Any] = {
        "names": names,
        **{k: np.array(v, dtype=float) for k, v in cols.items()},
        "accuracy": AccuracyCurves(blocks, n),
        "arrival_rate": float(lam),
        "latency_weight": float(gamma),
    }
    if server is not None:
        fields["server"] = server
    if template is not None:
        # the template's tasks in its order: its queue (arrival_scv, [server]),
        # constraints, levels and steps stay as they are
        return template.with_(**fields)
    return Scenario(**fields, levels=[None] * n, step=np.ones(n))
