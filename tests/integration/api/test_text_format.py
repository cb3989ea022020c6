"""Strimzi bridge's ``text`` embedded format (``application/vnd.kafka.text.v2+json``) against a
real broker: keys and values are strings whose bytes are their UTF-8 text."""

from __future__ import annotations

import base64
import time

import orjson
import pytest

from kbroker.testing.brokers import BrokerProcess, http_json
from kclient.protocol import partition_for_key
from tests.integration.http import create_topic, fetch_all, produce, request

pytestmark = pytest.mark.integration

TEXT = "application/vnd.kafka.text.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"


def test_text_records_are_their_utf8_bytes(broker: BrokerProcess) -> None:
    create_topic(broker.url, "texts", partitions=4)
    status, body = produce(
        broker.url, "texts", [{"key": "clé", "value": "héllo {not json}"}], content_type=TEXT
    )
    assert status == 200, body
    partition = body["offsets"][0]["partition"]
    assert partition == partition_for_key("clé".encode(), 4)
    (record,) = fetch_all(broker.url, "texts", partition, 0, 1, accept=TEXT)
    assert (record["key"], record["value"]) == ("clé", "héllo {not json}")
    (record,) = fetch_all(broker.url, "texts", partition, 0, 1, accept=BINARY)
    assert base64.b64decode(record["value"]) == "héllo {not json}".encode()
    # JSON records read as text are their JSON text; bytes that are not UTF-8 are 422.
    produce(broker.url, "texts", [{"value": {"a": 1}}], partition=0)
    produce(
        broker.url,
        "texts",
        [{"value": base64.b64encode(b"\xff").decode()}],
        partition=1,
        content_type=BINARY,
    )
    got = fetch_all(broker.url, "texts", 0, 0, 1 + (partition == 0), accept=TEXT)
    assert got[-1]["value"] == '{"a":1}'
    last = 1 if partition == 1 else 0  # the offset of the \xff record on partition 1
    status, _, payload = request(
        f"{broker.url}/topics/texts/partitions/1/records?offset={last}&timeout=0",
        headers={"Accept": TEXT},
    )
    assert (status, orjson.loads(payload)["error_code"]) == (422, 42203)


def test_text_values_must_be_strings(broker: BrokerProcess) -> None:
    create_topic(broker.url, "texts2", partitions=1)
    status, body = produce(broker.url, "texts2", [{"value": 5}], content_type=TEXT)
    assert (status, body["error_code"]) == (422, 42203), body


def test_text_consumer_instance(broker: BrokerProcess) -> None:
    create_topic(broker.url, "texts3", partitions=1)
    produce(broker.url, "texts3", [{"value": "a"}, {"value": "b"}], content_type=TEXT)
    status, created = http_json(
        f"{broker.url}/consumers/tg",
        method="POST",
        body={"format": "text", "auto.offset.reset": "earliest"},
    )
    assert status == 200, created
    base = created["base_uri"]
    assert http_json(base + "/subscription", method="POST", body={"topics": ["texts3"]})[0] == 204
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while len(seen) < 2:
        assert time.monotonic() < deadline, seen
        status, headers, payload = request(base + "/records?timeout=1000", headers={"Accept": TEXT})
        assert status == 200 and headers["Content-Type"].startswith(TEXT), payload
        seen += [r["value"] for r in orjson.loads(payload)]
    assert seen == ["a", "b"]
    http_json(base, method="DELETE")
