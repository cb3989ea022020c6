"""What Strimzi's HTTP bridge serves beyond Confluent's v2, against a real broker: ``/healthy``,
the description at ``/openapi`` and ``/openapi/v3``, ``POST /admin/topics`` and produce with
``?async=true``."""

from __future__ import annotations

import orjson
import pytest

from kbroker.testing.brokers import BrokerProcess
from tests.integration.http import JSON_V2, create_topic, fetch_all, request

pytestmark = pytest.mark.integration


def _post(url: str, body: object, content_type: str = "application/json") -> tuple[int, bytes]:
    status, _, payload = request(
        url, method="POST", body=orjson.dumps(body), headers={"Content-Type": content_type}
    )
    return status, payload


def test_healthy_and_the_openapi_paths(broker: BrokerProcess) -> None:
    status, _, payload = request(broker.url + "/healthy")
    assert (status, payload) == (200, b"")
    _, _, spec = request(broker.url + "/openapi.json")
    for path in ("/openapi", "/openapi/v3"):
        status, headers, payload = request(broker.url + path)
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        assert orjson.loads(payload) == orjson.loads(spec)


def test_admin_topics_creates_a_topic(broker: BrokerProcess) -> None:
    url = broker.url + "/admin/topics"
    status, payload = _post(url, {"topic_name": "bridged", "partitions_count": 3})
    assert (status, payload) == (201, b"")
    _, _, described = request(broker.url + "/topics/bridged")
    assert len(orjson.loads(described)["partitions"]) == 3
    # Only the defaults: one partition, the broker's replication factor.
    assert _post(url, {"topic_name": "plain"})[0] == 201
    _, _, described = request(broker.url + "/topics/plain")
    assert len(orjson.loads(described)["partitions"]) == 1
    status, payload = _post(url, {"topic_name": "bridged"})
    assert (status, orjson.loads(payload)["error_code"]) == (409, 40904)
    # v3's other fields are not Strimzi's: refused, like any unknown field.
    status, payload = _post(url, {"topic_name": "x", "configs": []})
    assert status == 422 and "configs" in orjson.loads(payload)["message"]
    for bad in ({"partitions_count": 1}, {"topic_name": "y", "partitions_count": 0}, [1]):
        status, payload = _post(url, bad)
        assert 400 <= status < 500 and orjson.loads(payload)["error_code"] >= 40000, payload
    assert _post(url, {"topic_name": "z"}, content_type="text/plain")[0] == 415
    _, _, listed = request(broker.url + "/topics")
    assert {"x", "y", "z"}.isdisjoint(orjson.loads(listed))


def test_async_produce_answers_204_and_stores_the_records(broker: BrokerProcess) -> None:
    create_topic(broker.url, "quiet")
    base = broker.url + "/topics/quiet"
    records = {"records": [{"value": {"n": i}} for i in range(5)]}
    for path in ("?async=true", "/partitions/0?async=TRUE&acks=all"):
        status, payload = _post(base + path, records, JSON_V2)
        assert (status, payload) == (204, b"")
    status, payload = _post(base + "/partitions/0?async=false", records, JSON_V2)
    assert status == 200 and len(orjson.loads(payload)["offsets"]) == 5
    stored = fetch_all(broker.url, "quiet", 0, 0, 15)
    assert sorted(r["value"]["n"] for r in stored) == sorted(list(range(5)) * 3)
    status, payload = _post(base + "?async=yes", records, JSON_V2)
    assert (status, orjson.loads(payload)["error_code"]) == (422, 42210)
    # Bad input is still an error, not a 204.
    status, payload = _post(base + "?async=true", {"records": [{"nope": 1}]}, JSON_V2)
    assert status == 422, payload


def test_async_produce_reports_a_failed_record(broker: BrokerProcess) -> None:
    """A record that was not produced is never answered with the bodiless 204."""
    create_topic(broker.url, "short", configs={"min.insync.replicas": "2"})
    status, payload = _post(
        broker.url + "/topics/short?async=true&acks=all", {"records": [{"value": 1}]}, JSON_V2
    )
    assert status == 200, payload
    (offset,) = orjson.loads(payload)["offsets"]
    assert offset["error_code"] == 50304 and offset["offset"] is None
