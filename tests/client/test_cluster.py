"""kclient on a three-broker cluster: requests go straight to leaders, and clients ride
through a leader failover (kill -9) with metadata refreshes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kbroker.testing.brokers import LocalCluster
from kclient import Admin, Consumer, ConsumerRecord, Producer, RecordFuture, TopicPartition
from kclient._transport import Response, Transport


def recording(calls: list[tuple[str, str]]) -> Any:
    """A Transport.request that remembers (method, url) of partition requests."""
    real = Transport.request

    async def request(transport: Transport, method: str, url: str, **kwargs: Any) -> Response:
        if "/partitions/" in url:
            calls.append((method, url))
        return await real(transport, method, url, **kwargs)

    return request


def test_straight_to_leaders_and_failover(cluster: LocalCluster, monkeypatch: Any) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(Transport, "request", recording(calls))
    url = cluster.bootstrap_url
    with Admin(url) as admin:
        admin.create_topic(
            "ha", partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"}
        )
        deadline = time.monotonic() + 30
        leaders: dict[int, int | None] = {0: None}
        while None in leaders.values() and time.monotonic() < deadline:  # every broker knows
            leaders = {p.partition: p.leader for p in admin.describe_topic("ha").partitions}
        brokers = {b.broker_id: b.url for b in admin.describe_cluster().brokers}
    with Producer(url.split(",")[0], acks="all") as producer:
        for i in range(30):
            producer.send("ha", b"%d" % i, partition=i % 3)
        producer.flush()
    with Consumer(url, auto_offset_reset="earliest") as consumer:
        consumer.assign(TopicPartition("ha", p) for p in range(3))
        got: list[ConsumerRecord] = []
        while len(got) < 30:
            got += consumer.poll(1.0)
    data_calls = [(m, c) for m, c in calls if not c.endswith("/offsets")]
    assert Counter(m for m, _ in data_calls).keys() == {"POST", "GET"}
    for _, called in data_calls:  # produces and fetches, all to the partition's leader
        partition = int(called.split("/partitions/")[1].split("/")[0])
        leader = leaders[partition]
        assert leader is not None and called.startswith(brokers[leader] + "/"), called
    monkeypatch.undo()

    # Failover: kill the leader of partition 0 while producing and consuming.
    victim = leaders[0]
    assert victim is not None
    futures: list[RecordFuture] = []
    consumed: list[bytes] = []
    stop = threading.Event()

    def consume() -> None:
        with Consumer(url, auto_offset_reset="earliest", fetch_max_wait_ms=200) as consumer:
            consumer.assign([TopicPartition("ha", 0)])
            while time.monotonic() < deadline:
                consumed.extend(r.value for r in consumer.poll(0.5))
                if stop.is_set() and wanted <= set(consumed):
                    break

    deadline = time.monotonic() + 90
    wanted = {b"f%d" % i for i in range(200)}
    reader = threading.Thread(target=consume)
    reader.start()
    with Producer(
        url, acks="all", retry_ambiguous=True, linger_ms=2, retry_backoff_ms=100
    ) as producer:
        for i in range(200):
            futures.append(producer.send("ha", b"f%d" % i, partition=0))
            if i == 50:
                producer.flush()
                cluster.broker(victim).kill()
            time.sleep(0.005)
        producer.flush(timeout=90)
    stop.set()
    reader.join(timeout=130)
    metas = [
        f.result(0) for f in futures
    ]  # every record delivered (retries went to the new leader)
    assert all(m.partition == 0 for m in metas)
    new_leader = cluster.leader_of("ha", 0)
    assert new_leader not in (None, victim)
    assert wanted <= set(consumed), "at-least-once through the failover"

    # kbctl cluster reports the partitions that lost a replica (the killed broker).
    deadline = time.monotonic() + 30
    while True:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "kbctl"), "-b", url, "cluster", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        if report["under_replicated_partitions"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {p["topic"] for p in report["under_replicated_partitions"]} == {"ha"}
    assert report["offline_partitions"] == []
    assert victim not in [b["broker_id"] for b in report["brokers"]]
    table = subprocess.run(
        [str(Path(sys.executable).parent / "kbctl"), "-b", url, "cluster"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "under-replicated" in table.stdout and table.returncode == 0
