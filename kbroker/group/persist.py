"""What the group coordinator writes to ``__consumer_offsets``, and how it reads it back.

Every change to a group is a record in the group's partition of the internal topic (JSON
codec, key and value JSON documents), and the coordinator's state is exactly what replaying
that partition in order gives (the latest value per key wins; a null value deletes):

=========================================================  ================================
key                                                        value
=========================================================  ================================
``{"type": "offset", "group", "topic", "partition"}``      ``{"offset", "metadata",
                                                           "commit_timestamp"}``
``{"type": "group", "group"}``                             :meth:`Group.to_json`
``{"type": "instance", "group", "instance"}``              a REST v2 consumer instance's
                                                           settings and subscription
=========================================================  ================================

Offsets are Kafka's: the next offset the group will consume. A new coordinator (the new
leader of the partition) rebuilds every group of the partition by replaying it from the log
start; the coordinator's periodic snapshot rewrites the durable state (the latest value of
every live key) so that older segments can be deleted. A replayed group keeps its last
document in :attr:`Group.persisted`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from kbroker.group.state import Group, GroupState, Member, OffsetEntry
from kbroker.log.batch import PayloadCodec, iter_batches
from kbroker.records import PartitionRecords

__all__ = [
    "OFFSETS_TOPIC",
    "LoadedPartition",
    "group_key",
    "group_record",
    "instance_record",
    "java_string_hash",
    "offset_record",
    "partition_for_group",
    "replay",
    "to_batch",
]

OFFSETS_TOPIC: Final = "__consumer_offsets"
Record = dict[str, Any]


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (UTF-16 code units, 32-bit wrap-around, signed). A lone
    surrogate, which a Java String may hold too, counts as its own code unit."""
    h = 0
    for unit in _utf16(text):
        h = (31 * h + unit) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def _utf16(text: str) -> Iterator[int]:
    data = text.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(data), 2):
        yield (data[i] << 8) | data[i + 1]


@functools.lru_cache(maxsize=65_536)
def partition_for_group(group_id: str, partitions: int) -> int:
    """Kafka's ``Utils.abs(groupId.hashCode) % offsets.topic.num.partitions`` (cached: every
    group request asks it, and the hash walks the id in Python)."""
    h = java_string_hash(group_id)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def group_key(group_id: str) -> Record:
    return {"type": "group", "group": group_id}


def offset_record(group_id: str, topic: str, partition: int, entry: OffsetEntry | None) -> Record:
    value = (
        None
        if entry is None
        else {
            "offset": entry.offset,
            "metadata": entry.metadata,
            "commit_timestamp": entry.commit_timestamp,
        }
    )
    return {
        "key": {"type": "offset", "group": group_id, "topic": topic, "partition": partition},
        "value": value,
    }


def group_record(group: Group | None, group_id: str) -> Record:
    return {"key": group_key(group_id), "value": group.to_json() if group else None}


def instance_record(group_id: str, instance: str, settings: dict[str, Any] | None) -> Record:
    return {"key": {"type": "instance", "group": group_id, "instance": instance}, "value": settings}


def to_batch(records: list[Record], now_ms: int) -> PartitionRecords:
    """One batch payload for ``records`` (the JSON codec)."""
    return PartitionRecords(
        payload=orjson.dumps(records),
        record_count=len(records),
        attributes=0,
        first_timestamp=now_ms,
        max_timestamp=now_ms,
        positions=range(len(records)),
    )


@dataclass(slots=True)
class LoadedPartition:
    """The groups, offsets and REST instances found by replaying one offsets partition."""

    groups: dict[str, Group] = field(default_factory=dict)
    instances: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def group(self, group_id: str) -> Group:
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = Group(group_id)
        return group


def replay(
    batches: Iterable[bytes | memoryview], loaded: LoadedPartition | None = None
) -> LoadedPartition:
    """Apply the records of stored ``batches`` (in log order) to ``loaded``."""
    out = loaded or LoadedPartition()
    for data in batches:
        view = memoryview(data)
        for header in iter_batches(view):
            if header.codec is not PayloadCodec.JSON:
                continue
            start = header.position + header.size - header.payload_length
            for record in orjson.loads(view[start : header.position + header.size]):
                _apply(out, record.get("key"), record.get("value"))
    return out


def _apply(out: LoadedPartition, key: Any, value: Any) -> None:
    if not isinstance(key, dict):
        return
    kind, group_id = key.get("type"), key.get("group")
    if not isinstance(group_id, str):
        return
    if kind == "offset":
        tp = (key["topic"], int(key["partition"]))
        group = out.group(group_id)
        if value is None:
            group.offsets.pop(tp, None)
        else:
            group.offsets[tp] = OffsetEntry(
                offset=int(value["offset"]),
                metadata=value.get("metadata") or "",
                commit_timestamp=int(value.get("commit_timestamp") or 0),
            )
    elif kind == "group":
        if value is None:
            out.groups.pop(group_id, None)
            return
        group = out.group(group_id)
        group.persisted = value
        group.generation = int(value["generation"])
        group.assignor = value.get("assignor") or "sticky"
        group.empty_since_ms = value.get("empty_since_ms")
        group.members = {m["member_id"]: Member.from_json(m) for m in value.get("members", ())}
        group.state = GroupState.STABLE if group.members else GroupState.EMPTY
    elif kind == "instance":
        name = key.get("instance")
        if isinstance(name, str):
            if value is None:
                out.instances.pop((group_id, name), None)
            else:
                out.instances[(group_id, name)] = value
