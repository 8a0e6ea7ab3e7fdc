"""``cvxalloc certify``: how far a given allocation is from optimal, proven.

Under operator constraints (``[constraints]``, per-task ``min_accuracy``) the
allocation is first checked against every constraint. An allocation that
violates one is *infeasible*: no optimality bound applies to it (its utility
may even exceed the constrained optimum), so the command says so, names each
violated constraint with the amount, and prints no gap and no shortfall. This
is still a successful evaluation: the exit code is 0 and ``--json`` carries
``"feasible": false`` and the ``"violations"`` list.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ..certificate import certify
from ..constraints import constraints_of
from ..io import load_allocation
from ..objective import evaluate
from ..queue.tail import system_time_quantiles
from ..result import jsonable
from ..solve import solve
from ..solvers.constraint_rows import constraint_report
from ._common import (
    add_json_option,
    add_output_option,
    add_quantiles_argument,
    add_scenario_argument,
    quantiles_from_args,
    scenario_from_args,
    write_output,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "certify",
        help="prove how far an allocation is from optimal",
        description=(
            "Read an allocation (TOML or JSON: task name -> tokens, or the output of "
            "'cvxalloc solve --json') and print its utility and a proven bound on how far "
            "it is from optimal: the Frank-Wolfe gap (needs no solver) and, from the "
            "certified reference optimum, the interval that holds the true shortfall. "
            "If the scenario has constraints, an allocation that violates one is reported "
            "infeasible (the violated constraints and by how much; no bound applies), "
            "with exit code 0."
        ),
    )
    add_scenario_argument(p)
    p.add_argument(
        "allocation",
        metavar="ALLOCATION",
        help="allocation file (.toml or .json; or a table, .csv or .parquet, with columns "
        "name and tokens)",
    )
    add_json_option(p)
    add_output_option(p)
    add_quantiles_argument(p)


def _unit(unit: str) -> str:
    """A unit suffix for text (none for dimensionless and accuracy values)."""
    return f" {unit}" if unit and unit != "accuracy" else ""


def violations(report: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The violated constraints of a :func:`~cvxalloc.constraints.constraint_report`.

    Returns
    -------
    list of dict
        One entry per violated constraint: ``constraint`` (its report name,
        e.g. ``"max_mean_system_time"`` or ``"min_accuracy[math]"``), ``kind``,
        ``limit``, ``value``, ``amount`` (> 0: by how much the value is above
        the limit, or for a floor below it, in ``unit``), ``unit`` and a
        one-line ``message``.
    """
    out = []
    for name, entry in report.items():
        if not entry["slack"] < 0:
            continue
        amount = -float(entry["slack"])
        unit = _unit(entry["unit"])
        if entry["kind"] == "min_accuracy":
            msg = (
                f"{name}: accuracy {entry['value']:.6g} is below the floor "
                f"{entry['limit']:g} by {amount:.3g}"
            )
        else:
            msg = (
                f"{name}: {entry['value']:.6g}{unit} exceeds the limit "
                f"{entry['limit']:g}{unit} by {amount:.3g}{unit}"
            )
        out.append(
            {
                "constraint": name,
                "kind": entry["kind"],
                "limit": float(entry["limit"]),
                "value": float(entry["value"]),
                "amount": amount,
                "unit": entry["unit"],
                "message": msg,
            }
        )
    return out


def _constraint_lines(report: dict[str, dict[str, Any]]) -> list[str]:
    """One text line per constraint: value, limit, slack (or violation)."""
    width = max(len(name) for name in report)
    lines = []
    for name, e in report.items():
        unit = _unit(e["unit"])
        state = (
            f"slack {e['slack']:.4g}{unit}"
            if e["slack"] >= 0
            else f"VIOLATED by {-e['slack']:.4g}{unit}"
        )
        rel = ">=" if e["kind"] == "min_accuracy" else "<="
        lines.append(
            f"  {name:<{width}}  {e['value']:.6g}{unit} (limit {rel} {e['limit']:g}{unit}): {state}"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    sc = scenario_from_args(args)
    levels = quantiles_from_args(args)
    tokens = load_allocation(args.allocation, sc)
    ev = evaluate(sc, tokens)
    tail = system_time_quantiles(sc, tokens, levels)
    cert = certify(sc, tokens)
    constrained = constraints_of(sc) is not None
    report = constraint_report(sc, tokens) if constrained else {}
    viol = _violations(report, cert)
    feasible = not viol
    ref = solve(sc, method="conic")
    if feasible:
        low = max(ref.objective - ev.objective, 0.0)
        high = ref.certificate.upper_bound - ev.objective
        shortfall: list[float] | None = [low, high]
    else:
        shortfall = None
    lines = _text(ev, cert, ref, viol, report, constrained, shortfall)
    lines.insert(3, f"system time          {tail.summary()}")
    out = {
        "tokens": dict(zip(sc.names, map(float, tokens))),
        "objective": ev.objective,
        "accuracy": ev.accuracy,
        "mean_system_time": ev.mean_system_time,
        "system_time_quantiles": tail.as_dict(),
        "system_time_quantiles_model": jsonable(tail.to_dict()),
        "utilization": ev.utilization,
        "feasible": feasible,
        "violations": viol,
        "certificate": jsonable(cert.to_dict()),
        "optimum": {
            "objective": ref.objective,
            "upper_bound": ref.certificate.upper_bound,
            "status": ref.status,
        },
        "shortfall": shortfall,
    }
    if constrained:
        out["constraints"] = jsonable(report)
    write_output(args, text=lambda: "\n".join(lines), data=lambda: out)
    return 0


def _violations(report: dict, cert) -> list[dict]:
    """The violated constraints; outside ``[lo', hi]`` without a named one, the bounds."""
    viol = violations(report)
    if not np.isfinite(cert.gap) and not viol:
        # Outside [lo', hi] without a named constraint being violated (rounding at a
        # min_accuracy floor): the certificate's own reason.
        reason = cert.details.get("infeasible", "outside the feasible set")
        viol = [
            {
                "constraint": "bounds",
                "kind": "bounds",
                "limit": None,
                "value": None,
                "amount": None,
                "unit": "",
                "message": str(reason),
            }
        ]
    return viol


def _text(ev, cert, ref, viol, report, constrained, shortfall) -> list[str]:
    """The lines of the human-readable output."""
    lines = [
        f"utility U            {ev.objective:.10g}",
        f"weighted accuracy    {ev.accuracy:.6f}",
        f"mean system time W   {ev.mean_system_time:.4f} s",
        f"utilization rho      {ev.utilization:.4f}",
    ]
    ref_line = (
        f"optimum (conic)      {ref.objective:.10g}  (status {ref.status}, U* <= "
        f"{ref.certificate.upper_bound:.10g})"
    )
    if viol:
        lines += [f"INFEASIBLE           the allocation violates {len(viol)} constraint(s):"]
        lines += [f"  {v['message']}" for v in viol]
        lines += [
            "certificate          none: no optimality bound applies to an infeasible allocation",
            ref_line + " under the constraints",
            "shortfall U* - U     not defined (the allocation is infeasible)",
        ]
        return lines
    low, high = shortfall
    rel = 100 * high / max(abs(ref.objective), 1e-12)
    if constrained:
        lines += [f"constraints          all {len(report)} satisfied:"]
        lines += _constraint_lines(report)
        lines += [
            f"certified gap        {cert.gap:.4e}  ({cert.kind} certificate, proof "
            f"without any solver: U* <= {cert.upper_bound:.10g})"
        ]
    else:
        lines += [
            f"Frank-Wolfe gap      {cert.gap:.4e}  (proof without any solver: U* <= "
            f"{cert.upper_bound:.10g})"
        ]
    lines += [
        ref_line,
        f"shortfall U* - U     in [{low:.4e}, {high:.4e}]  (at most {rel:.3g}% of the optimum)",
    ]
    return lines
