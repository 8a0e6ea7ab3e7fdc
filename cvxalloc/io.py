"""Reading scenarios and allocations from TOML or JSON files.

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
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .accuracy import FAMILIES, AccuracyCurves
from .errors import ScenarioError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "load_scenario",
    "scenario_from_dict",
    "load_allocation",
    "example_scenario",
    "read_structured_file",
    "EXAMPLE_PATH",
]

#: Keys of [queue]; ``None`` marks a required key, anything else is its default.
_QUEUE_KEYS = {"arrival_rate": None, "latency_weight": None, "arrival_scv": 1.0}
_TASK_KEYS = {
    "name": None,
    "probability": None,
    "weight": 1.0,
    "min_tokens": 0.0,
    "max_tokens": None,
    "levels": None,
    "step": None,
    "service": None,
    "accuracy": None,
    "min_accuracy": None,
}
_SERVICE_KEYS = {"base": 0.0, "per_token": None, "scv": 0.0, "variance": 0.0}
#: Top-level tables a scenario may hold besides queue and task.
_EXTRA_TOP_LEVEL: set[str] = {"constraints", "server"}

EXAMPLE_PATH = "data/example.toml"


def _unknown(where: str, key: str, allowed: Mapping[str, Any] | set[str]) -> ScenarioError:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    hint = f'; did you mean "{close[0]}"?' if close else f"; allowed: {', '.join(sorted(allowed))}"
    return ScenarioError(f'{where}: unknown key "{key}"{hint}')


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{where}: {key} must be a number (got {value!r})")
    try:
        return float(value)
    except OverflowError:
        raise ScenarioError(
            f"{where}: {key} is beyond the range of a float (an integer of "
            f"{len(str(abs(value)))} digits); give a realistic value"
        ) from None


def _table(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{where} must be a table (got {type(value).__name__})")
    return value


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
        data = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if suffix == ".toml" else "JSON"
        raise ScenarioError(f"{what} file {str(path)!r} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{what} file {str(path)!r} must hold a table/object at top level")
    return data


def load_scenario(path: str | Path):
    """Load and validate a scenario from a ``.toml`` or ``.json`` file.

    Parameters
    ----------
    path : str or Path
        The scenario file.

    Returns
    -------
    Scenario

    Raises
    ------
    ScenarioError
        If the file is missing, not TOML/JSON, or any field is invalid; the
        message names the field.
    """
    return scenario_from_dict(read_structured_file(path))


def example_scenario():
    """The built-in example scenario (``cvxalloc/data/example.toml``)."""
    text = resources.files("cvxalloc").joinpath(EXAMPLE_PATH).read_text(encoding="utf-8")
    return scenario_from_dict(tomllib.loads(text))


def scenario_from_dict(data: Mapping[str, Any]):
    """Validate the nested file structure and build a :class:`Scenario`."""
    from .constraints import constraints_from_file
    from .scenario import Scenario

    data = _table("scenario", data)
    allowed_top = {"queue", "task", *_EXTRA_TOP_LEVEL}
    for key in data:
        if key not in allowed_top:
            raise _unknown("scenario", key, allowed_top)
    if "queue" not in data:
        raise ScenarioError("scenario: missing [queue] table (arrival_rate, latency_weight)")
    queue = _table("queue", data["queue"])
    for key in queue:
        if key not in _QUEUE_KEYS:
            raise _unknown("queue", key, _QUEUE_KEYS)
    for key, default in _QUEUE_KEYS.items():
        if default is None and key not in queue:
            raise ScenarioError(f"queue: missing {key}")
    lam = _number("queue", "arrival_rate", queue["arrival_rate"])
    gamma = _number("queue", "latency_weight", queue["latency_weight"])
    scv_a = _number("queue", "arrival_scv", queue.get("arrival_scv", 1.0))
    server = data.get("server")
    if server is not None:
        server = _table("server", server)

    tasks = data.get("task")
    if tasks is None or (isinstance(tasks, list) and len(tasks) == 0):
        raise ScenarioError("scenario has no tasks: add at least one [[task]] table")
    if not isinstance(tasks, list):
        raise ScenarioError("task must be an array of tables ([[task]] in TOML)")

    cols: dict[str, list[float]] = {
        k: []
        for k in (
            "probability",
            "weight",
            "min_tokens",
            "max_tokens",
            "base",
            "per_token",
            "scv",
            "variance",
            "step",
        )
    }
    names: list[str] = []
    levels: list[np.ndarray | None] = []
    fam_rows: dict[str, tuple[list[int], dict[str, list[float]]]] = {}
    for i, raw in enumerate(tasks):
        task = _table(f"task {i + 1}", raw)
        name = task.get("name")
        if not isinstance(name, str) or not name:
            raise ScenarioError(f"task {i + 1}: name must be a non-empty string (got {name!r})")
        where = f'task "{name}"'
        for key in task:
            if key not in _TASK_KEYS:
                raise _unknown(where, key, _TASK_KEYS)
        for key in ("probability", "max_tokens", "service", "accuracy"):
            if key not in task:
                raise ScenarioError(f"{where}: missing {key}")
        names.append(name)
        for key in ("probability", "weight", "min_tokens", "max_tokens"):
            val = task.get(key, _TASK_KEYS[key])
            cols[key].append(_number(where, key, val))
        if "levels" in task and "step" in task:
            raise ScenarioError(f"{where}: give either levels or step, not both")
        if "levels" in task:
            lv = task["levels"]
            if not isinstance(lv, list):
                raise ScenarioError(f"{where}: levels must be a list of token counts")
            levels.append(np.array([_number(where, "levels", x) for x in lv], dtype=float))
        else:
            levels.append(None)
        cols["step"].append(_number(where, "step", task.get("step", 1.0)))

        service = _table(f"{where}: service", task["service"])
        for key in service:
            if key not in _SERVICE_KEYS:
                raise _unknown(f"{where}: service", key, _SERVICE_KEYS)
        if "per_token" not in service:
            raise ScenarioError(f"{where}: missing service.per_token (seconds per token)")
        for key, default in _SERVICE_KEYS.items():
            cols[key].append(_number(where, f"service.{key}", service.get(key, default)))

        acc = _table(f"{where}: accuracy", task["accuracy"])
        model = acc.get("model")
        if model not in FAMILIES:
            raise ScenarioError(
                f"{where}: unknown accuracy.model {model!r}; use one of "
                + ", ".join(f'"{m}"' for m in FAMILIES)
            )
        fam = FAMILIES[model]
        allowed = {"model", *fam.params}
        for key in acc:
            if key not in allowed:
                raise _unknown(f"{where}: accuracy ({model})", key, allowed)
        values: dict[str, float] = {}
        for key in fam.params:
            if key in acc:
                values[key] = _number(where, f"accuracy.{key}", acc[key])
            elif key in fam.defaults:
                values[key] = fam.defaults[key]
            else:
                raise ScenarioError(f"{where}: missing accuracy.{key} for model {model!r}")
        fam.check(where, values)
        idx, params = fam_rows.setdefault(model, ([], {k: [] for k in fam.params}))
        idx.append(i)
        for key in fam.params:
            params[key].append(values[key])

    blocks = []
    for model, (idx, params) in fam_rows.items():
        fam = FAMILIES[model]
        blocks.append(
            (fam(**{fam.params[k]: np.array(v) for k, v in params.items()}), np.array(idx))
        )
    curves = AccuracyCurves(blocks, len(names))
    return Scenario(
        names=names,
        probability=np.array(cols["probability"]),
        weight=np.array(cols["weight"]),
        min_tokens=np.array(cols["min_tokens"]),
        max_tokens=np.array(cols["max_tokens"]),
        base=np.array(cols["base"]),
        per_token=np.array(cols["per_token"]),
        scv=np.array(cols["scv"]),
        variance=np.array(cols["variance"]),
        accuracy=curves,
        arrival_rate=lam,
        latency_weight=gamma,
        arrival_scv=scv_a,
        server=server,
        levels=levels,
        step=np.array(cols["step"]),
        constraints=constraints_from_file(data, tasks),
    )


def load_allocation(path: str | Path, scenario) -> np.ndarray:
    """Read an allocation file (task name -> tokens) into an array in task order.

    Accepts a flat table ``{name = tokens, ...}`` or the ``tokens`` object of a
    ``cvxalloc solve --json`` output.
    """
    data = read_structured_file(path, what="allocation")
    if "tokens" in data and isinstance(data["tokens"], Mapping):
        data = data["tokens"]
    known = set(scenario.names)
    for key in data:
        if key not in known:
            raise _unknown("allocation", key, known)
    out = np.empty(scenario.n)
    for i, name in enumerate(scenario.names):
        if name not in data:
            raise ScenarioError(f'allocation: missing tokens for task "{name}"')
        val = _number(f'allocation: task "{name}"', "tokens", data[name])
        if not np.isfinite(val):
            raise ScenarioError(f'allocation: task "{name}": tokens must be finite (got {val})')
        if not scenario.min_tokens[i] - 1e-9 <= val <= scenario.max_tokens[i] + 1e-9:
            raise ScenarioError(
                f'allocation: task "{name}": tokens {val:g} outside '
                f"[min_tokens, max_tokens] = [{scenario.min_tokens[i]:g}, "
                f"{scenario.max_tokens[i]:g}]"
            )
        out[i] = min(max(val, scenario.min_tokens[i]), scenario.max_tokens[i])
    if scenario.utilization(out) >= 1:
        raise ScenarioError(
            f"allocation: unstable (utilization {scenario.utilization(out):.4g} >= 1); "
            "lower the budgets"
        )
    return out
