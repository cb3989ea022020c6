"""The workloads, one function per (system, load generator), each returning a Sample.

Equivalent work across systems (see docs/benchmarks.md): ~100-byte values; a produce "batch" of
``r`` records over ``c`` connections is

* kbroker and the bare server: a JSON request of ``r`` records, ``c`` wrk connections;
* Redis: ``XADD`` pipelined ``r`` deep (``redis-benchmark -P r``) on ``c`` connections;
* NATS JetStream: ``r`` async publishes in flight per connection (nats.go
  ``PublishAsyncMaxPending(r)``; ``r = 1`` is a synchronous publish) on ``c`` connections.

Fetch reads 1000 records per request: kbroker's stateless fetch with ``max_records=1000`` (one
reader per partition), Redis ``XREADGROUP ... COUNT 1000`` (4 connections), a JetStream pull
consumer fetching 1000 (4 fetchers).

Produce samples are checked against the server's own count (end offsets, XLEN, stream
messages): records acknowledged but not stored count as errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from bench.gobench import kbload
from bench.model import VALUE, Sample
from bench.redis_bench import redis_benchmark
from bench.systems import KBroker, NatsHandle, RedisHandle
from bench.wrk import WrkResult, run_wrk, run_wrk_many

__all__ = [
    "bare_produce",
    "batch_body",
    "kbroker_fetch",
    "kbroker_produce",
    "latency",
    "nats_add_consumer",
    "nats_add_streams",
    "nats_fetch",
    "nats_produce",
    "redis_fetch",
    "redis_produce",
]


def batch_body(records: int, value: str = VALUE) -> bytes:
    """A produce request body of ``records`` records with ``value``."""
    return orjson.dumps({"records": [{"value": value} for _ in range(records)]})


def _from_wrk(result: WrkResult, batch: int, body: int) -> Sample:
    return Sample(
        records=result.requests * batch,
        seconds=result.seconds,
        bytes=result.requests * body,
        requests=result.requests,
        errors=result.status_errors + result.socket_errors,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        p999_ms=result.p999_ms,
    )


# -- produce -------------------------------------------------------------------------------------


def bare_produce(url: str, batch: int, connections: int, seconds: int) -> Sample:
    """wrk POSTs of ``batch`` records to the bare append server."""
    body = batch_body(batch)
    return _from_wrk(
        run_wrk(url + "/append", body, connections=connections, duration=seconds),
        batch,
        len(body),
    )


def _split(connections: int, targets: int) -> list[int]:
    """``connections`` spread over at most ``targets`` wrk processes (none gets 0)."""
    used = min(connections, targets)
    return [connections // used + (1 if i < connections % used else 0) for i in range(used)]


def kbroker_produce(
    kb: KBroker,
    topic: str,
    partitions: int,
    *,
    batch: int,
    connections: int,
    seconds: int,
    acks: str,
    per_leader: bool,
) -> Sample:
    """wrk POSTs of ``batch`` records. ``per_leader``: one wrk per partition, posting to that
    partition at its leader (spreads a replicated topic's load over the cluster); otherwise one
    wrk posting to the topic (the broker picks a partition per request)."""
    body = batch_body(batch)
    leaders = kb.leaders(topic)
    before = sum(kb.end_offsets(topic, partitions))
    if per_leader:
        shares = _split(connections, partitions)
        targets = [
            (f"{leaders[p]}/topics/{topic}/partitions/{p}?acks={acks}", n)
            for p, n in enumerate(shares)
        ]
        result = run_wrk_many(targets, body, duration=seconds)
    else:
        result = run_wrk(
            f"{kb.url}/topics/{topic}?acks={acks}",
            body,
            connections=connections,
            duration=seconds,
        )
    sample = _from_wrk(result, batch, len(body))
    stored = sum(kb.end_offsets(topic, partitions)) - before
    missing = max(sample.records - stored, 0)
    return Sample(**{**_fields(sample), "errors": sample.errors + missing // batch})


def _fields(sample: Sample) -> dict[str, Any]:
    return {name: getattr(sample, name) for name in Sample.__slots__}


def _redis_requests(batch: int, connections: int, goal: int) -> int:
    """Commands per redis-benchmark run: ``goal`` for pipelines, fewer for single commands (so
    that a run takes seconds, like the time-bounded wrk runs)."""
    if batch >= 100:
        return goal
    return 100_000 if connections == 1 else 300_000


def redis_produce(
    redis: RedisHandle, key: str, *, batch: int, connections: int, goal: int
) -> Sample:
    """``redis-benchmark -P batch -c connections XADD key * v VALUE``."""
    import redis as redis_py  # noqa: PLC0415 - the bench extra

    client = redis_py.Redis(host="127.0.0.1", port=redis.port)
    before = int(client.xlen(key))
    requests = _redis_requests(batch, connections, goal)
    result = redis_benchmark(
        redis.port,
        ["XADD", key, "*", "v", VALUE],
        requests=requests,
        connections=connections,
        pipeline=batch,
    )
    stored = int(client.xlen(key)) - before
    client.close()
    return Sample(
        records=requests,
        seconds=result.seconds,
        bytes=requests * len(VALUE),
        requests=requests // batch,
        errors=max(requests - stored, 0),
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
    )


def nats_produce(
    nats: NatsHandle,
    subjects: Sequence[str],
    *,
    batch: int,
    connections: int,
    goal: int,
    seconds: float,
) -> Sample:
    """kbload nats-pub: ``batch`` async publishes in flight per connection."""
    doc = kbload(
        "nats-pub",
        f"-url={nats.url}",
        f"-subjects={','.join(subjects)}",
        f"-n={goal}",
        f"-conns={connections}",
        f"-window={batch}",
        f"-duration={seconds}s",
        "-size=100",
        timeout=seconds + 60,
    )
    return Sample(
        records=int(doc["records"]),
        seconds=float(doc["seconds"]),
        bytes=int(doc["bytes"]),
        requests=int(doc["requests"]) // max(batch, 1),
        errors=int(doc["errors"]),
        timed_out=bool(doc["timed_out"]),
    )


async def _nats_admin(url: str, action: str, **kw: Any) -> None:
    import nats  # noqa: PLC0415 - the bench extra
    from nats.js.api import (  # noqa: PLC0415
        AckPolicy,
        ConsumerConfig,
        DeliverPolicy,
        StorageType,
        StreamConfig,
    )

    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=30)
        if action == "streams":
            for name, subject in kw["streams"]:
                await js.add_stream(
                    StreamConfig(
                        name=name,
                        subjects=[subject],
                        storage=StorageType.FILE,
                        num_replicas=kw["replicas"],
                    )
                )
        else:
            with contextlib.suppress(Exception):
                await js.delete_consumer(kw["stream"], kw["durable"])
            await js.add_consumer(
                kw["stream"],
                ConsumerConfig(
                    durable_name=kw["durable"],
                    ack_policy=AckPolicy.NONE,
                    deliver_policy=DeliverPolicy.ALL,
                    filter_subject=kw["subject"],
                    max_waiting=64,
                ),
            )
    finally:
        await nc.close()


def nats_add_streams(nats: NatsHandle, streams: Sequence[tuple[str, str]], replicas: int) -> None:
    """Create file-storage streams ``(name, subject)`` with ``replicas`` replicas."""
    asyncio.run(_nats_admin(nats.urls[0], "streams", streams=list(streams), replicas=replicas))


def nats_add_consumer(nats: NatsHandle, stream: str, durable: str, subject: str) -> None:
    """(Re)create a durable pull consumer reading ``stream`` from its start, without acks."""
    asyncio.run(
        _nats_admin(nats.urls[0], "consumer", stream=stream, durable=durable, subject=subject)
    )


# -- fetch ---------------------------------------------------------------------------------------


def _fetch_sample(doc: Mapping[str, Any]) -> Sample:
    """A kbload fetch report (http-fetch, nats-fetch) as a Sample."""
    return Sample(
        records=int(doc["records"]),
        seconds=float(doc["seconds"]),
        bytes=int(doc["bytes"]),
        requests=int(doc["requests"]),
        timed_out=bool(doc["timed_out"]),
    )


def kbroker_fetch(
    kb: KBroker,
    topic: str,
    partitions: int,
    *,
    records: int,
    max_records: int | None,
    seconds: float,
    batches: bool = False,
) -> Sample:
    """kbload http-fetch: one reader per partition from offset 0, ``records`` in all.
    ``batches``: read the raw stored batches (``GET .../batches``, kclient's path) instead of
    rendered JSON records."""
    leaders = kb.leaders(topic)
    resource = "batches" if batches else "records"
    urls = ",".join(
        f"{leaders[p]}/topics/{topic}/partitions/{p}/{resource}" for p in range(partitions)
    )
    doc = kbload(
        "http-fetch",
        f"-urls={urls}",
        f"-n={records // partitions}",
        f"-max-records={max_records or 0}",
        f"-batches={str(batches).lower()}",
        "-max-bytes=1048576",
        f"-duration={seconds}s",
        timeout=seconds + 60,
    )
    return _fetch_sample(doc)


def redis_fetch(redis: RedisHandle, key: str, group: str, *, records: int) -> Sample:
    """``redis-benchmark -c 4 XREADGROUP GROUP group c COUNT 1000 STREAMS key >`` with a new
    group reading from the stream's start; records read come from XINFO GROUPS."""
    import redis as redis_py  # noqa: PLC0415 - the bench extra

    client = redis_py.Redis(host="127.0.0.1", port=redis.port)
    client.xgroup_create(key, group, id="0")
    requests = records // 1000
    result = redis_benchmark(
        redis.port,
        ["XREADGROUP", "GROUP", group, "c", "COUNT", "1000", "STREAMS", key, ">"],
        requests=requests,
        connections=4,
    )
    info = next(g for g in client.xinfo_groups(key) if g["name"].decode() == group)
    read = int(info["entries-read"] or 0)
    client.close()
    return Sample(
        records=read,
        seconds=result.seconds,
        bytes=read * len(VALUE),
        requests=requests,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        timed_out=read < records,
    )


def nats_fetch(
    nats: NatsHandle, stream: str, subject: str, durable: str, *, records: int, seconds: float
) -> Sample:
    """kbload nats-fetch: 4 fetchers of 1000 on a fresh durable pull consumer."""
    nats_add_consumer(nats, stream, durable, subject)
    doc = kbload(
        "nats-fetch",
        f"-url={nats.url}",
        f"-stream={stream}",
        f"-consumer={durable}",
        f"-subject={subject}",
        f"-n={records}",
        "-batch=1000",
        "-fetchers=4",
        f"-duration={seconds}s",
        timeout=seconds + 60,
    )
    return _fetch_sample(doc)


# -- latency -------------------------------------------------------------------------------------


def latency(
    system: str,
    *,
    seconds: int,
    target: Mapping[str, str],
    rate: int = 200,
    batch: int = 100,
) -> dict[str, Any]:
    """kbload latency: open loop, ``rate`` requests/s of ``batch`` records over 8 connections
    for ``seconds``; ``target`` holds the system's flags (urls, topic, acks / addr, key /
    nats, subjects). Returns kbload's document (ack and e2e percentiles)."""
    flags = [f"-{name}={value}" for name, value in target.items()]
    return kbload(
        "latency",
        f"-system={system}",
        f"-rate={rate}",
        f"-batch={batch}",
        "-conns=8",
        f"-duration={seconds}s",
        "-warmup=2s",
        *flags,
        timeout=seconds + 90,
    )
