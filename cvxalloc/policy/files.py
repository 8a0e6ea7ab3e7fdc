"""Policy files: reading and validating what :meth:`Policy.save` writes.

Layer: workflows (:mod:`cvxalloc.policy`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScenarioError
from ..scenario import Scenario
from .lookup import _SUB_KEYS, FORMAT, VERSION, Policy, PolicyError

__all__ = ["load_policy", "policy_from_dict"]


# --------------------------------------------------------------------------
# reading
def _fail(path: str, message: str) -> PolicyError:
    return PolicyError(f"policy file {path!r}: {message}")


def _array(path: str, key: str, value: Any, length: int | None = None) -> np.ndarray:
    if not isinstance(value, list) or any(
        isinstance(x, bool) or not isinstance(x, (int, float)) for x in value
    ):
        raise _fail(path, f"{key} must be a list of numbers")
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise _fail(path, f"{key} holds a non-finite number (NaN or infinity)")
    if length is not None and arr.size != length:
        raise _fail(path, f"{key} must have one entry per grid rate ({length}), got {arr.size}")
    return arr


def policy_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Policy:
    """A :class:`Policy` from the content of a policy file, validated."""
    if not isinstance(data, Mapping):
        raise _fail(source, "must hold a JSON object at top level")
    if data.get("format") != FORMAT:
        raise _fail(source, f'format must be "{FORMAT}" (got {data.get("format")!r})')
    if data.get("version") != VERSION:
        raise _fail(
            source,
            f"version {data.get('version')!r} is not supported (this cvxalloc reads version "
            f"{VERSION}); rebuild it with 'cvxalloc policy SCENARIO --output FILE'",
        )
    for key in ("tasks", "rates", "budgets", "gaps", "scenario"):
        if key not in data:
            raise _fail(source, f'missing key "{key}"')
    try:
        sc = Scenario.from_dict(data["scenario"])
    except ScenarioError as exc:
        raise _fail(source, f"scenario: {exc}") from None
    names = data["tasks"]
    if names != list(sc.names):
        raise _fail(source, "tasks must list the scenario's task names in its order")
    rates = _array(source, "rates", data["rates"])
    if rates.size < 2:
        raise _fail(source, "rates must hold at least two grid rates")
    if np.any(np.diff(rates) <= 0) or rates[0] < 0:
        raise _fail(source, "rates must be >= 0 and strictly increasing")
    gaps = _array(source, "gaps", data["gaps"], rates.size)
    if np.any(gaps < 0):
        raise _fail(source, "gaps must be >= 0")

    def table(key: str) -> np.ndarray:
        tab = data[key]
        if not isinstance(tab, Mapping):
            raise _fail(source, f"{key} must be an object: task name -> list of budgets")
        missing = [n for n in names if n not in tab]
        if missing:
            raise _fail(source, f'{key}: no budgets for task "{missing[0]}"')
        cols = [_array(source, f"{key}[{n!r}]", tab[n], rates.size) for n in names]
        out = np.column_stack(cols)
        lo, hi = sc.min_tokens, sc.max_tokens
        bad = np.flatnonzero(np.any((out < lo - 1e-9) | (out > hi + 1e-9), axis=0))
        if bad.size:
            raise _fail(
                source, f'{key}: budgets of task "{names[bad[0]]}" leave [min_tokens, max_tokens]'
            )
        return out

    integer = bool(data.get("integer", False))
    budgets = table("budgets")
    if integer:
        if "continuous_budgets" not in data:
            raise _fail(source, 'an integer policy needs "continuous_budgets"')
        cont = table("continuous_budgets")
    else:
        cont = budgets
    for tab in (budgets, cont):
        m1 = sc.service_time(tab) @ sc.probability
        bad = np.flatnonzero(rates * m1 >= sc.capacity)
        if bad.size:
            raise _fail(source, f"budgets at rate {rates[bad[0]]:g} are unstable at that rate")
    info = data.get("info", {})
    subs = _scv_entries(data, source, sc, integer)
    return Policy(
        scenario=sc,
        rates=rates,
        continuous=cont,
        gaps=gaps,
        integer_budgets=budgets if integer else None,
        info=info if isinstance(info, Mapping) else {},
        by_arrival_scv=subs,
    )


def _scv_entries(data: Mapping[str, Any], source: str, sc: Scenario, integer: bool) -> list[Policy]:
    """The policies of ``by_arrival_scv`` (empty without it), validated like the top level."""
    if "by_arrival_scv" not in data:
        return []
    entries = data["by_arrival_scv"]
    if integer or not isinstance(entries, list) or len(entries) < 2:
        raise _fail(
            source,
            "by_arrival_scv must be a list of at least two policies (continuous budgets only)",
        )
    subs = []
    for i, entry in enumerate(entries):
        where = f"{source} by_arrival_scv[{i}]"
        if not isinstance(entry, Mapping) or "arrival_scv" not in entry:
            raise _fail(where, 'each entry needs "arrival_scv", "rates", "budgets" and "gaps"')
        c = entry["arrival_scv"]
        if (
            isinstance(c, bool)
            or not isinstance(c, (int, float))
            or not (math.isfinite(c) and c >= 0)
        ):
            raise _fail(where, f"arrival_scv must be a number >= 0 (got {c!r})")
        scenario = sc.to_dict()
        scenario["queue"]["arrival_scv"] = float(c)
        sub = {
            "format": FORMAT,
            "version": VERSION,
            "tasks": data["tasks"],
            "scenario": scenario,
            **{k: entry[k] for k in _SUB_KEYS if k in entry},
        }
        subs.append(policy_from_dict(sub, where))
    scv = [p.scenario.arrival_scv for p in subs]
    if any(b <= a for a, b in zip(scv[:-1], scv[1:])):
        raise _fail(source, "by_arrival_scv must be in strictly increasing arrival_scv")
    if sc.arrival_scv not in scv:
        raise _fail(source, "by_arrival_scv must include the scenario's own arrival_scv")
    return subs


def load_policy(path: str | Path) -> Policy:
    """Read a policy file written by ``cvxalloc policy SCENARIO --output FILE``.

    Raises
    ------
    PolicyError
        The file is missing, not JSON, of another format or version, lacks a
        key, has a non-increasing grid, non-finite numbers, budgets outside the
        box or unstable at their rate.

    Examples
    --------
    >>> import cvxalloc, tempfile, os
    >>> from cvxalloc.policy import build_policy
    >>> path = os.path.join(tempfile.mkdtemp(), "policy.json")
    >>> _ = build_policy(cvxalloc.example_scenario()).save(path)
    >>> pol = cvxalloc.load_policy(path)
    >>> pol.budgets(0.05).shape
    (5,)
    """
    p = Path(path)
    if not p.is_file():
        raise PolicyError(f"policy file {str(p)!r} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"policy file {str(p)!r} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise PolicyError(f"policy file {str(p)!r} is not valid JSON: {exc}") from None
    return policy_from_dict(data, str(p))
