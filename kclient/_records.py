"""Decode stored batches (``GET .../batches``) into :class:`ConsumerRecord` tuples.

The format is documented in :mod:`kclient.protocol`: a 61-byte header, then a JSON array of
record objects; record i has offset ``base_offset + i``. Each batch's payload is parsed by one
``orjson.loads``; columns are pulled out with ``map(dict.get, ...)`` and records are built with
``tuple.__new__`` over ``zip``, so no Python code runs per record on the common path (no
headers, and a bytes, str or JSON deserializer).

Pure functions; safe from any thread.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from itertools import count, repeat
from typing import Any, Final, NamedTuple, cast

import orjson

from kclient.errors import SerializationError
from kclient.protocol import ATTR_RECORD_TIMESTAMPS, BATCH_HEADER, BATCH_HEADER_SIZE, PayloadCodec
from kclient.serde import Deserializer, bytes_deserializer, json_deserializer, str_deserializer
from kclient.structs import ConsumerRecord, Header

__all__ = ["Decoded", "decode_batches"]

_CODEC_MASK: Final = 0b111
_NO_HEADERS: Final[tuple[Header, ...]] = ()
_a2b: Final = binascii.a2b_base64


class Decoded(NamedTuple):
    records: list[ConsumerRecord]
    next_offset: int
    """The offset after the last decoded record (``start`` when there was none)."""
    size: int
    """Bytes of the batches decoded."""


def _column(records: list[dict[str, Any]], name: str) -> list[Any]:
    return list(map(dict.get, records, repeat(name)))


def _binary(values: list[Any]) -> list[bytes | None]:
    if None not in values:
        return list(map(_a2b, values))
    return [None if v is None else _a2b(v) for v in values]


def _json_bytes(values: list[Any]) -> list[bytes | None]:
    if None not in values:
        return list(map(orjson.dumps, values))
    return [None if v is None else orjson.dumps(v) for v in values]


def _deserialize(values: list[bytes | None], deserializer: Deserializer) -> list[Any]:
    if deserializer is bytes_deserializer:
        return values
    if deserializer is str_deserializer:
        if None not in values:
            return list(map(bytes.decode, cast(list[bytes], values)))
        return [None if v is None else v.decode() for v in values]
    return [None if v is None else deserializer(v) for v in values]


def _field(raw: list[Any], codec: int, deserializer: Deserializer) -> list[Any]:
    """Keys or values of one batch, deserialized."""
    if raw.count(None) == len(raw):
        return raw
    if codec == PayloadCodec.JSON:
        if deserializer is json_deserializer:
            return raw  # already the JSON document
        return _deserialize(_json_bytes(raw), deserializer)
    return _deserialize(_binary(raw), deserializer)


def _headers(raw: list[Any]) -> list[tuple[Header, ...]] | Any:
    if raw.count(None) == len(raw):
        return repeat(_NO_HEADERS)
    return [
        tuple((h["key"], None if h["value"] is None else _a2b(h["value"])) for h in headers)
        if headers
        else _NO_HEADERS
        for headers in raw
    ]


def decode_batches(
    data: bytes,
    *,
    topic: str,
    partition: int,
    start: int,
    key_deserializer: Deserializer,
    value_deserializer: Deserializer,
) -> Decoded:
    """Records at offsets >= ``start`` in ``data`` (whole batches as the broker stored them)."""
    out: list[ConsumerRecord] = []
    view = memoryview(data)
    position = 0
    next_offset = start
    new = cast(Callable[..., ConsumerRecord], tuple.__new__)
    while position + BATCH_HEADER_SIZE <= len(view):
        header = BATCH_HEADER.unpack_from(view, position)
        base_offset, length, attributes, record_count = header[0], header[1], header[5], header[6]
        first_timestamp, payload_length = header[7], header[12]
        end = position + 12 + length
        if end > len(view):
            break  # a partial batch at the end of a size-limited read
        payload_start = end - payload_length
        if base_offset + record_count > start:
            records = orjson.loads(view[payload_start:end])
            skip = start - base_offset if base_offset < start else 0
            if skip:
                records = records[skip:]
            codec = attributes & _CODEC_MASK
            try:
                keys = _field(_column(records, "key"), codec, key_deserializer)
                values = _field(_column(records, "value"), codec, value_deserializer)
            except SerializationError:
                raise
            except Exception as exc:
                raise SerializationError(
                    f"cannot deserialize a record of {topic}-{partition} near offset "
                    f"{base_offset + skip}: {exc}"
                ) from exc
            if attributes & ATTR_RECORD_TIMESTAMPS:
                stamps: Any = _column(records, "timestamp")
            else:
                stamps = repeat(first_timestamp)
            first = base_offset + skip
            out.extend(
                map(
                    new,
                    repeat(ConsumerRecord),
                    zip(
                        repeat(topic),
                        repeat(partition),
                        count(first),
                        stamps,
                        keys,
                        values,
                        _headers(_column(records, "headers")),
                    ),
                )
            )
            next_offset = first + len(records)
        position = end
    return Decoded(out, next_offset, position)
