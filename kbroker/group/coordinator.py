"""The group coordinator: consumer groups whose ``__consumer_offsets`` partition is led here.

A group belongs to partition ``abs(hash(group)) % partitions`` of the internal topic (Kafka's
rule); the broker leading that partition coordinates the group. Every change (committed
offsets, membership after a rebalance, REST consumer instances) is appended to that partition
with acks=all before it takes effect, and a coordinator that takes over a partition rebuilds
its groups by replaying it (kbroker.group.persist). Until that replay is done, requests for its
groups answer COORDINATOR_LOAD_IN_PROGRESS (retriable).

Membership (server-side assignment, eager rebalance): a join (or rejoin) waits until every
known member has rejoined or the rebalance timeout passes; then the coordinator drops the
members that did not rejoin, bumps the generation, runs the assignor (sticky by default, so a
member keeps its partitions unless balance requires moving them), persists the group and
answers every join with its assignment. Members learn of a rebalance from heartbeats
(REBALANCE_IN_PROGRESS) and rejoin. A member whose heartbeats stop for its session timeout is
removed. REST v2 consumer instances are server-managed members: they rejoin automatically and
live until their instance timeout.

Concurrency: event loop only. Each group has an ``asyncio.Lock`` serialising the operations that
persist (join bookkeeping, leave, commit, rebalance completion, expiry); heartbeats and reads do
not take it. A join waits for its rebalance outside the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kbroker.clock import Clock
from kbroker.cluster import ClusterMetadata
from kbroker.config import BrokerConfig
from kbroker.errors import BrokerError, ErrorCode
from kbroker.group.assignor import ASSIGNORS, assign
from kbroker.group.persist import (
    OFFSETS_TOPIC,
    LoadedPartition,
    group_key,
    group_record,
    instance_record,
    offset_record,
    partition_for_group,
    replay,
    to_batch,
)
from kbroker.group.state import Group, GroupState, Member, OffsetEntry, TopicPartition
from kbroker.log.batch import PayloadCodec
from kbroker.replication.manager import ReplicaManager
from kbroker.replication.partition import Partition, Role

__all__ = ["GroupCoordinator", "JoinResult", "RestInstance"]

log = logging.getLogger(__name__)

MAX_GROUP_ID_LENGTH = 255
#: Most records of queued writes coalesced into one append (bounded so a batch stays well
#: under max.message.bytes: offset records are about 150 bytes). A single larger write goes
#: out alone.
_MAX_RECORDS_PER_WRITE_BATCH = 2000
#: Records per batch of a snapshot (offset records are about 150 bytes).
_SNAPSHOT_CHUNK = 2000

_Write = tuple[list[dict[str, Any]], "asyncio.Future[None]", Callable[[], None] | None]
_LOAD_CHUNK = 8 << 20


@dataclass(frozen=True, slots=True)
class JoinResult:
    member_id: str
    generation_id: int
    assignor: str
    assignment: list[TopicPartition]
    members: int


@dataclass(slots=True, kw_only=True)
class RestInstance:
    """A REST v2 consumer instance (its state lives with the group's coordinator)."""

    group_id: str
    name: str
    format: str
    auto_offset_reset: str
    auto_commit: bool
    topics: tuple[str, ...] = ()
    pattern: str | None = None
    manual: list[TopicPartition] | None = None
    member_id: str | None = None
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    committed_positions: dict[TopicPartition, int] = field(default_factory=dict)
    last_used: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def settings(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "auto_offset_reset": self.auto_offset_reset,
            "auto_commit": self.auto_commit,
            "topics": list(self.topics),
            "pattern": self.pattern,
            "manual": [list(tp) for tp in self.manual] if self.manual is not None else None,
        }

    @classmethod
    def restore(cls, group_id: str, name: str, doc: dict[str, Any]) -> RestInstance:
        manual = doc.get("manual")
        return cls(
            group_id=group_id,
            name=name,
            format=doc["format"],
            auto_offset_reset=doc["auto_offset_reset"],
            auto_commit=doc["auto_commit"],
            topics=tuple(doc.get("topics") or ()),
            pattern=doc.get("pattern"),
            manual=[(t, int(p)) for t, p in manual] if manual is not None else None,
        )


class GroupCoordinator:
    """See the module docstring."""

    def __init__(
        self,
        *,
        config: BrokerConfig,
        replicas: ReplicaManager,
        clock: Clock,
        metadata: Callable[[], ClusterMetadata],
    ) -> None:
        self._config = config
        self._replicas = replicas
        self._clock = clock
        self._metadata = metadata
        self._loaded: dict[int, int] = {}
        """Offsets partitions led here -> leader epoch they were loaded in."""
        self._loading: dict[int, tuple[int, asyncio.Task[None]]] = {}
        """Offsets partitions being loaded -> (leader epoch, the load)."""
        self._groups: dict[str, Group] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._instances: dict[tuple[str, str], RestInstance] = {}
        self._write_queues: dict[int, list[_Write]] = {}
        self._writers: dict[int, asyncio.Task[None]] = {}
        self._fenced_ids: dict[str, str] = {}
        """Member ids replaced by a static member's rejoin -> the group they were in."""
        self._last_writes: dict[str, asyncio.Future[None]] = {}
        """Group id -> its latest write while that is queued or in flight."""

    # ------------------------------------------------------------------- ownership

    def partition_of(self, group_id: str) -> int:
        topic = self._metadata().topics.get(OFFSETS_TOPIC)
        if topic is None:
            raise BrokerError(
                "The offsets topic does not exist yet", ErrorCode.COORDINATOR_NOT_AVAILABLE
            )
        return partition_for_group(group_id, len(topic.partitions))

    def on_role_change(self, replica: Partition) -> None:
        """Called by the replica manager when a replica's role or leader epoch changes."""
        if replica.topic != OFFSETS_TOPIC:
            return
        p = replica.partition
        if replica.role is Role.LEADER:
            epoch = replica.leader_epoch
            loading = self._loading.get(p)
            if self._loaded.get(p) == epoch or (loading is not None and loading[0] == epoch):
                return
            # A new epoch, even while an older one is loading: that load would give up at
            # its end (the epoch moved), so start over.
            self._unload(p)
            task = asyncio.get_running_loop().create_task(self._load(replica, epoch))
            self._loading[p] = (epoch, task)
        elif p in self._loaded or p in self._loading:
            self._unload(p)

    async def _load(self, replica: Partition, epoch: int) -> None:
        try:
            await self._replay(replica, epoch)
        finally:
            # In the load's own last step (a done callback would run later, and could remove
            # the next load of the partition if this one was cancelled).
            loading = self._loading.get(replica.partition)
            if loading is not None and loading[1] is asyncio.current_task():
                del self._loading[replica.partition]

    async def _replay(self, replica: Partition, epoch: int) -> None:
        p = replica.partition
        plog = replica.log
        loaded = LoadedPartition()
        offset = plog.log_start_offset
        end = plog.log_end_offset
        while offset < end:
            data = plog.read(offset, max_bytes=_LOAD_CHUNK, max_offset=end)
            if not data.data:
                break
            replay([data.data], loaded)
            offset = data.next_offset
            await asyncio.sleep(0)
        if replica.role is not Role.LEADER or replica.leader_epoch != epoch:
            return
        now = self._clock.monotonic()
        for group in loaded.groups.values():
            for member in group.members.values():
                member.deadline = now + member.session_timeout_ms / 1000
            self._groups[group.group_id] = group
        for (group_id, name), settings in loaded.instances.items():
            instance = RestInstance.restore(group_id, name, settings)
            instance.last_used = now
            owner = self._groups.get(group_id)
            if owner is not None:
                rest = next((m for m in owner.members.values() if m.rest_instance == name), None)
                instance.member_id = rest.member_id if rest else None
            self._instances[(group_id, name)] = instance
        self._loaded[p] = epoch
        log.info(
            "coordinator for %s-%d loaded: %d groups, %d REST instances (offsets %d-%d)",
            OFFSETS_TOPIC,
            p,
            len(loaded.groups),
            len(loaded.instances),
            plog.log_start_offset,
            end,
        )

    def _unload(self, p: int) -> None:
        loading = self._loading.pop(p, None)
        if loading is not None:
            loading[1].cancel()
        if self._loaded.pop(p, None) is None and loading is None:
            return
        partitions = self._partition_count()
        for group_id in [g for g in self._groups if partition_for_group(g, partitions) == p]:
            group = self._groups.pop(group_id)
            group.transition(GroupState.DEAD)
            for member in group.members.values():
                _fail(
                    member,
                    BrokerError("The group coordinator moved", ErrorCode.COORDINATOR_NOT_AVAILABLE),
                )
        for key in [k for k in self._instances if partition_for_group(k[0], partitions) == p]:
            del self._instances[key]
        log.info("coordinator for %s-%d unloaded", OFFSETS_TOPIC, p)

    def _partition_count(self) -> int:
        topic = self._metadata().topics.get(OFFSETS_TOPIC)
        return len(topic.partitions) if topic else self._config.offsets_topic_num_partitions

    def _require(self, group_id: str) -> int:
        """The offsets partition of ``group_id``, if this broker coordinates it and has
        loaded it; COORDINATOR_NOT_AVAILABLE / COORDINATOR_LOAD_IN_PROGRESS otherwise."""
        if not group_id or len(group_id) > MAX_GROUP_ID_LENGTH:
            raise BrokerError(
                f"Group id must be 1 to {MAX_GROUP_ID_LENGTH} characters",
                ErrorCode.INVALID_GROUP_ID,
            )
        p = self.partition_of(group_id)
        if self._replicas.fenced:
            raise BrokerError(
                f"Broker {self._config.broker_id} lost its ZooKeeper session (or just resumed "
                f"from a pause); it does not coordinate group {group_id} until it is confirmed",
                ErrorCode.COORDINATOR_NOT_AVAILABLE,
            )
        if p in self._loading:
            raise BrokerError(
                f"The coordinator of group {group_id} is loading its state",
                ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
            )
        if p not in self._loaded:
            raise BrokerError(
                f"Broker {self._config.broker_id} does not coordinate group {group_id}",
                ErrorCode.COORDINATOR_NOT_AVAILABLE,
            )
        return p

    def coordinates(self, group_id: str) -> bool:
        try:
            self._require(group_id)
        except BrokerError:
            return False
        return True

    def _lock(self, group_id: str) -> asyncio.Lock:
        lock = self._locks.get(group_id)
        if lock is None:
            lock = self._locks[group_id] = asyncio.Lock()
        return lock

    def group(self, group_id: str) -> Group | None:
        self._require(group_id)
        return self._groups.get(group_id)

    # ------------------------------------------------------------------- persistence

    async def _persist(self, group_id: str, records: list[dict[str, Any]]) -> None:
        """Append ``records`` to the group's partition (acks=all) and wait for the commit."""
        await self._enqueue(group_id, records)

    def _enqueue(
        self,
        group_id: str,
        records: list[dict[str, Any]],
        on_commit: Callable[[], None] | None = None,
    ) -> asyncio.Future[None]:
        """Queue ``records`` for the group's partition; the future completes once they are
        committed, right after ``on_commit`` (which updates the in-memory state) ran. Writes
        queued while one is in flight go out together as one batch (group commit), in queue
        order, so concurrent commits cost one append, not one each."""
        future = self._enqueue_partition(self._require(group_id), records, on_commit)
        self._last_writes[group_id] = future
        future.add_done_callback(lambda f: self._forget_write(group_id, f))
        return future

    def _forget_write(self, group_id: str, future: asyncio.Future[None]) -> None:
        if self._last_writes.get(group_id) is future:
            del self._last_writes[group_id]

    def _writing(self, group_id: str) -> bool:
        """A write of the group is queued or in flight (the cache does not have it yet)."""
        last = self._last_writes.get(group_id)
        return last is not None and not last.done()

    def _enqueue_partition(
        self, p: int, records: list[dict[str, Any]], on_commit: Callable[[], None] | None
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._write_queues.setdefault(p, [])
        queue.append((records, future, on_commit))
        if p not in self._writers:
            self._writers[p] = asyncio.get_running_loop().create_task(self._write_loop(p))
        return future

    async def _write_loop(self, p: int) -> None:
        try:
            await self._write_queued(p)
        finally:
            # Deregister in the same step that found the queue empty: a done callback would
            # run a loop iteration later, and a write queued in between (by a waiter just
            # woken) would find a writer registered that is gone, and wait forever.
            if self._writers.get(p) is asyncio.current_task():
                del self._writers[p]

    async def _write_queued(self, p: int) -> None:
        queue = self._write_queues.setdefault(p, [])
        while queue:
            pending = _coalesce(queue)
            del queue[: len(pending)]
            records = [r for recs, _, _ in pending for r in recs]
            try:
                await self._replicas.append(
                    OFFSETS_TOPIC,
                    p,
                    [to_batch(records, self._clock.now_ms())],
                    codec=PayloadCodec.JSON,
                    acks=-1,
                    timeout_ms=self._config.produce_timeout_ms,
                )
            except BrokerError as exc:
                for _, future, _ in pending:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self._note_persisted(records)
            for _, future, on_commit in pending:
                if on_commit is not None:
                    on_commit()
                if not future.done():
                    future.set_result(None)

    def _note_persisted(self, records: list[dict[str, Any]]) -> None:
        """Remember the group documents just committed (the snapshot rewrites them)."""
        for record in records:
            key = record["key"]
            if key["type"] == "group":
                group = self._groups.get(key["group"])
                if group is not None:
                    group.persisted = record["value"]

    def _idle(self, p: int) -> bool:
        """No write of partition ``p`` queued or in flight (the cache has every commit)."""
        return p not in self._writers and not self._write_queues.get(p)

    async def _snapshot(self, p: int) -> None:
        """Rewrite the live state of partition ``p`` and delete the segments before it.

        Taken only while no write is in flight, so the snapshot is exactly the state the log
        describes up to its start offset: the cached offsets and REST instances, and each
        group's last committed document (not its live membership, which during a rebalance
        is not durable yet: a failover must find the members who left, to expire them).
        Everything written later comes after it in the log. The segments wholly before it
        then hold nothing the state needs, and are deleted once the snapshot is committed.
        """
        replica = self._replicas.get(OFFSETS_TOPIC, p)
        if replica is None or replica.role is not Role.LEADER or not self._idle(p):
            return
        plog = replica.log
        if plog.segment_count < 2:
            return
        partitions = self._partition_count()
        records: list[dict[str, Any]] = []
        for group in self._groups.values():
            if partition_for_group(group.group_id, partitions) != p:
                continue
            records.extend(
                offset_record(group.group_id, t, q, e) for (t, q), e in group.offsets.items()
            )
            if group.persisted is not None:
                records.append({"key": group_key(group.group_id), "value": group.persisted})
        for (group_id, name), instance in self._instances.items():
            if partition_for_group(group_id, partitions) == p:
                records.append(instance_record(group_id, name, instance.settings()))
        start = plog.log_end_offset
        chunks = [records[i : i + _SNAPSHOT_CHUNK] for i in range(0, len(records), _SNAPSHOT_CHUNK)]
        futures = [self._enqueue_partition(p, chunk, None) for chunk in chunks]
        await asyncio.gather(*futures)
        deleted = plog.delete_segments_before(start)
        log.info(
            "coordinator %s-%d: snapshot of %d records at %d; %d segment(s) deleted",
            OFFSETS_TOPIC,
            p,
            len(records),
            start,
            deleted,
        )

    # -------------------------------------------------------------------- membership

    async def join(
        self,
        group_id: str,
        *,
        member_id: str,
        client_id: str,
        instance_id: str | None = None,
        topics: Iterable[str] | None = None,
        pattern: str | None = None,
        assignor: str = "sticky",
        session_timeout_ms: int = 10_000,
        rebalance_timeout_ms: int = 30_000,
        rest_instance: str | None = None,
    ) -> JoinResult:
        """Join (or rejoin) ``group_id`` and wait for the rebalance to complete."""
        self._check_join(assignor, session_timeout_ms, rebalance_timeout_ms)
        resolved = self._resolve_topics(topics, pattern)
        async with self._lock(group_id):
            self._require(group_id)
            group = self._groups.get(group_id)
            if group is None:
                group = self._groups[group_id] = Group(group_id)
            member = await self._admit(
                group,
                member_id=member_id,
                client_id=client_id,
                instance_id=instance_id,
                topics=resolved,
                pattern=pattern,
                assignor=assignor,
                session_timeout_ms=session_timeout_ms,
                rebalance_timeout_ms=rebalance_timeout_ms,
                rest_instance=rest_instance,
            )
            if group.state is GroupState.STABLE and member.joined:
                return self._result(group, member)
            waiter = member.join_waiter
            await self._maybe_complete(group)
        if waiter is not None and not waiter.done():
            timeout = (
                rebalance_timeout_ms / 1000
                + self._config.group_initial_rebalance_delay_ms / 1000
                + 5
            )
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except TimeoutError:
                raise BrokerError(
                    f"Rebalance of group {group_id} did not complete",
                    ErrorCode.REBALANCE_IN_PROGRESS,
                ) from None
        elif waiter is not None:
            waiter.result()
        current = self._groups.get(group_id)
        if current is None or member.member_id not in current.members:
            raise BrokerError(
                f"Member {member.member_id} left group {group_id} during the rebalance",
                ErrorCode.UNKNOWN_MEMBER_ID,
            )
        return self._result(current, current.members[member.member_id])

    def _check_join(self, assignor: str, session_ms: int, rebalance_ms: int) -> None:
        if assignor not in ASSIGNORS:
            raise BrokerError(
                f"Unknown assignor {assignor!r}; use one of {', '.join(ASSIGNORS)}",
                ErrorCode.INVALID_CONSUMER_CONFIG,
            )
        low, high = (
            self._config.group_min_session_timeout_ms,
            self._config.group_max_session_timeout_ms,
        )
        if not low <= session_ms <= high:
            raise BrokerError(
                f"session_timeout_ms must be between {low} and {high}",
                ErrorCode.INVALID_SESSION_TIMEOUT,
            )
        if not session_ms <= rebalance_ms <= 3_600_000:
            raise BrokerError(
                "rebalance_timeout_ms must be at least session_timeout_ms and at most 3600000",
                ErrorCode.INVALID_SESSION_TIMEOUT,
            )

    def _resolve_topics(self, topics: Iterable[str] | None, pattern: str | None) -> tuple[str, ...]:
        if pattern is not None:
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                raise BrokerError(
                    f"Invalid topic_pattern: {exc}", ErrorCode.INVALID_CONSUMER_CONFIG
                ) from exc
            names = [t.name for t in self._metadata().topics.values() if not t.internal]
            return tuple(sorted(n for n in names if regex.fullmatch(n)))
        return tuple(sorted(set(topics or ())))

    async def _admit(
        self,
        group: Group,
        *,
        member_id: str,
        client_id: str,
        instance_id: str | None,
        topics: tuple[str, ...],
        pattern: str | None,
        assignor: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        rest_instance: str | None,
    ) -> Member:
        """Find or add the joining member; start a rebalance unless nothing changed."""
        now = self._clock.monotonic()
        if member_id and member_id in self._fenced_ids:
            raise BrokerError(
                f"Member {member_id} was replaced by a newer instance with the "
                "same group_instance_id",
                ErrorCode.FENCED_INSTANCE_ID,
            )
        static = None
        if not member_id and instance_id:
            static = next((m for m in group.members.values() if m.instance_id == instance_id), None)
        if member_id:
            member = group.member(member_id)
            if instance_id and member.instance_id != instance_id:
                raise BrokerError(
                    "group_instance_id does not match the member", ErrorCode.FENCED_INSTANCE_ID
                )
        elif static is not None:
            member = self._replace_static(group, static, client_id)
        else:
            member = Member(
                member_id=f"{client_id or 'consumer'}-{uuid.uuid4()}",
                client_id=client_id,
                instance_id=instance_id,
                rest_instance=rest_instance,
            )
            group.members[member.member_id] = member
        changed = (
            member.topics != topics or member.pattern != pattern or member.assignor != assignor
        )
        member.topics, member.pattern, member.assignor = topics, pattern, assignor
        member.session_timeout_ms = session_timeout_ms
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.deadline = now + session_timeout_ms / 1000
        is_new = member.join_waiter is None and not member.assignment and changed
        if group.state is GroupState.STABLE and not changed and not is_new:
            member.joined = True
            if static is not None:
                await self._persist(group.group_id, [group_record(group, group.group_id)])
            return member
        if group.state is not GroupState.PREPARING_REBALANCE:
            self._prepare_rebalance(group, f"member {member.member_id} joined")
        member.joined = True
        if member.join_waiter is None or member.join_waiter.done():
            member.join_waiter = asyncio.get_running_loop().create_future()
        return member

    def _replace_static(self, group: Group, old: Member, client_id: str) -> Member:
        """A static member restarted: it takes its old place under a new member id."""
        new_id = f"{client_id or 'consumer'}-{uuid.uuid4()}"
        del group.members[old.member_id]
        self._fenced_ids[old.member_id] = group.group_id
        _fail(
            old,
            BrokerError(
                "Replaced by a newer instance with the same group_instance_id",
                ErrorCode.FENCED_INSTANCE_ID,
            ),
        )
        old.member_id = new_id
        old.client_id = client_id
        old.join_waiter = None
        group.members[new_id] = old
        log.info(
            "group %s: static member %s rejoined as %s", group.group_id, old.instance_id, new_id
        )
        return old

    def _prepare_rebalance(self, group: Group, reason: str) -> None:
        initial = group.state is GroupState.EMPTY
        group.transition(GroupState.PREPARING_REBALANCE)
        loop = asyncio.get_running_loop()
        longest = max((m.rebalance_timeout_ms for m in group.members.values()), default=0)
        delay = self._config.group_initial_rebalance_delay_ms if initial else longest
        group.rebalance_deadline = self._clock.monotonic() + delay / 1000
        group.empty_since_ms = None
        for member in group.members.values():
            member.joined = member.rest_instance is not None
            if member.join_waiter is None or member.join_waiter.done():
                member.join_waiter = loop.create_future()
        group.initial_rebalance = initial
        log.info(
            "group %s: rebalancing (%s), generation %d", group.group_id, reason, group.generation
        )

    async def _maybe_complete(self, group: Group, *, deadline_passed: bool = False) -> None:
        """Complete the rebalance when every member rejoined (and an initial delay is over),
        or when the deadline passed (dropping members that did not rejoin)."""
        if group.state is not GroupState.PREPARING_REBALANCE:
            return
        now = self._clock.monotonic()
        waiting_initial = group.initial_rebalance and now < group.rebalance_deadline
        all_joined = all(m.joined for m in group.members.values())
        if not deadline_passed and (not all_joined or waiting_initial):
            return
        for member in [m for m in group.members.values() if not m.joined]:
            del group.members[member.member_id]
            _fail(
                member,
                BrokerError(
                    "Did not rejoin within the rebalance timeout", ErrorCode.UNKNOWN_MEMBER_ID
                ),
            )
        await self._complete(group)

    async def _complete(self, group: Group) -> None:
        group.initial_rebalance = False
        members = group.members
        chosen = {m.assignor for m in members.values()}
        assignor = chosen.pop() if len(chosen) == 1 else "sticky"
        topics = self._metadata().topics
        counts = {t: len(topics[t].partitions) for t in group.subscribed_topics() if t in topics}
        previous = {m.member_id: m.assignment for m in members.values()}
        assignment = assign(
            assignor, {m.member_id: m.topics for m in members.values()}, counts, previous
        )
        records: list[dict[str, Any]] = []
        revoked = self._revocations(group, assignment)
        records.extend(revoked)
        old = (group.generation, group.assignor, {m: list(a) for m, a in previous.items()})
        group.generation += 1
        group.assignor = assignor
        for member_id, tps in assignment.items():
            members[member_id].assignment = tps
        if members:
            group.transition(GroupState.STABLE)
        else:
            group.transition(GroupState.EMPTY)
            group.empty_since_ms = self._clock.now_ms()
        records.append(group_record(group, group.group_id))
        try:
            await self._persist(group.group_id, records)
        except BrokerError as exc:
            group.generation, group.assignor = old[0], old[1]
            for member_id, tps in old[2].items():
                if member_id in members:
                    members[member_id].assignment = tps
            for member in members.values():
                _fail(member, exc)
            if group.state is not GroupState.DEAD:  # (unloaded while the write was out)
                group.transition(GroupState.PREPARING_REBALANCE if members else GroupState.EMPTY)
            return
        self._apply_rest_assignments(group)
        now = self._clock.monotonic()
        for member in members.values():
            member.deadline = now + member.session_timeout_ms / 1000
            if member.join_waiter is not None and not member.join_waiter.done():
                member.join_waiter.set_result(None)
        log.info(
            "group %s: generation %d with %d members (%s)",
            group.group_id,
            group.generation,
            len(members),
            assignor,
        )

    def _result(self, group: Group, member: Member) -> JoinResult:
        return JoinResult(
            member_id=member.member_id,
            generation_id=group.generation,
            assignor=group.assignor,
            assignment=list(member.assignment),
            members=len(group.members),
        )

    def heartbeat(self, group_id: str, member_id: str, generation: int) -> GroupState:
        """Keep ``member_id`` alive. Errors in Kafka's precedence: FENCED_INSTANCE_ID or
        UNKNOWN_MEMBER_ID, then ILLEGAL_GENERATION, then REBALANCE_IN_PROGRESS."""
        self._require(group_id)
        if member_id in self._fenced_ids:
            raise BrokerError(
                "Replaced by a newer instance with the same group_instance_id",
                ErrorCode.FENCED_INSTANCE_ID,
            )
        group = self._groups.get(group_id)
        if group is None:
            raise BrokerError(
                f"Group {group_id} has no member {member_id}", ErrorCode.UNKNOWN_MEMBER_ID
            )
        member = group.member(member_id)
        member.deadline = self._clock.monotonic() + member.session_timeout_ms / 1000
        if generation != group.generation:
            raise BrokerError(
                f"Generation {generation} is stale (now {group.generation})",
                ErrorCode.ILLEGAL_GENERATION,
            )
        if group.state is GroupState.PREPARING_REBALANCE:
            raise BrokerError(
                f"Group {group_id} is rebalancing: rejoin", ErrorCode.REBALANCE_IN_PROGRESS
            )
        return group.state

    async def leave(self, group_id: str, member_id: str) -> None:
        async with self._lock(group_id):
            self._require(group_id)
            group = self._groups.get(group_id)
            if group is None:
                raise BrokerError(
                    f"Group {group_id} has no member {member_id}", ErrorCode.UNKNOWN_MEMBER_ID
                )
            member = group.member(member_id)
            await self._remove_members(group, [member], "left the group")

    async def _remove_members(self, group: Group, gone: list[Member], reason: str) -> None:
        for member in gone:
            group.members.pop(member.member_id, None)
            _fail(
                member,
                BrokerError(f"Member {member.member_id} {reason}", ErrorCode.UNKNOWN_MEMBER_ID),
            )
        log.info("group %s: %s %s", group.group_id, [m.member_id for m in gone], reason)
        if group.state is not GroupState.PREPARING_REBALANCE and (
            group.state is GroupState.STABLE or group.members
        ):
            self._prepare_rebalance(group, f"members {reason}")
        await self._maybe_complete(group)
        if group.state is GroupState.PREPARING_REBALANCE and not group.members:
            await self._complete(group)

    # ------------------------------------------------------------------------ offsets

    async def commit(
        self,
        group_id: str,
        offsets: dict[TopicPartition, OffsetEntry],
        *,
        member_id: str | None,
        generation: int,
    ) -> None:
        """Persist ``offsets`` (next offsets to consume) for the group, fenced by generation."""
        async with self._lock(group_id):
            self._require(group_id)
            group = self._groups.get(group_id)
            if group is None:
                if member_id:
                    raise BrokerError(
                        f"Group {group_id} has no member {member_id}", ErrorCode.UNKNOWN_MEMBER_ID
                    )
                group = self._groups[group_id] = Group(group_id)
                group.empty_since_ms = self._clock.now_ms()
            group.check_generation(member_id, generation)
            now = self._clock.now_ms()
            for entry in offsets.values():
                entry.commit_timestamp = entry.commit_timestamp or now
            records = [offset_record(group_id, t, p, e) for (t, p), e in offsets.items()]
            if group.generation == 0 and not group.members:
                records.append(group_record(group, group_id))
            written = self._enqueue(group_id, records, lambda: group.offsets.update(offsets))
        # Not under the group lock: concurrent commits of one group share an append. They
        # complete (and reach the cache) in queue order.
        await written

    def committed(
        self, group_id: str, topics: Iterable[str] | None = None
    ) -> dict[TopicPartition, OffsetEntry]:
        self._require(group_id)
        group = self._groups.get(group_id)
        if group is None:
            return {}
        wanted = set(topics) if topics is not None else None
        return {tp: e for tp, e in group.offsets.items() if wanted is None or tp[0] in wanted}

    def local_groups(self) -> list[Group]:
        return [g for g in self._groups.values() if g.state is not GroupState.DEAD]

    async def delete_group(self, group_id: str) -> None:
        async with self._lock(group_id):
            self._require(group_id)
            group = self._groups.get(group_id)
            if group is None:
                raise BrokerError(f"Group {group_id} not found", ErrorCode.UNKNOWN_GROUP)
            if group.members:
                raise BrokerError(f"Group {group_id} has members", ErrorCode.GROUP_NOT_EMPTY)
            await self._tombstone(group)

    async def _tombstone(self, group: Group) -> None:
        records = [offset_record(group.group_id, t, p, None) for t, p in group.offsets]
        records.append(group_record(None, group.group_id))
        await self._persist(group.group_id, records)
        group.transition(GroupState.DEAD)
        self._groups.pop(group.group_id, None)

    # ----------------------------------------------------------------- REST instances

    def instance(self, group_id: str, name: str) -> RestInstance:
        self._require(group_id)
        instance = self._instances.get((group_id, name))
        if instance is None:
            raise BrokerError("Consumer instance not found.", ErrorCode.UNKNOWN_CONSUMER_INSTANCE)
        instance.last_used = self._clock.monotonic()
        return instance

    async def create_instance(self, instance: RestInstance) -> None:
        key = (instance.group_id, instance.name)
        async with self._lock(instance.group_id):
            self._require(instance.group_id)
            if key in self._instances:
                raise BrokerError(
                    f"Consumer with specified consumer ID {instance.name} already exists in "
                    f"group {instance.group_id}",
                    ErrorCode.CONSUMER_ALREADY_EXISTS,
                )
            await self._persist(
                instance.group_id,
                [instance_record(instance.group_id, instance.name, instance.settings())],
            )
            instance.last_used = self._clock.monotonic()
            self._instances[key] = instance

    async def save_instance(self, instance: RestInstance) -> None:
        await self._persist(
            instance.group_id,
            [instance_record(instance.group_id, instance.name, instance.settings())],
        )

    async def delete_instance(self, instance: RestInstance) -> None:
        if instance.member_id is not None:
            with contextlib.suppress(BrokerError):
                await self.leave(instance.group_id, instance.member_id)
            instance.member_id = None
        await self._persist(
            instance.group_id, [instance_record(instance.group_id, instance.name, None)]
        )
        self._instances.pop((instance.group_id, instance.name), None)

    async def subscribe_instance(self, instance: RestInstance) -> None:
        """Join the group for a subscribed REST instance (server-managed membership)."""
        timeout = self._config.consumer_instance_timeout_ms
        result = await self.join(
            instance.group_id,
            member_id=instance.member_id or "",
            client_id=instance.name,
            topics=instance.topics,
            pattern=instance.pattern,
            assignor="sticky",
            session_timeout_ms=min(
                max(timeout, self._config.group_min_session_timeout_ms),
                self._config.group_max_session_timeout_ms,
            ),
            rebalance_timeout_ms=max(timeout, self._config.group_max_session_timeout_ms),
            rest_instance=instance.name,
        )
        instance.member_id = result.member_id

    def instance_assignment(self, instance: RestInstance) -> list[TopicPartition]:
        if instance.manual is not None:
            return list(instance.manual)
        if instance.member_id is None:
            return []
        group = self._groups.get(instance.group_id)
        member = group.members.get(instance.member_id) if group else None
        return list(member.assignment) if member else []

    def _apply_rest_assignments(self, group: Group) -> None:
        for member in group.members.values():
            if member.rest_instance is None:
                continue
            instance = self._instances.get((group.group_id, member.rest_instance))
            if instance is None:
                continue
            instance.member_id = member.member_id
            keep = set(member.assignment)
            instance.positions = {tp: o for tp, o in instance.positions.items() if tp in keep}

    def _revocations(
        self, group: Group, assignment: dict[str, list[TopicPartition]]
    ) -> list[dict[str, Any]]:
        """Offset records committing, for auto-commit REST members, the partitions they lose."""
        records = []
        now = self._clock.now_ms()
        for member in group.members.values():
            instance = (
                self._instances.get((group.group_id, member.rest_instance))
                if member.rest_instance
                else None
            )
            if instance is None or not instance.auto_commit:
                continue
            lost = set(member.assignment) - set(assignment.get(member.member_id, ()))
            for tp in lost:
                position = instance.positions.get(tp)
                if position is not None and position != instance.committed_positions.get(tp):
                    entry = OffsetEntry(offset=position, commit_timestamp=now)
                    group.offsets[tp] = entry
                    records.append(offset_record(group.group_id, tp[0], tp[1], entry))
        return records

    # ------------------------------------------------------------------ housekeeping

    async def run(self) -> None:
        """Expire members, finish overdue rebalances, expire idle REST instances and the
        offsets past their retention. Runs forever (owned by the broker's TaskGroup)."""
        retention_check = 0.0
        while True:
            await self._clock.sleep(0.2)
            try:
                retention_check = await self._housekeeping(retention_check)
            except Exception:
                # A bug in one pass must not stop the sweeps for good (nor, through the
                # TaskGroup, the broker): log it and go on with the next pass.
                log.exception("group coordinator housekeeping failed")

    async def _housekeeping(self, retention_check: float) -> float:
        now = self._clock.monotonic()
        for group in list(self._groups.values()):
            with contextlib.suppress(BrokerError):
                await self._sweep(group, now)
        await self._expire_instances(now)
        if now >= retention_check:
            retention_check = now + self._config.offsets_retention_check_interval_ms / 1000
            await self._expire_offsets()
            for p in list(self._loaded):
                with contextlib.suppress(BrokerError):
                    await self._snapshot(p)
        return retention_check

    async def _sweep(self, group: Group, now: float) -> None:
        expired, overdue = _due(group, now)
        if not expired and not overdue:
            return
        async with self._lock(group.group_id):
            if self._groups.get(group.group_id) is not group:
                return
            # Again under the lock: while the sweep waited for it, heartbeats may have kept a
            # member alive, or the rebalance may have completed and a newer one begun.
            expired, overdue = _due(group, self._clock.monotonic())
            if expired:
                await self._remove_members(group, expired, "session timed out")
            elif overdue:
                await self._maybe_complete(group, deadline_passed=True)

    async def _expire_instances(self, now: float) -> None:
        idle = self._config.consumer_instance_timeout_ms / 1000
        for instance in [i for i in self._instances.values() if now - i.last_used > idle]:
            log.info(
                "REST consumer %s/%s idle for %.0f s: deleting it",
                instance.group_id,
                instance.name,
                now - instance.last_used,
            )
            with contextlib.suppress(BrokerError):
                await self.delete_instance(instance)

    async def _expire_offsets(self) -> None:
        """Offsets retention (KIP-211): see :func:`_expired_offsets`. Each group is decided
        under its lock, and skipped while a write of it is in flight (a commit newer than the
        cache must not be followed by a tombstone)."""
        retention = self._config.offsets_retention_minutes * 60_000
        for group in list(self._groups.values()):
            if _expired_offsets(group, self._clock.now_ms(), retention) is None:
                continue
            async with self._lock(group.group_id):
                if self._groups.get(group.group_id) is not group or self._writing(group.group_id):
                    continue
                expired = _expired_offsets(group, self._clock.now_ms(), retention)
                if expired is None:
                    continue
                log.info("group %s: %d offsets expired", group.group_id, len(expired))
                with contextlib.suppress(BrokerError):
                    if len(expired) == len(group.offsets):
                        await self._tombstone(group)
                    else:
                        records = [offset_record(group.group_id, t, p, None) for t, p in expired]
                        await self._persist(group.group_id, records)
                        for tp in expired:
                            del group.offsets[tp]


def _expired_offsets(group: Group, now_ms: int, retention_ms: int) -> list[TopicPartition] | None:
    """The offsets retention removes from ``group`` now (all of them: the group goes too), or
    None. A group that has had members (KIP-211) keeps all its offsets until it has been Empty
    for the retention, then loses them together; a standalone group (generation 0: simple
    consumers that only commit) loses each offset the retention after its last commit."""
    if group.members:
        return None
    if group.generation == 0:
        old = [tp for tp, e in group.offsets.items() if now_ms - e.commit_timestamp >= retention_ms]
        return old if old or not group.offsets else None
    empty_since = group.empty_since_ms
    if empty_since is None or now_ms - empty_since < retention_ms:
        return None
    return list(group.offsets)


def _coalesce(queue: list[_Write]) -> list[_Write]:
    """The writes at the head of ``queue`` that go out as one batch: as many as fit in
    _MAX_RECORDS_PER_WRITE_BATCH records, and always the first (alone if it is larger)."""
    total = len(queue[0][0])
    count = 1
    while count < len(queue) and total + len(queue[count][0]) <= _MAX_RECORDS_PER_WRITE_BATCH:
        total += len(queue[count][0])
        count += 1
    return queue[:count]


def _due(group: Group, now: float) -> tuple[list[Member], bool]:
    """The members whose session is over at ``now``, and whether the rebalance is overdue."""
    expired = [
        m
        for m in group.members.values()
        if m.rest_instance is None
        and m.deadline < now
        and not (group.state is GroupState.PREPARING_REBALANCE and m.joined)
    ]
    overdue = group.state is GroupState.PREPARING_REBALANCE and now >= group.rebalance_deadline
    return expired, overdue


def _fail(member: Member, error: BrokerError) -> None:
    waiter = member.join_waiter
    if waiter is not None and not waiter.done():
        waiter.set_exception(error)
        waiter.exception()  # mark retrieved: the joiner may already have gone
