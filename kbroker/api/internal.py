"""Broker-to-broker endpoints under ``/internal/v1`` (not part of the public API).

* ``POST /internal/v1/replica/fetch``: a follower's fetch (binary answer; see
  kbroker.replication.endpoint for the format).
* ``POST /internal/v1/replica/epoch-end-offsets``: OffsetsForLeaderEpoch (KIP-101/279).
* ``GET /internal/v1/led-offsets?topic=T``: offsets of the partitions of T led here.
* ``POST /internal/v1/controller/shutdown``: a stopping broker asks the active controller to
  move its leadership away; answers ``{"remaining_partitions": n}``.

These carry no authentication: run brokers on a network only brokers and trusted clients reach.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from kbroker.api.errors import json_response
from kbroker.api.partitions import LED_OFFSETS_PATH, local_led_offsets
from kbroker.api.produce import read_body
from kbroker.api.services import SERVICES
from kbroker.errors import BrokerError, ErrorCode
from kbroker.replication.endpoint import (
    FETCH_PATH,
    OFFSETS_FOR_EPOCH_PATH,
    FetchRequest,
    encode_fetch_response,
)

__all__ = ["CONTROLLED_SHUTDOWN_PATH", "routes"]

CONTROLLED_SHUTDOWN_PATH = "/internal/v1/controller/shutdown"


async def replica_fetch(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    fetch = FetchRequest.from_json(await read_body(request, services.config.max_request_bytes))
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
    return web.Response(
        body=b"".join(encode_fetch_response(parts)), content_type="application/octet-stream"
    )


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


def routes() -> list[web.RouteDef]:
    return [
        web.post(CONTROLLED_SHUTDOWN_PATH, controlled_shutdown),
        web.post(FETCH_PATH, replica_fetch),
        web.post(OFFSETS_FOR_EPOCH_PATH, epoch_end_offsets),
        web.get(LED_OFFSETS_PATH, led_offsets),
    ]
