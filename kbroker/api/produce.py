"""Produce: ``POST /topics/{topic}`` and ``POST /topics/{topic}/partitions/{partition}``.

The body is parsed once (kbroker.records), records are routed to partitions (explicit
``partition``, else Kafka's murmur2 of the key, else one partition per request chosen among
local leaders: sticky per request), and each partition's records are appended as whole batches
by its leader. Records for a partition this broker does not lead are forwarded to the leader's
partition endpoint with the ``X-KBroker-Forwarded`` header (the leader never forwards again).

The response is Confluent's: HTTP 200 with one ``{"partition", "offset", "error_code",
"error"}`` per record in request order; a partition that failed (no leader, not enough replicas,
timeout) reports its error on each of its records, with ``offset`` null. Errors of the whole
request (bad body, unknown topic, too large, bad media type) are 4xx responses instead.
``?async=true`` (Strimzi's bridge) answers 204 with no body instead of the offsets when every
record was produced; durability still follows ``acks``, and a request with a failed record gets
the full answer, so that no failure goes unreported.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import defaultdict
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web

from kbroker.api.encoding import content_codings, decode_body, strip_bom
from kbroker.api.errors import json_response
from kbroker.api.media import produce_format
from kbroker.api.params import acks_param, bool_param, partition_path, topic_path
from kbroker.api.services import SERVICES, Services
from kbroker.cluster import ClusterMetadata, TopicInfo
from kbroker.errors import BrokerError, ErrorCode, InvalidRequestError
from kbroker.log.batch import ATTR_RECORD_TIMESTAMPS, PayloadCodec
from kbroker.records import (
    PartitionRecords,
    ProduceBody,
    encode_offsets_response,
    encode_partition_records,
    parse_plain_body,
    parse_produce_body,
)
from kbroker.replication.manager import ProducerInfo
from kclient.protocol import (
    ACKS_HEADER,
    FORWARDED_HEADER,
    PRODUCER_EPOCH_HEADER,
    PRODUCER_ID_HEADER,
    SEQUENCE_HEADER,
)

__all__ = ["Outcome", "produce_records", "produce_to_partition", "produce_to_topic", "read_body"]

log = logging.getLogger(__name__)

#: Per-record outcome: (partition, offset, error_code, error message).
Outcome = tuple[int | None, int | None, int | None, str | None, bool]
"""Per record: (partition, offset, error_code, error message, after_append)."""
#: Attempts at a partition whose leader is moving (NOT_LEADER from a stale view).
_ROUTE_ATTEMPTS = 3
#: How long a forwarded produce may still answer once its partition has another leader.
LEADER_MOVED_GRACE_S: Final = 1.0


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole request body with its content codings undone (kbroker.api.encoding) and a
    leading UTF-8 byte order mark dropped, refusing one larger than ``limit`` before reading
    it, or once decoded."""
    codings = content_codings(request)
    length = request.content_length
    if length is not None and length > limit:
        raise BrokerError(
            f"Request body of {length} bytes exceeds max.request.bytes ({limit})",
            ErrorCode.REQUEST_TOO_LARGE,
        )
    raw = await request.read()
    return strip_bom(decode_body(raw, codings, limit) if codings else raw)


@dataclass(frozen=True, slots=True)
class Encoded:
    """One partition's records already encoded as batches (by an HTTP worker process)."""

    codec: PayloadCodec
    batches: list[PartitionRecords]

    @property
    def record_count(self) -> int:
        return sum(b.record_count for b in self.batches)

    def records_json(self) -> bytes:
        """The records as a produce body (to forward them to another broker)."""
        return b'{"records":[' + b",".join(b.payload[1:-1] for b in self.batches) + b"]}"


@dataclass(frozen=True, slots=True)
class _Job:
    """One produce request, validated: what every per-partition step needs. Its records are
    either a parsed ``body`` or ``encoded`` batches (a worker process's, or a plain body's)."""

    request: web.Request | None
    """The client's request (None for a worker's link call: see :class:`NeedsRequest`)."""
    services: Services
    topic: TopicInfo
    body: ProduceBody | None
    acks: int
    forwarded: bool
    producer: ProducerInfo | None = None
    encoded: Encoded | None = None
    no_metadata: bool = False
    """``?async=true``: answer 204 without offsets when every record succeeded."""

    @property
    def parsed(self) -> ProduceBody:
        assert self.body is not None
        return self.body


async def _job(request: web.Request, *, to_partition: bool) -> _Job:
    """The request, validated. A plain body (kbroker.records.PlainBody) that goes to one
    partition as it is (sent to a partition, or keyless) becomes ``encoded``, checked without
    a dict per record; any other body is parsed whole (``body``)."""
    services = request.app[SERVICES]
    fmt = produce_format(request.headers.get("Content-Type"))
    acks = acks_param(request, ACKS_HEADER)
    raw = await read_body(request, services.config.max_request_bytes)
    # Keyed records of a topic-level request are routed one by one, from the whole parse. A
    # plain body has no escapes, so one without the bytes "key" has no keys: only those need
    # not be parsed whole.
    keyed = not to_partition and b'"key"' in raw
    plain = None if keyed else parse_plain_body(raw, fmt)
    body = parse_produce_body(raw, fmt) if plain is None else None  # (errors before topics)
    topic = await services.ensure_topic(topic_path(request))
    encoded = None
    if plain is not None:
        batch = plain.encode(
            now_ms=services.clock.now_ms(),
            max_batch_bytes=services.topic_config(topic).max_message_bytes,
        )
        if batch is None:  # larger than one batch: encode_partition_records splits it
            body = parse_produce_body(raw, fmt)
        else:
            encoded = Encoded(codec=plain.codec, batches=[batch])
    return _Job(
        producer=producer_param(request),
        request=request,
        services=services,
        topic=topic,
        body=body,
        acks=acks,
        forwarded=FORWARDED_HEADER in request.headers,
        no_metadata=bool_param(request, "async"),
        encoded=encoded,
    )


_NO_PRODUCER: Final = [None, None, None]


def producer_param(request: web.Request) -> ProducerInfo | None:
    """The idempotent producer identity of a request, from its headers (or None)."""
    headers = request.headers
    raw = [headers.get(h) for h in (PRODUCER_ID_HEADER, PRODUCER_EPOCH_HEADER, SEQUENCE_HEADER)]
    if raw == _NO_PRODUCER:
        return None
    if any(v is None or not v.strip().isdigit() or len(v.strip()) > 18 for v in raw):
        raise BrokerError(
            f"{PRODUCER_ID_HEADER}, {PRODUCER_EPOCH_HEADER} and {SEQUENCE_HEADER} go together "
            "and are non-negative integers",
            ErrorCode.INVALID_PARAMETER,
        )
    producer_id, epoch, sequence = (int(v) for v in raw)  # type: ignore[arg-type]
    if epoch > 32767 or sequence > (1 << 31) - 1:
        raise BrokerError("producer epoch or sequence out of range", ErrorCode.INVALID_PARAMETER)
    return ProducerInfo(producer_id=producer_id, epoch=epoch, sequence=sequence)


async def produce_to_topic(request: web.Request) -> web.Response:
    job = await _job(request, to_partition=False)
    if job.producer is not None:
        raise BrokerError(
            "Idempotent produce needs a partition endpoint "
            "(POST /topics/{topic}/partitions/{partition})",
            ErrorCode.INVALID_PARAMETER,
        )
    if job.encoded is not None:  # keyless: all to the sticky partition
        sticky = job.services.sticky_partition(job.topic)
        return await _produce(job, {sticky: range(job.encoded.record_count)})
    if not job.parsed.records:
        return _answer(job, encode_offsets_response([]), failed=False)
    return await _produce(job, _route(job))


async def produce_to_partition(request: web.Request) -> web.Response:
    partition = partition_path(request)
    job = await _job(request, to_partition=True)
    job.topic.partition(partition)
    if job.encoded is not None:
        return await _produce(job, {partition: range(job.encoded.record_count)})
    if not job.parsed.records:
        return _answer(job, encode_offsets_response([]), failed=False)
    explicit = job.parsed.explicit_partitions()
    if explicit is not None and set(explicit) - {None, partition}:
        raise InvalidRequestError(
            f"records sent to partition {partition} may not name another partition"
        )
    return await _produce(job, {partition: range(len(job.parsed.records))})


def _route(job: _Job) -> Mapping[int, Sequence[int]]:
    """Partition -> positions of its records in the request (each in request order)."""
    body, topic = job.parsed, job.topic
    count = len(topic.partitions)
    explicit = body.explicit_partitions()
    if explicit is None and not body.has_keys():
        return {job.services.sticky_partition(topic): range(len(body.records))}
    keyed = body.key_partitions(count) if body.has_keys() else [None] * len(body.records)
    sticky: int | None = None
    groups: dict[int, list[int]] = defaultdict(list)
    for position, (chosen, by_key) in enumerate(zip(explicit or keyed, keyed, strict=True)):
        target = chosen if chosen is not None else by_key
        if target is None:
            if sticky is None:
                sticky = job.services.sticky_partition(topic)
            target = sticky
        if target >= count:
            raise BrokerError(
                f"Partition {target} of topic {topic.name} not found", ErrorCode.UNKNOWN_PARTITION
            )
        groups[target].append(position)
    return groups


async def _produce(job: _Job, targets: Mapping[int, Sequence[int]]) -> web.Response:
    if len(targets) == 1:
        ((partition, positions),) = targets.items()
        outcome = await _produce_partition(job, partition, positions)
        answer = partition_response(partition, job.acks, outcome, len(positions))
        return _answer(job, answer, failed=not isinstance(outcome, int) and _failed(outcome))
    results = await _outcomes(job, targets)
    return _answer(job, encode_offsets_response(results), failed=_failed(results))


def _failed(outcomes: Sequence[Outcome]) -> bool:
    return any(outcome[2] is not None for outcome in outcomes)


def _answer(job: _Job, offsets: bytes, *, failed: bool) -> web.Response:
    """The offsets answer, or Strimzi's bodiless 204 for ``async=true`` when nothing failed."""
    if job.no_metadata and not failed:
        return web.Response(status=204)
    return json_response(offsets)


async def _outcomes(job: _Job, targets: Mapping[int, Sequence[int]]) -> list[Outcome]:
    """Append every partition's records (concurrently); the outcome of each record, in
    request order."""
    results: list[Outcome] = [(None, None, None, None, False)] * len(job.parsed.records)
    outcomes = await asyncio.gather(
        *(_produce_partition(job, p, positions) for p, positions in targets.items())
    )
    for (partition, positions), outcome in zip(targets.items(), outcomes, strict=True):
        if isinstance(outcome, int):
            for i, position in enumerate(positions):
                offset = None if job.acks == 0 else outcome + i
                results[position] = (partition, offset, None, None, False)
        else:
            for position, result in zip(positions, outcome, strict=True):
                results[position] = result
    return results


async def produce_records(
    request: web.Request, topic: TopicInfo, body: ProduceBody, acks: int
) -> list[Outcome]:
    """Produce already-parsed records to ``topic`` (routed as ``POST /topics/{topic}`` routes
    them): the outcome of each record, in order. For other endpoints' bodies (REST v3)."""
    if not body.records:
        return []
    job = _Job(
        request=request,
        services=request.app[SERVICES],
        topic=topic,
        body=body,
        acks=acks,
        forwarded=False,
    )
    return await _outcomes(job, _route(job))


_RETRY_ROUTING = frozenset(
    {ErrorCode.NOT_LEADER, ErrorCode.LEADER_NOT_AVAILABLE, ErrorCode.SHUTTING_DOWN}
)


async def _produce_partition(
    job: _Job, partition: int, positions: Sequence[int]
) -> int | list[Outcome]:
    """Append (or forward) one partition's records: the base offset, or per-record outcomes.

    A request forwarded to us raises its failure (the forwarding broker maps it); otherwise a
    leader that moved is retried briefly (only if nothing was written), and any other failure
    becomes per-record errors.
    """
    for attempt in range(_ROUTE_ATTEMPTS):
        try:
            return await _produce_once(job, partition, positions)
        except BrokerError as exc:
            if job.forwarded or exc.code is ErrorCode.RECORD_TOO_LARGE:
                raise
            retry = exc.code in _RETRY_ROUTING and not exc.after_append
            if not retry or attempt == _ROUTE_ATTEMPTS - 1:
                failed = (partition, None, int(exc.code), exc.message, exc.after_append)
                return [failed] * len(positions)
            await asyncio.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


async def _produce_once(job: _Job, partition: int, positions: Sequence[int]) -> int | list[Outcome]:
    services = job.services
    leader = services.metadata.partition(job.topic.name, partition).leader
    if leader != services.config.broker_id and not job.forwarded:
        return await _forward(job, partition, positions)
    if job.encoded is not None:
        batches, codec = job.encoded.batches, job.encoded.codec
    else:
        config = services.topic_config(job.topic)
        batches = encode_partition_records(
            job.parsed,
            positions,
            now_ms=services.clock.now_ms(),
            log_append_time=config.message_timestamp_type == "LogAppendTime",
            max_batch_bytes=config.max_message_bytes,
        )
        codec = job.parsed.codec
    result = await services.replicas.append(
        job.topic.name,
        partition,
        batches,
        codec=codec,
        acks=job.acks,
        timeout_ms=services.config.produce_timeout_ms,
        producer=job.producer,
    )
    return result.base_offset


async def _unless_leader_moves(
    services: Services, topic: str, partition: int, forward: Awaitable[web.Response]
) -> web.Response:
    """Await a forwarded request, giving up once the partition has had another leader for
    LEADER_MOVED_GRACE_S.

    A leader that stopped answering (paused, cut off) would otherwise hold the request until
    the forwarding timeout. The records may have reached it, so the failure is ambiguous. The
    grace is for the leader that still answers: one in a controlled shutdown answers at once
    (SHUTTING_DOWN, nothing written, which the caller retries elsewhere), and giving up the
    moment this broker saw the move made that answer indeterminate whenever the metadata
    update won the race on this event loop (a CI run's acks=all writer saw one such request).
    """
    leader = services.metadata.partition(topic, partition).leader

    def moved(metadata: ClusterMetadata) -> bool:
        topic_info = metadata.topics.get(topic)
        return topic_info is None or topic_info.partition(partition).leader != leader

    request = asyncio.ensure_future(forward)
    watch = asyncio.ensure_future(
        services.wait_for_metadata(moved, services.config.produce_timeout_ms / 1000 + 10)
    )
    try:
        done, _ = await asyncio.wait({request, watch}, return_when=asyncio.FIRST_COMPLETED)
        if request in done:
            return request.result()
        if watch.result():
            done, _ = await asyncio.wait({request}, timeout=LEADER_MOVED_GRACE_S)
            if request in done:
                return request.result()
            raise BrokerError(
                f"The leader of {topic}-{partition} changed while the request was forwarded "
                "to it; the records may or may not have been written",
                ErrorCode.NOT_LEADER,
                after_append=True,
            )
        return await request
    finally:
        for task in (request, watch):
            if not task.done():
                task.cancel()


async def _forward(job: _Job, partition: int, positions: Sequence[int]) -> list[Outcome]:
    services = job.services
    if job.request is None:
        raise NeedsRequest
    url = services.metadata.leader_url(job.topic.name, partition)
    if job.encoded is not None:
        payload = job.encoded.records_json()
    else:
        body = job.parsed
        records = (
            body.records
            if len(positions) == len(body.records)
            else [body.records[i] for i in positions]
        )
        payload = orjson.dumps({"records": records})
    response = await _unless_leader_moves(
        services,
        job.topic.name,
        partition,
        services.peers.forward(
            job.request,
            url,
            body=payload,
            path=f"/topics/{job.topic.name}/partitions/{partition}?acks={job.acks}",
        ),
    )
    raw: Any = response.body
    doc: Any = orjson.loads(raw or b"{}")
    if response.status != 200:
        raise BrokerError(
            str(doc.get("message", "forwarding failed")),
            ErrorCode(doc.get("error_code", ErrorCode.BROKER_NOT_AVAILABLE)),
            after_append=bool(doc.get("after_append")),
        )
    return [
        (partition, o["offset"], o["error_code"], o["error"], bool(o.get("after_append")))
        for o in doc["offsets"]
    ]


# ------------------------------------------------------------------- from worker processes

#: Response header telling an HTTP worker to hand the original request to the main process.
SLOW_PATH_HEADER = "X-KBroker-Slow-Path"
_FRAME = struct.Struct(">I")


def encode_frames(batches: Sequence[PartitionRecords]) -> list[bytes | memoryview]:
    """A worker's batches as the parts of one body, in order: count, then per batch a JSON
    header and the payload (not joined: the link copies them straight into a ring slot)."""
    parts: list[bytes | memoryview] = [_FRAME.pack(len(batches))]
    for batch in batches:
        meta = orjson.dumps(
            [batch.record_count, batch.attributes, batch.first_timestamp, batch.max_timestamp]
        )
        parts += [_FRAME.pack(len(meta)), meta, _FRAME.pack(len(batch.payload)), batch.payload]
    return parts


def _decode_frames(data: bytes | memoryview) -> list[PartitionRecords]:
    """The batches of :func:`encode_frames`; their payloads are views of ``data``."""
    view = memoryview(data)
    try:
        (count,), position = _FRAME.unpack_from(view, 0), 4
        out = []
        for _ in range(count):
            (size,) = _FRAME.unpack_from(view, position)
            records, attributes, first, highest = orjson.loads(
                view[position + 4 : position + 4 + size]
            )
            position += 4 + size
            (size,) = _FRAME.unpack_from(view, position)
            payload = view[position + 4 : position + 4 + size]
            if len(payload) != size:
                raise ValueError(f"payload of {len(payload)} bytes, {size} announced")
            position += 4 + size
            out.append(
                PartitionRecords(
                    payload=payload,
                    record_count=int(records),
                    attributes=int(attributes),
                    first_timestamp=int(first),
                    max_timestamp=int(highest),
                    positions=range(records),
                )
            )
    except (struct.error, orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise BrokerError(f"bad worker append: {exc}", ErrorCode.INVALID_PAYLOAD) from exc
    return out


class NeedsRequest(Exception):
    """The records must be forwarded to the partition's leader, which needs the client's
    request: a worker hands it over instead (the slow path)."""


async def append_encoded(
    services: Services,
    topic_name: str,
    partition: int,
    *,
    codec: int,
    acks: int,
    producer: ProducerInfo | None,
    frames: bytes | memoryview,
) -> bytes | None:
    """Append records a worker process has already parsed, checked and encoded (``frames``,
    see :func:`encode_frames`) to one partition (``partition=-1``: keyless records of a
    topic-level request, sticky as here). Returns what the worker renders the Confluent answer
    from (:func:`encode_worker_outcome`), or None when this topic needs what the worker did not
    do (a batch split by max.message.bytes, LogAppendTime): the worker then hands over the
    original request; so does a partition led by another broker (raises NeedsRequest)."""
    topic = await services.ensure_topic(topic_name)
    if partition < 0:
        partition = services.sticky_partition(topic)
    topic.partition(partition)
    batches = _decode_frames(frames)
    config = services.topic_config(topic)
    log_append_time = config.message_timestamp_type == "LogAppendTime"
    if any(
        len(b.payload) > config.max_message_bytes
        or (log_append_time and b.attributes & ATTR_RECORD_TIMESTAMPS)
        for b in batches
    ):
        return None
    try:
        payload_codec = PayloadCodec(codec)
    except ValueError as exc:
        raise BrokerError(f"bad worker append: {exc}", ErrorCode.INVALID_PAYLOAD) from exc
    encoded = Encoded(codec=payload_codec, batches=batches)
    job = _Job(
        request=None,
        services=services,
        topic=topic,
        body=None,
        acks=acks,
        forwarded=False,
        producer=producer,
        encoded=encoded,
    )
    outcome = await _produce_partition(job, partition, range(encoded.record_count))
    return encode_worker_outcome(partition, acks, outcome)


def encode_worker_outcome(partition: int, acks: int, outcome: int | list[Outcome]) -> bytes:
    """What the broker tells a worker about one partition's append (the worker renders the
    Confluent answer from it, see :func:`render_worker_outcome`): its base offset, or the
    per-record outcomes when it was not one clean append."""
    if isinstance(outcome, int):
        return orjson.dumps({"partition": partition, "acks": acks, "base_offset": outcome})
    return orjson.dumps({"partition": partition, "acks": acks, "outcomes": outcome})


def render_worker_outcome(data: bytes, record_count: int) -> bytes:
    """The Confluent produce response for an answer of :func:`encode_worker_outcome`."""
    doc = orjson.loads(data)
    outcome = [tuple(o) for o in doc["outcomes"]] if "outcomes" in doc else int(doc["base_offset"])
    return partition_response(int(doc["partition"]), int(doc["acks"]), outcome, record_count)


def partition_response(
    partition: int, acks: int, outcome: int | Sequence[Outcome], record_count: int
) -> bytes:
    """The produce response of a request whose records all went to ``partition``."""
    if not isinstance(outcome, int):
        return encode_offsets_response(outcome)
    if acks == 0:
        return encode_offsets_response([(partition, None, None, None)] * record_count)
    return encode_offsets_response(
        partition=partition, base_offset=outcome, record_count=record_count
    )
