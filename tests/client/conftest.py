"""Fixtures for the kclient and kbctl end-to-end tests: real brokers, never mocks.

- ``kb``: one ``kbroker serve`` process shared by a test module (its own ZooKeeper chroot on
  the session's standalone node), with fast group settings. Tests isolate themselves by topic
  and group names (``topic``, ``group`` fixtures), so sharing the broker is safe and saves the
  start-up per test.
- ``url``: its base URL.
- ``topic``: a fresh 3-partition topic; ``group``: a fresh group id.
- ``cluster``: the integration suite's three-broker cluster (re-exported).

Helpers: :func:`unique` names, :func:`read_back` to read what a test wrote.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from kbroker.testing.brokers import FAST_FAILOVER, BrokerProcess
from kbroker.testing.local import ZooKeeperEnsemble
from kclient import Admin, Consumer, ConsumerRecord, TopicPartition
from tests.integration.conftest import cluster

__all__ = ["cluster"]


@pytest.fixture(scope="module")
def kb(
    zk_single: ZooKeeperEnsemble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    zk_single.heal(timeout=30)
    proc = BrokerProcess(
        broker_id=1,
        zookeeper=f"{zk_single.connect_string}/kbclient-{uuid.uuid4().hex}",
        base_dir=tmp_path_factory.mktemp("kb"),
        settings={**FAST_FAILOVER, "max.request.bytes": str(16 << 20)},
    )
    proc.start()
    try:
        yield proc
    finally:
        if proc.process.paused:
            proc.resume()
        proc.kill()


@pytest.fixture
def url(kb: BrokerProcess) -> str:
    return kb.url


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def read_back(
    url: str, topic: str, count: int, *, partitions: Iterable[int] | None = None, **settings: Any
) -> list[ConsumerRecord]:
    """At least ``count`` records of ``partitions`` of ``topic`` (default: all of them), and any
    more there are, by partition then offset; gives up after 30 s. ``settings`` go to the
    :class:`~kclient.Consumer` (deserializers...)."""
    with Consumer(url, auto_offset_reset="earliest", fetch_max_wait_ms=100, **settings) as consumer:
        if partitions is None:
            partitions = consumer.partitions_for(topic)
        consumer.assign(TopicPartition(topic, p) for p in partitions)
        out: list[ConsumerRecord] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = consumer.poll(0.5)
            out += got
            if len(out) >= count and not got:
                break
    return sorted(out, key=lambda r: (r.partition, r.offset))


@pytest.fixture
def topic(url: str) -> str:
    name = unique("t")
    with Admin(url) as admin:
        admin.create_topic(name, partitions=3, replication_factor=1)
    return name


@pytest.fixture
def group() -> str:
    return unique("g")
