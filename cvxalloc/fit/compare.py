"""Model comparison: every family fitted to a task; the best by AIC, AICc or leave-one-out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._source import fields_source
from ..accuracy import FAMILIES
from .criteria import CRITERIA
from .families import FamilyFit, fit_family
from .measurements import AccuracyData, MeasurementError

__all__ = ["CRITERIA", "TaskFit", "fit_task"]


#: Family-selection criteria accepted by :func:`fit_task`.


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

    def __repr__(self) -> str:
        """Source that rebuilds the fits (``np``, ``TaskFit``, ``AccuracyData`` and
        ``FamilyFit`` in scope)."""
        return fields_source(self)

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

    def summary(self) -> str:
        """The task's points, each family's row (``*`` the chosen) and the choice."""
        d = self.data
        kind = "binomial weights (trials)" if d.trials is not None else "unweighted"
        lines = [
            f'task "{self.task}": {len(d)} points, tokens {d.tokens.min():g}..'
            f"{d.tokens.max():g}, {kind}",
            f"  {'family':<12} {'AIC':>9} {'AICc':>9} {'LOO rmse':>9} "
            f"{'rmse':>8}  parameters (+- standard error)",
        ]
        for fam, f in self.fits.items():
            lines.append(f" {'*' if fam == self.chosen else ' '}{f.summary()}")
        for fam, why in self.skipped.items():
            lines.append(f"  {fam:<12} skipped: {why}")
        lines.append(f"  chosen: {self.chosen} ({self.criterion})")
        return "\n".join(lines)

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
