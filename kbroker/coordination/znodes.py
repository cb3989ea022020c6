"""One small codec per znode, in the style of Kafka's ``ZkData.scala``.

Each ``*ZNode`` class is a namespace: ``path(...)`` builds the znode path, ``encode(value)``
gives the bytes to store and ``decode(bytes)`` parses them back into a frozen value. The layout
is Kafka 2.x ZooKeeper mode (see docs/architecture.md and the design reference, section 1.1)::

    /cluster/id                                   {"version":"1","id":"<22-char base64url>"}
    /controller                    EPHEMERAL      {"version":1,"brokerid":1,"timestamp":"<ms>"}
    /controller_epoch                             decimal text, e.g. 7
    /brokers/ids/<id>              EPHEMERAL      {"version":4,"host","port","jmx_port":-1,
                                                   "timestamp":"<ms>","endpoints":[...],
                                                   "listener_security_protocol_map":{...},
                                                   "rack":null|"r1","url":"http://h:p"}
    /brokers/topics/<t>                           {"version":2,"partitions":{"0":[1,2,3]},
                                                   "adding_replicas":{},"removing_replicas":{},
                                                   "topic_id":"<22-char base64url>"}
    /brokers/topics/<t>/partitions/<p>/state      {"version":1,"leader":1,"leader_epoch":0,
                                                   "isr":[1,2],"controller_epoch":1}
    /config/topics/<t>                            {"version":1,"config":{"k":"v"}}
    /config/changes/config_change_<seq>  SEQ      {"version":2,"entity_path":"topics/<t>"}
    /admin/delete_topics/<t>                      empty
    /admin/preferred_replica_election             {"version":1,"partitions":[{"topic","partition"}]}
    /isr_change_notification/isr_change_<seq> SEQ {"version":1,"partitions":[{"topic","partition"}]}

Rules: encoders write compact JSON with orjson; decoders accept unknown fields (a newer broker
may add some) and raise :class:`ZnodeDecodeError` naming the znode kind and the problem when a
required field is missing or mistyped. Value types are frozen dataclasses checked at
construction (invariants raise ``ValueError``). Nothing here does I/O; all of it is safe to use
from any thread.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeVar
from urllib.parse import urlsplit

import orjson

from kbroker.coordination.errors import ZnodeDecodeError
from kclient.protocol import MAX_TOPIC_NAME_LENGTH

__all__ = [
    "NO_LEADER",
    "PERSISTENT_PATHS",
    "AdminZNode",
    "BrokerIdZNode",
    "BrokerIdsZNode",
    "BrokerRegistration",
    "BrokersZNode",
    "ClusterIdZNode",
    "ConfigChangeNotificationZNode",
    "ControllerEpochZNode",
    "ControllerRegistration",
    "ControllerZNode",
    "DeleteTopicZNode",
    "DeleteTopicsZNode",
    "IsrChangeNotificationZNode",
    "LogDirEventNotificationZNode",
    "PartitionState",
    "PreferredReplicaElectionZNode",
    "TopicAssignment",
    "TopicConfigZNode",
    "TopicConfigsZNode",
    "TopicPartition",
    "TopicPartitionStateZNode",
    "TopicPartitionZNode",
    "TopicPartitionsZNode",
    "TopicZNode",
    "TopicsZNode",
    "ZnodeDecodeError",
    "check_topic_name",
    "new_base64_uuid",
]

_TOPIC_RE: Final = re.compile(r"[A-Za-z0-9._-]+")
_T = TypeVar("_T")
NO_LEADER: Final = -1
"""``leader`` of a partition that has none (Kafka's ``LeaderAndIsr.NoLeader``)."""


class TopicPartition(NamedTuple):
    """A (topic, partition) pair."""

    topic: str
    partition: int


def new_base64_uuid() -> str:
    """A random UUID as 22 characters of unpadded base64url (Kafka's ``Uuid.toString``)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")


def check_topic_name(topic: str) -> str:
    """Kafka's legal topic names: ``[A-Za-z0-9._-]``, 1-249 chars, not ``.`` or ``..``.

    Checked in every path builder so that no topic name can escape its znode subtree.
    """
    if not _TOPIC_RE.fullmatch(topic) or topic in (".", "..") or len(topic) > MAX_TOPIC_NAME_LENGTH:
        raise ValueError(f"illegal topic name {topic!r}")
    return topic


def _check_int(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")


def _check_replicas(name: str, replicas: tuple[int, ...], *, allow_empty: bool) -> None:
    if not replicas and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    for replica in replicas:
        _check_int(f"{name} entry", replica, 0)
    if len(set(replicas)) != len(replicas):
        raise ValueError(f"{name} has duplicates: {list(replicas)}")


# ----------------------------------------------------------------------------------------------
# JSON helpers: every decoder goes through these so errors name the znode and the field.


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def _loads(kind: str, data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ZnodeDecodeError(f"{kind}: not JSON ({exc}): {data[:200]!r}") from None
    if not isinstance(value, dict):
        raise ZnodeDecodeError(f"{kind}: expected a JSON object, got {data[:200]!r}")
    return value


def _field(kind: str, obj: Mapping[str, Any], name: str, expected: type | tuple[type, ...]) -> Any:
    if name not in obj:
        raise ZnodeDecodeError(f"{kind}: missing field {name!r}")
    value = obj[name]
    if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
        raise ZnodeDecodeError(f"{kind}: field {name!r} has the wrong type: {value!r}")
    return value


def _int_list(kind: str, name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ZnodeDecodeError(f"{kind}: {name} must be a list of integers: {value!r}")
    return tuple(value)


def _timestamp(kind: str, obj: Mapping[str, Any]) -> int:
    """Kafka writes timestamps as strings of milliseconds; accept numbers as well."""
    raw = obj.get("timestamp", "0")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ZnodeDecodeError(f"{kind}: bad timestamp {raw!r}") from None


def _build(kind: str, build: type[_T], **kwargs: Any) -> _T:
    """Construct a value; a failed invariant in stored data becomes a ZnodeDecodeError."""
    try:
        return build(**kwargs)
    except ValueError as exc:
        raise ZnodeDecodeError(f"{kind}: {exc}") from None


def _partitions_json(partitions: Iterable[TopicPartition]) -> list[dict[str, Any]]:
    return [{"topic": tp.topic, "partition": tp.partition} for tp in partitions]


def _partitions_from_json(kind: str, data: bytes) -> tuple[TopicPartition, ...]:
    items = _field(kind, _loads(kind, data), "partitions", list)
    result: list[TopicPartition] = []
    for item in items:
        if not isinstance(item, dict):
            raise ZnodeDecodeError(f"{kind}: partition entry is not an object: {item!r}")
        topic = _field(kind, item, "topic", str)
        partition = _field(kind, item, "partition", int)
        result.append(TopicPartition(topic, partition))
    return tuple(result)


# ----------------------------------------------------------------------------------------------
# Top-level paths


class BrokersZNode:
    path: Final = "/brokers"


class BrokerIdsZNode:
    """Parent of the broker registrations; the controller watches its children."""

    path: Final = "/brokers/ids"


class TopicsZNode:
    """Parent of the topic assignments; the controller watches its children."""

    path: Final = "/brokers/topics"


class AdminZNode:
    path: Final = "/admin"


class DeleteTopicsZNode:
    """Parent of topic deletion requests; the controller watches its children."""

    path: Final = "/admin/delete_topics"


class TopicConfigsZNode:
    path: Final = "/config/topics"


class LogDirEventNotificationZNode:
    path: Final = "/log_dir_event_notification"


PERSISTENT_PATHS: Final = (
    BrokerIdsZNode.path,
    TopicsZNode.path,
    "/brokers/seqid",
    TopicConfigsZNode.path,
    "/config/brokers",
    "/config/clients",
    "/config/changes",
    DeleteTopicsZNode.path,
    "/isr_change_notification",
    LogDirEventNotificationZNode.path,
)
"""Persistent znodes every broker creates (idempotently) at start-up, as Kafka does."""


# ----------------------------------------------------------------------------------------------
# /cluster/id


class ClusterIdZNode:
    """``/cluster/id``: the cluster id, created once by the first broker to start."""

    path: Final = "/cluster/id"

    @staticmethod
    def encode(cluster_id: str) -> bytes:
        if not cluster_id:
            raise ValueError("cluster id must not be empty")
        return _dumps({"version": "1", "id": cluster_id})

    @staticmethod
    def decode(data: bytes) -> str:
        value: str = _field("cluster id", _loads("cluster id", data), "id", str)
        return value


# ----------------------------------------------------------------------------------------------
# /controller and /controller_epoch


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerRegistration:
    """Content of ``/controller``: which broker is the active controller, since when."""

    broker_id: int
    timestamp_ms: int

    def __post_init__(self) -> None:
        _check_int("broker_id", self.broker_id, 0)


class ControllerZNode:
    """``/controller`` (EPHEMERAL): the active controller. Every broker watches it."""

    path: Final = "/controller"

    @staticmethod
    def encode(reg: ControllerRegistration) -> bytes:
        return _dumps({"version": 1, "brokerid": reg.broker_id, "timestamp": str(reg.timestamp_ms)})

    @staticmethod
    def decode(data: bytes) -> ControllerRegistration:
        kind = "controller"
        obj = _loads(kind, data)
        broker_id = _field(kind, obj, "brokerid", int)
        return _build(
            kind, ControllerRegistration, broker_id=broker_id, timestamp_ms=_timestamp(kind, obj)
        )


class ControllerEpochZNode:
    """``/controller_epoch``: the controller epoch as decimal text (not JSON).

    Its znode *version* is the fencing token of the active controller's writes.
    """

    path: Final = "/controller_epoch"
    initial_epoch: Final = 0
    """Value written when the znode is created; the first elected controller has epoch 1."""

    @staticmethod
    def encode(epoch: int) -> bytes:
        _check_int("controller epoch", epoch, 0)
        return str(epoch).encode("ascii")

    @staticmethod
    def decode(data: bytes) -> int:
        text = data.decode("ascii", "replace").strip()
        if not text.isdigit():
            raise ZnodeDecodeError(f"controller epoch: not a decimal integer: {data[:50]!r}")
        return int(text)


# ----------------------------------------------------------------------------------------------
# /brokers/ids/<id>


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerRegistration:
    """Content of ``/brokers/ids/<id>``: how to reach a live broker.

    ``url`` is where clients and other brokers send HTTP requests; ``host`` and ``port`` are
    its parts (Kafka's fields); ``endpoints`` are Kafka-style ``LISTENER://host:port`` strings.
    ``broker_id`` is not stored in the JSON: it is the znode name (as in Kafka).
    """

    broker_id: int
    url: str
    host: str
    port: int
    rack: str | None = None
    endpoints: tuple[str, ...] = ()
    timestamp_ms: int = 0
    version: int = 4
    """Format version read from the znode (written as 4: Kafka's layout plus ``url``)."""

    def __post_init__(self) -> None:
        _check_int("broker_id", self.broker_id, 0)
        _check_int("port", self.port, 0)
        if not self.host:
            raise ValueError("host must not be empty")

    @classmethod
    def for_url(
        cls, broker_id: int, url: str, *, rack: str | None = None, timestamp_ms: int = 0
    ) -> BrokerRegistration:
        """A registration for a broker serving HTTP at ``url`` (``http://host:port``)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"broker url must be http(s)://host:port, not {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        listener = parts.scheme.upper()
        return cls(
            broker_id=broker_id,
            url=url.rstrip("/"),
            host=parts.hostname,
            port=port,
            rack=rack,
            endpoints=(f"{listener}://{parts.hostname}:{port}",),
            timestamp_ms=timestamp_ms,
        )


class BrokerIdZNode:
    """``/brokers/ids/<id>`` (EPHEMERAL): a live broker's registration.

    The znode's ``czxid`` is the broker epoch (KIP-380): a re-registration has a higher one.
    """

    @staticmethod
    def path(broker_id: int) -> str:
        _check_int("broker_id", broker_id, 0)
        return f"{BrokerIdsZNode.path}/{broker_id}"

    @staticmethod
    def encode(reg: BrokerRegistration) -> bytes:
        listeners = {e.partition("://")[0]: "PLAINTEXT" for e in reg.endpoints}
        return _dumps(
            {
                "version": 4,
                "host": reg.host,
                "port": reg.port,
                "jmx_port": -1,
                "timestamp": str(reg.timestamp_ms),
                "endpoints": list(reg.endpoints),
                "listener_security_protocol_map": listeners,
                "rack": reg.rack,
                "url": reg.url,
            }
        )

    @staticmethod
    def decode(broker_id: int, data: bytes) -> BrokerRegistration:
        kind = f"broker {broker_id} registration"
        obj = _loads(kind, data)
        host = _field(kind, obj, "host", str)
        port = _field(kind, obj, "port", int)
        endpoints = obj.get("endpoints") or []
        if not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints):
            raise ZnodeDecodeError(f"{kind}: endpoints must be a list of strings: {endpoints!r}")
        rack = obj.get("rack")
        if rack is not None and not isinstance(rack, str):
            raise ZnodeDecodeError(f"{kind}: rack must be a string or null: {rack!r}")
        url = obj.get("url")
        if not isinstance(url, str):
            url = f"http://{host}:{port}"
        return _build(
            kind,
            BrokerRegistration,
            broker_id=broker_id,
            url=url,
            host=host,
            port=port,
            rack=rack,
            endpoints=tuple(endpoints),
            timestamp_ms=_timestamp(kind, obj),
            version=_field(kind, obj, "version", int),
        )


# ----------------------------------------------------------------------------------------------
# /brokers/topics/<t> and partition state


def _frozen_replica_map(value: Mapping[int, Iterable[int]]) -> Mapping[int, tuple[int, ...]]:
    return MappingProxyType({int(p): tuple(r) for p, r in sorted(value.items())})


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicAssignment:
    """Content of ``/brokers/topics/<t>``: the replicas of every partition.

    Invariants: partitions are numbered 0..n-1 without gaps; every replica list is non-empty
    and without duplicates; ``adding_replicas`` / ``removing_replicas`` (reassignment in
    progress) name existing partitions. The mappings are read-only views.
    """

    partitions: Mapping[int, tuple[int, ...]]
    adding_replicas: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    removing_replicas: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    topic_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("partitions", "adding_replicas", "removing_replicas"):
            object.__setattr__(self, name, _frozen_replica_map(getattr(self, name)))
        if sorted(self.partitions) != list(range(len(self.partitions))):
            raise ValueError(f"partitions must be numbered 0..n-1: {sorted(self.partitions)}")
        for p, replicas in self.partitions.items():
            _check_replicas(f"replicas of partition {p}", replicas, allow_empty=False)
        for name in ("adding_replicas", "removing_replicas"):
            for p, replicas in getattr(self, name).items():
                if p not in self.partitions:
                    raise ValueError(f"{name} names unknown partition {p}")
                _check_replicas(f"{name} of partition {p}", replicas, allow_empty=True)

    @property
    def partition_count(self) -> int:
        return len(self.partitions)


class TopicZNode:
    """``/brokers/topics/<t>``: a topic's replica assignment (format version 2 + topic_id)."""

    @staticmethod
    def path(topic: str) -> str:
        return f"{TopicsZNode.path}/{check_topic_name(topic)}"

    @staticmethod
    def encode(assignment: TopicAssignment) -> bytes:
        def as_json(m: Mapping[int, tuple[int, ...]]) -> dict[str, list[int]]:
            return {str(p): list(r) for p, r in m.items()}

        obj: dict[str, Any] = {
            "version": 2,
            "partitions": as_json(assignment.partitions),
            "adding_replicas": as_json(assignment.adding_replicas),
            "removing_replicas": as_json(assignment.removing_replicas),
        }
        if assignment.topic_id is not None:
            obj["topic_id"] = assignment.topic_id
        return _dumps(obj)

    @staticmethod
    def decode(data: bytes) -> TopicAssignment:
        kind = "topic assignment"
        obj = _loads(kind, data)

        def replica_map(name: str, required: bool) -> dict[int, tuple[int, ...]]:
            raw = _field(kind, obj, name, dict) if required else obj.get(name) or {}
            if not isinstance(raw, dict):
                raise ZnodeDecodeError(f"{kind}: {name} must be an object")
            try:
                return {int(p): _int_list(kind, f"{name}[{p}]", r) for p, r in raw.items()}
            except ValueError:
                raise ZnodeDecodeError(f"{kind}: {name} has a non-integer partition") from None

        topic_id = obj.get("topic_id")
        if topic_id is not None and not isinstance(topic_id, str):
            raise ZnodeDecodeError(f"{kind}: topic_id must be a string: {topic_id!r}")
        return _build(
            kind,
            TopicAssignment,
            partitions=replica_map("partitions", True),
            adding_replicas=replica_map("adding_replicas", False),
            removing_replicas=replica_map("removing_replicas", False),
            topic_id=topic_id,
        )


class TopicPartitionsZNode:
    """``/brokers/topics/<t>/partitions``: parent of the per-partition znodes."""

    @staticmethod
    def path(topic: str) -> str:
        return f"{TopicZNode.path(topic)}/partitions"


class TopicPartitionZNode:
    """``/brokers/topics/<t>/partitions/<p>``: parent of the partition's ``state``."""

    @staticmethod
    def path(topic: str, partition: int) -> str:
        _check_int("partition", partition, 0)
        return f"{TopicPartitionsZNode.path(topic)}/{partition}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionState:
    """Content of ``.../partitions/<p>/state``: leader, leader epoch, ISR, deciding controller.

    Invariants: ``leader`` is a broker id or -1 (no leader); epochs are >= 0; the ISR has no
    duplicates. (That the ISR is never emptied and contains the leader is the controller's
    rule, not the codec's: a leaderless partition keeps its last ISR.)
    """

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    controller_epoch: int
    version: int = 1

    def __post_init__(self) -> None:
        _check_int("leader", self.leader, NO_LEADER)
        _check_int("leader_epoch", self.leader_epoch, 0)
        _check_int("controller_epoch", self.controller_epoch, 0)
        object.__setattr__(self, "isr", tuple(self.isr))
        _check_replicas("isr", self.isr, allow_empty=True)


class TopicPartitionStateZNode:
    """``/brokers/topics/<t>/partitions/<p>/state`` (PERSISTENT); writes are conditional on
    its znode version, and controller writes are also fenced by the controller epoch."""

    @staticmethod
    def path(topic: str, partition: int) -> str:
        return f"{TopicPartitionZNode.path(topic, partition)}/state"

    @staticmethod
    def encode(state: PartitionState) -> bytes:
        return _dumps(
            {
                "version": 1,
                "leader": state.leader,
                "leader_epoch": state.leader_epoch,
                "isr": list(state.isr),
                "controller_epoch": state.controller_epoch,
            }
        )

    @staticmethod
    def decode(data: bytes) -> PartitionState:
        kind = "partition state"
        obj = _loads(kind, data)
        return _build(
            kind,
            PartitionState,
            leader=_field(kind, obj, "leader", int),
            leader_epoch=_field(kind, obj, "leader_epoch", int),
            isr=_int_list(kind, "isr", _field(kind, obj, "isr", list)),
            controller_epoch=_field(kind, obj, "controller_epoch", int),
            version=_field(kind, obj, "version", int),
        )


# ----------------------------------------------------------------------------------------------
# Configs and notifications


class TopicConfigZNode:
    """``/config/topics/<t>``: a topic's config overrides, all values strings."""

    @staticmethod
    def path(topic: str) -> str:
        return f"{TopicConfigsZNode.path}/{check_topic_name(topic)}"

    @staticmethod
    def encode(config: Mapping[str, str]) -> bytes:
        for key, value in config.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(f"topic config entries must be strings: {key!r}={value!r}")
        return _dumps({"version": 1, "config": dict(config)})

    @staticmethod
    def decode(data: bytes) -> Mapping[str, str]:
        kind = "topic config"
        config = _field(kind, _loads(kind, data), "config", dict)
        if not all(isinstance(v, str) for v in config.values()):
            raise ZnodeDecodeError(f"{kind}: config values must be strings: {config!r}")
        return MappingProxyType(dict(config))


class ConfigChangeNotificationZNode:
    """``/config/changes/config_change_<seq>`` (PERSISTENT_SEQUENTIAL): "re-read this config"."""

    path: Final = "/config/changes"
    prefix: Final = "/config/changes/config_change_"
    """Create with ``sequential=True`` on this prefix; ZooKeeper appends the sequence number."""

    @staticmethod
    def encode_topic(topic: str) -> bytes:
        return _dumps({"version": 2, "entity_path": f"topics/{check_topic_name(topic)}"})

    @staticmethod
    def decode(data: bytes) -> str:
        """The entity path, e.g. ``topics/orders``."""
        kind = "config change notification"
        value: str = _field(kind, _loads(kind, data), "entity_path", str)
        return value


class DeleteTopicZNode:
    """``/admin/delete_topics/<t>``: a request to delete the topic (empty content)."""

    @staticmethod
    def path(topic: str) -> str:
        return f"{DeleteTopicsZNode.path}/{check_topic_name(topic)}"

    @staticmethod
    def encode() -> bytes:
        return b""


class PreferredReplicaElectionZNode:
    """``/admin/preferred_replica_election``: partitions to move back to their first replica."""

    path: Final = "/admin/preferred_replica_election"

    @staticmethod
    def encode(partitions: Iterable[TopicPartition]) -> bytes:
        return _dumps({"version": 1, "partitions": _partitions_json(partitions)})

    @staticmethod
    def decode(data: bytes) -> tuple[TopicPartition, ...]:
        return _partitions_from_json("preferred replica election", data)


class IsrChangeNotificationZNode:
    """``/isr_change_notification/isr_change_<seq>`` (PERSISTENT_SEQUENTIAL): partitions whose
    ISR a leader changed; the controller reads, refreshes and deletes these."""

    path: Final = "/isr_change_notification"
    prefix: Final = "/isr_change_notification/isr_change_"

    @staticmethod
    def encode(partitions: Iterable[TopicPartition]) -> bytes:
        return _dumps({"version": 1, "partitions": _partitions_json(partitions)})

    @staticmethod
    def decode(data: bytes) -> tuple[TopicPartition, ...]:
        return _partitions_from_json("ISR change notification", data)
