"""How a follower talks to a leader: the replica fetch and epoch-end-offset exchanges.

The :class:`LeaderEndpoint` protocol is what the fetcher uses; :class:`HttpLeaderEndpoint`
implements it over kbroker's internal HTTP endpoints and tests substitute an in-memory one.

Replica fetch wire format (``POST /internal/v1/replica/fetch``):

* request: JSON ``{"replica_id", "max_wait_ms", "max_bytes", "partitions": [{"topic",
  "partition", "fetch_offset", "leader_epoch"}]}``;
* response (``application/octet-stream``): a 4-byte big-endian length, that many bytes of JSON
  ``{"partitions": [{"topic", "partition", "error_code", "high_watermark",
  "log_start_offset", "log_end_offset", "size"}]}``, then each partition's ``size`` bytes of
  whole stored batches, in the same order. The batches are the leader's log bytes, untouched:
  no per-record parsing on either side.

Followers send their fetches over a WebSocket (``GET /internal/v1/replica/fetch-stream``): one
per follower and leader, each request a binary message with the JSON above, each answer a
binary message in the format above, or a text message with the error body when the request
failed. A leader that refuses the upgrade (an older broker, or one behind HTTP worker
processes, which relay HTTP only) is fetched from with the POST, which stays the reference.

Epoch end offsets (``POST /internal/v1/replica/epoch-end-offsets``, KIP-101/279): JSON
``{"partitions": [{"topic", "partition", "leader_epoch"}]}`` answered with
``{"partitions": [{"topic", "partition", "error_code", "leader_epoch", "end_offset"}]}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiohttp
import orjson

from kbroker.errors import BrokerError, ErrorCode

__all__ = [
    "FETCH_PATH",
    "FETCH_STREAM_PATH",
    "OFFSETS_FOR_EPOCH_PATH",
    "EpochEndOffset",
    "FetchPartition",
    "FetchRequest",
    "FetchedPartition",
    "HttpLeaderEndpoint",
    "LeaderEndpoint",
    "decode_fetch_response",
    "encode_fetch_response",
]

log = logging.getLogger(__name__)

FETCH_PATH: Final = "/internal/v1/replica/fetch"
FETCH_STREAM_PATH: Final = "/internal/v1/replica/fetch-stream"
OFFSETS_FOR_EPOCH_PATH: Final = "/internal/v1/replica/epoch-end-offsets"
_LENGTH: Final = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class FetchPartition:
    topic: str
    partition: int
    fetch_offset: int
    leader_epoch: int


@dataclass(frozen=True, slots=True)
class FetchRequest:
    replica_id: int
    max_wait_ms: int
    max_bytes: int
    partitions: Sequence[FetchPartition]

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "replica_id": self.replica_id,
                "max_wait_ms": self.max_wait_ms,
                "max_bytes": self.max_bytes,
                "partitions": [
                    {
                        "topic": p.topic,
                        "partition": p.partition,
                        "fetch_offset": p.fetch_offset,
                        "leader_epoch": p.leader_epoch,
                    }
                    for p in self.partitions
                ],
            }
        )

    @classmethod
    def from_json(cls, body: bytes) -> FetchRequest:
        try:
            doc = orjson.loads(body)
            return cls(
                replica_id=int(doc["replica_id"]),
                max_wait_ms=int(doc["max_wait_ms"]),
                max_bytes=int(doc["max_bytes"]),
                partitions=[
                    FetchPartition(
                        topic=str(p["topic"]),
                        partition=int(p["partition"]),
                        fetch_offset=int(p["fetch_offset"]),
                        leader_epoch=int(p["leader_epoch"]),
                    )
                    for p in doc["partitions"]
                ],
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise BrokerError(
                f"bad replica fetch request: {exc}", ErrorCode.INVALID_PAYLOAD
            ) from exc


@dataclass(frozen=True, slots=True)
class FetchedPartition:
    """One partition of a fetch response. ``data`` is empty when ``error_code`` is set."""

    topic: str
    partition: int
    error_code: int | None
    high_watermark: int
    log_start_offset: int
    log_end_offset: int
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class EpochEndOffset:
    """A leader's answer for one partition: the largest epoch <= the one asked, and its end."""

    error_code: int | None
    leader_epoch: int
    end_offset: int


def encode_fetch_response(parts: Sequence[FetchedPartition]) -> list[bytes | memoryview]:
    """Buffers to write, in order (header length, header, then each partition's batches)."""
    header = orjson.dumps(
        {
            "partitions": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "error_code": p.error_code,
                    "high_watermark": p.high_watermark,
                    "log_start_offset": p.log_start_offset,
                    "log_end_offset": p.log_end_offset,
                    "size": len(p.data),
                }
                for p in parts
            ]
        }
    )
    return [_LENGTH.pack(len(header)), header, *(p.data for p in parts if p.data)]


def decode_fetch_response(body: bytes) -> list[FetchedPartition]:
    """Parse a fetch response; the data fields are zero-copy views into ``body``."""
    view = memoryview(body)
    try:
        (length,) = _LENGTH.unpack_from(view, 0)
        header = orjson.loads(view[4 : 4 + length])
        position = 4 + length
        out = []
        for p in header["partitions"]:
            size = int(p["size"])
            out.append(
                FetchedPartition(
                    topic=p["topic"],
                    partition=p["partition"],
                    error_code=p["error_code"],
                    high_watermark=p["high_watermark"],
                    log_start_offset=p["log_start_offset"],
                    log_end_offset=p["log_end_offset"],
                    data=view[position : position + size],
                )
            )
            position += size
    except (struct.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BrokerError(
            f"bad replica fetch response: {exc}", ErrorCode.BROKER_NOT_AVAILABLE
        ) from exc
    if position != len(body):
        raise BrokerError(
            "replica fetch response has trailing bytes", ErrorCode.BROKER_NOT_AVAILABLE
        )
    return out


class LeaderEndpoint(Protocol):
    """The leader side as a follower sees it."""

    async def fetch(self, request: FetchRequest) -> list[FetchedPartition]: ...

    async def epoch_end_offsets(
        self, requests: Sequence[tuple[str, int, int]]
    ) -> dict[tuple[str, int], EpochEndOffset]:
        """For each (topic, partition, leader_epoch) the leader's end offset of that epoch."""
        ...

    async def close(self) -> None:
        """Release what the endpoint holds open (its fetcher has stopped)."""
        ...


class HttpLeaderEndpoint:
    """LeaderEndpoint over HTTP to the broker whose URL ``url_of()`` returns at call time.

    Fetches go over a fetch stream (module docstring) to that URL, opened on first use and
    again after any failure; a leader URL that refuses the upgrade is fetched from with the
    POST for the rest of this endpoint's life. Concurrency: one fetch at a time (the fetcher's
    task), on the event loop; epoch-end-offsets requests may run beside it (plain POSTs).
    """

    def __init__(
        self, session: aiohttp.ClientSession, url_of: Callable[[], str], timeout_ms: int
    ) -> None:
        self._session = session
        self._url_of = url_of
        self._timeout = timeout_ms / 1000
        self._stream: aiohttp.ClientWebSocketResponse | None = None
        self._stream_url = ""
        self._refused: set[str] = set()

    async def _post(self, path: str, body: bytes, wait_ms: int) -> bytes:
        url = self._url_of() + path
        timeout = aiohttp.ClientTimeout(total=self._timeout + wait_ms / 1000)
        try:
            async with self._session.post(
                url, data=body, timeout=timeout, headers={"Content-Type": "application/json"}
            ) as resp:
                payload = await resp.read()
                if resp.status != 200:
                    raise _error_from(resp.status, payload)
                return payload
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BrokerError(
                f"leader at {url} unreachable: {exc!r}", ErrorCode.BROKER_NOT_AVAILABLE
            ) from exc

    async def fetch(self, request: FetchRequest) -> list[FetchedPartition]:
        url = self._url_of()
        stream = None if url in self._refused else await self._open_stream(url)
        if stream is None:
            body = await self._post(FETCH_PATH, request.to_json(), request.max_wait_ms)
            return decode_fetch_response(body)
        try:
            await stream.send_bytes(request.to_json())
            msg = await stream.receive(timeout=self._timeout + request.max_wait_ms / 1000)
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            await self.close()
            raise BrokerError(
                f"leader at {url} unreachable: {exc!r}", ErrorCode.BROKER_NOT_AVAILABLE
            ) from exc
        if msg.type is aiohttp.WSMsgType.BINARY:
            return decode_fetch_response(msg.data)
        if msg.type is aiohttp.WSMsgType.TEXT:
            raise _error_from(0, msg.data.encode())
        await self.close()
        raise BrokerError(
            f"leader at {url} closed the fetch stream", ErrorCode.BROKER_NOT_AVAILABLE
        )

    async def _open_stream(self, url: str) -> aiohttp.ClientWebSocketResponse | None:
        """The stream to ``url``, opened if need be; None once ``url`` refused the upgrade."""
        if self._stream is not None and not self._stream.closed and self._stream_url == url:
            return self._stream
        await self.close()
        try:
            connecting = self._session.ws_connect(
                url + FETCH_STREAM_PATH,
                timeout=aiohttp.ClientWSTimeout(ws_close=1.0),
                max_msg_size=0,  # answers are bounded by the request's max_bytes (trusted peer)
                compress=0,
            )
            self._stream = await asyncio.wait_for(connecting, self._timeout)
        except aiohttp.WSServerHandshakeError as exc:
            log.info("leader at %s refused a fetch stream (HTTP %s); using POST", url, exc.status)
            self._refused.add(url)
            return None
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            raise BrokerError(
                f"leader at {url} unreachable: {exc!r}", ErrorCode.BROKER_NOT_AVAILABLE
            ) from exc
        self._stream_url = url
        return self._stream

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.close()

    async def epoch_end_offsets(
        self, requests: Sequence[tuple[str, int, int]]
    ) -> dict[tuple[str, int], EpochEndOffset]:
        body = orjson.dumps(
            {
                "partitions": [
                    {"topic": t, "partition": p, "leader_epoch": e} for t, p, e in requests
                ]
            }
        )
        doc = orjson.loads(await self._post(OFFSETS_FOR_EPOCH_PATH, body, 0))
        return {
            (p["topic"], p["partition"]): EpochEndOffset(
                error_code=p["error_code"],
                leader_epoch=p["leader_epoch"],
                end_offset=p["end_offset"],
            )
            for p in doc["partitions"]
        }


def _error_from(status: int, payload: bytes) -> BrokerError:
    try:
        doc: Any = orjson.loads(payload)
        return BrokerError(str(doc["message"]), ErrorCode(doc["error_code"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return BrokerError(f"HTTP {status} from leader", ErrorCode.BROKER_NOT_AVAILABLE)
