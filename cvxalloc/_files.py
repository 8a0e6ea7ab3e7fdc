"""Writing output files atomically: all or nothing, with ordinary permissions."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["publish"]


def publish(tmp: str | Path, path: str | Path) -> None:
    """Give the temporary file ``tmp`` the mode a new file gets here, then rename it to ``path``.

    ``tempfile.mkstemp`` creates files with mode 0600; an output file should
    get the usual ``0666 & ~umask`` instead.
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    os.replace(tmp, path)
