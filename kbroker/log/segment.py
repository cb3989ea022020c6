"""One segment of a partition log: a ``.log`` file of whole batches and its two indexes.

Files, named by the segment's base offset zero-padded to 20 digits so that ``ls`` sorts them::

    00000000000000368769.log        batches back to back (see batch.py), nothing else
    00000000000000368769.index      sparse offset index (see index.py)
    00000000000000368769.timeindex  sparse time index (see index.py)

A segment being deleted has its files renamed with a ``.deleted`` suffix first.

Invariants:

* the ``.log`` holds only whole, valid, contiguous batches: the first starts at offset
  ``base_offset``, each next one where the previous ended, and the last ends at ``next_offset``
  (``next_offset == base_offset`` when empty);
* every offset in the segment fits an int32 relative to ``base_offset``;
* the indexes agree with the log (index.py); ``max_timestamp`` is the largest batch
  ``max_timestamp`` in the segment (-1 when empty).

Concurrency: owned by one thread (the event loop). A flush thread may call :meth:`fsync` while the
owner appends or truncates; the owner never closes the files of a pinned segment (:meth:`pin`,
:meth:`unpin`, :meth:`close` and :meth:`delete` are called under the partition log's lock, and
the last unpin finishes a deferred close or delete).
"""

from __future__ import annotations

import logging
import os
from array import array
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Final, NamedTuple

from kbroker.errors import CorruptRecordError, StorageError
from kbroker.log._fileio import AppendOnlyFile, Buffer, remove_quietly
from kbroker.log.batch import HEADER_SIZE, BatchHeader, batch_span, read_header, verify_crc
from kbroker.log.index import NO_TIMESTAMP, CorruptIndexError, OffsetIndex, TimeIndex

__all__ = [
    "DELETED_SUFFIX",
    "INDEX_SUFFIX",
    "INT32_MAX",
    "LOG_SUFFIX",
    "TIME_INDEX_SUFFIX",
    "BatchSpan",
    "LogSegment",
    "RecoveryResult",
    "segment_path",
]

LOG_SUFFIX: Final = ".log"
INDEX_SUFFIX: Final = ".index"
TIME_INDEX_SUFFIX: Final = ".timeindex"
DELETED_SUFFIX: Final = ".deleted"
INT32_MAX: Final = (1 << 31) - 1
#: Bytes read at a time when walking batch headers (index lookups, tail checks).
_HEADER_WINDOW: Final = 16 * 1024
#: Bytes read at a time when recovery checks CRCs.
_RECOVERY_CHUNK: Final = 4 * 1024 * 1024

_log = logging.getLogger(__name__)


def segment_path(directory: Path, base_offset: int, suffix: str) -> Path:
    """``<directory>/<20-digit base offset><suffix>``."""
    return directory / f"{base_offset:020d}{suffix}"


class BatchSpan(NamedTuple):
    """What the segment needs to know about a batch it appends (no payload)."""

    base_offset: int
    next_offset: int
    size: int
    max_timestamp: int


class RecoveryResult(NamedTuple):
    """Outcome of :meth:`LogSegment.recover`."""

    truncated_bytes: int
    """Bytes cut from the end of the ``.log`` (torn or corrupt tail)."""
    epoch_starts: list[tuple[int, int]]
    """(leader epoch, base offset) of every batch whose epoch differs from the previous one."""


class _IndexBuilder:
    """Decides which batches get index entries; shared by append and recovery.

    A batch is indexed when the segment has no entry yet or when more than
    ``index_interval_bytes`` were appended since the start of the last indexed batch. A
    time-index entry is added alongside when the segment's largest timestamp grew since the
    last time-index entry. New entries are collected (relative offsets) for the caller to write.
    """

    __slots__ = (
        "base_offset",
        "interval",
        "last_indexed_timestamp",
        "last_position",
        "max_timestamp",
        "offsets",
        "positions",
        "time_offsets",
        "timestamps",
    )

    def __init__(
        self,
        base_offset: int,
        interval: int,
        *,
        last_position: int | None = None,
        max_timestamp: int = NO_TIMESTAMP,
        last_indexed_timestamp: int = NO_TIMESTAMP,
    ) -> None:
        self.base_offset = base_offset
        self.interval = interval
        self.last_position = last_position
        self.max_timestamp = max_timestamp
        self.last_indexed_timestamp = last_indexed_timestamp
        self.offsets = array("i")
        self.positions = array("i")
        self.timestamps = array("q")
        self.time_offsets = array("i")

    def add(self, base_offset: int, position: int, max_timestamp: int) -> None:
        self.max_timestamp = max(self.max_timestamp, max_timestamp)
        if self.last_position is not None and position - self.last_position <= self.interval:
            return
        relative = base_offset - self.base_offset
        self.offsets.append(relative)
        self.positions.append(position)
        self.last_position = position
        if self.max_timestamp > self.last_indexed_timestamp:
            self.timestamps.append(self.max_timestamp)
            self.time_offsets.append(relative)
            self.last_indexed_timestamp = self.max_timestamp


class LogSegment:
    """One segment: its ``.log`` file, offset index and time index (module docstring)."""

    __slots__ = (
        "_created_ms",
        "_delete_pending",
        "_log",
        "_max_timestamp",
        "_next_offset",
        "_offset_index",
        "_pins",
        "_released",
        "_time_index",
        "base_offset",
    )

    def __init__(
        self,
        *,
        base_offset: int,
        log: AppendOnlyFile,
        offset_index: OffsetIndex,
        time_index: TimeIndex,
        next_offset: int,
        max_timestamp: int,
    ) -> None:
        self.base_offset = base_offset
        self._log = log
        self._offset_index = offset_index
        self._time_index = time_index
        self._next_offset = next_offset
        self._max_timestamp = max_timestamp
        self._created_ms: int | None = None
        self._pins = 0
        self._released = False
        self._delete_pending = False

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(cls, directory: Path, base_offset: int) -> LogSegment:
        """A new empty segment (any existing files of that name are truncated).

        Raises StorageError, leaving no file of the segment behind.
        """
        with ExitStack() as stack:
            for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                stack.callback(remove_quietly, segment_path(directory, base_offset, suffix))
            log = AppendOnlyFile.open(segment_path(directory, base_offset, LOG_SUFFIX), create=True)
            stack.callback(log.close)
            offset_index = OffsetIndex.create(
                segment_path(directory, base_offset, INDEX_SUFFIX), base_offset
            )
            stack.callback(offset_index.close)
            time_index = TimeIndex.create(
                segment_path(directory, base_offset, TIME_INDEX_SUFFIX), base_offset
            )
            stack.pop_all()
        return cls(
            base_offset=base_offset,
            log=log,
            offset_index=offset_index,
            time_index=time_index,
            next_offset=base_offset,
            max_timestamp=NO_TIMESTAMP,
        )

    @classmethod
    def load(cls, directory: Path, base_offset: int, *, end_offset: int | None) -> LogSegment:
        """Open a segment trusting its files, without reading payloads.

        The indexes are read and sanity-checked, then the batch headers after the last
        offset-index entry are walked to find the end offset and largest timestamp.
        ``end_offset`` is the next segment's base offset (None for the last segment); the
        walk must end exactly there. Raises CorruptIndexError when anything does not fit:
        the caller then recovers the segment.
        """
        paths = [segment_path(directory, base_offset, s) for s in (INDEX_SUFFIX, TIME_INDEX_SUFFIX)]
        if not all(p.exists() for p in paths):
            raise CorruptIndexError(f"missing index file for segment {base_offset}")
        with ExitStack() as stack:
            log = AppendOnlyFile.open(segment_path(directory, base_offset, LOG_SUFFIX))
            stack.callback(log.close)
            offset_index = OffsetIndex.load(paths[0], base_offset)
            stack.callback(offset_index.close)
            time_index = TimeIndex.load(paths[1], base_offset)
            stack.callback(time_index.close)
            offset_index.sanity_check(log.length, end_offset)
            time_index.sanity_check(end_offset)
            segment = cls(
                base_offset=base_offset,
                log=log,
                offset_index=offset_index,
                time_index=time_index,
                next_offset=base_offset,
                max_timestamp=NO_TIMESTAMP,
            )
            segment._load_tail(end_offset)
            stack.pop_all()
        return segment

    @classmethod
    def recover(
        cls, directory: Path, base_offset: int, *, index_interval_bytes: int
    ) -> tuple[LogSegment, RecoveryResult]:
        """Validate every batch (lengths, CRC, contiguity) and rebuild both indexes.

        Stops at the first invalid batch and truncates the ``.log`` there.
        """
        builder = _IndexBuilder(base_offset, index_interval_bytes)
        epoch_starts: list[tuple[int, int]] = []
        with ExitStack() as stack:
            log = AppendOnlyFile.open(segment_path(directory, base_offset, LOG_SUFFIX))
            stack.callback(log.close)
            valid_bytes, next_offset = 0, base_offset
            for position, header in _verified_batches(log, base_offset):
                builder.add(header.base_offset, position, header.max_timestamp)
                if not epoch_starts or epoch_starts[-1][0] != header.leader_epoch:
                    epoch_starts.append((header.leader_epoch, header.base_offset))
                valid_bytes, next_offset = position + header.size, header.next_offset
            truncated = log.length - valid_bytes
            if truncated:
                _log.warning(
                    "%s: truncating %d invalid bytes at position %d",
                    log.path,
                    truncated,
                    valid_bytes,
                )
                log.truncate(valid_bytes)
            offset_index = OffsetIndex.create(
                segment_path(directory, base_offset, INDEX_SUFFIX), base_offset
            )
            stack.callback(offset_index.close)
            offset_index.replace(builder.offsets, builder.positions)
            time_index = TimeIndex.create(
                segment_path(directory, base_offset, TIME_INDEX_SUFFIX), base_offset
            )
            stack.callback(time_index.close)
            time_index.replace(builder.timestamps, builder.time_offsets)
            stack.pop_all()
        offset_index.close_until_used()  # rebuilt in memory and on disk: written no more
        time_index.close_until_used()  # until the segment's next append
        segment = cls(
            base_offset=base_offset,
            log=log,
            offset_index=offset_index,
            time_index=time_index,
            next_offset=next_offset,
            max_timestamp=builder.max_timestamp,
        )
        return segment, RecoveryResult(truncated, epoch_starts)

    def _load_tail(self, end_offset: int | None) -> None:
        """Walk the headers after the last index entry: end offset and largest timestamp."""
        try:
            next_offset, max_timestamp = self._scan_tail()
        except CorruptRecordError as exc:
            raise CorruptIndexError(f"{self._log.path}: {exc}") from exc
        if end_offset is not None and next_offset != end_offset:
            raise CorruptIndexError(
                f"{self._log.path}: ends at offset {next_offset}, next segment at {end_offset}"
            )
        self._next_offset = next_offset
        self._max_timestamp = max_timestamp

    def _scan_tail(self) -> tuple[int, int]:
        """(end offset, largest timestamp), trusting the indexes up to their last entry."""
        start_offset, position = self._offset_index.last_entry
        expected = start_offset
        max_timestamp = self._time_index.last_timestamp
        for _, header in self._walk(position, self._log.length):
            if header.base_offset != expected:
                raise CorruptRecordError(f"offset gap at {expected} (found {header.base_offset})")
            expected = header.next_offset
            max_timestamp = max(max_timestamp, header.max_timestamp)
        if expected - self.base_offset - 1 > INT32_MAX:
            raise CorruptRecordError("relative offset overflow")
        return expected, max_timestamp

    # ------------------------------------------------------------------ state

    @property
    def next_offset(self) -> int:
        """Offset after the last batch (``base_offset`` when empty)."""
        return self._next_offset

    @property
    def size(self) -> int:
        return self._log.length

    @property
    def is_empty(self) -> bool:
        return self._log.length == 0

    @property
    def max_timestamp(self) -> int:
        return self._max_timestamp

    def largest_time_ms(self) -> int:
        """``max_timestamp``, or the ``.log`` file's mtime when no batch carries a timestamp."""
        if self._max_timestamp >= 0:
            return self._max_timestamp
        return os.fstat(self._log.fd).st_mtime_ns // 1_000_000

    @property
    def log_path(self) -> Path:
        return self._log.path

    def __repr__(self) -> str:
        return f"LogSegment(base={self.base_offset}, next={self._next_offset}, size={self.size})"

    # ------------------------------------------------------------------ append

    def should_roll(
        self,
        *,
        batch_size: int,
        last_offset: int,
        now_ms: int,
        segment_bytes: int,
        segment_ms: int,
        pending_bytes: int = 0,
    ) -> bool:
        """True when a batch of ``batch_size`` bytes ending at ``last_offset`` needs a new segment.

        ``pending_bytes`` are bytes the caller will write before that batch (a follower's run).
        An empty segment never rolls. Otherwise roll when the batch would push the size past
        ``segment_bytes``, when ``last_offset`` would overflow an int32 relative offset, or when
        the segment is older than ``segment_ms`` (age from the clock at its first append; for a
        segment loaded from disk, from its first batch's ``max_timestamp``, capped at now).
        """
        if self.is_empty and not pending_bytes:
            return False
        if self.size + pending_bytes + batch_size > segment_bytes:
            return True
        if last_offset - self.base_offset > INT32_MAX:
            return True
        if self.is_empty:
            return False
        return now_ms - self._roll_clock_start(now_ms) > segment_ms

    def _roll_clock_start(self, now_ms: int) -> int:
        if self._created_ms is None:
            first = read_header(self._log.pread(HEADER_SIZE, 0))
            self._created_ms = (
                now_ms if first.max_timestamp < 0 else min(first.max_timestamp, now_ms)
            )
        return self._created_ms

    def append(
        self,
        buffers: Sequence[Buffer],
        spans: Sequence[BatchSpan],
        *,
        index_interval_bytes: int,
        now_ms: int,
    ) -> None:
        """Append whole batches (``buffers`` hold exactly the bytes of ``spans``, in order).

        One positioned vectored write for the data, then the index entries. On any failure
        every file is cut back to its previous length, nothing in memory changes and
        StorageError is raised.
        """
        start = self._log.length
        last_indexed = self._offset_index.last_position
        if (
            len(spans) == 1
            and last_indexed is not None
            and start - last_indexed <= index_interval_bytes
        ):
            self._append_unindexed(buffers, spans[0])
            return
        builder = _IndexBuilder(
            self.base_offset,
            index_interval_bytes,
            last_position=last_indexed,
            max_timestamp=self._max_timestamp,
            last_indexed_timestamp=self._time_index.last_timestamp,
        )
        position = start
        for span in spans:
            builder.add(span.base_offset, position, span.max_timestamp)
            position += span.size
        self._log.append(buffers)
        try:
            self._write_index_entries(builder)
        except StorageError:
            self._log.rollback(start)
            raise
        self._next_offset = spans[-1].next_offset
        self._max_timestamp = builder.max_timestamp
        if start == 0:
            self._created_ms = now_ms

    def _append_unindexed(self, buffers: Sequence[Buffer], span: BatchSpan) -> None:
        """The common case: one batch that gets no index entry, so one write and no more."""
        self._log.append(buffers)
        self._next_offset = span.next_offset
        self._max_timestamp = max(self._max_timestamp, span.max_timestamp)

    def _write_index_entries(self, builder: _IndexBuilder) -> None:
        self._offset_index.append(builder.offsets, builder.positions)
        try:
            self._time_index.append(builder.timestamps, builder.time_offsets)
        except StorageError:
            self._offset_index.drop_last(len(builder.offsets))
            raise

    # ------------------------------------------------------------------ read

    def batch_at(self, offset: int) -> tuple[int, BatchHeader]:
        """(file position, header) of the batch containing ``offset`` (which must be inside).

        One index lookup, then a header walk of at most about ``index.interval.bytes``.
        """
        _, position = self._offset_index.lookup(offset)
        for batch_position, header in self._walk(position, self._log.length):
            if header.next_offset > offset:
                return batch_position, header
        raise CorruptRecordError(f"offset {offset} not found in segment {self.base_offset}")

    def read(
        self, position: int, first: BatchHeader, *, max_bytes: int, max_offset: int, min_one: bool
    ) -> tuple[bytes, int]:
        """Whole batches from ``first`` (at ``position``) as (data, next offset).

        Only batches entirely below ``max_offset``; at most ``max_bytes`` unless ``min_one``
        and the first batch alone is larger. One pread for the data.
        """
        if first.next_offset > max_offset or (first.size > max_bytes and not min_one):
            return b"", first.base_offset
        available = self._log.length - position
        want = max(first.size, min(max_bytes, available))
        data = self._log.pread(want, position)
        if want == available and max_offset >= self._next_offset:
            return data, self._next_offset
        end, next_offset = _whole_batches(data, max_offset)
        return (data if end == len(data) else data[:end]), next_offset

    def offset_for_timestamp(self, timestamp: int) -> int | None:
        """Base offset of the first batch with ``max_timestamp >= timestamp``, None if none."""
        if self._max_timestamp < timestamp:
            return None
        start_offset = self._time_index.lookup(timestamp)
        _, position = self._offset_index.lookup(start_offset)
        for _, header in self._walk(position, self._log.length):
            if header.max_timestamp >= timestamp:
                return header.base_offset
        return None

    def headers(self) -> Iterator[BatchHeader]:
        """Headers of every batch of the segment, in order, without reading payloads."""
        for _position, header in self._walk(0, self.size):
            yield header

    def _walk(self, start: int, end: int) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of the batches in ``[start, end)``, read in small windows.

        Raises CorruptRecordError on an invalid header or a batch running past ``end``.
        """
        position = start
        while position < end:
            if end - position < HEADER_SIZE:
                raise CorruptRecordError(f"truncated batch header at byte {position}")
            window = self._log.pread(min(_HEADER_WINDOW, end - position), position)
            if len(window) < HEADER_SIZE:
                raise CorruptRecordError(f"{self._log.path} is shorter than expected")
            local = 0
            while local + HEADER_SIZE <= len(window):
                header = read_header(window, local)
                if position + local + header.size > end:
                    raise CorruptRecordError(f"truncated batch at byte {position + local}")
                yield position + local, header
                local += header.size
            position += local

    # ------------------------------------------------------------------ truncate

    def truncate_to(self, position: int, end_offset: int) -> None:
        """Drop the batch at ``position`` (whose base offset is ``end_offset``) and all after it."""
        self._log.truncate(position)
        self._offset_index.truncate_to(end_offset)
        self._time_index.truncate_to(end_offset)
        self._next_offset = end_offset
        if position == 0:
            self._created_ms = None
            self._max_timestamp = NO_TIMESTAMP
        else:
            self._max_timestamp = self._scan_tail()[1]

    # ------------------------------------------------------------------ durability, lifetime

    def fsync(self) -> None:
        """fsync the ``.log`` and both indexes (any thread, segment pinned). Raises OSError."""
        self._log.fsync()
        self._offset_index.fsync()
        self._time_index.fsync()

    def pin(self) -> None:
        """Keep the files open for a flush (call under the partition log's lock)."""
        if self._released:
            raise StorageError(f"segment {self.base_offset} is closed")
        self._pins += 1

    def unpin(self) -> None:
        """Release a pin; finishes a deferred close or delete (under the log's lock)."""
        self._pins -= 1
        if self._pins == 0 and self._released:
            self._release()

    def close(self) -> None:
        """Close the files now, or when the last pin goes (under the log's lock)."""
        if self._released:
            return
        self._released = True
        if self._pins == 0:
            self._release()

    def delete(self) -> None:
        """Rename the files to ``*.deleted``, then remove them once unpinned."""
        for file in (self._log, self._offset_index, self._time_index):
            try:
                file.rename(Path(str(file.path) + DELETED_SUFFIX))
            except OSError as exc:
                _log.warning("cannot rename %s for deletion: %s", file.path, exc)
        self._delete_pending = True
        if self._released and self._pins == 0:
            self._release()
        else:
            self.close()

    def _release(self) -> None:
        files = (self._log, self._offset_index, self._time_index)
        for file in files:
            file.close()
        if self._delete_pending:
            self._delete_pending = False
            for file in files:
                remove_quietly(file.path)


def _whole_batches(data: bytes, max_offset: int) -> tuple[int, int]:
    """(length, next offset) of the longest prefix of whole batches below ``max_offset``."""
    end = 0
    next_offset = -1
    while len(data) - end >= HEADER_SIZE:
        _, batch_next, size = batch_span(data, end)
        if end + size > len(data) or batch_next > max_offset:
            break
        end += size
        next_offset = batch_next
    return end, next_offset


def _verified_batches(log: AppendOnlyFile, base_offset: int) -> Iterator[tuple[int, BatchHeader]]:
    """(position, header) of the valid prefix of a ``.log``: recovery's scan.

    Each batch must have a sane header, lie wholly in the file, match its CRC, start where
    the previous one ended (the first at ``base_offset``) and keep relative offsets in int32.
    Stops silently at the first batch that fails; reads the file in large chunks.
    """
    end = log.length
    position, expected, want = 0, base_offset, _RECOVERY_CHUNK
    while position < end:
        chunk = log.pread(want, position)
        local, want = 0, _RECOVERY_CHUNK
        while len(chunk) - local >= HEADER_SIZE:
            try:
                header = read_header(chunk, local)
            except CorruptRecordError:
                return
            if local + header.size > len(chunk):
                want = max(want, header.size)
                break
            if not _acceptable(chunk, header, expected, base_offset):
                return
            yield position + local, header
            expected = header.next_offset
            local += header.size
        if local == 0 and (position + len(chunk) >= end or len(chunk) < want):
            return
        position += local


def _acceptable(chunk: bytes, header: BatchHeader, expected: int, base_offset: int) -> bool:
    return (
        header.base_offset == expected
        and header.last_offset - base_offset <= INT32_MAX
        and verify_crc(chunk, header)
    )
