"""The ``cvxalloc`` command line.

Layer: cli.

Each subcommand lives in its own module of this package with two functions,
``add_parser(subparsers)`` and ``run(args) -> int``; :data:`SUBCOMMANDS` lists
them in the order ``--help`` shows. Every :class:`~cvxalloc.errors.CvxallocError`
becomes one line on stderr and exit code 2, with no traceback and no output file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from .._malloc import keep_freed_memory
from ..errors import CvxallocError
from ._common import check_output

__all__ = ["main", "SUBCOMMANDS"]

#: Subcommand modules (``cvxalloc.cli.<name>``), in help order.
SUBCOMMANDS = ["solve", "certify", "simulate", "plot", "fit", "sensitivity", "sweep", "traffic"]
SUBCOMMANDS += ["policy", "control"]  # budget policies over load, controller replay
SUBCOMMANDS += ["plan"]  # replicas and budgets of a fleet
SUBCOMMANDS += ["convert"]  # scenario files between [[task]] tables and a task table


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(only: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser: every subcommand, or only those named in ``only``.

    A subcommand's module imports what its command needs (the simulator, the
    plots, ...), so :func:`main` builds the parser of the command it runs alone
    and ``cvxalloc solve`` (or ``--version``) does not pay for the others.
    """
    parser = _Parser(
        prog="cvxalloc",
        description=(
            "Certified allocation of LLM thinking-token budgets on a queueing server (one FIFO "
            "server, Poisson or bursty arrivals, or continuous batching): "
            "maximize weighted accuracy minus a price on mean system time."
        ),
        epilog="Run 'cvxalloc COMMAND --help' for each command. Docs: docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"cvxalloc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMANDS if only is None else only:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def _commands(argv: Sequence[str]) -> list[str] | None:
    """The subcommands whose parsers ``argv`` needs (None: all, e.g. for ``--help``)."""
    if list(argv) == ["--version"]:
        return []
    return [argv[0]] if argv and argv[0] in SUBCOMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cvxalloc`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_commands(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(f"{__name__}.{args.command}")
    keep_freed_memory()  # the command's large temporaries reuse their pages (_malloc.py)
    try:
        check_output(args)  # --output's extension and directory, before any work
        return int(module.run(args) or 0)
    except CvxallocError as exc:
        print(f"cvxalloc {args.command}: error: {_message(exc, args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        print("cvxalloc: interrupted", file=sys.stderr)
        return 130


def _message(exc: Exception, command: str) -> str:
    """The error's text without a leading ``<command>:`` (the line already names it).

    One line whatever it quotes: the line breaks a task name or a key may hold
    (``\n``, ``\x85``, ``\u2028``, ...) are shown escaped.
    """
    text = str(exc)
    prefix = f"{command}:"
    text = text[len(prefix) :].lstrip() if text.startswith(prefix) else text
    return "".join(repr(ch)[1:-1] if ch in _LINE_BREAKS else ch for ch in text)


#: The characters str.splitlines breaks at.
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
