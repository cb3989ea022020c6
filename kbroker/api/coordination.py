"""Getting a group request to its coordinator, and reading partition offsets from leaders.

Any broker accepts any group or consumer-instance request: it makes sure the internal
``__consumer_offsets`` topic exists (created on first use, as Kafka does), finds the partition
the group hashes to and forwards the request to that partition's leader unless it is itself.
While a coordinator is loading (or moving), requests are retried here for a few seconds before
the retriable error reaches the client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import orjson
from aiohttp import web

from kbroker.api.services import SERVICES, Services
from kbroker.cluster import ClusterMetadata
from kbroker.errors import BrokerError, ErrorCode
from kbroker.group.persist import OFFSETS_TOPIC, partition_for_group
from kbroker.records import offset_for_timestamp
from kclient.protocol import FORWARDED_HEADER

__all__ = ["coordinated", "ensure_offsets_topic", "leader_offsets"]

T = TypeVar("T")

#: Errors worth retrying inside the broker while a coordinator is being loaded or elected.
_COORDINATOR_RETRIABLE: Final = frozenset(
    {ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, ErrorCode.COORDINATOR_NOT_AVAILABLE}
)
_RETRY_FOR_S: Final = 10.0


async def ensure_offsets_topic(services: Services) -> None:
    """Create ``__consumer_offsets`` if it does not exist (RF = min(configured, brokers))."""
    if OFFSETS_TOPIC in services.metadata.topics:
        return
    config = services.config
    brokers = len(services.metadata.brokers)
    with contextlib.suppress(BrokerError):
        await services.admin.create_topic(
            OFFSETS_TOPIC,
            partitions=config.offsets_topic_num_partitions,
            replication_factor=max(1, min(config.offsets_topic_replication_factor, brokers)),
            configs={
                "cleanup.policy": "compact",
                "segment.bytes": str(config.offsets_topic_segment_bytes),
            },
            assignment=None,
            validate_only=False,
            internal=True,
        )
    # Another broker may be creating it at the same moment: wait until it has leaders.
    ready = await services.wait_for_metadata(_offsets_topic_ready, _RETRY_FOR_S)
    if not ready:
        raise BrokerError(
            "The offsets topic could not be created yet", ErrorCode.COORDINATOR_NOT_AVAILABLE
        )


def _offsets_topic_ready(metadata: ClusterMetadata) -> bool:
    topic = metadata.topics.get(OFFSETS_TOPIC)
    return topic is not None and all(p.leader >= 0 for p in topic.partitions)


async def coordinated(
    request: web.Request,
    group_id: str,
    handle: Callable[[], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """Run ``handle`` here if this broker coordinates ``group_id``, else forward the request
    to the coordinator. Retries briefly while the coordinator is loading or moving."""
    services = request.app[SERVICES]
    await ensure_offsets_topic(services)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _RETRY_FOR_S
    while True:
        try:
            return await _route(request, services, group_id, handle)
        except BrokerError as exc:
            if exc.code not in _COORDINATOR_RETRIABLE or loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _route(
    request: web.Request,
    services: Services,
    group_id: str,
    handle: Callable[[], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    if services.coordinator.coordinates(group_id) or FORWARDED_HEADER in request.headers:
        return await handle()
    metadata = services.metadata
    topic = metadata.topic(OFFSETS_TOPIC)
    partition = partition_for_group(group_id, len(topic.partitions))
    leader = topic.partition(partition).leader
    if leader == services.config.broker_id:
        return await handle()  # elected here, still loading: the handler says so
    broker = metadata.brokers.get(leader)
    if broker is None:
        raise BrokerError(
            f"The coordinator of group {group_id} is not available",
            ErrorCode.COORDINATOR_NOT_AVAILABLE,
        )
    response = await services.peers.forward(request, broker.url)
    if response.status == 503:
        doc: Any = orjson.loads(response.body or b"{}")  # type: ignore[arg-type]
        code = doc.get("error_code")
        if code in (int(c) for c in _COORDINATOR_RETRIABLE):
            raise BrokerError(str(doc.get("message")), ErrorCode(code))
    return response


async def leader_offsets(
    services: Services, topic: str, partition: int, *, timestamp: int | None = None
) -> dict[str, Any]:
    """``{"beginning_offset", "end_offset", "offset"?}`` of a partition, from its leader."""
    metadata = services.metadata
    info = metadata.partition(topic, partition)
    if info.leader == services.config.broker_id:
        log_start, high_watermark, _ = services.replicas.offsets(topic, partition)
        out: dict[str, Any] = {"beginning_offset": log_start, "end_offset": high_watermark}
        if timestamp is not None:
            found = offset_for_timestamp(services.replicas.leader(topic, partition).log, timestamp)
            out["offset"] = found[0] if found else None
        return out
    url = metadata.leader_url(topic, partition)
    query = f"?timestamp={timestamp}" if timestamp is not None else ""
    body = await services.peers.get(url, f"/topics/{topic}/partitions/{partition}/offsets{query}")
    result: dict[str, Any] = orjson.loads(body)
    return result
