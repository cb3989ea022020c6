"""Idempotent produce against real brokers: duplicates, gaps, epochs, restarts, failover."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from kbroker.testing.brokers import BrokerProcess, LocalCluster, http_json
from tests.integration.http import JSON_V2, create_topic, fetch_all, request

pytestmark = pytest.mark.integration


def _send(
    url: str, topic: str, values: list[Any], *, pid: int, epoch: int, seq: int, partition: int = 0
) -> tuple[int, Any]:
    status, _, payload = request(
        f"{url}/topics/{topic}/partitions/{partition}",
        method="POST",
        body=orjson.dumps({"records": [{"value": v} for v in values]}),
        headers={
            "Content-Type": JSON_V2,
            "X-KBroker-Producer-Id": str(pid),
            "X-KBroker-Producer-Epoch": str(epoch),
            "X-KBroker-Sequence": str(seq),
        },
    )
    return status, orjson.loads(payload)


def _offsets(body: Any) -> list[Any]:
    return [(o["offset"], o["error_code"]) for o in body["offsets"]]


def _producer(url: str) -> int:
    status, body = http_json(f"{url}/producers", method="POST", body={})
    assert status == 200 and body["producer_epoch"] == 0
    return int(body["producer_id"])


def test_duplicates_gaps_and_epochs(broker: BrokerProcess) -> None:
    url = broker.url
    create_topic(url, "idem")
    pid = _producer(url)
    assert _producer(url) != pid
    assert _offsets(_send(url, "idem", [1, 2, 3], pid=pid, epoch=0, seq=0)[1]) == [
        (0, None),
        (1, None),
        (2, None),
    ]
    # the same request again: original offsets, nothing written
    assert _offsets(_send(url, "idem", [1, 2, 3], pid=pid, epoch=0, seq=0)[1]) == [
        (0, None),
        (1, None),
        (2, None),
    ]
    assert _offsets(_send(url, "idem", [4], pid=pid, epoch=0, seq=3)[1]) == [(3, None)]
    status, body = _send(url, "idem", [9], pid=pid, epoch=0, seq=7)
    assert status == 200 and body["offsets"][0]["error_code"] == 40920
    status, bumped = http_json(
        f"{url}/producers", method="POST", body={"producer_id": pid, "producer_epoch": 0}
    )
    assert bumped == {"producer_id": pid, "producer_epoch": 1}
    assert _offsets(_send(url, "idem", [5], pid=pid, epoch=1, seq=0)[1]) == [(4, None)]
    status, body = _send(url, "idem", [6], pid=pid, epoch=0, seq=4)
    assert body["offsets"][0]["error_code"] == 40921
    assert [r["value"] for r in fetch_all(url, "idem", 0, 0, 5)] == [1, 2, 3, 4, 5]
    status, body = _send(url, "idem", [1], pid=pid, epoch=0, seq=0, partition=0)
    assert body["offsets"][0]["error_code"] == 40921
    status, _, _ = request(
        f"{url}/topics/idem",
        method="POST",
        body=b'{"records":[{"value":1}]}',
        headers={
            "Content-Type": JSON_V2,
            "X-KBroker-Producer-Id": "1",
            "X-KBroker-Producer-Epoch": "0",
            "X-KBroker-Sequence": "0",
        },
    )
    assert status == 422


def test_duplicates_are_detected_after_kill_and_restart(broker: BrokerProcess) -> None:
    url = broker.url
    create_topic(url, "survive")
    pid = _producer(url)
    for seq in range(0, 20, 2):
        assert _send(url, "survive", [seq, seq + 1], pid=pid, epoch=0, seq=seq)[0] == 200
    broker.kill()
    broker.start()
    _, body = _send(url, "survive", [18, 19], pid=pid, epoch=0, seq=18)
    assert _offsets(body) == [(18, None), (19, None)]
    assert _offsets(_send(url, "survive", [20], pid=pid, epoch=0, seq=20)[1]) == [(20, None)]
    assert len(fetch_all(url, "survive", 0, 0, 21)) == 21


def test_duplicates_are_detected_by_a_new_leader(cluster: LocalCluster) -> None:
    cluster.create_topic(
        "moved", partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"}
    )
    url = cluster.urls[0]
    pid = _producer(url)
    for seq in range(5):
        assert _send(url, "moved", [seq], pid=pid, epoch=0, seq=seq)[0] == 200
    leader = cluster.leader_of("moved", 0)
    assert leader is not None
    cluster.broker(leader).kill()
    other = next(b.url for b in cluster.brokers if b.broker_id != leader)
    deadline = time.monotonic() + 30
    while True:
        status, body = _send(other, "moved", [4], pid=pid, epoch=0, seq=4)
        if status == 200 and body["offsets"][0]["error_code"] is None:
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.3)
    assert _offsets(body) == [(4, None)]
    assert [r["value"] for r in fetch_all(other, "moved", 0, 0, 5)] == [0, 1, 2, 3, 4]
    cluster.broker(leader).start()
