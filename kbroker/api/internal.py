"""Broker-to-broker endpoints under ``/internal/v1`` (not part of the public API).

* ``POST /internal/v1/replica/fetch``: a follower's fetch (binary answer; see
  kbroker.replication.endpoint for the format).
* ``GET /internal/v1/replica/fetch-stream``: the same fetches over one WebSocket per follower
  and leader, one answer per request message (what followers use; the POST is their
  fallback).
* ``POST /internal/v1/replica/epoch-end-offsets``: OffsetsForLeaderEpoch (KIP-101/279).
* ``GET /internal/v1/led-offsets?topic=T``: offsets of the partitions of T led here.
* ``POST /internal/v1/controller/shutdown``: a stopping broker asks the active controller to
  move its leadership away; answers ``{"remaining_partitions": n}``.

These carry no authentication: run brokers on a network only brokers and trusted clients reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from kbroker.api.errors import json_response
from kbroker.api.partitions import LED_OFFSETS_PATH, local_led_offsets
from kbroker.api.produce import read_body
from kbroker.api.services import SERVICES, Services
from kbroker.errors import BrokerError, ErrorCode, InternalError
from kbroker.replication.endpoint import (
    FETCH_PATH,
    FETCH_STREAM_PATH,
    OFFSETS_FOR_EPOCH_PATH,
    FetchRequest,
    encode_fetch_response,
)

__all__ = ["CONTROLLED_SHUTDOWN_PATH", "install"]

log = logging.getLogger(__name__)

CONTROLLED_SHUTDOWN_PATH = "/internal/v1/controller/shutdown"

#: A fetch stream whose follower sends nothing for this long is closed (a follower cut off
#: from this broker leaves no handler behind for longer; a live one asks again within its
#: ``replica.fetch.wait.max.ms``, and one with nothing to fetch reconnects when it has).
STREAM_IDLE_TIMEOUT_S: Final = 60.0
#: The open fetch streams, closed when the application shuts down (they never end by
#: themselves, and aiohttp would otherwise wait its whole shutdown timeout for them).
REPLICA_STREAMS: Final = web.AppKey("replica_streams", set[web.WebSocketResponse])


async def _serve_fetch(services: Services, body: bytes) -> bytes:
    """One follower fetch (the request body as JSON) answered as one buffer."""
    fetch = FetchRequest.from_json(body)
    wait = min(fetch.max_wait_ms, services.config.replica_fetch_wait_max_ms * 4)
    fetch = FetchRequest(
        replica_id=fetch.replica_id,
        max_wait_ms=wait,
        max_bytes=fetch.max_bytes,
        partitions=fetch.partitions,
    )
    parts = await services.replicas.fetch_for_follower(fetch)
    # One buffer, one send: followers long-poll, and most answers are small (a write per
    # buffer cost a system call each, a large share of a busy leader's time).
    return b"".join(encode_fetch_response(parts))


async def replica_fetch(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    body = await read_body(request, services.config.max_request_bytes)
    return web.Response(
        body=await _serve_fetch(services, body), content_type="application/octet-stream"
    )


async def replica_fetch_stream(request: web.Request) -> web.StreamResponse:
    """A follower's fetches over one WebSocket: each binary message is a fetch request (the
    POST's JSON body); each answer is a binary message (the POST's answer) or, for a request
    that failed, a text message holding the Confluent error body. Requests are answered one
    at a time, in order: a follower's fetcher has one fetch in flight per leader.

    This saves the follower an HTTP request per fetch (headers, a client response object,
    a timeout context): a replication round trip took 0.52-0.67 ms over POST and 0.12-0.24
    ms over the stream, measured on the benchmark machine (docs/architecture.md)."""
    services = request.app[SERVICES]
    ws = web.WebSocketResponse(
        compress=False,
        max_msg_size=services.config.max_request_bytes,
        receive_timeout=STREAM_IDLE_TIMEOUT_S,
        timeout=1.0,  # for the close handshake
    )
    if not ws.can_prepare(request).ok:
        raise BrokerError(
            f"{FETCH_STREAM_PATH} takes a WebSocket upgrade", ErrorCode.MALFORMED_REQUEST
        )
    await ws.prepare(request)
    streams = request.app[REPLICA_STREAMS]
    streams.add(ws)
    try:
        while True:
            msg = await ws.receive()
            if msg.type is not WSMsgType.BINARY:
                break  # closed, closing, an error, or a message no follower sends
            try:
                answer = await _serve_fetch(services, msg.data)
            except BrokerError as exc:
                await ws.send_str(orjson.dumps(exc.body()).decode())
                continue
            except Exception:
                log.exception("replica fetch over a stream failed")
                await ws.send_str(orjson.dumps(InternalError().body()).decode())
                continue
            await ws.send_bytes(answer)
    except (TimeoutError, ConnectionError):
        pass  # an idle follower, or one that went away while its answer was sent
    finally:
        streams.discard(ws)
        await ws.close()
    return ws


async def close_replica_streams(app: web.Application) -> None:
    """on_shutdown: close every open fetch stream (their followers reconnect elsewhere)."""

    async def close(ws: web.WebSocketResponse) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY), 1.0)

    streams: set[web.WebSocketResponse] = app[REPLICA_STREAMS]
    await asyncio.gather(*(close(ws) for ws in list(streams)))


async def epoch_end_offsets(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        doc: Any = orjson.loads(await read_body(request, services.config.max_request_bytes))
        asks = [
            (str(p["topic"]), int(p["partition"]), int(p["leader_epoch"]))
            for p in doc["partitions"]
        ]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BrokerError(
            f"bad epoch-end-offsets request: {exc}", ErrorCode.INVALID_PAYLOAD
        ) from exc
    answers = services.replicas.epoch_end_offsets(asks)
    return json_response(
        {
            "partitions": [
                {
                    "topic": t,
                    "partition": p,
                    "error_code": a.error_code,
                    "leader_epoch": a.leader_epoch,
                    "end_offset": a.end_offset,
                }
                for (t, p), a in answers.items()
            ]
        }
    )


async def led_offsets(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    topic = request.query.get("topic", "")
    offsets = local_led_offsets(services, topic)
    return json_response({"partitions": {str(p): list(o) for p, o in offsets.items()}})


async def controlled_shutdown(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        doc: Any = orjson.loads(await read_body(request, 4096))
        broker_id = int(doc["broker_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BrokerError(
            f"bad controlled shutdown request: {exc}", ErrorCode.INVALID_PAYLOAD
        ) from exc
    remaining = await services.controller.controlled_shutdown(broker_id)
    return json_response({"remaining_partitions": remaining})


def install(app: web.Application) -> None:
    """Add the internal routes to ``app``, with what the fetch streams need."""
    app[REPLICA_STREAMS] = set()
    app.on_shutdown.append(close_replica_streams)
    app.add_routes(_routes())


def _routes() -> list[web.RouteDef]:
    return [
        web.post(CONTROLLED_SHUTDOWN_PATH, controlled_shutdown),
        web.post(FETCH_PATH, replica_fetch),
        web.get(FETCH_STREAM_PATH, replica_fetch_stream),
        web.post(OFFSETS_FOR_EPOCH_PATH, epoch_end_offsets),
        web.get(LED_OFFSETS_PATH, led_offsets),
    ]
