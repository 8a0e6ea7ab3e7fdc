"""Keep the C allocator's freed memory for the next temporary (glibc only).

Layer: parts.

The numerical kernels allocate temporaries of one to tens of megabytes, one after
another: the transform matrices of the percentiles (points x components), the
columns of a 10^6-task table, the solvers' per-type passes. glibc's ``malloc`` serves
blocks above its mmap threshold with fresh ``mmap`` pages and returns them to the
system when freed, so each such temporary pays its page faults again. Raising the
threshold and the heap's trim threshold keeps those pages in the process: measured
on the percentiles of a 10^4-type scenario (``benchmarks/bench_tail.py``), 65 -> 35 ms
with Poisson arrivals and 68 -> 30 ms with gaps of scv 4. The command line sets it for
its own process (:func:`cvxalloc.cli.main`); the library leaves the allocator alone.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["keep_freed_memory"]

#: glibc's ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Blocks up to this size come from the heap (glibc's largest dynamic mmap threshold).
MMAP_THRESHOLD = 32 << 20
#: The heap keeps up to this much free memory at its top before returning it.
TRIM_THRESHOLD = 256 << 20


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; whether it applied (False off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
