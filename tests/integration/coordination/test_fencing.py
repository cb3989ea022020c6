"""Controller election and epoch-fenced writes on real ZooKeeper."""

from __future__ import annotations

import asyncio

import pytest

from kbroker.coordination import (
    ControllerEpoch,
    ControllerMovedError,
    SetDataOp,
    ZooKeeperClient,
    elect_controller,
    fenced_write,
    force_session_expiry,
    read_controller,
    read_controller_epoch,
    resign_controller,
)
from kbroker.coordination.znodes import ControllerZNode

from .conftest import ClientFactory


async def test_concurrent_election_has_one_winner(
    zk_connect: str, zk_client_factory: ClientFactory
) -> None:
    clients = [await zk_client_factory(zk_connect) for _ in range(5)]
    results = await asyncio.gather(*(elect_controller(c, i) for i, c in enumerate(clients)))
    winners = [i for i, result in enumerate(results) if result is not None]
    assert len(winners) == 1
    winner = winners[0]
    assert results[winner] == ControllerEpoch(epoch=1, zk_version=1)
    controller = await read_controller(clients[0])
    assert controller is not None
    assert controller[0].broker_id == winner
    assert controller[1].ephemeral_owner == clients[winner].session_id
    assert await read_controller_epoch(clients[0]) == results[winner]
    # Idempotent for the winner, still None for the others.
    assert await elect_controller(clients[winner], winner) == results[winner]
    assert await elect_controller(clients[(winner + 1) % 5], (winner + 1) % 5) is None


async def test_each_new_controller_bumps_the_epoch(
    zk_connect: str, zk_client_factory: ClientFactory
) -> None:
    a, b = [await zk_client_factory(zk_connect) for _ in range(2)]
    first = await elect_controller(a, 1)
    assert first is not None
    assert await resign_controller(a, first.zk_version)
    second = await elect_controller(b, 2)
    assert second is not None and second.epoch == first.epoch + 1
    assert not await resign_controller(a, first.zk_version)  # fenced: b stays controller
    assert await read_controller(b) is not None


async def test_fenced_write_fails_after_another_controller_was_elected(
    zk_connect: str, zk_client_factory: ClientFactory
) -> None:
    old, new = [await zk_client_factory(zk_connect) for _ in range(2)]
    await old.create("/state", b"initial")
    elected = await elect_controller(old, 1)
    assert elected is not None
    await fenced_write(old, elected.zk_version, [SetDataOp("/state", b"by-old")])

    # The old controller's session expires (a long GC pause, a partition...): /controller
    # vanishes and another broker is elected while the old one still believes it leads.
    gone = asyncio.Event()
    new.add_watch(ControllerZNode.path, lambda _: gone.set())
    assert await read_controller(new, watch=True) is not None
    assert old.client_id is not None
    await force_session_expiry(zk_connect, old.client_id)
    await asyncio.wait_for(gone.wait(), 10)
    successor = await elect_controller(new, 2)
    assert successor is not None and successor.epoch == elected.epoch + 1

    await old.wait_connected(15)
    with pytest.raises(ControllerMovedError):
        await fenced_write(old, elected.zk_version, [SetDataOp("/state", b"zombie")])
    assert (await new.get("/state"))[0] == b"by-old"
    await fenced_write(new, successor.zk_version, [SetDataOp("/state", b"by-new")])
    assert (await new.get("/state"))[0] == b"by-new"


async def test_first_election_creates_the_epoch_znode(zk: ZooKeeperClient) -> None:
    assert await read_controller_epoch(zk) is None
    assert await elect_controller(zk, 9) == ControllerEpoch(1, 1)
