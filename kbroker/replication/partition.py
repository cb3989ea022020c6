"""One replica of a partition on this broker: its role, leader epoch, ISR and high watermark.

A :class:`Partition` wraps the local :class:`~kbroker.log.partition_log.PartitionLog` with
Kafka's replication rules:

* **Role.** LEADER, FOLLOWER or OFFLINE, from the partition state in ZooKeeper. A state whose
  leader epoch is older than the one held is ignored; within one epoch a newer znode version
  (an ISR change) replaces the state.
* **High watermark** (leader): the minimum log end offset over the ISR (the leader's own LEO
  included). It only moves forward; followers that have not fetched since this leader's epoch
  began hold it back. Consumers never read above it; acks=all completes when it passes the
  batch.
* **ISR** (leader): a follower leaves when its LEO differs from the leader's and it has not
  been caught up for ``replica.lag.time.max.ms``; it rejoins when its LEO reaches the high
  watermark and the start offset of the current leader epoch. Every change is written to
  ZooKeeper (conditional on the znode version) *before* it takes effect, and the leader itself
  never leaves, so the ISR is never empty.
* **Leader epochs.** On becoming leader the epoch and the current LEO go into the epoch cache;
  batches are stamped with the epoch; follower fetches carry the follower's idea of the epoch
  and are fenced when it differs.

Concurrency: event-loop thread only. Appends and reads are synchronous. ISR writes await
ZooKeeper; ``_isr_lock`` allows one in flight per partition, each change is computed from the
state held under it, and the state is re-checked after the write.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kbroker.clock import Clock
from kbroker.cluster import NO_LEADER, LeaderAndIsr
from kbroker.config import TopicConfig
from kbroker.errors import BrokerError, ErrorCode, NotLeaderError, OffsetOutOfRangeError
from kbroker.log.batch import iter_batches
from kbroker.log.partition_log import LogAppendInfo, PartitionLog
from kbroker.replication.producer_state import ProducerStateManager
from kbroker.replication.purgatory import OffsetWaiters, Signal

__all__ = ["IsrWriter", "Partition", "ReadResult", "Role"]

log = logging.getLogger(__name__)


class Role(enum.Enum):
    OFFLINE = "offline"
    LEADER = "leader"
    FOLLOWER = "follower"


class IsrWriter(Protocol):
    """Writes a leader's ISR change to ZooKeeper, conditional on the state's znode version."""

    async def write_isr(self, topic: str, partition: int, state: LeaderAndIsr) -> LeaderAndIsr:
        """Write ``state`` if the znode is still at ``state.zk_version``.

        Returns the state as now stored (with its new zk_version) on success, or the state
        found in ZooKeeper when the version did not match (the caller re-applies it).
        """
        ...


@dataclass(slots=True)
class FollowerState:
    """What the leader knows of one follower (Kafka's ``Replica`` on the leader)."""

    log_end_offset: int = -1
    """Offset of the follower's latest fetch; -1 until it fetches in this leader epoch."""
    last_caught_up: float = 0.0
    last_fetch_leader_leo: int = -1
    last_fetch_time: float = 0.0


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A read from this replica: whole stored batches plus the offsets a client needs."""

    data: bytes
    high_watermark: int
    log_start_offset: int
    log_end_offset: int


class Partition:
    """A replica of ``topic``-``partition`` hosted on broker ``broker_id`` (see module doc)."""

    def __init__(
        self,
        *,
        topic: str,
        partition: int,
        broker_id: int,
        log: PartitionLog,
        config: TopicConfig,
        clock: Clock,
        isr_writer: IsrWriter,
        replica_lag_time_max_ms: int,
        is_live: Callable[[int], bool] = lambda _: True,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.broker_id = broker_id
        self.log = log
        self.config = config
        self._clock = clock
        self._isr_writer = isr_writer
        self._is_live = is_live
        self._lag_max = replica_lag_time_max_ms / 1000
        self.role = Role.OFFLINE
        self.state: LeaderAndIsr | None = None
        self.replicas: tuple[int, ...] = ()
        self.leader_epoch_start_offset = -1
        self._followers: dict[int, FollowerState] = {}
        self._ack_waiters = OffsetWaiters()
        self._isr_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.producers = ProducerStateManager()
        """Recent batches of idempotent producers (rebuilt from the log's latest segments)."""
        self.producers.rebuild(log.recent_batch_headers())
        self.hw_signal = Signal()
        """Notified when the high watermark moves (consumers' long polls wait on it)."""
        self.leo_signal = Signal()
        """Notified when the log end offset moves (followers' long polls wait on it)."""

    def __repr__(self) -> str:
        return f"Partition({self.topic}-{self.partition}, {self.role.value})"

    # ------------------------------------------------------------------ state transitions

    @property
    def leader_epoch(self) -> int:
        return self.state.leader_epoch if self.state else -1

    @property
    def leader_id(self) -> int:
        return self.state.leader if self.state else NO_LEADER

    @property
    def isr(self) -> tuple[int, ...]:
        return self.state.isr if self.state else ()

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    def is_stale(self, state: LeaderAndIsr) -> bool:
        """True when ``state`` is older than the one held (and must be ignored)."""
        if self.state is None:
            return False
        if state.leader_epoch != self.state.leader_epoch:
            return state.leader_epoch < self.state.leader_epoch
        return state.zk_version <= self.state.zk_version and self.role is not Role.OFFLINE

    def make_leader(self, state: LeaderAndIsr, replicas: Sequence[int]) -> bool:
        """Apply a state naming this broker leader. Returns True when the epoch is new."""
        new_epoch = (
            self.role is not Role.LEADER
            or self.state is None
            or state.leader_epoch > self.state.leader_epoch
        )
        self.state = state
        self.replicas = tuple(replicas)
        if new_epoch:
            self.role = Role.LEADER
            leo = self.log.log_end_offset
            self.log.leader_epoch_cache.assign(state.leader_epoch, leo)
            self.leader_epoch_start_offset = leo
            now = self._clock.monotonic()
            self._followers = {
                r: FollowerState(last_caught_up=now if r in state.isr else 0.0)
                for r in self.replicas
                if r != self.broker_id
            }
            log.info(
                "%r: leader in epoch %d from offset %d, isr %s",
                self,
                state.leader_epoch,
                leo,
                state.isr,
            )
        else:
            for replica in self.replicas:
                if replica != self.broker_id and replica not in self._followers:
                    self._followers[replica] = FollowerState()
            for gone in self._followers.keys() - set(self.replicas):
                del self._followers[gone]
        self._maybe_increment_high_watermark()
        return new_epoch

    def make_follower(self, state: LeaderAndIsr, replicas: Sequence[int]) -> bool:
        """Apply a state naming another broker leader. True when leader or epoch changed."""
        changed = (
            self.role is not Role.FOLLOWER
            or self.state is None
            or state.leader != self.state.leader
            or state.leader_epoch != self.state.leader_epoch
        )
        self.state = state
        self.replicas = tuple(replicas)
        if changed:
            self.role = Role.FOLLOWER
            self._followers = {}
            self._fail_waiters(f"leadership moved to broker {state.leader}")
            log.info("%r: follower of %d in epoch %d", self, state.leader, state.leader_epoch)
        return changed

    def make_offline(self, state: LeaderAndIsr | None, replicas: Sequence[int]) -> None:
        """No leader (or this broker holds no replica): serve nothing, fail parked produces."""
        if state is not None:
            self.state = state
        self.replicas = tuple(replicas)
        if self.role is not Role.OFFLINE:
            log.info("%r: offline", self)
        self.role = Role.OFFLINE
        self._followers = {}
        self._fail_waiters("the partition has no leader")

    def _fail_waiters(self, reason: str) -> None:
        self._ack_waiters.fail_all(
            NotLeaderError(
                f"Not leader for {self.topic}-{self.partition}: {reason}; the write may or may "
                "not have been committed"
            )
        )
        self.hw_signal.notify()
        self.leo_signal.notify()

    # -------------------------------------------------------------------------- leader side

    def _require_leader(self) -> LeaderAndIsr:
        if self.role is not Role.LEADER or self.state is None:
            raise NotLeaderError(
                f"Broker {self.broker_id} is not the leader of {self.topic}-{self.partition}"
                f" (leader: {self.leader_id})",
                leader=self.leader_id,
            )
        return self.state

    def check_min_isr(self) -> None:
        """Raise NOT_ENOUGH_REPLICAS when the ISR is below min.insync.replicas."""
        isr = self._require_leader().isr
        if len(isr) < self.config.min_insync_replicas:
            raise BrokerError(
                f"Only {len(isr)} in-sync replicas of {self.topic}-{self.partition}, "
                f"min.insync.replicas is {self.config.min_insync_replicas}",
                ErrorCode.NOT_ENOUGH_REPLICAS,
            )

    def append_as_leader(
        self,
        payload: bytes | memoryview,
        *,
        record_count: int,
        attributes: int,
        first_timestamp: int,
        max_timestamp: int,
        producer_id: int = -1,
        producer_epoch: int = -1,
        base_sequence: int = -1,
    ) -> LogAppendInfo:
        """Append one batch stamped with the current leader epoch (no acks handling here).

        With a producer id, the batch is first checked against the producer's recent batches:
        a duplicate returns the original offsets without writing (``batch_count`` 0), a gap
        or stale epoch raises (see kbroker.replication.producer_state).
        """
        state = self._require_leader()
        duplicate = self.producers.check(producer_id, producer_epoch, base_sequence, record_count)
        if duplicate is not None:
            return LogAppendInfo(
                first_offset=duplicate.first_offset,
                last_offset=duplicate.last_offset,
                max_timestamp=-1,
                batch_count=0,
                size_in_bytes=0,
            )
        info = self.log.append_as_leader(
            payload,
            record_count=record_count,
            attributes=attributes,
            first_timestamp=first_timestamp,
            max_timestamp=max_timestamp,
            leader_epoch=state.leader_epoch,
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            base_sequence=base_sequence,
        )
        if producer_id >= 0:
            self.producers.record(
                producer_id, producer_epoch, base_sequence, info.first_offset, info.last_offset
            )
        self.leo_signal.notify()
        self._maybe_increment_high_watermark()
        return info

    async def wait_committed(self, next_offset: int, timeout: float) -> None:
        """Wait until the high watermark reaches ``next_offset`` (acks=all).

        Raises REQUEST_TIMED_OUT on timeout, NOT_LEADER if leadership moves, and
        NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below min.insync.replicas meanwhile
        (Kafka's rule: the records are written and may still become visible).
        """
        if self.log.high_watermark < next_offset:
            future = self._ack_waiters.add(next_offset)
            try:
                await asyncio.wait_for(asyncio.shield(future), timeout)
            except TimeoutError:
                future.cancel()
                raise BrokerError(
                    f"acks=all for {self.topic}-{self.partition} not reached within "
                    f"{timeout * 1000:.0f} ms (ISR {list(self.isr)})",
                    ErrorCode.REQUEST_TIMED_OUT,
                ) from None
        if len(self.isr) < self.config.min_insync_replicas:
            raise BrokerError(
                f"Written, but the ISR of {self.topic}-{self.partition} shrank below "
                f"min.insync.replicas ({list(self.isr)})",
                ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            )

    def read_for_follower(
        self,
        replica_id: int,
        fetch_offset: int,
        follower_epoch: int,
        max_bytes: int,
    ) -> ReadResult:
        """Serve a follower's fetch: record its position, then read up to the LEO."""
        state = self._require_leader()
        self._check_epoch(follower_epoch, state)
        follower = self._followers.get(replica_id)
        if follower is None:
            raise NotLeaderError(
                f"Broker {replica_id} is not a replica of {self.topic}-{self.partition}"
            )
        leo = self.log.log_end_offset
        if not self.log.log_start_offset <= fetch_offset <= leo:
            raise OffsetOutOfRangeError(
                f"Follower fetch offset {fetch_offset} outside [{self.log.log_start_offset}, "
                f"{leo}] of {self.topic}-{self.partition}",
                log_start_offset=self.log.log_start_offset,
                log_end_offset=leo,
            )
        self._update_follower(follower, fetch_offset, leo)
        self._maybe_expand_isr(replica_id, follower)
        self._maybe_increment_high_watermark()
        data = self.log.read(fetch_offset, max_bytes=max_bytes).data if fetch_offset < leo else b""
        return ReadResult(
            data=data,
            high_watermark=self.log.high_watermark,
            log_start_offset=self.log.log_start_offset,
            log_end_offset=leo,
        )

    def _check_epoch(self, epoch: int, state: LeaderAndIsr) -> None:
        if epoch < 0:
            return
        if epoch < state.leader_epoch:
            raise BrokerError(
                f"Leader epoch {epoch} is older than {state.leader_epoch} for "
                f"{self.topic}-{self.partition}",
                ErrorCode.FENCED_LEADER_EPOCH,
            )
        if epoch > state.leader_epoch:
            raise BrokerError(
                f"Leader epoch {epoch} is newer than {state.leader_epoch} for "
                f"{self.topic}-{self.partition}",
                ErrorCode.UNKNOWN_LEADER_EPOCH,
            )

    def _update_follower(self, follower: FollowerState, fetch_offset: int, leo: int) -> None:
        now = self._clock.monotonic()
        if fetch_offset >= leo:
            follower.last_caught_up = now
        elif fetch_offset >= follower.last_fetch_leader_leo >= 0:
            follower.last_caught_up = max(follower.last_caught_up, follower.last_fetch_time)
        follower.log_end_offset = fetch_offset
        follower.last_fetch_leader_leo = leo
        follower.last_fetch_time = now

    def _maybe_increment_high_watermark(self) -> None:
        if self.role is not Role.LEADER or self.state is None:
            return
        new_hw = self.log.log_end_offset
        for replica in self.state.isr:
            if replica != self.broker_id:
                follower = self._followers.get(replica)
                if follower is None or follower.log_end_offset < 0:
                    return
                new_hw = min(new_hw, follower.log_end_offset)
        if new_hw > self.log.high_watermark:
            hw = self.log.update_high_watermark(new_hw)
            self._ack_waiters.advance(hw)
            self.hw_signal.notify()

    # --------------------------------------------------------------------------- ISR changes

    def _maybe_expand_isr(self, replica_id: int, follower: FollowerState) -> None:
        state = self.state
        if state is None or replica_id in state.isr or self._isr_lock.locked():
            return
        if not self._is_live(replica_id):
            # A broker that is not registered (its session expired, or it is shutting down)
            # would be dropped from the ISR by the controller at once: never add it (KIP-841).
            return
        offset = follower.log_end_offset
        if offset >= self.log.high_watermark and offset >= self.leader_epoch_start_offset:
            self._spawn_isr_change(replica_id)

    def out_of_sync_replicas(self) -> list[int]:
        """ISR members that have not been caught up for replica.lag.time.max.ms."""
        if self.role is not Role.LEADER or self.state is None:
            return []
        now = self._clock.monotonic()
        leo = self.log.log_end_offset
        lagging = []
        for replica in self.state.isr:
            follower = self._followers.get(replica)
            if replica == self.broker_id or follower is None:
                continue
            if follower.log_end_offset != leo and now - follower.last_caught_up > self._lag_max:
                lagging.append(replica)
        return lagging

    async def maybe_shrink_isr(self) -> None:
        """Drop lagging followers from the ISR (called periodically by the manager)."""
        if self.out_of_sync_replicas():
            await self._change_isr(None)

    def _spawn_isr_change(self, caught_up: int) -> None:
        task = asyncio.get_running_loop().create_task(self._change_isr(caught_up))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel in-flight ISR writes and fail parked produces (the broker is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_waiters("the broker is shutting down")

    async def _change_isr(self, caught_up: int | None) -> None:
        """Add ``caught_up`` to the ISR, or (None) drop the followers that are lagging now.

        The new ISR is computed from the state held once ``_isr_lock`` is taken, not from the
        state seen when the change was decided: a shrink queued behind an expand (or behind a
        controller update) must not write back an ISR that undoes it.
        """
        async with self._isr_lock:
            state = self.state
            if self.role is not Role.LEADER or state is None:
                return
            if caught_up is None:
                lagging = self.out_of_sync_replicas()
                new_isr = tuple(r for r in state.isr if r not in lagging)
                reason = f"brokers {lagging} lagging"
            else:
                new_isr = tuple(r for r in self.replicas if r in state.isr or r == caught_up)
                reason = f"broker {caught_up} caught up"
            if set(new_isr) == set(state.isr):
                return
            if self.broker_id not in new_isr:
                raise AssertionError("the leader never leaves its own ISR")
            try:
                stored = await self._isr_writer.write_isr(
                    self.topic, self.partition, state.with_isr(new_isr)
                )
            except BrokerError as exc:
                log.warning("%r: ISR change to %s failed: %s", self, new_isr, exc)
                return
            if stored.leader == self.broker_id and stored.leader_epoch == state.leader_epoch:
                log.info("%r: ISR %s -> %s (%s)", self, list(state.isr), list(stored.isr), reason)
                if not self.is_stale(stored):
                    self.make_leader(stored, self.replicas)
            else:
                log.info("%r: ISR change lost to a newer state %s", self, stored)

    # ----------------------------------------------------------------------- follower side

    def append_as_follower(self, batches: bytes | memoryview, leader_hw: int) -> None:
        """Append what the leader sent and follow its high watermark (min with our LEO)."""
        if batches:
            self.log.append_as_follower(batches)
            for header in iter_batches(batches):
                self.producers.update(header)
            self.leo_signal.notify()
        self.update_follower_high_watermark(leader_hw)

    def truncate_to(self, offset: int) -> None:
        """Follower truncation (by leader epoch, or to the leader's end): producer state is
        rebuilt, since it may remember batches that are gone."""
        self.log.truncate_to(offset)
        self.producers.rebuild(self.log.recent_batch_headers())

    def truncate_fully_and_start_at(self, offset: int) -> None:
        self.log.truncate_fully_and_start_at(offset)
        self.producers.rebuild(())

    def update_follower_high_watermark(self, leader_hw: int) -> None:
        hw = min(leader_hw, self.log.log_end_offset)
        if hw > self.log.high_watermark:
            self.log.update_high_watermark(hw)
            self.hw_signal.notify()

    # -------------------------------------------------------------------------- consumer side

    def read_committed(
        self,
        offset: int,
        *,
        max_bytes: int,
        current_leader_epoch: int = -1,
        max_records: int | None = None,
    ) -> ReadResult:
        """A consumer read: leader only, whole batches below the high watermark."""
        state = self._require_leader()
        self._check_epoch(current_leader_epoch, state)
        hw = self.log.high_watermark
        leo = self.log.log_end_offset
        if not self.log.log_start_offset <= offset <= leo:
            raise OffsetOutOfRangeError(
                f"Offset {offset} is outside [{self.log.log_start_offset}, {leo}] of "
                f"{self.topic}-{self.partition}",
                log_start_offset=self.log.log_start_offset,
                log_end_offset=leo,
            )
        data = b""
        if offset < hw:
            data = self.log.read(
                offset, max_bytes=max_bytes, max_offset=hw, max_records=max_records
            ).data
        return ReadResult(
            data=data,
            high_watermark=hw,
            log_start_offset=self.log.log_start_offset,
            log_end_offset=self.log.log_end_offset,
        )
