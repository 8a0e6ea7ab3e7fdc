"""What every experiment returns, and small formatting helpers."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Section", "table", "progress", "PROGRESS"]

#: Progress bars: None = on when stderr is a terminal (set by ``run --no-progress``).
PROGRESS: dict[str, bool | None] = {"on": None}


def progress(items: Iterable, desc: str, total: int | None = None, unit: str = "step"):
    """``items`` with a tqdm bar on stderr (see :data:`PROGRESS`), else ``items`` itself."""
    on = PROGRESS["on"]
    if on is None:
        on = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not on:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr, leave=False)


@dataclass
class Section:
    """One experiment's output.

    Attributes
    ----------
    key : str
        Short identifier (``"a-load"``, ...).
    title : str
        Heading in the report.
    figures : list of str
        PNG file names (relative to the output directory).
    text : str
        Markdown: what the figure establishes, in numbers.
    numbers : dict
        The figures behind the text (written to ``results.json``).
    ok : bool
        Whether the experiment's checks held (stated in the report).
    """

    key: str
    title: str
    figures: list[str]
    text: str
    numbers: dict[str, Any] = field(default_factory=dict)
    ok: bool = True


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table (floats with 6 significant digits unless pre-formatted)."""

    def cell(x: Any) -> str:
        if isinstance(x, float):
            return f"{x:.6g}"
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)
