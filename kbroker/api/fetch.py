"""Stateless fetch (kbroker extension, Redpanda's shape).

``GET /topics/{topic}/partitions/{partition}/records?offset=N&max_bytes=&max_records=&timeout=``
returns ``[{"topic", "partition", "offset", "timestamp", "key", "value", "headers"}]`` from
offset N, below the high watermark. It long-polls up to ``timeout`` ms only while nothing is
available and answers as soon as records arrive. ``max_bytes`` bounds the stored size of the
returned batches, except that a first record larger than it is returned alone so that a reader
is never stuck. The Accept header picks the format (JSON unless it names binary). Response
headers ``X-KBroker-High-Watermark`` and ``X-KBroker-Next-Offset`` tell a stateless reader the
partition's committed end and where to continue. REST Proxy v1's
``GET .../partitions/{partition}/messages?offset=N&count=M`` is served here too.

Offsets outside [log start offset, log end offset] are 416 OFFSET_OUT_OF_RANGE (the body carries
both bounds); reading at the log end offset waits for new records. A broker that does not lead
the partition forwards the request to the leader.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiohttp import web

from kbroker.api.errors import json_response
from kbroker.api.media import MEDIA_OF_FORMAT, MEDIA_OF_FORMAT_V1, accepted_format
from kbroker.api.params import int_param, offset_param, partition_path, topic_path
from kbroker.api.services import SERVICES, Services
from kbroker.config import BrokerConfig
from kbroker.records import render_batches
from kbroker.replication.partition import ReadResult
from kclient.protocol import (
    FORWARDED_HEADER,
    HIGH_WATERMARK_HEADER,
    LOG_START_HEADER,
    MEDIA_BATCHES,
    NEXT_OFFSET_HEADER,
    EmbeddedFormat,
)

__all__ = [
    "ReadParams",
    "fetch_batches",
    "fetch_messages",
    "fetch_records",
    "read_params",
    "records_response",
]

#: Cap on max_records (keeps one response bounded in memory).
MAX_RECORDS = 100_000


@dataclass(frozen=True, slots=True)
class ReadParams:
    """The parameters shared by both fetch endpoints."""

    topic: str
    partition: int
    offset: int
    max_bytes: int
    timeout_ms: int
    max_records: int | None
    """At most this many records are wanted (``/records``: rendered; ``/batches``: a hint
    that bounds how much is read)."""


def read_params(request: web.Request, config: BrokerConfig) -> ReadParams:
    """The parameters of either fetch endpoint (400 for a bad one)."""
    return ReadParams(
        topic=topic_path(request),
        partition=partition_path(request),
        offset=offset_param(request),
        max_bytes=int_param(
            request,
            "max_bytes",
            default=config.fetch_default_max_bytes,
            low=1,
            high=config.fetch_max_bytes,
        ),
        timeout_ms=int_param(
            request,
            "timeout",
            default=config.fetch_default_wait_ms,
            low=0,
            high=config.fetch_max_wait_ms,
        ),
        max_records=(
            int_param(request, "max_records", default=MAX_RECORDS, low=1, high=MAX_RECORDS)
            if "max_records" in request.query
            else None
        ),
    )


async def _read(request: web.Request, read: ReadParams) -> ReadResult | web.Response:
    """The leader's read, or the leader's answer when this broker is not the leader."""
    services = request.app[SERVICES]
    result = await read_as_leader(services, read, forwarded=FORWARDED_HEADER in request.headers)
    if result is None:
        return await services.peers.forward(
            request, services.metadata.leader_url(read.topic, read.partition)
        )
    return result


async def read_as_leader(
    services: Services, read: ReadParams, *, forwarded: bool = False
) -> ReadResult | None:
    """This broker's read of ``read``, or None when another broker leads the partition and the
    request was not forwarded here (a forwarded read is served, or refused, by the replica)."""
    leader = services.metadata.partition(read.topic, read.partition).leader
    if leader != services.config.broker_id and not forwarded:
        return None
    return await services.replicas.fetch(
        read.topic,
        read.partition,
        read.offset,
        max_bytes=read.max_bytes,
        max_wait_ms=read.timeout_ms,
        max_records=read.max_records,
    )


async def fetch_records(request: web.Request) -> web.StreamResponse:
    read = read_params(request, request.app[SERVICES].config)
    result = await _read(request, read)
    if isinstance(result, web.Response):
        return result
    return records_response(request, read, result.data, result.high_watermark)


def records_response(
    request: web.Request,
    read: ReadParams,
    data: bytes | memoryview,
    high_watermark: int,
    *,
    v1: bool = False,
) -> web.Response:
    """The ``/records`` answer for batches read at ``read`` (rendered in the Accept format;
    ``v1``: binary unless it names json, as REST Proxy v1 answered)."""
    fmt = accepted_format(
        request.headers.get("Accept"), default=EmbeddedFormat.BINARY if v1 else EmbeddedFormat.JSON
    )
    max_records = MAX_RECORDS if read.max_records is None else read.max_records
    rendered = render_batches(
        data,
        topic=read.topic,
        partition=read.partition,
        start_offset=read.offset,
        fmt=fmt,
        max_records=max_records,
        max_bytes=read.max_bytes,
    )
    media = (MEDIA_OF_FORMAT_V1 if v1 else MEDIA_OF_FORMAT)[fmt]
    response = json_response(orjson.dumps(rendered.records), content_type=media)
    response.headers[HIGH_WATERMARK_HEADER] = str(high_watermark)
    response.headers[NEXT_OFFSET_HEADER] = str(rendered.next_offset)
    return response


async def fetch_messages(request: web.Request) -> web.StreamResponse:
    """REST Proxy v1's read by offset: ``GET .../partitions/{p}/messages?offset=N[&count=M]``.

    Up to ``count`` (default 1, as in v1) records from offset N, answered at once (no
    long-poll: v1 read what was there); binary unless the Accept header names json.
    """
    config = request.app[SERVICES].config
    read = ReadParams(
        topic=topic_path(request),
        partition=partition_path(request),
        offset=offset_param(request),
        max_bytes=config.fetch_max_bytes,
        timeout_ms=0,
        max_records=int_param(request, "count", default=1, low=1, high=MAX_RECORDS),
    )
    result = await _read(request, read)
    if isinstance(result, web.Response):
        return result
    return records_response(request, read, result.data, result.high_watermark, v1=True)


async def fetch_batches(request: web.Request) -> web.StreamResponse:
    """``GET /topics/{topic}/partitions/{partition}/batches?offset=N&max_bytes=&timeout=``.

    kbroker extension for clients that read the stored batch format (kclient): the same read
    as ``/records`` but the body is the raw batches (``application/vnd.kbroker.batches``, the
    format documented in kclient.protocol), starting with the batch that holds ``offset``. No
    per-record work happens on the broker; the client skips records before ``offset``.
    """
    result = await _read(request, read_params(request, request.app[SERVICES].config))
    if isinstance(result, web.Response):
        return result
    response = web.Response(body=result.data, content_type=MEDIA_BATCHES)
    response.headers[HIGH_WATERMARK_HEADER] = str(result.high_watermark)
    response.headers[LOG_START_HEADER] = str(result.log_start_offset)
    return response
