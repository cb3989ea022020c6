"""Content negotiation: which embedded format a request sends and which one it accepts.

Produce bodies may be sent as ``application/vnd.kafka.json.v2+json`` (keys and values are JSON),
``application/vnd.kafka.binary.v2+json`` (base64), or the generic ``application/vnd.kafka.v2+json``
and ``application/json``, which both mean the JSON format. Schema-registry formats (avro,
jsonschema, protobuf) are refused with 415. Records are returned in the format the ``Accept``
header names; a generic or absent Accept means JSON. Parameters such as ``charset`` are ignored;
matching is case-insensitive.
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

__all__ = ["accepted_format", "media_type_of", "produce_format", "require_json_body"]

_PRODUCE: Final = {
    MEDIA_JSON_V2: EmbeddedFormat.JSON,
    MEDIA_BINARY_V2: EmbeddedFormat.BINARY,
    MEDIA_V2: EmbeddedFormat.JSON,
    MEDIA_JSON: EmbeddedFormat.JSON,
}
_GENERIC_ACCEPT: Final = frozenset({"*/*", "application/*", MEDIA_JSON, MEDIA_V2})
MEDIA_OF_FORMAT: Final = {
    EmbeddedFormat.JSON: MEDIA_JSON_V2,
    EmbeddedFormat.BINARY: MEDIA_BINARY_V2,
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
    ``application/json`` and ``application/vnd.kafka.v2+json`` mean ``default``.
    """
    if not accept or not accept.strip():
        return default
    for part in accept.split(","):
        media = media_type_of(part)
        if media == MEDIA_BINARY_V2:
            return EmbeddedFormat.BINARY
        if media == MEDIA_JSON_V2:
            return EmbeddedFormat.JSON
        if media in _GENERIC_ACCEPT:
            return default
    raise BrokerError(
        f"Not acceptable: {accept!r}; accept {MEDIA_JSON_V2} or {MEDIA_BINARY_V2}",
        ErrorCode.NOT_ACCEPTABLE,
    )
