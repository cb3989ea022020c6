"""How a broker applies metadata to its replicas: the replicas of a deleted topic are detached at
once and their logs deleted a step at a time by the replica-steps loop, and a topic re-created
under the same name never inherits an old log. The broker is real but not started; its replica
manager and log manager are fakes that record what the broker asks of them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kbroker.cluster import BrokerInfo, ClusterMetadata, LeaderAndIsr, PartitionInfo, TopicInfo
from kbroker.config import BrokerConfig, TopicConfig
from kbroker.coordination.metadata import MetadataDelta
from kbroker.server import LOG_DELETIONS_PER_STEP, NEW_REPLICAS_PER_STEP, Broker


@dataclass(eq=False)
class FakeLog:
    topic: str
    partition: int
    topic_id: str


@dataclass
class FakeReplica:
    topic: str
    partition: int
    log: FakeLog
    state: object = "given"  # every replica gets its state with apply


@dataclass
class FakeStore:
    """The logs (LogManager): what exists under each name, and what the broker deletes."""

    logs: dict[tuple[str, int], FakeLog] = field(default_factory=dict)
    deleted: list[FakeLog] = field(default_factory=list)

    def delete_log(self, topic: str, partition: int, *, only: FakeLog | None = None) -> bool:
        log = self.logs.get((topic, partition))
        if log is None or (only is not None and log is not only):
            return False
        self.deleted.append(self.logs.pop((topic, partition)))
        return True


@dataclass
class FakeReplicas:
    """The part of ReplicaManager the metadata path uses. ``open_new_logs`` waits for ``gate``
    (when set) as the worker thread takes its time, and records any ``apply`` of a replica
    whose log it is making meanwhile."""

    store: FakeStore
    hosted: dict[tuple[str, int], FakeReplica] = field(default_factory=dict)
    gate: asyncio.Event | None = None
    opening: set[tuple[str, int]] = field(default_factory=set)
    opened: list[tuple[str, int]] = field(default_factory=list)
    applied_while_opening: list[tuple[str, int]] = field(default_factory=list)

    async def open_new_logs(
        self, replicas: list[tuple[PartitionInfo, TopicConfig, str]]
    ) -> list[tuple[str, int]]:
        wanted = {
            (info.topic, info.partition): topic_id
            for info, _config, topic_id in replicas
            if (info.topic, info.partition) not in self.store.logs
        }
        self.opening = set(wanted)
        if self.gate is not None:
            await self.gate.wait()
        self.opening = set()
        for (name, partition), topic_id in wanted.items():
            self.store.logs[(name, partition)] = FakeLog(name, partition, topic_id)
        self.opened += list(wanted)
        return list(wanted)

    def set_fenced(self, _fenced: bool) -> None:
        pass

    def partitions(self) -> Iterator[FakeReplica]:
        return iter(list(self.hosted.values()))

    def get(self, topic: str, partition: int) -> FakeReplica | None:
        return self.hosted.get((topic, partition))

    def apply(self, info: PartitionInfo, _config: TopicConfig, topic_id: str) -> None:
        tp = (info.topic, info.partition)
        if tp in self.opening:
            self.applied_while_opening.append(tp)
        if tp not in self.hosted:
            log = self.store.logs.get(tp)
            assert log is None or log.topic_id == topic_id, "a new replica got an old log"
            self.store.logs[tp] = log or FakeLog(info.topic, info.partition, topic_id)
            self.hosted[tp] = FakeReplica(info.topic, info.partition, self.store.logs[tp])

    def detach(self, topic: str, partition: int) -> FakeLog | None:
        replica = self.hosted.pop((topic, partition), None)
        return None if replica is None else replica.log


def topic(name: str, partitions: int, topic_id: str) -> TopicInfo:
    state = LeaderAndIsr(leader=1, leader_epoch=0, isr=(1,), controller_epoch=1)
    return TopicInfo(
        name=name,
        topic_id=topic_id,
        partitions=tuple(
            PartitionInfo(topic=name, partition=p, replicas=(1,), state=state)
            for p in range(partitions)
        ),
        configs={},
    )


def snapshot(*topics: TopicInfo) -> ClusterMetadata:
    return ClusterMetadata(
        cluster_id="c",
        controller_id=1,
        brokers={1: BrokerInfo(broker_id=1, url="http://b1")},
        topics={t.name: t for t in topics},
    )


def all_of(t: TopicInfo) -> set[tuple[str, int]]:
    return {(t.name, p.partition) for p in t.partitions}


async def started_broker(tmp_path: Path, first: ClusterMetadata) -> tuple[Broker, FakeReplicas]:
    config = BrokerConfig.build(
        {"broker.id": 1, "zookeeper.connect": "zk:2181", "data.dir": str(tmp_path)}
    )
    broker = Broker(config)
    replicas = FakeReplicas(FakeStore())
    broker.replicas = replicas  # type: ignore[assignment]
    broker._logs = replicas.store  # type: ignore[assignment]
    broker._first_snapshot = False  # no orphan-log sweep
    every = set().union(*map(all_of, first.topics.values()))
    broker._on_metadata(first, MetadataDelta(partitions=every))
    await run_steps(broker)  # the new replicas beyond the first step
    assert set(replicas.hosted) == every
    return broker, replicas


async def deleted_topic(tmp_path: Path, partitions: int) -> tuple[Broker, FakeReplicas]:
    """A broker that hosted topic ``t`` of ``partitions`` partitions and has just seen its
    deletion (no step of the replica-steps loop has run since)."""
    old = topic("t", partitions, "old")
    broker, replicas = await started_broker(tmp_path, snapshot(old))
    broker._on_metadata(snapshot(), MetadataDelta(partitions=all_of(old), removed_topics={"t"}))
    return broker, replicas


async def run_steps(broker: Broker) -> None:
    """Run the replica-steps loop until it has nothing left (at most 100 steps)."""
    task = asyncio.create_task(broker._replica_steps_loop())
    await _until_idle(broker)
    task.cancel()


async def _until_idle(broker: Broker) -> None:
    for _ in range(100):
        if not (broker._removals or broker._new_pending):
            return
        await asyncio.sleep(0)
    raise AssertionError("the replica-steps loop did not finish in 100 steps")


async def test_a_deleted_topic_is_detached_at_once_and_deleted_a_step_at_a_time(
    tmp_path: Path,
) -> None:
    broker, replicas = await deleted_topic(tmp_path, 200)
    assert replicas.hosted == {}  # nothing reaches the replicas any more
    assert replicas.store.deleted == []  # but no log was deleted on the metadata path
    task = asyncio.create_task(broker._replica_steps_loop())
    await asyncio.sleep(0)  # the loop runs its first step, then lets others run
    assert len(replicas.store.deleted) == LOG_DELETIONS_PER_STEP
    await _until_idle(broker)
    task.cancel()
    assert sorted(log.partition for log in replicas.store.deleted) == list(range(200))
    assert replicas.store.logs == {}


async def test_a_topic_recreated_before_its_logs_are_deleted_gets_new_logs(
    tmp_path: Path,
) -> None:
    broker, replicas = await deleted_topic(tmp_path, 100)
    new = topic("t", 10, "new")  # re-created with fewer partitions, before any step ran
    broker._on_metadata(snapshot(new), MetadataDelta(partitions=all_of(new)))
    # FakeReplicas.apply asserts that no new replica got an old log
    assert {r.log.topic_id for r in replicas.hosted.values()} == {"new"}
    await run_steps(broker)  # the old logs beyond the new partition count
    assert sorted(replicas.hosted) == sorted(all_of(new))
    assert {log.topic_id for log in replicas.store.logs.values()} == {"new"}
    assert sorted(log.partition for log in replicas.store.deleted) == list(range(100))
    assert {log.topic_id for log in replicas.store.deleted} == {"old"}


async def test_a_name_taken_again_keeps_its_new_log(tmp_path: Path) -> None:
    """A log detached for deletion whose name a new log took meanwhile (by another path than
    the broker's own re-application) is skipped: the deletion never hits the new log."""
    broker, replicas = await deleted_topic(tmp_path, 1)
    newer = FakeLog("t", 0, "new")
    replicas.store.logs[("t", 0)] = newer
    await run_steps(broker)
    assert replicas.store.logs == {("t", 0): newer} and replicas.store.deleted == []


async def test_new_replicas_beyond_the_first_step_get_their_logs_from_the_worker_thread(
    tmp_path: Path,
) -> None:
    new = topic("t", 100, "id")
    _broker, replicas = await started_broker(tmp_path, snapshot(new))
    # NEW_REPLICAS_PER_STEP were set up on the metadata path, the rest by steps.
    assert len(set(replicas.opened)) == len(replicas.opened) == 100 - NEW_REPLICAS_PER_STEP
    assert {r.log.topic_id for r in replicas.hosted.values()} == {"id"}


@dataclass
class OpeningStep:
    """A broker whose replica-steps loop waits for the logs of topic ``t``'s second step."""

    broker: Broker
    replicas: FakeReplicas
    loop_task: asyncio.Task[None]
    topic: TopicInfo
    in_flight: set[tuple[str, int]]

    @classmethod
    async def start(cls, tmp_path: Path) -> OpeningStep:
        broker, replicas = await started_broker(tmp_path, snapshot())
        replicas.gate = asyncio.Event()
        new = topic("t", NEW_REPLICAS_PER_STEP * 2, "id")
        broker._on_metadata(snapshot(new), MetadataDelta(partitions=all_of(new)))
        task = asyncio.create_task(broker._replica_steps_loop())
        for _ in range(10):
            await asyncio.sleep(0)
        assert len(replicas.opening) == NEW_REPLICAS_PER_STEP
        return cls(broker, replicas, task, new, set(replicas.opening))

    async def finish(self) -> None:
        """Let the thread's work end and the loop run until it has nothing left."""
        assert self.replicas.gate is not None
        self.replicas.gate.set()
        for _ in range(20):
            await asyncio.sleep(0)
        await _until_idle(self.broker)
        self.loop_task.cancel()


async def test_a_step_whose_logs_are_being_made_is_not_applied_meanwhile(
    tmp_path: Path,
) -> None:
    step = await OpeningStep.start(tmp_path)
    everything = MetadataDelta(partitions=all_of(step.topic))
    step.broker._on_metadata(snapshot(step.topic), everything)
    step.broker._resync_pending = True  # a new ZooKeeper session: everything applied at once
    step.broker._on_metadata(snapshot(step.topic), everything)
    assert step.replicas.applied_while_opening == []
    assert not step.in_flight & set(step.replicas.hosted)
    await step.finish()
    assert set(step.replicas.hosted) == all_of(step.topic)


async def test_logs_made_for_a_topic_deleted_meanwhile_are_deleted_again(
    tmp_path: Path,
) -> None:
    step = await OpeningStep.start(tmp_path)
    deletion = MetadataDelta(partitions=all_of(step.topic), removed_topics={"t"})
    step.broker._on_metadata(snapshot(), deletion)
    await step.finish()
    assert step.replicas.hosted == {}
    assert {(log.topic, log.partition) for log in step.replicas.store.deleted} >= step.in_flight
    assert step.replicas.store.logs == {}
