"""The doctests of every cvxalloc module, run against the installed package.

pytest's ``--doctest-modules`` collects the source tree, which clashes with a
non-editable install (CI installs the package, then tests it: pytest refuses
"import file mismatch"). Running :func:`doctest.testmod` on each imported
module tests the same examples on the package the user gets.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import cvxalloc

#: Every module of the package but ``__main__`` (importing it runs the CLI).
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(cvxalloc.__path__, "cvxalloc.")
    if not m.name.endswith("__main__")
)


def test_every_module_is_found():
    assert {"cvxalloc.queue.fifo", "cvxalloc.solvers.aggregate", "cvxalloc.scenario"} <= set(
        MODULES
    )


@pytest.mark.parametrize("name", ["cvxalloc", *MODULES])
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, verbose=False, report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed"
