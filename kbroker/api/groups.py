"""Consumer groups over HTTP: membership for smart clients, committed offsets, lag.

kbroker extension endpoints (JSON), the HTTP form of Kafka's group protocol with the assignment
computed by the coordinator (see docs/api.md):

* ``POST /groups/{group}/members``: join or rejoin; answers when the rebalance completes with
  the member id, generation and assignment.
* ``POST /groups/{group}/members/{member}/heartbeat``: keep the session; 409 40912 means the
  group is rebalancing (commit, then rejoin).
* ``DELETE /groups/{group}/members/{member}``: leave.
* ``POST /groups/{group}/offsets`` / ``GET``: commit (next offsets to consume, fenced by member
  id and generation) and read committed offsets.
* ``GET /groups``, ``GET|DELETE /groups/{group}``, ``POST /groups/{group}/offsets:reset``.

And Confluent's v3 consumer-group resources with lag (high watermark minus committed offset):
``/v3/clusters/{c}/consumer-groups[/{g}[/consumers[/{c}]|/lag-summary|/lags[/{t}/partitions/{p}]]]``
(the single consumer and partition lag are their collections' entries).

Every group request is served by the group's coordinator (kbroker.api.coordination forwards).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import orjson
from aiohttp import web

from kbroker.api.coordination import coordinated, leader_offsets
from kbroker.api.errors import json_response
from kbroker.api.media import require_json_body
from kbroker.api.partitions import DESCRIBE_TIMEOUT_S, gather_offsets
from kbroker.api.produce import read_body
from kbroker.api.services import SERVICES, Services
from kbroker.errors import BrokerError, ErrorCode, InvalidRequestError
from kbroker.group.state import Group, OffsetEntry, TopicPartition

__all__ = ["body_of", "group_lags", "local_groups_json", "routes"]

LOCAL_GROUPS_PATH: Final = "/internal/v1/groups"


async def body_of(request: web.Request) -> Any:
    """The JSON body (None when empty), with a 400 for malformed JSON."""
    services = request.app[SERVICES]
    require_json_body(request.headers.get("Content-Type"))
    raw = await read_body(request, services.config.max_request_bytes)
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BrokerError(f"Malformed JSON: {exc}", ErrorCode.MALFORMED_REQUEST) from exc


def _object(doc: Any, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise InvalidRequestError(f"The body must be a JSON object ({what})")
    return doc


def _int(
    doc: dict[str, Any],
    name: str,
    default: int | None,
    *,
    low: int,
    high: int,
    code: ErrorCode = ErrorCode.INVALID_PAYLOAD,
) -> int:
    value = doc.get(name, default)
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        raise BrokerError(f"{name} must be an integer", code)
    if not low <= value <= high:
        raise BrokerError(f"{name} must be between {low} and {high}", code)
    return value


def _str_or_none(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequestError(f"{name} must be a string")
    return value


def partitions_of(doc: Any, key: str = "partitions") -> list[TopicPartition]:
    """``[{"topic", "partition"}]`` entries as tuples, checked."""
    entries = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise InvalidRequestError(f'{key} must be an array of {{"topic", "partition"}}')
    out = []
    for entry in entries:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("topic"), str)
            or (
                not isinstance(entry.get("partition"), int)
                or isinstance(entry["partition"], bool)
                or entry["partition"] < 0
            )
        ):
            raise InvalidRequestError(f'each of {key} must be {{"topic": str, "partition": int}}')
        out.append((entry["topic"], entry["partition"]))
    return out


def check_partitions(services: Services, tps: list[TopicPartition]) -> None:
    metadata = services.metadata
    for topic, partition in tps:
        metadata.partition(topic, partition)


def offsets_of(doc: Any, *, plus_one: bool) -> dict[TopicPartition, OffsetEntry]:
    """``{"offsets": [{"topic", "partition", "offset", "metadata"?}]}`` as offset entries.

    ``plus_one``: the REST v2 convention (the client names the last record it processed).
    """
    entries = doc.get("offsets") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise InvalidRequestError('offsets must be an array of {"topic", "partition", "offset"}')
    out = {}
    for entry in entries:
        tp = partitions_of({"p": [entry]}, "p")[0]
        offset = entry.get("offset")
        if (
            not isinstance(offset, int)
            or isinstance(offset, bool)
            or offset < -1
            or (offset >= (1 << 63) - 1)
        ):
            raise BrokerError("offset must be a non-negative integer", ErrorCode.INVALID_OFFSET)
        metadata = entry.get("metadata") or ""
        if not isinstance(metadata, str) or len(metadata) > 4096:
            raise InvalidRequestError("metadata must be a string of at most 4096 characters")
        out[tp] = OffsetEntry(offset=offset + 1 if plus_one else offset, metadata=metadata)
    return out


def _group_id(request: web.Request) -> str:
    group_id = request.match_info["group"]
    if not group_id or len(group_id) > 255:
        raise BrokerError("Group id must be 1 to 255 characters", ErrorCode.INVALID_GROUP_ID)
    return group_id


def _assignment_json(tps: list[TopicPartition]) -> list[dict[str, Any]]:
    return [{"topic": t, "partition": p} for t, p in tps]


# --------------------------------------------------------------------------- membership


async def join(request: web.Request) -> web.StreamResponse:
    group_id = _group_id(request)

    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        doc = _object(await body_of(request), "join")
        topics, pattern = doc.get("topics"), _str_or_none(doc, "topic_pattern")
        if (topics is None) == (pattern is None):
            raise BrokerError(
                "Give exactly one of topics and topic_pattern", ErrorCode.INVALID_CONSUMER_CONFIG
            )
        if topics is not None and (
            not isinstance(topics, list) or not all(isinstance(t, str) for t in topics)
        ):
            raise InvalidRequestError("topics must be an array of topic names")
        session = _int(
            doc,
            "session_timeout_ms",
            10_000,
            low=1,
            high=3_600_000,
            code=ErrorCode.INVALID_SESSION_TIMEOUT,
        )
        result = await services.coordinator.join(
            group_id,
            member_id=_str_or_none(doc, "member_id") or "",
            client_id=_str_or_none(doc, "client_id") or "consumer",
            instance_id=_str_or_none(doc, "group_instance_id"),
            topics=topics,
            pattern=pattern,
            assignor=_str_or_none(doc, "assignor") or "sticky",
            session_timeout_ms=session,
            rebalance_timeout_ms=_int(
                doc,
                "rebalance_timeout_ms",
                max(30_000, session),
                low=1,
                high=3_600_000,
                code=ErrorCode.INVALID_SESSION_TIMEOUT,
            ),
        )
        return json_response(
            {
                "member_id": result.member_id,
                "generation_id": result.generation_id,
                "assignor": result.assignor,
                "assignment": _assignment_json(result.assignment),
                "members": result.members,
                "heartbeat_interval_ms": max(100, session // 3),
            }
        )

    return await coordinated(request, group_id, handle)


async def heartbeat(request: web.Request) -> web.StreamResponse:
    group_id = _group_id(request)

    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        doc = _object(await body_of(request), "heartbeat")
        state = services.coordinator.heartbeat(
            group_id,
            request.match_info["member"],
            _int(doc, "generation_id", None, low=-1, high=1 << 31),
        )
        return json_response({"state": state.value})

    return await coordinated(request, group_id, handle)


async def leave(request: web.Request) -> web.StreamResponse:
    group_id = _group_id(request)

    async def handle() -> web.StreamResponse:
        await request.app[SERVICES].coordinator.leave(group_id, request.match_info["member"])
        return web.Response(status=204)

    return await coordinated(request, group_id, handle)


# ------------------------------------------------------------------------------ offsets


async def commit_offsets(request: web.Request) -> web.StreamResponse:
    group_id = _group_id(request)

    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        doc = _object(await body_of(request), "commit")
        offsets = offsets_of(doc, plus_one=False)
        check_partitions(services, list(offsets))
        await services.coordinator.commit(
            group_id,
            offsets,
            member_id=_str_or_none(doc, "member_id"),
            generation=_int(doc, "generation_id", -1, low=-1, high=1 << 31),
        )
        return json_response(
            {"offsets": [{"topic": t, "partition": p, "error_code": None} for t, p in offsets]}
        )

    return await coordinated(request, group_id, handle)


async def fetch_offsets(request: web.Request) -> web.StreamResponse:
    group_id = _group_id(request)

    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        topic = request.query.get("topic")
        committed = services.coordinator.committed(group_id, [topic] if topic else None)
        return json_response(
            {
                "offsets": [
                    {"topic": t, "partition": p, "offset": e.offset, "metadata": e.metadata}
                    for (t, p), e in sorted(committed.items())
                ]
            }
        )

    return await coordinated(request, group_id, handle)


async def reset_offsets(request: web.Request) -> web.StreamResponse:
    """Move an empty group's committed offsets: earliest, latest, by timestamp, or explicit."""
    group_id = _group_id(request)

    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        doc = _object(await body_of(request), "reset")
        topic = doc.get("topic")
        if not isinstance(topic, str):
            raise InvalidRequestError("topic must be a topic name")
        info = services.metadata.topic(topic)
        partitions = doc.get("partitions") or list(range(len(info.partitions)))
        if not isinstance(partitions, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) for p in partitions
        ):
            raise InvalidRequestError("partitions must be an array of partition numbers")
        group = services.coordinator.group(group_id)
        if group is not None and group.members:
            raise BrokerError(
                f"Group {group_id} has active members; stop them first", ErrorCode.GROUP_NOT_EMPTY
            )
        for partition in partitions:
            info.partition(partition)
        targets = {
            (topic, p): OffsetEntry(offset=await _target(services, topic, p, doc))
            for p in partitions
        }
        await services.coordinator.commit(group_id, targets, member_id=None, generation=-1)
        return json_response(
            {
                "offsets": [
                    {"topic": t, "partition": p, "offset": e.offset}
                    for (t, p), e in targets.items()
                ]
            }
        )

    return await coordinated(request, group_id, handle)


async def _target(services: Services, topic: str, partition: int, doc: dict[str, Any]) -> int:
    to = doc.get("to")
    if to == "offset":
        wanted = _int(doc, "offset", None, low=0, high=(1 << 63) - 2, code=ErrorCode.INVALID_OFFSET)
        bounds = await leader_offsets(services, topic, partition)
        return min(max(wanted, int(bounds["beginning_offset"])), int(bounds["end_offset"]))
    if to == "timestamp":
        timestamp = _int(
            doc,
            "timestamp",
            None,
            low=0,
            high=253_402_300_799_999,
            code=ErrorCode.INVALID_PARAMETER,
        )
        found = await leader_offsets(services, topic, partition, timestamp=timestamp)
        return int(found["offset"] if found.get("offset") is not None else found["end_offset"])
    if to in ("earliest", "latest"):
        bounds = await leader_offsets(services, topic, partition)
        return int(bounds["beginning_offset" if to == "earliest" else "end_offset"])
    raise InvalidRequestError("to must be earliest, latest, timestamp or offset")


# ----------------------------------------------------------------------- descriptions


def describe_group(group: Group | None, group_id: str) -> dict[str, Any]:
    if group is None:
        raise BrokerError(f"Group {group_id} not found", ErrorCode.UNKNOWN_GROUP)
    return {
        "group_id": group.group_id,
        "state": group.state.value,
        "generation_id": group.generation,
        "assignor": group.assignor,
        "members": [
            {
                "member_id": m.member_id,
                "client_id": m.client_id,
                "group_instance_id": m.instance_id,
                "rest_instance": m.rest_instance,
                "topics": list(m.topics),
                "assignment": _assignment_json(m.assignment),
            }
            for m in group.members.values()
        ],
    }


def local_groups_json(services: Services) -> list[dict[str, Any]]:
    return [
        {
            "group_id": g.group_id,
            "state": g.state.value,
            "members": len(g.members),
            "coordinator": services.config.broker_id,
        }
        for g in services.coordinator.local_groups()
    ]


async def all_groups(services: Services) -> list[dict[str, Any]]:
    """Every group of the cluster: local ones plus each other broker's."""
    found = local_groups_json(services)
    others = [
        b for b in services.metadata.brokers.values() if b.broker_id != services.config.broker_id
    ]

    async def ask(url: str) -> list[dict[str, Any]]:
        try:
            groups: list[dict[str, Any]] = orjson.loads(
                await services.peers.get(url, LOCAL_GROUPS_PATH, timeout_s=DESCRIBE_TIMEOUT_S)
            )["groups"]
        except BrokerError:
            return []
        return groups

    for answer in await asyncio.gather(*(ask(b.url) for b in others)):
        found.extend(answer)
    return sorted(found, key=lambda g: g["group_id"])


async def list_groups(request: web.Request) -> web.Response:
    return json_response({"groups": await all_groups(request.app[SERVICES])})


async def local_groups(request: web.Request) -> web.Response:
    return json_response({"groups": local_groups_json(request.app[SERVICES])})


async def get_group(request: web.Request) -> web.StreamResponse:
    group_id = _group_id(request)

    async def handle() -> web.StreamResponse:
        group = request.app[SERVICES].coordinator.group(group_id)
        return json_response(describe_group(group, group_id))

    return await coordinated(request, group_id, handle)


async def delete_group(request: web.Request) -> web.StreamResponse:
    group_id = _group_id(request)

    async def handle() -> web.StreamResponse:
        await request.app[SERVICES].coordinator.delete_group(group_id)
        return web.Response(status=204)

    return await coordinated(request, group_id, handle)


# ----------------------------------------------------------------------------- v3 + lag


async def group_lags(services: Services, group: Group) -> list[dict[str, Any]]:
    """Lag of every partition with a committed offset: high watermark - committed offset."""
    topics = {t for t, _ in group.offsets}
    high: dict[TopicPartition, int] = {}
    for name in topics:
        info = services.metadata.topics.get(name)
        if info is None:
            continue
        for partition, offsets in (await gather_offsets(services, info)).items():
            high[(name, partition)] = offsets[1]
    out = []
    for (topic, partition), entry in sorted(group.offsets.items()):
        end = high.get((topic, partition))
        owner = group.owner_of((topic, partition))
        out.append(
            {
                "topic_name": topic,
                "partition_id": partition,
                "current_offset": entry.offset,
                "log_end_offset": end,
                "lag": None if end is None else max(0, end - entry.offset),
                "consumer_id": owner.member_id if owner else "",
                "instance_id": owner.instance_id if owner else None,
                "client_id": owner.client_id if owner else "",
            }
        )
    return out


def _v3_base(request: web.Request) -> str:
    services = request.app[SERVICES]
    cid = request.match_info["cluster_id"]
    if cid != services.metadata.cluster_id:
        raise BrokerError(f"Cluster {cid} not found", ErrorCode.UNKNOWN_CLUSTER)
    return f"{request.scheme}://{request.host}/v3/clusters/{cid}"


def _v3_group(base: str, cid: str, group: dict[str, Any]) -> dict[str, Any]:
    url = f"{base}/consumer-groups/{group['group_id']}"
    return {
        "kind": "KafkaConsumerGroup",
        "metadata": {
            "self": url,
            "resource_name": f"crn:///kafka={cid}/consumer-group={group['group_id']}",
        },
        "cluster_id": cid,
        "consumer_group_id": group["group_id"],
        "is_simple": group.get("simple", group["members"] == 0),
        "partition_assignor": group.get("assignor", ""),
        "state": group["state"].upper(),
        "coordinator": {"related": f"{base}/brokers/{group['coordinator']}"},
        "consumers": {"related": f"{url}/consumers"},
        "lag_summary": {"related": f"{url}/lag-summary"},
    }


async def v3_list_groups(request: web.Request) -> web.Response:
    base = _v3_base(request)
    services = request.app[SERVICES]
    cid = services.metadata.cluster_id
    data = [_v3_group(base, cid, g) for g in await all_groups(services)]
    return json_response(
        {
            "kind": "KafkaConsumerGroupList",
            "metadata": {"self": f"{base}/consumer-groups", "next": None},
            "data": data,
        }
    )


@dataclass(frozen=True, slots=True)
class _V3Group:
    """What a v3 consumer-group resource is built from (at the group's coordinator)."""

    services: Services
    group: Group
    url: str
    """This group's URL: ``.../v3/clusters/{c}/consumer-groups/{g}``."""
    cid: str

    def resource(self, kind: str, path: str, crn: str) -> dict[str, Any]:
        return {
            "kind": kind,
            "metadata": {
                "self": self.url + path,
                "resource_name": f"crn:///kafka={self.cid}/consumer-group={self.group.group_id}{crn}",
            },
            "cluster_id": self.cid,
            "consumer_group_id": self.group.group_id,
        }

    def collection(self, kind: str, path: str, data: list[dict[str, Any]]) -> dict[str, Any]:
        return {"kind": kind, "metadata": {"self": self.url + path, "next": None}, "data": data}


async def _v3_group_resource(
    request: web.Request, build: Callable[[_V3Group], Awaitable[dict[str, Any]]]
) -> web.StreamResponse:
    """Serve a v3 resource of one group from its coordinator (UNKNOWN_GROUP if none)."""
    base = _v3_base(request)
    group_id = _group_id(request)

    async def handle() -> web.StreamResponse:
        services = request.app[SERVICES]
        group = services.coordinator.group(group_id)
        if group is None:
            raise BrokerError(f"Group {group_id} not found", ErrorCode.UNKNOWN_GROUP)
        view = _V3Group(
            services=services,
            group=group,
            cid=services.metadata.cluster_id,
            url=f"{base}/consumer-groups/{group_id}",
        )
        return json_response(await build(view))

    return await coordinated(request, group_id, handle)


async def _group_summary(v: _V3Group) -> dict[str, Any]:
    group = v.group
    summary = {
        "group_id": group.group_id,
        "state": group.state.value,
        "members": len(group.members),
        "assignor": group.assignor,
        "coordinator": v.services.config.broker_id,
        "simple": group.generation == 0 and not group.members,
    }
    return _v3_group(v.url.rsplit("/consumer-groups/", 1)[0], v.cid, summary)


async def _group_consumers(v: _V3Group) -> dict[str, Any]:
    members = describe_group(v.group, v.group.group_id)["members"]
    data = [
        v.resource("KafkaConsumer", f"/consumers/{m['member_id']}", f"/consumer={m['member_id']}")
        | {
            "consumer_id": m["member_id"],
            "instance_id": m["group_instance_id"],
            "client_id": m["client_id"],
            "assignments": {"related": f"{v.url}/consumers/{m['member_id']}/assignments"},
        }
        for m in members
    ]
    return v.collection("KafkaConsumerList", "/consumers", data)


def _consumer_assignments(v: _V3Group, consumer: str) -> dict[str, Any]:
    """One member's partitions, sorted by topic and partition (Confluent's
    ``KafkaConsumerAssignmentList``); 404 for a member the group does not have."""
    members = describe_group(v.group, v.group.group_id)["members"]
    member = next((m for m in members if m["member_id"] == consumer), None)
    if member is None:
        raise BrokerError(
            f"Consumer {consumer} of {v.group.group_id} not found", ErrorCode.NOT_FOUND
        )
    cluster_url = v.url.rsplit("/consumer-groups/", 1)[0]
    path = f"/consumers/{consumer}/assignments"
    data = [
        v.resource(
            "KafkaConsumerAssignment",
            f"{path}/{a['topic']}/partitions/{a['partition']}",
            f"/consumer={consumer}/assignment={a['topic']}/partition={a['partition']}",
        )
        | {
            "consumer_id": consumer,
            "topic_name": a["topic"],
            "partition_id": a["partition"],
            "partition": {
                "related": f"{cluster_url}/topics/{a['topic']}/partitions/{a['partition']}"
            },
        }
        for a in sorted(member["assignment"], key=lambda a: (a["topic"], a["partition"]))
    ]
    return v.collection("KafkaConsumerAssignmentList", path, data)


async def _group_lags(v: _V3Group) -> dict[str, Any]:
    data = [
        v.resource(
            "KafkaConsumerLag",
            f"/lags/{lag['topic_name']}/partitions/{lag['partition_id']}",
            f"/lag={lag['topic_name']}-{lag['partition_id']}",
        )
        | lag
        for lag in await group_lags(v.services, v.group)
    ]
    return v.collection("KafkaConsumerLagList", "/lags", data)


async def _group_lag_summary(v: _V3Group) -> dict[str, Any]:
    lags = [lag for lag in await group_lags(v.services, v.group) if lag["lag"] is not None]
    worst = max(lags, key=lambda lag: lag["lag"], default=None)
    return v.resource("KafkaConsumerGroupLagSummary", "/lag-summary", "/lag-summary") | {
        "max_lag_consumer_id": worst["consumer_id"] if worst else "",
        "max_lag_instance_id": worst["instance_id"] if worst else None,
        "max_lag_client_id": worst["client_id"] if worst else "",
        "max_lag_topic_name": worst["topic_name"] if worst else "",
        "max_lag_partition_id": worst["partition_id"] if worst else 0,
        "max_lag": worst["lag"] if worst else 0,
        "total_lag": sum(lag["lag"] for lag in lags),
    }


async def v3_group(request: web.Request) -> web.StreamResponse:
    return await _v3_group_resource(request, _group_summary)


async def v3_consumers(request: web.Request) -> web.StreamResponse:
    return await _v3_group_resource(request, _group_consumers)


async def v3_lags(request: web.Request) -> web.StreamResponse:
    return await _v3_group_resource(request, _group_lags)


async def v3_lag_summary(request: web.Request) -> web.StreamResponse:
    return await _v3_group_resource(request, _group_lag_summary)


def _one(collection: dict[str, Any], path: str, what: str) -> dict[str, Any]:
    """The entry of a v3 collection whose self link ends with ``path`` (404 if none)."""
    for entry in collection["data"]:
        if entry["metadata"]["self"].endswith(path):
            return cast(dict[str, Any], entry)
    raise BrokerError(f"{what} not found", ErrorCode.NOT_FOUND)


async def v3_consumer(request: web.Request) -> web.StreamResponse:
    consumer = request.match_info["consumer"]

    async def build(v: _V3Group) -> dict[str, Any]:
        found = await _group_consumers(v)
        return _one(found, f"/consumers/{consumer}", f"Consumer {consumer} of {v.group.group_id}")

    return await _v3_group_resource(request, build)


async def v3_consumer_assignments(request: web.Request) -> web.StreamResponse:
    consumer = request.match_info["consumer"]

    async def build(v: _V3Group) -> dict[str, Any]:
        return _consumer_assignments(v, consumer)

    return await _v3_group_resource(request, build)


async def v3_consumer_assignment(request: web.Request) -> web.StreamResponse:
    consumer, topic = request.match_info["consumer"], request.match_info["topic"]
    partition = request.match_info["partition"]

    async def build(v: _V3Group) -> dict[str, Any]:
        found = _consumer_assignments(v, consumer)
        what = f"Assignment of {topic}-{partition} to {consumer}"
        return _one(found, f"/assignments/{topic}/partitions/{partition}", what)

    return await _v3_group_resource(request, build)


async def v3_partition_lag(request: web.Request) -> web.StreamResponse:
    topic, partition = request.match_info["topic"], request.match_info["partition"]

    async def build(v: _V3Group) -> dict[str, Any]:
        found = await _group_lags(v)
        what = f"Lag of {v.group.group_id} on {topic}-{partition}"
        return _one(found, f"/lags/{topic}/partitions/{partition}", what)

    return await _v3_group_resource(request, build)


def routes() -> list[web.RouteDef]:
    g = "/groups/{group}"
    c = "/v3/clusters/{cluster_id}/consumer-groups"
    return [
        web.get("/groups", list_groups),
        web.get(g, get_group),
        web.delete(g, delete_group),
        web.post(g + "/members", join),
        web.post(g + "/members/{member}/heartbeat", heartbeat),
        web.delete(g + "/members/{member}", leave),
        web.post(g + "/offsets", commit_offsets),
        web.get(g + "/offsets", fetch_offsets),
        web.post(g + "/offsets:reset", reset_offsets),
        web.get(LOCAL_GROUPS_PATH, local_groups),
        web.get(c, v3_list_groups),
        web.get(c + "/{group}", v3_group),
        web.get(c + "/{group}/consumers", v3_consumers),
        web.get(c + "/{group}/consumers/{consumer}", v3_consumer),
        web.get(c + "/{group}/consumers/{consumer}/assignments", v3_consumer_assignments),
        web.get(
            c + "/{group}/consumers/{consumer}/assignments/{topic}/partitions/{partition}",
            v3_consumer_assignment,
        ),
        web.get(c + "/{group}/lags", v3_lags),
        web.get(c + "/{group}/lags/{topic}/partitions/{partition}", v3_partition_lag),
        web.get(c + "/{group}/lag-summary", v3_lag_summary),
    ]
