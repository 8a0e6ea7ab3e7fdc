"""``cvxalloc convert``: a scenario between its two forms, [[task]] tables and a task table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ScenarioError
from ..io import load_scenario, write_scenario
from ._common import SCENARIO, check_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a scenario between [[task]] tables and a task table (CSV/Parquet)",
        description=(
            "Read scenario IN (.toml or .json, its tasks as [[task]] tables or as a task "
            'table, tasks = "file.csv") and write it to OUT (.toml or .json). With --tasks '
            "TABLE the tasks go to TABLE (.csv, or .parquet with pyarrow; relative to OUT's "
            'directory, as the tasks key reads it) and OUT holds tasks = "TABLE" beside its '
            "[queue], [server], [fleet] and [constraints]; without it OUT holds [[task]] "
            "tables. Reading OUT gives the same scenario, every number exact."
        ),
    )
    p.add_argument("input", metavar="IN", help="scenario file (.toml or .json)")
    p.add_argument("output_file", metavar="OUT", help="scenario file to write (.toml or .json)")
    p.add_argument(
        "--tasks",
        metavar="TABLE",
        help="write the tasks to this table (.csv or .parquet), relative to OUT's directory",
    )


def run(args: argparse.Namespace) -> int:
    check_path("OUT", args.output_file, SCENARIO, "convert")
    if args.tasks is not None:
        check_path(
            "--tasks",
            str(Path(args.output_file).parent / args.tasks),
            (".csv", ".parquet"),
            "convert",
        )
    if Path(args.input).resolve() == Path(args.output_file).resolve():
        raise ScenarioError(f"OUT {args.output_file!r} is IN: write to another file")
    sc = load_scenario(args.input)
    written = write_scenario(sc, args.output_file, tasks=args.tasks, what="OUT")
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
