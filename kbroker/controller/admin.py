"""Topic administration from any broker (Kafka's AdminZkClient).

Creating a topic validates it (Kafka's naming rules, partition count, replication factor against
live brokers, configs), places replicas (kbroker.controller.assignment) and writes
``/config/topics/<t>`` and ``/brokers/topics/<t>`` in one ZooKeeper transaction; the active
controller then creates the partition states (elects leaders). Deleting writes
``/admin/delete_topics/<t>`` for the controller to act on. Config changes and partition additions
are version-checked writes. Each call waits (bounded) until the broker's own metadata shows the
result, so that a client may use the topic as soon as the call returns.
"""

from __future__ import annotations

import contextlib
import functools
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from kbroker.cluster import ClusterMetadata, TopicInfo
from kbroker.config import BrokerConfig, topic_setting, validate_topic_configs
from kbroker.controller.assignment import assign_replicas
from kbroker.coordination.errors import BadVersionError, NodeExistsError, NoNodeError
from kbroker.coordination.zk import CreateOp, Op, SetDataOp, ZooKeeperClient
from kbroker.coordination.znodes import (
    DeleteTopicZNode,
    TopicAssignment,
    TopicConfigZNode,
    TopicZNode,
    new_base64_uuid,
)
from kbroker.errors import BrokerError, ErrorCode
from kclient.protocol import MAX_TOPIC_NAME_LENGTH

__all__ = ["TopicAdmin", "check_topic_name"]

_LEGAL: Final = re.compile(r"[a-zA-Z0-9._-]+")
RESERVED_TOPICS: Final = frozenset({"__consumer_offsets"})
#: How long an admin call waits for the cluster to show its effect.
_CREATE_WAIT_S: Final = 15.0
_DELETE_WAIT_S: Final = 30.0

WaitFor = Callable[[Callable[[ClusterMetadata], bool], float], Awaitable[bool]]


def check_topic_name(name: str, existing: Mapping[str, TopicInfo] | None = None) -> None:
    """Kafka's rules (``Topic.validate`` and the '.'/'_' collision check)."""
    if not name:
        raise BrokerError("Topic name is illegal, it can't be empty", ErrorCode.INVALID_TOPIC_NAME)
    if name in (".", ".."):
        raise BrokerError('Topic name cannot be "." or ".."', ErrorCode.INVALID_TOPIC_NAME)
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise BrokerError(
            f"Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} characters",
            ErrorCode.INVALID_TOPIC_NAME,
        )
    if not _LEGAL.fullmatch(name):
        raise BrokerError(
            f'Topic name "{name}" is illegal, it contains a character other than ASCII '
            "alphanumerics, '.', '_' and '-'",
            ErrorCode.INVALID_TOPIC_NAME,
        )
    if existing:
        folded = name.replace(".", "_")
        for other in existing:
            if other != name and other.replace(".", "_") == folded:
                raise BrokerError(
                    f"Topic '{name}' collides with existing topic: {other} ('.' and '_' "
                    "are interchangeable in metric names)",
                    ErrorCode.INVALID_TOPIC_NAME,
                )


class TopicAdmin:
    """Topic administration through ZooKeeper (see the module docstring)."""

    def __init__(
        self,
        *,
        zk: ZooKeeperClient,
        config: BrokerConfig,
        metadata: Callable[[], ClusterMetadata],
        wait_for: WaitFor,
        rng: random.Random | None = None,
    ) -> None:
        self._zk = zk
        self._config = config
        self._metadata = metadata
        self._wait_for = wait_for
        self._rng = rng or random.Random()

    async def create_topic(
        self,
        name: str,
        *,
        partitions: int | None,
        replication_factor: int | None,
        configs: dict[str, Any],
        assignment: dict[int, list[int]] | None,
        validate_only: bool,
        internal: bool = False,
    ) -> None:
        metadata = self._metadata()
        if not internal and name in RESERVED_TOPICS:
            raise BrokerError(
                f"Topic {name} is reserved for internal use", ErrorCode.INVALID_TOPIC_NAME
            )
        check_topic_name(name, metadata.topics)
        existing = metadata.topics.get(name)
        if existing is not None:
            code = (
                ErrorCode.TOPIC_DELETION_IN_PROGRESS
                if existing.deleting
                else ErrorCode.TOPIC_ALREADY_EXISTS
            )
            raise BrokerError(f"Topic '{name}' already exists.", code)
        stored_configs = validate_topic_configs(configs)
        replicas = self._placement(metadata, partitions, replication_factor, assignment)
        if validate_only:
            return
        ops: list[Op] = [
            CreateOp(TopicConfigZNode.path(name), TopicConfigZNode.encode(stored_configs)),
            CreateOp(
                TopicZNode.path(name),
                TopicZNode.encode(
                    TopicAssignment(
                        partitions={p: tuple(r) for p, r in replicas.items()},
                        topic_id=new_base64_uuid(),
                    )
                ),
            ),
        ]
        try:
            await self._zk.transaction(ops)
        except NodeExistsError as exc:
            if exc.op_index == 0:  # a config left by an interrupted creation: replace it
                await self._zk.set(
                    TopicConfigZNode.path(name), TopicConfigZNode.encode(stored_configs)
                )
                try:
                    await self._zk.transaction(ops[1:])
                except NodeExistsError:
                    raise BrokerError(
                        f"Topic '{name}' already exists.", ErrorCode.TOPIC_ALREADY_EXISTS
                    ) from exc
            else:
                raise BrokerError(
                    f"Topic '{name}' already exists.", ErrorCode.TOPIC_ALREADY_EXISTS
                ) from exc
        await self._wait_for(lambda m: _has_leaders(m, name), _CREATE_WAIT_S)

    def _placement(
        self,
        metadata: ClusterMetadata,
        partitions: int | None,
        replication_factor: int | None,
        assignment: dict[int, list[int]] | None,
    ) -> dict[int, list[int]]:
        if assignment is not None:
            if partitions is not None or replication_factor is not None:
                raise BrokerError(
                    "replicas_assignments excludes partitions_count and replication_factor",
                    ErrorCode.INVALID_REPLICATION_FACTOR,
                )
            return _check_assignment(
                assignment, set(metadata.brokers), self._config.max_partitions_per_topic
            )
        count = partitions if partitions is not None else self._config.num_partitions
        most = self._config.max_partitions_per_topic
        if not 1 <= count <= most:
            raise BrokerError(
                f"partitions_count must be between 1 and {most} (max.partitions.per.topic)",
                ErrorCode.INVALID_PARTITIONS,
            )
        factor = (
            replication_factor
            if replication_factor is not None
            else self._config.default_replication_factor
        )
        racks = {b.broker_id: b.rack for b in metadata.brokers.values()}
        return assign_replicas(racks, count, factor, rng=self._rng)

    async def delete_topic(self, name: str) -> None:
        with contextlib.suppress(NodeExistsError):
            await self._zk.create(
                DeleteTopicZNode.path(name), DeleteTopicZNode.encode(), makepath=True
            )
        gone = await self._wait_for(lambda m: name not in m.topics, _DELETE_WAIT_S)
        if not gone:
            raise BrokerError(
                f"Topic {name} is marked for deletion but not deleted yet (is a controller "
                "active?)",
                ErrorCode.REQUEST_TIMED_OUT,
            )

    async def alter_topic_configs(
        self, name: str, *, set_configs: dict[str, Any], delete_configs: list[str]
    ) -> None:
        checked = validate_topic_configs(set_configs)
        for config_name in delete_configs:
            if topic_setting(config_name) is None:
                raise BrokerError(
                    f"Unknown topic config name: {config_name}", ErrorCode.INVALID_CONFIG
                )
        path = TopicConfigZNode.path(name)
        for _attempt in range(10):
            try:
                data, stat = await self._zk.get(path)
                current = dict(TopicConfigZNode.decode(data))
                version = stat.version
            except NoNodeError:
                current, version = {}, -2
            updated = {k: v for k, v in current.items() if k not in delete_configs}
            updated.update(checked)
            try:
                if version == -2:
                    await self._zk.create(path, TopicConfigZNode.encode(updated), makepath=True)
                else:
                    await self._zk.set(path, TopicConfigZNode.encode(updated), version=version)
            except (BadVersionError, NodeExistsError):
                continue
            await self._wait_for(
                functools.partial(_configs_are, name=name, configs=updated), _CREATE_WAIT_S
            )
            return
        raise BrokerError(
            f"Configs of {name} changed concurrently; try again", ErrorCode.REQUEST_TIMED_OUT
        )

    async def create_partitions(self, name: str, count: int) -> None:
        metadata = self._metadata()
        topic = metadata.topic(name)
        current = len(topic.partitions)
        if count <= current:
            raise BrokerError(
                f"Topic {name} has {current} partitions; the count can only grow "
                f"(asked for {count})",
                ErrorCode.INVALID_PARTITIONS,
            )
        most = self._config.max_partitions_per_topic
        if count > most:
            raise BrokerError(
                f"partitions_count must be at most {most} (max.partitions.per.topic)",
                ErrorCode.INVALID_PARTITIONS,
            )
        data, stat = await self._zk.get(TopicZNode.path(name))
        existing = TopicZNode.decode(data)
        racks = {b.broker_id: b.rack for b in metadata.brokers.values()}
        added = assign_replicas(
            racks, count - current, topic.replication_factor, rng=self._rng, start_partition=current
        )
        new = TopicAssignment(
            partitions={**existing.partitions, **{p: tuple(r) for p, r in added.items()}},
            topic_id=existing.topic_id,
        )
        try:
            await self._zk.transaction(
                [SetDataOp(TopicZNode.path(name), TopicZNode.encode(new), version=stat.version)]
            )
        except BadVersionError as exc:
            raise BrokerError(
                f"Topic {name} changed concurrently; try again", ErrorCode.REQUEST_TIMED_OUT
            ) from exc
        await self._wait_for(lambda m: _has_leaders(m, name, count), _CREATE_WAIT_S)


def _check_assignment(
    assignment: dict[int, list[int]], live: set[int], most: int
) -> dict[int, list[int]]:
    if sorted(assignment) != list(range(len(assignment))):
        raise BrokerError(
            "replicas_assignments must name partitions 0..n-1", ErrorCode.INVALID_PARTITIONS
        )
    if len(assignment) > most:
        raise BrokerError(
            f"At most {most} partitions (max.partitions.per.topic)", ErrorCode.INVALID_PARTITIONS
        )
    sizes = {len(r) for r in assignment.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise BrokerError(
            "All partitions must have the same, non-zero number of replicas",
            ErrorCode.INVALID_REPLICATION_FACTOR,
        )
    for partition, replicas in assignment.items():
        if len(set(replicas)) != len(replicas):
            raise BrokerError(
                f"Partition {partition} lists a broker twice", ErrorCode.INVALID_REPLICATION_FACTOR
            )
        unknown = set(replicas) - live
        if unknown:
            raise BrokerError(
                f"Partition {partition} names unknown brokers {sorted(unknown)}",
                ErrorCode.INVALID_REPLICATION_FACTOR,
            )
    return assignment


def _has_leaders(metadata: ClusterMetadata, name: str, count: int | None = None) -> bool:
    topic = metadata.topics.get(name)
    if topic is None or (count is not None and len(topic.partitions) < count):
        return False
    return all(p.leader >= 0 for p in topic.partitions)


def _configs_are(metadata: ClusterMetadata, *, name: str, configs: dict[str, str]) -> bool:
    topic = metadata.topics.get(name)
    return topic is not None and dict(topic.configs) == configs
