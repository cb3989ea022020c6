"""What the HTTP edge needs from the rest of the broker, as a protocol.

Handlers stay thin: they parse, call one of these, and serialise. ``server.Broker`` implements
this; API tests can supply their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from aiohttp import web

from kbroker.clock import Clock
from kbroker.cluster import ClusterMetadata, TopicInfo
from kbroker.config import BrokerConfig, TopicConfig
from kbroker.group.coordinator import GroupCoordinator
from kbroker.replication.manager import ReplicaManager

__all__ = ["SERVICES", "Services"]


class PeerClient(Protocol):
    """Forwards requests to other brokers (see kbroker.api.forward)."""

    async def forward(
        self,
        request: web.Request,
        url: str,
        *,
        body: bytes | None = None,
        path: str | None = None,
    ) -> web.Response: ...

    async def get(self, url: str, path: str, *, timeout_s: float | None = None) -> bytes:
        """GET ``url + path`` from a peer; the body of a 200, else BrokerError (also after
        ``timeout_s``, by default the forwarding timeout)."""
        ...


class TopicAdmin(Protocol):
    """Topic administration (kbroker.controller.admin)."""

    async def create_topic(
        self,
        name: str,
        *,
        partitions: int | None,
        replication_factor: int | None,
        configs: dict[str, str],
        assignment: dict[int, list[int]] | None,
        validate_only: bool,
        internal: bool = False,
    ) -> None: ...

    async def delete_topic(self, name: str) -> None: ...

    async def alter_topic_configs(
        self, name: str, *, set_configs: dict[str, str], delete_configs: list[str]
    ) -> None: ...

    async def create_partitions(self, name: str, count: int) -> None: ...


class ControllerApi(Protocol):
    """Requests only the active controller answers (kbroker.controller.controller)."""

    async def controlled_shutdown(self, broker_id: int) -> int: ...

    async def elect_preferred(self, partitions: Iterable[tuple[str, int]] | None) -> int: ...


class Services(Protocol):
    """Read-only members: the broker owns them, handlers only call into them."""

    @property
    def config(self) -> BrokerConfig: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def replicas(self) -> ReplicaManager: ...

    @property
    def peers(self) -> PeerClient: ...

    @property
    def admin(self) -> TopicAdmin: ...

    @property
    def controller(self) -> ControllerApi: ...

    @property
    def coordinator(self) -> GroupCoordinator: ...

    @property
    def metadata(self) -> ClusterMetadata: ...

    @property
    def draining(self) -> bool:
        """True while the broker is stopping (responses close their connections)."""
        ...

    def topic_config(self, topic: TopicInfo) -> TopicConfig: ...

    async def ensure_topic(self, name: str) -> TopicInfo:
        """The topic, auto-created when that is enabled; UNKNOWN_TOPIC otherwise."""
        ...

    async def wait_for_metadata(
        self, predicate: Callable[[ClusterMetadata], bool], timeout: float
    ) -> bool:
        """Wait (bounded) until the metadata satisfies ``predicate``; whether it did."""
        ...

    async def next_producer_id(self) -> int:
        """A cluster-unique producer id for an idempotent producer."""
        ...

    def sticky_partition(self, topic: TopicInfo) -> int:
        """The partition keyless records of one request go to (prefers local leaders)."""
        ...


SERVICES = web.AppKey("services", Services)
