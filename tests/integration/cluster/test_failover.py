"""Failover with real processes: 3 ZooKeeper nodes, 3 brokers, an acks=all writer throughout.

Each scenario injects one fault into a running cluster while :class:`Writer` keeps producing to
every partition (RF 3, min.insync.replicas 2), heals the cluster, and then checks, Jepsen style,
that no acknowledged record was lost or duplicated, that offsets are the ones acknowledged,
that order is kept per partition, and that the replicas are byte-identical again.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from kbroker.coordination.zk import force_session_expiry
from kbroker.testing.brokers import BrokerProcess, LocalCluster, http_json
from kbroker.testing.local import ZooKeeperEnsemble
from kbroker.testing.workload import CheckResult, Writer, check, read_partition
from tests.integration.http import QueuedRequest, produce, request

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOPIC = "failover"
PARTITIONS = 3
SESSION_TIMEOUT_S = 4.0  # FAST_FAILOVER in kbroker.testing.brokers


async def _start(cluster: LocalCluster) -> tuple[Writer, asyncio.Task[None]]:
    await asyncio.to_thread(
        cluster.create_topic,
        TOPIC,
        partitions=PARTITIONS,
        replication_factor=3,
        configs={"min.insync.replicas": "2"},
    )
    writer = Writer(urls=cluster.urls, topic=TOPIC, partitions=PARTITIONS)
    task = asyncio.create_task(writer.run(duration_s=120))
    await writer.wait_acks(50, 20)
    return writer, task


async def _finish(cluster: LocalCluster, writer: Writer, task: asyncio.Task[None]) -> CheckResult:
    await writer.wait_acks(50, 30)
    writer.stop()
    await task
    await asyncio.to_thread(_wait_in_sync, cluster, 60)
    url = cluster.any_url()
    logs = {p: await read_partition(url, TOPIC, p) for p in range(PARTITIONS)}
    result = check(writer, logs)
    assert result.ok, result.summary()
    assert result.acked > 100
    await asyncio.to_thread(_wait_identical, cluster, 30)
    return result


def _wait_in_sync(cluster: LocalCluster, timeout: float) -> None:
    """Until every live broker reports every partition with a leader and all three replicas
    in sync, all with the same leader and epoch: a broker just resumed from a pause may still answer
    from the state it had before (until it has re-read ZooKeeper on its new session), and a
    read through it would see its old log."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            views = []
            for url in cluster.live_urls():
                _, body = http_json(f"{url}/topics/{TOPIC}/partitions")
                views.append(
                    sorted(
                        (p["partition"], p["leader"], p["leader_epoch"], sorted(p["isr"]))
                        for p in body
                    )
                )
            parts = views[0]
            if all(view == parts for view in views) and all(
                isr == [1, 2, 3] and leader is not None for _, leader, _, isr in parts
            ):
                return
        except Exception:
            parts = []
        assert time.monotonic() < deadline, f"replicas not back in sync: {parts}"
        time.sleep(0.2)


def _log_bytes(broker: BrokerProcess, partition: int) -> bytes:
    directory = broker.data_dir / f"{TOPIC}-{partition}"
    return b"".join(p.read_bytes() for p in sorted(directory.glob("*.log")))


def _wait_identical(cluster: LocalCluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        different = [
            p for p in range(PARTITIONS) if len({_log_bytes(b, p) for b in cluster.brokers}) != 1
        ]
        if not different:
            return
        assert time.monotonic() < deadline, f"replicas of partitions {different} differ"
        time.sleep(0.2)


def _leader(cluster: LocalCluster, partition: int = 0) -> BrokerProcess:
    leader = cluster.leader_of(TOPIC, partition)
    assert leader is not None
    return cluster.broker(leader)


async def test_kill_leader(cluster: LocalCluster) -> None:
    writer, task = await _start(cluster)
    victim = _leader(cluster)
    killed_at = time.monotonic()
    await asyncio.to_thread(victim.kill)
    await writer.wait_acks(100, 30)
    gap = await writer.gap_after(0, killed_at)
    assert gap <= SESSION_TIMEOUT_S + 3, f"partition 0 unavailable for {gap:.1f} s"
    await asyncio.to_thread(victim.start)
    await _finish(cluster, writer, task)


async def test_sigterm_leader_moves_leadership_without_failed_produce(
    cluster: LocalCluster,
) -> None:
    writer, task = await _start(cluster)
    victim = _leader(cluster)
    stopped_at = time.monotonic()
    await asyncio.to_thread(victim.stop)
    await writer.wait_acks(100, 30)
    assert await writer.gap_after(0, stopped_at) <= 2.0
    await asyncio.to_thread(victim.start)
    result = await _finish(cluster, writer, task)
    assert result.indeterminate == 0, writer.failure_details


async def test_kill_controller(cluster: LocalCluster) -> None:
    writer, task = await _start(cluster)
    controller = cluster.controller()
    assert controller is not None
    await asyncio.to_thread(cluster.broker(controller).kill)
    await writer.wait_acks(100, 30)
    new = await asyncio.to_thread(_wait_new_controller, cluster, controller, 20)
    assert new != controller
    await asyncio.to_thread(cluster.broker(controller).start)
    await _finish(cluster, writer, task)


def _wait_new_controller(cluster: LocalCluster, old: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        current = cluster.controller()
        if current is not None and current != old:
            return current
        assert time.monotonic() < deadline, "no new controller"
        time.sleep(0.2)


async def test_kill_zookeeper_leader_fails_no_produce(
    cluster: LocalCluster, zk_ensemble: ZooKeeperEnsemble
) -> None:
    writer, task = await _start(cluster)
    leader = zk_ensemble.leader()
    assert leader is not None
    await asyncio.to_thread(zk_ensemble.kill, leader)
    await asyncio.sleep(3)
    await writer.wait_acks(100, 30)
    await asyncio.to_thread(zk_ensemble.start, leader)
    result = await _finish(cluster, writer, task)
    assert result.indeterminate == 0, writer.failure_details


async def test_leader_paused_beyond_its_session(cluster: LocalCluster) -> None:
    writer, task = await _start(cluster)
    victim = _leader(cluster)
    paused_at = time.monotonic()
    victim.pause()
    try:
        await writer.wait_acks(100, 40)
        # A paused leader still accepts connections: a request sent to it (or forwarded to
        # it before the failover) waits for the client's timeout; then the writer moves on.
        assert await writer.gap_after(0, paused_at) <= SESSION_TIMEOUT_S + writer.timeout_s + 3
        await asyncio.sleep(max(0.0, SESSION_TIMEOUT_S + 2 - (time.monotonic() - paused_at)))
    finally:
        victim.resume()
    await _finish(cluster, writer, task)


async def test_forced_session_expiry(cluster: LocalCluster) -> None:
    writer, task = await _start(cluster)
    victim = _leader(cluster)
    text = await asyncio.to_thread((victim.data_dir / ".zk-session").read_text)
    session: dict[str, Any] = json.loads(text)
    await force_session_expiry(
        cluster.zookeeper_connect, (session["session_id"], bytes.fromhex(session["password"]))
    )
    await writer.wait_acks(100, 30)
    await _finish(cluster, writer, task)
    assert victim.running


async def test_double_failover(cluster: LocalCluster) -> None:
    writer, task = await _start(cluster)
    first = _leader(cluster)
    await asyncio.to_thread(first.kill)
    await writer.wait_acks(50, 30)
    second = _leader(cluster)
    assert second is not first
    await asyncio.to_thread(second.kill)
    await asyncio.sleep(SESSION_TIMEOUT_S + 1)
    await asyncio.to_thread(first.start)
    await writer.wait_acks(50, 40)
    await asyncio.to_thread(second.start)
    await _finish(cluster, writer, task)


async def test_preferred_leader_election_on_demand(cluster: LocalCluster) -> None:
    writer, task = await _start(cluster)
    victim = _leader(cluster)
    await asyncio.to_thread(victim.stop)
    await writer.wait_acks(50, 30)
    await asyncio.to_thread(victim.start)
    await asyncio.to_thread(_wait_in_sync, cluster, 60)
    url = cluster.any_url()
    cid = (await asyncio.to_thread(http_json, f"{url}/v3/clusters"))[1]["data"][0]["cluster_id"]
    status, body = await asyncio.to_thread(
        http_json,
        f"{url}/v3/clusters/{cid}/partitions:elect-preferred-leaders",
        method="POST",
        body={},
    )
    assert status == 200 and body["queued_partitions"] >= 1, body

    def preferred_everywhere() -> bool:
        parts = [cluster.partition(TOPIC, p) for p in range(PARTITIONS)]
        return all(p["leader"] == p["replicas"][0]["broker"] for p in parts)

    deadline = time.monotonic() + 20
    while not await asyncio.to_thread(preferred_everywhere):
        assert time.monotonic() < deadline, "leaders did not move back to preferred replicas"
        await asyncio.sleep(0.2)
    await _finish(cluster, writer, task)


def test_leader_resumed_after_its_session_serves_no_stale_read(cluster: LocalCluster) -> None:
    """A leader paused beyond its session is replaced and the new leader takes more records.
    A read sent to the old leader while it is stopped is answered, after SIGCONT, with the
    retriable NOT_LEADER or with every record (once it has re-read ZooKeeper and forwards),
    never from its old log; reads through it then see every record."""
    cluster.create_topic(
        "stale", partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"}
    )
    assert produce(cluster.urls[0], "stale", [{"value": i} for i in range(5)])[0] == 200
    victim = _leader_of(cluster, "stale")
    others = [b.url for b in cluster.brokers if b is not victim]
    victim.pause()
    try:
        deadline = time.monotonic() + 30
        while _leader_seen_by(others[0], "stale") in (None, victim.broker_id):
            assert time.monotonic() < deadline, "no new leader"
            time.sleep(0.2)
        status, body = produce(others[0], "stale", [{"value": i} for i in range(5, 10)])
        assert status == 200 and all(o["error_code"] is None for o in body["offsets"]), body
        queued = QueuedRequest(victim.url, "/topics/stale/partitions/0/records?offset=0&timeout=0")
    finally:
        victim.resume()
    status, doc = queued.answer()
    if status == 200:
        assert [r["value"] for r in doc] == list(range(10)), doc  # after its re-read: all
    else:
        assert doc["error_code"] == 50309 and doc["retriable"], (status, doc)
    deadline = time.monotonic() + 30
    while True:
        status, _, payload = request(
            f"{victim.url}/topics/stale/partitions/0/records?offset=0&timeout=0"
        )
        if status == 200:
            assert [r["value"] for r in json.loads(payload)] == list(range(10))
            break
        assert time.monotonic() < deadline, payload
        time.sleep(0.2)


def _leader_of(cluster: LocalCluster, topic: str) -> BrokerProcess:
    deadline = time.monotonic() + 30
    while (leader := cluster.leader_of(topic, 0)) is None:
        assert time.monotonic() < deadline, "no leader"
        time.sleep(0.2)
    return cluster.broker(leader)


def _leader_seen_by(url: str, topic: str) -> int | None:
    status, body = http_json(f"{url}/topics/{topic}/partitions/0")
    return body.get("leader") if status == 200 else None


async def test_zookeeper_quorum_lost_and_regained(
    cluster: LocalCluster, zk_ensemble: ZooKeeperEnsemble
) -> None:
    """Two of the three ZooKeeper nodes down for 3 session timeouts: the brokers fence
    themselves (nothing is acknowledged once the fence delay has passed, as no broker can know
    whether the cluster moved on without it), no acknowledged record is lost, and writes
    resume once the ensemble has a quorum again."""
    writer, task = await _start(cluster)
    survivor = zk_ensemble.leader() or 0
    victims = [i for i in range(3) if i != survivor]
    for index in victims:
        await asyncio.to_thread(zk_ensemble.kill, index)
    await asyncio.sleep(1.5 * SESSION_TIMEOUT_S)  # well past the fence delay (2/3 of it)
    acked_fenced = len(writer.acked())
    await asyncio.sleep(1.5 * SESSION_TIMEOUT_S)
    assert len(writer.acked()) == acked_fenced, "acknowledged without a ZooKeeper quorum"
    for index in victims:
        await asyncio.to_thread(zk_ensemble.start, index)
    await writer.wait_acks(100, 60)
    await _finish(cluster, writer, task)


@pytest.mark.parametrize("restart", ["together", "one by one"])
async def test_whole_cluster_killed_and_restarted(cluster: LocalCluster, restart: str) -> None:
    """kill -9 of all three brokers at once under the acks=all writer (the page cache
    survives: a process crash, not a power loss), then all three restarted, together or one
    by one in reverse order, 2 s apart (the first back may lead with what it has): the
    controller elects leaders again from the ISR, no acknowledged record is lost and the
    writes resume."""
    writer, task = await _start(cluster)
    await asyncio.gather(*(asyncio.to_thread(b.kill) for b in cluster.brokers))
    await asyncio.sleep(1.0)
    if restart == "together":
        await asyncio.gather(*(asyncio.to_thread(b.start) for b in cluster.brokers))
    else:
        for broker in reversed(cluster.brokers):
            await asyncio.to_thread(broker.start)
            await asyncio.sleep(2.0)
    await writer.wait_acks(100, 60)
    await _finish(cluster, writer, task)
