"""The synchronous producer: a thin facade over :class:`kclient.aio.Producer`.

The asyncio producer runs on a private event-loop thread owned by this object. ``send`` appends
to the batches from the calling thread (under the producer's lock, no loop round trip) and
returns a :class:`~kclient.RecordFuture`; delivery callbacks run on the private loop thread.
Any number of threads may call ``send`` concurrently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Self, Unpack

from kclient._futures import RecordFuture
from kclient._loop import LoopThread
from kclient.aio.producer import DeliveryCallback, ProducerSettings
from kclient.aio.producer import Producer as AsyncProducer
from kclient.structs import Header, RecordMetadata

__all__ = ["Producer"]


async def _started(bootstrap: str | Sequence[str], settings: ProducerSettings) -> AsyncProducer:
    producer = AsyncProducer(bootstrap, **settings)
    try:
        await producer.start()
    except BaseException:
        await producer.close()
        raise
    return producer


class Producer:
    """A thread-safe producer (settings as for :class:`kclient.aio.Producer`).

    ::

        with Producer("http://127.0.0.1:8080", acks="all") as producer:
            future = producer.send("events", b"hello", key=b"k1")
            print(future.result(timeout=10).offset)

    ``close()`` (or leaving the ``with`` block) flushes; always close a producer. With
    acks="all" (the default) it is idempotent: see docs/client.md, "Idempotence".
    """

    def __init__(self, bootstrap: str | Sequence[str], **settings: Unpack[ProducerSettings]):
        self._runner = LoopThread("kclient-producer")
        self._impl = self._runner.run_or_stop(_started(bootstrap, settings))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        *,
        partition: int | None = None,
        headers: Iterable[Header] | None = None,
        timestamp_ms: int | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> RecordFuture:
        """Queue a record; see :meth:`kclient.aio.Producer.send`. Blocks only to read the
        topic's metadata the first time or while ``buffer_memory`` is full."""
        return self._impl.send_threadsafe(
            topic,
            value,
            key,
            partition=partition,
            headers=headers,
            timestamp_ms=timestamp_ms,
            on_delivery=on_delivery,
        )

    def send_and_wait(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        *,
        partition: int | None = None,
        headers: Iterable[Header] | None = None,
        timestamp_ms: int | None = None,
        timeout: float | None = None,
    ) -> RecordMetadata:
        future = self.send(
            topic, value, key, partition=partition, headers=headers, timestamp_ms=timestamp_ms
        )
        self.flush(timeout)
        return future.result(timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Send everything buffered and wait for every delivery (ClientTimeoutError)."""
        self._runner.run(self._impl.flush(timeout))

    def partitions_for(self, topic: str) -> list[int]:
        return self._runner.run(self._impl.partitions_for(topic))

    def close(self, timeout: float | None = None) -> None:
        """Flush (up to ``timeout`` seconds), stop the sender and the private loop."""
        if self._impl.closed:
            self._runner.stop()
            return
        try:
            self._runner.run(self._impl.close(timeout))
        finally:
            self._runner.stop()

    @property
    def closed(self) -> bool:
        return self._impl.closed
