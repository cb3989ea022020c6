"""The asyncio admin client: topics, configs, cluster, and consumer groups.

Every call goes to any broker that answers (the broker forwards to the controller or the group
coordinator as needed). Topic creation returns once every partition has a leader; deletion once
the topic is gone (the broker waits). Errors are the :mod:`kclient.errors` classes.

Concurrency: one asyncio loop; use :class:`kclient.Admin` from threads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self
from urllib.parse import quote

from kclient._group import fetch_offsets, group_path
from kclient._metadata import Metadata, parse_bootstrap
from kclient._transport import Transport
from kclient.errors import NotFoundError
from kclient.structs import (
    ClusterDescription,
    ConfigEntry,
    GroupDescription,
    GroupListing,
    MemberDescription,
    OffsetAndMetadata,
    OffsetSpec,
    PartitionLag,
    TopicDescription,
    TopicListing,
    TopicPartition,
)

__all__ = ["Admin"]


def _q(name: str) -> str:
    return quote(name, safe="")


def _tps(entries: Iterable[Mapping[str, Any]]) -> list[TopicPartition]:
    return sorted(TopicPartition(str(a["topic"]), int(a["partition"])) for a in entries)


class Admin:
    """Administration of a kbroker cluster (see the module docstring)."""

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *,
        client_id: str = "kclient-admin",
        request_timeout_ms: float = 60_000,
    ) -> None:
        self._transport = Transport(request_timeout_ms=int(request_timeout_ms), client_id=client_id)
        self.metadata = Metadata(self._transport, parse_bootstrap(bootstrap))

    async def start(self) -> None:
        """Read the cluster (BrokerUnavailableError when no bootstrap broker answers)."""
        await self.metadata.refresh_cluster()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._transport.close()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.metadata.call_any(method, path, **kwargs)

    async def _topics_path(self) -> str:
        return f"/v3/clusters/{await self.metadata.cluster()}/topics"

    # --------------------------------------------------------------------------- cluster

    async def describe_cluster(self) -> ClusterDescription:
        """Cluster id, controller and live brokers (re-read now)."""
        await self.metadata.refresh_cluster()
        md = self.metadata
        assert md.cluster_id is not None
        return ClusterDescription(
            cluster_id=md.cluster_id,
            controller=md.controller,
            brokers=[md.brokers[b] for b in sorted(md.brokers)],
        )

    # ---------------------------------------------------------------------------- topics

    async def list_topics(self) -> list[str]:
        """Names of the topics (internal topics excluded)."""
        return await self.metadata.list_topics()

    async def topic_listings(self, *, internal: bool = False) -> list[TopicListing]:
        """Every topic with its partition count, replication factor and health counts."""
        answer = await self._call("GET", await self._topics_path())
        listings = [
            TopicListing(
                name=str(t["topic_name"]),
                partitions=int(t.get("partitions_count", 0)),
                replication_factor=int(t.get("replication_factor", 0)),
                under_replicated_partitions=int(t.get("under_replicated_partitions", 0)),
                offline_partitions=int(t.get("offline_partitions", 0)),
                internal=bool(t.get("is_internal")),
            )
            for t in answer["data"]
        ]
        return sorted((t for t in listings if internal or not t.internal), key=lambda t: t.name)

    async def create_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        replication_factor: int | None = None,
        configs: Mapping[str, str] | None = None,
        validate_only: bool = False,
    ) -> None:
        """Create a topic (the broker's defaults for what is None).

        TopicAlreadyExistsError, InvalidReplicationFactorError, InvalidConfigError...
        """
        body: dict[str, Any] = {
            "topic_name": name,
            "configs": [{"name": k, "value": str(v)} for k, v in (configs or {}).items()],
            "validate_only": validate_only,
        }
        if partitions is not None:
            body["partitions_count"] = partitions
        if replication_factor is not None:
            body["replication_factor"] = replication_factor
        await self._call("POST", await self._topics_path(), json=body)

    async def delete_topic(self, name: str) -> None:
        await self._call("DELETE", f"{await self._topics_path()}/{_q(name)}")
        self.metadata.invalidate(name)

    async def describe_topic(self, name: str) -> TopicDescription:
        """Partitions (leader, replicas, ISR, offsets) and effective configs of a topic."""
        return await self.metadata.describe(name)

    async def describe_topics(self, names: Iterable[str] | None = None) -> list[TopicDescription]:
        chosen = list(names) if names is not None else await self.list_topics()
        return [await self.describe_topic(n) for n in chosen]

    async def create_partitions(self, name: str, total: int) -> None:
        """Grow ``name`` to ``total`` partitions (InvalidPartitionsError to shrink)."""
        await self._call(
            "PATCH", f"{await self._topics_path()}/{_q(name)}", json={"partitions_count": total}
        )
        self.metadata.invalidate(name)

    async def describe_configs(self, name: str) -> list[ConfigEntry]:
        answer = await self._call("GET", f"{await self._topics_path()}/{_q(name)}/configs")
        return [
            ConfigEntry(
                name=str(c["name"]),
                value=c.get("value"),
                is_default=bool(c.get("is_default")),
                source=str(c.get("source", "")),
            )
            for c in answer["data"]
        ]

    async def alter_configs(
        self,
        name: str,
        *,
        set_configs: Mapping[str, str] | None = None,
        delete_configs: Iterable[str] = (),
    ) -> None:
        """Set and/or delete (back to the default) topic configs in one request."""
        data = [
            {"name": k, "value": str(v), "operation": "SET"} for k, v in (set_configs or {}).items()
        ]
        data += [{"name": k, "operation": "DELETE"} for k in delete_configs]
        if data:
            path = f"{await self._topics_path()}/{_q(name)}/configs:alter"
            await self._call("POST", path, json={"data": data})

    # ---------------------------------------------------------------------------- groups

    async def list_groups(self) -> list[GroupListing]:
        answer = await self._call("GET", "/groups")
        return [
            GroupListing(
                group_id=str(g["group_id"]),
                state=str(g.get("state", "")),
                members=int(g.get("members", 0)),
            )
            for g in answer.get("groups", [])
        ]

    async def describe_group(self, group_id: str) -> GroupDescription:
        answer = await self._call("GET", group_path(group_id))
        return GroupDescription(
            group_id=str(answer["group_id"]),
            state=str(answer.get("state", "")),
            generation_id=int(answer.get("generation_id", -1)),
            assignor=answer.get("assignor"),
            members=[
                MemberDescription(
                    member_id=str(m["member_id"]),
                    client_id=str(m.get("client_id", "")),
                    group_instance_id=m.get("group_instance_id"),
                    assignment=_tps(m.get("assignment", [])),
                )
                for m in answer.get("members", [])
            ],
        )

    async def delete_group(self, group_id: str) -> None:
        """Delete an empty group and its offsets (GroupNotEmptyError otherwise)."""
        await self._call("DELETE", group_path(group_id))

    async def list_group_offsets(self, group_id: str) -> dict[TopicPartition, OffsetAndMetadata]:
        return await fetch_offsets(self.metadata, group_id)

    async def group_lag(self, group_id: str) -> list[PartitionLag]:
        """Per partition: committed offset, log end offset (the HW), lag and owner."""
        cid = await self.metadata.cluster()
        try:
            answer = await self._call(
                "GET", f"/v3/clusters/{cid}/consumer-groups/{_q(group_id)}/lags"
            )
        except NotFoundError:  # no lag route: compute it from offsets and high watermarks
            return await self._computed_lag(group_id)
        return sorted(
            (
                PartitionLag(
                    topic=str(e["topic_name"]),
                    partition=int(e["partition_id"]),
                    committed=e.get("current_offset"),
                    log_end_offset=int(e.get("log_end_offset") or 0),
                    lag=int(e.get("lag") or 0),
                    consumer_id=e.get("consumer_id") or None,
                    client_id=e.get("client_id") or None,
                )
                for e in answer.get("data", [])
            ),
            key=lambda lag: (lag.topic, lag.partition),
        )

    async def _computed_lag(self, group_id: str) -> list[PartitionLag]:
        committed = await self.list_group_offsets(group_id)
        out = []
        for topic in sorted({tp.topic for tp in committed}):
            for p in (await self.describe_topic(topic)).partitions:
                om = committed.get(TopicPartition(topic, p.partition))
                end = p.high_watermark or 0
                done = om.offset if om else None
                out.append(
                    PartitionLag(
                        topic, p.partition, done, end, max(0, end - (done or 0)), None, None
                    )
                )
        return out

    async def reset_group_offsets(
        self,
        group_id: str,
        topic: str,
        *,
        to: OffsetSpec | str,
        partitions: Iterable[int] | None = None,
        timestamp: int | None = None,
        offset: int | None = None,
    ) -> dict[TopicPartition, int]:
        """Move the group's committed offsets of ``topic`` (all partitions, or ``partitions``)
        to earliest, latest, the first offset at/after ``timestamp`` (ms), or ``offset``.

        The group must have no members (GroupNotEmptyError). Returns the new offsets.
        """
        spec = OffsetSpec(to)
        body: dict[str, Any] = {"topic": topic, "to": spec.value}
        if partitions is not None:
            body["partitions"] = sorted(set(partitions))
        if spec is OffsetSpec.TIMESTAMP:
            if timestamp is None:
                raise ValueError('to="timestamp" needs timestamp=')
            body["timestamp"] = timestamp
        if spec is OffsetSpec.OFFSET:
            if offset is None:
                raise ValueError('to="offset" needs offset=')
            body["offset"] = offset
        answer = await self._call("POST", group_path(group_id) + "/offsets:reset", json=body)
        return {
            TopicPartition(str(e["topic"]), int(e["partition"])): int(e["offset"])
            for e in answer.get("offsets", [])
        }
