"""Helpers shared by the subcommands: scenario loading, options, safe output."""

from __future__ import annotations

import json
import sys
from typing import Any

from .._files import write_text
from ..errors import ScenarioError
from ..io import example_scenario, load_scenario
from ..queue.tail import check_quantiles

__all__ = [
    "add_scenario_argument",
    "scenario_from_args",
    "parse_options",
    "emit",
    "dumps",
    "add_quantiles_argument",
    "quantiles_from_args",
]


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
