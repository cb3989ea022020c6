"""Parked requests: waits on a partition's offsets, completed exactly once.

Kafka parks acks=all produces and long-poll fetches in "purgatories" until the high watermark or
the log end offset moves. Here that is two small primitives:

* :class:`Signal`: "something changed" for long-poll fetches. Waiters share one future that is
  resolved and replaced on every :meth:`Signal.notify`; a waiter that wakes re-reads the state
  it cares about (a signal carries no data, so a missed value cannot mislead).
* :class:`OffsetWaiters`: acks=all produces waiting for the high watermark to pass an offset.
  :meth:`OffsetWaiters.advance` completes, in offset order, every waiter at or below the new
  value; :meth:`OffsetWaiters.fail_all` completes the rest with an error (leadership lost).

Both belong to the event loop thread; nothing here is thread-safe, nothing blocks.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Iterable

__all__ = ["OffsetWaiters", "Signal", "wait_any"]


class Signal:
    """A level-free change notification shared by any number of waiters."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def future(self) -> asyncio.Future[None]:
        """The future the next :meth:`notify` resolves (created on demand)."""
        if self._future is None or self._future.done():
            self._future = asyncio.get_running_loop().create_future()
        return self._future

    def notify(self) -> None:
        future, self._future = self._future, None
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a notify; True if one came."""
        return await wait_any([self], timeout)


async def wait_any(signals: Iterable[Signal], timeout: float) -> bool:
    """Wait until any of ``signals`` is notified or ``timeout`` passes; True if notified.

    The shared futures are never cancelled here, so other waiters are unaffected. With no
    signals it just waits out the timeout.
    """
    if timeout <= 0:
        return False
    futures = {signal.future() for signal in signals}
    if not futures:
        await asyncio.sleep(timeout)
        return False
    done, _ = await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    return bool(done)


class OffsetWaiters:
    """Futures waiting for a monotonically increasing value (the high watermark) to reach an
    offset. Each future is completed exactly once: by advance, fail_all or its own timeout."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, offset: int) -> asyncio.Future[None]:
        """A future completed once the watched value is >= ``offset``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (offset, next(self._seq), future))
        return future

    def advance(self, value: int) -> None:
        """Complete every waiter whose offset is <= ``value``."""
        heap = self._heap
        while heap and heap[0][0] <= value:
            _, _, future = heapq.heappop(heap)
            if not future.done():
                future.set_result(None)

    def fail_all(self, error: BaseException) -> None:
        """Complete every pending waiter with ``error``."""
        heap, self._heap = self._heap, []
        for _, _, future in heap:
            if not future.done():
                future.set_exception(error)
