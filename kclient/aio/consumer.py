"""The asyncio consumer: group membership or manual assignment, prefetching fetchers, commits.

- **Fetching.** Each assigned partition with a known position has a fetcher task that reads
  stored batches straight from the partition's leader (``GET .../batches``), decodes them
  (:mod:`kclient._records`) and queues the records, staying up to ``max_prefetch_records``
  ahead of what ``poll`` has returned. ``poll`` only takes from these queues, round-robin over
  partitions, so it rarely waits.
- **Positions.** ``position(tp)`` is the next offset ``poll`` returns. A partition without one
  starts from the group's committed offset, else ``auto_offset_reset`` ("earliest", "latest",
  or "none": ``poll`` raises :class:`NoOffsetForPartitionError`). An out-of-range fetch
  (retention deleted the data, or a seek past the end) resets the same way.
- **Groups.** ``subscribe`` joins ``group_id`` from the next ``poll``; the broker assigns
  partitions. When the coordinator starts a rebalance (seen by the heartbeat task), the next
  ``poll`` revokes every partition (auto-commit, then ``on_partitions_revoked``), rejoins and
  calls ``on_partitions_assigned`` (Kafka's eager protocol). Rebalance callbacks run only
  inside ``poll``.
- **Commits.** ``commit()`` commits the positions (records returned so far) or explicit
  offsets, which are the *next* offsets to consume. With ``enable_auto_commit`` each ``poll``
  commits, every ``auto_commit_interval_ms``, the positions reached by the previous polls
  (Kafka's semantics: at-least-once), and ``close`` commits once more.

Concurrency: one asyncio loop; not safe to call from other threads (use :class:`kclient.Consumer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, Self, TypedDict
from urllib.parse import quote

from kclient._group import GroupMember, fetch_offsets
from kclient._metadata import Metadata, parse_bootstrap
from kclient._records import decode_batches
from kclient._transport import Transport, error_of
from kclient.errors import (
    BrokerError,
    BrokerUnavailableError,
    ClosedError,
    IllegalStateError,
    InvalidGroupIdError,
    KClientError,
    LeaderNotAvailableError,
    NoOffsetForPartitionError,
    NotLeaderError,
    OffsetOutOfRangeError,
    UnknownPartitionError,
    UnknownTopicError,
)
from kclient.protocol import HIGH_WATERMARK_HEADER, MEDIA_BATCHES
from kclient.serde import DeserializerSpec, resolve_deserializer
from kclient.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

__all__ = ["Consumer", "ConsumerSettings", "RebalanceListener"]

log = logging.getLogger(__name__)

OffsetReset = Literal["earliest", "latest", "none"]
_RESETS: Final = frozenset({"earliest", "latest", "none"})
_ACCEPT: Final = {"Accept": MEDIA_BATCHES}
_LEADER_ERRORS: Final = (
    NotLeaderError,
    LeaderNotAvailableError,
    BrokerUnavailableError,
    UnknownTopicError,
)


class RebalanceListener:
    """Rebalance callbacks; subclass and override (methods may be ``async`` with the aio
    consumer). Both run inside ``poll``; a listener may commit, seek or read positions."""

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> Any:
        """Called before a rebalance with every partition this consumer had."""

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> Any:
        """Called after a rebalance with this consumer's new partitions."""


class ConsumerSettings(TypedDict, total=False):
    """The keyword settings of both consumers (see :class:`Consumer`)."""

    group_id: str | None
    client_id: str
    group_instance_id: str | None
    key_deserializer: DeserializerSpec | None
    value_deserializer: DeserializerSpec | None
    auto_offset_reset: OffsetReset
    enable_auto_commit: bool
    auto_commit_interval_ms: float
    max_poll_records: int
    fetch_max_bytes: int
    fetch_max_wait_ms: int
    max_prefetch_records: int
    session_timeout_ms: int
    heartbeat_interval_ms: int
    rebalance_timeout_ms: int
    assignor: str
    request_timeout_ms: float
    retry_backoff_ms: float
    consumer_timeout_ms: float | None


class _Partition:
    """One assigned partition: position, prefetched records and its fetcher task.

    ``chunks`` hold decoded records not yet returned, contiguous from ``position``; ``head``
    indexes the first unreturned record of ``chunks[0]``. ``epoch`` changes on every seek, so a
    fetcher started before it never queues records from the old position.
    """

    __slots__ = (
        "buffered",
        "chunks",
        "epoch",
        "error",
        "head",
        "high_watermark",
        "position",
        "reset",
        "room",
        "task",
        "tp",
    )

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.position: int | None = None
        self.reset: str | None = None
        self.chunks: deque[list[ConsumerRecord]] = deque()
        self.head = 0
        self.buffered = 0
        self.epoch = 0
        self.error: BaseException | None = None
        self.high_watermark: int | None = None
        self.task: asyncio.Task[None] | None = None
        self.room = asyncio.Event()
        self.room.set()

    def clear(self) -> None:
        self.chunks.clear()
        self.head = 0
        self.buffered = 0
        self.epoch += 1
        self.room.set()
        if self.task is not None:
            self.task.cancel()
            self.task = None


class Consumer:
    """An asyncio consumer (see the module docstring). Settings are keyword-only:

    - ``group_id`` (None: no group; ``assign`` only, no commits); ``client_id``;
      ``group_instance_id`` (static membership); ``assignor`` ("sticky", "range",
      "roundrobin"); ``session_timeout_ms`` (10000), ``heartbeat_interval_ms`` (3000),
      ``rebalance_timeout_ms`` (30000: how long a rebalance waits for members).
    - ``auto_offset_reset`` ("latest"), ``enable_auto_commit`` (True),
      ``auto_commit_interval_ms`` (5000).
    - ``max_poll_records`` (500), ``fetch_max_bytes`` (per partition request, 4 MiB),
      ``fetch_max_wait_ms`` (500: long-poll), ``max_prefetch_records`` (per partition, 20000).
    - ``key_deserializer``/``value_deserializer``: "bytes" (default), "str", "json" or a
      callable; ``consumer_timeout_ms``: iteration stops after this long without records.
    """

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *,
        group_id: str | None = None,
        client_id: str = "kclient-consumer",
        group_instance_id: str | None = None,
        key_deserializer: DeserializerSpec | None = None,
        value_deserializer: DeserializerSpec | None = None,
        auto_offset_reset: OffsetReset = "latest",
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: float = 5000,
        max_poll_records: int = 500,
        fetch_max_bytes: int = 4 << 20,
        fetch_max_wait_ms: int = 500,
        max_prefetch_records: int = 20_000,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3000,
        rebalance_timeout_ms: int = 30_000,
        assignor: str = "sticky",
        request_timeout_ms: float = 30_000,
        retry_backoff_ms: float = 100,
        consumer_timeout_ms: float | None = None,
    ) -> None:
        if auto_offset_reset not in _RESETS:
            raise ValueError(f"auto_offset_reset must be one of {sorted(_RESETS)}")
        if group_id is not None and not group_id:
            raise ValueError("group_id must not be empty")
        self.group_id = group_id
        self.client_id = client_id
        self.auto_offset_reset: str = auto_offset_reset
        self.enable_auto_commit = enable_auto_commit and group_id is not None
        self.auto_commit_interval = auto_commit_interval_ms / 1000
        self.max_poll_records = max_poll_records
        self.fetch_max_bytes = fetch_max_bytes
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.max_prefetch_records = max_prefetch_records
        self.retry_backoff = retry_backoff_ms / 1000
        self.consumer_timeout = consumer_timeout_ms / 1000 if consumer_timeout_ms else None
        self._key_de = resolve_deserializer(key_deserializer)
        self._value_de = resolve_deserializer(value_deserializer)
        self._transport = Transport(request_timeout_ms=int(request_timeout_ms), client_id=client_id)
        # Fetches long-poll, one per assigned partition: on their own connections, so that a
        # heartbeat, join or commit never queues behind them for a connection (with one pool, a
        # member of many partitions missed its heartbeats and the group could not rebalance).
        self._fetch_transport = Transport(
            request_timeout_ms=int(request_timeout_ms), client_id=client_id
        )
        self.metadata = Metadata(self._transport, parse_bootstrap(bootstrap))
        self._group = (
            GroupMember(
                self.metadata,
                group_id,
                client_id=client_id,
                group_instance_id=group_instance_id,
                session_timeout_ms=session_timeout_ms,
                rebalance_timeout_ms=rebalance_timeout_ms,
                heartbeat_interval_ms=heartbeat_interval_ms,
                assignor=assignor,
                on_stale=self._wakeup,
            )
            if group_id is not None
            else None
        )
        self._topics: list[str] | None = None
        self._pattern: str | None = None
        self._listener: RebalanceListener | None = None
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._rotation = 0
        self._data: asyncio.Event | None = None
        self._next_auto_commit = time.monotonic() + self.auto_commit_interval
        self._last_committed: dict[TopicPartition, int] = {}
        self._commits: set[asyncio.Task[None]] = set()
        self._started = False
        self._closed = False

    # ----------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Read the cluster metadata (raises BrokerUnavailableError if no broker answers)."""
        if self._started:
            return
        self._data = asyncio.Event()
        await self.metadata.refresh_cluster()
        self._started = True

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, *, autocommit: bool = True) -> None:
        """Commit (with auto-commit), leave the group, stop fetching."""
        if self._closed:
            return
        try:
            if autocommit and self.enable_auto_commit and self._partitions:
                with contextlib.suppress(KClientError):
                    await self.commit()
            if self._commits:
                await asyncio.gather(*self._commits, return_exceptions=True)
            if self._group is not None:
                await self._group.leave()
        finally:
            self._closed = True
            await self._stop_fetchers(list(self._partitions.values()))
            self._partitions.clear()
            await self._transport.close()
            await self._fetch_transport.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the consumer is closed")

    # -------------------------------------------------------------- subscribe / assign

    def subscribe(
        self,
        topics: Iterable[str] | None = None,
        *,
        pattern: str | None = None,
        listener: RebalanceListener | None = None,
    ) -> None:
        """Join ``group_id`` for ``topics`` (a list) or a ``pattern`` (a regex the broker
        matches against topic names) from the next ``poll``."""
        self._check_open()
        if self._group is None:
            raise InvalidGroupIdError("subscribe needs a group_id (or use assign)")
        if (topics is None) == (pattern is None):
            raise ValueError("subscribe to a list of topics or to a pattern")
        if self._topics is None and self._pattern is None and self._partitions:
            raise IllegalStateError("the consumer uses assign(); unsubscribe first")
        self._topics = sorted(set(topics)) if topics is not None else None
        self._pattern = pattern
        self._listener = listener
        self._group.needs_rejoin = True
        self._wakeup()

    def subscription(self) -> set[str] | str | None:
        """The subscribed topics, or the pattern, or None."""
        if self._pattern is not None:
            return self._pattern
        return set(self._topics) if self._topics is not None else None

    async def unsubscribe(self) -> None:
        """Leave the group (committing first with auto-commit) and drop every partition."""
        if self.enable_auto_commit and self._partitions and self._group and self._group.joined:
            with contextlib.suppress(KClientError):
                await self.commit()
        if self._group is not None:
            await self._group.leave()
        self._topics = self._pattern = None
        await self._stop_fetchers(list(self._partitions.values()))
        self._partitions.clear()

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Consume exactly these partitions (no group membership; commits still go to
        ``group_id`` if one is set, as a "simple" consumer's would)."""
        self._check_open()
        if self._topics is not None or self._pattern is not None:
            raise IllegalStateError("the consumer is subscribed; unsubscribe first")
        wanted = {TopicPartition(tp[0], int(tp[1])) for tp in partitions}
        for tp in list(self._partitions):
            if tp not in wanted:
                self._partitions.pop(tp).clear()
        for tp in sorted(wanted):
            if tp not in self._partitions:
                self._partitions[tp] = _Partition(tp)
        self._wakeup()

    def assignment(self) -> set[TopicPartition]:
        return set(self._partitions)

    def _state(self, tp: TopicPartition) -> _Partition:
        state = self._partitions.get(TopicPartition(tp[0], int(tp[1])))
        if state is None:
            raise IllegalStateError(f"{tp[0]}-{tp[1]} is not assigned to this consumer")
        return state

    # ------------------------------------------------------------------------ rebalance

    @property
    def rebalance_needed(self) -> bool:
        group = self._group
        return (
            group is not None
            and (self._topics is not None or self._pattern is not None)
            and group.needs_rejoin
        )

    async def begin_rebalance(self) -> list[TopicPartition]:
        """Revoke every partition (committing first with auto-commit); the revoked ones."""
        revoked = sorted(self._partitions)
        if revoked and self.enable_auto_commit and self._group and self._group.joined:
            try:
                await self.commit()
            except KClientError as exc:
                log.warning("commit before rebalance failed: %s", exc)
        await self._stop_fetchers(list(self._partitions.values()))
        self._partitions.clear()
        return revoked

    async def finish_rebalance(self) -> list[TopicPartition]:
        """Join the group and take the new assignment; the assigned partitions."""
        assert self._group is not None
        assignment = await self._group.join(topics=self._topics, pattern=self._pattern)
        for tp in assignment.partitions:
            self._partitions[tp] = _Partition(tp)
        return list(assignment.partitions)

    async def _rebalance(self) -> None:
        listener = self._listener
        revoked = await self.begin_rebalance()
        if listener is not None and revoked:
            await _maybe_await(listener.on_partitions_revoked(revoked))
        assigned = await self.finish_rebalance()
        if listener is not None:
            await _maybe_await(listener.on_partitions_assigned(assigned))

    # ----------------------------------------------------------------------------- poll

    async def poll(
        self, timeout: float = 0.0, max_records: int | None = None
    ) -> list[ConsumerRecord]:
        """Records from the assigned partitions, waiting up to ``timeout`` seconds for some.

        Joins or rejoins the group first when needed (running the rebalance callbacks).
        Raises a partition's fetch error (NoOffsetForPartitionError, UnknownTopicError...).
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.rebalance_needed:
                await self._rebalance()
            records = await self.poll_once(deadline, max_records)
            if records or time.monotonic() >= deadline:
                return records

    async def poll_once(
        self, deadline: float, max_records: int | None = None
    ) -> list[ConsumerRecord]:
        """One ``poll`` without the rebalance: returns early (maybe empty) when one is due."""
        self._check_open()
        if not self._started:
            await self.start()
        assert self._data is not None
        limit = max_records or self.max_poll_records
        while True:
            self._maybe_auto_commit()
            await self._ensure_fetching()
            records = self._take(limit)
            if records or self.rebalance_needed:
                return records
            left = deadline - time.monotonic()
            if left <= 0:
                return records
            self._data.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._data.wait()

    def __aiter__(self) -> AsyncIterator[ConsumerRecord]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ConsumerRecord]:
        idle_since = time.monotonic()
        while not self._closed:
            records = await self.poll(timeout=min(self.consumer_timeout or 1.0, 1.0))
            if records:
                idle_since = time.monotonic()
                for record in records:
                    yield record
            elif (
                self.consumer_timeout is not None
                and time.monotonic() - idle_since >= self.consumer_timeout
            ):
                return

    def _take(self, limit: int) -> list[ConsumerRecord]:
        out: list[ConsumerRecord] = []
        states = list(self._partitions.values())
        if not states:
            return out
        self._rotation = (self._rotation + 1) % len(states)
        for state in states[self._rotation :] + states[: self._rotation]:
            if state.error is not None and not state.chunks:
                error, state.error = state.error, None
                raise error
            while state.chunks and len(out) < limit:
                chunk = state.chunks[0]
                end = min(len(chunk), state.head + limit - len(out))
                out.extend(chunk[state.head : end] if state.head or end < len(chunk) else chunk)
                taken = end - state.head
                state.buffered -= taken
                state.position = chunk[end - 1].offset + 1
                if end == len(chunk):
                    state.chunks.popleft()
                    state.head = 0
                else:
                    state.head = end
            if state.buffered < self.max_prefetch_records:
                state.room.set()
            if len(out) >= limit:
                break
        return out

    def _wakeup(self) -> None:
        if self._data is not None:
            self._data.set()

    # --------------------------------------------------------------------------- fetchers

    async def _ensure_fetching(self) -> None:
        idle = [s for s in self._partitions.values() if s.task is None and s.error is None]
        if not idle:
            return
        unknown = [s for s in idle if s.position is None]
        if unknown:
            await self._resolve_positions(unknown)
        for state in idle:
            if state.position is not None and state.task is None and state.error is None:
                state.task = asyncio.create_task(
                    self._fetch_loop(state, state.epoch, state.position),
                    name=f"kclient-fetch-{state.tp.topic}-{state.tp.partition}",
                )

    async def _resolve_positions(self, states: list[_Partition]) -> None:
        """Committed offsets, else the reset policy, for partitions without a position."""
        committed: dict[TopicPartition, OffsetAndMetadata] = {}
        plain = [s for s in states if s.reset is None]
        if self.group_id is not None and plain:
            committed = await fetch_offsets(
                self.metadata, self.group_id, {s.tp.topic for s in plain}
            )
        for state in states:
            found = committed.get(state.tp) if state.reset is None else None
            if found is not None:
                state.position = found.offset
                continue
            policy = state.reset or self.auto_offset_reset
            if policy == "none":
                state.error = NoOffsetForPartitionError(
                    f"{state.tp.topic}-{state.tp.partition} has no committed offset and "
                    'auto_offset_reset is "none"'
                )
                continue
            try:
                state.position = await self._list_offset(state.tp, policy)
            except KClientError as exc:
                if not exc.retriable:
                    state.error = exc
            state.reset = None

    async def _list_offset(self, tp: TopicPartition, policy: str) -> int:
        path = f"/topics/{quote(tp.topic, safe='')}/partitions/{tp.partition}/offsets"
        answer = await self.metadata.call_any("GET", path)
        return int(answer["beginning_offset"] if policy == "earliest" else answer["end_offset"])

    async def _stop_fetchers(self, states: list[_Partition]) -> None:
        tasks = [s.task for s in states if s.task is not None]
        for state in states:
            state.clear()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _fetch_loop(self, state: _Partition, epoch: int, offset: int) -> None:
        try:
            while state.epoch == epoch:
                if state.buffered >= self.max_prefetch_records:
                    state.room.clear()
                    await state.room.wait()
                    continue
                offset = await self._fetch_once(state, epoch, offset)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if state.epoch == epoch:
                state.error = exc
                state.task = None
                self._wakeup()

    async def _fetch_once(self, state: _Partition, epoch: int, offset: int) -> int:
        """One fetch from the leader; the next fetch offset. Retriable errors back off."""
        tp = state.tp
        try:
            url = await self.metadata.leader_url(tp.topic, tp.partition)
            response = await self._fetch_transport.request(
                "GET",
                f"{url}/topics/{quote(tp.topic, safe='')}/partitions/{tp.partition}/batches",
                params={
                    "offset": offset,
                    "max_bytes": self.fetch_max_bytes,
                    "timeout": self.fetch_max_wait_ms,
                },
                headers=_ACCEPT,
                timeout=self._fetch_transport.request_timeout + self.fetch_max_wait_ms / 1000,
            )
            if response.status != 200:
                raise error_of(response)
        except OffsetOutOfRangeError as exc:
            return await self._out_of_range(state, epoch, offset, exc)
        except (BrokerError, BrokerUnavailableError) as exc:
            if not exc.retriable and not isinstance(exc, UnknownPartitionError):
                raise
            if isinstance(exc, _LEADER_ERRORS):
                self.metadata.invalidate(tp.topic)
            await asyncio.sleep(self.retry_backoff * random.uniform(0.8, 1.5))
            return offset
        hw = response.headers.get(HIGH_WATERMARK_HEADER)
        decoded = decode_batches(
            response.body,
            topic=tp.topic,
            partition=tp.partition,
            start=offset,
            key_deserializer=self._key_de,
            value_deserializer=self._value_de,
        )
        if state.epoch != epoch:
            return offset
        if hw is not None:
            state.high_watermark = int(hw)
        if decoded.records:
            state.chunks.append(decoded.records)
            state.buffered += len(decoded.records)
            self._wakeup()
        return decoded.next_offset

    async def _out_of_range(
        self, state: _Partition, epoch: int, offset: int, exc: OffsetOutOfRangeError
    ) -> int:
        if self.auto_offset_reset == "none":
            raise NoOffsetForPartitionError(
                f"offset {offset} of {state.tp.topic}-{state.tp.partition} is out of range "
                f'and auto_offset_reset is "none"'
            ) from exc
        new = await self._list_offset(state.tp, self.auto_offset_reset)
        log.info(
            "offset %d of %s-%d out of range; reset to %d (%s)",
            offset,
            state.tp.topic,
            state.tp.partition,
            new,
            self.auto_offset_reset,
        )
        if state.epoch == epoch:
            state.chunks.clear()
            state.head = state.buffered = 0
            state.position = new
        return new

    # ------------------------------------------------------------------ positions, seek

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Make ``offset`` the next offset ``poll`` returns for ``tp``."""
        if offset < 0:
            raise ValueError("offset must be >= 0")
        state = self._state(tp)
        state.clear()
        state.position = offset
        state.reset = None
        state.error = None
        self._wakeup()

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        """Restart ``partitions`` (all assigned by default) from their log start."""
        self._seek_reset(partitions, "earliest")

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        """Skip to the end (the high watermark) of ``partitions`` (all by default)."""
        self._seek_reset(partitions, "latest")

    def _seek_reset(self, partitions: Sequence[TopicPartition], policy: str) -> None:
        for tp in partitions or list(self._partitions):
            state = self._state(tp)
            state.clear()
            state.position = None
            state.reset = policy
            state.error = None
        self._wakeup()

    async def position(self, tp: TopicPartition) -> int:
        """The next offset ``poll`` will return for ``tp`` (resolving it if needed)."""
        state = self._state(tp)
        if state.position is None:
            await self._resolve_positions([state])
        if state.error is not None:
            error, state.error = state.error, None
            raise error
        assert state.position is not None
        return state.position

    def highwater(self, tp: TopicPartition) -> int | None:
        """The high watermark seen by the last fetch of ``tp`` (None before one)."""
        return self._state(tp).high_watermark

    async def beginning_offsets(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return {tp: await self._list_offset(tp, "earliest") for tp in partitions}

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The high watermark of each partition (the offset the next record will get)."""
        return {tp: await self._list_offset(tp, "latest") for tp in partitions}

    async def partitions_for(self, topic: str) -> list[int]:
        return list(range((await self.metadata.topic(topic)).partitions))

    async def topics(self) -> list[str]:
        return await self.metadata.list_topics()

    # --------------------------------------------------------------------------- commits

    def _commit_offsets(
        self, offsets: Mapping[TopicPartition, int | OffsetAndMetadata] | None
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        if self._group is None:
            raise InvalidGroupIdError("commits need a group_id")
        if offsets is None:
            return {
                tp: OffsetAndMetadata(s.position)
                for tp, s in self._partitions.items()
                if s.position is not None
            }
        return {
            TopicPartition(tp[0], int(tp[1])): (
                om if isinstance(om, OffsetAndMetadata) else OffsetAndMetadata(int(om))
            )
            for tp, om in offsets.items()
        }

    async def commit(
        self, offsets: Mapping[TopicPartition, int | OffsetAndMetadata] | None = None
    ) -> None:
        """Commit ``offsets`` (next offsets to consume), or every position; waits for the
        coordinator. CommitFailedError when the group rebalanced meanwhile."""
        self._check_open()
        chosen = self._commit_offsets(offsets)
        if not chosen:
            return
        assert self._group is not None
        await self._group.commit(chosen)
        for tp, om in chosen.items():
            self._last_committed[tp] = om.offset

    def commit_async(
        self,
        offsets: Mapping[TopicPartition, int | OffsetAndMetadata] | None = None,
        callback: Any = None,
    ) -> asyncio.Task[None]:
        """Start a commit in the background; ``callback(offsets, error)`` runs when it ends.

        The offsets are taken now (the positions at this call when None)."""
        chosen = self._commit_offsets(offsets)

        async def run() -> None:
            error: BaseException | None = None
            try:
                await self.commit(chosen)
            except KClientError as exc:
                error = exc
                if callback is None:
                    log.warning("async commit failed: %s", exc)
            if callback is not None:
                await _maybe_await(callback(chosen, error))

        task = asyncio.create_task(run(), name="kclient-commit")
        self._commits.add(task)
        task.add_done_callback(self._commits.discard)
        return task

    def _maybe_auto_commit(self) -> None:
        if not self.enable_auto_commit or time.monotonic() < self._next_auto_commit:
            return
        self._next_auto_commit = time.monotonic() + self.auto_commit_interval
        if self._group is None or (not self._group.joined and self.rebalance_needed):
            return
        positions = {
            tp: s.position
            for tp, s in self._partitions.items()
            if s.position is not None and self._last_committed.get(tp) != s.position
        }
        if positions and not self._commits:
            self.commit_async(dict(positions))

    async def committed(self, tp: TopicPartition) -> OffsetAndMetadata | None:
        """The group's committed offset of ``tp`` (None when it has none)."""
        if self.group_id is None:
            raise InvalidGroupIdError("committed offsets need a group_id")
        offsets = await fetch_offsets(self.metadata, self.group_id, [tp[0]])
        return offsets.get(TopicPartition(tp[0], int(tp[1])))

    @property
    def member_id(self) -> str | None:
        return self._group.member_id if self._group is not None and self._group.joined else None

    @property
    def generation_id(self) -> int:
        return self._group.generation_id if self._group is not None else -1

    @property
    def closed(self) -> bool:
        return self._closed


async def _maybe_await(result: Awaitable[Any] | Any) -> None:
    if inspect.isawaitable(result):
        await result
