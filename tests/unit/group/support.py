"""A GroupCoordinator on the test's event loop, with a fake clock and a fake replica manager.

* :class:`FakeClock`: time moves only in :meth:`FakeClock.advance`, which wakes the sleepers
  that are due (the coordinator's housekeeping loop) and lets the loop settle.
* :class:`FakeReplicas`: the two methods the coordinator uses, ``append`` and ``get``, over real
  :class:`~kbroker.replication.partition.Partition` objects and real ``PartitionLog`` files (one
  replica, so the high watermark follows each append). Appends can be held (parked until
  :meth:`FakeReplicas.release`) or made to fail; every append is recorded, decoded.
* :class:`Harness`: the cluster metadata (``__consumer_offsets`` plus topics ``t`` and ``u``),
  the coordinator, its ``run()`` task, and helpers to lead, follow and fail over partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import orjson

from kbroker.cluster import BrokerInfo, ClusterMetadata, LeaderAndIsr, PartitionInfo, TopicInfo
from kbroker.config import BrokerConfig, TopicConfig
from kbroker.errors import BrokerError, ErrorCode, NotLeaderError
from kbroker.group.coordinator import GroupCoordinator, JoinResult
from kbroker.group.persist import OFFSETS_TOPIC, partition_for_group
from kbroker.log.batch import PayloadCodec
from kbroker.log.partition_log import PartitionLog
from kbroker.records import PartitionRecords
from kbroker.replication.manager import ReplicaManager
from kbroker.replication.partition import Partition, Role

T = TypeVar("T")
BROKER = 1
OFFSETS_PARTITIONS = 3
TOPICS = {"t": 6, "u": 3}
Record = dict[str, Any]


async def settle() -> None:
    """Let every runnable task run until all are blocked (on the fake clock, a held append,
    a lock or a future). Uses the default loop's ready queue when it has one."""
    ready = getattr(asyncio.get_running_loop(), "_ready", None)
    for _ in range(2000):
        await asyncio.sleep(0)
        if ready is not None and not ready:
            return


async def within(awaitable: Awaitable[T], seconds: float = 5.0) -> T:
    """Await with a (real time) bound, so a broken test fails instead of hanging."""
    async with asyncio.timeout(seconds):
        return await awaitable


class FakeClock:
    """``now_ms`` and ``monotonic`` move together, only in :meth:`advance`."""

    def __init__(self) -> None:
        self.elapsed_ms = 0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now_ms(self) -> int:
        return 1_700_000_000_000 + self.elapsed_ms

    def monotonic(self) -> float:
        return 1000.0 + self.elapsed_ms / 1000

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self.monotonic() + seconds, future)
        self._sleepers.append(entry)
        try:
            await future
        finally:
            self._sleepers.remove(entry)

    async def advance(self, ms: int) -> None:
        """Let what is runnable run first, then move time by ``ms``, wake the due sleepers and
        let everything settle."""
        await settle()
        self.elapsed_ms += ms
        now = self.monotonic()
        for wake, future in list(self._sleepers):
            if wake <= now and not future.done():
                future.set_result(None)
        await settle()

    async def advance_by_steps(self, ms: int, step: int = 200) -> None:
        """Advance ``ms`` in steps (so a periodic task runs at each of them)."""
        while ms > 0:
            await self.advance(min(step, ms))
            ms -= step


@dataclasses.dataclass(frozen=True, slots=True)
class Append:
    partition: int
    records: list[Record]
    committed: bool


class _NoIsrWrites:
    async def write_isr(self, topic: str, partition: int, state: LeaderAndIsr) -> LeaderAndIsr:
        raise AssertionError("a single-replica partition never changes its ISR")


def topic_config(**changes: Any) -> TopicConfig:
    base = TopicConfig.from_broker(broker_config(), {"cleanup.policy": "compact"})
    return dataclasses.replace(base, **changes)


def broker_config(**settings: Any) -> BrokerConfig:
    return BrokerConfig.build(
        {
            "broker.id": BROKER,
            "zookeeper.connect": "zk:2181",
            "data.dir": "/unused",
            "offsets.topic.num.partitions": OFFSETS_PARTITIONS,
            **settings,
        }
    )


class FakeReplicas:
    """``append`` and ``get`` of the replica manager, over real single-replica partitions."""

    def __init__(self, directory: Path, clock: FakeClock, config: TopicConfig) -> None:
        self.clock = clock
        self.fenced = False
        self.partitions: dict[int, Partition] = {}
        for p in range(OFFSETS_PARTITIONS):
            plog = PartitionLog.open(
                directory / f"{OFFSETS_TOPIC}-{p}", OFFSETS_TOPIC, p, config, clock=clock
            )
            self.partitions[p] = Partition(
                topic=OFFSETS_TOPIC,
                partition=p,
                broker_id=BROKER,
                log=plog,
                config=config,
                clock=clock,
                isr_writer=_NoIsrWrites(),
                replica_lag_time_max_ms=10_000,
            )
        self.appends: list[Append] = []
        """Every append call, in order, with its decoded records and whether it succeeded."""
        self.fail: BrokerError | None = None
        self.fail_next = 0
        """Appends still to fail (with NOT_ENOUGH_REPLICAS) before they work again."""
        self.hold = False
        """While True, appends park until :meth:`release` (before writing anything)."""
        self.parked: list[asyncio.Future[None]] = []

    def get(self, topic: str, partition: int) -> Partition | None:
        return self.partitions.get(partition) if topic == OFFSETS_TOPIC else None

    async def append(
        self,
        topic: str,
        partition: int,
        batches: Sequence[PartitionRecords],
        *,
        codec: PayloadCodec,
        acks: int,
        timeout_ms: int,
    ) -> None:
        assert topic == OFFSETS_TOPIC and codec is PayloadCodec.JSON and acks == -1
        records = [r for b in batches for r in orjson.loads(b.payload)]
        if self.hold:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.parked.append(future)
            await future
        replica = self.partitions[partition]
        fail = self.fail
        if fail is None and self.fail_next > 0:
            self.fail_next -= 1
            fail = BrokerError("not enough replicas", ErrorCode.NOT_ENOUGH_REPLICAS)
        if fail is not None or replica.role is not Role.LEADER:
            self.appends.append(Append(partition, records, committed=False))
            raise fail or NotLeaderError(f"not leader of {OFFSETS_TOPIC}-{partition}")
        for batch in batches:
            replica.append_as_leader(
                batch.payload,
                record_count=batch.record_count,
                attributes=batch.attributes | codec,
                first_timestamp=batch.first_timestamp,
                max_timestamp=batch.max_timestamp,
            )
        self.appends.append(Append(partition, records, committed=True))

    async def release(self) -> None:
        """Stop holding and let the parked appends go on."""
        self.hold = False
        parked, self.parked = self.parked, []
        for future in parked:
            future.set_result(None)
        await settle()

    def records(self, partition: int | None = None) -> list[Record]:
        """Records of the committed appends (to ``partition``), in log order."""
        return [
            r
            for a in self.appends
            if a.committed and (partition is None or a.partition == partition)
            for r in a.records
        ]

    def close(self) -> None:
        for replica in self.partitions.values():
            replica.log.close()


def leader_state(epoch: int) -> LeaderAndIsr:
    return LeaderAndIsr(leader=BROKER, leader_epoch=epoch, isr=(BROKER,), controller_epoch=1)


def follower_state(epoch: int) -> LeaderAndIsr:
    return LeaderAndIsr(leader=2, leader_epoch=epoch, isr=(2, BROKER), controller_epoch=1)


def metadata() -> ClusterMetadata:
    def topic(name: str, partitions: int, *, internal: bool = False) -> TopicInfo:
        return TopicInfo(
            name=name,
            topic_id=f"id-{name}",
            partitions=tuple(
                PartitionInfo(topic=name, partition=p, replicas=(BROKER,), state=leader_state(1))
                for p in range(partitions)
            ),
            internal=internal,
        )

    topics = {name: topic(name, n) for name, n in TOPICS.items()}
    topics[OFFSETS_TOPIC] = topic(OFFSETS_TOPIC, OFFSETS_PARTITIONS, internal=True)
    return ClusterMetadata(
        cluster_id="test",
        controller_id=BROKER,
        brokers={BROKER: BrokerInfo(broker_id=BROKER, url="http://127.0.0.1:1")},
        topics=topics,
    )


def group_in(partition: int, prefix: str = "group") -> str:
    """A group id whose coordinator partition is ``partition``."""
    for i in range(1000):
        name = f"{prefix}-{i}"
        if partition_for_group(name, OFFSETS_PARTITIONS) == partition:
            return name
    raise AssertionError("no such group id")


class Harness:
    """One broker's group coordinator over :class:`FakeReplicas` (see the module docstring)."""

    def __init__(self, directory: Path, *, segment_bytes: int = 1 << 20, **settings: Any) -> None:
        self.clock = FakeClock()
        self.config = broker_config(**settings)
        self.metadata = metadata()
        self.replicas = FakeReplicas(
            directory, self.clock, topic_config(segment_bytes=segment_bytes)
        )
        self.epoch = 0
        self.coordinator = self.new_coordinator()
        self.housekeeping: asyncio.Task[None] | None = None
        """The coordinator's ``run()`` task."""

    def new_coordinator(self) -> GroupCoordinator:
        return GroupCoordinator(
            config=self.config,
            replicas=cast(ReplicaManager, self.replicas),
            clock=self.clock,
            metadata=lambda: self.metadata,
        )

    async def start(self) -> None:
        """Lead every offsets partition, load them, and start the housekeeping loop."""
        await self.lead()
        self.housekeeping = asyncio.get_running_loop().create_task(self.coordinator.run())
        await settle()

    async def lead(self, partitions: Sequence[int] | None = None) -> None:
        """Make this broker leader of ``partitions`` in a new epoch and let the coordinator load."""
        self.epoch += 1
        for p in range(OFFSETS_PARTITIONS) if partitions is None else partitions:
            replica = self.replicas.partitions[p]
            replica.make_leader(leader_state(self.epoch), (BROKER,))
            self.coordinator.on_role_change(replica)
        await settle()

    def follow(self, partitions: Sequence[int] | None = None) -> None:
        """Another broker now leads ``partitions`` (the coordinator unloads them)."""
        self.epoch += 1
        for p in range(OFFSETS_PARTITIONS) if partitions is None else partitions:
            replica = self.replicas.partitions[p]
            replica.make_follower(follower_state(self.epoch), (2, BROKER))
            self.coordinator.on_role_change(replica)

    async def stop(self) -> None:
        if self.housekeeping is not None:
            self.housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.housekeeping
            self.housekeeping = None

    async def failover(self) -> GroupCoordinator:
        """This coordinator loses its partitions; a new one (same logs) leads and loads them
        by replay, as another broker would. Returns the new coordinator, now the harness's."""
        await self.stop()
        self.follow()
        old, self.coordinator = self.coordinator, self.new_coordinator()
        await self.start()
        assert old.local_groups() == []
        return self.coordinator

    # ------------------------------------------------------------------ member helpers

    def join(self, group_id: str, member_id: str = "", **kwargs: Any) -> asyncio.Task[JoinResult]:
        kwargs.setdefault("client_id", "c")
        kwargs.setdefault("topics", ["t"])
        return asyncio.get_running_loop().create_task(
            self.coordinator.join(group_id, member_id=member_id, **kwargs)
        )


@contextlib.asynccontextmanager
async def running(directory: Path, **settings: Any) -> AsyncIterator[Harness]:
    harness = Harness(directory, **settings)
    try:
        await harness.start()
        yield harness
    finally:
        await harness.stop()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        harness.replicas.close()
