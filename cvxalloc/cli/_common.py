"""Helpers shared by the subcommands: the options they share, scenario loading, safe output.

Layer: cli. Every option that more than one subcommand takes is declared here
once (flag, metavar, default and help), so ``--method``, ``--json``,
``--output``, ``--option``, ``--no-progress`` and ``--plot`` read the same in
every ``--help``; a subcommand passes only what is its own (what ``--output``
writes, what ``--plot`` draws).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._files import write_text
from .._output import json_text, output_format, toml_text, write_table
from ..errors import ScenarioError
from ..io import example_scenario, load_scenario
from ..queue.tail import check_quantiles
from ..solve import DEFAULT_METHOD, available_methods

__all__ = [
    "add_scenario_argument",
    "add_method_option",
    "add_solver_options",
    "add_json_option",
    "add_output_option",
    "check_output",
    "check_path",
    "write_output",
    "REPORT",
    "PER_TASK",
    "SCENARIO",
    "add_progress_option",
    "add_plot_option",
    "scenario_from_args",
    "parse_options",
    "emit",
    "dumps",
    "add_quantiles_argument",
    "quantiles_from_args",
]

#: ``--output``'s help where it takes what the command prints.
OUTPUT_HELP = (
    "write the output to FILE instead of stdout, in the format its extension names: "
    ".json, .toml or .txt (the text printed); written only on success"
)
#: ``--output``'s help where the output is per task (also a table, one row per task).
PER_TASK_HELP = (
    "write the output to FILE instead of stdout, in the format its extension names: "
    ".json, .toml, .txt (the text printed), or .csv / .parquet (one row per task: name, "
    "tokens, ...); written only on success"
)
#: What ``--output`` may be, by kind of output (extensions, the first the usual one).
REPORT = (".json", ".toml", ".txt")
PER_TASK = (*REPORT, ".csv", ".parquet")
SCENARIO = (".toml", ".json")
#: ``--no-progress``'s help.
PROGRESS_HELP = "never show a progress bar (default: shown on stderr when it is a terminal)"


def add_method_option(
    parser: argparse.ArgumentParser, help: str | None = None, metavar: str | None = None
) -> None:
    """``--method NAME``: one of the registered methods (default: :func:`cvxalloc.solve`'s)."""
    parser.add_argument(
        "--method",
        default=None,
        choices=available_methods(),
        metavar=metavar,
        help=help or f"solver (default: {DEFAULT_METHOD})",
    )


def add_solver_options(parser: argparse.ArgumentParser) -> None:
    """``--option KEY=VALUE``, repeatable: options of the solver (read by :func:`parse_options`)."""
    parser.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="solver option, repeatable (e.g. --option tol=1e-12; see docs/solvers.md)",
    )


def add_json_option(parser: argparse.ArgumentParser, help: str = "print one JSON object") -> None:
    """``--json``: print one JSON object instead of the text report."""
    parser.add_argument("--json", action="store_true", help=help)


def add_output_option(
    parser: argparse.ArgumentParser,
    help: str | None = None,
    metavar: str = "FILE",
    default: str | None = None,
    formats: Sequence[str] = REPORT,
) -> None:
    """``--output FILE`` / ``-o FILE``: where the command writes (all or nothing,
    :func:`write_output`), in one of ``formats`` (extensions), which the command line
    checks before the command runs (:func:`check_output`)."""
    if help is None:
        help = PER_TASK_HELP if ".csv" in formats else OUTPUT_HELP
    parser.add_argument("--output", "-o", metavar=metavar, default=default, help=help)
    parser.set_defaults(output_formats=tuple(formats))


def check_output(args: argparse.Namespace) -> None:
    """Refuse an ``--output`` whose extension the command does not write, or whose
    directory does not exist, before the command runs (so no work is lost).

    Raises
    ------
    ScenarioError
        One line naming the extensions the command writes.
    """
    path, formats = getattr(args, "output", None), getattr(args, "output_formats", None)
    if path is None or formats is None:
        return
    check_path("--output", path, formats, args.command)


def check_path(label: str, path: str, formats: Sequence[str], command: str) -> None:
    """Refuse a file name whose extension is not one of ``formats``, or whose directory
    does not exist, in one line naming ``label`` and what ``command`` writes."""
    suffix = Path(path).suffix.lower()
    if suffix not in formats:
        names = [f"*{e}" for e in formats]
        shown = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        got = f"extension {suffix!r}" if suffix else "no extension"
        raise ScenarioError(
            f"{label} {path!r}: {got}; {command} writes {_kinds(formats)}: name it {shown}"
        )
    parent = Path(path).parent
    if not parent.is_dir():
        raise ScenarioError(f"{label} {path!r}: directory {str(parent)!r} does not exist")


def _kinds(formats: Sequence[str]) -> str:
    what = {".json": "JSON", ".toml": "TOML", ".txt": "text", ".png": "a PNG figure"}
    if ".csv" in formats:
        what[".csv"], what[".parquet"] = "a table (one row per task)", ""
    words = [w for e in formats if (w := what.get(e, e))]
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]


def write_output(
    args: argparse.Namespace,
    *,
    text: Callable[[], str],
    data: Callable[[], Mapping[str, Any]],
    table: Callable[[], Mapping[str, Any]] | None = None,
    toml: Callable[[], str] | None = None,
) -> None:
    """Print the command's output, or write it to ``args.output`` as its extension says.

    Each form is a callable, so only the one asked for is built: ``text`` the report
    (printed, and ``.txt``), ``data`` the structure (printed with ``--json``, and
    ``.json``, ``.toml``), ``table`` the per-task columns (``.csv``, ``.parquet``),
    ``toml`` the TOML text where it is more than ``data`` written as TOML (a scenario
    with its comments). ``.txt`` holds what would be printed (JSON with ``--json``).
    """
    as_json = bool(getattr(args, "json", False))
    path = args.output
    if path is None:
        emit(json_text(data()) if as_json else text(), None)
        return
    fmt = output_format(path)
    if fmt in ("csv", "parquet"):
        if table is None:  # (check_output refuses it first)
            raise ScenarioError(f"--output {path!r}: this output is not per task")
        write_table(path, table())
    elif fmt == "json":
        write_text(path, json_text(data()))
    elif fmt == "toml":
        write_text(path, toml() if toml is not None else toml_text(data()))
    else:
        write_text(path, json_text(data()) if as_json else text())


def add_progress_option(parser: argparse.ArgumentParser, help: str = PROGRESS_HELP) -> None:
    """``--no-progress``: never draw a progress bar."""
    parser.add_argument("--no-progress", action="store_true", help=help)


def add_plot_option(parser: argparse.ArgumentParser, help: str, metavar: str = "FILE.png") -> None:
    """``--plot FILE.png``: also draw the command's figure (:mod:`cvxalloc.plots`)."""
    parser.add_argument("--plot", metavar=metavar, help=help)


def add_scenario_argument(parser, optional: bool = False) -> None:
    """Add the SCENARIO positional (optional: the built-in example)."""
    if optional:
        parser.add_argument(
            "scenario",
            nargs="?",
            metavar="SCENARIO",
            help="scenario file (.toml or .json); default: the built-in example",
        )
    else:
        parser.add_argument("scenario", metavar="SCENARIO", help="scenario file (.toml or .json)")


def scenario_from_args(args):
    """Load ``args.scenario`` (or the built-in example when it is None)."""
    if getattr(args, "scenario", None) is None:
        return example_scenario()
    return load_scenario(args.scenario)


def add_quantiles_argument(parser) -> None:
    """Add ``--quantiles P,P,...``: the system-time percentiles to report."""
    parser.add_argument(
        "--quantiles",
        metavar="P,P,...",
        help="system-time percentiles to predict, levels in (0, 1) "
        "(default 0.5,0.9,0.95,0.99; see docs/tail.md)",
    )


def quantiles_from_args(args) -> tuple[float, ...] | None:
    """The levels of ``--quantiles`` (checked), or None for the default."""
    raw = getattr(args, "quantiles", None)
    if raw is None:
        return None
    return check_quantiles(raw, where="--quantiles")


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["tol=1e-9", "max_iter=100"]`` -> dict, values read as JSON where they parse."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ScenarioError(f"--option {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def dumps(obj: Any) -> str:
    """JSON text (indent 2, no NaN)."""
    return json.dumps(obj, indent=2, allow_nan=False)


def emit(text: str, output: str | None) -> None:
    """Print ``text`` or write it atomically to ``output`` (no partial files)."""
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    write_text(output, text)
