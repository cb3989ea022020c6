"""REST Proxy v2 metadata: brokers, topics, partitions and partition offsets.

``GET /brokers``, ``GET /topics``, ``GET /topics/{t}``, ``GET /topics/{t}/partitions[/{p}]`` and
``GET /topics/{t}/partitions/{p}/offsets[?timestamp=ms]``. Partition objects carry Confluent's
fields plus kbroker's: leader epoch, ISR, log start offset, high watermark, log end offset,
under-replicated and offline flags. The offsets endpoint answers from the leader (forwarding if
needed); with ``timestamp`` it also looks up the first offset whose timestamp is at or after it
(Kafka's ListOffsets by time), ``null`` when there is none.

``POST /admin/topics`` is Strimzi's bridge's topic creation: ``{"topic_name",
"partitions_count"?, "replication_factor"?}``, answered 201 with no body (checked as v3's
create is, and with its errors).
"""

from __future__ import annotations

from aiohttp import web

from kbroker.api.errors import json_response
from kbroker.api.params import int_param, partition_path, topic_path
from kbroker.api.partitions import describe_partition, gather_offsets
from kbroker.api.services import SERVICES
from kbroker.api.v3 import create_topic_from_body
from kbroker.records import MAX_TIMESTAMP, offset_for_timestamp
from kclient.protocol import FORWARDED_HEADER

__all__ = ["routes"]


async def root(request: web.Request) -> web.Response:
    return json_response({})


async def list_brokers(request: web.Request) -> web.Response:
    metadata = request.app[SERVICES].metadata
    return json_response({"brokers": sorted(metadata.brokers)})


async def list_topics(request: web.Request) -> web.Response:
    metadata = request.app[SERVICES].metadata
    return json_response(sorted(t.name for t in metadata.topics.values() if not t.internal))


async def get_topic(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    topic = services.metadata.topic(topic_path(request))
    offsets = await gather_offsets(services, topic)
    return json_response(
        {
            "name": topic.name,
            "configs": services.topic_config(topic).as_strings(),
            "partitions": [
                describe_partition(p, offsets.get(p.partition)) for p in topic.partitions
            ],
        }
    )


async def list_partitions(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    topic = services.metadata.topic(topic_path(request))
    offsets = await gather_offsets(services, topic)
    return json_response(
        [describe_partition(p, offsets.get(p.partition)) for p in topic.partitions]
    )


async def get_partition(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    topic = services.metadata.topic(topic_path(request))
    info = topic.partition(partition_path(request))
    offsets = await gather_offsets(services, topic)
    return json_response(describe_partition(info, offsets.get(info.partition)))


async def get_offsets(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    name = topic_path(request)
    partition = partition_path(request)
    metadata = services.metadata
    info = metadata.partition(name, partition)
    timestamp = None
    if "timestamp" in request.query:
        timestamp = int_param(request, "timestamp", default=None, low=0, high=MAX_TIMESTAMP)
    if info.leader != services.config.broker_id and FORWARDED_HEADER not in request.headers:
        return await services.peers.forward(request, metadata.leader_url(name, partition))
    log_start, high_watermark, _leo = services.replicas.offsets(name, partition)
    body: dict[str, object] = {"beginning_offset": log_start, "end_offset": high_watermark}
    if timestamp is not None:
        found = offset_for_timestamp(services.replicas.leader(name, partition).log, timestamp)
        body["timestamp"] = timestamp
        body["offset"] = found[0] if found else None
        body["record_timestamp"] = found[1] if found else None
    return json_response(body)


#: What Strimzi's ``POST /admin/topics`` takes (its NewTopic schema).
_STRIMZI_TOPIC_FIELDS = frozenset({"topic_name", "partitions_count", "replication_factor"})


async def admin_create_topic(request: web.Request) -> web.Response:
    await create_topic_from_body(request, _STRIMZI_TOPIC_FIELDS)
    return web.Response(status=201)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", root),
        web.post("/admin/topics", admin_create_topic),
        web.get("/brokers", list_brokers),
        web.get("/topics", list_topics),
        web.get("/topics/{topic}", get_topic),
        web.get("/topics/{topic}/partitions", list_partitions),
        web.get("/topics/{topic}/partitions/{partition}", get_partition),
        web.get("/topics/{topic}/partitions/{partition}/offsets", get_offsets),
    ]
