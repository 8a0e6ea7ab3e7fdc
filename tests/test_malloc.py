"""The command line's allocator setting (cvxalloc/_malloc.py)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from cvxalloc._malloc import keep_freed_memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def test_applies_on_glibc_and_is_a_no_op_elsewhere():
    # run in a child: the setting is process-wide and the test process keeps its own
    code = "from cvxalloc._malloc import keep_freed_memory as k; print(k())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(GLIBC)


@pytest.mark.skipif(GLIBC, reason="the setting applies here")
def test_elsewhere_it_says_so():
    assert keep_freed_memory() is False
