"""Read a topic back through the stateless fetch endpoint with aiohttp (a Python client row).

One reader per partition, each fetching from the partition's start until it has read its share.
Readers advance with the ``X-KBroker-Next-Offset`` response header, so the client does no JSON
parsing: what is measured is the broker's rendering and serving of records (and aiohttp's
client). The Go client (``kbload http-fetch``) does the same with less client CPU.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

__all__ = ["FetchResult", "fetch_partitions"]


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Records and bytes read by all readers, and how long it took."""

    records: int
    bytes: int
    seconds: float
    requests: int

    @property
    def records_per_second(self) -> float:
        """Records per second over the whole read."""
        return self.records / self.seconds


async def _read(
    session: aiohttp.ClientSession,
    url: str,
    *,
    goal: int,
    params: dict[str, int],
    accept: str,
    deadline: float,
) -> tuple[int, int, int]:
    offset = records = size = requests = 0
    while records < goal and time.perf_counter() < deadline:
        async with session.get(
            url, params={"offset": offset, **params}, headers={"Accept": accept}
        ) as resp:
            payload = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"fetch {url} at {offset}: {resp.status} {payload[:200]!r}")
            next_offset = int(resp.headers["X-KBroker-Next-Offset"])
        requests += 1
        if next_offset == offset:
            break  # nothing more in this partition
        records += next_offset - offset
        size += len(payload)
        offset = next_offset
    return records, size, requests


async def fetch_partitions(
    leaders: list[str],
    topic: str,
    *,
    records_each: int,
    max_bytes: int = 1 << 20,
    max_records: int | None = 1000,
    seconds: float = 60.0,
    accept: str = "application/vnd.kafka.json.v2+json",
) -> FetchResult:
    """Read ``records_each`` records from each partition (``leaders[p]`` leads partition p)
    concurrently, for at most ``seconds``."""
    params = {"max_bytes": max_bytes, "timeout": 0}
    if max_records is not None:
        params["max_records"] = max_records
    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        done = await asyncio.gather(
            *(
                _read(
                    session,
                    f"{leader}/topics/{topic}/partitions/{p}/records",
                    goal=records_each,
                    params=params,
                    accept=accept,
                    deadline=start + seconds,
                )
                for p, leader in enumerate(leaders)
            )
        )
        elapsed = time.perf_counter() - start
    return FetchResult(
        records=sum(d[0] for d in done),
        bytes=sum(d[1] for d in done),
        seconds=elapsed,
        requests=sum(d[2] for d in done),
    )
