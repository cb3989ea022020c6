"""ZooKeeperClient against a real ensemble: requests, chroot, transactions, watches."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from kbroker.coordination import (
    BadVersionError,
    CheckOp,
    ConnectionState,
    CreateOp,
    DeleteOp,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    SetDataOp,
    VersionCheckFailedError,
    WatchEvent,
    WatchEventKind,
    ZooKeeperClient,
    ZooKeeperUnavailableError,
)
from kbroker.coordination.zk import MAX_REQUESTS_IN_FLIGHT
from kbroker.testing.local import ZooKeeperEnsemble, free_ports

from .conftest import ClientFactory


async def test_crud_round_trip(zk: ZooKeeperClient) -> None:
    path, stat = await zk.create("/a/b", b"one", makepath=True)
    assert path == "/a/b" and stat.version == 0 and not stat.ephemeral
    assert await zk.get("/a/b") == (b"one", stat)
    stat = await zk.set("/a/b", b"two", version=0)
    assert stat.version == 1
    with pytest.raises(BadVersionError):
        await zk.set("/a/b", b"three", version=0)
    with pytest.raises(NodeExistsError):
        await zk.create("/a/b")
    with pytest.raises(NoNodeError):
        await zk.get("/a/missing")
    with pytest.raises(NotEmptyError):
        await zk.delete("/a")
    assert await zk.get_children("/a") == ["b"]
    await zk.delete("/a", recursive=True)
    assert await zk.exists("/a") is None


async def test_sequential_and_ephemeral(zk: ZooKeeperClient) -> None:
    await zk.ensure_path("/seq")
    first, _ = await zk.create("/seq/item_", b"", sequential=True)
    second, _ = await zk.create("/seq/item_", b"", sequential=True)
    assert first == "/seq/item_0000000000" and second == "/seq/item_0000000001"
    _, stat = await zk.create("/eph", ephemeral=True)
    assert stat.ephemeral_owner == zk.session_id


async def test_session_facts(zk: ZooKeeperClient) -> None:
    assert zk.state is ConnectionState.CONNECTED and not zk.fenced
    assert zk.client_id is not None and zk.client_id[0] == zk.session_id
    assert zk.session_timeout_ms == 3000
    assert zk.previous_session_ids == ()


async def test_negotiated_session_timeout_is_reported(
    zk_connect: str, zk_client_factory: ClientFactory
) -> None:
    """The server clamps the request to [2, 120] x tickTime (500 ms) = [1000, 60000]."""
    client = await zk_client_factory(zk_connect, session_timeout_ms=200)
    assert client.session_timeout_ms == 1000


async def test_chroot_is_created_and_isolates(
    zk_ensemble: ZooKeeperEnsemble, zk_chroot: str, zk_client_factory: ClientFactory
) -> None:
    root = await zk_client_factory(zk_ensemble.connect_string)
    assert await root.exists(zk_chroot + "/deep") is None
    inner = await zk_client_factory(zk_ensemble.connect_string + zk_chroot + "/deep")
    await inner.create("/x", b"1")
    assert await root.get(zk_chroot + "/deep/x") == await inner.get("/x")
    assert await inner.get_children("/") == ["x"]
    await root.delete(zk_chroot, recursive=True)


async def test_missing_chroot_fails_when_not_created(
    zk_connect: str, zk_client_factory: ClientFactory
) -> None:
    with pytest.raises(NoNodeError, match="chroot"):
        await zk_client_factory(zk_connect, create_chroot=False)


async def test_transaction_is_atomic(zk: ZooKeeperClient) -> None:
    await zk.create("/t", b"0")
    with pytest.raises(NodeExistsError) as info:
        await zk.transaction([SetDataOp("/t", b"1"), CreateOp("/t")])
    assert info.value.op_index == 1
    assert (await zk.get("/t"))[0] == b"0"
    results = await zk.transaction(
        [CheckOp("/t", 0), SetDataOp("/t", b"1", version=0), CreateOp("/u", b"u"), DeleteOp("/u")]
    )
    assert results[0] is None and results[2] == "/u" and results[3] is None
    assert results[1] is not None and not isinstance(results[1], str)
    assert results[1].version == 1


async def test_check_and_write(zk: ZooKeeperClient) -> None:
    await zk.create("/guard", b"")
    await zk.create("/data", b"old")
    await zk.check_and_write("/guard", 0, [SetDataOp("/data", b"new")])
    await zk.set("/guard", b"bumped")
    with pytest.raises(VersionCheckFailedError):
        await zk.check_and_write("/guard", 0, [SetDataOp("/data", b"lost")])
    with pytest.raises(BadVersionError) as info:
        await zk.check_and_write("/guard", 1, [CheckOp("/data", 0), SetDataOp("/data", b"x")])
    assert info.value.op_index == 0
    assert (await zk.get("/data"))[0] == b"new"


async def test_watches_are_delivered_on_the_loop(zk: ZooKeeperClient) -> None:
    loop_thread = threading.get_ident()
    events: asyncio.Queue[tuple[WatchEvent, int]] = asyncio.Queue()
    zk.add_watch("/w", lambda e: events.put_nowait((e, threading.get_ident())))

    async def next_event() -> WatchEvent:
        event, thread = await asyncio.wait_for(events.get(), 5)
        assert thread == loop_thread
        return event

    assert await zk.exists("/w", watch=True) is None
    await zk.create("/w", b"1")
    assert await next_event() == WatchEvent("/w", WatchEventKind.CREATED)
    await zk.get("/w", watch=True)
    await zk.set("/w", b"2")
    assert await next_event() == WatchEvent("/w", WatchEventKind.CHANGED)
    await zk.get_children("/w", watch=True)
    await zk.create("/w/c")
    assert await next_event() == WatchEvent("/w", WatchEventKind.CHILD)
    await zk.get("/w", watch=True)
    await zk.delete("/w", recursive=True)
    assert (await next_event()).kind is WatchEventKind.DELETED
    # A one-shot watch fires once: nothing more without re-arming.
    await zk.create("/w")
    await asyncio.sleep(0.2)
    assert events.empty()


async def test_watch_requires_a_handler(zk: ZooKeeperClient) -> None:
    with pytest.raises(ValueError, match="add_watch"):
        await zk.get_children("/", watch=True)


async def test_removed_watch_handler_gets_nothing(zk: ZooKeeperClient) -> None:
    seen: list[WatchEvent] = []
    remove = zk.add_watch("/r", seen.append)
    await zk.exists("/r", watch=True)
    remove()
    await zk.create("/r")
    await asyncio.sleep(0.2)
    assert seen == []


async def test_start_fails_clearly_without_server() -> None:
    (port,) = free_ports(1)
    client = ZooKeeperClient(f"127.0.0.1:{port}", session_timeout_ms=2000)
    with pytest.raises(ZooKeeperUnavailableError, match="answered within"):
        await client.start(1.0)
    assert client.state is ConnectionState.CLOSED


async def test_requests_after_close_fail(zk: ZooKeeperClient) -> None:
    await zk.close()
    with pytest.raises(ZooKeeperUnavailableError):
        await zk.get("/")


async def test_requests_before_start_fail_fast() -> None:
    client = ZooKeeperClient("127.0.0.1:1", session_timeout_ms=10_000)
    async with asyncio.timeout(1):
        with pytest.raises(ZooKeeperUnavailableError, match="not started"):
            await client.get("/")


async def test_outstanding_requests_are_capped(zk: ZooKeeperClient) -> None:
    """Each request kazoo queues writes a byte to the socket pair waking its connection
    thread; past ~278 unread bytes that write blocks the event loop. At most
    MAX_REQUESTS_IN_FLIGHT are queued or unanswered at once; the rest wait on the loop."""
    kazoo = zk._kazoo
    queue_request = kazoo._call
    lock = threading.Lock()
    outstanding = peak = 0

    def answered(_result: object) -> None:
        nonlocal outstanding
        with lock:
            outstanding -= 1

    def counting_call(request: object, async_object: Any) -> object:
        nonlocal outstanding, peak
        with lock:
            outstanding += 1
            peak = max(peak, outstanding)
        async_object.rawlink(answered)
        return queue_request(request, async_object)

    kazoo._call = counting_call
    try:
        stats = await asyncio.gather(*(zk.exists(f"/absent-{i}") for i in range(1000)))
    finally:
        del kazoo._call
    assert stats == [None] * 1000
    assert MAX_REQUESTS_IN_FLIGHT // 2 < peak <= MAX_REQUESTS_IN_FLIGHT
