"""kbroker.api.listener on real sockets: a stop serves what the kernel already accepted."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from kbroker.api import listener as listener_module
from kbroker.api.listener import ClientListener, accept_queue_length, drop_new_handshakes

REQUEST = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"


async def _answer(request: web.Request) -> web.Response:
    return web.Response(text=f"got {(await request.read()).decode()}")


@pytest.fixture
async def runner() -> AsyncIterator[web.AppRunner]:
    app = web.Application()
    app.router.add_post("/", _answer)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    yield runner
    await runner.cleanup()


def _queue_requests(port: int, count: int) -> list[socket.socket]:
    """Connections that sent a request and wait in the accept queue: called without yielding
    to the event loop, so the server cannot have accepted them yet."""
    clients = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sendall(REQUEST)
        clients.append(client)
    return clients


def _read_answer(client: socket.socket) -> bytes:
    with client:
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


async def _answers(clients: list[socket.socket]) -> list[bytes | BaseException]:
    return await asyncio.gather(
        *(asyncio.to_thread(_read_answer, c) for c in clients), return_exceptions=True
    )


async def test_a_stop_serves_the_connections_the_kernel_already_accepted(
    runner: web.AppRunner,
) -> None:
    listener = ClientListener(runner, "127.0.0.1:0")
    await listener.start()
    port = runner.addresses[0][1]
    clients = _queue_requests(port, 8)
    await listener.stop()
    answers = await _answers(clients)
    assert all(isinstance(a, bytes) and a.startswith(b"HTTP/1.1 200") for a in answers), answers
    assert all(isinstance(a, bytes) and a.endswith(b"got hi") for a in answers)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


async def test_without_the_filter_a_stop_resets_the_queued_connections(
    runner: web.AppRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the filter exists: the plain close this falls back to resets every queued
    connection, whose client cannot know whether its request was served."""
    monkeypatch.setattr(listener_module, "drop_new_handshakes", lambda sock: False)
    listener = ClientListener(runner, "127.0.0.1:0")
    await listener.start()
    clients = _queue_requests(runner.addresses[0][1], 4)
    await listener.stop()
    answers = await _answers(clients)
    assert all(isinstance(a, ConnectionResetError) for a in answers), answers


def test_a_filtered_listener_starts_no_handshake_but_keeps_its_queue() -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=8) as server:
        port = server.getsockname()[1]
        queued = socket.create_connection(("127.0.0.1", port), timeout=5)
        queued.sendall(b"before")
        assert accept_queue_length(server) == 1
        assert drop_new_handshakes(server)
        with pytest.raises(TimeoutError):
            socket.create_connection(("127.0.0.1", port), timeout=0.3)
        accepted, _ = server.accept()
        assert accept_queue_length(server) == 0
        queued.sendall(b" and after")
        with accepted, queued:
            assert accepted.recv(6) == b"before"
            assert accepted.recv(64) == b" and after"
