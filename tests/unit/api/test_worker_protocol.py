"""The broker <-> HTTP worker exchange: encoded batches in, compact outcomes back."""

from __future__ import annotations

import orjson
import pytest

from kbroker.api.media import produce_format
from kbroker.api.produce import (
    Outcome,
    _decode_frames,
    encode_frames,
    encode_worker_outcome,
    partition_response,
    render_worker_outcome,
)
from kbroker.errors import BrokerError
from kbroker.records import PartitionRecords, encode_partition_records, parse_produce_body

JSON_V2 = "application/vnd.kafka.json.v2+json"


def _batches(count: int, max_batch_bytes: int = 1 << 20) -> list[PartitionRecords]:
    body = parse_produce_body(
        orjson.dumps({"records": [{"value": {"n": i}} for i in range(count)]}),
        produce_format(JSON_V2),
    )
    return encode_partition_records(
        body,
        range(count),
        now_ms=1_700_000_000_000,
        log_append_time=False,
        max_batch_bytes=max_batch_bytes,
    )


def test_frames_round_trip_every_batch_field() -> None:
    batches = _batches(50, max_batch_bytes=200)
    assert len(batches) > 1
    decoded = _decode_frames(b"".join(encode_frames(batches)))
    assert [
        (b.payload, b.record_count, b.attributes, b.first_timestamp, b.max_timestamp)
        for b in decoded
    ] == [
        (b.payload, b.record_count, b.attributes, b.first_timestamp, b.max_timestamp)
        for b in batches
    ]


@pytest.mark.parametrize("cut", [0, 3, 7, 20])
def test_truncated_frames_are_a_clear_error(cut: int) -> None:
    data = b"".join(encode_frames(_batches(3)))
    with pytest.raises(BrokerError):
        _decode_frames(data[:cut])


@pytest.mark.parametrize(
    ("acks", "outcome"),
    [
        (1, 41),
        (-1, 0),
        (0, 7),
        (1, [(2, None, 40403, "not leader", False), (2, None, 40403, "not leader", True)]),
    ],
)
def test_worker_outcome_renders_what_the_broker_would_answer(
    acks: int, outcome: int | list[Outcome]
) -> None:
    count = 2
    rendered = render_worker_outcome(encode_worker_outcome(2, acks, outcome), count)
    assert orjson.loads(rendered) == orjson.loads(partition_response(2, acks, outcome, count))


def test_fast_response_lists_consecutive_offsets() -> None:
    doc = orjson.loads(partition_response(1, 1, 10, 3))
    assert [(o["partition"], o["offset"]) for o in doc["offsets"]] == [(1, 10), (1, 11), (1, 12)]
    assert orjson.loads(partition_response(1, 0, 10, 2))["offsets"][0]["offset"] is None
