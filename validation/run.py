"""Run every experiment: ``python -m validation.run --out validation/output``.

Writes one PNG per experiment, ``report.md`` (each figure with what it
establishes, in numbers) and ``results.json`` (the numbers) into ``--out``.
``--only a,d`` runs a subset; ``--quick`` uses fewer points and shorter
simulations (for a smoke run). Progress bars go to stderr when it is a terminal
(``--no-progress``: never).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import common
from .common import Section, progress

#: letter -> module of this package, in report order.
EXPERIMENTS = {
    "a": "load",
    "b": "convergence",
    "c": "rounding",
    "d": "pk",
    "e": "frontier",
    "f": "traces",
    "g": "controller",
    "h": "batching",
    "i": "batching_traffic",
    "j": "fleet",
    "t": "tail",
}


def _json_default(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return str(x)


def run_all(out: Path, only: str = "", quick: bool = False) -> list[Section]:
    """Run the selected experiments, write the report, return the sections."""
    out.mkdir(parents=True, exist_ok=True)
    chosen = [k for k in EXPERIMENTS if not only or k in only.split(",")]
    sections: list[Section] = []
    steps = progress(chosen, "validation", unit="experiment")
    # a line printed under a live bar goes through tqdm, so the bar is redrawn below it
    say = getattr(steps, "write", None) or print
    for key in steps:
        mod_name = EXPERIMENTS[key]
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"{__package__}.{mod_name}")
            sec = mod.run(out, quick=quick)
        except Exception as exc:  # report the failure, keep the other experiments
            sec = Section(
                key=f"{key}-{mod_name}",
                title=f"({key}) {mod_name}: not run",
                figures=[],
                ok=False,
                text=f"This experiment failed: `{type(exc).__name__}: {exc}`\n\n"
                "```\n" + traceback.format_exc(limit=4) + "```",
            )
        sec.numbers["seconds"] = time.perf_counter() - t0
        say(
            f"[{key}] {sec.title}: {'ok' if sec.ok else 'CHECK FAILED'} "
            f"({sec.numbers['seconds']:.1f} s)",
            file=sys.stderr,
        )
        sections.append(sec)
    _write_report(out, sections, quick)
    return sections


def _write_report(out: Path, sections: list[Section], quick: bool) -> None:
    import cvxalloc

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# cvxalloc validation report",
        "",
        f"Generated {stamp} by `python -m validation.run` (cvxalloc {cvxalloc.__version__}, "
        f"Python {platform.python_version()}, numpy {np.__version__}"
        f"{', quick mode' if quick else ''}).",
        "",
        "| experiment | checks | seconds |",
        "|---|---|---|",
    ]
    for s in sections:
        lines.append(
            f"| {s.title} | {'pass' if s.ok else '**FAIL**'} | {s.numbers.get('seconds', 0):.1f} |"
        )
    for s in sections:
        lines += ["", f"## {s.title}", ""]
        lines += [f"![{s.key}]({f})" for f in s.figures]
        lines += ["", s.text]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    numbers = {s.key: {"ok": s.ok, **s.numbers} for s in sections}
    (out / "results.json").write_text(
        json.dumps(numbers, indent=1, default=_json_default), encoding="utf-8"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m validation.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="validation/output", help="output directory")
    parser.add_argument("--only", default="", help="comma-separated letters, e.g. a,d,e")
    parser.add_argument("--quick", action="store_true", help="fewer points, shorter runs")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="never show progress bars (default: shown on stderr when it is a terminal)",
    )
    args = parser.parse_args(argv)
    common.PROGRESS["on"] = False if args.no_progress else None
    sections = run_all(Path(args.out), args.only, args.quick)
    print(f"wrote {Path(args.out) / 'report.md'}", file=sys.stderr)
    return 0 if all(s.ok for s in sections) else 1


if __name__ == "__main__":
    sys.exit(main())
