"""A budget controller replayed on a request log, beside static plans and an oracle.

The log's arrival times (rescaled to a target load) go through one FIFO server.
Time is cut into windows of ``window`` seconds; budgets change only at window
boundaries, and a query is served with the budgets in force when it arrives.
Every strategy sees the same replay: the same arrivals, and per seed the same
types, the same unit service draws and the same uniforms deciding correctness
(common random numbers), so their differences are measured on equal terms.

Strategies
----------
``static``
    The certified optimum at the whole log's average rate (and average type mix
    and answer lengths), all the time. It knows the log's averages in advance.
``uniform``
    The best single budget for every type (:func:`cvxalloc.baselines.uniform_budget`)
    at the same average.
``adaptive``
    At each boundary: the estimated rate plus the backlog term, looked up in the
    policy (:mod:`cvxalloc.policy`) built for the log's average mix and answer
    lengths. No look-ahead beyond the long-run average the static plan also
    uses: the first window runs the static plan. The rate estimate
    (``estimator``) is ``"floor"`` by default: the larger of the rate of the
    window just ended and the long-run average rate (the rate the operator
    planned for; here the log's average). A quiet window does not announce a
    quiet next one: on the Azure code trace silences end in bursts, and budgets
    raised in a silence meet the burst with a long queue. So the controller only
    ever cuts budgets below the static plan's (busy windows, or a backlog), never
    raises them above. ``"cautious"``: the larger of the last window's rate and
    the average of everything seen so far (no prior); ``"last"``: the last
    window's rate alone. Both are measured in docs/validation.md (g).
``adaptive-mix`` (when the log has types or token counts)
    As ``adaptive``, and also the type mix and answer lengths of the window just
    ended (of its queries finished by the boundary), re-solved at each boundary
    (certified, warm-started).
``oracle``
    Each window's true rate (and mix and answer lengths), known in advance, no
    backlog term.

The backlog rule
----------------
At a boundary the server knows how many queries ``Q`` are in the system. They
are served in the coming window on top of its arrivals, so the controller plans
for the effective rate ``rate_hat + Q / window``: the queue's queries spread over
the window as extra arrivals. The steady-state wait formula then prices the load
the server actually faces (new work plus carried-over work), and the term
vanishes with an empty queue. Rates above the policy's range are held at its top
(the budgets that are stable closest to saturation).

Service of a query
------------------
``s_i(t) X`` with ``X`` of mean 1 and squared coefficient of variation ``k_i``
(gamma, as :func:`cvxalloc.simulate.simulate`); with a token column, plus
``b_i x`` for the request's own answer tokens ``x`` (its generated tokens, at
the model's seconds per token). Plans then use the scenario with ``base + b E[x]``
and ``variance + b^2 Var[x]`` from what each strategy knows.

Figures per strategy (means over seeds with Student-t intervals over seeds):
realized weighted accuracy (``w_i`` per correct answer), mean and p95/p99 system
time, realized utility ``accuracy - gamma * mean system time``, and the paired
difference of utility against ``static``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from .errors import ScenarioError

__all__ = ["ControlReplay", "StrategyStats", "replay_controller", "STRATEGIES", "control_figure"]

#: Strategy names in report order.
STRATEGIES = ("static", "uniform", "adaptive", "adaptive-mix", "oracle")
#: Rate estimators of the adaptive controllers (see the module docstring).
ESTIMATORS = ("floor", "cautious", "last")
#: Windows by default over the log's span.
DEFAULT_WINDOWS = 60
#: Fewest finished queries of a window from which the adaptive-mix controller
#: re-estimates answer lengths (else it keeps its previous estimate).
MIN_FINISHED = 10


@dataclass
class StrategyStats:
    """Replay figures of one strategy (means over seeds, intervals over seeds)."""

    name: str
    accuracy: float
    accuracy_ci: tuple[float, float]
    mean_system_time: float
    mean_system_time_ci: tuple[float, float]
    p95: float
    p95_ci: tuple[float, float]
    p99: float
    p99_ci: tuple[float, float]
    utility: float
    utility_ci: tuple[float, float]
    utility_vs_static: float
    utility_vs_static_ci: tuple[float, float]
    mean_tokens: float
    utilization: float

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = [float(x) for x in v]
        return out


@dataclass
class ControlReplay:
    """The outcome of :func:`replay_controller`.

    Attributes
    ----------
    strategies : dict of str -> StrategyStats
    windows : dict
        Per window (arrays over windows): ``start`` (seconds of the replay),
        ``true_rate``, ``planned_rate`` (the adaptive controller's effective
        rate, mean over seeds), and per strategy ``mean_tokens`` (budget per
        query, mean over seeds) and ``system_time`` (mean over the window's
        queries and the seeds; NaN for an empty window).
    settings : dict
        Window, seeds, rescale factor, average rate and utilization, backlog
        rule, what was estimated, plan certificates.
    """

    strategies: dict[str, StrategyStats]
    windows: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from .result import jsonable

        return {
            "settings": jsonable(self.settings),
            "strategies": {k: jsonable(v.to_dict()) for k, v in self.strategies.items()},
            "windows": jsonable(self.windows),
        }

    def summary(self) -> str:
        s = self.settings
        level = f"{100 * s['confidence']:g}%"
        lines = [
            f"replayed {s['source']}: {s['requests']:,} requests, times x {s['rescale']:.6g}, "
            f"average rate {s['average_rate']:.6g}/s (static plan utilization "
            f"{s['static_utilization']:.3f}), {s['windows']} windows of {s['window']:.6g} s, "
            f"{s['seeds']} seeds, {s['estimator']} rate estimate, backlog term "
            f"{'on' if s['backlog'] else 'off'}",
            f"{'strategy':<13} {'accuracy':>9} {'mean W (s)':>11} {'p95 (s)':>9} "
            f"{'p99 (s)':>9} {'utility':>9}  {level} CI of utility     vs static",
        ]
        for st in self.strategies.values():
            lo, hi = st.utility_ci
            dlo, dhi = st.utility_vs_static_ci
            lines.append(
                f"{st.name:<13} {st.accuracy:9.4f} {st.mean_system_time:11.4g} {st.p95:9.4g} "
                f"{st.p99:9.4g} {st.utility:9.4f}  [{lo:.4f}, {hi:.4f}]  "
                f"{st.utility_vs_static:+.4f} [{dlo:+.4f}, {dhi:+.4f}]"
            )
        lines.append(f"{s['elapsed']:.2f} s wall")
        return "\n".join(lines)


# --------------------------------------------------------------------------
def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    m = float(values.mean())
    if values.size < 2:
        return (m, m)
    half = special.stdtrit(values.size - 1, 0.5 + confidence / 2) * values.std(ddof=1)
    half /= math.sqrt(values.size)
    return (m - half, m + half)


def _plan_scenario(sc, rate: float, mix=None, tokens=None):
    """The scenario a plan uses: rate, type mix, and answer-token moments ``(mean, var)``."""
    kw: dict[str, Any] = {"arrival_rate": rate}
    if mix is not None:
        kw["probability"] = mix
    if tokens is not None:
        mx, vx = tokens
        kw["base"] = sc.base + sc.per_token * mx
        kw["variance"] = sc.variance + sc.per_token**2 * vx
    return sc.with_(**kw)


def _top(sc) -> float:
    from .policy import highest_rate

    return highest_rate(sc)


def _optimum(sc, warm=None):
    from .solve import solve

    kw = {}
    if warm is not None and warm.scenario.arrival_rate > 0 and sc.arrival_rate > 0:
        kw["warm_start"] = warm
    return solve(sc, **kw)


def _rate_for_utilization(sc, target: float) -> float:
    """The arrival rate at which the scenario's optimum runs at utilization ``target``."""
    lo, hi = 0.0, _top(sc)
    res = _optimum(sc.with_(arrival_rate=hi))
    if res.evaluation.utilization <= target:
        raise ScenarioError(
            f"utilization {target:g}: the optimum never reaches it below saturation "
            f"(at most {res.evaluation.utilization:.4g})"
        )
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _optimum(sc.with_(arrival_rate=mid)).evaluation.utilization < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-10 * hi:
            break
    return 0.5 * (lo + hi)


def _mix(types: np.ndarray | None, n: int, prior: np.ndarray) -> np.ndarray | None:
    """Type mix of observed types with one pseudo-observation spread by the prior."""
    if types is None:
        return None
    counts = np.bincount(types, minlength=n).astype(float)
    p = (counts + prior) / (counts.sum() + 1.0)
    return p / p.sum()


def replay_controller(
    scenario,
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
    log : RequestLog
        Arrival times; its ``types`` (task names) are replayed when present,
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
    from .baselines import uniform_budget
    from .policy import build_policy
    from .simulate import TypeSampler, _replay_types, lindley_waits, service_distribution

    clock = time.perf_counter()
    sc0 = scenario
    if getattr(sc0, "server", None) is not None:
        raise ScenarioError(
            "control: the replay simulates one FIFO server (one query at a time); a batching "
            '[server] is not supported yet: use model = "single"'
        )
    times = np.asarray(getattr(log, "times", log), dtype=float)
    n = times.size
    if n < 2 or not np.all(np.isfinite(times)) or not times[-1] > times[0]:
        raise ScenarioError("control: the log needs at least two finite, distinct arrival times")
    order = np.argsort(times, kind="stable")
    times = times[order] - times[order[0]]
    log_types = getattr(log, "types", None)
    types_log = None if log_types is None else _replay_types(sc0, np.asarray(log_types)[order])
    x = getattr(log, "tokens", None) if use_tokens else None
    x = None if x is None else np.asarray(x, dtype=float)[order]
    seeds = int(seeds)
    if seeds < 1:
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
    estimate_mix = x is not None or types_log is not None
    names = [s for s in STRATEGIES if s in chosen or s == "static"]
    if not estimate_mix and "adaptive-mix" in names:
        names.remove("adaptive-mix")

    # --- what the static plans know: the whole log's averages -----------------
    N = sc0.n
    mix_all = _mix(types_log, N, sc0.probability)
    tok_all = None if x is None else (float(x.mean()), float(x.var()))
    base_sc = _plan_scenario(sc0, 0.0, mix_all, tok_all)
    rate_log = (n - 1) / float(times[-1])
    if target_utilization is None:
        factor = 1.0
    else:
        u = float(target_utilization)
        if not (math.isfinite(u) and 0 < u < 1):
            raise ScenarioError(f"control: utilization must be in (0, 1) (got {u:g})")
        factor = rate_log / _rate_for_utilization(base_sc, u)
    t = times * factor
    span = float(t[-1])
    lam_bar = rate_log / factor
    if window is None:
        window = span / DEFAULT_WINDOWS
    window = float(window)
    if not (math.isfinite(window) and window > 0):
        raise ScenarioError(f"control: window must be a number of seconds > 0 (got {window})")
    K = max(1, math.ceil(span / window - 1e-12))
    if K > 100_000:
        raise ScenarioError(f"control: {K:,} windows; use a longer window")
    starts = window * np.arange(K)
    widx = np.minimum((t / window).astype(np.int64), K - 1)
    bounds = np.searchsorted(widx, np.arange(K + 1))  # queries of window k: bounds[k]:bounds[k+1]
    lengths = np.minimum(starts + window, max(span, window * K)) - starts
    counts = np.diff(bounds)
    true_rate = counts / window

    static_sc = base_sc.with_(arrival_rate=lam_bar)
    static = _optimum(static_sc)
    uniform = uniform_budget(static_sc)
    if policy is None:
        policy = build_policy(base_sc)
    elif list(policy.names) != list(sc0.names):
        raise ScenarioError("control: the policy's task types differ from the scenario's")
    top = policy.rate_range[1]

    # --- oracle plans: each window's truth ------------------------------------
    oracle = np.empty((K, N))
    warm = None
    for k in range(K):
        a, b = bounds[k], bounds[k + 1]
        mix_k = None if types_log is None else _mix(types_log[a:b], N, sc0.probability)
        tok_k = tok_all if x is None or b - a < 2 else (float(x[a:b].mean()), float(x[a:b].var()))
        sck = _plan_scenario(sc0, 0.0, mix_k, tok_k)
        sck = sck.with_(arrival_rate=min(true_rate[k], _top(sck)))
        warm = _optimum(sck, warm)
        oracle[k] = warm.tokens

    fixed = {"static": static.tokens, "uniform": uniform.tokens}
    # --- the replications -------------------------------------------------------
    gamma = sc0.latency_weight
    w = np.asarray(sc0.weight, dtype=float)
    a_, b_ = np.asarray(sc0.base, dtype=float), np.asarray(sc0.per_token, dtype=float)
    k_, v_ = np.asarray(sc0.scv, dtype=float), np.asarray(sc0.variance, dtype=float)
    sampler = TypeSampler(sc0.probability) if types_log is None else None
    gaps = np.diff(t, prepend=0.0)
    with_v = bool(np.any(v_ > 0))
    per = {
        s: {"acc": [], "W": [], "p95": [], "p99": [], "U": [], "tok": [], "busy": []} for s in names
    }
    win_tokens = {s: np.zeros(K) for s in names}
    win_system = {s: np.zeros(K) for s in names}
    planned = np.zeros(K)
    children = np.random.SeedSequence(seed).spawn(seeds)
    for child in children:
        rng = np.random.default_rng(child)
        ty = types_log if sampler is None else sampler(rng, n)
        u_srv = rng.random(n)
        u_ok = rng.random(n)
        # unit service: mean 1, scv k (gamma); the variance v is added per budget below
        with np.errstate(divide="ignore"):
            shape_k = np.where(k_ > 0, 1.0 / np.where(k_ > 0, k_, 1.0), np.inf)
        unit = np.ones(n)
        rand = k_[ty] > 0
        if rand.any() and not with_v:
            sh = shape_k[ty[rand]]
            unit[rand] = special.gammaincinv(sh, u_srv[rand]) / sh
        extra = 0.0 if x is None else b_[ty] * x
        for s in names:
            tok = np.empty(n)
            a_prob = np.empty(n)
            service = np.empty(n)
            waits = np.empty(n)
            prev_w = prev_s = 0.0
            plan_warm = None
            mix_est, tok_est = mix_all, tok_all
            current = static.tokens
            for k in range(K):
                a, b = bounds[k], bounds[k + 1]
                if s in fixed:
                    current = fixed[s]
                elif s == "oracle":
                    current = oracle[k]
                elif k > 0:  # adaptive: plan from what was seen up to starts[k]
                    lam_hat = counts[k - 1] / window
                    if estimator == "cautious":  # never below the long-run rate seen so far
                        lam_hat = max(lam_hat, bounds[k] / (window * k))
                    elif estimator == "floor":  # never below the rate the static plan is for
                        lam_hat = max(lam_hat, lam_bar)
                    q = 0
                    if backlog:
                        done = bounds[k]
                        depart = t[:done] + waits[:done] + service[:done]
                        q = int(np.count_nonzero(depart > starts[k]))
                    lam_eff = lam_hat + q / window
                    if s == "adaptive":
                        rate = min(lam_eff, top)
                        current = policy.budgets(rate)
                    else:
                        pa, pb = bounds[k - 1], bounds[k]
                        if pb > pa:
                            dep = t[pa:pb] + waits[pa:pb] + service[pa:pb]
                            fin = np.flatnonzero(dep <= starts[k]) + pa
                            if types_log is not None:
                                mix_est = _mix(ty[pa:pb], N, sc0.probability)
                            if x is not None and fin.size >= MIN_FINISHED:
                                tok_est = (float(x[fin].mean()), float(x[fin].var()))
                        sck = _plan_scenario(sc0, 0.0, mix_est, tok_est)
                        rate = min(lam_eff, _top(sck))
                        plan_warm = _optimum(sck.with_(arrival_rate=rate), plan_warm)
                        current = plan_warm.tokens
                    if s == "adaptive":
                        planned[k] += rate / seeds
                if b <= a:
                    win_tokens[s][k] += float(sc0.probability @ current) / seeds
                    continue
                tyk = ty[a:b]
                tok[a:b] = current[tyk]
                a_prob[a:b] = np.clip(sc0.accuracy.value(current), 0.0, 1.0)[tyk]
                mean_k = a_[tyk] + b_[tyk] * current[tyk]
                if with_v:  # gamma with mean m and variance k m^2 + v, same uniforms
                    shp, scl, det = service_distribution(mean_k, k_[tyk], v_[tyk])
                    srv = np.where(
                        det, mean_k, special.gammaincinv(np.where(det, 1.0, shp), u_srv[a:b])
                    )
                    srv = np.where(det, mean_k, srv * np.where(det, 1.0, scl))
                else:
                    srv = mean_k * unit[a:b]
                if x is not None:
                    srv = srv + extra[a:b]
                service[a:b] = srv
                wk = lindley_waits(gaps[a:b], srv, prev_w, prev_s)
                waits[a:b] = wk
                prev_w, prev_s = float(wk[-1]), float(srv[-1])
                win_tokens[s][k] += float(sc0.probability @ current) / seeds
                win_system[s][k] += float((wk + srv).mean()) / seeds
            system = waits + service
            score = w[ty] * (u_ok < a_prob)
            d = per[s]
            d["acc"].append(float(score.mean()))
            d["W"].append(float(system.mean()))
            p95, p99 = np.percentile(system, [95, 99])
            d["p95"].append(float(p95))
            d["p99"].append(float(p99))
            d["U"].append(float(score.mean()) - gamma * float(system.mean()))
            d["tok"].append(float(tok.mean()))
            d["busy"].append(float(service.sum()) / (span + prev_w + prev_s))
    out: dict[str, StrategyStats] = {}
    base_U = np.array(per["static"]["U"])
    for s in names:
        d = {k: np.array(v) for k, v in per[s].items()}
        diff = d["U"] - base_U
        out[s] = StrategyStats(
            name=s,
            accuracy=float(d["acc"].mean()),
            accuracy_ci=_interval(d["acc"], confidence),
            mean_system_time=float(d["W"].mean()),
            mean_system_time_ci=_interval(d["W"], confidence),
            p95=float(d["p95"].mean()),
            p95_ci=_interval(d["p95"], confidence),
            p99=float(d["p99"].mean()),
            p99_ci=_interval(d["p99"], confidence),
            utility=float(d["U"].mean()),
            utility_ci=_interval(d["U"], confidence),
            utility_vs_static=float(diff.mean()),
            utility_vs_static_ci=_interval(diff, confidence),
            mean_tokens=float(d["tok"].mean()),
            utilization=float(d["busy"].mean()),
        )
    for s in names:
        win_system[s][counts == 0] = np.nan
    windows = {
        "start": starts,
        "length": lengths,
        "true_rate": true_rate,
        "planned_rate": np.where(np.arange(K) == 0, np.nan, planned)
        if "adaptive" in names
        else None,
        "mean_tokens": win_tokens,
        "system_time": win_system,
    }
    settings = {
        "source": getattr(log, "source", "arrival times"),
        "requests": n,
        "rescale": factor,
        "log_rate": rate_log,
        "average_rate": lam_bar,
        "target_utilization": target_utilization,
        "static_utilization": static.evaluation.utilization,
        "window": window,
        "windows": K,
        "seeds": seeds,
        "seed": seed,
        "confidence": confidence,
        "backlog": backlog,
        "backlog_rule": "rate_hat + Q / window" if backlog else None,
        "estimator": estimator,
        "answer_tokens": None if x is None else {"mean": tok_all[0], "variance": tok_all[1]},
        "types": "drawn" if types_log is None else "log",
        "static_gap": static.certificate.gap,
        "policy_rates": int(policy.rates.size),
        "policy_range": list(policy.rate_range),
        "elapsed": time.perf_counter() - clock,
    }
    return ControlReplay(strategies=out, windows=windows, settings=settings)


def control_figure(rep: ControlReplay, title: str = ""):
    """Rate, budgets and system time over time, per strategy (a matplotlib figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    win = rep.windows
    hours = (np.asarray(win["start"]) + 0.5 * np.asarray(win["length"])) / 3600.0
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    ax = axes[0]
    ax.step(hours, win["true_rate"], where="mid", color="0.3", label="true rate per window")
    if win.get("planned_rate") is not None:
        ax.step(
            hours,
            win["planned_rate"],
            where="mid",
            color="tab:green",
            lw=1,
            label="adaptive: planned rate (estimate + backlog / window)",
        )
    ax.set_ylabel("queries/s")
    ax.legend(fontsize=7, loc="upper right")
    colors = {
        "static": "0.5",
        "uniform": "tab:orange",
        "adaptive": "tab:green",
        "adaptive-mix": "tab:purple",
        "oracle": "tab:blue",
    }
    for s, series in win["mean_tokens"].items():
        axes[1].step(hours, series, where="mid", color=colors[s], lw=1, label=s)
        axes[2].plot(hours, win["system_time"][s], ".-", ms=2, lw=0.7, color=colors[s], label=s)
    axes[1].set_ylabel("budget per query (tokens)")
    axes[2].set_ylabel("mean system time (s)")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("replay time (hours)")
    axes[1].legend(fontsize=7, ncol=5, loc="upper right")
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    return fig
