"""Delivery futures: one shared result per produced batch, a tiny handle per record.

Kafka's Java client does the same (``ProduceRequestResult`` per batch, ``FutureRecordMetadata``
per record): creating a full future per record would cost more than the rest of ``send``.

A :class:`BatchResult` is completed exactly once, on the producer's event loop. Waiters on other
threads block on a :class:`threading.Event`; waiters on event loops get an asyncio future
resolved on their own loop (``call_soon_threadsafe`` when it is not the producer's).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator
from typing import Any

from kclient.errors import ClientTimeoutError, KClientError
from kclient.structs import RecordMetadata

__all__ = ["BatchResult", "RecordFuture"]


class BatchResult:
    """The outcome of one batch: a base offset (or -1 for acks=0) or an exception.

    Thread-safe: ``complete`` runs on the producer loop, the rest on any thread.
    """

    __slots__ = (
        "_done",
        "_event",
        "_lock",
        "_waiters",
        "base_offset",
        "error",
        "loop_thread",
        "partition",
        "topic",
    )

    def __init__(self, topic: str, partition: int, loop_thread: int) -> None:
        self.topic = topic
        self.partition = partition
        self.loop_thread = loop_thread
        self.base_offset = -1
        self.error: BaseException | None = None
        self._done = False
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def done(self) -> bool:
        return self._done

    def complete(self, base_offset: int | None, error: BaseException | None) -> bool:
        """Set the outcome; False (and nothing changes) when it was set already."""
        with self._lock:
            if self._done:
                return False
            self.base_offset = base_offset if base_offset is not None else -1
            self.error = error
            self._done = True
            waiters, self._waiters = self._waiters, []
        self._event.set()
        if waiters:
            current = _running_loop()
            for loop, future in waiters:
                if loop is current:
                    _resolve(future)
                else:
                    loop.call_soon_threadsafe(_resolve, future)
        return True

    def wait(self, timeout: float | None) -> bool:
        if not self._done and threading.get_ident() == self.loop_thread:
            raise RuntimeError(
                "a delivery future cannot be waited for on the producer's own event loop thread "
                "(for example inside a delivery callback)"
            )
        return self._event.wait(timeout)

    def add_waiter(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> bool:
        """Register an asyncio future to resolve on completion; False if already complete."""
        with self._lock:
            if self._done:
                return False
            self._waiters.append((loop, future))
            return True

    async def wait_async(self) -> None:
        if self._done:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self.add_waiter(loop, future):
            await future

    def metadata(self, index: int, timestamp: int) -> RecordMetadata:
        if self.error is not None:
            raise self.error
        offset = self.base_offset + index if self.base_offset >= 0 else -1
        return RecordMetadata(self.topic, self.partition, offset, timestamp)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class RecordFuture(tuple[BatchResult, int, int]):
    """The delivery of one record: ``await`` it (asyncio) or call :meth:`result` (threads).

    Resolves to :class:`~kclient.structs.RecordMetadata`, or raises the delivery error (a
    :class:`~kclient.errors.KClientError`). Never call :meth:`result` for an unfinished future
    from a delivery callback: callbacks run on the producer's loop, which would deadlock.

    A tuple (batch result, index in the batch, timestamp) so that ``send`` creates it without
    running Python code (``tuple.__new__``); use the methods, not the items.
    """

    __slots__ = ()

    @property
    def _batch(self) -> BatchResult:
        return self[0]

    @property
    def _index(self) -> int:
        return self[1]

    @property
    def _timestamp(self) -> int:
        return self[2]

    def __repr__(self) -> str:
        state = "pending" if not self._batch.done() else "done"
        return f"<RecordFuture {self._batch.topic}-{self._batch.partition} {state}>"

    def done(self) -> bool:
        return self._batch.done()

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """Block until delivered; ClientTimeoutError after ``timeout`` seconds."""
        if not self._batch.done() and not self._batch.wait(timeout):
            raise ClientTimeoutError(f"record not delivered within {timeout} s")
        return self._batch.metadata(self._index, self._timestamp)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        try:
            self.result(timeout)
        except ClientTimeoutError:
            raise
        except KClientError as exc:
            return exc
        return None

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        yield from self._batch.wait_async().__await__()
        return self._batch.metadata(self._index, self._timestamp)
