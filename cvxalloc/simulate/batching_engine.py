"""The continuous-batching server's event loop, between chunks of arrivals.

Layer: workflows (:mod:`cvxalloc.simulate`).

:class:`BatchingEngine` holds the state of the server that
:mod:`cvxalloc.simulate.batching` simulates (clock, virtual time, the heap of decoding
queries, the FIFO queue of those waiting for admission) and serves chunks of arrivals;
the simulator, the fleet simulator and the controller replay all drive it.
:func:`system_times` runs it once over given gaps and work.

Implementation: a *virtual time* ``V`` with ``dV/dt = c(n) / n`` is the work each
decoding query has received since any fixed instant, so a query admitted at virtual
time ``V0`` with work ``S`` leaves when ``V = V0 + S``; a heap of those finishing virtual
times gives the next departure in ``O(log n)``. One Python loop step per arrival and per
departure.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Any

import numpy as np

from ..errors import ScenarioError
from ..queue import BatchingServer
from ..queue.curve import CapacityCurve, capacity_curve
from .engine import batch_means_interval

__all__ = ["BatchingEngine", "Departures", "system_times", "simulate_work"]


def _plain_curve(curve: Any) -> CapacityCurve:
    if isinstance(curve, BatchingServer):
        return curve.curve
    if isinstance(curve, CapacityCurve):
        return curve
    return capacity_curve(curve["concurrency"], curve["speedup"])


class BatchingEngine:
    """The server between chunks of arrivals: clock, virtual time, decoding heap, FIFO queue.

    A heap entry is ``(finishing virtual time, index, arrival time, wait)`` and a
    waiting one ``(index, work, arrival time)``: nothing else is held per query.
    Arrivals come in chunks (:meth:`serve`) with the clock moved in between
    (:meth:`advance`), so a caller that changes the budgets as time goes on (the
    controller replay) serves each window's queries with that window's work.
    """

    def __init__(self, curve: CapacityCurve, limit: int | None) -> None:
        if limit is not None and (int(limit) != limit or limit < 1):
            raise ScenarioError(f"limit must be a whole number >= 1 or None (got {limit!r})")
        size = max(curve.concurrency[-1], limit or 0) + 1  # c is flat from here on
        n = np.arange(1, size + 1, dtype=float)
        self.rate = [0.0, *(curve.rate(n) / n).tolist()]
        self.cap = curve.capacity
        self.K = math.inf if limit is None else int(limit)
        self.now = self.V = 0.0
        self.n = 0
        self.heap: list[tuple[float, int, float, float]] = []
        self.waiting: deque[tuple[int, float, float]] = deque()

    def serve(self, first: int, arrivals: list, work: list, out: tuple[list, list, list]) -> None:
        """Queries ``first, ...`` arriving at ``arrivals`` with ``work``; departures in ``out``.

        An arrival at ``inf`` (:meth:`drain`) serves everything left.
        """
        push, pop = heapq.heappush, heapq.heappop
        record = out.rows.append
        rate, cap, K, heap, waiting = self.rate, self.cap, self.K, self.heap, self.waiting
        top, inf = len(rate), math.inf
        now, V, n = self.now, self.V, self.n
        for k, a in enumerate(arrivals):
            while n:  # departures before this arrival (or clock tick)
                fv = heap[0][0]
                t_done = now + (fv - V) / (rate[n] if n < top else cap / n)
                if t_done > a:
                    break
                now, V = t_done, fv
                _, j, arrived, waited = pop(heap)
                record((j, t_done - arrived, waited))
                if waiting:
                    i, w, ai = waiting.popleft()
                    push(heap, (fv + w, i, ai, t_done - ai))
                else:
                    n -= 1
            if a == inf:
                break
            if n:
                V += (a - now) * (rate[n] if n < top else cap / n)
            now = a
            if work[k] is None:  # a clock tick (:meth:`advance`), not an arrival
                continue
            if n < K:
                push(heap, (V + work[k], first + k, a, 0.0))
                n += 1
            else:
                waiting.append((first + k, work[k], a))
        self.now, self.V, self.n = now, V, n

    def drain(self, out) -> None:
        """Serve every query still in the system."""
        self.serve(0, [math.inf], [0.0], out)

    def advance(self, until: float, out) -> None:
        """Serve the departures up to time ``until`` and move the clock there."""
        if until > self.now:
            self.serve(0, [float(until)], [None], out)

    @property
    def in_system(self) -> int:
        """Queries decoding or waiting for admission now."""
        return self.n + len(self.waiting)


class Departures:
    """Departures of one chunk: rows of (index, system time, wait before admission)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, float]] = []

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
        a = np.array(self.rows)
        return a[:, 0].astype(np.int64), a[:, 1], a[:, 2]


def system_times(
    gaps: np.ndarray, work: np.ndarray, curve: Any, limit: int | None = None
) -> np.ndarray:
    """System time of each query (arrival order), starting from an empty server.

    Parameters
    ----------
    gaps : ndarray
        Inter-arrival times (the first from time 0), seconds.
    work : ndarray
        Each query's work, in seconds when it runs alone.
    curve : CapacityCurve or BatchingServer
        ``c(n)``.
    limit : int, optional
        At most this many decode together, the rest wait FIFO (None: all of
        them, processor sharing).

    Returns
    -------
    ndarray
        Departure minus arrival time of every query (memory grows with their number;
        :func:`simulate_batching` streams).
    """
    engine = BatchingEngine(_plain_curve(curve), limit)
    out = Departures()
    arrivals = np.cumsum(np.asarray(gaps, dtype=float))
    engine.serve(0, arrivals.tolist(), np.asarray(work, dtype=float).tolist(), out)
    engine.drain(out)
    idx, system, _ = out.arrays()
    T = np.empty(arrivals.size)
    T[idx] = system
    return T


def simulate_work(
    curve: Any,
    arrival_rate: float,
    work: np.ndarray,
    *,
    limit: int | None = None,
    seed: int | None = 0,
    warmup: float = 0.1,
    batches: int = 30,
    confidence: float = 0.99,
) -> tuple[float, tuple[float, float]]:
    """Mean system time and its batch-means interval for given per-query work (Poisson arrivals).

    Parameters
    ----------
    curve : CapacityCurve, BatchingServer or (concurrency, speedup)
    arrival_rate : float
        Poisson rate.
    work : ndarray
        Work of the queries in arrival order (seconds alone).
    warmup : float
        Fraction of queries discarded from the start.
    """
    if isinstance(curve, tuple):
        curve = capacity_curve(*curve)
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / arrival_rate, size=len(work))
    T = system_times(gaps, work, curve, limit)
    start = int(warmup * T.size)
    return batch_means_interval(T[start:], batches, confidence)
