"""kbroker.records (produce bodies -> batch payloads -> fetched records) and the partitioner."""

from __future__ import annotations

import base64
import binascii
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kbroker.config import BrokerConfig, TopicConfig
from kbroker.errors import BrokerError, ErrorCode
from kbroker.log.batch import ATTR_RECORD_TIMESTAMPS, PayloadCodec, encode_header
from kbroker.log.partition_log import PartitionLog
from kbroker.records import (
    MAX_TIMESTAMP,
    PartitionRecords,
    ProduceBody,
    encode_offsets_response,
    encode_partition_records,
    offset_for_timestamp,
    parse_produce_body,
    render_batches,
)
from kclient.protocol import EmbeddedFormat, murmur2, partition_for_key, partitions_for_keys

JSON = EmbeddedFormat.JSON
BINARY = EmbeddedFormat.BINARY
NOW = 1_700_000_000_000


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def parse(doc: Any, fmt: EmbeddedFormat = JSON) -> ProduceBody:
    return parse_produce_body(orjson.dumps(doc), fmt)


def parse_error(body: bytes, fmt: EmbeddedFormat) -> ErrorCode:
    with pytest.raises(BrokerError) as info:
        parse_produce_body(body, fmt)
    return info.value.code


def encode(
    body: ProduceBody,
    *,
    positions: Sequence[int] | None = None,
    log_append_time: bool = False,
    max_batch_bytes: int = 1 << 20,
    now_ms: int = NOW,
) -> list[PartitionRecords]:
    return encode_partition_records(
        body,
        range(len(body.records)) if positions is None else positions,
        now_ms=now_ms,
        log_append_time=log_append_time,
        max_batch_bytes=max_batch_bytes,
    )


def stored(batches: Sequence[PartitionRecords], codec: PayloadCodec, base_offset: int = 0) -> bytes:
    """The batches as the log stores them, back to back from ``base_offset``."""
    out = b""
    offset = base_offset
    for batch in batches:
        out += encode_header(
            batch.payload,
            base_offset=offset,
            leader_epoch=0,
            attributes=batch.attributes | codec,
            record_count=batch.record_count,
            first_timestamp=batch.first_timestamp,
            max_timestamp=batch.max_timestamp,
        )
        out += batch.payload
        offset += batch.record_count
    return out


def produce(
    records: list[dict[str, Any]], fmt: EmbeddedFormat = JSON, base_offset: int = 0, **kw: Any
) -> bytes:
    body = parse({"records": records}, fmt)
    return stored(encode(body, **kw), body.codec, base_offset)


def render(data: bytes, start: int = 0, fmt: EmbeddedFormat = JSON, **kw: Any) -> list[Any]:
    return render_batches(data, topic="t", partition=0, start_offset=start, fmt=fmt, **kw).records


# ------------------------------------------------------------------------ malformed bodies

MALFORMED_JSON = [
    pytest.param(b"", id="empty"),
    pytest.param(b"{", id="truncated"),
    pytest.param(b'{"records": [}', id="syntax"),
    pytest.param(b"\xff\xfe", id="invalid-utf8"),
    pytest.param(b'{"records": [{"value": "\xc3\x28"}]}', id="invalid-utf8-in-string"),
    pytest.param(b'{"records": [{"value": "\\ud800"}]}', id="lone-surrogate"),
    pytest.param(b"[" * 5000 + b"]" * 5000, id="deeply-nested"),
    pytest.param(b'{"records": [{"value": ' + b"[" * 2000 + b"]" * 2000 + b"}]}", id="deep-value"),
    pytest.param(b'{"records": [{"value": NaN}]}', id="nan"),
    pytest.param(b'{"records": []} trailing', id="trailing-garbage"),
]


@pytest.mark.parametrize("body", MALFORMED_JSON)
@pytest.mark.parametrize("fmt", [JSON, BINARY])
def test_unparseable_body_is_malformed_request(body: bytes, fmt: EmbeddedFormat) -> None:
    assert parse_error(body, fmt) == ErrorCode.MALFORMED_REQUEST


INVALID_PAYLOADS: list[Any] = [
    pytest.param([], id="array-body"),
    pytest.param("records", id="string-body"),
    pytest.param(1, id="number-body"),
    pytest.param(None, id="null-body"),
    pytest.param({}, id="missing-records"),
    pytest.param({"records": None}, id="null-records"),
    pytest.param({"records": {"value": 1}}, id="object-records"),
    pytest.param({"records": "x"}, id="string-records"),
    pytest.param({"records": [1]}, id="number-record"),
    pytest.param({"records": [{"value": 1}, None]}, id="null-record"),
    pytest.param({"records": [[]]}, id="array-record"),
    pytest.param({"records": [{"value": 1}, "x"]}, id="string-record"),
    pytest.param({"records": [{"value": 1, "offset": 3}]}, id="unknown-record-field"),
    pytest.param({"records": [{"value": 1}], "extra": True}, id="unknown-envelope-field"),
    pytest.param({"records": [{"value": 1}], "key_schema": "{}"}, id="key_schema"),
    pytest.param({"records": [{"value": 1}], "key_schema_id": 1}, id="key_schema_id"),
    pytest.param({"records": [{"value": 1}], "value_schema": "{}"}, id="value_schema"),
    pytest.param({"records": [{"value": 1}], "value_schema_id": 0}, id="value_schema_id-0"),
    pytest.param({"records": [{"timestamp": "1"}]}, id="timestamp-string"),
    pytest.param({"records": [{"timestamp": 1.5}]}, id="timestamp-float"),
    pytest.param({"records": [{"timestamp": 1.0}]}, id="timestamp-integral-float"),
    pytest.param({"records": [{"timestamp": True}]}, id="timestamp-bool"),
    pytest.param({"records": [{"timestamp": 5}, {"timestamp": False}]}, id="timestamp-mixed-bool"),
    pytest.param({"records": [{"timestamp": -1}]}, id="timestamp-negative"),
    pytest.param({"records": [{"timestamp": MAX_TIMESTAMP + 1}]}, id="timestamp-too-late"),
    pytest.param({"records": [{"timestamp": [1]}]}, id="timestamp-array"),
    pytest.param({"records": [{"partition": "0"}]}, id="partition-string"),
    pytest.param({"records": [{"partition": 0.0}]}, id="partition-float"),
    pytest.param({"records": [{"partition": True}]}, id="partition-true"),
    pytest.param({"records": [{"partition": False}]}, id="partition-false"),
    pytest.param({"records": [{"partition": -1}]}, id="partition-negative"),
    pytest.param({"records": [{"partition": 1 << 31}]}, id="partition-too-large"),
    pytest.param({"records": [{"headers": {"a": "YQ=="}}]}, id="headers-object"),
    pytest.param({"records": [{"headers": "a"}]}, id="headers-string"),
    pytest.param({"records": [{"headers": [1]}]}, id="header-not-object"),
    pytest.param({"records": [{"headers": [None]}]}, id="header-null"),
    pytest.param({"records": [{"headers": [{"value": "YQ=="}]}]}, id="header-without-key"),
    pytest.param({"records": [{"headers": [{"key": 1}]}]}, id="header-key-number"),
    pytest.param({"records": [{"headers": [{"key": "a", "value": 1}]}]}, id="header-value-num"),
    pytest.param({"records": [{"headers": [{"key": "a", "value": {}}]}]}, id="header-value-obj"),
    pytest.param({"records": [{"headers": [{"key": "a", "x": 1}]}]}, id="header-unknown-field"),
]


@pytest.mark.parametrize("doc", INVALID_PAYLOADS)
@pytest.mark.parametrize("fmt", [JSON, BINARY])
def test_invalid_body_is_invalid_payload(doc: Any, fmt: EmbeddedFormat) -> None:
    assert parse_error(orjson.dumps(doc), fmt) == ErrorCode.INVALID_PAYLOAD


def test_integer_beyond_64_bits_is_rejected_not_truncated() -> None:
    # orjson reads it as a float: refused as "not an integer" rather than silently rounded.
    body = b'{"records": [{"timestamp": 99999999999999999999999}]}'
    assert parse_error(body, JSON) == ErrorCode.INVALID_PAYLOAD


BAD_BASE64 = [
    pytest.param(1, id="number"),
    pytest.param(True, id="bool"),
    pytest.param({"a": 1}, id="object"),
    pytest.param(["YQ=="], id="array"),
    pytest.param("YQ", id="missing-padding"),
    pytest.param("YWJjZA", id="missing-padding-long"),
    pytest.param("YQ=", id="short-padding"),
    pytest.param("Y===", id="three-pad"),
    pytest.param("====", id="only-padding"),
    pytest.param("YQ==YQ==", id="padding-in-middle"),
    pytest.param("YQ=a", id="padding-then-data"),
    pytest.param("Y=Q=", id="split-padding"),
    pytest.param("=YWJ", id="leading-padding"),
    pytest.param("YWJjZ", id="length-5"),
    pytest.param("YW Jj", id="space"),
    pytest.param("YWJj\n", id="newline"),
    pytest.param("YW*j", id="bad-alphabet"),
    pytest.param("YW-_", id="urlsafe-alphabet"),
    pytest.param("YWJé", id="non-ascii"),
]


@pytest.mark.parametrize("field", ["key", "value"])
@pytest.mark.parametrize("bad", BAD_BASE64)
def test_binary_key_or_value_must_be_base64(field: str, bad: Any) -> None:
    doc = {"records": [{field: "YWJj"}, {field: bad}, {field: None}]}
    assert parse_error(orjson.dumps(doc), BINARY) == ErrorCode.JSON_CONVERSION


@pytest.mark.parametrize("bad", [p for p in BAD_BASE64 if isinstance(p.values[0], str)])
def test_header_value_must_be_base64(bad: Any) -> None:
    doc = {"records": [{"value": 1, "headers": [{"key": "h", "value": bad}]}]}
    assert parse_error(orjson.dumps(doc), JSON) == ErrorCode.JSON_CONVERSION


@pytest.mark.parametrize(
    ("values", "valid"),
    [
        (["Q" * 256], True),  # the property test below stays under 13 characters
        (["Q" * 254 + "==", "Q" * 1023 + "="], True),
        (["Q" * 257], False),
        (["Q" * 259 + "=="], False),
        (["QUJD", "Q" * 510], False),
        (["Q" * 255 + "=", "Q" * 4 + "=" * 4], False),
    ],
)
def test_binary_check_of_long_values(values: list[str], valid: bool) -> None:
    doc = {"records": [{"value": v} for v in values]}
    if valid:
        assert parse(doc, BINARY).column("value") == values
    else:
        assert parse_error(orjson.dumps(doc), BINARY) == ErrorCode.JSON_CONVERSION


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.text(alphabet="QUJD+/=-_ \né", max_size=12), min_size=1, max_size=4),
)
@example(["QQQQ="])
def test_binary_check_agrees_with_strict_base64_decoding(values: list[str]) -> None:
    """The column check (one alphabet pass) accepts exactly what strict decoding accepts, in
    whole padded quanta (RFC 4648: Python 3.11's strict mode also takes ``QQQQ=``)."""
    try:
        for value in values:
            binascii.a2b_base64(value, strict_mode=True)
        decodes = all(len(value) % 4 == 0 for value in values)
    except (binascii.Error, ValueError):
        decodes = False
    doc = {"records": [{"value": v} for v in values]}
    if decodes:
        assert parse(doc, BINARY).column("value") == values
    else:
        assert parse_error(orjson.dumps(doc), BINARY) == ErrorCode.JSON_CONVERSION


def test_json_format_does_not_check_base64() -> None:
    body = parse({"records": [{"key": "not base64!", "value": {"x": [1, "YQ"]}}]}, JSON)
    assert body.records == [{"key": "not base64!", "value": {"x": [1, "YQ"]}}]


def test_valid_binary_values_accepted() -> None:
    values = ["", "YQ==", "YWI=", "YWJj", b64(bytes(range(256))), None]
    body = parse({"records": [{"key": v, "value": v} for v in values]}, BINARY)
    assert body.column("value") == values
    assert body.codec is PayloadCodec.BINARY


def test_boundaries_accepted() -> None:
    records = [
        {"timestamp": 0, "partition": 0},
        {"timestamp": MAX_TIMESTAMP, "partition": (1 << 31) - 1},
        {"timestamp": None, "partition": None},
    ]
    body = parse({"records": records}, JSON)
    assert body.fields == {"timestamp", "partition"}
    assert body.explicit_partitions() == [0, (1 << 31) - 1, None]


def test_null_schemas_and_empty_records_accepted() -> None:
    body = parse({"records": [], "key_schema": None, "value_schema_id": None}, JSON)
    assert body.records == []
    assert not body.has_keys()


def test_headers_normalised() -> None:
    doc = {
        "records": [
            {"headers": [{"name": "a", "value": "YQ=="}, {"key": "b"}, {"key": "c", "value": None}]}
        ]
    }
    body = parse(doc, JSON)
    assert body.records[0]["headers"] == [
        {"key": "a", "value": "YQ=="},
        {"key": "b", "value": None},
        {"key": "c", "value": None},
    ]


def test_explicit_partitions_absent() -> None:
    body = parse({"records": [{"value": 1}]}, JSON)
    assert body.explicit_partitions() is None
    assert body.column("value") == [1]
    assert body.column("key") == [None]


# ---------------------------------------------------------------------------- partitioner

# kafka-python's test_partitioner.py vectors (Kafka's Utils.murmur2, as signed ints).
MURMUR2_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
    (b"", 275646681),
]


@pytest.mark.parametrize(("key", "expected"), MURMUR2_VECTORS)
def test_murmur2_matches_kafka(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected & 0xFFFFFFFF


@pytest.mark.parametrize(("key", "expected"), MURMUR2_VECTORS)
@pytest.mark.parametrize("partitions", [1, 3, 7, 100, 1 << 20])
def test_partition_for_key_is_to_positive_mod(key: bytes, expected: int, partitions: int) -> None:
    # toPositive masks the sign bit: it is NOT abs() (e.g. b"21": abs gives another partition).
    assert partition_for_key(key, partitions) == (expected & 0x7FFFFFFF) % partitions


def test_to_positive_is_not_abs() -> None:
    assert partition_for_key(b"21", 1000) == (-973932308 & 0x7FFFFFFF) % 1000 == 340
    assert abs(-973932308) % 1000 != 340


@given(st.lists(st.binary(max_size=40), max_size=30), st.integers(1, 500))
def test_partitions_for_keys_agrees_with_partition_for_key(keys: list[bytes], n: int) -> None:
    assert partitions_for_keys(keys, n) == [partition_for_key(k, n) for k in keys]
    assert partitions_for_keys(iter(keys), n) == [partition_for_key(k, n) for k in keys]


def test_json_keys_hash_their_compact_json_text() -> None:
    keys: list[Any] = ["k", 42, {"a": [1, 2], "b": None}, [True, "x"], None, 1.5]
    body = parse({"records": [{"key": k, "value": 1} for k in keys]}, JSON)
    assert body.has_keys()
    got = body.key_partitions(13)
    expected = [None if k is None else partition_for_key(orjson.dumps(k), 13) for k in keys]
    assert got == expected
    assert got[0] == partition_for_key(b'"k"', 13)
    assert got[2] == partition_for_key(b'{"a":[1,2],"b":null}', 13)


def test_binary_keys_hash_the_decoded_bytes() -> None:
    raw = [b"21", b"foobar", b"", bytes(range(256))]
    body = parse({"records": [{"key": b64(k)} for k in raw] + [{"value": "YQ=="}]}, BINARY)
    assert body.key_partitions(10) == [partition_for_key(k, 10) for k in raw] + [None]


def test_has_keys() -> None:
    assert not parse({"records": [{"value": 1}]}).has_keys()
    assert not parse({"records": [{"key": None}, {"key": None}]}).has_keys()
    assert parse({"records": [{"key": None}, {"key": 0}]}).has_keys()


# ------------------------------------------------------------------------------- encoding


def test_no_timestamps_uses_batch_time() -> None:
    [batch] = encode(parse({"records": [{"value": 1}, {"value": 2}]}))
    assert batch.attributes == 0
    assert (batch.first_timestamp, batch.max_timestamp) == (NOW, NOW)
    assert orjson.loads(batch.payload) == [{"value": 1}, {"value": 2}]
    assert batch.record_count == 2


def test_all_timestamps_given() -> None:
    [batch] = encode(parse({"records": [{"timestamp": 30}, {"timestamp": 50}, {"timestamp": 10}]}))
    assert batch.attributes == ATTR_RECORD_TIMESTAMPS
    assert (batch.first_timestamp, batch.max_timestamp) == (30, 50)


def test_mixed_timestamps_fill_in_now() -> None:
    records = [{"value": 1}, {"timestamp": 5, "value": 2}, {"timestamp": None}]
    [batch] = encode(parse({"records": records}), now_ms=100)
    assert batch.attributes == ATTR_RECORD_TIMESTAMPS
    assert orjson.loads(batch.payload) == [
        {"value": 1, "timestamp": 100},
        {"timestamp": 5, "value": 2},
        {"timestamp": 100},
    ]
    assert (batch.first_timestamp, batch.max_timestamp) == (100, 100)


def test_log_append_time_strips_timestamps() -> None:
    body = parse({"records": [{"timestamp": 5, "value": 1}, {"value": 2}]})
    [batch] = encode(body, log_append_time=True, now_ms=77)
    assert batch.attributes == 0
    assert (batch.first_timestamp, batch.max_timestamp) == (77, 77)
    assert orjson.loads(batch.payload) == [{"value": 1}, {"value": 2}]
    assert body.records[0]["timestamp"] == 5  # the request itself is left alone


def test_positions_select_records() -> None:
    body = parse({"records": [{"value": i} for i in range(6)]})
    [batch] = encode(body, positions=[1, 4, 5])
    assert orjson.loads(batch.payload) == [{"value": 1}, {"value": 4}, {"value": 5}]
    assert list(batch.positions) == [1, 4, 5]


@pytest.mark.parametrize("limit", [48, 49, 57, 64, 100, 200, 333])
@pytest.mark.parametrize("stamped", [False, True])
def test_split_respects_max_batch_bytes(limit: int, stamped: bool) -> None:
    records = [{"value": "x" * (i % 9), "key": i} for i in range(40)]
    if stamped:
        for i, r in enumerate(records):
            r["timestamp"] = 1000 + (i * 7) % 13
    body = parse({"records": records})
    positions = [i for i in range(40) if i % 5 != 3]  # ascending, as the router gives them
    batches = encode(body, positions=positions, max_batch_bytes=limit)
    assert len(batches) > 1
    assert all(len(b.payload) <= limit for b in batches)
    # Each payload is a standalone JSON array of its records, in order, positions kept.
    got_positions = [p for b in batches for p in b.positions]
    assert got_positions == positions
    for batch in batches:
        decoded = orjson.loads(batch.payload)
        assert decoded == [records[p] for p in batch.positions]
        assert batch.record_count == len(decoded)
        if stamped:
            stamps = [r["timestamp"] for r in decoded]
            assert batch.attributes == ATTR_RECORD_TIMESTAMPS
            assert (batch.first_timestamp, batch.max_timestamp) == (stamps[0], max(stamps))
        else:
            assert batch.attributes == 0
    # Greedy: a batch could not have taken the next record too.
    for batch, nxt in itertools.pairwise(batches):
        first_next = orjson.dumps(records[nxt.positions[0]])
        assert len(batch.payload) + 1 + len(first_next) > limit


def test_split_exact_fit() -> None:
    body = parse({"records": [{"value": 1}, {"value": 2}, {"value": 3}]})
    one = len(orjson.dumps([{"value": 1}]))
    two = len(orjson.dumps([{"value": 1}, {"value": 2}]))
    assert [b.record_count for b in encode(body, max_batch_bytes=two)] == [2, 1]
    assert [b.record_count for b in encode(body, max_batch_bytes=two - 1)] == [1, 1, 1]
    assert [b.record_count for b in encode(body, max_batch_bytes=one)] == [1, 1, 1]


def test_single_oversized_record_is_record_too_large() -> None:
    body = parse({"records": [{"value": 1}, {"value": "x" * 100}, {"value": 2}]})
    with pytest.raises(BrokerError) as info:
        encode(body, max_batch_bytes=50)
    assert info.value.code == ErrorCode.RECORD_TOO_LARGE
    one = parse({"records": [{"value": "x" * 100}]})
    size = len(orjson.dumps(one.records))
    assert encode(one, max_batch_bytes=size)[0].payload == orjson.dumps(one.records)
    with pytest.raises(BrokerError) as info:
        encode(one, max_batch_bytes=size - 1)
    assert info.value.code == ErrorCode.RECORD_TOO_LARGE


@pytest.mark.parametrize(
    ("partition", "base", "count"),
    [(0, 0, 1), (3, 0, 5), (7, 1_000_000, 3), (12, (1 << 40) + 5, 10), (2, 9, 2)],
)
def test_offsets_response_fast_form_equals_generic(partition: int, base: int, count: int) -> None:
    fast = encode_offsets_response(partition=partition, base_offset=base, record_count=count)
    generic = encode_offsets_response([(partition, base + i, None, None) for i in range(count)])
    assert orjson.loads(fast) == orjson.loads(generic)
    assert orjson.loads(fast)["offsets"][-1]["offset"] == base + count - 1


def test_offsets_response_empty_and_errors() -> None:
    empty: dict[str, Any] = {"offsets": [], "key_schema_id": None, "value_schema_id": None}
    assert orjson.loads(encode_offsets_response(partition=0, base_offset=0)) == empty
    assert orjson.loads(encode_offsets_response([])) == empty
    doc = orjson.loads(
        encode_offsets_response([(None, None, 50303, "no leader"), (1, 4, None, None)])
    )
    assert doc["offsets"] == [
        {"partition": None, "offset": None, "error_code": 50303, "error": "no leader"},
        {"partition": 1, "offset": 4, "error_code": None, "error": None},
    ]


# ------------------------------------------------------------------------------ rendering


def test_render_derives_offsets_from_batches() -> None:
    first = produce([{"value": i} for i in range(3)], base_offset=10)
    second = produce([{"value": i} for i in range(3, 5)], base_offset=13)
    result = render_batches(first + second, topic="t", partition=4, start_offset=10, fmt=JSON)
    assert [r["offset"] for r in result.records] == [10, 11, 12, 13, 14]
    assert [r["value"] for r in result.records] == [0, 1, 2, 3, 4]
    assert result.next_offset == 15
    assert all(r["topic"] == "t" and r["partition"] == 4 for r in result.records)
    assert set(result.records[0]) == {
        "topic",
        "partition",
        "offset",
        "timestamp",
        "key",
        "value",
        "headers",
    }


def test_render_starts_mid_batch() -> None:
    data = produce([{"value": i} for i in range(4)], base_offset=10) + produce(
        [{"value": i} for i in range(4, 6)], base_offset=14
    )
    result = render_batches(data, topic="t", partition=0, start_offset=12, fmt=JSON)
    assert [(r["offset"], r["value"]) for r in result.records] == [
        (12, 2),
        (13, 3),
        (14, 4),
        (15, 5),
    ]
    result = render_batches(data, topic="t", partition=0, start_offset=15, fmt=JSON)
    assert [(r["offset"], r["value"]) for r in result.records] == [(15, 5)]
    assert result.next_offset == 16
    # A start past the data renders nothing and keeps the position.
    result = render_batches(data, topic="t", partition=0, start_offset=16, fmt=JSON)
    assert (result.records, result.next_offset) == ([], 16)


def test_render_empty() -> None:
    result = render_batches(b"", topic="t", partition=0, start_offset=7, fmt=BINARY)
    assert (result.records, result.next_offset) == ([], 7)


@pytest.mark.parametrize("max_records", [0, 1, 2, 3, 4, 5, 6, 100])
def test_render_max_records(max_records: int) -> None:
    data = produce([{"value": i} for i in range(3)], base_offset=0) + produce(
        [{"value": i} for i in range(3, 6)], base_offset=3
    )
    result = render_batches(
        data, topic="t", partition=0, start_offset=1, fmt=JSON, max_records=max_records
    )
    expected = list(range(1, 6))[:max_records]
    assert [r["offset"] for r in result.records] == expected
    assert result.next_offset == 1 + len(expected)


def test_render_max_bytes_cuts_large_first_batch() -> None:
    records = [{"value": "x" * 50} for _ in range(10)]
    data = produce(records) + produce([{"value": 1}], base_offset=10)
    one = len(orjson.dumps(records[0]))
    result = render_batches(
        data, topic="t", partition=0, start_offset=0, fmt=JSON, max_bytes=3 * one
    )
    assert [r["offset"] for r in result.records] == [0, 1, 2]
    assert result.next_offset == 3
    # Fewer bytes than one record still returns one: a large record never blocks a reader.
    result = render_batches(data, topic="t", partition=0, start_offset=4, fmt=JSON, max_bytes=10)
    assert [r["offset"] for r in result.records] == [4]
    assert result.next_offset == 5
    # A first batch within max_bytes is rendered whole, and so is what follows it.
    result = render_batches(
        data, topic="t", partition=0, start_offset=0, fmt=JSON, max_bytes=10_000
    )
    assert [r["offset"] for r in result.records] == list(range(11))


@pytest.mark.parametrize("fmt", [JSON, BINARY])
def test_render_strict_max_bytes_counts_key_and_value_bytes(fmt: EmbeddedFormat) -> None:
    """Confluent's consumer read: stop before the record whose key and value bytes would make
    the total reach max_bytes, even the first."""
    values: list[Any] = ["a" * 8, "bb", None, "c" * 10]  # JSON text: 10, 4, 0, 12 bytes
    if fmt is BINARY:  # the bytes themselves: 8, 2, 0, 10
        values = [None if v is None else base64.b64encode(v.encode()).decode() for v in values]
    data = produce([{"value": v} for v in values], fmt)
    sizes = [10, 4, 0, 12] if fmt is JSON else [8, 2, 0, 10]
    totals = list(itertools.accumulate(sizes))
    for max_bytes in range(1, totals[-1] + 3):
        got = render(data, fmt=fmt, max_bytes=max_bytes, strict_max_bytes=True)
        expected = sum(1 for total in totals if total < max_bytes)
        assert len(got) == expected, (max_bytes, got)
    assert render(data, fmt=fmt, max_bytes=1, strict_max_bytes=True) == []
    result = render_batches(
        data, topic="t", partition=0, start_offset=1, fmt=fmt, max_bytes=5, strict_max_bytes=True
    )
    assert [r["offset"] for r in result.records] == [1, 2]  # then offset 3 would reach 5 bytes
    assert result.next_offset == 3
    # Not strict (the stateless fetch): the first record comes back whatever its size.
    assert [r["offset"] for r in render(data, fmt=fmt, max_bytes=1)] == [0]


def test_render_strict_max_bytes_counts_keys() -> None:
    data = produce([{"key": "kkkk", "value": 1}, {"key": None, "value": 2}])  # 6+1, 0+1 bytes
    assert render(data, max_bytes=7, strict_max_bytes=True) == []
    assert [r["value"] for r in render(data, max_bytes=8, strict_max_bytes=True)] == [1]
    assert [r["value"] for r in render(data, max_bytes=9, strict_max_bytes=True)] == [1, 2]


def test_render_json_as_binary() -> None:
    data = produce([{"key": "k", "value": {"a": [1, None]}}, {"value": None}, {"key": 5}])
    out = render(data, fmt=BINARY)
    assert out[0]["key"] == b64(b'"k"')
    assert out[0]["value"] == b64(b'{"a":[1,null]}')
    assert (out[1]["key"], out[1]["value"]) == (None, None)
    assert (out[2]["key"], out[2]["value"]) == (b64(b"5"), None)


def test_render_binary_as_json() -> None:
    data = produce([{"key": b64(b'"k"'), "value": b64(b'{"a": [1, 2]}')}, {"value": None}], BINARY)
    out = render(data, fmt=JSON)
    assert (out[0]["key"], out[0]["value"]) == ("k", {"a": [1, 2]})
    assert (out[1]["key"], out[1]["value"]) == (None, None)
    assert render(data, fmt=BINARY)[0]["value"] == b64(b'{"a": [1, 2]}')


@pytest.mark.parametrize("raw", [b"\xff\x00", b"not json", b"", b"{", b'"\xff"'])
def test_render_binary_that_is_not_json_as_json_fails(raw: bytes) -> None:
    data = produce([{"value": b64(b"1")}, {"value": b64(raw)}], BINARY, base_offset=5)
    with pytest.raises(BrokerError) as info:
        render(data, start=5, fmt=JSON)
    assert info.value.code == ErrorCode.JSON_CONVERSION
    assert "offset 6" in info.value.message
    # The same data is fine as binary, and the first record alone converts.
    assert render(data, start=5, fmt=BINARY)[1]["value"] == b64(raw)
    assert render(data, start=5, fmt=JSON, max_records=1)[0]["value"] == 1


def test_render_timestamps() -> None:
    plain = produce([{"value": 1}, {"value": 2}], now_ms=123)
    assert [r["timestamp"] for r in render(plain)] == [123, 123]
    stamped = produce([{"value": 1, "timestamp": 7}, {"value": 2}, {"timestamp": 9}], now_ms=123)
    assert [r["timestamp"] for r in render(stamped)] == [7, 123, 9]
    appended = produce([{"value": 1, "timestamp": 7}], now_ms=55, log_append_time=True)
    assert [r["timestamp"] for r in render(appended)] == [55]


def test_render_headers() -> None:
    headers = [{"key": "a", "value": b64(b"1")}, {"key": "b", "value": None}]
    data = produce([{"value": 1, "headers": headers}, {"value": 2}])
    out = render(data)
    assert out[0]["headers"] == headers
    assert out[1]["headers"] == []
    assert render(data, fmt=BINARY)[0]["headers"] == headers


def test_render_null_optional_fields_as_defaults() -> None:
    # Explicit nulls mean "not given": they must not leak into fetched records as nulls.
    data = produce([{"value": 1, "partition": None, "headers": None, "timestamp": None}])
    result = render_batches(data, topic="t", partition=3, start_offset=0, fmt=JSON)
    [record] = result.records
    assert record["partition"] == 3
    assert record["headers"] == []
    assert record["timestamp"] == NOW


def test_render_explicit_partition() -> None:
    data = produce([{"value": 1, "partition": 2}])
    assert (
        render_batches(data, topic="t", partition=2, start_offset=0, fmt=JSON).records[0][
            "partition"
        ]
        == 2
    )


# ------------------------------------------------------------------------ property test

_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=10,
)
_B64_VALUES = st.none() | st.binary(max_size=40).map(b64)
_HEADERS = st.lists(st.fixed_dictionaries({"key": _TEXT, "value": _B64_VALUES}), max_size=3)


@st.composite
def _records(draw: st.DrawFn, fmt: EmbeddedFormat) -> list[dict[str, Any]]:
    values = _JSON_VALUES if fmt is JSON else _B64_VALUES
    records = []
    for _ in range(draw(st.integers(1, 12))):
        record: dict[str, Any] = {}
        for name, strategy in (
            ("key", values),
            ("value", values),
            ("headers", st.none() | _HEADERS),
            ("timestamp", st.none() | st.integers(0, MAX_TIMESTAMP)),
            ("partition", st.none() | st.just(1)),
        ):
            if draw(st.booleans()):
                record[name] = draw(strategy)
        records.append(record)
    return records


@st.composite
def _requests(draw: st.DrawFn) -> tuple[EmbeddedFormat, list[dict[str, Any]]]:
    fmt = draw(st.sampled_from([JSON, BINARY]))
    return fmt, draw(_records(fmt))


def _as_stored(record: dict[str, Any], body: ProduceBody, log_append_time: bool) -> dict[str, Any]:
    """``record`` as encode_partition_records writes it (timestamps stamped or stripped)."""
    if log_append_time:
        return {k: v for k, v in record.items() if k != "timestamp"}
    if "timestamp" in body.fields and record.get("timestamp") is None:
        return record | {"timestamp": NOW}
    return record


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _requests(),
    st.integers(0, 1 << 40),
    st.sampled_from([200, 600, 1 << 20]),
    st.booleans(),
    st.integers(0, 12),
)
def test_round_trip(
    produced: tuple[EmbeddedFormat, list[dict[str, Any]]],
    base_offset: int,
    max_batch_bytes: int,
    log_append_time: bool,
    start_index: int,
) -> None:
    fmt, records = produced
    wire = orjson.dumps({"records": records})
    body = parse_produce_body(wire, fmt)
    try:
        batches = encode(body, max_batch_bytes=max_batch_bytes, log_append_time=log_append_time)
    except BrokerError as exc:
        assert exc.code == ErrorCode.RECORD_TOO_LARGE
        assert max(len(orjson.dumps(_as_stored(r, body, log_append_time))) for r in records) + 2 > (
            max_batch_bytes
        )
        return
    assert all(len(b.payload) <= max_batch_bytes for b in batches)
    data = stored(batches, body.codec, base_offset)
    start = base_offset + min(start_index, len(records))
    result = render_batches(data, topic="t", partition=1, start_offset=start, fmt=fmt)
    expected = records[start - base_offset :]
    assert [r["offset"] for r in result.records] == list(range(start, base_offset + len(records)))
    assert result.next_offset == base_offset + len(records)
    for got, sent in zip(result.records, expected, strict=True):
        assert got["key"] == sent.get("key")
        assert got["value"] == sent.get("value")
        assert got["headers"] == (sent.get("headers") or [])
        if log_append_time or sent.get("timestamp") is None:
            assert got["timestamp"] == NOW
        else:
            assert got["timestamp"] == sent["timestamp"]
        assert (got["topic"], got["partition"]) == ("t", 1)
    if fmt is JSON:
        # The same stored records fetched as binary carry the compact JSON text as bytes.
        as_binary = render_batches(data, topic="t", partition=1, start_offset=start, fmt=BINARY)
        for got, sent in zip(as_binary.records, expected, strict=True):
            for name in ("key", "value"):
                if sent.get(name) is None:
                    assert got[name] is None
                else:
                    assert base64.b64decode(got[name]) == orjson.dumps(sent[name])


# ------------------------------------------------------------------- offset_for_timestamp


def test_offset_for_timestamp(tmp_path: Path) -> None:
    clock = _Clock()
    config = TopicConfig.from_broker(
        BrokerConfig.build({"broker.id": 1, "zookeeper.connect": "zk:1", "data.dir": "/x"})
    )
    plog = PartitionLog.open(tmp_path / "t-0", "t", 0, config, clock=clock)
    try:
        batches = [
            # (records, now): per-record timestamps, not monotonic inside the batch
            ([{"timestamp": 100}, {"timestamp": 300}, {"timestamp": 200}], 0),
            ([{"value": 1}, {"value": 2}], 400),  # batch time only
            ([{"timestamp": 500}, {"timestamp": 450}], 0),
        ]
        for records, now in batches:
            for batch in encode(parse({"records": records}), now_ms=now):
                plog.append_as_leader(
                    batch.payload,
                    record_count=batch.record_count,
                    attributes=batch.attributes | PayloadCodec.JSON,
                    first_timestamp=batch.first_timestamp,
                    max_timestamp=batch.max_timestamp,
                    leader_epoch=0,
                )
        assert offset_for_timestamp(plog, 0) is None  # nothing committed yet
        plog.update_high_watermark(plog.log_end_offset)
        assert offset_for_timestamp(plog, 0) == (0, 100)
        assert offset_for_timestamp(plog, 100) == (0, 100)
        assert offset_for_timestamp(plog, 150) == (1, 300)  # first record at or after, by offset
        assert offset_for_timestamp(plog, 301) == (3, 400)
        assert offset_for_timestamp(plog, 401) == (5, 500)
        assert offset_for_timestamp(plog, 460) == (5, 500)
        assert offset_for_timestamp(plog, 501) is None
        plog.truncate_to(5)  # the last batch is gone
        assert offset_for_timestamp(plog, 401) is None
    finally:
        plog.close()


class _Clock:
    def now_ms(self) -> int:
        return 0

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        return None


# ---------------------------------------------------------------- storing the request's bytes


@pytest.mark.parametrize(
    "body",
    [
        b'{"records":[{"value":{"a":1}},{"key":"k","value":[1,2]}]}',
        b'{ "records" : [\n  {"value": "x [ ] y"},\n  {"value": null}\n] }\n',
    ],
)
def test_plain_records_are_stored_as_the_request_wrote_them(body: bytes) -> None:
    parsed = parse_produce_body(body, EmbeddedFormat.JSON)
    assert parsed.raw_records is not None
    assert orjson.loads(parsed.raw_records) == parsed.records
    (batch,) = encode_partition_records(
        parsed, range(len(parsed.records)), now_ms=5, log_append_time=False, max_batch_bytes=1000
    )
    assert batch.payload == parsed.raw_records


@pytest.mark.parametrize(
    "doc",
    [
        {"records": [{"value": 1, "timestamp": 7}]},
        {"records": [{"value": 1, "partition": 0}]},
        {"records": [{"value": 1, "headers": None}]},
        {"records": [{"value": 1}], "value_schema_id": None},
    ],
)
def test_records_the_broker_rewrites_are_encoded_again(doc: dict[str, Any]) -> None:
    parsed = parse_produce_body(orjson.dumps(doc), EmbeddedFormat.JSON)
    assert parsed.raw_records is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"records":[{"value":1}],"records":[{"value":2},{"value":3}]}',
        b'{"records":[{"value":1}],"rec\\u006frds":[{"value":2},{"value":3}]}',
        b'{"rec\\u006frds":[{"value":1}],"records":[{"value":2},{"value":3}]}',
        b'{"rec\\u006frds":[{"value":"]"}]}',
        b'{"records":[{"value":{"records":[1]}}]}',
    ],
)
def test_a_repeated_or_escaped_records_key_stores_what_was_parsed(body: bytes) -> None:
    # Regression: the raw slice once spanned both arrays of a repeated key, and every later
    # read of the batch failed (an unreadable payload, stored and replicated).
    parsed = parse_produce_body(body, EmbeddedFormat.JSON)
    assert parsed.records == orjson.loads(body)["records"]
    batches = encode_partition_records(
        parsed, range(len(parsed.records)), now_ms=5, log_append_time=False, max_batch_bytes=1000
    )
    assert [r for b in batches for r in orjson.loads(b.payload)] == parsed.records


def test_a_request_split_over_partitions_or_batches_is_encoded_per_part() -> None:
    body = orjson.dumps({"records": [{"value": "v" * 50} for _ in range(4)]})
    parsed = parse_produce_body(body, EmbeddedFormat.JSON)
    (half,) = encode_partition_records(
        parsed, [0, 2], now_ms=5, log_append_time=False, max_batch_bytes=1000
    )
    assert orjson.loads(half.payload) == [parsed.records[0], parsed.records[2]]
    split = encode_partition_records(
        parsed, range(4), now_ms=5, log_append_time=False, max_batch_bytes=150
    )
    assert [r for b in split for r in orjson.loads(b.payload)] == parsed.records
