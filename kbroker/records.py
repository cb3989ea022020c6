"""Records as JSON: produce bodies to batch payloads, and stored batches back to records.

A batch payload (see kbroker/log/batch.py) is a compact JSON array of the record objects the
client sent, each ``{"key"?, "value"?, "headers"?, "timestamp"?, "partition"?}``. Under the
``json`` codec keys and values are JSON documents; under ``binary`` they are base64 strings.
Storing what the client sent keeps the produce path free of per-record Python: the body is parsed
once by orjson (C), checked with C-level ``map``/``set`` operations, and the payload is one
``orjson.dumps`` of the records. Offsets are derived on read (``base_offset + index``) and the
output records are built in one pass over each batch.

The bytes of a record key or value, as Kafka sees them, are its compact JSON text under ``json``
(what Confluent's JSON serializer writes) and the base64-decoded bytes under ``binary``. Keyed
records are partitioned with Kafka's murmur2 over those bytes.

Everything here is pure and synchronous; safe from any thread.
"""

from __future__ import annotations

import base64
import binascii
import operator
import string
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import accumulate, count, repeat
from typing import Any, Final

import msgspec
import orjson

from kbroker.errors import BrokerError, ErrorCode, InvalidRequestError
from kbroker.log.batch import ATTR_RECORD_TIMESTAMPS, BatchHeader, PayloadCodec, iter_batches
from kbroker.log.partition_log import PartitionLog
from kclient.protocol import EmbeddedFormat, partitions_for_keys

__all__ = [
    "MAX_TIMESTAMP",
    "PartitionRecords",
    "PlainBody",
    "ProduceBody",
    "encode_offsets_response",
    "encode_partition_records",
    "offset_for_timestamp",
    "parse_plain_body",
    "parse_produce_body",
    "render_batches",
]

RECORD_FIELDS: Final = frozenset({"key", "value", "partition", "headers", "timestamp"})
ENVELOPE_FIELDS: Final = frozenset(
    {"records", "key_schema", "key_schema_id", "value_schema", "value_schema_id"}
)
#: Latest timestamp accepted: 9999-12-31T23:59:59.999Z.
MAX_TIMESTAMP: Final = 253_402_300_799_999
#: JSON array overhead of a payload: brackets.
_ARRAY_OVERHEAD: Final = 2

_CODEC_OF_FORMAT: Final = {
    EmbeddedFormat.JSON: PayloadCodec.JSON,
    EmbeddedFormat.BINARY: PayloadCodec.BINARY,
}
_B64_DECODE: Final = partial(binascii.a2b_base64, strict_mode=True)
_BASE64_ALPHABET: Final = (string.ascii_letters + string.digits + "+/").encode("ascii")


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BrokerError(f"Malformed JSON: {exc}", ErrorCode.MALFORMED_REQUEST) from exc


@dataclass(frozen=True, slots=True)
class ProduceBody:
    """A validated produce request: its records and what they carry.

    Invariants: ``records`` is a list (empty when the request sent none) of dicts whose keys
    are RECORD_FIELDS; under ``binary`` every non-null key and value is valid base64; every
    ``timestamp`` is an int in [0, MAX_TIMESTAMP] or null; every ``partition`` present is an
    int >= 0; headers present are normalised to ``[{"key": str, "value": base64 | null}]``.
    """

    records: list[dict[str, Any]]
    format: EmbeddedFormat
    fields: frozenset[str]
    raw_records: memoryview | None = None
    """The request's own ``records`` array text, when storing it as it came is the same as
    storing ``records`` re-encoded: records of only ``key`` and ``value`` (nothing is added or
    rewritten), in a body whose only field is ``records``. It is valid JSON (the whole body was
    parsed), so it is stored without being encoded again."""

    @property
    def codec(self) -> PayloadCodec:
        return _CODEC_OF_FORMAT[self.format]

    def column(self, name: str) -> list[Any]:
        """The value of field ``name`` of every record (None where absent)."""
        return list(map(dict.get, self.records, repeat(name)))

    def has_keys(self) -> bool:
        if "key" not in self.fields:
            return False
        keys = self.column("key")
        return keys.count(None) != len(keys)

    def explicit_partitions(self) -> list[int | None] | None:
        """Per-record ``partition`` fields, or None when no record names one."""
        if "partition" not in self.fields:
            return None
        return self.column("partition")

    def key_partitions(self, num_partitions: int) -> list[int | None]:
        """Kafka's murmur2 partition of each record's key bytes (None for null keys)."""
        keys = self.column("key")
        present = [i for i, k in enumerate(keys) if k is not None]
        out: list[int | None] = [None] * len(keys)
        key_bytes: Iterable[bytes]
        if self.format is EmbeddedFormat.BINARY:
            key_bytes = map(_B64_DECODE, map(keys.__getitem__, present))
        else:
            key_bytes = map(orjson.dumps, map(keys.__getitem__, present))
        for i, p in zip(present, partitions_for_keys(key_bytes, num_partitions), strict=True):
            out[i] = p
        return out


def _records_of(doc: Any) -> list[Any]:
    """The ``records`` array of a produce envelope, after checking the envelope."""
    if not isinstance(doc, dict):
        raise InvalidRequestError("The request body must be a JSON object with a records array")
    unknown = doc.keys() - ENVELOPE_FIELDS
    if unknown:
        raise InvalidRequestError(f"Unknown field(s) in request body: {', '.join(sorted(unknown))}")
    for schema_field in ("key_schema", "key_schema_id", "value_schema", "value_schema_id"):
        if doc.get(schema_field) is not None:
            raise InvalidRequestError(
                f"{schema_field} is not supported: kbroker has no schema registry; use the "
                "json or binary embedded format"
            )
    records = doc.get("records")
    if not isinstance(records, list):
        raise InvalidRequestError("records must be an array of record objects")
    return records


def parse_produce_body(body: bytes, fmt: EmbeddedFormat) -> ProduceBody:
    """Parse and validate a REST Proxy v2 produce body. Raises BrokerError with a 4xx code.

    A ``text`` body's string keys and values are turned into the binary format's base64 of
    their UTF-8 bytes (a per-record pass: text is not the fast path)."""
    doc = _loads(body)
    records = _records_of(doc)
    if not records:
        return ProduceBody(records=[], format=fmt, fields=frozenset())
    if set(map(type, records)) != {dict}:
        raise InvalidRequestError("every element of records must be a JSON object")
    fields = frozenset(set().union(*records))
    unknown = fields - RECORD_FIELDS
    if unknown:
        raise InvalidRequestError(f"Unknown record field(s): {', '.join(sorted(unknown))}")
    if fmt is EmbeddedFormat.TEXT:
        _text_to_binary(records, fields)
        fmt, raw = EmbeddedFormat.BINARY, None
    else:
        raw = _raw_records(body, doc, fields)
    parsed = ProduceBody(records=records, format=fmt, fields=fields, raw_records=raw)
    if fmt is EmbeddedFormat.BINARY:
        for name in ("key", "value"):
            if name in fields:
                _check_base64_column(parsed.column(name), name)
    if "timestamp" in fields:
        _check_int_column(parsed.column("timestamp"), "timestamp", 0, MAX_TIMESTAMP)
    if "partition" in fields:
        _check_int_column(parsed.column("partition"), "partition", 0, (1 << 31) - 1)
    if "headers" in fields:
        _normalise_headers(records)
    for name in _NULL_MEANS_ABSENT & fields:
        _drop_nulls(records, name)
    return parsed


def _raw_records(body: bytes, doc: dict[str, Any], fields: frozenset[str]) -> memoryview | None:
    if len(doc) != 1 or not fields <= _RAW_FIELDS or not _one_unescaped_records_key(body):
        return None
    return _records_array(body)


def _one_unescaped_records_key(body: bytes) -> bool:
    """Whether the body has no escapes and names "records" once, so that the slice of
    _records_array is the one array the parser kept. A repeated key: parsers keep the last
    "records", and the slice would span every array (an unreadable payload). Written without
    escapes, a repeat shows as a second "records"; with escapes ("rec\u006frds") it need not,
    so such bodies are re-encoded."""
    # (rfind: 3x faster than count over a body full of quotes)
    return b"\\" not in body and body.rfind(b'"records"') == body.find(b'"records"')


def _records_array(body: bytes) -> memoryview:
    """The ``records`` array's text of a valid body whose only key is ``records``: it is
    `{ "records" : [ ... ] }` with optional whitespace, so nothing before the array can hold a
    "[" and nothing after it a "]"."""
    return memoryview(body)[body.index(b"[") : body.rindex(b"]") + 1]  # a view: no copy


class _PlainRecord(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A record of a plain body: only ``key`` and ``value`` (absent is null)."""

    key: object = None
    value: object = None


class _PlainEnvelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    records: list[_PlainRecord]


_PLAIN_ENVELOPE: Final = msgspec.json.Decoder(_PlainEnvelope)


@dataclass(frozen=True, slots=True)
class PlainBody:
    """A produce body of the common form, validated without a Python dict per record:
    ``{"records": [...]}`` with records of only ``key`` and ``value``, in the JSON or binary
    format, written without escapes. Its records are stored as the request wrote them
    (``payload``, a view of the request's ``records`` array), exactly as parse_produce_body
    would store them (``raw_records``)."""

    payload: memoryview
    record_count: int
    has_keys: bool
    codec: PayloadCodec

    def encode(self, *, now_ms: int, max_batch_bytes: int) -> PartitionRecords | None:
        """The records as one batch stamped ``now_ms``; None if they exceed max_batch_bytes
        (parse_produce_body and encode_partition_records split them)."""
        if len(self.payload) > max_batch_bytes:
            return None
        count = self.record_count
        return _unstamped(self.payload, count, range(count), now_ms)


def parse_plain_body(body: bytes, fmt: EmbeddedFormat) -> PlainBody | None:
    """``body`` as a :class:`PlainBody`, or None when it is not one (another form, or not
    valid): parse_produce_body then gives the answer, records or error. The fast path of
    the HTTP workers: msgspec checks the records against their schema in one C pass and makes
    a small struct per record, which took about half the time of orjson's dict per record
    (orjson's parse and the dicts' release were 40% of a worker's produce time).

    Accepts only bodies that parse_produce_body accepts and stores as raw records, with the
    same record count and keys (tests/unit/test_plain_body.py checks this on generated
    bodies). msgspec is at least as strict as orjson on what is stored: UTF-8, number range
    and nesting depth."""
    if fmt is EmbeddedFormat.TEXT or not _one_unescaped_records_key(body):
        return None
    try:
        records = _PLAIN_ENVELOPE.decode(body).records
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None  # not this form, or not valid: parse_produce_body says which
    if not records:
        return None
    if fmt is EmbeddedFormat.BINARY:
        keys = [r.key for r in records]
        try:
            _check_base64_column([r.value for r in records], "value")
            _check_base64_column(keys, "key")
        except BrokerError:
            return None
        has_keys = keys.count(None) != len(keys)
    else:
        has_keys = b'"key"' in body and any(r.key is not None for r in records)
    return PlainBody(
        payload=_records_array(body),
        record_count=len(records),
        has_keys=has_keys,
        codec=_CODEC_OF_FORMAT[fmt],
    )


#: Records with only these fields are stored as the request wrote them.
_RAW_FIELDS: Final = frozenset({"key", "value"})


#: Optional record fields whose explicit ``null`` means "not given": dropped at parse time so
#: that stored payloads never carry them and fetched records show the defaults (the partition
#: read from, no headers) instead of nulls.
_NULL_MEANS_ABSENT: Final = frozenset({"partition", "headers"})


def _text_to_binary(records: list[dict[str, Any]], fields: frozenset[str]) -> None:
    for name in ("key", "value"):
        if name not in fields:
            continue
        for record in records:
            text = record.get(name)
            if text is None:
                continue
            if not isinstance(text, str):
                raise BrokerError(
                    f"record {name} must be a string in the text format", ErrorCode.JSON_CONVERSION
                )
            record[name] = base64.b64encode(text.encode()).decode("ascii")


def _drop_nulls(records: list[dict[str, Any]], name: str) -> None:
    if None not in map(dict.get, records, repeat(name, len(records)), repeat(0)):
        return  # the common case: every record that has the field gives it a value
    for i, record in enumerate(records):
        if name in record and record[name] is None:
            records[i] = {k: v for k, v in record.items() if k != name}


def _check_int_column(values: list[Any], name: str, low: int, high: int) -> None:
    present = [v for v in values if v is not None]
    if not present:
        return
    if set(map(type, present)) != {int}:
        raise InvalidRequestError(f"record {name} must be an integer")
    if min(present) < low or max(present) > high:
        raise InvalidRequestError(f"record {name} must be between {low} and {high}")


def _check_base64_column(values: list[Any], name: str) -> None:
    """Check every non-null value is standard, padded base64, with C-level passes only."""
    present = [v for v in values if v is not None]
    if not present:
        return
    if set(map(type, present)) != {str}:
        raise BrokerError(
            f"record {name} must be a base64 string in the binary format",
            ErrorCode.JSON_CONVERSION,
        )
    lengths = list(map(len, present))
    stripped = list(map(str.rstrip, present, repeat("=")))
    paddings = map(operator.sub, lengths, map(len, stripped))
    if any(map(operator.mod, lengths, repeat(4))) or max(paddings) > 2:
        raise BrokerError(f"record {name} is not valid base64", ErrorCode.JSON_CONVERSION)
    # The alphabet, in one C pass over all values: deleting every alphabet byte leaves nothing.
    # (6x faster than decoding them, which also builds the bytes only to throw them away.)
    joined = "".join(stripped)
    if not joined.isascii() or joined.encode("ascii").translate(None, _BASE64_ALPHABET):
        raise BrokerError(f"record {name} is not valid base64", ErrorCode.JSON_CONVERSION)


def _normalise_headers(records: list[dict[str, Any]]) -> None:
    """Check headers and rewrite Confluent v3's ``name`` to ``key`` (slow path: rare field)."""
    for record in records:
        headers = record.get("headers")
        if headers is None:
            continue
        if not isinstance(headers, list):
            raise InvalidRequestError("record headers must be an array")
        normalised = []
        for header in headers:
            if not isinstance(header, dict) or not header.keys() <= {"key", "name", "value"}:
                raise InvalidRequestError(
                    'each header must be an object {"key": string, "value": base64|null}'
                )
            name = header.get("key", header.get("name"))
            value = header.get("value")
            if not isinstance(name, str) or not (value is None or isinstance(value, str)):
                raise InvalidRequestError("header key must be a string and value base64 or null")
            if value is not None:
                _check_base64_column([value], "header value")
            normalised.append({"key": name, "value": value})
        record["headers"] = normalised


# ----------------------------------------------------------------------------- to payloads


@dataclass(frozen=True, slots=True)
class PartitionRecords:
    """Records bound for one partition, encoded as one batch payload.

    ``positions`` are the indexes of these records in the request, in order; the produce
    response reports offset ``base_offset + i`` for ``positions[i]``.
    """

    payload: bytes | memoryview
    """The batch payload: a view of the request's body when stored as it came, or of a worker's
    ring slot (valid while its call is served)."""
    record_count: int
    attributes: int
    first_timestamp: int
    max_timestamp: int
    positions: Sequence[int]


def encode_partition_records(
    body: ProduceBody,
    positions: Sequence[int],
    *,
    now_ms: int,
    log_append_time: bool,
    max_batch_bytes: int,
) -> list[PartitionRecords]:
    """Encode the records at ``positions`` as one or more payloads of at most max_batch_bytes.

    A request larger than the topic's max.message.bytes is split into several batches; one
    record that alone exceeds it is refused with RECORD_TOO_LARGE.
    """
    if len(positions) == len(body.records):
        records = body.records
    else:
        records = list(map(body.records.__getitem__, positions))
    stamped = "timestamp" in body.fields and not log_append_time
    if "timestamp" in body.fields and log_append_time:
        records = [_without_timestamp(r) for r in records]
    elif stamped:
        records = [
            r if r.get("timestamp") is not None else r | {"timestamp": now_ms} for r in records
        ]
    raw = body.raw_records if len(positions) == len(body.records) else None
    payload = raw if raw is not None and len(raw) <= max_batch_bytes else orjson.dumps(records)
    if len(payload) <= max_batch_bytes:
        return [_partition_records(records, payload, positions, stamped, now_ms)]
    return _split(records, positions, stamped, now_ms, max_batch_bytes)


def _without_timestamp(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "timestamp"}


def _partition_records(
    records: list[dict[str, Any]],
    payload: bytes | memoryview,
    positions: Sequence[int],
    stamped: bool,
    now_ms: int,
) -> PartitionRecords:
    if stamped:
        stamps = list(map(operator.itemgetter("timestamp"), records))
        first, highest = stamps[0], max(stamps)
        attributes = ATTR_RECORD_TIMESTAMPS
    else:
        return _unstamped(payload, len(records), positions, now_ms)
    return PartitionRecords(
        payload=payload,
        record_count=len(records),
        attributes=attributes,
        first_timestamp=first,
        max_timestamp=highest,
        positions=positions,
    )


def _unstamped(
    payload: bytes | memoryview, record_count: int, positions: Sequence[int], now_ms: int
) -> PartitionRecords:
    """Records without their own timestamps: the batch carries ``now_ms``."""
    return PartitionRecords(
        payload=payload,
        record_count=record_count,
        attributes=0,
        first_timestamp=now_ms,
        max_timestamp=now_ms,
        positions=positions,
    )


def _split(
    records: list[dict[str, Any]],
    positions: Sequence[int],
    stamped: bool,
    now_ms: int,
    max_batch_bytes: int,
) -> list[PartitionRecords]:
    encoded = list(map(orjson.dumps, records))
    sizes = list(map(len, encoded))
    largest = max(sizes)
    if largest + _ARRAY_OVERHEAD > max_batch_bytes:
        raise BrokerError(
            f"A record of {largest} bytes exceeds max.message.bytes ({max_batch_bytes})",
            ErrorCode.RECORD_TOO_LARGE,
        )
    ends = list(accumulate(size + 1 for size in sizes))  # +1: the separating comma
    out = []
    start = 0
    consumed = 0
    while start < len(records):
        stop = bisect_right(ends, consumed + max_batch_bytes - _ARRAY_OVERHEAD + 1, lo=start)
        stop = max(stop, start + 1)
        payload = b"[" + b",".join(encoded[start:stop]) + b"]"
        out.append(
            _partition_records(records[start:stop], payload, positions[start:stop], stamped, now_ms)
        )
        consumed = ends[stop - 1]
        start = stop
    return out


# -------------------------------------------------------------------------- offsets response

_OFFSET_SEP: Final = b',"error_code":null,"error":null},{"partition":%d,"offset":'
_RESPONSE_END: Final = b'],"key_schema_id":null,"value_schema_id":null}'


def encode_offsets_response(
    results: Sequence[tuple[Any, ...]] | None = None,
    *,
    partition: int | None = None,
    base_offset: int | None = None,
    record_count: int = 0,
) -> bytes:
    """The produce response ``{"offsets": [...], "key_schema_id": null, ...}``.

    Either ``results`` lists (partition, offset, error_code, error[, after_append]) per record in
    request order (``after_append`` true adds ``"after_append": true``: the record may have been
    written although the request failed), or the fast form names one partition whose records
    got consecutive offsets from ``base_offset`` (built with bytes operations, no per-record
    Python objects).
    """
    if results is None:
        if record_count == 0 or partition is None or base_offset is None:
            return b'{"offsets":[' + _RESPONSE_END
        numbers = orjson.dumps(list(range(base_offset, base_offset + record_count)))
        # One join, no intermediate copies of the (large) answer.
        return b"".join(
            (
                b'{"offsets":[{"partition":%d,"offset":' % partition,
                numbers[1:-1].replace(b",", _OFFSET_SEP % partition),
                b',"error_code":null,"error":null}',
                _RESPONSE_END,
            )
        )
    offsets = [
        {"partition": r[0], "offset": r[1], "error_code": r[2], "error": r[3]}
        | ({"after_append": True} if len(r) > 4 and r[4] else {})
        for r in results
    ]
    return orjson.dumps({"offsets": offsets, "key_schema_id": None, "value_schema_id": None})


# ------------------------------------------------------------------------------ to records


@dataclass(frozen=True, slots=True)
class RenderedRecords:
    """Records rendered for a fetch response (not yet serialised)."""

    records: list[dict[str, Any]]
    next_offset: int
    """Offset after the last rendered record (the next fetch position)."""


def render_batches(
    data: bytes | memoryview,
    *,
    topic: str,
    partition: int,
    start_offset: int,
    fmt: EmbeddedFormat,
    max_records: int | None = None,
    max_bytes: int | None = None,
    strict_max_bytes: bool = False,
) -> RenderedRecords:
    """Turn whole stored batches into output records from ``start_offset`` on.

    Each record is ``{"topic", "partition", "offset", "timestamp", "key", "value",
    "headers"}``. Records below ``start_offset`` (a fetch may begin mid-batch) are skipped;
    at most ``max_records`` are rendered. When the first batch alone exceeds ``max_bytes`` it is
    cut to the records that fit, keeping at least one, so that a large record never blocks a
    reader. With ``strict_max_bytes`` (Confluent's consumer reads) it is cut instead where the
    records' key and value bytes would reach ``max_bytes``, which may leave none. Raises
    JSON_CONVERSION when a binary record is asked for as JSON and is not JSON.
    """
    out: list[dict[str, Any]] = []
    next_offset = start_offset
    view = memoryview(data)
    limit = max_records if max_records is not None else -1
    for header in iter_batches(view):
        if header.next_offset <= start_offset:
            continue
        records = _batch_records(view, header)
        skip = max(0, start_offset - header.base_offset)
        if skip:
            records = records[skip:]
        if limit >= 0 and len(out) + len(records) > limit:
            records = records[: limit - len(out)]
        if not out and max_bytes is not None and header.size >= max_bytes:
            if strict_max_bytes:
                records = _fit_strictly(records, header.codec, max_bytes)
            elif header.size > max_bytes:
                records = _fit(records, max_bytes)
        first = header.base_offset + skip
        out.extend(
            _render(records, header, topic=topic, partition=partition, first_offset=first, fmt=fmt)
        )
        next_offset = first + len(records)
        if len(records) < header.record_count - skip or (limit >= 0 and len(out) >= limit):
            break
    return RenderedRecords(records=out, next_offset=next_offset)


def _batch_records(view: memoryview, header: BatchHeader) -> list[dict[str, Any]]:
    start = header.position + header.size - header.payload_length
    records = orjson.loads(view[start : header.position + header.size])
    if not isinstance(records, list) or len(records) != header.record_count:
        raise BrokerError(
            f"batch at offset {header.base_offset} does not match its record count",
            ErrorCode.KAFKA_STORAGE_ERROR,
        )
    return records


def _fit(records: list[dict[str, Any]], max_bytes: int) -> list[dict[str, Any]]:
    sizes = accumulate(map(len, map(orjson.dumps, records)))
    return records[: max(1, bisect_right(list(sizes), max_bytes))]


def _fit_strictly(
    records: list[dict[str, Any]], codec: PayloadCodec, max_bytes: int
) -> list[dict[str, Any]]:
    """The leading records whose key and value bytes add up to less than ``max_bytes``: the
    rough size Confluent's read task counts (``bytesConsumed + size >= maxResponseBytes``
    stops it before the record, which stays unread)."""
    size = _binary_size if codec is PayloadCodec.BINARY else _json_size
    sizes = accumulate(size(r.get("key")) + size(r.get("value")) for r in records)
    return records[: bisect_left(list(sizes), max_bytes)]


def _json_size(data: Any) -> int:
    """Bytes of a key or value stored as JSON (its compact text; null is no bytes)."""
    return 0 if data is None else len(orjson.dumps(data))


def _binary_size(data: str | None) -> int:
    """Bytes of a key or value stored as base64 (checked at produce: padded, standard)."""
    return 0 if data is None else len(data) // 4 * 3 - (len(data) - len(data.rstrip("=")))


def _render(
    records: list[dict[str, Any]],
    header: BatchHeader,
    *,
    topic: str,
    partition: int,
    first_offset: int,
    fmt: EmbeddedFormat,
) -> list[dict[str, Any]]:
    base = {
        "topic": topic,
        "partition": partition,
        "offset": 0,
        "timestamp": header.first_timestamp,
        "key": None,
        "value": None,
        "headers": [],
    }
    # Records carry a "timestamp" only in batches with per-record timestamps, and a
    # "partition" only when it named this partition (encode_partition_records keeps both true).
    out = list(map(base.__or__, records))
    for rendered, offset in zip(out, count(first_offset)):
        rendered["offset"] = offset
    converter = _CONVERTERS.get((header.codec, fmt))
    if converter is not None:
        for rendered in out:
            converter(rendered)
    return out


def _json_to_binary(record: dict[str, Any]) -> None:
    for name in ("key", "value"):
        value = record[name]
        if value is not None:
            record[name] = base64.b64encode(orjson.dumps(value)).decode("ascii")


def _binary_to_json(record: dict[str, Any]) -> None:
    for name in ("key", "value"):
        value = record[name]
        if value is None:
            continue
        try:
            record[name] = orjson.loads(base64.b64decode(value))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise BrokerError(
                f"The {name} of the record at offset {record['offset']} is not JSON; fetch it "
                "with Accept: application/vnd.kafka.binary.v2+json",
                ErrorCode.JSON_CONVERSION,
            ) from exc


def _json_to_text(record: dict[str, Any]) -> None:
    for name in ("key", "value"):
        value = record[name]
        if value is not None:
            record[name] = orjson.dumps(value).decode()


def _binary_to_text(record: dict[str, Any]) -> None:
    for name in ("key", "value"):
        value = record[name]
        if value is None:
            continue
        try:
            record[name] = base64.b64decode(value).decode()
        except (ValueError, UnicodeDecodeError) as exc:
            raise BrokerError(
                f"The {name} of the record at offset {record['offset']} is not UTF-8 text; "
                "fetch it with Accept: application/vnd.kafka.binary.v2+json",
                ErrorCode.JSON_CONVERSION,
            ) from exc


_CONVERTERS: Final[dict[tuple[PayloadCodec, EmbeddedFormat], Callable[[dict[str, Any]], None]]] = {
    (PayloadCodec.JSON, EmbeddedFormat.BINARY): _json_to_binary,
    (PayloadCodec.BINARY, EmbeddedFormat.JSON): _binary_to_json,
    (PayloadCodec.JSON, EmbeddedFormat.TEXT): _json_to_text,
    (PayloadCodec.BINARY, EmbeddedFormat.TEXT): _binary_to_text,
}


def offset_for_timestamp(plog: PartitionLog, timestamp: int) -> tuple[int, int] | None:
    """(offset, timestamp) of the first committed record stamped at or after ``timestamp``.

    The log finds the first batch whose max timestamp reaches it; within that batch, records
    that carry their own timestamps are searched one by one (a lookup, not the hot path).
    """
    high_watermark = plog.high_watermark
    base = plog.offset_for_timestamp(timestamp)
    if base is None or base >= high_watermark:
        return None
    view = memoryview(plog.read(base, max_bytes=1, max_offset=high_watermark).data)
    for header in iter_batches(view):
        if header.max_timestamp < timestamp:
            continue
        if not header.has_record_timestamps:
            return header.base_offset, header.first_timestamp
        for index, record in enumerate(_batch_records(view, header)):
            if record["timestamp"] >= timestamp:
                return header.base_offset + index, int(record["timestamp"])
    return None
