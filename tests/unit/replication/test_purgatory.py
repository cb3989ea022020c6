"""Signal, wait_any and OffsetWaiters (kbroker.replication.purgatory)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from kbroker.errors import NotLeaderError
from kbroker.replication.purgatory import OffsetWaiters, Signal, wait_any

# ------------------------------------------------------------------------------- Signal


async def test_signal_wakes_every_waiter() -> None:
    signal = Signal()
    waiters = [asyncio.create_task(signal.wait(60)) for _ in range(3)]
    await asyncio.sleep(0)
    signal.notify()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 2) == [True, True, True]


async def test_signal_times_out_without_notify() -> None:
    signal = Signal()
    assert await signal.wait(0.01) is False
    assert await signal.wait(0) is False
    assert await signal.wait(-1) is False


async def test_signal_is_not_level_triggered() -> None:
    signal = Signal()
    signal.notify()  # nobody waiting: nothing is remembered
    assert await signal.wait(0.01) is False


async def test_signal_future_shared_until_notify() -> None:
    signal = Signal()
    first = signal.future()
    assert signal.future() is first
    signal.notify()
    assert first.done() and first.result() is None
    second = signal.future()
    assert second is not first and not second.done()
    signal.notify()
    signal.notify()  # a second notify with nobody waiting is harmless
    assert second.done()


async def test_timed_out_waiter_does_not_cancel_others() -> None:
    signal = Signal()
    patient = asyncio.create_task(signal.wait(5))
    assert await signal.wait(0.01) is False
    assert not signal.future().cancelled()
    signal.notify()
    assert await patient is True


async def test_wait_any() -> None:
    a, b, c = Signal(), Signal(), Signal()
    task = asyncio.create_task(wait_any([a, b, c], 60))
    await asyncio.sleep(0)
    b.notify()
    # The first notified signal ends the wait at once (not when all are, nor at the timeout).
    assert await asyncio.wait_for(task, 2) is True
    assert await wait_any([a, c], 0.01) is False
    assert await wait_any([], 0.01) is False
    assert await wait_any([a], 0) is False


async def test_cancelled_wait_leaves_signal_usable() -> None:
    signal = Signal()
    task = asyncio.create_task(signal.wait(5))
    other = asyncio.create_task(signal.wait(5))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    signal.notify()
    assert await other is True


# ------------------------------------------------------------------------- OffsetWaiters


async def test_advance_completes_waiters_at_or_below_in_offset_order() -> None:
    waiters = OffsetWaiters()
    order: list[int] = []
    futures: dict[int, list[asyncio.Future[None]]] = {}

    def record(offset: int) -> Callable[[asyncio.Future[None]], None]:
        return lambda _future: order.append(offset)

    for offset in (30, 10, 20, 10, 40):
        future = waiters.add(offset)
        future.add_done_callback(record(offset))
        futures.setdefault(offset, []).append(future)
    assert len(waiters) == 5
    waiters.advance(9)
    assert len(waiters) == 5
    waiters.advance(20)
    await asyncio.sleep(0)
    assert order == [10, 10, 20]
    assert all(f.done() for o in (10, 20) for f in futures[o])
    assert not any(f.done() for o in (30, 40) for f in futures[o])
    assert len(waiters) == 2
    waiters.advance(100)
    await asyncio.sleep(0)
    assert order == [10, 10, 20, 30, 40]
    assert len(waiters) == 0


async def test_exactly_once_completion() -> None:
    waiters = OffsetWaiters()
    future = waiters.add(5)
    waiters.advance(5)
    waiters.advance(6)  # no second completion, no InvalidStateError
    waiters.fail_all(NotLeaderError("moved"))
    assert future.result() is None


async def test_fail_all_fails_only_pending() -> None:
    waiters = OffsetWaiters()
    done = waiters.add(1)
    pending = [waiters.add(10), waiters.add(20)]
    waiters.advance(1)
    error = NotLeaderError("leadership moved")
    waiters.fail_all(error)
    assert done.result() is None
    for future in pending:
        assert future.exception() is error
    assert len(waiters) == 0
    later = waiters.add(30)  # still usable after fail_all
    waiters.advance(30)
    assert later.result() is None


async def test_cancelled_waiters_are_skipped() -> None:
    waiters = OffsetWaiters()
    timed_out = waiters.add(5)
    alive = waiters.add(5)
    timed_out.cancel()
    waiters.advance(5)
    assert timed_out.cancelled()
    assert alive.result() is None
    gone = waiters.add(9)
    gone.cancel()
    waiters.fail_all(NotLeaderError("x"))  # must not raise on the cancelled future
    assert gone.cancelled()


async def test_awaiting_a_waiter() -> None:
    waiters = OffsetWaiters()
    future = waiters.add(3)
    task = asyncio.create_task(asyncio.wait_for(future, 5))
    await asyncio.sleep(0)
    waiters.advance(2)
    await asyncio.sleep(0)
    assert not task.done()
    waiters.advance(3)
    await task
    assert future.done() and not future.cancelled()
