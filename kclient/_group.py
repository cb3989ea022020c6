"""Group membership of one consumer: join, heartbeat, leave, commit and fetch offsets.

The broker runs the assignor: ``POST /groups/{g}/members`` blocks until the rebalance completes
and answers with this member's assignment and generation. A heartbeat task then beats every
``heartbeat_interval_ms``; when the coordinator answers REBALANCE_IN_PROGRESS,
ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID the membership is marked stale (``needs_rejoin``) and
the consumer rejoins from its next ``poll`` (eager protocol: revoke everything, join, assign).

Concurrency: one asyncio loop; the heartbeat task is owned by :class:`GroupMember` (started by
:meth:`join`, cancelled by :meth:`leave`/:meth:`stop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kclient._metadata import Metadata
from kclient.errors import (
    BrokerError,
    BrokerUnavailableError,
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
    error_from_code,
)
from kclient.structs import OffsetAndMetadata, TopicPartition

__all__ = ["Assignment", "GroupMember", "commit_offsets", "fetch_offsets"]

log = logging.getLogger(__name__)

_STALE = (RebalanceInProgressError, IllegalGenerationError, UnknownMemberIdError)


def group_path(group_id: str) -> str:
    return f"/groups/{quote(group_id, safe='')}"


@dataclass(frozen=True, slots=True)
class Assignment:
    """The outcome of one join."""

    member_id: str
    generation_id: int
    partitions: list[TopicPartition]
    heartbeat_interval_ms: int
    assignor: str | None
    members: int


async def commit_offsets(
    metadata: Metadata,
    group_id: str,
    offsets: Mapping[TopicPartition, OffsetAndMetadata],
    *,
    member_id: str | None,
    generation_id: int,
) -> None:
    """``POST /groups/{g}/offsets``; raises the first per-partition error (CommitFailedError
    for a stale generation or member, the broker's error otherwise)."""
    body = {
        "member_id": member_id,
        "generation_id": generation_id,
        "offsets": [
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "offset": om.offset,
                "metadata": om.metadata,
            }
            for tp, om in offsets.items()
        ],
    }
    try:
        answer = await metadata.call_any("POST", group_path(group_id) + "/offsets", json=body)
    except _STALE as exc:
        raise CommitFailedError(_commit_failed(exc)) from exc
    for entry in (answer or {}).get("offsets", []):
        code = entry.get("error_code")
        if code:
            error = error_from_code(int(code), f"commit of {entry['topic']}-{entry['partition']}")
            if isinstance(error, _STALE):
                raise CommitFailedError(_commit_failed(error)) from error
            raise error


def _commit_failed(exc: BaseException) -> str:
    return (
        f"commit failed: the group rebalanced and the partitions may have moved to another "
        f"member ({exc})"
    )


async def fetch_offsets(
    metadata: Metadata, group_id: str, topics: Iterable[str] | None = None
) -> dict[TopicPartition, OffsetAndMetadata]:
    """The group's committed offsets (of ``topics``, or all)."""
    out: dict[TopicPartition, OffsetAndMetadata] = {}
    queries: list[dict[str, str] | None] = (
        [{"topic": t} for t in sorted(set(topics))] if topics is not None else [None]
    )
    for params in queries:
        answer = await metadata.call_any("GET", group_path(group_id) + "/offsets", params=params)
        for entry in answer.get("offsets", []):
            if entry.get("offset") is None or entry["offset"] < 0:
                continue
            tp = TopicPartition(entry["topic"], int(entry["partition"]))
            out[tp] = OffsetAndMetadata(int(entry["offset"]), entry.get("metadata") or "")
    return out


class GroupMember:
    """This consumer's membership in ``group_id`` (see the module docstring)."""

    def __init__(
        self,
        metadata: Metadata,
        group_id: str,
        *,
        client_id: str,
        group_instance_id: str | None,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        heartbeat_interval_ms: int,
        assignor: str,
        retry_backoff_ms: float = 200,
        on_stale: Callable[[], None] | None = None,
    ) -> None:
        self.metadata = metadata
        self.group_id = group_id
        self.client_id = client_id
        self.group_instance_id = group_instance_id
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.assignor = assignor
        self.retry_backoff = retry_backoff_ms / 1000
        self.on_stale = on_stale
        self.member_id = ""
        self.generation_id = -1
        self.needs_rejoin = True
        self.joined = False
        self._heartbeat: asyncio.Task[None] | None = None

    async def join(self, *, topics: list[str] | None, pattern: str | None) -> Assignment:
        """Join (or rejoin) and wait for the rebalance; retries coordinator errors."""
        await self._stop_heartbeat()
        body: dict[str, Any] = {
            "client_id": self.client_id,
            "group_instance_id": self.group_instance_id,
            "assignor": self.assignor,
            "session_timeout_ms": self.session_timeout_ms,
            "rebalance_timeout_ms": self.rebalance_timeout_ms,
        }
        if pattern is not None:
            body["topic_pattern"] = pattern
        else:
            body["topics"] = list(topics or [])
        timeout = self.rebalance_timeout_ms / 1000 + self.session_timeout_ms / 1000 + 10
        while True:
            body["member_id"] = self.member_id
            try:
                answer = await self.metadata.call_any(
                    "POST", group_path(self.group_id) + "/members", json=body, timeout=timeout
                )
                break
            except UnknownMemberIdError:
                self.member_id = ""
            except (BrokerError, BrokerUnavailableError) as exc:
                if not exc.retriable:
                    raise
                log.info("join of group %s failed (%s); retrying", self.group_id, exc)
                await asyncio.sleep(self.retry_backoff)
        assignment = Assignment(
            member_id=str(answer["member_id"]),
            generation_id=int(answer["generation_id"]),
            partitions=sorted(
                TopicPartition(a["topic"], int(a["partition"])) for a in answer["assignment"]
            ),
            heartbeat_interval_ms=int(
                answer.get("heartbeat_interval_ms") or self.heartbeat_interval_ms
            ),
            assignor=answer.get("assignor"),
            members=int(answer.get("members", 0)),
        )
        self.member_id = assignment.member_id
        self.generation_id = assignment.generation_id
        self.heartbeat_interval_ms = assignment.heartbeat_interval_ms
        self.needs_rejoin = False
        self.joined = True
        self._heartbeat = asyncio.create_task(
            self._beat(), name=f"kclient-heartbeat-{self.group_id}"
        )
        return assignment

    async def _beat(self) -> None:
        path = f"{group_path(self.group_id)}/members/{quote(self.member_id, safe='')}/heartbeat"
        generation = self.generation_id
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(self.heartbeat_interval_ms / 1000)
            try:
                await self.metadata.call_any(
                    "POST",
                    path,
                    json={"generation_id": generation},
                    timeout=self.session_timeout_ms / 1000,
                )
                last_ok = time.monotonic()
            except UnknownMemberIdError:
                self.member_id = ""
                self._stale("unknown member")
                return
            except (RebalanceInProgressError, IllegalGenerationError) as exc:
                self._stale(type(exc).__name__)
                return
            except (BrokerError, BrokerUnavailableError) as exc:
                log.info("heartbeat to group %s failed: %s", self.group_id, exc)
                if time.monotonic() - last_ok > self.session_timeout_ms / 1000:
                    self._stale("session timed out")
                    return
            except Exception:  # a crashed heartbeat must not leave a silent zombie member
                log.exception("heartbeat task of group %s failed", self.group_id)
                self._stale("heartbeat failed")
                return

    def _stale(self, why: str) -> None:
        log.info("group %s: rejoining (%s)", self.group_id, why)
        self.needs_rejoin = True
        if self.on_stale is not None:
            self.on_stale()

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        try:
            await commit_offsets(
                self.metadata,
                self.group_id,
                offsets,
                member_id=self.member_id if self.joined else None,
                generation_id=self.generation_id if self.joined else -1,
            )
        except CommitFailedError:
            self._stale("commit failed")
            raise

    async def _stop_heartbeat(self) -> None:
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def leave(self) -> None:
        """Stop heartbeating and leave (static members only stop: they keep their place)."""
        await self._stop_heartbeat()
        if self.joined and self.member_id and self.group_instance_id is None:
            path = f"{group_path(self.group_id)}/members/{quote(self.member_id, safe='')}"
            with contextlib.suppress(BrokerError, BrokerUnavailableError):
                await self.metadata.call_any("DELETE", path, timeout=5)
        self.joined = False
        self.needs_rejoin = True
        self.member_id = ""
        self.generation_id = -1
