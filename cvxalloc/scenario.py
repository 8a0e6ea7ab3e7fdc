"""The scenario: queue, task types, service model and accuracy curves.

Layer: scenario.

A :class:`Scenario` holds one numpy array per per-type quantity (so N can be
millions) and validates itself on construction: every error names the field
and the fix, e.g. ``task "math": probability must be > 0 (got -0.1)``.

Build one from a file with :func:`cvxalloc.load_scenario`, from the nested
dict of the file format with :meth:`Scenario.from_dict`, or from arrays with
:meth:`Scenario.from_arrays`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._reduce import dot
from ._source import source
from .accuracy import AccuracyCurves, AccuracyFamily
from .errors import ScenarioError, UnstableError
from .queue import queue_model
from .queue.batching import MAX_SERVICE_SCV
from .queue.fleet import fleet_from_table
from .scenario_format import scenario_fields, scenario_structure, server_model, without_defaults
from .scenario_range import check_range, check_resolvable

__all__ = ["Scenario", "PROBABILITY_TOL", "ARRAY_FIELDS"]

#: Probabilities must sum to 1 within this tolerance (no silent renormalization).
PROBABILITY_TOL = 1e-9
#: Scenarios with at most this many types have a repr that rebuilds them; larger
#: ones a summary (see :meth:`Scenario.__repr__`).
REPR_MAX_TYPES = 50
#: Largest token budget accepted: far beyond any model's context, small enough that
#: squared service times and the solvers' brackets stay in float range.
MAX_TOKENS = 1e12
#: Largest mean service time accepted at the maximum budget, in seconds.
MAX_SERVICE_SECONDS = 1e12
#: Smallest grid step accepted, in units of the spacing of doubles at the type's largest
#: budget: a grid point ``min_tokens + k step`` is computed to about one such unit, so a
#: step of this many keeps every point within 1/1000 of a step of where it belongs (and
#: the number of grid points below 2^53, exact in floating point and in int64).
MIN_STEP_ULPS = 1024

#: The per-task array fields of a scenario, in order.
ARRAY_FIELDS = (
    "probability",
    "weight",
    "min_tokens",
    "max_tokens",
    "base",
    "per_token",
    "scv",
    "variance",
)


@dataclass(eq=False)
class Scenario:
    """A workload profile: everything the optimization problem depends on.

    Attributes
    ----------
    names : list of str
        Task-type names, unique.
    probability : ndarray
        ``p_i > 0``, the share of arrivals of type i; sums to 1.
    weight : ndarray
        ``w_i > 0``, value of a correct answer of type i.
    min_tokens, max_tokens : ndarray
        Token bounds ``lo_i <= t_i <= hi_i`` (``0 <= lo_i <= hi_i``).
    base : ndarray
        ``a_i >= 0`` seconds of service independent of thinking tokens.
    per_token : ndarray
        ``b_i > 0`` seconds per thinking token.
    scv : ndarray
        ``k_i >= 0``, squared coefficient of variation of the service time.
    variance : ndarray
        ``v_i >= 0`` extra service-time variance, in seconds squared.
    accuracy : AccuracyCurves
        The accuracy curve of every type.
    arrival_rate : float
        ``lam >= 0`` queries per second (Poisson).
    latency_weight : float
        ``gamma >= 0`` utility lost per second of mean system time.
    arrival_scv : float
        ``c_a^2 >= 0``, squared coefficient of variation of the inter-arrival
        gaps (default 1: Poisson arrivals, exact Pollaczek-Khinchine; otherwise
        the Kingman / Allen-Cunneen GI/G/1 approximation).
    server : BatchingServer or None
        The server model: ``None`` for one query at a time, FIFO (``[server]
        model = "single"``, the default), or a continuous-batching server
        (``model = "batching"``, :class:`cvxalloc.queue.BatchingServer`: the
        capacity curve, ``max_running`` and ``service_scv``). A dict in the
        ``[server]`` file layout, or a bare :class:`cvxalloc.queue.CapacityCurve`,
        is accepted too.
    fleet : Fleet or None
        ``k`` identical replicas of the server behind a router
        (:class:`cvxalloc.queue.fleet.Fleet`; a dict in the ``[fleet]`` layout is
        accepted too); None is one server. ``arrival_rate`` and ``arrival_scv``
        are then the whole fleet's, and utilization is one replica's.
    levels : list of (ndarray or None)
        Allowed integer budgets per type (``None``: not restricted to a menu).
    step : ndarray
        Grid step per type for integer budgets (1 = whole tokens); ignored
        where ``levels`` is given.
    """

    names: list[str]
    probability: np.ndarray
    weight: np.ndarray
    min_tokens: np.ndarray
    max_tokens: np.ndarray
    base: np.ndarray
    per_token: np.ndarray
    scv: np.ndarray
    variance: np.ndarray
    accuracy: AccuracyCurves
    arrival_rate: float
    latency_weight: float
    levels: list[np.ndarray | None] = field(default_factory=list)
    step: np.ndarray | None = None
    #: Operator constraints (:class:`cvxalloc.scenario_constraints.Constraints`) or None.
    constraints: Any = None
    arrival_scv: float = 1.0
    server: Any = None
    fleet: Any = None

    def __post_init__(self) -> None:
        n = len(self.names)
        for name in ARRAY_FIELDS:
            val = np.asarray(getattr(self, name), dtype=float)
            if val.ndim > 1:
                raise ScenarioError(f"{name} must be one-dimensional (got shape {val.shape})")
            val = np.array(np.broadcast_to(val, (n,)), dtype=float) if val.size in (1, n) else val
            if val.shape != (n,):
                raise ScenarioError(f"{name} must have one entry per task ({n}), got {val.size}")
            val.setflags(write=False)
            object.__setattr__(self, name, val)
        if not self.levels:
            self.levels = [None] * n
        if len(self.levels) != n:
            raise ScenarioError(
                f"levels must have one entry per task ({n}), got {len(self.levels)}"
            )
        step = np.ones(n) if self.step is None else np.asarray(self.step, dtype=float)
        self.step = np.array(np.broadcast_to(step, (n,)), dtype=float)
        self.arrival_rate = float(self.arrival_rate)
        self.latency_weight = float(self.latency_weight)
        self.arrival_scv = float(self.arrival_scv)
        self.server = server_model(self.server)
        self.fleet = fleet_from_table(self.fleet)
        self._validate()
        if self.fleet is not None and self.fleet.replicas > 1 and not self.auto_service_scv:
            queue_model(self)  # a router the replica's model cannot take is refused here
        if self.constraints is not None:
            self.constraints.check(self)

    # ------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of task types."""
        return len(self.names)

    def __len__(self) -> int:
        return self.n

    def _repr_pretty_(self, p, cycle) -> None:
        """Print the repr in IPython and hypothesis (which spell a dataclass field by field)."""
        p.text(repr(self))

    def __repr__(self) -> str:
        """Python source that rebuilds the scenario, up to :data:`REPR_MAX_TYPES` (50) types.

        Up to that size the repr is ``Scenario.from_dict({...})`` with the file
        structure of :meth:`to_dict` (keys at their defaults left out, every float
        exact), so ``eval`` with :class:`Scenario` in scope gives back a scenario
        with the same ``to_dict()``, and a failing test's output can be pasted
        back. Beyond it, source would be too long to read, so the repr is a
        summary in angle brackets (not source) that says so; serialize such a
        scenario with ``sc.to_dict()`` (or :func:`cvxalloc.io.scenario_toml`).

        >>> from cvxalloc.accuracy import Exponential
        >>> sc = Scenario.from_arrays(probability=[1.0], max_tokens=100.0, per_token=0.01,
        ...     accuracy=Exponential(floor=0.1, ceiling=0.9, scale=50.0),
        ...     arrival_rate=0.5, latency_weight=0.01)
        >>> sc  # doctest: +NORMALIZE_WHITESPACE
        Scenario.from_dict({'queue': {'arrival_rate': 0.5, 'latency_weight': 0.01},
          'task': [{'name': 'type0', 'probability': 1.0, 'max_tokens': 100.0,
          'service': {'per_token': 0.01},
          'accuracy': {'model': 'exponential', 'floor': 0.1, 'ceiling': 0.9, 'scale': 50.0}}]})
        >>> eval(repr(sc)).to_dict() == sc.to_dict()
        True
        """
        if self.n <= REPR_MAX_TYPES:
            return f"Scenario.from_dict({source(without_defaults(self.to_dict()))})"
        server = "" if self.server is None else ", batching server"
        if self.fleet is not None:
            server += f", {self.fleet.describe()}"
        return (
            f"<Scenario of {self.n:,} types (a summary, not source; sc.to_dict() serializes "
            f"it): arrival_rate={source(self.arrival_rate)}, "
            f"latency_weight={source(self.latency_weight)}, "
            f"arrival_scv={source(self.arrival_scv)}{server}>"
        )

    @property
    def capacity(self) -> float:
        """Total service capacity in seconds-alone per second: 1, or ``c_max`` when batching,
        times the replicas of a ``[fleet]``."""
        one = 1.0 if self.server is None else self.server.capacity
        return one if self.fleet is None else one * self.fleet.replicas

    @property
    def replicas(self) -> int:
        """Replicas of the server (1 without a ``[fleet]``)."""
        return 1 if self.fleet is None else self.fleet.replicas

    @property
    def lo(self) -> np.ndarray:
        """Alias of :attr:`min_tokens`."""
        return self.min_tokens

    @property
    def hi(self) -> np.ndarray:
        """Alias of :attr:`max_tokens`."""
        return self.max_tokens

    def service_time(self, tokens: np.ndarray) -> np.ndarray:
        """Mean service time ``s_i = a_i + b_i t_i`` of each type, in seconds."""
        return self.base + self.per_token * np.asarray(tokens, dtype=float)

    def utilization(self, tokens: np.ndarray) -> float:
        """``rho = lam * sum_i p_i s_i(t_i) / capacity`` (capacity 1 for one query at a time):
        one replica's utilization in a fleet."""
        rho = self.arrival_rate * dot(self.probability, self.service_time(tokens))
        cap = self.capacity
        return rho if cap == 1.0 else rho / cap

    def stable_max_tokens(self) -> np.ndarray:
        """``max_tokens`` clipped where the stability limit leaves no stable point.

        A stable allocation has ``lam m1(t) < capacity`` and every other type at
        least at its minimum, so ``p_i b_i (t_i - lo_i) < capacity / lam - m1(lo)``:
        no stable point, hence not the optimum, lies above
        ``lo_i + (capacity / lam - m1(lo)) / (p_i b_i)``. Models built on this box
        keep their variables well scaled when ``max_tokens`` is huge.
        """
        lo, hi = self.min_tokens, self.max_tokens
        if self.arrival_rate <= 0:
            return hi.copy()
        slack = self.capacity / self.arrival_rate - dot(self.probability, self.service_time(lo))
        with np.errstate(divide="ignore", over="ignore"):
            reach = lo + max(slack, 0.0) / (self.probability * self.per_token)
        return np.minimum(hi, reach)

    def max_stable_arrival_rate(self, tokens: np.ndarray) -> float:
        """The supremum of arrival rates that keep ``tokens`` stable: ``capacity / m1``."""
        return self.capacity / dot(self.probability, self.service_time(tokens))

    def with_(self, **changes: Any) -> Scenario:
        """A copy with some fields replaced (validated again)."""
        kw = {
            name: getattr(self, name)
            for name in (
                "names",
                *ARRAY_FIELDS,
                "accuracy",
                "arrival_rate",
                "latency_weight",
                "levels",
                "step",
                "constraints",
                "arrival_scv",
                "server",
                "fleet",
            )
        }
        kw.update(changes)
        return Scenario(**kw)

    @property
    def auto_service_scv(self) -> bool:
        """``[server] service_scv = "auto"`` where the model may depend on it, not yet fixed
        (a fleet's router can make a replica's arrivals non-Poisson)."""
        server = self.server
        if server is None or not server.auto:
            return False
        return server.uses_service_scv(self.arrival_scv) or self.replicas > 1

    def service_scv_at(self, tokens: Any) -> float:
        """The mix's own service scv at ``tokens``: ``m2 / m1^2 - 1`` (0 without service)."""
        s = self.service_time(tokens)
        p = self.probability
        m1 = dot(p, s)
        m2 = dot(p, (1.0 + self.scv) * s * s + self.variance)
        return max(m2 / (m1 * m1) - 1.0, 0.0) if m1 > 0 else 0.0

    def with_service_scv_at(self, tokens: Any) -> Scenario:
        """This scenario with ``service_scv = "auto"`` fixed to the mix's own at ``tokens``.

        The batching model's burst and admission terms take the service scv as a
        constant (so ``W`` stays convex in the budgets); ``"auto"`` means the one the
        allocation itself has. Unchanged where the model does not use it.

        Examples
        --------
        >>> from importlib import resources
        >>> import cvxalloc
        >>> sc = cvxalloc.load_scenario(
        ...     resources.files("cvxalloc") / "data/example_batching.toml"
        ... ).with_(arrival_scv=9.0, server={"model": "batching", "concurrency": [1, 8],
        ...     "speedup": [1.0, 6.0], "service_scv": "auto"})
        >>> fixed = sc.with_service_scv_at(sc.max_tokens)
        >>> round(fixed.server.service_scv, 3) == round(sc.service_scv_at(sc.max_tokens), 3)
        True
        """
        if not self.auto_service_scv:
            return self
        return self.with_service_scv(self.service_scv_at(tokens))

    def with_service_scv(self, scv: float) -> Scenario:
        """A copy whose batching server assumes the service scv ``scv`` (validated again)."""
        scv = min(float(scv), MAX_SERVICE_SCV)
        return self.with_(server=dataclasses.replace(self.server, service_scv=scv))

    def with_arrival_rate(self, rate: float) -> Scenario:
        """A copy at another arrival rate, checked again where the rate enters: stability,
        the range checks and the constraints (the tasks, shared, are not validated again).

        What workflows that re-solve one scenario over many rates use (policies over a
        grid of rates, controllers over windows): at N = 10^4 types it costs 0.2 ms where
        :meth:`with_` costs 1.1 ms, a third of a cold solve.

        Raises
        ------
        ScenarioError, UnstableError
            As :meth:`with_` would for that rate.
        """
        rate = float(rate)
        if not (math.isfinite(rate) and rate >= 0):
            raise ScenarioError(f"queue: arrival_rate must be a finite number >= 0 (got {rate})")
        new = copy.copy(self)
        new.arrival_rate = rate
        new._check_queue_parts()
        return new

    def with_fleet(self, fleet: Any) -> Scenario:
        """A copy with another ``[fleet]`` (a :class:`~cvxalloc.queue.fleet.Fleet`, a
        table or None), checked again where the fleet enters: stability and the router.

        The tasks, queue and server are those of this (valid) scenario, shared, not
        copied or validated again: a plan over many replica counts at N = 10^4 types
        pays O(N) once per count, not a full validation.

        Raises
        ------
        UnstableError
            If the fleet cannot be stable even at the minimum budgets.
        """
        new = copy.copy(self)
        new.fleet = fleet_from_table(fleet)
        new._check_queue_parts()
        return new

    def _check_queue_parts(self) -> None:
        """What a copy with another rate or fleet checks again (its tasks are valid):
        stability, the constraints and the fleet's router."""
        self._validate_stability()
        if self.constraints is not None:
            self.constraints.check(self)
        if self.fleet is not None and self.fleet.replicas > 1 and not self.auto_service_scv:
            queue_model(self)

    def take(self, idx: Sequence[int] | np.ndarray) -> Scenario:
        """The types ``idx`` only, probabilities renormalized to sum to 1."""
        idx = np.asarray(idx, dtype=np.intp)
        p = self.probability[idx]
        return Scenario(
            names=[self.names[i] for i in idx],
            probability=p / p.sum(),
            **{f: getattr(self, f)[idx] for f in ARRAY_FIELDS if f != "probability"},
            accuracy=self.accuracy.take(idx),
            arrival_rate=self.arrival_rate,
            latency_weight=self.latency_weight,
            arrival_scv=self.arrival_scv,
            server=self.server,
            fleet=self.fleet,
            levels=[self.levels[i] for i in idx],
            step=self.step[idx],
            constraints=None if self.constraints is None else self.constraints.take(idx),
        )

    # ------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        *,
        probability: Any,
        max_tokens: Any,
        per_token: Any,
        accuracy: AccuracyCurves | AccuracyFamily,
        arrival_rate: float,
        latency_weight: float,
        weight: Any = 1.0,
        min_tokens: Any = 0.0,
        base: Any = 0.0,
        scv: Any = 0.0,
        variance: Any = 0.0,
        names: Sequence[str] | None = None,
        levels: Sequence[Any] | None = None,
        step: Any = None,
        arrival_scv: float = 1.0,
        server: Any = None,
        fleet: Any = None,
    ) -> Scenario:
        """Build a scenario from arrays (scalars broadcast to every type).

        Parameters
        ----------
        probability : array_like
            Type mix ``p``; must sum to 1 within ``1e-9``.
        max_tokens, per_token : array_like
            Upper token bounds and seconds per token.
        accuracy : AccuracyCurves or AccuracyFamily
            A family instance with per-type (or broadcast) parameters, or a
            full :class:`~cvxalloc.accuracy.AccuracyCurves`.
        arrival_rate, latency_weight : float
            ``lam`` and ``gamma``.
        weight, min_tokens, base, scv, variance : array_like, optional
            Defaults 1, 0, 0, 0, 0.
        names : sequence of str, optional
            Defaults to ``type0``, ``type1``, ...
        levels, step : optional
            Integer grids (see the scenario file format).
        arrival_scv : float, optional
            ``c_a^2`` of the inter-arrival gaps (default 1, Poisson).
        server : BatchingServer, CapacityCurve or dict, optional
            A batching server, its capacity curve, or the ``[server]`` table as
            a dict (default None: one query at a time, FIFO).
        fleet : Fleet or dict, optional
            Replicas behind a router, or the ``[fleet]`` table as a dict
            (default None: one server).

        Examples
        --------
        >>> import numpy as np
        >>> from cvxalloc import Scenario
        >>> from cvxalloc.accuracy import Exponential
        >>> sc = Scenario.from_arrays(
        ...     probability=[0.5, 0.5], max_tokens=4096, per_token=0.01, base=0.5,
        ...     accuracy=Exponential(floor=0.3, ceiling=[0.8, 0.9], scale=1000),
        ...     arrival_rate=0.05, latency_weight=0.01)
        >>> sc.n
        2
        """
        p = np.atleast_1d(np.asarray(probability, dtype=float))
        n = p.size
        if names is None:
            names = [f"type{i}" for i in range(n)]
        if isinstance(accuracy, AccuracyFamily):
            if len(accuracy) not in (1, n):
                raise ScenarioError(
                    f"accuracy parameters must have one entry per task ({n}) or one in all"
                )
            accuracy = AccuracyCurves.single(accuracy, n)
        elif not isinstance(accuracy, AccuracyCurves):
            raise ScenarioError("accuracy must be an AccuracyFamily or AccuracyCurves")
        if accuracy.n != n:
            raise ScenarioError(f"accuracy covers {accuracy.n} tasks, probability has {n}")
        lv = list(levels) if levels is not None else [None] * n
        lv = [None if x is None else np.asarray(x, dtype=float) for x in lv]
        return cls(
            names=list(names),
            probability=p,
            weight=weight,
            min_tokens=min_tokens,
            max_tokens=max_tokens,
            base=base,
            per_token=per_token,
            scv=scv,
            variance=variance,
            accuracy=accuracy,
            arrival_rate=arrival_rate,
            latency_weight=latency_weight,
            levels=lv,
            step=step,
            arrival_scv=arrival_scv,
            server=server,
            fleet=fleet,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        """Build a scenario from the nested structure of the scenario file.

        See ``docs/scenario.md``; the JSON form is ``{"queue": {...}, "task": [...]}``.
        :mod:`cvxalloc.io` reads that structure from TOML or JSON files.
        """
        return cls(**scenario_fields(data))

    def to_dict(self) -> dict[str, Any]:
        """The scenario in the file structure (round-trips through :meth:`from_dict`)."""
        return scenario_structure(self)

    # ------------------------------------------------------------------
    def _task(self, i: int) -> str:
        return f'task "{self.names[i]}"'

    def _first_bad(self, bad: np.ndarray) -> int | None:
        hits = np.flatnonzero(bad)
        return int(hits[0]) if hits.size else None

    def _validate(self) -> None:
        n = self.n
        if n == 0:
            raise ScenarioError("the scenario has no tasks: add at least one [[task]] table")
        seen: dict[str, int] = {}
        for i, name in enumerate(() if self._names_ok() else self.names):
            if not isinstance(name, str) or not name:
                raise ScenarioError(f"task {i + 1}: name must be a non-empty string")
            if name in seen:
                raise ScenarioError(
                    f'task "{name}": duplicate name (tasks {seen[name] + 1} and {i + 1}); '
                    "give every task a unique name"
                )
            seen[name] = i
        for label, val, ok in (
            ("arrival_rate", self.arrival_rate, lambda x: x >= 0),
            ("latency_weight", self.latency_weight, lambda x: x >= 0),
            ("arrival_scv", self.arrival_scv, lambda x: x >= 0),
        ):
            if not math.isfinite(val):
                raise ScenarioError(f"queue: {label} must be a finite number (got {val})")
            if not ok(val):
                raise ScenarioError(f"queue: {label} must be >= 0 (got {val})")
        rules = (
            ("probability", lambda x: x > 0, "must be > 0"),
            ("weight", lambda x: x > 0, "must be > 0"),
            ("min_tokens", lambda x: x >= 0, "must be >= 0"),
            ("max_tokens", lambda x: x >= 0, "must be >= 0"),
            ("base", lambda x: x >= 0, "must be >= 0 seconds"),
            ("per_token", lambda x: x > 0, "must be > 0 seconds per token"),
            ("scv", lambda x: x >= 0, "must be >= 0"),
            ("variance", lambda x: x >= 0, "must be >= 0 seconds squared"),
        )
        where_of = {
            "base": "service.base",
            "per_token": "service.per_token",
            "scv": "service.scv",
            "variance": "service.variance",
        }
        for fname, ok, text in rules:
            arr = getattr(self, fname)
            label = where_of.get(fname, fname)
            i = self._first_bad(~np.isfinite(arr))
            if i is not None:
                raise ScenarioError(
                    f"{self._task(i)}: {label} must be a finite number (got {arr[i]})"
                )
            i = self._first_bad(~ok(arr))
            if i is not None:
                raise ScenarioError(f"{self._task(i)}: {label} {text} (got {arr[i]:g})")
        i = self._first_bad(self.max_tokens > MAX_TOKENS)
        if i is not None:
            raise ScenarioError(
                f"{self._task(i)}: max_tokens {self.max_tokens[i]:g} is beyond what the "
                f"arithmetic of the model holds (squared service times overflow); give at most "
                f"{MAX_TOKENS:g} tokens"
            )
        with np.errstate(over="ignore"):
            s_hi = self.base + self.per_token * self.max_tokens
        i = self._first_bad(s_hi > MAX_SERVICE_SECONDS)
        if i is not None:
            got = f"is {s_hi[i]:g} s" if np.isfinite(s_hi[i]) else "overflows a double"
            raise ScenarioError(
                f"{self._task(i)}: the service time at max_tokens {got}, beyond "
                f"{MAX_SERVICE_SECONDS:g} s; lower service.per_token, service.base or max_tokens"
            )
        i = self._first_bad(self.min_tokens > self.max_tokens)
        if i is not None:
            raise ScenarioError(
                f"{self._task(i)}: min_tokens must be <= max_tokens "
                f"(got {self.min_tokens[i]:g} > {self.max_tokens[i]:g})"
            )
        total = float(np.sum(self.probability))
        if abs(total - 1.0) > PROBABILITY_TOL:
            raise ScenarioError(
                f"task probabilities must sum to 1 (got {total:.12g}); "
                "rescale them, cvxalloc does not renormalize"
            )
        self._validate_accuracy()
        self._validate_grids()
        self._validate_stability()

    def _validate_accuracy(self) -> None:
        with np.errstate(over="ignore", invalid="ignore"):
            hi_acc = self.accuracy.value(self.max_tokens)
            lo_acc = self.accuracy.value(self.min_tokens)
        i = self._first_bad(hi_acc > 1 + 1e-12)
        if i is not None:
            raise ScenarioError(
                f"{self._task(i)}: accuracy reaches {hi_acc[i]:.4g} > 1 at max_tokens; "
                "lower accuracy.gain or max_tokens"
            )
        i = self._first_bad(~np.isfinite(hi_acc) | ~np.isfinite(lo_acc))
        if i is not None:
            raise ScenarioError(f"{self._task(i)}: accuracy is not finite on the token bounds")

    def _names_ok(self) -> bool:
        """Every name a non-empty str and no two alike, judged in bulk (C loops over 10^6
        names); where it fails, :meth:`_validate` walks the names to say which."""
        names = self.names
        if set(map(type, names)) != {str}:
            return False
        unique = set(names)
        return len(unique) == len(names) and "" not in unique

    def _validate_grids(self) -> None:
        menus = set(map(type, self.levels)) != {type(None)}  # tasks with levels (usually none)
        for i in range(self.n) if menus else ():
            lv = self.levels[i]
            if lv is not None:
                if lv.ndim != 1 or lv.size == 0:
                    raise ScenarioError(f"{self._task(i)}: levels must be a non-empty list")
                if not np.all(np.isfinite(lv)):
                    raise ScenarioError(f"{self._task(i)}: levels must be finite numbers")
                if np.any(np.diff(lv) <= 0):
                    raise ScenarioError(
                        f"{self._task(i)}: levels must be strictly increasing, without "
                        f"duplicates (got {lv.tolist()})"
                    )
                if lv[0] < self.min_tokens[i] or lv[-1] > self.max_tokens[i]:
                    raise ScenarioError(
                        f"{self._task(i)}: levels must lie within [min_tokens, max_tokens] = "
                        f"[{self.min_tokens[i]:g}, {self.max_tokens[i]:g}] (got {lv.tolist()})"
                    )
        i = self._first_bad(~np.isfinite(self.step) | (self.step <= 0))
        if i is not None:
            raise ScenarioError(f"{self._task(i)}: step must be > 0 (got {self.step[i]:g})")
        stepped = (
            np.array([lv is None for lv in self.levels], dtype=bool)
            if menus
            else np.ones(self.n, bool)
        )
        resolved = MIN_STEP_ULPS * np.spacing(np.maximum(self.min_tokens, self.max_tokens))
        i = self._first_bad(stepped & (self.max_tokens > self.min_tokens) & (self.step < resolved))
        if i is not None:
            raise ScenarioError(
                f"{self._task(i)}: step {self.step[i]:g} is below what double precision "
                f"resolves at budgets up to {self.max_tokens[i]:g} tokens (neighbouring grid "
                f"points would coincide or be misplaced); give step >= {resolved[i]:.3g} "
                "or a list of levels"
            )

    def _validate_stability(self) -> None:
        lam, cap = self.arrival_rate, self.capacity
        m1_lo = float(self.probability @ self.service_time(self.min_tokens))
        if lam * m1_lo >= cap:
            raise UnstableError(
                f"queue: unstable even at the minimum budgets (utilization "
                f"{lam * m1_lo / cap:.4g} >= 1); lower arrival_rate below {cap / m1_lo:.6g} "
                "queries/s or the minimum budgets, or add replicas ([fleet] replicas; "
                "'cvxalloc plan --max-replicas K' finds how many)"
            )
        check_range(self)
        if self.server is not None and not self.auto_service_scv:
            # refuses what is not convex ("auto": checked where it is fixed, at an allocation)
            self.server.occupancy(self.arrival_scv)
        m1_hi = float(self.probability @ self.service_time(self.max_tokens))
        cons = self.constraints
        # An SLO or a utilization cap below 1 keeps the optimum away from saturation.
        bounded = cons is not None and (
            cons.max_mean_system_time is not None or (cons.max_utilization or 1.0) < 1
        )
        if self.latency_weight == 0 and lam * m1_hi >= cap and not bounded:
            raise UnstableError(
                "queue: latency_weight is 0 and the maximum budgets are unstable, so utility "
                "grows up to saturation and no optimum exists; set latency_weight > 0 or "
                f"lower max_tokens (or arrival_rate below {cap / m1_hi:.6g} queries/s), or add "
                "a max_mean_system_time or max_utilization < 1 constraint"
            )
        if lam * m1_hi >= cap and not bounded and self.server is None:
            check_resolvable(self)
