"""Fixtures for the container suite: real ZooKeeper and kbroker containers (testcontainers).

- ``docker_ready`` (session): a Docker engine answers and the images are built (cached; the
  first build takes a minute or two). Without an engine the suite is skipped, except in CI
  (``CI=true``), where it fails: CI must run it for real.
- ``zk_containers`` (session): a 3-node ZooKeeper ensemble in containers (tickTime 500 ms),
  shared by the tests; each cluster gets a chroot of its own, and faults injected into the
  ensemble are healed before the next cluster starts.
- ``kcluster``: 3 brokers on that ensemble with quick failure detection; removed at teardown.

Every test module here marks its tests ``containers`` (``-m 'not containers'`` deselects
them). Nothing is left running: the fixtures remove their containers and networks, even when a
test fails; a failed test prints its brokers' logs.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest

from kbroker import images
from kbroker.testing.containers import (
    FAST_FAILOVER,
    KBrokerCluster,
    ZooKeeperEnsemble,
    docker_problem,
)


@pytest.fixture(scope="session")
def docker_ready() -> None:
    problem = docker_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the container suite: {problem}", pytrace=False)
        pytest.skip(problem)
    try:
        images.ensure_images()
    except images.ImageError as exc:
        pytest.fail(f"could not build the images: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def zk_containers(docker_ready: None) -> Iterator[ZooKeeperEnsemble]:
    with ZooKeeperEnsemble(3, tick_time_ms=500) as ensemble:
        yield ensemble


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember whether the test itself failed, for the fixtures' teardown."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture
def kcluster(
    zk_containers: ZooKeeperEnsemble, request: pytest.FixtureRequest
) -> Iterator[KBrokerCluster]:
    """3 brokers, a chroot of their own; their logs are printed when the test fails."""
    zk_containers.heal(timeout=60)
    with KBrokerCluster(brokers=3, zookeeper=zk_containers, settings=FAST_FAILOVER) as cluster:
        yield cluster
        if request.node.stash.get(_CALL_FAILED, False):
            for broker_id in cluster:
                print(f"===== broker {broker_id} ({cluster.url(broker_id)}) =====")
                print(cluster.logs(broker_id, lines=300))
