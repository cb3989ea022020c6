"""Compressed request bodies (``Content-Encoding``) against real brokers: gzip and deflate are
decoded, whichever broker or worker process takes the request; anything else gets a JSON error,
never a 500, and a decompression bomb is refused once it exceeds max.request.bytes."""

from __future__ import annotations

import gzip
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kbroker.testing.brokers import BrokerProcess, LocalCluster
from kbroker.testing.local import ZooKeeperEnsemble
from tests.integration.conftest import single_broker
from tests.integration.http import JSON_V2, create_topic, fetch_all, request

pytestmark = pytest.mark.integration

LIMIT = 1 << 20


@pytest.fixture
def limited(
    zk_single: ZooKeeperEnsemble, zk_chroot: str, tmp_path: Path
) -> Iterator[BrokerProcess]:
    with single_broker(zk_single, zk_chroot, tmp_path, {"max.request.bytes": str(LIMIT)}) as b:
        yield b


def _post(url: str, body: bytes, coding: str, content_type: str = JSON_V2) -> tuple[int, Any]:
    status, headers, payload = request(
        url,
        method="POST",
        body=body,
        headers={"Content-Type": content_type, "Content-Encoding": coding},
    )
    assert "json" in headers["Content-Type"], (status, payload)  # a JSON body, never text
    return status, orjson.loads(payload)


def _records(*values: int) -> bytes:
    return orjson.dumps({"records": [{"value": v} for v in values]})


def test_gzip_and_deflate_bodies_are_produced(limited: BrokerProcess) -> None:
    create_topic(limited.url, "packed")
    url = limited.url + "/topics/packed/partitions/0"
    for coding, body in (
        ("gzip", gzip.compress(_records(0, 1))),
        ("deflate", zlib.compress(_records(2))),
        ("identity", _records(3)),
        ("GZIP", gzip.compress(_records(4))),
    ):
        status, answer = _post(url, body, coding)
        assert status == 200, answer
    assert [r["value"] for r in fetch_all(limited.url, "packed", 0, 0, 5)] == [0, 1, 2, 3, 4]


def test_bad_codings_get_json_errors_and_the_broker_keeps_serving(limited: BrokerProcess) -> None:
    create_topic(limited.url, "guarded")
    url = limited.url + "/topics/guarded"
    for coding in ("br", "zstd", "compress", "gzip, br"):
        status, answer = _post(url, gzip.compress(_records(1)), coding)
        assert (status, answer["error_code"]) == (415, 41501), (coding, answer)
    for coding, body in (("gzip", b"junk"), ("gzip", gzip.compress(_records(1))[:-3])):
        status, answer = _post(url, body, coding)
        assert (status, answer["error_code"]) == (400, 400), answer
    bomb = gzip.compress(b'{"records":[{"value":"' + b"a" * (8 * LIMIT) + b'"}]}')
    assert len(bomb) < LIMIT // 8
    status, answer = _post(url, bomb, "gzip")
    assert (status, answer["error_code"]) == (413, 41301), answer
    # Other endpoints read their bodies the same way.
    status, answer = _post(limited.url + "/consumers/g", b"junk", "gzip", "application/json")
    assert (status, answer["error_code"]) == (400, 400), answer
    status, answer = _post(url, _records(5), "identity")
    assert status == 200 and answer["offsets"][0]["error_code"] is None


def test_compressed_v3_records_including_a_chunked_stream(limited: BrokerProcess) -> None:
    create_topic(limited.url, "v3packed")
    _, _, payload = request(limited.url + "/v3/clusters")
    cluster = orjson.loads(payload)["data"][0]["cluster_id"]
    url = f"{limited.url}/v3/clusters/{cluster}/topics/v3packed/records"
    objects = b"".join(orjson.dumps({"value": {"type": "JSON", "data": n}}) for n in range(3))
    status, _, payload = request(
        url,
        method="POST",
        body=gzip.compress(objects),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert status == 200 and payload.count(b'"error_code":200') == 3, payload
    chunks = iter([gzip.compress(objects)[:20], gzip.compress(objects)[20:]])
    status, _, payload = request(
        url,
        method="POST",
        body=chunks,  # type: ignore[arg-type]  # http.client sends an iterable chunked
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert status == 200 and payload.count(b'"error_code":200') == 3, payload


def test_compressed_requests_forwarded_between_brokers(cluster: LocalCluster) -> None:
    """A coordinator request sent to any broker is forwarded still encoded and decoded there."""
    for i, url in enumerate(cluster.urls):
        body = gzip.compress(orjson.dumps({"name": f"reader-{i}", "format": "json"}))
        status, answer = _post(url + "/consumers/packed-group", body, "gzip", "application/json")
        assert status == 200 and answer["instance_id"] == f"reader-{i}", answer


def test_a_utf8_byte_order_mark_before_the_json_is_ignored(limited: BrokerProcess) -> None:
    """Jackson (Confluent's proxy, Strimzi's bridge) reads past a BOM, so kbroker does too:
    on produce bodies (v2, and v3 whole or streamed), consumer bodies and compressed ones."""
    bom = b"\xef\xbb\xbf"
    create_topic(limited.url, "marked")
    url = limited.url + "/topics/marked/partitions/0"
    for body, coding in (
        ((bom + _records(0)), "identity"),
        (gzip.compress(bom + _records(1)), "gzip"),
    ):
        status, answer = _post(url, body, coding)
        assert status == 200, answer
    status, answer = _post(limited.url + "/consumers/g", bom + b'{"name":"c1"}', "identity")
    assert status == 200 and answer["instance_id"] == "c1", answer
    _, _, payload = request(limited.url + "/v3/clusters")
    cluster = orjson.loads(payload)["data"][0]["cluster_id"]
    v3 = f"{limited.url}/v3/clusters/{cluster}/topics/marked/records"
    record = orjson.dumps({"partition_id": 0, "value": {"type": "JSON", "data": 2}})
    status, _, payload = request(
        v3, method="POST", body=bom + record, headers={"Content-Type": "application/json"}
    )
    assert status == 200 and b'"error_code":200' in payload, payload
    # Streamed, with the mark split over two chunks.
    record = orjson.dumps({"partition_id": 0, "value": {"type": "JSON", "data": 3}})

    def chunks() -> Iterator[bytes]:
        yield bom[:2]
        time.sleep(0.2)  # so that the broker reads the first two bytes alone
        yield bom[2:] + record

    status, _, payload = request(
        v3,
        method="POST",
        body=chunks(),  # type: ignore[arg-type]  # http.client sends an iterable chunked
        headers={"Content-Type": "application/json"},
    )
    assert status == 200 and payload.count(b'"error_code":200') == 1, payload
    assert [r["value"] for r in fetch_all(limited.url, "marked", 0, 0, 4)] == [0, 1, 2, 3]
    # Only a leading mark: one inside the JSON text is still malformed.
    status, answer = _post(url, b"{" + bom + b'"records":[]}', "identity")
    assert (status, answer["error_code"]) == (400, 400), answer
