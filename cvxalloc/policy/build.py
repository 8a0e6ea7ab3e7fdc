"""Building a policy: the certified optimum on a grid of rates, refined where needed.

Layer: workflows (:mod:`cvxalloc.policy`).

:func:`build_policy` solves at each grid rate (warm-started from the nearest
solved rate; every grid point is certified), then refines the grid where the
interpolation is poor: each interval is probed at interior rates and split at
its midpoint while the proven gap of the answer at a probe exceeds
``tolerance`` (default 1e-4) of ``max(|U|, weighted accuracy)`` there (``U``
crosses 0 where the latency cost equals the accuracy, and no bound is small
relative to 0). Intervals where a type that matters reaches or leaves a bound
are probed closer to their ends. The answers between grid rates are those of
:mod:`cvxalloc.policy.lookup`.
"""

from __future__ import annotations

import copy
import heapq
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from ..errors import CvxallocError, ScenarioError, SolverError
from ..solve import choose_method, fixed_service_scv, solve, warm_options
from ..solvers.aggregate import predicted_start, scalars_at, solve_near
from ..solvers.reduction import Reduced
from .lookup import (
    Policy,
    _answer,
    _AtRate,
    _candidates,
    _d1_bounds,
    _interpolated,
    _scale,
    _scv_mid,
)

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = [
    "build_policy",
    "highest_rate",
    "DEFAULT_TOLERANCE",
    "DEFAULT_POINTS",
    "TOP_FRACTION",
    "GRID_CERTIFICATE_TOL",
    "MAX_POINTS",
    "MAX_SCV_POINTS",
]

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
#: Refinement aims at this fraction of the tolerance, a margin for rates between probes.
_REFINE_MARGIN = 0.5
#: An interval whose answer at the midpoint exceeds the target this many times is split in
#: four, this many in eight (:func:`_split_depth`).
_QUARTERS_AT, _EIGHTHS_AT = 16.0, 64.0
#: Rates (fractions of the range) where the arrival_scv interpolation is probed.
_SCV_RATE_PROBES = (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98)
#: At most this many ``arrival_scv`` values in a grid.
MAX_SCV_POINTS = 33
#: Refinement stops at this many grid rates even if the tolerance is not met.
MAX_POINTS = 4097


def _is_integer(scenario: Scenario, method: str | None) -> bool:
    """Integer budgets: asked for, or a menu / non-unit step in the scenario."""
    if method == "rounding":
        return True
    has_menu = any(lv is not None for lv in scenario.levels)
    return bool(has_menu or np.any(np.asarray(scenario.step) != 1))


def highest_rate(scenario: Scenario) -> float:
    """The highest rate the policy covers: :data:`TOP_FRACTION` of the highest stable rate.

    The highest stable rate is ``capacity / m1(lo)`` (above it no budgets are
    stable); with ``latency_weight = 0`` an optimum exists only while the
    maximum budgets are stable, so the range stops at ``capacity / m1(hi)``.
    """
    top = scenario.max_stable_arrival_rate(scenario.min_tokens)
    if scenario.latency_weight == 0:
        top = scenario.max_stable_arrival_rate(scenario.max_tokens)
    return TOP_FRACTION * top


def _grid_gap(res) -> float:
    """A grid point's certified gap over :func:`_scale`."""
    return res.certificate.gap / _scale(res.objective, res.evaluation.accuracy)


# --------------------------------------------------------------------------
# building
def _solve_at(scenario: Scenario, rate: float, method: str | None, warm, integer: bool, start=None):
    """Certified optimum at ``rate`` (and its rounding for an integer policy).

    ``warm`` is the nearest solved rate's result; ``start``, the aggregate method's queue
    scalars ``(u, m2)`` predicted at ``rate`` from the solved rates around it
    (:func:`~cvxalloc.solvers.aggregate.predicted_start`), replaces it where both apply.
    """
    sc = scenario.with_arrival_rate(rate)
    cont_method = None if method == "rounding" else method
    name = choose_method(sc, cont_method)
    kw = warm_options(sc, warm, name)
    if kw and start is not None and name == "aggregate":
        kw = {"warm_start": scalars_at(sc, *start)}
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
        # integer policies only: import cvxalloc (which loads policy) leaves the rounding out
        from ..integer import round_allocation

        rounded = round_allocation(sc, continuous=res)
    return res, rounded


def _reach(sc: Scenario) -> np.ndarray:
    """The most utility each type can move, ``p_i w_i (A_i(hi_i) - A_i(lo_i))`` (rate-independent:
    computed once per policy)."""
    lo, hi = sc.min_tokens, sc.max_tokens
    return sc.probability * sc.weight * (sc.accuracy.value(hi) - sc.accuracy.value(lo))


def _active_set_changes(
    sc: Scenario, t0: np.ndarray, t1: np.ndarray, scale: float, reach: np.ndarray | None = None
) -> bool:
    """Whether types that matter reach or leave a bound inside an interval.

    Types at a bound at one end and not at the other, weighted by the most utility they
    can move (:func:`_reach`, or ``reach`` computed by it): a kink of a type whose share is
    below ``scale`` cannot raise the gap much (with 10^4 types almost every interval
    has some kink of a tiny type; probing them all would double the build time).
    """
    lo, hi = sc.min_tokens, sc.max_tokens
    at0 = (t0 <= lo) | (t0 >= hi)
    at1 = (t1 <= lo) | (t1 >= hi)
    changed = at0 != at1
    if not changed.any():
        return False
    reach = _reach(sc) if reach is None else reach
    return bool(reach[changed].sum() > scale)


def _split_depth(ratio: float) -> int:
    """Halvings at once for an interval whose answer at the midpoint is ``ratio`` times the
    target: 1, or 2 (quarters) from :data:`_QUARTERS_AT`, 3 (eighths) from :data:`_EIGHTHS_AT`.

    The gap between grid rates falls about as the square of the interval's width, and the
    halves of an interval failed by 16 to 64 times ended in 4 to 8 intervals (at least 4),
    above 64 times in 9 to 16 (measured on 10^4 types, seeds 1 and 11: 96 such splits): the
    halves would fail too, each after a probe and an answer spent on learning it.
    """
    return 3 if ratio >= _EIGHTHS_AT else 2 if ratio >= _QUARTERS_AT else 1


def _dyadic(lo: float, hi: float, depth: int) -> list[float]:
    """The points splitting ``[lo, hi]`` into ``2^depth`` equal parts, each computed as the
    midpoint of its neighbours (so the same floats as ``depth`` successive halvings)."""
    if depth <= 0:
        return []
    mid = 0.5 * (lo + hi)
    return _dyadic(lo, mid, depth - 1) + [mid] + _dyadic(mid, hi, depth - 1)


def _probe_gap(scenario: Scenario, rates, cont, j: int, theta: float, d1_bounds=None) -> float:
    """Relative proven gap of the continuous interpolation at one interior rate."""
    rate = rates[j] + theta * (rates[j + 1] - rates[j])
    ans = _answer(scenario, rate, rates, cont, None, d1_bounds)
    return ans.scaled_gap


def _bounded_gap(
    scenario: Scenario, rates, cont, j: int, theta: float, d1_bounds, known, target: float
) -> tuple[float, bool]:
    """The answer's scaled gap at one interior rate, or a bound of it at most ``target``.

    The candidates of :func:`~cvxalloc.policy.lookup._answer` are certified in the order
    that settles most probes soonest: the interpolated budgets (``known``: their
    certificate), the two best responses (what rescues an interpolation over the
    target, measured on 10^4 types: 230 of 238 such probes), then the two neighbours
    (one certificate each, which the responses' gap makes useless there); after each, the least
    upper bound so far less the largest utility so far bounds the answer's gap (more
    candidates only lower the one and raise the other). It stops once that is within
    ``target``: ``(bound, False)``; else all are certified: ``(the answer's gap, True)``.
    """
    ev = _AtRate(scenario, rates[j] + theta * (rates[j + 1] - rates[j]), d1_bounds)
    best, ub = (-math.inf, math.inf, math.nan), math.inf
    for src, t in _candidates(ev, rates, cont, j, neighbours_last=True):
        found = known if src == "interpolated" else ev.certify(t)
        best, ub = max(best, found, key=lambda f: f[0]), min(ub, found[1])
        g = max(ub - best[0], 0.0) / _scale(best[0], best[2]) if best[0] > -math.inf else math.inf
        if g <= target:
            return g, False
    return g, True


def _interpolated_gap(
    scenario: Scenario, rates, cont, j: int, theta: float, d1_bounds=None
) -> tuple[float, tuple[float, float, float]]:
    """An upper bound of :func:`_probe_gap` from one candidate: the proven gap of the
    plain interpolated budgets (the answer is the best of candidates that include
    them, and its bound the least of theirs, so its gap is at most that). One
    certificate evaluation (a few passes over the types); ``inf`` where unstable.
    Also returns the certificate, ``(U, U + FW gap, weighted accuracy)``.
    """
    ev = _AtRate(scenario, rates[j] + theta * (rates[j + 1] - rates[j]), d1_bounds)
    found = ev.certify(_interpolated(ev, rates, cont, j))
    U, ub, acc = found
    return ((ub - U) / _scale(U, acc) if math.isfinite(U) else math.inf), found


def build_policy(
    scenario: Scenario,
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
    # a batching service_scv = "auto": fixed once, at the scenario's own optimum
    scenario = fixed_service_scv(scenario, method)
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
        scenario=base.scenario,
        rates=base.rates,
        continuous=base.continuous_budgets,
        gaps=base.grid_gaps,
        info=info,
        by_arrival_scv=[subs[c] for c in grid],
    )


def _scv_grid_values(scenario: Scenario, arrival_scv) -> list[float]:
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


def _refine_scv(scenario: Scenario, subs: dict[float, Policy], tolerance: float, kw) -> float:
    """Add log-scale midpoints of ``arrival_scv`` while a probe between two exceeds the
    tolerance (each neighbour's own rate interpolation is held to half of it; the
    interpolation in ``arrival_scv`` may add the other half). The largest probe left."""
    own = float(scenario.arrival_scv)
    passed: dict[tuple[float, float], float] = {}
    while True:
        grid = sorted(subs)
        top = Policy(
            scenario=subs[own].scenario,
            rates=subs[own].rates,
            continuous=subs[own].continuous_budgets,
            gaps=subs[own].grid_gaps,
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
    scenario: Scenario,
    *,
    points: int = DEFAULT_POINTS,
    tolerance: float = DEFAULT_TOLERANCE,
    method: str | None = None,
    arrival_scv: float | None = None,
    max_points: int = MAX_POINTS,
) -> Policy:
    """One policy at one ``arrival_scv`` (the scenario's, or ``arrival_scv`` in its place).

    The other parameters, what it returns and raises: as :func:`build_policy`
    with a single ``arrival_scv``.
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


def _check_build(scenario: Scenario, points: int, tolerance: float) -> None:
    """Refuse constraints and bad ``points`` / ``tolerance``."""
    if getattr(scenario, "constraints", None) is not None and not scenario.constraints.empty:
        raise ScenarioError(
            "policy: operator constraints ([constraints], the tail SLO included) are not "
            "supported: interpolated budgets could break a constraint between grid rates; "
            "remove the [constraints] table, or solve at each rate (cvxalloc solve)"
        )
    if int(points) < 2:
        raise ScenarioError(f"policy: points must be >= 2 (got {int(points)})")
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ScenarioError(f"policy: tolerance must be a number > 0 (got {tolerance})")


class _RateGrid:
    """The grid of one policy while it is built: solved rates and refined intervals."""

    def __init__(self, sc: Scenario, method: str | None, tolerance: float) -> None:
        self.sc, self.method, self.tolerance = sc, method, tolerance
        self.integer = _is_integer(sc, method)
        self.top = highest_rate(sc)
        if not self.top > 0:  # pragma: no cover - validated scenarios have a stable rate
            raise ScenarioError("policy: the scenario has no stable arrival rate above 0")
        self.solved: dict[float, tuple[Any, Any]] = {}
        self.d1 = _d1_bounds(sc)
        self.reduced: Reduced | None = None  # the aggregate method's per-type parts
        self.reach = _reach(sc)
        # interval -> its probes (scaled gap or its bound, theta, whether the answer's own
        # gap), once it met the target
        self.probed: dict[tuple[float, float], list[tuple[float, float, bool]]] = {}

    def solve(self, rate: float) -> None:
        """Certified optimum at ``rate``, warm-started from the solved rates around it."""
        near = sorted(self.solved, key=lambda r: abs(r - rate))[:3]
        warm = self.solved[near[0]][0] if near else None
        start = predicted_start([(r, self.solved[r][0]) for r in near], rate)
        if start is not None and rate < max(self.solved):
            res = self._near(rate, start)
            if res is not None:
                self.solved[rate] = res, None
                return
        self.solved[rate] = _solve_at(self.sc, rate, self.method, warm, self.integer, start)

    def _near(self, rate: float, start: tuple[float, float]):
        """The aggregate method's Newton from ``start`` on parts built once per policy
        (:func:`~cvxalloc.solvers.aggregate.solve_near`), for a continuous policy at a
        rate between two solved ones (so within the range the scenario was validated
        over, at the solved rates around it); None where it does not apply or does not
        certify the grid's tolerance (then :func:`_solve_at` does)."""
        if self.integer or choose_method(self.sc, self.method) != "aggregate":
            return None
        if self.reduced is None:
            self.reduced = Reduced.of(self.sc)
        sc = copy.copy(self.sc)
        sc.arrival_rate = float(rate)
        res = solve_near(sc, self.reduced, start, tol=GRID_CERTIFICATE_TOL)
        return res if res is not None and _grid_gap(res) <= GRID_CERTIFICATE_TOL else None

    def arrays(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """The solved rates, sorted, and their continuous optima (rows, not stacked:
        refinement reads two at a time, and stacking R x N each round costs more)."""
        rates = np.array(sorted(self.solved))
        return rates, [self.solved[r][0].tokens for r in rates]

    def probe(self, rates, cont, j: int) -> tuple[float, float]:
        """Largest scaled gap at the probes of interval ``j`` (stops once over target).

        Each probe is first bounded by the certificate of the interpolated budgets
        alone (:func:`_interpolated_gap`); only where that bound is over target are the
        answer's other candidates certified, the best responses first, until they prove
        the target or all are in (:func:`_bounded_gap`). Every probe's value is kept
        (``self.probed``) with whether it is the answer's own gap or a bound of it.
        """
        target = _REFINE_MARGIN * self.tolerance
        lo, hi = float(rates[j]), float(rates[j + 1])
        # quick probes first; an interval that passes them is probed in between too
        stages = [_REFINE_PROBES, _CHECK_PROBES]
        scale = target * abs(self.solved[hi][0].objective)
        if _active_set_changes(self.sc, cont[j], cont[j + 1], scale, self.reach):
            stages.append(_KINK_PROBES)  # a budget leaves a bound inside: look closer
        entries: list[tuple[float, float, bool]] = []
        for probes in stages:
            # the middle first: where an interval that fails usually fails
            for th in sorted(probes, key=lambda x: abs(x - 0.5)):
                g, found = _interpolated_gap(self.sc, rates, cont, j, th, self.d1)
                exact = False
                if g > target:
                    g, exact = _bounded_gap(self.sc, rates, cont, j, th, self.d1, found, target)
                entries.append((g, th, exact))
                if g > target:
                    return g, lo + th * (hi - lo)
        self.probed[(lo, hi)] = entries
        g, th, _ = max(entries)
        return g, lo + th * (hi - lo)

    def worst_probe(self, rates, cont) -> tuple[float, float]:
        """The largest scaled gap of the answers at the probes of the final grid, and where.

        The probes whose value is the interpolated budgets' bound are replaced by the
        answer's own gap, largest first, until the largest value left is an answer's.
        """
        heap = []
        for j in range(rates.size - 1):
            key = (float(rates[j]), float(rates[j + 1]))
            for g, th, exact in self.probed[key]:
                heap.append((-g, j, th, exact))
        heapq.heapify(heap)
        while heap and not heap[0][3]:
            _, j, th, _ = heapq.heappop(heap)
            heapq.heappush(heap, (-_probe_gap(self.sc, rates, cont, j, th, self.d1), j, th, True))
        if not heap:  # pragma: no cover - a grid has at least one interval
            return 0.0, float(rates[0])
        g, j, th, _ = heap[0]
        return -g, float(rates[j] + th * (rates[j + 1] - rates[j]))

    def refine(self, max_points: int) -> int:
        """Split intervals at their midpoints until every probe meets the target (at
        their quarters or eighths at once where the midpoint fails by far:
        :func:`_split_depth`)."""
        rounds = 0
        while True:
            rates, cont = self.arrays()
            split = []
            for j in range(rates.size - 1):
                key = (float(rates[j]), float(rates[j + 1]))
                if key in self.probed:
                    continue
                worst, at = self.probe(rates, cont, j)
                target = _REFINE_MARGIN * self.tolerance
                if worst > target:
                    # failed at the midpoint by far: the halves would fail too
                    at_mid = abs((at - key[0]) / (key[1] - key[0]) - 0.5) < 1e-9
                    depth = _split_depth(worst / target) if at_mid else 1
                    split.extend(_dyadic(*key, depth))
            if not split or rates.size + len(split) > max_points:
                return rounds
            rounds += 1
            for rate in split:
                self.solve(float(rate))

    def policy(self) -> Policy:
        """The finished policy, after checking every grid point's certificate."""
        rates, rows = self.arrays()
        cont = np.stack(rows)
        results = [self.solved[r] for r in rates]
        ints = np.stack([r.tokens for _, r in results]) if self.integer else None
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
        for j in range(rates.size - 1):
            key = (float(rates[j]), float(rates[j + 1]))
            if key not in self.probed:  # only when max_points stopped the refinement
                self.probed[key] = [
                    (_probe_gap(self.sc, rates, cont, j, th, self.d1), th, True)
                    for th in _REFINE_PROBES + _CHECK_PROBES + _KINK_PROBES
                ]
        worst, at = self.worst_probe(rates, cont)
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
        return Policy(
            scenario=self.sc,
            rates=rates,
            continuous=cont,
            gaps=gaps,
            integer_budgets=ints,
            info=info,
        )
