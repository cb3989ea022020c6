"""Simulated power loss with real brokers: kill -9 under load, then every file of the data
directory cut back to what was fsynced (tests/integration/storage/powerloss.py: the broker ran
under strace, and the trace says what each fsync covered), then a restart.

* With ``flush.messages=1`` (every acknowledged produce waits for an fsync) no acknowledged
  record may be lost, duplicated or moved.
* Without it (Kafka's default: durability from replication), a single broker does lose
  acknowledged records: the negative control that shows the cut really happens.
* A whole cluster losing power at once, restarted leader last, loses nothing either with
  ``flush.messages=1``: followers fsync an append before their next fetch reports it (the
  leader counts that report towards acks=all).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from kbroker.testing.brokers import FAST_FAILOVER, BrokerProcess, http_json
from kbroker.testing.local import ZooKeeperEnsemble
from kbroker.testing.workload import CheckResult, Writer, check, read_partition
from tests.integration.http import create_topic
from tests.integration.storage.powerloss import CutReport, FsyncModel, strace_prefix

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOPIC = "durable"
FSYNC_ON = {"flush.messages": "1"}
SETTINGS = {**FAST_FAILOVER, "log.segment.bytes": str(64 << 10)}


class TracedBroker:
    """A broker under strace, and what a power cut does to its data directory."""

    def __init__(self, base: Path, broker_id: int, zookeeper: str, port: int | None) -> None:
        self.base, self.broker_id, self.zookeeper = base, broker_id, zookeeper
        self.trace = base / f"broker{broker_id}.trace"
        data = base / f"broker{broker_id}" / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.model = FsyncModel(data)
        self.proc = BrokerProcess(
            broker_id=broker_id,
            zookeeper=zookeeper,
            base_dir=base,
            port=port,
            settings=SETTINGS,
            argv_prefix=strace_prefix(self.trace),
        )

    def broker_pid(self) -> int:
        """The traced broker (strace's child), not strace itself."""
        tracer = self.proc.process.pid
        children = Path(f"/proc/{tracer}/task/{tracer}/children").read_text().split()
        return int(children[0])

    def kill_broker(self) -> None:
        os.kill(self.broker_pid(), signal.SIGKILL)

    def power_cut(self) -> CutReport:
        """After :meth:`kill_broker`: wait for strace to finish its trace, then cut."""
        self.proc.process.wait_exit(30)
        self.model.feed_file(self.trace)
        assert self.model.fsyncs > 0, "the trace shows no fsync at all"
        return self.model.apply()

    def restarted(self) -> BrokerProcess:
        """The same broker (id, port, data), not traced."""
        proc = BrokerProcess(
            broker_id=self.broker_id,
            zookeeper=self.zookeeper,
            base_dir=self.base,
            port=self.proc.port,
            settings=SETTINGS,
        )
        proc.start()
        return proc

    def close(self) -> None:
        if self.proc.running:
            for pid in (self.broker_pid(), self.proc.process.pid):
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
            self.proc.process.wait_exit(30)


@pytest.fixture
def processes() -> Iterator[list[BrokerProcess | TracedBroker]]:
    """Everything a test starts, killed at teardown."""
    started: list[BrokerProcess | TracedBroker] = []
    try:
        yield started
    finally:
        for item in started:
            if isinstance(item, TracedBroker):
                item.close()
            else:
                item.kill()


async def _write_then_crash(
    urls: list[str], partitions: int, crash: list[TracedBroker], seconds: float
) -> Writer:
    """acks=all writes for ``seconds``, then kill -9 every broker in ``crash`` (at once, as a
    power loss would) while the writer is still sending."""
    writer = Writer(urls=urls, topic=TOPIC, partitions=partitions, batch=5, pause_s=0.002)
    task = asyncio.create_task(writer.run(duration_s=seconds + 30))
    await asyncio.sleep(seconds)
    for broker in crash:
        broker.kill_broker()
    await asyncio.sleep(1.0)
    writer.stop()
    await task
    return writer


async def _check(url: str, writer: Writer, partitions: int) -> CheckResult:
    logs = {p: await read_partition(url, TOPIC, p) for p in range(partitions)}
    return check(writer, logs)


async def _single_broker_power_loss(
    tmp_path: Path, zk: str, configs: Mapping[str, str], processes: list[object]
) -> tuple[CheckResult, CutReport]:
    traced = TracedBroker(tmp_path, 1, zk, None)
    processes.append(traced)
    await asyncio.to_thread(traced.proc.start)
    await asyncio.to_thread(create_topic, traced.proc.url, TOPIC, partitions=2, configs=configs)
    writer = await _write_then_crash([traced.proc.url], 2, [traced], 6.0)
    report = await asyncio.to_thread(traced.power_cut)
    restarted = await asyncio.to_thread(traced.restarted)
    processes.append(restarted)
    return await _check(restarted.url, writer, 2), report


async def test_power_loss_with_fsync_policy_loses_nothing_acknowledged(
    tmp_path: Path, zk_single: ZooKeeperEnsemble, zk_chroot: str, processes: list[object]
) -> None:
    result, cut = await _single_broker_power_loss(
        tmp_path, zk_single.connect_string + zk_chroot, FSYNC_ON, processes
    )
    print(f"fsync on: {result.summary()}; power cut: {cut}")
    assert result.acked > 200, result.summary()
    assert result.ok, f"{result.summary()} after {cut}"


async def test_power_loss_without_fsync_loses_acknowledged_records(
    tmp_path: Path, zk_single: ZooKeeperEnsemble, zk_chroot: str, processes: list[object]
) -> None:
    """The negative control: the simulated power loss really removes unsynced data."""
    result, cut = await _single_broker_power_loss(
        tmp_path, zk_single.connect_string + zk_chroot, {}, processes
    )
    print(f"fsync off: {result.summary()}; power cut: {cut}")
    assert cut.bytes_cut > 0 or cut.removed, cut
    assert result.lost, f"{result.summary()} after {cut}"
    assert not (result.duplicated or result.unexpected or result.inconsistent_offsets)


async def test_whole_cluster_power_loss_with_fsync_policy(
    tmp_path: Path, zk_connect: str, processes: list[object]
) -> None:
    """Three brokers lose power at the same instant (RF 3, min.insync.replicas 2,
    flush.messages=1); after the cut, the two followers of each partition come back first,
    the leader a session timeout later (so a follower is elected), as after a real outage."""
    ports = [None, None, None]
    traced = [TracedBroker(tmp_path, i + 1, zk_connect, ports[i]) for i in range(3)]
    processes.extend(traced)
    for broker in traced:
        await asyncio.to_thread(broker.proc.start, wait=False)
    for broker in traced:
        await asyncio.to_thread(broker.proc.wait_serving, 60)
    url = traced[0].proc.url
    configs = {**FSYNC_ON, "min.insync.replicas": "2"}
    await asyncio.to_thread(
        create_topic, url, TOPIC, partitions=1, replication_factor=3, configs=configs
    )
    leader = (await asyncio.to_thread(http_json, f"{url}/topics/{TOPIC}/partitions/0"))[1]["leader"]
    writer = await _write_then_crash([b.proc.url for b in traced], 1, traced, 6.0)
    cuts = [await asyncio.to_thread(b.power_cut) for b in traced]
    followers = [b for b in traced if b.broker_id != leader]
    restarted = [await asyncio.to_thread(b.restarted) for b in followers]
    processes.extend(restarted)
    await asyncio.sleep(FAST_SESSION_S + 2)
    late = next(b for b in traced if b.broker_id == leader)
    restarted.append(await asyncio.to_thread(late.restarted))
    processes.append(restarted[-1])
    deadline = time.monotonic() + 60
    state_url = f"{restarted[0].url}/topics/{TOPIC}/partitions/0"
    while len((await asyncio.to_thread(http_json, state_url))[1]["isr"]) < 3:
        assert time.monotonic() < deadline, "replicas not back in sync"
        await asyncio.sleep(0.5)
    result = await _check(restarted[0].url, writer, 1)
    assert result.acked > 200, result.summary()
    assert result.ok, f"{result.summary()}; cuts: {[str(c) for c in cuts]}"


FAST_SESSION_S = int(FAST_FAILOVER["zookeeper.session.timeout.ms"]) / 1000
