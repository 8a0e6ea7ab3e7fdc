"""The whole calibration: read the CSVs, fit every task and service line, assemble the scenario."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._source import fields_source
from .assemble import _per_task, build_scenario
from .compare import TaskFit, fit_task
from .measurements import POOLED, MeasurementError, read_accuracy_csv, read_service_csv
from .service import ServiceFit, fit_service

__all__ = ["Calibration", "calibrate"]


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

    def __repr__(self) -> str:
        """Source that rebuilds the calibration (``np``, :class:`Scenario` and the
        classes of :mod:`cvxalloc.fit` in scope; the scenario by its own repr)."""
        return fields_source(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (fits, service lines, notes, and the scenario)."""
        return {
            "tasks": {k: v.to_dict() for k, v in self.tasks.items()},
            "service": {k: v.to_dict() for k, v in self.service.items()},
            "notes": list(self.notes),
            "scenario": None if self.scenario is None else self.scenario.to_dict(),
        }

    def summary(self) -> str:
        """A readable report: per task, each family's parameters +- SE and scores."""
        lines = [tf.summary() for tf in self.tasks.values()]
        for key, sf in self.service.items():
            label = "all tasks (pooled)" if key == POOLED else f'task "{key}"'
            lines.append(f"service {label}: {sf.summary()}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    #: The former name of :meth:`summary`.
    report = summary


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
    progress: bool | None = None,
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
    progress : bool, optional
        Show a tqdm progress bar on stderr, one step per task; default: when
        stderr is a terminal.
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
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    items: Any = data.items()
    if progress:
        from tqdm import tqdm

        items = tqdm(items, total=len(data), unit="task", desc="fit", file=sys.stderr, leave=False)
    for name, d in items:
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
