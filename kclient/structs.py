"""Small immutable value types of the public API (NamedTuples: cheap, hashable, unpackable).

Records and metadata are tuples so that a consumer can build hundreds of thousands of them per
second without Python-level constructors (``tuple.__new__`` over ``zip``).
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

__all__ = [
    "BrokerDescription",
    "ClusterDescription",
    "ConfigEntry",
    "ConsumerRecord",
    "GroupDescription",
    "GroupListing",
    "Header",
    "MemberDescription",
    "OffsetAndMetadata",
    "OffsetSpec",
    "PartitionDescription",
    "PartitionLag",
    "RecordMetadata",
    "TopicDescription",
    "TopicListing",
    "TopicPartition",
]

Header = tuple[str, bytes | None]
"""A record header: (key, value bytes or None)."""


class TopicPartition(NamedTuple):
    """One partition of one topic."""

    topic: str
    partition: int


class RecordMetadata(NamedTuple):
    """Where a produced record landed.

    ``offset`` is -1 with ``acks=0`` (the broker does not say); ``timestamp`` is the record's
    create time as sent (or -1 when the broker stamped it).
    """

    topic: str
    partition: int
    offset: int
    timestamp: int


class ConsumerRecord(NamedTuple):
    """A record as a consumer returns it (key and value after deserialization)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    """Milliseconds since the epoch: CreateTime as produced, or LogAppendTime."""
    key: Any
    value: Any
    headers: tuple[Header, ...]
    """(key, value bytes or None) pairs; an empty tuple when the record has none."""


class OffsetAndMetadata(NamedTuple):
    """A committed offset: the *next* offset to consume, and free-form metadata."""

    offset: int
    metadata: str = ""


class OffsetSpec(enum.StrEnum):
    """Where a group offset reset goes."""

    EARLIEST = "earliest"
    LATEST = "latest"
    TIMESTAMP = "timestamp"
    OFFSET = "offset"


class BrokerDescription(NamedTuple):
    broker_id: int
    url: str
    host: str
    port: int | None
    rack: str | None
    is_controller: bool


class PartitionDescription(NamedTuple):
    """A partition's leadership and offsets (offsets None when its leader did not answer)."""

    topic: str
    partition: int
    leader: int | None
    leader_epoch: int
    replicas: list[int]
    isr: list[int]
    under_replicated: bool
    offline: bool
    log_start_offset: int | None
    high_watermark: int | None
    log_end_offset: int | None


class TopicDescription(NamedTuple):
    name: str
    partitions: list[PartitionDescription]
    configs: dict[str, str]

    @property
    def replication_factor(self) -> int:
        return len(self.partitions[0].replicas) if self.partitions else 0


class TopicListing(NamedTuple):
    """A topic in a listing: counts only (see TopicDescription for the partitions)."""

    name: str
    partitions: int
    replication_factor: int
    under_replicated_partitions: int
    offline_partitions: int
    internal: bool


class ClusterDescription(NamedTuple):
    cluster_id: str
    controller: int | None
    brokers: list[BrokerDescription]


class ConfigEntry(NamedTuple):
    """One topic config: its effective value and whether it is the default."""

    name: str
    value: str | None
    is_default: bool
    source: str


class GroupListing(NamedTuple):
    group_id: str
    state: str
    members: int


class MemberDescription(NamedTuple):
    member_id: str
    client_id: str
    group_instance_id: str | None
    assignment: list[TopicPartition]


class GroupDescription(NamedTuple):
    group_id: str
    state: str
    generation_id: int
    assignor: str | None
    members: list[MemberDescription]


class PartitionLag(NamedTuple):
    """A group's progress on one partition: lag = log end offset (the HW) - committed."""

    topic: str
    partition: int
    committed: int | None
    log_end_offset: int
    lag: int
    consumer_id: str | None
    client_id: str | None
