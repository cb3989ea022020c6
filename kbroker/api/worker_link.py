"""The lean link between a broker and its HTTP workers: framed calls on a Unix socket.

A worker (kbroker.api.worker) hands its two hot calls to the broker over this link instead of
HTTP: appending batches it has encoded, and reading raw batches it will render. Everything else
still goes over the broker's HTTP Unix socket. An HTTP exchange on that socket cost the broker
about as much CPU as the append itself (aiohttp's server on one side, its client on the other);
a frame costs one header unpack and one JSON decode of a few fields.

Wire format, both directions: a 16-byte header ``>IIII`` (call id, code, meta length, data
length), then ``meta`` (a JSON object), then ``data`` (bytes). In a call, ``code`` is the
operation (:class:`Op`) and ``meta`` its parameters; in an answer, ``code`` is the HTTP status
the worker answers with and ``meta`` the response headers. Answers carry the id of their call
and may come in any order: one connection carries many calls at once.

**The ring.** A call's data (a produce request's encoded batches, ~100 KB) does not travel
through the socket when it fits a slot of the worker's ring: shared memory (a memfd) that the
worker announces once per connection (``HELLO``: its pid and the descriptor's number) and that
the broker maps through ``/proc/<pid>/fd``. The worker copies the data into a free
slot and names it in the call's meta (``"@ring": [slot, length]``); the broker appends straight
from the mapping. The other way, a call may offer a slot for its answer (``"@answer": slot``):
the broker copies a successful answer's body (read batches) there, and the worker renders
from the slot. The ring's pages are allocated once and then reused, whereas a socket's
buffers draw fresh pages from the kernel for every call, which on these VMs costs as much as
the copy into the page cache itself (docs/benchmarks.md). Without a ring (the broker could not
map it, the slots are all taken, the data is larger than a slot) the data goes inline.

Invariants: every call gets exactly one answer, or the connection fails and the worker fails
every call still waiting (as a retriable 503: the broker is not answering). A ring slot is
reused only after its call's answer arrived or its connection failed: the broker reads a slot
only while it serves that call, and a call's task is cancelled when its connection is lost.
Nothing here knows about records; the operations are served by the callable the broker
passes in.

Concurrency: one event loop per process. The broker serves each call in its own task; the
worker's :class:`LinkClient` may be called by any number of request handlers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import mmap
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final, cast

import orjson

from kbroker.errors import BrokerError, ErrorCode, InternalError

__all__ = ["Answer", "LinkClient", "LinkServer", "Op", "error_answer"]

log = logging.getLogger(__name__)

_HEADER: Final = struct.Struct(">IIII")
#: A frame larger than this is a broken peer, not a big request (max.request.bytes is far less).
MAX_FRAME_BYTES: Final = 1 << 30


#: The worker's ring: this many slots of this many bytes (pages are touched only when used).
#: Both ends use these constants (a worker runs the broker's own code).
RING_SLOTS: Final = 32
RING_SLOT_BYTES: Final = 1 << 20
_RING_BYTES: Final = RING_SLOTS * RING_SLOT_BYTES
_RING_KEY: Final = "@ring"
"""In a call's meta: the ring slot and length of its data. In an answer's meta: the length of
its body, written by the broker into the call's answer slot."""
_ANSWER_SLOT_KEY: Final = "@answer"
"""In a call's meta: the ring slot the broker may write a successful answer's body into."""


class Op(enum.IntEnum):
    """What a worker asks its broker."""

    HELLO = 0
    """Map the worker's ring (meta: pid, fd). Answered 200 or an error."""
    APPEND = 1
    """Append encoded batches (data: kbroker.api.produce's frames) to a topic or partition."""
    BATCHES = 2
    """Read raw batches of one partition (the ``/batches`` read)."""


#: A call's data: bytes, or its parts in order (copied straight into a ring slot, no join).
Data = bytes | Sequence[bytes | memoryview]


def _parts(data: Data) -> Sequence[bytes | memoryview]:
    return (data,) if isinstance(data, bytes) else data


#: An answer: HTTP status, response headers, body.
Answer = tuple[int, dict[str, str], bytes]
Dispatch = Callable[[Op, dict[str, Any], bytes | memoryview], Awaitable[Answer]]


def _slot_span(slot: int, length: int) -> slice:
    """Where the first ``length`` bytes of ring slot ``slot`` lie in the ring."""
    start = slot * RING_SLOT_BYTES
    return slice(start, start + length)


def error_answer(exc: BrokerError) -> Answer:
    """The Confluent error answer for ``exc`` (as kbroker.api.errors renders it over HTTP)."""
    headers = {"Content-Type": "application/json"}
    if exc.retriable:
        headers["Retry-After"] = "1"
    return exc.status, headers, orjson.dumps(exc.body())


class _FrameProtocol(asyncio.Protocol):
    """Splits a byte stream into frames; subclasses handle each one (``frame_received``)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._start = 0
        self._need = _HEADER.size

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is not a subclass)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) - self._start >= self._need:
            call, code, meta_size, data_size = _HEADER.unpack_from(buffer, self._start)
            size = _HEADER.size + meta_size + data_size
            if size > MAX_FRAME_BYTES:
                log.error("worker link: frame of %d bytes, closing the connection", size)
                assert self.transport is not None
                self.transport.close()
                return
            if len(buffer) - self._start < size:
                self._need = size
                break
            body = self._start + _HEADER.size
            meta = bytes(buffer[body : body + meta_size])
            payload = bytes(buffer[body + meta_size : body + meta_size + data_size])
            self._start += size
            self._need = _HEADER.size
            self.frame_received(call, code, meta, payload)
        if self._start == len(buffer):
            buffer.clear()
            self._start = 0
        elif self._start > (1 << 20):
            del buffer[: self._start]
            self._start = 0

    def send(self, call: int, code: int, meta: bytes, data: Data) -> None:
        assert self.transport is not None
        parts = _parts(data)
        header = _HEADER.pack(call, code, len(meta), sum(map(len, parts)))
        # One write, one syscall (uvloop's writelines writes each part on its own); data is
        # small here (a produce's batches travel in the ring) or an answer's body.
        self.transport.write(b"".join((header, meta, *parts)))

    def frame_received(self, call: int, code: int, meta: bytes, data: bytes) -> None:
        raise NotImplementedError


class LinkServer(_FrameProtocol):
    """The broker's end of one worker connection: serves each call in a task of its own."""

    def __init__(self, dispatch: Dispatch) -> None:
        super().__init__()
        self._dispatch = dispatch
        self._tasks: set[asyncio.Task[None]] = set()
        self._ring: mmap.mmap | None = None

    def frame_received(self, call: int, code: int, meta: bytes, data: bytes) -> None:
        if code == Op.HELLO:
            self.send(call, *self._map_ring(meta))
            return
        task = asyncio.get_running_loop().create_task(self._serve(call, code, meta, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _map_ring(self, meta: bytes) -> tuple[int, bytes, bytes]:
        try:
            hello = orjson.loads(meta)
            fd = os.open(f"/proc/{int(hello['pid'])}/fd/{int(hello['fd'])}", os.O_RDWR)
            try:
                self._ring = mmap.mmap(fd, _RING_BYTES)
            finally:
                os.close(fd)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("worker link: cannot map the worker's ring (%r); data goes inline", exc)
            status, _, body = error_answer(BrokerError(repr(exc), ErrorCode.INTERNAL_ERROR))
            return status, b"{}", body
        return 200, b"{}", b""

    def _slot(self, index: Any, length: Any) -> memoryview:
        """The first ``length`` bytes of ring slot ``index`` (valid while its call is served)."""
        if self._ring is None:
            raise BrokerError(
                "worker call names a ring that is not mapped", ErrorCode.INVALID_PAYLOAD
            )
        index, length = int(index), int(length)
        if not 0 <= index < RING_SLOTS or not 0 <= length <= RING_SLOT_BYTES:
            raise BrokerError(
                f"worker call names ring slot {index} for {length} bytes", ErrorCode.INVALID_PAYLOAD
            )
        return memoryview(self._ring)[_slot_span(index, length)]

    async def _serve(self, call: int, code: int, meta: bytes, data: bytes) -> None:
        try:
            params = orjson.loads(meta)
            slot = params.pop(_RING_KEY, None)
            answer_slot = params.pop(_ANSWER_SLOT_KEY, None)
            given = data if slot is None else self._slot(slot[0], slot[1])
            status, headers, body = await self._dispatch(Op(code), params, given)
            if answer_slot is not None and status == 200 and len(body) <= RING_SLOT_BYTES:
                self._slot(answer_slot, len(body))[:] = body
                headers = {**headers, _RING_KEY: str(len(body))}
                body = b""
        except BrokerError as exc:
            status, headers, body = error_answer(exc)
        except Exception:
            log.exception("unexpected failure serving worker call %d", code)
            status, headers, body = error_answer(InternalError())
        if self.transport is not None and not self.transport.is_closing():
            self.send(call, status, orjson.dumps(headers), body)

    def connection_lost(self, exc: Exception | None) -> None:
        for task in self._tasks:
            task.cancel()
        self.transport = None
        if self._ring is not None:
            with contextlib.suppress(BufferError):  # a view still held: freed with it
                self._ring.close()
            self._ring = None


class _ClientProtocol(_FrameProtocol):
    def __init__(self, client: LinkClient) -> None:
        super().__init__()
        self._client = client

    def frame_received(self, call: int, code: int, meta: bytes, data: bytes) -> None:
        waiter = self._client.pending.pop(call, None)
        if waiter is not None and not waiter.done():
            waiter.set_result((code, orjson.loads(meta), data))

    def connection_lost(self, exc: Exception | None) -> None:
        self._client.lost(self, exc)


class _Ring:
    """One connection's ring on the worker's side: a memfd mapping and its free slots.

    Once its connection is lost the ring is retired: no call takes a slot of it again, and it
    is closed when the last call using it gives its slots back (a call whose answer arrived
    just before the loss still reads its answer slot)."""

    def __init__(self) -> None:
        self.fd = os.memfd_create("kbroker-worker-ring", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, _RING_BYTES)
            self.memory = mmap.mmap(self.fd, _RING_BYTES)
        except OSError:
            os.close(self.fd)
            raise
        self.free = list(range(RING_SLOTS))
        self._retired = False

    def hello(self) -> dict[str, int]:
        return {"pid": os.getpid(), "fd": self.fd}

    def put(self, parts: Sequence[bytes | memoryview]) -> int:
        """Copy ``parts`` one after the other into a free slot (they fit); its index (the
        caller gives it back after the answer, :meth:`give_back`)."""
        slot = self.free.pop()
        with memoryview(self.memory)[_slot_span(slot, RING_SLOT_BYTES)] as target:
            position = 0
            for part in parts:
                target[position : position + len(part)] = part
                position += len(part)
        return slot

    def view(self, slot: int, length: int) -> memoryview:
        return memoryview(self.memory)[_slot_span(slot, min(length, RING_SLOT_BYTES))]

    def give_back(self, slots: list[int]) -> None:
        self.free += slots
        self._close_if_done()

    def retire(self) -> None:
        self._retired = True
        self._close_if_done()

    def close(self) -> None:
        self.memory.close()
        os.close(self.fd)

    def _close_if_done(self) -> None:
        if self._retired and len(self.free) == RING_SLOTS and not self.memory.closed:
            self.close()


class LinkClient:
    """The worker's end: one connection to the broker's link socket, opened on first use and
    again after it fails. Each connection gets a ring of its own (see the module docstring),
    so a slot the broker may still be reading for a lost connection is never written again."""

    def __init__(self, path: str, *, ring: bool = True) -> None:
        self._path = path
        self._use_ring = ring
        self._protocol: _ClientProtocol | None = None
        self._ring: _Ring | None = None
        """The current connection's ring, once the broker has mapped it."""
        self._connecting: asyncio.Lock | None = None
        self._ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[Answer]] = {}

    @property
    def ring_mapped(self) -> bool:
        return self._ring is not None

    async def call(self, op: Op, meta: dict[str, Any], data: Data = b"") -> Answer:
        """The broker's answer to one call. Raises BrokerError (503, retriable) when the
        broker cannot be reached or the connection fails before the answer."""
        async with self.calling(op, meta, data) as (status, headers, body):
            assert isinstance(body, bytes)
            return status, headers, body

    @contextlib.asynccontextmanager
    async def calling(
        self, op: Op, meta: dict[str, Any], data: Data = b"", *, answer_in_ring: bool = False
    ) -> AsyncIterator[tuple[int, dict[str, str], bytes | memoryview]]:
        """As :meth:`call`; with ``answer_in_ring``, a successful answer's body may be a view
        of a ring slot instead, valid until the block ends (the slot is then reused)."""
        protocol = self._protocol or await self._connect()
        ring, slots, answer_slot = self._ring, [], -1
        if ring is not None:
            parts = _parts(data)
            size = sum(map(len, parts))
            if size and ring.free and size <= RING_SLOT_BYTES:
                slots.append(ring.put(parts))
                meta = {**meta, _RING_KEY: [slots[-1], size]}
                data = b""
            if answer_in_ring and ring.free:
                answer_slot = ring.free.pop()
                slots.append(answer_slot)
                meta = {**meta, _ANSWER_SLOT_KEY: answer_slot}
        view: memoryview | None = None
        try:
            status, headers, body = await self._send(protocol, op, meta, data)
            length = headers.pop(_RING_KEY, None)
            if length is not None and ring is not None and answer_slot >= 0:
                view = ring.view(answer_slot, int(length))
            yield status, headers, body if view is None else view
        finally:
            if view is not None:
                view.release()
            if ring is not None:
                ring.give_back(slots)

    async def _send(
        self, protocol: _ClientProtocol, op: Op, meta: dict[str, Any], data: Data
    ) -> Answer:
        call = next(self._ids) & 0xFFFFFFFF
        waiter: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.pending[call] = waiter
        try:
            protocol.send(call, op, orjson.dumps(meta), data)
            return await waiter
        finally:
            self.pending.pop(call, None)

    async def _connect(self) -> _ClientProtocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is None:
                try:
                    _, protocol = await asyncio.get_running_loop().create_unix_connection(
                        lambda: _ClientProtocol(self), self._path
                    )
                except OSError as exc:
                    raise _unreachable(exc) from exc
                self._ring = await self._offer_ring(protocol) if self._use_ring else None
                self._protocol = protocol
            return self._protocol

    async def _offer_ring(self, protocol: _ClientProtocol) -> _Ring | None:
        """A new ring, mapped by the broker; None (data inline) when either side cannot."""
        try:
            ring = _Ring()
        except (OSError, AttributeError) as exc:  # no memfd_create on this platform
            log.warning("worker link: no ring (%r); data goes inline", exc)
            return None
        try:
            status, _, body = await self._send(protocol, Op.HELLO, ring.hello(), b"")
        except BaseException:
            ring.close()
            raise
        if status != 200:
            log.warning("worker link: the broker did not map the ring: %r", body)
            ring.close()
            return None
        return ring

    def lost(self, protocol: _ClientProtocol, exc: Exception | None) -> None:
        if self._protocol is protocol:
            self._protocol = None
            if self._ring is not None:  # the broker may still read it: never written again
                self._ring.retire()
                self._ring = None
        error = _unreachable(exc or ConnectionResetError("the broker closed the link"))
        for waiter in self.pending.values():
            if not waiter.done():
                waiter.set_exception(error)
        self.pending.clear()

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()


def _unreachable(exc: BaseException) -> BrokerError:
    return BrokerError(
        f"The broker behind this worker is not answering: {exc!r}", ErrorCode.BROKER_NOT_AVAILABLE
    )
