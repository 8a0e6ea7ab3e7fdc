"""The scenario file format as nested data: validation and conversion both ways, no files.

Layer: scenario.

The structure is the contract of ``docs/scenario.md``::

    {"queue": {...}, "server": {...}, "fleet": {...}, "constraints": {...}, "task": [{...}, ...]}

:func:`scenario_fields` checks a parsed structure and turns it into the fields
of :class:`~cvxalloc.scenario.Scenario` (every error names the field and the
fix); :func:`scenario_structure` is the inverse. :meth:`Scenario.from_dict` and
:meth:`Scenario.to_dict` call them; :mod:`cvxalloc.io` reads and writes the files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from .accuracy import FAMILIES, AccuracyCurves
from .errors import ScenarioError, did_you_mean
from .protocols import ScenarioLike
from .queue.batching import BatchingServer, CapacityCurve, capacity_curve
from .scenario_constraints import constraints_from_file
from .tables import invalid_rows, table_fields

__all__ = [
    "scenario_fields",
    "scenario_structure",
    "without_defaults",
    "unknown_key",
    "number",
    "table",
    "server_model",
    "SERVER_KEYS",
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
#: The keys of a task that the bulk path takes (:func:`_bulk_tasks`; it leaves a task
#: with ``levels`` or ``min_accuracy`` to the loop): numbers with their defaults (None:
#: required), as the loop reads them, and the others (all required).
_BULK_NUMBERS = {"probability": None, "weight": 1.0, "min_tokens": 0.0, "max_tokens": None,
                 "step": 1.0}  # fmt: skip
_BULK_OTHERS = ("name", "service", "accuracy")
#: A ``[[task]]`` list at least this long is first read column by column
#: (:func:`_bulk_tasks`: at 10^6 tasks about 20x less time than the loop).
BULK_MIN = 1000
#: Tasks the bulk path reads together (a few MB of objects, which stay in cache
#: through its passes over them).
_CHUNK = 2048
#: Top-level tables a scenario may hold besides queue and task.
_EXTRA_TOP_LEVEL: set[str] = {"constraints", "server", "fleet"}
#: Per-task numbers, in the columns :func:`scenario_fields` collects.
_COLUMNS = ("probability", "weight", "min_tokens", "max_tokens", *_SERVICE_KEYS, "step")


def unknown_key(where: str, key: str, allowed: Mapping[str, Any] | set[str]) -> ScenarioError:
    """The error for an unknown key, with the closest allowed key or the list of them."""
    hint = did_you_mean(key, allowed, sorted(allowed))
    return ScenarioError(f'{where}: unknown key "{key}"{hint}')


def number(where: str, key: str, value: Any) -> float:
    """``value`` as a float, or an error naming ``where`` and ``key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{where}: {key} must be a number (got {value!r})")
    try:
        return float(value)
    except OverflowError:
        raise ScenarioError(
            f"{where}: {key} is beyond the range of a float (an integer of "
            f"{len(str(abs(value)))} digits); give a realistic value"
        ) from None


def table(where: str, value: Any) -> Mapping[str, Any]:
    """``value`` if it is a table (mapping), else an error naming ``where``."""
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{where} must be a table (got {type(value).__name__})")
    return value


#: Keys of [server]; ``None`` marks a key the batching model requires.
SERVER_KEYS = {
    "model": "single",
    "concurrency": None,
    "speedup": None,
    "max_running": None,
    "service_scv": 1.0,
}
SERVER_MODELS = ("single", "batching")
#: Keys that only a batching server takes.
_BATCHING_ONLY = ("concurrency", "speedup", "max_running", "service_scv")


def server_model(value: Any) -> BatchingServer | None:
    """The ``[server]`` table as ``None`` (one query at a time) or a :class:`BatchingServer`.

    Also takes a :class:`BatchingServer` or a bare :class:`CapacityCurve` (the
    curve of a server without an admission limit).
    """
    if value is None or isinstance(value, BatchingServer):
        return value
    if isinstance(value, CapacityCurve):
        return BatchingServer(value)
    if not isinstance(value, Mapping):
        raise ScenarioError(
            f"server must be a table with model, concurrency and speedup (got {value!r})"
        )
    for key in value:
        if key not in SERVER_KEYS:
            raise ScenarioError(
                f'server: unknown key "{key}"' + did_you_mean(str(key), list(SERVER_KEYS))
            )
    model = value.get("model", "single")
    if model not in SERVER_MODELS:
        raise ScenarioError(
            f'server: unknown model {model!r}; use "single" (one query at a time, FIFO) or '
            '"batching" (continuous batching, with concurrency and speedup)'
        )
    if model == "single":
        extra = [k for k in _BATCHING_ONLY if k in value]
        if extra:
            raise ScenarioError(
                f'server: {" and ".join(extra)} apply to model = "batching" only; '
                'set model = "batching" or remove them'
            )
        return None
    for key, what in (
        ("concurrency", "the numbers of queries decoding together, starting at 1"),
        ("speedup", "total decode rate at each concurrency over the rate of one query alone"),
    ):
        if key not in value:
            raise ScenarioError(
                f'server: model = "batching" needs {key} (a list: {what}); '
                "'cvxalloc fit' writes it from measured throughputs"
            )
    return BatchingServer(
        capacity_curve(value["concurrency"], value["speedup"]),
        value.get("max_running"),
        value.get("service_scv", 1.0),
    )


def scenario_fields(
    data: Mapping[str, Any], task_table: Mapping[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """Validate the nested file structure; the keyword arguments of ``Scenario(...)``.

    ``task_table``: the columns of the file that ``tasks = "..."`` names
    (:func:`cvxalloc.tables.read_task_table`; :func:`cvxalloc.io.load_scenario` reads it,
    relative to the scenario file), in place of ``[[task]]`` tables.
    """
    data = table("scenario", data)
    if "tasks" in data:
        return _table_scenario(data, task_table)
    allowed_top = {"queue", "task", *_EXTRA_TOP_LEVEL}
    for key in data:
        if key not in allowed_top:
            raise unknown_key("scenario", key, allowed_top)
    queue = _queue(data)
    server = data.get("server")
    if server is not None:
        server = table("server", server)
    fleet = data.get("fleet")  # checked by Scenario (cvxalloc.queue.fleet.fleet_from_table)
    if fleet is not None:
        fleet = table("fleet", fleet)
    tasks = data.get("task")
    if tasks is None or (isinstance(tasks, list) and len(tasks) == 0):
        raise ScenarioError("scenario has no tasks: add at least one [[task]] table")
    if not isinstance(tasks, list):
        raise ScenarioError("task must be an array of tables ([[task]] in TOML)")

    fields = _bulk_tasks(tasks) if len(tasks) >= BULK_MIN else None
    bulk = fields is not None
    if not bulk:
        fields = _task_loop(tasks)
    return dict(
        **fields,
        **queue,
        server=server,
        fleet=fleet,
        # the bulk path takes no task with min_accuracy: the constraints skip the tasks
        constraints=constraints_from_file(data, () if bulk else tasks),
    )


def _task_loop(tasks: list[Any]) -> dict[str, Any]:
    """The per-task fields of ``Scenario(...)``, task by task: each error names its task."""
    cols: dict[str, list[float]] = {k: [] for k in _COLUMNS}
    names: list[str] = []
    levels: list[np.ndarray | None] = []
    fam_rows: dict[str, tuple[list[int], dict[str, list[float]]]] = {}
    for i, raw in enumerate(tasks):
        name, where, task = _task(i, raw)
        names.append(name)
        for key in ("probability", "weight", "min_tokens", "max_tokens"):
            cols[key].append(number(where, key, task.get(key, _TASK_KEYS[key])))
        levels.append(_levels(where, task))
        cols["step"].append(number(where, "step", task.get("step", 1.0)))
        for key, value in _service(where, task["service"]).items():
            cols[key].append(value)
        model, values = _accuracy(where, task["accuracy"])
        idx, params = fam_rows.setdefault(model, ([], {k: [] for k in FAMILIES[model].params}))
        idx.append(i)
        for key, value in values.items():
            params[key].append(value)

    blocks = []
    for model, (idx, params) in fam_rows.items():
        fam = FAMILIES[model]
        blocks.append(
            (fam(**{fam.params[k]: np.array(v) for k, v in params.items()}), np.array(idx))
        )
    return dict(
        names=names,
        **{k: np.array(v) for k, v in cols.items()},
        accuracy=AccuracyCurves(blocks, len(names)),
        levels=levels,
    )


class _Unusual(Exception):
    """Something the bulk path does not take: the task loop reads the list instead."""


def _bulk_tasks(tasks: list[Any]) -> dict[str, Any] | None:
    """The fields of :func:`_task_loop`, gathered column by column (a pass of C per
    key, checks over whole columns); None if any task is unusual.

    It takes plain dicts of int and float values holding only the keys of
    :data:`_BULK_NUMBERS` and :data:`_BULK_OTHERS` (no ``levels``, no
    ``min_accuracy``) whose accuracy parameters pass their family's check, and builds
    the same arrays and blocks as the loop, bit for bit. Anything else (a missing or
    unknown key, a value of another type, an invalid parameter) returns None, and the
    loop, which names the task and the fix, reads the list. The tasks are read
    :data:`_CHUNK` at a time, so that each pass finds their objects in cache.
    """
    n = len(tasks)
    try:
        parts = [_bulk_part(tasks[lo : lo + _CHUNK], lo) for lo in range(0, n, _CHUNK)]
    except _Unusual:
        return None
    families: dict[str, tuple[list[np.ndarray], dict[str, list[np.ndarray]]]] = {}
    for _, _, fams in parts:  # blocks in the order of each model's first task
        for model, (idx, values) in fams.items():
            indices, params = families.setdefault(model, ([], {k: [] for k in values}))
            indices.append(idx)
            for key, value in values.items():
                params[key].append(value)
    blocks = []
    for model, (indices, params) in families.items():
        fam = FAMILIES[model]
        args = {fam.params[k]: np.concatenate(v) for k, v in params.items()}
        blocks.append((fam(**args), np.concatenate(indices)))
    return dict(
        names=list(chain.from_iterable(names for names, _, _ in parts)),
        **{k: np.concatenate([cols[k] for _, cols, _ in parts]) for k in _COLUMNS},
        accuracy=AccuracyCurves(blocks, n),
        levels=[None] * n,
    )


def _bulk_part(tasks: list[Any], start: int) -> tuple[list[str], dict[str, np.ndarray], dict]:
    """Names, number columns and accuracy parameters per model of the tasks from
    ``start`` on (:func:`_bulk_tasks`); :class:`_Unusual` for anything unusual."""
    cols, (names, services, accs) = _gather(tasks, _BULK_NUMBERS, _BULK_OTHERS)
    if set(map(type, names)) != {str} or "" in names:
        raise _Unusual
    cols.update(_gather(services, _SERVICE_KEYS, ())[0])
    return names, cols, _bulk_accuracy(accs, start)


def _gather(
    items: list[Any],
    numbers: Mapping[str, float | None],
    others: tuple[str, ...],
    known: tuple[str, ...] = (),
) -> tuple[dict[str, np.ndarray], list[list[Any]]]:
    """Dicts holding keys of ``numbers``, ``others`` and ``known`` only, every ``others``
    key and every number whose default is None: ``numbers`` as float arrays (a missing
    one at its default), exactly as :func:`number` reads each, and ``others`` as lists.
    ``known``: keys the caller has found in every item.

    :class:`_Unusual` for anything else: an item that is not a dict, a key missing or
    unknown, a number that is not an int or a float (bool included) or beyond a float.
    """
    if set(map(type, items)) != {dict}:
        raise _Unusual
    allowed = {*numbers, *others, *known}
    required = (*others, *known, *(k for k, d in numbers.items() if d is None))
    first = tuple(items[0])
    if set(map(len, items)) == {len(first)}:  # the common case: every item has the
        _check_keys([first], allowed, required)  # keys of the first (proven below)
        present = [k for k in numbers if k in first]
        try:
            # every key of the first is in each item: known, or looked up here
            rest = [list(map(itemgetter(k), items)) for k in others]
            mat = _numbers(list(map(itemgetter(*present), items)), len(present))
        except KeyError:
            pass
        else:
            cols = dict(zip(present, mat, strict=True))
            n = len(items)
            return {k: cols[k] if k in cols else np.full(n, d) for k, d in numbers.items()}, rest
    keys = list(set(map(tuple, items)))
    _check_keys(keys, allowed, required)
    cols = {k: _column(items, k, d, keys) for k, d in numbers.items()}
    return cols, [list(map(itemgetter(k), items)) for k in others]


def _check_keys(keys: list[tuple], allowed: set[str], required: tuple[str, ...]) -> None:
    """Each key sequence holds only ``allowed`` keys and every ``required`` one."""
    for ks in keys:
        if not (set(ks) <= allowed and all(k in ks for k in required)):
            raise _Unusual


def _numbers(rows: list[Any], m: int) -> np.ndarray:
    """Rows of ``m`` numbers (bare values if ``m == 1``) as an (m, n) float array."""
    types = set(map(type, chain.from_iterable(rows) if m > 1 else rows))
    if not types <= {float, int}:
        raise _Unusual
    values = chain.from_iterable(rows) if m > 1 else rows
    if int in types:
        try:
            values = list(map(float, values))
        except OverflowError:
            raise _Unusual from None
    mat = np.fromiter(values, dtype=float, count=len(rows) * m)
    return mat.reshape(len(rows), m).T.copy()


def _column(
    items: list[dict[str, Any]], key: str, default: float | None, keys: list[tuple]
) -> np.ndarray:
    """Key ``key`` of every item (``default`` where absent) as floats, as :func:`number`
    reads each; :class:`_Unusual` for a value :func:`_numbers` does not take."""
    present = [key in ks for ks in keys]
    if not any(present):
        return np.full(len(items), default, dtype=float)
    if all(present):
        col = list(map(itemgetter(key), items))
    else:
        col = [item.get(key, default) for item in items]
    return _numbers(col, 1)[0]


def _bulk_accuracy(accs: list[Any], start: int) -> dict[str, tuple[np.ndarray, dict]]:
    """Per model, in the order of its first task: the indices (from ``start``) and the
    parameter columns of the tasks of :func:`_bulk_part`, every one checked as by
    :meth:`~cvxalloc.accuracy.AccuracyFamily.check`; :class:`_Unusual` for anything else."""
    n = len(accs)
    if set(map(type, accs)) != {dict}:
        raise _Unusual
    models = [acc.get("model") for acc in accs]
    try:
        kinds = set(models)
    except TypeError:  # an unhashable model
        raise _Unusual from None
    if not all(type(m) is str and m in FAMILIES for m in kinds):
        raise _Unusual
    order = sorted(kinds, key=models.index)
    codes = np.fromiter(map({m: j for j, m in enumerate(order)}.__getitem__, models), np.intp, n)
    out = {}
    for j, model in enumerate(order):
        fam = FAMILIES[model]
        idx = np.flatnonzero(codes == j)
        members = accs if len(order) == 1 else list(map(accs.__getitem__, idx.tolist()))
        numbers = {k: fam.defaults.get(k) for k in fam.params}
        values, _ = _gather(members, numbers, (), known=("model",))
        if invalid_rows(values).any():
            raise _Unusual
        out[model] = (idx + start, values)
    return out


def _table_scenario(data: Mapping[str, Any], cols: Mapping[str, np.ndarray] | None) -> dict:
    """:func:`scenario_fields` of a scenario whose tasks are a table (``tasks = "file"``)."""
    allowed_top = {"queue", "tasks", *_EXTRA_TOP_LEVEL}
    for key in data:
        if key not in allowed_top:
            hint = '; give either tasks = "file" or [[task]] tables' if key == "task" else ""
            if hint:
                raise ScenarioError(f"scenario: both tasks and task{hint}")
            raise unknown_key("scenario", key, allowed_top)
    where = data["tasks"]
    if not isinstance(where, str) or not where:
        raise ScenarioError(
            f'scenario: tasks must be the path of a task table, e.g. tasks = "tasks.csv" '
            f"(got {where!r})"
        )
    if cols is None:
        raise ScenarioError(
            f"scenario: tasks = {where!r} names a file relative to the scenario file; "
            "load the scenario with cvxalloc.load_scenario(path)"
        )
    server, fleet = data.get("server"), data.get("fleet")
    return dict(
        **table_fields(dict(cols), f"task table {where!r}"),
        **_queue(data),
        server=None if server is None else table("server", server),
        fleet=None if fleet is None else table("fleet", fleet),
        constraints=constraints_from_file(data, ()),
    )


def _queue(data: Mapping[str, Any]) -> dict[str, float]:
    """The [queue] table as ``arrival_rate``, ``latency_weight`` and ``arrival_scv``."""
    if "queue" not in data:
        raise ScenarioError("scenario: missing [queue] table (arrival_rate, latency_weight)")
    queue = table("queue", data["queue"])
    for key in queue:
        if key not in _QUEUE_KEYS:
            raise unknown_key("queue", key, _QUEUE_KEYS)
    for key, default in _QUEUE_KEYS.items():
        if default is None and key not in queue:
            raise ScenarioError(f"queue: missing {key}")
    return {
        "arrival_rate": number("queue", "arrival_rate", queue["arrival_rate"]),
        "latency_weight": number("queue", "latency_weight", queue["latency_weight"]),
        "arrival_scv": number("queue", "arrival_scv", queue.get("arrival_scv", 1.0)),
    }


def _task(i: int, raw: Any) -> tuple[str, str, Mapping[str, Any]]:
    """Task ``i``'s name, its label for messages and its table (keys checked)."""
    task = table(f"task {i + 1}", raw)
    name = task.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"task {i + 1}: name must be a non-empty string (got {name!r})")
    where = f'task "{name}"'
    for key in task:
        if key not in _TASK_KEYS:
            raise unknown_key(where, key, _TASK_KEYS)
    for key in ("probability", "max_tokens", "service", "accuracy"):
        if key not in task:
            raise ScenarioError(f"{where}: missing {key}")
    return name, where, task


def _levels(where: str, task: Mapping[str, Any]) -> np.ndarray | None:
    """The task's allowed budgets (``levels``), or None."""
    if "levels" in task and "step" in task:
        raise ScenarioError(f"{where}: give either levels or step, not both")
    if "levels" not in task:
        return None
    lv = task["levels"]
    if not isinstance(lv, list):
        raise ScenarioError(f"{where}: levels must be a list of token counts")
    return np.array([number(where, "levels", x) for x in lv], dtype=float)


def _service(where: str, raw: Any) -> dict[str, float]:
    """The task's [task.service] table with defaults filled in."""
    service = table(f"{where}: service", raw)
    for key in service:
        if key not in _SERVICE_KEYS:
            raise unknown_key(f"{where}: service", key, _SERVICE_KEYS)
    if "per_token" not in service:
        raise ScenarioError(f"{where}: missing service.per_token (seconds per token)")
    return {
        key: number(where, f"service.{key}", service.get(key, default))
        for key, default in _SERVICE_KEYS.items()
    }


def _accuracy(where: str, raw: Any) -> tuple[str, dict[str, float]]:
    """The task's accuracy family and its parameters (defaults filled in, checked)."""
    acc = table(f"{where}: accuracy", raw)
    model = acc.get("model")
    if not isinstance(model, str) or model not in FAMILIES:
        raise ScenarioError(
            f"{where}: unknown accuracy.model {model!r}; use one of "
            + ", ".join(f'"{m}"' for m in FAMILIES)
        )
    fam = FAMILIES[model]
    allowed = {"model", *fam.params}
    for key in acc:
        if key not in allowed:
            raise unknown_key(f"{where}: accuracy ({model})", key, allowed)
    values: dict[str, float] = {}
    for key in fam.params:
        if key in acc:
            values[key] = number(where, f"accuracy.{key}", acc[key])
        elif key in fam.defaults:
            values[key] = fam.defaults[key]
        else:
            raise ScenarioError(f"{where}: missing accuracy.{key} for model {model!r}")
    fam.check(where, values)
    return model, values


def scenario_structure(scenario: ScenarioLike, tasks: bool = True) -> dict[str, Any]:
    """The scenario in the file structure (:func:`scenario_fields` reads it back);
    without ``tasks``, all but the ``task`` list (what a file whose tasks are a table
    holds beside ``tasks = "..."``)."""
    sc = scenario
    out: dict[str, Any] = {
        "queue": {
            "arrival_rate": sc.arrival_rate,
            "latency_weight": sc.latency_weight,
            "arrival_scv": sc.arrival_scv,
        },
        "task": _task_dicts(sc) if tasks else [],
    }
    if sc.server is not None:
        out["server"] = sc.server.to_dict()
    if getattr(sc, "fleet", None) is not None:
        out["fleet"] = sc.fleet.to_dict()
    out = out if sc.constraints is None else sc.constraints.write_dict(out)
    if not tasks:
        del out["task"]
    return out


def _accuracy_dicts(curves: AccuracyCurves, n: int) -> list[dict[str, Any]]:
    """The ``[task.accuracy]`` table of every type, block by block (linear in n)."""
    out: list[dict[str, Any]] = [{}] * n
    positions = np.arange(n)
    for fam, idx in curves.blocks:
        members = positions[idx].tolist()
        values = {
            key: np.broadcast_to(getattr(fam, attr), (len(members),)).tolist()
            for key, attr in fam.params.items()
        }
        for j, i in enumerate(members):
            out[i] = {"model": fam.name, **{key: v[j] for key, v in values.items()}}
    return out


def _task_dicts(sc: ScenarioLike) -> list[dict[str, Any]]:
    """The ``[[task]]`` tables of the scenario."""
    accuracy = _accuracy_dicts(sc.accuracy, sc.n)
    keys = ("probability", "weight", "min_tokens", "max_tokens")
    per = {k: np.asarray(getattr(sc, k), dtype=float).tolist() for k in keys}
    service = {k: np.asarray(getattr(sc, k), dtype=float).tolist() for k in _SERVICE_KEYS}
    step = np.asarray(sc.step, dtype=float).tolist()
    tasks = []
    for i, name in enumerate(sc.names):
        task: dict[str, Any] = {"name": name, **{k: per[k][i] for k in keys}}
        if sc.levels[i] is not None:
            task["levels"] = [float(x) for x in sc.levels[i]]
        elif step[i] != 1:
            task["step"] = step[i]
        task["service"] = {k: service[k][i] for k in _SERVICE_KEYS}
        task["accuracy"] = accuracy[i]
        tasks.append(task)
    return tasks


def without_defaults(data: Mapping[str, Any]) -> dict[str, Any]:
    """A scenario structure without the keys that hold their default value.

    :func:`scenario_fields` reads both the same way (a default is the value of
    a missing key), so this is the shortest structure of the same scenario:
    what ``repr(scenario)`` writes. Only exact defaults go (``-0.0`` stays).

    >>> without_defaults({"queue": {"arrival_rate": 0.5, "latency_weight": 0.0,
    ...     "arrival_scv": 1.0}, "task": [{"name": "a", "probability": 1.0, "weight": 1.0,
    ...     "min_tokens": -0.0, "max_tokens": 10.0, "service": {"base": 0.0, "per_token": 0.1},
    ...     "accuracy": {"model": "power", "floor": 0.1, "ceiling": 0.9, "scale": 5.0,
    ...     "exponent": 1.0}}]})  # doctest: +NORMALIZE_WHITESPACE
    {'queue': {'arrival_rate': 0.5, 'latency_weight': 0.0},
     'task': [{'name': 'a', 'probability': 1.0, 'min_tokens': -0.0, 'max_tokens': 10.0,
               'service': {'per_token': 0.1},
               'accuracy': {'model': 'power', 'floor': 0.1, 'ceiling': 0.9, 'scale': 5.0}}]}
    """
    out = dict(data)
    out["queue"] = _drop(data["queue"], _QUEUE_KEYS)
    tasks = []
    for raw in data["task"]:
        task = _drop(raw, _TASK_KEYS)
        if "step" in task and _is(task["step"], 1.0):
            del task["step"]
        task["service"] = _drop(raw["service"], _SERVICE_KEYS)
        acc = raw["accuracy"]
        task["accuracy"] = _drop(acc, FAMILIES[acc["model"]].defaults)
        tasks.append(task)
    out["task"] = tasks
    return out


def _drop(table: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``table`` without the keys whose value is exactly their (non-None) default."""
    return {k: v for k, v in table.items() if defaults.get(k) is None or not _is(v, defaults[k])}


def _is(value: Any, default: float) -> bool:
    """Whether ``value`` is the float ``default`` bit for bit (so ``-0.0`` is not ``0.0``)."""
    return (
        isinstance(value, float)
        and value == default
        and math.copysign(1.0, value) == math.copysign(1.0, default)
    )
