"""The log of one partition: ordered segments; append, read, roll, truncate, retention, flush.

Directory ``<data_dir>/<topic>-<partition>`` holds the segments (segment.py) and the
``leader-epoch-checkpoint`` (epoch_cache.py).

Offsets and invariants (checked at the boundary, never silently fixed):

* ``log_start_offset`` is the base offset of the first segment; ``log_end_offset`` (LEO) the
  end offset of the last (active) segment; segments are contiguous;
* ``log_start_offset <= high_watermark <= log_end_offset``. The high watermark only moves
  forward (:meth:`update_high_watermark`), except that truncation pulls it down to the new LEO
  and :meth:`reset_high_watermark` sets it outright (replica initialisation);
* ``log_start_offset <= recovery_point <= log_end_offset``: every batch below the recovery
  point is on stable storage (fsynced, with its index entries and directory entry);
* the leader epoch cache names no offset below the log start, and only its last entry may
  start at the LEO (assigned on becoming leader, or moved there when retention emptied the
  log); none starts past it.

Concurrency: every method runs on the owning (event-loop) thread, except :meth:`flush`, which
may run in a worker thread while the owner keeps appending, reading, rolling, truncating or
deleting segments. The rule: the owner changes the segment list, the recovery point and the
truncation generation only under ``_lock`` (a ``threading.Lock``, held for no fsync); a flush
takes a snapshot of the segments to sync under ``_lock`` and pins them, fsyncs without the lock,
then unpins and advances the recovery point under ``_lock`` unless a truncation happened
meanwhile (the generation changed). A pinned segment's files are closed or deleted only when
its last pin goes, so no fd is ever closed under a running fsync. Lock order:
``_flush_mutex`` (serialises flushes; only flush threads take it) before ``_lock``.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kbroker.clock import Clock
from kbroker.config import TopicConfig
from kbroker.errors import (
    BrokerError,
    CorruptRecordError,
    ErrorCode,
    FencedLeaderEpochError,
    OffsetOutOfRangeError,
    StorageError,
)
from kbroker.log._fileio import Buffer, fsync_dir, remove_quietly
from kbroker.log.batch import HEADER_SIZE, BatchHeader, encode_header, iter_batches
from kbroker.log.checkpoint import TMP_SUFFIX
from kbroker.log.epoch_cache import LEADER_EPOCH_CHECKPOINT, LeaderEpochCache
from kbroker.log.index import CorruptIndexError
from kbroker.log.segment import (
    DELETED_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    BatchSpan,
    LogSegment,
    segment_path,
)

__all__ = ["FetchDataInfo", "LogAppendInfo", "PartitionLog"]

_SEGMENT_FILE: Final = re.compile(r"^(\d{20})\.(log|index|timeindex)$")

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogAppendInfo:
    """Result of an append: the offsets the batches got."""

    first_offset: int
    """Base offset of the first appended batch."""
    last_offset: int
    """Last offset of the last appended batch."""
    max_timestamp: int
    """Largest ``max_timestamp`` among the appended batches."""
    batch_count: int
    size_in_bytes: int
    """Bytes written, headers included."""

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchDataInfo:
    """Result of a read: whole batches and the log's offsets at the time of the read."""

    data: bytes
    """Whole batches back to back (possibly empty)."""
    first_offset: int
    """Base offset of the first returned batch (may be below the requested offset); the
    requested offset when ``data`` is empty."""
    next_offset: int
    """Offset after the last returned batch; the requested offset when ``data`` is empty."""
    log_start_offset: int
    log_end_offset: int
    high_watermark: int

    def headers(self) -> Iterator[BatchHeader]:
        """Headers of the returned batches (positions relative to ``data``)."""
        return iter_batches(self.data)


class PartitionLog:
    """The segments of one partition and the offsets over them (module docstring)."""

    def __init__(
        self,
        *,
        directory: Path,
        topic: str,
        partition: int,
        config: TopicConfig,
        clock: Clock,
        on_truncate: Callable[[PartitionLog], None] | None = None,
    ) -> None:
        """Use :meth:`open`; this only sets up an unloaded instance."""
        self._dir = directory
        self.topic = topic
        self.partition = partition
        self._config = config
        self._clock = clock
        self._on_truncate = on_truncate
        self._segments: list[LogSegment] = []
        self._bases: list[int] = []
        self._high_watermark = 0
        self._recovery_point = 0
        self._truncations = 0
        self._dir_dirty = False
        self._closed = False
        self._last_flush_ms = clock.now_ms()
        self._lock = threading.Lock()
        self._flush_mutex = threading.Lock()
        self._epochs = LeaderEpochCache.load(
            directory / LEADER_EPOCH_CHECKPOINT, log_end_offset=lambda: self.log_end_offset
        )

    # ------------------------------------------------------------------ opening and recovery

    @classmethod
    def open(
        cls,
        directory: str | Path,
        topic: str,
        partition: int,
        config: TopicConfig,
        *,
        clock: Clock,
        recovery_point: int = 0,
        clean_shutdown: bool = False,
        on_truncate: Callable[[PartitionLog], None] | None = None,
    ) -> PartitionLog:
        """Open (creating the directory if absent) and, unless shut down cleanly, recover.

        Without a clean shutdown, the segment holding ``recovery_point`` and every later one
        are validated batch by batch (lengths, CRC, contiguity); the first invalid batch and
        everything after it are removed, indexes are rebuilt and the epoch cache is rebuilt
        from batch leader epochs. Earlier segments, and all segments after a clean shutdown,
        are trusted: their indexes are loaded, sanity-checked and completed by a header walk
        of the few bytes after the last index entry (recovered if anything does not fit).
        Leftover ``.deleted`` and temporary files are removed. Blocking; run it off the loop.
        Raises StorageError when the disk refuses (a full disk: the directory or a segment
        cannot be created).
        ``on_truncate`` is called after every truncation (the log manager checkpoints
        recovery points then, as Kafka does).
        """
        path = Path(directory)
        try:
            path.mkdir(parents=True, exist_ok=True)
            _remove_leftovers(path)
        except OSError as exc:
            raise StorageError(f"cannot open log directory {path}: {exc}") from exc
        log = cls(
            directory=path,
            topic=topic,
            partition=partition,
            config=config,
            clock=clock,
            on_truncate=on_truncate,
        )
        try:
            log._load(recovery_point, clean_shutdown)
        except BaseException:
            log.close()
            raise
        return log

    def _load(self, recovery_point: int, clean_shutdown: bool) -> None:
        bases = _segment_bases(self._dir)
        first_recovered = len(bases)
        if not clean_shutdown and bases:
            first_recovered = max(0, bisect_right(bases, recovery_point) - 1)
        for i, base in enumerate(bases):
            end = bases[i + 1] if i + 1 < len(bases) else None
            segment = self._open_segment(base, end, recover=i >= first_recovered)
            self._segments.append(segment)
            if end is not None and segment.next_offset != end:
                _log.warning(
                    "%s: segment %d ends at %d, not %d: deleting the segments after it",
                    self.name,
                    base,
                    segment.next_offset,
                    end,
                )
                for later in bases[i + 1 :]:
                    _delete_segment_files(self._dir, later)
                break
        if not self._segments:
            self._segments.append(LogSegment.create(self._dir, 0))
            self._dir_dirty = True
        self._bases = [s.base_offset for s in self._segments]
        start, end = self.log_start_offset, self.log_end_offset
        self._recovery_point = min(max(recovery_point, start), end)
        self._high_watermark = start
        self._epochs.truncate_from_end(end)
        self._epochs.truncate_from_start(start)
        self._epochs.persist_or_keep()  # the epochs of recovered batches: they are on disk

    def _open_segment(self, base: int, end: int | None, *, recover: bool) -> LogSegment:
        if not recover:
            try:
                return LogSegment.load(self._dir, base, end_offset=end)
            except CorruptIndexError as exc:
                _log.warning("%s: %s; recovering segment %d", self.name, exc, base)
        segment, result = LogSegment.recover(
            self._dir, base, index_interval_bytes=self._config.index_interval_bytes
        )
        for epoch, start_offset in result.epoch_starts:
            if epoch > self._epochs.latest_epoch:
                self._epochs.assign(epoch, start_offset)
        return segment

    # ------------------------------------------------------------------ offsets and state

    @property
    def name(self) -> str:
        return f"{self.topic}-{self.partition}"

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def config(self) -> TopicConfig:
        return self._config

    @property
    def log_start_offset(self) -> int:
        return self._segments[0].base_offset

    @property
    def log_end_offset(self) -> int:
        return self._segments[-1].next_offset

    @property
    def high_watermark(self) -> int:
        return self._high_watermark

    @property
    def recovery_point(self) -> int:
        """Offset below which the log is on stable storage (readable from any thread)."""
        return self._recovery_point

    @property
    def size_in_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def segments(self) -> tuple[LogSegment, ...]:
        """A snapshot of the segments, oldest first (for inspection and tests)."""
        return tuple(self._segments)

    @property
    def leader_epoch_cache(self) -> LeaderEpochCache:
        return self._epochs

    @property
    def closed(self) -> bool:
        return self._closed

    def update_high_watermark(self, offset: int) -> int:
        """Move the high watermark forward to ``offset`` clamped to [log start, LEO].

        Never moves it back; returns the (possibly unchanged) high watermark.
        """
        new = min(max(offset, self.log_start_offset), self.log_end_offset)
        self._high_watermark = max(self._high_watermark, new)
        return self._high_watermark

    def reset_high_watermark(self, offset: int) -> int:
        """Set the high watermark to ``offset`` clamped to [log start, LEO], even backwards.

        For replica initialisation (checkpointed value) and followers; returns the new value.
        """
        self._high_watermark = min(max(offset, self.log_start_offset), self.log_end_offset)
        return self._high_watermark

    def update_config(self, config: TopicConfig) -> None:
        """Use ``config`` from now on (roll, index interval, retention, flush policy)."""
        self._config = config

    def assign_epoch_start_offset(self, leader_epoch: int) -> None:
        """Record that ``leader_epoch`` starts at the current LEO (on becoming leader)."""
        self._epochs.assign(leader_epoch, self.log_end_offset)

    # ------------------------------------------------------------------ append

    def append_as_leader(
        self,
        payload: bytes | memoryview,
        *,
        record_count: int,
        attributes: int,
        first_timestamp: int,
        max_timestamp: int,
        leader_epoch: int,
        producer_id: int = -1,
        producer_epoch: int = -1,
        base_sequence: int = -1,
    ) -> LogAppendInfo:
        """Append one batch at the LEO: header built here, one write for header and payload.

        Raises BrokerError(RECORD_TOO_LARGE) when the payload exceeds ``max.message.bytes``
        (the API layer splits before this; a safety net), FencedLeaderEpochError when
        ``leader_epoch`` is older than the epoch cache's latest, and StorageError when the
        disk refuses the write (nothing changes; the log keeps working once space returns).
        A newer ``leader_epoch`` is recorded in the epoch cache at the batch's offset.
        """
        self._check_open()
        if isinstance(payload, memoryview) and (payload.format != "B" or payload.ndim != 1):
            payload = payload.cast("B")
        if len(payload) > self._config.max_message_bytes:
            raise BrokerError(
                f"batch payload of {len(payload)} bytes exceeds max.message.bytes="
                f"{self._config.max_message_bytes} for {self.name}",
                ErrorCode.RECORD_TOO_LARGE,
            )
        if leader_epoch < self._epochs.latest_epoch:
            raise FencedLeaderEpochError(
                f"append with leader epoch {leader_epoch} to {self.name}, whose latest epoch "
                f"is {self._epochs.latest_epoch}"
            )
        base = self.log_end_offset
        header = encode_header(
            payload,
            base_offset=base,
            leader_epoch=leader_epoch,
            attributes=attributes,
            record_count=record_count,
            first_timestamp=first_timestamp,
            max_timestamp=max_timestamp,
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            base_sequence=base_sequence,
        )
        span = BatchSpan(base, base + record_count, HEADER_SIZE + len(payload), max_timestamp)
        now = self._clock.now_ms()
        segment = self._segments[-1]
        if self._needs_roll(segment, span, now):
            segment = self._roll()
        if leader_epoch > self._epochs.latest_epoch:
            self._epochs.assign(leader_epoch, base)
        self._write(segment, [header, payload], [span], now)
        return LogAppendInfo(
            first_offset=base,
            last_offset=span.next_offset - 1,
            max_timestamp=max_timestamp,
            batch_count=1,
            size_in_bytes=span.size,
        )

    def append_as_follower(self, batches: Buffer) -> LogAppendInfo | None:
        """Append batches copied from the leader, byte for byte (None when ``batches`` is empty).

        Every header and CRC is checked and the first batch must start at the LEO, each next
        one where the previous ended; on any problem CorruptRecordError is raised and nothing
        is written. Batch leader epochs update the epoch cache. The bytes go out in one write
        per segment they land in. A StorageError part-way through a multi-segment append
        leaves the batches written before it in the log (the follower fetches the rest again).
        """
        self._check_open()
        view = memoryview(batches).cast("B")
        if not len(view):
            return None
        headers = self._validate_follower_batches(view)
        for header in headers:
            if header.leader_epoch >= 0:
                self._epochs.assign(header.leader_epoch, header.base_offset)
        now = self._clock.now_ms()
        run_start, run = 0, list[BatchSpan]()
        segment = self._segments[-1]
        for header in headers:
            span = BatchSpan(
                header.base_offset, header.next_offset, header.size, header.max_timestamp
            )
            pending = header.position - run_start
            if self._needs_roll(segment, span, now, pending):
                if run:
                    self._write(segment, [view[run_start : header.position]], run, now)
                segment, run_start, run = self._roll(), header.position, []
            run.append(span)
        self._write(segment, [view[run_start:]], run, now)
        return LogAppendInfo(
            first_offset=headers[0].base_offset,
            last_offset=headers[-1].last_offset,
            max_timestamp=max(h.max_timestamp for h in headers),
            batch_count=len(headers),
            size_in_bytes=len(view),
        )

    def _validate_follower_batches(self, view: memoryview) -> list[BatchHeader]:
        expected = self.log_end_offset
        headers: list[BatchHeader] = []
        for header in iter_batches(view, verify=True):
            if header.base_offset != expected:
                raise CorruptRecordError(
                    f"batch at offset {header.base_offset} does not follow offset "
                    f"{expected - 1} of {self.name} (expected base offset {expected})"
                )
            headers.append(header)
            expected = header.next_offset
        return headers

    def _needs_roll(
        self, segment: LogSegment, span: BatchSpan, now: int, pending_bytes: int = 0
    ) -> bool:
        return segment.should_roll(
            batch_size=span.size,
            last_offset=span.next_offset - 1,
            now_ms=now,
            segment_bytes=self._config.segment_bytes,
            segment_ms=self._config.segment_ms,
            pending_bytes=pending_bytes,
        )

    def _roll(self) -> LogSegment:
        """Start a new active segment at the LEO. Raises StorageError (nothing changes)."""
        segment = LogSegment.create(self._dir, self.log_end_offset)
        with self._lock:
            self._segments.append(segment)
            self._bases.append(segment.base_offset)
            self._dir_dirty = True
        return segment

    def _write(
        self, segment: LogSegment, buffers: list[Buffer], spans: list[BatchSpan], now: int
    ) -> None:
        try:
            self._epochs.persist()  # never a batch on disk whose epoch the file lacks
            segment.append(
                buffers,
                spans,
                index_interval_bytes=self._config.index_interval_bytes,
                now_ms=now,
            )
        except StorageError:
            self._forget_epochs_past_end()
            raise

    def _forget_epochs_past_end(self) -> None:
        self._epochs.truncate_from_end(self.log_end_offset)

    # ------------------------------------------------------------------ read

    def read(
        self,
        offset: int,
        *,
        max_bytes: int,
        max_offset: int | None = None,
        min_one: bool = True,
        max_records: int | None = None,
    ) -> FetchDataInfo:
        """Whole batches from the one containing ``offset``, from a single segment.

        Only batches entirely below ``max_offset`` (exclusive, default and cap: the LEO);
        stops before ``max_bytes`` would be exceeded, except that with ``min_one`` the first
        batch is returned whatever its size. ``max_records`` (a reader that wants no more)
        lowers ``max_bytes`` to what that many records take at the first batch's bytes per
        record, with a margin: enough for uniform records, and a reader given fewer simply
        reads again. ``offset`` at or past the bound gives empty data;
        ``offset`` below the log start or past the LEO raises OffsetOutOfRangeError.
        """
        self._check_open()
        start, end = self.log_start_offset, self.log_end_offset
        if offset < start or offset > end:
            raise OffsetOutOfRangeError(
                f"offset {offset} is out of range for {self.name}: log start offset {start}, "
                f"log end offset {end}",
                log_start_offset=start,
                log_end_offset=end,
            )
        limit = end if max_offset is None else min(max_offset, end)
        data, first, next_offset = b"", offset, offset
        if offset < limit:
            segment = self._segments[bisect_right(self._bases, offset) - 1]
            position, header = segment.batch_at(offset)
            if max_records is not None:
                max_bytes = min(
                    max_bytes, _bytes_for(offset - header.base_offset + max_records, header)
                )
            data, next_offset = segment.read(
                position, header, max_bytes=max_bytes, max_offset=limit, min_one=min_one
            )
            first, next_offset = (header.base_offset, next_offset) if data else (offset, offset)
        return FetchDataInfo(
            data=data,
            first_offset=first,
            next_offset=next_offset,
            log_start_offset=start,
            log_end_offset=end,
            high_watermark=self._high_watermark,
        )

    def recent_batch_headers(self, segments: int = 2) -> Iterator[BatchHeader]:
        """Headers of the batches of the last ``segments`` segments, in log order (a header
        walk: payloads are not read). Used to rebuild producer state after a restart."""
        self._check_open()
        for segment in self._segments[-segments:]:
            yield from segment.headers()

    def offset_for_timestamp(self, timestamp: int) -> int | None:
        """Base offset of the first batch whose ``max_timestamp >= timestamp``; None if none.

        The API refines to a record inside that batch.
        """
        self._check_open()
        for segment in self._segments:
            if segment.max_timestamp >= timestamp:
                found = segment.offset_for_timestamp(timestamp)
                if found is not None:
                    return found
        return None

    # ------------------------------------------------------------------ truncation

    def truncate_to(self, offset: int) -> None:
        """Remove every batch whose last offset is >= ``offset``.

        The LEO becomes the base offset of the batch containing ``offset`` (so a cut in the
        middle of a batch removes the whole batch); later segments are deleted; the high
        watermark, recovery point and epoch cache follow. A no-op when ``offset >= LEO``;
        ``offset`` below the log start empties the log to start there.
        """
        self._check_open()
        if offset < 0:
            raise ValueError(f"cannot truncate {self.name} to negative offset {offset}")
        if offset >= self.log_end_offset:
            return
        if offset < self.log_start_offset:
            self.truncate_fully_and_start_at(offset)
            return
        slot = bisect_right(self._bases, offset) - 1
        segment = self._segments[slot]
        position, header = segment.batch_at(offset)
        new_end = header.base_offset
        with self._lock:
            self._truncations += 1
            self._recovery_point = min(self._recovery_point, new_end)
            segment.truncate_to(position, new_end)
            removed = self._segments[slot + 1 :]
            del self._segments[slot + 1 :]
            del self._bases[slot + 1 :]
            for later in removed:
                later.delete()
            self._dir_dirty = self._dir_dirty or bool(removed)
        self._high_watermark = min(self._high_watermark, new_end)
        self._epochs.truncate_from_end(new_end)
        self._notify_truncated()

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Delete every segment and start empty at ``offset`` (log start = LEO = HW = offset)."""
        self._check_open()
        if offset < 0:
            raise ValueError(f"cannot start {self.name} at negative offset {offset}")
        with self._lock:
            self._truncations += 1
            old = self._segments
            for segment in old:
                segment.delete()
            try:
                fresh = LogSegment.create(self._dir, offset)
            except StorageError:
                self._closed = True
                raise
            self._segments, self._bases = [fresh], [offset]
            self._recovery_point = offset
            self._dir_dirty = True
        self._high_watermark = offset
        self._epochs.clear()
        self._notify_truncated()

    def _notify_truncated(self) -> None:
        if self._on_truncate is not None:
            self._on_truncate(self)

    # ------------------------------------------------------------------ retention

    def delete_old_segments(self, now_ms: int | None = None) -> int:
        """Delete the oldest segments past retention; returns how many were deleted.

        A segment goes when its largest timestamp is more than ``retention.ms`` old, or while
        the log is larger than ``retention.bytes`` by at least its size. Only a prefix of
        the log is deleted, never the active segment and never a segment holding offsets at
        or above the high watermark. The log start offset advances; the epoch cache forgets
        offsets below it.
        """
        self._check_open()
        now = self._clock.now_ms() if now_ms is None else now_ms
        return self._delete_prefix(self._retention_victims(now), "retention")

    def delete_segments_before(self, offset: int) -> int:
        """Delete the whole segments that lie entirely below ``offset`` (and below the high
        watermark, never the active one); returns how many were deleted.

        Followers call it with the leader's log start offset, and the group coordinator after
        writing a snapshot of its state: the log start offset moves to a segment boundary at
        or below ``offset``.
        """
        self._check_open()
        victims = []
        for segment in self._segments[:-1]:
            if segment.next_offset > min(offset, self._high_watermark):
                break
            victims.append(segment)
        return self._delete_prefix(victims, f"delete before {offset}")

    def _delete_prefix(self, victims: list[LogSegment], reason: str) -> int:
        if not victims:
            return 0
        with self._lock:
            del self._segments[: len(victims)]
            del self._bases[: len(victims)]
            for segment in victims:
                segment.delete()
            start = self.log_start_offset
            self._recovery_point = max(self._recovery_point, start)
            self._dir_dirty = True
        self._high_watermark = max(self._high_watermark, start)
        self._epochs.truncate_from_start(start)
        _log.info(
            "%s: %s deleted %d segment(s); log start %d", self.name, reason, len(victims), start
        )
        return len(victims)

    def _retention_victims(self, now: int) -> list[LogSegment]:
        retention_ms, retention_bytes = self._config.retention_ms, self._config.retention_bytes
        excess = self.size_in_bytes - retention_bytes if retention_bytes >= 0 else -1
        victims: list[LogSegment] = []
        for segment in self._segments[:-1]:
            if segment.next_offset > self._high_watermark:
                break
            expired = retention_ms >= 0 and now - segment.largest_time_ms() > retention_ms
            oversize = 0 <= segment.size <= excess
            if not (expired or oversize):
                break
            victims.append(segment)
            excess -= segment.size
        return victims

    # ------------------------------------------------------------------ flush

    @property
    def unflushed_messages(self) -> int:
        """Records appended but not yet below the recovery point."""
        return self.log_end_offset - self._recovery_point

    def should_flush(self, now_ms: int) -> bool:
        """The flush policy: unflushed data and (``flush.messages`` records, or ``flush.ms``
        since the last flush, or a rolled segment not yet flushed, as Kafka flushes on roll).
        """
        unflushed = self.unflushed_messages
        if unflushed <= 0:
            return False
        return (
            unflushed >= self._config.flush_messages
            or now_ms - self._last_flush_ms >= self._config.flush_ms
            or self._recovery_point < self._segments[-1].base_offset
        )

    def flush(self, up_to: int | None = None) -> None:
        """fsync everything below ``up_to`` (default: the LEO) and advance the recovery point.

        Blocking; safe in a worker thread while the owner keeps using the log (module
        docstring). Raises StorageError when an fsync fails or the log is closed.
        """
        with self._flush_mutex:
            snapshot = self._flush_snapshot(up_to)
            if snapshot is None:
                return
            segments, target, generation, dir_dirty = snapshot
            try:
                for segment in segments:
                    segment.fsync()
                if dir_dirty:
                    fsync_dir(self._dir)
            except OSError as exc:
                with self._lock:
                    self._dir_dirty = self._dir_dirty or dir_dirty
                raise StorageError(f"fsync of {self.name} failed: {exc}") from exc
            finally:
                with self._lock:
                    for segment in segments:
                        segment.unpin()
            with self._lock:
                if generation == self._truncations and target > self._recovery_point:
                    self._recovery_point = target
            self._last_flush_ms = self._clock.now_ms()

    def _flush_snapshot(self, up_to: int | None) -> tuple[list[LogSegment], int, int, bool] | None:
        with self._lock:
            if self._closed:
                raise StorageError(f"log {self.name} is closed")
            end = self._segments[-1].next_offset
            target = end if up_to is None else min(up_to, end)
            if target <= self._recovery_point and not self._dir_dirty:
                return None
            floor = self._recovery_point
            segments = [
                s for s in self._segments if s.base_offset < target and s.next_offset > floor
            ]
            for segment in segments:
                segment.pin()
            dir_dirty, self._dir_dirty = self._dir_dirty, False
            return segments, target, self._truncations, dir_dirty

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close every file (a running flush finishes first on its pinned segments)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for segment in self._segments:
                segment.close()

    def delete(self) -> None:
        """Close and remove the whole partition directory."""
        self.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"log {self.name} is closed")

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.name}, start={self.log_start_offset}, "
            f"hw={self._high_watermark}, leo={self.log_end_offset}, "
            f"segments={len(self._segments)})"
        )


def _segment_bases(directory: Path) -> list[int]:
    """Base offsets of the ``.log`` files; index files without a ``.log`` are removed."""
    logs: set[int] = set()
    indexes: set[int] = set()
    for entry in directory.iterdir():
        match = _SEGMENT_FILE.match(entry.name)
        if match:
            (logs if match.group(2) == "log" else indexes).add(int(match.group(1)))
    for orphan in indexes - logs:
        _delete_segment_files(directory, orphan)
    return sorted(logs)


def _remove_leftovers(directory: Path) -> None:
    """Remove files of interrupted deletions and checkpoint writes."""
    for entry in directory.iterdir():
        if entry.name.endswith((DELETED_SUFFIX, TMP_SUFFIX)):
            remove_quietly(entry)


def _delete_segment_files(directory: Path, base: int) -> None:
    for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
        remove_quietly(segment_path(directory, base, suffix))


def _bytes_for(records: int, first: BatchHeader) -> int:
    """Bytes that ``records`` records take from ``first`` on, estimated from ``first`` (+25%)."""
    return first.size + (records * first.size * 5) // (first.record_count * 4)
