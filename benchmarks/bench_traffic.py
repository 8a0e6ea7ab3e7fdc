"""Benchmark: reading a 10^6-row request log, measuring it, and replaying it.

Run: ``python benchmarks/bench_traffic.py [--rows N] [--repeat R]``.

Writes synthetic logs of ``--rows`` requests to a temporary directory, in the
formats of real logs: the Azure traces' CSV (``2023-11-16 18:15:46.6805900``
date-times, three columns), a CSV of numeric millisecond stamps, and JSON lines
with millisecond stamps and a type. Times the best of ``--repeat`` runs of
:func:`cvxalloc.requestlog.read_request_log` on each, of
:func:`cvxalloc.traffic.measure_traffic`, and of
:func:`cvxalloc.simulate.simulate_replay` of the log through the built-in
example at its optimal allocation (gamma service, rescaled to utilization 0.7),
with 1 and with 10 replications. No assertion: it prints the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

import cvxalloc
from cvxalloc.requestlog import read_request_log
from cvxalloc.simulate import simulate_replay
from cvxalloc.traffic import measure_traffic


def best(fn, repeat: int):
    """Best wall time of ``repeat`` calls, and the result of that call."""
    best_sec, best_out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        sec = time.perf_counter() - t0
        if sec < best_sec:
            best_sec, best_out = sec, out
    return best_sec, best_out


def write_logs(directory: str, rows: int, seed: int = 0) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    gaps_ns = (rng.exponential(0.2, rows) * 1e9).astype(np.int64)
    stamps = np.datetime64("2023-11-16T18:15:46.6805900", "ns") + np.cumsum(gaps_ns)
    ctx = rng.integers(10, 5000, rows)
    gen = rng.integers(1, 500, rows)
    paths = {}
    text = np.datetime_as_string(stamps, unit="ns")
    lines = [f"{s[:10]} {s[11:27]},{c},{g}" for s, c, g in zip(text, ctx.tolist(), gen.tolist())]
    paths["azure-style CSV (date-times)"] = os.path.join(directory, "azure.csv")
    with open(paths["azure-style CSV (date-times)"], "w") as fh:
        fh.write("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(lines) + "\n")
    ms = (stamps.astype(np.int64) // 1_000_000).tolist()
    paths["CSV (ms numbers)"] = os.path.join(directory, "ms.csv")
    with open(paths["CSV (ms numbers)"], "w") as fh:
        fh.write("ts,tokens\n" + "\n".join(f"{m},{g}" for m, g in zip(ms, gen.tolist())) + "\n")
    kinds = np.array(["math", "code", "chat"])[rng.integers(0, 3, rows)].tolist()
    paths["JSON lines (ms numbers)"] = os.path.join(directory, "log.jsonl")
    with open(paths["JSON lines (ms numbers)"], "w") as fh:
        fh.write("\n".join(json.dumps({"ts": m, "type": k}) for m, k in zip(ms, kinds)) + "\n")
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        paths = write_logs(d, args.rows)
        log = None
        for what, path in paths.items():
            unit = None if "date-times" in what else "ms"
            mb = os.path.getsize(path) / 1e6
            sec, log_i = best(lambda p=path, u=unit: read_request_log(p, time_unit=u), args.repeat)
            print(f"read {what:<30} {args.rows:>10,} rows  {mb:6.1f} MB  {sec:6.3f} s  "
                  f"({args.rows / sec:,.0f} rows/s)")  # fmt: skip
            log = log if log is not None else log_i
        sec, tr = best(lambda: measure_traffic(log), args.repeat)
        print(f"measure_traffic                     {args.rows:>10,} rows             {sec:6.3f} s"
              f"  (rate {tr.arrival_rate:.4g}/s, arrival SCV {tr.arrival_scv:.4g})")  # fmt: skip
    sc = cvxalloc.example_scenario()
    tokens = cvxalloc.solve(sc).tokens
    for reps in (1, 10):
        sec, rep = best(
            lambda r=reps: simulate_replay(
                sc, tokens, log, seed=1, target_utilization=0.7, replications=r
            ),
            args.repeat,
        )
        n = log.requests * reps
        print(f"simulate_replay, {reps:>2} replication(s)     {n:>10,} queries          "
              f"{sec:6.3f} s  ({n / sec:,.0f} queries/s end to end; inner loop "
              f"{rep.queries_per_second:,.0f}/s)")  # fmt: skip


if __name__ == "__main__":
    main()
