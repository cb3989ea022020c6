"""A continuous acks=all producer and a Jepsen-style checker of what it was told.

:class:`Writer` sends small batches of uniquely numbered records to every partition of a topic,
through whichever broker answers, and keeps a history: for every record, whether the cluster
acknowledged it (and at which offset), refused it for sure (nothing was written), or left it
indeterminate (the request failed after the records may have been written: timeouts, lost
connections, ``after_append`` errors). Definite refusals are retried; indeterminate ones are
not, so that a duplicate in the log can only come from the broker.

:func:`check` reads every partition back from the start and reports, in Jepsen's vocabulary:

* ``lost``: acknowledged records that are not in the log;
* ``duplicated``: records present more than once;
* ``inconsistent_offsets``: acknowledged records found at another offset than acknowledged;
* ``reordered``: records of one writer out of the order they were acknowledged in;
* ``unexpected``: records the writer never sent or that it was told were refused.

Everything is bounded: the writer stops when asked or after its deadline; reads stop at the
high watermark.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

__all__ = ["CheckResult", "Outcome", "Writer", "check", "read_partition"]

JSON_V2 = "application/vnd.kafka.json.v2+json"
#: Error codes meaning "nothing was written; send again" (before any append).
_DEFINITE = frozenset({50302, 50303, 50304, 50309, 50312, 50313, 50317, 40402})
#: Failures a Writer keeps the message of.
FAILURE_DETAILS = 20


@dataclass(slots=True)
class Outcome:
    """What the writer knows of one record."""

    partition: int
    value: int
    sent_at: float
    offset: int | None = None
    status: str = "pending"
    """acked, refused, indeterminate or pending."""


@dataclass(slots=True)
class Writer:
    """Writes ``batch`` records per request to every partition, round-robin over brokers."""

    urls: Sequence[str]
    topic: str
    partitions: int
    batch: int = 5
    acks: str = "all"
    timeout_s: float = 5.0
    pause_s: float = 0.005
    avoid_s: float = 5.0
    """How long a broker that did not answer is avoided."""
    history: dict[int, Outcome] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    """Why requests failed (error code or exception name) -> count."""
    failure_details: list[str] = field(default_factory=list)
    """The first FAILURE_DETAILS failures, each with its message (for a test's report)."""
    ack_times: list[float] = field(default_factory=list)
    _next: itertools.count[int] = field(default_factory=itertools.count)
    _avoid: dict[str, float] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self) -> None:
        self._stop.set()

    async def run(self, *, duration_s: float) -> None:
        """Write until :meth:`stop` or ``duration_s``; one task per partition."""
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            tasks = [
                asyncio.create_task(self._partition_loop(session, p))
                for p in range(self.partitions)
            ]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), duration_s)
            self._stop.set()
            await asyncio.gather(*tasks)

    async def _partition_loop(self, session: aiohttp.ClientSession, partition: int) -> None:
        rng = random.Random(partition)
        pending: list[Outcome] = []
        while not self._stop.is_set():
            if not pending:
                now = time.monotonic()
                pending = [
                    Outcome(partition=partition, value=next(self._next), sent_at=now)
                    for _ in range(self.batch)
                ]
                for outcome in pending:
                    self.history[outcome.value] = outcome
            url = self._pick(rng)
            done = await self._send(session, url, partition, pending)
            if done:
                pending = []
                await asyncio.sleep(self.pause_s)
            else:
                await asyncio.sleep(0.05)
        for outcome in pending:
            outcome.status = "refused"  # never sent successfully: nothing of it was written

    def _pick(self, rng: random.Random) -> str:
        """A broker URL, avoiding for a while the ones that just failed to answer."""
        now = time.monotonic()
        usable = [u for u in self.urls if self._avoid.get(u, 0.0) <= now]
        return rng.choice(usable or list(self.urls))

    async def _send(
        self, session: aiohttp.ClientSession, url: str, partition: int, records: list[Outcome]
    ) -> bool:
        """True when the records' fate is settled (acked or indeterminate)."""
        body = orjson.dumps({"records": [{"value": o.value} for o in records]})
        try:
            async with session.post(
                f"{url}/topics/{self.topic}/partitions/{partition}?acks={self.acks}",
                data=body,
                headers={"Content-Type": JSON_V2},
            ) as resp:
                doc: Any = orjson.loads(await resp.read())
        except aiohttp.ClientConnectorError as exc:
            self._failed(url, "connect", repr(exc))
            self._avoid[url] = time.monotonic() + self.avoid_s
            return False  # never reached a broker
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            self._failed(url, type(exc).__name__, repr(exc))
            self._avoid[url] = time.monotonic() + self.avoid_s
            return self._settle(records, "indeterminate")
        if resp.status != 200:
            self._failed(url, str(doc.get("error_code")), str(doc.get("message")))
            definite = doc.get("error_code") in _DEFINITE and not doc.get("after_append")
            return False if definite else self._settle(records, "indeterminate")
        offsets = doc["offsets"]
        code = offsets[0]["error_code"]
        if code is None:
            now = time.monotonic()
            for outcome, result in zip(records, offsets, strict=True):
                outcome.offset = result["offset"]
                outcome.status = "acked"
                self.ack_times.append(now - outcome.sent_at)
            return True
        self._failed(url, str(code), str(offsets[0].get("error")))
        if code in _DEFINITE and not offsets[0].get("after_append"):
            return False
        return self._settle(records, "indeterminate")

    def _failed(self, url: str, why: str, message: str) -> None:
        self.failures[why] += 1
        if len(self.failure_details) < FAILURE_DETAILS:
            self.failure_details.append(f"{url}: {why}: {message}")

    @staticmethod
    def _settle(records: list[Outcome], status: str) -> bool:
        for outcome in records:
            outcome.status = status
        return True

    def acked(self) -> list[Outcome]:
        return [o for o in self.history.values() if o.status == "acked"]

    async def wait_acks(self, more: int, timeout: float) -> None:
        """Until ``more`` records more than now are acknowledged; AssertionError (with the
        failures) when that takes over ``timeout`` seconds."""
        goal = len(self.acked()) + more
        deadline = time.monotonic() + timeout
        while len(self.acked()) < goal:
            if time.monotonic() >= deadline:
                raise AssertionError(f"writer stalled: {self.failures}")
            await asyncio.sleep(0.05)

    async def gap_after(self, partition: int, since: float, timeout: float = 30.0) -> float:
        """Seconds from ``since`` until the first record of ``partition`` sent after it was
        acknowledged (how long the partition did not take writes). Waits up to ``timeout``
        seconds for such a record (other partitions may recover sooner); AssertionError when
        none comes."""
        deadline = time.monotonic() + timeout
        while True:
            times = [
                o.sent_at for o in self.acked() if o.partition == partition and o.sent_at >= since
            ]
            if times:
                return min(times) - since
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"partition {partition} took no write after the fault: {self.failures}"
                )
            await asyncio.sleep(0.05)


async def read_partition(
    url: str, topic: str, partition: int, *, timeout_s: float = 60.0
) -> list[tuple[int, Any]]:
    """Every (offset, value) of a partition from its start to the high watermark.

    A retriable error (``"retriable": true``, such as a broker re-reading the cluster state
    after a new ZooKeeper session) is retried until ``timeout_s``, as a client would."""
    out: list[tuple[int, Any]] = []
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:

        async def get(path: str, params: dict[str, Any] | None = None) -> Any:
            while True:
                async with session.get(f"{url}{path}", params=params) as resp:
                    doc = orjson.loads(await resp.read())
                    if resp.status == 200:
                        return doc
                retriable = isinstance(doc, dict) and doc.get("retriable") is True
                if not retriable or time.monotonic() >= deadline:
                    raise RuntimeError(f"GET {path} {params or ''}: {resp.status} {doc}")
                await asyncio.sleep(0.2)

        base = f"/topics/{topic}/partitions/{partition}"
        offsets = await get(f"{base}/offsets")
        position, end = offsets["beginning_offset"], offsets["end_offset"]
        while position < end and time.monotonic() < deadline:
            params = {"offset": position, "max_bytes": 4 << 20, "timeout": 0}
            records = await get(f"{base}/records", params)
            out.extend((r["offset"], r["value"]) for r in records)
            if records:
                position = records[-1]["offset"] + 1
    return out


@dataclass(frozen=True, slots=True)
class CheckResult:
    acked: int
    indeterminate: int
    read: int
    lost: list[int]
    duplicated: list[int]
    inconsistent_offsets: list[int]
    reordered: list[int]
    unexpected: list[int]

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.inconsistent_offsets
            or self.reordered
            or self.unexpected
        )

    def summary(self) -> str:
        return (
            f"acked={self.acked} indeterminate={self.indeterminate} read={self.read} "
            f"lost={len(self.lost)} duplicated={len(self.duplicated)} "
            f"inconsistent_offsets={len(self.inconsistent_offsets)} "
            f"reordered={len(self.reordered)} unexpected={len(self.unexpected)}"
        )


def check(writer: Writer, logs: dict[int, list[tuple[int, Any]]]) -> CheckResult:
    """Compare what ``writer`` was told with what the partitions hold (``logs``)."""
    seen: Counter[Any] = Counter()
    where: dict[Any, tuple[int, int]] = {}
    for partition, entries in logs.items():
        for offset, value in entries:
            seen[value] += 1
            where[value] = (partition, offset)
    history = writer.history
    acked = writer.acked()
    lost = [o.value for o in acked if o.value not in seen]
    duplicated = [v for v, n in seen.items() if n > 1]
    inconsistent = [
        o.value for o in acked if o.value in where and where[o.value] != (o.partition, o.offset)
    ]
    unexpected = [v for v in seen if v not in history or history[v].status == "refused"]
    reordered: list[int] = []
    for entries in logs.values():
        last = -1
        for _offset, value in entries:
            outcome = history.get(value)
            if outcome is not None and outcome.status == "acked":
                if value < last:
                    reordered.append(value)
                last = max(last, value)
    return CheckResult(
        acked=len(acked),
        indeterminate=sum(o.status == "indeterminate" for o in history.values()),
        read=sum(len(e) for e in logs.values()),
        lost=lost,
        duplicated=duplicated,
        inconsistent_offsets=inconsistent,
        reordered=reordered,
        unexpected=unexpected,
    )
