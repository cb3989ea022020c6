"""The replicas this broker hosts, and the produce / fetch / replica-fetch entry points.

The :class:`ReplicaManager` turns partition states (from the metadata watcher, i.e. from
ZooKeeper) into local roles: it creates the partition's log on first sight, makes the replica
leader or follower, and hands followed partitions to the fetcher manager. Produce, consumer fetch
and follower fetch requests come in through it:

* ``append``: acks=0/1/all on a leader; acks=all checks min.insync.replicas before writing and
  waits for the high watermark after (see :meth:`Partition.wait_committed`).
* ``fetch``: a consumer read below the high watermark that long-polls while nothing is there.
* ``fetch_for_follower``: records each follower's position (moving the HW and the ISR) and
  long-polls on the log end offsets of the partitions asked for.

A broker that has lost ZooKeeper for too long is *fenced* (:attr:`fenced`): it refuses every
produce and every consumer read (``fetch``, ``offsets``), since it may no longer be the leader
the cluster agrees on and its view of the log may be stale; it stays fenced after a new session
until the cluster state has been re-read.

Concurrency: event loop only. Background loops (ISR expiry, high-watermark checkpoint) are
coroutines owned by the caller's TaskGroup.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

from kbroker.clock import Clock
from kbroker.cluster import NO_LEADER, PartitionInfo, TopicPartition
from kbroker.config import BrokerConfig, TopicConfig
from kbroker.errors import BrokerError, ErrorCode, NotLeaderError, StorageError
from kbroker.log.batch import PayloadCodec
from kbroker.log.checkpoint import (
    CheckpointError,
    DeferredSync,
    read_checkpoint,
    write_checkpoint,
)
from kbroker.log.partition_log import PartitionLog
from kbroker.records import PartitionRecords
from kbroker.replication.endpoint import EpochEndOffset, FetchedPartition, FetchRequest
from kbroker.replication.fetcher import FlushPolicy, ReplicaFetcherManager
from kbroker.replication.partition import IsrWriter, Partition, ReadResult, Role
from kbroker.replication.purgatory import wait_any

__all__ = ["AppendResult", "LogStore", "ProducerInfo", "ReplicaManager"]

log = logging.getLogger(__name__)


class LogStore(Protocol):
    """The part of the LogManager the replica manager uses."""

    def get_or_create(
        self, topic: str, partition: int, config: TopicConfig | None = None
    ) -> PartitionLog: ...

    def get(self, topic: str, partition: int) -> PartitionLog | None: ...

    def delete_log(
        self, topic: str, partition: int, *, only: PartitionLog | None = None
    ) -> bool: ...

    def open_new(self, topic: str, partition: int, config: TopicConfig) -> PartitionLog | None: ...

    def adopt(self, log: PartitionLog) -> None: ...


class ProducerInfo(NamedTuple):
    """Identity of an idempotent producer's request: id, epoch and first record's sequence."""

    producer_id: int
    epoch: int
    sequence: int


class AppendResult:
    """Offsets given to a produce: one (base_offset, record_count) per batch written."""

    __slots__ = ("batches",)

    def __init__(self, batches: list[tuple[int, int]]) -> None:
        self.batches = batches

    @property
    def base_offset(self) -> int:
        return self.batches[0][0]


class ReplicaManager:
    """All local replicas; see the module docstring."""

    def __init__(
        self,
        *,
        config: BrokerConfig,
        logs: LogStore,
        clock: Clock,
        isr_writer: IsrWriter,
        fetchers: ReplicaFetcherManager,
        flush: FlushPolicy | None = None,
        is_live: Callable[[int], bool] = lambda _: True,
        stalled: Callable[[], bool] = lambda: False,
    ) -> None:
        self._config = config
        self._stalled = stalled
        self._is_live = is_live
        self._logs = logs
        self._clock = clock
        self._isr_writer = isr_writer
        self._fetchers = fetchers
        self._flush = flush
        self._partitions: dict[TopicPartition, Partition] = {}
        self._marker_sync = DeferredSync()
        self._role_listeners: list[Callable[[Partition], None]] = []
        self._fenced = False
        self.shutting_down = False
        """True once a controlled shutdown began: refuse new produces (retriable)."""
        self._appends_in_flight = 0
        """Produces between the shutting_down check and their answer (see drain)."""

    # ------------------------------------------------------------------------- lookups

    def get(self, topic: str, partition: int) -> Partition | None:
        return self._partitions.get((topic, partition))

    def partitions(self) -> Iterable[Partition]:
        return self._partitions.values()

    def leader(self, topic: str, partition: int) -> Partition:
        """The local leader replica, or NOT_LEADER (retriable: the caller may re-route)."""
        replica = self._partitions.get((topic, partition))
        if replica is None or replica.role is not Role.LEADER:
            leader = replica.leader_id if replica else NO_LEADER
            raise NotLeaderError(
                f"Broker {self._config.broker_id} does not lead {topic}-{partition}", leader=leader
            )
        return replica

    # ------------------------------------------------------------------ applying metadata

    def apply(self, info: PartitionInfo, config: TopicConfig, topic_id: str) -> None:
        """Make the local replica of ``info`` what its ZooKeeper state says it is.

        A local log left by an older topic of the same name (another ``topic_id``, recorded in
        the partition directory's ``partition.metadata``) is deleted first (KIP-516).
        """
        tp = (info.topic, info.partition)
        if self._config.broker_id not in info.replicas:
            if tp in self._partitions:
                self.remove(info.topic, info.partition, delete=True)
            return
        replica = self._partitions.get(tp)
        if replica is None:
            replica = Partition(
                topic=info.topic,
                partition=info.partition,
                broker_id=self._config.broker_id,
                log=self._open_log(info.topic, info.partition, config, topic_id),
                config=config,
                clock=self._clock,
                isr_writer=self._isr_writer,
                replica_lag_time_max_ms=self._config.replica_lag_time_max_ms,
                is_live=self._is_live,
            )
            self._partitions[tp] = replica
        elif config != replica.config:
            replica.config = config
            replica.log.update_config(config)
        state = info.state
        if state is not None and replica.is_stale(state):
            return
        before = (replica.role, replica.leader_epoch)
        if state is None or state.leader == NO_LEADER:
            self._fetchers.unfollow(tp)
            replica.make_offline(state, info.replicas)
        elif state.leader == self._config.broker_id:
            self._fetchers.unfollow(tp)
            replica.make_leader(state, info.replicas)
        elif replica.make_follower(state, info.replicas) or self._fetchers.leader_of(tp) is None:
            self._fetchers.follow(replica, state.leader, state.leader_epoch)
        if (replica.role, replica.leader_epoch) != before:
            self._notify(replica)

    def add_role_listener(self, listener: Callable[[Partition], None]) -> None:
        """Call ``listener(replica)`` (on the loop) whenever a replica's role or leader epoch
        changes, or it stops being hosted here (role OFFLINE)."""
        self._role_listeners.append(listener)

    def _notify(self, replica: Partition) -> None:
        for listener in self._role_listeners:
            try:
                listener(replica)
            except Exception:
                log.exception("role listener failed for %r", replica)

    def _open_log(
        self, topic: str, partition: int, config: TopicConfig, topic_id: str
    ) -> PartitionLog:
        plog = self._logs.get_or_create(topic, partition, config)
        marker = plog.directory / PARTITION_METADATA
        recorded = _read_topic_id(marker)
        if recorded is not None and recorded != topic_id:
            log.warning(
                "%s: log belongs to an older topic (id %s, now %s); deleting it",
                plog.name,
                recorded,
                topic_id,
            )
            self._logs.delete_log(topic, partition)
            plog = self._logs.get_or_create(topic, partition, config)
            marker = plog.directory / PARTITION_METADATA
            recorded = None
        if recorded is None:
            # Made durable in a worker thread: two fsyncs for each of thousands of new
            # partitions held the event loop for seconds on a busy disk. A crash before that
            # can lose the marker of a log at most milliseconds old; its next start then takes
            # the log for the topic of that name it finds (the KIP-516 check is skipped).
            _write_topic_id(plog.directory, topic_id, sync=False)
            self._marker_sync.add(marker)
        return plog

    async def open_new_logs(
        self, replicas: Sequence[tuple[PartitionInfo, TopicConfig, str]]
    ) -> list[TopicPartition]:
        """Create, in a worker thread, the logs of the replicas (``apply``'s arguments) hosted
        here that have neither a replica nor a log yet, each with its topic-id marker
        (fsynced there), and register them with the log manager; returns which.

        For replicas new to this broker by the thousand (a large topic created): their files
        held the event loop for seconds on a busy disk. :meth:`apply` then finds each log
        open. The caller must not apply, nor delete the logs of, these replicas until this
        returns. A log the disk refuses is left to :meth:`apply`, which reports it. Cancelled
        (the broker stopping), the thread finishes on its own and its logs stay unregistered,
        their files closed when the process exits."""
        wanted = [
            (info.topic, info.partition, config, topic_id)
            for info, config, topic_id in replicas
            if self._config.broker_id in info.replicas
            and (info.topic, info.partition) not in self._partitions
            and self._logs.get(info.topic, info.partition) is None
        ]
        if not wanted:
            return []
        opened = await asyncio.get_running_loop().run_in_executor(None, self._open_new_logs, wanted)
        adopted = []
        for plog in opened:
            try:
                self._logs.adopt(plog)
            except ValueError as exc:  # the caller's guard failed: keep the registered log
                log.error("%s; closing the one made in the worker thread", exc)
                plog.close()
                continue
            adopted.append((plog.topic, plog.partition))
        return adopted

    def _open_new_logs(
        self, replicas: Sequence[tuple[str, int, TopicConfig, str]]
    ) -> list[PartitionLog]:
        """Worker thread: see :meth:`open_new_logs`."""
        opened = []
        for topic, partition, config, topic_id in replicas:
            try:
                plog = self._logs.open_new(topic, partition, config)
            except StorageError:
                continue
            if plog is None:
                continue
            try:
                _write_topic_id(plog.directory, topic_id, sync=True)
            except StorageError:
                plog.close()
                continue
            opened.append(plog)
        return opened

    def remove(self, topic: str, partition: int, *, delete: bool) -> None:
        """Stop hosting a replica (reassigned away), and with ``delete`` delete its log."""
        log = self.detach(topic, partition)
        if log is not None and delete:
            self._logs.delete_log(topic, partition, only=log)

    def detach(self, topic: str, partition: int) -> PartitionLog | None:
        """Stop hosting a replica at once: requests and followers no longer reach it, and the
        role listeners hear it went OFFLINE. Returns its log, left open for the caller to
        delete (``LogManager.delete_log(..., only=log)``), or None if it was not hosted."""
        tp = (topic, partition)
        replica = self._partitions.pop(tp, None)
        self._fetchers.unfollow(tp)
        if replica is None:
            return None
        replica.make_offline(None, ())
        self._notify(replica)
        return replica.log

    def hosted_topics(self) -> set[str]:
        return {tp[0] for tp in self._partitions}

    # --------------------------------------------------------------------------- produce

    async def append(
        self,
        topic: str,
        partition: int,
        batches: Sequence[PartitionRecords],
        *,
        codec: PayloadCodec,
        acks: int,
        timeout_ms: int,
        producer: ProducerInfo | None = None,
    ) -> AppendResult:
        """Write ``batches`` to the local leader and wait as ``acks`` asks (0, 1 or -1).

        With ``producer`` (idempotent produce) the batches get consecutive sequences from
        ``producer.sequence``; a batch already written is not written again and reports its
        original offsets.
        """
        if self.shutting_down:
            raise BrokerError(
                f"Broker {self._config.broker_id} is shutting down; its partitions are moving",
                ErrorCode.SHUTTING_DOWN,
            )
        self._appends_in_flight += 1  # see drain
        try:
            self._check_not_fenced("leading")
            replica = self.leader(topic, partition)
            if acks == -1:
                replica.check_min_isr()
            written = []
            sequence = producer.sequence if producer is not None else -1
            for batch in batches:
                info = replica.append_as_leader(
                    batch.payload,
                    record_count=batch.record_count,
                    attributes=batch.attributes | codec,
                    first_timestamp=batch.first_timestamp,
                    max_timestamp=batch.max_timestamp,
                    producer_id=producer.producer_id if producer is not None else -1,
                    producer_epoch=producer.epoch if producer is not None else -1,
                    base_sequence=sequence,
                )
                written.append((info.first_offset, batch.record_count))
                if producer is not None:
                    sequence += batch.record_count
            next_offset = written[-1][0] + written[-1][1]
            try:
                if self._flush is not None and acks != 0:
                    await self._flush(replica, next_offset)
                if acks == -1:
                    await replica.wait_committed(next_offset, timeout_ms / 1000)
            except BrokerError as exc:
                exc.after_append = True
                raise
            return AppendResult(written)
        finally:
            self._appends_in_flight -= 1

    # ---------------------------------------------------------------------------- fetch

    async def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_bytes: int,
        max_wait_ms: int,
        max_records: int | None = None,
    ) -> ReadResult:
        """Committed batches from ``offset``; waits up to max_wait_ms while there are none.
        ``max_records``: the reader wants at most that many (bounds how much is read)."""
        self._check_not_fenced("serving reads")
        replica = self.leader(topic, partition)
        result = replica.read_committed(offset, max_bytes=max_bytes, max_records=max_records)
        if result.data or max_wait_ms <= 0:
            return result
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_ms / 1000
        while not result.data:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await replica.hw_signal.wait(remaining)
            result = self.leader(topic, partition).read_committed(
                offset, max_bytes=max_bytes, max_records=max_records
            )
        return result

    def offsets(self, topic: str, partition: int) -> tuple[int, int, int]:
        """(log start offset, high watermark, log end offset) of a local leader."""
        self._check_not_fenced("serving reads")
        plog = self.leader(topic, partition).log
        return plog.log_start_offset, plog.high_watermark, plog.log_end_offset

    # ------------------------------------------------------------------ follower requests

    async def fetch_for_follower(self, request: FetchRequest) -> list[FetchedPartition]:
        """Serve a follower's fetch; long-polls until any partition has data."""
        results = self._read_for_follower(request)
        if request.max_wait_ms > 0 and not any(r.data for r in results):
            signals = [p.leo_signal for p in self._requested(request)]
            if signals and await wait_any(signals, request.max_wait_ms / 1000):
                results = self._read_for_follower(request)
        return results

    def _requested(self, request: FetchRequest) -> list[Partition]:
        found = (self._partitions.get((p.topic, p.partition)) for p in request.partitions)
        return [p for p in found if p is not None]

    def _read_for_follower(self, request: FetchRequest) -> list[FetchedPartition]:
        out = []
        budget = request.max_bytes
        for ask in request.partitions:
            try:
                replica = self.leader(ask.topic, ask.partition)
                read = replica.read_for_follower(
                    request.replica_id, ask.fetch_offset, ask.leader_epoch, max(budget, 1)
                )
            except BrokerError as exc:
                replica_or_none = self._partitions.get((ask.topic, ask.partition))
                out.append(_failed(ask.topic, ask.partition, exc, replica_or_none))
                continue
            budget -= len(read.data)
            out.append(
                FetchedPartition(
                    topic=ask.topic,
                    partition=ask.partition,
                    error_code=None,
                    high_watermark=read.high_watermark,
                    log_start_offset=read.log_start_offset,
                    log_end_offset=read.log_end_offset,
                    data=read.data,
                )
            )
        return out

    def epoch_end_offsets(
        self, requests: Sequence[tuple[str, int, int]]
    ) -> dict[TopicPartition, EpochEndOffset]:
        """For each (topic, partition, epoch): (largest epoch <= it, that epoch's end offset)."""
        out = {}
        for topic, partition, epoch in requests:
            try:
                plog = self.leader(topic, partition).log
                found_epoch, end = plog.leader_epoch_cache.end_offset_for(epoch)
                out[(topic, partition)] = EpochEndOffset(
                    error_code=None, leader_epoch=found_epoch, end_offset=end
                )
            except BrokerError as exc:
                out[(topic, partition)] = EpochEndOffset(
                    error_code=int(exc.code), leader_epoch=-1, end_offset=-1
                )
        return out

    # ------------------------------------------------------------------------ background

    async def isr_expiration_loop(self) -> None:
        """Every replica.lag.time.max.ms / 2, drop lagging followers from led ISRs."""
        interval = self._config.replica_lag_time_max_ms / 2000
        while True:
            await self._clock.sleep(interval)
            if self.fenced:
                continue
            for replica in list(self._partitions.values()):
                if replica.role is Role.LEADER:
                    await replica.maybe_shrink_isr()

    @property
    def fenced(self) -> bool:
        """True while ZooKeeper has been unreachable for too long, or this process has just
        resumed from a stall longer than the fence delay (checked inline, before the session
        listener can run): refuse to lead."""
        return self._fenced or self._stalled()

    def _check_not_fenced(self, what: str) -> None:
        if self.fenced:
            raise NotLeaderError(
                f"Broker {self._config.broker_id} lost its ZooKeeper session; not {what} "
                "until it has re-read the cluster state"
            )

    def set_fenced(self, fenced: bool) -> None:
        if fenced != self._fenced:
            log.warning(
                "broker %d %s",
                self._config.broker_id,
                "FENCED: ZooKeeper unreachable; refusing produces and reads"
                if fenced
                else "unfenced: ZooKeeper reachable again",
            )
        self._fenced = fenced

    async def drain(self, timeout: float) -> bool:
        """Stop taking produces and wait (bounded) until none is in flight: neither parked
        for acks=all nor waiting for the fsync a flush policy asks for before that (not yet
        parked, it would then fail with NOT_LEADER too).

        Controlled shutdown calls this before moving leadership away, so that requests in
        flight complete instead of failing with an ambiguous NOT_LEADER.
        """
        self.shutting_down = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._appends_in_flight:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def close(self) -> None:
        await self._fetchers.close()
        await asyncio.gather(*(p.close() for p in self._partitions.values()))


#: File in each partition directory naming the topic id its log belongs to (KIP-516).
PARTITION_METADATA = "partition.metadata"


def _write_topic_id(log_dir: Path, topic_id: str, *, sync: bool) -> None:
    """Record in ``log_dir`` the id of the topic its log belongs to (write_checkpoint's
    ``sync``). Raises StorageError."""
    write_checkpoint(log_dir / PARTITION_METADATA, [f"topic_id {topic_id}"], sync=sync)


def _read_topic_id(path: Path) -> str | None:
    try:
        lines = read_checkpoint(path, lambda fields: fields)
    except (OSError, CheckpointError):
        return None
    for fields in lines:
        if len(fields) == 2 and fields[0] == "topic_id":
            return fields[1]
    return None


def _failed(
    topic: str, partition: int, exc: BrokerError, replica: Partition | None
) -> FetchedPartition:
    plog = replica.log if replica is not None else None
    return FetchedPartition(
        topic=topic,
        partition=partition,
        error_code=int(exc.code),
        high_watermark=plog.high_watermark if plog else -1,
        log_start_offset=plog.log_start_offset if plog else -1,
        log_end_offset=plog.log_end_offset if plog else -1,
        data=b"",
    )
