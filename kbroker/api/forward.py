"""Forwarding requests to the broker that can answer them (the partition leader).

Any broker accepts any request; one that does not lead the partition (or coordinate the group)
forwards it here, marked with ``X-KBroker-Forwarded`` so the receiver never forwards again, and
with ``X-Forwarded-Host`` so that the links it puts in its answer name the host the client
used. The answer is relayed as it came (status, headers but the hop-by-hop ones, body).

A failure to connect is retriable and safe (nothing was sent). A failure after the request was
sent is retriable but ambiguous for a produce: it is marked ``after_append`` so that nobody
retries it blindly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

import aiohttp
import orjson
from aiohttp import web

from kbroker.errors import BrokerError, ErrorCode
from kclient.protocol import (
    ACKS_HEADER,
    FORWARDED_HEADER,
    PRODUCER_EPOCH_HEADER,
    PRODUCER_ID_HEADER,
    SEQUENCE_HEADER,
)

__all__ = ["FORWARDED_HOST_HEADER", "HttpPeerClient", "original_host", "relayed"]

FORWARDED_HOST_HEADER: Final = "X-Forwarded-Host"
#: Headers that describe one connection, not the message: never relayed.
_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server", "host"}
)
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def relayed(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` without the hop-by-hop ones (what a relay passes on)."""
    return {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}


def original_host(request: web.Request) -> web.Request:
    """``request`` as its client sent it: a request relayed by a worker process or another
    broker names, in ``X-Forwarded-Host``, the host its client used, so that links in the answer
    (consumer base URIs, v3 ``self``) use it. A malformed value is ignored."""
    host = request.headers.get(FORWARDED_HOST_HEADER)
    if host is not None and _HOST.fullmatch(host):
        return request.clone(host=host)
    return request


_COPIED_HEADERS: Final = (
    "Content-Type",
    "Accept",
    ACKS_HEADER,
    PRODUCER_ID_HEADER,
    PRODUCER_EPOCH_HEADER,
    SEQUENCE_HEADER,
)


class HttpPeerClient:
    """Relays requests to peer brokers over one shared aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, *, timeout_ms: int) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)

    async def forward(
        self,
        request: web.Request,
        url: str,
        *,
        body: bytes | None = None,
        path: str | None = None,
    ) -> web.Response:
        """Send ``request`` (or ``body`` to ``path``) to the broker at ``url``."""
        target = url + (path if path is not None else request.path_qs)
        headers = {h: request.headers[h] for h in _COPIED_HEADERS if h in request.headers}
        if body is None and "Content-Encoding" in request.headers:
            # The body goes as it came, still encoded: the receiver decodes it (and answers
            # 415/400 as this broker would).
            headers["Content-Encoding"] = request.headers["Content-Encoding"]
        headers[FORWARDED_HEADER] = "1"
        headers[FORWARDED_HOST_HEADER] = request.host
        data = (
            body if body is not None else (await request.read() if request.can_read_body else None)
        )
        try:
            async with self._session.request(
                request.method, target, data=data, headers=headers, timeout=self._timeout
            ) as resp:
                payload = await resp.read()
                return web.Response(status=resp.status, body=payload, headers=relayed(resp.headers))
        except aiohttp.ClientConnectorError as exc:
            raise BrokerError(
                f"Broker at {url} is not reachable: {exc}", ErrorCode.BROKER_NOT_AVAILABLE
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BrokerError(
                f"Forwarding to {url} failed: {exc!r}",
                ErrorCode.BROKER_NOT_AVAILABLE,
                after_append=True,
            ) from exc

    async def get(self, url: str, path: str, *, timeout_s: float | None = None) -> bytes:
        """GET ``url + path`` from a peer broker: the body of a 200 answer."""
        timeout = self._timeout if timeout_s is None else aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self._session.get(url + path, timeout=timeout) as resp:
                payload = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BrokerError(
                f"Broker at {url} is not reachable: {exc!r}", ErrorCode.BROKER_NOT_AVAILABLE
            ) from exc
        if resp.status != 200:
            raise _error_of(
                resp.status, payload, f"Broker at {url} answered {resp.status} to {path}"
            )
        return payload


def _error_of(status: int, payload: bytes, fallback: str) -> BrokerError:
    """The BrokerError a peer's error body describes (or BROKER_NOT_AVAILABLE)."""
    try:
        doc = orjson.loads(payload)
        return BrokerError(
            str(doc["message"]),
            ErrorCode(doc["error_code"]),
            **{k: v for k, v in doc.items() if k not in ("message", "error_code", "retriable")},
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return BrokerError(fallback, ErrorCode.BROKER_NOT_AVAILABLE)
