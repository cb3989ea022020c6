"""The asyncio producer: per-partition batching, leaders from metadata, retries, futures.

How a record travels:

1. :meth:`Producer.send` serializes the key and value, picks a partition (explicit; Kafka's
   murmur2 of the key bytes; else the topic's *sticky* partition, which changes when its batch
   fills or is sent, as in KIP-480) and appends the record to that partition's open
   :class:`~kclient._accumulator.ProducerBatch`. It returns a :class:`RecordFuture` at once.
2. The sender task drains batches that are ready (``batch_size`` reached, ``linger_ms``
   elapsed, or a flush asked for) and posts each to its partition's leader, at most one batch
   in flight per partition (so records of a partition keep their order) and
   ``max_in_flight_per_broker`` per broker.
3. A retriable error (``error.retriable``: no leader, not leader, not enough replicas, broker
   unreachable...) is retried with exponential backoff until ``delivery_timeout_ms``; a leader
   error refreshes the metadata first. A failure with ``after_append`` (the records may have
   been written: acks=all timed out, connection lost after sending) is **not** resent unless
   ``retry_ambiguous=True``, since a resend could duplicate records. Every other error fails
   the batch. Either way every record's future resolves exactly once and its callback runs.

Concurrency: the producer lives on one event loop. ``send`` may also be called from other
threads through :meth:`Producer.send_threadsafe` (the sync :class:`kclient.Producer` does): the
accumulator is guarded by a ``threading.Lock`` held only for list appends, and the sender is
woken with ``call_soon_threadsafe``. Delivery callbacks run on the producer's loop; they must
not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Self, TypedDict, cast
from urllib.parse import quote

import orjson

from kclient._accumulator import RECORD_OVERHEAD, ProducerBatch
from kclient._futures import RecordFuture
from kclient._metadata import Metadata, TopicMeta, parse_bootstrap
from kclient._transport import Transport, error_of
from kclient.errors import (
    BrokerError,
    BrokerUnavailableError,
    ClientTimeoutError,
    ClosedError,
    LeaderNotAvailableError,
    NotLeaderError,
    UnknownPartitionError,
    UnknownTopicError,
    error_from_code,
)
from kclient.protocol import MEDIA_BINARY_V2, partition_for_key
from kclient.serde import SerializerSpec, bytes_serializer, resolve_serializer
from kclient.structs import Header, RecordMetadata

__all__ = ["DeliveryCallback", "Partitioner", "Producer", "ProducerSettings"]

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[RecordMetadata | None, BaseException | None], None]
"""Called once per record on the producer's loop: (metadata, None) or (None, error)."""
Partitioner = Callable[[str, bytes | None, int], int]
"""(topic, serialized key or None, partition count) -> partition."""

_new_future: Final = cast(
    Callable[[type[RecordFuture], tuple[Any, int, int]], RecordFuture], tuple.__new__
)
#: A produce response record with an error (``"error_code":`` followed by a number).
_RECORD_ERROR: Final = re.compile(rb'"error_code":\s*\d')
_ACKS: Final = {"0": "0", "1": "1", "all": "all", "-1": "all"}
_HEADERS: Final = {"Content-Type": MEDIA_BINARY_V2, "Accept": "application/json"}
_LEADER_ERRORS: Final = (
    NotLeaderError,
    LeaderNotAvailableError,
    BrokerUnavailableError,
    UnknownTopicError,
    UnknownPartitionError,
)


class ProducerSettings(TypedDict, total=False):
    """The keyword settings of both producers (see :class:`Producer`)."""

    client_id: str
    acks: int | str
    linger_ms: float
    batch_size: int
    buffer_memory: int
    max_block_ms: float
    retries: int | None
    retry_backoff_ms: float
    retry_backoff_max_ms: float
    retry_ambiguous: bool
    delivery_timeout_ms: float
    request_timeout_ms: float
    max_in_flight_per_broker: int
    key_serializer: SerializerSpec | None
    value_serializer: SerializerSpec | None
    partitioner: Partitioner | None


def _acks(acks: int | str) -> str:
    value = _ACKS.get(str(acks).lower())
    if value is None:
        raise ValueError(f"acks must be 0, 1 or 'all', not {acks!r}")
    return value


class Producer:
    """An asyncio Kafka-style producer for kbroker (see the module docstring).

    Use as ``async with Producer("http://host:8080") as producer:`` or call :meth:`start` and
    :meth:`close`. All settings are keyword-only:

    - ``acks``: 0, 1 or "all" (default "all"); ``linger_ms`` (5) and ``batch_size`` (bytes of
      encoded records per request, 512 KiB) shape batches; ``buffer_memory`` (32 MiB) bounds
      what is buffered: ``send`` waits for room, up to ``max_block_ms``.
    - ``retries`` (unbounded by default, within ``delivery_timeout_ms`` = 120 s),
      ``retry_backoff_ms`` (100, doubling up to ``retry_backoff_max_ms`` = 1000),
      ``retry_ambiguous`` (False: see the module docstring).
    - ``key_serializer``/``value_serializer``: "bytes" (default), "str", "json" or a callable;
      ``partitioner``: a callable replacing the default partitioner.
    """

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *,
        client_id: str = "kclient-producer",
        acks: int | str = "all",
        linger_ms: float = 5,
        batch_size: int = 512 * 1024,
        buffer_memory: int = 32 << 20,
        max_block_ms: float = 60_000,
        retries: int | None = None,
        retry_backoff_ms: float = 100,
        retry_backoff_max_ms: float = 1000,
        retry_ambiguous: bool = False,
        delivery_timeout_ms: float = 120_000,
        request_timeout_ms: float = 30_000,
        max_in_flight_per_broker: int = 16,
        key_serializer: SerializerSpec | None = None,
        value_serializer: SerializerSpec | None = None,
        partitioner: Partitioner | None = None,
    ) -> None:
        if batch_size < 1 or buffer_memory < batch_size:
            raise ValueError("batch_size must be positive and at most buffer_memory")
        self.acks = _acks(acks)
        self.linger = linger_ms / 1000
        self.batch_size = batch_size
        self._batch_threshold = batch_size * 3 // 4  # raw bytes; base64 adds a third
        self.buffer_memory = buffer_memory
        self.max_block = max_block_ms / 1000
        self.retries = retries if retries is not None else 1 << 31
        self.retry_backoff = retry_backoff_ms / 1000
        self.retry_backoff_max = retry_backoff_max_ms / 1000
        self.retry_ambiguous = retry_ambiguous
        self.delivery_timeout = delivery_timeout_ms / 1000
        self.max_in_flight_per_broker = max_in_flight_per_broker
        self._key_ser = resolve_serializer(key_serializer)
        self._value_ser = resolve_serializer(value_serializer)
        self._raw_keys = self._key_ser is bytes_serializer
        self._raw_values = self._value_ser is bytes_serializer
        self._partitioner = partitioner
        self._transport = Transport(request_timeout_ms=int(request_timeout_ms), client_id=client_id)
        self.metadata = Metadata(self._transport, parse_bootstrap(bootstrap))
        self._lock = threading.Lock()
        self._open: dict[tuple[str, int], ProducerBatch] = {}
        self._full: dict[tuple[str, int], deque[ProducerBatch]] = {}
        self._in_flight: set[tuple[str, int]] = set()
        self._incomplete: set[ProducerBatch] = set()
        self._sticky: dict[str, int] = {}
        self._buffered = 0
        self._space = threading.Condition(threading.Lock())
        self._flushing = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._wake: asyncio.Event | None = None
        self._wake_pending = False
        self._sender: asyncio.Task[None] | None = None
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._closed = False

    # ----------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind to the running loop, read the cluster metadata and start the sender."""
        if self._sender is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        await self.metadata.refresh_cluster()
        self._sender = asyncio.create_task(self._run_sender(), name="kclient-producer-sender")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, timeout: float | None = None) -> None:
        """Flush (up to ``timeout`` seconds, unbounded by default), then stop.

        Records still undelivered when the timeout expires fail with ClosedError.
        """
        if self._closed:
            return
        try:
            if self._sender is not None:
                with contextlib.suppress(ClientTimeoutError):
                    await self.flush(timeout)
        finally:
            self._closed = True
            if self._sender is not None:
                self._sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sender
            self._fail_all(ClosedError("the producer was closed before delivery"))
            await self._transport.close()

    # --------------------------------------------------------------------------- send

    async def send(
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
        """Queue one record; returns its delivery future (await it for the RecordMetadata).

        Waits only to read the topic's metadata the first time, or for buffer room.
        Raises UnknownTopicError, SerializationError or ClientTimeoutError at once.
        """
        if self._buffered >= self.buffer_memory:
            await self._wait_for_room_async()
        if topic not in self.metadata.topics:
            await self.metadata.topic(topic)
        return self._append(topic, value, key, partition, headers, timestamp_ms, on_delivery)

    async def send_and_wait(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        *,
        partition: int | None = None,
        headers: Iterable[Header] | None = None,
        timestamp_ms: int | None = None,
    ) -> RecordMetadata:
        """Send one record and wait for its delivery."""
        future = await self.send(
            topic, value, key, partition=partition, headers=headers, timestamp_ms=timestamp_ms
        )
        return await future

    def send_threadsafe(
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
        """:meth:`send` for threads other than the producer's loop (blocks while it must)."""
        if self._loop is None:
            raise ClosedError("the producer is not started")
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("use `await send(...)` on the producer's own loop")
        if self._buffered >= self.buffer_memory:
            self._wait_for_room_blocking()
        if topic not in self.metadata.topics:
            lookup = asyncio.run_coroutine_threadsafe(self.metadata.topic(topic), self._loop)
            try:
                lookup.result(self.max_block)
            except TimeoutError:
                lookup.cancel()
                raise ClientTimeoutError(
                    f"no metadata for topic {topic} within max_block_ms"
                ) from None
        return self._append(topic, value, key, partition, headers, timestamp_ms, on_delivery)

    def _append(  # noqa: C901, PLR0912, PLR0917 (the hot path of every send: one frame)
        self,
        topic: str,
        value: Any,
        key: Any,
        partition: int | None,
        headers: Iterable[Header] | None,
        timestamp_ms: int | None,
        on_delivery: DeliveryCallback | None,
    ) -> RecordFuture:
        """Serialize, partition and add one record to its batch (thread-safe)."""
        if self._closed:
            raise ClosedError("the producer is closed")
        if value is not None and (type(value) is not bytes or not self._raw_values):
            value = self._value_ser(value)
        if key is not None and (type(key) is not bytes or not self._raw_keys):
            key = self._key_ser(key)
        meta = self.metadata.topics.get(topic)
        if meta is None:
            raise UnknownTopicError(f"no metadata for topic {topic}")
        sticky = False
        if partition is None:
            if key is None and self._partitioner is None:
                partition = self._sticky.get(topic)
                if partition is None:
                    partition = self._next_sticky(meta, None)
                sticky = True
            else:
                partition = self._partition(meta, key)
        elif not 0 <= partition < meta.partitions:
            raise UnknownPartitionError(f"partition {partition} of {topic} does not exist")
        size = RECORD_OVERHEAD + (len(value) if value else 0) + (len(key) if key else 0)
        tp = (topic, partition)
        with self._lock:
            batch = self._open.get(tp)
            wake = batch is None
            if batch is None:
                batch = self._open[tp] = ProducerBatch(topic, partition, self._loop_thread)
                self._incomplete.add(batch)
            index = len(batch.values)
            batch.keys.append(key)
            batch.values.append(value)
            if headers or timestamp_ms is not None or on_delivery is not None:
                batch.add_extras(index, headers, timestamp_ms, on_delivery)
            elif batch.headers is not None or batch.timestamps is not None:
                batch.pad()
            batch.size += size
            self._buffered += size
            if batch.size >= self._batch_threshold:
                del self._open[tp]
                self._full.setdefault(tp, deque()).append(batch)
                if sticky:
                    self._next_sticky(meta, partition)
                wake = True
        if wake:
            self._wakeup()
        return _new_future(
            RecordFuture, (batch.result, index, -1 if timestamp_ms is None else timestamp_ms)
        )

    def _partition(self, meta: TopicMeta, key: bytes | None) -> int:
        """The partition of a record that names none: partitioner, murmur2 or sticky."""
        if self._partitioner is not None:
            return self._partitioner(meta.name, key, meta.partitions)
        if key is not None:
            return partition_for_key(key, meta.partitions)
        partition = self._sticky.get(meta.name)
        return partition if partition is not None else self._next_sticky(meta, None)

    def _next_sticky(self, meta: TopicMeta, previous: int | None) -> int:
        """A new sticky partition for ``meta``'s keyless records (another one if possible)."""
        choices = meta.available() or list(range(meta.partitions))
        if previous is not None and len(choices) > 1:
            choices = [p for p in choices if p != previous]
        chosen = random.choice(choices)
        self._sticky[meta.name] = chosen
        return chosen

    def _wakeup(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        if threading.get_ident() == self._loop_thread:
            wake.set()
        elif not self._wake_pending:
            self._wake_pending = True
            loop.call_soon_threadsafe(self._wake_from_thread)

    def _wake_from_thread(self) -> None:
        self._wake_pending = False
        if self._wake is not None:
            self._wake.set()

    # ---------------------------------------------------------------------- buffer room

    def _wait_for_room_blocking(self) -> None:
        deadline = time.monotonic() + self.max_block
        with self._space:
            while self._buffered >= self.buffer_memory and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ClientTimeoutError(
                        f"buffer_memory ({self.buffer_memory} bytes) stayed full for "
                        f"{self.max_block} s"
                    )
                self._space.wait(left)

    async def _wait_for_room_async(self) -> None:
        deadline = time.monotonic() + self.max_block
        while self._buffered >= self.buffer_memory and not self._closed:
            if time.monotonic() > deadline:
                raise ClientTimeoutError(
                    f"buffer_memory ({self.buffer_memory} bytes) stayed full for {self.max_block} s"
                )
            oldest = next(iter(self._incomplete), None)
            if oldest is None:
                return
            self._flushing += 1
            try:
                self._wakeup()
                await oldest.result.wait_async()
            finally:
                self._flushing -= 1

    # --------------------------------------------------------------------------- flush

    async def flush(self, timeout: float | None = None) -> None:
        """Send everything buffered now and wait until each record is delivered or failed.

        Raises ClientTimeoutError when ``timeout`` seconds pass first.
        """
        with self._lock:
            pending = [b.result for b in self._incomplete]
        if not pending:
            return
        self._flushing += 1
        try:
            self._wakeup()
            async with asyncio.timeout(timeout):
                for result in pending:
                    await result.wait_async()
        except TimeoutError:
            raise ClientTimeoutError(f"flush did not complete within {timeout} s") from None
        finally:
            self._flushing -= 1

    # -------------------------------------------------------------------------- sender

    async def _run_sender(self) -> None:
        assert self._wake is not None
        try:
            async with asyncio.TaskGroup() as group:
                while True:
                    self._wake.clear()
                    delay = self._drain(group)
                    if delay is None:
                        await self._wake.wait()
                    else:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(delay):
                                await self._wake.wait()
        except Exception as exc:
            log.exception("the producer's sender failed")
            self._fail_all(exc)
            raise

    def _drain(self, group: asyncio.TaskGroup) -> float | None:
        """Start sending every ready batch; seconds until the next open batch is due."""
        now = time.monotonic()
        next_due: float | None = None
        ready: list[ProducerBatch] = []
        with self._lock:
            for tp, queue in list(self._full.items()):
                if tp not in self._in_flight:
                    ready.append(queue.popleft())
                    if not queue:
                        del self._full[tp]
            for tp, batch in list(self._open.items()):
                if tp in self._in_flight or tp in self._full:
                    continue
                due = batch.created + self.linger
                if self._flushing or due <= now:
                    del self._open[tp]
                    ready.append(batch)
                    if self._sticky.get(batch.topic) == batch.partition:
                        del self._sticky[batch.topic]
                elif next_due is None or due < next_due:
                    next_due = due
            for batch in ready:
                self._in_flight.add((batch.topic, batch.partition))
        for batch in ready:
            group.create_task(self._send_batch(batch))
        return None if next_due is None else max(0.0, next_due - now)

    async def _send_batch(self, batch: ProducerBatch) -> None:
        try:
            base_offset = await self._deliver(batch)
        except Exception as exc:
            self._complete(batch, None, exc)
        else:
            self._complete(batch, base_offset, None)
        finally:
            self._in_flight.discard((batch.topic, batch.partition))
            if self._wake is not None:
                self._wake.set()

    async def _deliver(self, batch: ProducerBatch) -> int | None:
        """Post the batch to its leader, retrying what may be retried; the base offset."""
        deadline = batch.created + self.delivery_timeout
        while True:
            try:
                url = await self.metadata.leader_url(batch.topic, batch.partition)
                slots = self._slots.get(url)
                if slots is None:
                    slots = self._slots[url] = asyncio.Semaphore(self.max_in_flight_per_broker)
                async with slots:
                    return await self._post(url, batch)
            except (BrokerError, BrokerUnavailableError) as exc:
                retry = (
                    exc.retriable
                    and (self.retry_ambiguous or not exc.after_append)
                    and batch.attempts < self.retries
                )
                backoff = min(self.retry_backoff * (2**batch.attempts), self.retry_backoff_max)
                if not retry or time.monotonic() + backoff > deadline:
                    raise
                if isinstance(exc, _LEADER_ERRORS):
                    self.metadata.invalidate(batch.topic)
                batch.attempts += 1
                log.info(
                    "retrying %s-%d after %s (attempt %d)",
                    batch.topic,
                    batch.partition,
                    exc,
                    batch.attempts,
                )
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))

    async def _post(self, url: str, batch: ProducerBatch) -> int | None:
        path = f"{url}/topics/{quote(batch.topic, safe='')}/partitions/{batch.partition}"
        response = await self._transport.request(
            "POST", path, params={"acks": self.acks}, body=batch.encode(), headers=_HEADERS
        )
        if response.status != 200:
            raise error_of(response)
        body = response.body
        if _RECORD_ERROR.search(body) is None:
            # Every record succeeded and, for one partition, got consecutive offsets: read only
            # the first record object (no strings with braces in it without an error).
            start = body.index(b"[") + 1
            first = (
                orjson.loads(body[start : body.index(b"}", start) + 1])
                if body[start : start + 1] == b"{"
                else {}
            )
        else:
            offsets = orjson.loads(body)["offsets"]
            first = next((o for o in offsets if o.get("error_code")), offsets[0])
        code = first.get("error_code")
        if code:
            raise error_from_code(
                code, str(first.get("error") or ""), after_append=bool(first.get("after_append"))
            )
        offset = first.get("offset")
        return int(offset) if offset is not None else None

    def _complete(
        self, batch: ProducerBatch, base_offset: int | None, error: Exception | None
    ) -> None:
        if not batch.result.complete(base_offset, error):
            return
        with self._lock:
            self._incomplete.discard(batch)
            self._buffered -= batch.size
        with self._space:
            self._space.notify_all()
        if batch.callbacks:
            for index, callback in batch.callbacks:
                self._run_callback(batch, index, callback, error)

    @staticmethod
    def _run_callback(
        batch: ProducerBatch, index: int, callback: DeliveryCallback, error: Exception | None
    ) -> None:
        try:
            if error is None:
                callback(batch.result.metadata(index, batch.timestamp(index)), None)
            else:
                callback(None, error)
        except Exception:
            log.exception("a delivery callback raised")

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            batches = list(self._incomplete)
            self._open.clear()
            self._full.clear()
        for batch in batches:
            self._complete(batch, None, error if isinstance(error, Exception) else ClosedError())

    # ------------------------------------------------------------------------ metadata

    async def partitions_for(self, topic: str) -> list[int]:
        """The partition ids of ``topic`` (UnknownTopicError if it does not exist)."""
        return list(range((await self.metadata.topic(topic)).partitions))

    @property
    def closed(self) -> bool:
        return self._closed
