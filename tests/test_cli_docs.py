"""docs/cli.md says what the command line does (issue 22: it had drifted).

Every ``--help`` is compared with docs/cli.md at a fixed width (80 columns):
``cvxalloc --help`` appears verbatim; each command's usage block is its section's
first ``text`` block; every option of a command is named in its section, and
every option a section's tables list exists. The ``--json`` keys of a few commands
are checked against their sections too. When this fails after a change to the
CLI, regenerate the block from ``COLUMNS=80 cvxalloc COMMAND --help``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from cvxalloc.cli import SUBCOMMANDS, build_parser, main

DOC = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


@pytest.fixture(autouse=True)
def _eighty_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps the help to the terminal's width


def _section(command: str) -> str:
    start = DOC.index(f"\n## cvxalloc {command}\n")
    end = DOC.find("\n## ", start + 5)
    return DOC[start : end if end > 0 else None]


def _help(command: str) -> str:
    parser = build_parser([command])
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices[command].format_help()


def test_the_top_level_help_is_in_the_docs():
    assert build_parser().format_help().rstrip() in DOC


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_each_usage_block_is_the_commands_usage(command):
    usage = _help(command).split("\n\n")[0].rstrip()
    section = _section(command)
    block = section.split("```text\n", 1)[1].split("```", 1)[0].rstrip()
    assert block == usage, f"docs/cli.md ## cvxalloc {command}: regenerate the usage block"


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_option_is_documented_and_every_documented_option_exists(command):
    text, section = _help(command), _section(command)
    options = set(OPTION.findall(text)) - {"--help"}
    missing = sorted(o for o in options if o not in section)
    assert not missing, f"## cvxalloc {command} does not mention {missing}"
    listed = set(re.findall(r"^\| `(--[a-z][a-z0-9-]*)", section, flags=re.M))
    stale = sorted(o for o in listed if o not in options)
    assert not stale, f"## cvxalloc {command} lists options the command lacks: {stale}"


def _undocumented(keys, section: str) -> list[str]:
    """Keys named neither as `key` nor as `key.field` (nor in a JSON example) in ``section``."""
    return [k for k in keys if not any(f in section for f in (f"`{k}`", f"`{k}.", f'"{k}"'))]


def _json_of(argv: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return json.loads(out.getvalue())


def test_policy_build_json_keys_are_documented(tmp_path):
    keys = _json_of(
        ["policy", "-o", str(tmp_path / "p.json"), "--json", "--points", "2", "--tolerance", "0.5"]
    )
    assert _undocumented(keys, _section("policy")) == []


def test_traffic_and_solve_json_keys_are_documented(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("timestamp\n" + "".join(f"{0.5 * i + 0.1 * (i % 3)}\n" for i in range(60)))
    keys = _json_of(["traffic", str(log), "--json"])
    assert _undocumented(keys, _section("traffic")) == []
    keys = _json_of(["solve", "--json", "--no-baselines"])
    assert _undocumented(keys, _section("solve")) == []


def test_the_slo_sweep_is_said_to_use_the_default_method():
    # it was said to default to conic, while --method's row said aggregate
    section = _section("sweep")
    assert "solves with `conic` unless" not in section
    assert "default `aggregate`" in section
