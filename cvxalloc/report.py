"""Plain-text reports of results (what ``cvxalloc solve`` prints).

Layer: numerics.
"""

from __future__ import annotations

import numpy as np

__all__ = ["budget_notes", "constraint_table", "result_table", "solve_report"]


def _fmt_tokens(x: float) -> str:
    return f"{x:,.1f}"


def result_table(result, max_rows: int = 50, quantiles=None) -> str:
    """Per-type tokens, accuracy and service time, then the headline figures.

    ``quantiles``: the levels of the system-time percentiles line (default
    p50, p90, p95, p99).
    """
    ev = result.evaluation
    names = result.names or [str(i) for i in range(len(result.tokens))]
    width = max(8, *(len(n) for n in names[:max_rows]))
    lines = [f"{'task':<{width}}  {'tokens':>12}  {'accuracy':>8}  {'service s':>9}"]
    lines.append("-" * len(lines[0]))
    for i, name in enumerate(names[:max_rows]):
        lines.append(
            f"{name:<{width}}  {_fmt_tokens(result.tokens[i]):>12}  "
            f"{ev.type_accuracy[i]:>8.4f}  {ev.service_time[i]:>9.2f}"
        )
    if len(names) > max_rows:
        lines.append(f"... {len(names) - max_rows} more task types (use --json for all)")
    lines.append("")
    figures = ev.summary().splitlines()  # W, utilization, accuracy, U
    fleet = getattr(result.scenario, "fleet", None)
    if fleet is not None:  # one replica's utilization
        figures[1] += f" per replica ({fleet.describe()})"
    if getattr(result, "scenario", None) is not None:
        figures.insert(1, f"system time          {result.quantiles(quantiles).summary()}")
    at = next((i + 1 for i, f in enumerate(figures) if f.startswith("utilization")), 0)
    figures[at:at] = _service_scv_lines(result)
    lines += figures
    lines.append(f"certified gap        {result.certificate.summary()}")
    return "\n".join(lines)


def _service_scv_lines(result) -> list[str]:
    """A batching server whose bursts or admission limit use ``service_scv``: the plan's own."""
    sc = result.scenario
    server = getattr(sc, "server", None)
    if server is None or (sc.arrival_scv == 1.0 and server.max_running is None):
        return []
    ev = result.evaluation
    own = ev.m2 / (ev.m1 * ev.m1) - 1.0
    line = f"service scv (mix)    {own:.4g}"
    if abs(own - server.service_scv) > 0.05 * max(own, server.service_scv, 0.1):
        line += (
            f"  (the model assumes {server.service_scv:g}: set [server] service_scv = "
            f"{own:.3g} and solve again)"
        )
    return [line]


def _num(x) -> str:
    return "-" if x is None else f"{x:.6g}"


def constraint_table(constraints: dict) -> list[str]:
    """Lines listing each constraint: limit, value at the solution, slack, shadow price.

    ``constraints`` is ``Result.diagnostics["constraints"]`` (see
    :func:`cvxalloc.solvers.constraint_rows.constraint_report`); the shadow price is the
    utility gained per unit of relaxation, ``-`` where no dual is known.
    """
    names = list(constraints)
    width = max(10, *(len(n) for n in names))
    head = (
        f"{'constraint':<{width}}  {'unit':>8}  {'limit':>11}  {'value':>11}  "
        f"{'slack':>11}  {'shadow price':>12}"
    )
    lines = [head, "-" * len(head)]
    for name in names:
        e = constraints[name]
        lines.append(
            f"{name:<{width}}  {e.get('unit') or '-':>8}  {_num(e['limit']):>11}  "
            f"{_num(e['value']):>11}  {_num(e['slack']):>11}  "
            f"{_num(e.get('shadow_price')):>12}" + ("  active" if e.get("active") else "")
        )
    lines.append("(shadow price: utility gained per unit the limit is relaxed; a floor: lowered)")
    for name in names:
        e = constraints[name]
        if "exact" in e:  # held through a surrogate: say so, with the exact figure beside
            p = 100 * e["quantile"]
            lines.append(
                f"{name}: the value is a bound on the p{p:g} system time (the convex "
                f"surrogate the optimization holds, docs/tail.md); the exact p{p:g} at this "
                f"allocation is {_num(e['exact'])} s"
            )
    return lines


def solve_report(result, baselines: dict | None = None, quantiles=None) -> str:
    """The full human-readable output of ``cvxalloc solve`` (:meth:`Result.summary`).

    The head names the method and status, with a line under it for a hand-over
    or a solver fallback; then the per-type table (with the system-time
    percentiles at ``quantiles``), the constraints and the ``baselines`` (from
    :func:`cvxalloc.baselines.baselines`) when given.
    """
    head = f"cvxalloc: method {result.method}, status {result.status}"
    if result.solver_stats.get("solver"):
        head += f" ({result.solver_stats['solver']})"
    out = [head, *_hand_over(result), "", result_table(result, quantiles=quantiles)]
    if result.scenario is not None:
        out += [f"note: {line}" for line in budget_notes(result.scenario)]
    constraints = (result.diagnostics or {}).get("constraints")
    if constraints:
        out += ["", *constraint_table(constraints)]
    if baselines:
        out.append("")
        out.append("against baselines (same evaluation):")
        U = result.objective
        for name, base in baselines.items():
            out.append(f"  {name:<8} " + _baseline_line(U, name, base))
    return "\n".join(out)


def _baseline_line(U: float, name: str, base) -> str:
    """One baseline against the optimum's ``U``: the gain, or why there is none to claim."""
    if base is None:
        return "unstable (utilization >= 1)"
    extra = ""
    if name == "uniform":
        extra = f" at {base.diagnostics['budget']:,.1f} tokens"
    violated = (base.diagnostics or {}).get("violated")
    if violated:
        shown = ", ".join(violated[:3]) + (
            f" and {len(violated) - 3} more" if len(violated) > 3 else ""
        )
        return f"U = {base.objective:.6f}{extra}; breaks {shown}: no gain claimed"
    diff = U - base.objective
    rel = 100 * diff / abs(base.objective) if base.objective else np.inf
    return f"U = {base.objective:.6f}{extra}; optimum gains {diff:+.6f} ({rel:+.2f}%)"


def _hand_over(result) -> list[str]:
    """The lines naming a hand-over to another method or a fallback to another solver."""
    notes = []
    if getattr(result, "handed_over_to", None):
        why = (result.diagnostics or {}).get("handed_over") or "see the message"
        notes.append(f"handed over to method {result.handed_over_to}: {why}")
    if getattr(result, "fallback", None):
        notes.append(f"fell back to solver {result.fallback} (attempts: see the solver above)")
    return notes


def budget_notes(sc, limit: int = 5) -> list[str]:
    """What a budget range of less than one token means, one line per task (``limit`` shown).

    ``min_tokens = max_tokens`` fixes a type's budget (no thinking at all when both
    are 0); a range narrower than one token (``max_tokens = 5e-324``) leaves nothing
    to allocate either: the type's budget is its minimum in effect. The solve
    report prints these, so such a type is not mistaken for one the optimum chose
    to starve.
    """
    width = sc.max_tokens - sc.min_tokens
    notes = []
    for i in np.flatnonzero(width < 1.0)[:limit]:
        lo, hi = float(sc.min_tokens[i]), float(sc.max_tokens[i])
        what = (
            f"min_tokens = max_tokens = {lo:g}: its budget is fixed"
            + (" (no thinking tokens)" if hi == 0 else "")
            if width[i] == 0
            else f"max_tokens - min_tokens = {width[i]:.3g} is less than one token: its budget "
            f"is {lo:g} tokens in effect"
        )
        notes.append(f'task "{sc.names[i]}": {what}')
    more = int(np.count_nonzero(width < 1.0)) - len(notes)
    return notes + (
        [f"... and {more} more tasks with less than one token to allocate"] if more > 0 else []
    )
