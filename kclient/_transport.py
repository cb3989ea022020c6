"""HTTP transport: one aiohttp session per client object, and error mapping.

Every response that is not 2xx becomes the :mod:`kclient.errors` class of its ``error_code``.
Connection failures become :class:`BrokerUnavailableError`; its ``after_append`` is false only
when the connection was never made (the request cannot have reached a broker).

Concurrency: a Transport belongs to one event loop; its methods are coroutines for that loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from kclient.errors import BrokerUnavailableError, ClosedError, error_from_body
from kclient.protocol import MEDIA_JSON

__all__ = ["Response", "Transport"]

_JSON_HEADERS: Final = {"Content-Type": MEDIA_JSON, "Accept": MEDIA_JSON}


class Response(NamedTuple):
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


class Transport:
    """Sends requests to broker URLs with one connection pool (see the module docstring)."""

    def __init__(
        self,
        *,
        request_timeout_ms: int = 30_000,
        client_id: str = "kclient",
        connections_per_host: int = 32,
    ) -> None:
        self.request_timeout = request_timeout_ms / 1000
        self._client_id = client_id
        self._connections = connections_per_host
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClosedError("the client is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=self._connections, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": f"kclient ({self._client_id})"},
                skip_auto_headers=("Accept-Encoding",),
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: bytes | bytearray | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """One request; raises BrokerUnavailableError when no answer came back."""
        session = self._get_session()
        limit = aiohttp.ClientTimeout(
            total=timeout if timeout is not None else self.request_timeout
        )
        try:
            async with session.request(
                method, url, params=params, data=body, headers=headers, timeout=limit
            ) as response:
                data = await response.read()
                return Response(response.status, response.headers, data)
        except aiohttp.ClientConnectorError as exc:
            raise BrokerUnavailableError(
                f"cannot connect to {_origin(url)}: {exc.os_error}"
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = (
                "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            )
            raise BrokerUnavailableError(
                f"{method} {_origin(url)}: {reason}", after_append=True
            ) from exc

    async def call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        timeout: float | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
    ) -> Any:
        """A JSON request: the parsed body of a success, else the matching BrokerError."""
        body = orjson.dumps(json) if json is not None else None
        response = await self.request(
            method, url, params=params, body=body, headers=_JSON_HEADERS, timeout=timeout
        )
        if response.status not in ok:
            raise error_of(response)
        return response.json()


def error_of(response: Response) -> Exception:
    try:
        body = response.json()
    except orjson.JSONDecodeError:
        body = None
    return error_from_body(response.status, body)


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"
