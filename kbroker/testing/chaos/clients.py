"""The chaos workload's clients: an idempotent acks=all writer and group consumers that keep a
history of everything they were told, for :mod:`kbroker.testing.chaos.checker`.

:class:`IdempotentWriter` (a :class:`~kbroker.testing.workload.Writer`, so the classic
:func:`~kbroker.testing.workload.check` applies to it) writes small batches of uniquely numbered
records to every partition, one batch in flight per partition, each with a producer id, epoch
and sequence. A batch whose fate is unknown (timeout, lost connection, ``after_append``) is sent
again *with the same sequence* until the cluster answers with offsets: a duplicate answers the
original offsets, so the retry resolves the ambiguity instead of leaving it. A batch still
unresolved when the writer gives up is ``indeterminate`` if any attempt may have written it,
``refused`` if every attempt was refused before writing. Every attempt is logged (start, end,
outcome) for the availability figures.

:class:`GroupConsumer` is one member of a consumer group, over the membership endpoints: join,
heartbeat, read its partitions from the committed offsets with the stateless fetch, commit after
each round, and rejoin when the group rebalances. It logs every poll (requested offset, records,
the high watermark the broker reported), every commit and every read of the committed offsets.

Concurrency: asyncio, one event loop; the histories are plain lists appended by the owning
coroutines and read once the clients have stopped. Every request has a client timeout and
every loop stops when asked (the writer gives pending batches a bounded grace period).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson

from kbroker.testing.workload import JSON_V2, Outcome, Writer

__all__ = ["Attempt", "CommitEvent", "GroupConsumer", "IdempotentWriter", "Poll"]

#: Error codes answered before anything was written (so a refusal is definite).
DEFINITE: Final = frozenset({40402, 50302, 50303, 50304, 50309, 50311, 50312, 50313, 50317})
#: Idempotence errors: the producer must start over (bump its epoch).
SEQUENCE_ERRORS: Final = frozenset({40920, 40921})
_REJOIN: Final = frozenset({40910, 40911, 40912, 40913})


@dataclass(frozen=True, slots=True)
class Attempt:
    """One produce request: when it ran and what came of it (``ok`` = offsets answered)."""

    partition: int
    started: float
    ended: float
    ok: bool
    error: str


@dataclass(slots=True)
class IdempotentWriter(Writer):
    """See the module docstring. ``grace_s``: how long pending batches keep being retried
    after :meth:`stop`."""

    grace_s: float = 45.0
    sequence_patience_s: float = 15.0
    """How long idempotence errors may persist before the producer starts over. A leader
    that was paused longer than its ZooKeeper session may still answer for a moment after it
    resumes, from producer state that missed the batches its successor took: its
    OUT_OF_ORDER_SEQUENCE is stale, and the next leader accepts the retry."""
    attempts: list[Attempt] = field(default_factory=list)
    sequence_answers: list[tuple[int, int, str, str]] = field(default_factory=list)
    """(partition, first value of the batch, error, url) of every idempotence error answer."""
    sequence_errors: list[tuple[int, int, str]] = field(default_factory=list)
    """(partition, first value, error) of batches given up because such errors persisted."""
    _give_up_at: float | None = None

    def stop(self) -> None:
        """No new batches; pending ones are retried for ``grace_s`` more seconds."""
        if self._give_up_at is None:
            self._give_up_at = time.monotonic() + self.grace_s
        self._stop.set()

    async def _partition_loop(self, session: aiohttp.ClientSession, partition: int) -> None:
        rng = random.Random(partition)
        producer = await self._new_producer(session, rng, None)
        if producer is None:
            return
        pid, epoch = producer
        sequence = 0
        while not self._stop.is_set():
            now = time.monotonic()
            batch = [
                Outcome(partition=partition, value=next(self._next), sent_at=now)
                for _ in range(self.batch)
            ]
            for outcome in batch:
                self.history[outcome.value] = outcome
            restart = await self._resolve(session, rng, partition, batch, (pid, epoch, sequence))
            if restart:
                producer = await self._new_producer(session, rng, (pid, epoch))
                if producer is None:
                    return
                pid, epoch = producer
                sequence = 0
            else:
                sequence += len(batch)
            await asyncio.sleep(self.pause_s)

    def _giving_up(self) -> bool:
        return self._give_up_at is not None and time.monotonic() > self._give_up_at

    async def _new_producer(
        self,
        session: aiohttp.ClientSession,
        rng: random.Random,
        old: tuple[int, int] | None,
    ) -> tuple[int, int] | None:
        """A producer id and epoch (a new id, or ``old``'s id with the next epoch)."""
        body = {} if old is None else {"producer_id": old[0], "producer_epoch": old[1]}
        while not self._giving_up():
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
                async with session.post(f"{self._pick(rng)}/producers", json=body) as resp:
                    doc: Any = orjson.loads(await resp.read())
                    if resp.status == 200:
                        return int(doc["producer_id"]), int(doc["producer_epoch"])
            await asyncio.sleep(0.2)
            if old is None and self._stop.is_set():
                return None
        return None

    async def _resolve(
        self,
        session: aiohttp.ClientSession,
        rng: random.Random,
        partition: int,
        batch: list[Outcome],
        producer: tuple[int, int, int],
    ) -> bool:
        """Send ``batch`` until it is acknowledged or the writer gives up; True when the
        producer must start over with a new epoch (a sequence error)."""
        ambiguous = False
        sequence_since: float | None = None
        body = orjson.dumps({"records": [{"value": o.value} for o in batch]})
        headers = {
            "Content-Type": JSON_V2,
            "X-KBroker-Producer-Id": str(producer[0]),
            "X-KBroker-Producer-Epoch": str(producer[1]),
            "X-KBroker-Sequence": str(producer[2]),
        }
        while True:
            url = self._pick(rng)
            started = time.monotonic()
            verdict, detail = await self._attempt(session, url, partition, body, headers)
            ended = time.monotonic()
            self.attempts.append(Attempt(partition, started, ended, verdict == "acked", detail))
            if verdict == "acked":
                for outcome, offset in zip(batch, orjson.loads(detail), strict=True):
                    outcome.offset = offset
                    outcome.status = "acked"
                    self.ack_times.append(ended - outcome.sent_at)
                return False
            self.failures[detail] += 1
            ambiguous = ambiguous or verdict != "refused"
            stuck = False
            if verdict == "sequence":
                self.sequence_answers.append((partition, batch[0].value, detail, url))
                sequence_since = sequence_since or ended
                stuck = ended - sequence_since > self.sequence_patience_s
                if stuck:
                    self.sequence_errors.append((partition, batch[0].value, detail))
            else:
                sequence_since = None
            if stuck or self._giving_up():
                for outcome in batch:
                    outcome.status = "indeterminate" if ambiguous else "refused"
                return stuck
            if verdict in ("unreachable", "sequence"):
                self._avoid[url] = time.monotonic() + self.avoid_s
            await asyncio.sleep(0.05 + rng.random() * 0.15)

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        url: str,
        partition: int,
        body: bytes,
        headers: dict[str, str],
    ) -> tuple[str, str]:
        """(verdict, detail): acked (detail: JSON list of offsets), refused, ambiguous,
        unreachable (never reached a broker) or sequence (an idempotence error)."""
        try:
            async with session.post(
                f"{url}/topics/{self.topic}/partitions/{partition}?acks={self.acks}",
                data=body,
                headers=headers,
            ) as resp:
                doc: Any = orjson.loads(await resp.read())
        except aiohttp.ClientConnectorError:
            return "unreachable", "connect"
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            self._avoid[url] = time.monotonic() + self.avoid_s
            return "ambiguous", type(exc).__name__
        if resp.status != 200:
            code, after = doc.get("error_code"), bool(doc.get("after_append"))
        else:
            first = doc["offsets"][0]
            code, after = first["error_code"], bool(first.get("after_append"))
            if code is None:
                return "acked", orjson.dumps([o["offset"] for o in doc["offsets"]]).decode()
        if code in SEQUENCE_ERRORS:
            return "sequence", str(code)
        return ("refused" if code in DEFINITE and not after else "ambiguous"), str(code)


# ---------------------------------------------------------------------------------- consumers


@dataclass(frozen=True, slots=True)
class Poll:
    """One fetch by a group member: what it asked for and what it got."""

    member: str
    generation: int
    partition: int
    offset: int
    records: tuple[tuple[int, Any], ...]
    high_watermark: int | None
    started: float
    ended: float


@dataclass(frozen=True, slots=True)
class CommitEvent:
    """A commit (``kind`` "commit") or a read of committed offsets (``kind`` "read").

    ``status``: ok, or failed (refused, or no answer: it may still have been applied). For a
    read, ``offsets`` holds what was read (partitions absent from the answer are absent)."""

    kind: str
    member: str
    generation: int
    offsets: tuple[tuple[int, int], ...]
    started: float
    ended: float
    status: str


class _Rejoin(Exception):
    """The group moved on: join again before reading or committing."""


class GroupConsumer:
    """One group member (see the module docstring). Not thread-safe; one event loop."""

    def __init__(
        self,
        *,
        name: str,
        urls: Sequence[str],
        group: str,
        topic: str,
        polls: list[Poll],
        commits: list[CommitEvent],
        session_timeout_ms: int = 6000,
        seed: int = 0,
    ) -> None:
        self.name = name
        self.urls = list(urls)
        self.group = group
        self.topic = topic
        self.polls = polls
        self.commits = commits
        self.session_timeout_ms = session_timeout_ms
        self.member_id = ""
        self.generation = -1
        self.assignment: list[int] = []
        self.positions: dict[int, int] = {}
        self._rng = random.Random(seed)
        self._stop = asyncio.Event()
        self._rejoin = asyncio.Event()
        """Set by a heartbeat that learnt the group moved on; cleared by the next join."""
        self._joining = False
        self._session: aiohttp.ClientSession | None = None
        self.errors: dict[str, int] = {}
        self._avoid: dict[str, float] = {}

    def stop(self) -> None:
        self._stop.set()

    def caught_up(self, ends: dict[int, int]) -> bool:
        """True when this member holds partitions and has committed up to ``ends`` for each."""
        return bool(self.assignment) and all(
            self.positions.get(p, -1) >= ends.get(p, 0) for p in self.assignment
        )

    async def run(self) -> None:
        """Join, consume and commit until :meth:`stop`; leaves the group at the end."""
        timeout = aiohttp.ClientTimeout(total=8.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._session = session
            beats = asyncio.create_task(self._heartbeats())
            try:
                await self._loop()
            finally:
                beats.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beats
                await self._leave()

    async def crash(self, task: asyncio.Task[None]) -> None:
        """Die without leaving (as a killed process): the coordinator must expire us."""
        self.member_id = ""  # so that the finally clause does not leave
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self._join()
                await self._load_positions()
                await self._consume()
            except _Rejoin:
                continue
            except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, KeyError) as exc:
                self._count(type(exc).__name__)
                await self._pause(0.3)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _count(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def _url(self) -> str:
        """A broker, avoiding for a few seconds those that refused a connection."""
        now = time.monotonic()
        usable = [u for u in self.urls if self._avoid.get(u, 0.0) <= now]
        return self._rng.choice(usable or self.urls)

    async def _call(self, method: str, path: str, body: Any = None, *, timeout: float = 8.0) -> Any:
        """JSON request; raises _Rejoin for the group-protocol codes (and forgets the member
        id on UNKNOWN_MEMBER_ID), ClientResponseError for other errors."""
        assert self._session is not None
        base = self._url()
        try:
            async with self._session.request(
                method, base + path, json=body, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                doc: Any = orjson.loads(await resp.read())
                status = resp.status
        except aiohttp.ClientConnectorError:
            self._avoid[base] = time.monotonic() + 3.0
            raise
        if status == 200:
            return doc
        code = doc.get("error_code") if isinstance(doc, dict) else None
        if code in _REJOIN:
            if code == 40911:
                self.member_id = ""
            raise _Rejoin(str(code))
        self._count(str(code))
        raise aiohttp.ClientResponseError(resp.request_info, (), status=status, message=str(code))

    async def _join(self) -> None:
        self._rejoin.clear()
        self.assignment = []
        self._joining = True
        try:
            doc = await self._call(
                "POST",
                f"/groups/{self.group}/members",
                {
                    "member_id": self.member_id,
                    "client_id": self.name,
                    "topics": [self.topic],
                    "session_timeout_ms": self.session_timeout_ms,
                    "rebalance_timeout_ms": 10_000,
                },
                timeout=20.0,
            )
        finally:
            self._joining = False
        self.member_id = doc["member_id"]
        self.generation = doc["generation_id"]
        self.assignment = sorted(a["partition"] for a in doc["assignment"])

    async def _load_positions(self) -> None:
        started = time.monotonic()
        doc = await self._call("GET", f"/groups/{self.group}/offsets?topic={self.topic}")
        committed = {
            o["partition"]: o["offset"] for o in doc["offsets"] if o["topic"] == self.topic
        }
        self.commits.append(
            CommitEvent(
                "read",
                self.name,
                self.generation,
                tuple(sorted(committed.items())),
                started,
                time.monotonic(),
                "ok",
            )
        )
        self.positions = {p: committed.get(p, 0) for p in self.assignment}

    async def _consume(self) -> None:
        committed = dict(self.positions)
        while not self._stop.is_set() and not self._rejoin.is_set():
            if not self.assignment:
                await self._pause(0.5)
                continue
            await asyncio.gather(*(self._poll(p) for p in self.assignment))
            if self._rejoin.is_set():
                raise _Rejoin("heartbeat")
            if self.positions != committed:
                await self._commit(dict(self.positions))
                committed = dict(self.positions)

    async def _poll(self, partition: int) -> None:
        assert self._session is not None
        offset = self.positions[partition]
        started = time.monotonic()
        base = self._url()
        url = (
            f"{base}/topics/{self.topic}/partitions/{partition}/records"
            f"?offset={offset}&max_records=500&timeout=300"
        )
        try:
            async with self._session.get(url) as resp:
                doc: Any = orjson.loads(await resp.read())
                hw = resp.headers.get("X-KBroker-High-Watermark")
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            if isinstance(exc, aiohttp.ClientConnectorError):
                self._avoid[base] = time.monotonic() + 3.0
            self._count(type(exc).__name__)
            await self._pause(0.2)
            return
        if status != 200:
            self._count(str(doc.get("error_code") if isinstance(doc, dict) else status))
            await self._pause(0.2)
            return
        records = tuple((r["offset"], r["value"]) for r in doc)
        self.polls.append(
            Poll(
                self.name,
                self.generation,
                partition,
                offset,
                records,
                int(hw) if hw is not None else None,
                started,
                time.monotonic(),
            )
        )
        if records:
            self.positions[partition] = records[-1][0] + 1

    async def _commit(self, positions: dict[int, int]) -> None:
        if not self.member_id:  # a heartbeat learnt we were expelled
            raise _Rejoin("unknown member")
        started = time.monotonic()
        offsets = tuple(sorted(positions.items()))
        body = {
            "member_id": self.member_id,
            "generation_id": self.generation,
            "offsets": [{"topic": self.topic, "partition": p, "offset": o} for p, o in offsets],
        }
        status = "failed"
        try:
            doc = await self._call("POST", f"/groups/{self.group}/offsets", body)
            if all(o.get("error_code") is None for o in doc["offsets"]):
                status = "ok"
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            self._count(type(exc).__name__)
        finally:
            event = CommitEvent(
                "commit", self.name, self.generation, offsets, started, time.monotonic(), status
            )
            self.commits.append(event)

    async def _heartbeats(self) -> None:
        """Beat every quarter session; a group-protocol answer about *our current*
        generation (not one a join has replaced meanwhile) asks the consumer to rejoin."""
        interval = self.session_timeout_ms / 4000
        while not self._stop.is_set():
            await self._pause(interval)
            generation = self.generation
            if not self.member_id or self._joining or self._rejoin.is_set():
                continue
            try:
                await self._call(
                    "POST",
                    f"/groups/{self.group}/members/{self.member_id}/heartbeat",
                    {"generation_id": generation},
                    timeout=interval * 2,
                )
            except _Rejoin:
                if generation == self.generation and not self._joining:
                    self._rejoin.set()
            except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
                self._count(type(exc).__name__)

    async def _leave(self) -> None:
        if not self.member_id or self._session is None:
            return
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            async with self._session.delete(
                f"{self._url()}/groups/{self.group}/members/{self.member_id}",
                timeout=aiohttp.ClientTimeout(total=5.0),
            ):
                pass
