"""The workers' fast path, parse_plain_body: it accepts only bodies that parse_produce_body
accepts and stores as raw records, with the same count, keys and stored bytes. Checked on
chosen bodies and on generated ones (hypothesis), against parse_produce_body itself."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kbroker.errors import BrokerError
from kbroker.records import ProduceBody, parse_plain_body, parse_produce_body
from kclient.protocol import EmbeddedFormat, PayloadCodec

JSON, BINARY, TEXT = EmbeddedFormat.JSON, EmbeddedFormat.BINARY, EmbeddedFormat.TEXT


def _full(body: bytes, fmt: EmbeddedFormat) -> ProduceBody | BrokerError:
    try:
        return parse_produce_body(body, fmt)
    except BrokerError as exc:
        return exc


def _agrees(body: bytes, fmt: EmbeddedFormat) -> bool:
    """The property: a plain parse is a raw parse_produce_body parse of the same records."""
    plain = parse_plain_body(body, fmt)
    if plain is None:
        return False
    full = _full(body, fmt)
    assert isinstance(full, ProduceBody), f"plain accepted what the full parse refuses: {full}"
    assert full.raw_records is not None, "plain accepted a body the full parse re-encodes"
    assert bytes(plain.payload) == bytes(full.raw_records)
    assert plain.record_count == len(full.records)
    assert plain.has_keys == full.has_keys()
    assert plain.codec == full.codec
    assert full.explicit_partitions() is None
    return True


def _body(records: list[Any]) -> bytes:
    return orjson.dumps({"records": records})


def test_the_benchmarks_body_is_plain() -> None:
    body = _body([{"value": "x" * 100}] * 1000)
    assert _agrees(body, JSON)
    plain = parse_plain_body(body, JSON)
    assert plain is not None and plain.record_count == 1000 and not plain.has_keys
    assert plain.codec is PayloadCodec.JSON
    assert bytes(plain.payload) == orjson.dumps([{"value": "x" * 100}] * 1000)


def test_keys_whitespace_nulls_and_nested_values() -> None:
    assert _agrees(b'{ "records" : [ {"key": "k", "value": {"a": [1, 2.5e3, null]}} ] }', JSON)
    assert _agrees(b'{"records":[{"key":null,"value":1},{"value":true},{}]}', JSON)
    plain = parse_plain_body(b'{"records":[{"key":null,"value":1},{"value":"key"}]}', JSON)
    assert plain is not None and not plain.has_keys  # a null key, and "key" as a value
    assert _agrees(b'{"records":[{"value":"caf\xc3\xa9 \xe2\x82\xac"}]}', JSON)


def test_binary_records_are_checked_as_base64() -> None:
    b64 = base64.b64encode(b"payload").decode()
    assert _agrees(_body([{"key": b64, "value": b64}, {"value": None}]), BINARY)
    for bad in ([{"value": "not base64!"}], [{"value": 5}], [{"key": "abc", "value": b64}]):
        assert parse_plain_body(_body(bad), BINARY) is None
        assert isinstance(_full(_body(bad), BINARY), BrokerError)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"records":[]}', "no records"),
        (b'{"records":[{"value":1,"partition":0}]}', "a partition"),
        (b'{"records":[{"value":1,"timestamp":5}]}', "a timestamp"),
        (b'{"records":[{"value":1,"headers":[]}]}', "headers"),
        (b'{"records":[{"value":1}],"value_schema_id":null}', "another envelope field"),
        (b'{"records":[{"value":"a\\"b"}]}', "an escape"),
        (b'{"records":[{"value":1}],"records":[{"value":2}]}', "a repeated records key"),
        (b'{"records":[{"value":1e999}]}', "a number out of range"),
        (b'{"records":[{"value":"\xff"}]}', "invalid UTF-8"),
        (b'{"records":[{"value":"\xed\xa0\x80"}]}', "an encoded surrogate"),
        (b'{"records":[{"value":' + b"[" * 1100 + b"]" * 1100 + b"}]}", "too deep"),
        (b'{"records":[{"value":01}]}', "not JSON"),
        (b'{"records":[{"value":1}]} x', "trailing bytes"),
        (b'{"records":[5]}', "a record that is not an object"),
        (b'{"records":{"value":1}}', "records not an array"),
        (b"[]", "not an object"),
    ],
)
def test_other_bodies_are_left_to_the_full_parse(body: bytes, why: str) -> None:
    assert parse_plain_body(body, JSON) is None, why
    full = _full(body, JSON)
    assert isinstance(full, BrokerError) or full.raw_records is None or not full.records, why


def test_text_bodies_are_converted_by_the_full_parse() -> None:
    assert parse_plain_body(_body([{"value": "hello"}]), TEXT) is None


def test_a_plain_body_too_large_for_one_batch_is_left_to_the_split() -> None:
    plain = parse_plain_body(_body([{"value": "x" * 100}] * 10), JSON)
    assert plain is not None
    assert plain.encode(now_ms=7, max_batch_bytes=100) is None
    batch = plain.encode(now_ms=7, max_batch_bytes=1 << 20)
    assert batch is not None
    assert (batch.record_count, batch.first_timestamp, batch.max_timestamp) == (10, 7, 7)
    assert list(batch.positions) == list(range(10)) and batch.attributes == 0


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
_fields = st.sampled_from(["key", "value", "partition", "timestamp", "headers", "other"])
_record = st.dictionaries(_fields, _json, max_size=3) | _json


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(_record, max_size=5), extra=st.booleans())
def test_generated_bodies(records: list[Any], extra: bool) -> None:
    doc: dict[str, Any] = {"records": records}
    if extra:
        doc["key_schema"] = None
    # The standard library's writer: spaces, big integers, "Infinity", unescaped non-ASCII.
    body = json.dumps(doc, ensure_ascii=False).encode()
    _agrees(body, JSON)
    _agrees(body, BINARY)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=60), cut=st.integers(min_value=0, max_value=80))
def test_mutilated_bodies(data: bytes, cut: int) -> None:
    """Bytes spliced into a valid body: whatever plain accepts, the full parse accepts too."""
    body = b'{"records":[{"key":"a","value":[1,{"b":2}]},{"value":"c"}]}'
    mutated = body[:cut] + data + body[cut:]
    _agrees(mutated, JSON)
    _agrees(mutated, BINARY)


_safe_text = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'))
_safe_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _safe_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(_safe_text, children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(
        st.fixed_dictionaries({}, optional={"key": _safe_json, "value": _safe_json}),
        min_size=1,
        max_size=5,
    )
)
def test_generated_plain_bodies_take_the_fast_path(records: list[Any]) -> None:
    body = json.dumps({"records": records}, ensure_ascii=False).encode()
    assert _agrees(body, JSON)
