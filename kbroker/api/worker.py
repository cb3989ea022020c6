"""HTTP worker processes: more cores for the CPU-heavy part of produce and fetch.

With ``num.http.workers`` > 0 the broker starts that many worker processes. They take every
client connection: each listens on the broker's address (``SO_REUSEPORT``: the kernel spreads
new connections over the workers; the broker process does not listen there) and talks to the
broker over two Unix sockets in the data directory: the lean link
(kbroker.api.worker_link) for the two hot calls, HTTP for everything else. A worker owns no
state and no partition; it only moves per-record work off the broker's event loop:

* **produce** (keyless records to a topic, or records to a partition): the worker parses and
  checks the body and encodes the batch; the broker only appends it and answers
  (kbroker.api.worker_calls). Keyed or partition-naming topic-level requests, and whatever the
  broker answers with the slow-path header (the partition is led by another broker, the topic
  needs the broker to encode: see ``append_encoded``), go to the broker over HTTP as they came;
* **stateless fetch**: the broker reads the batches and the worker renders them as JSON
  records (a partition led by another broker: read over HTTP, which the broker forwards);
* **everything else** is relayed to the broker over HTTP unchanged.

Answers are the same as the broker's own, byte for byte, whichever worker a connection lands
on. A worker exits when its parent broker is gone, and stops listening on SIGUSR1 (the broker
is draining).

``python -m kbroker.api.worker SOCKET PARENT_PID`` is started by the broker
(kbroker.api.worker_pool.WorkerPool), with the broker's configuration as JSON on stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import os
import signal
import sys
import time
from typing import Final

import aiohttp
import orjson
import uvloop
from aiohttp import web
from multidict import CIMultiDict

from kbroker.api.cors import install_cors
from kbroker.api.errors import Handler, error_middleware, json_response
from kbroker.api.fetch import ReadParams, read_params, records_response
from kbroker.api.forward import FORWARDED_HOST_HEADER, relayed
from kbroker.api.listener import ClientListener
from kbroker.api.media import produce_format
from kbroker.api.params import acks_param, partition_path, topic_path
from kbroker.api.produce import (
    SLOW_PATH_HEADER,
    encode_frames,
    producer_param,
    read_body,
    render_worker_outcome,
)
from kbroker.api.worker_link import LinkClient, Op
from kbroker.api.worker_pool import worker_link_path
from kbroker.config import BrokerConfig
from kbroker.errors import BrokerError, ErrorCode
from kbroker.records import (
    PartitionRecords,
    encode_partition_records,
    parse_plain_body,
    parse_produce_body,
)
from kbroker.replication.manager import ProducerInfo
from kclient.protocol import (
    ACKS_HEADER,
    HIGH_WATERMARK_HEADER,
    MEDIA_BATCHES,
    EmbeddedFormat,
    PayloadCodec,
)
from kclient.tuning import tune_gc

__all__ = ["Relay", "build_worker_app", "main"]


class Relay:
    """The worker's link to its broker: an HTTP client over the broker's Unix socket."""

    def __init__(self, socket_path: str, config: BrokerConfig) -> None:
        self.config = config
        self.draining = False
        """Set once the broker is stopping: it answered ``Connection: close``, or told this
        worker to stop listening (SIGUSR1)."""
        self.link = LinkClient(str(worker_link_path(config)))
        """The lean link for the hot calls (kbroker.api.worker_link)."""
        self.session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=socket_path, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )

    async def send(
        self,
        request: web.Request,
        *,
        method: str | None = None,
        path: str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, CIMultiDict[str], bytes]:
        """Send a request to the broker; (status, headers, body)."""
        sent = relayed(request.headers)
        if body is not None:  # already decoded (read_body): its coding no longer applies
            sent = {k: v for k, v in sent.items() if k.lower() != "content-encoding"}
        sent[FORWARDED_HOST_HEADER] = request.host
        sent.update(headers or {})
        if body is None and request.can_read_body:
            body = await request.read()
        try:
            async with self.session.request(
                method or request.method,
                f"http://broker{path or request.path_qs}",
                data=body,
                headers=sent,
            ) as resp:
                payload = await resp.read()
                if resp.headers.get("Connection", "").lower() == "close":
                    self.draining = True
                return resp.status, CIMultiDict(resp.headers), payload
        except (aiohttp.ClientError, OSError) as exc:
            raise BrokerError(
                f"The broker behind this worker is not answering: {exc!r}",
                ErrorCode.BROKER_NOT_AVAILABLE,
            ) from exc

    async def relay(self, request: web.Request, *, body: bytes | None = None) -> web.Response:
        status, headers, payload = await self.send(request, body=body)
        return _response(status, headers, payload)


RELAY: Final = web.AppKey("relay", Relay)


def _response(status: int, headers: CIMultiDict[str], payload: bytes) -> web.Response:
    return web.Response(status=status, body=payload, headers=relayed(headers))


async def produce(request: web.Request) -> web.StreamResponse:
    relay = request.app[RELAY]
    config = relay.config
    fmt = produce_format(request.headers.get("Content-Type"))
    acks = acks_param(request, ACKS_HEADER)
    producer = producer_param(request)
    raw = await read_body(request, config.max_request_bytes)
    partition = partition_path(request) if "partition" in request.match_info else -1
    encoded = None if "async" in request.query else _encode(raw, fmt, partition, producer, config)
    if encoded is None:  # Strimzi's async answer, too, is the broker's own
        return await relay.relay(request, body=raw)
    batches, codec, record_count = encoded
    meta = {
        "topic": topic_path(request),
        "partition": partition,
        "codec": int(codec),
        "acks": acks,
        "producer": None if producer is None else list(producer),
    }
    status, headers, payload = await relay.link.call(Op.APPEND, meta, encode_frames(batches))
    if SLOW_PATH_HEADER in headers:
        return await relay.relay(request, body=raw)
    if status != 200:
        return _response(status, CIMultiDict(headers), payload)
    return json_response(render_worker_outcome(payload, record_count))


def _encode(
    raw: bytes,
    fmt: EmbeddedFormat,
    partition: int,
    producer: ProducerInfo | None,
    config: BrokerConfig,
) -> tuple[list[PartitionRecords], PayloadCodec, int] | None:
    """The request's records as batches for the broker to append (with their codec and
    count), or None when the broker must take the request itself: records that name their
    partition, or keyed or idempotent records sent to the topic (the broker routes those).
    A plain body (kbroker.records.PlainBody) is encoded without a dict per record. Raises
    BrokerError for a body that is not valid."""
    now_ms = time.time_ns() // 1_000_000
    plain = parse_plain_body(raw, fmt)
    if plain is not None:
        if partition < 0 and (plain.has_keys or producer is not None):
            return None
        batch = plain.encode(now_ms=now_ms, max_batch_bytes=config.message_max_bytes)
        if batch is not None:
            return [batch], plain.codec, plain.record_count
        # larger than one batch: encode_partition_records splits it
    body = parse_produce_body(raw, fmt)
    fast = (
        body.records
        and body.explicit_partitions() is None
        and (partition >= 0 or not body.has_keys())
        and (partition >= 0 or producer is None)
    )
    if not fast:
        return None
    batches = encode_partition_records(
        body,
        range(len(body.records)),
        now_ms=now_ms,
        log_append_time=False,
        max_batch_bytes=config.message_max_bytes,
    )
    return batches, body.codec, len(body.records)


async def fetch_records(request: web.Request) -> web.StreamResponse:
    """Read batches through the broker and render them here (the CPU-heavy part)."""
    relay = request.app[RELAY]
    read = read_params(request, relay.config)
    meta = dataclasses.asdict(read)
    async with relay.link.calling(Op.BATCHES, meta, answer_in_ring=True) as answer:
        status, headers, payload = answer
        if SLOW_PATH_HEADER not in headers:
            return _batches_response(request, read, status, headers, payload)
    path = (  # led by another broker: read through the broker's HTTP, which forwards it
        f"/topics/{read.topic}/partitions/{read.partition}/batches?offset={read.offset}"
        f"&max_bytes={read.max_bytes}&timeout={read.timeout_ms}"
        + ("" if read.max_records is None else f"&max_records={read.max_records}")
    )
    status, multi, body = await relay.send(request, method="GET", path=path)
    return _batches_response(request, read, status, dict(multi), body)


def _batches_response(
    request: web.Request,
    read: ReadParams,
    status: int,
    headers: dict[str, str],
    payload: bytes | memoryview,
) -> web.Response:
    """The ``/records`` answer rendered from the broker's ``/batches`` answer."""
    if status != 200 or not headers.get("Content-Type", "").startswith(MEDIA_BATCHES):
        return _response(status, CIMultiDict(headers), bytes(payload))
    return records_response(request, read, payload, int(headers[HIGH_WATERMARK_HEADER]))


async def relay_anything(request: web.Request) -> web.StreamResponse:
    return await request.app[RELAY].relay(request)


@web.middleware
async def _drain_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Once the broker is stopping, close client connections after each answer (as it does)."""
    response = await handler(request)
    if request.app[RELAY].draining:
        response.force_close()
    return response


def build_worker_app(relay: Relay) -> web.Application:
    app = web.Application(
        middlewares=[_drain_middleware, error_middleware],
        client_max_size=relay.config.max_request_bytes,
    )
    app[RELAY] = relay
    install_cors(app, relay.config)
    app.add_routes(
        [
            web.post("/topics/{topic}", produce),
            web.post("/topics/{topic}/partitions/{partition}", produce),
            web.get("/topics/{topic}/partitions/{partition}/records", fetch_records),
            web.route("*", "/{tail:.*}", relay_anything),
        ]
    )
    return app


async def _serve(config: BrokerConfig, socket_path: str, parent: int) -> None:
    relay = Relay(socket_path, config)
    runner = web.AppRunner(
        build_worker_app(relay),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=5.0,
        auto_decompress=False,  # bodies are decoded by kbroker.api.encoding
    )
    await runner.setup()
    listener = ClientListener(runner, config.listen, reuse_port=True)
    await listener.start()
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    quieting: list[asyncio.Task[None]] = []

    def stop_listening() -> None:
        """The broker is draining (WorkerPool.stop_listening): refuse new connections, close
        the open ones after their current answer."""
        relay.draining = True
        quieting.append(loop.create_task(listener.stop()))

    loop.add_signal_handler(signal.SIGUSR1, stop_listening)
    while not stop.is_set() and os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    await runner.cleanup()
    relay.link.close()
    await relay.session.close()


def _die_with_parent() -> None:
    """Ask Linux for SIGTERM when the parent exits (prctl PR_SET_PDEATHSIG); elsewhere the
    one-second poll of the parent pid in :func:`_serve` is what ends an orphan."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


_PR_SET_PDEATHSIG: Final = 1


def main() -> int:
    """Entry point of a worker process: ``SOCKET PARENT_PID`` as arguments, the broker's
    configuration as JSON on stdin."""
    socket_path, parent = sys.argv[1], int(sys.argv[2])
    _die_with_parent()
    if os.getppid() != parent:
        return 1  # the broker is already gone (it died while this process started)
    fields = {f.name for f in dataclasses.fields(BrokerConfig)}
    values = {k: v for k, v in orjson.loads(sys.stdin.buffer.read()).items() if k in fields}
    uvloop.run(_serve(BrokerConfig(**values), socket_path, parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
