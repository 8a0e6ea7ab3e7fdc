"""The import graph of cvxalloc/: layers that only point down, no circles, few hidden imports.

Every module under ``cvxalloc/`` is parsed with :mod:`ast` (nothing is imported).
An import at module level (also under ``try``/``if``, but not under
``if TYPE_CHECKING:``, which never runs) is an edge of the *module graph*; an
import inside a function or method is a *function-level* import and is
reported apart. ``from pkg import name`` counts as an import of ``pkg.name``
when that is a module, and importing ``pkg.sub`` runs ``pkg/__init__.py``
first, so it is an edge to ``pkg`` too.

The layers, bottom to top (a module may import its own layer and those below):

parts
    errors, status, option checks, file and source helpers, the reductions, root
    finding; the accuracy families, the queue models and request logs: each a
    component with its value, derivatives and CVXPY form.
numerics
    the objective, the certificate, polish, the result object and its report,
    and the operator constraints (terms that evaluate, compile to CVXPY and
    certify themselves). They are written against any scenario-shaped object
    (:class:`cvxalloc.protocols.ScenarioLike`) and never import :mod:`cvxalloc.scenario`.
scenario
    the scenario (which holds accuracy curves, a queue model and constraints),
    its file structure (:mod:`cvxalloc.scenario_format`), the record of its
    constraints and their ``[constraints]`` table
    (:mod:`cvxalloc.scenario_constraints`) and the files (:mod:`cvxalloc.io`).
    It sits above the numerics because a scenario is built from all the parts,
    constraint terms included; nothing below it needs it.
solvers
    ``solve`` and its registry (a dispatcher lives above what it dispatches to,
    so it shares this layer with the solvers it loads by name), every method
    and how it honours constraints (conic rows, multipliers, the finishing
    polish), baselines and integer rounding.
workflows
    sweeps, sensitivity, calibration (fit), simulation, traffic, policies, the
    controller, plots, the testing helpers.
facade
    ``cvxalloc/__init__.py``: the public names, re-exported from every layer.
cli
    the command line and ``python -m cvxalloc``.

Function-level imports are allowed only for what is *heavy* to import and
needed by a few paths: CVXPY and SCIP (the conic and mixed-integer paths
only), matplotlib (figures only), tqdm (progress bars, on a terminal only),
``scipy.optimize`` and ``scipy.stats`` (each ~0.1-0.3 s at start-up, for
fallbacks and fits), hypothesis (optional, for the testing helpers only), pyarrow
(optional, Parquet task tables only), and
modules of cvxalloc that import one of those at module level (e.g.
:mod:`cvxalloc.solvers.conic`, :mod:`cvxalloc.plots`, :mod:`cvxalloc.fit`).
Deferring them is what keeps ``import cvxalloc`` and ``cvxalloc solve`` free of
CVXPY and fast. Every other function-level import is a hidden dependency: the
ones that exist today are listed in :data:`HIDDEN` with the reason they remain,
and the list may only shrink (a new one fails, and so does an entry that no
longer exists, so the list stays true).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "cvxalloc"

#: Layers, bottom first: module name (without "cvxalloc.") or package prefix.
LAYERS: dict[str, tuple[str, ...]] = {
    "parts": (
        "errors",
        "status",
        "_options",
        "_files",
        "_output",
        "_version",
        "_source",
        "_reduce",
        "_roots",
        "_bisect",
        "_lazy",
        "_malloc",
        "_wright",
        "_public",
        "protocols",
        "accuracy",
        "queue",
        "requestlog",
    ),
    "numerics": ("objective", "certificate", "polish", "result", "report", "constraints"),
    "scenario": (
        "scenario",
        "scenario_format",
        "scenario_range",
        "scenario_constraints",
        "tables",
        "io",
    ),
    "solvers": ("solvers", "solve", "baselines", "integer"),
    "workflows": (
        "sweep",
        "plan",
        "sensitivity",
        "fit",
        "simulate",
        "simulate_batching",
        "traffic",
        "policy",
        "controller",
        "plots",
        "testing",
    ),
    "facade": ("",),  # cvxalloc/__init__.py
    "cli": ("cli", "__main__"),
}

#: Heavy third-party imports a function may defer (see the module docstring).
HEAVY = (
    "cvxpy",
    "pyscipopt",
    "matplotlib",
    "tqdm",
    "scipy.optimize",
    "scipy.stats",
    "hypothesis",
    "pyarrow",  # optional: Parquet task tables only
)

#: Function-level imports of light modules that remain, (importer, imported) -> why.
#: Remove an entry when its import moves to the top of its module.
HIDDEN: dict[tuple[str, str], str] = {
    # Dispatchers that pick a solver at run time, resolved on use like solve's registry:
    ("solvers.fixed_point", "solvers.gradient"): "the fallback method, loaded when it runs",
    ("policy.build", "integer"): "integer policies only (import cvxalloc loads policy)",
    # Subcommands import their workflow when they run (keeps `cvxalloc --help` light):
    ("cli.control", "controller"): "subcommand loads its workflow on run",
    ("cli.control", "policy"): "subcommand loads its workflow on run",
    ("cli.policy", "policy"): "subcommand loads its workflow on run",
    ("cli.sensitivity", "sensitivity"): "subcommand loads its workflow on run",
    ("cli.solve", "integer"): "subcommand loads its workflow on run",
    ("cli.sweep", "sweep"): "subcommand loads its workflow on run",
}


def _name(path: Path) -> str:
    """Module name without the "cvxalloc." prefix ("" for the package itself)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_name(p): p for p in sorted(ROOT.rglob("*.py"))}
PACKAGES = {_name(p) for p in ROOT.rglob("__init__.py")}


def layer_of(module: str) -> int:
    """Index of the layer of a cvxalloc module (name without "cvxalloc.")."""
    for i, prefixes in enumerate(LAYERS.values()):
        for prefix in prefixes:
            if module == prefix or (prefix and module.startswith(prefix + ".")):
                return i
    raise AssertionError(f"cvxalloc.{module} is in no layer: add it to LAYERS in {__file__}")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Full dotted names an import statement loads ("cvxalloc.x" or third-party)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = module.split(".") if module in PACKAGES else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(
            ["cvxalloc", *[p for p in package if p]] + ([node.module] if node.module else [])
        )
    else:
        base = node.module or ""
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        inner = sub.removeprefix("cvxalloc.").removeprefix("cvxalloc")
        out.append(sub if sub.startswith("cvxalloc.") and inner in MODULES else base)
    return out


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(module-level, function-level) imports of a module, as full dotted names."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    top: set[str] = set()
    inner: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child, in_function)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            (inner if in_function else top).update(_targets(module, node))
            return
        nested = in_function or isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
        )
        for child in ast.iter_child_nodes(node):
            visit(child, nested)

    visit(tree, False)
    return top, inner


def _internal(name: str) -> list[str]:
    """The cvxalloc modules an import of ``name`` runs: it and its parent packages."""
    if name != "cvxalloc" and not name.startswith("cvxalloc."):
        return []
    parts = name.removeprefix("cvxalloc").removeprefix(".").split(".")
    out = [".".join(parts[: i + 1]) for i in range(len(parts)) if parts[0]]
    return [m for m in out if m in MODULES] or [""]


IMPORTS = {m: _imports(m) for m in MODULES}


def _ancestor(package: str, module: str) -> bool:
    """Whether ``module`` lies inside ``package`` (its own package is already loading)."""
    return package == "" or module.startswith(package + ".")


def module_graph() -> dict[str, set[str]]:
    """cvxalloc module -> cvxalloc modules it imports at module level.

    A module's import of a sibling runs no package ``__init__`` that is not
    already running, so the edge to its own packages is left out.
    """
    return {
        m: {t for name in top for t in _internal(name) if t != m and not _ancestor(t, m)}
        for m, (top, _inner) in IMPORTS.items()
    }


def _heavy(name: str) -> bool:
    return any(name == h or name.startswith(h + ".") for h in HEAVY)


def heavy_modules() -> set[str]:
    """cvxalloc modules that import a heavy package at module level (directly or through others)."""
    graph = module_graph()
    heavy = {m for m, (top, _inner) in IMPORTS.items() if any(_heavy(n) for n in top)}
    changed = True
    while changed:
        changed = False
        for m, deps in graph.items():
            if m not in heavy and deps & heavy:
                heavy.add(m)
                changed = True
    return heavy


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def _label(m: str) -> str:
    return f"cvxalloc.{m}" if m else "cvxalloc"


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


#: The largest module the workflows layer may hold (issue 23: rooms small enough to read).
MAX_WORKFLOW_LINES = 700


def test_workflow_modules_stay_small():
    workflows = list(LAYERS).index("workflows")
    lines = {m: len(path.read_text().splitlines()) for m, path in MODULES.items()}
    big = {
        _label(m): n
        for m, n in lines.items()
        if layer_of(m) == workflows and n > MAX_WORKFLOW_LINES
    }
    assert not big, f"workflow modules over {MAX_WORKFLOW_LINES} lines (split them by job): {big}"


def test_no_import_cycles():
    cycles = _cycles(module_graph())
    assert not cycles, "module-level import circles: " + "; ".join(
        " <-> ".join(_label(m) for m in c) for c in cycles
    )


def test_imports_only_point_down():
    upward = []
    for m, (top, inner) in IMPORTS.items():
        for where, names in (("module level", top), ("in a function", inner)):
            for name in names:
                targets = _internal(name)
                if not targets or (m, targets[-1]) in HIDDEN:
                    continue
                for t in targets:
                    if t != m and layer_of(t) > layer_of(m):
                        upward.append(f"{_label(m)} imports {_label(t)} ({where})")
    layers = list(LAYERS)
    assert not upward, (
        "imports that run up the layers (mend the import, or move the module) "
        + " <- ".join(layers)
        + ":\n  "
        + "\n  ".join(sorted(upward))
    )


def test_function_level_imports_only_defer_heavy_dependencies():
    heavy = heavy_modules()
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for m, (_top, inner) in IMPORTS.items():
        for name in inner:
            if _heavy(name):
                continue
            targets = _internal(name)
            t = targets[-1] if targets else name  # a cvxalloc module, or a light package
            if t == m or t in heavy:
                continue
            found[(m, t)].append(name)
    new = [
        f"{_label(m)}: import {_label(t) if t in MODULES else t} inside a function "
        "(move it to the top)"
        for m, t in found
        if (m, t) not in HIDDEN
    ]
    gone = [f"{_label(m)} -> {_label(t)}" for m, t in HIDDEN if (m, t) not in found]
    assert not new, "hidden imports:\n  " + "\n  ".join(sorted(new))
    assert not gone, (
        "these imports are no longer hidden: remove them from HIDDEN in tests/test_layers.py:\n  "
        + "\n  ".join(sorted(gone))
    )


@pytest.mark.parametrize("module", ["", "cli", "scenario", "io", "solve", "solvers.aggregate"])
def test_everyday_modules_do_not_load_heavy_dependencies(module):
    """``import cvxalloc``, the CLI, io and the default solver never load CVXPY, matplotlib, ..."""
    assert module not in heavy_modules()


def test_certifying_a_constrained_scenario_does_not_load_cvxpy():
    """The constraint terms take a number or a CVXPY Parameter without importing CVXPY."""
    code = (
        "import sys, cvxalloc\n"
        "from cvxalloc import Constraints\n"
        "sc = cvxalloc.example_scenario()\n"
        "sc = sc.with_(constraints=Constraints(max_mean_system_time=30.0, max_mean_tokens=3000))\n"
        "cert = cvxalloc.certify(sc, sc.min_tokens)\n"
        "assert cert.kind == 'lagrangian-frank-wolfe', cert.kind\n"
        "assert 'cvxpy' not in sys.modules, 'CVXPY was imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def _stated_layer(module: str) -> str | None:
    """The layer a module's docstring states (a line starting ``Layer: <name>``), or None."""
    doc = ast.get_docstring(ast.parse(MODULES[module].read_text(encoding="utf-8"))) or ""
    found = re.search(r"^Layer: (\w+)", doc, re.M)
    return found.group(1) if found else None


def test_module_docstrings_name_their_layer():
    """Every top-level module and package states its layer; a module inside a package states
    it too or goes by its package's; a statement is the layer this test assigns."""
    names = list(LAYERS)
    missing, wrong = [], []
    for m in MODULES:
        stated = _stated_layer(m)
        own = names[layer_of(m)]
        if stated is None and (m in PACKAGES or "." not in m):
            missing.append(_label(m))
        elif stated is not None and stated != own:
            wrong.append(f"{_label(m)} says {stated}, is {own}")
    assert not missing, "docstrings without 'Layer: <name>': " + ", ".join(sorted(missing))
    assert not wrong, "docstrings naming the wrong layer: " + "; ".join(sorted(wrong))
