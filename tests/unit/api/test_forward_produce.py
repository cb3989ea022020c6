"""A produce forwarded to the leader while the leader moves: the leader's own answer wins if it
comes within the grace, else the outcome is indeterminate (``after_append``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp import web

from kbroker.api import produce
from kbroker.api.services import Services
from kbroker.errors import BrokerError, ErrorCode


@dataclass
class _Partition:
    leader: int


class _Metadata:
    def partition(self, _topic: str, _partition: int) -> _Partition:
        return _Partition(leader=1)


class _LeaderMoved:
    """Services whose metadata shows the partition's leader moved as soon as anyone asks."""

    metadata = _Metadata()

    config = SimpleNamespace(produce_timeout_ms=30_000)

    async def wait_for_metadata(self, _predicate: Any, _timeout: float) -> bool:
        return True


async def _answer_after(seconds: float) -> web.Response:
    await asyncio.sleep(seconds)
    return web.Response(status=503, text="shutting down: nothing written")


async def test_the_old_leaders_answer_within_the_grace_is_returned() -> None:
    services = cast(Services, _LeaderMoved())
    forwarded = _answer_after(0.05)  # the metadata update arrived first
    response = await produce._unless_leader_moves(services, "t", 0, forwarded)
    assert response.status == 503 and response.text == "shutting down: nothing written"


async def test_no_answer_within_the_grace_is_indeterminate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(produce, "LEADER_MOVED_GRACE_S", 0.05)
    services = cast(Services, _LeaderMoved())
    with pytest.raises(BrokerError) as raised:
        await produce._unless_leader_moves(services, "t", 0, _answer_after(10))
    assert raised.value.code == ErrorCode.NOT_LEADER and raised.value.after_append
