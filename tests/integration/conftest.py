"""Broker fixtures: real ``kbroker serve`` processes against the session's real ZooKeeper.

- ``broker``: one broker (chroot per test) on the standalone ZooKeeper node, with
  max.request.bytes lowered to 8 MiB.
- ``cluster``: three brokers (chroot per test) on the 3-node ensemble, fast failure detection.
Both leave no process behind (brokers are killed at teardown).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from kbroker.testing.brokers import FAST_FAILOVER, BrokerProcess, LocalCluster
from kbroker.testing.local import ZooKeeperEnsemble


@contextlib.contextmanager
def single_broker(
    zk: ZooKeeperEnsemble, chroot: str, base_dir: Path, settings: Mapping[str, str]
) -> Iterator[BrokerProcess]:
    """Broker 1 with ``settings`` (over FAST_FAILOVER) on ``zk``; killed on exit."""
    zk.heal(timeout=30)
    proc = BrokerProcess(
        broker_id=1,
        zookeeper=zk.connect_string + chroot,
        base_dir=base_dir,
        settings={**FAST_FAILOVER, **settings},
    )
    proc.start()
    try:
        yield proc
    finally:
        if proc.process.paused:
            proc.resume()
        proc.kill()


@pytest.fixture
def broker(zk_single: ZooKeeperEnsemble, zk_chroot: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    with single_broker(zk_single, zk_chroot, tmp_path, {"max.request.bytes": str(8 << 20)}) as b:
        yield b


@pytest.fixture
def cluster(zk_connect: str, tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path, brokers=3, zookeeper=zk_connect, settings=FAST_FAILOVER) as c:
        yield c
