"""GroupCommitFlusher: shared fsyncs, follow-up flushes, errors to every waiter."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbroker.errors import StorageError
from kbroker.log.flusher import GroupCommitFlusher
from kbroker.log.partition_log import PartitionLog
from tests.unit.log.support import FakeClock, append, make_config, open_log, payload_for


class CountingFlush:
    """Wraps log.flush: counts calls and can hold them until released."""

    def __init__(self, log: PartitionLog) -> None:
        self.real = log.flush
        self.calls = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail: BaseException | None = None

    def __call__(self, up_to: int | None = None) -> None:
        self.calls += 1
        self.started.set()
        assert self.release.wait(10)
        if self.fail is not None:
            raise self.fail
        self.real(up_to)


@pytest.fixture
def log(log_dir: Path, clock: FakeClock) -> Iterator[PartitionLog]:
    log = open_log(log_dir, clock)
    yield log
    log.close()


async def _wait_started(counting: CountingFlush) -> None:
    assert await asyncio.to_thread(counting.started.wait, 10)


async def test_waiters_share_fsyncs(log: PartitionLog, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = CountingFlush(log)
    monkeypatch.setattr(log, "flush", counting)
    in_fsync, release_fsync = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def gated_fsync(fd: int) -> None:
        if threading.current_thread() is not threading.main_thread():
            in_fsync.set()
            assert release_fsync.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", gated_fsync)
    flusher = GroupCommitFlusher()
    append(log, payload_for(0))
    first = [asyncio.create_task(flusher.flush(log, 1)) for _ in range(5)]
    assert await asyncio.to_thread(in_fsync.wait, 10)
    # appended while the first fsync runs: needs one more, shared by all later waiters
    for i in range(1, 11):
        append(log, payload_for(i))
    later = [asyncio.create_task(flusher.flush(log, o)) for o in range(2, 12)]
    await asyncio.sleep(0.01)
    release_fsync.set()
    await asyncio.gather(*first, *later)
    assert counting.calls == 2
    assert log.recovery_point == 11
    await flusher.flush(log, 11)  # already durable: no fsync
    assert counting.calls == 2
    await flusher.close()


async def test_failure_reaches_every_waiter(
    log: PartitionLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingFlush(log)
    monkeypatch.setattr(log, "flush", counting)
    flusher = GroupCommitFlusher()
    append(log, payload_for(0))
    counting.fail = StorageError("fsync failed: EIO")
    waiters = [asyncio.create_task(flusher.flush(log)) for _ in range(4)]
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, StorageError) for r in results)
    assert counting.calls == 1
    counting.fail = None
    await flusher.flush(log)
    assert log.recovery_point == 1
    await flusher.close()


async def test_cancelled_waiter_does_not_cancel_the_flush(
    log: PartitionLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingFlush(log)
    monkeypatch.setattr(log, "flush", counting)
    flusher = GroupCommitFlusher()
    append(log, payload_for(0))
    counting.release.clear()
    impatient = asyncio.create_task(flusher.flush(log))
    patient = asyncio.create_task(flusher.flush(log))
    await _wait_started(counting)
    impatient.cancel()
    counting.release.set()
    await patient
    assert impatient.cancelled()
    assert counting.calls == 1 and log.recovery_point == 1
    await flusher.close()


async def test_flush_if_needed(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock, make_config(flush_messages=2))
    flusher = GroupCommitFlusher()
    append(log, payload_for(0))
    assert not await flusher.flush_if_needed(log, clock.now)
    append(log, payload_for(1))
    assert await flusher.flush_if_needed(log, clock.now)
    assert log.recovery_point == 2
    await flusher.close()
    log.close()


async def test_closed_log_raises(log: PartitionLog) -> None:
    flusher = GroupCommitFlusher()
    append(log, payload_for(0))
    log.close()
    with pytest.raises(StorageError, match="closed"):
        await flusher.flush(log)
    await flusher.close()


async def test_a_finished_flush_not_yet_cleaned_up_is_not_awaited_in_a_loop(
    log: PartitionLog,
) -> None:
    # A produce can run after a flush finished and before the flush's done-callback removed it:
    # the waiter must start the next flush, not spin on the finished one (which never yields,
    # so the event loop, and the broker, would hang at 100% CPU).
    flusher = GroupCommitFlusher()
    append(log, payload_for(0))
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    finished.set_result(None)
    flusher._in_flight[log] = finished
    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(5)
    try:
        await flusher.flush(log)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert log.recovery_point == log.log_end_offset


def _timeout(signum: int, frame: object) -> None:
    raise TimeoutError("GroupCommitFlusher.flush spun on a finished flush")
