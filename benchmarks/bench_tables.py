"""A 10^6-type scenario from the command line: load + solve + write against the solve alone.

Run from the repository root (a script, not a test)::

    python benchmarks/bench_tables.py                        # N = 10^6, 3 repeats
    python benchmarks/bench_tables.py --n 200000 --repeat 5
    python benchmarks/bench_tables.py --baseline-tree DIR    # also JSON at an older cvxalloc
    python benchmarks/bench_tables.py --phases               # where the CLI's time goes

It writes one random scenario (``cvxalloc.testing.random_scenario``, seed 0, heavy load,
every accuracy family; 15 columns of exact doubles) in three forms: a task table as CSV
(``tasks = "tasks.csv"``), as Parquet (with pyarrow) and a JSON scenario with ``[[task]]``
entries. Then, alternating, each in a fresh process (so the machine's state is shared
fairly), it measures:

* ``solve alone``: ``cvxalloc.solve(sc)`` on the loaded scenario, its first call (what
  the command line pays), CPU time (user + system) inside the process;
* ``cvxalloc solve S -o tokens.csv`` (and ``.parquet``, and the CSV read by numpy's parser
  with pyarrow hidden), and ``cvxalloc solve big.json --json -o out.json``: the whole
  process, interpreter start and imports included, CPU time and peak resident memory
  (``os.wait4``'s rusage of that child);
* the floor under the CSV command, each in a fresh process: pyarrow's parse of
  ``tasks.csv`` alone (in-process CPU, the options cvxalloc reads it with) and the
  start-up with the CLI's and pyarrow's imports; their sum with the solve alone is the
  least any CSV command could take, whatever it did besides;
* with ``--baseline-tree DIR`` (a copy of an older ``cvxalloc/`` package, e.g.
  ``git archive 183cd1c cvxalloc | tar -x -C DIR``) the same JSON command run by it.

It prints the best of ``--repeat`` for each, and its ratio to the solve alone. The
machine may be shared: only ratios measured in the same run mean anything.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import cvxalloc
from cvxalloc.io import write_scenario
from cvxalloc.testing import random_scenario

ROOT = Path(__file__).resolve().parents[1]

#: Runs the solve alone in a fresh process and prints its CPU seconds (user + system).
SOLVE_ALONE = """
import resource, sys
import cvxalloc
sc = cvxalloc.load_scenario(sys.argv[1])
r0 = resource.getrusage(resource.RUSAGE_SELF)
res = cvxalloc.solve(sc)
r1 = resource.getrusage(resource.RUSAGE_SELF)
assert res.status == "optimal", res.status
print(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
"""

#: pyarrow's CSV parser alone on the task table (one thread, as cvxalloc reads it): the
#: in-process CPU seconds of reading every column as numbers or text, nothing else.
PARSE_ALONE = """
import resource, sys
import pyarrow as pa, pyarrow.csv as pacsv
from cvxalloc.tables import ARROW_THREADS
header = open(sys.argv[1], encoding="utf-8").readline().strip().split(",")
types = {c: pa.string() if c in ("name", "accuracy.model") else pa.float64() for c in header}
r0 = resource.getrusage(resource.RUSAGE_SELF)
pacsv.read_csv(sys.argv[1], read_options=pacsv.ReadOptions(use_threads=ARROW_THREADS),
               convert_options=pacsv.ConvertOptions(column_types=types, null_values=[""]))
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
"""

#: The command line's imports alone: a whole process that imports the CLI and pyarrow.
IMPORTS_ALONE = "import cvxalloc.cli, pyarrow.csv"

#: The command line with pyarrow hidden (numpy's CSV parser and Python's writer).
NO_ARROW = """
import sys
sys.modules["pyarrow"] = None
from cvxalloc.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run(argv: list[str], env=None, cwd: Path = ROOT) -> tuple[float, float, float, str]:
    """Run ``argv`` in ``cwd``; (CPU seconds, wall seconds, peak RSS in MB, stdout) of that
    process (``os.wait4`` reaps it and returns its own resource usage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd
    )
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{err}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024, out


def _write_files(n: int, where: Path) -> None:
    """The scenario in its forms: table CSV, table Parquet (pyarrow), JSON [[task]]."""
    sc = random_scenario(np.random.default_rng(0), n, load="heavy")
    write_scenario(sc, where / "csv.toml", tasks="tasks.csv")
    try:
        import pyarrow  # noqa: F401

        write_scenario(sc, where / "parquet.toml", tasks="tasks.parquet")
    except ImportError:
        pass
    write_scenario(sc, where / "big.json")


def _files(n: int, where: Path) -> dict[str, Path]:
    """Write the files in a child process, so that this one stays small: a child's peak
    memory (``ru_maxrss``) starts from its parent's at the fork."""
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); "
    code += "import bench_tables as b; from pathlib import Path; "
    code += f"b._write_files({n}, Path({str(where)!r}))"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    out = {"csv": where / "csv.toml", "json": where / "big.json"}
    if (where / "parquet.toml").is_file():
        out["parquet"] = where / "parquet.toml"
    return out


def _commands(files, where: Path, baseline: Path | None) -> dict[str, tuple[list[str], dict, Path]]:
    """Each measured command: its argv, its environment and its working directory."""
    py = sys.executable
    env = dict(os.environ)
    runs = {
        "solve alone": ([py, "-c", SOLVE_ALONE, str(files["csv"])], env, ROOT),
        "CLI csv -> csv": (
            [py, "-m", "cvxalloc", "solve", str(files["csv"]), "-o", str(where / "t.csv")],
            env,
            ROOT,
        ),
    }
    if "parquet" in files:
        # the floor under the CSV command: what it cannot avoid besides the solve
        parse = [py, "-c", PARSE_ALONE, str(where / "tasks.csv")]
        runs["floor: parse tasks.csv (pyarrow)"] = (parse, env, ROOT)
        runs["floor: start-up and imports"] = ([py, "-c", IMPORTS_ALONE], env, ROOT)
        runs["CLI csv -> csv, numpy only"] = (
            [py, "-c", NO_ARROW, "solve", str(files["csv"]), "-o", str(where / "t2.csv")],
            env,
            ROOT,
        )
        runs["CLI parquet -> parquet"] = (
            [py, "-m", "cvxalloc", "solve", str(files["parquet"]), "-o", str(where / "t.parquet")],
            env,
            ROOT,
        )
    json_cmd = ["solve", str(files["json"]), "--json", "-o", str(where / "out.json")]
    runs["CLI json -> json"] = ([py, "-m", "cvxalloc", *json_cmd], env, ROOT)
    if baseline is not None:
        # run in the baseline tree: ``python -m`` puts the working directory first on
        # sys.path, so from ROOT it would import this tree's cvxalloc, PYTHONPATH or not
        baseline = baseline.resolve()
        old = {**env, "PYTHONPATH": str(baseline)}
        found = _run([py, "-c", "import cvxalloc; print(cvxalloc.__file__)"], old, baseline)[3]
        if not Path(found.strip()).is_relative_to(baseline):
            raise SystemExit(f"--baseline-tree: cvxalloc imports from {found.strip()}")
        runs["CLI json -> json, baseline tree"] = ([py, "-m", "cvxalloc", *json_cmd], old, baseline)
    return runs


def _phases(path: Path) -> None:
    """CPU seconds of each step of ``cvxalloc solve S -o tokens.csv`` in this process."""
    import resource

    from cvxalloc._output import write_table
    from cvxalloc.scenario import Scenario
    from cvxalloc.scenario_format import scenario_fields
    from cvxalloc.tables import read_task_table

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    steps = []
    t = cpu()
    cols = read_task_table(path.parent / "tasks.csv")
    steps.append(("read the table", cpu() - t))
    t = cpu()
    fields = scenario_fields(cvxalloc.io.read_structured_file(path), cols)
    steps.append(("columns -> fields", cpu() - t))
    t = cpu()
    sc = Scenario(**fields)
    steps.append(("Scenario (validation)", cpu() - t))
    t = cpu()
    res = cvxalloc.solve(sc)
    steps.append(("solve", cpu() - t))
    t = cpu()
    table = res.to_table()
    steps.append(("result table", cpu() - t))
    t = cpu()
    write_table(path.parent / "phases.csv", table)
    steps.append(("write tokens.csv", cpu() - t))
    for name, sec in steps:
        print(f"  {name:<24} {sec:7.3f} s CPU")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline-tree", type=Path, help="directory holding an older cvxalloc/")
    ap.add_argument("--phases", action="store_true", help="split the CSV path into its steps")
    ap.add_argument("--skip-json", action="store_true", help="leave out the JSON commands")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        files = _files(args.n, where)
        print(
            f"N = {args.n:,}: tasks.csv {(where / 'tasks.csv').stat().st_size / 1e6:.0f} MB, "
            f"big.json {files['json'].stat().st_size / 1e6:.0f} MB"
            + (
                f", tasks.parquet {(where / 'tasks.parquet').stat().st_size / 1e6:.0f} MB"
                if "parquet" in files
                else " (no pyarrow: no Parquet)"
            )
        )
        runs = _commands(files, where, args.baseline_tree)
        if args.skip_json:
            runs = {k: v for k, v in runs.items() if "json" not in k}
        best: dict[str, list[float]] = {k: [np.inf, np.inf, 0.0] for k in runs}
        for _ in range(args.repeat):
            for name, (argv, env, cwd) in runs.items():
                cpu, wall, rss, out = _run(argv, env, cwd)
                if name == "solve alone" or name.startswith("floor: parse"):
                    cpu = float(out.strip())
                best[name][0] = min(best[name][0], cpu)
                best[name][1] = min(best[name][1], wall)
                best[name][2] = max(best[name][2], rss)
        base = best["solve alone"][0]
        print(f"{'':34} {'CPU s':>8} {'x solve':>8} {'wall s':>8} {'peak MB':>8}")
        for name, (cpu, wall, rss) in best.items():
            if name == "solve alone":  # (its process's wall time and memory include the load)
                print(f"{name:34} {cpu:8.3f} {1.0:8.2f} {'-':>8} {'-':>8}")
                continue
            print(f"{name:34} {cpu:8.3f} {cpu / base:8.2f} {wall:8.2f} {rss:8.0f}")
        floor = [v[0] for k, v in best.items() if k.startswith("floor:")]
        if floor:
            total = base + sum(floor)
            print(f"{'floor: solve + parse + imports':34} {total:8.3f} {total / base:8.2f}")
        if args.baseline_tree is not None and "CLI json -> json" in best:
            new, old = best["CLI json -> json"][0], best["CLI json -> json, baseline tree"][0]
            print(f"JSON now / baseline tree: {new / old:.3f} (CPU)")
        if args.phases:
            print("phases of the CSV path, in this process:")
            _phases(files["csv"])


if __name__ == "__main__":
    main()
