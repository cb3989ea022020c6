"""Path and query parameters, parsed with explicit bounds.

A value that is not an integer, or is outside its documented range, is a 422 INVALID_PARAMETER
(INVALID_OFFSET for offsets) naming the parameter and its bounds. A path topic or partition that
cannot exist (bad name, not a non-negative integer) is a 404, since no such resource exists.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from kbroker.errors import BrokerError, ErrorCode
from kbroker.records import MAX_TIMESTAMP
from kclient.protocol import MAX_PARTITION, MAX_TOPIC_NAME_LENGTH

__all__ = [
    "MAX_OFFSET",
    "TOPIC_NAME",
    "acks_param",
    "bool_param",
    "int_param",
    "iso_timestamp",
    "offset_param",
    "partition_path",
    "timestamp_ms",
    "topic_path",
]

#: Largest offset a request may name (Kafka offsets are signed 64-bit).
MAX_OFFSET: Final = (1 << 63) - 1
TOPIC_NAME: Final = re.compile(rf"[a-zA-Z0-9._-]{{1,{MAX_TOPIC_NAME_LENGTH}}}")
_INTEGER: Final = re.compile(r"-?[0-9]{1,19}")


def topic_path(request: web.Request) -> str:
    name = request.match_info["topic"]
    if not TOPIC_NAME.fullmatch(name) or name in (".", ".."):
        raise BrokerError(f"Topic {name} not found.", ErrorCode.UNKNOWN_TOPIC)
    return name


def partition_path(request: web.Request) -> int:
    raw = request.match_info["partition"]
    if not raw.isdigit() or len(raw) > 5 or int(raw) > MAX_PARTITION:
        raise BrokerError(f"Partition {raw} not found", ErrorCode.UNKNOWN_PARTITION)
    return int(raw)


def int_param(
    request: web.Request,
    name: str,
    *,
    default: int | None,
    low: int,
    high: int,
    code: ErrorCode = ErrorCode.INVALID_PARAMETER,
) -> int:
    """Query parameter ``name`` as an int in [low, high]; ``default`` when absent."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise BrokerError(f"Query parameter {name} is required", code)
        return default
    if not _INTEGER.fullmatch(raw.strip()):
        if re.fullmatch(r"-?[0-9]+", raw.strip()):  # an integer, too long to be in range
            raise BrokerError(
                f"Query parameter {name}={raw} must be between {low} and {high}", code
            )
        raise BrokerError(f"Query parameter {name}={raw!r} must be an integer", code)
    value = int(raw)
    if not low <= value <= high:
        raise BrokerError(f"Query parameter {name}={value} must be between {low} and {high}", code)
    return value


def offset_param(request: web.Request, name: str = "offset", default: int | None = None) -> int:
    return int_param(
        request, name, default=default, low=0, high=MAX_OFFSET, code=ErrorCode.INVALID_OFFSET
    )


def bool_param(request: web.Request, name: str) -> bool:
    """Query parameter ``name`` as a boolean (``true``/``false``, any case); false when absent."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return False
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise BrokerError(
            f"Query parameter {name}={raw!r} must be true or false", ErrorCode.INVALID_PARAMETER
        )
    return value == "true"


_ACKS: Final = {"0": 0, "1": 1, "-1": -1, "all": -1}


def acks_param(request: web.Request, header: str) -> int:
    """acks from the ``acks`` query parameter or the header; default all (-1)."""
    raw = request.query.get("acks") or request.headers.get(header) or "all"
    acks = _ACKS.get(raw.strip().lower())
    if acks is None:
        raise BrokerError(f"acks={raw!r} must be 0, 1, -1 or all", ErrorCode.INVALID_PARAMETER)
    return acks


def timestamp_ms(value: Any, name: str = "timestamp") -> int:
    """Milliseconds since the epoch from an int or an ISO-8601 string (Confluent's positions
    and v3 produce take both; a string without a zone is UTC), in [0, MAX_TIMESTAMP]."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TIMESTAMP:
        return value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            ms = int(moment.timestamp() * 1000)
            if 0 <= ms <= MAX_TIMESTAMP:
                return ms
    raise BrokerError(
        f"{name} must be milliseconds or an ISO-8601 time from 1970 to 9999",
        ErrorCode.INVALID_PARAMETER,
    )


def iso_timestamp(ms: int) -> str:
    """``ms`` since the epoch as ISO-8601 UTC with milliseconds, e.g. 2026-11-22T08:00:00.000Z."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
