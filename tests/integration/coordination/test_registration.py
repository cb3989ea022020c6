"""Broker registration on real ZooKeeper: checked ephemeral create, stale owners, cluster id."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from kbroker.coordination import (
    BrokerIdInUseError,
    ZooKeeperClient,
    ensure_cluster_id,
    ensure_persistent_paths,
    list_brokers,
    register_broker,
)
from kbroker.coordination.znodes import PERSISTENT_PATHS, BrokerIdZNode, BrokerRegistration
from kbroker.testing.local import ManagedProcess

from .conftest import ClientFactory

REGISTER_AND_HANG = """
import asyncio, sys
from kbroker.coordination import ZooKeeperClient, register_broker
from kbroker.coordination.znodes import BrokerRegistration

async def main() -> None:
    zk = ZooKeeperClient(sys.argv[1], session_timeout_ms=int(sys.argv[3]))
    await zk.start(15)
    reg = BrokerRegistration.for_url(int(sys.argv[2]), "http://127.0.0.1:9999")
    await register_broker(zk, reg)
    print(f"registered session={zk.session_id}", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def registration(broker_id: int) -> BrokerRegistration:
    return BrokerRegistration.for_url(broker_id, f"http://127.0.0.1:{9000 + broker_id}", rack="r1")


async def test_register_and_list(zk: ZooKeeperClient) -> None:
    await ensure_persistent_paths(zk)
    for path in PERSISTENT_PATHS:
        assert await zk.exists(path) is not None
    await ensure_persistent_paths(zk)  # idempotent
    registered = await register_broker(zk, registration(1))
    assert registered.session_id == zk.session_id
    data, stat = await zk.get(BrokerIdZNode.path(1))
    assert stat.czxid == registered.broker_epoch and stat.ephemeral
    assert BrokerIdZNode.decode(1, data) == registration(1)
    again = await register_broker(zk, registration(1))  # our own node: success, same znode
    assert again.broker_epoch == registered.broker_epoch
    assert await list_brokers(zk) == {1: (registration(1), registered.broker_epoch)}


async def test_live_other_owner_fails_clearly(
    zk: ZooKeeperClient, zk_connect: str, zk_client_factory: ClientFactory
) -> None:
    other = await zk_client_factory(zk_connect)
    await register_broker(other, registration(2))
    started = time.monotonic()
    with pytest.raises(BrokerIdInUseError, match="registered by another live process"):
        await register_broker(zk, registration(2), stale_wait_s=1.0)
    assert 0.9 <= time.monotonic() - started < 5


async def test_leftover_of_previous_session_is_replaced(
    zk: ZooKeeperClient, zk_connect: str, zk_client_factory: ClientFactory
) -> None:
    """KAFKA-7165: a znode owned by one of *our* previous sessions is deleted and re-created.
    (ZOOKEEPER-2985 cannot be provoked on demand; the other client's session stands in for
    our previous one.)"""
    other = await zk_client_factory(zk_connect)
    stale = await register_broker(other, registration(4))
    assert other.session_id is not None
    zk._past_sessions.append(other.session_id)  # white-box: pretend it was ours
    fresh = await register_broker(zk, registration(4), stale_wait_s=1.0)
    assert fresh.session_id == zk.session_id
    assert fresh.broker_epoch > stale.broker_epoch


async def test_stale_registration_of_killed_process_is_waited_out(
    zk: ZooKeeperClient, zk_connect: str, tmp_path: Path
) -> None:
    """kill -9 of a registered broker leaves its ephemeral until its session expires; the
    restarted broker waits for that, then registers."""
    old_session_ms = 2000
    proc = ManagedProcess(
        name="registered-then-killed",
        argv=[sys.executable, "-c", REGISTER_AND_HANG, zk_connect, "5", str(old_session_ms)],
        log_path=tmp_path / "child.log",
    )
    proc.start()
    try:
        await asyncio.to_thread(proc.wait_for_log, "registered", 20)
    finally:
        proc.kill()
    _, stat = await zk.get(BrokerIdZNode.path(5))
    assert stat.ephemeral_owner not in (0, zk.session_id)
    started = time.monotonic()
    registered = await register_broker(zk, registration(5))
    waited = time.monotonic() - started
    assert registered.session_id == zk.session_id
    assert 0.5 < waited < 1.5 * old_session_ms / 1000 + 2.0


async def test_cluster_id_is_created_once(
    zk: ZooKeeperClient, zk_connect: str, zk_client_factory: ClientFactory
) -> None:
    others = [await zk_client_factory(zk_connect) for _ in range(3)]
    ids = await asyncio.gather(*(ensure_cluster_id(c) for c in [zk, *others]))
    assert len(set(ids)) == 1
    assert len(ids[0]) == 22
    assert await ensure_cluster_id(zk, new_id=lambda: "ignored") == ids[0]
