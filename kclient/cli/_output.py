"""Terminal output for kbctl: aligned tables, JSON, and a progress bar (plain ANSI, no deps).

Tables go to stdout; styling (bold headers) only when stdout is a terminal and ``NO_COLOR`` is
unset. The progress bar writes to stderr and only on a terminal, so pipes and scripts see clean
output.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import orjson

__all__ = ["Progress", "print_json", "print_table", "styled"]


def styled(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple | set):
        return ",".join(map(str, value)) or "-"
    return str(value)


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, stream: TextIO | None = None
) -> None:
    """Columns aligned to their widest cell; numbers right-aligned."""
    out = stream or sys.stdout
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [
        bool(rows) and all(isinstance(r[i], int) and not isinstance(r[i], bool) for r in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    head = line([h.upper() for h in headers])
    out.write((f"\033[1m{head}\033[0m" if styled(out) else head) + "\n")
    for row in cells:
        out.write(line(row) + "\n")


def print_json(doc: Any, *, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
    out.write("\n")


class Progress:
    """``[#####.....]  45%  1,234,567/2,000,000  345,678 rec/s`` redrawn on stderr (TTY only)."""

    def __init__(self, total: int, *, label: str = "", stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.start = time.monotonic()
        self._last = 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        fraction = min(done / self.total, 1.0)
        width = 30
        filled = int(fraction * width)
        rate = done / max(now - self.start, 1e-9)
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(
            f"\r{self.label}[{bar}] {fraction * 100:5.1f}%  {done:,}/{self.total:,}  "
            f"{rate:,.0f} rec/s\033[K"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()
