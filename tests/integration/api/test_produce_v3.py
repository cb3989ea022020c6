"""REST Proxy v3 produce (``POST /v3/clusters/{c}/topics/{t}/records``) against a real broker:
single records, several in one body, streaming mode over a chunked request, and bad input."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from kbroker.testing.brokers import BrokerProcess
from kclient.protocol import partition_for_key
from tests.integration.http import cluster_id, create_topic, fetch_all, request

pytestmark = pytest.mark.integration

BINARY_V2 = "application/vnd.kafka.binary.v2+json"


def _records_url(url: str, topic: str) -> str:
    return f"{url}/v3/clusters/{cluster_id(url)}/topics/{topic}/records"


def _post(url: str, body: bytes) -> tuple[int, list[Any]]:
    status, _, payload = request(
        url, method="POST", body=body, headers={"Content-Type": "application/json"}
    )
    return status, [orjson.loads(line) for line in payload.splitlines() if line.strip()]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_one_record_of_each_type_is_stored_as_its_bytes(broker: BrokerProcess) -> None:
    create_topic(broker.url, "v3p", partitions=3)
    url = _records_url(broker.url, "v3p")
    record = {
        "key": {"type": "STRING", "data": "alice"},
        "value": {"type": "JSON", "data": {"id": 1, "tags": ["a", "b"]}},
        "headers": [{"name": "trace", "value": _b64(b"abc")}],
        "timestamp": "2026-01-02T03:04:05.678Z",
    }
    status, (report,) = _post(url, orjson.dumps(record))
    assert status == 200, report
    expected_partition = partition_for_key(b"alice", 3)
    assert report == {
        "error_code": 200,
        "cluster_id": cluster_id(broker.url),
        "topic_name": "v3p",
        "partition_id": expected_partition,
        "offset": 0,
        "timestamp": "2026-01-02T03:04:05.678Z",
        "key": {"type": "STRING", "size": 5},
        "value": {"type": "JSON", "size": len(b'{"id":1,"tags":["a","b"]}')},
    }
    binary = {"partition_id": 0, "value": {"type": "BINARY", "data": _b64(b"\x00\x01\xff")}}
    status, (report,) = _post(url, orjson.dumps(binary))
    assert status == 200 and report["partition_id"] == 0 and report["key"] is None, report
    assert report["value"] == {"type": "BINARY", "size": 3}

    stored = fetch_all(broker.url, "v3p", expected_partition, 0, 1, accept=BINARY_V2)
    assert base64.b64decode(stored[0]["key"]) == b"alice"
    assert orjson.loads(base64.b64decode(stored[0]["value"])) == {"id": 1, "tags": ["a", "b"]}
    assert stored[0]["headers"] == [{"key": "trace", "value": _b64(b"abc")}]
    assert stored[0]["timestamp"] == 1_767_323_045_678
    on_zero = 2 if expected_partition == 0 else 1
    stored = fetch_all(broker.url, "v3p", 0, 0, on_zero, accept=BINARY_V2)
    assert base64.b64decode(stored[-1]["value"]) == b"\x00\x01\xff"


def test_several_records_in_one_body_get_one_report_each_in_order(broker: BrokerProcess) -> None:
    create_topic(broker.url, "v3many", partitions=1)
    url = _records_url(broker.url, "v3many")
    body = b"\n".join(
        [
            orjson.dumps({"value": {"type": "STRING", "data": "one"}}),
            orjson.dumps({"value": {"type": "AVRO", "data": 1}}),  # refused alone
            b'{"value": {"type": "JSON", "data": "two {with} \\"braces\\""}}',
            b'{"value": null, "headers": [{"name": "h", "value": "%%%"}]}',  # fails alone
        ]
    )
    status, reports = _post(url, body)
    assert status == 200
    assert [r["error_code"] for r in reports] == [200, 42206, 200, 42203]
    assert "schema registry" in reports[1]["message"]
    assert [reports[0]["offset"], reports[2]["offset"]] == [0, 1]


def _chunked(url: str, chunks: list[tuple[bytes, int]]) -> Iterator[tuple[str, list[Any]]]:
    """POST the chunks with Transfer-Encoding: chunked over a raw socket; after sending each
    ``(chunk, reports)`` pair, read the answer until ``reports`` reports have arrived, and yield
    (status line, the reports so far)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        received = b""
        for i, (chunk, expected) in enumerate(chunks):
            last = b"0\r\n\r\n" if i == len(chunks) - 1 else b""
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) + last)
            while True:
                head_end = received.find(b"\r\n\r\n")
                reports = [
                    orjson.loads(line)
                    for line in received[head_end + 4 :].splitlines()
                    if head_end >= 0 and line.startswith(b"{")
                ]
                if len(reports) >= expected:
                    break
                data = sock.recv(65536)  # times out (fails) if the report never comes
                assert data, received
                received += data
            yield received.split(b"\r\n", 1)[0].decode(), reports


def test_streaming_mode_answers_each_record_before_the_next_is_sent(
    broker: BrokerProcess,
) -> None:
    create_topic(broker.url, "v3stream", partitions=1)
    url = _records_url(broker.url, "v3stream")
    first = orjson.dumps({"value": {"type": "STRING", "data": "a"}})
    second = orjson.dumps({"value": {"type": "STRING", "data": "b"}})
    steps = _chunked(url, [(first, 1), (second[:10], 1), (second[10:], 2)])
    status, reports = next(steps)  # the first report comes while the request is still open
    assert status == "HTTP/1.1 200 OK" and [r["offset"] for r in reports] == [0]
    _, reports = next(steps)  # half an object: nothing more to report yet
    assert len(reports) == 1
    _, reports = next(steps)
    assert [r["offset"] for r in reports] == [0, 1]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"", 422, 42206),
        (b"[1, 2]", 422, 42206),
        (b'{"value": {"type": "JSON", "data": 1}', 422, 42206),  # never closed
        (b'{"value": {"type": "STRING", "data": 1}}', 422, 42206),
        (b'{"value": {"data": 1}}', 422, 42206),  # no type: would need a schema registry
        (b'{"value": {"type": "BINARY", "data": "not base64!"}}', 422, 42206),
        (b'{"value": null, "partition_id": 7}', 404, 40402),
        (b'{"value": null, "timestamp": "yesterday"}', 422, 42210),
        (b'{"value": null, "headers": [{"name": "h", "value": "%%%"}]}', 422, 42203),
        (b'{"valu": null}', 422, 42206),
        (b'{"value": {"type": "JSON", "data": NaN}}', 400, 400),
    ],
)
def test_bad_single_records_get_their_own_http_status(
    broker: BrokerProcess, body: bytes, status: int, code: int
) -> None:
    create_topic(broker.url, "v3bad", partitions=1)
    got_status, (error,) = _post(_records_url(broker.url, "v3bad"), body)
    assert (got_status, error["error_code"]) == (status, code), error
    assert error["message"]


def test_unknown_cluster_is_404(broker: BrokerProcess) -> None:
    create_topic(broker.url, "v3c", partitions=1)
    status, (error,) = _post(
        f"{broker.url}/v3/clusters/nope/topics/v3c/records", b'{"value": null}'
    )
    assert (status, error["error_code"]) == (404, 40407)


def test_batch_produce_answers_207_with_successes_and_failures(broker: BrokerProcess) -> None:
    create_topic(broker.url, "v3batch", partitions=1)
    url = _records_url(broker.url, "v3batch") + ":batch"
    entries = [
        {"id": "a", "value": {"type": "STRING", "data": "one"}},
        {"id": "b", "value": {"type": "AVRO", "data": 1}},
        {"id": "c", "key": {"type": "BINARY", "data": _b64(b"k")}, "value": None},
    ]
    status, (answer,) = _post(url, orjson.dumps({"entries": entries}))
    assert status == 207, answer
    assert [(s["id"], s["offset"], s["topic_name"]) for s in answer["successes"]] == [
        ("a", 0, "v3batch"),
        ("c", 1, "v3batch"),
    ]
    assert answer["successes"][1]["key"] == {"type": "BINARY", "size": 1}
    (failure,) = answer["failures"]
    assert (failure["id"], failure["error_code"]) == ("b", 42206)
    stored = fetch_all(broker.url, "v3batch", 0, 0, 2, accept=BINARY_V2)
    assert [base64.b64decode(r["value"]) if r["value"] else None for r in stored] == [b"one", None]


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"entries": []}',
        b'{"entries": [{"value": null}]}',  # no id
        b'{"entries": [{"id": "x", "value": null}, {"id": "x", "value": null}]}',
        b'{"entries": [{"id": 7, "value": null}]}',
    ],
)
def test_bad_batches_are_refused_whole(broker: BrokerProcess, body: bytes) -> None:
    create_topic(broker.url, "v3batchbad", partitions=1)
    status, (error,) = _post(_records_url(broker.url, "v3batchbad") + ":batch", body)
    assert (status, error["error_code"]) == (422, 42208), error
    _, _, payload = request(f"{broker.url}/topics/v3batchbad/partitions/0/offsets")
    assert orjson.loads(payload)["end_offset"] == 0  # nothing written
