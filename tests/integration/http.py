"""Blocking HTTP helpers for integration tests (real sockets to real brokers)."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

JSON_V2 = "application/vnd.kafka.json.v2+json"


def request(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; the body is sent exactly as given."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path or "/", body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def produce(
    url: str,
    topic: str,
    records: list[dict[str, Any]],
    *,
    partition: int | None = None,
    content_type: str = JSON_V2,
    acks: str | None = None,
    query: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """(status, parsed answer or None when it has no body) of one produce request."""
    path = f"/topics/{topic}" + (f"/partitions/{partition}" if partition is not None else "")
    params = {**({"acks": acks} if acks is not None else {}), **(query or {})}
    if params:
        path += "?" + urlencode(params)
    status, _, payload = request(
        url + path,
        method="POST",
        body=orjson.dumps({"records": records}),
        headers={"Content-Type": content_type},
    )
    return status, orjson.loads(payload) if payload else None


def fetch_all(
    url: str,
    topic: str,
    partition: int,
    offset: int,
    count: int,
    *,
    accept: str = JSON_V2,
    max_bytes: int = 1 << 20,
) -> list[dict[str, Any]]:
    """Fetch ``count`` records from ``offset`` with the stateless endpoint (bounded loop)."""
    got: list[dict[str, Any]] = []
    position = offset
    for _ in range(10_000):
        if len(got) >= count:
            break
        status, _, payload = request(
            f"{url}/topics/{topic}/partitions/{partition}/records?offset={position}"
            f"&max_bytes={max_bytes}&timeout=1000",
            headers={"Accept": accept},
        )
        assert status == 200, payload
        batch = orjson.loads(payload)
        got.extend(batch)
        if batch:
            position = batch[-1]["offset"] + 1
    return got[:count] if len(got) >= count else got


def cluster_id(url: str) -> str:
    _, _, payload = request(url + "/v3/clusters")
    return str(orjson.loads(payload)["data"][0]["cluster_id"])


def create_topic(
    url: str,
    name: str,
    *,
    partitions: int = 1,
    replication_factor: int = 1,
    configs: Mapping[str, str] | None = None,
) -> Any:
    body = {
        "topic_name": name,
        "partitions_count": partitions,
        "replication_factor": replication_factor,
        "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()],
    }
    status, _, payload = request(
        f"{url}/v3/clusters/{cluster_id(url)}/topics",
        method="POST",
        body=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    assert status == 201, payload
    return orjson.loads(payload)


class QueuedRequest:
    """A GET sent to a server that may be stopped (SIGSTOP): the kernel accepts and buffers it,
    and the server answers once it runs again. ``answer()`` reads that answer to the end."""

    def __init__(self, url: str, path: str) -> None:
        parts = urlsplit(url)
        self._sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        self._sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())

    def answer(self) -> tuple[int, Any]:
        """(HTTP status, parsed JSON body)."""
        with self._sock:
            answer = b""
            while chunk := self._sock.recv(65536):
                answer += chunk
        head, _, payload = answer.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), orjson.loads(payload)
