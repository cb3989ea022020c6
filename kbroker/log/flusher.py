"""Group commit: many coroutines waiting for durability share as few fsyncs as possible.

``await flusher.flush(log, up_to)`` returns once ``log.recovery_point >= up_to`` (capped at the
LEO). Per log at most one :meth:`PartitionLog.flush` runs at a time, in an executor thread, and
it covers everything appended before it started. Callers arriving while it runs wait for it;
if it did not cover them (they appended after it started), the first one to wake starts the
next flush and the others join that one. So N concurrent producers cost about two fsyncs, not N.

Failure: a failing fsync raises StorageError in every coroutine waiting on that flush; the next
caller starts a fresh attempt. Cancelling a waiter never cancels the shared flush.

Concurrency: event-loop side only (one loop); the flush itself runs in the executor. The flusher
owns its in-flight flushes: :meth:`close` waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import Executor

from kbroker.log.partition_log import PartitionLog

__all__ = ["GroupCommitFlusher"]

_log = logging.getLogger(__name__)


class GroupCommitFlusher:
    """Shares in-flight fsyncs among waiters, per log (module docstring)."""

    def __init__(self, *, executor: Executor | None = None) -> None:
        self._executor = executor
        self._in_flight: dict[PartitionLog, asyncio.Future[None]] = {}

    async def flush(self, log: PartitionLog, up_to: int | None = None) -> None:
        """Return once everything below ``up_to`` (default: the current LEO) is on disk.

        Raises StorageError when the fsync fails or the log is closed.
        """
        goal = log.log_end_offset if up_to is None else up_to
        while log.recovery_point < min(goal, log.log_end_offset):
            future = self._in_flight.get(log)
            if future is None or future.done():
                # A finished flush whose done-callback has not run yet does not cover us (we
                # got here after it finished): awaiting it again would return at once, without
                # yielding, and spin this loop forever. Start the next one.
                future = self._start(log)
            await asyncio.shield(future)

    async def flush_if_needed(self, log: PartitionLog, now_ms: int) -> bool:
        """Flush when the log's flush policy asks for it; returns whether it did."""
        if not log.should_flush(now_ms):
            return False
        await self.flush(log)
        return True

    def _start(self, log: PartitionLog) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, log.flush)
        self._in_flight[log] = future
        future.add_done_callback(lambda done: self._finished(log, done))
        return future

    def _finished(self, log: PartitionLog, future: asyncio.Future[None]) -> None:
        if self._in_flight.get(log) is future:
            del self._in_flight[log]
        if not future.cancelled() and future.exception() is not None:
            _log.warning("flush of %s failed: %s", log.name, future.exception())

    async def close(self) -> None:
        """Wait for the flushes in flight (their errors went to their waiters)."""
        for future in list(self._in_flight.values()):
            with contextlib.suppress(Exception):
                await asyncio.shield(future)
