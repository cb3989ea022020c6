"""REST Proxy v1 calls, as older clients send them, against a real broker process.

Requests are built the way Confluent's Node.js ``kafka-rest`` client and the Python
``kafka-rest-client`` consumer send them (media types, Accept lists, empty commit bodies);
the Node.js client itself runs in tests/integration/api/test_third_party_clients.py.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import pytest

from kbroker.testing.brokers import BrokerProcess
from tests.integration.http import create_topic, request

pytestmark = pytest.mark.integration

V1 = "application/vnd.kafka.v1+json"
BINARY_V1 = "application/vnd.kafka.binary.v1+json"
JSON_V1 = "application/vnd.kafka.json.v1+json"
#: What the Node.js client sends as Accept on every call.
NODE_ACCEPT = f"{V1}, application/vnd.kafka+json; q=0.9, application/json; q=0.8"


def _call(
    url: str,
    method: str = "GET",
    body: Any = None,
    *,
    content_type: str = V1,
    accept: str = NODE_ACCEPT,
) -> tuple[int, dict[str, str], Any]:
    status, headers, payload = request(
        url,
        method=method,
        body=None if body is None else orjson.dumps(body),
        headers={"Content-Type": content_type, "Accept": accept},
    )
    return status, headers, orjson.loads(payload) if payload else None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_v1_produce_types_and_messages_read(broker: BrokerProcess) -> None:
    create_topic(broker.url, "v1t", partitions=1)
    topic = f"{broker.url}/topics/v1t"
    # Binary, named and generic (the bare v1 type meant binary), then JSON.
    for media, value in ((BINARY_V1, _b64("a")), (V1, _b64("b")), (JSON_V1, {"c": 1})):
        status, _, body = _call(topic, "POST", {"records": [{"value": value}]}, content_type=media)
        assert status == 200, body
        assert body["offsets"][0]["error_code"] is None
    status, _, body = _call(
        f"{topic}/partitions/0", "POST", {"records": [{"value": _b64("d")}]}, content_type=V1
    )
    assert status == 200 and body["offsets"][0]["offset"] == 3, body

    messages = f"{topic}/partitions/0/messages"
    status, headers, got = _call(messages + "?offset=0")  # count defaults to 1; binary
    assert status == 200, got
    assert headers["Content-Type"].startswith(BINARY_V1)
    assert [(r["offset"], r["value"]) for r in got] == [(0, _b64("a"))]
    status, _, got = _call(messages + "?offset=0&count=2", accept=BINARY_V1)
    assert [base64.b64decode(r["value"]) for r in got] == [b"a", b"b"]
    assert all(r["partition"] == 0 and r["key"] is None for r in got)
    status, headers, got = _call(messages + "?offset=2", accept=JSON_V1)
    assert status == 200 and headers["Content-Type"].startswith(JSON_V1)
    assert [(r["offset"], r["value"]) for r in got] == [(2, {"c": 1})]
    status, _, got = _call(messages + "?offset=3&count=10")  # fewer than count: no wait
    assert status == 200 and [base64.b64decode(r["value"]) for r in got] == [b"d"]


def test_v1_messages_read_errors(broker: BrokerProcess) -> None:
    create_topic(broker.url, "v1e", partitions=1)
    base = f"{broker.url}/topics/v1e/partitions/0/messages"
    for query, status, code in (
        ("", 422, 42224),  # offset is required
        ("?offset=-1", 422, 42224),
        ("?offset=0&count=0", 422, 42210),
        ("?offset=0&count=x", 422, 42210),
        ("?offset=5", 416, 41601),
    ):
        got_status, _, body = _call(base + query)
        assert (got_status, body["error_code"]) == (status, code), (query, body)
        assert body["message"], body
    status, _, body = _call(base + "?offset=0")  # at the log end: nothing, at once
    assert status == 200 and body == []
    status, _, body = _call(f"{broker.url}/topics/nope/partitions/0/messages?offset=0")
    assert status == 404 and body["error_code"] == 40401, body
    status, _, body = _call(base + "?offset=0", accept="application/vnd.kafka.avro.v1+json")
    assert status == 406, body


def _read_until(url: str, count: int, accept: str, deadline_s: float = 30) -> list[Any]:
    records: list[Any] = []
    deadline = time.monotonic() + deadline_s
    while len(records) < count:
        assert time.monotonic() < deadline, records
        status, _, got = _call(url, accept=accept)
        assert status == 200, got
        records.extend(got)
    return records


def test_v1_consumer_reads_by_topic_commits_and_resumes(broker: BrokerProcess) -> None:
    create_topic(broker.url, "v1c", partitions=2)
    create_topic(broker.url, "v1other", partitions=1)
    for p in range(2):
        records = [{"value": _b64(f"{p}-{i}")} for i in range(3)]
        _call(f"{broker.url}/topics/v1c/partitions/{p}", "POST", {"records": records})
    _call(f"{broker.url}/topics/v1other", "POST", {"records": [{"value": _b64("x")}]})

    # As the Node.js client joins: a v1 body with v1 names and string booleans.
    join = {"format": "binary", "auto.offset.reset": "smallest", "auto.commit.enable": "false"}
    status, _, instance = _call(f"{broker.url}/consumers/v1g", "POST", join)
    assert status == 200 and instance["instance_id"], instance
    base = instance["base_uri"]

    got = _read_until(f"{base}/topics/v1c", 6, BINARY_V1)
    assert sorted(base64.b64decode(r["value"]).decode() for r in got) == sorted(
        f"{p}-{i}" for p in range(2) for i in range(3)
    )
    assert {r["topic"] for r in got} == {"v1c"}
    # A second topic joins the subscription; the first topic's positions do not move.
    other = _read_until(f"{base}/topics/v1other", 1, BINARY_V1)
    assert [base64.b64decode(r["value"]) for r in other] == [b"x"]

    # The v1 commit: no body; the answer lists what was committed.
    status, headers, committed = _call(f"{base}/offsets", "POST")
    assert status == 200 and headers["Content-Type"].startswith(V1), committed
    assert sorted((c["topic"], c["partition"], c["committed"]) for c in committed) == [
        ("v1c", 0, 3),
        ("v1c", 1, 3),
        ("v1other", 0, 1),
    ]
    assert all(c["consumed"] == c["committed"] for c in committed)
    status, _, _ = _call(base, "DELETE")
    assert status == 204

    # A new instance of the group resumes after the commits: one new record only.
    _call(f"{broker.url}/topics/v1c/partitions/1", "POST", {"records": [{"value": _b64("new")}]})
    status, _, again = _call(f"{broker.url}/consumers/v1g", "POST", {"format": "binary"})
    assert status == 200, again
    got = _read_until(f"{again['base_uri']}/topics/v1c", 1, BINARY_V1)
    assert [(r["partition"], r["offset"]) for r in got] == [(1, 3)]
    time.sleep(0.5)
    status, _, more = _call(f"{again['base_uri']}/topics/v1c?timeout=200", accept=BINARY_V1)
    assert status == 200 and more == []
    _call(again["base_uri"], "DELETE")


def test_consumer_max_bytes_never_consumes_a_record_it_does_not_return(
    broker: BrokerProcess,
) -> None:
    """Confluent's rule, which v1 heartbeat clients rely on (``max_bytes=1``, answer thrown
    away): a record that would bring the answer to max_bytes is neither returned nor consumed,
    in v1's topic read and in v2's records read alike."""
    create_topic(broker.url, "hb", partitions=1)
    values = [_b64("x" * 10), _b64("y" * 10), _b64("z" * 10)]  # 10 bytes each
    _call(f"{broker.url}/topics/hb", "POST", {"records": [{"value": v} for v in values]})
    join = {"format": "binary", "auto.offset.reset": "smallest", "auto.commit.enable": "false"}
    status, _, v1 = _call(f"{broker.url}/consumers/hb1", "POST", join)
    assert status == 200, v1
    for _ in range(3):  # heartbeats
        status, _, got = _call(f"{v1['base_uri']}/topics/hb?max_bytes=1", accept=BINARY_V1)
        assert (status, got) == (200, []), got
    deadline = time.monotonic() + 30
    while True:  # the first read subscribed the instance; its assignment may take a moment
        status, _, got = _call(f"{v1['base_uri']}/topics/hb?max_bytes=21", accept=BINARY_V1)
        assert status == 200, got
        if got:
            break
        assert time.monotonic() < deadline, "no record within 30 s"
    assert [r["offset"] for r in got] == [0, 1], got  # 20 bytes; a third would reach 21
    got = _read_until(f"{v1['base_uri']}/topics/hb", 1, BINARY_V1)
    assert [r["offset"] for r in got] == [2]
    _call(v1["base_uri"], "DELETE")

    v2_type = "application/vnd.kafka.v2+json"
    binary_v2 = "application/vnd.kafka.binary.v2+json"
    join = {"format": "binary", "auto.offset.reset": "earliest"}
    status, _, v2 = _call(f"{broker.url}/consumers/hb2", "POST", join, content_type=v2_type)
    assert status == 200, v2
    status, _, _ = _call(
        f"{v2['base_uri']}/subscription", "POST", {"topics": ["hb"]}, content_type=v2_type
    )
    assert status == 204
    deadline = time.monotonic() + 30
    while True:  # until the subscription is assigned: then max_bytes alone keeps records back
        status, _, got = _call(
            f"{v2['base_uri']}/records?max_bytes=20&timeout=500", accept=binary_v2
        )
        assert status == 200 and len(got) <= 1, got
        if got:
            break
        assert time.monotonic() < deadline, "no record within 30 s"
    assert [r["offset"] for r in got] == [0]  # 10 bytes; a second would reach 20
    status, _, got = _call(f"{v2['base_uri']}/records?max_bytes=1", accept=binary_v2)
    assert (status, got) == (200, []), got
    status, _, got = _call(f"{v2['base_uri']}/records?max_bytes=1000", accept=binary_v2)
    assert status == 200 and [r["offset"] for r in got] == [1, 2], got
    _call(v2["base_uri"], "DELETE", content_type=v2_type)


def test_v1_consumer_errors(broker: BrokerProcess) -> None:
    create_topic(broker.url, "v1x", partitions=1)
    status, _, instance = _call(f"{broker.url}/consumers/v1x", "POST", {"format": "json"})
    assert status == 200
    base = instance["base_uri"]
    status, _, body = _call(f"{base}/topics/missing")
    assert status == 404 and body["error_code"] == 40401, body
    status, _, body = _call(f"{base}/topics/v1x", accept=BINARY_V1)  # a json consumer
    assert status == 406 and body["error_code"] == 40601, body
    status, _, body = _call(f"{broker.url}/consumers/v1x/instances/nobody/topics/v1x")
    assert status == 404 and body["error_code"] == 40403, body
    status, _, _ = _call(base, "DELETE")
    assert status == 204
