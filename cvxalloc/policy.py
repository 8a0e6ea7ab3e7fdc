"""A certified budget policy over load: the optimum on a grid of arrival rates.

Traffic moves through the day, and the optimal budgets move with it. A policy
holds the certified optimum of one scenario at a grid of arrival rates, from 0
up to just below the highest stable rate, and answers for any rate in between:

* :func:`build_policy` solves at each grid rate (warm-started from the nearest
  solved rate; every grid point is certified), then refines the grid where the
  interpolation is poor: each interval is probed at interior rates and split at
  its midpoint while the proven gap of the answer at a probe exceeds
  ``tolerance`` (default 1e-4) of ``max(|U|, weighted accuracy)`` there (``U``
  crosses 0 where the latency cost equals the accuracy, and no bound is small
  relative to 0). Intervals where a type that matters reaches or leaves a bound
  are probed closer to their ends.
* :class:`Policy` (from :func:`load_policy`) answers ``budgets(rate)`` and
  ``gap(rate)``.

How ``budgets(rate)`` is chosen, for ``rate`` between grid rates ``r_j < r_{j+1}``
with optimal budgets ``t_j`` and ``t_{j+1}``: the candidates are the linear
interpolation ``(1 - theta) t_j + theta t_{j+1}``, two best-response steps from it
(each type's optimal budget given the queue as the previous candidate leaves it,
clipped to the box: one O(N) step each, exact in which types sit at a bound),
and the two neighbours. The
upper neighbour ``t_{j+1}`` is stable at every rate below ``r_{j+1}`` (the
utilization ``rate * m1`` only falls with the rate), so at least one candidate is
always stable; the interpolation and ``t_j`` count only where they are stable at
``rate``. The candidate with the highest utility *at that rate* is returned.

How ``gap(rate)`` is proven: the Frank-Wolfe certificate is cheap (O(N)), so it
is evaluated at the query rate, never interpolated. Each stable candidate ``c``
gives ``U*(rate) <= U(c) + FWgap(c)`` (``U`` concave, the box holds the feasible
set); the smallest of these upper bounds minus the utility of the returned
budgets is the gap. Nothing in it depends on how the grid was built.

Integer budgets: when the scenario has a menu (``levels``) or a ``step`` other
than 1, or ``method="rounding"`` is asked for, each grid point also holds the
rounded allocation of :func:`cvxalloc.integer.round_allocation`; ``budgets(rate)``
is then the better of the two neighbours' grid allocations (always on the menu
or grid), and its gap is the integer certificate ``min_c (U(c) + FWgap(c)) -
U(t_int)`` with ``c`` over the continuous candidates above. The grid is refined
on the continuous interpolation (the rounding loss does not shrink with it).

Examples
--------
>>> import cvxalloc
>>> from cvxalloc.policy import build_policy
>>> pol = build_policy(cvxalloc.example_scenario())
>>> low, high = pol.rate_range
>>> t = pol.budgets(0.5 * high)
>>> bool(pol.gap(0.5 * high) <= 1e-4 * abs(pol.lookup(0.5 * high).objective))
True
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._files import write_text
from ._source import fields_source
from ._version import __version__
from .certificate import frank_wolfe_gap, relative_scale
from .errors import CvxallocError, ScenarioError, SolverError
from .objective import Objective
from .result import jsonable
from .scenario import Scenario

__all__ = [
    "Policy",
    "PolicyError",
    "Lookup",
    "build_policy",
    "load_policy",
    "FORMAT",
    "VERSION",
    "DEFAULT_TOLERANCE",
    "DEFAULT_POINTS",
    "TOP_FRACTION",
]

#: ``format`` key of a policy file, and the version this code reads and writes.
FORMAT = "cvxalloc-policy"
VERSION = 1
#: Default bound on the interpolation gap, relative to ``|U|`` at the probed rate.
DEFAULT_TOLERANCE = 1e-4
#: Default number of grid rates before refinement.
DEFAULT_POINTS = 17
#: The highest grid rate as a fraction of the highest stable rate.
TOP_FRACTION = 1.0 - 1e-4
#: Each grid point must be certified to this fraction of ``|U|``.
GRID_CERTIFICATE_TOL = 1e-9
#: Interior probes of an interval: quick ones, then (if those pass) the ones in between.
_REFINE_PROBES = (0.25, 0.5, 0.75)
_CHECK_PROBES = (0.125, 0.375, 0.625, 0.875)
#: Where a budget leaves (or reaches) a bound inside an interval, the gap can rise
#: sharply just past the kink: these probes too.
_KINK_PROBES = (1 / 32, 1 / 16, 15 / 16, 31 / 32)
#: Best-response steps from the interpolated budgets tried as extra candidates.
_RESPONSE_STEPS = 2
#: Refinement aims at this fraction of the tolerance, a margin for rates between probes.
_REFINE_MARGIN = 0.5
#: Rates (fractions of the range) where the arrival_scv interpolation is probed.
_SCV_RATE_PROBES = (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98)
#: Keys of one entry of ``by_arrival_scv`` besides ``arrival_scv``.
_SUB_KEYS = ("rates", "budgets", "gaps", "info")
#: At most this many ``arrival_scv`` values in a grid.
MAX_SCV_POINTS = 33
#: Refinement stops at this many grid rates even if the tolerance is not met.
MAX_POINTS = 4097


class PolicyError(CvxallocError):
    """A policy file is invalid, or a rate is outside the policy's range."""


@dataclass(frozen=True)
class Lookup:
    """The answer of a policy at one rate.

    Attributes
    ----------
    rate : float
        The query rate (queries per second).
    tokens : ndarray
        Budgets per type, task order (on the menu/grid for an integer policy).
    objective : float
        Utility of ``tokens`` at ``rate``.
    gap : float
        Proven bound on ``U*(rate) - objective``.
    upper_bound : float
        ``objective + gap``, a proven upper bound on ``U*(rate)``.
    source : str
        ``"interpolated"``, ``"upper"`` or ``"lower"`` (which candidate won;
        ``"grid"`` at a grid rate).
    """

    rate: float
    tokens: np.ndarray
    objective: float
    gap: float
    upper_bound: float
    source: str
    accuracy: float = math.nan

    def __repr__(self) -> str:
        """Python source that rebuilds the answer (with ``np`` and ``Lookup`` in scope).

        Every float exact; ``tokens`` as ``np.array([...])`` (summarized beyond 100 types).

        >>> Lookup(0.5, np.array([10.0, 20.5]), 0.25, 1e-9, 0.250000001, "grid", 0.75)
        ... # doctest: +ELLIPSIS
        Lookup(rate=0.5, tokens=np.array([10.0, 20.5]), objective=0.25, gap=1e-09, ...)
        """
        return fields_source(self)

    @property
    def relative_gap(self) -> float:
        """``gap / max(|objective|, 1e-12)``."""
        return self.gap / relative_scale(self.objective)

    @property
    def scaled_gap(self) -> float:
        """``gap / max(|objective|, accuracy)``: the measure the grid is refined on.

        ``U`` crosses 0 where the latency cost equals the weighted accuracy; no bound is
        small relative to 0 there, so the tolerance refers to the larger of the two terms.
        """
        return self.gap / _scale(self.objective, self.accuracy)

    def to_dict(self, names: list[str]) -> dict[str, Any]:
        """JSON-ready form (tokens by task name)."""
        return {
            "rate": self.rate,
            "tokens": {n: float(x) for n, x in zip(names, self.tokens)},
            "objective": self.objective,
            "gap": self.gap,
            "relative_gap": self.relative_gap,
            "scaled_gap": self.scaled_gap,
            "accuracy": self.accuracy,
            "upper_bound": self.upper_bound,
            "source": self.source,
        }


def _is_integer(scenario, method: str | None) -> bool:
    """Integer budgets: asked for, or a menu / non-unit step in the scenario."""
    if method == "rounding":
        return True
    has_menu = any(lv is not None for lv in scenario.levels)
    return bool(has_menu or np.any(np.asarray(scenario.step) != 1))


def highest_rate(scenario) -> float:
    """The highest rate the policy covers: :data:`TOP_FRACTION` of the highest stable rate.

    The highest stable rate is ``capacity / m1(lo)`` (above it no budgets are
    stable); with ``latency_weight = 0`` an optimum exists only while the
    maximum budgets are stable, so the range stops at ``capacity / m1(hi)``.
    """
    top = scenario.max_stable_arrival_rate(scenario.min_tokens)
    if scenario.latency_weight == 0:
        top = scenario.max_stable_arrival_rate(scenario.max_tokens)
    return TOP_FRACTION * top


# --------------------------------------------------------------------------
# evaluation at one rate
def _scv_theta(c0: float, c1: float, c: float) -> float:
    """Where ``c`` lies between ``c0 < c1``: on a log scale when both are positive.

    Budgets fall roughly with the logarithm of the burstiness (the wait grows linearly in
    ``arrival_scv``, and each extra token's price with it), so a log scale spreads the
    grid where the budgets change.
    """
    if c0 > 0:
        return math.log(c / c0) / math.log(c1 / c0)
    return (c - c0) / (c1 - c0)


def _scv_mid(c0: float, c1: float) -> float:
    """The midpoint of ``c0 < c1`` on the scale of :func:`_scv_theta`."""
    return math.sqrt(c0 * c1) if c0 > 0 else 0.5 * (c0 + c1)


def _scale(objective: float, accuracy: float) -> float:
    """``max(|U|, weighted accuracy, 1e-12)``: what relative gaps of a policy refer to."""
    acc = accuracy if math.isfinite(accuracy) else 0.0
    return max(abs(objective), acc, 1e-12)


def _grid_gap(res) -> float:
    """A grid point's certified gap over :func:`_scale`."""
    return res.certificate.gap / _scale(res.objective, res.evaluation.accuracy)


def _d1_bounds(sc) -> tuple[np.ndarray, np.ndarray]:
    """``(A'(lo), A'(hi))`` per type: rate-independent, computed once per policy."""
    return sc.accuracy.d1(sc.min_tokens), sc.accuracy.d1(sc.max_tokens)


class _AtRate:
    """Utility and Frank-Wolfe bound of allocations at one rate."""

    def __init__(self, scenario, rate: float, d1_bounds=None) -> None:
        # A copy with only the rate changed, not validated again: the rate is within
        # the policy's range, where the minimum budgets are stable (O(1), not O(N)).
        self.scenario = copy.copy(scenario)
        self.scenario.arrival_rate = float(rate)
        self.obj = Objective(self.scenario)
        self.lo, self.hi = self.scenario.min_tokens, self.scenario.max_tokens
        self.d1_bounds = d1_bounds

    def stable(self, t: np.ndarray) -> bool:
        return self.scenario.utilization(t) < 1

    def value(self, t: np.ndarray) -> float:
        return self.obj.value(t) if self.stable(t) else -math.inf

    def response(self, t: np.ndarray) -> np.ndarray | None:
        """Each type's best budget given the queue as ``t`` leaves it (one O(N) step).

        With the queue scalars ``A = dW/dm1`` and ``B = 2 dW/dm2`` at ``t``, type ``i``'s
        first-order condition ``w_i A_i'(x) = gamma b_i (A + B (1 + k_i)(a_i + b_i x))`` is
        solved per type and clipped to the box (the projected fixed-point map of
        docs/model.md). It is exact in which types sit at a bound, which a linear
        interpolation of budgets is not. None where it does not apply (``gamma = 0``).
        """
        sc = self.scenario
        gamma = sc.latency_weight
        if gamma <= 0 or not self.stable(t):
            return None
        A, B, _ = self.obj.latency.scalars(t)
        gb_w = gamma * sc.per_token / sc.weight
        k1 = 1.0 + sc.scv
        alpha = gb_w * (A + B * k1 * sc.base)
        beta = gb_w * B * k1 * sc.per_token
        if np.any(alpha <= 0) and np.any(beta <= 0):
            return None
        if self.d1_bounds is None:
            self.d1_bounds = _d1_bounds(sc)
        x = sc.accuracy.solve_marginal(alpha, beta, t, self.lo, self.hi, self.d1_bounds)
        return np.clip(x, self.lo, self.hi) if np.all(np.isfinite(x)) else None

    def bound(self, t: np.ndarray) -> tuple[float, float]:
        """``(U(t), U(t) + FWgap(t))``; ``(-inf, inf)`` where unstable."""
        U = self.value(t)
        if not math.isfinite(U):
            return -math.inf, math.inf
        return U, U + frank_wolfe_gap(self.obj.gradient(t), t, self.lo, self.hi)


def _answer(
    scenario,
    rate: float,
    rates: np.ndarray,
    cont: np.ndarray,
    integer: np.ndarray | None,
    d1_bounds=None,
) -> Lookup:
    """Budgets and proven gap at ``rate`` from the grid (see the module docstring)."""
    ev = _AtRate(scenario, rate, d1_bounds)
    j = int(np.searchsorted(rates, rate, side="right")) - 1
    j = min(max(j, 0), rates.size - 1)
    if rates[j] == rate or j == rates.size - 1:
        cands = [("grid", cont[j])]
        ints = None if integer is None else [("grid", integer[j])]
    else:
        theta = (rate - rates[j]) / (rates[j + 1] - rates[j])
        interp = (1.0 - theta) * cont[j] + theta * cont[j + 1]
        interp = np.clip(interp, ev.lo, ev.hi)
        cands = [("interpolated", interp), ("upper", cont[j + 1]), ("lower", cont[j])]
        step = interp
        for k in range(_RESPONSE_STEPS):
            step = ev.response(step)
            if step is None:
                break
            cands.append((f"interpolated+{k + 1} response", step))
        ints = None if integer is None else [("upper", integer[j + 1]), ("lower", integer[j])]
    bounds = [ev.bound(t) for _, t in cands]
    ub = min(b for _, b in bounds)
    if not math.isfinite(ub):  # pragma: no cover - the upper neighbour is always stable
        raise SolverError(f"no stable budgets at rate {rate:g} in the policy")
    if ints is None:
        vals = [U for U, _ in bounds]
        best = int(np.argmax(vals))
        src, tokens, U = cands[best][0], cands[best][1], vals[best]
    else:
        vals = [ev.value(t) for _, t in ints]
        best = int(np.argmax(vals))
        src, tokens, U = ints[best][0], ints[best][1], vals[best]
    if not math.isfinite(U):
        raise SolverError(f"no stable integer budgets at rate {rate:g} in the policy")
    gap = max(ub - U, 0.0)
    return Lookup(
        rate=float(rate),
        tokens=np.array(tokens, dtype=float),
        objective=float(U),
        gap=float(gap),
        upper_bound=float(U + gap),
        source=src,
        accuracy=float(ev.obj.pw @ scenario.accuracy.value(tokens)),
    )


# --------------------------------------------------------------------------
# the policy object
class Policy:
    """Certified budgets over a range of arrival rates.

    Build one with :func:`build_policy`, or read a policy file with
    :func:`load_policy`.

    Attributes
    ----------
    scenario : Scenario
        The scenario the policy was computed for (its ``arrival_rate`` is not
        used: the rate is the query's).
    names : list of str
        Task names, in the order of :meth:`budgets`.
    rates : ndarray
        The grid of arrival rates (strictly increasing).
    grid_budgets : ndarray, shape (len(rates), N)
        Budgets at each grid rate (integer ones for an integer policy).
    grid_gaps : ndarray
        Certified gap at each grid rate.
    integer : bool
        Whether the budgets are on the scenario's menu/grid.
    info : dict
        How the policy was built (method, tolerance, measured interpolation
        gap, times).
    """

    def __init__(
        self,
        scenario,
        rates: np.ndarray,
        continuous: np.ndarray,
        gaps: np.ndarray,
        integer_budgets: np.ndarray | None = None,
        info: Mapping[str, Any] | None = None,
        by_arrival_scv: Sequence[Policy] | None = None,
    ) -> None:
        self.scenario = scenario
        self.names = list(scenario.names)
        self.rates = np.asarray(rates, dtype=float)
        self._cont = np.asarray(continuous, dtype=float)
        self._int = None if integer_budgets is None else np.asarray(integer_budgets, dtype=float)
        self.grid_gaps = np.asarray(gaps, dtype=float)
        self.info = dict(info or {})
        self._last: Lookup | None = None
        self._d1 = _d1_bounds(scenario)
        subs = sorted(by_arrival_scv or [], key=lambda p: p.scenario.arrival_scv)
        #: Policies at other ``arrival_scv`` values (with this one), or empty.
        self.by_arrival_scv: list[Policy] = subs
        self._scv = np.array([p.scenario.arrival_scv for p in subs], dtype=float)

    # --- queries ------------------------------------------------------------
    @property
    def integer(self) -> bool:
        """Whether :meth:`budgets` returns budgets on the scenario's menu/grid."""
        return self._int is not None

    @property
    def grid_budgets(self) -> np.ndarray:
        """Budgets at each grid rate, shape ``(len(rates), N)``."""
        return self._cont if self._int is None else self._int

    @property
    def continuous_budgets(self) -> np.ndarray:
        """The continuous optimum at each grid rate, shape ``(len(rates), N)``."""
        return self._cont

    @property
    def rate_range(self) -> tuple[float, float]:
        """``(lowest, highest)`` rate covered, queries per second."""
        return float(self.rates[0]), float(self.rates[-1])

    def _check_rate(self, rate: float) -> float:
        try:
            r = float(rate)
        except (TypeError, ValueError):
            raise PolicyError(f"rate must be a number (got {rate!r})") from None
        low, high = self.rate_range
        if not math.isfinite(r) or r < low or r > high:
            raise PolicyError(
                f"rate {r:g} queries/s is outside the policy's range [{low:g}, {high:g}]; "
                + (
                    "above it no budgets keep the queue stable: shed load or add servers"
                    if math.isfinite(r) and r > high
                    else "give a rate within the range"
                )
            )
        return r

    @property
    def arrival_scv_range(self) -> tuple[float, float]:
        """``(lowest, highest)`` ``arrival_scv`` covered (the scenario's, without a grid)."""
        if self._scv.size:
            return float(self._scv[0]), float(self._scv[-1])
        c = float(self.scenario.arrival_scv)
        return c, c

    def lookup(self, rate: float, arrival_scv: float | None = None) -> Lookup:
        """Budgets, utility and proven gap at ``rate`` (see the module docstring).

        ``arrival_scv`` (default: the scenario's) must lie in :attr:`arrival_scv_range`;
        between two values of the grid the candidates are both neighbours' answers at
        ``rate``, their interpolation in ``arrival_scv`` and two best-response steps from
        it, all evaluated at ``(rate, arrival_scv)``.
        """
        r = self._check_rate(rate)
        c = self._check_scv(arrival_scv)
        if c is not None:
            return self._lookup_scv(r, c)
        if self._last is not None and self._last.rate == r:
            return self._last
        ans = _answer(self.scenario, r, self.rates, self._cont, self._int, self._d1)
        self._last = ans
        return ans

    def _interp(self, r: float) -> np.ndarray:
        """The plain linear interpolation of the continuous grid budgets at rate ``r``."""
        j = min(max(int(np.searchsorted(self.rates, r, side="right")) - 1, 0), self.rates.size - 2)
        theta = min(max((r - self.rates[j]) / (self.rates[j + 1] - self.rates[j]), 0.0), 1.0)
        return (1 - theta) * self._cont[j] + theta * self._cont[j + 1]

    def _check_scv(self, arrival_scv: float | None) -> float | None:
        """None for the scenario's own ``arrival_scv``, else the value (checked)."""
        if arrival_scv is None:
            return None
        try:
            c = float(arrival_scv)
        except (TypeError, ValueError):
            raise PolicyError(f"arrival_scv must be a number (got {arrival_scv!r})") from None
        if c == self.scenario.arrival_scv:
            return None
        low, high = self.arrival_scv_range
        if not math.isfinite(c) or c < low or c > high:
            hint = (
                "build the policy over a grid of them (--arrival-scv A,B,...)"
                if low == high
                else "give a value within the range"
            )
            raise PolicyError(
                f"arrival_scv {c:g} is outside the policy's range [{low:g}, {high:g}]; {hint}"
            )
        return c

    def _lookup_scv(self, r: float, c: float) -> Lookup:
        k = int(np.searchsorted(self._scv, c, side="right")) - 1
        k = min(max(k, 0), self._scv.size - 1)
        if self._scv[k] == c or k == self._scv.size - 1:
            return self.by_arrival_scv[k].lookup(r)
        a = self.by_arrival_scv[k].lookup(r)
        b = self.by_arrival_scv[k + 1].lookup(r)
        theta = _scv_theta(self._scv[k], self._scv[k + 1], c)
        base = copy.copy(self.scenario)
        base.arrival_scv = c
        ev = _AtRate(base, r, self._d1)
        subs = self.by_arrival_scv
        # bilinear: each neighbour's plain rate interpolation, then across arrival_scv
        plain = (1 - theta) * subs[k]._interp(r) + theta * subs[k + 1]._interp(r)
        answers = np.clip((1 - theta) * a.tokens + theta * b.tokens, ev.lo, ev.hi)
        cands = [("bilinear", np.clip(plain, ev.lo, ev.hi))]
        cands += [("interpolated answers", answers), ("lower scv", a.tokens)]
        cands.append(("upper scv", b.tokens))
        for name, start in (("bilinear", cands[0][1]), ("interpolated answers", answers)):
            step = start
            for i in range(_RESPONSE_STEPS):
                step = ev.response(step)
                if step is None:
                    break
                cands.append((f"{name}+{i + 1} response", step))
        bounds = [ev.bound(t) for _, t in cands]
        best = int(np.argmax([U for U, _ in bounds]))
        U = bounds[best][0]
        ub = min(u for _, u in bounds)
        if not math.isfinite(U):  # pragma: no cover - grid answers are stable at r
            raise SolverError(f"no stable budgets at rate {r:g}, arrival_scv {c:g}")
        gap = max(ub - U, 0.0)
        tokens = cands[best][1]
        return Lookup(
            rate=r,
            tokens=np.array(tokens, dtype=float),
            objective=float(U),
            gap=float(gap),
            upper_bound=float(U + gap),
            source=cands[best][0],
            accuracy=float(ev.obj.pw @ self.scenario.accuracy.value(tokens)),
        )

    def budgets(self, rate: float, arrival_scv: float | None = None) -> np.ndarray:
        """Budgets per type at ``rate`` (numpy array, task order), stable at that rate."""
        return self.lookup(rate, arrival_scv).tokens.copy()

    def gap(self, rate: float, arrival_scv: float | None = None) -> float:
        """Proven bound on ``U*(rate)`` minus the utility of :meth:`budgets` at ``rate``."""
        return self.lookup(rate, arrival_scv).gap

    def budget(self, task: str, rate: float, arrival_scv: float | None = None) -> float:
        """The budget of one task type (by name) at ``rate``."""
        try:
            i = self.names.index(task)
        except ValueError:
            raise PolicyError(
                f"task {task!r} is not in the policy (tasks: {', '.join(self.names[:20])}"
                + (", ..." if len(self.names) > 20 else "")
                + ")"
            ) from None
        return float(self.lookup(rate, arrival_scv).tokens[i])

    def __repr__(self) -> str:
        """A summary, not source: a policy holds a whole scenario (every type's accuracy
        curve and service law) and its grid, too much to read in a repr.
        ``policy_from_dict(pol.to_dict())`` is what rebuilds it.
        """
        low, high = self.rate_range
        kind = "integer" if self.integer else "continuous"
        return (
            f"Policy(n={len(self.names)}, rates={self.rates.size}, "
            f"rate_range=({low:g}, {high:g}), {kind})"
        )

    # --- file -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The policy file's content (see docs/policy.md)."""
        budgets = self.grid_budgets
        out: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "tasks": list(self.names),
            "rates": self.rates.tolist(),
            "rate_range": list(self.rate_range),
            "integer": self.integer,
            "budgets": {n: budgets[:, i].tolist() for i, n in enumerate(self.names)},
            "gaps": self.grid_gaps.tolist(),
        }
        if self.integer:
            out["continuous_budgets"] = {
                n: self._cont[:, i].tolist() for i, n in enumerate(self.names)
            }
        out["info"] = jsonable(self.info)
        out["scenario"] = self.scenario.to_dict()
        if self.by_arrival_scv:
            out["arrival_scv_grid"] = self._scv.tolist()
            out["by_arrival_scv"] = [
                {
                    "arrival_scv": float(p.scenario.arrival_scv),
                    **{k: v for k, v in p.to_dict().items() if k in _SUB_KEYS},
                }
                for p in self.by_arrival_scv
            ]
        return out

    def save(self, path: str | Path) -> Path:
        """Write the policy file (JSON) atomically."""
        return write_text(path, json.dumps(self.to_dict(), indent=2, allow_nan=False))


# --------------------------------------------------------------------------
# building
def _solve_at(scenario, rate: float, method: str | None, warm, integer: bool):
    """Certified optimum at ``rate`` (and its rounding for an integer policy)."""
    from .solve import choose_method, solve

    sc = scenario.with_(arrival_rate=rate)
    cont_method = None if method == "rounding" else method
    name = choose_method(sc, cont_method)
    kw = {}
    if name == "aggregate" and warm is not None and warm.scenario.arrival_rate > 0 and rate > 0:
        kw["warm_start"] = warm
    res = solve(sc, method=name, **kw)
    if _grid_gap(res) > GRID_CERTIFICATE_TOL and kw:
        res = solve(sc, method=name)  # retry cold
    if _grid_gap(res) > GRID_CERTIFICATE_TOL and name != "conic":
        # e.g. aggregate "optimal_inaccurate" at 1.2e-9: the polished conic reference
        try:
            ref = solve(sc, method="conic")
        except CvxallocError:
            ref = None
        if ref is not None and ref.certificate.gap < res.certificate.gap:
            res = ref
    rounded = None
    if integer:
        from .integer import round_allocation

        rounded = round_allocation(sc, continuous=res)
    return res, rounded


def _active_set_changes(sc, t0: np.ndarray, t1: np.ndarray, scale: float) -> bool:
    """Whether types that matter reach or leave a bound inside an interval.

    Types at a bound at one end and not at the other, weighted by the most utility they
    can move (``p_i w_i (A_i(hi_i) - A_i(lo_i))``): a kink of a type whose share is
    below ``scale`` cannot raise the gap much (with 10^4 types almost every interval
    has some kink of a tiny type; probing them all would double the build time).
    """
    lo, hi = sc.min_tokens, sc.max_tokens
    at0 = (t0 <= lo) | (t0 >= hi)
    at1 = (t1 <= lo) | (t1 >= hi)
    changed = at0 != at1
    if not changed.any():
        return False
    reach = sc.probability * sc.weight * (sc.accuracy.value(hi) - sc.accuracy.value(lo))
    return bool(reach[changed].sum() > scale)


def _probe_gap(scenario, rates, cont, j: int, theta: float, d1_bounds=None) -> float:
    """Relative proven gap of the continuous interpolation at one interior rate."""
    rate = rates[j] + theta * (rates[j + 1] - rates[j])
    ans = _answer(scenario, rate, rates, cont, None, d1_bounds)
    return ans.scaled_gap


def build_policy(
    scenario,
    *,
    points: int = DEFAULT_POINTS,
    tolerance: float = DEFAULT_TOLERANCE,
    method: str | None = None,
    arrival_scv: float | Sequence[float] | None = None,
    max_points: int = MAX_POINTS,
) -> Policy:
    """The certified optimum over arrival rates from 0 to near saturation.

    Parameters
    ----------
    scenario : Scenario
        The workload; its ``arrival_rate`` is ignored (the policy covers every rate).
    points : int
        Grid rates before refinement (evenly spaced over the range; >= 2).
    tolerance : float
        Refine until the proven gap of the answer at every probed rate is at most
        ``tolerance * max(|U|, weighted accuracy)`` there (default 1e-4).
    method : str, optional
        Solver (default: :func:`cvxalloc.solve`'s default); ``"rounding"``
        makes an integer policy.
    arrival_scv : float or sequence of float, optional
        One value: replace the scenario's ``[queue] arrival_scv``. Several: a
        policy over that grid of ``arrival_scv`` too (the scenario's own value is
        always one of them; midpoints are added while the answer between two
        values has a larger gap than ``tolerance`` at a probe; continuous policies
        only). ``Policy.budgets(rate, arrival_scv)`` then answers for any value in
        the range.
    max_points : int
        Stop refining at this many grid rates (the file then records that the
        tolerance was not met at some probe).

    Returns
    -------
    Policy

    Raises
    ------
    ScenarioError
        Constraints in the scenario, bad ``points`` / ``tolerance`` /
        ``arrival_scv``, an ``arrival_scv`` grid with integer budgets or a batching
        server.
    SolverError
        A grid point that cannot be certified to 1e-9 of ``max(|U|, weighted accuracy)``.
    """
    kw = dict(points=points, tolerance=tolerance, method=method, max_points=max_points)
    if arrival_scv is None or isinstance(arrival_scv, (int, float)):
        return _build_single(scenario, arrival_scv=arrival_scv, **kw)
    clock = time.perf_counter()
    values = _scv_grid_values(scenario, arrival_scv)
    if len(values) == 1:
        return _build_single(scenario, **kw)
    if _is_integer(scenario, method):
        raise ScenarioError(
            "policy: a grid over arrival_scv is supported for continuous budgets only; "
            "build one integer policy per arrival_scv"
        )
    subs = {c: _build_single(scenario.with_(arrival_scv=c), **kw) for c in values}
    worst = _refine_scv(scenario, subs, tolerance, kw)
    grid = sorted(subs)
    base = subs[float(scenario.arrival_scv)]
    info = dict(base.info)
    info.update(
        arrival_scv_grid=grid,
        arrival_scv_max_scaled_gap=worst,
        arrival_scv_probes="3 arrival_scv x 7 rates per pair of neighbours",
        tolerance_met=bool(all(subs[c].info["tolerance_met"] for c in grid) and worst <= tolerance),
        seconds=time.perf_counter() - clock,
    )
    return Policy(
        base.scenario,
        base.rates,
        base._cont,
        base.grid_gaps,
        None,
        info,
        by_arrival_scv=[subs[c] for c in grid],
    )


def _scv_grid_values(scenario, arrival_scv) -> list[float]:
    """The requested ``arrival_scv`` values and the scenario's own, sorted, checked."""
    values = {float(scenario.arrival_scv)}
    for c in arrival_scv:
        if (
            isinstance(c, bool)
            or not isinstance(c, (int, float))
            or not (math.isfinite(c) and c >= 0)
        ):
            raise ScenarioError(f"policy: arrival_scv values must be numbers >= 0 (got {c!r})")
        values.add(float(c))
    return sorted(values)


def _refine_scv(scenario, subs: dict[float, Policy], tolerance: float, kw) -> float:
    """Add log-scale midpoints of ``arrival_scv`` while a probe between two exceeds the
    tolerance (each neighbour's own rate interpolation is held to half of it; the
    interpolation in ``arrival_scv`` may add the other half). The largest probe left."""
    own = float(scenario.arrival_scv)
    passed: dict[tuple[float, float], float] = {}
    while True:
        grid = sorted(subs)
        top = Policy(
            subs[own].scenario,
            subs[own].rates,
            subs[own]._cont,
            subs[own].grid_gaps,
            by_arrival_scv=[subs[c] for c in grid],
        )
        high = top.rate_range[1]
        add = []
        for c0, c1 in zip(grid[:-1], grid[1:]):
            if (c0, c1) in passed:
                continue
            mid = _scv_mid(c0, c1)
            probes = (_scv_mid(c0, mid), mid, _scv_mid(mid, c1))
            worst = max(
                top.lookup(f * high, c).scaled_gap for c in probes for f in _SCV_RATE_PROBES
            )
            if worst > tolerance and len(subs) + len(add) < MAX_SCV_POINTS:
                add.append(mid)
            else:
                passed[(c0, c1)] = worst
        if not add:
            return max(passed.values(), default=0.0)
        for c in add:
            subs[c] = _build_single(scenario.with_(arrival_scv=c), **kw)


def _build_single(
    scenario,
    *,
    points: int = DEFAULT_POINTS,
    tolerance: float = DEFAULT_TOLERANCE,
    method: str | None = None,
    arrival_scv: float | None = None,
    max_points: int = MAX_POINTS,
) -> Policy:
    """One policy at one ``arrival_scv``: see :func:`build_policy`.

    Parameters
    ----------
    scenario : Scenario
        The workload; its ``arrival_rate`` is ignored (the policy covers every rate).
    points : int
        Grid rates before refinement (evenly spaced over the range; >= 2).
    tolerance : float
        Refine until the proven gap of the interpolated budgets at every
        probed rate is at most ``tolerance * max(|U|, weighted accuracy)`` there
        (default 1e-4).
    method : str, optional
        Solver (default: :func:`cvxalloc.solve`'s default); ``"rounding"``
        makes an integer policy.
    arrival_scv : float, optional
        Replace the scenario's ``[queue] arrival_scv``.
    max_points : int
        Stop refining at this many grid rates (the file then records that the
        tolerance was not met at some probe).

    Returns
    -------
    Policy

    Raises
    ------
    ScenarioError
        Constraints in the scenario, or bad ``points`` / ``tolerance``.
    SolverError
        A grid point that cannot be certified to 1e-9 of ``max(|U|, weighted accuracy)``.
    """
    clock = time.perf_counter()
    _check_build(scenario, points, tolerance)
    sc = scenario if arrival_scv is None else scenario.with_(arrival_scv=float(arrival_scv))
    grid = _RateGrid(sc.with_(arrival_rate=0.0), method, tolerance)
    for rate in np.linspace(0.0, grid.top, int(points)):
        grid.solve(float(rate))
    rounds = grid.refine(max_points)
    pol = grid.policy()
    pol.info.update(initial_points=int(points), refine_rounds=rounds)
    pol.info["seconds"] = time.perf_counter() - clock
    return pol


def _check_build(scenario, points: int, tolerance: float) -> None:
    """Refuse constraints and bad ``points`` / ``tolerance``."""
    if getattr(scenario, "constraints", None) is not None and not scenario.constraints.empty:
        raise ScenarioError(
            "policy: operator constraints ([constraints]) are not supported: interpolated "
            "budgets could break a latency constraint between grid rates; remove the "
            "[constraints] table"
        )
    if int(points) < 2:
        raise ScenarioError(f"policy: points must be >= 2 (got {int(points)})")
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ScenarioError(f"policy: tolerance must be a number > 0 (got {tolerance})")


class _RateGrid:
    """The grid of one policy while it is built: solved rates and refined intervals."""

    def __init__(self, sc, method: str | None, tolerance: float) -> None:
        self.sc, self.method, self.tolerance = sc, method, tolerance
        self.integer = _is_integer(sc, method)
        self.top = highest_rate(sc)
        if not self.top > 0:  # pragma: no cover - validated scenarios have a stable rate
            raise ScenarioError("policy: the scenario has no stable arrival rate above 0")
        self.solved: dict[float, tuple[Any, Any]] = {}
        self.d1 = _d1_bounds(sc)
        # interval -> (largest scaled gap at its probes, where), once it met the target
        self.passed: dict[tuple[float, float], tuple[float, float]] = {}

    def solve(self, rate: float) -> None:
        """Certified optimum at ``rate``, warm-started from the nearest solved rate."""
        near = min(self.solved, key=lambda r: abs(r - rate)) if self.solved else None
        warm = self.solved[near][0] if near is not None else None
        self.solved[rate] = _solve_at(self.sc, rate, self.method, warm, self.integer)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        rates = np.array(sorted(self.solved))
        return rates, np.array([self.solved[r][0].tokens for r in rates])

    def probe(self, rates, cont, j: int) -> tuple[float, float]:
        """Largest scaled gap at the probes of interval ``j`` (stops once over target)."""
        target = _REFINE_MARGIN * self.tolerance
        lo, hi = float(rates[j]), float(rates[j + 1])
        worst, at = 0.0, lo
        # quick probes first; an interval that passes them is probed in between too
        stages = [_REFINE_PROBES, _CHECK_PROBES]
        scale = target * abs(self.solved[hi][0].objective)
        if _active_set_changes(self.sc, cont[j], cont[j + 1], scale):
            stages.append(_KINK_PROBES)  # a budget leaves a bound inside: look closer
        for probes in stages:
            for th in probes:
                g = _probe_gap(self.sc, rates, cont, j, th, self.d1)
                if g > worst:
                    worst, at = g, lo + th * (hi - lo)
            if worst > target:
                break
        return worst, at

    def refine(self, max_points: int) -> int:
        """Split intervals at their midpoints until every probe meets the target."""
        rounds = 0
        while True:
            rates, cont = self.arrays()
            split = []
            for j in range(rates.size - 1):
                key = (float(rates[j]), float(rates[j + 1]))
                if key in self.passed:
                    continue
                worst, at = self.probe(rates, cont, j)
                if worst > _REFINE_MARGIN * self.tolerance:
                    split.append(0.5 * (key[0] + key[1]))
                else:
                    self.passed[key] = (worst, at)
            if not split or rates.size + len(split) > max_points:
                return rounds
            rounds += 1
            for rate in split:
                self.solve(float(rate))

    def policy(self) -> Policy:
        """The finished policy, after checking every grid point's certificate."""
        rates, cont = self.arrays()
        results = [self.solved[r] for r in rates]
        ints = np.array([r.tokens for _, r in results]) if self.integer else None
        gaps = np.array([(r if self.integer else c).certificate.gap for c, r in results])
        rel = np.array([_grid_gap(c) for c, _ in results])
        worst_grid = float(rel.max())
        if worst_grid > GRID_CERTIFICATE_TOL:
            raise SolverError(
                f"policy: the optimum at rate {rates[int(np.argmax(rel))]:g} is certified "
                f"only to {worst_grid:.3g} of max(|U|, accuracy) (needed "
                f"{GRID_CERTIFICATE_TOL:g}); try another --method"
            )
        # the largest gap found at the probes of the final grid
        worst, at = 0.0, float(rates[0])
        for j in range(rates.size - 1):
            key = (float(rates[j]), float(rates[j + 1]))
            if key not in self.passed:  # only when max_points stopped the refinement
                self.passed[key] = max(
                    (
                        _probe_gap(self.sc, rates, cont, j, th, self.d1),
                        key[0] + th * (key[1] - key[0]),
                    )
                    for th in _REFINE_PROBES + _CHECK_PROBES + _KINK_PROBES
                )
            if self.passed[key][0] > worst:
                worst, at = self.passed[key]
        info = {
            "created_by": f"cvxalloc {__version__}",
            "method": results[0][0].method if not self.integer else "rounding",
            "tolerance": self.tolerance,
            "max_grid_relative_gap": worst_grid,
            "interpolation_max_relative_gap": worst,
            "interpolation_worst_rate": at,
            "interpolation_probes_per_interval": len(_REFINE_PROBES) + len(_CHECK_PROBES),
            "interpolation_probes_at_kinks": len(_KINK_PROBES),
            "tolerance_met": bool(worst <= self.tolerance),
        }
        return Policy(self.sc, rates, cont, gaps, ints, info)


# --------------------------------------------------------------------------
# reading
def _fail(path: str, message: str) -> PolicyError:
    return PolicyError(f"policy file {path!r}: {message}")


def _array(path: str, key: str, value: Any, length: int | None = None) -> np.ndarray:
    if not isinstance(value, list) or any(
        isinstance(x, bool) or not isinstance(x, (int, float)) for x in value
    ):
        raise _fail(path, f"{key} must be a list of numbers")
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise _fail(path, f"{key} holds a non-finite number (NaN or infinity)")
    if length is not None and arr.size != length:
        raise _fail(path, f"{key} must have one entry per grid rate ({length}), got {arr.size}")
    return arr


def policy_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Policy:
    """A :class:`Policy` from the content of a policy file, validated."""
    if not isinstance(data, Mapping):
        raise _fail(source, "must hold a JSON object at top level")
    if data.get("format") != FORMAT:
        raise _fail(source, f'format must be "{FORMAT}" (got {data.get("format")!r})')
    if data.get("version") != VERSION:
        raise _fail(
            source,
            f"version {data.get('version')!r} is not supported (this cvxalloc reads version "
            f"{VERSION}); rebuild it with 'cvxalloc policy SCENARIO --output FILE'",
        )
    for key in ("tasks", "rates", "budgets", "gaps", "scenario"):
        if key not in data:
            raise _fail(source, f'missing key "{key}"')
    try:
        sc = Scenario.from_dict(data["scenario"])
    except ScenarioError as exc:
        raise _fail(source, f"scenario: {exc}") from None
    names = data["tasks"]
    if names != list(sc.names):
        raise _fail(source, "tasks must list the scenario's task names in its order")
    rates = _array(source, "rates", data["rates"])
    if rates.size < 2:
        raise _fail(source, "rates must hold at least two grid rates")
    if np.any(np.diff(rates) <= 0) or rates[0] < 0:
        raise _fail(source, "rates must be >= 0 and strictly increasing")
    gaps = _array(source, "gaps", data["gaps"], rates.size)
    if np.any(gaps < 0):
        raise _fail(source, "gaps must be >= 0")

    def table(key: str) -> np.ndarray:
        tab = data[key]
        if not isinstance(tab, Mapping):
            raise _fail(source, f"{key} must be an object: task name -> list of budgets")
        missing = [n for n in names if n not in tab]
        if missing:
            raise _fail(source, f'{key}: no budgets for task "{missing[0]}"')
        cols = [_array(source, f"{key}[{n!r}]", tab[n], rates.size) for n in names]
        out = np.column_stack(cols)
        lo, hi = sc.min_tokens, sc.max_tokens
        bad = np.flatnonzero(np.any((out < lo - 1e-9) | (out > hi + 1e-9), axis=0))
        if bad.size:
            raise _fail(
                source, f'{key}: budgets of task "{names[bad[0]]}" leave [min_tokens, max_tokens]'
            )
        return out

    integer = bool(data.get("integer", False))
    budgets = table("budgets")
    if integer:
        if "continuous_budgets" not in data:
            raise _fail(source, 'an integer policy needs "continuous_budgets"')
        cont = table("continuous_budgets")
    else:
        cont = budgets
    for tab in (budgets, cont):
        m1 = sc.service_time(tab) @ sc.probability
        bad = np.flatnonzero(rates * m1 >= sc.capacity)
        if bad.size:
            raise _fail(source, f"budgets at rate {rates[bad[0]]:g} are unstable at that rate")
    info = data.get("info", {})
    subs = _scv_entries(data, source, sc, integer)
    return Policy(
        sc,
        rates,
        cont,
        gaps,
        budgets if integer else None,
        info if isinstance(info, Mapping) else {},
        by_arrival_scv=subs,
    )


def _scv_entries(data: Mapping[str, Any], source: str, sc, integer: bool) -> list[Policy]:
    """The policies of ``by_arrival_scv`` (empty without it), validated like the top level."""
    if "by_arrival_scv" not in data:
        return []
    entries = data["by_arrival_scv"]
    if integer or not isinstance(entries, list) or len(entries) < 2:
        raise _fail(
            source,
            "by_arrival_scv must be a list of at least two policies (continuous budgets only)",
        )
    subs = []
    for i, entry in enumerate(entries):
        where = f"{source} by_arrival_scv[{i}]"
        if not isinstance(entry, Mapping) or "arrival_scv" not in entry:
            raise _fail(where, 'each entry needs "arrival_scv", "rates", "budgets" and "gaps"')
        c = entry["arrival_scv"]
        if (
            isinstance(c, bool)
            or not isinstance(c, (int, float))
            or not (math.isfinite(c) and c >= 0)
        ):
            raise _fail(where, f"arrival_scv must be a number >= 0 (got {c!r})")
        scenario = sc.to_dict()
        scenario["queue"]["arrival_scv"] = float(c)
        sub = {
            "format": FORMAT,
            "version": VERSION,
            "tasks": data["tasks"],
            "scenario": scenario,
            **{k: entry[k] for k in _SUB_KEYS if k in entry},
        }
        subs.append(policy_from_dict(sub, where))
    scv = [p.scenario.arrival_scv for p in subs]
    if any(b <= a for a, b in zip(scv[:-1], scv[1:])):
        raise _fail(source, "by_arrival_scv must be in strictly increasing arrival_scv")
    if sc.arrival_scv not in scv:
        raise _fail(source, "by_arrival_scv must include the scenario's own arrival_scv")
    return subs


def load_policy(path: str | Path) -> Policy:
    """Read a policy file written by ``cvxalloc policy SCENARIO --output FILE``.

    Raises
    ------
    PolicyError
        The file is missing, not JSON, of another format or version, lacks a
        key, has a non-increasing grid, non-finite numbers, budgets outside the
        box or unstable at their rate.

    Examples
    --------
    >>> import cvxalloc, tempfile, os
    >>> from cvxalloc.policy import build_policy
    >>> path = os.path.join(tempfile.mkdtemp(), "policy.json")
    >>> _ = build_policy(cvxalloc.example_scenario()).save(path)
    >>> pol = cvxalloc.load_policy(path)
    >>> pol.budgets(0.05).shape
    (5,)
    """
    p = Path(path)
    if not p.is_file():
        raise PolicyError(f"policy file {str(p)!r} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"policy file {str(p)!r} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise PolicyError(f"policy file {str(p)!r} is not valid JSON: {exc}") from None
    return policy_from_dict(data, str(p))
