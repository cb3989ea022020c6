"""Confluent REST Proxy v2 consumers: ``/consumers/{group}[/instances/{name}/...]``.

An instance is created with ``POST /consumers/{group}`` and used through its ``base_uri``
(subscription or assignments, records, positions, offsets). Its state lives with the group's
coordinator, so *any* broker can serve any instance (the request is forwarded) and no sticky
load balancer is needed. A subscribed instance is a group member that the coordinator keeps
joined itself; it is deleted (and leaves its group) after ``consumer.instance.timeout.ms``
without requests.

Semantics as Confluent's, with these documented differences: records carry ``timestamp`` and
``headers``; ``GET .../records`` answers as soon as records are available (up to ``timeout`` ms,
capped by ``consumer.request.timeout.ms``); with ``auto.commit.enable`` the positions reached
by the *previous* records request are committed at the start of each records request (Kafka's
auto-commit semantics) and when partitions move away in a rebalance. ``max_bytes`` is
Confluent's: reading stops before the record whose key and value bytes would bring the
answer's total to ``max_bytes``, and that record stays unread, even when it is the first
(``max_bytes=1`` reads nothing; some v1 clients send it as a heartbeat).

REST Proxy v1's consumer calls work as well (docs/api.md, "REST Proxy v1"):
``GET .../instances/{name}/topics/{topic}[?max_bytes=]`` reads one topic, subscribing the
instance to it on first use, and a commit in v1 media types answers with v1's
``[{"topic", "partition", "consumed", "committed"}]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from typing import Any, Final

import orjson
from aiohttp import web

from kbroker.api.coordination import coordinated, leader_offsets
from kbroker.api.errors import json_response
from kbroker.api.groups import body_of, check_partitions, offsets_of, partitions_of
from kbroker.api.media import MEDIA_OF_FORMAT, MEDIA_OF_FORMAT_V1, MEDIA_V1, accepted_format, is_v1
from kbroker.api.params import int_param, timestamp_ms
from kbroker.api.services import SERVICES, Services
from kbroker.errors import BrokerError, ErrorCode, InvalidRequestError
from kbroker.group.coordinator import RestInstance
from kbroker.group.state import OffsetEntry, TopicPartition
from kbroker.records import render_batches
from kclient.protocol import EmbeddedFormat

__all__ = ["routes"]

_CREATE_FIELDS: Final = frozenset(
    {
        "name",
        "id",
        "format",
        "auto.offset.reset",
        "auto.commit.enable",
        "enable.auto.commit",
        "fetch.min.bytes",
        "consumer.request.timeout.ms",
        "isolation.level",
    }
)
_RESET: Final = {
    "earliest": "earliest",
    "smallest": "earliest",
    "latest": "latest",
    "largest": "latest",
    "none": "none",
}
_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,255}")
#: Largest max_bytes of a records request (Confluent's consumer.request.max.bytes).
MAX_RECORDS_BYTES: Final = 64 << 20


def _ids(request: web.Request) -> tuple[str, str]:
    return request.match_info["group"], request.match_info["instance"]


def _instance(request: web.Request) -> RestInstance:
    group_id, name = _ids(request)
    return request.app[SERVICES].coordinator.instance(group_id, name)


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BrokerError(f"{name} must be true or false", ErrorCode.INVALID_CONSUMER_CONFIG)


# ------------------------------------------------------------------------------ create


async def create_instance(request: web.Request) -> web.StreamResponse:
    group_id = request.match_info["group"]

    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        doc = await body_of(request) or {}
        if not isinstance(doc, dict):
            raise BrokerError("The body must be a JSON object", ErrorCode.INVALID_CONSUMER_CONFIG)
        unknown = doc.keys() - _CREATE_FIELDS
        if unknown:
            raise BrokerError(
                f"Unknown consumer config: {', '.join(sorted(unknown))}",
                ErrorCode.INVALID_CONSUMER_CONFIG,
            )
        name = doc.get("id") or doc.get("name") or f"rest-consumer-{uuid.uuid4()}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise BrokerError(
                "name must be 1-255 characters of [A-Za-z0-9._-]", ErrorCode.INVALID_CONSUMER_CONFIG
            )
        fmt = str(doc.get("format", "binary")).lower()
        if fmt not in ("binary", "json", "text"):
            raise BrokerError(
                f"format {fmt!r} is not supported: use binary, json or text",
                ErrorCode.INVALID_CONSUMER_CONFIG,
            )
        reset = _RESET.get(str(doc.get("auto.offset.reset", "latest")).lower())
        if reset is None:
            raise BrokerError(
                "auto.offset.reset must be earliest, latest or none",
                ErrorCode.INVALID_CONSUMER_CONFIG,
            )
        auto_commit = True
        for key in ("auto.commit.enable", "enable.auto.commit"):
            if key in doc:
                auto_commit = _bool(doc[key], key)
        instance = RestInstance(
            group_id=group_id,
            name=name,
            format=fmt,
            auto_offset_reset=reset,
            auto_commit=auto_commit,
        )
        await services.coordinator.create_instance(instance)
        base = f"{request.scheme}://{request.host}/consumers/{group_id}/instances/{name}"
        return json_response(
            {"instance_id": name, "base_uri": base}, content_type="application/vnd.kafka.v2+json"
        )

    return await coordinated(request, group_id, handle)


async def delete_instance(request: web.Request) -> web.StreamResponse:
    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        instance = _instance(request)
        async with instance.lock:
            await _auto_commit(services, instance)
            await services.coordinator.delete_instance(instance)
        return web.Response(status=204)

    return await coordinated(request, request.match_info["group"], handle)


# ------------------------------------------------------------------ subscription


async def subscribe(request: web.Request) -> web.StreamResponse:
    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        instance = _instance(request)
        doc = await body_of(request)
        if not isinstance(doc, dict):
            raise InvalidRequestError('The body must be {"topics": [...]} or {"topic_pattern"}')
        topics, pattern = doc.get("topics"), doc.get("topic_pattern")
        if topics is not None and pattern is not None:
            raise BrokerError(
                "Give topics or topic_pattern, not both", ErrorCode.ALREADY_SUBSCRIBED
            )
        if topics is None and pattern is None:
            raise InvalidRequestError("Give topics or topic_pattern")
        if topics is not None and (
            not isinstance(topics, list)
            or not topics
            or not all(isinstance(t, str) for t in topics)
        ):
            raise InvalidRequestError("topics must be a non-empty array of topic names")
        if pattern is not None and not isinstance(pattern, str):
            raise InvalidRequestError("topic_pattern must be a string")
        async with instance.lock:
            await _subscribe(services, instance, tuple(topics or ()), pattern)
        return web.Response(status=204)

    return await coordinated(request, request.match_info["group"], handle)


async def _subscribe(
    services: Services, instance: RestInstance, topics: tuple[str, ...], pattern: str | None
) -> None:
    """Make ``topics`` (or ``pattern``) the subscription; the caller holds ``instance.lock``."""
    if instance.manual is not None:
        raise BrokerError(
            "Subscription to topics, partitions and pattern are "
            "mutually exclusive (the consumer has an assignment)",
            ErrorCode.ILLEGAL_STATE,
        )
    instance.topics = topics
    instance.pattern = pattern
    await services.coordinator.save_instance(instance)
    await services.coordinator.subscribe_instance(instance)


async def get_subscription(request: web.Request) -> web.StreamResponse:
    async def handle() -> web.StreamResponse:
        instance = _instance(request)
        coordinator = request.app[SERVICES].coordinator
        topics = (
            list(instance.topics)
            if instance.topics
            else sorted({t for t, _ in coordinator.instance_assignment(instance)})
        )
        return json_response({"topics": topics}, content_type="application/vnd.kafka.v2+json")

    return await coordinated(request, request.match_info["group"], handle)


async def unsubscribe(request: web.Request) -> web.StreamResponse:
    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        instance = _instance(request)
        async with instance.lock:
            await _auto_commit(services, instance)
            if instance.member_id is not None:
                with contextlib.suppress(BrokerError):
                    await services.coordinator.leave(instance.group_id, instance.member_id)
            instance.member_id = None
            instance.topics, instance.pattern = (), None
            instance.positions.clear()
            await services.coordinator.save_instance(instance)
        return web.Response(status=204)

    return await coordinated(request, request.match_info["group"], handle)


async def assign(request: web.Request) -> web.StreamResponse:
    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        instance = _instance(request)
        tps = partitions_of(await body_of(request))
        check_partitions(services, tps)
        async with instance.lock:
            if instance.member_id is not None or instance.topics or instance.pattern:
                raise BrokerError(
                    "Subscription to topics, partitions and pattern are "
                    "mutually exclusive (the consumer is subscribed)",
                    ErrorCode.ILLEGAL_STATE,
                )
            instance.manual = sorted(set(tps))
            instance.positions = {
                tp: o for tp, o in instance.positions.items() if tp in instance.manual
            }
            await services.coordinator.save_instance(instance)
        return web.Response(status=204)

    return await coordinated(request, request.match_info["group"], handle)


async def get_assignments(request: web.Request) -> web.StreamResponse:
    async def handle() -> web.StreamResponse:
        instance = _instance(request)
        tps = request.app[SERVICES].coordinator.instance_assignment(instance)
        return json_response(
            {"partitions": [{"topic": t, "partition": p} for t, p in tps]},
            content_type="application/vnd.kafka.v2+json",
        )

    return await coordinated(request, request.match_info["group"], handle)


# ---------------------------------------------------------------------- positions


def _assigned(services: Services, instance: RestInstance, tps: list[TopicPartition]) -> None:
    assigned = set(services.coordinator.instance_assignment(instance))
    missing = [tp for tp in tps if tp not in assigned]
    if missing:
        raise BrokerError(
            f"No current assignment for partitions {missing}", ErrorCode.ILLEGAL_STATE
        )


async def seek(request: web.Request) -> web.StreamResponse:
    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        instance = _instance(request)
        doc = await body_of(request)
        targets = (
            offsets_of(doc, plus_one=False) if isinstance(doc, dict) and "offsets" in doc else {}
        )
        by_time = doc.get("timestamps") if isinstance(doc, dict) else None
        async with instance.lock:
            _assigned(services, instance, list(targets))
            for tp, entry in targets.items():
                instance.positions[tp] = entry.offset
            for entry in by_time or []:
                tp = partitions_of({"p": [entry]}, "p")[0]
                _assigned(services, instance, [tp])
                found = await leader_offsets(
                    services, tp[0], tp[1], timestamp=timestamp_ms(entry.get("timestamp"))
                )
                instance.positions[tp] = int(
                    found["offset"] if found.get("offset") is not None else found["end_offset"]
                )
        return web.Response(status=204)

    return await coordinated(request, request.match_info["group"], handle)


async def seek_edge(request: web.Request) -> web.StreamResponse:
    end = request.match_info["edge"] == "end"

    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        instance = _instance(request)
        tps = partitions_of(await body_of(request))
        async with instance.lock:
            _assigned(services, instance, tps)
            for tp in tps:
                bounds = await leader_offsets(services, tp[0], tp[1])
                instance.positions[tp] = int(bounds["end_offset" if end else "beginning_offset"])
        return web.Response(status=204)

    return await coordinated(request, request.match_info["group"], handle)


# ------------------------------------------------------------------------ records


async def records(request: web.Request) -> web.StreamResponse:
    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        instance = _instance(request)
        fmt, timeout, max_bytes = _read_params(request, services, instance)
        async with instance.lock:
            await _auto_commit(services, instance)
            out = await _poll(services, instance, fmt, timeout, max_bytes)
        return json_response(orjson.dumps(out), content_type=MEDIA_OF_FORMAT[fmt])

    return await coordinated(request, request.match_info["group"], handle)


async def read_topic(request: web.Request) -> web.StreamResponse:
    """REST Proxy v1's read, ``GET .../instances/{name}/topics/{topic}[?max_bytes=]``.

    The first read of a topic adds it to the instance's subscription (v1 consumers subscribed
    by reading) unless the instance was assigned partitions of it; the answer holds records of
    that topic only, and the positions of the instance's other topics do not move.
    """

    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        instance = _instance(request)
        topic = request.match_info["topic"]
        services.metadata.topic(topic)  # 404 for an unknown topic, as v1 answered
        fmt, timeout, max_bytes = _read_params(request, services, instance)
        async with instance.lock:
            assigned = any(t == topic for t, _ in instance.manual or ())
            if topic not in instance.topics and not assigned:
                if instance.pattern is not None:
                    raise BrokerError(
                        "The consumer is subscribed to a pattern", ErrorCode.ILLEGAL_STATE
                    )
                await _subscribe(services, instance, (*instance.topics, topic), None)
            await _auto_commit(services, instance)
            out = await _poll(services, instance, fmt, timeout, max_bytes, topic=topic)
        return json_response(orjson.dumps(out), content_type=MEDIA_OF_FORMAT_V1[fmt])

    return await coordinated(request, request.match_info["group"], handle)


def _read_params(
    request: web.Request, services: Services, instance: RestInstance
) -> tuple[EmbeddedFormat, int, int]:
    """A records request's format (406 unless the instance's), timeout and max_bytes."""
    fmt = EmbeddedFormat(instance.format)
    wanted = accepted_format(request.headers.get("Accept"), default=fmt)
    if wanted is not fmt:
        raise BrokerError(
            f"The consumer's format is {fmt.value}; accept {MEDIA_OF_FORMAT[fmt]}",
            ErrorCode.NOT_ACCEPTABLE,
        )
    cap = services.config.consumer_request_timeout_ms
    timeout = int_param(request, "timeout", default=cap, low=0, high=3_600_000)
    timeout = min(timeout if timeout > 0 else cap, cap)
    max_bytes = int_param(
        request, "max_bytes", default=MAX_RECORDS_BYTES, low=1, high=MAX_RECORDS_BYTES
    )
    return fmt, timeout, max_bytes


async def _poll(
    services: Services,
    instance: RestInstance,
    fmt: EmbeddedFormat,
    timeout_ms: int,
    max_bytes: int,
    *,
    topic: str | None = None,
) -> list[dict[str, Any]]:
    """Records from the instance's assigned partitions (of ``topic`` only, if given)."""
    assignment = services.coordinator.instance_assignment(instance)
    if topic is not None:
        assignment = [tp for tp in assignment if tp[0] == topic]
    for tp in assignment:
        if tp not in instance.positions:
            instance.positions[tp] = await _initial_position(services, instance, tp)
    if not assignment:
        await asyncio.sleep(min(timeout_ms, 100) / 1000)
        return []
    ready = await _fetch_all(services, instance, assignment, 0, max_bytes)
    if not any(ready.values()) and timeout_ms > 0:
        ready = await _fetch_all(services, instance, assignment, timeout_ms, max_bytes)
    out: list[dict[str, Any]] = []
    budget = max_bytes
    for tp, data in ready.items():
        if not data or budget <= 0:
            continue
        rendered = render_batches(
            data,
            topic=tp[0],
            partition=tp[1],
            start_offset=instance.positions[tp],
            fmt=fmt,
            max_bytes=budget,
            strict_max_bytes=True,
        )
        out.extend(rendered.records)
        budget -= len(data)
        instance.positions[tp] = rendered.next_offset
    return out


async def _initial_position(services: Services, instance: RestInstance, tp: TopicPartition) -> int:
    committed = services.coordinator.committed(instance.group_id, [tp[0]]).get(tp)
    if committed is not None and committed.offset >= 0:
        return committed.offset
    if instance.auto_offset_reset == "none":
        raise BrokerError(
            f"No committed offset for {tp[0]}-{tp[1]} and auto.offset.reset is none",
            ErrorCode.ILLEGAL_STATE,
        )
    bounds = await leader_offsets(services, tp[0], tp[1])
    edge = "beginning_offset" if instance.auto_offset_reset == "earliest" else "end_offset"
    return int(bounds[edge])


async def _fetch_all(
    services: Services,
    instance: RestInstance,
    assignment: list[TopicPartition],
    timeout_ms: int,
    max_bytes: int,
) -> dict[TopicPartition, bytes]:
    """Batches from each assigned partition at the instance's position; with a timeout, the
    first partition to have data ends the wait for all."""
    tasks = {
        tp: asyncio.ensure_future(
            _fetch_one(
                services,
                instance,
                tp,
                offset=instance.positions[tp],
                timeout_ms=timeout_ms,
                max_bytes=max_bytes,
            )
        )
        for tp in assignment
    }
    try:
        pending = set(tasks.values())
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(t.result() for t in done):
                break
    finally:
        for task in tasks.values():
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    return {
        tp: t.result()
        for tp, t in tasks.items()
        if t.done() and not t.cancelled() and t.exception() is None
    }


async def _fetch_one(
    services: Services,
    instance: RestInstance,
    tp: TopicPartition,
    *,
    offset: int,
    timeout_ms: int,
    max_bytes: int,
) -> bytes:
    topic, partition = tp
    metadata = services.metadata
    try:
        if metadata.partition(topic, partition).leader == services.config.broker_id:
            result = await services.replicas.fetch(
                topic, partition, offset, max_bytes=max_bytes, max_wait_ms=timeout_ms
            )
            return result.data
        url = metadata.leader_url(topic, partition)
        return await services.peers.get(
            url,
            f"/topics/{topic}/partitions/{partition}/batches?offset={offset}"
            f"&max_bytes={max_bytes}&timeout={timeout_ms}",
        )
    except BrokerError as exc:
        if exc.code is ErrorCode.OFFSET_OUT_OF_RANGE:
            instance.positions.pop(tp, None)
            instance.positions[tp] = (
                await _initial_position(services, instance, tp)
                if instance.auto_offset_reset != "none"
                else offset
            )
        return b""


# ------------------------------------------------------------------------- offsets


async def _auto_commit(services: Services, instance: RestInstance) -> None:
    """Commit the positions the previous records request reached (auto.commit.enable)."""
    if not instance.auto_commit:
        return
    changed = {
        tp: OffsetEntry(offset=o)
        for tp, o in instance.positions.items()
        if instance.committed_positions.get(tp) != o
    }
    if changed:
        await _commit(services, instance, changed)


async def _commit(
    services: Services, instance: RestInstance, offsets: dict[TopicPartition, OffsetEntry]
) -> None:
    group = services.coordinator.group(instance.group_id)
    generation = group.generation if group is not None and instance.member_id else -1
    await services.coordinator.commit(
        instance.group_id, offsets, member_id=instance.member_id, generation=generation
    )
    for tp, entry in offsets.items():
        instance.committed_positions[tp] = entry.offset


async def commit(request: web.Request) -> web.StreamResponse:
    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        instance = _instance(request)
        doc = await body_of(request)
        async with instance.lock:
            if doc is None or (isinstance(doc, dict) and not doc.get("offsets")):
                offsets = {tp: OffsetEntry(offset=o) for tp, o in instance.positions.items()}
            else:
                offsets = offsets_of(doc, plus_one=True)
                check_partitions(services, list(offsets))
            if offsets:
                await _commit(services, instance, offsets)
        if is_v1(request.headers.get("Content-Type"), request.headers.get("Accept")):
            committed = [
                {"topic": t, "partition": p, "consumed": e.offset, "committed": e.offset}
                for (t, p), e in sorted(offsets.items())
            ]
            return json_response(committed, content_type=MEDIA_V1)
        return json_response([], content_type="application/vnd.kafka.v2+json")

    return await coordinated(request, request.match_info["group"], handle)


async def committed(request: web.Request) -> web.StreamResponse:
    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        instance = _instance(request)
        doc = await body_of(request)
        tps = (
            partitions_of(doc)
            if doc is not None
            else services.coordinator.instance_assignment(instance)
        )
        found = services.coordinator.committed(instance.group_id)
        return json_response(
            {
                "offsets": [
                    {
                        "topic": t,
                        "partition": p,
                        "offset": found[(t, p)].offset if (t, p) in found else -1,
                        "metadata": found[(t, p)].metadata if (t, p) in found else "",
                    }
                    for t, p in tps
                ]
            },
            content_type="application/vnd.kafka.v2+json",
        )

    return await coordinated(request, request.match_info["group"], handle)


def routes() -> list[web.RouteDef]:
    i = "/consumers/{group}/instances/{instance}"
    return [
        web.post("/consumers/{group}", create_instance),
        web.delete(i, delete_instance),
        web.post(i + "/subscription", subscribe),
        web.get(i + "/subscription", get_subscription),
        web.delete(i + "/subscription", unsubscribe),
        web.post(i + "/assignments", assign),
        web.get(i + "/assignments", get_assignments),
        web.post(i + "/positions", seek),
        web.post(i + "/positions/{edge:beginning|end}", seek_edge),
        web.get(i + "/records", records),
        web.get(i + "/topics/{topic}", read_topic),
        web.post(i + "/offsets", commit),
        web.get(i + "/offsets", committed),
    ]
