"""Writing output files atomically: all or nothing, with ordinary permissions.

Layer: parts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import ScenarioError

__all__ = ["publish", "write_atomic", "write_text"]


def publish(tmp: str | Path, path: str | Path) -> None:
    """Give the temporary file ``tmp`` the mode a new file gets here, then rename it to ``path``.

    ``tempfile.mkstemp`` creates files with mode 0600; an output file should
    get the usual ``0666 & ~umask`` instead.
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    os.replace(tmp, path)


def write_atomic(
    path: str | Path, write: Callable[[str], None], what: str = "--output", suffix: str = ".tmp"
) -> Path:
    """Write a file all or nothing: ``write(tmp)`` fills a temporary file beside ``path``.

    The temporary file is renamed to ``path`` only when ``write`` returns (with
    the mode a new file gets here); on any error it is removed and ``path`` is
    untouched.

    Raises
    ------
    ScenarioError
        If the directory of ``path`` does not exist (named as ``what``).
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ScenarioError(f"{what} {str(path)!r}: directory {str(parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | Path, text: str, what: str = "--output") -> Path:
    """Write ``text`` (newline-terminated) to ``path`` atomically (:func:`write_atomic`)."""
    body = text if text.endswith("\n") else text + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(body)

    return write_atomic(path, write, what)
