"""The certified reference: the conic (CVXPY + Clarabel) formulation.

Formulation, scaled so Clarabel solves it reliably (raw token units fail):

* variables ``x in [0, 1]^N`` with ``t = lo + (hi - lo) x``;
* seconds measured in a time unit ``T0`` (the mean service time at the
  midpoint of the box), so the second-order cone has entries of order one;
* ``maximize S (sum_i p_i w_i A_i(t_i) - gamma T0 * W(t) / T0)`` where ``W/T0``
  is ``m1 + (lam T0 / 2) quad_over_lin(q, 1 - lam m1)`` (perspective form, DCP)
  and ``S = N / sum_i p_i w_i`` makes each type's term of order one (without it
  Clarabel stalls at N = 10^4).

A batching server (:class:`cvxalloc.queue.BatchingQueue`) has a convex ``W`` that
is not DCP-representable: it enters as an epigraph variable bounded below by
tangent cuts (:class:`cvxalloc.queue.batching.TangentCuts`, an outer
approximation, so the relaxed optimum bounds ``U*`` from above). After each
solve a cut is added at the solver's load and the problem is re-solved (the
cuts are Parameters: no recompilation) until the relaxation's bound is within
``cut_rtol`` of ``|U|`` at the solver's point; the result's certificate details
give that bound, its gap and the number of cuts.

Clarabel's point is then polished by projected Newton steps
(:mod:`cvxalloc.polish`) until the Frank-Wolfe gap is within ``polish_rtol`` of
``|U|``; the result carries both the raw and the polished certificate and
Clarabel's own primal and dual objectives. Its status is then the certificate's
(``optimal`` within ``polish_rtol``, else ``optimal_inaccurate``), not Clarabel's.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cvxpy as cp
import numpy as np

from .. import _options as _opt
from .. import constraints as cons_mod
from .. import status as st
from ..certificate import relative_scale
from ..errors import OptionError, SolverError
from ..objective import Objective
from ..polish import polish_fully
from ..queue import FIFOQueue, Latency, queue_model
from ..result import Result
from .constraint_rows import conic_constraints, constraint_report
from .finish import finish, single_point, single_point_result

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["build_problem", "solve_conic", "ConicProblem", "conic_solvers", "optimum_box"]

#: Solver settings used unless overridden. Tighter iterative refinement keeps
#: Clarabel from stalling at "almost solved" on N = 10^4 instances (measured:
#: 1 of 6 random instances ended optimal_inaccurate at the defaults, 0 with these).
_DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "CLARABEL": {
        "iterative_refinement_reltol": 1e-14,
        "iterative_refinement_abstol": 1e-14,
        "iterative_refinement_max_iter": 20,
    },
}

_STATUS_MAP = {
    cp.OPTIMAL: st.OPTIMAL,
    cp.OPTIMAL_INACCURATE: st.OPTIMAL_INACCURATE,
    cp.USER_LIMIT: st.ITERATION_LIMIT,
    cp.INFEASIBLE: st.INFEASIBLE,
    cp.INFEASIBLE_INACCURATE: st.INFEASIBLE,
}


class ConicProblem:
    """The CVXPY problem of a scenario, with the maps between ``x`` and tokens.

    Attributes
    ----------
    problem : cvxpy.Problem
    x : cvxpy.Variable
        Normalized tokens in ``[0, 1]``.
    tokens : cvxpy.Expression
        ``lo + (hi - lo) x``.
    time_unit : float
        Seconds per unit of time inside the problem.
    """

    def __init__(
        self,
        scenario: Scenario,
        latency_weight: cp.Parameter | None = None,
        slo: cp.Parameter | None = None,
        scaled_logs: bool = False,
    ) -> None:
        # latency_weight, slo: optional CVXPY Parameters standing for gamma and
        # max_mean_system_time, so a sweep compiles once (DPP) and re-solves.
        # scaled_logs: the log-based families' cones divided by scale + ub, or
        # not (the default); the two are the same problem, and Clarabel fails on
        # different instances of each (the retries try the other one).
        self.scaled_logs = scaled_logs
        self.scenario = sc = scenario
        n = sc.n
        # a box that holds the optimum: max_tokens clipped where no stable point
        # lies and, for a fixed gamma > 0, where the marginal accuracy no longer
        # pays for the marginal latency (huge boxes stay scaled)
        lo, hi = optimum_box(sc, latency_weight)
        self.lo, self.hi = lo, hi
        width = hi - lo
        self.x = cp.Variable(n, name="x")
        self.tokens = lo + cp.multiply(width, self.x)
        mid = 0.5 * (lo + hi)
        self.time_unit = float(sc.probability @ sc.service_time(mid)) or 1.0
        pw = sc.probability * sc.weight
        acc = sc.accuracy.weighted_cvxpy(self.tokens, pw, upper=hi if scaled_logs else None)
        constraints = [self.x >= 0, self.x <= 1]
        has_slo = slo is not None or (
            sc.constraints is not None and sc.constraints.max_mean_system_time is not None
        )
        #: ``W / time_unit`` in the model (an epigraph variable when an SLO shares it).
        self.latency = self._latency(sc, latency_weight, has_slo, constraints)
        objective = acc
        if self.latency is not None and (sc.latency_weight > 0 or latency_weight is not None):
            gamma = sc.latency_weight if latency_weight is None else latency_weight
            objective = acc - (gamma * self.time_unit) * self.latency
        #: Operator constraints as ``(term, cvxpy constraint, unit)`` (duals -> shadow prices).
        self.operator_constraints = conic_constraints(
            sc, self.tokens, self.x, self.time_unit, slo=slo, box=(lo, hi), latency=self.latency
        )
        constraints += [con for _, con, _ in self.operator_constraints]
        # Each p_i w_i is about 1/N: scale the objective so per-type terms are of
        # order one (unscaled, Clarabel stalls at N = 10^4).
        self.objective_scale = float(n / np.sum(sc.probability * sc.weight))
        self.problem = cp.Problem(cp.Maximize(self.objective_scale * objective), constraints)

    def _latency(
        self, sc: Scenario, latency_weight: Any, has_slo: bool, constraints: list
    ) -> cp.Expression | None:
        """``W / time_unit`` for the objective and the SLO (None if neither needs it).

        Appends the stability constraint and, for a batching server, the tangent
        cuts to ``constraints``. With an SLO, ``W`` enters once, as an epigraph
        variable ``omega >= W / T0`` shared by the objective (where ``-gamma omega``
        pushes it down to ``W``) and the SLO ``omega <= L / T0``: measured, two
        copies of the N-dimensional cone (one per use) made Clarabel fail on a
        binding SLO at N = 10^4 with every setting (benchmarks/hard_instances.py).
        """
        latency = Latency(sc)
        #: Tangent cuts of a batching server's latency (None for one FIFO server).
        self.cuts = None
        if sc.arrival_rate > 0:
            m1 = sc.probability @ (sc.base + cp.multiply(sc.per_token, self.tokens))
            # one replica's rate and capacity (the scenario's in one server)
            constraints.append(latency.queue.arrival_rate * m1 <= latency.queue.capacity)
        if not (sc.latency_weight > 0 or latency_weight is not None or has_slo):
            return None
        extra = {}
        if getattr(latency.queue, "name", "single") == "batching":
            extra["min_slack"] = _min_slack(sc, latency.queue, latency_weight)
        w_scaled = latency.cvxpy(self.tokens, time_unit=self.time_unit, **extra)
        if hasattr(w_scaled, "constraints"):  # an epigraph with tangent cuts
            self.cuts = w_scaled
            constraints += w_scaled.constraints
            return w_scaled.expr
        if has_slo:
            omega = cp.Variable(name="mean_system_time")
            constraints.append(w_scaled <= omega)
            return omega
        return w_scaled

    def token_values(self) -> np.ndarray | None:
        """Tokens of the solver's point, clipped into the box (None if no point)."""
        if self.x.value is None:
            return None
        return np.clip(self.x.value, 0.0, 1.0)

    def stable_point(self) -> bool:
        """Whether the solver left a finite point whose queue is stable (lam m1 < capacity)."""
        x = self.token_values()
        if x is None or not np.all(np.isfinite(x)):
            return False
        return bool(self.scenario.utilization(self.lo + (self.hi - self.lo) * x) < 1.0)


def optimum_box(sc: Scenario, latency_weight: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, ub)``: a box that holds every optimal allocation, for the conic model.

    ``ub`` starts from :meth:`Scenario.stable_max_tokens`. With a fixed
    ``gamma > 0`` (not a sweep's Parameter) it is lowered further: where
    ``t_i* > lo_i`` the optimum cannot gain by lowering ``t_i``, so
    ``w_i A_i'(t_i*) >= gamma b_i D_i`` with ``D_i = A + B (1 + k_i) s_i``
    (:meth:`Latency.marginal`); every constraint (a token or utilization cap,
    the SLO) only adds non-negative costs to the right side, so the same holds
    with them. With ``D_i >= A_min + B_min (1 + k_i) s_i`` (:func:`_marginal_floor`)
    and ``A_i'`` decreasing, ``t_i* <= max(lo_i', r_i)`` where ``r_i`` solves
    ``w_i A_i'(r) = gamma b_i (A_min + B_min (1 + k_i) (a_i + b_i r))``
    (:meth:`AccuracyCurves.solve_marginal`), and ``lo_i'`` is the lower bound
    raised by a min_accuracy constraint. Where the queue is already loaded at
    the minimum budgets, ``A`` and ``B`` there are the floors (they grow with the
    moments for ``c_a^2 >= 1``): at ``arrival_scv = 50`` and utilization 0.988
    at ``lo`` the optimum is ``lo`` itself, which this box says, where Clarabel
    stopped with InsufficientProgress on the model over the stable box.

    Only the model uses it: the polish and the certificate keep
    :func:`cvxalloc.certificate.certificate_box`, so a wrong bound could cost
    accuracy of the solver's point, never the honesty of the certificate.
    """
    lo, hi = sc.min_tokens, sc.stable_max_tokens()
    gamma = sc.latency_weight
    if latency_weight is not None or not gamma > 0:
        return lo, hi
    queue = queue_model(sc)  # (in a fleet: one replica's share of the arrivals)
    floor = _marginal_floor(queue, Latency(sc).moments(lo))
    if floor is None:
        return lo, hi
    a_min, b_min = floor
    k1, a, b, w = 1.0 + sc.scv, sc.base, sc.per_token, sc.weight
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        alpha = gamma * b * (a_min + b_min * k1 * a) / w
        beta = gamma * b_min * k1 * b * b / w
    root = sc.accuracy.solve_marginal(alpha, beta, lo=lo, hi=hi)
    # a margin for the root's rounding; a type held at lo keeps a zero width (a
    # width of 1e-6 of its box would put entries of 1e-13 in the model)
    ub = np.where(root > lo, np.minimum(hi, root + 1e-6 * (root - lo) + 1e-12 * root), lo)
    if sc.constraints is not None and sc.constraints.min_accuracy is not None:
        ub = np.maximum(ub, np.minimum(cons_mod.required_tokens(sc), hi))
    return lo, np.where(np.isfinite(ub), np.maximum(ub, lo), hi)


def _marginal_floor(queue, at_lo) -> tuple[float, float] | None:
    """Lower bounds ``(A_min, B_min)`` of ``A = dW/dm1`` and ``B = 2 dW/dm2`` at every
    stable allocation above the minimum budgets (None if none is known).

    FIFO (:meth:`FIFOQueue.scalars`): ``B = lam / u >= lam``, and
    ``A = 1 + lam^2 N / (2 u^2) - d lam m1 / u`` with ``N = m2 - d m1^2 >= c m1^2``
    (``m2 >= m1^2``), ``c = c_a^2`` and ``d = 1 - c``; with ``z = lam m1 / u``,
    ``A >= 1 - d z + c z^2 / 2``, which is at least 1 for ``c >= 1`` and
    ``1 - d^2 / (2 c)`` for ``c < 1`` (positive for ``c > 2 - sqrt(3) ~ 0.27``).
    For ``c >= 1`` both grow with ``m1`` and ``m2`` (:attr:`FIFOQueue.monotone`),
    which only grow with the tokens, so their values at the minimum budgets
    (``at_lo``, the moments there) are floors too, and the larger ones are used.
    A batching server: None (not derived).
    """
    if not isinstance(queue, FIFOQueue):
        return None
    lam = queue.arrival_rate
    if lam == 0:
        return 1.0, 0.0
    if queue.monotone:
        A_lo, B_lo = queue.derivatives(at_lo.m1, at_lo.m2)
        return (max(1.0, A_lo), max(lam, B_lo)) if np.isfinite(A_lo) else (1.0, lam)
    c = queue.arrival_scv
    floor = 1.0 - (1.0 - c) ** 2 / (2.0 * c) if c > 0 else -1.0
    return (floor, lam) if floor > 0 else None


def _min_slack(sc: Scenario, queue, latency_weight) -> float | None:
    """A slack ``1 - rho`` the optimum provably keeps (None where none is known).

    ``1 - rho(hi)`` if the whole box is stable; else, with ``gamma > 0``,
    ``U(t*) >= U(lo)`` bounds ``W(t*)`` by ``W(lo) + (Acc_max - Acc(lo)) / gamma``
    and the queue's ``min_slack`` turns that into a slack.
    """
    lam, cap = queue.arrival_rate, queue.capacity
    m1_lo = float(sc.probability @ sc.service_time(sc.min_tokens))
    m1_hi = float(sc.probability @ sc.service_time(sc.max_tokens))
    if lam * m1_hi < cap:
        return 1.0 - lam * m1_hi / cap
    if latency_weight is not None or sc.latency_weight <= 0:
        return None  # gamma is a Parameter (a sweep) or 0: no bound on W
    pw = sc.probability * sc.weight
    gap = float(pw @ (sc.accuracy.value(sc.max_tokens) - sc.accuracy.value(sc.min_tokens)))
    wbar = queue.value(m1_lo) + max(gap, 0.0) / sc.latency_weight
    return queue.min_slack(wbar)


def build_problem(scenario: Scenario) -> ConicProblem:
    """The conic problem of ``scenario`` (not yet solved)."""
    return ConicProblem(scenario)


def solve_conic(
    scenario: Scenario,
    *,
    problem: ConicProblem | None = None,
    solver: str = "CLARABEL",
    fallback: str | None = "SCS",
    polish_rtol: float = 1e-10,
    polish_steps: int = 50,
    verbose: bool = False,
    solver_options: dict[str, Any] | None = None,
    cut_rtol: float = 1e-9,
    max_cuts: int = 60,
    fallback_time_limit: float = 60.0,
) -> Result:
    """Solve with the conic reference and certify the answer.

    Parameters
    ----------
    scenario : Scenario
    problem : ConicProblem, optional
        Internal to :mod:`cvxalloc.sweep`: a problem built with Parameters whose
        values the caller has set to match ``scenario``, re-solved without
        compiling. Anything but a ``ConicProblem`` is refused.
    solver : str
        CVXPY solver name (default Clarabel): one of :func:`conic_solvers`, the
        installed solvers that take second-order cones; any other name is refused.
    fallback : str or None
        Solver tried if ``solver`` raises an error (default SCS), one of the
        same names, or None for none. When it produced the answer,
        ``result.fallback`` names it and ``solver_stats["solver"]`` says why.
    polish_rtol : float
        Polish until the Frank-Wolfe gap is within ``polish_rtol * |U|``
        (0 disables polishing: ``polish_steps=0`` too).
    polish_steps : int
        Newton steps at most.
    verbose : bool
        Print the solver's log.
    solver_options : dict, optional
        Passed to ``solver`` (not to the fallback, whose settings differ).
    cut_rtol : float
        Batching server only: add tangent cuts until their error at the
        solver's point, ``gamma (W - w)``, is within ``cut_rtol * |U|`` (the
        relaxation's bound is then as tight as the solver's own gap allows).
    max_cuts : int
        Batching server only: cuts added at most (re-solves).
    fallback_time_limit : float
        Seconds the fallback may run (default 60; SCS's ``time_limit_secs``). When it
        stops there, ``solver_stats["time_limit_reached"]`` is True and, unless the
        polished point is certified within ``polish_rtol``, the status is
        ``"iteration_limit"``, the message naming the limit.

    Returns
    -------
    Result
        After polishing, ``status`` is the certificate's: ``"optimal"`` when the
        Frank-Wolfe gap (or the constrained certificate's gap) is within
        ``polish_rtol * |U|``, ``"optimal_inaccurate"`` otherwise; the solver's
        own status is ``solver_stats["solver_status"]``. Without polishing
        (``polish_steps=0``) ``status`` is the solver's, mapped without relabelling.
    """
    polish_rtol = _opt.nonnegative("polish_rtol", polish_rtol)
    polish_steps = _opt.count("polish_steps", polish_steps)
    cut_rtol = _opt.positive("cut_rtol", cut_rtol)
    max_cuts = _opt.count("max_cuts", max_cuts)
    fallback_time_limit = _opt.positive("fallback_time_limit", fallback_time_limit)
    solver_options = _opt.mapping("solver_options", solver_options)
    verbose = _opt.flag("verbose", verbose)
    solver, fallback = _check_solver_names(solver, fallback)
    if problem is not None and not isinstance(problem, ConicProblem):
        raise OptionError(
            "option problem is internal (the compiled problem cvxalloc.sweep reuses between "
            f"points) and cannot be set (got {problem!r}); leave it out"
        )
    sc = scenario
    t0 = time.perf_counter()
    constrained = sc.constraints is not None and not sc.constraints.empty
    if constrained:
        lo2 = cons_mod.check_feasible(sc)  # exact: names the conflicting constraints
        if single_point(sc, lo2):
            return single_point_result(sc, lo2)
    # build (the other variant only if a retry needs it)
    first = ConicProblem(sc) if problem is None else problem
    if first.cuts is None and np.all(first.hi <= first.lo):
        return _box_point(sc, first, constrained, polish_rtol, t0)
    models = {first.scaled_logs: first}
    t_build = time.perf_counter() - t0

    def model(scaled: bool) -> ConicProblem:
        if scaled not in models:
            models[scaled] = ConicProblem(sc, scaled_logs=scaled)
        return models[scaled]

    # solve, retrying and falling back
    attempts = _attempts(solver, fallback, solver_options, fallback_time_limit)
    run = _solve_with_retries(model, attempts, solver_options, verbose)
    run.times["build_time"] = t_build
    cprob = run.cprob
    cut_details: dict[str, Any] = {}
    if cprob.cuts is not None and cprob.x.value is not None:
        run.raw_solution, t_cuts, cut_details = _refine_cuts(
            cprob, sc, run.name, run.opts, run.raw_solution, cut_rtol, max_cuts, verbose
        )
        run.times["solve_time"] += t_cuts
    run.times["total_time"] = time.perf_counter() - t0
    # polish and assemble
    res = _assemble(sc, cprob, run, cut_details, constrained, polish_rtol, polish_steps)
    res.fallback = run.name if run.name != solver else None
    return res


def _box_point(sc, cprob: ConicProblem, constrained: bool, polish_rtol: float, t0: float):
    """The result when :func:`optimum_box` is one point: no solve, the certificate decides.

    Every type's marginal accuracy at its minimum is below what its marginal
    latency costs at least (measured: arrival_scv 50 and 173, utilization 0.988
    and 0.992 at the minimum budgets, N = 200 and 2000), so the optimum is the
    minimum budgets. Clarabel, given that model (every width 0, a latency term of
    1e9 in its units), stopped with InsufficientProgress on every setting and
    SCS ran for minutes; the answer is known exactly and certified here.
    """
    obj = Objective(sc)
    tokens = np.array(cprob.lo, dtype=float)
    res = Result.from_tokens(
        sc,
        tokens,
        method="conic",
        status=st.OPTIMAL,
        objective=obj,
        solver_stats={"solver": "none (the optimum box is one point)"},
        diagnostics={"constraints": constraint_report(sc, tokens)} if constrained else {},
    )
    res.status = st.OPTIMAL if res.certificate.within(polish_rtol) else st.OPTIMAL_INACCURATE
    res.raw_certificate = res.certificate  # no solver point: the box's point is the raw one
    res.solver_stats["total_time"] = time.perf_counter() - t0
    res.message = (
        "the box that holds the optimum is the minimum budgets alone (no type's marginal "
        "accuracy pays its marginal latency there): no solve needed; Frank-Wolfe gap "
        f"{res.certificate.relative_gap:.2e} of |U|"
    )
    return res


def conic_solvers() -> list[str]:
    """Installed CVXPY solvers that take second-order cones (the model needs them)."""
    try:
        from cvxpy.constraints import SOC
        from cvxpy.reductions.solvers.defines import INSTALLED_CONIC_SOLVERS, SOLVER_MAP_CONIC

        return [
            name
            for name in INSTALLED_CONIC_SOLVERS
            if name in SOLVER_MAP_CONIC and SOC in SOLVER_MAP_CONIC[name].SUPPORTED_CONSTRAINTS
        ]
    except (ImportError, AttributeError):  # another CVXPY layout: every installed solver
        return list(cp.installed_solvers())


def _check_solver_names(solver: Any, fallback: Any) -> tuple[str, str | None]:
    """``(solver, fallback)`` in CVXPY's upper case; refuse names no installed conic solver has."""
    names = conic_solvers()
    shown = ", ".join(map(repr, names))
    if not isinstance(solver, str) or solver.upper() not in names:
        raise OptionError(f"option solver must be one of {shown} (got {solver!r})")
    if fallback is not None and (not isinstance(fallback, str) or fallback.upper() not in names):
        raise OptionError(f"option fallback must be one of {shown} or null (got {fallback!r})")
    return solver.upper(), None if fallback is None else fallback.upper()


#: Clarabel settings retried, in order, when it stops short of "optimal".
#: Measured on the 19 random instances (N <= 3000) of the baseline campaign
#: whose first solve failed, on the model of this module with scaled log cones
#: and the clipped box: default settings 9 optimal; equilibrate_enable=False alone 10;
#: with max_step_fraction=0.9 14; adding static_regularization_constant=1e-10
#: 17 (the one before the last); max_step_fraction=0.8 14, the other two. A
#: smaller regularization as a default made small instances worse (5 vs 2 of
#: 300 not optimal, an earlier model), so it stays a retry.
CLARABEL_RETRIES: tuple[dict[str, Any], ...] = (
    {
        "equilibrate_enable": False,
        "max_step_fraction": 0.9,
        "static_regularization_constant": 1e-10,
    },
    {"equilibrate_enable": False, "max_step_fraction": 0.8},
    {"static_regularization_constant": 1e-10},
    # a larger regularization, last: the one attempt that solved campaign seed 15's
    # instance 14 (N = 7716, overloaded, huge boxes) after every other one failed
    {"static_regularization_constant": 1e-6},
)


#: The time-limit setting of each fallback solver that has one (seconds).
_TIME_LIMIT_OPTION = {"SCS": "time_limit_secs"}


def _attempts(
    solver: str, fallback: str | None, solver_options: dict[str, Any], time_limit: float = 60.0
) -> list[tuple[str, dict[str, Any], bool]]:
    """The solves to try, in order: ``(solver name, settings added, scaled_logs)``.

    When Clarabel stops short of "optimal" it is retried on the model with
    scaled log cones (:class:`ConicProblem`, ``scaled_logs=True``), then with
    each setting of :data:`CLARABEL_RETRIES` the caller did not set, on both
    models. The fallback comes last, and a result it produced says so
    (``result.fallback``), with ``time_limit`` seconds where the solver takes a
    limit (:data:`_TIME_LIMIT_OPTION`: SCS ran 146 s and 307 s on two campaign
    instances before its limit existed). Measured on the 500-instance campaign
    (docs/solvers.md): Clarabel's first solve ended optimal on 441 with the
    unscaled model first, 366 with the scaled one first; 500 either way in the end.
    """
    attempts: list[tuple[str, dict[str, Any], bool]] = [(solver, {}, False)]
    if solver == "CLARABEL":
        attempts.append((solver, {}, True))
        for extra in CLARABEL_RETRIES:
            if not set(extra) & set(solver_options):
                attempts += [(solver, extra, False), (solver, extra, True)]
    if fallback and fallback != solver:
        key = _TIME_LIMIT_OPTION.get(fallback)
        attempts.append((fallback, {key: float(time_limit)} if key else {}, False))
    return attempts


@dataclass
class _Run:
    """The solve that produced the point: which attempt, its raw solution, the times."""

    label: str  # solver name and the settings of the attempt
    name: str  # CVXPY solver name
    opts: dict[str, Any]
    cprob: ConicProblem  # the model it solved
    raw_solution: Any
    chain: Any
    inverse: Any
    errors: list[str] = field(default_factory=list)  # attempts that failed before it
    times: dict[str, float] = field(default_factory=dict)


def _solve_once(
    cprob: ConicProblem, name: str, opts: dict[str, Any], verbose: bool, times: dict[str, float]
) -> tuple[Any, Any, Any]:
    """Compile for ``name`` and solve; the problem's values are unpacked."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tc = time.perf_counter()
        data, chain, inverse = cprob.problem.get_problem_data(name, solver_opts=opts)
        times["compile_time"] += time.perf_counter() - tc
        ts = time.perf_counter()
        raw_solution = chain.solve_via_data(
            cprob.problem, data, warm_start=False, verbose=verbose, solver_opts=opts
        )
        times["solve_time"] += time.perf_counter() - ts
        cprob.problem.unpack_results(raw_solution, chain, inverse)
    return raw_solution, chain, inverse


def _solve_with_retries(
    model: Callable[[bool], ConicProblem],
    attempts: list[tuple[str, dict[str, Any], bool]],
    solver_options: dict[str, Any],
    verbose: bool,
) -> _Run:
    """Try ``attempts`` in order until one ends optimal (or is the last of its solver).

    ``model(scaled_logs)`` gives the problem of an attempt. A retry of the same
    solver follows only a status short of optimal; a point short of optimal is
    kept and used if the retries raise.
    """
    errors: list[str] = []
    times = {"compile_time": 0.0, "solve_time": 0.0}
    kept = used = None
    for k, (name, extra, scaled) in enumerate(attempts):
        own = solver_options if name == attempts[0][0] else {}  # the fallback's differ
        opts = {**_DEFAULT_OPTIONS.get(name, {}), **own, **extra}
        label = name + (" (scaled log cones)" if scaled else "")
        label += "".join(f" {key}={val}" for key, val in extra.items())
        same_next = k + 1 < len(attempts) and attempts[k + 1][0] == name
        cprob = model(scaled)
        try:
            solution = _solve_once(cprob, name, opts, verbose, times)
        except (cp.error.SolverError, ValueError) as exc:
            errors.append(f"{label}: {exc}")
            if kept is not None and not same_next:  # retries failed: use the kept point
                break
            continue
        status = cprob.problem.status
        if status != cp.OPTIMAL and not cprob.stable_point():
            # measured: Clarabel stopped at user_limit on an iterate with utilization
            # 1.3 (U = -inf), which no polish can use; a failure, not a point to keep
            errors.append(f"{label}: status {status} at an unstable point")
            if kept is not None and not same_next:
                break
            continue
        used, kept = _Run(label, name, opts, cprob, *solution), None
        if not same_next or status not in (cp.OPTIMAL_INACCURATE, cp.USER_LIMIT):
            break
        errors.append(f"{label}: status {cprob.problem.status}")
        kept = used
    else:
        raise SolverError("conic solve failed: " + "; ".join(errors))
    if kept is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kept.cprob.problem.unpack_results(kept.raw_solution, kept.chain, kept.inverse)
    used.errors, used.times = errors, times
    return used


def _assemble(
    sc: Scenario,
    cprob: ConicProblem,
    run: _Run,
    cut_details: dict[str, Any],
    constrained: bool,
    polish_rtol: float,
    polish_steps: int,
) -> Result:
    """Polish the solver's point and wrap it, with both certificates, in a result."""
    raw_status = cprob.problem.status
    status = _STATUS_MAP.get(raw_status, st.SOLVER_ERROR)
    x = cprob.token_values()
    if constrained and status == st.INFEASIBLE:
        raise cons_mod.InfeasibleError(
            f"constraints conflict: {run.label} reports the problem {raw_status} "
            f"({', '.join(sc.constraints.kinds)}); relax one of them"
        )
    if x is None:
        raise SolverError(
            f"conic solver {run.label} returned status {raw_status!r} without an allocation"
        )
    raw_tokens = cprob.lo + (cprob.hi - cprob.lo) * x
    stats = cprob.problem.solver_stats
    used = run.label
    solver_stats: dict[str, Any] = {
        "solver": used if not run.errors else f"{used} (fallback after {'; '.join(run.errors)})",
        "solver_status": raw_status,
        "iterations": stats.num_iters,
        **{key: run.times[key] for key in ("build_time", "compile_time", "solve_time")},
        "total_time": run.times["total_time"],
    }
    obj = Objective(sc)
    tokens, diagnostics = _polish(
        sc, cprob, raw_tokens, obj, constrained, polish_rtol, polish_steps, solver_stats
    )
    raw = Result.from_tokens(sc, raw_tokens, method="conic", status=status, objective=obj)
    res = Result.from_tokens(
        sc,
        tokens,
        method="conic",
        status=status,
        objective=obj,
        raw_certificate=raw.certificate if polish_steps > 0 else None,
        iterations=int(stats.num_iters or 0),
        solver_stats=solver_stats,
        diagnostics=diagnostics,
        message=f"{used} status {raw_status}; Frank-Wolfe certified",
    )
    if (
        polish_steps > 0
        and polish_rtol > 0
        and status in st.SOLUTION_PRESENT
        and np.isfinite(res.objective)
    ):
        # after polishing the certificate decides; the solver's word stays in solver_stats
        res.status = st.OPTIMAL if res.certificate.within(polish_rtol) else st.OPTIMAL_INACCURATE
        rel = res.certificate.relative_gap
        res.message = (
            f"{used} status {raw_status}; polished to a certified (Frank-Wolfe) gap of "
            f"{rel:.2e} of |U|, "
            + ("within" if res.status == st.OPTIMAL else "above")
            + f" polish_rtol {polish_rtol:g}"
        )
    limit = _time_limit_reached(run)
    if limit is not None:
        solver_stats["time_limit_reached"] = True
        res.message = f"{run.name} stopped at its time limit of {limit:g} s; " + res.message
        if res.status != st.OPTIMAL:
            res.status = st.ITERATION_LIMIT
    details = {"solver": used, "solver_status": raw_status, **_duality(cprob, run.raw_solution)}
    details.update(cut_details)
    res.certificate.details.update(details)
    if res.raw_certificate is not None:
        res.raw_certificate.details.update(details)
    return res


def _time_limit_reached(run: _Run) -> float | None:
    """The time limit the solve of ``run`` stopped at, or None (SCS says so in its status)."""
    key = _TIME_LIMIT_OPTION.get(run.name)
    info = run.raw_solution.get("info", {}) if isinstance(run.raw_solution, dict) else {}
    if key is None or key not in run.opts or "time_limit" not in str(info.get("status", "")):
        return None
    return float(run.opts[key])


def _duality(cprob: ConicProblem, raw_solution: Any) -> dict[str, float]:
    """The solver's primal and dual objectives and gap, in units of ``U`` (if it gives both)."""
    if not (hasattr(raw_solution, "obj_val") and hasattr(raw_solution, "obj_val_dual")):
        return {}
    # The solver minimizes -S*U (less a constant): translate to units of U.
    scale = cprob.objective_scale
    primal = float(cprob.problem.value) / scale
    gap = (float(raw_solution.obj_val) - float(raw_solution.obj_val_dual)) / scale
    return {"primal_objective": primal, "dual_objective": primal + gap, "duality_gap": abs(gap)}


def _polish(
    sc: Scenario,
    cprob: ConicProblem,
    raw_tokens: np.ndarray,
    obj: Objective,
    constrained: bool,
    polish_rtol: float,
    polish_steps: int,
    solver_stats: dict[str, Any],
) -> tuple[np.ndarray, dict[str, Any]]:
    """Polished tokens and the diagnostics (constraint report); fills ``solver_stats``."""
    diagnostics: dict[str, Any] = {}
    if constrained:
        tokens, solver_stats["polish_steps"], note = finish(
            sc, raw_tokens, obj, polish_rtol=polish_rtol, polish_steps=polish_steps
        )
        solver_stats["polish"] = note
        diagnostics["constraints"] = constraint_report(
            sc, tokens, cprob.operator_constraints, cprob.objective_scale, box=(cprob.lo, cprob.hi)
        )
    elif polish_steps > 0:
        tokens, stats = polish_fully(sc, raw_tokens, obj, polish_rtol, polish_steps)
        solver_stats.update(stats)
    else:
        tokens = raw_tokens
    return tokens, diagnostics


def _relaxed_bound(cprob: ConicProblem, raw_solution: Any) -> float:
    """The solver's upper bound on the (relaxed) problem's optimum, in units of ``U``."""
    scale = cprob.objective_scale
    primal = float(cprob.problem.value) / scale
    if hasattr(raw_solution, "obj_val") and hasattr(raw_solution, "obj_val_dual"):
        gap = (float(raw_solution.obj_val) - float(raw_solution.obj_val_dual)) / scale
        return primal + max(gap, 0.0)
    return primal


def _refine_cuts(
    cprob: ConicProblem,
    sc: Scenario,
    name: str,
    opts: dict[str, Any],
    raw_solution: Any,
    cut_rtol: float,
    max_cuts: int,
    verbose: bool,
) -> tuple[Any, float, dict[str, Any]]:
    """Kelley's cutting planes on a batching server's latency epigraph.

    The tangent cuts underestimate ``W``, so the relaxed problem's dual
    objective bounds ``U*`` from above and ``U`` at the solver's point bounds it
    from below. They differ by the solver's own gap plus ``gamma (W - w)`` at
    the point, the cuts' error; while that error exceeds ``cut_rtol * |U|``,
    add the tangent at the point's load and re-solve (Parameters: no
    recompilation). A re-solve that no solver setting brings to an optimal or
    inaccurate status drops its cut and restores the last solution (the point a
    failed attempt leaves behind is no point to polish: measured, -13456 where
    the optimum is -12919.58, c2_seed69).
    """
    cuts = cprob.cuts
    obj = Objective(sc)
    lo, hi = cprob.lo, cprob.hi
    lam = obj.latency.queue.arrival_rate
    t_solve = 0.0
    added = 0
    converged = False
    bound = lower = cut_error = float("nan")
    last = None  # (solution, chain, inverse) of the last solve that counts
    while True:
        x = cprob.token_values()
        if x is None:
            break
        t = lo + (hi - lo) * x
        lower = obj.value(t)
        bound = _relaxed_bound(cprob, raw_solution)
        # where the cuts are refined: the load (batching), or the moments (a fleet's router)
        mo = obj.latency.moments(t)
        load = cuts.locate(mo) if hasattr(cuts, "locate") else lam * mo.m1
        cut_error = sc.latency_weight * cuts.gap(load)
        if np.isfinite(lower) and cut_error <= cut_rtol * relative_scale(lower):
            converged = True
            break
        if added >= max_cuts or cuts.full:
            break
        if last is None:
            data, chain, inverse = cprob.problem.get_problem_data(name, solver_opts=opts)
            last = (raw_solution, chain, inverse)
        cuts.add(load)
        best, dt = _resolve(cprob, name, opts, verbose)
        t_solve += dt
        if best is None:
            cuts.pop()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cprob.problem.unpack_results(*last)
            break
        added += 1
        last = best
        raw_solution = best[0]
    details = {
        "relaxation": "tangent cuts (outer approximation of the latency)",
        "cuts": len(cuts.points),
        "cuts_added": added,
        "relaxation_upper_bound": bound,
        "relaxation_gap": bound - lower,
        "cut_error": cut_error,
        "cuts_converged": converged,
    }
    return raw_solution, t_solve, details


def _resolve(cprob: ConicProblem, name: str, opts: dict[str, Any], verbose: bool):
    """Re-solve after a new cut with the first solve's retries.

    Returns ``((solution, chain, inverse), seconds)`` of the first optimal
    attempt, else of the first inaccurate one (its values restored), else
    ``(None, seconds)``.
    """
    variants = [opts]
    if name == "CLARABEL":
        variants += [{**opts, **extra} for extra in CLARABEL_RETRIES]
    best, unpacked, seconds = None, None, 0.0
    for variant in variants:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                data, chain, inverse = cprob.problem.get_problem_data(name, solver_opts=variant)
                ts = time.perf_counter()
                trial = chain.solve_via_data(
                    cprob.problem, data, warm_start=False, verbose=verbose, solver_opts=variant
                )
                seconds += time.perf_counter() - ts
                cprob.problem.unpack_results(trial, chain, inverse)
            except (cp.error.SolverError, ValueError):
                continue
        unpacked = (trial, chain, inverse)
        if cprob.problem.status == cp.OPTIMAL:
            return unpacked, seconds
        if cprob.problem.status == cp.OPTIMAL_INACCURATE and best is None:
            best = unpacked
    if best is not None and best is not unpacked:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "solution may be inaccurate": the status says so
            cprob.problem.unpack_results(*best)
    return best, seconds
