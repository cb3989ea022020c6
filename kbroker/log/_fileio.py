"""Low-level file helpers for the log: whole appends with rollback, whole reads, dir fsync.

Every log file (``.log``, ``.index``, ``.timeindex``) is an :class:`AppendOnlyFile`: it grows only
at its end and shrinks only by truncation, and its committed length is tracked in memory so that
a torn write (ENOSPC, EIO half-way through) can be cut back without trusting the file system's
idea of the file size.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final, TypeAlias

from kbroker.errors import StorageError

__all__ = [
    "AppendOnlyFile",
    "Buffer",
    "fsync_dir",
    "pread_exact",
    "pwrite_all",
    "remove_quietly",
]

Buffer: TypeAlias = bytes | bytearray | memoryview

_log = logging.getLogger(__name__)


def _as_bytes_view(buf: Buffer) -> memoryview:
    view = memoryview(buf)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _advance(views: list[memoryview], written: int) -> list[memoryview]:
    """The buffers still to write once ``written`` bytes of ``views`` went out."""
    while views and written >= len(views[0]):
        written -= len(views[0])
        views = views[1:]
    if views and written:
        views = [views[0][written:], *views[1:]]
    return views


def pwrite_all(fd: int, buffers: Sequence[Buffer], position: int) -> int:
    """Write every buffer at ``position`` (one ``pwritev`` unless the kernel writes short).

    Buffers are byte buffers (``len`` counts bytes: bytes, bytearray or a ``"B"`` memoryview).
    """
    total = sum(map(len, buffers))
    written = os.pwritev(fd, buffers, position)
    if written == total:
        return total
    views = [_as_bytes_view(b) for b in buffers]
    done = 0
    while done < total:
        if written <= 0:
            raise OSError(errno.EIO, "pwritev wrote nothing")
        done += written
        views = _advance(views, written)
        if done < total:
            written = os.pwritev(fd, views, position + done)
    return total


def pread_exact(fd: int, size: int, position: int) -> bytes:
    """Up to ``size`` bytes at ``position``; fewer only at end of file."""
    data = os.pread(fd, size, position)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, position + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that creations, renames and deletions in it are durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    """Unlink ``path``; a missing file is fine and other failures are only logged."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        _log.warning("cannot remove %s: %s", path, exc)


#: ``AppendOnlyFile._fd`` of a file whose descriptor was given back (reopened on use).
_UNOPENED: Final = -1
#: ``AppendOnlyFile._fd`` once closed for good (any use fails with EBADF).
_CLOSED: Final = -2


class AppendOnlyFile:
    """One file that is only appended to or cut back, with its committed length in memory.

    Invariant: bytes ``[0, length)`` are the committed content. A failed append is cut back to
    the previous length; if even that truncation fails, the cut is retried before the next
    write (``_trim_pending``), so garbage never sits between committed bytes.

    Descriptors: :meth:`close_until_used` (only while the file is not yet shared, right
    after opening it) gives its descriptor back; the owner reopens it on its next write. An
    index not written since it was created or loaded (a segment loaded at start-up and not
    appended to since, an idle partition's) then holds no descriptor, so a broker hosting
    thousands of idle replicas needs about one per replica, not three.

    Concurrency: the owning (event-loop) thread appends, truncates, renames and closes;
    :meth:`fsync` may run in another thread at the same time provided the owner does not close
    the fd meanwhile (the segment's pin count guarantees this). An fsync of a file whose
    descriptor is given back uses a descriptor of its own (fsync flushes the file, not the
    descriptor).
    """

    __slots__ = ("_fd", "_length", "_trim_pending", "path")

    def __init__(self, path: Path, fd: int, length: int) -> None:
        self.path = path
        self._fd = fd
        self._length = length
        self._trim_pending = False

    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> AppendOnlyFile:
        """Open ``path`` read-write; ``create`` makes a new empty file (truncating any)."""
        flags = os.O_RDWR | os.O_CLOEXEC
        if create:
            flags |= os.O_CREAT | os.O_TRUNC
        try:
            fd = os.open(path, flags, 0o644)
            length = os.fstat(fd).st_size
        except OSError as exc:
            raise StorageError(f"cannot open {path}: {exc}") from exc
        return cls(path, fd, length)

    @property
    def length(self) -> int:
        return self._length

    @property
    def fd(self) -> int:
        """The descriptor (the owner's thread; reopened if given back)."""
        if self._fd == _UNOPENED:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            except OSError as exc:
                raise StorageError(f"cannot open {self.path}: {exc}") from exc
        return self._fd

    def close_until_used(self) -> None:
        """Give the descriptor back until the owner next needs it (see the class docstring)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, _UNOPENED
            os.close(fd)

    def append(self, buffers: Sequence[Buffer]) -> int:
        """Write ``buffers`` at the end and return the position they start at.

        On failure the file is cut back to its previous length and StorageError is raised;
        the committed length is unchanged.
        """
        position = self._length
        self._finish_trim()
        try:
            written = pwrite_all(self.fd, buffers, position)
        except OSError as exc:
            self.rollback(position)
            raise StorageError(f"write to {self.path} failed: {exc}") from exc
        self._length = position + written
        return position

    def rollback(self, length: int) -> None:
        """Cut back to ``length`` after a failure; never raises (a failed cut is retried)."""
        self._length = min(self._length, length)
        try:
            os.ftruncate(self.fd, self._length)
            self._trim_pending = False
        except (OSError, StorageError) as exc:
            _log.warning("cannot cut %s back to %d bytes: %s", self.path, self._length, exc)
            self._trim_pending = True

    def truncate(self, length: int) -> None:
        """Shrink to ``length`` bytes; raises StorageError (length unchanged) on failure."""
        if length > self._length:
            raise ValueError(f"cannot truncate {self.path} forward to {length}")
        try:
            os.ftruncate(self.fd, length)
        except OSError as exc:
            raise StorageError(f"cannot truncate {self.path}: {exc}") from exc
        self._length = length
        self._trim_pending = False

    def replace_content(self, data: Buffer) -> None:
        """Make the file hold exactly ``data`` (used when an index is rebuilt)."""
        self.truncate(0)
        self.append([data])

    def pread(self, size: int, position: int) -> bytes:
        """Up to ``size`` committed bytes from ``position``."""
        size = max(0, min(size, self._length - position))
        try:
            return pread_exact(self.fd, size, position)
        except OSError as exc:
            raise StorageError(f"read from {self.path} failed: {exc}") from exc

    def read_all(self) -> bytes:
        return self.pread(self._length, 0)

    def fsync(self) -> None:
        """Flush to stable storage (any thread; raises OSError)."""
        fd = self._fd
        if fd != _UNOPENED:
            os.fsync(fd)
            return
        own = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(own)
        finally:
            os.close(own)

    def rename(self, path: Path) -> None:
        os.rename(self.path, path)
        self.path = path

    def close(self) -> None:
        fd, self._fd = self._fd, _CLOSED
        if fd >= 0:
            os.close(fd)

    def _finish_trim(self) -> None:
        if not self._trim_pending:
            return
        try:
            os.ftruncate(self.fd, self._length)
        except OSError as exc:
            raise StorageError(f"cannot cut back {self.path}: {exc}") from exc
        self._trim_pending = False
