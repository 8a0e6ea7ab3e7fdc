"""Writing output files atomically: all or nothing, with ordinary permissions."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ScenarioError

__all__ = ["publish", "write_text"]


def publish(tmp: str | Path, path: str | Path) -> None:
    """Give the temporary file ``tmp`` the mode a new file gets here, then rename it to ``path``.

    ``tempfile.mkstemp`` creates files with mode 0600; an output file should
    get the usual ``0666 & ~umask`` instead.
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    os.replace(tmp, path)


def write_text(path: str | Path, text: str, what: str = "--output") -> Path:
    """Write ``text`` (newline-terminated) to ``path`` atomically: all or nothing.

    Raises
    ------
    ScenarioError
        If the directory of ``path`` does not exist (named as ``what``).
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise ScenarioError(f"{what} {str(path)!r}: directory {str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
