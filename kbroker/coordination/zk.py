"""An asyncio facade over one kazoo client: the only module of kbroker that imports kazoo.

Threads and the loop
--------------------
kazoo runs its own threads: a connection thread (socket I/O, state changes, state listeners)
and callback workers (watch callbacks, async-result completions). Everything kazoo calls back
into this module does exactly one thing: hand a plain value to the event loop with
``loop.call_soon_threadsafe``. No kazoo callback blocks, touches our state or calls ZooKeeper.
All state of :class:`ZooKeeperClient` is owned by the event loop thread; its methods must be
called from that loop. Requests use kazoo's ``*_async`` API (which only queues the request), and
each :class:`IAsyncResult` is completed into an asyncio future; nothing blocks the loop.
Blocking kazoo calls (``start_async``, ``stop``) run in a worker thread (``asyncio.to_thread``).

Queuing a request does one more thing: it writes a byte to a socket pair that wakes kazoo's
connection thread, which sends one request per wakeup. The socket holds about 278 such bytes;
past that the write blocks the event loop until the thread catches up, which on a busy machine
held a controller's loop for over two seconds while it read thousands of states (the broker
fenced itself). At most ``MAX_REQUESTS_IN_FLIGHT`` requests are therefore outstanding at once;
the others wait for a slot on the loop.

Sessions and self-fencing
-------------------------
kazoo's states are CONNECTED, SUSPENDED (connection dropped; the session may still be alive)
and LOST (session expired or closed: ephemerals and watches are gone). kazoo only learns of an
expiry once it reaches a server again, so a client cut off from the ensemble stays SUSPENDED
while the ensemble has already expired its session and another broker may have taken over. The
client therefore fences itself on a local timer: when SUSPENDED has lasted ``fence_ratio`` x the
negotiated session timeout (2/3 by default) it reports FENCED; the broker must then stop acting
on authority the session gave it (leading partitions for acks=all, being the controller). A
reconnect on the same session lifts the fence (CONNECTED). A reconnect on a new session after
LOST is reported as NEW_SESSION: the broker must re-register and re-read everything.

A process that does not run at all (SIGSTOP, a VM pause, heavy swapping) cannot notice anything
until it runs again, and then kazoo may still believe the connection healthy for a while: a
broker paused longer than its session would keep acting as leader (or group coordinator) on
state the cluster has moved past. So a liveness tick notes every ~100 ms that the loop ran;
:attr:`ZooKeeperClient.stalled` is true when the last tick is older than the fence delay
(checked inline by code that acts on leadership, so even the first request after a resume is
refused), and the tick then reports FENCED until a ZooKeeper round trip on the same session
confirms it is still alive (CONNECTED again), or kazoo reports it LOST.

Note on the timer: kazoo itself declares SUSPENDED only after 1/3 to 2/3 of the session timeout
without hearing from the server, so the fence trips up to about 4/3 of the session timeout after
the last contact. Pass a smaller ``fence_ratio`` (e.g. 1/3) to fence no later than the server can
expire the session; the default follows the design brief.

Watches
-------
Watches are edge-triggered hints, never data: a handler learns "something changed at PATH" and
re-reads (which re-arms the one-shot ZooKeeper watch). Register a handler with :meth:`add_watch`,
then arm it with ``get(path, watch=True)``, ``get_children(path, watch=True)`` or
``exists(path, watch=True)``. kazoo drops every armed watch when the connection drops, so after
each reconnect (same or new session) every handler gets a RESYNC event and must re-read.

Chroot
------
A connect string may end with a chroot (``h1:p1,h2:p2/kbroker``). This client prefixes paths
itself (kazoo gets no chroot), so it can create the chroot on start when it is missing, as Kafka
does; every path in and out of this API is relative to the chroot.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from kazoo import exceptions as kz_errors
from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.serialization import Connect
from kazoo.protocol.states import EventType, KazooState

from kbroker.clock import Clock, SystemClock
from kbroker.config import parse_zookeeper_connect
from kbroker.coordination.errors import (
    BadVersionError,
    CoordinationError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    VersionCheckFailedError,
    ZooKeeperUnavailableError,
)

__all__ = [
    "CheckOp",
    "ConnectionState",
    "CreateOp",
    "DeleteOp",
    "Op",
    "OpResult",
    "SessionEvent",
    "SessionEventKind",
    "SetDataOp",
    "Stat",
    "WatchEvent",
    "WatchEventKind",
    "ZooKeeperClient",
    "force_session_expiry",
    "pipelined",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_U = TypeVar("_U")

ANY_VERSION: Final = -1
_RETRY_PAUSE_S: Final = 0.05


# ----------------------------------------------------------------------------------------------
# Value types


@dataclass(frozen=True, slots=True, kw_only=True)
class Stat:
    """A znode's metadata (ZooKeeper's Stat). ``ephemeral_owner`` is 0 for persistent znodes,
    else the owning session id; ``czxid`` of ``/brokers/ids/<id>`` is the broker epoch."""

    czxid: int
    mzxid: int
    pzxid: int
    ctime_ms: int
    mtime_ms: int
    version: int
    cversion: int
    aversion: int
    ephemeral_owner: int
    data_length: int
    num_children: int

    @property
    def ephemeral(self) -> bool:
        return self.ephemeral_owner != 0


@dataclass(frozen=True, slots=True)
class CreateOp:
    """Create ``path``; with ``sequential`` ZooKeeper appends a 10-digit sequence number."""

    path: str
    data: bytes = b""
    ephemeral: bool = False
    sequential: bool = False


@dataclass(frozen=True, slots=True)
class SetDataOp:
    """Set the data of ``path`` if its version is ``version`` (-1: any version)."""

    path: str
    data: bytes
    version: int = ANY_VERSION


@dataclass(frozen=True, slots=True)
class DeleteOp:
    """Delete ``path`` if its version is ``version`` (-1: any version)."""

    path: str
    version: int = ANY_VERSION


@dataclass(frozen=True, slots=True)
class CheckOp:
    """Fail the transaction unless ``path`` exists with version ``version``."""

    path: str
    version: int


Op = CreateOp | SetDataOp | DeleteOp | CheckOp
OpResult = str | Stat | None
"""Per operation of a transaction: the created path (CreateOp), the new Stat (SetDataOp), or
None (DeleteOp, CheckOp)."""


class ConnectionState(enum.StrEnum):
    """The client's view of its connection, as last delivered on the loop."""

    CONNECTING = "connecting"
    """Started, never connected yet."""
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    """Connection dropped; the session may still be alive."""
    LOST = "lost"
    """Session expired: ephemerals and watches are gone; reconnecting on a new session."""
    CLOSED = "closed"
    """Not started, or closed."""


class SessionEventKind(enum.StrEnum):
    CONNECTED = "connected"
    """Connected on the current session (first connect, or resumed after SUSPENDED)."""
    SUSPENDED = "suspended"
    FENCED = "fenced"
    """SUSPENDED for too long (or LOST): stop acting on authority the session gave."""
    LOST = "lost"
    """The session is gone, with its ephemerals; a new one is being established."""
    NEW_SESSION = "new_session"
    """Connected on a new session after LOST: re-register and re-read everything."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEvent:
    kind: SessionEventKind
    session_id: int | None
    """The session now current (None while LOST)."""
    fenced: bool
    """The client's fenced flag after this event."""


class WatchEventKind(enum.StrEnum):
    CREATED = "created"
    DELETED = "deleted"
    CHANGED = "changed"
    CHILD = "child"
    RESYNC = "resync"
    """The connection dropped and came back: watches were lost; re-read and re-arm."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """Something may have changed at ``path`` (chroot-relative). A hint: re-read the path."""

    path: str
    kind: WatchEventKind


SessionListener = Callable[[SessionEvent], None]
WatchHandler = Callable[[WatchEvent], None]

_WATCH_KINDS: Final = {
    EventType.CREATED: WatchEventKind.CREATED,
    EventType.DELETED: WatchEventKind.DELETED,
    EventType.CHANGED: WatchEventKind.CHANGED,
    EventType.CHILD: WatchEventKind.CHILD,
}


# ----------------------------------------------------------------------------------------------
# kazoo -> our exceptions


_UNAVAILABLE: Final = (
    kz_errors.ConnectionLoss,
    kz_errors.SessionExpiredError,  # includes ConnectionClosedError
    kz_errors.SessionMovedError,
    kz_errors.OperationTimeoutError,
    kz_errors.ZookeeperStoppedError,
    KazooTimeoutError,
)
_MAPPED: Final[tuple[tuple[type[Exception], type[CoordinationError]], ...]] = (
    (kz_errors.NoNodeError, NoNodeError),
    (kz_errors.NodeExistsError, NodeExistsError),
    (kz_errors.BadVersionError, BadVersionError),
    (kz_errors.NotEmptyError, NotEmptyError),
)


def _map_error(exc: BaseException, what: str, path: str, op_index: int | None = None) -> Exception:
    """Our exception for a kazoo one; anything else is returned unchanged."""
    message = f"ZooKeeper {what} {path}: {type(exc).__name__}"
    if isinstance(exc, _UNAVAILABLE):
        return ZooKeeperUnavailableError(message, path=path, op_index=op_index)
    for kazoo_type, ours in _MAPPED:
        if isinstance(exc, kazoo_type):
            return ours(message, path=path, op_index=op_index)
    if isinstance(exc, kz_errors.KazooException):
        return CoordinationError(message, path=path, op_index=op_index)
    return exc if isinstance(exc, Exception) else RuntimeError(message)


def _stat(raw: Any) -> Stat:
    return Stat(
        czxid=raw.czxid,
        mzxid=raw.mzxid,
        pzxid=raw.pzxid,
        ctime_ms=raw.ctime,
        mtime_ms=raw.mtime,
        version=raw.version,
        cversion=raw.cversion,
        aversion=raw.aversion,
        ephemeral_owner=raw.ephemeralOwner,
        data_length=raw.dataLength,
        num_children=raw.numChildren,
    )


def _settle(fut: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
    """Loop side of a kazoo completion; a future already cancelled (timed out) is skipped."""
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


# ----------------------------------------------------------------------------------------------
# The client


class ZooKeeperClient:
    """One ZooKeeper session for one broker, used from one asyncio event loop.

    Lifecycle: ``await start(timeout)`` then requests, ``await close()``. Requests are bounded
    by ``request_timeout_s`` (default: the session timeout) and raise
    :class:`ZooKeeperUnavailableError` when ZooKeeper does not answer in time. Reads and
    ``ensure_path`` (idempotent) are retried across a reconnect within that bound; writes are
    not (their outcome is unknown after a connection loss, so the caller decides).

    State (``state``, ``fenced``, ``session_id``...) is owned by the loop and changes only in
    callbacks the loop runs; session listeners and watch handlers run on the loop, must not
    block, and typically enqueue work for a task of their owner. A listener that raises is
    logged and skipped.
    """

    def __init__(
        self,
        connect: str,
        *,
        session_timeout_ms: int = 6000,
        request_timeout_s: float | None = None,
        fence_ratio: float = 2 / 3,
        create_chroot: bool = True,
        clock: Clock | None = None,
    ) -> None:
        if not 0 < fence_ratio <= 1:
            raise ValueError(f"fence_ratio must be in (0, 1], not {fence_ratio}")
        self.hosts, self.chroot = parse_zookeeper_connect(connect)
        self.connect_string = connect
        self._requested_timeout_ms = session_timeout_ms
        self._request_timeout_s = request_timeout_s
        self._fence_ratio = fence_ratio
        self._create_chroot = create_chroot
        self._clock: Clock = clock or SystemClock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kazoo: Any = None
        self._state = ConnectionState.CLOSED
        self._connected = asyncio.Event()
        self._fenced = True
        self._closing = False
        self._session_id: int | None = None
        self._session_passwd: bytes | None = None
        self._past_sessions: list[int] = []
        self._request_slots = asyncio.Semaphore(MAX_REQUESTS_IN_FLIGHT)
        self._negotiated_ms: int | None = None
        self._negotiated_raw: int | None = None  # written by kazoo's connection thread
        self._fence_task: asyncio.Task[None] | None = None
        self._last_alive: float | None = None
        """Monotonic time the liveness tick last ran (None before start)."""
        self._liveness_task: asyncio.Task[None] | None = None
        self._confirm_task: asyncio.Task[None] | None = None
        self._session_listeners: list[SessionListener] = []
        self._watch_handlers: defaultdict[str, list[WatchHandler]] = defaultdict(list)

    def __repr__(self) -> str:
        sid = f"0x{self._session_id:x}" if self._session_id else None
        return f"<ZooKeeperClient {self.connect_string} {self._state} session={sid}>"

    # -- properties (loop-owned) ---------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is ConnectionState.CONNECTED

    @property
    def fenced(self) -> bool:
        """True unless the session is known or presumed alive (connected, or suspended for less
        than the fence delay). Also True before the first connect and after close."""
        return self._fenced

    @property
    def session_id(self) -> int | None:
        return self._session_id

    @property
    def client_id(self) -> tuple[int, bytes] | None:
        """(session id, password) of the current session: what a test needs to expire it."""
        if self._session_id is None or self._session_passwd is None:
            return None
        return self._session_id, self._session_passwd

    @property
    def previous_session_ids(self) -> tuple[int, ...]:
        """Sessions this client had before the current one, oldest first."""
        return tuple(self._past_sessions)

    @property
    def session_timeout_ms(self) -> int:
        """The session timeout the server granted (the requested one before connecting)."""
        return self._negotiated_ms or self._requested_timeout_ms

    @property
    def request_timeout_s(self) -> float:
        if self._request_timeout_s is not None:
            return self._request_timeout_s
        return self.session_timeout_ms / 1000

    @property
    def fence_delay_s(self) -> float:
        """How long SUSPENDED may last before the client reports FENCED."""
        return self._fence_ratio * self.session_timeout_ms / 1000

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, timeout_s: float = 15.0) -> None:
        """Connect (bounded by ``timeout_s``) and create the chroot if missing.

        Raises ZooKeeperUnavailableError (and leaves the client closed) when no server answers.
        """
        if self._loop is not None:
            raise RuntimeError("ZooKeeperClient.start() called twice")
        self._loop = asyncio.get_running_loop()
        self._kazoo = self._make_kazoo()
        self._state = ConnectionState.CONNECTING
        await asyncio.to_thread(self._kazoo.start_async)
        try:
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
        except TimeoutError:
            await self.close()
            raise ZooKeeperUnavailableError(
                f"no ZooKeeper server at {self.hosts} answered within {timeout_s} s"
            ) from None
        if self.chroot:
            await self._ensure_chroot()
        self._last_alive = self._clock.monotonic()
        self._liveness_task = self._loop.create_task(self._liveness(), name="zookeeper-liveness")

    def _make_kazoo(self) -> Any:
        kazoo = KazooClient(
            hosts=self.hosts,
            timeout=self._requested_timeout_ms / 1000,
            # Reconnect quickly after a server comes back (kazoo's default backs off to 60 s).
            connection_retry={"max_tries": -1, "delay": 0.1, "backoff": 2, "max_delay": 1.0},
        )
        self._capture_negotiated_timeout(kazoo)
        kazoo.add_listener(self._on_kazoo_state)
        return kazoo

    def _capture_negotiated_timeout(self, kazoo: Any) -> None:
        """Record the session timeout the server grants (kazoo keeps it to itself).

        Wraps the connection handler's ``_invoke`` (used only for the connect handshake, on
        kazoo's connection thread): it only stores an int. If a kazoo version lacks the hook,
        ``session_timeout_ms`` falls back to the requested timeout.
        """
        connection: Any = getattr(kazoo, "_connection", None)
        invoke = getattr(connection, "_invoke", None)
        if invoke is None:
            log.warning("kazoo has no _invoke hook: using the requested session timeout")
            return

        def invoke_and_capture(timeout: float, request: Any, xid: int | None = None) -> Any:
            result = invoke(timeout, request, xid)
            if isinstance(request, Connect):
                with contextlib.suppress(AttributeError, IndexError, TypeError):
                    self._negotiated_raw = int(result[0].time_out)
            return result

        connection._invoke = invoke_and_capture

    async def _ensure_chroot(self) -> None:
        """Create the chroot (Kafka creates it too); or check it exists if told not to."""
        if self._create_chroot:
            await self._retrying("ensure_path", self.chroot, self._ensure_async(self.chroot))
        elif await self.exists("/") is None:
            await self.close()
            raise NoNodeError(f"ZooKeeper chroot {self.chroot} does not exist", path="/")

    async def close(self) -> None:
        """Close the session (its ephemerals go at once) and stop kazoo's threads. Idempotent;
        listeners get no event for the close itself."""
        if self._closing:
            return
        self._closing = True
        await self._cancel_fence_timer()
        for task in (self._liveness_task, self._confirm_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._liveness_task = self._confirm_task = None
        kazoo, self._kazoo = self._kazoo, None
        if kazoo is not None:
            await asyncio.to_thread(_stop_kazoo, kazoo)
        self._state = ConnectionState.CLOSED
        self._fenced = True
        self._connected.clear()

    async def __aenter__(self) -> ZooKeeperClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_connected(self, timeout_s: float) -> None:
        """Wait until CONNECTED; raises ZooKeeperUnavailableError after ``timeout_s`` s."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
        except TimeoutError:
            raise ZooKeeperUnavailableError(
                f"not connected to ZooKeeper at {self.hosts} after {timeout_s} s "
                f"(state {self.state})"
            ) from None

    # -- listeners -----------------------------------------------------------------------------

    def add_session_listener(self, listener: SessionListener) -> Callable[[], None]:
        """Call ``listener(event)`` on the loop for every session event; returns a remover."""
        self._session_listeners.append(listener)
        return lambda: _discard(self._session_listeners, listener)

    def add_watch(self, path: str, handler: WatchHandler) -> Callable[[], None]:
        """Register ``handler`` for watch events at ``path``; returns a remover.

        The handler stays registered until removed; the ZooKeeper watch is one-shot and is armed
        by reads with ``watch=True``. Handlers also get RESYNC after every reconnect.
        """
        self._abs(path)  # validate
        self._watch_handlers[path].append(handler)

        def remove() -> None:
            handlers = self._watch_handlers.get(path)
            if handlers is not None:
                _discard(handlers, handler)
                if not handlers:
                    del self._watch_handlers[path]

        return remove

    # -- kazoo threads -> loop -----------------------------------------------------------------

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """Called from kazoo threads: schedule ``callback(*args)`` on the loop, nothing else."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            loop.call_soon_threadsafe(callback, *args)

    def _on_kazoo_state(self, state: str) -> None:
        """kazoo connection thread: snapshot the session and hand it to the loop."""
        client_id = self._kazoo.client_id if self._kazoo is not None else None
        if state != KazooState.CONNECTED or client_id is None:
            client_id = (None, None)
        self._to_loop(self._apply_state, state, client_id[0], client_id[1], self._negotiated_raw)

    def _on_kazoo_watch(self, event: Any) -> None:
        """kazoo callback thread: forward a watch event to the loop. Session events (type NONE,
        sent when kazoo drops its watches) are skipped: handlers get RESYNC on reconnect."""
        kind = _WATCH_KINDS.get(event.type)
        if kind is not None and event.path is not None:
            self._to_loop(self._dispatch_watch, WatchEvent(self._rel(event.path), kind))

    def _future_of(self, async_result: Any) -> asyncio.Future[Any]:
        """An asyncio future completed (on the loop) by a kazoo IAsyncResult."""
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()

        def completed(result: Any) -> None:  # kazoo completion thread (or the caller's)
            try:
                value, exc = result.get(block=False), None
            except Exception as error:
                value, exc = None, error
            self._to_loop(_settle, fut, value, exc)

        async_result.rawlink(completed)
        return fut

    # -- session state machine (loop) ----------------------------------------------------------

    def _apply_state(
        self, state: str, session_id: int | None, passwd: bytes | None, negotiated: int | None
    ) -> None:
        if self._closing:
            return
        if state == KazooState.CONNECTED and session_id is not None and passwd is not None:
            self._on_connected(session_id, passwd, negotiated)
        elif state == KazooState.SUSPENDED:
            self._on_suspended()
        elif state == KazooState.LOST:
            self._on_lost()

    def _on_connected(self, session_id: int, passwd: bytes, negotiated: int | None) -> None:
        previous, was = self._session_id, self._state
        if previous is not None and previous != session_id:
            self._past_sessions.append(previous)  # defensive: kazoo reports LOST first
        new_session = bool(self._past_sessions) and previous != session_id
        self._session_id, self._session_passwd = session_id, passwd
        self._negotiated_ms = negotiated or self._negotiated_ms
        self._state = ConnectionState.CONNECTED
        self._connected.set()
        self._cancel_fence_timer_soon()
        self._fenced = False
        kind = SessionEventKind.NEW_SESSION if new_session else SessionEventKind.CONNECTED
        log.info("ZooKeeper %s: session 0x%x (%d ms)", kind, session_id, self.session_timeout_ms)
        self._emit(kind)
        if was is not ConnectionState.CONNECTING:
            for path in list(self._watch_handlers):
                self._dispatch_watch(WatchEvent(path, WatchEventKind.RESYNC))

    def _on_suspended(self) -> None:
        self._state = ConnectionState.SUSPENDED
        self._connected.clear()
        if self._fence_task is None and not self._fenced:
            assert self._loop is not None
            self._fence_task = self._loop.create_task(
                self._fence_after(self.fence_delay_s), name="zookeeper-fence-timer"
            )
        log.warning("ZooKeeper connection suspended; fencing in %.2f s", self.fence_delay_s)
        self._emit(SessionEventKind.SUSPENDED)

    def _on_lost(self) -> None:
        self._cancel_fence_timer_soon()
        self._state = ConnectionState.LOST
        self._connected.clear()
        if self._session_id is not None:
            self._past_sessions.append(self._session_id)
        self._session_id = self._session_passwd = None
        log.warning("ZooKeeper session lost")
        self._set_fenced()
        self._emit(SessionEventKind.LOST)

    async def _fence_after(self, delay: float) -> None:
        """The self-fencing timer, started on SUSPENDED and cancelled on CONNECTED or LOST."""
        await self._clock.sleep(delay)
        self._fence_task = None
        if self._state is ConnectionState.SUSPENDED:
            log.warning("ZooKeeper suspended for %.2f s: fenced", delay)
            self._set_fenced()

    @property
    def stalled(self) -> bool:
        """True when this process has not run for longer than the fence delay (paused): the
        session may have expired meanwhile without kazoo knowing yet (module docstring)."""
        last = self._last_alive
        return last is not None and self._clock.monotonic() - last > self.fence_delay_s

    async def _liveness(self) -> None:
        """Note that the loop runs; after a stall, fence until the session is confirmed."""
        tick = min(0.1, self.fence_delay_s / 10)
        while True:
            await self._clock.sleep(tick)
            now = self._clock.monotonic()
            gap = now - (now if self._last_alive is None else self._last_alive)
            # SUSPENDED too: on resuming, kazoo's thread may have seen the dead connection
            # before this tick runs; the fence timer it starts would leave the broker unfenced
            # for another fence delay although the session has most likely expired already.
            stalled_in = (ConnectionState.CONNECTED, ConnectionState.SUSPENDED)
            if gap > self.fence_delay_s and self._state in stalled_in:
                log.warning(
                    "this process did not run for %.2f s (paused?): fenced until ZooKeeper "
                    "confirms the session",
                    gap,
                )
                self._set_fenced()
                # SUSPENDED: kazoo's reconnect decides (same session: CONNECTED; else LOST).
                if self._state is ConnectionState.CONNECTED and (
                    self._confirm_task is None or self._confirm_task.done()
                ):
                    assert self._loop is not None
                    self._confirm_task = self._loop.create_task(
                        self._confirm_session(self._session_id), name="zookeeper-confirm"
                    )
            self._last_alive = now

    async def _confirm_session(self, session_id: int | None) -> None:
        """Lift a stall's fence once a round trip succeeds on the same session. A session the
        ensemble expired fails the request instead, and kazoo reports LOST."""
        try:
            async with asyncio.timeout(self.session_timeout_ms / 1000):
                await self.sync("/")
        except Exception as exc:  # the session's fate is kazoo's to report
            log.info("session check after a stall failed: %r", exc)
            return
        if (
            self._fenced
            and self._state is ConnectionState.CONNECTED
            and session_id is not None
            and self._session_id == session_id
        ):
            self._fenced = False
            log.info("ZooKeeper session 0x%x still alive after the stall: unfenced", session_id)
            self._emit(SessionEventKind.CONNECTED)

    def _set_fenced(self) -> None:
        if not self._fenced:
            self._fenced = True
            self._emit(SessionEventKind.FENCED)

    def _cancel_fence_timer_soon(self) -> None:
        task, self._fence_task = self._fence_task, None
        if task is not None:
            task.cancel()

    async def _cancel_fence_timer(self) -> None:
        task, self._fence_task = self._fence_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _emit(self, kind: SessionEventKind) -> None:
        event = SessionEvent(kind=kind, session_id=self._session_id, fenced=self._fenced)
        for listener in list(self._session_listeners):
            try:
                listener(event)
            except Exception:
                log.exception("ZooKeeper session listener %r failed on %s", listener, kind)

    def _dispatch_watch(self, event: WatchEvent) -> None:
        if self._closing:
            return
        for handler in list(self._watch_handlers.get(event.path, ())):
            try:
                handler(event)
            except Exception:
                log.exception("ZooKeeper watch handler %r failed on %s", handler, event)

    # -- paths ---------------------------------------------------------------------------------

    def _abs(self, path: str) -> str:
        if not path.startswith("/") or (path != "/" and path.endswith("/")) or "//" in path:
            raise ValueError(f"bad znode path {path!r}")
        if not self.chroot:
            return path
        return self.chroot if path == "/" else self.chroot + path

    def _rel(self, path: str) -> str:
        if not self.chroot:
            return path
        if path == self.chroot:
            return "/"
        return path.removeprefix(self.chroot) if path.startswith(self.chroot + "/") else path

    # -- request plumbing ----------------------------------------------------------------------

    def _client(self) -> Any:
        if self._kazoo is None or self._closing:
            raise ZooKeeperUnavailableError("the ZooKeeper client is not started or closed")
        return self._kazoo

    async def _once(self, what: str, path: str, start: Callable[[], Any]) -> Any:
        """Send one request, once one of the MAX_REQUESTS_IN_FLIGHT slots is free (module
        docstring); map kazoo errors; bounded by the request timeout (slot wait included)."""
        timeout = self.request_timeout_s
        try:
            async with asyncio.timeout(timeout), self._request_slots:
                return await self._future_of(start())
        except TimeoutError:
            raise ZooKeeperUnavailableError(
                f"ZooKeeper {what} {path}: no answer within {timeout:.1f} s", path=path
            ) from None
        except Exception as exc:
            raise _map_error(exc, what, path) from exc

    async def _retrying(self, what: str, path: str, start: Callable[[], Any]) -> Any:
        """Like :meth:`_once`, for idempotent requests: retried after a connection loss until
        the request timeout has passed in total."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout_s
        while True:
            try:
                return await self._once(what, path, start)
            except ZooKeeperUnavailableError:
                left = deadline - loop.time()
                if left <= 0 or self._closing or self._kazoo is None:
                    raise
                with contextlib.suppress(ZooKeeperUnavailableError):
                    await self.wait_connected(left)
                await self._clock.sleep(_RETRY_PAUSE_S)

    def _watcher(self, path: str, watch: bool) -> Callable[[Any], None] | None:
        if not watch:
            return None
        if path not in self._watch_handlers:
            raise ValueError(f"watch=True on {path} without a handler: call add_watch first")
        return self._on_kazoo_watch

    def _ensure_async(self, abs_path: str) -> Callable[[], Any]:
        return lambda: self._client().ensure_path_async(abs_path)

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, path: str, *, watch: bool = False) -> tuple[bytes, Stat]:
        """Data and Stat of ``path``; raises NoNodeError. ``watch`` arms a data watch."""
        abs_path, watcher = self._abs(path), self._watcher(path, watch)
        data, raw = await self._retrying(
            "get", path, lambda: self._client().get_async(abs_path, watch=watcher)
        )
        return bytes(data or b""), _stat(raw)

    async def get_children(self, path: str, *, watch: bool = False) -> list[str]:
        """Sorted child names of ``path``; raises NoNodeError. ``watch`` arms a child watch."""
        abs_path, watcher = self._abs(path), self._watcher(path, watch)
        children = await self._retrying(
            "get_children", path, lambda: self._client().get_children_async(abs_path, watcher)
        )
        return sorted(children)

    async def exists(self, path: str, *, watch: bool = False) -> Stat | None:
        """Stat of ``path`` or None. ``watch`` arms a watch that also fires on creation."""
        abs_path, watcher = self._abs(path), self._watcher(path, watch)
        raw = await self._retrying(
            "exists", path, lambda: self._client().exists_async(abs_path, watch=watcher)
        )
        return _stat(raw) if raw is not None else None

    async def sync(self, path: str) -> None:
        """Make the connected server catch up with the leader before the next read."""
        abs_path = self._abs(path)
        await self._retrying("sync", path, lambda: self._client().sync_async(abs_path))

    # -- writes --------------------------------------------------------------------------------

    async def create(
        self,
        path: str,
        data: bytes = b"",
        *,
        ephemeral: bool = False,
        sequential: bool = False,
        makepath: bool = False,
    ) -> tuple[str, Stat]:
        """Create ``path``; returns the created path (sequence number included) and its Stat.

        Raises NodeExistsError, NoNodeError (parent missing and not ``makepath``), or
        ZooKeeperUnavailableError (outcome unknown).
        """
        abs_path = self._abs(path) if not sequential else self._abs_prefix(path)

        def start() -> Any:
            return self._client().create_async(
                abs_path,
                data,
                ephemeral=ephemeral,
                sequence=sequential,
                makepath=makepath,
                include_data=True,
            )

        created, raw = await self._once("create", path, start)
        return self._rel(created), _stat(raw)

    def _abs_prefix(self, prefix: str) -> str:
        """A sequential create's prefix may end with ``/`` or ``_``; only the parent is checked."""
        parent, _, name = prefix.rpartition("/")
        return self._abs(parent or "/").rstrip("/") + "/" + name

    async def set(self, path: str, data: bytes, *, version: int = ANY_VERSION) -> Stat:
        """Set the data of ``path`` if at ``version``; raises BadVersionError, NoNodeError."""
        abs_path = self._abs(path)
        raw = await self._once(
            "set", path, lambda: self._client().set_async(abs_path, data, version)
        )
        return _stat(raw)

    async def delete(
        self, path: str, *, version: int = ANY_VERSION, recursive: bool = False
    ) -> None:
        """Delete ``path`` (if at ``version``). ``recursive`` deletes children first (children
        that vanish meanwhile are fine). Raises NoNodeError, BadVersionError, NotEmptyError."""
        if recursive:
            with contextlib.suppress(NoNodeError):
                for child in await self.get_children(path):
                    child_path = f"{path.rstrip('/')}/{child}"
                    with contextlib.suppress(NoNodeError):
                        await self.delete(child_path, recursive=True)
        abs_path = self._abs(path)
        await self._once("delete", path, lambda: self._client().delete_async(abs_path, version))

    async def ensure_path(self, path: str) -> None:
        """Create ``path`` and any missing parents (persistent, empty); idempotent and safe
        when several clients race."""
        await self._retrying("ensure_path", path, self._ensure_async(self._abs(path)))

    async def transaction(self, ops: Sequence[Op]) -> list[OpResult]:
        """Apply ``ops`` atomically (ZooKeeper multi): all or none.

        On failure raises the error of the first failing operation (NoNodeError,
        NodeExistsError, BadVersionError, NotEmptyError) with ``op_index`` set.
        """
        if not ops:
            return []

        def start() -> Any:
            txn = self._client().transaction()
            for op in ops:
                self._add_op(txn, op)
            return txn.commit_async()

        results = await self._once("transaction", ops[0].path, start)
        self._raise_failed_op(ops, results)
        return [self._op_result(op, result) for op, result in zip(ops, results, strict=True)]

    async def check_and_write(
        self, check_path: str, check_version: int, ops: Sequence[Op]
    ) -> list[OpResult]:
        """``ops`` in one transaction guarded by ``check(check_path, check_version)``.

        Raises VersionCheckFailedError when the guard fails (nothing written); a failure of
        one of ``ops`` raises its error with ``op_index`` relative to ``ops``. Returns the
        results of ``ops``.
        """
        try:
            results = await self.transaction([CheckOp(check_path, check_version), *ops])
        except (BadVersionError, NoNodeError) as exc:
            if exc.op_index == 0:
                raise VersionCheckFailedError(
                    f"{check_path} is no longer at version {check_version}", path=check_path
                ) from exc
            raise _shift(exc) from exc
        except CoordinationError as exc:
            raise _shift(exc) from exc
        return results[1:]

    def _add_op(self, txn: Any, op: Op) -> None:
        match op:
            case CreateOp(path, data, ephemeral, sequential):
                abs_path = self._abs_prefix(path) if sequential else self._abs(path)
                txn.create(abs_path, data, ephemeral=ephemeral, sequence=sequential)
            case SetDataOp(path, data, version):
                txn.set_data(self._abs(path), data, version)
            case DeleteOp(path, version):
                txn.delete(self._abs(path), version)
            case CheckOp(path, version):
                txn.check(self._abs(path), version)

    @staticmethod
    def _raise_failed_op(ops: Sequence[Op], results: Sequence[Any]) -> None:
        """A failed multi answers one error per op: the culprit's, RolledBack for the rest."""
        if len(results) != len(ops):
            raise CoordinationError(f"transaction: {len(results)} results for {len(ops)} ops")
        for index, (op, result) in enumerate(zip(ops, results, strict=True)):
            if isinstance(result, BaseException) and not isinstance(
                result, kz_errors.RolledBackError
            ):
                raise _map_error(result, "transaction op", op.path, op_index=index)
        if any(isinstance(result, BaseException) for result in results):
            raise CoordinationError("transaction rolled back without a failing op")

    def _op_result(self, op: Op, result: Any) -> OpResult:
        if isinstance(op, CreateOp):
            return self._rel(str(result))
        if isinstance(op, SetDataOp):
            return _stat(result)
        return None


#: Requests :func:`pipelined` keeps in flight together.
PIPELINE_WINDOW: Final = 256
#: Requests one client has outstanding at once: well under the ~278 wakeup bytes kazoo's
#: socket pair holds before a write blocks the event loop (module docstring).
MAX_REQUESTS_IN_FLIGHT: Final = 128


async def pipelined(call: Callable[[_U], Awaitable[_T]], items: Iterable[_U]) -> list[_T]:
    """``call`` of every item, in order: a window of ``PIPELINE_WINDOW`` calls at a time in
    flight together (ZooKeeper answers a session's requests in order, so a window costs about
    one round trip), window after window. Thousands of reads then neither wait one round trip
    each, nor hold the event loop for seconds while they are all issued and then all
    completed at once (the liveness tick would take that for a pause and fence the broker)."""
    pending = list(items)
    results: list[_T] = []
    for start in range(0, len(pending), PIPELINE_WINDOW):
        window = pending[start : start + PIPELINE_WINDOW]
        results.extend(await asyncio.gather(*map(call, window)))
    return results


def _shift(exc: CoordinationError) -> CoordinationError:
    """The same error with ``op_index`` made relative to the caller's ops (guard removed)."""
    if exc.op_index is not None:
        exc.op_index -= 1
    return exc


def _discard(items: list[_T], item: _T) -> None:
    with contextlib.suppress(ValueError):
        items.remove(item)


def _stop_kazoo(kazoo: Any) -> None:
    """Worker thread: stop the session and free kazoo's sockets."""
    try:
        kazoo.stop()
    finally:
        kazoo.close()


async def force_session_expiry(
    connect: str, client_id: tuple[int, bytes], *, timeout_s: float = 10.0
) -> None:
    """Expire a session from outside, for tests (kazoo's own test harness trick).

    Opens a second connection with the same session id and password, then closes it: the
    server ends the session, its ephemerals vanish, and the original client sees SUSPENDED,
    then LOST when it reconnects, then a new session.
    """
    hosts, _ = parse_zookeeper_connect(connect)

    def expire() -> None:
        other = KazooClient(hosts=hosts, client_id=client_id, timeout=timeout_s)
        try:
            other.start(timeout=timeout_s)
        finally:
            _stop_kazoo(other)

    await asyncio.to_thread(expire)
