"""Replica fetches over the fetch stream (a WebSocket per follower and leader), on real
aiohttp servers on 127.0.0.1: the answers, errors, the POST fallback, and what happens when
the leader goes away or does not answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kbroker.api import internal
from kbroker.api.errors import error_middleware
from kbroker.api.services import SERVICES
from kbroker.errors import BrokerError, ErrorCode
from kbroker.replication.endpoint import (
    FETCH_PATH,
    FETCH_STREAM_PATH,
    FetchedPartition,
    FetchPartition,
    FetchRequest,
    HttpLeaderEndpoint,
)

REQUEST = FetchRequest(
    replica_id=2,
    max_wait_ms=50,
    max_bytes=1 << 20,
    partitions=[FetchPartition(topic="t", partition=0, fetch_offset=7, leader_epoch=3)],
)


class _Replicas:
    """The leader side: answers each fetch with ``answer(request)``, counting them."""

    def __init__(self, answer: Callable[[FetchRequest], Awaitable[list[FetchedPartition]]]):
        self.answer = answer
        self.requests: list[FetchRequest] = []

    async def fetch_for_follower(self, request: FetchRequest) -> list[FetchedPartition]:
        self.requests.append(request)
        return await self.answer(request)


async def _batches(request: FetchRequest) -> list[FetchedPartition]:
    ask = request.partitions[0]
    return [
        FetchedPartition(
            topic=ask.topic,
            partition=ask.partition,
            error_code=None,
            high_watermark=ask.fetch_offset,
            log_start_offset=0,
            log_end_offset=ask.fetch_offset + 2,
            data=b"batch-bytes-%d" % ask.fetch_offset,
        )
    ]


def _leader_app(replicas: _Replicas, *middlewares: Any) -> web.Application:
    app = web.Application(middlewares=[error_middleware, *middlewares])
    app[SERVICES] = SimpleNamespace(
        config=SimpleNamespace(max_request_bytes=1 << 20, replica_fetch_wait_max_ms=500),
        replicas=replicas,
    )
    internal.install(app)
    return app


class _Leader:
    def __init__(self, server: TestServer, replicas: _Replicas, upgrades: list[int]) -> None:
        self.server = server
        self.replicas = replicas
        self.upgrades = upgrades
        self.url = str(server.make_url("")).rstrip("/")


async def _start(app: web.Application, replicas: _Replicas) -> _Leader:
    upgrades: list[int] = []

    async def count_upgrades(request: web.Request, response: web.StreamResponse) -> None:
        if request.path == FETCH_STREAM_PATH:
            upgrades.append(response.status)

    app.on_response_prepare.append(count_upgrades)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return _Leader(server, replicas, upgrades)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def leader() -> AsyncIterator[_Leader]:
    replicas = _Replicas(_batches)
    started = await _start(_leader_app(replicas), replicas)
    yield started
    await started.server.close()


def _endpoint(session: aiohttp.ClientSession, leader: _Leader, timeout_ms: int = 2000) -> Any:
    return HttpLeaderEndpoint(session, lambda: leader.url, timeout_ms=timeout_ms)


async def test_fetches_share_one_stream_and_get_the_leaders_answers(
    session: aiohttp.ClientSession, leader: _Leader
) -> None:
    endpoint = _endpoint(session, leader)
    answers = [await endpoint.fetch(REQUEST) for _ in range(3)]
    assert [bytes(a[0].data) for a in answers] == [b"batch-bytes-7"] * 3
    assert answers[0][0].log_end_offset == 9 and answers[0][0].high_watermark == 7
    assert len(leader.replicas.requests) == 3
    assert leader.replicas.requests[0] == REQUEST
    assert leader.upgrades == [101]  # one upgrade for the three fetches
    await endpoint.close()


async def test_a_failed_fetch_raises_the_leaders_error_and_keeps_the_stream(
    session: aiohttp.ClientSession,
) -> None:
    calls = 0

    async def fenced_once(request: FetchRequest) -> list[FetchedPartition]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise BrokerError("broker 1 is fenced", ErrorCode.NOT_LEADER)
        return await _batches(request)

    replicas = _Replicas(fenced_once)
    leader = await _start(_leader_app(replicas), replicas)
    try:
        endpoint = _endpoint(session, leader)
        with pytest.raises(BrokerError) as raised:
            await endpoint.fetch(REQUEST)
        assert raised.value.code == ErrorCode.NOT_LEADER
        assert "fenced" in raised.value.message
        assert bytes((await endpoint.fetch(REQUEST))[0].data) == b"batch-bytes-7"
        assert leader.upgrades == [101]
        await endpoint.close()
    finally:
        await leader.server.close()


async def test_a_leader_that_refuses_the_upgrade_is_fetched_from_with_the_post(
    session: aiohttp.ClientSession,
) -> None:
    """An older broker, or one behind HTTP workers (which relay HTTP only): the POST."""
    posts: list[str] = []

    @web.middleware
    async def no_upgrades(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path == FETCH_STREAM_PATH:
            raise web.HTTPNotFound()
        posts.append(request.path)
        return await handler(request)

    replicas = _Replicas(_batches)
    leader = await _start(_leader_app(replicas, no_upgrades), replicas)
    try:
        endpoint = _endpoint(session, leader)
        for _ in range(2):
            assert bytes((await endpoint.fetch(REQUEST))[0].data) == b"batch-bytes-7"
        assert posts == [FETCH_PATH, FETCH_PATH]
        assert len(replicas.requests) == 2
        assert leader.upgrades == [404]  # asked once, then remembered
    finally:
        await leader.server.close()


async def test_the_stream_without_an_upgrade_is_a_clear_client_error(
    session: aiohttp.ClientSession, leader: _Leader
) -> None:
    async with session.get(leader.url + FETCH_STREAM_PATH) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error_code"] == ErrorCode.MALFORMED_REQUEST
    assert "WebSocket" in body["message"]


async def test_shutdown_closes_open_streams_and_the_follower_reconnects(
    session: aiohttp.ClientSession,
) -> None:
    """The leader's on_shutdown closes its streams (aiohttp would otherwise wait out its
    shutdown timeout for them); the follower's next fetch fails retriably, the one after
    opens a new stream to whatever answers at the URL then."""
    replicas = _Replicas(_batches)
    leader = await _start(_leader_app(replicas), replicas)
    endpoint = _endpoint(session, leader)
    assert (await endpoint.fetch(REQUEST))[0].data
    url = leader.url
    await asyncio.wait_for(leader.server.close(), 10)  # not aiohttp's 60 s shutdown timeout
    with pytest.raises(BrokerError) as raised:
        await endpoint.fetch(REQUEST)
    assert raised.value.code == ErrorCode.BROKER_NOT_AVAILABLE

    again = _Replicas(_batches)
    port = int(url.rsplit(":", 1)[1])
    app = _leader_app(again)
    restarted = TestServer(app, host="127.0.0.1", port=port)
    await restarted.start_server()
    try:
        assert bytes((await endpoint.fetch(REQUEST))[0].data) == b"batch-bytes-7"
        assert len(again.requests) == 1
        await endpoint.close()
    finally:
        await restarted.close()


async def test_a_leader_that_does_not_answer_fails_the_fetch_and_drops_the_stream(
    session: aiohttp.ClientSession,
) -> None:
    hang = asyncio.Event()

    async def never(request: FetchRequest) -> list[FetchedPartition]:
        await hang.wait()
        return await _batches(request)

    replicas = _Replicas(never)
    leader = await _start(_leader_app(replicas), replicas)
    try:
        endpoint = _endpoint(session, leader, timeout_ms=100)
        with pytest.raises(BrokerError) as raised:
            await endpoint.fetch(REQUEST)
        assert raised.value.code == ErrorCode.BROKER_NOT_AVAILABLE
        assert endpoint._stream is None  # the next fetch opens a new stream
        hang.set()
        assert bytes((await endpoint.fetch(REQUEST))[0].data) == b"batch-bytes-7"
        assert leader.upgrades == [101, 101]
        await endpoint.close()
    finally:
        await leader.server.close()


async def test_close_closes_the_stream(session: aiohttp.ClientSession, leader: _Leader) -> None:
    endpoint = _endpoint(session, leader)
    await endpoint.fetch(REQUEST)
    stream = endpoint._stream
    await endpoint.close()
    assert stream is not None and stream.closed
    await endpoint.close()  # twice is fine
