"""The worker link (kbroker.api.worker_link): a real LinkServer and LinkClient on a Unix socket
in one event loop, with a dispatch function standing in for the broker's calls."""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from kbroker.api import worker_link
from kbroker.api.worker_link import RING_SLOT_BYTES, Answer, LinkClient, LinkServer, Op
from kbroker.errors import BrokerError, ErrorCode

Seen = list[tuple[Op, dict[str, Any], bytes, bool]]


def _echo(seen: Seen) -> Callable[..., Any]:
    """A dispatch that records each call (op, meta, data, whether data was a ring view) and
    answers with the data, after a random pause (so that answers come out of order)."""

    async def dispatch(op: Op, meta: dict[str, Any], data: bytes | memoryview) -> Answer:
        seen.append((op, dict(meta), bytes(data), isinstance(data, memoryview)))
        await asyncio.sleep(random.random() / 100)
        return 200, {"X-Echo": str(meta.get("n"))}, bytes(data)

    return dispatch


@asynccontextmanager
async def _link(
    tmp_path: Path, dispatch: Callable[..., Any], **client: Any
) -> AsyncIterator[tuple[asyncio.AbstractServer, LinkClient, list[LinkServer]]]:
    path = str(tmp_path / "link.sock")
    servers: list[LinkServer] = []

    def serve() -> LinkServer:
        servers.append(LinkServer(dispatch))
        return servers[-1]

    server = await asyncio.get_running_loop().create_unix_server(serve, path)
    link = LinkClient(path, **client)
    try:
        yield server, link, servers
    finally:
        link.close()
        server.close()
        await server.wait_closed()


def _pieces(data: bytes, i: int) -> bytes | list[bytes | memoryview]:
    """Every other call's data as parts (bytes and views, as a worker's frames are)."""
    if i % 2 == 0:
        return data
    cuts = sorted(random.sample(range(len(data) + 1), min(3, len(data) + 1)))
    bounds = [0, *cuts, len(data)]
    view = memoryview(data)
    return [
        bytes(view[a:b]) if k % 2 else view[a:b]
        for k, (a, b) in enumerate(itertools.pairwise(bounds))
    ]


async def test_concurrent_calls_get_their_own_answers_through_the_ring(tmp_path: Path) -> None:
    seen: Seen = []
    async with _link(tmp_path, _echo(seen)) as (_, link, _servers):
        await link.call(Op.BATCHES, {"n": -1})  # connected: the 100 calls below start at once
        seen.clear()
        payloads = [random.randbytes(random.randrange(1, 200_000)) for _ in range(100)]
        answers = await asyncio.gather(
            *(link.call(Op.APPEND, {"n": i}, _pieces(data, i)) for i, data in enumerate(payloads))
        )
        assert link.ring_mapped
    for i, (status, headers, body) in enumerate(answers):
        assert (status, headers, body) == (200, {"X-Echo": str(i)}, payloads[i])
    by_n = {meta["n"]: (data, view) for _, meta, data, view in seen}
    assert all(by_n[i][0] == payloads[i] for i in range(100))
    # 32 slots, 100 calls at once: the first ones through the ring, the rest inline.
    assert sum(view for _, view in by_n.values()) == worker_link.RING_SLOTS
    assert all("@ring" not in meta for _, meta, _, _ in seen), "the slot is the link's business"


async def test_a_slot_is_free_again_after_its_answer(tmp_path: Path) -> None:
    seen: Seen = []
    async with _link(tmp_path, _echo(seen)) as (_, link, _servers):
        for i in range(3 * worker_link.RING_SLOTS):
            data = bytes([i % 256]) * 1000
            assert (await link.call(Op.APPEND, {"n": i}, data))[2] == data
    assert all(view for *_, view in seen), "one call at a time: every one through the ring"


async def test_data_larger_than_a_slot_goes_inline(tmp_path: Path) -> None:
    seen: Seen = []
    async with _link(tmp_path, _echo(seen)) as (_, link, _servers):
        data = random.randbytes(RING_SLOT_BYTES + 1)
        assert (await link.call(Op.APPEND, {"n": 1}, data))[2] == data
    assert seen[0][2:] == (data, False)


async def test_without_a_ring_every_call_goes_inline(tmp_path: Path) -> None:
    seen: Seen = []
    async with _link(tmp_path, _echo(seen), ring=False) as (_, link, _servers):
        assert (await link.call(Op.BATCHES, {"n": 1}, b"abc"))[2] == b"abc"
        assert not link.ring_mapped
    assert seen == [(Op.BATCHES, {"n": 1}, b"abc", False)]


async def test_a_ring_the_broker_cannot_map_means_inline_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hello = worker_link._Ring.hello
    monkeypatch.setattr(worker_link._Ring, "hello", lambda self: {**hello(self), "fd": 999_999})
    seen: Seen = []
    async with _link(tmp_path, _echo(seen)) as (_, link, _servers):
        assert (await link.call(Op.APPEND, {"n": 1}, b"data"))[2] == b"data"
        assert not link.ring_mapped
    assert seen == [(Op.APPEND, {"n": 1}, b"data", False)]


async def test_errors_are_answered_as_confluent_error_bodies(tmp_path: Path) -> None:
    async def dispatch(op: Op, meta: dict[str, Any], data: bytes | memoryview) -> Answer:
        if meta["fail"] == "broker":
            raise BrokerError("no such topic", ErrorCode.UNKNOWN_TOPIC)
        raise RuntimeError("a bug")

    async with _link(tmp_path, dispatch) as (_, link, _servers):
        status, headers, body = await link.call(Op.APPEND, {"fail": "broker"}, b"x")
        assert status == 404 and headers["Content-Type"] == "application/json"
        assert orjson.loads(body)["error_code"] == ErrorCode.UNKNOWN_TOPIC
        status, _, body = await link.call(Op.APPEND, {"fail": "bug"}, b"x")
        assert status == 500 and orjson.loads(body)["error_code"] == ErrorCode.INTERNAL_ERROR


async def test_a_lost_connection_fails_waiting_calls_and_the_next_call_gets_a_new_ring(
    tmp_path: Path,
) -> None:
    started = asyncio.Event()

    async def dispatch(op: Op, meta: dict[str, Any], data: bytes | memoryview) -> Answer:
        if meta.get("hang"):
            started.set()
            await asyncio.sleep(3600)
        return 200, {}, bytes(data)

    async with _link(tmp_path, dispatch) as (_, link, servers):
        waiting = asyncio.ensure_future(link.call(Op.APPEND, {"hang": True}, b"slot data"))
        await started.wait()
        first_ring = link._ring
        assert first_ring is not None
        assert servers[0].transport is not None
        servers[0].transport.close()
        with pytest.raises(BrokerError) as failed:
            await waiting
        assert failed.value.code is ErrorCode.BROKER_NOT_AVAILABLE and failed.value.retriable
        assert (await link.call(Op.APPEND, {}, b"again"))[2] == b"again"
        assert len(servers) == 2, "a new connection"
        assert link._ring is not None and link._ring is not first_ring
        assert first_ring.memory.closed, "the old ring is never written again"


async def test_a_broker_that_is_not_there_is_a_retriable_error(tmp_path: Path) -> None:
    link = LinkClient(str(tmp_path / "nobody.sock"))
    with pytest.raises(BrokerError) as failed:
        await link.call(Op.APPEND, {}, b"x")
    assert failed.value.code is ErrorCode.BROKER_NOT_AVAILABLE


class _Frames(worker_link._FrameProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[tuple[int, int, bytes, bytes]] = []

    def frame_received(self, call: int, code: int, meta: bytes, data: bytes) -> None:
        self.frames.append((call, code, meta, data))


def _frame(call: int, code: int, meta: bytes, data: bytes) -> bytes:
    return struct.pack(">IIII", call, code, len(meta), len(data)) + meta + data


@pytest.mark.parametrize("chunk", [1, 7, 16, 1000, 1 << 20])
def test_frames_are_split_out_of_any_chunking(chunk: int) -> None:
    sent = [
        (i, i % 3, b'{"i":%d}' % i, random.randbytes(random.randrange(0, 5000))) for i in range(50)
    ]
    stream = b"".join(_frame(*f) for f in sent)
    protocol = _Frames()
    for start in range(0, len(stream), chunk):
        protocol.data_received(stream[start : start + chunk])
    assert protocol.frames == sent


def test_a_frame_beyond_the_limit_closes_the_connection() -> None:
    class Transport:
        closed = False

        def close(self) -> None:
            self.closed = True

    protocol = _Frames()
    transport = Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(struct.pack(">IIII", 1, 1, 0, worker_link.MAX_FRAME_BYTES))
    assert transport.closed and protocol.frames == []


def test_a_retired_ring_closes_only_when_its_last_slot_comes_back() -> None:
    """A lost connection retires its ring, but a call whose answer arrived just before the
    loss still reads its slot: the ring closes when that call gives the slot back."""
    ring = worker_link._Ring()
    slot = ring.put([b"answer"])
    ring.retire()
    assert not ring.memory.closed
    with ring.view(slot, 6) as view:
        assert bytes(view) == b"answer"
    ring.give_back([slot])
    assert ring.memory.closed
