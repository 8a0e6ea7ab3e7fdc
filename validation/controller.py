"""(g) Load that changes: the budget controller replayed on the Azure traces.

Both Azure LLM inference traces (``validation/data/traces``; CC-BY 4.0, Patel et
al., "Splitwise", ISCA 2024) are replayed through one FIFO server serving the
built-in example's five task types (types drawn from its mix; each request's
generated tokens added to its service as its answer, at 0.0122 s per token).
Time is rescaled so that the static optimum at the log's average rate runs the
server at utilization 0.5, 0.7 and 0.85. The log is cut into 60 windows (one
minute of the original trace each); at every boundary the adaptive controller
re-plans from what it has seen (:mod:`cvxalloc.controller`): the rate (the
larger of the last window's and the long-run average the static plan is for)
plus the backlog term
``Q / window``, looked up in the certified policy (``adaptive``), or also the
answer lengths of the last window, re-solved (``adaptive-mix``). Beside it, on
the same replay (common random numbers): the static optimum at the log's
average, the best uniform budget, and an oracle that knows each window's true
rate and answer lengths. Three ablations of ``adaptive``: no backlog term; the
rate floored by the average seen so far instead (``cautious``); the last
window's rate alone (``last``).

The numbers are reported as measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import cvxalloc
from cvxalloc.controller import plan_scenario, replay_controller
from cvxalloc.plots import control_comparison_figure
from cvxalloc.policy import build_policy
from cvxalloc.requestlog import read_request_log

from .common import Section, table

TRACE_DIR = Path(__file__).parent / "data" / "traces"
TRACES = {
    "conversation": "AzureLLMInferenceTrace_conv.csv",
    "code": "AzureLLMInferenceTrace_code.csv",
}
UTILIZATIONS = (0.5, 0.7, 0.85)
#: The utilization shown in the figure.
FIGURE_UTILIZATION = 0.7


def _ci(lo_hi) -> str:
    lo, hi = lo_hi
    return f"[{lo:+.4f}, {hi:+.4f}]"


def run(out_dir: Path, quick: bool = False) -> Section:
    seeds = 3 if quick else 10
    sc = cvxalloc.example_scenario()
    rows, ablation, numbers, shown = [], [], {}, {}
    for name, fname in TRACES.items():
        log = read_request_log(TRACE_DIR / fname, tokens_column="GeneratedTokens")
        pol = _policy(sc, log)
        for u in UTILIZATIONS:
            rep = replay_controller(sc, log, target_utilization=u, seeds=seeds, policy=pol)
            key = f"{name}@{u:g}"
            numbers[key] = rep.to_dict()["strategies"] | {"settings": rep.to_dict()["settings"]}
            if u == FIGURE_UTILIZATION:
                shown[name] = rep
            rows.extend(_strategy_row(name, u, st) for st in rep.strategies.values())
            for label, st in _ablations(sc, log, u, seeds, pol):
                numbers[key][f"adaptive ({label})"] = st.to_dict()
                ablation.append(_ablation_row(name, u, label, st))
    fig = control_comparison_figure(shown)
    fig.savefig(out_dir / "validation_controller.png", dpi=110)
    ok = all(np.isfinite(v["static"]["utility"]) for v in numbers.values())
    return Section(
        key="g-controller",
        title="(g) Load that changes: a budget controller on the Azure traces",
        figures=["validation_controller.png"],
        text=_text(seeds, rows, ablation, numbers),
        numbers=numbers,
        ok=ok,
    )


def _policy(sc, log):
    """The adaptive controller's policy: the example with the log's average answer lengths."""
    return build_policy(plan_scenario(sc, 0.0, None, log.token_moments))


#: The ablations of ``adaptive``: label -> options of :func:`replay_controller`.
ABLATIONS = (
    ("floor rate, no backlog", {"backlog": False}),
    ("cautious rate (max of last window, average so far)", {"estimator": "cautious"}),
    ("last window's rate", {"estimator": "last"}),
)


def _ablations(sc, log, u: float, seeds: int, pol):
    """``(label, adaptive's figures)`` of each ablation, replayed beside static."""
    for label, kw in ABLATIONS:
        abl = replay_controller(
            sc,
            log,
            target_utilization=u,
            seeds=seeds,
            policy=pol,
            strategies=("static", "adaptive"),
            **kw,
        )
        yield label, abl.strategies["adaptive"]


def _strategy_row(name: str, u: float, st) -> list[str]:
    lo, hi = st.utility_ci
    return [
        name,
        f"{u:g}",
        st.name,
        f"{st.mean_tokens:.0f}",
        f"{st.accuracy:.4f}",
        f"{st.mean_system_time:.4g}",
        f"{st.p95:.4g}",
        f"{st.p99:.4g}",
        f"{st.utility:.4f} [{lo:.4f}, {hi:.4f}]",
        ""
        if st.name == "static"
        else f"{st.utility_vs_static:+.4f} " + _ci(st.utility_vs_static_ci),
    ]


def _ablation_row(name: str, u: float, label: str, st) -> list[str]:
    return [
        name,
        f"{u:g}",
        label,
        f"{st.mean_system_time:.4g}",
        f"{st.p99:.4g}",
        f"{st.utility:.4f}",
        f"{st.utility_vs_static:+.4f} " + _ci(st.utility_vs_static_ci),
    ]


def _text(seeds: int, rows, ablation, numbers) -> str:
    """The section's text: the setting, both tables, and where adaptation pays."""
    return "\n\n".join(
        [
            f"Both traces, the example scenario, {seeds} seeds per row (types, services and "
            "correctness redrawn; the same draws for every strategy), 60 windows of one "
            "original minute; 99% intervals over seeds. `tokens` is the budget per query "
            "(mean over the mix), `W` the system time in seconds, `vs static` the paired "
            "difference of realized utility against the static plan.",
            table(
                [
                    "trace",
                    "utilization",
                    "strategy",
                    "tokens",
                    "accuracy",
                    "mean W",
                    "p95 W",
                    "p99 W",
                    "utility [99% CI]",
                    "vs static [99% CI]",
                ],
                rows,
            ),
            "Ablations of the adaptive controller (same replays):",
            table(
                [
                    "trace",
                    "utilization",
                    "adaptive with",
                    "mean W",
                    "p99 W",
                    "utility",
                    "vs static",
                ],
                ablation,
            ),
            _verdict(numbers),
        ]
    )


def _verdict(numbers) -> str:
    """Where the policy controller's gain over static has its interval above or below 0,
    and the oracle's gain."""
    cases = [(t, u) for t in TRACES for u in UTILIZATIONS]

    def adaptive_ci(t: str, u: float) -> tuple[float, float]:
        return numbers[f"{t}@{u:g}"]["adaptive"]["utility_vs_static_ci"]

    pays = [f"{t} at {u:g}" for t, u in cases if adaptive_ci(t, u)[0] > 0]
    loses = [f"{t} at {u:g}" for t, u in cases if adaptive_ci(t, u)[1] < 0]
    oracle = ", ".join(
        f"{t} at {u:g} {numbers[f'{t}@{u:g}']['oracle']['utility_vs_static']:+.4f}"
        for t, u in cases
    )
    return (
        "Adaptation (the policy controller) pays, with the interval above 0, on: "
        + (", ".join(pays) or "none")
        + "; it loses, with the interval below 0, on: "
        + (", ".join(loses) or "none")
        + ". The oracle's gain over static: "
        + oracle
        + "."
    )
