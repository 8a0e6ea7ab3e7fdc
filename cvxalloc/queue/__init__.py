"""Queue models: the mean system time ``W`` as a function of a few aggregates.

Layer: parts.

A queue model is a component like an accuracy family. It states, in one place,
``W`` as a function of the service-time moments it depends on, the gradient
and Hessian in those moments, its stability limit and its conic form; every
solver, certificate and workflow reaches the queue through it.

* :class:`FIFOQueue`: one server, FIFO; exact Pollaczek-Khinchine for Poisson
  arrivals (``arrival_scv = 1``), Kingman / Allen-Cunneen otherwise.
* :class:`BatchingQueue`: continuous batching, processor sharing with a total
  rate that grows with concurrency (a :class:`CapacityCurve`), ``W = G(lam m1) / lam``;
  exact for Poisson arrivals (insensitive to the service distribution), with
  bursty arrivals and the engine's admission limit through :mod:`.occupancy`.
  :class:`BatchingServer` is the ``[server]`` table.
* :class:`Latency`: the term ``W(t)`` of a scenario, i.e. the service model's
  moments of an allocation fed to the scenario's queue model.
"""

from __future__ import annotations

from .batching import BatchingQueue, BatchingServer
from .curve import CapacityCurve, capacity_curve
from .fifo import FIFOQueue, kingman, pollaczek_khinchine
from .latency import Latency, Moments, queue_model

__all__ = [
    "BatchingQueue",
    "BatchingServer",
    "CapacityCurve",
    "FIFOQueue",
    "Latency",
    "Moments",
    "capacity_curve",
    "kingman",
    "pollaczek_khinchine",
    "queue_model",
]
