"""A full disk with real brokers: data directories on small loop-mounted ext4 file systems.

* The leader's disk fills in the middle of appends: produces fail with 50311
  KAFKA_STORAGE_ERROR (retriable, nothing written), nothing acknowledged is lost, and the broker
  takes writes again as soon as space returns, also after a kill -9 and a restart.
* A follower's disk fills: it leaves the ISR, the other two replicas keep acknowledging
  (min.insync.replicas 2), and once space returns it catches up, byte for byte.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from kbroker.testing.brokers import FAST_FAILOVER, BrokerProcess, LocalCluster
from kbroker.testing.chaos.sandbox import fill_fs
from kbroker.testing.local import ZooKeeperEnsemble
from tests.integration.http import JSON_V2, create_topic, fetch_all, request
from tests.integration.storage.conftest import LoopFs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOPIC = "full"
SETTINGS = {**FAST_FAILOVER, "log.segment.bytes": str(256 << 10)}


def _produce(url: str, values: list[Any]) -> tuple[int, Any]:
    status, _, payload = request(
        f"{url}/topics/{TOPIC}/partitions/0?acks=all",
        method="POST",
        body=orjson.dumps({"records": [{"value": v} for v in values]}),
        headers={"Content-Type": JSON_V2},
    )
    return status, orjson.loads(payload)


def _error(body: Any) -> dict[str, Any] | None:
    """The error of a produce answer (whole-request or per-record), None when acknowledged."""
    if "error_code" in body:
        return dict(body)
    first = body["offsets"][0]
    return None if first["error_code"] is None else dict(first)


class Ledger:
    """What the test was told: acknowledged (value -> offset) and refused values."""

    def __init__(self) -> None:
        self.acked: dict[str, int] = {}
        self.refused: list[str] = []
        self.errors: list[dict[str, Any]] = []
        self._n = 0

    def send(self, url: str, size: int) -> dict[str, Any] | None:
        self._n += 1
        value = f"{self._n:08d}:" + "x" * size
        _, body = _produce(url, [value])
        error = _error(body)
        if error is None:
            self.acked[value] = body["offsets"][0]["offset"]
        else:
            self.errors.append(error)
            if not error.get("after_append"):
                self.refused.append(value)
        return error

    def verify(self, url: str) -> None:
        records = fetch_all(url, TOPIC, 0, 0, len(self.acked), max_bytes=8 << 20)
        found = {r["value"]: r["offset"] for r in records}
        assert len(found) == len(records), "a value appears twice"
        assert {v: found.get(v) for v in self.acked} == self.acked
        assert not set(self.refused) & set(found), "a refused record was written"
        values = [r["value"] for r in records]
        assert values == sorted(values), "records out of order"


def test_leader_disk_full_refuses_then_carries_on(
    tmp_path: Path, loop_fs: LoopFs, zk_single: ZooKeeperEnsemble, zk_chroot: str
) -> None:
    data = loop_fs("broker1/data", 24)
    broker = BrokerProcess(
        broker_id=1,
        zookeeper=zk_single.connect_string + zk_chroot,
        base_dir=tmp_path,
        settings=SETTINGS,
    )
    broker.start()
    try:
        create_topic(broker.url, TOPIC)
        ledger = Ledger()
        for _ in range(50):
            assert ledger.send(broker.url, 200) is None
        filler = fill_fs(data, leave_bytes=96 << 10)
        first_error = None
        for _ in range(400):  # 96 KiB of 2 KiB records, headers and index entries
            first_error = ledger.send(broker.url, 2000)
            if first_error is not None:
                break
        assert first_error is not None, "the disk never filled"
        assert first_error["error_code"] == 50311, first_error
        assert not first_error.get("after_append"), first_error
        for _ in range(5):
            error = ledger.send(broker.url, 2000)
            assert error is not None and error["error_code"] == 50311, error
        ledger.verify(broker.url)  # reads keep working on a full disk
        filler.unlink()
        deadline = time.monotonic() + 10
        while ledger.send(broker.url, 2000) is not None:
            assert time.monotonic() < deadline, ledger.errors[-1]
            time.sleep(0.2)
        for _ in range(20):
            assert ledger.send(broker.url, 200) is None
        ledger.verify(broker.url)
        broker.kill()
        broker.start()
        ledger.verify(broker.url)
        assert ledger.send(broker.url, 200) is None
    finally:
        broker.kill()


def _log_bytes(broker: BrokerProcess) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((broker.data_dir / f"{TOPIC}-0").glob("*.log")))


def test_follower_disk_full_leaves_isr_and_catches_up(
    tmp_path: Path, loop_fs: LoopFs, zk_connect: str
) -> None:
    data = loop_fs("broker3/data", 24)
    with LocalCluster(tmp_path, brokers=3, zookeeper=zk_connect, settings=SETTINGS) as cluster:
        cluster.create_topic(
            TOPIC, partitions=1, replication_factor=3, configs={"min.insync.replicas": "2"}
        )
        if cluster.leader_of(TOPIC, 0) == 3:  # we want broker 3 to follow
            cluster.broker(3).stop()
            cluster.broker(3).start()
        url = cluster.broker(1).url
        ledger = Ledger()
        for _ in range(30):
            assert ledger.send(url, 200) is None
        filler = fill_fs(data)
        deadline = time.monotonic() + 30
        while 3 in cluster.partition(TOPIC, 0)["isr"]:
            assert time.monotonic() < deadline, "the follower with a full disk stayed in the ISR"
            ledger.send(url, 2000)
            time.sleep(0.1)
        for _ in range(30):
            assert ledger.send(url, 2000) is None, ledger.errors[-1:]
        filler.unlink()
        deadline = time.monotonic() + 30
        while sorted(cluster.partition(TOPIC, 0)["isr"]) != [1, 2, 3]:
            assert time.monotonic() < deadline, "the follower did not catch up"
            time.sleep(0.2)
        ledger.verify(url)
        deadline = time.monotonic() + 30
        while len({_log_bytes(b) for b in cluster.brokers}) != 1:
            assert time.monotonic() < deadline, "replicas differ"
            time.sleep(0.2)


def test_broker_with_full_disk_survives_becoming_leader(
    tmp_path: Path, loop_fs: LoopFs, zk_connect: str
) -> None:
    """Minimal reproduction: broker 2's disk is full while it follows; the leader dies, so
    broker 2 is elected. It refuses writes (50311) but keeps running, and takes writes again
    once space returns (the leader-epoch checkpoint it could not write is written then)."""
    data = loop_fs("broker2/data", 24)
    with LocalCluster(tmp_path, brokers=2, zookeeper=zk_connect, settings=SETTINGS) as cluster:
        cluster.create_topic(TOPIC, partitions=1, replication_factor=2)
        if cluster.leader_of(TOPIC, 0) == 2:
            cluster.broker(2).stop()
            cluster.broker(2).start()
        assert cluster.leader_of(TOPIC, 0) == 1
        ledger = Ledger()
        for _ in range(10):
            assert ledger.send(cluster.broker(1).url, 100) is None
        filler = fill_fs(data)
        free = os.statvfs(data).f_bavail
        cluster.broker(1).kill()
        deadline = time.monotonic() + 20
        while cluster.broker(2).running:
            with contextlib.suppress(OSError):
                if cluster.partition(TOPIC, 0)["leader"] == 2:
                    break
            assert time.monotonic() < deadline, "broker 2 was not elected"
            time.sleep(0.2)
        time.sleep(2)
        assert cluster.broker(2).running, f"free blocks {free}\n{cluster.broker(2).log_tail(15)}"
        refused = ledger.send(cluster.broker(2).url, 100)
        assert refused is not None and refused.get("error_code") == 50311, refused
        filler.unlink()
        deadline = time.monotonic() + 20
        while ledger.send(cluster.broker(2).url, 100) is not None:
            assert time.monotonic() < deadline, ledger.errors[-1:]
            time.sleep(0.2)
        cluster.broker(1).start()
        ledger.verify(cluster.broker(2).url)


def test_broker_with_full_disk_survives_a_new_replica(
    tmp_path: Path, loop_fs: LoopFs, zk_connect: str
) -> None:
    """A topic is created while broker 2's disk is full: broker 2 cannot open the new logs,
    keeps running, and hosts them (in the ISR, byte-identical) once space returns."""
    data = loop_fs("broker2/data", 24)
    with LocalCluster(tmp_path, brokers=2, zookeeper=zk_connect, settings=SETTINGS) as cluster:
        filler = fill_fs(data)
        cluster.create_topic(TOPIC, partitions=1, replication_factor=2)
        time.sleep(3)
        assert cluster.broker(2).running, cluster.broker(2).log_tail(15)
        filler.unlink()
        deadline = time.monotonic() + 30
        while sorted(cluster.partition(TOPIC, 0)["isr"]) != [1, 2]:
            assert time.monotonic() < deadline, "broker 2 never hosted the replica"
            time.sleep(0.2)
        ledger = Ledger()
        leader = cluster.broker(cluster.partition(TOPIC, 0)["leader"])
        # Broker 2 may have been elected leader while it could not open the log: the partition
        # takes writes once its retry (every 2 s) opens it.
        deadline = time.monotonic() + 30
        while ledger.send(leader.url, 100) is not None:
            assert time.monotonic() < deadline, ledger.errors[-1:]
            time.sleep(0.2)
        for _ in range(10):
            assert ledger.send(leader.url, 100) is None, ledger.errors[-1:]
        ledger.verify(cluster.broker(2).url)
        deadline = time.monotonic() + 30
        while len({_log_bytes(b) for b in cluster.brokers}) != 1:
            assert time.monotonic() < deadline, "replicas differ"
            time.sleep(0.2)
