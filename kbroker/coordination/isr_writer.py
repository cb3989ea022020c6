"""A leader's ISR changes, written to the partition state znodes conditionally and in batches.

Each write is a setData of ``/brokers/topics/<t>/partitions/<p>/state`` at the version the
leader last saw (Kafka 2.x ZooKeeper mode: the leader updates the ISR, the controller the
leader). When it loses the race (another write came first) the caller gets the state now
stored instead, and decides from it.

A broker that comes back makes each leader of its partitions expand the ISR at about the same
moment: thousands of writes. Sent one by one, each is a round trip and a ZooKeeper transaction,
and the client thread's work per request competes with the event loop for the GIL for
seconds. So writes queued while a multi is in flight go out together in the next one (up to
``BATCH`` of them). A multi fails whole, naming the op that failed; the batch's znodes are
then read, all at once (pipelined): every write whose znode changed meanwhile is answered with
the stored state (or NOT_LEADER when the znode is gone), and the rest are sent again. A batch
with many lost races (the controller moving leaderships while leaders change their ISRs)
thus costs one read and one more multi, not a multi and a read per lost race.

Concurrency: everything runs on the event loop. A partition has at most one write in flight
(its leader serialises its ISR changes), so a multi never holds two ops on one znode.
"""

from __future__ import annotations

import asyncio
from typing import Final

from kbroker.cluster import LeaderAndIsr
from kbroker.coordination.errors import BadVersionError, NoNodeError
from kbroker.coordination.metadata import state_from_znode, state_to_znode
from kbroker.coordination.zk import SetDataOp, Stat, ZooKeeperClient, pipelined
from kbroker.coordination.znodes import TopicPartitionStateZNode
from kbroker.errors import BrokerError, ErrorCode

__all__ = ["ZkIsrWriter"]

#: ISR writes per multi (one small setData each).
BATCH: Final = 200


class _Write:
    __slots__ = ("future", "partition", "state", "topic")

    def __init__(self, topic: str, partition: int, state: LeaderAndIsr) -> None:
        self.topic = topic
        self.partition = partition
        self.state = state
        self.future: asyncio.Future[LeaderAndIsr] = asyncio.get_running_loop().create_future()

    @property
    def path(self) -> str:
        return TopicPartitionStateZNode.path(self.topic, self.partition)

    def written(self, stat: Stat) -> None:
        state = self.state
        self.settle(
            LeaderAndIsr(
                leader=state.leader,
                leader_epoch=state.leader_epoch,
                isr=state.isr,
                controller_epoch=state.controller_epoch,
                zk_version=stat.version,
            )
        )

    def settle(self, state: LeaderAndIsr) -> None:
        if not self.future.done():
            self.future.set_result(state)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class ZkIsrWriter:
    """See the module docstring."""

    def __init__(self, zk: ZooKeeperClient) -> None:
        self._zk = zk
        self._queue: list[_Write] = []
        self._sender: asyncio.Task[None] | None = None

    async def write_isr(self, topic: str, partition: int, state: LeaderAndIsr) -> LeaderAndIsr:
        """Store ``state`` if the znode is still at ``state.zk_version``: the state stored
        (with its new version), or the one found instead. Raises BrokerError NOT_LEADER when
        the partition has no state znode, and ZooKeeper's errors when it cannot be reached."""
        write = _Write(topic, partition, state)
        self._queue.append(write)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send(), name="isr-writes")
        return await write.future

    async def _send(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
            try:
                await self._write(batch)
            except asyncio.CancelledError:  # the broker stops
                for write in (*batch, *self._queue):
                    write.future.cancel()
                self._queue = []
                raise
            except Exception as exc:
                for write in batch:
                    write.fail(exc)

    async def _write(self, batch: list[_Write]) -> None:
        while batch:
            ops = [
                SetDataOp(w.path, state_to_znode(w.state), version=w.state.zk_version)
                for w in batch
            ]
            try:
                stats = await self._zk.transaction(ops)
            except (BadVersionError, NoNodeError) as exc:
                if exc.op_index is None:
                    raise
                batch = await self._still_current(batch)
                continue
            for write, stat in zip(batch, stats, strict=True):
                assert isinstance(stat, Stat)
                write.written(stat)
            return

    async def _still_current(self, batch: list[_Write]) -> list[_Write]:
        """After a failed multi: the writes of ``batch`` whose znode is still at the version
        they expect. The others are answered now: the state stored instead, or NOT_LEADER
        when the partition has no state znode."""
        stored = await pipelined(self._read, [w.path for w in batch])
        current = []
        for write, found in zip(batch, stored, strict=True):
            if found is None:
                write.fail(
                    BrokerError(
                        f"{write.topic}-{write.partition} has no state", ErrorCode.NOT_LEADER
                    )
                )
            elif found[1].version != write.state.zk_version:
                data, stat = found
                write.settle(state_from_znode(TopicPartitionStateZNode.decode(data), stat.version))
            else:
                current.append(write)
        return current

    async def _read(self, path: str) -> tuple[bytes, Stat] | None:
        try:
            return await self._zk.get(path)
        except NoNodeError:
            return None
