"""Producer ids for idempotent producers, unique across the cluster (Kafka's
``/latest_producer_id_block``).

Each broker claims blocks of ids with a version-checked write of the znode
``{"version": 1, "broker": id, "block_start": "s", "block_end": "e"}`` and hands ids out of its
block; a lost race re-reads and claims the next block. Ids are never reused, also across broker
restarts (a restarted broker claims a new block).

Event loop only.
"""

from __future__ import annotations

import orjson

from kbroker.coordination.errors import BadVersionError, NodeExistsError, NoNodeError
from kbroker.coordination.zk import ZooKeeperClient
from kbroker.errors import BrokerError, ErrorCode

__all__ = ["BLOCK_PATH", "ProducerIdAllocator"]

BLOCK_PATH = "/latest_producer_id_block"
BLOCK_SIZE = 1000
_ATTEMPTS = 20


class ProducerIdAllocator:
    """Hands out producer ids from blocks claimed in ZooKeeper."""

    def __init__(self, zk: ZooKeeperClient, broker_id: int, block_size: int = BLOCK_SIZE) -> None:
        self._zk = zk
        self._broker_id = broker_id
        self._block_size = block_size
        self._next = 0
        self._end = -1

    async def next_id(self) -> int:
        if self._next > self._end:
            self._next, self._end = await self._claim()
        producer_id = self._next
        self._next += 1
        return producer_id

    async def _claim(self) -> tuple[int, int]:
        for _ in range(_ATTEMPTS):
            try:
                data, stat = await self._zk.get(BLOCK_PATH)
            except NoNodeError:
                start = 0
                try:
                    await self._zk.create(BLOCK_PATH, self._encode(start), makepath=True)
                    return start, start + self._block_size - 1
                except NodeExistsError:
                    continue
            start = int(orjson.loads(data)["block_end"]) + 1
            try:
                await self._zk.set(BLOCK_PATH, self._encode(start), version=stat.version)
            except BadVersionError:
                continue
            return start, start + self._block_size - 1
        raise BrokerError("Could not claim a block of producer ids", ErrorCode.KAFKA_ERROR)

    def _encode(self, start: int) -> bytes:
        return orjson.dumps(
            {
                "version": 1,
                "broker": self._broker_id,
                "block_start": str(start),
                "block_end": str(start + self._block_size - 1),
            }
        )
