"""HTTP worker processes (``num.http.workers``): a real broker with two workers on one port.

Every request here opens a new connection, so the kernel spreads them over the workers
(SO_REUSEPORT; the broker itself does not listen on the port); the answers must be the same
whichever worker took the connection, and the same as a broker without workers gives.
"""

from __future__ import annotations

import gzip
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kbroker.testing.brokers import FAST_FAILOVER, BrokerProcess, LocalCluster
from kbroker.testing.local import ZooKeeperEnsemble
from tests.integration.http import JSON_V2, create_topic, fetch_all, produce, request

pytestmark = pytest.mark.integration

WORKERS = 2


@pytest.fixture
def broker(zk_single: ZooKeeperEnsemble, zk_chroot: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    zk_single.heal(timeout=30)
    proc = BrokerProcess(
        broker_id=1,
        zookeeper=zk_single.connect_string + zk_chroot,
        base_dir=tmp_path,
        settings={**FAST_FAILOVER, "num.http.workers": str(WORKERS), "message.max.bytes": "4096"},
    )
    proc.start()
    try:
        wait_for(lambda: len(children(proc)) == WORKERS, what="workers started")
        port = int(proc.url.rsplit(":", 1)[1])
        # Started is not listening yet: a worker binds the port once it has imported kbroker.
        wait_for(lambda: listeners(port) == set(children(proc)), what="every worker listening")
        yield proc
    finally:
        proc.kill()


def children(proc: BrokerProcess) -> list[int]:
    """Pids of the broker's worker processes."""
    assert proc.process.pid is not None
    pid = proc.process.pid
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_for(check: Any, *, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_workers_share_the_load_and_answer_like_the_broker(broker: BrokerProcess) -> None:
    create_topic(broker.url, "spread", partitions=3)
    workers = children(broker)
    before = {pid: cpu_ticks(pid) for pid in workers}
    records = [{"value": {"n": i, "pad": "x" * 80}} for i in range(500)]
    offsets: dict[int, list[int]] = {}
    for _ in range(60):
        status, body = produce(broker.url, "spread", records)
        assert status == 200, body
        assert len(body["offsets"]) == 500
        assert body["key_schema_id"] is None
        (partition,) = {o["partition"] for o in body["offsets"]}
        got = [o["offset"] for o in body["offsets"]]
        assert got == list(range(got[0], got[0] + 500)), "offsets of one request are consecutive"
        offsets.setdefault(partition, []).extend(got)
    for partition, got in offsets.items():
        assert sorted(got) == list(range(len(got))), f"partition {partition}: no gap, no repeat"
    assert all(cpu_ticks(pid) > before[pid] for pid in workers), "every worker took requests"
    for partition, got in offsets.items():
        fetched = fetch_all(broker.url, "spread", partition, 0, len(got))
        assert [r["offset"] for r in fetched] == list(range(len(got)))
        assert all(r["value"]["pad"] == "x" * 80 for r in fetched)


def listeners(port: int) -> set[int]:
    """Pids of the processes holding a listening TCP socket on ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(f"socket:[{fields[9]}]")
    found = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                found.add(int(fd_dir.parent.name))
        except (FileNotFoundError, PermissionError):
            continue
    return found


def test_only_the_workers_take_client_connections(broker: BrokerProcess) -> None:
    port = int(broker.url.rsplit(":", 1)[1])
    assert broker.process.pid not in listeners(port)
    assert listeners(port) == set(children(broker))


def test_the_broker_appends_from_each_workers_ring(broker: BrokerProcess) -> None:
    create_topic(broker.url, "rings", partitions=1)
    for i in range(20):  # a new connection each: both workers take some
        status, _ = produce(broker.url, "rings", [{"value": i}])
        assert status == 200
    maps = Path(f"/proc/{broker.process.pid}/maps").read_text()
    rings = {line.split()[4] for line in maps.splitlines() if "kbroker-worker-ring" in line}
    assert len(rings) == WORKERS, "one ring mapped per worker (distinct memfd inodes)"
    fetched = fetch_all(broker.url, "rings", 0, 0, 20)
    assert [r["value"] for r in fetched] == list(range(20))
    status, _, metrics = request(f"{broker.url}/metrics")
    assert status == 200
    lines = metrics.decode().splitlines()
    appends = [line for line in lines if 'method="LINK",route="worker:append",code="200"' in line]
    assert appends and int(appends[0].rsplit(" ", 1)[1]) == 20, "each append counted once"
    assert any('route="worker:batches",code="200"' in line for line in lines)


def test_keyed_binary_and_partition_requests_through_workers(broker: BrokerProcess) -> None:
    create_topic(broker.url, "mixed", partitions=4)
    for _ in range(10):
        status, body = produce(broker.url, "mixed", [{"key": "same", "value": 1}] * 3)
        assert status == 200
        assert len({o["partition"] for o in body["offsets"]}) == 1
        status, body = produce(
            broker.url,
            "mixed",
            [{"value": "aGVsbG8="}],
            partition=2,
            content_type="application/vnd.kafka.binary.v2+json",
        )
        assert status == 200 and body["offsets"][0]["partition"] == 2
    got = fetch_all(broker.url, "mixed", 2, 0, 10, accept="application/vnd.kafka.binary.v2+json")
    assert [r["value"] for r in got[-10:]].count("aGVsbG8=") >= 10


def test_bad_input_gets_the_same_errors_through_workers(broker: BrokerProcess) -> None:
    create_topic(broker.url, "strict", partitions=1)
    for _ in range(8):
        status, _, payload = request(
            broker.url + "/topics/strict",
            method="POST",
            body=b'{"records": [{"value": ',
            headers={"Content-Type": JSON_V2},
        )
        assert status == 400 and orjson.loads(payload)["error_code"] == 400
        # A record larger than message.max.bytes (4096 here): the broker's own answer.
        status, body = produce(broker.url, "strict", [{"value": "y" * 5000}])
        assert status == 413 and body["error_code"] == 41302, body
        status, _, payload = request(broker.url + "/topics/nowhere/partitions/0/records?offset=0")
        assert status == 404, payload
    status, body = produce(broker.url, "strict", [{"value": "small"}])
    assert status == 200 and body["offsets"][0]["offset"] == 0


def test_async_produce_gets_the_brokers_answer_through_workers(broker: BrokerProcess) -> None:
    create_topic(broker.url, "quiet", partitions=1)
    for n in range(8):
        answer = produce(broker.url, "quiet", [{"value": n}], query={"async": "true"})
        assert answer == (204, None)
    assert [r["value"] for r in fetch_all(broker.url, "quiet", 0, 0, 8)] == list(range(8))


def test_compressed_bodies_through_workers(broker: BrokerProcess) -> None:
    """A worker decodes what it parses and relays the rest still encoded: every path answers
    as the broker does."""
    create_topic(broker.url, "packed", partitions=2)
    gz = {"Content-Type": JSON_V2, "Content-Encoding": "gzip"}
    for n in range(6):
        keyed = {"records": [{"key": "k", "value": n}]} if n % 2 else {"records": [{"value": n}]}
        status, _, payload = request(
            broker.url + "/topics/packed",
            method="POST",
            body=gzip.compress(orjson.dumps(keyed)),
            headers=gz,
        )
        assert status == 200, payload
        status, _, payload = request(
            broker.url + "/topics/packed", method="POST", body=b"junk", headers=gz
        )
        assert (status, orjson.loads(payload)["error_code"]) == (400, 400)
        name = orjson.dumps({"name": f"r{n}", "format": "json"})
        status, _, payload = request(
            broker.url + "/consumers/packers",
            method="POST",
            body=gzip.compress(name),
            headers={"Content-Type": "application/vnd.kafka.v2+json", "Content-Encoding": "gzip"},
        )
        assert status == 200, payload
    ends = [
        orjson.loads(request(f"{broker.url}/topics/packed/partitions/{p}/offsets")[2])["end_offset"]
        for p in (0, 1)
    ]
    assert sum(ends) == 6


def test_log_append_time_topic_takes_the_brokers_path(broker: BrokerProcess) -> None:
    create_topic(
        broker.url, "stamped", partitions=1, configs={"message.timestamp.type": "LogAppendTime"}
    )
    before = int(time.time() * 1000)
    for _ in range(6):
        status, _ = produce(broker.url, "stamped", [{"value": 1, "timestamp": 1000}])
        assert status == 200
    got = fetch_all(broker.url, "stamped", 0, 0, 6)
    assert all(r["timestamp"] >= before - 1000 for r in got), "the broker's clock, not 1000"


def test_links_name_the_host_the_client_used(broker: BrokerProcess) -> None:
    port = broker.url.rsplit(":", 1)[1]
    for i in range(6):
        status, _, payload = request(
            f"{broker.url}/consumers/g{i}",
            method="POST",
            body=orjson.dumps({"name": "c", "format": "json"}),
            headers={"Content-Type": "application/vnd.kafka.v2+json", "Host": f"localhost:{port}"},
        )
        assert status == 200, payload
        assert orjson.loads(payload)["base_uri"].startswith(f"http://localhost:{port}/")


def test_a_killed_worker_is_replaced_and_the_broker_keeps_serving(broker: BrokerProcess) -> None:
    create_topic(broker.url, "steady", partitions=1)
    victim = children(broker)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: len(children(broker)) == WORKERS and victim not in children(broker),
        what="a replacement worker",
    )
    for i in range(20):
        status, body = produce(broker.url, "steady", [{"value": i}])
        assert status == 200 and body["offsets"][0]["offset"] == i


def test_a_worker_killed_under_load_loses_no_acknowledged_record(broker: BrokerProcess) -> None:
    """Producers keep writing through both workers (through their rings) while one worker is
    killed: requests on its connections fail, but every record that was acknowledged is
    stored at the offset its answer named, with the value that was sent."""
    create_topic(broker.url, "killed", partitions=2)
    acknowledged: dict[tuple[int, int], str] = {}
    failures: list[object] = []
    stop = threading.Event()

    def producer(name: str) -> None:
        n = 0
        while not stop.is_set():
            values = [f"{name}-{n}-{i}-" + "x" * 100 for i in range(200)]
            n += 1
            try:
                status, body = produce(broker.url, "killed", [{"value": v} for v in values])
            except OSError as exc:  # the connection was the killed worker's
                failures.append(exc)
                continue
            if status != 200:
                failures.append(status)
                continue
            for value, offset in zip(values, body["offsets"], strict=True):
                acknowledged[(offset["partition"], offset["offset"])] = value

    threads = [threading.Thread(target=producer, args=(f"p{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    os.kill(children(broker)[0], signal.SIGKILL)
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(acknowledged) > 4000, "the load went on"
    for partition in (0, 1):
        expected = {o: v for (p, o), v in acknowledged.items() if p == partition}
        stored = fetch_all(broker.url, "killed", partition, 0, max(expected) + 1)
        by_offset = {r["offset"]: r["value"] for r in stored}
        assert all(by_offset.get(o) == v for o, v in expected.items()), "acknowledged and stored"


def test_workers_end_with_the_broker(broker: BrokerProcess) -> None:
    workers = children(broker)
    port = int(broker.url.rsplit(":", 1)[1])
    broker.process.send_signal(signal.SIGTERM)
    wait_for(lambda: not listeners(port), what="the workers to stop listening", timeout=10)
    broker.stop()
    wait_for(lambda: not any(alive(p) for p in workers), what="workers to exit", timeout=10)


def test_workers_exit_when_the_broker_is_killed(broker: BrokerProcess) -> None:
    workers = children(broker)
    broker.kill()
    wait_for(
        lambda: not any(alive(p) for p in workers), what="orphaned workers to exit", timeout=10
    )


def test_brokers_behind_workers_replicate_over_the_post(
    zk_single: ZooKeeperEnsemble, zk_chroot: str, tmp_path: Path
) -> None:
    """Workers relay HTTP only, so a leader behind them refuses the fetch stream's upgrade:
    its followers fetch with the POST, and acks=all produces still complete."""
    zk_single.heal(timeout=30)
    settings = {**FAST_FAILOVER, "num.http.workers": "1"}
    zookeeper = zk_single.connect_string + zk_chroot
    with LocalCluster(tmp_path, brokers=2, zookeeper=zookeeper, settings=settings) as cluster:
        cluster.create_topic(
            "replicated", partitions=2, replication_factor=2, configs={"min.insync.replicas": "2"}
        )
        for partition in (0, 1):
            wait_for(
                lambda p=partition: len(cluster.partition("replicated", p)["isr"]) == 2,
                what=f"partition {partition} in sync",
            )
            leader = cluster.leader_of("replicated", partition)
            assert leader is not None
            url = cluster.urls[leader - 1]
            records = [{"value": {"n": i, "p": partition}} for i in range(20)]
            status, body = produce(url, "replicated", records, partition=partition, acks="all")
            assert status == 200, body
            assert [r["error_code"] for r in body["offsets"]] == [None] * 20
            assert [r["value"] for r in fetch_all(url, "replicated", partition, 0, 20)] == [
                r["value"] for r in records
            ]
        logs = "".join(b.process.log_path.read_text() for b in cluster.brokers)
        assert "refused a fetch stream (HTTP 400); using POST" in logs
