"""``cvxalloc traffic``: arrival rate and burstiness of a request log."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import ScenarioError, UnstableError
from ..io import load_scenario, output_format, scenario_text
from ..requestlog import TIME_COLUMNS, TIME_UNITS, read_request_log
from ..scenario import Scenario
from ..traffic import measure_traffic
from ._common import (
    SCENARIO,
    add_json_option,
    add_output_option,
    add_plot_option,
    dumps,
    emit,
)


def add_log_arguments(p, replay: bool = False) -> None:
    """The column options shared by ``traffic`` and ``simulate --arrivals``."""
    p.add_argument(
        "--time-column",
        metavar="NAME",
        help="column of the arrival times (default: the first of "
        f"{', '.join(TIME_COLUMNS)}, ignoring case)",
    )
    p.add_argument(
        "--time-unit",
        metavar="|".join(TIME_UNITS),
        help="unit of numeric time stamps (date-times need none; numbers without it are "
        "read as seconds and reported as 's (assumed)')",
    )
    p.add_argument(
        "--type-column",
        metavar="NAME",
        help="column of the request type"
        + (": task names of the scenario, replayed instead of drawn types" if replay else ""),
    )
    p.add_argument(
        "--tokens-column",
        metavar="NAME",
        help="column of a token count per request"
        + (
            " (reported beside the replay; service times come from the allocation)"
            if replay
            else ""
        ),
    )


def read_log_from_args(path: str, args: argparse.Namespace):
    """:func:`~cvxalloc.requestlog.read_request_log` with the column options of ``args``."""
    return read_request_log(
        path,
        time_column=args.time_column,
        time_unit=args.time_unit,
        type_column=args.type_column,
        tokens_column=args.tokens_column,
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "traffic",
        help="measure the arrival rate and burstiness of a request log",
        description=(
            "Read a request log (CSV with a header row, or JSON lines) and measure the "
            "arrival rate (n - 1) / (last - first), the squared coefficient of variation of "
            "the gaps (var / mean^2), the index of dispersion of counts over 1 s, 10 s and "
            "60 s windows, the rate per window over time, and the type mix and token "
            "statistics when the log has those columns. Time stamps on a coarse grid "
            "(many simultaneous arrivals) are reported with the grid step and a de-quantized "
            "gap SCV. With --scenario IN --output OUT, write a copy of the scenario with the "
            "measured arrival_rate and arrival_scv (--keep-rate: arrival_scv only; "
            "--dequantize: the de-quantized arrival_scv)."
        ),
    )
    p.add_argument("log", metavar="LOG", help="request log (.csv or JSON lines)")
    add_log_arguments(p)
    p.add_argument(
        "--window",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="window of the rate-over-time series (default: 60)",
    )
    add_json_option(p)
    add_plot_option(p, help="plot the rate per window over time")
    p.add_argument(
        "--scenario",
        metavar="IN",
        help="scenario whose [queue] arrival_rate and arrival_scv to replace (needs --output)",
    )
    p.add_argument(
        "--keep-rate",
        action="store_true",
        help="with --scenario: write only the burstiness (arrival_scv), keeping the "
        "scenario's arrival_rate (a server that takes a different rate)",
    )
    p.add_argument(
        "--dequantize",
        action="store_true",
        help="use the de-quantized gap SCV (each arrival spread over its time stamp's grid "
        "step) for arrival_scv in the scenario written and the JSON's arrival_scv_used",
    )
    add_output_option(
        p,
        help="where to write the updated scenario (.toml or .json, by the extension; needs "
        "--scenario)",
        metavar="OUT",
        formats=SCENARIO,
    )


def _check_dir(option: str, path: str) -> None:
    parent = Path(path).parent
    if str(parent) and not parent.is_dir():
        raise ScenarioError(f"{option} {path!r}: directory {str(parent)!r} does not exist")


def _scv_used(traffic, dequantize: bool) -> tuple[float, str]:
    """The arrival_scv to write, and where it comes from (for the file's header)."""
    q = traffic.quantization
    if dequantize and q is not None:
        return q.arrival_scv_dequantized, (
            f"arrival_scv de-quantized (arrivals spread over their {q.step_seconds:g} s "
            f"time-stamp grid; the raw gap SCV is {traffic.arrival_scv:.6g})"
        )
    if dequantize:
        return traffic.arrival_scv, "arrival_scv as measured (the time stamps are on no grid)"
    if traffic.warning is not None:
        return traffic.arrival_scv, f"arrival_scv as measured; warning: {traffic.warning}"
    return traffic.arrival_scv, "arrival_scv as measured"


def _updated_scenario(
    path: str, traffic, output: str, keep_rate: bool = False, dequantize: bool = False
) -> tuple[str, str | None]:
    """The scenario at ``path`` with the log's rate (unless ``keep_rate``) and gap scv, as
    the text of ``output`` (TOML or JSON by its extension), and a note when one replica
    (or the scenario's fleet) cannot carry that rate: then it is written with the fewest
    replicas that can, at the minimum budgets (``cvxalloc plan`` chooses)."""
    sc = load_scenario(path)
    data = sc.to_dict()
    scv, how = _scv_used(traffic, dequantize)
    if not keep_rate:
        data["queue"]["arrival_rate"] = traffic.arrival_rate
    data["queue"]["arrival_scv"] = scv
    header = [
        f"{path} with [queue] "
        + ("arrival_scv" if keep_rate else "arrival_rate and arrival_scv")
        + " measured by cvxalloc traffic",
        f"from {traffic.source}: {traffic.requests:,} requests over "
        f"{traffic.duration_seconds:.6g} s; {how}",
    ]
    server = data.get("server")
    if server is not None and "service_scv" not in server and traffic.arrival_scv != 1.0:
        # a batching server's burst model depends on the mix's service scv: the plan's own
        server["service_scv"] = "auto"
        header.append('[server] service_scv = "auto": the plan\'s own (docs/batching.md)')
    note = None
    try:
        new = Scenario.from_dict(data)
    except UnstableError:
        one = sc.capacity / sc.replicas  # one replica's capacity
        m1_lo = float(sc.probability @ sc.service_time(sc.min_tokens))
        k = int(math.floor(traffic.arrival_rate * m1_lo / one)) + 1
        if k <= sc.replicas:
            raise
        router = sc.fleet.router if sc.fleet is not None else "random"
        data["fleet"] = {"replicas": k, "router": router}
        new = Scenario.from_dict(data)
        note = (
            f"{sc.replicas} replica(s) cannot carry {traffic.arrival_rate:.6g} queries/s even at "
            f"the minimum budgets; written with [fleet] replicas = {k}, the fewest that can: "
            f"'cvxalloc plan OUT --max-replicas K' chooses how many"
        )
        header.append(note.replace("OUT", "this file"))
    return scenario_text(new, output, header=header), note


def run(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.window) and args.window > 0):
        raise ScenarioError(f"--window {args.window:g}: give a finite number of seconds > 0")
    if (args.scenario is None) != (args.output is None):
        raise ScenarioError(
            "--scenario IN and --output OUT go together: OUT is the copy of IN with the "
            "measured arrival_rate and arrival_scv"
        )
    if args.keep_rate and args.scenario is None:
        raise ScenarioError(
            "--keep-rate applies to the scenario written: give --scenario IN --output OUT"
        )
    if args.plot is not None:
        if not str(args.plot).lower().endswith(".png"):
            raise ScenarioError(f"--plot {args.plot!r}: the figure is a PNG; name it *.png")
        _check_dir("--plot", args.plot)
    if args.output is not None:
        output_format(args.output)  # .toml or .json, refused before any work
        _check_dir("--output", args.output)
    log = read_log_from_args(args.log, args)
    traffic = measure_traffic(log, window=args.window)
    text_out, note = (None, None)
    if args.scenario is not None:
        text_out, note = _updated_scenario(
            args.scenario,
            traffic,
            args.output,
            keep_rate=args.keep_rate,
            dequantize=args.dequantize,
        )
    if args.plot is not None:
        from ..plots import plot_traffic

        plot_traffic(traffic, args.plot)
    if text_out is not None:
        emit(text_out, args.output)
    if args.json:
        out = traffic.to_dict()
        out["arrival_scv_used"] = _scv_used(traffic, args.dequantize)[0]
        if args.plot is not None:
            out["plot"] = args.plot
        if args.output is not None:
            out["scenario_written"] = args.output
        if note is not None:
            out["scenario_note"] = note
        emit(dumps(out), None)
    else:
        text = traffic.summary()
        if args.plot is not None:
            text += f"\nplot              {args.plot}"
        if args.output is not None:
            text += f"\nscenario written  {args.output} (from {args.scenario})"
        if note is not None:
            text += f"\n                  {note.replace('OUT', args.output)}"
        emit(text, None)
    return 0
