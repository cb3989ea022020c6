"""Round trips through the batch format and the helpers the log relies on."""

from __future__ import annotations

import pytest

from kbroker.errors import CorruptRecordError
from kbroker.log.batch import (
    HEADER_SIZE,
    batch_span,
    iter_batches,
    read_header,
    scan_valid_prefix,
    verify_crc,
)
from tests.unit.log.support import encode_batch, payload_for


def test_header_round_trip() -> None:
    payload = payload_for(1, 100)
    data = encode_batch(payload, base_offset=42, records=7, timestamp=1234, epoch=3)
    header = read_header(data)
    assert (header.base_offset, header.record_count, header.leader_epoch) == (42, 7, 3)
    assert (header.last_offset, header.next_offset, header.size) == (48, 49, len(data))
    assert header.max_timestamp == 1234
    assert header.payload_length == 100
    assert verify_crc(data, header)
    assert data[HEADER_SIZE:] == payload


def test_batch_span_matches_header() -> None:
    data = encode_batch(payload_for(2, 10), base_offset=5, records=3)
    assert batch_span(data) == (5, 8, len(data))
    with pytest.raises(CorruptRecordError):
        batch_span(data[: HEADER_SIZE - 1])


def test_iter_batches_and_valid_prefix() -> None:
    first = encode_batch(payload_for(1), base_offset=0, records=2)
    second = encode_batch(payload_for(2), base_offset=2, records=1)
    buf = first + second
    assert [h.base_offset for h in iter_batches(buf, verify=True)] == [0, 2]
    headers, length = scan_valid_prefix(buf + b"\x00" * 5, expected_offset=0)
    assert [h.base_offset for h in headers] == [0, 2] and length == len(buf)
    corrupt = bytearray(buf)
    corrupt[len(first) + HEADER_SIZE] ^= 0x01
    headers, length = scan_valid_prefix(bytes(corrupt), expected_offset=0)
    assert length == len(first)
    with pytest.raises(CorruptRecordError, match="CRC"):
        list(iter_batches(bytes(corrupt), verify=True))
