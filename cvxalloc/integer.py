"""Integer budgets: grids, certified rounding with local search.

Layer: solvers.

Servers take whole tokens, and operators often offer only a few budgets. Per
task type the allowed budgets (the *grid*) are

* the menu ``levels`` when the scenario gives one, else
* ``min_tokens + k * step`` for ``k = 0, 1, ...`` up to ``max_tokens``
  (``step`` defaults to 1: whole tokens when ``min_tokens`` is whole;
  ``max_tokens`` is on the grid only when ``max_tokens - min_tokens`` is a
  multiple of ``step``).

:func:`round_allocation` starts from the continuous optimum, takes the
nearest grid point and improves it by best-improvement coordinate moves to
neighbouring levels, never leaving the stability region. Its certificate is
solver-independent: the continuous optimum bounds every grid allocation from
above, so with ``t_c`` the continuous allocation::

    U_int* <= U* <= U(t_c) + FWgap(t_c)
    gap(t_int) = U(t_c) + FWgap(t_c) - U(t_int)          (kind "integer")

The exact integer optimum is :func:`cvxalloc.solve` with
``method="mixed-integer"`` (:mod:`cvxalloc.solvers.mixed_integer`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import _options as _opt
from . import status as st
from .certificate import Certificate, certify, relative_scale
from .constraints import ConstraintError, constraints_of
from .errors import SolverError, UnstableError
from .objective import Objective
from .result import Result
from .solve import solve

if TYPE_CHECKING:
    from .scenario import Scenario

__all__ = [
    "grid",
    "Grids",
    "LocalSearchInfo",
    "local_search",
    "integer_certificate",
    "round_allocation",
    "solve_rounding",
]

#: Most steps a grid may count: the scenario refuses steps that would need more
#: (:data:`cvxalloc.scenario.MIN_STEP_ULPS`); the clip keeps the cast to int64 exact
#: whatever the input.
_MAX_STEPS = 2**53
#: A grid point ``lo + k step`` this many spacings of doubles above ``max_tokens`` is
#: ``max_tokens`` put a hair above by rounding (``0.3 / 0.1`` is ``2.9999999999999996``).
_TOP_ULPS = 4


def _step_count(lo: np.ndarray, hi: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Number of steps ``K`` with ``lo + K step <= hi`` (grid has ``K + 1`` points).

    A point that rounding puts a few spacings of doubles above ``hi`` counts as
    ``hi`` (a step that divides the width reaches ``max_tokens``). Computed in
    floating point and clipped to ``[0, 2^53]`` before the cast, so no step,
    however small, can overflow the index (the scenario refuses steps below
    what doubles resolve at the type's budgets, so a step is far above the
    rounding tolerance and ``K`` is exact).
    """
    lo, hi, step = (np.asarray(x, dtype=float) for x in (lo, hi, step))
    top = hi + _TOP_ULPS * np.spacing(np.maximum(np.abs(lo), np.abs(hi)))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        k = np.clip(np.nan_to_num(np.floor((hi - lo) / step), nan=0.0), 0, _MAX_STEPS)
        k = np.where(lo + (k + 1) * step <= top, k + 1, k)
        k = np.where((k > 0) & (lo + k * step > top), k - 1, k)
    return np.clip(k, 0, _MAX_STEPS).astype(np.int64)


def grid(scenario: Scenario, i: int) -> np.ndarray:
    """The allowed budgets of task type ``i``, increasing.

    Parameters
    ----------
    scenario : Scenario
    i : int
        Task index.

    Returns
    -------
    ndarray
        ``scenario.levels[i]`` if given, else ``min_tokens + k * step`` for
        ``k = 0 .. floor((max_tokens - min_tokens) / step)``.

    Examples
    --------
    >>> import cvxalloc
    >>> from cvxalloc.integer import grid
    >>> sc = cvxalloc.example_scenario()
    >>> sc2 = sc.with_(step=[1000.0] * sc.n)
    >>> g = grid(sc2, 0)
    >>> bool(g[0] == sc.min_tokens[0] and g[-1] <= sc.max_tokens[0])
    True
    """
    lv = scenario.levels[i]
    if lv is not None:
        return np.asarray(lv, dtype=float).copy()
    lo, hi, step = scenario.min_tokens[i], scenario.max_tokens[i], scenario.step[i]
    k = int(_step_count(np.array([lo]), np.array([hi]), np.array([step]))[0])
    return np.minimum(lo + step * np.arange(k + 1, dtype=float), hi)


class Grids:
    """The grids of all N types, vectorized by index.

    A grid point of type ``i`` is named by its index ``k`` in
    ``0 .. size[i] - 1``. Menus are stored flat (concatenated); step grids
    are never materialized (whole tokens over 10^5 types would not fit).

    Parameters
    ----------
    scenario : Scenario
    """

    def __init__(self, scenario: Scenario) -> None:
        sc = scenario
        n = sc.n
        self.n = n
        self.lo = np.asarray(sc.min_tokens, dtype=float)
        self.hi = np.asarray(sc.max_tokens, dtype=float)
        self.step = np.asarray(sc.step, dtype=float)
        self.is_menu = np.array([lv is not None for lv in sc.levels], dtype=bool)
        size = _step_count(self.lo, self.hi, self.step) + 1
        menus = [np.asarray(sc.levels[i], dtype=float) for i in np.flatnonzero(self.is_menu)]
        self.offset = np.zeros(n, dtype=np.int64)
        if menus:
            lens = np.array([m.size for m in menus], dtype=np.int64)
            size[self.is_menu] = lens
            self.offset[self.is_menu] = np.concatenate([[0], np.cumsum(lens)[:-1]])
            self.flat = np.concatenate(menus)
        else:
            self.flat = np.zeros(1)
        self.size = size.astype(np.int64)

    def values(self, k: np.ndarray) -> np.ndarray:
        """Budgets at indices ``k`` (one index per type)."""
        k = np.asarray(k, dtype=np.int64)
        stepped = np.minimum(self.lo + self.step * k, self.hi)
        if not self.is_menu.any():
            return stepped
        menu = self.flat[np.where(self.is_menu, self.offset + np.clip(k, 0, self.size - 1), 0)]
        return np.where(self.is_menu, menu, stepped)

    def levels(self, i: int) -> np.ndarray:
        """All budgets of type ``i`` (materialized)."""
        return self.values_of(i, np.arange(self.size[i]))

    def values_of(self, i: int, k: np.ndarray) -> np.ndarray:
        """Budgets of type ``i`` at several indices ``k``."""
        k = np.asarray(k, dtype=np.int64)
        if self.is_menu[i]:
            return self.flat[self.offset[i] + k]
        return np.minimum(self.lo[i] + self.step[i] * k, self.hi[i])

    def nearest(self, t: np.ndarray) -> np.ndarray:
        """Index of the grid point nearest to ``t`` (ties to the lower point)."""
        t = np.asarray(t, dtype=float)
        k = np.clip(np.round((t - self.lo) / self.step), 0, self.size - 1).astype(np.int64)
        for i in np.flatnonzero(self.is_menu):
            lv = self.flat[self.offset[i] : self.offset[i] + self.size[i]]
            j = int(np.searchsorted(lv, t[i]))
            if j == 0:
                k[i] = 0
            elif j >= lv.size:
                k[i] = lv.size - 1
            else:
                k[i] = j - 1 if t[i] - lv[j - 1] <= lv[j] - t[i] else j
        return k

    def floor(self, t: np.ndarray) -> np.ndarray:
        """Index of the largest grid point ``<= t`` (0 when every point is above)."""
        t = np.asarray(t, dtype=float)
        k = np.clip(np.floor((t - self.lo) / self.step + 1e-12), 0, self.size - 1)
        k = k.astype(np.int64)
        for i in np.flatnonzero(self.is_menu):
            lv = self.flat[self.offset[i] : self.offset[i] + self.size[i]]
            k[i] = max(int(np.searchsorted(lv, t[i], side="right")) - 1, 0)
        return k

    def contains(self, t: np.ndarray, atol: float = 0.0) -> np.ndarray:
        """Whether each ``t_i`` is a grid point of type ``i`` (within ``atol``)."""
        t = np.asarray(t, dtype=float)
        return np.abs(self.values(self.nearest(t)) - t) <= atol


@dataclass(frozen=True)
class LocalSearchInfo:
    """What the local search did.

    Attributes
    ----------
    moves : int
        Coordinate moves made.
    converged : bool
        No neighbouring move improves ``U`` (a local optimum of the grid).
    gain : float
        ``U`` after minus ``U`` before.
    """

    moves: int
    converged: bool
    gain: float


def _move_gains(
    sc: Scenario,
    obj: Objective,
    t: np.ndarray,
    t_new: np.ndarray,
    ok: np.ndarray,
    acc_t: np.ndarray,
) -> np.ndarray:
    """``U`` after moving type ``i`` alone to ``t_new[i]`` minus ``U(t)``, for every i.

    Computed from differences of the moments (not of two large utilities) so
    gains of 1e-12 of ``|U|`` are resolved. ``-inf`` where ``ok`` is False or
    the move is unstable.
    """
    gamma = sc.latency_weight
    p, b, k1 = sc.probability, sc.per_token, 1.0 + sc.scv
    s = sc.base + b * t
    s_new = sc.base + b * t_new
    d_acc = obj.pw * (sc.accuracy.value(t_new) - acc_t)
    mo = obj.latency.moments(t)
    d_m1 = p * (s_new - s)
    d_m2 = p * k1 * (s_new - s) * (s_new + s)
    d_w = obj.latency.queue.change(mo.m1, mo.m2, d_m1, d_m2)
    gain = d_acc - gamma * d_w
    return np.where(ok & np.isfinite(gain), gain, -np.inf)


def local_search(
    scenario: Scenario,
    k: np.ndarray,
    grids: Grids | None = None,
    *,
    max_moves: int | None = None,
    objective: Objective | None = None,
) -> tuple[np.ndarray, LocalSearchInfo]:
    """Best-improvement coordinate moves to neighbouring grid levels.

    Parameters
    ----------
    scenario : Scenario
    k : ndarray of int
        Start indices (a stable grid allocation).
    grids : Grids, optional
    max_moves : int, optional
        Default ``20 N + 1000``.
    objective : Objective, optional

    Returns
    -------
    k : ndarray of int
        Indices of a grid allocation where no single move to a neighbouring
        level improves ``U`` (unless ``max_moves`` was reached); every
        iterate is stable.
    info : LocalSearchInfo
    """
    sc = scenario
    g = grids or Grids(sc)
    obj = objective or Objective(sc)
    k = np.array(k, dtype=np.int64)
    t = g.values(k)
    if sc.utilization(t) >= 1:
        raise ValueError("local_search needs a stable start")
    limit = 20 * sc.n + 1000 if max_moves is None else _opt.count("max_moves", max_moves)
    U0 = obj.value(t)
    moves = 0
    converged = False
    while moves < limit:
        acc_t = sc.accuracy.value(t)
        ev = obj.evaluate(t)
        # Gains below this are rounding noise of the moment differences.
        noise = (
            64
            * np.finfo(float).eps
            * (abs(ev.accuracy) + sc.latency_weight * abs(ev.mean_system_time) + 1e-300)
        )
        best_gain, best_i, best_k = 0.0, -1, 0
        for direction in (-1, 1):
            kn = k + direction
            ok = (kn >= 0) & (kn < g.size)
            t_new = g.values(np.clip(kn, 0, g.size - 1))
            gains = _move_gains(sc, obj, t, t_new, ok, acc_t)
            i = int(np.argmax(gains))
            if gains[i] > best_gain:
                best_gain, best_i, best_k = float(gains[i]), i, int(kn[i])
        if best_i < 0 or best_gain <= noise:
            converged = True
            break
        k[best_i] = best_k
        t = g.values(k)
        moves += 1
    return k, LocalSearchInfo(moves=moves, converged=converged, gain=obj.value(t) - U0)


def integer_certificate(
    scenario: Scenario,
    tokens: np.ndarray,
    continuous_tokens: np.ndarray,
    objective: Objective | None = None,
) -> Certificate:
    """Certified gap of a grid allocation against the continuous bound.

    ``gap = U(t_c) + FWgap(t_c) - U(tokens)``: the continuous problem's
    Frank-Wolfe bound at ``t_c`` bounds the continuous optimum, which bounds
    every grid allocation. Recomputed from the scenario alone.

    Parameters
    ----------
    scenario : Scenario
    tokens : ndarray
        The grid allocation.
    continuous_tokens : ndarray
        Any feasible continuous allocation (the closer to the continuous
        optimum, the tighter the bound).
    objective : Objective, optional

    Returns
    -------
    Certificate
        ``kind="integer"``; ``details`` holds ``continuous_upper_bound``,
        ``continuous_objective`` and ``continuous_gap``.
    """
    obj = objective or Objective(scenario)
    cont = certify(scenario, continuous_tokens, obj)
    U = obj.value(np.asarray(tokens, dtype=float))
    upper = cont.upper_bound
    gap = upper - U if np.isfinite(U) else np.inf
    return Certificate(
        objective=U,
        gap=max(gap, 0.0) if np.isfinite(gap) else np.inf,
        upper_bound=upper,
        kind="integer",
        details={
            "continuous_upper_bound": upper,
            "continuous_objective": cont.objective,
            "continuous_gap": cont.gap,
        },
    )


def refuse_constraints(sc: Scenario) -> None:
    """Integer budgets do not honour operator constraints yet: refuse, never ignore."""
    cons = constraints_of(sc)
    if cons is not None:
        raise ConstraintError(
            "integer budgets (rounding, mixed-integer) do not support operator constraints "
            f"({', '.join(cons.kinds)}) yet; remove the [constraints] table or solve the "
            "continuous problem"
        )


def _stable_start(sc: Scenario, g: Grids, t_cont: np.ndarray) -> tuple[np.ndarray, str]:
    """Nearest grid point, or a stable fallback (floor, then the smallest levels)."""
    for how, k in (
        ("nearest", g.nearest(t_cont)),
        ("floor", g.floor(t_cont)),
        ("lowest", np.zeros(sc.n, dtype=np.int64)),
    ):
        if sc.utilization(g.values(k)) < 1:
            return k, how
    m1 = float(sc.probability @ sc.service_time(g.values(np.zeros(sc.n, dtype=np.int64))))
    raise UnstableError(
        "levels: no grid allocation is stable (even the lowest levels give utilization "
        f"{sc.arrival_rate * m1:.4g} >= 1); add lower levels or lower arrival_rate "
        f"below {1 / m1:.6g} queries/s"
    )


def round_allocation(
    scenario: Scenario,
    continuous: Result | None = None,
    method: str | None = None,
    *,
    max_moves: int | None = None,
) -> Result:
    """Best grid allocation found by rounding the continuous optimum, certified.

    Parameters
    ----------
    scenario : Scenario
    continuous : Result, optional
        A continuous solution (default: ``cvxalloc.solve(scenario, method)``).
    method : str, optional
        Continuous method used when ``continuous`` is not given.
    max_moves : int, optional
        Cap on local-search moves (default ``20 N + 1000``).

    Returns
    -------
    Result
        ``method="rounding"``; ``tokens`` on the grid, within bounds, stable;
        ``certificate`` of kind ``"integer"`` with
        ``gap = U(t_c) + FWgap(t_c) - U(t_int)``; ``diagnostics`` with
        ``continuous_upper_bound``, ``continuous_objective``,
        ``rounding_loss`` (``U(t_c) - U(t_int)``), ``rounded_objective``
        (before the local search), ``moves`` and ``start``. ``status`` is
        ``"optimal"`` when the local search converged (no neighbouring move
        improves), ``"iteration_limit"`` otherwise; it is *not* a proof of
        integer optimality (the certificate bounds the loss).

    Examples
    --------
    >>> import cvxalloc
    >>> from cvxalloc.integer import round_allocation
    >>> sc = cvxalloc.example_scenario()
    >>> res = round_allocation(sc)
    >>> bool((res.tokens == res.tokens.round()).all()), res.certificate.kind
    (True, 'integer')
    """
    sc = scenario
    refuse_constraints(sc)
    t0 = time.perf_counter()
    if continuous is None:
        continuous = solve(sc, method=method)
    t_cont = np.clip(np.asarray(continuous.tokens, dtype=float), sc.min_tokens, sc.max_tokens)
    if sc.utilization(t_cont) >= 1:
        raise SolverError(
            f"continuous solution of method {continuous.method!r} is unstable; cannot round it"
        )
    t_c_done = time.perf_counter()
    obj = Objective(sc)
    g = Grids(sc)
    k0, how = _stable_start(sc, g, t_cont)
    U_rounded = obj.value(g.values(k0))
    k, info = local_search(sc, k0, g, max_moves=max_moves, objective=obj)
    tokens = g.values(k)
    cert = integer_certificate(sc, tokens, t_cont, obj)
    U_cont = cert.details["continuous_objective"]
    status = st.OPTIMAL if info.converged else st.ITERATION_LIMIT
    res = Result.from_tokens(
        sc,
        tokens,
        method="rounding",
        status=status,
        objective=obj,
        iterations=info.moves,
        solver_stats={
            "continuous_method": continuous.method,
            "continuous_status": continuous.status,
            "continuous_time": t_c_done - t0,
            "total_time": time.perf_counter() - t0,
        },
        diagnostics={
            "continuous_upper_bound": cert.upper_bound,
            "continuous_objective": U_cont,
            "rounding_loss": U_cont - cert.objective,
            "relative_rounding_loss": (U_cont - cert.objective) / relative_scale(U_cont),
            "rounded_objective": U_rounded,
            "moves": info.moves,
            "start": how,
            "grid_sizes_max": int(g.size.max()),
        },
        message=(
            f"rounded the {continuous.method} optimum ({how} grid point), "
            f"{info.moves} local-search moves"
            + ("" if info.converged else " (move limit reached)")
            + "; gap certified against the continuous bound"
        ),
    )
    # Keep the (usually much looser) Frank-Wolfe bound at the grid point itself.
    res.diagnostics["grid_point_frank_wolfe_gap"] = res.certificate.gap
    res.certificate = cert
    return res


def solve_rounding(
    scenario: Scenario, *, continuous_method: str | None = None, max_moves: int | None = None
) -> Result:
    """``solve(scenario, method="rounding")``: :func:`round_allocation` as a method.

    Parameters
    ----------
    scenario : Scenario
    continuous_method : str, optional
        Continuous method to round (default: the default method).
    max_moves : int, optional
        Cap on local-search moves.
    """
    return round_allocation(scenario, method=continuous_method, max_moves=max_moves)
