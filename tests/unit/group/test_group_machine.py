"""Hypothesis state machine: clients of one consumer group against a real GroupCoordinator.

Four clients (two static, two dynamic) join (with one of two subscriptions), heartbeat,
commit (as members, and as simple consumers), leave; time advances on a fake clock (the
coordinator's sweeper expires sessions and finishes overdue rebalances); appends to
``__consumer_offsets`` may fail for a while; the coordinator may fail over (a new one
replays the log). Clients behave like kclient: they rejoin after REBALANCE_IN_PROGRESS or
ILLEGAL_GENERATION, and start over after UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID.

Invariants, named after Kafka's:

* single owner per partition in a generation (across every join result and the group);
* generation only grows;
* members of a Stable group cover every subscribed partition (and only their own topics);
* committed offsets come only from the current generation's members or simple consumers
  (and such commits are accepted), checked at every commit;
* state transitions follow the table (every change goes through ``Group.transition``);
* a failover keeps the group as its last committed document and every committed offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kbroker.errors import BrokerError, ErrorCode
from kbroker.group.coordinator import JoinResult
from kbroker.group.state import Group, GroupState, OffsetEntry
from tests.unit.group.support import TOPICS, Harness, group_in, settle

T = TypeVar("T")
G = group_in(0)
TABLE = {
    GroupState.EMPTY: {GroupState.PREPARING_REBALANCE, GroupState.DEAD},
    GroupState.PREPARING_REBALANCE: {GroupState.STABLE, GroupState.EMPTY, GroupState.DEAD},
    GroupState.STABLE: {GroupState.PREPARING_REBALANCE, GroupState.DEAD},
    GroupState.DEAD: set(),
}
CLIENTS = ("s0", "s1", "d0", "d1")
SUBSCRIPTIONS = (("t",), ("t", "u"))
SETTINGS = {
    "offsets.retention.minutes": 10_000,
    "offsets.retention.check.interval.ms": 1000,
    "group.initial.rebalance.delay.ms": 1000,
}
TopicPartition = tuple[str, int]
#: Checkpoints fsync; on tmpfs that costs nothing (the machine opens many logs).
FAST_TMP = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


@dataclasses.dataclass
class Client:
    name: str
    member_id: str = ""
    generation: int = -1
    assignment: list[TopicPartition] = dataclasses.field(default_factory=list)
    joining: asyncio.Task[JoinResult] | None = None
    topics: tuple[str, ...] = ("t",)
    needs_rejoin: bool = False

    @property
    def instance_id(self) -> str | None:
        return f"instance-{self.name}" if self.name.startswith("s") else None

    def reset(self) -> None:
        self.member_id, self.generation, self.assignment = "", -1, []


@contextlib.contextmanager
def recorded_transitions() -> Iterator[list[tuple[Group, GroupState, GroupState]]]:
    """Record every ``Group.transition`` call (group, from, to) while the block runs."""
    log: list[tuple[Group, GroupState, GroupState]] = []
    original = Group.transition

    def transition(self: Group, target: GroupState) -> None:
        before = self.state
        original(self, target)
        if target is not before:
            log.append((self, before, target))

    Group.transition = transition  # type: ignore[method-assign]
    try:
        yield log
    finally:
        Group.transition = original  # type: ignore[method-assign]


class GroupMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="kbroker-groups-", dir=FAST_TMP))
        self.loop = asyncio.new_event_loop()
        self.transitions_cm = recorded_transitions()
        self.transitions = self.transitions_cm.__enter__()
        self.checked_transitions = 0
        self.known_state: dict[int, GroupState] = {}
        self.h = Harness(self.tmp, **SETTINGS)
        self.run(self.h.start())
        self.clients = {name: Client(name) for name in CLIENTS}
        self.owners: dict[int, dict[TopicPartition, str]] = {}
        """generation -> partition -> client, from every join result."""
        self.max_generation = 0
        self.counter = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the machine's loop, bounded (a lost wake-up fails, not hangs)."""
        return self.loop.run_until_complete(asyncio.wait_for(coro, 10))

    def teardown(self) -> None:
        async def stop() -> None:
            await self.h.stop()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.loop.run_until_complete(stop())
        finally:
            self.loop.close()
            self.h.replicas.close()
            self.transitions_cm.__exit__(None, None, None)
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ----------------------------------------------------------------------------- helpers

    def group(self) -> Group | None:
        return self.h.coordinator.group(G)

    def collect(self) -> None:
        """Let the loop settle, then take the outcome of every finished join."""
        self.run(settle())
        for client in self.clients.values():
            task = client.joining
            if task is None or not task.done():
                continue
            client.joining = None
            error = task.exception()
            if error is None:
                result = task.result()
                assert result.generation_id >= client.generation, "generation only grows"
                client.member_id = result.member_id
                client.generation = result.generation_id
                client.assignment = result.assignment
                owners = self.owners.setdefault(result.generation_id, {})
                for tp in result.assignment:
                    owner = owners.setdefault(tp, client.name)
                    assert owner == client.name, (
                        f"single owner per partition in a generation: {tp} of generation "
                        f"{result.generation_id} to {owner} and {client.name}"
                    )
                continue
            assert isinstance(error, BrokerError), repr(error)
            if error.code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_INSTANCE_ID):
                client.reset()
            else:
                assert error.code in (
                    ErrorCode.NOT_ENOUGH_REPLICAS,
                    ErrorCode.COORDINATOR_NOT_AVAILABLE,
                ), error

    def forget_on(self, client: Client, error: BrokerError) -> None:
        if error.code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_INSTANCE_ID):
            client.reset()

    def idle_client(self, name: str) -> Client | None:
        client = self.clients[name]
        return client if client.joining is None else None

    # ------------------------------------------------------------------------------- rules

    def start_join(self, client: Client, topics: tuple[str, ...], rebalance_ms: int) -> None:
        client.joining = self.loop.create_task(
            self.h.coordinator.join(
                G,
                member_id=client.member_id,
                client_id=client.name,
                instance_id=client.instance_id,
                topics=topics,
                session_timeout_ms=10_000,
                rebalance_timeout_ms=rebalance_ms,
            )
        )
        client.topics = topics
        self.collect()

    @rule(
        name=st.sampled_from(CLIENTS),
        topics=st.sampled_from(SUBSCRIPTIONS),
        rebalance_ms=st.sampled_from([10_000, 20_000]),
    )
    def join(self, name: str, topics: tuple[str, ...], rebalance_ms: int) -> None:
        """Join, or rejoin (maybe with another subscription), whatever the client's state."""
        client = self.idle_client(name)
        if client is not None:
            self.start_join(client, topics, rebalance_ms)

    @rule()
    def poll_everyone(self) -> None:
        for name in CLIENTS:
            self.poll(name)

    @rule(name=st.sampled_from(CLIENTS))
    def poll(self, name: str) -> None:
        """What kclient's poll does: (re)join when needed, else heartbeat."""
        client = self.idle_client(name)
        if client is None:
            return
        if not client.member_id or client.needs_rejoin:
            client.needs_rejoin = False
            self.start_join(client, client.topics, 10_000)
            return
        try:
            state = self.h.coordinator.heartbeat(G, client.member_id, client.generation)
        except BrokerError as exc:
            assert exc.code in (
                ErrorCode.UNKNOWN_MEMBER_ID,
                ErrorCode.FENCED_INSTANCE_ID,
                ErrorCode.ILLEGAL_GENERATION,
                ErrorCode.REBALANCE_IN_PROGRESS,
            ), exc
            client.needs_rejoin = True
            self.forget_on(client, exc)
        else:
            assert state is GroupState.STABLE

    @rule(name=st.sampled_from(CLIENTS))
    def leave(self, name: str) -> None:
        client = self.idle_client(name)
        if client is None or not client.member_id:
            return
        with contextlib.suppress(BrokerError):
            self.run(self.h.coordinator.leave(G, client.member_id))
        client.reset()
        self.collect()

    @rule(ms=st.sampled_from([200, 1000, 3000, 7000]))
    def advance(self, ms: int) -> None:
        self.run(self.h.clock.advance(ms))
        self.collect()

    @rule(name=st.sampled_from(CLIENTS), simple=st.booleans())
    def commit(self, name: str, simple: bool) -> None:
        client = self.clients[name]
        member_id = None if simple else client.member_id
        if not simple and not member_id:
            return
        generation = -1 if simple else client.generation
        tps = client.assignment or [("t", 0)]
        self.counter += 1
        offsets = {tp: OffsetEntry(offset=self.counter) for tp in tps}
        group = self.group()
        members = set(group.members) if group else set()
        current = group.generation if group else 0
        failing = self.h.replicas.fail_next > 0
        try:
            self.run(
                self.h.coordinator.commit(G, offsets, member_id=member_id, generation=generation)
            )
        except BrokerError as exc:
            fenced = exc.code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.ILLEGAL_GENERATION)
            assert fenced or (failing and exc.code is ErrorCode.NOT_ENOUGH_REPLICAS), exc
            allowed = not members if simple else (member_id in members and generation == current)
            assert not (fenced and allowed), f"a valid commit was refused: {exc}"
        else:
            if simple:
                assert not members, "simple commits only while the group has no members"
            else:
                assert member_id in members and generation == current, (
                    "committed offsets come only from the current generation's members"
                )
            for tp, entry in offsets.items():
                assert self.h.coordinator.committed(G)[tp].offset == entry.offset
        self.collect()

    @rule(count=st.integers(1, 2))
    def appends_fail(self, count: int) -> None:
        """The next appends to __consumer_offsets fail (the ISR is short, say)."""
        self.h.replicas.fail_next = count

    @precondition(lambda self: self.h.replicas.fail_next == 0)
    @rule()
    def failover(self) -> None:
        before = self.group()
        doc = before.persisted if before else None
        offsets = dict(before.offsets) if before else {}
        self.run(self.h.failover())
        self.collect()
        after = self.group()
        if doc is None:
            assert after is None or after.generation == 0
        else:
            assert after is not None
            assert after.generation == doc["generation"]
            assert {m: x.assignment for m, x in after.members.items()} == {
                m["member_id"]: [tuple(tp) for tp in m["assignment"]] for m in doc["members"]
            }
        assert (after.offsets if after else {}) == offsets
        self.known_state.clear()

    # -------------------------------------------------------------------------- invariants

    @invariant()
    def generation_only_grows(self) -> None:
        group = self.group()
        if group is not None:
            assert group.generation >= self.max_generation, "generation only grows"
            self.max_generation = group.generation

    @invariant()
    def single_owner_per_partition_in_a_generation(self) -> None:
        group = self.group()
        if group is None:
            return
        seen: dict[TopicPartition, str] = {}
        for member in group.members.values():
            for tp in member.assignment:
                assert tp not in seen, f"{tp} owned by {seen[tp]} and {member.member_id}"
                seen[tp] = member.member_id

    @invariant()
    def members_of_a_stable_group_cover_every_subscribed_partition(self) -> None:
        group = self.group()
        if group is None or group.state is not GroupState.STABLE:
            return
        expected = {(t, p) for t in group.subscribed_topics() for p in range(TOPICS[t])}
        owned = {tp for m in group.members.values() for tp in m.assignment}
        assert owned == expected
        for member in group.members.values():
            assert all(t in member.topics for t, _ in member.assignment)

    @invariant()
    def state_transitions_follow_the_table(self) -> None:
        for changed, before, after in self.transitions[self.checked_transitions :]:
            assert after in TABLE[before], f"{before} -> {after}"
            known = self.known_state.get(id(changed))
            if known is not None:
                assert before is known, f"{known} -> {before} bypassed Group.transition"
            self.known_state[id(changed)] = after
        self.checked_transitions = len(self.transitions)
        group = self.group()
        if group is not None and id(group) in self.known_state:
            assert group.state is self.known_state[id(group)], "a state change bypassed the table"


GroupMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
TestGroupMachine = GroupMachine.TestCase
