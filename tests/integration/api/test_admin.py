"""Topic administration through the v3 API and metadata through v2, against a real broker."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest

from kbroker.testing.brokers import (
    BrokerProcess,
    LocalCluster,
    http_json,
    topic_led_everywhere,
)
from tests.integration.http import JSON_V2, cluster_id, create_topic, fetch_all, produce, request

pytestmark = pytest.mark.integration


def _post(url: str, body: object) -> tuple[int, dict[str, object]]:
    status, _, payload = request(
        url, method="POST", body=orjson.dumps(body), headers={"Content-Type": "application/json"}
    )
    return status, orjson.loads(payload) if payload else {}


def test_topic_lifecycle(broker: BrokerProcess) -> None:
    url = broker.url
    cid = cluster_id(url)
    topics = f"{url}/v3/clusters/{cid}/topics"
    status, created = _post(
        topics,
        {
            "topic_name": "life",
            "partitions_count": 2,
            "configs": [{"name": "retention.ms", "value": "60000"}],
        },
    )
    assert status == 201, created
    assert created["kind"] == "KafkaTopic" and created["partitions_count"] == 2
    assert http_json(f"{url}/topics")[1] == ["life"]
    status, listing = http_json(topics)
    assert [t["topic_name"] for t in listing["data"]] == ["life"]
    status, config = http_json(f"{topics}/life/configs/retention.ms")
    assert config["value"] == "60000" and config["is_default"] is False
    status, _, _ = request(
        f"{topics}/life/configs/retention.ms",
        method="PUT",
        body=b'{"value": "120000"}',
        headers={"Content-Type": "application/json"},
    )
    assert status == 204
    assert http_json(f"{topics}/life/configs/retention.ms")[1]["value"] == "120000"
    status, _ = _post(
        f"{topics}/life/configs:alter",
        {
            "data": [
                {"name": "cleanup.policy", "value": "delete"},
                {"name": "retention.ms", "operation": "DELETE"},
            ]
        },
    )
    assert status == 204
    status, config = http_json(f"{topics}/life/configs/retention.ms")
    assert config["is_default"] is True and config["value"] == str(7 * 24 * 3600 * 1000)
    status, patched = http_json(f"{topics}/life", method="PATCH", body={"partitions_count": 4})
    assert status == 200 and patched["partitions_count"] == 4
    status, body = produce(url, "life", [{"value": 1}], partition=3)
    assert status == 200 and body["offsets"][0]["error_code"] is None
    status, _, _ = request(f"{topics}/life", method="DELETE")
    assert status == 204
    assert http_json(f"{url}/topics")[1] == []
    assert http_json(f"{url}/topics/life")[0] == 404
    # renamed <dir>.<uuid>-delete at once, removed by a worker thread (as Kafka's ".delete")
    assert not [p for p in broker.data_dir.glob("life-*") if not p.name.endswith("-delete")]
    _until(lambda: not list(broker.data_dir.glob("life-*")), 10, "log directories removed")


def test_recreated_topic_starts_empty(broker: BrokerProcess) -> None:
    create_topic(broker.url, "again")
    produce(broker.url, "again", [{"value": "old"}], partition=0)
    status, _, _ = request(
        f"{broker.url}/v3/clusters/{cluster_id(broker.url)}/topics/again", method="DELETE"
    )
    assert status == 204
    create_topic(broker.url, "again")
    produce(broker.url, "again", [{"value": "new"}], partition=0)
    assert [r["value"] for r in fetch_all(broker.url, "again", 0, 0, 1)] == ["new"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"topic_name": "a b"}, 422, 42220),
        ({"topic_name": "x" * 250}, 422, 42220),
        ({"topic_name": ".."}, 422, 42220),
        ({"topic_name": "__consumer_offsets"}, 422, 42220),
        ({"topic_name": "ok", "partitions_count": 0}, 422, 42221),
        ({"topic_name": "ok", "partitions_count": "3"}, 422, 42221),
        ({"topic_name": "ok", "replication_factor": 3}, 422, 42222),
        ({"topic_name": "ok", "configs": [{"name": "retention.ms", "value": "soon"}]}, 422, 42223),
        ({"topic_name": "ok", "configs": [{"name": "no.such.config", "value": "1"}]}, 422, 42223),
        (
            {"topic_name": "ok", "replicas_assignments": [{"partition_id": 0, "broker_ids": [9]}]},
            422,
            42222,
        ),
        ({"topic_name": "ok", "surprise": 1}, 422, 42206),
        ({"topic_name": 5}, 422, 42220),
    ],
)
def test_invalid_topic_creation(
    broker: BrokerProcess, body: dict[str, object], status: int, code: int
) -> None:
    got_status, got = _post(f"{broker.url}/v3/clusters/{cluster_id(broker.url)}/topics", body)
    assert (got_status, got["error_code"]) == (status, code), got
    assert http_json(f"{broker.url}/topics")[1] == []


def test_duplicate_and_colliding_topics(broker: BrokerProcess) -> None:
    url = f"{broker.url}/v3/clusters/{cluster_id(broker.url)}/topics"
    assert _post(url, {"topic_name": "dup.name"})[0] == 201
    status, body = _post(url, {"topic_name": "dup.name"})
    assert (status, body["error_code"]) == (409, 40904)
    status, body = _post(url, {"topic_name": "dup_name"})
    assert (status, body["error_code"]) == (422, 42220)
    status, body = _post(url, {"topic_name": "checked", "validate_only": True})
    assert status == 200 and http_json(f"{broker.url}/topics")[1] == ["dup.name"]


def test_partitions_count_only_grows(broker: BrokerProcess) -> None:
    create_topic(broker.url, "grow", partitions=3)
    url = f"{broker.url}/v3/clusters/{cluster_id(broker.url)}/topics/grow"
    status, body = http_json(url, method="PATCH", body={"partitions_count": 2})
    assert (status, body["error_code"]) == (422, 42221)


def test_a_topic_of_thousands_of_partitions_does_not_stall_the_broker(
    broker: BrokerProcess,
) -> None:
    """Setting up 2,000 new replicas takes seconds of file creation and fsyncs. Done in one
    go on the event loop, the liveness tick saw the loop stall and fenced the broker (5xx
    for every client meanwhile; found by the schemathesis run with 5,513 partitions). It is
    now done a step at a time: the broker never stalls, and the creation answers once every
    partition takes records."""
    status, payload = http_json(
        f"{broker.url}/admin/topics",
        method="POST",
        body={"topic_name": "wide", "partitions_count": 2000},
        timeout=120,
    )
    assert status == 201, payload
    # The creation answers once this broker has every replica: each partition takes records.
    for partition in (0, 1000, 1999):
        status, _, answer = request(
            f"{broker.url}/topics/wide/partitions/{partition}",
            method="POST",
            body=orjson.dumps({"records": [{"value": partition}]}),
            headers={"Content-Type": JSON_V2},
        )
        assert status == 200 and orjson.loads(answer)["offsets"][0]["error_code"] is None, answer
    assert not _stalls(broker.process.log_since_start())


def _stalls(log: str) -> list[str]:
    """The log's lines saying the broker's event loop stalled, or that it fenced itself."""
    return [line for line in log.splitlines() if "did not run for" in line or "FENCED" in line]


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.5)


def test_a_topic_of_thousands_of_partitions_on_a_cluster(cluster: LocalCluster) -> None:
    """3,000 partitions of RF 3: 9,000 replicas, 3,000 on each broker. The controller writes
    their states 200 to a ZooKeeper multi and the brokers read them pipelined; no broker's
    event loop stalls (its liveness tick would fence it). A broker killed hands its 1,000
    leaderships on; the topic is then deleted everywhere."""
    urls = cluster.urls
    status, payload = http_json(
        f"{urls[0]}/admin/topics",
        method="POST",
        body={"topic_name": "wide3", "partitions_count": 3000, "replication_factor": 3},
        timeout=120,
    )
    assert status == 201, payload
    _until(lambda: topic_led_everywhere(urls, "wide3", 3000), 120, "every partition led, ISR full")
    for broker in cluster.brokers:
        assert not _stalls(broker.process.log_since_start())
    victim = next(b for b in (1, 2, 3) if b != cluster.controller())
    cluster.broker(victim).kill()
    survivors = [u for i, u in enumerate(urls, 1) if i != victim]
    _until(
        lambda: topic_led_everywhere(survivors, "wide3", 3000, without=victim), 120, "leaders moved"
    )
    url = survivors[0]
    status, _ = http_json(
        f"{url}/v3/clusters/{cluster_id(url)}/topics/wide3", method="DELETE", timeout=120
    )
    assert status == 204
    _until(
        lambda: all(http_json(f"{u}/topics/wide3")[0] == 404 for u in survivors),
        120,
        "deleted on every live broker",
    )


def test_v3_resources(cluster: LocalCluster) -> None:
    url = cluster.urls[0]
    cid = cluster_id(url)
    _, clusters = http_json(f"{url}/v3/clusters")
    assert clusters["kind"] == "KafkaClusterList" and clusters["data"][0]["cluster_id"] == cid
    _, brokers = http_json(f"{url}/v3/clusters/{cid}/brokers")
    assert sorted(b["broker_id"] for b in brokers["data"]) == [1, 2, 3]
    controller = cluster.controller()
    assert controller in (1, 2, 3)
    _status, one = http_json(f"{url}/v3/clusters/{cid}/brokers/2")
    assert one["port"] == cluster.broker(2).port and one["host"] == "127.0.0.1"
    cluster.create_topic("v3t", partitions=2, replication_factor=3)
    _, replicas = http_json(f"{url}/v3/clusters/{cid}/topics/v3t/partitions/0/replicas")
    assert sorted(r["broker_id"] for r in replicas["data"]) == [1, 2, 3]
    assert sum(r["is_leader"] for r in replicas["data"]) == 1
    _, configs = http_json(f"{url}/v3/clusters/{cid}/topics/v3t/configs")
    assert {"retention.ms", "min.insync.replicas"} <= {c["name"] for c in configs["data"]}


def test_openapi_document_is_served(broker: BrokerProcess) -> None:
    status, spec = http_json(f"{broker.url}/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    fetch = spec["paths"]["/topics/{topic}/partitions/{partition}/records"]["get"]
    assert {"200", "404", "406", "416", "422"} <= set(fetch["responses"])


def _links(doc: object) -> list[str]:
    """Every ``metadata.self`` and ``{"related": url}`` URL in a v3 document."""
    found: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("self", "related") and isinstance(value, str):
                found.append(value)
            else:
                found += _links(value)
    elif isinstance(doc, list):
        for value in doc:
            found += _links(value)
    return found


def test_every_v3_link_answers(cluster: LocalCluster) -> None:
    """Follow every link from /v3/clusters (and a group's lags): each answers 200, except one
    partition's reassignment, which is 404 as in Confluent's proxy when none is in progress."""
    url = cluster.urls[0]
    cluster.create_topic("linked", partitions=2, replication_factor=3)
    produce(url, "linked", [{"value": i} for i in range(3)], partition=0)
    consumer = {"Content-Type": "application/vnd.kafka.v2+json"}
    base = f"{url}/consumers/linkers/instances/reader"
    for path, body in (
        (
            "/consumers/linkers",
            {"name": "reader", "format": "json", "auto.offset.reset": "earliest"},
        ),
        ("/consumers/linkers/instances/reader/subscription", {"topics": ["linked"]}),
    ):
        status, _, payload = request(
            url + path, method="POST", body=orjson.dumps(body), headers=consumer
        )
        assert status in (200, 204), payload
    for _ in range(20):  # the first reads join the group; then records arrive
        status, _, payload = request(base + "/records?timeout=1000", headers={"Accept": JSON_V2})
        assert status == 200, payload
        if orjson.loads(payload):
            break
    status, _, payload = request(base + "/offsets", method="POST", body=b"", headers=consumer)
    assert status == 200, payload
    seen: dict[str, int] = {}
    cid = cluster_id(url)
    # The lags collection is the one resource no link names (as in Confluent's v3).
    queue = [f"{url}/v3/clusters/{cid}/consumer-groups/linkers/lags", f"{url}/v3/clusters"]
    while queue and len(seen) < 400:
        link = queue.pop()
        if link in seen:
            continue
        status, _, payload = request(link)
        seen[link] = status
        doc = orjson.loads(payload)
        if status == 200:
            queue += _links(doc)
        elif link.endswith("/reassignment") and "/partitions/-/" not in link:
            assert (status, doc["error_code"]) == (404, 404), (link, doc)
    failed = {link: status for link, status in seen.items() if status not in (200, 404)}
    assert not failed
    missing = {
        link for link, status in seen.items() if status == 404 and not link.endswith("reassignment")
    }
    assert not missing
    followed = " ".join(seen)
    for resource in (
        "/brokers/2/configs",
        "/brokers/3/partition-replicas",
        "/partitions/1/replicas/2",
        "/broker-configs",
        "/acls",
        "/topics/-/partitions/-/reassignment",
        "/consumer-groups/linkers/consumers/",
        "/assignments/linked/partitions/1",
        "/consumer-groups/linkers/lags/linked/partitions/0",
    ):
        assert resource in followed, resource
    # A consumer links to its assignments (Confluent's shape), which list its partitions.
    groups = f"{url}/v3/clusters/{cid}/consumer-groups/linkers"
    _, consumers = http_json(f"{groups}/consumers")
    (member,) = consumers["data"]
    member_url = f"{groups}/consumers/{member['consumer_id']}"
    assert member["assignments"] == {"related": f"{member_url}/assignments"}
    _, assigned = http_json(member["assignments"]["related"])
    assert assigned["kind"] == "KafkaConsumerAssignmentList"
    assert [(a["topic_name"], a["partition_id"]) for a in assigned["data"]] == [
        ("linked", 0),
        ("linked", 1),
    ]
    one = assigned["data"][1]
    assert one["partition"]["related"].endswith(f"/v3/clusters/{cid}/topics/linked/partitions/1")
    assert (one["consumer_group_id"], one["consumer_id"]) == ("linkers", member["consumer_id"])
    status, again = http_json(one["metadata"]["self"])
    assert status == 200 and again == one
    for missing_url in (
        f"{member_url}/assignments/linked/partitions/7",
        f"{groups}/consumers/x/assignments",
    ):
        status, doc = http_json(missing_url)
        assert (status, doc["error_code"]) == (404, 404), (missing_url, doc)
    # Broker 2's settings come from broker 2 (forwarded), with a link to each.
    _, configs = http_json(f"{url}/v3/clusters/{cid}/brokers/2/configs")
    by_name = {c["name"]: c for c in configs["data"]}
    assert by_name["broker.id"]["value"] == "2" and by_name["broker.id"]["is_read_only"]
    assert by_name["listen"]["value"].endswith(f":{cluster.broker(2).port}")
    status, one = http_json(f"{url}/v3/clusters/{cid}/brokers/3/configs/message.max.bytes")
    assert status == 200 and one["broker_id"] == 3 and one["source"] == "DEFAULT_CONFIG"
    status, missing_config = http_json(f"{url}/v3/clusters/{cid}/brokers/3/configs/nope")
    assert (status, missing_config["error_code"]) == (404, 40408)
    status, replica = http_json(f"{url}/v3/clusters/{cid}/topics/linked/partitions/0/replicas/9")
    assert (status, replica["error_code"]) == (404, 404)
