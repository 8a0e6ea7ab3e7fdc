"""``cvxalloc fit``: calibrate accuracy curves and service lines from measurements."""

from __future__ import annotations

import argparse
import shlex
import sys

from ..accuracy import FAMILIES
from ..fit.capacity import (
    CapacityFit,
    fit_capacity,
    per_token_note,
    read_throughput,
    server_toml,
)
from ..fit.criteria import CRITERIA
from ..fit.measurements import POOLED, MeasurementError
from ..io import load_scenario, output_format, scenario_text
from ._common import (
    SCENARIO,
    add_json_option,
    add_output_option,
    add_progress_option,
    dumps,
    emit,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit",
        help="fit accuracy curves and service lines to measurements; write a scenario",
        description=(
            "Fit every accuracy family (exponential, power, logarithmic) to each task's "
            "(tokens, accuracy) measurements by weighted least squares, report parameters "
            "with standard errors and AIC / AICc / leave-one-out error, fit the service line "
            "base + per_token * tokens (and scv) to (tokens, seconds) measurements, and write "
            "a scenario that 'cvxalloc solve' reads (TOML or JSON by the --output extension). "
            "File formats: docs/calibration.md."
        ),
    )
    _add_inputs(p)
    _add_fit_options(p)
    _add_scenario_options(p)
    _add_output_options(p)


def _add_inputs(p: argparse.ArgumentParser) -> None:
    """The measurement files: accuracy, throughput (batching capacity), service times."""
    p.add_argument(
        "accuracy_csv",
        metavar="ACCURACY_CSV",
        nargs="?",
        help="columns task,tokens,accuracy[,trials] (accuracy in [0, 1]); optional with "
        "--throughput",
    )
    p.add_argument(
        "--throughput",
        metavar="THROUGHPUT_CSV",
        help="columns concurrency (or max_concurrency), throughput (or "
        "output_tokens_per_second): fit a batching server's capacity curve and write "
        "its [server] table (docs/batching.md)",
    )
    p.add_argument(
        "--single-stream",
        type=float,
        metavar="RATE",
        help="throughput of one query alone, same unit (default: the row at concurrency 1, "
        "else extrapolated)",
    )
    p.add_argument(
        "--service",
        metavar="SERVICE_CSV",
        help="columns tokens,seconds[,task]: one row per query (service time, "
        "no queueing); rows without a task are pooled for every task",
    )


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    """Which families are fitted, with which parameters held, chosen how."""
    p.add_argument(
        "--family",
        action="append",
        metavar="[TASK=]FAMILY",
        help="fit only this family (for TASK, or all tasks); repeatable; "
        f"FAMILY one of {', '.join(FAMILIES)}, or 'auto' (default: fit all, "
        "choose by --criterion)",
    )
    p.add_argument(
        "--fix",
        action="append",
        metavar="[TASK:]PARAM=VALUE",
        help="hold a parameter fixed, e.g. exponent=0.5 or code:exponent=0.5",
    )
    p.add_argument(
        "--criterion",
        choices=CRITERIA,
        default="aic",
        help="family choice: aic (default), aicc, loo (leave-one-out rmse)",
    )


def _add_scenario_options(p: argparse.ArgumentParser) -> None:
    """The operator's numbers of the scenario the fits go into (or a template that has them)."""
    p.add_argument(
        "--template",
        metavar="SCENARIO",
        help="scenario whose tasks, mix, weights, bounds, queue (arrival_rate, "
        "latency_weight, arrival_scv), [server] and [constraints] are kept (measured tasks "
        "get the fitted curves and service lines; --throughput replaces the server's curve)",
    )
    p.add_argument(
        "--arrival-rate",
        type=float,
        metavar="LAM",
        help="queries per second (required without --template)",
    )
    p.add_argument(
        "--latency-weight",
        type=float,
        metavar="GAMMA",
        help="utility per second of mean system time (required without --template)",
    )
    for flag, what in (
        ("probability", "mix share (default: uniform)"),
        ("weight", "weight of a correct answer (default 1)"),
        ("min-tokens", "lower budget (default 0)"),
        ("max-tokens", "upper budget (default: largest measured budget)"),
        ("base", "service seconds independent of tokens"),
        ("per-token", "service seconds per token"),
        ("scv", "squared coefficient of variation of the service time"),
    ):
        p.add_argument(
            f"--{flag}",
            action="append",
            metavar="[TASK=]VALUE",
            help=f"{what}; for TASK or every task; repeatable",
        )


def _add_output_options(p: argparse.ArgumentParser) -> None:
    """Where the scenario goes, how the report is printed, and the progress bar."""
    add_output_option(
        p,
        help="write the fitted scenario here, TOML or JSON by the extension (.toml, .json; "
        "only on success); without it only the fit report is printed",
        formats=SCENARIO,
    )
    add_json_option(p, help="print the report as one JSON object")
    add_progress_option(
        p, help="never show a progress bar (default: on a terminal, one step per task)"
    )


def _per_task(flag: str, items: list[str] | None, *, allow_all: bool = True):
    """``["0.5", "code=1.5"]`` -> {POOLED: 0.5, "code": 1.5}."""
    if not items:
        return None
    out: dict[str, float] = {}
    for item in items:
        task, sep, val = item.rpartition("=")
        key = task.strip() if sep else POOLED
        if key == POOLED and not allow_all:
            raise MeasurementError(f"--{flag} {item!r}: expected TASK=VALUE")
        try:
            out[key] = float(val)
        except ValueError:
            raise MeasurementError(f"--{flag} {item!r}: {val!r} is not a number") from None
    return out


def _families(items: list[str] | None):
    if not items:
        return None
    out: dict[str, list[str]] = {}
    for item in items:
        task, sep, fam = item.rpartition("=")
        key = task.strip() if sep else POOLED
        fam = fam.strip()
        if fam != "auto" and fam not in FAMILIES:
            raise MeasurementError(
                f"--family {item!r}: unknown family {fam!r}; use one of "
                f"{', '.join(FAMILIES)} or auto"
            )
        out[key] = list(FAMILIES) if fam == "auto" else [fam]
    return out


def _fixed(items: list[str] | None):
    if not items:
        return None
    out: dict[str, dict[str, dict[str, float]]] = {}
    for item in items:
        head, sep, val = item.rpartition("=")
        if not sep:
            raise MeasurementError(f"--fix {item!r}: expected [TASK:]PARAM=VALUE")
        task, _, param = head.rpartition(":")
        param = param.strip()
        try:
            value = float(val)
        except ValueError:
            raise MeasurementError(f"--fix {item!r}: {val!r} is not a number") from None
        fams = [f for f, cls in FAMILIES.items() if param in cls.params]
        if not fams:
            raise MeasurementError(f"--fix {item!r}: no family has a parameter {param!r}")
        per = out.setdefault(task.strip() or POOLED, {})
        for f in fams:
            per.setdefault(f, {})[param] = value
    return out


def run(args: argparse.Namespace) -> int:
    from ..fit.pipeline import calibrate  # scipy.optimize: loaded when fit runs

    if args.output is not None:
        output_format(args.output)  # .toml or .json, refused before any work
    capacity = None
    if args.throughput is not None or args.accuracy_csv is None:
        capacity = _capacity(args)  # None: done (no ACCURACY_CSV)
        if capacity is None:
            return 0
    server = None if capacity is None else capacity.server()
    template = load_scenario(args.template, server=server) if args.template else None
    build = args.output is not None
    prob = _per_task("probability", args.probability, allow_all=False)
    cal = calibrate(
        args.accuracy_csv,
        args.service,
        families=_families(args.family),
        fixed=_fixed(args.fix),
        criterion=args.criterion,
        build=build,
        template=template,
        arrival_rate=args.arrival_rate,
        latency_weight=args.latency_weight,
        probability=prob,
        weight=_per_task("weight", args.weight),
        min_tokens=_per_task("min-tokens", args.min_tokens),
        max_tokens=_per_task("max-tokens", args.max_tokens),
        base=_per_task("base", args.base),
        per_token=_per_task("per-token", args.per_token),
        scv=_per_task("scv", args.scv),
        # with a template the fitted curve is already in it (load_scenario(server=...)
        # replaced the curve and kept the table's other keys, e.g. max_running)
        server=None if capacity is None or template is not None else capacity.curve,
        progress=False if args.no_progress else None,
    )
    if capacity is not None and cal.scenario is not None:
        note = per_token_note(capacity, cal.scenario.per_token, cal.scenario.names)
        if note is not None:
            cal.notes.append(note)
    if build:
        header = [
            "Written by cvxalloc fit:",
            "  cvxalloc " + " ".join(shlex.quote(a) for a in sys.argv[1:])
            if sys.argv[1:2] == ["fit"]
            else "  (cvxalloc.fit.calibrate)",
        ]
        for name, tf in cal.tasks.items():
            f = tf.best
            ps = ", ".join(
                f"{k} {f.params[k]:.4g}" + ("" if k in f.fixed else f" +- {f.stderr[k]:.2g}")
                for k in f.params
            )
            header.append(f"{name}: {f.family} ({tf.criterion}; {f.n_points} points): {ps}")
        header += cal.notes
        emit(scenario_text(cal.scenario, args.output, header), args.output)
    if args.json:
        out = cal.to_dict()
        if capacity is not None:
            out["capacity"] = capacity.to_dict()
        if build:
            out["output"] = args.output
        emit(dumps(out), None)
    else:
        text = cal.summary() if capacity is None else capacity.summary() + "\n\n" + cal.summary()
        if build:
            text += f"\nwrote {args.output}"
        emit(text, None)
    return 0


def _capacity(args: argparse.Namespace) -> CapacityFit | None:
    """``cvxalloc fit --throughput CSV``: fit the curve; finish the command if no ACCURACY_CSV.

    Returns the fit for the accuracy calibration to add to its scenario, or
    None when the command is done (no ACCURACY_CSV: report, and with
    ``--output`` the ``--template`` scenario with this ``[server]``, or the
    ``[server]`` table alone).
    """
    if args.throughput is None:
        raise MeasurementError(
            "give ACCURACY_CSV (accuracy curves), --throughput CSV (a batching server's "
            "capacity curve), or both"
        )
    fit = fit_capacity(*read_throughput(args.throughput), single_stream=args.single_stream)
    if args.accuracy_csv is not None:
        return fit
    unused = [f"--{k.replace('_', '-')}" for k in ("service", "family", "fix") if getattr(args, k)]
    if unused:
        raise MeasurementError(f"{', '.join(unused)} need ACCURACY_CSV")
    command = "  cvxalloc " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    header = [
        "Written by cvxalloc fit:",
        command if sys.argv[1:2] == ["fit"] else "  (cvxalloc.fit.fit_capacity)",
        f"one query alone: {fit.single_stream:.4g} per second ({fit.single_stream_source}); "
        f"service.per_token for a query alone = {1.0 / fit.single_stream:.4g} s",
        *fit.notes,
    ]
    if args.output is not None:
        if args.template:
            scenario = load_scenario(args.template, server=fit.server())
            note = per_token_note(fit, scenario.per_token, scenario.names)
            if note is not None:
                fit.notes.append(note)
                header.append(note)
            text = scenario_text(scenario, args.output, header)
        elif output_format(args.output) == "json":
            text = scenario_text({"server": fit.curve.to_dict()}, args.output)
        else:
            text = "\n".join(f"# {line}".rstrip() for line in header) + "\n\n"
            text += server_toml(fit.curve)
        emit(text, args.output)
    if args.json:
        out = fit.to_dict()
        if args.output is not None:
            out["output"] = args.output
        emit(dumps(out), None)
    else:
        emit(fit.summary() + (f"\nwrote {args.output}" if args.output else ""), None)
    return None
