"""Reading and writing scenarios, and reading allocations: TOML or JSON files.

Layer: scenario.

The file structure is the contract of ``docs/scenario.md``::

    [queue]
    arrival_rate = 0.05
    latency_weight = 0.02

    [server]                  # optional: default model = "single" (one query at a time)
    model = "batching"
    concurrency = [1, 4, 8, 16, 32, 48]
    speedup = [1.0, 3.82, 6.85, 11.7, 17.7, 21.6]

    [[task]]
    name = "math"
    probability = 0.3
    ...
    [task.service]
    ...
    [task.accuracy]
    model = "exponential"
    ...

JSON files hold the same structure: ``{"queue": {...}, "task": [{...}, ...]}``.
The structure itself (checks, defaults, conversion both ways) is
:mod:`cvxalloc.scenario_format`, behind :meth:`Scenario.from_dict` and
:meth:`Scenario.to_dict`; this module reads and writes the files.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ._files import write_text
from ._output import json_text, toml_string, toml_text
from ._output import output_format as file_format
from .errors import ScenarioError
from .scenario import Scenario
from .scenario_format import number, scenario_fields, scenario_structure, unknown_key
from .tables import read_allocation_table, read_task_table, write_task_table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "load_scenario",
    "as_scenario",
    "load_allocation",
    "output_format",
    "scenario_text",
    "example_scenario",
    "read_structured_file",
    "scenario_toml",
    "write_scenario",
    "EXAMPLE_PATH",
]

EXAMPLE_PATH = "data/example.toml"


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused inside (as it was after).

    A parsed file is a tree of many containers and no cycles, which the collector
    would walk again and again while it grows, and once more on its first run
    after: a JSON scenario of 10^6 tasks parses in 3.3 s of CPU with it paused
    instead of 4.9 s, and :func:`load_scenario` saves 0.5 s more by freeing the
    tree before the collector runs again.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def read_structured_file(path: str | Path, what: str = "scenario") -> dict[str, Any]:
    """Parse a ``.toml`` or ``.json`` file into a dict, with clear errors."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ScenarioError(
            f"{what} file {str(path)!r}: unsupported extension {suffix or '(none)'!r}; "
            "use a .toml or .json file"
        )
    if not path.is_file():
        raise ScenarioError(f"{what} file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{what} file {str(path)!r} cannot be read: {exc}") from None
    try:
        with _collector_paused():
            data = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if suffix == ".toml" else "JSON"
        raise ScenarioError(f"{what} file {str(path)!r} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{what} file {str(path)!r} must hold a table/object at top level")
    return data


def load_scenario(path: str | Path, *, server: Mapping[str, Any] | None = None) -> Scenario:
    """Load and validate a scenario from a ``.toml`` or ``.json`` file.

    Parameters
    ----------
    path : str or Path
        The scenario file.
    server : dict, optional
        Keys that replace those of the file's ``[server]`` table before the
        scenario is validated (its other keys stay), e.g. a capacity curve
        fitted by ``cvxalloc fit --throughput``: a load that only the new server
        carries is then checked against it, not against the file's.

    Returns
    -------
    Scenario

    Raises
    ------
    ScenarioError
        If the file is missing, not TOML/JSON, or any field is invalid; the
        message names the field.
    """
    with _collector_paused():  # the parsed tree is freed before the collector runs
        data = read_structured_file(path)
        if server is not None:
            data = {**data, "server": {**data.get("server", {}), **server}}
        if isinstance(data.get("tasks"), str):  # a task table, relative to the scenario
            cols = read_task_table(Path(path).parent / data["tasks"])
            scenario = Scenario(**scenario_fields(data, cols))
        else:
            scenario = Scenario.from_dict(data)
        del data
    return scenario


def example_scenario() -> Scenario:
    """The built-in example scenario (``cvxalloc/data/example.toml``)."""
    text = resources.files("cvxalloc").joinpath(EXAMPLE_PATH).read_text(encoding="utf-8")
    return Scenario.from_dict(tomllib.loads(text))


def load_allocation(path: str | Path, scenario: Scenario) -> np.ndarray:
    """Read an allocation file (task name -> tokens) into an array in task order.

    Accepts a flat table ``{name = tokens, ...}`` or the ``tokens`` object of a
    ``cvxalloc solve --json`` output (``.toml`` or ``.json``), or a table
    (``.csv`` or ``.parquet``) with columns ``name`` and ``tokens``, such as
    ``cvxalloc solve --output tokens.csv`` writes.
    """
    if Path(path).suffix.lower() in (".csv", ".parquet"):
        cols = read_allocation_table(path)
        names, values = cols["name"].tolist(), np.asarray(cols["tokens"], dtype=float)
        if names != list(scenario.names):
            values = _by_name(dict(zip(names, values.tolist())), scenario, table=True)
        return _checked_allocation(values, scenario)
    data = read_structured_file(path, what="allocation")
    if "tokens" in data and isinstance(data["tokens"], Mapping):
        data = data["tokens"]
    return _checked_allocation(_by_name(data, scenario), scenario)


def _by_name(data: Mapping[str, Any], scenario: Scenario, table: bool = False) -> np.ndarray:
    """The tokens of ``data`` (task name -> tokens) in the scenario's task order."""
    known = set(scenario.names)
    for key in data:
        if key not in known:
            raise unknown_key("allocation", key, known)
    out = np.empty(scenario.n)
    for i, name in enumerate(scenario.names):
        if name not in data:
            raise ScenarioError(f'allocation: missing tokens for task "{name}"')
        val = data[name]
        out[i] = val if table else number(f'allocation: task "{name}"', "tokens", val)
    return out


def _checked_allocation(values: np.ndarray, scenario: Scenario) -> np.ndarray:
    """The tokens inside their bounds (clipped within 1e-9) and stable, or a clear error."""
    lo, hi = scenario.min_tokens, scenario.max_tokens
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise ScenarioError(
            f'allocation: task "{scenario.names[i]}": tokens must be finite (got {values[i]})'
        )
    bad = np.flatnonzero((values < lo - 1e-9) | (values > hi + 1e-9))
    if bad.size:
        i = int(bad[0])
        raise ScenarioError(
            f'allocation: task "{scenario.names[i]}": tokens {values[i]:g} outside '
            f"[min_tokens, max_tokens] = [{lo[i]:g}, {hi[i]:g}]"
        )
    out = np.minimum(np.maximum(values, lo), hi)
    if scenario.utilization(out) >= 1:
        raise ScenarioError(
            f"allocation: unstable (utilization {scenario.utilization(out):.4g} >= 1); "
            "lower the budgets"
        )
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        f = float(v)
        if f == int(f) and abs(f) < 1e15:
            return str(int(f)) if isinstance(v, int) else f"{int(f)}"
        return repr(f)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):  # an inline table, e.g. [constraints] tail = { ... }
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def scenario_toml(scenario: Scenario, header: Sequence[str] = ()) -> str:
    """The scenario as TOML text in the file format ``cvxalloc solve`` reads.

    The structure is fixed and two levels deep (tables of numbers and lists,
    ``[[task]]`` with ``[task.service]`` and ``[task.accuracy]``), so a few
    lines write it; :func:`load_scenario` reads it back to the same scenario.

    Parameters
    ----------
    scenario : Scenario
    header : sequence of str
        Comment lines written first (without the ``#``).
    """
    d = scenario.to_dict()
    out = [f"# {line}".rstrip() for line in header]
    if header:
        out.append("")
    out.append("[queue]")
    out += [f"{k} = {_toml_value(v)}" for k, v in d["queue"].items()]
    for table, values in d.items():  # e.g. [constraints]
        if table not in ("queue", "task") and isinstance(values, Mapping):
            out += ["", f"[{table}]"]
            out += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    for task in d["task"]:
        out += ["", "[[task]]"]
        out += [f"{k} = {_toml_value(v)}" for k, v in task.items() if not isinstance(v, dict)]
        for sub in ("service", "accuracy"):
            out.append(f"[task.{sub}]")
            out += [f"{k} = {_toml_value(v)}" for k, v in task[sub].items()]
    return "\n".join(out) + "\n"


#: Extensions a scenario file may be written with, and the format each means.
OUTPUT_FORMATS = {".toml": "toml", ".json": "json"}


def output_format(path: str | Path, option: str = "--output") -> str:
    """``"toml"`` or ``"json"``, by the file name's extension; anything else refused.

    A scenario written where its name says another format would be read back
    as that format and refused (``x.json`` holding TOML is "not valid JSON").
    Check it before any work, so a refused name writes nothing.
    """
    ext = Path(path).suffix.lower()
    if ext not in OUTPUT_FORMATS:
        raise ScenarioError(
            f"{option} {str(path)!r}: a scenario is written as .toml or .json, by the file "
            f"name's extension (got {ext or 'none'}); name it *.toml or *.json"
        )
    return OUTPUT_FORMATS[ext]


def scenario_text(
    data: Scenario | Mapping[str, Any], path: str | Path, header: Sequence[str] = ()
) -> str:
    """A scenario (or a structure of the file format) as the text of ``path``'s format.

    TOML with ``header`` as comment lines, or JSON (indented; JSON holds no
    comments, so the header is left out). Both read back with :func:`load_scenario`.
    """
    if output_format(path) == "json":
        if isinstance(data, Scenario):
            return _scenario_json(data)
        return json_text(dict(data)) + "\n"
    if isinstance(data, Scenario):
        return scenario_toml(data, header)
    raise TypeError("scenario_text writes a structure other than a Scenario as JSON only")


def as_scenario(scenario: Any) -> Scenario:
    """A :class:`Scenario`: the one given, read from a path, or built from the file's structure.

    Where the Python API expects a scenario it takes a ``Scenario``, a path to a
    ``.toml`` or ``.json`` scenario file (``str`` or ``pathlib.Path``), or the
    file's structure as a dict; anything else is a :class:`ScenarioError` saying so.
    """
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, (str, os.PathLike)):
        return load_scenario(scenario)
    if isinstance(scenario, Mapping):
        return Scenario.from_dict(scenario)
    raise ScenarioError(
        f"scenario must be a Scenario, a path to a .toml or .json scenario file, or the "
        f"file's structure as a dict (got {type(scenario).__name__})"
    )


#: Above this many tasks a JSON scenario is written one compact task per line (json's
#: indented writer is pure Python: minutes at 10^6 tasks).
COMPACT_JSON_TASKS = 10_000


def write_scenario(
    scenario: Scenario,
    path: str | Path,
    *,
    tasks: str | Path | None = None,
    header: Sequence[str] = (),
    what: str = "output",
) -> list[Path]:
    """Write a scenario file, ``.toml`` or ``.json``, all or nothing per file.

    Parameters
    ----------
    scenario : Scenario
    path : str or Path
        The scenario file.
    tasks : str or Path, optional
        A task table (``.csv``, or ``.parquet`` with pyarrow), relative to the
        scenario file's directory as the ``tasks`` key reads it: the tasks go
        there, and the scenario file holds ``tasks = "..."`` beside its
        ``[queue]``, ``[server]``, ``[fleet]`` and ``[constraints]``. Without it
        the file holds ``[[task]]`` tables.
    header : sequence of str
        Comment lines at the top of a TOML file.

    Returns
    -------
    list of Path
        The files written (the table first).
    """
    path = Path(path)
    fmt = file_format(path)
    if fmt not in ("toml", "json"):
        raise ScenarioError(f"{what} {str(path)!r}: a scenario file is .toml or .json")
    if tasks is None:
        if fmt == "toml":
            return [write_text(path, scenario_toml(scenario, header), what)]
        return [write_text(path, _scenario_json(scenario), what)]
    tasks = Path(tasks)
    if file_format(tasks) not in ("csv", "parquet"):
        raise ScenarioError(f"--tasks {str(tasks)!r}: a task table is .csv or .parquet")
    data = {"tasks": tasks.as_posix(), **scenario_structure(scenario, tasks=False)}
    table = write_task_table(path.parent / tasks, scenario, what="--tasks")
    text = toml_text(data) if fmt == "toml" else json_text(data)
    if fmt == "toml" and header:
        text = "\n".join(f"# {line}".rstrip() for line in header) + "\n\n" + text
    return [table, write_text(path, text, what)]


def _scenario_json(scenario: Scenario) -> str:
    """A scenario as JSON: indented, or beyond :data:`COMPACT_JSON_TASKS` tasks one
    compact task per line."""
    data = scenario.to_dict()
    if scenario.n <= COMPACT_JSON_TASKS:
        return json_text(data)
    tasks = data.pop("task")
    head = json.dumps(data, allow_nan=False)[:-1]
    lines = ",\n".join(map(json.dumps, tasks))
    return f'{head}, "task": [\n{lines}\n]}}'
