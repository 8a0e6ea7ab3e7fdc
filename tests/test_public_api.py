"""The stated public API (cvxalloc/_public.py) holds, and the docs use only it.

Modeled on scipy's ``scipy/_lib/tests/test_public_api.py``: the public modules
and their names are listed in one place; a promised name or module that
disappears fails here, a new module must be declared public or internal, and
every ``cvxalloc...`` path that docs/ or README.md mention is imported here and
must be public. Everything not listed is free to move.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import cvxalloc
from cvxalloc._public import INTERNAL, PUBLIC

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(cvxalloc.__path__, "cvxalloc."))


def _private(name: str) -> bool:
    return any(part.startswith("_") and part != "__main__" for part in name.split("."))


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_every_public_module_has_its_names(module):
    mod = importlib.import_module(module)
    missing = [n for n in PUBLIC[module] if not hasattr(mod, n)]
    assert not missing, f"{module} no longer has its public names {missing} (cvxalloc/_public.py)"
    declared = getattr(mod, "__all__", None)
    if declared is not None:
        absent = [n for n in PUBLIC[module] if not n.startswith("__") and n not in declared]
        assert not absent, f"{module}.__all__ leaves out public names {absent}"


def test_every_module_is_public_internal_or_private():
    found = set(_modules()) | {"cvxalloc"}
    unexpected = [
        m for m in sorted(found) if m not in PUBLIC and m not in INTERNAL and not _private(m)
    ]
    assert not unexpected, (
        f"modules in neither list of cvxalloc/_public.py: {unexpected}; add each to PUBLIC "
        "(with its names, and to docs/api.md) or to INTERNAL"
    )
    gone = [m for m in (*PUBLIC, *INTERNAL) if m not in found]
    assert not gone, f"listed in cvxalloc/_public.py but gone: {gone}"
    both = sorted(set(PUBLIC) & set(INTERNAL))
    assert not both, f"both public and internal: {both}"


def test_the_docs_list_of_the_public_api_is_this_one():
    """docs/api.md names every public module and every name it promises, and no other."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    headed = re.findall(r"^## `(cvxalloc[\w.]*)`", text, re.M)
    assert sorted(headed) == sorted(PUBLIC), "docs/api.md has one section per public module"
    for module, names in PUBLIC.items():
        section = text.split(f"## `{module}`", 1)[1].split("\n## ", 1)[0]
        listed = set(re.findall(r"`([A-Za-z_]\w*)`", section))
        assert listed == set(names), (module, sorted(listed ^ set(names)))


# --------------------------------------------------------------------------
# the docs use only the public API, and every path they give imports
_DOTTED = re.compile(r"(?<![\w/.-])cvxalloc(?:\.[A-Za-z_]\w*)+")


def _doc_paths() -> dict[str, set[str]]:
    """Every dotted ``cvxalloc...`` path and ``from cvxalloc... import name`` in the docs,
    with the files that mention it."""
    out: dict[str, set[str]] = {}
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        where = doc.relative_to(ROOT).as_posix()
        for path in _DOTTED.findall(text):
            out.setdefault(path, set()).add(where)
        for line in text.splitlines():
            m = re.match(r"^\s*from (cvxalloc(?:\.\w+)*) import (.+)$", line)
            if m and "(" not in m.group(2):
                for name in m.group(2).split(","):
                    out.setdefault(f"{m.group(1)}.{name.strip()}", set()).add(where)
    return out


def _module_prefix(parts: list[str]) -> int:
    """How many leading parts of a dotted path name a module."""
    known = set(_modules()) | {"cvxalloc"}
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in known:
            return k
    return 0


def test_the_docs_name_only_public_modules_and_names():
    bad = []
    for path, where in sorted(_doc_paths().items()):
        parts = path.split(".")
        k = _module_prefix(parts)
        module = ".".join(parts[:k])
        if module not in PUBLIC:
            bad.append(f"{path} ({', '.join(sorted(where))}): module {module} is not public")
        elif k < len(parts) and parts[k] not in PUBLIC[module]:
            bad.append(f"{path} ({', '.join(sorted(where))}): {parts[k]} is not public")
    assert not bad, "docs name private or internal API:\n  " + "\n  ".join(bad)


def test_every_import_path_in_the_docs_works():
    broken = []
    for path, where in sorted(_doc_paths().items()):
        parts = path.split(".")
        k = _module_prefix(parts)
        try:
            obj = importlib.import_module(".".join(parts[:k]))
            for attr in parts[k:]:
                obj = getattr(obj, attr)
        except (ImportError, AttributeError) as exc:
            broken.append(f"{path} ({', '.join(sorted(where))}): {exc}")
    assert not broken, "import paths in the docs that fail:\n  " + "\n  ".join(broken)


def test_the_docs_scan_finds_what_it_should():
    """The checks above can fail: a private path in a doc is caught."""
    parts = "cvxalloc.simulate.engine._FifoServer".split(".")
    k = _module_prefix(parts)
    assert ".".join(parts[:k]) == "cvxalloc.simulate.engine" not in PUBLIC
    paths = _doc_paths()
    assert "cvxalloc.solve" in paths and "cvxalloc.testing.assert_near_optimal" in paths


# --------------------------------------------------------------------------
# no private name crosses a package boundary
_PACKAGES = {m for m in _modules() if (ROOT / m.replace(".", "/") / "__init__.py").exists()}


def _owner(target: str) -> str:
    """The package whose modules may share ``target``'s private names (``target`` itself for a
    top-level module: its privates are its own)."""
    package = target if target in _PACKAGES else target.rpartition(".")[0]
    return target if package == "cvxalloc" else package


def _private_imports(path: Path) -> list[str]:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    module = ".".join(parts)
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = parts if is_package else parts[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if not target.startswith("cvxalloc"):
            continue
        for alias in node.names:
            name = alias.name
            if not name.startswith("_") or name.startswith("__"):
                continue
            if f"{target}.{name}" in _PACKAGES or f"{target}.{name}" in set(_modules()):
                continue  # a private module of the package: the package's own
            owner = _owner(target)
            if module != owner and not module.startswith(owner + "."):
                out.append(f"{rel.as_posix()}.py:{node.lineno}: from {target} import {name}")
    return out


def test_no_private_name_of_a_module_is_imported_from_outside_its_package():
    files = [
        p
        for base in ("cvxalloc", "validation", "benchmarks")
        for p in sorted((ROOT / base).rglob("*.py"))
    ]
    found = [line for p in files for line in _private_imports(p)]
    assert not found, (
        "private names imported across a package boundary (make the name public, or move "
        "the code):\n  " + "\n  ".join(found)
    )
