"""The batching simulator under its former path: see :mod:`cvxalloc.simulate.batching`.

Layer: workflows. Kept so that ``from cvxalloc.simulate_batching import
simulate_batching`` goes on working; new code imports from
:mod:`cvxalloc.simulate`.
"""

from __future__ import annotations

from .simulate.batching import BatchingSimulation, simulate_batching, simulate_work, system_times

__all__ = ["system_times", "simulate_batching", "BatchingSimulation", "simulate_work"]
