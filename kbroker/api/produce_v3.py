"""REST Proxy v3 produce: ``POST /v3/clusters/{cluster_id}/topics/{topic}/records``.

The body is one JSON object per record, ``{"partition_id"?, "headers"?: [{"name", "value":
base64 | null}], "key"?: {"type", "data"}, "value"?: {"type", "data"}, "timestamp"?: ISO-8601 |
ms}``. Several objects one after another (Confluent's *streaming mode*, usually sent with
``Transfer-Encoding: chunked``) are produced in order as they arrive: every complete object read
so far goes out as one group, routed like ``POST /topics/{topic}`` routes records.

The answer is one delivery report per record, in order, each a JSON object on its own line:
``{"error_code": 200, "cluster_id", "topic_name", "partition_id", "offset", "timestamp", "key":
{"type", "size"} | null, "value": ...}``, or the error body of a record that failed (HTTP status
200, as Confluent's). A chunked request is answered as it goes (each group's reports are written
as soon as it is produced); a request with a Content-Length is read whole (at most
``max.request.bytes``), and when it holds one record that fails, or its topic or cluster is
unknown, it is answered with the error's HTTP status instead, so that plain HTTP clients see it.

Key and value types: ``BINARY`` (base64 ``data``), ``STRING`` (its UTF-8 bytes) and ``JSON``
(its compact JSON text). Records are stored with the binary codec, so every reader sees those
bytes (a json-format read of STRING data is 422, as for any bytes that are not JSON). Schema
registry types (AVRO, JSONSCHEMA, PROTOBUF), schema fields and a missing ``type`` (which makes
Confluent look a schema up) are refused: kbroker has no schema registry. One record object may be
at most ``max.request.bytes``.

Concurrency: one handler per request on the broker's event loop; a request's groups are
produced one after another, so its reports stay in order.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import hdrs, web

from kbroker.api.encoding import UTF8_BOM, content_codings, strip_bom
from kbroker.api.errors import error_response, json_response
from kbroker.api.params import acks_param, iso_timestamp, timestamp_ms, topic_path
from kbroker.api.produce import Outcome, produce_records, read_body
from kbroker.api.services import SERVICES, Services
from kbroker.cluster import TopicInfo
from kbroker.errors import BrokerError, ErrorCode, InvalidRequestError
from kbroker.records import ProduceBody, parse_produce_body
from kclient.protocol import ACKS_HEADER, EmbeddedFormat

__all__ = ["MAX_BATCH_ENTRIES", "produce_batch_v3", "produce_v3"]

_FIELDS: Final = frozenset({"partition_id", "headers", "key", "value", "timestamp"})
_DATA_FIELDS: Final = frozenset({"type", "data"})
_SCHEMA_FIELDS: Final = frozenset(
    {"subject", "schema_id", "schema_version", "schema", "subject_name_strategy"}
)
_TYPES: Final = ("BINARY", "JSON", "STRING")
#: Characters that matter to the object splitter.
_SPECIAL: Final = re.compile(rb'[{}"\\]')
_SPACE: Final = b" \t\r\n"
#: Most entries of one ``records:batch`` request (Confluent's default is 10).
MAX_BATCH_ENTRIES: Final = 10_000
#: Longest entry id of a ``records:batch`` request.
MAX_BATCH_ID: Final = 80


@dataclass(frozen=True, slots=True)
class _Record:
    """One v3 record, checked: the v2 binary record to produce and what its report names."""

    v2: dict[str, Any]
    key: dict[str, Any] | None
    value: dict[str, Any] | None
    timestamp: int


def _data(doc: Any, name: str) -> tuple[str | None, dict[str, Any] | None]:
    """(base64 of the bytes or None, the report's {"type", "size"} or None) of key or value."""
    if doc is None:
        return None, None
    if not isinstance(doc, dict):
        raise InvalidRequestError(f'{name} must be an object {{"type", "data"}} or null')
    if doc.keys() & _SCHEMA_FIELDS or doc.get("type") in ("AVRO", "JSONSCHEMA", "PROTOBUF"):
        raise InvalidRequestError(
            f"{name}: schemas need a schema registry, which kbroker does not have; "
            f"use type {', '.join(_TYPES)}"
        )
    unknown = doc.keys() - _DATA_FIELDS
    if unknown:
        raise InvalidRequestError(f"Unknown field(s) in {name}: {', '.join(sorted(unknown))}")
    kind = doc.get("type")
    if kind not in _TYPES:
        raise InvalidRequestError(f"{name}.type must be one of {', '.join(_TYPES)}")
    data = doc.get("data")
    if data is None:
        return None, {"type": kind, "size": 0}
    if kind == "BINARY":
        if not isinstance(data, str):
            raise InvalidRequestError(f"{name}.data must be a base64 string for type BINARY")
        try:
            raw = base64.b64decode(data, validate=True)
        except binascii.Error:
            raise InvalidRequestError(f"{name}.data is not valid base64") from None
    elif kind == "STRING":
        if not isinstance(data, str):
            raise InvalidRequestError(f"{name}.data must be a string for type STRING")
        raw = data.encode()
    else:
        raw = orjson.dumps(data)
    return base64.b64encode(raw).decode(), {"type": kind, "size": len(raw)}


def _headers(doc: Any) -> list[dict[str, Any]]:
    if doc is None:
        return []
    if not isinstance(doc, list) or not all(
        isinstance(h, dict) and isinstance(h.get("name"), str) and h.keys() <= {"name", "value"}
        for h in doc
    ):
        raise InvalidRequestError('headers must be an array of {"name": str, "value": base64}')
    return [{"key": h["name"], "value": h.get("value")} for h in doc]


def _record(doc: Any, topic: TopicInfo, now_ms: int) -> _Record:
    if not isinstance(doc, dict):
        raise InvalidRequestError("Each record must be a JSON object")
    unknown = doc.keys() - _FIELDS
    if unknown:
        raise InvalidRequestError(f"Unknown record field(s): {', '.join(sorted(unknown))}")
    key, key_report = _data(doc.get("key"), "key")
    value, value_report = _data(doc.get("value"), "value")
    stamp = now_ms if doc.get("timestamp") is None else timestamp_ms(doc["timestamp"])
    v2: dict[str, Any] = {"key": key, "value": value, "timestamp": stamp}
    headers = _headers(doc.get("headers"))
    if headers:
        v2["headers"] = headers
    partition = doc.get("partition_id")
    if partition is not None:
        if not isinstance(partition, int) or isinstance(partition, bool) or partition < 0:
            raise InvalidRequestError("partition_id must be a non-negative integer")
        topic.partition(partition)  # 404 for a partition the topic does not have
        v2["partition"] = partition
    return _Record(v2=v2, key=key_report, value=value_report, timestamp=stamp)


def split_objects(buffer: bytes, start: int) -> tuple[list[bytes], int, bool]:
    """The complete top-level JSON objects in ``buffer[start:]``.

    Returns (their texts, where the unfinished rest begins, whether the text is broken: a
    top-level value that is not an object). The texts themselves are not validated here.
    """
    objects: list[bytes] = []
    position = start
    while True:
        while position < len(buffer) and buffer[position] in _SPACE:
            position += 1
        if position == len(buffer):
            return objects, position, False
        if buffer[position] != ord("{"):
            return objects, position, True
        end = _object_end(buffer, position)
        if end is None:
            return objects, position, False
        objects.append(buffer[position:end])
        position = end


def _object_end(buffer: bytes, position: int) -> int | None:
    """Where the object that opens at ``position`` ends (None: not yet). Strings are skipped
    with their escapes, so braces inside them do not count."""
    depth = 0
    in_string = False
    scan = position
    while (found := _SPECIAL.search(buffer, scan)) is not None:
        char = buffer[found.start()]
        scan = found.start() + 1
        if in_string:
            if char == ord("\\"):
                scan += 1  # the escaped character, whatever it is
            elif char == ord('"'):
                in_string = False
        elif char == ord('"'):
            in_string = True
        elif char == ord("{"):
            depth += 1
        elif char == ord("}"):
            depth -= 1
            if depth == 0:
                return scan
    return None


async def _target(request: web.Request) -> tuple[Services, TopicInfo, int, dict[str, Any]]:
    """(services, topic, acks, the fields every report shares) of a v3 produce request."""
    services: Services = request.app[SERVICES]
    cluster_id = request.match_info["cluster_id"]
    if cluster_id != services.metadata.cluster_id:
        raise BrokerError(f"Cluster {cluster_id} not found", ErrorCode.UNKNOWN_CLUSTER)
    topic = await services.ensure_topic(topic_path(request))
    acks = acks_param(request, ACKS_HEADER)
    return services, topic, acks, {"cluster_id": cluster_id, "topic_name": topic.name}


async def produce_v3(request: web.Request) -> web.StreamResponse:
    services, topic, acks, names = await _target(request)
    common = {"error_code": 200, **names}
    chunked = "chunked" in request.headers.get(hdrs.TRANSFER_ENCODING, "").lower()
    if chunked and not content_codings(request):  # a compressed stream is read whole
        return await _stream(request, services, topic, acks, common)
    body = await read_body(request, services.config.max_request_bytes)
    texts, rest, broken = split_objects(body, 0)
    reports = await _produce_group(request, services, topic, texts, acks) if texts else []
    if broken or body[rest:].strip():
        reports.append(InvalidRequestError("The body must be JSON record objects"))
    if not reports:
        raise InvalidRequestError("The body holds no record object")
    if len(reports) == 1 and isinstance(reports[0], BrokerError):
        return error_response(reports[0])
    lines = b"".join(_line(common, report) for report in reports)
    return web.Response(body=lines, content_type="application/json")


async def _stream(
    request: web.Request,
    services: Services,
    topic: TopicInfo,
    acks: int,
    common: dict[str, Any],
) -> web.StreamResponse:
    """Streaming mode: produce each group of complete objects as it arrives and write its
    reports at once, so a client may wait for a report before sending more."""
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    await response.prepare(request)
    limit = services.config.max_request_bytes
    buffer = b""
    written = 0
    started = False  # past a UTF-8 byte order mark the stream may start with
    while True:
        chunk = await request.content.readany()
        buffer += chunk
        if not started:
            if chunk and len(buffer) < len(UTF8_BOM) and UTF8_BOM.startswith(buffer):
                continue
            buffer, started = strip_bom(buffer), True
        texts, rest, broken = split_objects(buffer, 0)
        buffer = buffer[rest:]
        reports = await _produce_group(request, services, topic, texts, acks) if texts else []
        if broken:
            reports.append(InvalidRequestError("The body must be JSON record objects"))
        elif len(buffer) > limit:
            reports.append(
                BrokerError(
                    f"A record object exceeds max.request.bytes ({limit})",
                    ErrorCode.REQUEST_TOO_LARGE,
                )
            )
        elif not chunk and (buffer.strip() or written + len(reports) == 0):
            reports.append(InvalidRequestError("Incomplete or empty JSON record object"))
        if reports:
            await response.write(b"".join(_line(common, report) for report in reports))
            written += len(reports)
        if broken or len(buffer) > limit or not chunk:
            break
    await response.write_eof()
    return response


def _line(common: dict[str, Any], report: dict[str, Any] | BrokerError) -> bytes:
    if isinstance(report, BrokerError):
        return orjson.dumps(report.body()) + b"\n"
    return orjson.dumps(common | report) + b"\n"


async def _produce_group(
    request: web.Request, services: Services, topic: TopicInfo, texts: list[bytes], acks: int
) -> list[dict[str, Any] | BrokerError]:
    """Produce one group of record objects; a report (or error) per object, in order."""
    docs: list[Any] = []
    for text in texts:
        try:
            docs.append(_loads(text))
        except BrokerError as exc:
            docs.append(exc)
    return await _produce_docs(request, services, topic, docs, acks)


def _v2(records: list[_Record]) -> ProduceBody:
    return parse_produce_body(
        orjson.dumps({"records": [r.v2 for r in records]}), EmbeddedFormat.BINARY
    )


def _v2_body(
    checked: list[_Record | BrokerError],
) -> tuple[list[_Record | BrokerError], ProduceBody | None]:
    """The checked records as one v2 binary body (the v2 checks: header values are base64,
    ...). When the group fails them, each record is checked alone, so that only the bad ones
    fail: (the records with those failures in place, the body of the others or None)."""
    records = [c for c in checked if isinstance(c, _Record)]
    if not records:
        return checked, None
    try:
        return checked, _v2(records)
    except BrokerError:
        pass
    alone = [_alone(item) if isinstance(item, _Record) else item for item in checked]
    rest = [c for c in alone if isinstance(c, _Record)]
    return alone, _v2(rest) if rest else None


def _alone(record: _Record) -> _Record | BrokerError:
    try:
        _v2([record])
    except BrokerError as exc:
        return exc
    return record


async def _produce_docs(
    request: web.Request, services: Services, topic: TopicInfo, docs: list[Any], acks: int
) -> list[dict[str, Any] | BrokerError]:
    """Produce parsed record objects (an error in place of one that could not be parsed); a
    report (or error) per object, in order."""
    now_ms = services.clock.now_ms()
    checked: list[_Record | BrokerError] = []
    for doc in docs:
        try:
            checked.append(doc if isinstance(doc, BrokerError) else _record(doc, topic, now_ms))
        except BrokerError as exc:
            checked.append(exc)
    checked, body = _v2_body(checked)
    records = [c for c in checked if isinstance(c, _Record)]
    outcomes: list[Outcome] = []
    if body is not None:
        try:
            outcomes = await produce_records(request, topic, body, acks)
        except BrokerError as exc:  # the whole group failed (a record over max.message.bytes)
            failed = (None, None, int(exc.code), exc.message, exc.after_append)
            outcomes = [failed] * len(records)
    reports: list[dict[str, Any] | BrokerError] = []
    produced = iter(zip(records, outcomes, strict=True))
    for item in checked:
        if isinstance(item, BrokerError):
            reports.append(item)
            continue
        record, (partition, offset, code, message, after_append) = next(produced)
        if code is not None:
            reports.append(
                BrokerError(str(message), ErrorCode(code), after_append=bool(after_append))
            )
            continue
        reports.append(
            {
                "partition_id": partition,
                "offset": offset,
                "timestamp": iso_timestamp(record.timestamp),
                "key": record.key,
                "value": record.value,
            }
        )
    return reports


def _loads(text: bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BrokerError(f"Malformed JSON: {exc}", ErrorCode.MALFORMED_REQUEST) from exc


async def produce_batch_v3(request: web.Request) -> web.Response:
    """``POST .../records:batch``: ``{"entries": [{"id", ...record...}]}``, answered 207 with
    ``{"successes": [{"id", ...report...}], "failures": [{"id", "error_code", "message"}]}``
    (Confluent's batch produce). An empty batch, more than MAX_BATCH_ENTRIES entries, or ids
    that are missing, not strings of 1-80 characters or repeated: 422/42208, nothing written."""
    services, topic, acks, names = await _target(request)
    body = _loads(await read_body(request, services.config.max_request_bytes))
    entries = body.get("entries") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not entries or len(entries) > MAX_BATCH_ENTRIES:
        raise BrokerError(
            f'The body must be {{"entries": [...]}} with 1 to {MAX_BATCH_ENTRIES} entries',
            ErrorCode.INVALID_PRODUCE_BATCH,
        )
    ids = [e.get("id") if isinstance(e, dict) else None for e in entries]
    if not all(isinstance(i, str) and 0 < len(i) <= MAX_BATCH_ID for i in ids) or len(
        set(ids)
    ) != len(ids):
        raise BrokerError(
            f"Every entry needs a distinct string id of 1 to {MAX_BATCH_ID} characters",
            ErrorCode.INVALID_PRODUCE_BATCH,
        )
    records = [{k: v for k, v in e.items() if k != "id"} for e in entries]
    reports = await _produce_docs(request, services, topic, records, acks)
    successes, failures = [], []
    for entry_id, report in zip(ids, reports, strict=True):
        if isinstance(report, BrokerError):
            failures.append(
                {"id": entry_id, "error_code": int(report.code), "message": report.message}
            )
        else:
            successes.append({"id": entry_id, **names, **report})
    return json_response({"successes": successes, "failures": failures}, status=207)
