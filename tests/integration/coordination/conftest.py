"""Fixtures of the coordination tests: started clients on the shared ensemble."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import pytest

from kbroker.coordination import ZooKeeperClient

SESSION_TIMEOUT_MS = 3000
"""Small, so that expiry-driven tests are fast (the test ensembles allow 1-60 s)."""


class ClientFactory(Protocol):
    async def __call__(
        self,
        connect: str,
        *,
        session_timeout_ms: int = SESSION_TIMEOUT_MS,
        request_timeout_s: float | None = None,
        fence_ratio: float = 2 / 3,
        create_chroot: bool = True,
    ) -> ZooKeeperClient: ...


@pytest.fixture
async def zk_client_factory() -> AsyncIterator[ClientFactory]:
    """Start ZooKeeperClients that are closed at teardown: ``await factory(connect, ...)``."""
    clients: list[ZooKeeperClient] = []

    async def factory(
        connect: str,
        *,
        session_timeout_ms: int = SESSION_TIMEOUT_MS,
        request_timeout_s: float | None = None,
        fence_ratio: float = 2 / 3,
        create_chroot: bool = True,
    ) -> ZooKeeperClient:
        client = ZooKeeperClient(
            connect,
            session_timeout_ms=session_timeout_ms,
            request_timeout_s=request_timeout_s,
            fence_ratio=fence_ratio,
            create_chroot=create_chroot,
        )
        clients.append(client)
        await client.start(15)
        return client

    yield factory
    for client in reversed(clients):
        await client.close()


@pytest.fixture
async def zk(zk_connect: str, zk_client_factory: ClientFactory) -> ZooKeeperClient:
    """A connected client on the shared 3-node ensemble, chrooted to this test's chroot."""
    return await zk_client_factory(zk_connect)
