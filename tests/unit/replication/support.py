"""Helpers for the replication tests: a fake clock, a fake ISR writer, real partition logs."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from kbroker.cluster import LeaderAndIsr
from kbroker.config import BrokerConfig, TopicConfig
from kbroker.errors import BrokerError
from kbroker.log.batch import PayloadCodec
from kbroker.log.partition_log import LogAppendInfo, PartitionLog
from kbroker.replication.partition import Partition, Role

TOPIC = "t"
LAG_MS = 10_000


class FakeClock:
    """Time that moves only when the test says so (``now_ms`` and ``monotonic`` together)."""

    def __init__(self) -> None:
        self.elapsed_ms = 0

    def now_ms(self) -> int:
        return 1_700_000_000_000 + self.elapsed_ms

    def monotonic(self) -> float:
        return 1000.0 + self.elapsed_ms / 1000

    async def sleep(self, seconds: float) -> None:
        self.elapsed_ms += int(seconds * 1000)
        await asyncio.sleep(0)

    def advance(self, ms: int) -> None:
        self.elapsed_ms += ms


class FakeIsrWriter:
    """An IsrWriter over an in-memory znode: conditional on the version, like ZooKeeper.

    ``stored`` is the znode's current content; a write whose ``zk_version`` does not match gets
    the stored state back (what ZkIsrWriter does on BadVersion). ``fail`` makes writes raise.
    """

    def __init__(self) -> None:
        self.stored: LeaderAndIsr | None = None
        self.writes: list[LeaderAndIsr] = []
        self.fail: BrokerError | None = None
        self.written = asyncio.Event()
        self.gate: asyncio.Event | None = None

    def publish(self, state: LeaderAndIsr) -> LeaderAndIsr:
        """What the controller wrote; returns it as the partition would read it."""
        self.stored = state
        return state

    async def write_isr(self, topic: str, partition: int, state: LeaderAndIsr) -> LeaderAndIsr:
        if self.gate is not None:
            await self.gate.wait()
        self.writes.append(state)
        self.written.set()
        if self.fail is not None:
            raise self.fail
        assert self.stored is not None
        if state.zk_version != self.stored.zk_version:
            return self.stored
        self.stored = dataclasses.replace(state, zk_version=state.zk_version + 1)
        return self.stored


def broker_config(**settings: Any) -> BrokerConfig:
    return BrokerConfig.build(
        {"broker.id": 1, "zookeeper.connect": "zk:2181", "data.dir": "/unused", **settings}
    )


def topic_config(**settings: Any) -> TopicConfig:
    return TopicConfig.from_broker(broker_config(), {k: str(v) for k, v in settings.items()})


def open_log(directory: Path, clock: FakeClock, config: TopicConfig | None = None) -> PartitionLog:
    return PartitionLog.open(directory, TOPIC, 0, config or topic_config(), clock=clock)


def state(leader: int, isr: Sequence[int], *, epoch: int = 1, version: int = 0) -> LeaderAndIsr:
    return LeaderAndIsr(
        leader=leader, leader_epoch=epoch, isr=tuple(isr), controller_epoch=1, zk_version=version
    )


def payload(values: Sequence[Any]) -> bytes:
    return orjson.dumps([{"value": v} for v in values])


def append_records(log: PartitionLog, count: int, *, epoch: int, first: int = 0) -> LogAppendInfo:
    """Append one batch of ``count`` records directly to a log, stamped ``epoch``."""
    return log.append_as_leader(
        payload(range(first, first + count)),
        record_count=count,
        attributes=PayloadCodec.JSON,
        first_timestamp=1,
        max_timestamp=1,
        leader_epoch=epoch,
    )


def produce(partition: Partition, count: int, *, first: int = 0) -> LogAppendInfo:
    return partition.append_as_leader(
        payload(range(first, first + count)),
        record_count=count,
        attributes=PayloadCodec.JSON,
        first_timestamp=1,
        max_timestamp=1,
    )


def role_of(partition: Partition) -> Role:
    """The role, read through a call so that mypy does not narrow it across transitions."""
    return partition.role


def make_partition(
    log: PartitionLog,
    clock: FakeClock,
    writer: FakeIsrWriter,
    *,
    broker_id: int = 1,
    config: TopicConfig | None = None,
    is_live: Callable[[int], bool] = lambda _: True,
) -> Partition:
    return Partition(
        topic=TOPIC,
        partition=0,
        broker_id=broker_id,
        log=log,
        config=config or log.config,
        clock=clock,
        isr_writer=writer,
        replica_lag_time_max_ms=LAG_MS,
        is_live=is_live,
    )


async def settle(until: Callable[[], bool], *, rounds: int = 1000) -> None:
    """Let background tasks run until ``until()`` holds (a bounded number of loop turns)."""
    for _ in range(rounds):
        if until():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"condition not reached after {rounds} event loop turns")
