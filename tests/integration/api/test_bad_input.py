"""Every class of malformed request gets its 4xx and a Confluent-style body, never a 500, and
nothing already stored is harmed."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import orjson
import pytest

from kbroker.testing.brokers import BrokerProcess
from tests.integration.http import (
    JSON_V2,
    cluster_id,
    create_topic,
    fetch_all,
    produce,
    request,
)

pytestmark = pytest.mark.integration

BINARY_V2 = "application/vnd.kafka.binary.v2+json"

# (name, method, path, body, headers, status, error_code)
CASES: list[tuple[str, str, str, bytes | None, dict[str, str], int, int]] = [
    ("malformed json", "POST", "/topics/t/partitions/0", b'{"records": [', {}, 400, 400),
    (
        "invalid utf-8",
        "POST",
        "/topics/t/partitions/0",
        b'{"records":[{"value":"\xff\xfe"}]}',
        {},
        400,
        400,
    ),
    (
        "deep nesting",
        "POST",
        "/topics/t/partitions/0",
        b'{"records":[{"value":' + b"[" * 5000 + b"]" * 5000 + b"}]}",
        {},
        400,
        400,
    ),
    ("empty body", "POST", "/topics/t/partitions/0", b"", {}, 400, 400),
    ("body not an object", "POST", "/topics/t", b"[1,2]", {}, 422, 42206),
    ("records not an array", "POST", "/topics/t", b'{"records": {"value": 1}}', {}, 422, 42206),
    ("record not an object", "POST", "/topics/t", b'{"records": [1]}', {}, 422, 42206),
    ("unknown record field", "POST", "/topics/t", b'{"records": [{"valu": 1}]}', {}, 422, 42206),
    ("unknown envelope field", "POST", "/topics/t", b'{"records": [], "x": 1}', {}, 422, 42206),
    (
        "schema id",
        "POST",
        "/topics/t",
        b'{"value_schema_id": 3, "records": [{"value": 1}]}',
        {},
        422,
        42206,
    ),
    (
        "partition as string",
        "POST",
        "/topics/t",
        b'{"records": [{"value": 1, "partition": "0"}]}',
        {},
        422,
        42206,
    ),
    (
        "negative partition",
        "POST",
        "/topics/t",
        b'{"records": [{"value": 1, "partition": -1}]}',
        {},
        422,
        42206,
    ),
    (
        "partition out of range",
        "POST",
        "/topics/t",
        b'{"records": [{"value": 1, "partition": 7}]}',
        {},
        404,
        40402,
    ),
    (
        "timestamp as bool",
        "POST",
        "/topics/t",
        b'{"records": [{"value": 1, "timestamp": true}]}',
        {},
        422,
        42206,
    ),
    (
        "timestamp too large",
        "POST",
        "/topics/t",
        b'{"records": [{"value": 1, "timestamp": 99999999999999999}]}',
        {},
        422,
        42206,
    ),
    (
        "headers not a list",
        "POST",
        "/topics/t",
        b'{"records": [{"value": 1, "headers": {}}]}',
        {},
        422,
        42206,
    ),
    (
        "header value not base64",
        "POST",
        "/topics/t",
        b'{"records": [{"value": 1, "headers": [{"key": "a", "value": "!!"}]}]}',
        {},
        422,
        42203,
    ),
    (
        "binary value not a string",
        "POST",
        "/topics/t",
        b'{"records": [{"value": 12}]}',
        {"Content-Type": BINARY_V2},
        422,
        42203,
    ),
    (
        "binary value bad base64",
        "POST",
        "/topics/t",
        b'{"records": [{"value": "abc$"}]}',
        {"Content-Type": BINARY_V2},
        422,
        42203,
    ),
    (
        "binary value bad padding",
        "POST",
        "/topics/t",
        b'{"records": [{"value": "QQ=Q"}]}',
        {"Content-Type": BINARY_V2},
        422,
        42203,
    ),
    (
        "unsupported content type",
        "POST",
        "/topics/t",
        b'{"records": []}',
        {"Content-Type": "text/plain"},
        415,
        41501,
    ),
    (
        "avro content type",
        "POST",
        "/topics/t",
        b'{"records": []}',
        {"Content-Type": "application/vnd.kafka.avro.v2+json"},
        415,
        41501,
    ),
    ("no content type", "POST", "/topics/t", b'{"records": []}', {"Content-Type": ""}, 415, 41501),
    (
        "unknown topic produce",
        "POST",
        "/topics/nope",
        b'{"records": [{"value": 1}]}',
        {},
        404,
        40401,
    ),
    (
        "invalid topic name",
        "POST",
        "/topics/bad%20name",
        b'{"records": [{"value": 1}]}',
        {},
        404,
        40401,
    ),
    (
        "unknown partition produce",
        "POST",
        "/topics/t/partitions/9",
        b'{"records": [{"value": 1}]}',
        {},
        404,
        40402,
    ),
    (
        "partition not a number",
        "GET",
        "/topics/t/partitions/x/records?offset=0",
        None,
        {},
        404,
        40402,
    ),
    ("negative offset", "GET", "/topics/t/partitions/0/records?offset=-1", None, {}, 422, 42224),
    (
        "offset not a number",
        "GET",
        "/topics/t/partitions/0/records?offset=abc",
        None,
        {},
        422,
        42224,
    ),
    (
        "absurd offset",
        "GET",
        "/topics/t/partitions/0/records?offset=99999999999999999999999",
        None,
        {},
        422,
        42224,
    ),
    (
        "offset beyond the log",
        "GET",
        "/topics/t/partitions/0/records?offset=1000000",
        None,
        {},
        416,
        41601,
    ),
    ("missing offset", "GET", "/topics/t/partitions/0/records", None, {}, 422, 42224),
    (
        "max_bytes zero",
        "GET",
        "/topics/t/partitions/0/records?offset=0&max_bytes=0",
        None,
        {},
        422,
        42210,
    ),
    (
        "timeout too long",
        "GET",
        "/topics/t/partitions/0/records?offset=0&timeout=99999999",
        None,
        {},
        422,
        42210,
    ),
    (
        "max_records not a number",
        "GET",
        "/topics/t/partitions/0/records?offset=0&max_records=1e3",
        None,
        {},
        422,
        42210,
    ),
    (
        "not acceptable",
        "GET",
        "/topics/t/partitions/0/records?offset=0",
        None,
        {"Accept": "text/html"},
        406,
        40601,
    ),
    ("bad acks", "POST", "/topics/t?acks=2", b'{"records": [{"value": 1}]}', {}, 422, 42210),
    ("unknown route", "GET", "/no/such/route", None, {}, 404, 404),
    ("wrong method", "DELETE", "/topics", None, {}, 405, 405),
    (
        "timestamp lookup negative",
        "GET",
        "/topics/t/partitions/0/offsets?timestamp=-5",
        None,
        {},
        422,
        42210,
    ),
    ("unknown cluster", "GET", "/v3/clusters/nope/topics", None, {}, 404, 40407),
    # topics (v3) -- the cluster id is filled in by the test
    ("create: body not JSON", "POST", "/v3/clusters/{cid}/topics", b"{", {}, 400, 400),
    ("create: body an array", "POST", "/v3/clusters/{cid}/topics", b"[]", {}, 422, 42206),
    ("create: no name", "POST", "/v3/clusters/{cid}/topics", b"{}", {}, 422, 42220),
    (
        "create: name with slash",
        "POST",
        "/v3/clusters/{cid}/topics",
        b'{"topic_name": "a/b"}',
        {},
        422,
        42220,
    ),
    (
        "create: huge partition count",
        "POST",
        "/v3/clusters/{cid}/topics",
        b'{"topic_name": "x", "partitions_count": 100000000}',
        {},
        422,
        42221,
    ),
    (
        "create: configs not a list",
        "POST",
        "/v3/clusters/{cid}/topics",
        b'{"topic_name": "x", "configs": {"a": 1}}',
        {},
        422,
        42206,
    ),
    (
        "create: validate_only string",
        "POST",
        "/v3/clusters/{cid}/topics",
        b'{"topic_name": "x", "validate_only": "yes"}',
        {},
        422,
        42206,
    ),
    (
        "create: text/plain",
        "POST",
        "/v3/clusters/{cid}/topics",
        b'{"topic_name": "x"}',
        {"Content-Type": "text/plain"},
        415,
        41501,
    ),
    (
        "config: unknown name",
        "GET",
        "/v3/clusters/{cid}/topics/t/configs/nope",
        None,
        {},
        404,
        40408,
    ),
    (
        "config: bad value",
        "PUT",
        "/v3/clusters/{cid}/topics/t/configs/retention.ms",
        b'{"value": "soon"}',
        {},
        422,
        42223,
    ),
    (
        "config: no value",
        "PUT",
        "/v3/clusters/{cid}/topics/t/configs/retention.ms",
        b"{}",
        {},
        422,
        42206,
    ),
    (
        "alter: bad operation",
        "POST",
        "/v3/clusters/{cid}/topics/t/configs:alter",
        b'{"data": [{"name": "retention.ms", "operation": "ZAP"}]}',
        {},
        422,
        42206,
    ),
    (
        "patch: shrink",
        "PATCH",
        "/v3/clusters/{cid}/topics/t",
        b'{"partitions_count": 1}',
        {},
        422,
        42221,
    ),
    ("broker: not a number", "GET", "/v3/clusters/{cid}/brokers/abc", None, {}, 404, 40406),
    ("broker: unknown", "GET", "/v3/clusters/{cid}/brokers/77", None, {}, 404, 40406),
    (
        "partition v3: unknown",
        "GET",
        "/v3/clusters/{cid}/topics/t/partitions/5",
        None,
        {},
        404,
        40402,
    ),
    # consumers (v2)
    (
        "consumer: bad format",
        "POST",
        "/consumers/g",
        b'{"name": "a", "format": "avro"}',
        {},
        422,
        42204,
    ),
    (
        "consumer: bad reset",
        "POST",
        "/consumers/g",
        b'{"auto.offset.reset": "middle"}',
        {},
        422,
        42204,
    ),
    (
        "consumer: unknown option",
        "POST",
        "/consumers/g",
        b'{"max.poll.records": 5}',
        {},
        422,
        42204,
    ),
    ("consumer: bad name", "POST", "/consumers/g", b'{"name": "a b"}', {}, 422, 42204),
    (
        "consumer: unknown instance",
        "GET",
        "/consumers/g/instances/nope/records",
        None,
        {},
        404,
        40403,
    ),
    (
        "consumer: subscribe unknown instance",
        "POST",
        "/consumers/g/instances/nope/subscription",
        b'{"topics": ["t"]}',
        {},
        404,
        40403,
    ),
    # groups (smart clients)
    ("join: no topics", "POST", "/groups/g/members", b'{"client_id": "c"}', {}, 422, 42204),
    (
        "join: both topics and pattern",
        "POST",
        "/groups/g/members",
        b'{"topics": ["t"], "topic_pattern": "t.*"}',
        {},
        422,
        42204,
    ),
    ("join: bad pattern", "POST", "/groups/g/members", b'{"topic_pattern": "("}', {}, 422, 42204),
    (
        "join: session too short",
        "POST",
        "/groups/g/members",
        b'{"topics": ["t"], "session_timeout_ms": 10}',
        {},
        422,
        42226,
    ),
    (
        "join: unknown assignor",
        "POST",
        "/groups/g/members",
        b'{"topics": ["t"], "assignor": "magic"}',
        {},
        422,
        42204,
    ),
    (
        "heartbeat: unknown member",
        "POST",
        "/groups/g/members/nobody/heartbeat",
        b'{"generation_id": 1}',
        {},
        409,
        40911,
    ),
    (
        "heartbeat: no generation",
        "POST",
        "/groups/g/members/nobody/heartbeat",
        b"{}",
        {},
        422,
        42206,
    ),
    (
        "commit: negative offset",
        "POST",
        "/groups/g/offsets",
        b'{"offsets": [{"topic": "t", "partition": 0, "offset": -5}]}',
        {},
        422,
        42224,
    ),
    (
        "commit: unknown topic",
        "POST",
        "/groups/g/offsets",
        b'{"offsets": [{"topic": "nope", "partition": 0, "offset": 1}]}',
        {},
        404,
        40401,
    ),
    ("commit: offsets not a list", "POST", "/groups/g/offsets", b'{"offsets": 3}', {}, 422, 42206),
    (
        "reset: bad target",
        "POST",
        "/groups/g/offsets:reset",
        b'{"topic": "t", "to": "middle"}',
        {},
        422,
        42206,
    ),
    ("group: unknown", "GET", "/groups/never-seen", None, {}, 404, 40405),
    # producers
    (
        "producers: bad epoch",
        "POST",
        "/producers",
        b'{"producer_id": 1, "producer_epoch": -1}',
        {},
        422,
        42206,
    ),
    (
        "produce: half the producer headers",
        "POST",
        "/topics/t/partitions/0",
        b'{"records": [{"value": 1}]}',
        {"X-KBroker-Producer-Id": "1"},
        422,
        42210,
    ),
]


@pytest.fixture
def topic_with_data(broker: BrokerProcess) -> Iterator[BrokerProcess]:
    create_topic(broker.url, "t", partitions=2)
    status, _ = produce(broker.url, "t", [{"value": "precious", "key": "k"}], partition=0)
    assert status == 200
    yield broker
    got = fetch_all(broker.url, "t", 0, 0, 1)
    assert got[0]["value"] == "precious" and got[0]["key"] == "k"


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 60


def test_every_malformed_request_gets_its_4xx(topic_with_data: BrokerProcess) -> None:
    failures = []
    cid = cluster_id(topic_with_data.url)
    for name, method, raw_path, body, headers, status, code in CASES:
        path = raw_path.replace("{cid}", cid)
        sent = {"Content-Type": JSON_V2} if body is not None else {}
        sent.update(headers)
        if sent.get("Content-Type") == "":
            del sent["Content-Type"]
        got_status, got_headers, payload = request(
            topic_with_data.url + path, method=method, body=body, headers=sent
        )
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            failures.append(f"{name}: body not JSON: {payload[:100]!r}")
            continue
        if got_status != status or doc.get("error_code") != code or not doc.get("message"):
            failures.append(f"{name}: expected {status}/{code}, got {got_status} {doc}")
        if got_headers.get("Content-Type", "").split(";")[0] != "application/json":
            failures.append(f"{name}: content type {got_headers.get('Content-Type')}")
    assert not failures, "\n".join(failures)


def test_body_larger_than_the_limit_is_refused_before_it_is_read(
    topic_with_data: BrokerProcess,
) -> None:
    # Content-Length announces 1 GiB: the broker answers 413 without waiting for the body.
    with socket.create_connection(("127.0.0.1", topic_with_data.port), timeout=10) as sock:
        sock.sendall(
            b"POST /topics/t/partitions/0 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n"
            b'{"records": ['
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"error_code":41301' in answer


def test_chunked_body_over_the_limit_is_cut_off(topic_with_data: BrokerProcess) -> None:
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", topic_with_data.port), timeout=30) as sock:
        sock.sendall(
            b"POST /topics/t/partitions/0 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        answer = b""
        try:
            for _ in range(200):  # up to 13 MiB, beyond the test broker's limit
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(10)
        try:
            answer = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_record_larger_than_max_message_bytes_is_413(topic_with_data: BrokerProcess) -> None:
    status, body = produce(topic_with_data.url, "t", [{"value": "x" * 1_100_000}], partition=0)
    assert status == 413 and body["error_code"] == 41302


def test_a_large_request_of_small_records_is_split_not_refused(
    topic_with_data: BrokerProcess,
) -> None:
    records = [{"value": "y" * 1000} for _ in range(3000)]  # ~3 MB > max.message.bytes
    status, body = produce(topic_with_data.url, "t", records, partition=1)
    assert status == 200
    assert [o["offset"] for o in body["offsets"]] == list(range(3000))
    assert len(fetch_all(topic_with_data.url, "t", 1, 0, 3000, max_bytes=8 << 20)) == 3000
