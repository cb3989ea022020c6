"""Session life cycle on real ZooKeeper: forced expiry, self-fencing while cut off, leader loss."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from kbroker.coordination import (
    BrokerRegistrar,
    ConnectionState,
    SessionEvent,
    SessionEventKind,
    WatchEvent,
    WatchEventKind,
    ZooKeeperClient,
    ZooKeeperUnavailableError,
    force_session_expiry,
)
from kbroker.coordination.znodes import BrokerIdZNode, BrokerRegistration
from kbroker.testing.local import ZooKeeperEnsemble

from .conftest import ClientFactory

K = SessionEventKind


class EventLog:
    """Session events as they reach the loop, with a bounded wait for a given kind."""

    def __init__(self, client: ZooKeeperClient) -> None:
        self.events: list[tuple[float, SessionEvent]] = []
        self._changed = asyncio.Event()
        self._t0 = time.monotonic()
        client.add_session_listener(self._record)

    def _record(self, event: SessionEvent) -> None:
        self.events.append((time.monotonic() - self._t0, event))
        self._changed.set()

    @property
    def kinds(self) -> list[SessionEventKind]:
        return [event.kind for _, event in self.events]

    def at(self, kind: SessionEventKind) -> float:
        return next(t for t, event in self.events if event.kind is kind)

    async def wait_for(self, kinds: Iterable[SessionEventKind], timeout_s: float) -> SessionEvent:
        wanted = set(kinds)
        async with asyncio.timeout(timeout_s):
            while True:
                for _, event in self.events:
                    if event.kind in wanted:
                        return event
                self._changed.clear()
                await self._changed.wait()


async def test_forced_expiry_then_re_registration(zk: ZooKeeperClient, zk_connect: str) -> None:
    registration = BrokerRegistration.for_url(7, "http://127.0.0.1:9007")
    registrar = BrokerRegistrar(zk, registration)
    first = await registrar.start()
    resyncs: list[WatchEvent] = []
    zk.add_watch("/brokers/ids", resyncs.append)
    old_session = zk.session_id
    log = EventLog(zk)
    assert zk.client_id is not None
    await force_session_expiry(zk_connect, zk.client_id)
    await log.wait_for([K.NEW_SESSION], 15)
    # The client may briefly resume the old session on another server before the expiry
    # lands, so only the ending is fixed: fenced, then lost, then the new session.
    assert log.kinds[0] is K.SUSPENDED
    assert log.kinds[-3:] == [K.FENCED, K.LOST, K.NEW_SESSION]
    assert zk.previous_session_ids == (old_session,)
    assert zk.session_id != old_session and not zk.fenced
    again = await registrar.wait_registered(10)
    assert again.session_id == zk.session_id
    assert again.broker_epoch > first.broker_epoch
    _, stat = await zk.get(BrokerIdZNode.path(7))
    assert stat.ephemeral_owner == zk.session_id
    assert WatchEvent("/brokers/ids", WatchEventKind.RESYNC) in resyncs
    await registrar.close()


async def test_ephemeral_vanishes_on_expiry_before_reregistration(
    zk: ZooKeeperClient, zk_connect: str, zk_client_factory: ClientFactory
) -> None:
    observer = await zk_client_factory(zk_connect)
    await zk.create("/eph", ephemeral=True)
    gone = asyncio.Event()
    observer.add_watch("/eph", lambda e: gone.set() if e.kind is WatchEventKind.DELETED else None)
    assert await observer.exists("/eph", watch=True) is not None
    assert zk.client_id is not None
    await force_session_expiry(zk_connect, zk.client_id)
    await asyncio.wait_for(gone.wait(), 10)
    await zk.wait_connected(15)
    assert await zk.exists("/eph") is None  # ephemerals are not re-created for us


async def test_fencing_timer_fires_while_suspended(
    zk_single: ZooKeeperEnsemble, zk_chroot: str, zk_client_factory: ClientFactory
) -> None:
    """SIGSTOP the only ZooKeeper node: the client must fence itself on its own timer, long
    before kazoo could report LOST (it cannot reach a server to learn of the expiry)."""
    zk_single.heal(30)
    zk = await zk_client_factory(zk_single.connect_string + zk_chroot, session_timeout_ms=3000)
    registrar = BrokerRegistrar(zk, BrokerRegistration.for_url(3, "http://127.0.0.1:9003"))
    await registrar.start()
    log = EventLog(zk)
    with zk_single.paused(0):
        fenced = await log.wait_for([K.FENCED], 10)
        assert fenced.fenced  # the client's flag when the event was emitted
        assert zk.state is ConnectionState.SUSPENDED
        assert log.kinds == [K.SUSPENDED, K.FENCED]
        waited = log.at(K.FENCED) - log.at(K.SUSPENDED)
        assert zk.fence_delay_s - 0.1 <= waited <= zk.fence_delay_s + 1.0
    back = await log.wait_for([K.CONNECTED, K.NEW_SESSION], 20)
    assert not zk.fenced
    # Same session (resumed in time) or a new one (expired meanwhile): either way the broker
    # ends up registered on the current session.
    if back.kind is K.NEW_SESSION:
        assert K.LOST in log.kinds
    current = await registrar.wait_registered(10)
    assert current.session_id == zk.session_id
    await registrar.close()


async def test_client_survives_ensemble_leader_kill(
    zk_ensemble: ZooKeeperEnsemble, zk_connect: str, zk_client_factory: ClientFactory
) -> None:
    zk = await zk_client_factory(zk_connect)
    await zk.create("/alive", ephemeral=True)
    session = zk.session_id
    leader = zk_ensemble.leader()
    assert leader is not None
    try:
        zk_ensemble.kill(leader)
        for i in range(20):  # writes go on through the new leader (set is idempotent)
            while True:
                try:
                    await zk.set("/alive", str(i).encode())
                    break
                except ZooKeeperUnavailableError:
                    await zk.wait_connected(10)
        assert (await zk.get("/alive"))[0] == b"19"
        await zk.wait_connected(10)
        assert zk.session_id == session and not zk.fenced
        zk_ensemble.wait_ready(20)
        new_leader = zk_ensemble.leader()
        assert new_leader is not None and new_leader != leader
    finally:
        zk_ensemble.start(leader)
    assert zk_ensemble.leader() is not None


async def test_a_stalled_process_fences_at_once_until_the_session_is_confirmed(
    zk_connect: str, zk_client_factory: ClientFactory
) -> None:
    """The event loop does not run for longer than the fence delay (as after SIGSTOP/SIGCONT):
    ``stalled`` is true at once, before any callback runs; the liveness tick then reports
    FENCED, and CONNECTED again once a round trip shows the session alive (kazoo's own threads
    kept it alive here)."""
    zk = await zk_client_factory(zk_connect, session_timeout_ms=6000, fence_ratio=1 / 3)
    log = EventLog(zk)
    session = zk.session_id
    assert (zk.stalled, zk.fenced) == (False, False)
    time.sleep(zk.fence_delay_s + 0.5)  # noqa: ASYNC251 - the point: the loop stalls
    assert zk.stalled
    fenced = await log.wait_for([K.FENCED], 5)
    assert fenced.fenced
    assert (zk.stalled,) == (False,)  # the tick ran again (the fence holds until confirmed)
    back = await log.wait_for([K.CONNECTED], 10)
    assert not back.fenced and not zk.fenced
    assert zk.session_id == session
    assert log.kinds == [K.FENCED, K.CONNECTED]
