"""Small checkpoint files in Kafka's text format, replaced atomically.

Format (UTF-8 text, ``\\n`` line ends)::

    <version>          0
    <entry count>      N
    <entry>            N lines of space-separated fields

Writing goes to ``<name>.tmp``, fsyncs it, renames it over ``<name>`` and fsyncs the directory,
so a reader sees the old file or the new one, never a mix. A file whose durability may trail its
writing by a few milliseconds is written with ``sync=False`` and handed to a
:class:`DeferredSync`, which fsyncs it in a worker thread: two fsyncs on the event loop for each
of thousands of new partitions held it for seconds on a busy disk.

Reading is tolerant of a missing file (no entries) and strict about a malformed one: it raises
:class:`CheckpointError` naming the file and the problem. A file written this way can only be
malformed after disk corruption or a foreign edit, and guessing would hide that; each caller
decides whether a malformed file may be treated as absent (the recovery-point checkpoint may:
recovering more is always safe; the leader-epoch checkpoint may not).

Concurrency: plain blocking functions, safe from any thread; callers serialise writes of one file.
:class:`DeferredSync` is used on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
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
    "DeferredSync",
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

log = logging.getLogger(__name__)


class CheckpointError(StorageError):
    """A checkpoint file exists but is malformed."""


def write_checkpoint(
    path: Path, lines: Iterable[str], *, version: int = CURRENT_VERSION, sync: bool = True
) -> None:
    """Atomically replace ``path`` with the given entry lines. Raises StorageError.

    With ``sync=False`` nothing is fsynced: every reader sees the new file at once, but a crash
    before the caller makes it durable (:class:`DeferredSync`) may leave the old file, no file
    or an empty one (which reads as malformed)."""
    entries = list(lines)
    text = f"{version}\n{len(entries)}\n" + "".join(f"{line}\n" for line in entries)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, text.encode())
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if sync:
            fsync_dir(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot write checkpoint {path}: {exc}") from exc


class DeferredSync:
    """Makes files written with ``sync=False`` durable off the event loop: a worker thread
    fsyncs each file, then each of their directories; the files added in one turn of the loop
    share one job. A file gone meanwhile (its log deleted) is skipped; a failing fsync is
    logged, leaving the file as a crash would (see :func:`write_checkpoint`).

    Concurrency: :meth:`add` on the event loop (without a running loop it syncs at once).
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: list[Path] = []

    def add(self, path: Path) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            _sync_files([path])
            return
        if not self._pending:
            loop.call_soon(self._submit, loop)
        self._pending.append(path)

    def _submit(self, loop: asyncio.AbstractEventLoop) -> None:
        paths, self._pending = self._pending, []
        loop.run_in_executor(None, _sync_files, paths)


def _sync_files(paths: Sequence[Path]) -> None:
    """fsync ``paths``, then their directories (see DeferredSync)."""
    for target in [*paths, *dict.fromkeys(p.parent for p in paths)]:
        try:
            fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot open %s to make it durable: %s", target, exc)
            continue
        try:
            os.fsync(fd)
        except OSError as exc:
            log.warning("cannot make %s durable: %s", target, exc)
        finally:
            os.close(fd)


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
