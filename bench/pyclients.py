"""The "Python client" rows: the same workloads driven by Python client libraries.

aiohttp against kbroker, redis-py against Redis Streams, nats-py against JetStream, and the
kclient consumer when kclient has one. These rows measure the client as much as the server (a
Python client on this 2-core machine is often the bottleneck); the C and Go generators give the
server figures. Every function is bounded by a record goal and by ``seconds``, and returns a
:class:`~bench.model.Sample`.

Shapes: produce keeps 4 batches of ``batch`` records in flight (4 HTTP requests, 4 redis-py
pipelines, or a 4 x ``batch`` nats-py async-publish window); fetch uses 4 concurrent readers of
1000 records per request.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bench.model import VALUE, Sample

__all__ = [
    "aiohttp_produce",
    "kclient_consumer_available",
    "kclient_fetch",
    "nats_py_fetch",
    "nats_py_publish",
    "redis_py_xadd",
    "redis_py_xreadgroup",
]

_CONCURRENCY = 4
_MEDIA = "application/vnd.kafka.json.v2+json"


async def _until(
    step: Callable[[], Awaitable[int]], goal: int, seconds: float, tasks: int = _CONCURRENCY
) -> tuple[int, float, bool]:
    """Run ``tasks`` loops of ``step`` (each returns records done) until ``goal`` records or
    ``seconds``; returns (records, elapsed, timed out)."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def loop() -> None:
        nonlocal done
        while done < goal and time.perf_counter() < deadline:
            got = await step()
            if got == 0:
                return
            done += got

    await asyncio.gather(*(loop() for _ in range(tasks)))
    return done, time.perf_counter() - start, done < goal


# -- produce -------------------------------------------------------------------------------------


async def _aiohttp_produce(url: str, body: bytes, batch: int, goal: int, seconds: float) -> Sample:
    errors = 0
    async with aiohttp.ClientSession() as session:

        async def step() -> int:
            nonlocal errors
            async with session.post(url, data=body, headers={"Content-Type": _MEDIA}) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
                    return 0
            return batch

        records, elapsed, late = await _until(step, goal, seconds)
    return Sample(
        records=records,
        seconds=elapsed,
        bytes=records * len(VALUE),
        requests=records // batch,
        errors=errors,
        timed_out=late,
    )


def aiohttp_produce(url: str, body: bytes, batch: int, *, goal: int, seconds: float) -> Sample:
    """POST ``body`` (``batch`` records) to ``url`` with aiohttp, 4 requests in flight."""
    return asyncio.run(_aiohttp_produce(url, body, batch, goal, seconds))


async def _redis_xadd(port: int, key: str, batch: int, goal: int, seconds: float) -> Sample:
    import redis.asyncio as aredis  # noqa: PLC0415 - the bench extra

    client = aredis.Redis(host="127.0.0.1", port=port)
    try:

        async def step() -> int:
            pipe = client.pipeline(transaction=False)
            for _ in range(batch):
                pipe.xadd(key, {"v": VALUE})
            await pipe.execute()
            return batch

        records, elapsed, late = await _until(step, goal, seconds)
    finally:
        await client.aclose()
    return Sample(
        records=records,
        seconds=elapsed,
        bytes=records * len(VALUE),
        requests=records,
        timed_out=late,
    )


def redis_py_xadd(port: int, key: str, batch: int, *, goal: int, seconds: float) -> Sample:
    """XADD with redis-py's asyncio client: 4 pipelines of ``batch`` commands in flight."""
    return asyncio.run(_redis_xadd(port, key, batch, goal, seconds))


async def _nats_publish(url: str, subject: str, window: int, goal: int, seconds: float) -> Sample:
    import nats  # noqa: PLC0415 - the bench extra

    nc = await nats.connect(url)
    failed = sent = 0
    start = time.perf_counter()
    try:
        js = nc.jetstream(publish_async_max_pending=window)
        payload = VALUE.encode()

        def count(future: asyncio.Future[Any]) -> None:
            nonlocal failed
            if future.cancelled() or future.exception() is not None:
                failed += 1

        deadline = start + seconds
        while sent < goal and time.perf_counter() < deadline:
            future = await js.publish_async(subject, payload, wait_stall=5.0)
            future.add_done_callback(count)
            sent += 1
        await asyncio.wait_for(js.publish_async_completed(), timeout=30)
        elapsed = time.perf_counter() - start
    finally:
        await nc.close()
    return Sample(
        records=sent - failed,
        seconds=elapsed,
        bytes=(sent - failed) * len(payload),
        requests=sent,
        errors=failed,
        timed_out=sent < goal,
    )


def nats_py_publish(url: str, subject: str, window: int, *, goal: int, seconds: float) -> Sample:
    """JetStream async publish with nats-py, ``window`` publishes in flight."""
    return asyncio.run(_nats_publish(url, subject, window, goal, seconds))


# -- fetch ---------------------------------------------------------------------------------------


async def _redis_xreadgroup(port: int, key: str, group: str, goal: int, seconds: float) -> Sample:
    import redis.asyncio as aredis  # noqa: PLC0415 - the bench extra

    client = aredis.Redis(host="127.0.0.1", port=port)
    size = 0
    try:
        await client.xgroup_create(key, group, id="0")

        async def step() -> int:
            nonlocal size
            reply: Any = await client.xreadgroup(group, "py", {key: ">"}, count=1000)
            if not reply:
                return 0
            entries = reply[0][1]
            size += sum(len(fields[b"v"]) for _, fields in entries)
            return len(entries)

        records, elapsed, late = await _until(step, goal, seconds)
    finally:
        await client.aclose()
    return Sample(records=records, seconds=elapsed, bytes=size, timed_out=late)


def redis_py_xreadgroup(port: int, key: str, group: str, *, goal: int, seconds: float) -> Sample:
    """XREADGROUP COUNT 1000 with redis-py (a new group, 4 readers)."""
    return asyncio.run(_redis_xreadgroup(port, key, group, goal, seconds))


async def _nats_fetch(
    url: str, stream: str, consumer: str, subject: str, *, goal: int, seconds: float
) -> Sample:
    import nats  # noqa: PLC0415 - the bench extra

    nc = await nats.connect(url)
    size = 0
    try:
        js = nc.jetstream()
        subs = [
            await js.pull_subscribe(subject, durable=consumer, stream=stream)
            for _ in range(_CONCURRENCY)
        ]
        index = 0

        async def step() -> int:
            nonlocal size, index
            sub = subs[index % len(subs)]
            index += 1
            try:
                msgs = await sub.fetch(1000, timeout=2)
            except nats.errors.TimeoutError:
                return 0
            size += sum(len(m.data) for m in msgs)
            return len(msgs)

        records, elapsed, late = await _until(step, goal, seconds)
    finally:
        await nc.close()
    return Sample(records=records, seconds=elapsed, bytes=size, timed_out=late)


def nats_py_fetch(
    url: str, stream: str, consumer: str, subject: str, *, goal: int, seconds: float
) -> Sample:
    """Pull-consumer fetches of 1000 with nats-py (the durable ``consumer`` must exist)."""
    return asyncio.run(_nats_fetch(url, stream, consumer, subject, goal=goal, seconds=seconds))


# -- kclient -------------------------------------------------------------------------------------


def kclient_consumer_available() -> str | None:
    """None when kclient offers the asyncio consumer this benchmark drives, else why not."""
    try:
        module = importlib.import_module("kclient.aio")
    except ImportError as exc:
        return f"kclient.aio cannot be imported: {exc}"
    if not hasattr(module, "Consumer"):
        return "kclient.aio has no Consumer yet"
    return None


async def _kclient_fetch(
    bootstrap: str, topic: str, partitions: int, goal: int, seconds: float
) -> Sample:
    from kclient.aio import Consumer  # noqa: PLC0415 - checked by kclient_consumer_available
    from kclient.structs import TopicPartition  # noqa: PLC0415

    consumer = Consumer(
        bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=10_000,
    )
    records = size = 0
    await consumer.start()
    start = time.perf_counter()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        while records < goal and time.perf_counter() - start < seconds:
            got = await consumer.poll(timeout=1.0)
            if not got:
                break
            records += len(got)
            size += sum(len(r.value) for r in got if r.value is not None)
        elapsed = time.perf_counter() - start
    finally:
        await consumer.close(autocommit=False)
    return Sample(records=records, seconds=elapsed, bytes=size, timed_out=records < goal)


def kclient_fetch(
    bootstrap: str, topic: str, partitions: int, *, goal: int, seconds: float
) -> Sample:
    """Read ``goal`` records of ``topic`` from the beginning with kclient's asyncio consumer
    (manual assignment of every partition, no group; it reads the stored batches,
    ``GET .../batches``, with prefetching fetchers and decodes them in the client)."""
    return asyncio.run(_kclient_fetch(bootstrap, topic, partitions, goal, seconds))
