"""Followers pull: one fetcher task per source leader, truncating by leader epoch first.

A :class:`ReplicaFetcher` owns the partitions this broker follows on one leader. Each partition
starts in the *truncating* state: the fetcher asks the leader for the end offset of the
follower's latest leader epoch and truncates as KIP-101/279 prescribe (iterating when the
epochs disagree), not to the local high watermark (only a log with no epoch at all, or a
leader that knows no epoch, falls back to it, as in Kafka). Then it fetches whole batches from
its log end offset, appends them untouched (the log checks every CRC and that offsets are
contiguous) and follows the leader's high watermark.

Durability: the log end offset a follower sends in its next fetch is what the leader counts
towards the high watermark (and so towards acks=all). When the topic's flush policy asks for
an fsync (``flush.messages``), the fetcher awaits it after appending and before that next
fetch, as Kafka's follower flushes inline in its append: an acknowledged record is then on the
disk of every ISR member, and a power loss of the whole cluster loses none of it.

Concurrency: each fetcher is one asyncio task; partitions are added and removed from the event
loop between its awaits. After every await a partition is checked to still be followed at the
same epoch and offset before anything is written, so a leadership change during a fetch can
never append stale data. A failing request backs off ``replica.fetch.backoff.ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from kbroker.cluster import TopicPartition
from kbroker.errors import BrokerError, CorruptRecordError, ErrorCode
from kbroker.replication.endpoint import (
    EpochEndOffset,
    FetchedPartition,
    FetchPartition,
    FetchRequest,
    LeaderEndpoint,
)
from kbroker.replication.partition import Partition, Role
from kbroker.replication.purgatory import Signal

__all__ = ["FetcherSettings", "FlushPolicy", "ReplicaFetcher", "ReplicaFetcherManager"]

log = logging.getLogger(__name__)

#: Epoch meaning "no epoch known" in an OffsetsForLeaderEpoch answer.
UNDEFINED_EPOCH = -1

#: Applies the flush policy to a replica after an append, up to the given offset (the server's
#: group-commit flusher; it fsyncs only when the topic's policy asks for it). Without one,
#: durability is left to the background flush loop.
FlushPolicy = Callable[[Partition, int], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class FetcherSettings:
    broker_id: int
    max_wait_ms: int
    max_bytes: int
    backoff_ms: int


@dataclass(slots=True)
class _FetchState:
    partition: Partition
    leader_epoch: int
    truncating: bool = True
    ask_epoch: int | None = None
    """Epoch to ask the leader about next while truncating (None: our latest)."""
    delayed_until: float = 0.0


class ReplicaFetcher:
    """Replicates the partitions led by broker ``leader_id`` into this broker."""

    def __init__(
        self,
        leader_id: int,
        endpoint: LeaderEndpoint,
        settings: FetcherSettings,
        flush: FlushPolicy | None = None,
    ) -> None:
        self.leader_id = leader_id
        self._endpoint = endpoint
        self._settings = settings
        self._flush = flush
        self._states: dict[TopicPartition, _FetchState] = {}
        self._wakeup = Signal()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._states)

    def add(self, partition: Partition, leader_epoch: int) -> None:
        """Follow ``partition`` in ``leader_epoch``; truncation comes first."""
        self._states[(partition.topic, partition.partition)] = _FetchState(
            partition=partition, leader_epoch=leader_epoch
        )
        self._wakeup.notify()

    def remove(self, tp: TopicPartition) -> None:
        self._states.pop(tp, None)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"replica-fetcher-{self.leader_id}"
            )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._endpoint.close()

    def _current(self, tp: TopicPartition, state: _FetchState) -> bool:
        """True while ``state`` still describes what this broker should fetch."""
        partition = state.partition
        return (
            self._states.get(tp) is state
            and partition.role is Role.FOLLOWER
            and partition.leader_id == self.leader_id
            and partition.leader_epoch == state.leader_epoch
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            ready = {tp: s for tp, s in self._states.items() if s.delayed_until <= now}
            if not ready:
                delays = [s.delayed_until - now for s in self._states.values()]
                await self._wakeup.wait(min(delays, default=3600.0))
                continue
            try:
                truncating = {tp: s for tp, s in ready.items() if s.truncating}
                if truncating:
                    await self._truncate(truncating)
                else:
                    await self._fetch(ready)
            except BrokerError as exc:
                log.info("fetch from broker %d failed: %s", self.leader_id, exc.message)
                self._delay(ready.values())
            except Exception:
                log.exception("replica fetcher for broker %d failed", self.leader_id)
                self._delay(ready.values())

    def _delay(self, states: Iterable[_FetchState]) -> None:
        until = asyncio.get_running_loop().time() + self._settings.backoff_ms / 1000
        for state in states:
            state.delayed_until = until

    # ------------------------------------------------------------------------- truncation

    async def _truncate(self, states: dict[TopicPartition, _FetchState]) -> None:
        asks = []
        for tp, state in states.items():
            cache = state.partition.log.leader_epoch_cache
            epoch = state.ask_epoch if state.ask_epoch is not None else cache.latest_epoch
            if epoch is None or epoch < 0:
                self._truncate_without_epochs(tp, state)
                continue
            asks.append((tp[0], tp[1], epoch))
        if not asks:
            return
        answers = await self._endpoint.epoch_end_offsets(asks)
        for topic, partition, asked in asks:
            tp = (topic, partition)
            state = states[tp]
            answer = answers.get(tp)
            if answer is None or not self._current(tp, state):
                continue
            if answer.error_code is not None:
                log.info("%r: epoch end offset error %s", state.partition, answer.error_code)
                self._delay([state])
                continue
            self._apply_epoch_answer(tp, state, asked, answer)

    def _apply_epoch_answer(
        self, tp: TopicPartition, state: _FetchState, asked: int, answer: EpochEndOffset
    ) -> None:
        """KIP-279's truncation step (AbstractFetcherThread.getOffsetTruncationState)."""
        plog = state.partition.log
        leo = plog.log_end_offset
        if answer.leader_epoch == UNDEFINED_EPOCH or answer.end_offset < 0:
            target = min(plog.high_watermark, leo)
            done = True
        else:
            local_epoch, local_end = plog.leader_epoch_cache.end_offset_for(answer.leader_epoch)
            if local_epoch == UNDEFINED_EPOCH or local_end < 0:
                target, done = min(answer.end_offset, leo), True
            elif local_epoch != answer.leader_epoch:
                target, done = min(local_end, leo), False
                state.ask_epoch = local_epoch
            else:
                target, done = min(answer.end_offset, local_end, leo), True
        if target < leo:
            log.info(
                "%r: truncating from %d to %d (asked epoch %d, leader said %s)",
                state.partition,
                leo,
                target,
                asked,
                answer,
            )
            state.partition.truncate_to(target)
        if done or state.ask_epoch == asked:
            self._truncation_done(tp, state)

    def _truncate_without_epochs(self, tp: TopicPartition, state: _FetchState) -> None:
        """No local epoch to ask about: an empty log, or data whose epochs are unknown (a lost
        leader-epoch-checkpoint). Like Kafka's partitions without epochs, keep only what is
        known committed (the high watermark); fetching from the LEO could keep a divergent
        uncommitted tail forever."""
        plog = state.partition.log
        if plog.high_watermark < plog.log_end_offset:
            log.warning(
                "%r: no leader epochs for offsets up to %d; truncating to the high watermark %d",
                state.partition,
                plog.log_end_offset,
                plog.high_watermark,
            )
            state.partition.truncate_to(plog.high_watermark)
        self._truncation_done(tp, state)

    def _truncation_done(self, tp: TopicPartition, state: _FetchState) -> None:
        state.truncating = False
        state.ask_epoch = None

    # ---------------------------------------------------------------------------- fetching

    async def _fetch(self, states: dict[TopicPartition, _FetchState]) -> None:
        offsets = {tp: s.partition.log.log_end_offset for tp, s in states.items()}
        request = FetchRequest(
            replica_id=self._settings.broker_id,
            max_wait_ms=self._settings.max_wait_ms,
            max_bytes=self._settings.max_bytes,
            partitions=[
                FetchPartition(
                    topic=tp[0],
                    partition=tp[1],
                    fetch_offset=offsets[tp],
                    leader_epoch=s.leader_epoch,
                )
                for tp, s in states.items()
            ],
        )
        appended: list[Partition] = []
        for fetched in await self._endpoint.fetch(request):
            tp = (fetched.topic, fetched.partition)
            state = states.get(tp)
            if state is None or not self._current(tp, state):
                continue
            if state.partition.log.log_end_offset != offsets[tp]:
                continue  # truncated or written meanwhile: this answer is stale
            self._apply_fetched(state, fetched)
            if state.partition.log.log_end_offset > offsets[tp]:
                appended.append(state.partition)
        if appended and self._flush is not None:
            # Before the next fetch reports these LEOs to the leader (module docstring).
            flush = self._flush
            await asyncio.gather(*(flush(p, p.log.log_end_offset) for p in appended))

    def _apply_fetched(self, state: _FetchState, fetched: FetchedPartition) -> None:
        partition = state.partition
        code = fetched.error_code
        if code is None:
            try:
                partition.append_as_follower(fetched.data, fetched.high_watermark)
                if fetched.log_start_offset > partition.log.log_start_offset:
                    partition.log.delete_segments_before(fetched.log_start_offset)
            except CorruptRecordError as exc:
                log.warning(
                    "%r: leader data failed validation (%s); fetching again", partition, exc.message
                )
                self._delay([state])
            return
        if code == ErrorCode.OFFSET_OUT_OF_RANGE:
            self._reset_out_of_range(partition, fetched)
        elif code == ErrorCode.FENCED_LEADER_EPOCH:
            log.info(
                "%r: fenced at epoch %d; waiting for newer state", partition, state.leader_epoch
            )
            self._delay([state])
        else:
            self._delay([state])

    def _reset_out_of_range(self, partition: Partition, fetched: FetchedPartition) -> None:
        plog = partition.log
        leo = plog.log_end_offset
        if leo > fetched.log_end_offset:
            log.warning(
                "%r: LEO %d beyond leader's %d; truncating", partition, leo, fetched.log_end_offset
            )
            partition.truncate_to(fetched.log_end_offset)
        elif leo < fetched.log_start_offset:
            log.info(
                "%r: LEO %d below leader's log start %d; restarting log there",
                partition,
                leo,
                fetched.log_start_offset,
            )
            partition.truncate_fully_and_start_at(fetched.log_start_offset)


class ReplicaFetcherManager:
    """Assigns followed partitions to per-leader fetchers and owns their tasks."""

    def __init__(
        self,
        settings: FetcherSettings,
        endpoint_for: Callable[[int], LeaderEndpoint],
        flush: FlushPolicy | None = None,
    ) -> None:
        self._settings = settings
        self._endpoint_for = endpoint_for
        self._flush = flush
        self._fetchers: dict[int, ReplicaFetcher] = {}
        self._leader_of: dict[TopicPartition, int] = {}

    def follow(self, partition: Partition, leader_id: int, leader_epoch: int) -> None:
        """(Re)start replicating ``partition`` from ``leader_id`` in ``leader_epoch``."""
        tp = (partition.topic, partition.partition)
        self.unfollow(tp)
        fetcher = self._fetchers.get(leader_id)
        if fetcher is None:
            fetcher = ReplicaFetcher(
                leader_id, self._endpoint_for(leader_id), self._settings, self._flush
            )
            self._fetchers[leader_id] = fetcher
            fetcher.start()
        fetcher.add(partition, leader_epoch)
        self._leader_of[tp] = leader_id

    def unfollow(self, tp: TopicPartition) -> None:
        leader_id = self._leader_of.pop(tp, None)
        if leader_id is not None and leader_id in self._fetchers:
            self._fetchers[leader_id].remove(tp)

    def leader_of(self, tp: TopicPartition) -> int | None:
        return self._leader_of.get(tp)

    async def shrink(self) -> None:
        """Stop fetchers that have nothing left to fetch."""
        for leader_id, fetcher in list(self._fetchers.items()):
            if not len(fetcher):
                del self._fetchers[leader_id]
                await fetcher.close()

    async def close(self) -> None:
        fetchers, self._fetchers = list(self._fetchers.values()), {}
        self._leader_of.clear()
        await asyncio.gather(*(f.close() for f in fetchers))
