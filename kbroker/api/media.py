"""Content negotiation: which embedded format a request sends and which one it accepts.

Produce bodies may be sent as ``application/vnd.kafka.json.v2+json`` (keys and values are JSON),
``application/vnd.kafka.binary.v2+json`` (base64), Strimzi's ``application/vnd.kafka.text.v2+json``
(strings, stored as their UTF-8 bytes), or the generic ``application/vnd.kafka.v2+json``
and ``application/json``, which both mean the JSON format. Schema-registry formats (avro,
jsonschema, protobuf) are refused with 415. Records are returned in the format the ``Accept``
header names; a generic or absent Accept means JSON. Parameters such as ``charset`` are ignored;
matching is case-insensitive.

REST Proxy v1's media types (removed from Confluent's proxy in CP 6.0, still sent by older
clients) are accepted too: ``application/vnd.kafka.binary.v1+json`` and
``application/vnd.kafka.json.v1+json`` name their format; the generic
``application/vnd.kafka.v1+json`` and ``application/vnd.kafka+json`` mean binary in a produce
body, as they did in v1 (docs/api.md, "REST Proxy v1").
"""

from __future__ import annotations

from typing import Final

from kbroker.errors import BrokerError, ErrorCode
from kclient.protocol import (
    MEDIA_BINARY_V2,
    MEDIA_JSON,
    MEDIA_JSON_V2,
    MEDIA_V2,
    EmbeddedFormat,
)

#: Strimzi bridge's text format: keys and values are strings (their UTF-8 bytes).
MEDIA_TEXT_V2: Final = "application/vnd.kafka.text.v2+json"

__all__ = [
    "MEDIA_BINARY_V1",
    "MEDIA_JSON_V1",
    "MEDIA_OF_FORMAT",
    "MEDIA_OF_FORMAT_V1",
    "MEDIA_TEXT_V2",
    "MEDIA_V1",
    "accepted_format",
    "is_v1",
    "media_type_of",
    "produce_format",
    "require_json_body",
]

MEDIA_V1: Final = "application/vnd.kafka.v1+json"
MEDIA_KAFKA: Final = "application/vnd.kafka+json"
MEDIA_JSON_V1: Final = "application/vnd.kafka.json.v1+json"
MEDIA_BINARY_V1: Final = "application/vnd.kafka.binary.v1+json"
_V1: Final = frozenset({MEDIA_V1, MEDIA_KAFKA, MEDIA_JSON_V1, MEDIA_BINARY_V1})

_PRODUCE: Final = {
    MEDIA_JSON_V2: EmbeddedFormat.JSON,
    MEDIA_BINARY_V2: EmbeddedFormat.BINARY,
    MEDIA_TEXT_V2: EmbeddedFormat.TEXT,
    MEDIA_V2: EmbeddedFormat.JSON,
    MEDIA_JSON: EmbeddedFormat.JSON,
    MEDIA_JSON_V1: EmbeddedFormat.JSON,
    MEDIA_BINARY_V1: EmbeddedFormat.BINARY,
    MEDIA_V1: EmbeddedFormat.BINARY,
    MEDIA_KAFKA: EmbeddedFormat.BINARY,
}
_NAMED_ACCEPT: Final = {
    MEDIA_BINARY_V2: EmbeddedFormat.BINARY,
    MEDIA_JSON_V2: EmbeddedFormat.JSON,
    MEDIA_TEXT_V2: EmbeddedFormat.TEXT,
    MEDIA_BINARY_V1: EmbeddedFormat.BINARY,
    MEDIA_JSON_V1: EmbeddedFormat.JSON,
}
_GENERIC_ACCEPT: Final = frozenset(
    {"*/*", "application/*", MEDIA_JSON, MEDIA_V2, MEDIA_V1, MEDIA_KAFKA}
)
MEDIA_OF_FORMAT: Final = {
    EmbeddedFormat.JSON: MEDIA_JSON_V2,
    EmbeddedFormat.BINARY: MEDIA_BINARY_V2,
    EmbeddedFormat.TEXT: MEDIA_TEXT_V2,
}
#: v1 had no text format: text is answered with the v2 media type on v1 endpoints too.
MEDIA_OF_FORMAT_V1: Final = {
    EmbeddedFormat.JSON: MEDIA_JSON_V1,
    EmbeddedFormat.BINARY: MEDIA_BINARY_V1,
    EmbeddedFormat.TEXT: MEDIA_TEXT_V2,
}


def media_type_of(header: str | None) -> str:
    """The bare media type of a Content-Type header value, lower-cased ("" when absent)."""
    if not header:
        return ""
    return header.split(";", 1)[0].strip().lower()


def produce_format(content_type: str | None) -> EmbeddedFormat:
    """The embedded format of a produce body, or 415 UNSUPPORTED_MEDIA_TYPE."""
    media = media_type_of(content_type)
    fmt = _PRODUCE.get(media)
    if fmt is None:
        raise BrokerError(
            f"Unsupported Content-Type {media or '(none)'!r}: send "
            f"{MEDIA_JSON_V2}, {MEDIA_BINARY_V2} or {MEDIA_JSON}",
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        )
    return fmt


def require_json_body(content_type: str | None) -> None:
    """Admin and consumer bodies are JSON: any JSON media type (or none) is accepted."""
    media = media_type_of(content_type)
    if media and media not in _PRODUCE and media != "application/octet-stream":
        raise BrokerError(
            f"Unsupported Content-Type {media!r}: send {MEDIA_JSON}",
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        )


def accepted_format(
    accept: str | None, default: EmbeddedFormat = EmbeddedFormat.JSON
) -> EmbeddedFormat:
    """The record format an Accept header asks for, or 406 NOT_ACCEPTABLE.

    The first acceptable entry wins (quality factors are not weighed); ``*/*``,
    ``application/json`` and the generic v2 and v1 types mean ``default``.
    """
    if not accept or not accept.strip():
        return default
    for part in accept.split(","):
        media = media_type_of(part)
        named = _NAMED_ACCEPT.get(media)
        if named is not None:
            return named
        if media in _GENERIC_ACCEPT:
            return default
    raise BrokerError(
        f"Not acceptable: {accept!r}; accept {MEDIA_JSON_V2}, {MEDIA_BINARY_V2} or {MEDIA_TEXT_V2}",
        ErrorCode.NOT_ACCEPTABLE,
    )


def is_v1(content_type: str | None, accept: str | None) -> bool:
    """Whether a request speaks REST Proxy v1: its Content-Type, or the first entry of its
    Accept header, is a v1 media type (v1 clients list v1 first)."""
    if media_type_of(content_type) in _V1:
        return True
    return accept is not None and media_type_of(accept.split(",", 1)[0]) in _V1
