"""The controller's state writes and topic deletions against a real ZooKeeper ensemble: many
partitions per multi, a race on one partition costing only its own write, and a topic whose
znodes exceed what one multi can carry."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from kbroker.clock import SystemClock
from kbroker.cluster import BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo
from kbroker.config import BrokerConfig
from kbroker.controller.controller import Controller
from kbroker.coordination import ZooKeeperClient
from kbroker.coordination.fencing import elect_controller
from kbroker.coordination.registration import ensure_persistent_paths
from kbroker.coordination.zk import CreateOp, Op, OpResult
from kbroker.coordination.znodes import (
    DeleteTopicZNode,
    TopicConfigZNode,
    TopicPartitionStateZNode,
    TopicPartitionsZNode,
    TopicsZNode,
    TopicZNode,
)

BROKERS = (1, 2, 3)


class CountingClient:
    """The real client, counting the multis that go through it."""

    def __init__(self, zk: ZooKeeperClient) -> None:
        self._zk = zk
        self.multis: list[int] = []

    async def check_and_write(
        self, check_path: str, check_version: int, ops: Sequence[Op]
    ) -> list[OpResult]:
        self.multis.append(len(ops))
        return await self._zk.check_and_write(check_path, check_version, ops)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._zk, name)


def topic_of(name: str, partitions: int, *, deleting: bool = False) -> TopicInfo:
    return TopicInfo(
        name=name,
        topic_id="id",
        partitions=tuple(
            PartitionInfo(topic=name, partition=p, replicas=BROKERS[p % 3 :] + BROKERS[: p % 3])
            for p in range(partitions)
        ),
        configs={},
        deleting=deleting,
    )


def cluster(topic: TopicInfo) -> ClusterMetadata:
    return ClusterMetadata(
        cluster_id="c",
        controller_id=1,
        brokers={b: BrokerInfo(broker_id=b, url=f"http://b{b}") for b in BROKERS},
        topics={topic.name: topic},
    )


async def active_controller(
    zk: ZooKeeperClient, metadata: list[ClusterMetadata]
) -> tuple[Controller, CountingClient]:
    """The elected controller of a cluster whose metadata is ``metadata[0]``."""
    await ensure_persistent_paths(zk)
    epoch = await elect_controller(zk, 1)
    assert epoch is not None
    counting = CountingClient(zk)
    config = BrokerConfig.build({"broker.id": 1, "zookeeper.connect": "zk:2181", "data.dir": "/x"})
    controller = Controller(
        zk=counting,  # type: ignore[arg-type]
        config=config,
        metadata=lambda: metadata[0],
        clock=SystemClock(),
        rng=random.Random(0),
    )
    controller.epoch = epoch
    return controller, counting


async def create_topic_znodes(zk: ZooKeeperClient, name: str) -> None:
    """What topic creation writes (the controller checks the topic znode exists)."""
    await zk.transaction(
        [
            CreateOp(TopicConfigZNode.path(name), TopicConfigZNode.encode({})),
            CreateOp(TopicZNode.path(name), b'{"version":3,"partitions":{}}'),
        ]
    )


async def test_a_thousand_new_partitions_take_a_few_multis(zk: ZooKeeperClient) -> None:
    topic = topic_of("many", 1000)
    controller, counting = await active_controller(zk, [cluster(topic)])
    await create_topic_znodes(zk, "many")
    await controller._reconcile()
    # the partitions parent (checking the topic znode), then 200 partitions a multi: the
    # check of the topic znode and 400 creates
    assert counting.multis == [2, 401, 401, 401, 401, 401]
    for p in (0, 1, 499, 999):
        data, _ = await zk.get(TopicPartitionStateZNode.path("many", p))
        state = TopicPartitionStateZNode.decode(data)
        assert state.leader == topic.partitions[p].replicas[0] and state.leader_epoch == 0
        assert tuple(state.isr) == topic.partitions[p].replicas


async def test_a_race_on_one_partition_costs_only_its_own_write(zk: ZooKeeperClient) -> None:
    topic = topic_of("raced", 450)
    controller, counting = await active_controller(zk, [cluster(topic)])
    await create_topic_znodes(zk, "raced")
    await zk.ensure_path(TopicPartitionsZNode.path("raced"))
    taken = TopicPartitionStateZNode.path("raced", 250)
    await zk.create(taken, b"written meanwhile", makepath=True)
    await controller._reconcile()
    # The multis of partitions 0-199 and 400-449 went through. That of 200-399 failed on
    # partition 250's znode (it exists); a read of the batch's znodes found its state too,
    # and the multi went through without partition 250.
    assert counting.multis == [401, 401, 101, 399]
    assert (await zk.get(taken))[0] == b"written meanwhile"
    for p in (199, 200, 249, 251, 399, 449):
        data, _ = await zk.get(TopicPartitionStateZNode.path("raced", p))
        assert TopicPartitionStateZNode.decode(data).leader_epoch == 0


async def test_a_creation_planned_again_from_stale_metadata_costs_one_multi_a_batch(
    zk: ZooKeeperClient,
) -> None:
    """The watcher can lag behind the controller's own writes: a reconcile right after the
    creation plans it again. Each batch then fails once, re-reads which znodes exist and
    has nothing left to send. Dropping one partition per failed multi instead cost two
    multis per partition (800 here, and minutes of CPU for a topic of thousands)."""
    topic = topic_of("again", 400)
    controller, counting = await active_controller(zk, [cluster(topic)])
    await create_topic_znodes(zk, "again")
    await controller._reconcile()
    assert counting.multis == [2, 401, 401]
    await zk.delete(TopicPartitionStateZNode.path("again", 7))  # one state lost meanwhile
    counting.multis.clear()
    await controller._reconcile()  # the same metadata: no state shown for any partition
    assert sorted(counting.multis) == [2, 401, 401]  # partition 7's state: 1 op + the check
    data, _ = await zk.get(TopicPartitionStateZNode.path("again", 7))
    assert TopicPartitionStateZNode.decode(data).leader_epoch == 0


async def test_deleting_a_topic_too_large_for_one_multi(zk: ZooKeeperClient) -> None:
    """2,500 partitions under a 240-character name: its ~5,000 znodes take about 1.3 MB of
    delete operations, more than ZooKeeper's 1 MiB jute.maxbuffer takes in one request."""
    name = "t" * 240
    metadata = [cluster(topic_of(name, 2500))]
    controller, counting = await active_controller(zk, metadata)
    await create_topic_znodes(zk, name)
    await controller._reconcile()
    assert len(await zk.get_children(TopicPartitionsZNode.path(name))) == 2500
    await zk.create(DeleteTopicZNode.path(name), DeleteTopicZNode.encode(), makepath=True)
    metadata[0] = cluster(topic_of(name, 2500, deleting=True))
    counting.multis.clear()
    await controller._reconcile()
    assert await zk.get_children(TopicsZNode.path) == []
    assert await zk.exists(DeleteTopicZNode.path(name)) is None
    assert await zk.exists(TopicConfigZNode.path(name)) is None
    assert max(counting.multis) <= 400 and len(counting.multis) == 14  # 12 x 400 + 200, the last


async def test_a_topic_deleted_meanwhile_gets_no_state_and_no_bare_znode(
    zk: ZooKeeperClient,
) -> None:
    """The watcher can show a topic whose znodes were just deleted, without its states and
    no longer marked for deletion. The controller must then create nothing: creating the
    partitions' parents with ensure_path would leave a bare, undecodable topic znode."""
    topic = topic_of("gone", 500)
    controller, counting = await active_controller(zk, [cluster(topic)])
    await controller._reconcile()
    assert counting.multis == [2]  # the parent's multi, which failed on the topic check
    assert await zk.exists(TopicZNode.path("gone")) is None
    await create_topic_znodes(zk, "gone")
    await zk.ensure_path(TopicPartitionsZNode.path("gone"))
    await zk.delete(TopicZNode.path("gone"), recursive=True)
    await controller._reconcile()  # its parent is gone too: nothing to write under
    assert await zk.exists(TopicZNode.path("gone")) is None
