"""Broker registration in ZooKeeper: ``/brokers/ids/<id>``, ``/cluster/id``, top-level paths.

:func:`register_broker` is Kafka's checked ephemeral create (``KafkaZkClient.CheckedEphemeral``
plus the KAFKA-7165 workaround); :class:`BrokerRegistrar` keeps the registration alive across
ZooKeeper sessions. Everything here runs on the event loop of the :class:`ZooKeeperClient` it
is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from kbroker.clock import Clock, SystemClock
from kbroker.coordination.errors import (
    BadVersionError,
    BrokerIdInUseError,
    CoordinationError,
    NodeExistsError,
    NoNodeError,
    ZooKeeperUnavailableError,
)
from kbroker.coordination.zk import SessionEvent, SessionEventKind, Stat, ZooKeeperClient
from kbroker.coordination.znodes import (
    PERSISTENT_PATHS,
    BrokerIdsZNode,
    BrokerIdZNode,
    BrokerRegistration,
    ClusterIdZNode,
    new_base64_uuid,
)

__all__ = [
    "BrokerRegistrar",
    "RegisteredBroker",
    "ensure_cluster_id",
    "ensure_persistent_paths",
    "list_brokers",
    "register_broker",
]

log = logging.getLogger(__name__)


class _Retry(enum.Enum):
    """Attempt outcome: try again at once (the znode vanished, we deleted our stale one, or
    ZooKeeper did not answer)."""

    RETRY = enum.auto()


_RETRY: Final = _Retry.RETRY
_MARGIN_S: Final = 2.0
_CLUSTER_ID_ATTEMPTS: Final = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredBroker:
    """A live registration: what was written, and the znode's identity."""

    registration: BrokerRegistration
    broker_epoch: int
    """czxid of the znode (KIP-380): higher on every re-registration."""
    session_id: int
    """The ZooKeeper session that owns the ephemeral."""


async def ensure_persistent_paths(
    zk: ZooKeeperClient, paths: Iterable[str] = PERSISTENT_PATHS
) -> None:
    """Create the persistent top-level znodes Kafka creates at start-up; idempotent, race-safe."""
    for path in paths:
        await zk.ensure_path(path)


async def ensure_cluster_id(
    zk: ZooKeeperClient, *, new_id: Callable[[], str] = new_base64_uuid
) -> str:
    """The cluster id from ``/cluster/id``, created with ``new_id()`` by the first broker.

    Race-safe: the create is unconditional and NodeExists means another broker won, whose id
    is read back. A create whose answer was lost is re-read on the next attempt.
    """
    for attempt in range(_CLUSTER_ID_ATTEMPTS):
        try:
            return await _read_cluster_id(zk)
        except NoNodeError:
            pass
        cluster_id = new_id()
        try:
            await zk.create(ClusterIdZNode.path, ClusterIdZNode.encode(cluster_id), makepath=True)
            return cluster_id
        except NodeExistsError:
            continue
        except ZooKeeperUnavailableError:
            if attempt == _CLUSTER_ID_ATTEMPTS - 1:
                raise
    return await _read_cluster_id(zk)


async def _read_cluster_id(zk: ZooKeeperClient) -> str:
    data, _ = await zk.get(ClusterIdZNode.path)
    return ClusterIdZNode.decode(data)


async def list_brokers(
    zk: ZooKeeperClient, *, watch: bool = False
) -> dict[int, tuple[BrokerRegistration, int]]:
    """Live brokers: id -> (registration, broker epoch). ``watch`` arms a child watch on
    ``/brokers/ids`` (register a handler first). Brokers that vanish while listing are skipped."""
    brokers: dict[int, tuple[BrokerRegistration, int]] = {}
    for child in await zk.get_children(BrokerIdsZNode.path, watch=watch):
        if not child.isdigit():
            continue
        broker_id = int(child)
        try:
            data, stat = await zk.get(BrokerIdZNode.path(broker_id))
        except NoNodeError:
            continue
        brokers[broker_id] = (BrokerIdZNode.decode(broker_id, data), stat.czxid)
    return brokers


async def register_broker(
    zk: ZooKeeperClient,
    registration: BrokerRegistration,
    *,
    clock: Clock | None = None,
    stale_wait_s: float | None = None,
    poll_s: float | None = None,
) -> RegisteredBroker:
    """Create ``/brokers/ids/<id>`` as an ephemeral of the current session (checked create).

    On NodeExists the znode's ``ephemeralOwner`` decides:

    - our current session: success (a create retried after a lost answer);
    - one of our previous sessions: a leftover (ZOOKEEPER-2985 / KAFKA-7165): delete it, retry;
    - another session (e.g. our own process before a kill -9, whose session is not yet
      expired): wait and retry until that session expires, for at most ``stale_wait_s``
      (default 1.5 x session timeout + 2 s), then raise :class:`BrokerIdInUseError`;
    - no session (a persistent znode): raise :class:`BrokerIdInUseError` at once.

    ZooKeeperUnavailableError is retried within the same bound, then raised.
    """
    clock = clock or SystemClock()
    if stale_wait_s is None:
        stale_wait_s = 1.5 * zk.session_timeout_ms / 1000 + _MARGIN_S
    if poll_s is None:
        poll_s = min(0.5, zk.session_timeout_ms / 10_000)
    path = BrokerIdZNode.path(registration.broker_id)
    data = BrokerIdZNode.encode(registration)
    deadline = clock.monotonic() + stale_wait_s
    logged_owner: int | None = None
    while True:
        try:
            outcome = await _attempt(zk, path, data)
        except ZooKeeperUnavailableError:
            if clock.monotonic() >= deadline:
                raise
            outcome = _RETRY
        if isinstance(outcome, Stat):
            log.info("registered broker %d at %s", registration.broker_id, path)
            return RegisteredBroker(
                registration=registration,
                broker_epoch=outcome.czxid,
                session_id=outcome.ephemeral_owner,
            )
        expired = clock.monotonic() >= deadline
        if outcome is _RETRY:
            if expired:
                raise BrokerIdInUseError(f"could not register {path} within {stale_wait_s} s")
            await clock.sleep(0.05)
            continue
        if outcome == 0 or expired:
            raise _in_use_error(registration.broker_id, outcome, stale_wait_s)
        if outcome != logged_owner:
            logged_owner = outcome
            log.warning(
                "%s is held by ZooKeeper session 0x%x; waiting up to %.1f s for it to expire",
                path,
                outcome,
                stale_wait_s,
            )
        await clock.sleep(poll_s)


async def _attempt(zk: ZooKeeperClient, path: str, data: bytes) -> Stat | int | _Retry:
    """One checked create: our Stat, the owner session of someone else's znode, or _RETRY."""
    try:
        _, created = await zk.create(path, data, ephemeral=True, makepath=True)
        return created
    except NodeExistsError:
        pass
    stat = await zk.exists(path)
    if stat is None:
        return _RETRY  # gone meanwhile
    owner = stat.ephemeral_owner
    if owner == zk.session_id:
        return stat
    if owner in zk.previous_session_ids:
        log.warning("deleting %s left by our previous session 0x%x (KAFKA-7165)", path, owner)
        with contextlib.suppress(NoNodeError, BadVersionError):
            await zk.delete(path, version=stat.version)
        return _RETRY
    return owner


def _in_use_error(broker_id: int, owner: int, waited_s: float) -> BrokerIdInUseError:
    path = BrokerIdZNode.path(broker_id)
    if owner == 0:
        message = f"{path} exists as a persistent znode: it was not created by a broker"
    else:
        message = (
            f"broker id {broker_id} is registered by another live process "
            f"(ZooKeeper session 0x{owner:x} still holds {path} after {waited_s:.1f} s); "
            f"is another broker running with broker.id={broker_id}?"
        )
    return BrokerIdInUseError(message, path=path)


class BrokerRegistrar:
    """Keeps this broker registered at ``/brokers/ids/<id>`` across ZooKeeper sessions.

    :meth:`start` registers once (raising on failure), then one owned task re-registers after
    every NEW_SESSION (the ephemeral died with the old session). ``current`` is the live
    registration or None (after LOST until re-registered); it is replaced whole, on the loop.
    A fatal failure (another live process holds the id) ends the task, is passed to
    ``on_failure`` and is raised by :meth:`wait_registered`. Transient ZooKeeper outages are
    retried with ``retry_backoff_s`` pauses until :meth:`close`.
    """

    def __init__(
        self,
        zk: ZooKeeperClient,
        registration: BrokerRegistration,
        *,
        clock: Clock | None = None,
        on_failure: Callable[[CoordinationError], None] | None = None,
        retry_backoff_s: float = 0.5,
    ) -> None:
        self._zk = zk
        self._registration = registration
        self._clock: Clock = clock or SystemClock()
        self._on_failure = on_failure
        self._retry_backoff_s = retry_backoff_s
        self._current: RegisteredBroker | None = None
        self._failure: CoordinationError | None = None
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._remove_listener: Callable[[], None] | None = None

    @property
    def current(self) -> RegisteredBroker | None:
        return self._current

    @property
    def failure(self) -> CoordinationError | None:
        return self._failure

    async def start(self) -> RegisteredBroker:
        if self._task is not None:
            raise RuntimeError("BrokerRegistrar.start() called twice")
        self._set_current(await self._register())
        self._remove_listener = self._zk.add_session_listener(self._on_session_event)
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"broker-registrar-{self._registration.broker_id}"
        )
        assert self._current is not None
        return self._current

    async def close(self) -> None:
        """Stop re-registering (the znode goes when the session closes)."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_registered(self, timeout_s: float) -> RegisteredBroker:
        """The live registration, waiting up to ``timeout_s`` for a re-registration.

        Raises the fatal failure if there was one, TimeoutError after ``timeout_s``.
        """
        async with asyncio.timeout(timeout_s):
            while True:
                if self._failure is not None:
                    raise self._failure
                if self._current is not None:
                    return self._current
                self._changed.clear()
                await self._changed.wait()

    def _on_session_event(self, event: SessionEvent) -> None:
        """On the loop, from the client: only flips state and wakes the task."""
        if event.kind is SessionEventKind.LOST:
            self._set_current(None)
        elif event.kind is SessionEventKind.NEW_SESSION:
            self._wake.set()

    def _set_current(self, current: RegisteredBroker | None) -> None:
        self._current = current
        self._changed.set()

    async def _register(self) -> RegisteredBroker:
        return await register_broker(self._zk, self._registration, clock=self._clock)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self._set_current(await self._register())
            except ZooKeeperUnavailableError as exc:
                log.warning("re-registration failed, will retry: %s", exc)
                await self._clock.sleep(self._retry_backoff_s)
                self._wake.set()
            except CoordinationError as exc:
                log.error("broker registration lost for good: %s", exc)
                self._failure = exc
                self._changed.set()
                if self._on_failure is not None:
                    self._on_failure(exc)
                return
