"""Bit flips with real brokers: the CRC-32C catches them, and the follower fetches again.

* In transit: every broker advertises a proxy (in this test process) that forwards its HTTP
  traffic and flips one bit in the first batch of the first few replica-fetch responses, in a
  different CRC-covered field each time (attributes, record count, timestamps, producer id,
  payload length, payload). The follower must refuse each corrupted answer and fetch again.
* On the follower's disk: a follower is killed, one bit of the last batch of its active segment
  (past its recovery point) is flipped, and it restarts. Recovery must cut the log at that
  batch, and the follower must fetch the rest from the leader.

Either way nothing acknowledged is lost and the replicas end byte-identical.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import aiohttp
import pytest
from aiohttp import web

from kbroker.log.batch import CRC_START, HEADER_SIZE, iter_batches
from kbroker.log.checkpoint import RECOVERY_POINT_CHECKPOINT
from kbroker.replication.endpoint import FETCH_PATH
from kbroker.testing.brokers import FAST_FAILOVER, BrokerProcess, LocalCluster, http_json
from kbroker.testing.local import free_ports
from kbroker.testing.workload import Writer, check, read_partition

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOPIC = "flips"
#: Bytes of a batch to flip, one per corrupted response: attributes, record count, first
#: timestamp, producer id, payload length, then the payload (all covered by the CRC).
FLIP_AT: Final = (CRC_START, CRC_START + 2, CRC_START + 6, CRC_START + 22, HEADER_SIZE - 2)
_HOP_BY_HOP: Final = frozenset({"content-length", "transfer-encoding", "connection"})


class CorruptingProxy:
    """HTTP forwarder to one broker that corrupts ``budget`` replica-fetch responses."""

    def __init__(self, target: str, budget: int) -> None:
        self.target = target
        self.budget = budget
        self.flipped: list[int] = []
        self.port = free_ports(1)[0]
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers.pop("Host", None)
        async with self._session.request(
            request.method,
            self.target + request.path_qs,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=60),
        ) as upstream:
            payload = await upstream.read()
            status = upstream.status
            answer = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        if request.path == FETCH_PATH and status == 200 and self.budget > 0:
            payload = self._flip(payload)
        return web.Response(body=payload, status=status, headers=answer)

    def _flip(self, payload: bytes) -> bytes:
        """Flip one bit of the first batch, if the response carries one."""
        (length,) = struct.unpack_from(">I", payload, 0)
        start = 4 + length
        if len(payload) - start < HEADER_SIZE + 8:
            return payload
        done = len(self.flipped)
        where = FLIP_AT[done] if done < len(FLIP_AT) else HEADER_SIZE + done
        corrupted = bytearray(payload)
        corrupted[start + where] ^= 0x10
        self.budget -= 1
        self.flipped.append(where)
        return bytes(corrupted)


@pytest.fixture
async def proxied_brokers(
    tmp_path: Path, zk_connect: str
) -> AsyncIterator[tuple[list[BrokerProcess], list[CorruptingProxy]]]:
    ports = free_ports(2)
    proxies = [CorruptingProxy(f"http://127.0.0.1:{port}", budget=6) for port in ports]
    brokers = [
        BrokerProcess(
            broker_id=i + 1,
            zookeeper=zk_connect,
            base_dir=tmp_path,
            port=port,
            settings={**FAST_FAILOVER, "advertised.url": proxies[i].url},
        )
        for i, port in enumerate(ports)
    ]
    for proxy in proxies:
        await proxy.start()
    try:
        for broker in brokers:
            await asyncio.to_thread(broker.start, wait=False)
        for broker in brokers:
            await asyncio.to_thread(broker.wait_serving, 60)
        yield brokers, proxies
    finally:
        for broker in brokers:
            broker.kill()
        for proxy in proxies:
            await proxy.close()


def _log_bytes(broker: BrokerProcess, partition: int = 0) -> bytes:
    directory = broker.data_dir / f"{TOPIC}-{partition}"
    return b"".join(p.read_bytes() for p in sorted(directory.glob("*.log")))


async def _wait_identical(brokers: list[BrokerProcess], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len({_log_bytes(b) for b in brokers}) != 1:
        assert time.monotonic() < deadline, "replicas still differ"
        await asyncio.sleep(0.2)


async def test_bit_flip_in_transit_is_refused_and_refetched(
    proxied_brokers: tuple[list[BrokerProcess], list[CorruptingProxy]],
) -> None:
    brokers, proxies = proxied_brokers
    url = brokers[0].url
    _, clusters = await asyncio.to_thread(http_json, f"{url}/v3/clusters")
    status, body = await asyncio.to_thread(
        http_json,
        f"{url}/v3/clusters/{clusters['data'][0]['cluster_id']}/topics",
        method="POST",
        body={"topic_name": TOPIC, "partitions_count": 1, "replication_factor": 2},
    )
    assert status == 201, body
    writer = Writer(urls=[b.url for b in brokers], topic=TOPIC, partitions=1)
    await writer.run(duration_s=4)
    assert sum(len(p.flipped) for p in proxies) == 6, [p.flipped for p in proxies]
    logs = {0: await read_partition(url, TOPIC, 0)}
    result = check(writer, logs)
    assert result.ok and result.acked > 100, result.summary()
    await _wait_identical(brokers, 30)
    refused = sum(
        b.process.log_path.read_text().count("leader data failed validation") for b in brokers
    )
    assert refused >= 6, refused


async def test_bit_flip_in_follower_segment_is_cut_and_refetched(
    tmp_path: Path, zk_connect: str
) -> None:
    with LocalCluster(tmp_path, brokers=3, zookeeper=zk_connect, settings=FAST_FAILOVER) as c:
        await asyncio.to_thread(
            c.create_topic,
            TOPIC,
            partitions=1,
            replication_factor=3,
            configs={"min.insync.replicas": "2"},
        )
        writer = Writer(urls=c.urls, topic=TOPIC, partitions=1)
        await writer.run(duration_s=3)
        leader = c.leader_of(TOPIC, 0)
        follower = next(b for b in c.brokers if b.broker_id != leader)
        await _wait_identical(c.brokers, 30)
        await asyncio.to_thread(follower.kill)
        segment = sorted((follower.data_dir / f"{TOPIC}-0").glob("*.log"))[-1]
        data = bytearray(segment.read_bytes())
        last = list(iter_batches(data, verify=True))[-1]
        checkpoint = follower.data_dir / RECOVERY_POINT_CHECKPOINT
        lines = checkpoint.read_text().split("\n") if checkpoint.exists() else []
        recovery_point = next(
            (int(line.split()[2]) for line in lines if line.startswith(f"{TOPIC} 0 ")), 0
        )
        assert last.base_offset >= recovery_point, "the flip would be below the recovery point"
        data[last.position + HEADER_SIZE + 1] ^= 0x04
        segment.write_bytes(bytes(data))
        await asyncio.to_thread(follower.start)
        await writer.run(duration_s=2)
        logs = {0: await read_partition(c.urls[leader - 1] if leader else c.urls[0], TOPIC, 0)}
        result = check(writer, logs)
        assert result.ok, result.summary()
        await _wait_identical(c.brokers, 30)
        deadline = time.monotonic() + 30
        while sorted(c.partition(TOPIC, 0)["isr"]) != [1, 2, 3]:
            assert time.monotonic() < deadline, "the follower did not rejoin the ISR"
            await asyncio.sleep(0.2)
