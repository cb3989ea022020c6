"""Leaders' ISR writes against a real ZooKeeper ensemble: concurrent writes share multis, a
lost race answers the stored state, and a missing znode answers NOT_LEADER."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from kbroker.cluster import LeaderAndIsr
from kbroker.coordination import ZooKeeperClient
from kbroker.coordination.isr_writer import ZkIsrWriter
from kbroker.coordination.metadata import state_from_znode, state_to_znode
from kbroker.coordination.zk import Op, OpResult
from kbroker.coordination.znodes import TopicPartitionStateZNode
from kbroker.errors import BrokerError, ErrorCode


class CountingClient:
    def __init__(self, zk: ZooKeeperClient) -> None:
        self._zk = zk
        self.multis: list[int] = []

    async def transaction(self, ops: Sequence[Op]) -> list[OpResult]:
        self.multis.append(len(ops))
        return await self._zk.transaction(ops)

    def __getattr__(self, name: str) -> object:
        return getattr(self._zk, name)


def _state(isr: tuple[int, ...], version: int) -> LeaderAndIsr:
    return LeaderAndIsr(leader=1, leader_epoch=4, isr=isr, controller_epoch=2, zk_version=version)


async def _stored(zk: ZooKeeperClient, partition: int) -> LeaderAndIsr:
    data, stat = await zk.get(TopicPartitionStateZNode.path("t", partition))
    return state_from_znode(TopicPartitionStateZNode.decode(data), stat.version)


async def test_concurrent_isr_writes_share_multis(zk: ZooKeeperClient) -> None:
    for p in range(450):
        path = TopicPartitionStateZNode.path("t", p)
        await zk.create(path, state_to_znode(_state((1, 2), 0)), makepath=True)
    await zk.set(TopicPartitionStateZNode.path("t", 7), state_to_znode(_state((1,), 0)))
    counting = CountingClient(zk)
    writer = ZkIsrWriter(counting)  # type: ignore[arg-type]
    expanded = _state((1, 2, 3), 0)
    results = await asyncio.gather(
        *(writer.write_isr("t", p, expanded) for p in range(450)),
        writer.write_isr("t", 999, expanded),
        return_exceptions=True,
    )
    # 451 writes queued before the sender ran: 200 (failed on partition 7, sent again without
    # it), 200, and 51 with 999's (failed on 999, sent again without it)
    assert counting.multis == [200, 199, 200, 51, 50]
    for p in (0, 6, 8, 449):
        assert results[p] == replace(expanded, zk_version=1) == await _stored(zk, p)
    assert results[7] == await _stored(zk, 7) and results[7].isr == (1,)  # lost the race
    missing = results[450]
    assert isinstance(missing, BrokerError) and missing.code is ErrorCode.NOT_LEADER


async def test_many_lost_races_in_one_multi_cost_one_read(zk: ZooKeeperClient) -> None:
    """The controller moving leaderships while the leaders expand or shrink their ISRs makes
    many of one multi's writes stale at once. Answering them one failed multi at a time cost a
    multi and a read per stale write; one read of the batch's znodes settles them all."""
    for p in range(200):
        path = TopicPartitionStateZNode.path("t", p)
        await zk.create(path, state_to_znode(_state((1, 2), 0)), makepath=True)
    for p in range(0, 200, 2):  # the controller wrote half of them meanwhile
        await zk.set(TopicPartitionStateZNode.path("t", p), state_to_znode(_state((1,), 0)))
    counting = CountingClient(zk)
    writer = ZkIsrWriter(counting)  # type: ignore[arg-type]
    expanded = _state((1, 2, 3), 0)
    results = await asyncio.gather(*(writer.write_isr("t", p, expanded) for p in range(200)))
    assert counting.multis == [200, 100]
    for p in range(200):
        assert results[p] == await _stored(zk, p)
        assert results[p].isr == ((1,) if p % 2 == 0 else (1, 2, 3))
