"""How a broker applies metadata to its replicas: the replicas of a deleted topic are removed a
step at a time by the replica-steps loop, and a topic re-created under the same name never
inherits the old replica. The broker is real but not started; its replica manager is a fake
that records what the broker asks of it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kbroker.cluster import BrokerInfo, ClusterMetadata, LeaderAndIsr, PartitionInfo, TopicInfo
from kbroker.config import BrokerConfig, TopicConfig
from kbroker.coordination.metadata import MetadataDelta
from kbroker.server import REMOVALS_PER_STEP, Broker


@dataclass
class FakeReplica:
    topic: str
    partition: int
    topic_id: str
    state: LeaderAndIsr | None


@dataclass
class FakeReplicas:
    """The part of ReplicaManager the metadata path uses."""

    hosted: dict[tuple[str, int], FakeReplica] = field(default_factory=dict)
    calls: list[tuple[str, str, int]] = field(default_factory=list)

    def partitions(self) -> Iterator[FakeReplica]:
        return iter(list(self.hosted.values()))

    def get(self, topic: str, partition: int) -> FakeReplica | None:
        return self.hosted.get((topic, partition))

    def apply(self, info: PartitionInfo, _config: TopicConfig, topic_id: str) -> None:
        self.calls.append(("apply", info.topic, info.partition))
        self.hosted[(info.topic, info.partition)] = FakeReplica(
            info.topic, info.partition, topic_id, info.state
        )

    def remove(self, topic: str, partition: int, *, delete: bool) -> None:
        assert delete
        self.calls.append(("remove", topic, partition))
        del self.hosted[(topic, partition)]


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
    replicas = FakeReplicas()
    broker.replicas = replicas  # type: ignore[assignment]
    broker._first_snapshot = False  # no orphan-log sweep: there is no log manager to sweep
    every = set().union(*map(all_of, first.topics.values()))
    broker._on_metadata(first, MetadataDelta(partitions=every))
    await run_steps(broker)  # the new replicas beyond the first step
    assert set(replicas.hosted) == every
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


async def test_a_deleted_topic_is_removed_a_step_at_a_time(tmp_path: Path) -> None:
    old = topic("t", 200, "old")
    broker, replicas = await started_broker(tmp_path, snapshot(old))
    replicas.calls.clear()
    broker._on_metadata(snapshot(), MetadataDelta(partitions=all_of(old), removed_topics={"t"}))
    assert replicas.calls == []  # nothing removed on the metadata path itself
    assert len(broker._removals) == 200
    task = asyncio.create_task(broker._replica_steps_loop())
    await asyncio.sleep(0)  # the loop runs its first step, then lets others run
    assert len(replicas.calls) == REMOVALS_PER_STEP
    await _until_idle(broker)
    task.cancel()
    assert sorted(c[2] for c in replicas.calls) == list(range(200))
    assert replicas.hosted == {}


async def test_a_topic_recreated_before_its_removal_gets_new_replicas(tmp_path: Path) -> None:
    old = topic("t", 100, "old")
    broker, replicas = await started_broker(tmp_path, snapshot(old))
    broker._on_metadata(snapshot(), MetadataDelta(partitions=all_of(old), removed_topics={"t"}))
    replicas.calls.clear()
    new = topic("t", 10, "new")  # re-created with fewer partitions, before any step ran
    broker._on_metadata(snapshot(new), MetadataDelta(partitions=all_of(new)))
    # each re-created partition first loses the old replica, then gets the new one
    for p in range(10):
        assert replicas.calls.index(("remove", "t", p)) < replicas.calls.index(("apply", "t", p))
    assert {r.topic_id for r in replicas.hosted.values() if r.partition < 10} == {"new"}
    await run_steps(broker)  # the old partitions beyond the new count
    assert sorted(replicas.hosted) == sorted(all_of(new))
    assert {r.topic_id for r in replicas.hosted.values()} == {"new"}
