"""The log manager: every partition log of one data directory.

Data directory layout::

    <data_dir>/<topic>-<partition>/            one PartitionLog each
    <data_dir>/<topic>-<partition>.<uuid>-delete/   a log being deleted (removed at load)
    <data_dir>/recovery-point-offset-checkpoint     topic partition recovery-point lines
    <data_dir>/replication-offset-checkpoint        topic partition high-watermark lines
    <data_dir>/.kbroker_cleanshutdown               present only between a clean close and
                                                    the next load

Start-up (:meth:`load`, blocking: run it before serving, or in an executor): logs whose data dir
holds the clean-shutdown marker are trusted, otherwise each is recovered from its checkpointed
recovery point; the marker is removed once everything is loaded. A malformed recovery-point
checkpoint is treated as absent (full recovery: slower, never wrong) with a warning; so is a
malformed high-watermark checkpoint (high watermarks restart at the log start and replication
moves them forward again).

Shutdown (:meth:`close`, blocking): flush every log, write both checkpoints, close the logs,
then write the marker.

After a log is truncated its recovery point may drop below the checkpointed one, so the
recovery-point checkpoint is rewritten at once (one small fsync on the calling thread, as Kafka
does); otherwise a crash could trust rewritten, unflushed data.

Concurrency: event-loop thread only (``load`` and ``close`` are plain blocking methods for the
caller to place), except :meth:`LogManager.open_new`, for a worker thread. The ``*_loop``
coroutines are owned by the caller (a TaskGroup) and are cancellable; blocking fsync work
inside them goes to the default executor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Final

from kbroker.clock import Clock
from kbroker.config import TopicConfig
from kbroker.errors import StorageError
from kbroker.log._fileio import fsync_dir, remove_quietly
from kbroker.log.checkpoint import (
    HIGH_WATERMARK_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    TMP_SUFFIX,
    CheckpointError,
    OffsetCheckpoint,
)
from kbroker.log.flusher import GroupCommitFlusher
from kbroker.log.partition_log import PartitionLog

__all__ = ["CLEAN_SHUTDOWN_FILE", "LogManager", "TopicConfigResolver"]

CLEAN_SHUTDOWN_FILE: Final = ".kbroker_cleanshutdown"
_PARTITION_DIR: Final = re.compile(r"^(?P<topic>.+)-(?P<partition>\d+)$")
_DELETE_DIR: Final = re.compile(r"^.+-\d+\.[0-9a-f]{32}-delete$")

#: The effective config of a topic (broker defaults merged with the topic's overrides).
TopicConfigResolver = Callable[[str], TopicConfig]

_log = logging.getLogger(__name__)


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


class LogManager:
    """All partition logs of one data directory (module docstring)."""

    def __init__(
        self,
        data_dir: str | Path,
        topic_config: TopicConfig | TopicConfigResolver,
        *,
        clock: Clock,
    ) -> None:
        self._data_dir = Path(data_dir)
        self._resolve: TopicConfigResolver = (
            (lambda _topic: topic_config) if isinstance(topic_config, TopicConfig) else topic_config
        )
        self._clock = clock
        self._logs: dict[tuple[str, int], PartitionLog] = {}
        self._recovery_points = OffsetCheckpoint(self._data_dir / RECOVERY_POINT_CHECKPOINT)
        self._high_watermarks = OffsetCheckpoint(self._data_dir / HIGH_WATERMARK_CHECKPOINT)

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    # ------------------------------------------------------------------ start-up

    def load(self) -> None:
        """Open every partition log in the data directory (blocking; see module docstring)."""
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        marker = self._data_dir / CLEAN_SHUTDOWN_FILE
        clean = marker.exists()
        recovery_points = self._read_tolerantly(self._recovery_points)
        high_watermarks = self._read_tolerantly(self._high_watermarks)
        for entry in sorted(self._data_dir.iterdir()):
            match = _PARTITION_DIR.match(entry.name)
            if not entry.is_dir() or match is None:
                continue
            key = (match["topic"], int(match["partition"]))
            log = self._open(key, recovery_points.get(key, 0), clean_shutdown=clean, config=None)
            log.reset_high_watermark(high_watermarks.get(key, 0))
        if clean:
            remove_quietly(marker)
            fsync_dir(self._data_dir)
        _log.info(
            "loaded %d logs from %s (clean shutdown: %s)", len(self._logs), self._data_dir, clean
        )

    def _remove_leftovers(self) -> None:
        for entry in self._data_dir.iterdir():
            if entry.is_dir() and _DELETE_DIR.match(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.endswith(TMP_SUFFIX):
                remove_quietly(entry)

    def _read_tolerantly(self, checkpoint: OffsetCheckpoint) -> dict[tuple[str, int], int]:
        try:
            return checkpoint.read()
        except CheckpointError as exc:
            _log.warning("%s; treating it as absent", exc)
            return {}

    def _open(
        self,
        key: tuple[str, int],
        recovery_point: int,
        *,
        clean_shutdown: bool,
        config: TopicConfig | None,
    ) -> PartitionLog:
        log = self._open_unregistered(key, recovery_point, clean_shutdown, config)
        self._logs[key] = log
        return log

    def _open_unregistered(
        self,
        key: tuple[str, int],
        recovery_point: int,
        clean_shutdown: bool,
        config: TopicConfig | None,
    ) -> PartitionLog:
        topic, partition = key
        return PartitionLog.open(
            self._data_dir / partition_dir_name(topic, partition),
            topic,
            partition,
            config if config is not None else self._resolve(topic),
            clock=self._clock,
            recovery_point=recovery_point,
            clean_shutdown=clean_shutdown,
            on_truncate=self._truncated,
        )

    # ------------------------------------------------------------------ lookup, create, delete

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self._logs.get((topic, partition))

    def get_or_create(
        self, topic: str, partition: int, config: TopicConfig | None = None
    ) -> PartitionLog:
        """The log of ``topic``/``partition``, created empty if absent.

        ``config`` defaults to the resolver's; files already in the way are recovered, not
        trusted.
        """
        log = self._logs.get((topic, partition))
        if log is None:
            log = self._open((topic, partition), 0, clean_shutdown=False, config=config)
        return log

    def open_new(self, topic: str, partition: int, config: TopicConfig) -> PartitionLog | None:
        """Create the log of a replica new to this broker, for :meth:`adopt` to register; None
        if its directory exists (:meth:`get_or_create` opens that one, recovering it).

        Blocking, and the one method safe from a worker thread: creating a log's directory
        and files takes ~0.5 ms on an idle disk and several times more on a busy one, so a
        broker given thousands of new replicas creates their logs off the event loop. The
        caller makes sure the loop neither opens nor deletes the same log meanwhile.
        Raises StorageError."""
        directory = self._data_dir / partition_dir_name(topic, partition)
        if directory.exists():
            return None
        return self._open_unregistered((topic, partition), 0, False, config)

    def adopt(self, log: PartitionLog) -> None:
        """Register a log made by :meth:`open_new` (event loop). Raises ValueError if one is
        registered under its name already (the caller's guard failed)."""
        key = (log.topic, log.partition)
        if key in self._logs:
            raise ValueError(f"log {log.name} is open already")
        self._logs[key] = log

    def all_logs(self) -> list[PartitionLog]:
        return list(self._logs.values())

    def delete_log(self, topic: str, partition: int, *, only: PartitionLog | None = None) -> bool:
        """Close and remove a log; False if absent (or, with ``only``, if the log under that
        name is another one: a log detached for deletion whose name was taken again by a
        topic re-created meanwhile is never the new one). The directory is renamed
        ``<dir>.<uuid>-delete`` at once and removed in a worker thread when an event loop runs
        (inline otherwise): a topic of thousands of partitions deleted at once held the loop
        for seconds. A crash before the removal leaves a ``-delete`` directory, removed at
        load; one before the rename is on disk brings the log back under its name, and the
        broker deletes it as a log no longer hosted (or of an older topic id) at start."""
        log = self._logs.get((topic, partition))
        if log is None or (only is not None and log is not only):
            return False
        del self._logs[(topic, partition)]
        log.close()
        doomed = log.directory.with_name(f"{log.directory.name}.{uuid.uuid4().hex}-delete")
        try:
            os.rename(log.directory, doomed)
        except OSError as exc:
            raise StorageError(f"cannot delete log {log.name}: {exc}") from exc
        try:
            asyncio.get_running_loop().run_in_executor(None, _purge, doomed, self._data_dir)
        except RuntimeError:  # no running loop
            _purge(doomed, self._data_dir)
        return True

    def _truncated(self, log: PartitionLog) -> None:
        """After a truncation the checkpointed recovery point may be past the new end."""
        self.checkpoint_recovery_points()

    # ------------------------------------------------------------------ periodic work

    def checkpoint_recovery_points(self) -> None:
        """Write every log's recovery point (blocking: one small fsync)."""
        self._recovery_points.write(self.recovery_points())

    def checkpoint_high_watermarks(self) -> None:
        """Write every log's high watermark (blocking: one small fsync)."""
        self._high_watermarks.write(self.high_watermarks())

    def recovery_points(self) -> dict[tuple[str, int], int]:
        return {key: log.recovery_point for key, log in self._logs.items()}

    def high_watermarks(self) -> dict[tuple[str, int], int]:
        return {key: log.high_watermark for key, log in self._logs.items()}

    def run_retention(self, now_ms: int | None = None) -> int:
        """Apply retention to every log; returns the number of segments deleted."""
        now = self._clock.now_ms() if now_ms is None else now_ms
        deleted = 0
        for log in list(self._logs.values()):
            try:
                deleted += log.delete_old_segments(now)
            except StorageError as exc:
                _log.error("retention of %s failed: %s", log.name, exc)
        return deleted

    async def retention_loop(self, interval_ms: int) -> None:
        """Run retention every ``interval_ms`` until cancelled."""
        while True:
            await self._clock.sleep(interval_ms / 1000)
            self.run_retention()

    async def flush_loop(self, flusher: GroupCommitFlusher, interval_ms: int) -> None:
        """Every ``interval_ms``, flush the logs whose flush policy asks for it."""
        while True:
            await self._clock.sleep(interval_ms / 1000)
            now = self._clock.now_ms()
            due = [log for log in self.all_logs() if log.should_flush(now)]  # no task per log:
            if due:  # a broker hosting thousands of idle replicas made thousands every tick
                await asyncio.gather(*(self._flush_quietly(flusher, log, now) for log in due))

    @staticmethod
    async def _flush_quietly(flusher: GroupCommitFlusher, log: PartitionLog, now: int) -> None:
        try:
            await flusher.flush_if_needed(log, now)
        except StorageError as exc:
            _log.error("flush of %s failed: %s", log.name, exc)

    async def checkpoint_loop(self, interval_ms: int) -> None:
        """Every ``interval_ms``, write both checkpoints (in the default executor)."""
        loop = asyncio.get_running_loop()
        while True:
            await self._clock.sleep(interval_ms / 1000)
            points, watermarks = self.recovery_points(), self.high_watermarks()
            try:
                await loop.run_in_executor(None, self._recovery_points.write, points)
                await loop.run_in_executor(None, self._high_watermarks.write, watermarks)
            except StorageError as exc:
                _log.error("checkpoint failed: %s", exc)

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Flush and close every log, checkpoint, then mark the shutdown clean (blocking).

        The marker is written only if every flush and checkpoint succeeded.
        """
        clean = True
        for log in self._logs.values():
            try:
                log.flush()
            except StorageError as exc:
                _log.error("final flush of %s failed: %s", log.name, exc)
                clean = False
        try:
            self.checkpoint_recovery_points()
            self.checkpoint_high_watermarks()
        except StorageError as exc:
            _log.error("final checkpoint failed: %s", exc)
            clean = False
        for log in self._logs.values():
            log.close()
        self._logs.clear()
        if clean:
            self._write_marker()

    def _write_marker(self) -> None:
        marker = self._data_dir / CLEAN_SHUTDOWN_FILE
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self._data_dir)


def _purge(doomed: Path, data_dir: Path) -> None:
    """Make a log's rename to ``-delete`` durable, then remove it (any thread)."""
    try:
        fsync_dir(data_dir)
    except (OSError, StorageError) as exc:
        _log.warning("cannot sync %s before removing %s: %s", data_dir, doomed.name, exc)
    shutil.rmtree(doomed, ignore_errors=True)
