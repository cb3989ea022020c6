"""Cluster metadata: which brokers exist and which one leads each partition.

A client starts from a list of bootstrap URLs, learns the brokers (``/v3/clusters/{id}/brokers``)
and, per topic it uses, the partition leaders (``GET /topics/{t}``). Requests then go straight to
the leader; a NOT_LEADER or LEADER_NOT_AVAILABLE answer, or a broker that does not answer, makes
the caller :meth:`Metadata.invalidate` the topic so the next lookup re-reads it. Concurrent
refreshes of one topic share one request.

Snapshots (:class:`TopicMeta`, the broker map) are immutable and replaced whole, so code on
other threads (the sync facades) may read them without a lock.

Concurrency: the coroutines run on the client's event loop only.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from kclient._transport import Transport
from kclient.errors import (
    BrokerUnavailableError,
    LeaderNotAvailableError,
    UnknownPartitionError,
)
from kclient.structs import BrokerDescription, PartitionDescription, TopicDescription

__all__ = ["Metadata", "TopicMeta", "parse_bootstrap"]

T = TypeVar("T")


def parse_bootstrap(bootstrap: str | Sequence[str]) -> list[str]:
    """Broker base URLs from a comma-separated string or a list (``host:port`` gets http://)."""
    items = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)
    urls = []
    for item in items:
        url = item.strip().rstrip("/")
        if not url:
            continue
        if "://" not in url:
            url = "http://" + url
        urls.append(url)
    if not urls:
        raise ValueError("bootstrap needs at least one broker URL")
    return urls


@dataclass(frozen=True, slots=True)
class TopicMeta:
    """One topic as last read: leader broker id per partition (None while it has none)."""

    name: str
    leaders: tuple[int | None, ...]
    fetched_at: float

    @property
    def partitions(self) -> int:
        return len(self.leaders)

    def available(self) -> list[int]:
        return [p for p, leader in enumerate(self.leaders) if leader is not None]


def describe_topic(doc: dict[str, Any]) -> TopicDescription:
    """A TopicDescription from the ``GET /topics/{t}`` body."""
    name = str(doc["name"])
    partitions = [
        PartitionDescription(
            topic=name,
            partition=int(p["partition"]),
            leader=p.get("leader"),
            leader_epoch=int(p.get("leader_epoch", 0)),
            replicas=[int(r["broker"]) for r in p.get("replicas", [])],
            isr=[int(b) for b in p.get("isr", [])],
            under_replicated=bool(p.get("under_replicated")),
            offline=bool(p.get("offline")),
            log_start_offset=p.get("log_start_offset"),
            high_watermark=p.get("high_watermark"),
            log_end_offset=p.get("log_end_offset"),
        )
        for p in doc["partitions"]
    ]
    return TopicDescription(name=name, partitions=partitions, configs=dict(doc.get("configs", {})))


class Metadata:
    """What a client knows about the cluster (see the module docstring)."""

    def __init__(self, transport: Transport, bootstrap: Sequence[str], *, max_age_s: float = 300):
        self.transport = transport
        self.bootstrap = list(bootstrap)
        self.max_age_s = max_age_s
        self.cluster_id: str | None = None
        self.controller: int | None = None
        self.brokers: dict[int, BrokerDescription] = {}
        self.topics: dict[str, TopicMeta] = {}
        self._refreshing: dict[str, asyncio.Future[TopicMeta]] = {}
        self._cluster_refresh: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------------ any broker

    def candidate_urls(self) -> list[str]:
        """Known brokers first (shuffled), then the bootstrap list."""
        known = [b.url for b in self.brokers.values()]
        random.shuffle(known)
        return known + [u for u in self.bootstrap if u not in known]

    async def any_broker(self, call: Callable[[str], Awaitable[T]]) -> T:
        """``call(url)`` on the first broker that answers; BrokerUnavailableError if none."""
        failures = []
        for url in self.candidate_urls():
            try:
                return await call(url)
            except BrokerUnavailableError as exc:
                if exc.after_append:
                    raise
                failures.append(str(exc))
        raise BrokerUnavailableError(
            "no broker answered (tried "
            + ", ".join(self.candidate_urls())
            + "): "
            + "; ".join(failures[-3:])
        )

    async def call_any(self, method: str, path: str, **kwargs: Any) -> Any:
        """A JSON request to any broker (metadata, admin, groups)."""

        async def one(url: str) -> Any:
            return await self.transport.call(method, url + path, **kwargs)

        return await self.any_broker(one)

    # --------------------------------------------------------------------------- cluster

    async def refresh_cluster(self) -> None:
        """Re-read the cluster id, the controller and the brokers (one refresh at a time)."""
        if self._cluster_refresh is not None:
            return await asyncio.shield(self._cluster_refresh)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._cluster_refresh = future
        try:
            await self._read_cluster()
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            self._cluster_refresh = None

    async def _read_cluster(self) -> None:
        clusters = await self.call_any("GET", "/v3/clusters")
        cluster = clusters["data"][0]
        cid = str(cluster["cluster_id"])
        controller = cluster.get("controller")
        brokers = await self.call_any("GET", f"/v3/clusters/{cid}/brokers")
        self.cluster_id = cid
        self.controller = int(controller["related"].rsplit("/", 1)[1]) if controller else None
        self.brokers = {
            int(b["broker_id"]): BrokerDescription(
                broker_id=int(b["broker_id"]),
                url=str(b["url"]).rstrip("/"),
                host=str(b.get("host", "")),
                port=b.get("port"),
                rack=b.get("rack"),
                is_controller=bool(b.get("is_controller")),
            )
            for b in brokers["data"]
        }

    async def cluster(self) -> str:
        """The cluster id (reading the cluster once if needed)."""
        if self.cluster_id is None:
            await self.refresh_cluster()
        assert self.cluster_id is not None
        return self.cluster_id

    def broker_url(self, broker_id: int | None) -> str | None:
        if broker_id is None:
            return None
        broker = self.brokers.get(broker_id)
        return broker.url if broker else None

    # ---------------------------------------------------------------------------- topics

    def cached(self, topic: str) -> TopicMeta | None:
        meta = self.topics.get(topic)
        if meta is not None and time.monotonic() - meta.fetched_at > self.max_age_s:
            return None
        return meta

    async def topic(self, topic: str, *, refresh: bool = False) -> TopicMeta:
        """The topic's partitions and leaders; UnknownTopicError when it does not exist."""
        meta = None if refresh else self.cached(topic)
        if meta is not None:
            return meta
        pending = self._refreshing.get(topic)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[TopicMeta] = asyncio.get_running_loop().create_future()
        self._refreshing[topic] = future
        try:
            meta = await self._read_topic(topic)
            future.set_result(meta)
            return meta
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            del self._refreshing[topic]

    async def _read_topic(self, topic: str) -> TopicMeta:
        doc = await self.call_any("GET", f"/topics/{quote(topic, safe='')}")
        leaders = tuple(p.get("leader") for p in doc["partitions"])
        if any(leader is not None and leader not in self.brokers for leader in leaders) or (
            not self.brokers
        ):
            await self.refresh_cluster()
        meta = TopicMeta(name=topic, leaders=leaders, fetched_at=time.monotonic())
        self.topics[topic] = meta
        return meta

    def invalidate(self, topic: str) -> None:
        """Forget ``topic`` so that the next lookup re-reads it (after NOT_LEADER and such)."""
        self.topics.pop(topic, None)

    async def leader_url(self, topic: str, partition: int, *, refresh: bool = False) -> str:
        """URL of the partition's leader; LeaderNotAvailableError while it has none."""
        meta = await self.topic(topic, refresh=refresh)
        if partition >= meta.partitions:
            meta = await self.topic(topic, refresh=True)
        if partition >= meta.partitions:
            raise UnknownPartitionError(f"partition {partition} of {topic} does not exist")
        url = self.broker_url(meta.leaders[partition])
        if url is None:
            meta = await self.topic(topic, refresh=True)
            url = self.broker_url(meta.leaders[partition])
        if url is None:
            raise LeaderNotAvailableError(f"{topic}-{partition} has no leader")
        return url

    async def describe(self, topic: str) -> TopicDescription:
        doc = await self.call_any("GET", f"/topics/{quote(topic, safe='')}")
        return describe_topic(doc)

    async def list_topics(self) -> list[str]:
        return sorted(await self.call_any("GET", "/topics"))
