"""``GET /ready`` and ``GET /metrics`` against a real broker process."""

from __future__ import annotations

import re
import time

import orjson
import pytest

from kbroker.testing.brokers import BrokerProcess
from tests.integration.http import QueuedRequest, create_topic, produce, request

pytestmark = pytest.mark.integration

_SAMPLE = re.compile(r"^([a-z_]+)(\{.*\})? (\S+)$")


def _metrics(url: str) -> dict[str, float]:
    status, headers, payload = request(f"{url}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in payload.decode().splitlines():
        if line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, line
        samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def test_ready_and_metrics_of_a_serving_broker(broker: BrokerProcess) -> None:
    status, _, payload = request(f"{broker.url}/ready")
    assert status == 200 and orjson.loads(payload) == {"ready": True, "broker_id": 1}
    create_topic(broker.url, "metered", partitions=2)
    for _ in range(3):
        assert produce(broker.url, "metered", [{"value": 1}, {"value": 2}], partition=0)[0] == 200
    request(f"{broker.url}/no/such/route")
    samples = _metrics(broker.url)
    route = "/topics/{topic}/partitions/{partition}"
    key = f'kbroker_http_requests_total{{method="POST",route="{route}",code="200"}}'
    assert samples[key] == 3
    assert samples['kbroker_http_requests_total{method="GET",route="unmatched",code="404"}'] == 1
    count = samples[f'kbroker_http_request_duration_seconds_count{{method="POST",route="{route}"}}']
    inf = samples[
        f'kbroker_http_request_duration_seconds_bucket{{method="POST",route="{route}",le="+Inf"}}'
    ]
    assert count == inf == 3
    assert samples['kbroker_log_end_offset{topic="metered",partition="0"}'] == 6
    assert samples['kbroker_high_watermark{topic="metered",partition="0"}'] == 6
    assert samples['kbroker_log_end_offset{topic="metered",partition="1"}'] == 0
    assert samples['kbroker_log_size_bytes{topic="metered",partition="0"}'] > 0
    assert samples["kbroker_partitions_led"] >= 2
    assert samples["kbroker_under_replicated_partitions"] == 0
    assert samples["kbroker_controller_active"] == 1 and samples["kbroker_fenced"] == 0
    assert samples['kbroker_broker_info{broker_id="1",version="0.1.0"}'] == 1


def test_a_broker_resumed_after_a_stall_is_not_ready_until_confirmed(
    broker: BrokerProcess,
) -> None:
    """A stall longer than the fence delay (a third of the 4 s session) fences the broker at
    once: /ready says 503 (retriable) until a ZooKeeper round trip confirms the session."""
    broker.pause()
    try:
        time.sleep(2.5)
        queued = QueuedRequest(broker.url, "/ready")
    finally:
        broker.resume()
    status, error = queued.answer()
    assert status == 503, error
    assert error["error_code"] == 50302 and error["retriable"] and "fenced" in error["message"]
    deadline = time.monotonic() + 30
    while request(f"{broker.url}/ready")[0] != 200:
        assert time.monotonic() < deadline, "not ready again"
        time.sleep(0.2)
