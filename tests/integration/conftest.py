"""Broker fixtures: real ``kbroker serve`` processes against the session's real ZooKeeper.

- ``broker``: one broker (chroot per test) on the standalone ZooKeeper node, with
  max.request.bytes lowered to 8 MiB.
- ``cluster``: three brokers (chroot per test) on the 3-node ensemble, fast failure detection.
Both leave no process behind (brokers are killed at teardown).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kbroker.testing.brokers import FAST_FAILOVER, BrokerProcess, LocalCluster
from kbroker.testing.local import ZooKeeperEnsemble


@pytest.fixture
def broker(zk_single: ZooKeeperEnsemble, zk_chroot: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    zk_single.heal(timeout=30)
    settings = {**FAST_FAILOVER, "max.request.bytes": str(8 << 20)}
    proc = BrokerProcess(
        broker_id=1,
        zookeeper=zk_single.connect_string + zk_chroot,
        base_dir=tmp_path,
        settings=settings,
    )
    proc.start()
    try:
        yield proc
    finally:
        if proc.process.paused:
            proc.resume()
        proc.kill()


@pytest.fixture
def cluster(zk_connect: str, tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path, brokers=3, zookeeper=zk_connect, settings=FAST_FAILOVER) as c:
        yield c
