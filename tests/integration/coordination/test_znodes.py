"""Znode codecs: Kafka 2.x layouts, round trips, tolerant decoding, clear decode errors.

Pure (no ZooKeeper needed); kept next to the coordination tests that use the codecs.
"""

from __future__ import annotations

import orjson
import pytest

from kbroker.coordination import ZnodeDecodeError
from kbroker.coordination.znodes import (
    BrokerIdZNode,
    BrokerRegistration,
    ClusterIdZNode,
    ConfigChangeNotificationZNode,
    ControllerEpochZNode,
    ControllerRegistration,
    ControllerZNode,
    DeleteTopicZNode,
    IsrChangeNotificationZNode,
    PartitionState,
    PreferredReplicaElectionZNode,
    TopicAssignment,
    TopicConfigZNode,
    TopicPartition,
    TopicPartitionStateZNode,
    TopicZNode,
    new_base64_uuid,
)


def test_broker_registration_round_trip_and_layout() -> None:
    reg = BrokerRegistration.for_url(3, "http://10.0.0.3:8083/", rack="az1", timestamp_ms=42)
    assert (reg.host, reg.port, reg.url, reg.endpoints) == (
        "10.0.0.3",
        8083,
        "http://10.0.0.3:8083",
        ("HTTP://10.0.0.3:8083",),
    )
    data = BrokerIdZNode.encode(reg)
    obj = orjson.loads(data)
    assert obj["version"] == 4 and obj["timestamp"] == "42" and obj["jmx_port"] == -1
    assert obj["listener_security_protocol_map"] == {"HTTP": "PLAINTEXT"}
    assert BrokerIdZNode.decode(3, data) == reg
    assert BrokerIdZNode.path(3) == "/brokers/ids/3"


def test_broker_registration_decode_tolerates_kafka_and_unknown_fields() -> None:
    kafka_v1 = b'{"version":1,"host":"h","port":9092,"jmx_port":-1,"timestamp":"7","x":[1]}'
    reg = BrokerIdZNode.decode(1, kafka_v1)
    assert reg.url == "http://h:9092" and reg.timestamp_ms == 7 and reg.rack is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "JSON object"),
        (b'{"version":4,"port":1}', "missing field 'host'"),
        (b'{"version":4,"host":"h","port":"1"}', "'port' has the wrong type"),
        (b'{"version":4,"host":"h","port":true}', "'port' has the wrong type"),
        (b'{"version":4,"host":"h","port":-1}', "port must be"),
    ],
)
def test_broker_registration_decode_errors(data: bytes, problem: str) -> None:
    with pytest.raises(ZnodeDecodeError, match="broker 1 registration") as info:
        BrokerIdZNode.decode(1, data)
    assert problem in str(info.value)


def test_controller_and_epoch() -> None:
    data = ControllerZNode.encode(ControllerRegistration(broker_id=2, timestamp_ms=99))
    assert orjson.loads(data) == {"version": 1, "brokerid": 2, "timestamp": "99"}
    assert ControllerZNode.decode(data) == ControllerRegistration(broker_id=2, timestamp_ms=99)
    assert ControllerEpochZNode.encode(12) == b"12"
    assert ControllerEpochZNode.decode(b"12") == 12
    with pytest.raises(ZnodeDecodeError, match="controller epoch"):
        ControllerEpochZNode.decode(b"-1")


def test_cluster_id() -> None:
    cluster_id = new_base64_uuid()
    assert len(cluster_id) == 22 and "=" not in cluster_id
    data = ClusterIdZNode.encode(cluster_id)
    assert orjson.loads(data) == {"version": "1", "id": cluster_id}
    assert ClusterIdZNode.decode(data) == cluster_id


def test_topic_assignment() -> None:
    assignment = TopicAssignment(partitions={1: (2, 3), 0: (1, 2)}, topic_id="abc")
    data = TopicZNode.encode(assignment)
    assert orjson.loads(data) == {
        "version": 2,
        "partitions": {"0": [1, 2], "1": [2, 3]},
        "adding_replicas": {},
        "removing_replicas": {},
        "topic_id": "abc",
    }
    decoded = TopicZNode.decode(data)
    assert decoded == assignment and decoded.partition_count == 2
    with pytest.raises(TypeError):
        decoded.partitions[2] = (1,)  # type: ignore[index]
    assert TopicZNode.path("orders") == "/brokers/topics/orders"


@pytest.mark.parametrize(
    "partitions",
    [{1: (1,)}, {0: ()}, {0: (1, 1)}, {0: (-1,)}],
)
def test_topic_assignment_invariants(partitions: dict[int, tuple[int, ...]]) -> None:
    with pytest.raises(ValueError, match=r"partition|replicas|must"):
        TopicAssignment(partitions=partitions)
    data = orjson.dumps(
        {"version": 2, "partitions": {str(p): list(r) for p, r in partitions.items()}}
    )
    with pytest.raises(ZnodeDecodeError, match="topic assignment"):
        TopicZNode.decode(data)


def test_partition_state() -> None:
    state = PartitionState(leader=1, leader_epoch=4, isr=(1, 2), controller_epoch=3)
    data = TopicPartitionStateZNode.encode(state)
    assert orjson.loads(data) == {
        "version": 1,
        "leader": 1,
        "leader_epoch": 4,
        "isr": [1, 2],
        "controller_epoch": 3,
    }
    assert TopicPartitionStateZNode.decode(data) == state
    assert TopicPartitionStateZNode.path("t", 0) == "/brokers/topics/t/partitions/0/state"
    assert PartitionState(leader=-1, leader_epoch=5, isr=(2,), controller_epoch=1).leader == -1
    with pytest.raises(ValueError, match="duplicates"):
        PartitionState(leader=1, leader_epoch=0, isr=(1, 1), controller_epoch=0)
    with pytest.raises(ZnodeDecodeError, match="isr"):
        TopicPartitionStateZNode.decode(
            b'{"version":1,"leader":1,"leader_epoch":0,"isr":"1","controller_epoch":0}'
        )


def test_configs_and_notifications() -> None:
    data = TopicConfigZNode.encode({"retention.ms": "1000"})
    assert orjson.loads(data) == {"version": 1, "config": {"retention.ms": "1000"}}
    assert TopicConfigZNode.decode(data) == {"retention.ms": "1000"}
    with pytest.raises(ValueError, match="strings"):
        TopicConfigZNode.encode({"retention.ms": 1000})  # type: ignore[dict-item]
    change = ConfigChangeNotificationZNode.encode_topic("t")
    assert orjson.loads(change) == {"version": 2, "entity_path": "topics/t"}
    assert ConfigChangeNotificationZNode.decode(change) == "topics/t"
    tps = (TopicPartition("a", 0), TopicPartition("b", 3))
    for codec in (IsrChangeNotificationZNode, PreferredReplicaElectionZNode):
        encoded = codec.encode(tps)
        assert orjson.loads(encoded)["version"] == 1
        assert codec.decode(encoded) == tps
    assert DeleteTopicZNode.path("t") == "/admin/delete_topics/t"
    assert IsrChangeNotificationZNode.prefix == "/isr_change_notification/isr_change_"


@pytest.mark.parametrize("topic", ["", ".", "..", "a/b", "a b", "x" * 250])
def test_illegal_topic_names_never_reach_a_path(topic: str) -> None:
    with pytest.raises(ValueError, match="illegal topic name"):
        TopicZNode.path(topic)
