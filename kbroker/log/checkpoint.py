"""Small checkpoint files in Kafka's text format, replaced atomically.

Format (UTF-8 text, ``\\n`` line ends)::

    <version>          0
    <entry count>      N
    <entry>            N lines of space-separated fields

Writing goes to ``<name>.tmp``, fsyncs it, renames it over ``<name>`` and fsyncs the directory,
so a reader sees the old file or the new one, never a mix.

Reading is tolerant of a missing file (no entries) and strict about a malformed one: it raises
:class:`CheckpointError` naming the file and the problem. A file written this way can only be
malformed after disk corruption or a foreign edit, and guessing would hide that; each caller
decides whether a malformed file may be treated as absent (the recovery-point checkpoint may:
recovering more is always safe; the leader-epoch checkpoint may not).

Concurrency: plain blocking functions, safe from any thread; callers serialise writes of one file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final, TypeVar

from kbroker.errors import StorageError
from kbroker.log._fileio import fsync_dir

__all__ = [
    "HIGH_WATERMARK_CHECKPOINT",
    "RECOVERY_POINT_CHECKPOINT",
    "TMP_SUFFIX",
    "CheckpointError",
    "OffsetCheckpoint",
    "read_checkpoint",
    "write_checkpoint",
]

TMP_SUFFIX: Final = ".tmp"
CURRENT_VERSION: Final = 0
#: Per data dir: offset below which each partition's log is known to be on disk.
RECOVERY_POINT_CHECKPOINT: Final = "recovery-point-offset-checkpoint"
#: Per data dir: each partition's high watermark.
HIGH_WATERMARK_CHECKPOINT: Final = "replication-offset-checkpoint"

T = TypeVar("T")


class CheckpointError(StorageError):
    """A checkpoint file exists but is malformed."""


def write_checkpoint(path: Path, lines: Iterable[str], *, version: int = CURRENT_VERSION) -> None:
    """Atomically replace ``path`` with the given entry lines. Raises StorageError."""
    entries = list(lines)
    text = f"{version}\n{len(entries)}\n" + "".join(f"{line}\n" for line in entries)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot write checkpoint {path}: {exc}") from exc


def read_checkpoint(
    path: Path, parse: Callable[[list[str]], T], *, version: int = CURRENT_VERSION
) -> list[T]:
    """Parsed entries of ``path`` ([] when missing); ``parse`` gets each line's fields.

    Raises CheckpointError when the file is malformed (``parse`` may raise ValueError).
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    try:
        return _parse(lines, parse, version)
    except ValueError as exc:
        raise CheckpointError(f"malformed checkpoint {path}: {exc}") from exc


def _parse(lines: Sequence[str], parse: Callable[[list[str]], T], version: int) -> list[T]:
    if len(lines) < 2:
        raise ValueError("missing version or entry count")
    if int(lines[0]) != version:
        raise ValueError(f"unsupported version {lines[0]!r}")
    count = int(lines[1])
    if count != len(lines) - 2:
        raise ValueError(f"expected {count} entries, found {len(lines) - 2}")
    return [parse(line.split(" ")) for line in lines[2:]]


def _topic_partition_offset(fields: list[str]) -> tuple[tuple[str, int], int]:
    if len(fields) != 3 or not fields[0]:
        raise ValueError(f"bad line {' '.join(fields)!r}")
    topic, partition, offset = fields[0], int(fields[1]), int(fields[2])
    if partition < 0 or offset < 0:
        raise ValueError(f"negative value in {' '.join(fields)!r}")
    return (topic, partition), offset


class OffsetCheckpoint:
    """A ``topic partition offset`` checkpoint (recovery points, high watermarks)."""

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[tuple[str, int], int]:
        """Offsets by (topic, partition); {} when the file is missing. Raises CheckpointError."""
        return dict(read_checkpoint(self.path, _topic_partition_offset))

    def write(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Atomically replace the file. Raises StorageError."""
        write_checkpoint(
            self.path,
            (
                f"{topic} {partition} {offset}"
                for (topic, partition), offset in sorted(offsets.items())
            ),
        )
