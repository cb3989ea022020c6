"""The client port's listening sockets, and closing them without resetting a connection.

Closing a listening socket resets every connection in its accept queue. The kernel completed
those handshakes, so their clients may already have sent a request, and they get
``ECONNRESET`` (aiohttp: ``ClientOSError``): a produce that failed ambiguously, which a client
without idempotence cannot safely retry. A broker that drains its connections gracefully
(SIGTERM, controlled shutdown) must not do that. :meth:`ClientListener.stop` closes in three
steps:

1. a classic BPF filter on each socket drops incoming SYNs, so the kernel starts no new
   handshake. A client that connects from here waits for its SYN retransmission (1 s on
   Linux); by then the socket is closed and it is refused, which it knows is safe to retry;
2. the event loop goes on accepting until the kernel reports an empty accept queue
   (``TCP_INFO``), bounded by a timeout; the connections accepted here are served like any
   other;
3. the sockets are closed.

What is left is a handshake whose SYN arrived before step 1 and whose final ACK after it:
microseconds on a local network. Without the filter (a platform without ``SO_ATTACH_FILTER``)
the stop is a plain close.

Concurrency: one event loop; :meth:`ClientListener.stop` may run once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import socket
import struct
from typing import Final

from aiohttp import web

__all__ = ["ClientListener", "accept_queue_length", "drop_new_handshakes"]

SO_ATTACH_FILTER: Final = 26  # Linux, <asm-generic/socket.h>
_TCP_FLAGS_OFFSET: Final = 13  # a socket filter on TCP sees the packet from its TCP header
_SYN: Final = 0x02
_TCP_INFO_LEN: Final = 104
_TCPI_UNACKED_OFFSET: Final = 24  # struct tcp_info; for a listener: its accept queue length
_POLL_S: Final = 0.005


class _SockFilter(ctypes.Structure):
    """``struct sock_filter``: one classic BPF instruction."""

    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


def drop_new_handshakes(sock: socket.socket) -> bool:
    """Attach a filter that drops SYNs (packets with SYN set and ACK not: only a listener
    receives those); every other packet passes. False when the platform refuses it."""
    program = (_SockFilter * 4)(
        _SockFilter(0x30, 0, 0, _TCP_FLAGS_OFFSET),  # ldb [13]: the flags byte
        _SockFilter(0x45, 0, 1, _SYN),  # jset #SYN: drop, else accept
        _SockFilter(0x06, 0, 0, 0),  # ret #0: drop
        _SockFilter(0x06, 0, 0, 0xFFFFFFFF),  # ret #-1: the whole packet
    )
    fprog = struct.pack("HL", len(program), ctypes.addressof(program))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except (OSError, AttributeError):
        return False
    return True


def accept_queue_length(sock: socket.socket) -> int:
    """Connections the kernel accepted that the application has not yet: ``tcpi_unacked`` of
    a listening socket (Linux); 0 where ``TCP_INFO`` is not available."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except (OSError, AttributeError):
        return 0
    return int(struct.unpack_from("I", info, _TCPI_UNACKED_OFFSET)[0])


class ClientListener:
    """Listens on ``host:port`` (``[v6]:port`` too) for a runner: one socket per address the
    host resolves to, as ``loop.create_server`` binds them, optionally with SO_REUSEPORT so
    that several processes share the port."""

    def __init__(
        self,
        runner: web.BaseRunner,
        listen: str,
        *,
        reuse_port: bool = False,
        backlog: int = 1024,
    ) -> None:
        self._runner = runner
        host, _, port = listen.rpartition(":")
        self._host = host.strip("[]") or None
        self._port = int(port)
        self._reuse_port = reuse_port
        self._backlog = backlog
        self._sockets: list[socket.socket] = []
        self._sites: list[web.SockSite] = []

    async def start(self) -> None:
        infos = await asyncio.get_running_loop().getaddrinfo(
            self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if self._reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
            except OSError:
                sock.close()
                raise
            site = web.SockSite(self._runner, sock, backlog=self._backlog)
            await site.start()
            self._sockets.append(sock)
            self._sites.append(site)

    async def stop(self, timeout: float = 1.0) -> None:
        """Stop accepting without resetting a queued connection (see the module docstring).
        Open connections are not touched: they are the runner's to close."""
        if all(drop_new_handshakes(sock) for sock in self._sockets):
            # The queue's length is a kernel counter, with no event to wait on: polled.
            for _ in range(max(1, int(timeout / _POLL_S))):
                if not any(map(accept_queue_length, self._sockets)):
                    break
                await asyncio.sleep(_POLL_S)
        for site in self._sites:
            with contextlib.suppress(RuntimeError):  # already stopped by the runner
                await site.stop()
        self._sites.clear()
        self._sockets.clear()
