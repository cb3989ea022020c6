"""The broker's side of its HTTP workers' link calls (kbroker.api.worker_link).

:func:`serve_worker_call` serves each :class:`~kbroker.api.worker_link.Op` as the matching HTTP
endpoint would (same checks, same errors), with the parameters the worker has already checked:

* ``APPEND``: :func:`kbroker.api.produce.append_encoded`;
* ``BATCHES``: :func:`kbroker.api.fetch.read_as_leader`, answered as ``GET .../batches``.

Whatever needs the client's own request (the partition is led by another broker, the topic
needs the broker to encode the records) is answered with the slow-path header: the worker then
relays the original request over HTTP, as it does for every other endpoint.

Concurrency: runs on the broker's event loop, one task per call (LinkServer).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, Final

from kbroker.api.fetch import ReadParams, read_as_leader
from kbroker.api.observability import RequestMetrics
from kbroker.api.produce import SLOW_PATH_HEADER, NeedsRequest, append_encoded
from kbroker.api.services import Services
from kbroker.api.worker_link import Answer, Op
from kbroker.errors import BrokerError, ErrorCode
from kbroker.replication.manager import ProducerInfo
from kclient.protocol import HIGH_WATERMARK_HEADER, LOG_START_HEADER, MEDIA_BATCHES

__all__ = ["serve_worker_call"]

_SLOW_PATH: Final[Answer] = (409, {SLOW_PATH_HEADER: "1"}, b"")
_JSON: Final = {"Content-Type": "application/json"}


async def serve_worker_call(
    services: Services, metrics: RequestMetrics, op: Op, meta: dict[str, Any], data: bytes
) -> Answer:
    """The answer to one worker call (BrokerError propagates: the link renders it). Each call
    is counted in ``metrics`` as method ``LINK``, route ``worker:<op>``."""
    started = time.perf_counter()
    status = 500
    try:
        answer = await _serve(services, op, meta, data)
        status = answer[0]
        return answer
    except BrokerError as exc:
        status = exc.status
        raise
    finally:
        metrics.record("LINK", f"worker:{op.name.lower()}", status, time.perf_counter() - started)


async def _serve(services: Services, op: Op, meta: dict[str, Any], data: bytes) -> Answer:
    if op is Op.APPEND:
        return await _append(services, meta, data)
    if op is Op.BATCHES:
        return await _batches(services, meta)
    raise BrokerError(f"unknown worker call {op!r}", ErrorCode.INVALID_PAYLOAD)


@contextlib.contextmanager
def _reading(op: Op) -> Iterator[None]:
    """A call's parameters that are missing or of the wrong type are a 400, not a 500 (only
    their reading is guarded: a failure of the call itself keeps its own answer)."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as exc:
        raise BrokerError(f"bad worker call {op.name}: {exc!r}", ErrorCode.INVALID_PAYLOAD) from exc


async def _append(services: Services, meta: dict[str, Any], data: bytes) -> Answer:
    with _reading(Op.APPEND):
        producer = meta.get("producer")
        topic, partition = str(meta["topic"]), int(meta["partition"])
        codec, acks = int(meta["codec"]), int(meta["acks"])
        info = None if producer is None else ProducerInfo(*map(int, producer))
    try:
        outcome = await append_encoded(
            services, topic, partition, codec=codec, acks=acks, producer=info, frames=data
        )
    except NeedsRequest:
        return _SLOW_PATH
    return _SLOW_PATH if outcome is None else (200, _JSON, outcome)


async def _batches(services: Services, meta: dict[str, Any]) -> Answer:
    with _reading(Op.BATCHES):
        read = ReadParams(
            topic=str(meta["topic"]),
            partition=int(meta["partition"]),
            offset=int(meta["offset"]),
            max_bytes=int(meta["max_bytes"]),
            timeout_ms=int(meta["timeout_ms"]),
            max_records=None if meta.get("max_records") is None else int(meta["max_records"]),
        )
    result = await read_as_leader(services, read)
    if result is None:
        return _SLOW_PATH
    headers = {
        "Content-Type": MEDIA_BATCHES,
        HIGH_WATERMARK_HEADER: str(result.high_watermark),
        LOG_START_HEADER: str(result.log_start_offset),
    }
    return 200, headers, result.data
