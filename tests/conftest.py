"""Shared fixtures: real ZooKeeper processes on 127.0.0.1 (never mocked), a chroot per test.

- ``zk_ensemble``: a 3-node ensemble (tickTime 500 ms) for the whole session.
- ``zk_single``: a standalone node (tickTime 500 ms) for the whole session.
- ``zk_chroot``: a fresh ``/kbtest-<uuid>`` per test, so tests never see each other's znodes.
- ``zk_connect``: ``zk_ensemble``'s connect string plus ``zk_chroot``.

Tests that inject faults (kill, stop, pause) into a shared ensemble restore it; the
``zk_connect`` fixture also calls ``heal()`` first, so one careless test cannot break the next.
If ZooKeeper is not installed the fixtures fail (never skip) and say how to install it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from kbroker.testing.local import ZooKeeperEnsemble, zookeeper_installed

ZK_TICK_TIME_MS = 500


def _ensemble(factory: pytest.TempPathFactory, name: str, size: int) -> Iterator[ZooKeeperEnsemble]:
    problem = zookeeper_installed()
    if problem:
        pytest.fail(problem, pytrace=False)
    ensemble = ZooKeeperEnsemble(
        base_dir=factory.mktemp(name), size=size, tick_time_ms=ZK_TICK_TIME_MS
    )
    ensemble.start()
    try:
        yield ensemble
    finally:
        ensemble.close()


@pytest.fixture(scope="session")
def zk_ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    """A 3-node ZooKeeper ensemble on loopback, shared by the whole test session."""
    yield from _ensemble(tmp_path_factory, "zk-ensemble", 3)


@pytest.fixture(scope="session")
def zk_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    """A standalone ZooKeeper node on loopback, shared by the whole test session."""
    yield from _ensemble(tmp_path_factory, "zk-single", 1)


@pytest.fixture
def zk_chroot() -> str:
    """A chroot no other test uses (not created: clients create it on start)."""
    return f"/kbtest-{uuid.uuid4().hex}"


@pytest.fixture
def zk_connect(zk_ensemble: ZooKeeperEnsemble, zk_chroot: str) -> str:
    """Connect string of the shared ensemble with this test's chroot."""
    zk_ensemble.heal(timeout=30)
    return zk_ensemble.connect_string + zk_chroot
