"""The exact integer optimum: a mixed-integer SOCP in CVXPY, solved by SCIP.

Formulation (``docs/integer.md`` has the derivation). Around a reference grid
allocation ``t0`` (the rounded continuous optimum) with ``dt = t - t0``:

* grid restriction: a step grid uses one integer index offset ``d_i`` with
  ``t_i = t0_i + step_i d_i``; a menu uses binaries ``lambda_ik`` (one-hot)
  with ``t_i = sum_k level_ik lambda_ik``;
* accuracy: ``alpha_i <= chord_ik(t_i)`` for chords between *consecutive*
  levels. Each family is concave, so any set of such chords lies on or above
  the curve at every level and all of them meet it there: with every chord
  the hypograph is exact on the grid, with a subset it is a relaxation. Fine
  grids (more than ``full_chords`` levels) start from chords around ``t0``
  and add, after each SCIP solve, the two chords at the solution's level of
  every type where ``alpha_i`` overstates the accuracy, until none does (a
  cutting-plane loop);
* queue: ``W(t) = W(t0) + grad W(t0) . dt + (lam / 2) quad_over_lin(u, y)``
  with ``y = 1 - lam m1(t)`` and ``u = q(t) - (y / y0) q0``: the exact
  identity ``|q|^2/y = (2 q0.q/y0 - |q0|^2 y/y0^2) + |q - (y/y0) q0|^2/y``
  (tangent plane of the 1-homogeneous ``|q|^2/y`` plus a remainder that
  vanishes to second order at ``t0``). SCIP accepts the second-order cone.

Scaling. The objective is ``(U(t) - U(t0)) / unit`` with ``unit =
resolution * |U(t0)|`` (default ``resolution = 1e-6``): the rounded point has
objective 0, neighbouring grid allocations that differ by 1e-9 of ``|U|``
differ by 1e-3 units, and the cone is scaled so its epigraph variable is in
the same units. SCIP's gap limits are 0 (absolute and relative) and its
feasibility tolerance ``feastol`` (default 1e-9). Measured: with
``resolution = 1e-12`` (values of order 1e9 inside SCIP) SCIP's relaxation
bound stalls and a 4-type instance hits the time limit; with 1e-6 it proves
optimality in about a second.

Never worse than rounding: SCIP starts from the rounded allocation (a partial
solution it completes), its answer is snapped to the grid, polished by the
same exact local search, evaluated exactly and compared with the rounding; the
better one is returned. The result reports SCIP's status and proven bound
(translated to units of ``U``) and the certified gap against the continuous
bound, which anyone can recompute (:func:`cvxalloc.integer.integer_certificate`).
"""

from __future__ import annotations

import importlib
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from .. import _options as _opt
from .. import status as st
from ..certificate import relative_scale
from ..errors import MissingDependencyError, OptionError, SolverError
from ..integer import (
    Grids,
    integer_certificate,
    local_search,
    refuse_constraints,
    round_allocation,
)
from ..objective import Objective
from ..result import Result
from ..solve import METHODS, solve

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["solve_mixed_integer", "require_scip", "MixedIntegerModel"]

#: SCIP statuses -> cvxalloc statuses (unknown ones become solver_error).
_STATUS_MAP = {
    "optimal": st.OPTIMAL,
    "gaplimit": st.OPTIMAL_INACCURATE,
    "timelimit": st.ITERATION_LIMIT,
    "nodelimit": st.ITERATION_LIMIT,
    "totalnodelimit": st.ITERATION_LIMIT,
    "stallnodelimit": st.ITERATION_LIMIT,
    "memlimit": st.ITERATION_LIMIT,
    "infeasible": st.SOLVER_ERROR,
}

#: SCIP's bound may sit this many objective units below the answer (its tolerances)
#: before it counts as contradicted, and the status is no longer "optimal".
_BOUND_SLACK_UNITS = 1e-3

_INSTALL_HINT = 'pip install "cvxalloc[mi]"'


def require_scip() -> Any:
    """Import pyscipopt or raise :class:`MissingDependencyError` naming the extra."""
    try:
        return importlib.import_module("pyscipopt")
    except ImportError as exc:
        raise MissingDependencyError(
            f'method "mixed-integer" needs SCIP (pyscipopt): {_INSTALL_HINT}; '
            'method "rounding" works without it'
        ) from exc


def _chord_tables(
    sc: Scenario,
    i: int,
    g0: np.ndarray,
    g1: np.ndarray,
    t0: float,
    A0: float,
    pw: float,
    unit: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Chords between levels ``g0`` and ``g1`` as ``alpha <= c + s * (t - t0)`` in units."""
    fam, j = sc.accuracy.family_of(i)
    a0 = _family_value(fam, j, g0)
    a1 = _family_value(fam, j, g1)
    slope = (a1 - a0) / (g1 - g0)
    # chord value at t0 minus A(t0), in objective units
    c = pw * ((a0 - A0) + slope * (t0 - g0)) / unit
    s = pw * slope / unit
    return c, s


def _family_value(fam, j: int, t: np.ndarray) -> np.ndarray:
    """Accuracy of entry ``j`` of a family at several ``t``."""
    sub = fam.take(np.array([j])) if len(fam) > 1 else fam
    return np.asarray(sub.value(np.asarray(t, dtype=float)), dtype=float)


class MixedIntegerModel:
    """The MISOCP of a scenario around a reference grid allocation.

    Parameters
    ----------
    scenario : Scenario
    grids : Grids
    k0 : ndarray of int
        Reference grid indices (the rounded allocation).
    resolution : float
        Objective unit relative to ``|U(t0)|``.
    full_chords : int
        Grids with at most this many levels get every chord at once.
    chord_spread : bool
        Finer grids start with chords at distances 4, 8, 16, ... levels from
        ``k0`` and at both ends, besides the four around ``k0`` (False: only
        those four).
    """

    def __init__(
        self,
        scenario: Scenario,
        grids: Grids,
        k0: np.ndarray,
        *,
        resolution: float,
        full_chords: int,
        chord_spread: bool = True,
    ) -> None:
        sc = scenario
        self.sc, self.g = sc, grids
        self.k0 = np.asarray(k0, dtype=np.int64)
        self.t0 = grids.values(self.k0)
        self.obj = Objective(sc)
        self.U0 = self.obj.value(self.t0)
        self.unit = resolution * relative_scale(self.U0)
        self.A0 = sc.accuracy.value(self.t0)
        self.pw = sc.probability * sc.weight
        self.menu_levels = {i: grids.levels(i) for i in np.flatnonzero(grids.is_menu)}
        self.chords: list[set[int]] = []
        for i in range(sc.n):
            size = int(grids.size[i])
            nch = size - 1
            if nch <= 0:
                self.chords.append(set())
            elif size <= full_chords:
                self.chords.append(set(range(nch)))
            else:
                k = int(self.k0[i])
                near = {k - 2, k - 1, k, k + 1}
                spread = (
                    {k + s * (2**e) for s in (-1, 1) for e in range(2, 40) if 2**e < nch}
                    | {0, nch - 1}
                    if chord_spread
                    else set()
                )
                self.chords.append({c for c in near | spread if 0 <= c < nch})

    def _levels_near(self, i: int, ks: np.ndarray) -> np.ndarray:
        """Levels of type ``i`` at indices ``ks`` and ``ks + 1``, as one array indexed by k."""
        return self.g.values_of(i, ks)

    def build(self):
        """The CVXPY problem with the current chords; returns (problem, handles)."""
        import cvxpy as cp

        handles: dict[str, Any] = {}
        dt, constraints = self._offsets(handles)
        # accuracy hypograph: alpha_i <= c + s dt_i for every chord in the set
        alpha = cp.Variable(self.sc.n, name="alpha")
        constraints.append(self._hypograph(alpha, dt))
        objective = cp.sum(alpha)
        latency_terms, queue_constraints = self._latency_terms(dt)
        for term in latency_terms:
            objective = objective - term
        handles["alpha"] = alpha
        handles["dt"] = dt
        return cp.Problem(cp.Maximize(objective), constraints + queue_constraints), handles

    def _offsets(self, handles: dict[str, Any]):
        """``dt = t - t0`` from the integer offsets (steps) and one-hot levels (menus)."""
        import cvxpy as cp

        sc, g = self.sc, self.g
        n = sc.n
        step_idx = np.flatnonzero(~g.is_menu)
        menu_idx = np.flatnonzero(g.is_menu)
        parts = []
        constraints = []
        if step_idx.size:
            lb = -self.k0[step_idx]
            ub = g.size[step_idx] - 1 - self.k0[step_idx]
            d = cp.Variable(
                step_idx.size, integer=True, name="d", bounds=[lb.astype(float), ub.astype(float)]
            )
            handles["d"] = (d, step_idx)
            E = sp.csr_matrix(
                (g.step[step_idx], (step_idx, np.arange(step_idx.size))), shape=(n, step_idx.size)
            )
            parts.append(E @ d)
        if menu_idx.size:
            rows, cols, vals = [], [], []
            total = int(g.size[menu_idx].sum())
            lam_b = cp.Variable(total, boolean=True, name="onehot")
            handles["onehot"] = (lam_b, menu_idx)
            pos = 0
            onehot_rows, onehot_cols = [], []
            for r, i in enumerate(menu_idx):
                lv = self.menu_levels[i]
                for kk, val in enumerate(lv):
                    rows.append(i)
                    cols.append(pos + kk)
                    vals.append(val - self.t0[i])
                    onehot_rows.append(r)
                    onehot_cols.append(pos + kk)
                pos += lv.size
            B = sp.csr_matrix((vals, (rows, cols)), shape=(n, total))
            C = sp.csr_matrix(
                (np.ones(total), (onehot_rows, onehot_cols)), shape=(menu_idx.size, total)
            )
            parts.append(B @ lam_b)
            handles["onehot_sum"] = C
            constraints.append(C @ lam_b == 1)
        dt = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        return dt, constraints

    def _hypograph(self, alpha, dt):
        """``alpha_i <= c + s dt_i`` for every chord of every type (one sparse constraint)."""
        import cvxpy as cp

        sc, n = self.sc, self.sc.n
        ti, cc, ss = [], [], []
        for i in range(n):
            ks = np.array(sorted(self.chords[i]), dtype=np.int64)
            if ks.size == 0:
                ti.append(np.array([i]))
                cc.append(np.zeros(1))
                ss.append(np.zeros(1))
                continue
            # only the levels the chords touch (a fine grid has up to 2^53 of them)
            g0, g1 = self.g.values_of(i, ks), self.g.values_of(i, ks + 1)
            c, s = _chord_tables(sc, i, g0, g1, self.t0[i], self.A0[i], self.pw[i], self.unit)
            ti.append(np.full(ks.size, i))
            cc.append(c)
            ss.append(s)
        ti_a, cc_a, ss_a = map(np.concatenate, (ti, cc, ss))
        sel = sp.csr_matrix(
            (np.ones(ti_a.size), (np.arange(ti_a.size), ti_a)), shape=(ti_a.size, n)
        )
        self.n_chords = int(ti_a.size)
        return sel @ alpha <= cc_a + cp.multiply(ss_a, sel @ dt)

    def _latency_terms(self, dt):
        """The latency cost in units, ``(gamma / unit) grad W(t0) . dt`` and
        ``(gamma lam / 2 / unit) quad_over_lin(u, y)``, as terms, with ``y >= 0``."""
        import cvxpy as cp

        sc = self.sc
        gamma, lam = sc.latency_weight, self.obj.latency.lam  # one replica's rate in a fleet
        if gamma <= 0:
            return [], []
        gW = self.obj.latency.gradient(self.t0)
        term = (gamma / self.unit) * (gW @ dt)
        if lam <= 0:
            return [term], []
        p, b = sc.probability, sc.per_token
        queue, pv = self.obj.latency.queue, float(p @ sc.variance)
        s0 = sc.service_time(self.t0)
        y0 = 1.0 - sc.utilization(self.t0)
        drho = lam * ((p * b) @ dt)  # rho - rho0
        y = y0 - drho
        # q = L s + kappa, so u = q - (y / y0) q0 = L (b dt) + (drho / y0) q0
        q0 = np.asarray(queue.numerator(s0, p, sc.scv, pv).value, dtype=float)
        lin = queue.numerator(cp.multiply(b, dt), p, sc.scv, pv, constant=False)
        u = lin + (q0 / y0) * drho
        # (gamma lam / 2 / unit) |u|^2 / y = |sigma u|^2 / y
        sigma = np.sqrt(gamma * lam / (2.0 * self.unit))
        return [term, cp.quad_over_lin(sigma * u, y)], [y >= 0]

    def tokens_from(self, handles: dict[str, Any]) -> np.ndarray | None:
        """Grid indices of the solver's point (snapped), or None."""
        k = self.k0.copy()
        if "d" in handles:
            d, idx = handles["d"]
            if d.value is None:
                return None
            k[idx] = self.k0[idx] + np.rint(d.value).astype(np.int64)
        if "onehot" in handles:
            lam_b, idx = handles["onehot"]
            if lam_b.value is None:
                return None
            pos = 0
            for i in idx:
                m = int(self.g.size[i])
                k[i] = int(np.argmax(lam_b.value[pos : pos + m]))
                pos += m
        return np.clip(k, 0, self.g.size - 1)

    def violated(self, k: np.ndarray, alpha: np.ndarray, tol: float) -> np.ndarray:
        """Types where ``alpha`` overstates the accuracy deviation at grid index ``k``."""
        t = self.g.values(k)
        true = self.pw * (self.sc.accuracy.value(t) - self.A0) / self.unit
        return np.flatnonzero(alpha > true + tol)

    def add_chords(self, i: int, k: int) -> None:
        """The two chords meeting at level ``k`` of type ``i``."""
        nch = int(self.g.size[i]) - 1
        for c in (k - 1, k):
            if 0 <= c < nch:
                self.chords[i].add(c)

    def start_values(self, handles: dict[str, Any], k: np.ndarray) -> dict[int, float]:
        """Integer-variable values of grid indices ``k`` (by CVXPY variable id, flat)."""
        out: dict[Any, np.ndarray] = {}
        if "d" in handles:
            d, idx = handles["d"]
            out[d.id] = (k[idx] - self.k0[idx]).astype(float)
        if "onehot" in handles:
            lam_b, idx = handles["onehot"]
            vec = np.zeros(lam_b.size)
            pos = 0
            for i in idx:
                vec[pos + int(k[i])] = 1.0
                pos += int(self.g.size[i])
            out[lam_b.id] = vec
        return out


def _scip_solver_class():
    """CVXPY's SCIP interface, extended to add a (partial) starting solution."""
    from cvxpy.reductions.solvers.conic_solvers.scip_conif import SCIP

    class _ScipWithStart(SCIP):
        start: dict[int, float] | None = None
        model = None

        def _solve(self, model, variables, constraints, data, dims):
            if self.start:
                sol = model.createPartialSol()
                for col, val in self.start.items():
                    model.setSolVal(sol, variables[col], val)
                model.addSol(sol)
            self.model = model
            return super()._solve(model, variables, constraints, data, dims)

    return _ScipWithStart


def _run_scip(problem, start: dict[int, np.ndarray], params: dict[str, Any], verbose: bool):
    """Solve ``problem`` with SCIP from a partial start; returns (model, solve_time)."""
    import cvxpy as cp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, chain, inverse = problem.get_problem_data(cp.SCIP)
        cols = data[cp.settings.PARAM_PROB].var_id_to_col
        col_vals: dict[int, float] = {}
        for vid, vec in start.items():
            off = cols[vid]
            for j, v in enumerate(np.atleast_1d(vec)):
                col_vals[off + j] = float(v)
        solver = _scip_solver_class()()
        solver.start = col_vals
        ts = time.perf_counter()
        raw = solver.solve_via_data(data, False, verbose, {"scip_params": dict(params)})
        elapsed = time.perf_counter() - ts
        problem.unpack_results(raw, chain, inverse)
    return solver.model, raw, elapsed


def solve_mixed_integer(
    scenario: Scenario,
    *,
    continuous: Result | None = None,
    continuous_method: str | None = None,
    time_limit: float = 120.0,
    feastol: float = 1e-9,
    resolution: float = 1e-6,
    full_chords: int = 64,
    chord_spread: bool = True,
    max_rounds: int = 30,
    scip_params: dict[str, Any] | None = None,
    verbose: bool = False,
) -> Result:
    """The best grid allocation, proven by SCIP, never worse than rounding.

    Parameters
    ----------
    scenario : Scenario
        ``levels`` / ``step`` per type define the grids (see
        :func:`cvxalloc.integer.grid`).
    continuous : Result, optional
        Continuous solution to round and bound with (default: solved).
    continuous_method : str, optional
        Method for the continuous solution (default: the default method).
    time_limit : float
        Seconds for all SCIP solves together (each gets what is left, as
        "limits/time"); on a time limit the status is ``"iteration_limit"``.
    feastol : float
        SCIP's "numerics/feastol".
    resolution : float
        SCIP's objective unit relative to ``|U|`` (``limits/absgap`` is 0,
        so differences of a few units are resolved).
    full_chords : int
        Grids with at most this many levels get all chords up front; finer
        ones get chords lazily (cutting planes).
    chord_spread : bool
        Start fine grids with chords spread geometrically around the rounded
        point (False: only the four around it, so more cutting-plane rounds).
    max_rounds : int
        Cutting-plane rounds (SCIP solves) at most.
    scip_params : dict, optional
        Extra SCIP parameters (override the above).
    verbose : bool
        SCIP's log.

    Returns
    -------
    Result
        ``method="mixed-integer"``; ``status`` from SCIP's last solve
        (``"optimal"`` only when SCIP proved optimality and no chord was
        violated); ``certificate`` of kind ``"integer"`` against the
        continuous bound, with SCIP's proven bound in ``certificate.details``
        and ``diagnostics`` (``scip_status``, ``scip_bound``, ``scip_gap``,
        ``rounds``, ``chords``, ``rounding_objective``, ``source``).

    Raises
    ------
    MissingDependencyError
        pyscipopt is not installed (``pip install "cvxalloc[mi]"``).
    """
    time_limit = _opt.positive("time_limit", time_limit)
    feastol = _opt.positive("feastol", feastol)
    resolution = _opt.positive("resolution", resolution)
    full_chords = _opt.count("full_chords", full_chords, minimum=2)
    chord_spread = _opt.flag("chord_spread", chord_spread)
    max_rounds = _opt.count("max_rounds", max_rounds, minimum=1)
    scip_params = _opt.mapping("scip_params", scip_params)
    verbose = _opt.flag("verbose", verbose)
    if continuous is not None and not isinstance(continuous, Result):
        raise OptionError(
            f"option continuous must be a Result of cvxalloc.solve (got {continuous!r}); "
            "from the command line use continuous_method instead"
        )
    if continuous_method is not None:
        # any continuous method (the integer one would call itself)
        _opt.choice(
            "continuous_method", continuous_method, [m for m in METHODS if m != "mixed-integer"]
        )
    require_scip()
    sc = scenario
    refuse_constraints(sc)
    t_start = time.perf_counter()
    if continuous is None:
        continuous = solve(sc, method=continuous_method)
    # build: the model around the rounded continuous optimum
    rounded = round_allocation(sc, continuous=continuous)
    cont_tokens = np.clip(np.asarray(continuous.tokens, dtype=float), sc.min_tokens, sc.max_tokens)
    g = Grids(sc)
    obj = Objective(sc)
    model = MixedIntegerModel(
        sc,
        g,
        g.nearest(rounded.tokens),
        resolution=resolution,
        full_chords=full_chords,
        chord_spread=chord_spread,
    )
    params: dict[str, Any] = {
        "limits/time": float(time_limit),
        "limits/gap": 0.0,
        "limits/absgap": 0.0,
        "numerics/feastol": float(feastol),
    }
    params.update(scip_params or {})
    # solve: SCIP rounds with chords added where the hypograph overstates accuracy
    rounds = _Rounds(best_k=model.k0.copy(), best_U=rounded.objective)
    _cutting_planes(model, obj, rounds, params, max_rounds, float(time_limit), verbose)
    # fall back: exact local search from the best point (guards against SCIP's tolerances)
    k_ls, info = local_search(sc, rounds.best_k, g, objective=obj)
    if info.moves:
        rounds.best_k, rounds.best_U = k_ls, obj.value(g.values(k_ls))
        rounds.source += "+local-search"
    # assemble
    return _assemble(sc, model, obj, rounds, rounded, cont_tokens, info.moves, t_start)


@dataclass
class _Rounds:
    """The state of the cutting-plane loop: the best grid point and what SCIP said."""

    best_k: np.ndarray
    best_U: float
    source: str = "rounding"
    rounds: int = 0
    scip_status: str | None = None
    scip_bound_units: float = np.inf
    scip_time: float = 0.0
    nodes: int = 0
    violated_left: int = 0
    out_of_time: bool = False
    history: list[float] = field(default_factory=list)


def _cutting_planes(
    model: MixedIntegerModel,
    obj: Objective,
    rs: _Rounds,
    params: dict[str, Any],
    max_rounds: int,
    time_limit: float,
    verbose: bool,
) -> None:
    """SCIP solves, each followed by the chords at its point where ``alpha`` overstates."""
    sc, g = model.sc, model.g
    deadline = time.perf_counter() + time_limit
    while rs.rounds < max_rounds:
        remaining = deadline - time.perf_counter()
        if rs.rounds and remaining <= 0:
            rs.out_of_time = True
            break
        params["limits/time"] = max(remaining, 1.0)
        rs.rounds += 1
        problem, handles = model.build()
        start = model.start_values(handles, rs.best_k)
        try:
            smodel, raw, elapsed = _run_scip(problem, start, params, verbose)
        except Exception as exc:  # noqa: BLE001 - SCIP/CVXPY errors of any kind
            raise SolverError(f"SCIP failed on the mixed-integer model: {exc}") from exc
        rs.scip_time += elapsed
        rs.scip_status = smodel.getStatus()
        rs.nodes += int(smodel.getNTotalNodes())
        rs.scip_bound_units = _scip_bound_units(smodel, problem)
        k = model.tokens_from(handles)
        if k is None:
            break
        t_k = g.values(k)
        if sc.utilization(t_k) < 1:
            U_k = obj.value(t_k)
            rs.history.append(U_k)
            if U_k > rs.best_U:
                rs.best_k, rs.best_U, rs.source = k.copy(), U_k, "scip"
        alpha = np.asarray(handles["alpha"].value, dtype=float)
        bad = model.violated(k, alpha, tol=1e-6)
        rs.violated_left = int(bad.size)
        if bad.size == 0:
            break
        for i in bad:
            model.add_chords(int(i), int(k[i]))


def _scip_bound_units(smodel, problem) -> float:
    """SCIP's proven bound on the maximum, in the model's objective units."""
    # SCIP minimizes c'x; CVXPY's value is -(c'x + offset) (a maximization).
    if smodel.getNSols() > 0 and problem.value is not None and np.isfinite(problem.value):
        offset = -float(problem.value) - float(smodel.getPrimalbound())
        return -(float(smodel.getDualbound()) + offset)
    return -float(smodel.getDualbound()) if np.isfinite(smodel.getDualbound()) else np.inf


def _assemble(
    sc: Scenario,
    model: MixedIntegerModel,
    obj: Objective,
    rs: _Rounds,
    rounded: Result,
    cont_tokens: np.ndarray,
    moves: int,
    t_start: float,
) -> Result:
    """The result at the best grid point, certified against the continuous bound."""
    best_U = rs.best_U
    tokens = model.g.values(rs.best_k)
    cert = integer_certificate(sc, tokens, cont_tokens, obj)
    scip_bound = model.U0 + rs.scip_bound_units * model.unit
    status = _STATUS_MAP.get(rs.scip_status or "", st.SOLVER_ERROR)
    if status == st.OPTIMAL and (rs.violated_left or rs.out_of_time):
        status = st.ITERATION_LIMIT
    # A proven bound below a grid point we hold proves nothing (SCIP's tolerances
    # are about 1e-9 units; a thousandth of a unit is far above them).
    contradicted = best_U > scip_bound + _BOUND_SLACK_UNITS * model.unit
    if status == st.OPTIMAL and contradicted:
        status = st.OPTIMAL_INACCURATE
    cert.details.update(
        {"scip_status": rs.scip_status, "scip_bound": scip_bound, "scip_gap": scip_bound - best_U}
    )
    res = Result.from_tokens(
        sc,
        tokens,
        method="mixed-integer",
        status=status,
        objective=obj,
        iterations=rs.rounds,
        solver_stats={
            "solver": "SCIP",
            "scip_status": rs.scip_status,
            "scip_time": rs.scip_time,
            "nodes": rs.nodes,
            "total_time": time.perf_counter() - t_start,
        },
        diagnostics={
            "scip_status": rs.scip_status,
            "scip_bound": scip_bound,
            "scip_gap": scip_bound - best_U,
            "scip_relative_gap": (scip_bound - best_U) / relative_scale(best_U),
            "rounds": rs.rounds,
            "chords": model.n_chords,
            "violated_chords_left": rs.violated_left,
            "rounding_objective": rounded.objective,
            "improvement_over_rounding": best_U - rounded.objective,
            "source": rs.source,
            "local_search_moves": moves,
            "continuous_upper_bound": cert.upper_bound,
            "rounding_loss": cert.details["continuous_objective"] - best_U,
            "objective_unit": model.unit,
        },
        history={"objective": rs.history},
        message=(
            f"SCIP status {rs.scip_status} after {rs.rounds} round(s) of chords; answer from "
            f"{rs.source}; SCIP bound {scip_bound:.12g}"
            + (" (below the answer's U: not a proof)" if contradicted else "")
            + "; gap certified against the continuous bound"
        ),
    )
    res.diagnostics["grid_point_frank_wolfe_gap"] = res.certificate.gap
    res.certificate = cert
    return res
