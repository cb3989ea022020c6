"""The cluster scenarios against containers: 3 ZooKeeper nodes and 3 brokers (testcontainers).

Each fault scenario keeps an acks=all writer (kbroker.testing.workload) running through the
fault and the healing, then checks, Jepsen style, that no acknowledged record was lost or
duplicated and that every replica is back in sync. Faults are Docker's: ``docker kill``,
``docker stop``/``start``, ``docker pause``, ``docker network disconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from kbroker.testing.brokers import http_json
from kbroker.testing.containers import ContainerError, KBrokerCluster
from kbroker.testing.workload import CheckResult, Writer, check, read_partition

pytestmark = [pytest.mark.containers]

TOPIC = "events"
PARTITIONS = 3
SESSION_TIMEOUT_S = 6.0  # FAST_FAILOVER in kbroker.testing.containers
JSON_V2 = "application/vnd.kafka.json.v2+json"


# ------------------------------------------------------------------------------------ helpers


def _produce(url: str, topic: str, partition: int, value: Any, acks: str = "all") -> Any:
    status, body = http_json(
        f"{url}/topics/{topic}/partitions/{partition}?acks={acks}",
        method="POST",
        body={"records": [{"value": value}]},
        content_type=JSON_V2,
    )
    assert status == 200, body
    return body["offsets"][0]


def _fetch_values(url: str, topic: str, partition: int) -> list[Any]:
    status, body = http_json(
        f"{url}/topics/{topic}/partitions/{partition}/records?offset=0&timeout=0"
    )
    assert status == 200, body
    return [record["value"] for record in body]


def _wait_in_sync(cluster: KBrokerCluster, topic: str, partitions: int, timeout: float) -> None:
    """Until every broker's metadata shows, for every partition, one and the same leader and
    all brokers in the ISR (a broker that was cut off answers from stale metadata until it is
    back in touch with ZooKeeper, so asking one broker is not enough)."""
    deadline = time.monotonic() + timeout
    everyone = list(cluster)
    while True:
        views = {}
        with contextlib.suppress(OSError, ContainerError):
            views = {
                b: [cluster.leader_and_isr(topic, p, via=b) for p in range(partitions)]
                for b in everyone
            }
        first = views.get(everyone[0])
        if (
            first is not None
            and all(view == first for view in views.values())
            and all(leader is not None and isr == everyone for leader, isr in first)
        ):
            return
        assert time.monotonic() < deadline, f"replicas not in sync after {timeout} s: {views}"
        time.sleep(0.2)


def _wait_new_leader(cluster: KBrokerCluster, partition: int, old: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        leader, _ = cluster.leader_and_isr(TOPIC, partition)
        if leader is not None and leader != old:
            return leader
        assert time.monotonic() < deadline, f"no new leader for partition {partition}"
        time.sleep(0.1)


async def _start(cluster: KBrokerCluster, urls: list[str]) -> tuple[Writer, asyncio.Task[None]]:
    """Create the topic (RF 3, min ISR 2) and start an acks=all writer through ``urls``."""
    await asyncio.to_thread(
        cluster.create_topic,
        TOPIC,
        partitions=PARTITIONS,
        replication_factor=3,
        configs={"min.insync.replicas": "2"},
    )
    await asyncio.to_thread(_wait_in_sync, cluster, TOPIC, PARTITIONS, 30)
    writer = Writer(urls=urls, topic=TOPIC, partitions=PARTITIONS)
    task = asyncio.create_task(writer.run(duration_s=150))
    await writer.wait_acks(50, 30)
    return writer, task


async def _finish(cluster: KBrokerCluster, writer: Writer, task: asyncio.Task[None]) -> CheckResult:
    """More acks after healing, then stop and check the history against every partition."""
    await writer.wait_acks(50, 40)
    writer.stop()
    await task
    await asyncio.to_thread(_wait_in_sync, cluster, TOPIC, PARTITIONS, 60)
    url = cluster.any_url()
    logs = {p: await read_partition(url, TOPIC, p) for p in range(PARTITIONS)}
    result = check(writer, logs)
    assert result.ok, result.summary()
    assert result.acked > 100, result.summary()
    for broker_id in cluster:  # every broker serves the same records
        seen = {p: await read_partition(cluster.url(broker_id), TOPIC, p) for p in logs}
        assert seen == logs, f"broker {broker_id} serves other records"
    return result


# ------------------------------------------------------------------------------------ scenarios


def test_produce_and_fetch_through_any_broker(docker_ready: None) -> None:
    """The documented use: a cluster with its own ensemble; every broker takes writes for
    every partition (forwarding to the leader) and serves every partition's records."""
    with KBrokerCluster(brokers=3) as cluster:
        assert cluster.bootstrap_url == ",".join(cluster.urls)
        assert all(url.startswith("http://127.0.0.1:") for url in cluster.urls)
        cluster.create_topic("orders", partitions=3, replication_factor=3)
        _wait_in_sync(cluster, "orders", 3, 30)
        for partition in range(3):
            for broker_id in cluster:
                offset = _produce(
                    cluster.url(broker_id), "orders", partition, [partition, broker_id]
                )
                assert offset == {
                    "partition": partition,
                    "offset": broker_id - 1,
                    "error_code": None,
                    "error": None,
                }
        for broker_id in cluster:
            for partition in range(3):
                values = _fetch_values(cluster.url(broker_id), "orders", partition)
                assert values == [[partition, b] for b in cluster]
        # The advertised URLs (what brokers use to reach each other) are the host's URLs.
        _, clusters = http_json(cluster.url(2) + "/v3/clusters")
        cluster_id = clusters["data"][0]["cluster_id"]
        _, brokers = http_json(f"{cluster.url(2)}/v3/clusters/{cluster_id}/brokers")
        assert sorted(b["url"] for b in brokers["data"]) == sorted(cluster.urls)


async def test_leader_failover_after_kill(kcluster: KBrokerCluster) -> None:
    writer, task = await _start(kcluster, kcluster.urls)
    victim = kcluster.leader_of(TOPIC, 0)
    assert victim is not None
    killed_at = time.monotonic()
    await asyncio.to_thread(kcluster.kill_broker, victim)
    new = await asyncio.to_thread(_wait_new_leader, kcluster, 0, victim, SESSION_TIMEOUT_S + 10)
    assert new != victim
    await writer.wait_acks(100, 40)
    gap = await writer.gap_after(0, killed_at)
    assert gap <= SESSION_TIMEOUT_S + 5, f"partition 0 took no write for {gap:.1f} s"
    await asyncio.to_thread(kcluster.start_broker, victim)
    await _finish(kcluster, writer, task)


async def test_leader_cut_off_the_network(kcluster: KBrokerCluster) -> None:
    """A partitioned leader loses its ZooKeeper session: another broker leads, the cut-off
    one refuses writes even with acks=1 (fenced), and after the cut heals it catches up."""
    await asyncio.to_thread(
        kcluster.create_topic, TOPIC, partitions=PARTITIONS, replication_factor=3
    )
    await asyncio.to_thread(_wait_in_sync, kcluster, TOPIC, PARTITIONS, 30)
    victim = kcluster.leader_of(TOPIC, 0)
    assert victim is not None
    others = [kcluster.url(b) for b in kcluster if b != victim]
    writer = Writer(urls=others, topic=TOPIC, partitions=PARTITIONS)
    task = asyncio.create_task(writer.run(duration_s=150))
    await writer.wait_acks(50, 30)

    cut_at = time.monotonic()
    await asyncio.to_thread(kcluster.disconnect_broker, victim)
    await asyncio.to_thread(_wait_new_leader, kcluster, 0, victim, SESSION_TIMEOUT_S + 10)
    await writer.wait_acks(100, 60)
    gap = await writer.gap_after(0, cut_at)
    assert gap <= SESSION_TIMEOUT_S + 12, f"partition 0 took no write for {gap:.1f} s"

    fenced = await asyncio.to_thread(_wait_fenced, kcluster, victim, SESSION_TIMEOUT_S + 15)
    assert fenced["error_code"] is not None, fenced

    await asyncio.to_thread(kcluster.reconnect_broker, victim)
    await _finish(kcluster, writer, task)


def _wait_fenced(cluster: KBrokerCluster, broker_id: int, timeout: float) -> dict[str, Any]:
    """Until the cut-off broker refuses an acks=1 write to partition 0 (asked from inside its
    container, since the host cannot reach it); returns the refusal."""
    deadline = time.monotonic() + timeout
    path = f"/topics/{TOPIC}/partitions/0?acks=1"
    while True:
        status, body = cluster.http_inside(
            broker_id, path, method="POST", body={"records": [{"value": "x"}]}, timeout=5
        )
        if status == 200 and body["offsets"][0]["error_code"] is not None:
            return dict(body["offsets"][0])
        if status not in (0, 200):
            return {"error_code": body.get("error_code") if body else status}
        assert time.monotonic() < deadline, f"broker {broker_id} still takes writes: {body}"
        time.sleep(0.5)


async def test_broker_restart_rejoins(kcluster: KBrokerCluster) -> None:
    """docker stop (controlled shutdown) of a leader, then docker start: same data, back in
    the ISR of every partition, and serving every record."""
    writer, task = await _start(kcluster, kcluster.urls)
    victim = kcluster.leader_of(TOPIC, 0)
    assert victim is not None
    stopped_at = time.monotonic()
    await asyncio.to_thread(kcluster.stop_broker, victim)
    await writer.wait_acks(100, 40)
    assert await writer.gap_after(0, stopped_at) <= 5.0
    await asyncio.to_thread(kcluster.start_broker, victim)
    await _finish(kcluster, writer, task)


async def test_paused_follower_leaves_and_rejoins_the_isr(kcluster: KBrokerCluster) -> None:
    writer, task = await _start(kcluster, kcluster.urls)
    leader = kcluster.leader_of(TOPIC, 0)
    follower = next(b for b in kcluster if b != leader)
    others = [kcluster.url(b) for b in kcluster if b != follower]
    writer.urls = others
    await asyncio.to_thread(kcluster.pause_broker, follower)
    deadline = time.monotonic() + SESSION_TIMEOUT_S + 15
    while follower in (await asyncio.to_thread(kcluster.leader_and_isr, TOPIC, 0))[1]:
        assert time.monotonic() < deadline, "a frozen follower stayed in the ISR"
        await asyncio.sleep(0.2)
    await writer.wait_acks(50, 30)
    await asyncio.to_thread(kcluster.unpause_broker, follower)
    writer.urls = kcluster.urls
    await _finish(kcluster, writer, task)


async def test_zookeeper_leader_killed(kcluster: KBrokerCluster) -> None:
    writer, task = await _start(kcluster, kcluster.urls)
    killed_at = time.monotonic()
    index = await asyncio.to_thread(kcluster.kill_zookeeper_leader)
    await asyncio.to_thread(kcluster.zookeeper.wait_ready, 30)
    await writer.wait_acks(100, 30)
    for partition in range(PARTITIONS):
        assert await writer.gap_after(partition, killed_at) <= SESSION_TIMEOUT_S
    await asyncio.to_thread(kcluster.wait_registered, 3, 30)
    await asyncio.to_thread(kcluster.zookeeper.start_node, index)
    await _finish(kcluster, writer, task)
