"""Every broker's view of the cluster, mirrored from ZooKeeper into immutable snapshots.

The :class:`MetadataWatcher` watches (as hints) the children of ``/brokers/ids``,
``/brokers/topics`` and ``/admin/delete_topics``, the ``/controller`` znode, and for every topic
its assignment, its config and the state znode of each partition. A watch event only marks a
key dirty; one task re-reads every dirty key from ZooKeeper (re-arming its watch), and once the
queue is drained publishes a new :class:`~kbroker.cluster.ClusterMetadata` and tells the
listener which partitions changed. After a reconnect every watch fires RESYNC and everything is
re-read. This is how brokers learn leadership: the partition state znode, written by the
controller (epoch-fenced) or by the leader (ISR changes, version-checked), is the one truth.

Concurrency: the watch handlers and :meth:`run` run on the event loop; the working state is
owned by the task running :meth:`run`. Listeners are called on that task and must not block.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from kbroker.cluster import (
    BrokerInfo,
    ClusterMetadata,
    LeaderAndIsr,
    PartitionInfo,
    TopicInfo,
    TopicPartition,
)
from kbroker.coordination.errors import NoNodeError, ZnodeDecodeError
from kbroker.coordination.zk import WatchEvent, WatchEventKind, ZooKeeperClient, pipelined
from kbroker.coordination.znodes import (
    BrokerIdsZNode,
    BrokerIdZNode,
    ClusterIdZNode,
    ControllerZNode,
    DeleteTopicsZNode,
    PartitionState,
    TopicConfigZNode,
    TopicPartitionStateZNode,
    TopicsZNode,
    TopicZNode,
)

__all__ = ["MetadataDelta", "MetadataWatcher", "state_from_znode", "state_to_znode"]

log = logging.getLogger(__name__)

INTERNAL_TOPICS = frozenset({"__consumer_offsets"})


def state_from_znode(state: PartitionState, zk_version: int) -> LeaderAndIsr:
    return LeaderAndIsr(
        leader=state.leader,
        leader_epoch=state.leader_epoch,
        isr=state.isr,
        controller_epoch=state.controller_epoch,
        zk_version=zk_version,
    )


def state_to_znode(state: LeaderAndIsr) -> bytes:
    return TopicPartitionStateZNode.encode(
        PartitionState(
            leader=state.leader,
            leader_epoch=state.leader_epoch,
            isr=state.isr,
            controller_epoch=state.controller_epoch,
        )
    )


@dataclass(slots=True)
class MetadataDelta:
    """What changed since the previous snapshot."""

    partitions: set[TopicPartition] = field(default_factory=set)
    """Partitions whose assignment, state or topic config changed (or that appeared)."""
    removed_topics: set[str] = field(default_factory=set)
    brokers_changed: bool = False
    controller_changed: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.partitions
            or self.removed_topics
            or self.brokers_changed
            or self.controller_changed
        )


@dataclass(slots=True)
class _Topic:
    topic_id: str
    replicas: dict[int, tuple[int, ...]]
    states: dict[int, LeaderAndIsr | None] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)


Key = tuple[str, ...]


class MetadataWatcher:
    """Keeps :attr:`snapshot` in step with ZooKeeper (see the module docstring)."""

    def __init__(
        self,
        zk: ZooKeeperClient,
        *,
        on_update: Callable[[ClusterMetadata, MetadataDelta], None],
    ) -> None:
        self._zk = zk
        self._on_update = on_update
        self.snapshot = ClusterMetadata()
        self._dirty: dict[Key, None] = {}
        self._wakeup = asyncio.Event()
        self._cluster_id = ""
        self._controller = -1
        self._brokers: dict[int, BrokerInfo] = {}
        self._topics: dict[str, _Topic] = {}
        self._deleting: set[str] = set()
        self._removers: dict[str, list[Callable[[], None]]] = {}
        self._delta = MetadataDelta()
        self._ready = asyncio.Event()
        self._published_topics: dict[str, TopicInfo] = {}

    # ------------------------------------------------------------------------------ hints

    def _mark(self, *key: str) -> None:
        self._dirty[key] = None
        self._wakeup.set()

    def _watch(self, owner: str, path: str, *key: str) -> None:
        def handler(event: WatchEvent) -> None:
            if event.kind is WatchEventKind.RESYNC:
                self._mark("all")
            else:
                self._mark(*key)

        self._removers.setdefault(owner, []).append(self._zk.add_watch(path, handler))

    def _unwatch(self, owner: str) -> None:
        for remove in self._removers.pop(owner, []):
            remove()

    async def wait_ready(self, timeout: float) -> None:
        """Wait until the first full snapshot has been published."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    def refresh(self) -> None:
        """Re-read everything (after a new session, or on demand)."""
        self._mark("all")

    # ------------------------------------------------------------------------------- run

    async def run(self) -> None:
        """Process dirty keys forever, publishing a snapshot whenever the queue drains."""
        self._watch("cluster", BrokerIdsZNode.path, "brokers")
        self._watch("cluster", TopicsZNode.path, "topics")
        self._watch("cluster", DeleteTopicsZNode.path, "deleting")
        self._watch("cluster", ControllerZNode.path, "controller")
        self._mark("all")
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._dirty:
                key = next(iter(self._dirty))
                if key[0] == "state":
                    await self._process_states()
                    continue
                del self._dirty[key]
                await self._process(key)
            self._publish()

    async def _process_states(self) -> None:
        """Re-read every dirty partition state at once (pipelined reads, not one round trip
        after another): a controller writing thousands of states (a large topic created, a
        broker's leaderships moved) marks thousands of them within moments."""
        keys = [key for key in self._dirty if key[0] == "state"]
        for key in keys:
            del self._dirty[key]
        await pipelined(self._process, keys)

    async def _process(self, key: Key) -> None:
        kind = key[0]
        try:
            if kind == "all":
                await self._load_all()
            elif kind == "brokers":
                await self._load_brokers()
            elif kind == "topics":
                await self._load_topic_list()
            elif kind == "deleting":
                await self._load_deleting()
            elif kind == "controller":
                await self._load_controller()
            elif kind == "topic":
                await self._load_topic(key[1])
            elif kind == "config":
                await self._load_config(key[1])
            elif kind == "state":
                await self._load_state(key[1], int(key[2]))
        except ZnodeDecodeError as exc:
            log.error("ignoring undecodable znode while reading %s: %s", key, exc)
        except Exception as exc:
            log.warning("metadata read of %s failed (%r); retrying", key, exc)
            await asyncio.sleep(0.5)
            self._dirty[key] = None

    async def _load_all(self) -> None:
        if not self._cluster_id:
            try:
                data, _ = await self._zk.get(ClusterIdZNode.path)
                self._cluster_id = ClusterIdZNode.decode(data)
            except NoNodeError:
                pass
        await self._load_brokers()
        await self._load_controller()
        await self._load_deleting()
        await self._load_topic_list(reload=True)

    async def _load_brokers(self) -> None:
        ids = await self._zk.get_children(BrokerIdsZNode.path, watch=True)
        brokers = {}
        for name in ids:
            if not name.isdigit():
                continue
            try:
                data, stat = await self._zk.get(BrokerIdZNode.path(int(name)))
            except NoNodeError:
                continue
            reg = BrokerIdZNode.decode(int(name), data)
            brokers[reg.broker_id] = BrokerInfo(
                broker_id=reg.broker_id, url=reg.url, rack=reg.rack, epoch=stat.czxid
            )
        if brokers != self._brokers:
            self._brokers = brokers
            self._delta.brokers_changed = True

    async def _get_or_watch_creation(self, path: str) -> tuple[bytes, int] | None:
        """(data, version) of ``path`` with a data watch armed; or None with an exists watch
        armed (which fires when the znode is created)."""
        while True:
            try:
                data, stat = await self._zk.get(path, watch=True)
                return data, stat.version
            except NoNodeError:
                if await self._zk.exists(path, watch=True) is None:
                    return None

    async def _load_controller(self) -> None:
        found = await self._get_or_watch_creation(ControllerZNode.path)
        controller = ControllerZNode.decode(found[0]).broker_id if found is not None else -1
        if controller != self._controller:
            self._controller = controller
            self._delta.controller_changed = True

    async def _load_deleting(self) -> None:
        deleting = set(await self._zk.get_children(DeleteTopicsZNode.path, watch=True))
        if deleting != self._deleting:
            self._deleting = deleting
            self._delta.controller_changed = True

    async def _load_topic_list(self, *, reload: bool = False) -> None:
        names = set(await self._zk.get_children(TopicsZNode.path, watch=True))
        for gone in set(self._topics) - names:
            self._drop_topic(gone)
        for name in names:
            if reload or name not in self._topics:
                await self._load_topic(name)

    def _drop_topic(self, name: str) -> None:
        self._unwatch(name)
        if self._topics.pop(name, None) is not None:
            self._delta.removed_topics.add(name)

    async def _load_topic(self, name: str) -> None:
        if name not in self._removers:
            self._watch(name, TopicZNode.path(name), "topic", name)
            self._watch(name, TopicConfigZNode.path(name), "config", name)
        try:
            data, _ = await self._zk.get(TopicZNode.path(name), watch=True)
        except NoNodeError:
            self._drop_topic(name)
            return
        assignment = TopicZNode.decode(data)
        topic = self._topics.get(name)
        topic_id = assignment.topic_id or ""
        if topic is None or topic.topic_id != topic_id:
            if topic is not None:
                self._delta.removed_topics.add(name)
            topic = _Topic(topic_id=topic_id, replicas={})
            self._topics[name] = topic
        for partition, replicas in assignment.partitions.items():
            if partition not in topic.replicas:
                path = TopicPartitionStateZNode.path(name, partition)
                self._watch(name, path, "state", name, str(partition))
            if topic.replicas.get(partition) != replicas:
                topic.replicas[partition] = replicas
                self._delta.partitions.add((name, partition))
        await pipelined(partial(self._load_state, name), assignment.partitions)
        await self._load_config(name)

    async def _load_state(self, name: str, partition: int) -> None:
        """Re-read one partition's state (watch armed again). Not for a topic marked for
        deletion: the controller is deleting those states, and re-reading each (a get and an
        exists with a watch, on every broker) slowed the deletion of thousands of them; the
        topic leaves the metadata with its topic znode."""
        topic = self._topics.get(name)
        if topic is None or partition not in topic.replicas or name in self._deleting:
            return
        path = TopicPartitionStateZNode.path(name, partition)
        found = await self._get_or_watch_creation(path)
        state = None
        if found is not None:
            state = state_from_znode(TopicPartitionStateZNode.decode(found[0]), found[1])
        if topic.states.get(partition) != state:
            topic.states[partition] = state
            self._delta.partitions.add((name, partition))

    async def _load_config(self, name: str) -> None:
        topic = self._topics.get(name)
        if topic is None:
            return
        found = await self._get_or_watch_creation(TopicConfigZNode.path(name))
        configs = dict(TopicConfigZNode.decode(found[0])) if found is not None else {}
        if configs != topic.configs:
            topic.configs = configs
            self._delta.partitions.update((name, p) for p in topic.replicas)

    # --------------------------------------------------------------------------- publish

    def _topic_info(self, name: str, topic: _Topic) -> TopicInfo:
        partitions = tuple(
            PartitionInfo(
                topic=name, partition=p, replicas=topic.replicas[p], state=topic.states.get(p)
            )
            for p in sorted(topic.replicas)
        )
        return TopicInfo(
            name=name,
            topic_id=topic.topic_id,
            partitions=partitions,
            configs=dict(topic.configs),
            internal=name in INTERNAL_TOPICS,
            deleting=name in self._deleting,
        )

    def _publish(self) -> None:
        delta, self._delta = self._delta, MetadataDelta()
        changed_topics = {t for t, _ in delta.partitions}
        if delta.controller_changed:
            changed_topics |= set(self._topics)  # deletion marks may have changed
        topics = {n: t for n, t in self._published_topics.items() if n in self._topics}
        for name in changed_topics:
            if name in self._topics:
                topics[name] = self._topic_info(name, self._topics[name])
        self._published_topics = topics
        self.snapshot = ClusterMetadata(
            cluster_id=self._cluster_id,
            controller_id=self._controller,
            brokers=dict(self._brokers),
            topics=topics,
        )
        first = not self._ready.is_set()
        self._ready.set()
        if delta or first:
            self._on_update(self.snapshot, delta)
