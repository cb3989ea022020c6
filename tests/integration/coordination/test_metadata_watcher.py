"""The metadata watcher against a real ZooKeeper ensemble."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kbroker.cluster import ClusterMetadata, LeaderAndIsr
from kbroker.coordination import ZooKeeperClient
from kbroker.coordination.metadata import MetadataDelta, MetadataWatcher, state_to_znode
from kbroker.coordination.registration import ensure_persistent_paths
from kbroker.coordination.zk import CreateOp
from kbroker.coordination.znodes import (
    DeleteTopicZNode,
    TopicAssignment,
    TopicConfigZNode,
    TopicPartitionStateZNode,
    TopicZNode,
)

STATE = LeaderAndIsr(leader=1, leader_epoch=0, isr=(1,), controller_epoch=1)


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within 10 s: {what}")


async def test_a_topic_being_deleted_keeps_its_states_until_it_is_gone(
    zk: ZooKeeperClient,
) -> None:
    """While the controller deletes a topic's znodes, a broker's watcher does not re-read (nor
    watch again) the states it deletes: two reads per partition on every broker, and a
    replica made offline per partition just before it is removed with its topic. The topic
    disappears from the metadata with its topic znode."""
    await ensure_persistent_paths(zk)
    assignment = TopicAssignment(partitions={0: (1,), 1: (1,)}, topic_id="tid")
    await zk.transaction(
        [
            CreateOp(TopicConfigZNode.path("t"), TopicConfigZNode.encode({})),
            CreateOp(TopicZNode.path("t"), TopicZNode.encode(assignment)),
        ]
    )
    for p in (0, 1):
        await zk.create(TopicPartitionStateZNode.path("t", p), state_to_znode(STATE), makepath=True)
    published: list[ClusterMetadata] = []

    def on_update(snapshot: ClusterMetadata, _delta: MetadataDelta) -> None:
        published.append(snapshot)

    watcher = MetadataWatcher(zk, on_update=on_update)
    task = asyncio.create_task(watcher.run())
    try:
        await watcher.wait_ready(10)

        def last() -> ClusterMetadata:
            return published[-1]

        await _until(lambda: "t" in last().topics, "topic t seen")
        await zk.create(DeleteTopicZNode.path("t"), DeleteTopicZNode.encode(), makepath=True)
        await _until(lambda: last().topics["t"].deleting, "deletion marker seen")
        marked = len(published)
        await zk.delete(TopicPartitionStateZNode.path("t", 0), recursive=True)
        await asyncio.sleep(1)  # the watch event has come and gone
        await zk.delete(TopicZNode.path("t"), recursive=True)
        await _until(lambda: "t" not in last().topics, "topic t gone")
        for snapshot in published[marked:]:
            topic = snapshot.topics.get("t")
            assert topic is None or topic.partitions[0].state is not None
    finally:
        task.cancel()
