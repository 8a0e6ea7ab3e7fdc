"""The policy object and its answer at any rate between the grid rates.

Layer: workflows (:mod:`cvxalloc.policy`).

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
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._files import write_text
from .._source import fields_source
from ..certificate import frank_wolfe_gap, relative_scale
from ..errors import CvxallocError, SolverError
from ..objective import Objective
from ..result import jsonable

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["Policy", "PolicyError", "Lookup", "FORMAT", "VERSION"]

#: ``format`` key of a policy file, and the version this code reads and writes.
FORMAT = "cvxalloc-policy"
VERSION = 1
#: Best-response steps from the interpolated budgets tried as extra candidates.
_RESPONSE_STEPS = 2
#: Keys of one entry of ``by_arrival_scv`` besides ``arrival_scv``.
_SUB_KEYS = ("rates", "budgets", "gaps", "info")


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

    def _names(self, names: Sequence[str] | None) -> list[str]:
        return [str(i) for i in range(self.tokens.size)] if names is None else list(names)

    def to_dict(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready form (tokens by task name; by index without ``names``)."""
        return {
            "rate": self.rate,
            "tokens": {n: float(x) for n, x in zip(self._names(names), self.tokens)},
            "objective": self.objective,
            "gap": self.gap,
            "relative_gap": self.relative_gap,
            "scaled_gap": self.scaled_gap,
            "accuracy": self.accuracy,
            "upper_bound": self.upper_bound,
            "source": self.source,
        }

    def summary(self, names: Sequence[str] | None = None, max_rows: int = 50) -> str:
        """The budgets, one line per task type, then the utility and its proven gap."""
        names = self._names(names)
        width = max(len(n) for n in names[:max_rows])
        lines = [
            f"  {name:<{width}}  {t:10.1f} tokens"
            for name, t in list(zip(names, self.tokens))[:max_rows]
        ]
        if len(names) > max_rows:
            lines.append(f"  ... {len(names) - max_rows} more types (use --json)")
        lines.append(
            f"utility {self.objective:.8g}   proven gap {self.gap:.3g} "
            f"({self.relative_gap:.2g} of |U|)   from {self.source} budgets"
        )
        return "\n".join(lines)


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


def _d1_bounds(sc: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """``(A'(lo), A'(hi))`` per type: rate-independent, computed once per policy."""
    return sc.accuracy.d1(sc.min_tokens), sc.accuracy.d1(sc.max_tokens)


class _AtRate:
    """Utility and Frank-Wolfe bound of allocations at one rate."""

    def __init__(self, scenario: Scenario, rate: float, d1_bounds=None) -> None:
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

    def lookup(
        self, source: str, tokens: np.ndarray, U: float, ub: float, acc: float | None = None
    ) -> Lookup:
        """The answer ``tokens`` (of utility ``U``, weighted accuracy ``acc`` when known)
        with its gap to the proven bound ``ub``."""
        gap = max(ub - U, 0.0)
        if acc is None:
            acc = self.obj.pw @ self.scenario.accuracy.value(tokens)
        return Lookup(
            rate=float(self.scenario.arrival_rate),
            tokens=np.array(tokens, dtype=float),
            objective=float(U),
            gap=float(gap),
            upper_bound=float(U + gap),
            source=source,
            accuracy=float(acc),
        )

    def certify(self, t: np.ndarray) -> tuple[float, float, float]:
        """``(U(t), U(t) + FWgap(t), weighted accuracy)`` in one pass over the types
        (:meth:`Objective.value_gradient`); ``(-inf, inf, nan)`` where unstable."""
        U, g, acc = self.obj.value_gradient(t)
        if g is None or not math.isfinite(U):
            return -math.inf, math.inf, math.nan
        return U, U + frank_wolfe_gap(g, t, self.lo, self.hi), acc

    def bound(self, t: np.ndarray) -> tuple[float, float]:
        """``(U(t), U(t) + FWgap(t))``; ``(-inf, inf)`` where unstable."""
        return self.certify(t)[:2]


def _interpolated(ev: _AtRate, rates: np.ndarray, cont: np.ndarray, j: int) -> np.ndarray:
    """The linear interpolation of the grid budgets ``j`` and ``j + 1`` at ``ev``'s rate."""
    rate = ev.scenario.arrival_rate
    theta = (rate - rates[j]) / (rates[j + 1] - rates[j])
    return np.clip((1.0 - theta) * cont[j] + theta * cont[j + 1], ev.lo, ev.hi)


def _candidates(ev: _AtRate, rates: np.ndarray, cont, j: int, neighbours_last: bool = False):
    """The continuous candidates at ``ev``'s rate inside interval ``j``: ``(source, tokens)``
    (the best responses are computed only when reached), cheapest first, or with
    ``neighbours_last`` the interpolation, its responses, then the neighbours."""
    interp = _interpolated(ev, rates, cont, j)
    yield "interpolated", interp
    if not neighbours_last:
        yield "upper", cont[j + 1]
        yield "lower", cont[j]
    step = interp
    for k in range(_RESPONSE_STEPS):
        step = ev.response(step)
        if step is None:
            break
        yield f"interpolated+{k + 1} response", step
    if neighbours_last:
        yield "upper", cont[j + 1]
        yield "lower", cont[j]


def _answer(
    scenario: Scenario,
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
        cands = list(_candidates(ev, rates, cont, j))
        ints = None if integer is None else [("upper", integer[j + 1]), ("lower", integer[j])]
    bounds = [ev.certify(t) for _, t in cands]
    ub = min(b for _, b, _ in bounds)
    if not math.isfinite(ub):  # pragma: no cover - the upper neighbour is always stable
        raise SolverError(f"no stable budgets at rate {rate:g} in the policy")
    acc = None
    if ints is None:
        best = int(np.argmax([U for U, _, _ in bounds]))
        src, tokens, (U, _, acc) = cands[best][0], cands[best][1], bounds[best]
    else:
        vals = [ev.value(t) for _, t in ints]
        best = int(np.argmax(vals))
        src, tokens, U = ints[best][0], ints[best][1], vals[best]
    if not math.isfinite(U):
        raise SolverError(f"no stable integer budgets at rate {rate:g} in the policy")
    return ev.lookup(src, tokens, U, ub, acc)


# --------------------------------------------------------------------------
# the policy object
class Policy:
    """Certified budgets over a range of arrival rates.

    Build one with :func:`build_policy`, or read a policy file with
    :func:`load_policy`.

    Parameters
    ----------
    scenario : Scenario
    rates : ndarray
        Grid rates, strictly increasing.
    continuous : ndarray, shape (len(rates), N)
        The continuous optimum at each grid rate.
    gaps : ndarray
        Certified gap at each grid rate.
    integer_budgets : ndarray, optional
        Budgets on the menu/grid at each rate (an integer policy), or None.
    info : mapping, optional
        How the policy was built.
    by_arrival_scv : sequence of Policy, optional
        Policies at other ``arrival_scv`` values (this one's among them).

    Every parameter is given by keyword (a grid has several arrays of one
    shape; a position would be easy to swap).

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
        *,
        scenario: Scenario,
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
        bounds = [ev.certify(t) for _, t in cands]
        best = int(np.argmax([U for U, _, _ in bounds]))
        U, _, acc = bounds[best]
        ub = min(u for _, u, _ in bounds)
        if not math.isfinite(U):  # pragma: no cover - grid answers are stable at r
            raise SolverError(f"no stable budgets at rate {r:g}, arrival_scv {c:g}")
        return ev.lookup(cands[best][0], cands[best][1], U, ub, acc)

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

    def summary(self) -> str:
        """Its grid, budgets and the gaps proven when it was built (what ``cvxalloc policy``
        prints after writing the file)."""
        info = self.info
        low, high = self.arrival_scv_range
        scv = self.by_arrival_scv
        text = (
            f"{self.rates.size} grid rates over [0, {self.rate_range[1]:.6g}] queries/s, "
            f"{'integer' if self.integer else 'continuous'} budgets"
            + (f", {len(scv)} arrival_scv values over [{low:g}, {high:g}]" if scv else "")
        )
        if "max_grid_relative_gap" not in info:  # a file without how it was built
            return text
        return (
            text + "\n"
            f"gaps relative to max(|U|, weighted accuracy): grid points certified to "
            f"{info['max_grid_relative_gap']:.2g}, interpolation at most "
            f"{info['interpolation_max_relative_gap']:.2g} at the probed rates"
            + (
                f" and {info['arrival_scv_max_scaled_gap']:.2g} between arrival_scv values"
                if scv
                else ""
            )
            + f" (tolerance {info['tolerance']:g}"
            f"{'' if info['tolerance_met'] else ', NOT met: raise --points'}); "
            f"{info['seconds']:.2f} s"
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
