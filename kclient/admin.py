"""The synchronous admin client: a thin facade over :class:`kclient.aio.Admin`.

Each method runs the coroutine of the same name on a private event-loop thread and waits.
Safe to call from several threads.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import Any, Self, TypeVar

from kclient._loop import LoopThread
from kclient.aio.admin import Admin as AsyncAdmin
from kclient.structs import (
    ClusterDescription,
    ConfigEntry,
    GroupDescription,
    GroupListing,
    OffsetAndMetadata,
    OffsetSpec,
    PartitionLag,
    TopicDescription,
    TopicListing,
    TopicPartition,
)

__all__ = ["Admin"]

T = TypeVar("T")


class Admin:
    """Blocking administration of a cluster; methods as in :class:`kclient.aio.Admin`.

    ::

        with Admin("http://127.0.0.1:8080") as admin:
            admin.create_topic("orders", partitions=6, replication_factor=3)
    """

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *,
        client_id: str = "kclient-admin",
        request_timeout_ms: float = 60_000,
    ) -> None:
        self._runner = LoopThread("kclient-admin")

        async def make() -> AsyncAdmin:
            admin = AsyncAdmin(
                bootstrap, client_id=client_id, request_timeout_ms=request_timeout_ms
            )
            try:
                await admin.start()
            except BaseException:
                await admin.close()
                raise
            return admin

        self._impl = self._runner.run_or_stop(make())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def close(self) -> None:
        try:
            self._run(self._impl.close())
        finally:
            self._runner.stop()

    def describe_cluster(self) -> ClusterDescription:
        return self._run(self._impl.describe_cluster())

    def list_topics(self) -> list[str]:
        return self._run(self._impl.list_topics())

    def topic_listings(self, *, internal: bool = False) -> list[TopicListing]:
        return self._run(self._impl.topic_listings(internal=internal))

    def create_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        replication_factor: int | None = None,
        configs: Mapping[str, str] | None = None,
        validate_only: bool = False,
    ) -> None:
        self._run(
            self._impl.create_topic(
                name,
                partitions=partitions,
                replication_factor=replication_factor,
                configs=configs,
                validate_only=validate_only,
            )
        )

    def delete_topic(self, name: str) -> None:
        self._run(self._impl.delete_topic(name))

    def describe_topic(self, name: str) -> TopicDescription:
        return self._run(self._impl.describe_topic(name))

    def describe_topics(self, names: Iterable[str] | None = None) -> list[TopicDescription]:
        return self._run(self._impl.describe_topics(names))

    def create_partitions(self, name: str, total: int) -> None:
        self._run(self._impl.create_partitions(name, total))

    def describe_configs(self, name: str) -> list[ConfigEntry]:
        return self._run(self._impl.describe_configs(name))

    def alter_configs(
        self,
        name: str,
        *,
        set_configs: Mapping[str, str] | None = None,
        delete_configs: Iterable[str] = (),
    ) -> None:
        self._run(
            self._impl.alter_configs(name, set_configs=set_configs, delete_configs=delete_configs)
        )

    def list_groups(self) -> list[GroupListing]:
        return self._run(self._impl.list_groups())

    def describe_group(self, group_id: str) -> GroupDescription:
        return self._run(self._impl.describe_group(group_id))

    def delete_group(self, group_id: str) -> None:
        self._run(self._impl.delete_group(group_id))

    def list_group_offsets(self, group_id: str) -> dict[TopicPartition, OffsetAndMetadata]:
        return self._run(self._impl.list_group_offsets(group_id))

    def group_lag(self, group_id: str) -> list[PartitionLag]:
        return self._run(self._impl.group_lag(group_id))

    def reset_group_offsets(
        self,
        group_id: str,
        topic: str,
        *,
        to: OffsetSpec | str,
        partitions: Iterable[int] | None = None,
        timestamp: int | None = None,
        offset: int | None = None,
    ) -> dict[TopicPartition, int]:
        return self._run(
            self._impl.reset_group_offsets(
                group_id, topic, to=to, partitions=partitions, timestamp=timestamp, offset=offset
            )
        )
