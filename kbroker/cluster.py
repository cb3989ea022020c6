"""What a broker knows about the cluster: an immutable snapshot, replaced whole.

The metadata watcher builds :class:`ClusterMetadata` from ZooKeeper and swaps the broker's
reference to a new snapshot on every change; readers (HTTP handlers, the produce router, the
controller) hold one snapshot for the duration of a request and never see it change under them.
All types here are frozen; their mappings are never mutated after construction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from kbroker.errors import BrokerError, ErrorCode

__all__ = [
    "NO_LEADER",
    "BrokerInfo",
    "ClusterMetadata",
    "LeaderAndIsr",
    "PartitionInfo",
    "TopicInfo",
    "TopicPartition",
]

#: ``leader`` of a partition that has none (Kafka's LeaderAndIsr.NoLeader).
NO_LEADER: Final = -1

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerInfo:
    """A live broker, from its ``/brokers/ids/<id>`` registration."""

    broker_id: int
    url: str
    rack: str | None = None
    epoch: int = 0
    """Broker epoch: czxid of the registration znode; grows on every re-registration."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderAndIsr:
    """The partition state znode: who leads, in which epoch, and who is in sync.

    ``zk_version`` is the znode version this state was read at (or written as); every write of
    the state is conditional on it. ``leader_epoch`` grows with every leader election.
    """

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    controller_epoch: int
    zk_version: int = -1

    def with_isr(self, isr: tuple[int, ...]) -> LeaderAndIsr:
        """The same leader and epoch with a new ISR (what a leader writes on shrink/expand)."""
        return dataclasses.replace(self, isr=isr)


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionInfo:
    """Assignment and state of one partition."""

    topic: str
    partition: int
    replicas: tuple[int, ...]
    state: LeaderAndIsr | None = None

    @property
    def leader(self) -> int:
        return self.state.leader if self.state else NO_LEADER

    @property
    def isr(self) -> tuple[int, ...]:
        return self.state.isr if self.state else ()

    @property
    def leader_epoch(self) -> int:
        return self.state.leader_epoch if self.state else -1

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicInfo:
    """A topic: its id, partitions (index = partition number) and config overrides."""

    name: str
    topic_id: str
    partitions: tuple[PartitionInfo, ...]
    configs: Mapping[str, str] = field(default_factory=dict)
    internal: bool = False
    deleting: bool = False
    """A deletion was requested (``/admin/delete_topics/<t>``) and is in progress."""

    @property
    def replication_factor(self) -> int:
        return len(self.partitions[0].replicas) if self.partitions else 0

    def partition(self, partition: int) -> PartitionInfo:
        if not 0 <= partition < len(self.partitions):
            raise BrokerError(
                f"Partition {partition} of topic {self.name} not found",
                ErrorCode.UNKNOWN_PARTITION,
            )
        return self.partitions[partition]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterMetadata:
    """Everything routing needs: live brokers, the controller, topics and their partitions."""

    cluster_id: str = ""
    controller_id: int = -1
    brokers: Mapping[int, BrokerInfo] = field(default_factory=dict)
    topics: Mapping[str, TopicInfo] = field(default_factory=dict)

    def topic(self, name: str) -> TopicInfo:
        info = self.topics.get(name)
        if info is None:
            raise BrokerError(f"Topic {name} not found.", ErrorCode.UNKNOWN_TOPIC)
        return info

    def partition(self, topic: str, partition: int) -> PartitionInfo:
        return self.topic(topic).partition(partition)

    def broker(self, broker_id: int) -> BrokerInfo:
        info = self.brokers.get(broker_id)
        if info is None:
            raise BrokerError(f"Broker {broker_id} not found", ErrorCode.UNKNOWN_BROKER)
        return info

    def leader_url(self, topic: str, partition: int) -> str:
        """URL of the partition's leader; LEADER_NOT_AVAILABLE if it has none or is not live."""
        info = self.partition(topic, partition)
        broker = self.brokers.get(info.leader)
        if broker is None:
            raise BrokerError(
                f"Partition {partition} of topic {topic} has no live leader",
                ErrorCode.LEADER_NOT_AVAILABLE,
            )
        return broker.url

    def replace(self, **changes: object) -> ClusterMetadata:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def with_topic(self, info: TopicInfo) -> ClusterMetadata:
        return self.replace(topics={**self.topics, info.name: info})

    def without_topic(self, name: str) -> ClusterMetadata:
        return self.replace(topics={k: v for k, v in self.topics.items() if k != name})
