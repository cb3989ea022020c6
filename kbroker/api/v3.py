"""REST Proxy v3 admin resources: clusters, brokers, topics, topic configs and partitions.

Shapes follow Confluent's v3 OpenAPI: collections are ``{"kind": "Kafka<Thing>List",
"metadata": {"self", "next"}, "data": [...]}``, resources carry ``kind``, ``metadata.self``,
``metadata.resource_name`` and ``{"related": url}`` links. Partition resources add kbroker's
fields (leader id and epoch, ISR, offsets, under-replicated). Links are built from the URL the
client used (scheme and Host header).

Topic creation waits until every partition has a leader (so a produce right after a 201
succeeds); deletion waits until the topic is gone.

Every link a resource carries answers. Some name what kbroker does not have, and answer so
truthfully: ``acls`` is an empty list (no authorization), ``broker-configs`` too (no dynamic
cluster-wide broker settings), reassignment lists are empty and one partition's reassignment is
404 (kbroker does not reassign partitions; Confluent answers 404 when none is in progress). A
broker's ``configs`` are its static settings, answered by that broker (forwarded to it).
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from aiohttp import web

from kbroker.api.errors import json_response
from kbroker.api.media import require_json_body
from kbroker.api.params import partition_path, topic_path
from kbroker.api.partitions import describe_partition, gather_offsets
from kbroker.api.produce import read_body
from kbroker.api.services import SERVICES, Services
from kbroker.cluster import ClusterMetadata, PartitionInfo, TopicInfo
from kbroker.config import BROKER_SETTINGS, TOPIC_SETTINGS, Setting, kafka_string, topic_setting
from kbroker.errors import BrokerError, ErrorCode, InvalidRequestError
from kclient.protocol import FORWARDED_HEADER

__all__ = ["create_topic_from_body", "routes"]

_TOPIC_CREATE_FIELDS = frozenset(
    {
        "topic_name",
        "partitions_count",
        "replication_factor",
        "replicas_assignments",
        "configs",
        "validate_only",
    }
)


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/v3"


def _cluster(request: web.Request) -> tuple[Services, ClusterMetadata, str]:
    services = request.app[SERVICES]
    metadata = services.metadata
    cluster_id = request.match_info.get("cluster_id")
    if cluster_id is not None and cluster_id != metadata.cluster_id:
        raise BrokerError(f"Cluster {cluster_id} not found", ErrorCode.UNKNOWN_CLUSTER)
    return services, metadata, metadata.cluster_id


def _collection(kind: str, self_url: str, data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"self": self_url, "next": None}, "data": data}


def _resource(kind: str, self_url: str, crn: str) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"self": self_url, "resource_name": crn}}


async def _json_body(request: web.Request) -> Any:
    services = request.app[SERVICES]
    require_json_body(request.headers.get("Content-Type"))
    raw = await read_body(request, services.config.max_request_bytes)
    try:
        return orjson.loads(raw or b"null")
    except orjson.JSONDecodeError as exc:
        raise BrokerError(f"Malformed JSON: {exc}", ErrorCode.MALFORMED_REQUEST) from exc


# ------------------------------------------------------------------------------ clusters


def _cluster_data(base: str, metadata: ClusterMetadata) -> dict[str, Any]:
    cid = metadata.cluster_id
    url = f"{base}/clusters/{cid}"
    return {
        **_resource("KafkaCluster", url, f"crn:///kafka={cid}"),
        "cluster_id": cid,
        "controller": (
            {"related": f"{url}/brokers/{metadata.controller_id}"}
            if metadata.controller_id >= 0
            else None
        ),
        "brokers": {"related": f"{url}/brokers"},
        "topics": {"related": f"{url}/topics"},
        "consumer_groups": {"related": f"{url}/consumer-groups"},
        "broker_configs": {"related": f"{url}/broker-configs"},
        "acls": {"related": f"{url}/acls"},
        "partition_reassignments": {"related": f"{url}/topics/-/partitions/-/reassignment"},
    }


async def list_clusters(request: web.Request) -> web.Response:
    _, metadata, _ = _cluster(request)
    base = _base(request)
    return json_response(
        _collection("KafkaClusterList", f"{base}/clusters", [_cluster_data(base, metadata)])
    )


async def get_cluster(request: web.Request) -> web.Response:
    _, metadata, _ = _cluster(request)
    return json_response(_cluster_data(_base(request), metadata))


# ------------------------------------------------------------------------------- brokers


def _broker_data(base: str, cid: str, metadata: ClusterMetadata, broker_id: int) -> dict[str, Any]:
    info = metadata.broker(broker_id)
    url = f"{base}/clusters/{cid}/brokers/{broker_id}"
    host, _, port = info.url.split("://", 1)[-1].rstrip("/").rpartition(":")
    return {
        **_resource("KafkaBroker", url, f"crn:///kafka={cid}/broker={broker_id}"),
        "cluster_id": cid,
        "broker_id": broker_id,
        "host": host,
        "port": int(port) if port.isdigit() else None,
        "rack": info.rack,
        "url": info.url,
        "is_controller": broker_id == metadata.controller_id,
        "configs": {"related": f"{url}/configs"},
        "partition_replicas": {"related": f"{url}/partition-replicas"},
    }


async def list_brokers(request: web.Request) -> web.Response:
    _, metadata, cid = _cluster(request)
    base = _base(request)
    return json_response(
        _collection(
            "KafkaBrokerList",
            f"{base}/clusters/{cid}/brokers",
            [_broker_data(base, cid, metadata, b) for b in sorted(metadata.brokers)],
        )
    )


def _broker_id(request: web.Request) -> int:
    raw = request.match_info["broker_id"]
    if not raw.isdigit() or len(raw) > 10:
        raise BrokerError(f"Broker {raw} not found", ErrorCode.UNKNOWN_BROKER)
    return int(raw)


async def get_broker(request: web.Request) -> web.Response:
    _, metadata, cid = _cluster(request)
    return json_response(_broker_data(_base(request), cid, metadata, _broker_id(request)))


def _broker_config_data(
    base: str, cid: str, broker_id: int, setting: Setting, value: Any
) -> dict[str, Any]:
    url = f"{base}/clusters/{cid}/brokers/{broker_id}/configs/{setting.name}"
    default = value == setting.default
    return {
        **_resource(
            "KafkaBrokerConfig", url, f"crn:///kafka={cid}/broker={broker_id}/config={setting.name}"
        ),
        "cluster_id": cid,
        "broker_id": broker_id,
        "name": setting.name,
        "value": kafka_string(value),
        "is_default": default,
        "is_read_only": True,
        "is_sensitive": False,
        "source": "DEFAULT_CONFIG" if default else "STATIC_BROKER_CONFIG",
        "synonyms": [],
        "documentation": setting.doc,
    }


async def broker_configs(request: web.Request) -> web.StreamResponse:
    """``GET .../brokers/{b}/configs[/{name}]``: broker b's settings (read-only: they come from
    its configuration file, environment and flags), answered by broker b."""
    services, metadata, cid = _cluster(request)
    broker_id = _broker_id(request)
    if broker_id != services.config.broker_id:
        if FORWARDED_HEADER in request.headers:
            raise BrokerError(f"Broker {broker_id} not found", ErrorCode.UNKNOWN_BROKER)
        return await services.peers.forward(request, metadata.broker(broker_id).url)
    base, config = _base(request), services.config
    name = request.match_info.get("name")
    settings = [s for s in BROKER_SETTINGS if name is None or s.name == name]
    if not settings:
        raise BrokerError(f"Config {name} not found", ErrorCode.UNKNOWN_CONFIG)
    data = [_broker_config_data(base, cid, broker_id, s, getattr(config, s.attr)) for s in settings]
    if name is not None:
        return json_response(data[0])
    url = f"{base}/clusters/{cid}/brokers/{broker_id}/configs"
    return json_response(_collection("KafkaBrokerConfigList", url, data))


async def broker_replicas(request: web.Request) -> web.Response:
    """``GET .../brokers/{b}/partition-replicas``: every replica broker b holds."""
    _, metadata, cid = _cluster(request)
    broker_id = _broker_id(request)
    metadata.broker(broker_id)
    base = _base(request)
    data = [
        _replica_data(base, cid, info, broker_id)
        for name in sorted(metadata.topics)
        for info in metadata.topics[name].partitions
        if broker_id in info.replicas
    ]
    url = f"{base}/clusters/{cid}/brokers/{broker_id}/partition-replicas"
    return json_response(_collection("KafkaReplicaList", url, data))


async def cluster_broker_configs(request: web.Request) -> web.Response:
    """``GET .../broker-configs``: cluster-wide dynamic broker settings; kbroker has none."""
    _, _, cid = _cluster(request)
    url = f"{_base(request)}/clusters/{cid}/broker-configs"
    return json_response(_collection("KafkaClusterConfigList", url, []))


async def list_acls(request: web.Request) -> web.Response:
    """``GET .../acls``: kbroker has no authorization, so no ACL exists."""
    _, _, cid = _cluster(request)
    return json_response(
        _collection("KafkaAclDataList", f"{_base(request)}/clusters/{cid}/acls", [])
    )


# -------------------------------------------------------------------------------- topics


def _topic_data(base: str, cid: str, topic: TopicInfo) -> dict[str, Any]:
    url = f"{base}/clusters/{cid}/topics/{topic.name}"
    return {
        **_resource("KafkaTopic", url, f"crn:///kafka={cid}/topic={topic.name}"),
        "cluster_id": cid,
        "topic_name": topic.name,
        "topic_id": topic.topic_id,
        "is_internal": topic.internal,
        "replication_factor": topic.replication_factor,
        "partitions_count": len(topic.partitions),
        "under_replicated_partitions": sum(p.under_replicated for p in topic.partitions),
        "offline_partitions": sum(p.leader < 0 for p in topic.partitions),
        "partitions": {"related": f"{url}/partitions"},
        "configs": {"related": f"{url}/configs"},
        "partition_reassignments": {"related": f"{url}/partitions/-/reassignment"},
        "authorized_operations": [],
    }


async def list_topics(request: web.Request) -> web.Response:
    _, metadata, cid = _cluster(request)
    base = _base(request)
    topics = [_topic_data(base, cid, metadata.topics[n]) for n in sorted(metadata.topics)]
    return json_response(_collection("KafkaTopicList", f"{base}/clusters/{cid}/topics", topics))


async def get_topic(request: web.Request) -> web.Response:
    _, metadata, cid = _cluster(request)
    return json_response(_topic_data(_base(request), cid, metadata.topic(topic_path(request))))


def _int_field(doc: dict[str, Any], name: str, low: int, high: int, code: ErrorCode) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BrokerError(f"{name} must be an integer between {low} and {high}", code)
    return value


def _configs_field(doc: dict[str, Any], field: str = "configs") -> list[dict[str, Any]]:
    entries = doc.get(field) or []
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries
    ):
        raise InvalidRequestError(f'{field} must be an array of {{"name", "value"}} objects')
    return entries


def _assignment_field(doc: dict[str, Any]) -> dict[int, list[int]] | None:
    entries = doc.get("replicas_assignments")
    if not entries:
        return None
    try:
        assignment = {int(e["partition_id"]): [int(b) for b in e["broker_ids"]] for e in entries}
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequestError(
            'replicas_assignments must be [{"partition_id": int, "broker_ids": [int]}]'
        ) from exc
    return assignment


async def create_topic_from_body(
    request: web.Request, fields: frozenset[str] = _TOPIC_CREATE_FIELDS
) -> tuple[str, bool]:
    """Create the topic a create-topic body describes (v3's fields, or the subset ``fields``
    another endpoint accepts): its name, and whether it was only validated."""
    services = request.app[SERVICES]
    doc = await _json_body(request)
    if not isinstance(doc, dict):
        raise InvalidRequestError("The body must be a JSON object")
    unknown = doc.keys() - fields
    if unknown:
        raise InvalidRequestError(f"Unknown field(s): {', '.join(sorted(unknown))}")
    name = doc.get("topic_name")
    if not isinstance(name, str):
        raise BrokerError("topic_name must be a string", ErrorCode.INVALID_TOPIC_NAME)
    configs = {e["name"]: e.get("value") for e in _configs_field(doc)}
    validate_only = doc.get("validate_only", False)
    if not isinstance(validate_only, bool):
        raise InvalidRequestError("validate_only must be a boolean")
    await services.admin.create_topic(
        name,
        partitions=_int_field(doc, "partitions_count", 1, 10_000, ErrorCode.INVALID_PARTITIONS),
        replication_factor=_int_field(
            doc, "replication_factor", 1, 64, ErrorCode.INVALID_REPLICATION_FACTOR
        ),
        configs=configs,  # type: ignore[arg-type]
        assignment=_assignment_field(doc),
        validate_only=validate_only,
    )
    return name, validate_only


async def create_topic(request: web.Request) -> web.Response:
    services, _, cid = _cluster(request)
    name, validate_only = await create_topic_from_body(request)
    base = _base(request)
    if validate_only:
        return json_response({"topic_name": name, "validate_only": True}, status=200)
    topic = services.metadata.topic(name)
    response = json_response(_topic_data(base, cid, topic), status=201)
    response.headers["Location"] = f"{base}/clusters/{cid}/topics/{name}"
    return response


async def patch_topic(request: web.Request) -> web.Response:
    services, metadata, cid = _cluster(request)
    name = topic_path(request)
    metadata.topic(name)
    doc = await _json_body(request)
    if not isinstance(doc, dict) or set(doc) - {"partitions_count"}:
        raise InvalidRequestError('The body must be {"partitions_count": N}')
    count = _int_field(doc, "partitions_count", 1, 10_000, ErrorCode.INVALID_PARTITIONS)
    if count is not None:
        await services.admin.create_partitions(name, count)
    return json_response(_topic_data(_base(request), cid, services.metadata.topic(name)))


async def delete_topic(request: web.Request) -> web.Response:
    services, metadata, _ = _cluster(request)
    name = topic_path(request)
    metadata.topic(name)
    await services.admin.delete_topic(name)
    return web.Response(status=204)


# ------------------------------------------------------------------------------- configs


def _config_data(
    base: str, cid: str, services: Services, topic: TopicInfo, name: str
) -> dict[str, Any]:
    effective = services.topic_config(topic).as_strings()
    setting = topic_setting(name)
    if setting is None:
        raise BrokerError(f"Config {name} not found", ErrorCode.UNKNOWN_CONFIG)
    overridden = name in topic.configs
    url = f"{base}/clusters/{cid}/topics/{topic.name}/configs/{name}"
    if overridden:
        source = "DYNAMIC_TOPIC_CONFIG"
    elif setting.broker_default:
        source = "STATIC_BROKER_CONFIG"
    else:
        source = "DEFAULT_CONFIG"
    return {
        **_resource(
            "KafkaTopicConfig", url, f"crn:///kafka={cid}/topic={topic.name}/config={name}"
        ),
        "cluster_id": cid,
        "topic_name": topic.name,
        "name": name,
        "value": effective[name],
        "is_default": not overridden,
        "is_read_only": False,
        "is_sensitive": False,
        "source": source,
        "synonyms": [],
        "documentation": setting.doc,
    }


async def list_configs(request: web.Request) -> web.Response:
    services, metadata, cid = _cluster(request)
    topic = metadata.topic(topic_path(request))
    base = _base(request)
    data = [_config_data(base, cid, services, topic, s.name) for s in TOPIC_SETTINGS]
    return json_response(
        _collection(
            "KafkaTopicConfigList", f"{base}/clusters/{cid}/topics/{topic.name}/configs", data
        )
    )


async def get_config(request: web.Request) -> web.Response:
    services, metadata, cid = _cluster(request)
    topic = metadata.topic(topic_path(request))
    return json_response(
        _config_data(_base(request), cid, services, topic, request.match_info["name"])
    )


async def put_config(request: web.Request) -> web.Response:
    services, metadata, _ = _cluster(request)
    name = topic_path(request)
    metadata.topic(name)
    config_name = request.match_info["name"]
    doc = await _json_body(request)
    if not isinstance(doc, dict) or "value" not in doc:
        raise InvalidRequestError('The body must be {"value": ...}')
    await services.admin.alter_topic_configs(
        name, set_configs={config_name: doc["value"]}, delete_configs=[]
    )
    return web.Response(status=204)


async def delete_config(request: web.Request) -> web.Response:
    services, metadata, _ = _cluster(request)
    name = topic_path(request)
    metadata.topic(name)
    config_name = request.match_info["name"]
    if topic_setting(config_name) is None:
        raise BrokerError(f"Config {config_name} not found", ErrorCode.UNKNOWN_CONFIG)
    await services.admin.alter_topic_configs(name, set_configs={}, delete_configs=[config_name])
    return web.Response(status=204)


async def alter_configs(request: web.Request) -> web.Response:
    services, metadata, _ = _cluster(request)
    name = topic_path(request)
    metadata.topic(name)
    doc = await _json_body(request)
    if not isinstance(doc, dict):
        raise InvalidRequestError('The body must be {"data": [{"name", "value"}]}')
    set_configs: dict[str, Any] = {}
    delete_configs: list[str] = []
    for entry in _configs_field(doc, "data"):
        operation = str(entry.get("operation", "SET")).upper()
        if operation == "DELETE":
            delete_configs.append(entry["name"])
        elif operation == "SET":
            set_configs[entry["name"]] = entry.get("value")
        else:
            raise InvalidRequestError(f"operation must be SET or DELETE, not {operation}")
    await services.admin.alter_topic_configs(
        name, set_configs=set_configs, delete_configs=delete_configs
    )
    return web.Response(status=204)


# ---------------------------------------------------------------------------- partitions


def _partition_data(
    base: str, cid: str, info: PartitionInfo, offsets: tuple[int, int, int] | None
) -> dict[str, Any]:
    url = f"{base}/clusters/{cid}/topics/{info.topic}/partitions/{info.partition}"
    described = describe_partition(info, offsets)
    return {
        **_resource(
            "KafkaPartition",
            url,
            f"crn:///kafka={cid}/topic={info.topic}/partition={info.partition}",
        ),
        "cluster_id": cid,
        "topic_name": info.topic,
        "partition_id": info.partition,
        "leader": {"related": f"{url}/replicas/{info.leader}"} if info.leader >= 0 else None,
        "replicas": {"related": f"{url}/replicas"},
        "reassignment": {"related": f"{url}/reassignment"},
        "leader_id": described["leader"],
        "leader_epoch": described["leader_epoch"],
        "replica_ids": list(info.replicas),
        "isr": described["isr"],
        "under_replicated": described["under_replicated"],
        "offline": described["offline"],
        "log_start_offset": described["log_start_offset"],
        "high_watermark": described["high_watermark"],
        "log_end_offset": described["log_end_offset"],
    }


async def list_partitions(request: web.Request) -> web.Response:
    services, metadata, cid = _cluster(request)
    topic = metadata.topic(topic_path(request))
    offsets = await gather_offsets(services, topic)
    base = _base(request)
    return json_response(
        _collection(
            "KafkaPartitionList",
            f"{base}/clusters/{cid}/topics/{topic.name}/partitions",
            [_partition_data(base, cid, p, offsets.get(p.partition)) for p in topic.partitions],
        )
    )


async def get_partition(request: web.Request) -> web.Response:
    services, metadata, cid = _cluster(request)
    topic = metadata.topic(topic_path(request))
    info = topic.partition(partition_path(request))
    offsets = await gather_offsets(services, topic)
    return json_response(_partition_data(_base(request), cid, info, offsets.get(info.partition)))


def _replica_data(base: str, cid: str, info: PartitionInfo, broker_id: int) -> dict[str, Any]:
    url = f"{base}/clusters/{cid}/topics/{info.topic}/partitions/{info.partition}/replicas"
    return {
        **_resource(
            "KafkaReplica",
            f"{url}/{broker_id}",
            f"crn:///kafka={cid}/topic={info.topic}/partition={info.partition}/replica={broker_id}",
        ),
        "cluster_id": cid,
        "topic_name": info.topic,
        "partition_id": info.partition,
        "broker_id": broker_id,
        "is_leader": broker_id == info.leader,
        "is_in_sync": broker_id in info.isr,
        "broker": {"related": f"{base}/clusters/{cid}/brokers/{broker_id}"},
    }


async def list_replicas(request: web.Request) -> web.Response:
    _, metadata, cid = _cluster(request)
    info = metadata.topic(topic_path(request)).partition(partition_path(request))
    base = _base(request)
    url = f"{base}/clusters/{cid}/topics/{info.topic}/partitions/{info.partition}/replicas"
    data = [_replica_data(base, cid, info, b) for b in info.replicas]
    return json_response(_collection("KafkaReplicaList", url, data))


async def get_replica(request: web.Request) -> web.Response:
    _, metadata, cid = _cluster(request)
    info = metadata.topic(topic_path(request)).partition(partition_path(request))
    broker_id = _broker_id(request)
    if broker_id not in info.replicas:
        raise BrokerError(
            f"Broker {broker_id} holds no replica of {info.topic}-{info.partition}",
            ErrorCode.NOT_FOUND,
        )
    return json_response(_replica_data(_base(request), cid, info, broker_id))


#: The wildcard of Confluent's reassignment paths (``topics/-/partitions/-/reassignment``).
_ALL: Final = "-"


async def reassignments(request: web.Request) -> web.Response:
    """``GET .../topics/{t|-}/partitions/{p|-}/reassignment``: kbroker does not reassign
    partitions, so the lists are empty and one partition's reassignment is not found."""
    _, metadata, cid = _cluster(request)
    topic = request.match_info["topic"]
    raw = request.match_info["partition"]
    url = f"{_base(request)}/clusters/{cid}/topics/{topic}/partitions/{raw}/reassignment"
    if topic != _ALL or raw != _ALL:
        info = metadata.topic(topic_path(request))  # 404 for an unknown topic
        if raw != _ALL:
            partition = info.partition(partition_path(request))
            raise BrokerError(
                f"No reassignment of {partition.topic}-{partition.partition} is in progress "
                "(kbroker does not reassign partitions)",
                ErrorCode.NOT_FOUND,
            )
    return json_response(_collection("KafkaReassignmentList", url, []))


async def elect_preferred_leaders(request: web.Request) -> web.StreamResponse:
    """Move leadership back to preferred replicas (kbroker extension; Kafka's
    kafka-leader-election --election-type preferred). Body: optional
    ``{"partitions": [{"topic_name", "partition_id"}]}``; all partitions when absent. The
    active controller answers (other brokers forward) with how many partitions it queued."""
    services, metadata, _ = _cluster(request)
    controller = metadata.controller_id
    if controller != services.config.broker_id and FORWARDED_HEADER not in request.headers:
        broker = metadata.brokers.get(controller)
        if broker is None:
            raise BrokerError("No active controller", ErrorCode.NOT_CONTROLLER)
        return await services.peers.forward(request, broker.url)
    doc = await _json_body(request)
    partitions: list[tuple[str, int]] | None = None
    if isinstance(doc, dict) and doc.get("partitions") is not None:
        entries = doc["partitions"]
        if not isinstance(entries, list) or not all(
            isinstance(e, dict)
            and isinstance(e.get("topic_name"), str)
            and isinstance(e.get("partition_id"), int)
            for e in entries
        ):
            raise InvalidRequestError(
                'partitions must be [{"topic_name": str, "partition_id": int}]'
            )
        partitions = [(e["topic_name"], e["partition_id"]) for e in entries]
        for topic, partition in partitions:
            metadata.partition(topic, partition)
    elif doc is not None and not isinstance(doc, dict):
        raise InvalidRequestError("The body must be a JSON object")
    queued = await services.controller.elect_preferred(partitions)
    return json_response({"queued_partitions": queued})


def routes() -> list[web.RouteDef]:
    c = "/v3/clusters/{cluster_id}"
    t = c + "/topics/{topic}"
    return [
        web.get("/v3/clusters", list_clusters),
        web.get(c, get_cluster),
        web.get(c + "/brokers", list_brokers),
        web.get(c + "/brokers/{broker_id}", get_broker),
        web.get(c + "/brokers/{broker_id}/configs", broker_configs),
        web.get(c + "/brokers/{broker_id}/configs/{name}", broker_configs),
        web.get(c + "/brokers/{broker_id}/partition-replicas", broker_replicas),
        web.get(c + "/broker-configs", cluster_broker_configs),
        web.get(c + "/acls", list_acls),
        web.get(c + "/topics", list_topics),
        web.post(c + "/topics", create_topic),
        web.get(t, get_topic),
        web.patch(t, patch_topic),
        web.delete(t, delete_topic),
        web.get(t + "/configs", list_configs),
        web.post(t + "/configs:alter", alter_configs),
        web.get(t + "/configs/{name}", get_config),
        web.put(t + "/configs/{name}", put_config),
        web.delete(t + "/configs/{name}", delete_config),
        web.get(t + "/partitions", list_partitions),
        web.get(t + "/partitions/{partition}", get_partition),
        web.get(t + "/partitions/{partition}/replicas", list_replicas),
        web.get(t + "/partitions/{partition}/replicas/{broker_id}", get_replica),
        web.get(t + "/partitions/{partition}/reassignment", reassignments),
        web.post(c + "/partitions:elect-preferred-leaders", elect_preferred_leaders),
    ]
