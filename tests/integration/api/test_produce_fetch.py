"""Produce and stateless fetch over real HTTP against a real broker process."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from kbroker.testing.brokers import BrokerProcess, LocalCluster, http_json
from kclient.protocol import partition_for_key
from tests.integration.http import cluster_id, create_topic, fetch_all, produce, request

pytestmark = pytest.mark.integration

JSON_V2 = "application/vnd.kafka.json.v2+json"
BINARY_V2 = "application/vnd.kafka.binary.v2+json"


def test_json_records_round_trip_with_keys_headers_and_timestamps(broker: BrokerProcess) -> None:
    create_topic(broker.url, "orders", partitions=1)
    records: list[dict[str, Any]] = [
        {
            "key": "k1",
            "value": {"id": 1, "items": [1, 2]},
            "timestamp": 1_700_000_000_000,
            "headers": [{"key": "trace", "value": base64.b64encode(b"abc").decode()}],
        },
        {"value": "plain string"},
        {"key": None, "value": None},
    ]
    status, body = produce(broker.url, "orders", records, partition=0)
    assert status == 200
    assert [o["offset"] for o in body["offsets"]] == [0, 1, 2]
    assert all(o["error_code"] is None for o in body["offsets"])
    got = fetch_all(broker.url, "orders", 0, 0, 3)
    assert [r["offset"] for r in got] == [0, 1, 2]
    assert got[0]["key"] == "k1" and got[0]["value"] == {"id": 1, "items": [1, 2]}
    assert got[0]["timestamp"] == 1_700_000_000_000
    assert got[0]["headers"] == [{"key": "trace", "value": base64.b64encode(b"abc").decode()}]
    assert got[1]["value"] == "plain string" and got[1]["key"] is None
    assert got[1]["headers"] == []
    assert abs(got[1]["timestamp"] - time.time() * 1000) < 60_000
    assert got[2]["value"] is None


def test_binary_records_and_format_conversion(broker: BrokerProcess) -> None:
    create_topic(broker.url, "bin", partitions=1)
    raw = [b"\x00\xff binary", b'{"json": true}']
    records = [
        {"key": base64.b64encode(b'"k"').decode(), "value": base64.b64encode(v).decode()}
        for v in raw
    ]
    status, body = produce(broker.url, "bin", records, partition=0, content_type=BINARY_V2)
    assert status == 200, body
    got = fetch_all(broker.url, "bin", 0, 0, 2, accept=BINARY_V2)
    assert [base64.b64decode(r["value"]) for r in got] == raw
    # The second value is JSON: readable as JSON; the first is not, and says so.
    status, _, payload = request(
        f"{broker.url}/topics/bin/partitions/0/records?offset=1&timeout=0",
        headers={"Accept": JSON_V2},
    )
    assert status == 200 and orjson.loads(payload)[0]["value"] == {"json": True}
    status, _, payload = request(
        f"{broker.url}/topics/bin/partitions/0/records?offset=0&timeout=0",
        headers={"Accept": JSON_V2},
    )
    assert status == 422 and orjson.loads(payload)["error_code"] == 42203


def test_keyed_records_land_where_kafkas_partitioner_puts_them(broker: BrokerProcess) -> None:
    create_topic(broker.url, "keyed", partitions=7)
    keys = [f"user-{i}" for i in range(200)]
    status, body = produce(
        broker.url, "keyed", [{"key": k, "value": i} for i, k in enumerate(keys)]
    )
    assert status == 200
    for key, outcome in zip(keys, body["offsets"], strict=True):
        assert outcome["partition"] == partition_for_key(orjson.dumps(key), 7)
    binary_keys = [base64.b64encode(f"user-{i}".encode()).decode() for i in range(50)]
    status, body = produce(
        broker.url,
        "keyed",
        [{"key": k, "value": None} for k in binary_keys],
        content_type=BINARY_V2,
    )
    for key, outcome in zip(binary_keys, body["offsets"], strict=True):
        assert outcome["partition"] == partition_for_key(base64.b64decode(key), 7)


def test_keyless_records_spread_and_keep_order(broker: BrokerProcess) -> None:
    create_topic(broker.url, "spread", partitions=3)
    partitions = set()
    for i in range(6):
        status, body = produce(broker.url, "spread", [{"value": i * 10 + j} for j in range(5)])
        assert status == 200
        used = {o["partition"] for o in body["offsets"]}
        assert len(used) == 1  # one request's keyless records stay together
        partitions |= used
        offsets = [o["offset"] for o in body["offsets"]]
        assert offsets == list(range(offsets[0], offsets[0] + 5))
    assert partitions == {0, 1, 2}


def test_a_repeated_records_key_stores_readable_records(broker: BrokerProcess) -> None:
    # Regression: the broker stored the bytes between the first "[" and the last "]", which
    # spanned both arrays; every later read of the partition failed.
    create_topic(broker.url, "repeated")
    body = b'{"records":[{"value":"first"}],"records":[{"value":"a"},{"value":"b"}]}'
    status, _, answer = request(
        broker.url + "/topics/repeated/partitions/0",
        method="POST",
        body=body,
        headers={"Content-Type": JSON_V2},
    )
    assert status == 200, answer
    assert [o["offset"] for o in orjson.loads(answer)["offsets"]] == [0, 1]
    produce(broker.url, "repeated", [{"value": "after"}], partition=0)
    got = fetch_all(broker.url, "repeated", 0, 0, 3)
    assert [r["value"] for r in got] == ["a", "b", "after"]


def test_long_poll_answers_as_soon_as_data_arrives(broker: BrokerProcess) -> None:
    import threading

    create_topic(broker.url, "poll", partitions=1)
    result: dict[str, Any] = {}

    def reader() -> None:
        start = time.monotonic()
        result["status"], _, result["body"] = request(
            f"{broker.url}/topics/poll/partitions/0/records?offset=0&timeout=10000"
        )
        result["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.5)
    produce(broker.url, "poll", [{"value": "wake"}], partition=0)
    thread.join(15)
    assert result["status"] == 200
    assert orjson.loads(result["body"])[0]["value"] == "wake"
    assert 0.4 < result["elapsed"] < 5.0
    start = time.monotonic()
    status, _, payload = request(
        f"{broker.url}/topics/poll/partitions/0/records?offset=1&timeout=300"
    )
    assert status == 200 and orjson.loads(payload) == []
    assert time.monotonic() - start >= 0.25


def test_a_record_larger_than_max_bytes_comes_alone(broker: BrokerProcess) -> None:
    create_topic(broker.url, "big", partitions=1)
    produce(broker.url, "big", [{"value": "x" * 5000}, {"value": "y"}], partition=0)
    status, headers, payload = request(
        f"{broker.url}/topics/big/partitions/0/records?offset=0&max_bytes=100&timeout=0"
    )
    got = orjson.loads(payload)
    assert status == 200 and len(got) == 1 and got[0]["value"] == "x" * 5000
    assert headers["X-KBroker-Next-Offset"] == "1"
    status, _, payload = request(
        f"{broker.url}/topics/big/partitions/0/records?offset=1&max_bytes=100&timeout=0"
    )
    assert [r["value"] for r in orjson.loads(payload)] == ["y"]
    status, _, payload = request(
        f"{broker.url}/topics/big/partitions/0/records?offset=0&max_records=1&timeout=0"
    )
    assert len(orjson.loads(payload)) == 1


def test_offsets_and_timestamp_lookup(broker: BrokerProcess) -> None:
    create_topic(broker.url, "times", partitions=1)
    records = [{"value": i, "timestamp": 1_000_000 + i * 1000} for i in range(10)]
    produce(broker.url, "times", records, partition=0)
    status, body = http_json(f"{broker.url}/topics/times/partitions/0/offsets")
    assert status == 200 and body == {"beginning_offset": 0, "end_offset": 10}
    status, body = http_json(f"{broker.url}/topics/times/partitions/0/offsets?timestamp=1004500")
    assert body["offset"] == 5 and body["record_timestamp"] == 1_005_000
    status, body = http_json(f"{broker.url}/topics/times/partitions/0/offsets?timestamp=9999999")
    assert status == 200 and body["offset"] is None


def test_hundred_thousand_records_survive_kill_and_a_garbage_tail(
    broker: BrokerProcess,
) -> None:
    create_topic(broker.url, "durable", partitions=1)
    expected = []
    for batch in range(100):
        records = [
            {
                "key": f"k{batch}-{i}",
                "value": {"n": batch * 1000 + i, "pad": "v" * 60},
                "timestamp": 1_600_000_000_000 + batch * 1000 + i,
                "headers": [{"key": "h", "value": base64.b64encode(bytes([i % 256])).decode()}],
            }
            for i in range(1000)
        ]
        status, body = produce(broker.url, "durable", records, partition=0, acks="1")
        assert status == 200
        assert body["offsets"][0]["offset"] == batch * 1000
        expected.extend(records)
    _check_all(broker, expected)
    broker.kill()
    broker.start()
    _check_all(broker, expected)
    broker.kill()
    segment = sorted((broker.data_dir / "durable-0").glob("*.log"))[-1]
    with segment.open("ab") as fh:
        fh.write(b"\x00\x00\x00\x00\x00\x01\x86\xa0garbage that is not a batch" * 3)
    broker.start()
    _check_all(broker, expected)
    status, body = produce(broker.url, "durable", [{"value": "next"}], partition=0)
    assert body["offsets"][0]["offset"] == 100_000


def _check_all(broker: BrokerProcess, expected: list[dict[str, Any]]) -> None:
    got = fetch_all(broker.url, "durable", 0, 0, len(expected), max_bytes=8 << 20)
    assert [r["offset"] for r in got] == list(range(len(expected)))
    for want, have in zip(expected, got, strict=True):
        assert have["key"] == want["key"] and have["value"] == want["value"]
        assert have["timestamp"] == want["timestamp"] and have["headers"] == want["headers"]


def test_any_broker_accepts_produce_and_fetch(cluster: LocalCluster) -> None:
    cluster.create_topic("everywhere", partitions=3, replication_factor=3)
    for url in cluster.urls:
        for partition in range(3):
            status, body = produce(url, "everywhere", [{"value": url}], partition=partition)
            assert status == 200 and body["offsets"][0]["error_code"] is None, body
    for url in cluster.urls:
        for partition in range(3):
            got = fetch_all(url, "everywhere", partition, 0, 3)
            assert sorted(r["value"] for r in got) == sorted(cluster.urls)


def test_topic_metadata_shows_replication_state(cluster: LocalCluster) -> None:
    cluster.create_topic(
        "described", partitions=2, replication_factor=3, configs={"min.insync.replicas": "2"}
    )
    produce(cluster.urls[0], "described", [{"value": 1}], partition=1)
    status, topic = http_json(f"{cluster.urls[1]}/topics/described")
    assert status == 200 and topic["configs"]["min.insync.replicas"] == "2"
    part = topic["partitions"][1]
    assert sorted(part["isr"]) == [1, 2, 3] and part["leader"] in (1, 2, 3)
    assert part["high_watermark"] == 1 and part["log_end_offset"] == 1
    assert part["leader_epoch"] >= 0 and part["under_replicated"] is False
    cid = cluster_id(cluster.urls[2])
    status, v3 = http_json(f"{cluster.urls[2]}/v3/clusters/{cid}/topics/described/partitions/1")
    assert v3["high_watermark"] == 1 and sorted(v3["isr"]) == [1, 2, 3]
    assert v3["leader_id"] == part["leader"]


def test_data_files_are_where_the_docs_say(broker: BrokerProcess) -> None:
    create_topic(broker.url, "layout", partitions=1)
    produce(broker.url, "layout", [{"value": 1}], partition=0)
    names = {p.name for p in Path(broker.data_dir / "layout-0").iterdir()}
    assert "00000000000000000000.log" in names
    assert "00000000000000000000.index" in names
    assert "00000000000000000000.timeindex" in names


def test_a_trailing_slash_is_served_as_without_it(broker: BrokerProcess) -> None:
    """JAX-RS (Confluent's proxy) matches ``/topics/`` as ``/topics``, and clients written
    against it send such paths (pymapr-kafkarest's seek: ``POST .../positions/``)."""
    create_topic(broker.url, "slash")
    json_v2 = {"Content-Type": "application/vnd.kafka.json.v2+json"}
    v2 = {"Content-Type": "application/vnd.kafka.v2+json"}
    body = orjson.dumps({"records": [{"value": n} for n in range(3)]})
    status, _, payload = request(
        f"{broker.url}/topics/slash/", method="POST", body=body, headers=json_v2
    )
    assert status == 200, payload
    status, _, payload = request(f"{broker.url}/topics/")
    assert status == 200 and "slash" in orjson.loads(payload), payload
    status, _, payload = request(f"{broker.url}/v3/clusters//")
    assert status == 200 and orjson.loads(payload)["kind"] == "KafkaClusterList", payload
    # The query string is kept.
    status, _, payload = request(f"{broker.url}/topics/slash/partitions/0/records/?offset=1")
    assert status == 200 and [r["value"] for r in orjson.loads(payload)] == [1, 2], payload
    join = orjson.dumps({"name": "s1", "format": "json", "auto.offset.reset": "earliest"})
    status, _, payload = request(
        f"{broker.url}/consumers/slashers/", method="POST", body=join, headers=v2
    )
    assert status == 200, payload
    base = orjson.loads(payload)["base_uri"]
    assign = orjson.dumps({"partitions": [{"topic": "slash", "partition": 0}]})
    status, _, payload = request(f"{base}/assignments/", method="POST", body=assign, headers=v2)
    assert status == 204, payload
    seek = orjson.dumps({"offsets": [{"topic": "slash", "partition": 0, "offset": 2}]})
    status, _, payload = request(f"{base}/positions/", method="POST", body=seek, headers=v2)
    assert status == 204, payload
    status, _, payload = request(f"{base}/records/", headers={"Accept": "application/json"})
    assert status == 200 and [r["value"] for r in orjson.loads(payload)] == [2], payload
    status, _, _ = request(f"{base}/", method="DELETE", headers=v2)
    assert status == 204
    # What has no route without the slash either is still 404; another method's route is 405.
    status, _, payload = request(f"{broker.url}/nothing/here/")
    assert status == 404 and orjson.loads(payload)["error_code"] == 404, payload
    status, headers, payload = request(f"{broker.url}/topics/", method="DELETE")
    assert status == 405 and "GET" in headers["Allow"], (headers, payload)
    doc = orjson.loads(payload)
    assert doc["error_code"] == 405 and "DELETE is not served here" in doc["message"], doc
    assert "GET" in doc["message"].rsplit("allowed:", 1)[1], doc
