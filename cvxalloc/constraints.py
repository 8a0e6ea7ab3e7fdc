"""Operator constraints: latency SLO, compute budget, utilization cap, accuracy floors.

Operators state limits more often than prices. A scenario may carry, in an
optional ``[constraints]`` table and per task:

==========================  ==========================================  ==========
key                         constraint                                  convex because
==========================  ==========================================  ==========
``max_mean_system_time``    ``W(t) <= L`` (seconds, a mean-latency SLO)  W convex
``max_mean_tokens``         ``sum_i p_i t_i <= B`` (compute budget)      linear
``max_utilization``         ``lam m1(t) <= rho_max``                     linear
``min_accuracy`` (per task) ``A_i(t_i) >= alpha_i``                      A_i concave
==========================  ==========================================  ==========

Each constraint is a *model term* (as the latency and accuracy terms are): it
evaluates numerically (value, slack, gradient) and compiles to CVXPY from the
same data, so the conic reference, the certificate and the reports cannot
disagree. ``A_i`` is strictly increasing, so ``A_i(t_i) >= alpha_i`` is exactly
the token bound ``t_i >= A_i^{-1}(alpha_i)``: min_accuracy raises the lower
bound of the box (that is its CVXPY form too: linear, well conditioned).

Every other constraint is increasing in every ``t_i``. Hence the feasible set
is non-empty exactly when the raised lower bounds ``lo'`` satisfy all of them;
:func:`check_feasible` tests that before any solve and names the constraints
that conflict, and :func:`restore_feasible` moves a solver's point (feasible
only to the solver's tolerance) back into the feasible set along ``lo' -> t``.

Certificate (:func:`certify_constrained`). For multipliers ``mu_j >= 0`` on
the constraints ``h_j(t) = value_j(t) - limit_j <= 0`` the Lagrangian
``L(x) = U(x) - sum_j mu_j h_j(x)`` is concave and bounds ``U`` on the feasible
set, so for any feasible ``t``::

    U* <= L(t) + max_{lo' <= x <= hi} grad L(t) . (x - t)
        = U(t) + sum_j mu_j slack_j + FWbox(grad U(t) - sum_j mu_j grad h_j(t))

Any ``mu >= 0`` gives a valid bound, recomputable from the scenario, ``t`` and
``mu`` alone. The multipliers are estimated from ``t`` (least squares on the
free coordinates) and the bound is minimized over them exactly one coordinate
at a time (a weighted median: all ``grad h_j > 0``). With only linear
constraints the minimum over ``mu`` is the Frank-Wolfe bound over the polytope
``box ∩ halfspaces`` (LP duality): ``kind = "frank-wolfe-polytope"``; with the
SLO it is a Lagrangian (dual) bound: ``kind = "lagrangian-frank-wolfe"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from . import status as st
from .certificate import Certificate, frank_wolfe_gap, relative_scale
from .errors import ScenarioError
from .objective import Objective
from .polish import newton_direction, polish
from .queue import Latency
from .result import Result

if TYPE_CHECKING:  # CVXPY is imported where the conic forms are built, not here.
    import cvxpy as cp

__all__ = [
    "KINDS",
    "Constraints",
    "ConstraintError",
    "InfeasibleError",
    "Term",
    "MeanSystemTime",
    "MeanTokens",
    "Utilization",
    "constraints_of",
    "slacks_of",
    "required_tokens",
    "effective_lower",
    "check_feasible",
    "restore_feasible",
    "certify_constrained",
    "lagrangian_bound",
    "constraints_from_file",
]

#: The constraint keys, in the order they are reported.
KINDS = ("max_mean_system_time", "max_mean_tokens", "max_utilization", "min_accuracy")


class ConstraintError(ScenarioError):
    """A constraint is invalid (the message names the field)."""


class InfeasibleError(ConstraintError):
    """No allocation satisfies the constraints; the message names those in conflict."""


# ---------------------------------------------------------------------------
# the scalar terms


class Term:
    """A scalar constraint ``value(t) <= limit`` that is increasing in every ``t_i``.

    Subclasses define :meth:`value`, :meth:`gradient` and :meth:`cvxpy`; the
    slack, the shadow-price conversion and the reports are shared.
    """

    kind: ClassVar[str]
    unit: ClassVar[str]
    #: What the value is, for messages.
    what: ClassVar[str]
    linear: ClassVar[bool] = True

    def __init__(self, limit: float | cp.Parameter) -> None:
        # A number, or a CVXPY Parameter (a sweep over the SLO compiles once).
        self.limit = float(limit) if isinstance(limit, (int, float, np.number)) else limit

    def __repr__(self) -> str:
        return f"{type(self).__name__}(limit={self.limit:g})"

    @property
    def name(self) -> str:
        """Key in reports (``diagnostics["constraints"]``)."""
        return self.kind

    def value(self, scenario, t: np.ndarray) -> float:  # pragma: no cover - abstract
        """The constrained quantity at ``t``."""
        raise NotImplementedError

    def gradient(self, scenario, t: np.ndarray) -> np.ndarray:  # pragma: no cover
        """``d value / dt`` (every entry >= 0)."""
        raise NotImplementedError

    def cvxpy(
        self, scenario, tokens: cp.Expression, time_unit: float, token_unit: float
    ) -> tuple[cp.Constraint | None, float]:  # pragma: no cover
        """The constraint in the conic problem's units, and that unit.

        Returns ``(constraint, unit)``: the constraint reads
        ``value / unit <= limit / unit``, so its dual times ``1 / unit`` is in
        objective units per unit of relaxation. ``None`` when it is void.
        """
        raise NotImplementedError

    def slack(self, scenario, t: np.ndarray) -> float:
        """``limit - value(t)`` (>= 0 when satisfied)."""
        return self.limit - self.value(scenario, t)


class MeanSystemTime(Term):
    """Mean-latency SLO ``W(t) <= max_mean_system_time`` (seconds); W is convex."""

    kind = "max_mean_system_time"
    unit = "s"
    what = "mean system time"
    linear = False

    def value(self, scenario, t):
        return Latency(scenario).value(np.asarray(t, dtype=float))

    def gradient(self, scenario, t):
        return Latency(scenario).gradient(np.asarray(t, dtype=float))

    def cvxpy(self, scenario, tokens, time_unit, token_unit):
        expr = Latency(scenario).cvxpy(tokens, time_unit=time_unit)
        return expr <= self.limit / time_unit, time_unit


class MeanTokens(Term):
    """Compute budget ``sum_i p_i t_i <= max_mean_tokens`` (linear)."""

    kind = "max_mean_tokens"
    unit = "tokens"
    what = "mean tokens per query"

    def coefficients(self, scenario) -> tuple[np.ndarray, float]:
        """``(c, c0)`` with ``value = c . t + c0``."""
        return scenario.probability, 0.0

    def value(self, scenario, t):
        return float(scenario.probability @ np.asarray(t, dtype=float))

    def gradient(self, scenario, t):
        return np.array(scenario.probability, dtype=float)

    def cvxpy(self, scenario, tokens, time_unit, token_unit):
        return (scenario.probability @ tokens) / token_unit <= self.limit / token_unit, token_unit


class Utilization(Term):
    """Utilization cap ``lam sum_i p_i (a_i + b_i t_i) <= max_utilization`` (linear)."""

    kind = "max_utilization"
    unit = ""
    what = "utilization"

    def coefficients(self, scenario) -> tuple[np.ndarray, float]:
        """``(c, c0)`` with ``value = c . t + c0``."""
        lam, p = scenario.arrival_rate, scenario.probability
        return lam * p * scenario.per_token, lam * float(p @ scenario.base)

    def value(self, scenario, t):
        return scenario.utilization(np.asarray(t, dtype=float))

    def gradient(self, scenario, t):
        return scenario.arrival_rate * scenario.probability * scenario.per_token

    def cvxpy(self, scenario, tokens, time_unit, token_unit):
        if scenario.arrival_rate == 0:
            return None, 1.0
        c, c0 = self.coefficients(scenario)
        return c @ tokens + c0 <= self.limit, 1.0


_TERMS: dict[str, type[Term]] = {
    "max_mean_system_time": MeanSystemTime,
    "max_mean_tokens": MeanTokens,
    "max_utilization": Utilization,
}


# ---------------------------------------------------------------------------
# the model


def _opt_number(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ConstraintError(f"constraints: {key} must be a number (got {value!r})")
    value = float(value)
    if not math.isfinite(value):
        raise ConstraintError(f"constraints: {key} must be a finite number (got {value})")
    return value


@dataclass(eq=False)
class Constraints:
    """The operator constraints of a scenario (every field optional).

    Attributes
    ----------
    max_mean_system_time : float or None
        Upper bound on ``W`` in seconds (> 0).
    max_mean_tokens : float or None
        Upper bound on ``sum_i p_i t_i`` (>= 0).
    max_utilization : float or None
        Upper bound on ``rho``, in ``(0, 1]``.
    min_accuracy : ndarray or None
        Per task, a lower bound on ``A_i(t_i)`` in ``[0, 1]``; ``NaN`` where
        the task has none.
    """

    max_mean_system_time: float | None = None
    max_mean_tokens: float | None = None
    max_utilization: float | None = None
    min_accuracy: np.ndarray | None = None

    def __post_init__(self) -> None:
        for key in _TERMS:
            setattr(self, key, _opt_number(key, getattr(self, key)))
        if self.max_mean_system_time is not None and self.max_mean_system_time <= 0:
            raise ConstraintError(
                f"constraints: max_mean_system_time must be > 0 seconds "
                f"(got {self.max_mean_system_time:g})"
            )
        if self.max_mean_tokens is not None and self.max_mean_tokens < 0:
            raise ConstraintError(
                f"constraints: max_mean_tokens must be >= 0 (got {self.max_mean_tokens:g})"
            )
        if self.max_utilization is not None and not 0 < self.max_utilization <= 1:
            raise ConstraintError(
                f"constraints: max_utilization must be in (0, 1] (got {self.max_utilization:g})"
            )
        if self.min_accuracy is not None:
            m = np.atleast_1d(np.asarray(self.min_accuracy, dtype=float))
            if m.ndim != 1:
                raise ConstraintError("min_accuracy must be one value per task")
            if np.all(np.isnan(m)):
                m = None
            else:
                bad = np.flatnonzero(~np.isnan(m) & ((m < 0) | (m > 1) | ~np.isfinite(m)))
                if bad.size:
                    raise ConstraintError(
                        f"task {bad[0] + 1}: min_accuracy must be in [0, 1] (got {m[bad[0]]:g})"
                    )
                m.setflags(write=False)
            self.min_accuracy = m

    # --- structure ----------------------------------------------------------
    @property
    def empty(self) -> bool:
        """Whether no constraint is set."""
        return not self.kinds

    @property
    def kinds(self) -> list[str]:
        """The constraint keys that are set, in :data:`KINDS` order."""
        out = [k for k in _TERMS if getattr(self, k) is not None]
        if self.min_accuracy is not None:
            out.append("min_accuracy")
        return out

    def terms(self) -> list[Term]:
        """The scalar terms (SLO, token budget, utilization cap) that are set."""
        return [cls(getattr(self, k)) for k, cls in _TERMS.items() if getattr(self, k) is not None]

    def certify(self, scenario, tokens: np.ndarray, objective: Objective) -> Certificate:
        """Certificate of an allocation under these constraints (:func:`certify_constrained`)."""
        return certify_constrained(scenario, tokens, objective)

    def check(self, scenario) -> None:
        """Validate against a scenario (one min_accuracy per task); errors name the task."""
        if self.min_accuracy is not None and self.min_accuracy.size != scenario.n:
            raise ConstraintError(
                f"min_accuracy must have one entry per task ({scenario.n}), "
                f"got {self.min_accuracy.size}"
            )

    def with_(self, **changes: Any) -> Constraints:
        """A copy with some fields replaced (``None`` removes a constraint)."""
        kw = {k: getattr(self, k) for k in KINDS}
        kw.update(changes)
        return Constraints(**kw)

    def take(self, idx: Sequence[int] | np.ndarray) -> Constraints:
        """The constraints of the task subset ``idx`` (scalars unchanged)."""
        m = None if self.min_accuracy is None else self.min_accuracy[np.asarray(idx, np.intp)]
        return self.with_(min_accuracy=m)

    # --- file structure -------------------------------------------------------
    def to_table(self) -> dict[str, float]:
        """The ``[constraints]`` table (scalar constraints only)."""
        return {k: float(getattr(self, k)) for k in _TERMS if getattr(self, k) is not None}

    def write_dict(self, data: dict[str, Any]) -> dict[str, Any]:
        """Add the ``[constraints]`` table and per-task ``min_accuracy`` to a scenario dict."""
        table = self.to_table()
        if table:
            data["constraints"] = table
        if self.min_accuracy is not None:
            for task, m in zip(data["task"], self.min_accuracy):
                if not np.isnan(m):
                    task["min_accuracy"] = float(m)
        return data


def constraints_from_file(data: Mapping[str, Any], tasks: Sequence[Any]) -> Constraints | None:
    """The constraints of a scenario file (``None`` when it sets none).

    Parameters
    ----------
    data : mapping
        The whole scenario structure (reads its ``constraints`` table).
    tasks : sequence of mapping
        The ``task`` tables (reads each optional ``min_accuracy``).
    """
    table = data.get("constraints")
    if table is None:
        table = {}
    if not isinstance(table, Mapping):
        raise ConstraintError(f"constraints must be a table (got {type(table).__name__})")
    for key in table:
        if key not in _TERMS:
            import difflib

            close = difflib.get_close_matches(key, list(KINDS), n=1)
            hint = f'; did you mean "{close[0]}"?' if close else f"; allowed: {', '.join(_TERMS)}"
            if key == "min_accuracy":
                hint = "; min_accuracy is set per task ([[task]] min_accuracy = ...)"
            raise ConstraintError(f'constraints: unknown key "{key}"{hint}')
    mins = []
    for i, task in enumerate(tasks):
        val = task.get("min_accuracy") if isinstance(task, Mapping) else None
        if val is None:
            mins.append(np.nan)
            continue
        where = f'task "{task.get("name", i + 1)}"'
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            raise ConstraintError(f"{where}: min_accuracy must be a number (got {val!r})")
        if not 0 <= val <= 1:
            raise ConstraintError(f"{where}: min_accuracy must be in [0, 1] (got {val:g})")
        mins.append(float(val))
    cons = Constraints(
        **{k: table.get(k) for k in _TERMS}, min_accuracy=np.array(mins) if mins else None
    )
    return None if cons.empty else cons


# ---------------------------------------------------------------------------
# min_accuracy as a token bound


def constraints_of(scenario) -> Constraints | None:
    """The scenario's constraints, or None when it has none (or an empty set)."""
    cons = getattr(scenario, "constraints", None)
    return None if cons is None or cons.empty else cons


def required_tokens(scenario) -> np.ndarray:
    """Per task, the fewest tokens meeting its ``min_accuracy`` (``lo`` where none).

    ``A_i`` is increasing, so the bound is ``A_i^{-1}(alpha_i)``, found by
    bisection on ``[lo_i, hi_i]`` to machine precision, on the side where
    ``A_i(t) >= alpha_i`` holds in floating point. ``inf`` where even ``hi_i``
    does not reach ``alpha_i``.
    """
    sc = scenario
    lo, hi = sc.min_tokens, sc.max_tokens
    cons = constraints_of(sc)
    out = np.array(lo, dtype=float)
    if cons is None or cons.min_accuracy is None:
        return out
    alpha = cons.min_accuracy
    has = ~np.isnan(alpha)
    a_lo, a_hi = sc.accuracy.value(lo), sc.accuracy.value(hi)
    out[has & (a_hi < alpha)] = np.inf
    todo = np.flatnonzero(has & (a_lo < alpha) & (a_hi >= alpha))
    if todo.size:
        sub = sc.accuracy.take(todo)
        left, right, target = lo[todo].copy(), hi[todo].copy(), alpha[todo]
        for _ in range(200):
            mid = 0.5 * (left + right)
            moved = (mid > left) & (mid < right)
            if not moved.any():
                break
            ok = sub.value(mid) >= target
            right = np.where(moved & ok, mid, right)
            left = np.where(moved & ~ok, mid, left)
        out[todo] = right
    return out


def effective_lower(scenario) -> np.ndarray:
    """``lo' = max(lo, A^{-1}(min_accuracy))``: the box lower bound the constraints imply."""
    return np.maximum(scenario.min_tokens, required_tokens(scenario))


# ---------------------------------------------------------------------------
# feasibility


def _names(scenario, idx: np.ndarray, limit: int = 3) -> str:
    shown = ", ".join(f'"{scenario.names[i]}"' for i in idx[:limit])
    return shown + (f" and {idx.size - limit} more" if idx.size > limit else "")


def check_feasible(scenario) -> np.ndarray:
    """Raise :class:`InfeasibleError` unless some allocation meets every constraint.

    Exact and cheap: every scalar constraint is increasing in every ``t_i``,
    so the constraints are jointly feasible iff they hold at ``lo'``
    (:func:`effective_lower`). The message names the constraints in conflict
    and the value each would need.

    Returns
    -------
    ndarray
        ``lo'``.
    """
    sc = scenario
    cons = constraints_of(sc)
    if cons is None:
        return np.array(sc.min_tokens, dtype=float)
    tau = required_tokens(sc)
    if cons.min_accuracy is not None:
        bad = np.flatnonzero(~np.isfinite(tau))
        if bad.size:
            i = bad[0]
            reach = float(sc.accuracy.value(sc.max_tokens)[i])
            raise InfeasibleError(
                f'task "{sc.names[i]}": min_accuracy {cons.min_accuracy[i]:g} is above its '
                f"accuracy at max_tokens ({reach:.6g}); lower min_accuracy or raise max_tokens"
                + (f" (also infeasible: {_names(sc, bad[1:])})" if bad.size > 1 else "")
            )
    lo2 = np.maximum(sc.min_tokens, tau)
    raised = np.flatnonzero(lo2 > sc.min_tokens)
    at = "at the minimum budgets"
    blame = ""
    if raised.size:
        at = "at the smallest budgets min_accuracy allows"
        blame = f" or lower min_accuracy (tasks {_names(sc, raised)})"
    rho = sc.utilization(lo2)
    if rho >= 1:
        raise InfeasibleError(
            f"min_accuracy: the queue is unstable (utilization {rho:.4g} >= 1) {at}; "
            f"lower min_accuracy (tasks {_names(sc, raised)}) or arrival_rate"
        )
    conflicts = []
    for term in cons.terms():
        v = term.value(sc, lo2)
        if v > term.limit:
            unit = f" {term.unit}" if term.unit and term.unit != "tokens" else ""
            conflicts.append(
                f"{term.kind} = {term.limit:g}{unit} is below the {term.what} {at} "
                f"({v:.6g}{unit}); raise {term.kind} to at least {v:.6g}{unit}{blame}"
            )
    if conflicts:
        raise InfeasibleError("constraints conflict: " + "; ".join(conflicts))
    return lo2


def slacks_of(scenario, terms: Sequence[Term], t: np.ndarray) -> np.ndarray:
    """The slack of each term at ``t`` (>= 0 where satisfied)."""
    return np.array([term.slack(scenario, t) for term in terms])


def restore_feasible(scenario, tokens: np.ndarray, lower: np.ndarray | None = None) -> np.ndarray:
    """The feasible point nearest ``tokens`` on the segment from ``lo'``.

    A conic solver meets constraints only to its tolerance (~1e-9); the
    certificate needs exact feasibility. ``t`` is clipped into ``[lo', hi]``
    and, if a scalar constraint is still violated, replaced by
    ``lo' + theta (t - lo')`` with the largest ``theta`` in ``[0, 1]`` found by
    bisection (every constraint is increasing in ``theta``; ``theta = 0`` is
    feasible once :func:`check_feasible` passed).
    """
    sc = scenario
    cons = constraints_of(sc)
    lo2 = effective_lower(sc) if lower is None else lower
    t = np.clip(np.asarray(tokens, dtype=float), lo2, sc.max_tokens)
    if cons is None:
        return t
    terms = cons.terms()
    if not terms or np.all(slacks_of(sc, terms, t) >= 0):
        return t
    left, right = 0.0, 1.0
    for _ in range(100):
        mid = 0.5 * (left + right)
        if mid in (left, right):
            break
        if np.all(slacks_of(sc, terms, lo2 + mid * (t - lo2)) >= 0):
            left = mid
        else:
            right = mid
    return np.clip(lo2 + left * (t - lo2), lo2, sc.max_tokens)


# ---------------------------------------------------------------------------
# certificate


def _line_minimize(
    h: np.ndarray, c: np.ndarray, s: float, t: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> float:
    """``argmin_{nu >= 0} nu s + FWbox(h - nu c)`` for ``c >= 0`` (exact).

    The derivative is ``s + sum_i c_i (t_i - lo_i) - sum_{h_i > nu c_i} c_i (hi_i - lo_i)``,
    non-decreasing in ``nu``: the minimizer is a weighted median of ``h_i / c_i``.
    """
    pos = c > 0
    base = s + float(c[pos] @ (t[pos] - lo[pos]))
    r = h[pos] / c[pos]
    w = c[pos] * (hi[pos] - lo[pos])
    order = np.argsort(-r, kind="stable")
    cs = np.cumsum(w[order])
    k = int(np.searchsorted(cs, base, side="right"))
    if k >= r.size:
        return 0.0
    return max(0.0, float(r[order[k]]))


def lagrangian_bound(
    g: np.ndarray,
    grads: np.ndarray,
    slacks: np.ndarray,
    mu: np.ndarray,
    t: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> float:
    """``sum_j mu_j slack_j + FWbox(g - sum_j mu_j grads_j)``: a bound on ``U* - U(t)``.

    Valid for every ``mu >= 0`` and every feasible ``t`` in ``[lo, hi]``.
    ``grads`` has shape ``(m, N)``.
    """
    mu = np.maximum(np.asarray(mu, dtype=float), 0.0)
    h = g - mu @ grads if len(mu) else g
    return float(mu @ slacks) + frank_wolfe_gap(h, t, lo, hi)


def _estimate_multipliers(g, grads, slacks, limits, t, lo, hi) -> np.ndarray:
    """KKT multipliers from ``t``: nonnegative least squares on the free coordinates."""
    from scipy.optimize import nnls

    m = grads.shape[0]
    mu = np.zeros(m)
    width = hi - lo
    free = (t - lo > 1e-7 * width) & (hi - t > 1e-7 * width)
    active = np.flatnonzero(slacks <= 1e-6 * np.maximum(np.abs(limits), 1e-12))
    if not free.any() or active.size == 0:
        return mu
    A = grads[active][:, free].T
    norms = np.linalg.norm(A, axis=0)
    norms[norms == 0] = 1.0
    try:
        sol, _ = nnls(A / norms, g[free], maxiter=50 * A.shape[1] + 50)
    except RuntimeError:
        return mu
    mu[active] = sol / norms
    return mu


def certify_constrained(
    scenario, tokens: np.ndarray, objective=None, multipliers: Sequence[float] | None = None
) -> Certificate:
    """Certificate of an allocation under the scenario's constraints.

    Parameters
    ----------
    scenario : Scenario
        With ``constraints``.
    tokens : array_like
        The allocation; a point that violates a constraint gets ``gap = inf``.
    objective : Objective, optional
    multipliers : sequence of float, optional
        A starting guess for the multipliers of the scalar terms (e.g. shadow
        prices from the conic duals), in :meth:`Constraints.terms` order.

    Returns
    -------
    Certificate
        ``kind`` is ``"frank-wolfe"`` (only min_accuracy: the box ``[lo', hi]``),
        ``"frank-wolfe-polytope"`` (linear constraints) or
        ``"lagrangian-frank-wolfe"`` (the SLO); ``details["multipliers"]``
        holds the multipliers that prove the bound.
    """
    sc = scenario
    obj = objective or Objective(sc)
    cons = constraints_of(sc)
    t = np.asarray(tokens, dtype=float)
    terms = cons.terms() if cons is not None else []
    kind = (
        "lagrangian-frank-wolfe"
        if any(not tm.linear for tm in terms)
        else "frank-wolfe-polytope"
        if terms
        else "frank-wolfe"
    )
    U = obj.value(t)
    lo2 = effective_lower(sc)
    hi = sc.max_tokens
    details: dict[str, Any] = {"constraints": cons.kinds if cons is not None else []}
    if not np.isfinite(U) or np.any(t < lo2) or np.any(t > hi):
        details["infeasible"] = "outside [lo', hi] (min_tokens, min_accuracy, max_tokens)"
        return Certificate(objective=U, gap=np.inf, upper_bound=np.inf, kind=kind, details=details)
    slacks = slacks_of(sc, terms, t)
    if np.any(slacks < 0):
        details["infeasible"] = ", ".join(
            f"{tm.kind} violated by {-s:.3g}" for tm, s in zip(terms, slacks) if s < 0
        )
        return Certificate(objective=U, gap=np.inf, upper_bound=np.inf, kind=kind, details=details)
    g = obj.gradient(t)
    if not terms:
        gap = frank_wolfe_gap(g, t, lo2, hi)
        return Certificate(objective=U, gap=gap, upper_bound=U + gap, kind=kind, details=details)
    grads = np.array([tm.gradient(sc, t) for tm in terms])
    limits = np.array([tm.limit for tm in terms])
    starts = [np.zeros(len(terms)), _estimate_multipliers(g, grads, slacks, limits, t, lo2, hi)]
    if multipliers is not None:
        starts.append(np.maximum(np.asarray(multipliers, dtype=float), 0.0))
    best_mu, best = None, np.inf
    for mu in starts:
        mu = mu.copy()
        val = lagrangian_bound(g, grads, slacks, mu, t, lo2, hi)
        for _ in range(6 if len(terms) > 1 else 1):
            for j in range(len(terms)):
                others = mu.copy()
                others[j] = 0.0
                h = g - others @ grads
                mu[j] = _line_minimize(h, grads[j], float(slacks[j]), t, lo2, hi)
            new = lagrangian_bound(g, grads, slacks, mu, t, lo2, hi)
            if new >= val * (1 - 1e-12):
                val = min(val, new)
                break
            val = new
        if val < best:
            best, best_mu = val, mu.copy()
    # Report exactly the bound the multipliers prove (recomputed once more).
    gap = max(lagrangian_bound(g, grads, slacks, best_mu, t, lo2, hi), 0.0)
    details["multipliers"] = {tm.kind: float(m) for tm, m in zip(terms, best_mu)}
    return Certificate(objective=U, gap=gap, upper_bound=U + gap, kind=kind, details=details)


# ---------------------------------------------------------------------------
# conic integration


def conic_constraints(
    scenario,
    tokens: cp.Expression,
    x: cp.Variable,
    time_unit: float,
    slo: cp.Parameter | None = None,
) -> list[tuple[Any, cp.Constraint, float]]:
    """The CVXPY constraints of the scenario, as ``(term, constraint, unit)``.

    ``slo``, a CVXPY Parameter, stands for ``max_mean_system_time`` when given
    (a sweep over the SLO compiles once); the scenario must then set one.

    ``term`` is a :class:`Term` or the string ``"min_accuracy"`` (whose
    constraint bounds the normalized variable ``x``; ``unit`` is unused).
    """
    sc = scenario
    cons = constraints_of(sc)
    if cons is None:
        return []
    out: list[tuple[Any, cp.Constraint, float]] = []
    token_unit = max(float(sc.probability @ sc.max_tokens), 1.0)
    for term in cons.terms():
        if slo is not None and isinstance(term, MeanSystemTime):
            term = MeanSystemTime(slo)
        con, unit = term.cvxpy(sc, tokens, time_unit, token_unit)
        if con is not None:
            out.append((term, con, unit))
    if cons.min_accuracy is not None:
        idx = _min_accuracy_bounds(sc)
        if idx.size:
            lo, width = sc.min_tokens[idx], (sc.max_tokens - sc.min_tokens)[idx]
            xm = (required_tokens(sc)[idx] - lo) / width
            out.append(("min_accuracy", x[idx] >= np.minimum(xm, 1.0), 1.0))
    return out


def _min_accuracy_bounds(scenario) -> np.ndarray:
    """Tasks whose min_accuracy raises the lower bound of a non-degenerate box."""
    tau = required_tokens(scenario)
    width = scenario.max_tokens - scenario.min_tokens
    return np.flatnonzero((tau > scenario.min_tokens) & (width > 0))


def constraint_report(
    scenario, tokens: np.ndarray, compiled=(), objective_scale: float = 1.0
) -> dict[str, dict[str, Any]]:
    """Slack and shadow price of every constraint at ``tokens``.

    Parameters
    ----------
    scenario : Scenario
    tokens : ndarray
        The reported allocation (slacks are evaluated here).
    compiled : sequence
        ``(term, constraint, unit)`` from :func:`conic_constraints` after the
        solve; their duals give the shadow prices.
    objective_scale : float
        The factor the conic objective was multiplied by.

    Returns
    -------
    dict
        ``name -> {"kind", "limit", "value", "slack", "shadow_price", "unit",
        "active"}``; ``shadow_price`` is utility gained per unit of relaxation
        (per second of SLO, per token of mean budget, per unit of utilization,
        per unit of accuracy), ``None`` where no dual is known. Per-task
        min_accuracy entries are named ``min_accuracy[task]``.
    """
    sc = scenario
    cons = constraints_of(sc)
    if cons is None:
        return {}
    t = np.asarray(tokens, dtype=float)
    duals: dict[str, Any] = {}
    for term, con, unit in compiled:
        key = term if isinstance(term, str) else term.kind
        dv = con.dual_value
        if dv is not None:
            duals[key] = np.asarray(dv, dtype=float) / (objective_scale * unit)
    out: dict[str, dict[str, Any]] = {}
    for term in cons.terms():
        value = term.value(sc, t)
        slack = term.limit - value
        dual = duals.get(term.kind)
        price = float(np.ravel(dual)[0]) if dual is not None else (0.0 if compiled else None)
        out[term.kind] = {
            "kind": term.kind,
            "limit": term.limit,
            "value": value,
            "slack": slack,
            "shadow_price": price,
            "unit": term.unit,
            "active": bool(slack <= 1e-6 * max(abs(term.limit), 1e-12)),
        }
    if cons.min_accuracy is not None:
        alpha = cons.min_accuracy
        acc = sc.accuracy.value(t)
        tau = required_tokens(sc)
        idx = _min_accuracy_bounds(sc)
        prices = np.zeros(sc.n) if compiled else np.full(sc.n, np.nan)
        if "min_accuracy" in duals and idx.size:
            width = (sc.max_tokens - sc.min_tokens)[idx]
            # dual per unit of x -> per token (/width) -> per unit of accuracy (/A').
            prices[idx] = duals["min_accuracy"] / (width * sc.accuracy.d1(tau)[idx])
        for i in np.flatnonzero(~np.isnan(alpha)):
            slack = float(acc[i] - alpha[i])
            out[f"min_accuracy[{sc.names[i]}]"] = {
                "kind": "min_accuracy",
                "task": sc.names[i],
                "limit": float(alpha[i]),
                "value": float(acc[i]),
                "slack": slack,
                "shadow_price": None if np.isnan(prices[i]) else float(prices[i]),
                "unit": "accuracy",
                "active": bool(slack <= 1e-9 or t[i] <= tau[i]),
            }
    return out


def finish(
    scenario,
    tokens: np.ndarray,
    objective=None,
    *,
    polish_rtol: float = 1e-10,
    polish_steps: int = 50,
) -> tuple[np.ndarray, int, str]:
    """Make a solver's point exactly feasible and polish it where that is safe.

    * The point is restored into the feasible set (:func:`restore_feasible`).
    * Only min_accuracy (a box ``[lo', hi]``): the projected Newton polish of
      :mod:`cvxalloc.polish` on that box, exact.
    * Scalar constraints: the box polish is tried and kept only if its point
      satisfies every constraint and has a higher utility (typically when no
      constraint is active); otherwise the restored solver point is returned
      unpolished, with the certificate it can prove.

    Returns
    -------
    tokens : ndarray
    steps : int
        Newton steps kept (0 if none).
    note : str
        What was done, for ``solver_stats["polish"]``.
    """

    sc = scenario
    obj = objective or Objective(sc)
    cons = constraints_of(sc)
    lo2 = effective_lower(sc)
    t = restore_feasible(sc, tokens, lo2)
    if polish_steps <= 0:
        return t, 0, "restored feasibility; polish disabled"
    terms = cons.terms() if cons is not None else []
    try:
        box = sc.with_(min_tokens=lo2, levels=[None] * sc.n, constraints=None)
    except ScenarioError:
        # gamma = 0 with an unstable box: only the constraints bound the problem.
        tc, steps = _constrained_polish(sc, t, obj, lo2, terms, polish_rtol, polish_steps)
        return tc, steps, "active-set Newton on the KKT system (box alone is unbounded)"
    box_obj = Objective(box)
    tp, info = polish(box, t, rtol=polish_rtol, max_steps=polish_steps, objective=box_obj)
    if not terms:
        return tp, info.steps, "projected Newton on the box [lo', hi] (min_accuracy bounds)"
    if info.steps > 0 and np.all(slacks_of(sc, terms, tp) >= 0) and obj.value(tp) >= obj.value(t):
        return tp, info.steps, "box polish kept: no constraint active at the polished point"
    tc, steps = _constrained_polish(sc, t, obj, lo2, terms, polish_rtol, polish_steps)
    return (
        tc,
        steps,
        ("active-set Newton on the KKT system (steps kept only when the certified gap shrinks)"),
    )


def _constrained_polish(sc, t, obj, lo2, terms, rtol, max_steps) -> tuple[np.ndarray, int]:
    """Active-set Newton steps for ``max U`` s.t. the active constraints as equalities.

    The Hessian of the Lagrangian keeps the diagonal-plus-rank-2 form (the SLO
    adds ``nu_W Hess W``, linear constraints nothing), so each step costs a few
    O(N) Woodbury solves plus an ``m x m`` system for the multipliers. A step
    is restored to exact feasibility and kept only if the certified gap
    (:func:`certify_constrained`) shrinks, so the result is never worse than
    the start and its certificate is exactly what it proves.
    """

    hi = sc.max_tokens
    width = hi - lo2
    slo = [j for j, tm in enumerate(terms) if not tm.linear]
    cert = certify_constrained(sc, t, obj)
    mu = np.array([cert.details.get("multipliers", {}).get(tm.kind, 0.0) for tm in terms])
    gap = cert.gap
    steps = 0
    lat = Latency(sc)
    for _ in range(max_steps):
        U = obj.value(t)
        if not np.isfinite(gap) or gap <= rtol * relative_scale(U):
            break
        g = obj.gradient(t)
        grads = np.array([tm.gradient(sc, t) for tm in terms])
        slacks = slacks_of(sc, terms, t)
        d, V, M = obj.hessian_parts(t)
        if slo:
            dW, _, MW = lat.hessian_parts(t)
            d, M = d + mu[slo[0]] * dW, M + mu[slo[0]] * MW
        gl = g - mu @ grads
        # Bertsekas' epsilon-active set: near a bound with the Lagrangian gradient
        # pointing out, a variable is fixed and moved onto the bound.
        eps = 1e-6 * width
        at_lo = (t - lo2 <= eps) & (gl <= 0)
        at_hi = (hi - t <= eps) & (gl >= 0) & ~at_lo
        free = ~(at_lo | at_hi) & (width > 0)
        if not free.any():
            break
        snap = np.zeros_like(t)
        snap[at_lo] = lo2[at_lo] - t[at_lo]
        snap[at_hi] = hi[at_hi] - t[at_hi]
        limits = np.array([tm.limit for tm in terms])
        active = [
            j
            for j in range(len(terms))
            if mu[j] > 0 or slacks[j] <= 1e-6 * max(abs(limits[j]), 1e-12)
        ]
        Kg = newton_direction(d, V, M, g, free)
        KC = {j: newton_direction(d, V, M, grads[j], free) for j in active}
        nu = np.zeros(len(terms))
        while active:
            S = np.array([[grads[j] @ KC[k] for k in active] for j in active])
            rhs = np.array([grads[j] @ Kg - slacks[j] + grads[j] @ snap for j in active])
            try:
                sol = np.linalg.solve(S, rhs)
            except np.linalg.LinAlgError:
                sol = np.linalg.lstsq(S, rhs, rcond=None)[0]
            if np.all(sol >= 0):
                nu[active] = sol
                break
            active.pop(int(np.argmin(sol)))
        step = snap + Kg - sum((nu[j] * KC[j] for j in active), np.zeros_like(Kg))
        accepted = False
        alpha = 1.0
        for _ in range(30):
            cand = np.clip(t + alpha * step, lo2, hi)
            for j in slo:
                # Second-order correction: W is convex, so a step that keeps it
                # constant to first order overshoots; move back along K^{-1} grad W.
                dj = KC.get(j)
                for _ in range(3):
                    viol = -terms[j].slack(sc, cand)
                    if dj is None or not viol > 0:
                        break
                    curv = float(terms[j].gradient(sc, cand) @ dj)
                    if not curv > 0:
                        break
                    cand = np.clip(cand - (viol / curv) * dj, lo2, hi)
            cand = restore_feasible(sc, cand, lo2)
            cc = certify_constrained(sc, cand, obj, multipliers=nu)
            if cc.gap < gap:
                t, gap, accepted = cand, cc.gap, True
                mu = np.array([cc.details["multipliers"].get(tm.kind, 0.0) for tm in terms])
                break
            alpha *= 0.5
        if not accepted:
            break
        steps += 1
    return t, steps


def single_point(scenario, lower: np.ndarray, rtol: float = 1e-12) -> bool:
    """Whether a scalar constraint is tight at ``lo'``, leaving ``lo'`` the only feasible point.

    Every scalar constraint has a positive gradient in every ``t_i``, so if one
    holds with equality at ``lo'`` no other allocation meets it. Conic solvers
    struggle with such a one-point feasible set; the answer is known exactly.
    """
    cons = constraints_of(scenario)
    if (
        cons is None
        or scenario.arrival_rate == 0
        and any(isinstance(tm, Utilization) for tm in cons.terms())
    ):
        return False
    return any(tm.slack(scenario, lower) <= rtol * max(abs(tm.limit), 1.0) for tm in cons.terms())


def single_point_result(scenario, lower: np.ndarray, method: str = "conic"):
    """The result when :func:`single_point` holds: ``lo'``, certified, no shadow prices."""

    obj = Objective(scenario)
    t = restore_feasible(scenario, lower, lower)
    return Result.from_tokens(
        scenario,
        t,
        method=method,
        status=st.OPTIMAL,
        objective=obj,
        diagnostics={"constraints": constraint_report(scenario, t)},
        message="a constraint holds with equality at the smallest budgets: they are the "
        "only feasible allocation (no solve needed)",
    )
