"""ReplicaManager: the logs of new replicas (made in a worker thread with their topic-id marker,
then found open by ``apply``; a log of an older topic of the same name is replaced), and the
drain of produces in flight before a controlled shutdown moves leadership away."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from kbroker.cluster import LeaderAndIsr, PartitionInfo
from kbroker.config import BrokerConfig, TopicConfig
from kbroker.log.batch import PayloadCodec
from kbroker.log.checkpoint import read_checkpoint
from kbroker.log.manager import LogManager
from kbroker.log.partition_log import PartitionLog
from kbroker.records import PartitionRecords
from kbroker.replication.fetcher import FlushPolicy, ReplicaFetcherManager
from kbroker.replication.manager import PARTITION_METADATA, ReplicaManager
from kbroker.replication.partition import IsrWriter, Partition
from tests.unit.log.support import BASE_CONFIG, FakeClock


class _NoFetchers:
    """Replicas without a leader (no state applied) are only ever unfollowed."""

    def unfollow(self, _tp: tuple[str, int]) -> None:
        pass


def _replicas(
    tmp_path: Path, flush: FlushPolicy | None = None
) -> tuple[ReplicaManager, LogManager]:
    clock = FakeClock()
    logs = LogManager(tmp_path, BASE_CONFIG, clock=clock)
    logs.load()
    config = BrokerConfig.build(
        {"broker.id": 1, "zookeeper.connect": "zk:2181", "data.dir": str(tmp_path)}
    )
    manager = ReplicaManager(
        config=config,
        logs=logs,
        clock=clock,
        isr_writer=cast(IsrWriter, None),  # no state is applied: nothing writes an ISR
        fetchers=cast(ReplicaFetcherManager, _NoFetchers()),
        flush=flush,
    )
    return manager, logs


def _hosted(partition: int) -> PartitionInfo:
    """Partition ``partition`` of topic ``t``, hosted by this broker (1) alone, no state."""
    return PartitionInfo(topic="t", partition=partition, replicas=(1,))


def _topic_id(log_dir: Path) -> list[list[str]]:
    return read_checkpoint(log_dir / PARTITION_METADATA, lambda fields: fields)


async def test_new_logs_are_made_with_their_topic_id_and_found_by_apply(tmp_path: Path) -> None:
    manager, logs = _replicas(tmp_path)
    wanted = [(_hosted(p), BASE_CONFIG, "id-1") for p in range(3)]
    assert await manager.open_new_logs(wanted) == [("t", 0), ("t", 1), ("t", 2)]
    made = logs.get("t", 1)
    assert made is not None and _topic_id(made.directory) == [["topic_id", "id-1"]]
    manager.apply(_hosted(1), BASE_CONFIG, "id-1")
    replica = manager.get("t", 1)
    assert replica is not None and replica.log is made
    # Hosted already, or with a log open: nothing to make; nor for a replica of another broker.
    assert await manager.open_new_logs(wanted) == []
    elsewhere = PartitionInfo(topic="t", partition=9, replicas=(2,))
    assert await manager.open_new_logs([(elsewhere, BASE_CONFIG, "id-1")]) == []
    assert logs.get("t", 9) is None
    logs.close()


async def test_a_leftover_log_of_an_older_topic_is_left_to_apply(tmp_path: Path) -> None:
    """A directory already there is not made again; apply finds it belongs to an older topic
    (KIP-516 marker) and replaces it."""
    manager, logs = _replicas(tmp_path)
    assert await manager.open_new_logs([(_hosted(0), BASE_CONFIG, "old")]) == [("t", 0)]
    old = logs.get("t", 0)
    assert old is not None
    logs.close()
    manager, logs = _replicas(tmp_path)
    assert await manager.open_new_logs([(_hosted(0), BASE_CONFIG, "new")]) == []
    manager.apply(_hosted(0), BASE_CONFIG, "new")
    replica = manager.get("t", 0)
    assert replica is not None and _topic_id(replica.log.directory) == [["topic_id", "new"]]
    logs.close()


async def test_a_log_registered_meanwhile_is_kept(tmp_path: Path) -> None:
    """The caller's guard failing (a log of the same name opened while the thread worked)
    keeps the registered log and closes the thread's instead of failing the broker."""
    manager, logs = _replicas(tmp_path)
    make = manager._open_new_logs

    def racing(replicas: Sequence[tuple[str, int, TopicConfig, str]]) -> list[PartitionLog]:
        made = make(replicas)
        logs.get_or_create("t", 0, BASE_CONFIG)  # as if the loop had opened it meanwhile
        return made

    manager._open_new_logs = racing  # type: ignore[method-assign]
    assert await manager.open_new_logs([(_hosted(0), BASE_CONFIG, "id")]) == []
    registered = logs.get("t", 0)
    assert registered is not None and registered.log_end_offset == 0
    logs.close()


async def test_drain_waits_for_a_produce_still_in_its_flush(tmp_path: Path) -> None:
    """A produce waiting for the fsync its topic's flush policy asks for is not yet parked
    for acks=all; moving leadership then would fail it with an ambiguous NOT_LEADER, so the
    drain before a controlled shutdown waits for it too."""
    fsynced = asyncio.Event()

    async def slow_flush(_replica: Partition, _next_offset: int) -> None:
        await fsynced.wait()

    manager, logs = _replicas(tmp_path, flush=slow_flush)
    leader = LeaderAndIsr(leader=1, leader_epoch=0, isr=(1,), controller_epoch=1)
    info = PartitionInfo(topic="t", partition=0, replicas=(1,), state=leader)
    manager.apply(info, BASE_CONFIG, "id")
    batch = PartitionRecords(
        payload=b'[{"value": 1}]',
        record_count=1,
        attributes=PayloadCodec.JSON,
        first_timestamp=1,
        max_timestamp=1,
        positions=[0],
    )
    produced = asyncio.create_task(
        manager.append("t", 0, [batch], codec=PayloadCodec.JSON, acks=-1, timeout_ms=5000)
    )
    await asyncio.sleep(0.01)
    assert not await manager.drain(timeout=0.05)  # the produce is still in its flush
    fsynced.set()
    assert await manager.drain(timeout=1.0)
    assert (await produced).base_offset == 0
    logs.close()
