"""The replay itself: the log's arrivals through the scenario's server under each strategy.

The server is one FIFO server (Lindley's recursion, carried from window to window)
or a continuous-batching server (:class:`cvxalloc.simulate.batching.BatchingEngine`,
its clock moved to each window's start before the window is planned, so what a
controller sees of the past is what had happened by then).

Layer: workflows (:mod:`cvxalloc.controller`; the strategies are described there).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._bisect import bisect
from .._lazy import special
from ..baselines import best_uniform
from ..errors import ScenarioError
from ..policy import build_policy, highest_rate
from ..requestlog import RequestLog
from ..simulate import TypeSampler, lindley_waits, service_distribution
from ..simulate.batching import BatchingEngine, Departures
from ..solve import fixed_service_scv, solve, warm_options
from .results import ControlReplay, _Runs, _summaries

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["replay_controller", "plan_scenario", "STRATEGIES", "ESTIMATORS"]


#: Strategy names in report order.
STRATEGIES = ("static", "uniform", "adaptive", "adaptive-mix", "oracle")
#: Rate estimators of the adaptive controllers (see the module docstring).
ESTIMATORS = ("floor", "cautious", "last")
#: Windows by default over the log's span.
DEFAULT_WINDOWS = 60
#: Fewest finished queries of a window from which the adaptive-mix controller
#: re-estimates answer lengths (else it keeps its previous estimate).
MIN_FINISHED = 10


def plan_scenario(sc: Scenario, rate: float, mix=None, tokens=None):
    """The scenario a plan uses: rate, type mix, and answer-token moments ``(mean, var)``.

    A request's answer tokens ``x`` add ``b_i x`` to its service, so a plan that
    knows their mean and variance sees ``base + b E[x]`` and ``variance + b^2 Var[x]``
    (e.g. ``tokens=log.token_moments``).
    """
    kw: dict[str, Any] = {"arrival_rate": rate}
    if mix is not None:
        kw["probability"] = mix
    if tokens is not None:
        mx, vx = tokens
        kw["base"] = sc.base + sc.per_token * mx
        kw["variance"] = sc.variance + sc.per_token**2 * vx
    return sc.with_(**kw)


def _top(sc: Scenario) -> float:
    return highest_rate(sc)


def _optimum(sc: Scenario, warm=None):
    return solve(sc, **warm_options(sc, warm))


def _rate_for_utilization(sc: Scenario, target: float) -> float:
    """The arrival rate at which the scenario's optimum runs at utilization ``target``."""
    lo, hi = 0.0, _top(sc)
    res = _optimum(sc.with_(arrival_rate=hi))
    if res.evaluation.utilization <= target:
        raise ScenarioError(
            f"utilization {target:g}: the optimum never reaches it below saturation "
            f"(at most {res.evaluation.utilization:.4g})"
        )
    # each step is a solve: 34 halvings leave a bracket of 1e-10 of the top rate
    lo, hi = bisect(
        lambda rate: _optimum(sc.with_(arrival_rate=rate)).evaluation.utilization < target,
        lo,
        hi,
        max_iter=34,
    )
    return 0.5 * (lo + hi)


def _mix(types: np.ndarray | None, n: int, prior: np.ndarray) -> np.ndarray | None:
    """Type mix of observed types with one pseudo-observation spread by the prior."""
    if types is None:
        return None
    counts = np.bincount(types, minlength=n).astype(float)
    p = (counts + prior) / (counts.sum() + 1.0)
    return p / p.sum()


def replay_controller(
    scenario: Scenario,
    log,
    *,
    target_utilization: float | None = 0.7,
    window: float | None = None,
    seeds: int = 10,
    seed: int = 0,
    backlog: bool = True,
    estimator: str = "floor",
    use_tokens: bool = True,
    policy=None,
    confidence: float = 0.99,
    strategies: tuple[str, ...] | None = None,
) -> ControlReplay:
    """Replay a request log under static, adaptive and oracle budgets.

    Parameters
    ----------
    scenario : Scenario
        Types, service and accuracy models (one FIFO server; its
        ``arrival_rate`` is not used).
    log : RequestLog or array_like
        Arrival times (plain times are made a log by
        :meth:`RequestLog.of <cvxalloc.requestlog.RequestLog.of>`, which checks and
        sorts them); its ``types`` (task names) are replayed when present,
        else types are drawn from the scenario's mix; its ``tokens`` are
        answer lengths added to each service when ``use_tokens``.
    target_utilization : float or None
        Rescale time so that the static plan at the log's average rate runs the
        server at this utilization (default 0.7); None: the times as they are.
    window : float, optional
        Seconds of the replay between re-plans (default: the span / 60).
    seeds : int
        Independent replications (types, services, correctness).
    seed : int
        Root seed.
    backlog : bool
        Whether the adaptive controllers add ``Q / window`` to the rate.
    estimator : {"floor", "cautious", "last"}
        The adaptive controllers' rate estimate (see the module docstring).
    use_tokens : bool
        Use the log's token counts as answer lengths (when it has them).
    policy : Policy, optional
        The adaptive controller's policy (default: built here for the log's
        average mix and answer lengths). Must be of ``scenario``'s task types.
    confidence : float
        Level of the intervals over seeds.
    strategies : tuple of str, optional
        A subset of :data:`STRATEGIES` (``static`` is always run: the
        differences refer to it).

    Returns
    -------
    ControlReplay

    Raises
    ------
    ScenarioError
        A batching scenario, fewer than two arrivals, a bad window, seeds or
        utilization, or types that are not tasks of the scenario.
    """
    clock = time.perf_counter()
    sc0 = fixed_service_scv(scenario)  # a batching "auto": fixed once, at its own optimum
    names = _check_options(sc0, seeds, confidence, estimator, strategies)
    log = RequestLog.of(log)
    world = _World.of(sc0, log, target_utilization, window, use_tokens)
    if world.x is None and world.types is None and "adaptive-mix" in names:
        names.remove("adaptive-mix")
    static_sc = world.base.with_(arrival_rate=world.lam_bar)
    static = _optimum(static_sc)
    uniform = best_uniform(static_sc)
    if policy is None:
        policy = build_policy(world.base)
    elif list(policy.names) != list(sc0.names):
        raise ScenarioError("control: the policy's task types differ from the scenario's")
    fixed = {"static": static.tokens, "uniform": uniform.tokens, "oracle": world.oracle()}
    sampler = TypeSampler(sc0.probability) if world.types is None else None
    runs = {s: _Runs(world.K) for s in names}
    for child in np.random.SeedSequence(int(seed)).spawn(int(seeds)):
        draws = world.draws(np.random.default_rng(child), sampler)
        for s in names:
            if s in fixed:
                plan = _Fixed(fixed[s])
            else:
                plan = _Controller(world, s, policy, estimator, backlog, draws, static.tokens)
            rep = world.replay(draws, plan)
            runs[s].add(_figures(world, draws, rep), rep, getattr(plan, "planned", None))
    out = _summaries(runs, names, confidence)
    windows = {
        "start": world.starts,
        "length": world.lengths,
        "true_rate": world.true_rate,
        "planned_rate": runs["adaptive"].planned_rates() if "adaptive" in names else None,
        "mean_tokens": {s: runs[s].window_mean("tokens") for s in names},
        "system_time": {
            s: np.where(world.counts == 0, np.nan, runs[s].window_mean("system")) for s in names
        },
    }
    settings = {
        "source": log.source,
        "requests": world.n,
        "rescale": world.factor,
        "log_rate": world.rate_log,
        "average_rate": world.lam_bar,
        "target_utilization": target_utilization,
        "static_utilization": static.evaluation.utilization,
        "window": world.window,
        "windows": world.K,
        "seeds": int(seeds),
        "seed": seed,
        "confidence": confidence,
        "backlog": backlog,
        "backlog_rule": "rate_hat + Q / window" if backlog else None,
        "estimator": estimator,
        "answer_tokens": None
        if world.x is None
        else {"mean": world.tok_all[0], "variance": world.tok_all[1]},
        "types": "drawn" if world.types is None else "log",
        "static_gap": static.certificate.gap,
        "policy_rates": int(policy.rates.size),
        "policy_range": list(policy.rate_range),
        "elapsed": time.perf_counter() - clock,
    }
    return ControlReplay(strategies=out, windows=windows, settings=settings)


def _check_options(sc: Scenario, seeds, confidence, estimator, strategies) -> list[str]:
    """Validate the replay's options; the strategies to run (``static`` always)."""
    if getattr(sc, "replicas", 1) > 1:
        raise ScenarioError(
            f"control: the replay simulates one server; a [fleet] of {sc.replicas} replicas "
            "is not supported yet: remove [fleet] (or set replicas = 1)"
        )
    if int(seeds) < 1:
        raise ScenarioError(f"control: seeds must be >= 1 (got {seeds})")
    if not 0 < confidence < 1:
        raise ScenarioError(f"control: confidence must be in (0, 1) (got {confidence})")
    if estimator not in ESTIMATORS:
        raise ScenarioError(
            f"control: estimator must be one of {', '.join(ESTIMATORS)} (got {estimator!r})"
        )
    chosen = tuple(STRATEGIES if strategies is None else strategies)
    bad = [s for s in chosen if s not in STRATEGIES]
    if bad:
        raise ScenarioError(f"control: unknown strategy {bad[0]!r}; use {', '.join(STRATEGIES)}")
    return [s for s in STRATEGIES if s in chosen or s == "static"]


@dataclass
class _Draws:
    """One replication's randomness, shared by every strategy (common random numbers)."""

    types: np.ndarray
    u_service: np.ndarray
    u_correct: np.ndarray
    unit: np.ndarray  # unit-mean service draws (scv k), where the variance v is 0
    extra: Any  # answer seconds per query (0.0 without a token column)


@dataclass
class _Replication:
    """What one strategy did in one replication: per query, and per window."""

    tokens: np.ndarray
    accuracy: np.ndarray  # A_type(budget) per query
    service: np.ndarray  # work alone, seconds
    depart: np.ndarray  # departure time per query (inf while it is still in the system)
    window_tokens: np.ndarray
    window_system: np.ndarray
    end: float  # the last departure's delay after the last arrival


@dataclass
class _World:
    """The replay every strategy shares: rescaled arrivals, windows, the log's columns."""

    sc: Any
    t: np.ndarray
    types: np.ndarray | None
    x: np.ndarray | None
    mix_all: np.ndarray | None
    tok_all: tuple[float, float] | None
    base: Any
    rate_log: float
    factor: float
    window: float

    @classmethod
    def of(cls, sc: Scenario, log: RequestLog, target_utilization, window, use_tokens) -> _World:
        """Rescale the log's times (static plan at ``target_utilization``)."""
        times = log.times - log.times[0]
        types = log.task_indices(sc.names)
        x = log.tokens if use_tokens else None
        x = None if x is None else np.asarray(x, dtype=float)
        # what the static plans know: the whole log's averages
        mix_all = _mix(types, sc.n, sc.probability)
        tok_all = None if x is None else log.token_moments
        base = plan_scenario(sc, 0.0, mix_all, tok_all)
        rate_log = log.arrival_rate
        factor = 1.0
        if target_utilization is not None:
            u = float(target_utilization)
            if not (math.isfinite(u) and 0 < u < 1):
                raise ScenarioError(f"control: utilization must be in (0, 1) (got {u:g})")
            factor = rate_log / _rate_for_utilization(base, u)
        t = times * factor
        if window is None:
            window = float(t[-1]) / DEFAULT_WINDOWS
        window = float(window)
        if not (math.isfinite(window) and window > 0):
            raise ScenarioError(f"control: window must be a number of seconds > 0 (got {window})")
        if math.ceil(float(t[-1]) / window - 1e-12) > 100_000:
            raise ScenarioError("control: more than 100,000 windows; use a longer window")
        return cls(sc, t, types, x, mix_all, tok_all, base, rate_log, factor, window)

    def __post_init__(self) -> None:
        t, window = self.t, self.window
        self.n = t.size
        self.span = float(t[-1])
        self.lam_bar = self.rate_log / self.factor
        self.K = K = max(1, math.ceil(self.span / window - 1e-12))
        self.starts = window * np.arange(K)
        widx = np.minimum((t / window).astype(np.int64), K - 1)
        # queries of window k: bounds[k]:bounds[k + 1]
        self.bounds = np.searchsorted(widx, np.arange(K + 1))
        self.lengths = np.minimum(self.starts + window, max(self.span, window * K)) - self.starts
        self.counts = np.diff(self.bounds)
        self.window_of = widx
        self.true_rate = self.counts / window
        self.gaps = np.diff(t, prepend=0.0)

    def oracle(self) -> np.ndarray:
        """Budgets per window planned with each window's true rate, mix and answer lengths."""
        sc, N = self.sc, self.sc.n
        out = np.empty((self.K, N))
        warm = None
        for k in range(self.K):
            a, b = self.bounds[k], self.bounds[k + 1]
            mix_k = None if self.types is None else _mix(self.types[a:b], N, sc.probability)
            tok_k = self.tok_all
            if self.x is not None and b - a >= 2:
                tok_k = (float(self.x[a:b].mean()), float(self.x[a:b].var()))
            sck = plan_scenario(sc, 0.0, mix_k, tok_k)
            warm = _optimum(sck.with_arrival_rate(min(self.true_rate[k], _top(sck))), warm)
            out[k] = warm.tokens
        return out

    def draws(self, rng: np.random.Generator, sampler) -> _Draws:
        """Types (the log's, or drawn), service and correctness uniforms of one replication."""
        n, k_ = self.n, np.asarray(self.sc.scv, dtype=float)
        ty = self.types if sampler is None else sampler(rng, n)
        u_srv = rng.random(n)
        u_ok = rng.random(n)
        with np.errstate(divide="ignore"):
            shape_k = np.where(k_ > 0, 1.0 / np.where(k_ > 0, k_, 1.0), np.inf)
        unit = np.ones(n)
        rand = k_[ty] > 0
        if rand.any() and not np.any(np.asarray(self.sc.variance) > 0):
            sh = shape_k[ty[rand]]
            unit[rand] = special.gammaincinv(sh, u_srv[rand]) / sh
        extra = 0.0 if self.x is None else np.asarray(self.sc.per_token)[ty] * self.x
        return _Draws(ty, u_srv, u_ok, unit, extra)

    def service(self, d: _Draws, a: int, b: int, current: np.ndarray) -> np.ndarray:
        """Service times of queries ``a:b`` under budgets ``current`` (same uniforms)."""
        sc = self.sc
        tyk = d.types[a:b]
        mean_k = sc.base[tyk] + sc.per_token[tyk] * current[tyk]
        if np.any(sc.variance > 0):  # gamma with mean m and variance k m^2 + v
            shp, scl, det = service_distribution(mean_k, sc.scv[tyk], sc.variance[tyk])
            srv = np.where(
                det, mean_k, special.gammaincinv(np.where(det, 1.0, shp), d.u_service[a:b])
            )
            srv = np.where(det, mean_k, srv * np.where(det, 1.0, scl))
        else:
            srv = mean_k * d.unit[a:b]
        if self.x is not None:
            srv = srv + d.extra[a:b]
        return srv

    def replay(self, d: _Draws, plan) -> _Replication:
        """One strategy over the whole log: ``plan(k, rep)`` gives window ``k``'s budgets."""
        n, K, sc = self.n, self.K, self.sc
        rep = _Replication(
            tokens=np.empty(n),
            accuracy=np.empty(n),
            service=np.empty(n),
            depart=np.full(n, np.inf),
            window_tokens=np.zeros(K),
            window_system=np.zeros(K),
            end=0.0,
        )
        line = _BatchingLine(sc) if sc.server is not None else _FifoLine()
        for k in range(K):
            a, b = self.bounds[k], self.bounds[k + 1]
            line.tick(self, rep, float(self.starts[k]))
            current = plan(k, rep)
            rep.window_tokens[k] = float(sc.probability @ current)
            if b <= a:
                continue
            tyk = d.types[a:b]
            rep.tokens[a:b] = current[tyk]
            rep.accuracy[a:b] = np.clip(sc.accuracy.value(current), 0.0, 1.0)[tyk]
            rep.service[a:b] = self.service(d, a, b, current)
            line.serve(self, rep, a, b)
        line.finish(self, rep)
        system = rep.depart - self.t
        rep.window_system = np.bincount(self.window_of, system, K) / np.maximum(self.counts, 1)
        rep.end = float(rep.depart.max()) - float(self.t[-1])
        return rep


class _FifoLine:
    """One FIFO server from window to window: a query's departure is known at its arrival."""

    def __init__(self) -> None:
        self.prev_w = self.prev_s = 0.0

    def tick(self, world: _World, rep: _Replication, until: float) -> None:
        """Nothing to do: every departure was set when its query arrived."""

    def serve(self, world: _World, rep: _Replication, a: int, b: int) -> None:
        srv = rep.service[a:b]
        waits = lindley_waits(world.gaps[a:b], srv, self.prev_w, self.prev_s)
        rep.depart[a:b] = world.t[a:b] + waits + srv
        self.prev_w, self.prev_s = float(waits[-1]), float(srv[-1])

    def finish(self, world: _World, rep: _Replication) -> None:
        """Nothing to do."""


class _BatchingLine:
    """The scenario's batching server (its max_running too): departures as they happen."""

    def __init__(self, sc: Scenario) -> None:
        self.engine = BatchingEngine(sc.server.curve, sc.server.max_running)
        self.out = Departures()

    def _record(self, world: _World, rep: _Replication) -> None:
        idx, system, _ = self.out.arrays()
        self.out.rows.clear()
        rep.depart[idx] = world.t[idx] + system

    def tick(self, world: _World, rep: _Replication, until: float) -> None:
        """Move the clock to ``until``: the departures before it become known."""
        self.engine.advance(until, self.out)
        self._record(world, rep)

    def serve(self, world: _World, rep: _Replication, a: int, b: int) -> None:
        self.engine.serve(a, world.t[a:b].tolist(), rep.service[a:b].tolist(), self.out)
        self._record(world, rep)

    def finish(self, world: _World, rep: _Replication) -> None:
        self.engine.drain(self.out)
        self._record(world, rep)


class _Fixed:
    """A plan made in advance: one allocation, or one per window (the oracle)."""

    def __init__(self, tokens: np.ndarray) -> None:
        self.tokens = np.asarray(tokens, dtype=float)

    def __call__(self, k: int, rep: _Replication) -> np.ndarray:
        return self.tokens[k] if self.tokens.ndim == 2 else self.tokens


class _Controller:
    """The adaptive controllers' plan for one replication (the past only)."""

    def __init__(self, world, kind, policy, estimator, backlog, draws, start) -> None:
        self.world, self.kind, self.policy = world, kind, policy
        self.estimator, self.backlog, self.draws = estimator, backlog, draws
        self.current = start
        self.warm = None
        self.mix, self.tok = world.mix_all, world.tok_all
        self.planned = np.full(world.K, np.nan)

    def rate(self, k: int, rep: _Replication) -> float:
        """The rate to plan window ``k`` for: the estimate plus the backlog term."""
        w = self.world
        lam_hat = w.counts[k - 1] / w.window
        if self.estimator == "cautious":  # never below the long-run rate seen so far
            lam_hat = max(lam_hat, w.bounds[k] / (w.window * k))
        elif self.estimator == "floor":  # never below the rate the static plan is for
            lam_hat = max(lam_hat, w.lam_bar)
        q = 0
        if self.backlog:
            done = w.bounds[k]
            q = int(np.count_nonzero(rep.depart[:done] > w.starts[k]))
        return lam_hat + q / w.window

    def __call__(self, k: int, rep: _Replication) -> np.ndarray:
        if k == 0:  # nothing seen yet: the static plan
            return self.current
        w = self.world
        lam_eff = self.rate(k, rep)
        if self.kind == "adaptive":
            rate = min(lam_eff, self.policy.rate_range[1])
            self.current = self.policy.budgets(rate)
            self.planned[k] = rate
            return self.current
        pa, pb = w.bounds[k - 1], w.bounds[k]
        if pb > pa:  # the last window's mix, and answer lengths of its finished queries
            fin = np.flatnonzero(rep.depart[pa:pb] <= w.starts[k]) + pa
            if w.types is not None:
                self.mix = _mix(self.draws.types[pa:pb], w.sc.n, w.sc.probability)
            if w.x is not None and fin.size >= MIN_FINISHED:
                self.tok = (float(w.x[fin].mean()), float(w.x[fin].var()))
        sck = plan_scenario(w.sc, 0.0, self.mix, self.tok)
        self.warm = _optimum(sck.with_arrival_rate(min(lam_eff, _top(sck))), self.warm)
        self.current = self.warm.tokens
        return self.current


def _figures(world: _World, d: _Draws, rep: _Replication) -> dict[str, float]:
    """Per-replication figures: accuracy, mean/p95/p99 system time, utility, budget, load."""
    sc = world.sc
    system = rep.depart - world.t
    score = np.asarray(sc.weight, dtype=float)[d.types] * (d.u_correct < rep.accuracy)
    p95, p99 = np.percentile(system, [95, 99])
    acc, W = float(score.mean()), float(system.mean())
    return {
        "acc": acc,
        "W": W,
        "p95": float(p95),
        "p99": float(p99),
        "U": acc - sc.latency_weight * W,
        "tok": float(rep.tokens.mean()),
        "busy": float(rep.service.sum()) / (sc.capacity * (world.span + rep.end)),
    }
