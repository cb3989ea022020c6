"""The asyncio producer: per-partition batching, leaders from metadata, retries, futures.

How a record travels:

1. :meth:`Producer.send` serializes the key and value, picks a partition (explicit; Kafka's
   murmur2 of the key bytes; else the topic's *sticky* partition, which changes when its batch
   fills or is sent, as in KIP-480) and appends the record to that partition's open
   :class:`~kclient._accumulator.ProducerBatch`. It returns a :class:`RecordFuture` at once.
2. The sender task drains batches that are ready (``batch_size`` reached, ``linger_ms``
   elapsed, or a flush asked for) and posts each to its partition's leader, at most
   ``max_in_flight_per_partition`` batches in flight per partition and
   ``max_in_flight_per_broker`` per broker.
3. A retriable error (``error.retriable``: no leader, not leader, not enough replicas, broker
   unreachable...) is retried with exponential backoff until ``delivery_timeout_ms``; a leader
   error refreshes the metadata first. Every other error fails the batch. Either way every
   record's future resolves exactly once and its callback runs.

**Idempotence** (on by default with acks="all", as in Kafka 3.x; :mod:`kclient._idempotence`
has the rules): before its first batch the producer gets a producer id (``POST /producers``),
and every request carries the id, the epoch and the partition's sequence, so a broker writes a
resent batch only once and answers it with the original offsets. Failures with
``after_append`` (the records may have been written: acks=all timed out, connection lost after
sending) are then retried like the others, and up to 5 batches per partition may be in flight
(``max_in_flight_per_partition``, default 1) without losing their order. Without idempotence
one batch per partition is in flight (so a partition's records keep their order) and an
``after_append`` failure is **not** resent unless ``retry_ambiguous=True``, since a resend
could duplicate records.

Concurrency: the producer lives on one event loop. ``send`` may also be called from other
threads through :meth:`Producer.send_threadsafe` (the sync :class:`kclient.Producer` does): the
accumulator is guarded by a ``threading.Lock`` held only for list appends, and the sender is
woken with ``call_soon_threadsafe``. Delivery callbacks run on the producer's loop; they must
not block. The idempotence state is used on the loop only.
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
from kclient._idempotence import IdempotenceState
from kclient._metadata import Metadata, TopicMeta, parse_bootstrap
from kclient._transport import Transport, error_of
from kclient.errors import (
    BrokerError,
    BrokerUnavailableError,
    ClientTimeoutError,
    ClosedError,
    LeaderNotAvailableError,
    NotLeaderError,
    OutOfOrderSequenceError,
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


class _Requeued(Exception):
    """The batch went back to its queue, to be sent again after the producer's reset."""


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
    enable_idempotence: bool | None
    max_in_flight_per_partition: int
    key_serializer: SerializerSpec | None
    value_serializer: SerializerSpec | None
    partitioner: Partitioner | None


def _acks(acks: int | str) -> str:
    value = _ACKS.get(str(acks).lower())
    if value is None:
        raise ValueError(f"acks must be 0, 1 or 'all', not {acks!r}")
    return value


def _idempotence(acks: str, enabled: bool | None, max_in_flight: int) -> IdempotenceState | None:
    """The idempotence state the settings ask for (None: idempotence off)."""
    if enabled is None:
        enabled = acks == "all"
    if not enabled:
        if max_in_flight != 1:
            raise ValueError(
                "max_in_flight_per_partition above 1 needs enable_idempotence (without it, "
                "concurrent requests could reorder a partition's records)"
            )
        return None
    if acks != "all":
        raise ValueError(f"enable_idempotence needs acks='all', not acks={acks!r}")
    return IdempotenceState(max_in_flight=max_in_flight)


class Producer:
    """An asyncio Kafka-style producer for kbroker (see the module docstring).

    Use as ``async with Producer("http://host:8080") as producer:`` or call :meth:`start` and
    :meth:`close`. All settings are keyword-only:

    - ``acks``: 0, 1 or "all" (default "all"); ``linger_ms`` (5) and ``batch_size`` (bytes of
      encoded records per request, 512 KiB) shape batches; ``buffer_memory`` (32 MiB) bounds
      what is buffered: ``send`` waits for room, up to ``max_block_ms``.
    - ``retries`` (unbounded by default, within ``delivery_timeout_ms`` = 120 s),
      ``retry_backoff_ms`` (100, doubling up to ``retry_backoff_max_ms`` = 1000),
      ``retry_ambiguous`` (False: see the module docstring; moot with idempotence).
    - ``enable_idempotence``: None (the default) turns it on when ``acks`` is "all" and off
      otherwise; True with acks 0 or 1 is a ValueError, as in Kafka.
      ``max_in_flight_per_partition``: 1 (the default) to 5 with idempotence, only 1 without.
      Concurrent requests to a partition travel on different connections and often arrive out
      of order; the broker refuses one that overtook an earlier one, and it is sent again. With
      full batches on a fast network that costs more than it gains, hence the default of 1.
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
        enable_idempotence: bool | None = None,
        max_in_flight_per_partition: int = 1,
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
        self._idem = _idempotence(self.acks, enable_idempotence, max_in_flight_per_partition)
        self.enable_idempotence = self._idem is not None
        self.max_in_flight_per_partition = 1 if self._idem is None else self._idem.max_in_flight
        self._renewals = 0
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
        self._in_flight: dict[tuple[str, int], int] = {}
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
        meta = self.metadata.topics.get(topic) or await self.metadata.topic(topic)
        return self._append(meta, value, key, partition, headers, timestamp_ms, on_delivery)

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
        # One read of the metadata: the sender may invalidate the topic at any moment.
        meta = self.metadata.topics.get(topic)
        if meta is None:
            lookup = asyncio.run_coroutine_threadsafe(self.metadata.topic(topic), self._loop)
            try:
                meta = lookup.result(self.max_block)
            except TimeoutError:
                lookup.cancel()
                raise ClientTimeoutError(
                    f"no metadata for topic {topic} within max_block_ms"
                ) from None
        return self._append(meta, value, key, partition, headers, timestamp_ms, on_delivery)

    def _append(  # noqa: C901, PLR0917 (the hot path of every send: one frame)
        self,
        meta: TopicMeta,
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
        topic = meta.name
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
                    if self._idem is not None and self._idem.blocked:
                        delay = await self._renew_identity()
                    else:
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
        in_flight, idem = self._in_flight, self._idem
        with self._lock:
            for tp, queue in list(self._full.items()):
                room = (1 if idem is None else idem.window(tp)) - in_flight.get(tp, 0)
                while room > 0 and queue:
                    ready.append(queue.popleft())
                    in_flight[tp] = in_flight.get(tp, 0) + 1
                    room -= 1
                if not queue:
                    del self._full[tp]
            for tp, batch in list(self._open.items()):
                if tp in self._full or (
                    tp in in_flight and (idem is None or in_flight[tp] >= idem.window(tp))
                ):
                    continue
                due = batch.created + self.linger
                if self._flushing or due <= now:
                    del self._open[tp]
                    ready.append(batch)
                    in_flight[tp] = in_flight.get(tp, 0) + 1
                    if self._sticky.get(batch.topic) == batch.partition:
                        del self._sticky[batch.topic]
                elif next_due is None or due < next_due:
                    next_due = due
        for batch in ready:
            if idem is not None:
                idem.assign(batch)
            group.create_task(self._send_batch(batch))
        return None if next_due is None else max(0.0, next_due - now)

    async def _send_batch(self, batch: ProducerBatch) -> None:
        idem = self._idem
        try:
            base_offset = await self._deliver(batch)
        except _Requeued:
            pass
        except Exception as exc:
            if idem is not None:
                idem.failed(batch, exc)
            self._complete(batch, None, exc)
        else:
            if idem is not None:
                idem.succeeded(batch)
            self._complete(batch, base_offset, None)
        finally:
            tp = (batch.topic, batch.partition)
            left = self._in_flight.pop(tp, 1) - 1
            if left:
                self._in_flight[tp] = left
            if self._wake is not None:
                self._wake.set()

    async def _deliver(self, batch: ProducerBatch) -> int | None:
        """Post the batch to its leader, retrying what may be retried; the base offset."""
        deadline = batch.created + self.delivery_timeout
        idem = self._idem
        while True:
            head = True
            try:
                if idem is not None:
                    if batch.attempts:  # resends go in sequence order
                        await idem.wait_until_head(batch)
                    head = idem.is_head(batch)
                url = await self.metadata.leader_url(batch.topic, batch.partition)
                slots = self._slots.get(url)
                if slots is None:
                    slots = self._slots[url] = asyncio.Semaphore(self.max_in_flight_per_broker)
                async with slots:
                    return await self._post(url, batch)
            except OutOfOrderSequenceError as exc:
                if idem is None:
                    raise
                await self._out_of_order(idem, batch, exc, sent_as_head=head)
            except (BrokerError, BrokerUnavailableError) as exc:
                retry = (
                    exc.retriable
                    and (idem is not None or self.retry_ambiguous or not exc.after_append)
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

    async def _out_of_order(
        self,
        idem: IdempotenceState,
        batch: ProducerBatch,
        error: OutOfOrderSequenceError,
        *,
        sent_as_head: bool,
    ) -> None:
        """Handle OUT_OF_ORDER_SEQUENCE (the batch was not written): return to resend it with
        the same sequence, raise _Requeued, or re-raise the error (a real gap)."""
        if not sent_as_head:
            # An earlier batch was unresolved: it may simply not have arrived yet.
            await idem.wait_until_head(batch)
            if not idem.has_gap(batch):
                log.debug("%s-%d: overtaken, resending", batch.topic, batch.partition)
                return
        if idem.has_gap(batch):  # an earlier batch failed: this one goes out again, later
            log.info(
                "%s-%d: %d records wait for the epoch bump after a failed batch",
                batch.topic,
                batch.partition,
                len(batch),
            )
            index = idem.requeue(batch)
            with self._lock:
                self._full.setdefault((batch.topic, batch.partition), deque()).insert(index, batch)
            raise _Requeued
        raise error

    async def _renew_identity(self) -> float | None:
        """Get the producer id, or the new epoch after a gap, once no batch is in flight;
        seconds until the next attempt (None: wait for a wake-up)."""
        assert self._idem is not None
        if self._in_flight or not self._incomplete:
            return None
        try:
            await self._idem.renew(self.metadata.call_any)
        except (BrokerError, BrokerUnavailableError) as exc:
            if not exc.retriable:
                log.error(
                    "cannot get a producer id: %s (enable_idempotence=False sends without)", exc
                )
                self._fail_queued(exc, expired_only=False)
                return None
            self._fail_queued(exc, expired_only=True)
            backoff = min(self.retry_backoff * 2.0**self._renewals, self.retry_backoff_max)
            self._renewals += 1
            return backoff * random.uniform(0.8, 1.2)
        self._renewals = 0
        log.info("idempotent producer: %s", self._idem.identity)
        return 0.0

    def _fail_queued(self, error: Exception, *, expired_only: bool) -> None:
        """Fail the batches waiting to be sent (only those past delivery_timeout_ms)."""
        cutoff = time.monotonic() - self.delivery_timeout if expired_only else float("inf")
        failed: list[ProducerBatch] = []
        with self._lock:
            for tp, queue in list(self._full.items()):
                failed += [b for b in queue if b.created <= cutoff]
                kept = deque(b for b in queue if b.created > cutoff)
                if kept:
                    self._full[tp] = kept
                else:
                    del self._full[tp]
            for tp, batch in list(self._open.items()):
                if batch.created <= cutoff:
                    del self._open[tp]
                    failed.append(batch)
        for batch in failed:
            self._complete(batch, None, error)

    async def _post(self, url: str, batch: ProducerBatch) -> int | None:
        path = f"{url}/topics/{quote(batch.topic, safe='')}/partitions/{batch.partition}"
        headers = _HEADERS if batch.sequence < 0 else _HEADERS | IdempotenceState.headers(batch)
        response = await self._transport.request(
            "POST", path, params={"acks": self.acks}, body=batch.encode(), headers=headers
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
