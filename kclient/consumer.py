"""The synchronous consumer: a thin facade over :class:`kclient.aio.Consumer`.

The asyncio consumer (fetchers, heartbeats, commits) runs on a private event-loop thread owned
by this object; each method runs the matching coroutine there and waits. Rebalance callbacks
run on the thread that calls :meth:`Consumer.poll`, between the revoke and the join steps, so a
listener may call ``commit``, ``seek`` or ``position`` on the consumer. Like Kafka's, a consumer
is meant for one thread at a time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Self, Unpack

from kclient._loop import LoopThread
from kclient.aio.consumer import Consumer as AsyncConsumer
from kclient.aio.consumer import ConsumerSettings, RebalanceListener
from kclient.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

__all__ = ["Consumer"]


async def _started(bootstrap: str | Sequence[str], settings: ConsumerSettings) -> AsyncConsumer:
    consumer = AsyncConsumer(bootstrap, **settings)
    try:
        await consumer.start()
    except BaseException:
        await consumer.close(autocommit=False)
        raise
    return consumer


class Consumer:
    """A blocking consumer (settings as for :class:`kclient.aio.Consumer`).

    ::

        with Consumer("http://127.0.0.1:8080", group_id="billing",
                      auto_offset_reset="earliest", value_deserializer="json") as consumer:
            consumer.subscribe(["orders"])
            for record in consumer:
                handle(record.value)
    """

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *topics: str,
        **settings: Unpack[ConsumerSettings],
    ) -> None:
        self._runner = LoopThread("kclient-consumer")
        self._impl = self._runner.run_or_stop(_started(bootstrap, settings))
        self._listener: RebalanceListener | None = None
        if topics:
            self.subscribe(list(topics))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        return self._runner.run(coro, timeout)

    # ------------------------------------------------------------- subscribe / assign

    def subscribe(
        self,
        topics: Iterable[str] | None = None,
        *,
        pattern: str | None = None,
        listener: RebalanceListener | None = None,
    ) -> None:
        """See :meth:`kclient.aio.Consumer.subscribe`; ``listener`` runs in ``poll``'s thread."""
        self._listener = listener

        async def call() -> None:
            self._impl.subscribe(topics, pattern=pattern)

        self._run(call())

    def unsubscribe(self) -> None:
        self._run(self._impl.unsubscribe())

    def subscription(self) -> set[str] | str | None:
        return self._impl.subscription()

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        wanted = list(partitions)

        async def call() -> None:
            self._impl.assign(wanted)

        self._run(call())

    def assignment(self) -> set[TopicPartition]:
        return self._impl.assignment()

    # ----------------------------------------------------------------------------- poll

    def poll(self, timeout: float = 0.0, max_records: int | None = None) -> list[ConsumerRecord]:
        """Records, waiting up to ``timeout`` seconds; rebalances (and their callbacks) first."""
        deadline = time.monotonic() + timeout
        while True:
            if self._impl.rebalance_needed:
                self._rebalance()
            records: list[ConsumerRecord] = self._run(self._impl.poll_once(deadline, max_records))
            if records or time.monotonic() >= deadline:
                return records

    def _rebalance(self) -> None:
        revoked = self._run(self._impl.begin_rebalance())
        if self._listener is not None and revoked:
            self._listener.on_partitions_revoked(revoked)
        assigned = self._run(self._impl.finish_rebalance())
        if self._listener is not None:
            self._listener.on_partitions_assigned(assigned)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        """Records forever, or until ``consumer_timeout_ms`` passes without one."""
        idle_since = time.monotonic()
        limit = self._impl.consumer_timeout
        while not self._impl.closed:
            records = self.poll(timeout=min(limit or 1.0, 1.0))
            if records:
                idle_since = time.monotonic()
                yield from records
            elif limit is not None and time.monotonic() - idle_since >= limit:
                return

    # ---------------------------------------------------------------------- positions

    def seek(self, tp: TopicPartition, offset: int) -> None:
        async def call() -> None:
            self._impl.seek(tp, offset)

        self._run(call())

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        async def call() -> None:
            self._impl.seek_to_beginning(*partitions)

        self._run(call())

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        async def call() -> None:
            self._impl.seek_to_end(*partitions)

        self._run(call())

    def position(self, tp: TopicPartition) -> int:
        result: int = self._run(self._impl.position(tp))
        return result

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._impl.highwater(tp)

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        result: dict[TopicPartition, int] = self._run(
            self._impl.beginning_offsets(list(partitions))
        )
        return result

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        result: dict[TopicPartition, int] = self._run(self._impl.end_offsets(list(partitions)))
        return result

    def partitions_for(self, topic: str) -> list[int]:
        result: list[int] = self._run(self._impl.partitions_for(topic))
        return result

    def topics(self) -> list[str]:
        result: list[str] = self._run(self._impl.topics())
        return result

    # ------------------------------------------------------------------------ commits

    def commit(
        self, offsets: Mapping[TopicPartition, int | OffsetAndMetadata] | None = None
    ) -> None:
        """Commit and wait; see :meth:`kclient.aio.Consumer.commit`."""
        self._run(self._impl.commit(offsets))

    def commit_async(
        self,
        offsets: Mapping[TopicPartition, int | OffsetAndMetadata] | None = None,
        callback: Any = None,
    ) -> Future[None]:
        """Commit in the background; the callback ``(offsets, error)`` runs on the consumer's
        loop thread. Returns a concurrent future."""

        async def call() -> None:
            await self._impl.commit_async(offsets, callback)

        return self._runner.submit(call())

    def committed(self, tp: TopicPartition) -> OffsetAndMetadata | None:
        result: OffsetAndMetadata | None = self._run(self._impl.committed(tp))
        return result

    @property
    def member_id(self) -> str | None:
        return self._impl.member_id

    @property
    def generation_id(self) -> int:
        return self._impl.generation_id

    @property
    def closed(self) -> bool:
        return self._impl.closed

    def close(self, *, autocommit: bool = True) -> None:
        """Commit (with auto-commit), leave the group and stop the private loop."""
        try:
            if not self._impl.closed:
                self._run(self._impl.close(autocommit=autocommit))
        finally:
            self._runner.stop()
