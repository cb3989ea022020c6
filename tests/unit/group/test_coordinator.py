"""GroupCoordinator on the event loop with a fake clock and real single-replica offsets logs.

Membership (initial delay, one generation per rebalance, heartbeat errors, session and
rebalance timeouts, leave, static members), commits (fencing, group commit, failures), offsets
retention (KIP-211), REST instances, snapshots, and loading/unloading offsets partitions.
Time moves only through ``FakeClock.advance``; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kbroker.errors import BrokerError, ErrorCode
from kbroker.group import coordinator as coordinator_module
from kbroker.group.coordinator import GroupCoordinator, JoinResult, RestInstance
from kbroker.group.persist import partition_for_group
from kbroker.group.state import Group, GroupState, OffsetEntry
from tests.unit.group.support import (
    OFFSETS_PARTITIONS,
    TOPICS,
    Harness,
    group_in,
    leader_state,
    running,
    settle,
    within,
)

G = group_in(0)
ALL_T = [("t", p) for p in range(TOPICS["t"])]
INITIAL_DELAY_MS = 3000


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(tmp_path) as harness:
        yield harness


async def form(h: Harness, group_id: str, count: int, **kwargs: Any) -> list[JoinResult]:
    """A Stable group of ``count`` new members (one initial rebalance)."""
    tasks = [h.join(group_id, client_id=f"m{i}", **kwargs) for i in range(count)]
    await settle()
    await h.clock.advance(INITIAL_DELAY_MS + 200)
    return [await within(t) for t in tasks]


def the_group(h: Harness, group_id: str = G) -> Group:
    group = h.coordinator.group(group_id)
    assert group is not None
    return group


def owners(group: Group) -> dict[tuple[str, int], str]:
    out: dict[tuple[str, int], str] = {}
    for member in group.members.values():
        for tp in member.assignment:
            assert tp not in out, f"{tp} owned twice"
            out[tp] = member.member_id
    return out


def group_docs(h: Harness, group_id: str = G) -> list[dict[str, Any]]:
    """Values of the group records written for ``group_id``, in log order."""
    return [
        r["value"]
        for r in h.replicas.records()
        if r["key"]["type"] == "group" and r["key"]["group"] == group_id
    ]


async def expect_error(code: ErrorCode, awaitable: Any) -> None:
    with pytest.raises(BrokerError) as info:
        await within(awaitable)
    assert info.value.code is code, info.value


def heartbeat_error(h: Harness, member_id: str, generation: int, group_id: str = G) -> ErrorCode:
    with pytest.raises(BrokerError) as info:
        h.coordinator.heartbeat(group_id, member_id, generation)
    return info.value.code


# -------------------------------------------------------------------------------- joining


async def test_first_join_waits_the_initial_rebalance_delay(h: Harness) -> None:
    join = h.join(G)
    await settle()
    await h.clock.advance(INITIAL_DELAY_MS - 1)
    assert not join.done()
    assert the_group(h).state is GroupState.PREPARING_REBALANCE
    await h.clock.advance(201)
    result = await within(join)
    assert (result.generation_id, result.members, result.assignment) == (1, 1, ALL_T)
    assert the_group(h).state is GroupState.STABLE
    assert [d["generation"] for d in group_docs(h)] == [1]


async def test_members_joining_together_complete_in_one_generation(h: Harness) -> None:
    results = await form(h, G, 3)
    assert {r.generation_id for r in results} == {1}
    assert {r.members for r in results} == {3}
    assigned = [tp for r in results for tp in r.assignment]
    assert sorted(assigned) == ALL_T and len(set(assigned)) == len(assigned)
    assert [len(r.assignment) for r in results] == [2, 2, 2]
    assert [d["generation"] for d in group_docs(h)] == [1], "one persisted generation"


async def test_a_join_to_a_stable_group_rebalances_everyone_into_one_generation(
    h: Harness,
) -> None:
    a, b = await form(h, G, 2)
    newcomer = h.join(G, client_id="c")
    await settle()
    assert the_group(h).state is GroupState.PREPARING_REBALANCE
    assert not newcomer.done(), "waits for the known members to rejoin"
    for old in (a, b):
        assert heartbeat_error(h, old.member_id, 1) is ErrorCode.REBALANCE_IN_PROGRESS
    rejoin_a = h.join(G, a.member_id)
    await settle()
    assert not newcomer.done() and not rejoin_a.done()
    rejoin_b = h.join(G, b.member_id)
    results = [await within(t) for t in (newcomer, rejoin_a, rejoin_b)]
    assert {r.generation_id for r in results} == {2}
    assert sorted(tp for r in results for tp in r.assignment) == ALL_T
    # sticky: each old member gave up exactly one partition to the newcomer
    assert set(results[1].assignment) <= set(a.assignment)
    assert set(results[2].assignment) <= set(b.assignment)
    assert [d["generation"] for d in group_docs(h)] == [1, 2]


async def test_a_known_member_rejoining_unchanged_keeps_its_assignment(h: Harness) -> None:
    a, b = await form(h, G, 2)
    again = await within(h.join(G, a.member_id))
    assert (again.generation_id, again.assignment) == (1, a.assignment)
    assert the_group(h).state is GroupState.STABLE
    assert h.coordinator.heartbeat(G, b.member_id, 1) is GroupState.STABLE
    # a changed subscription is a new rebalance
    changed = h.join(G, a.member_id, topics=["t", "u"])
    await settle()
    assert the_group(h).state is GroupState.PREPARING_REBALANCE
    rejoin_b = h.join(G, b.member_id)
    assert (await within(changed)).generation_id == (await within(rejoin_b)).generation_id == 2


async def test_join_checks_its_settings(h: Harness) -> None:
    await expect_error(ErrorCode.INVALID_CONSUMER_CONFIG, h.join(G, assignor="nope"))
    await expect_error(ErrorCode.INVALID_SESSION_TIMEOUT, h.join(G, session_timeout_ms=10))
    await expect_error(
        ErrorCode.INVALID_SESSION_TIMEOUT,
        h.join(G, session_timeout_ms=20_000, rebalance_timeout_ms=10_000),
    )
    await expect_error(ErrorCode.INVALID_GROUP_ID, h.join(""))
    await expect_error(ErrorCode.UNKNOWN_MEMBER_ID, h.join(G, "who"))


# ----------------------------------------------------------------------------- heartbeats


async def test_heartbeat_errors_follow_kafkas_precedence(h: Harness) -> None:
    """Kafka: unknown member, then stale generation, then the group's state."""
    a, _ = await form(h, G, 2)
    assert heartbeat_error(h, "stranger", 1) is ErrorCode.UNKNOWN_MEMBER_ID
    assert heartbeat_error(h, "stranger", 0) is ErrorCode.UNKNOWN_MEMBER_ID
    assert heartbeat_error(h, a.member_id, 1, group_in(1)) is ErrorCode.UNKNOWN_MEMBER_ID
    assert heartbeat_error(h, a.member_id, 0) is ErrorCode.ILLEGAL_GENERATION
    assert h.coordinator.heartbeat(G, a.member_id, 1) is GroupState.STABLE
    h.join(G, client_id="c")
    await settle()
    assert heartbeat_error(h, a.member_id, 1) is ErrorCode.REBALANCE_IN_PROGRESS
    assert heartbeat_error(h, "stranger", 1) is ErrorCode.UNKNOWN_MEMBER_ID
    assert heartbeat_error(h, a.member_id, 0) is ErrorCode.ILLEGAL_GENERATION
    assert heartbeat_error(h, a.member_id, 7) is ErrorCode.ILLEGAL_GENERATION


# ------------------------------------------------------------------------------- liveness


async def test_session_expiry_removes_the_member_and_rebalances_the_rest(h: Harness) -> None:
    a, b = await form(h, G, 2)  # t = 3.2 s; sessions of 10 s
    for _ in range(4):  # to t = 11.2 s
        await h.clock.advance(2000)
        assert h.coordinator.heartbeat(G, a.member_id, 1) is GroupState.STABLE
    await h.clock.advance(1800)  # t = 13.0 s: b's session ends at 13.2 s
    assert b.member_id in the_group(h).members
    await h.clock.advance(400)
    assert b.member_id not in the_group(h).members
    assert heartbeat_error(h, b.member_id, 1) is ErrorCode.UNKNOWN_MEMBER_ID
    assert heartbeat_error(h, a.member_id, 1) is ErrorCode.REBALANCE_IN_PROGRESS
    result = await within(h.join(G, a.member_id))
    assert (result.generation_id, result.assignment, result.members) == (2, ALL_T, 1)


async def test_leave_rebalances_at_once_and_the_last_leave_empties_the_group(
    h: Harness,
) -> None:
    a, b = await form(h, G, 2)
    await within(h.coordinator.leave(G, b.member_id))
    assert heartbeat_error(h, a.member_id, 1) is ErrorCode.REBALANCE_IN_PROGRESS
    result = await within(h.join(G, a.member_id))
    assert (result.generation_id, result.assignment) == (2, ALL_T)
    await expect_error(ErrorCode.UNKNOWN_MEMBER_ID, h.coordinator.leave(G, b.member_id))
    await within(h.coordinator.leave(G, a.member_id))
    group = the_group(h)
    assert (group.state, group.generation, group.members) == (GroupState.EMPTY, 3, {})
    assert group.empty_since_ms == h.clock.now_ms()
    assert group_docs(h)[-1]["members"] == []


async def test_rebalance_timeout_drops_members_that_did_not_rejoin(h: Harness) -> None:
    timeouts: dict[str, Any] = {"session_timeout_ms": 10_000, "rebalance_timeout_ms": 20_000}
    a, b = await form(h, G, 2, **timeouts)
    newcomer = h.join(G, client_id="c", **timeouts)
    rejoin_a = h.join(G, a.member_id, **timeouts)
    await settle()
    for _ in range(9):  # b keeps its session alive but never rejoins
        await h.clock.advance(2000)
        assert heartbeat_error(h, b.member_id, 1) is ErrorCode.REBALANCE_IN_PROGRESS
    await h.clock.advance(1800)  # 19.8 s into the rebalance
    assert not newcomer.done()
    await h.clock.advance(400)
    results = [await within(t) for t in (newcomer, rejoin_a)]
    assert {r.generation_id for r in results} == {2}
    assert sorted(tp for r in results for tp in r.assignment) == ALL_T
    assert heartbeat_error(h, b.member_id, 1) is ErrorCode.UNKNOWN_MEMBER_ID


async def test_a_heartbeat_accepted_while_the_sweeper_waits_keeps_the_member(
    h: Harness,
) -> None:
    a, b = await form(h, G, 2)  # t = 3.2 s, sessions end at 13.2 s
    for _ in range(4):
        await h.clock.advance(2000)
        h.coordinator.heartbeat(G, a.member_id, 1)
    await h.clock.advance(1800)  # t = 13.0 s
    h.replicas.hold = True  # a write holds the group's lock
    create = asyncio.create_task(h.coordinator.create_instance(rest_instance(G, "i")))
    await settle()
    await h.clock.advance(400)  # b's session is over: the sweeper queues for the lock
    assert h.coordinator.heartbeat(G, b.member_id, 1) is GroupState.STABLE  # b is back in time
    assert h.coordinator.heartbeat(G, a.member_id, 1) is GroupState.STABLE
    await h.replicas.release()
    await within(create)
    assert h.coordinator.heartbeat(G, b.member_id, 1) is GroupState.STABLE
    assert the_group(h).generation == 1


async def test_a_sweeper_that_waited_for_the_lock_does_not_end_a_newer_rebalance(
    h: Harness,
) -> None:
    timeouts: dict[str, Any] = {"session_timeout_ms": 10_000, "rebalance_timeout_ms": 10_000}
    a, b = await form(h, G, 2, **timeouts)
    c = h.join(G, client_id="c", **timeouts)  # rebalance 2 starts; 10 s to rejoin
    rejoin_a = h.join(G, a.member_id, **timeouts)
    await h.clock.advance(5000)
    assert heartbeat_error(h, b.member_id, 1) is ErrorCode.REBALANCE_IN_PROGRESS
    h.replicas.hold = True
    create = asyncio.create_task(h.coordinator.create_instance(rest_instance(G, "i")))
    await settle()
    rejoin_b = h.join(G, b.member_id, **timeouts)  # queued behind the write
    d = h.join(G, client_id="d", **timeouts)  # queued too: it starts rebalance 3
    await settle()
    await h.clock.advance(5200)  # rebalance 2 is overdue: the sweeper queues as well
    await h.replicas.release()
    await within(create)
    results = [await within(t) for t in (c, rejoin_a, rejoin_b)]
    assert {r.generation_id for r in results} == {2}
    group = the_group(h)
    assert group.state is GroupState.PREPARING_REBALANCE, "rebalance 3 has just begun"
    assert len(group.members) == 4
    for r in results:
        assert heartbeat_error(h, r.member_id, 2) is ErrorCode.REBALANCE_IN_PROGRESS
    rejoins = [h.join(G, r.member_id, **timeouts) for r in results]
    final = [await within(t) for t in (d, *rejoins)]
    assert {r.generation_id for r in final} == {3}


# --------------------------------------------------------------------------------- static


async def test_static_member_restart_keeps_its_assignment_and_fences_the_old_id(
    h: Harness,
) -> None:
    static = h.join(G, client_id="a", instance_id="ia")
    other = h.join(G, client_id="b")
    await h.clock.advance(INITIAL_DELAY_MS + 200)
    old, b = await within(static), await within(other)
    restarted = await within(h.join(G, client_id="a2", instance_id="ia"))
    assert restarted.member_id != old.member_id
    assert (restarted.generation_id, restarted.assignment) == (1, old.assignment)
    assert h.coordinator.heartbeat(G, b.member_id, 1) is GroupState.STABLE, "no rebalance"
    assert h.coordinator.heartbeat(G, restarted.member_id, 1) is GroupState.STABLE
    assert heartbeat_error(h, old.member_id, 1) is ErrorCode.FENCED_INSTANCE_ID
    await expect_error(ErrorCode.FENCED_INSTANCE_ID, h.join(G, old.member_id, instance_id="ia"))
    await expect_error(
        ErrorCode.FENCED_INSTANCE_ID, h.join(G, restarted.member_id, instance_id="other")
    )
    last = group_docs(h)[-1]
    assert last["generation"] == 1
    assert {m["member_id"] for m in last["members"]} == {restarted.member_id, b.member_id}


async def test_a_static_restart_fails_the_old_instance_pending_join(h: Harness) -> None:
    old = h.join(G, client_id="a", instance_id="ia")
    h.join(G, client_id="b")
    await h.clock.advance(INITIAL_DELAY_MS + 200)
    first = await within(old)
    h.join(G, client_id="c")  # rebalance 2: the old instance rejoins and waits for b
    pending = h.join(G, first.member_id, instance_id="ia")
    await settle()
    assert not pending.done()
    h.join(G, client_id="a2", instance_id="ia")
    await expect_error(ErrorCode.FENCED_INSTANCE_ID, pending)


# -------------------------------------------------------------------------------- commits


def offsets(*pairs: tuple[int, int], topic: str = "t") -> dict[tuple[str, int], OffsetEntry]:
    return {(topic, p): OffsetEntry(offset=o) for p, o in pairs}


def committed(h: Harness, group_id: str = G) -> dict[tuple[str, int], int]:
    return {tp: e.offset for tp, e in h.coordinator.committed(group_id).items()}


async def test_commits_are_fenced_by_member_and_generation(h: Harness) -> None:
    a, b = await form(h, G, 2)
    commit = h.coordinator.commit
    await within(commit(G, offsets((0, 5)), member_id=a.member_id, generation=1))
    assert committed(h) == {("t", 0): 5}
    await expect_error(
        ErrorCode.ILLEGAL_GENERATION,
        commit(G, offsets((0, 6)), member_id=a.member_id, generation=0),
    )
    await expect_error(
        ErrorCode.UNKNOWN_MEMBER_ID, commit(G, offsets((0, 6)), member_id="who", generation=1)
    )
    await expect_error(
        ErrorCode.UNKNOWN_MEMBER_ID, commit(G, offsets((0, 6)), member_id=None, generation=-1)
    )
    fresh = group_in(0, "fresh")
    await expect_error(
        ErrorCode.UNKNOWN_MEMBER_ID, commit(fresh, offsets((0, 1)), member_id="x", generation=1)
    )
    assert committed(h) == {("t", 0): 5}
    # simple consumers: accepted only while the group has no members
    await within(commit(fresh, offsets((0, 1)), member_id=None, generation=-1))
    assert committed(h, fresh) == {("t", 0): 1}
    group = the_group(h, fresh)
    assert (group.state, group.generation, group.empty_since_ms) == (
        GroupState.EMPTY,
        0,
        h.clock.now_ms(),
    )
    assert group_docs(h, fresh)[-1]["empty_since_ms"] == h.clock.now_ms()
    for m in (a, b):
        await within(h.coordinator.leave(G, m.member_id))
    await within(commit(G, offsets((0, 9)), member_id=None, generation=-1))
    assert committed(h) == {("t", 0): 9}


async def test_commits_during_a_rebalance_come_from_the_current_generation(h: Harness) -> None:
    a, b = await form(h, G, 2)
    h.join(G, client_id="c")
    await settle()
    assert the_group(h).state is GroupState.PREPARING_REBALANCE
    # the previous owners may still commit what they processed
    await within(h.coordinator.commit(G, offsets((0, 3)), member_id=a.member_id, generation=1))
    rejoins = [h.join(G, m.member_id) for m in (a, b)]
    assert {(await within(t)).generation_id for t in rejoins} == {2}
    await expect_error(
        ErrorCode.ILLEGAL_GENERATION,
        h.coordinator.commit(G, offsets((0, 4)), member_id=a.member_id, generation=1),
    )
    assert committed(h) == {("t", 0): 3}


async def test_commits_need_the_coordinator(h: Harness) -> None:
    other = group_in(2)
    h.follow([2])
    for call in (
        h.coordinator.commit(other, offsets((0, 1)), member_id=None, generation=-1),
        h.join(other),
    ):
        await expect_error(ErrorCode.COORDINATOR_NOT_AVAILABLE, call)
    assert not h.coordinator.coordinates(other)
    assert h.coordinator.coordinates(G)


async def test_a_fenced_broker_neither_commits_nor_serves_committed_offsets(h: Harness) -> None:
    """A broker that lost its session (or resumed from a pause) may hold state the cluster has
    moved past: refuse, retriably, until the session is confirmed."""
    await within(h.coordinator.commit(G, offsets((0, 3)), member_id=None, generation=-1))
    h.replicas.fenced = True
    await expect_error(
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        h.coordinator.commit(G, offsets((0, 4)), member_id=None, generation=-1),
    )
    with pytest.raises(BrokerError) as info:
        h.coordinator.committed(G)
    assert info.value.code is ErrorCode.COORDINATOR_NOT_AVAILABLE
    h.replicas.fenced = False
    assert committed(h) == {("t", 0): 3}


async def test_group_commit_shares_appends_and_completes_in_order(h: Harness) -> None:
    h.replicas.hold = True
    first = asyncio.create_task(
        h.coordinator.commit(G, offsets((0, 1)), member_id=None, generation=-1)
    )
    await settle()
    assert len(h.replicas.parked) == 1
    done: list[int] = []
    tasks = []
    for i in range(50):
        task = asyncio.create_task(
            h.coordinator.commit(G, offsets((i % 6, 100 + i)), member_id=None, generation=-1)
        )
        task.add_done_callback(functools.partial(lambda i, _t: done.append(i), i))
        tasks.append(task)
    await settle()
    assert len(h.replicas.parked) == 1, "queued behind the write in flight"
    assert committed(h) == {}, "nothing is visible before it is written"
    await h.replicas.release()
    await within(asyncio.gather(first, *tasks))
    assert done == list(range(50)), "completed in queue order"
    assert len(h.replicas.appends) == 2, "the 50 queued commits went out as one append"
    assert committed(h) == {
        ("t", k): max(100 + i for i in range(50) if i % 6 == k) for k in range(6)
    }


async def test_a_failed_group_commit_fails_every_waiter_and_leaves_the_cache(h: Harness) -> None:
    await within(h.coordinator.commit(G, offsets((0, 1), (1, 1)), member_id=None, generation=-1))
    h.replicas.hold = True
    tasks = [
        asyncio.create_task(
            h.coordinator.commit(G, offsets((i % 2, 10 + i)), member_id=None, generation=-1)
        )
        for i in range(10)
    ]
    await settle()
    h.replicas.fail = BrokerError("not enough replicas", ErrorCode.NOT_ENOUGH_REPLICAS)
    await h.replicas.release()
    results = await within(asyncio.gather(*tasks, return_exceptions=True))
    assert all(
        isinstance(r, BrokerError) and r.code is ErrorCode.NOT_ENOUGH_REPLICAS for r in results
    )
    assert committed(h) == {("t", 0): 1, ("t", 1): 1}
    h.replicas.fail = None
    await within(h.coordinator.commit(G, offsets((0, 50)), member_id=None, generation=-1))
    assert committed(h) == {("t", 0): 50, ("t", 1): 1}


async def test_concurrent_large_commits_each_fit_in_an_append(h: Harness) -> None:
    """Coalescing is bounded by records: commits that fit alone must not fail together."""
    big = [{("t", p): OffsetEntry(offset=p + i) for p in range(2000)} for i in range(8)]
    h.replicas.hold = True
    tasks = [
        asyncio.create_task(h.coordinator.commit(G, o, member_id=None, generation=-1)) for o in big
    ]
    await settle()
    await h.replicas.release()
    await within(asyncio.gather(*tasks), 30)
    assert committed(h) == {("t", p): p + 7 for p in range(2000)}


# ----------------------------------------------------------------------- offsets retention

RETENTION = {"offsets.retention.minutes": 1, "offsets.retention.check.interval.ms": 1000}
LONG_SESSION: dict[str, Any] = {"session_timeout_ms": 300_000, "rebalance_timeout_ms": 300_000}


def tombstones(h: Harness, group_id: str) -> list[dict[str, Any]]:
    return [
        r["key"]
        for r in h.replicas.records()
        if r["key"]["group"] == group_id and r["value"] is None
    ]


async def test_offsets_expire_only_after_the_group_is_empty_for_the_retention(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, **RETENTION) as h:
        (a,) = await form(h, G, 1, **LONG_SESSION)
        commit = h.coordinator.commit
        await within(commit(G, offsets((0, 1)), member_id=a.member_id, generation=1))
        await h.clock.advance_by_steps(100_000, 1000)  # active group: old commits stay
        await within(commit(G, offsets((1, 2)), member_id=a.member_id, generation=1))
        assert committed(h) == {("t", 0): 1, ("t", 1): 2}
        await within(h.coordinator.leave(G, a.member_id))
        await h.clock.advance_by_steps(59_000, 1000)
        assert committed(h) == {("t", 0): 1, ("t", 1): 2}
        assert tombstones(h, G) == []
        await h.clock.advance_by_steps(2000, 1000)
        assert h.coordinator.group(G) is None, "all offsets expired together"
        assert committed(h) == {}
        assert sorted(map(str, tombstones(h, G))) == sorted(
            map(
                str,
                [
                    {"type": "offset", "group": G, "topic": "t", "partition": 0},
                    {"type": "offset", "group": G, "topic": "t", "partition": 1},
                    {"type": "group", "group": G},
                ],
            )
        )


async def test_a_rejoin_resets_the_retention_clock(tmp_path: Path) -> None:
    async with running(tmp_path, **RETENTION) as h:
        (a,) = await form(h, G, 1, **LONG_SESSION)
        await within(h.coordinator.commit(G, offsets((0, 1)), member_id=a.member_id, generation=1))
        await within(h.coordinator.leave(G, a.member_id))
        await h.clock.advance_by_steps(50_000, 1000)
        back = h.join(G, **LONG_SESSION)
        await h.clock.advance_by_steps(INITIAL_DELAY_MS + 1000, 1000)
        b = await within(back)
        await within(h.coordinator.leave(G, b.member_id))
        await h.clock.advance_by_steps(50_000, 1000)
        assert committed(h) == {("t", 0): 1}, "empty for 50 s only, since the last leave"
        await h.clock.advance_by_steps(11_000, 1000)
        assert committed(h) == {}


async def test_standalone_offsets_expire_by_their_last_commit(tmp_path: Path) -> None:
    """Kafka (KIP-211): a group without members ever (a simple consumer that only commits)
    keeps each offset for the retention after its last commit."""
    async with running(tmp_path, **RETENTION) as h:
        commit = h.coordinator.commit
        await within(commit(G, offsets((0, 1), (1, 1)), member_id=None, generation=-1))
        await h.clock.advance_by_steps(40_000, 1000)
        await within(commit(G, offsets((1, 2), (2, 2)), member_id=None, generation=-1))
        await h.clock.advance_by_steps(21_000, 1000)
        assert committed(h) == {("t", 1): 2, ("t", 2): 2}, "only partition 0 is 60 s old"
        await h.clock.advance_by_steps(40_000, 1000)
        assert committed(h) == {}
        assert h.coordinator.group(G) is None


async def test_an_offset_is_not_expired_over_a_commit_in_flight(tmp_path: Path) -> None:
    async with running(tmp_path, **RETENTION) as h:
        commit = h.coordinator.commit
        await within(commit(G, offsets((0, 1), (1, 1)), member_id=None, generation=-1))
        await h.clock.advance_by_steps(59_000, 1000)
        h.replicas.hold = True
        again = asyncio.create_task(commit(G, offsets((0, 2)), member_id=None, generation=-1))
        await h.clock.advance_by_steps(2000, 1000)  # the cached commit of (t, 0) looks expired
        await h.replicas.release()
        await within(again)
        await h.clock.advance_by_steps(2000, 1000)
        assert committed(h) == {("t", 0): 2}, "(t, 1) expired; (t, 0) was just committed"


async def test_offsets_expiry_rechecks_the_group_under_its_lock(tmp_path: Path) -> None:
    async with running(tmp_path, **RETENTION) as h:
        (a,) = await form(h, G, 1, **LONG_SESSION)
        await within(h.coordinator.commit(G, offsets((0, 1)), member_id=a.member_id, generation=1))
        await within(h.coordinator.leave(G, a.member_id))
        await h.clock.advance_by_steps(59_000, 1000)
        h.replicas.hold = True
        create = asyncio.create_task(h.coordinator.create_instance(rest_instance(G, "i")))
        await settle()
        back = h.join(G, **LONG_SESSION)  # queued for the lock
        await settle()
        await h.clock.advance(2000)  # expiry is due: it queues behind the join
        await h.replicas.release()
        await within(create)
        await settle()
        assert h.coordinator.group(G) is not None, "a member joined: the offsets stay"
        assert committed(h) == {("t", 0): 1}
        await h.clock.advance_by_steps(INITIAL_DELAY_MS + 200, 1000)
        assert (await within(back)).generation_id == 3


# ------------------------------------------------------------------------- REST instances


def rest_instance(group_id: str, name: str, **kwargs: Any) -> RestInstance:
    return RestInstance(
        group_id=group_id,
        name=name,
        format="json",
        auto_offset_reset="earliest",
        auto_commit=False,
        **kwargs,
    )


async def test_rest_instances_create_duplicate_delete(h: Harness) -> None:
    instance = rest_instance(G, "i1", topics=("t",))
    await within(h.coordinator.create_instance(instance))
    assert h.coordinator.instance(G, "i1") is instance
    await expect_error(
        ErrorCode.CONSUMER_ALREADY_EXISTS, h.coordinator.create_instance(rest_instance(G, "i1"))
    )
    await within(h.coordinator.delete_instance(instance))
    with pytest.raises(BrokerError) as info:
        h.coordinator.instance(G, "i1")
    assert info.value.code is ErrorCode.UNKNOWN_CONSUMER_INSTANCE
    written = [r for r in h.replicas.records() if r["key"]["type"] == "instance"]
    assert [r["value"] is None for r in written] == [False, True]
    assert written[0]["value"] == instance.settings()


async def test_an_idle_rest_instance_expires_and_leaves_its_group(tmp_path: Path) -> None:
    async with running(tmp_path, **{"consumer.instance.timeout.ms": 10_000}) as h:
        instance = rest_instance(G, "i1", topics=("t",))
        await within(h.coordinator.create_instance(instance))
        subscribe = asyncio.create_task(h.coordinator.subscribe_instance(instance))
        await h.clock.advance_by_steps(INITIAL_DELAY_MS + 200)
        await within(subscribe)
        assert h.coordinator.instance_assignment(instance) == ALL_T
        await h.clock.advance_by_steps(4_000)  # t = 7.2 s
        h.coordinator.instance(G, "i1")  # used: idle from now
        await h.clock.advance_by_steps(9_800)
        assert h.coordinator.instance(G, "i1") is instance
        await h.clock.advance_by_steps(10_400)
        with pytest.raises(BrokerError):
            h.coordinator.instance(G, "i1")
        group = the_group(h)
        assert (group.state, group.members) == (GroupState.EMPTY, {})
        assert any(
            r["key"]["type"] == "instance" and r["value"] is None for r in h.replicas.records()
        )


# ------------------------------------------------------------------------------ snapshots

SNAPSHOTS = {"offsets.retention.check.interval.ms": 1000}


def spy_deletions(h: Harness, monkeypatch: pytest.MonkeyPatch, p: int) -> list[int]:
    plog = h.replicas.partitions[p].log
    calls: list[int] = []
    real = plog.delete_segments_before

    def spy(offset: int) -> int:
        calls.append(offset)
        return real(offset)

    monkeypatch.setattr(plog, "delete_segments_before", spy)
    return calls


def state_of(coordinator: GroupCoordinator) -> dict[str, Any]:
    """Everything a failover must keep (runtime fields aside)."""
    groups = {
        g.group_id: (
            g.state,
            g.generation,
            g.assignor,
            g.empty_since_ms,
            {m: x.to_json() for m, x in sorted(g.members.items())},
            dict(sorted(g.offsets.items())),
        )
        for g in coordinator.local_groups()
    }
    instances = {}
    for key in REST_INSTANCES:
        with contextlib.suppress(BrokerError):
            instance = coordinator.instance(*key)
            instances[key] = (instance.settings(), instance.member_id)
    return {"groups": groups, "instances": instances}


REST_GROUP = group_in(2, "rest")
REST_INSTANCES = [(REST_GROUP, "r1"), (G, "unsubscribed")]


async def build_state(h: Harness) -> None:
    """Groups in every shape: rebalanced twice with a static member, simple, REST."""
    a, b = await form(h, G, 2)
    c = h.join(G, client_id="c", instance_id="static-c", topics=["t", "u"])
    rejoins = [h.join(G, m.member_id) for m in (a, b)]
    results = [await within(t) for t in (c, *rejoins)]
    for r in results:
        await within(
            h.coordinator.commit(
                G,
                {
                    tp: OffsetEntry(offset=10 + i, metadata=r.member_id)
                    for i, tp in enumerate(r.assignment)
                },
                member_id=r.member_id,
                generation=2,
            )
        )
    simple = group_in(1, "simple")
    await within(h.coordinator.commit(simple, offsets((3, 33)), member_id=None, generation=-1))
    instance = rest_instance(REST_GROUP, "r1", topics=("u",))
    await within(h.coordinator.create_instance(instance))
    subscribe = asyncio.create_task(h.coordinator.subscribe_instance(instance))
    await h.clock.advance(INITIAL_DELAY_MS + 200)
    await within(subscribe)
    await within(h.coordinator.create_instance(rest_instance(G, "unsubscribed")))


async def test_snapshot_rewrites_the_state_and_deletes_the_segments_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path, segment_bytes=1024, **SNAPSHOTS) as h:
        await build_state(h)
        for i in range(10):  # more segments
            await within(
                h.coordinator.commit(
                    group_in(0, "x"), offsets((0, i)), member_id=None, generation=-1
                )
            )
        p = partition_for_group(G, OFFSETS_PARTITIONS)
        plog = h.replicas.partitions[p].log
        assert plog.segment_count >= 2
        calls = spy_deletions(h, monkeypatch, p)
        before = state_of(h.coordinator)
        end = plog.log_end_offset
        appends = len(h.replicas.appends)
        await h.clock.advance(1000)
        assert calls == [end], "segments before the snapshot's first offset are deleted"
        assert 0 < plog.log_start_offset <= end
        snapshot = [r for a in h.replicas.appends[appends:] if a.partition == p for r in a.records]
        keys = {str(sorted(r["key"].items())) for r in snapshot}
        live = {
            str(sorted({"type": "offset", "group": g, "topic": t, "partition": q}.items()))
            for g, (*_, offs) in before["groups"].items()
            if partition_for_group(g, OFFSETS_PARTITIONS) == p
            for t, q in offs
        }
        assert live <= keys
        assert str(sorted({"type": "group", "group": G}.items())) in keys
        assert (
            str(sorted({"type": "instance", "group": G, "instance": "unsubscribed"}.items()))
            in keys
        )
        assert all(r["value"] is not None for r in snapshot)
        coordinator = await h.failover()
        assert state_of(coordinator) == before


async def test_no_snapshot_while_a_write_is_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path, segment_bytes=1024, **SNAPSHOTS) as h:
        for i in range(10):
            await within(
                h.coordinator.commit(G, offsets((i % 6, i)), member_id=None, generation=-1)
            )
        p = partition_for_group(G, OFFSETS_PARTITIONS)
        calls = spy_deletions(h, monkeypatch, p)
        h.replicas.hold = True
        commit = asyncio.create_task(
            h.coordinator.commit(G, offsets((0, 99)), member_id=None, generation=-1)
        )
        await settle()
        await h.clock.advance(1000)
        assert calls == [] and len(h.replicas.parked) == 1
        await h.replicas.release()
        await within(commit)
        end = h.replicas.partitions[p].log.log_end_offset
        await h.clock.advance(1000)
        assert calls == [end]
        before = state_of(h.coordinator)
        assert state_of(await h.failover()) == before


async def test_a_snapshot_during_a_rebalance_keeps_the_persisted_membership(
    tmp_path: Path,
) -> None:
    """Mid-rebalance membership is not durable: after a failover the group must be what the
    log said, so that members who left are still there to expire (and trigger a rebalance)
    rather than vanishing with their partitions owned by no one."""
    async with running(tmp_path, segment_bytes=1024, **SNAPSHOTS) as h:
        a, b, c = await form(h, G, 3)
        for i in range(10):
            await within(
                h.coordinator.commit(G, offsets((0, i)), member_id=a.member_id, generation=1)
            )
        await within(h.coordinator.leave(G, b.member_id))
        rejoin = h.join(G, a.member_id)  # c has not rejoined yet
        await h.clock.advance(1000)  # snapshot time
        coordinator = await h.failover()
        with pytest.raises(BrokerError):
            await within(rejoin)
        group = coordinator.group(G)
        assert group is not None and group.state is GroupState.STABLE
        assert set(owners(group)) == set(ALL_T), "every partition has an owner"
        assert set(group.members) == {a.member_id, b.member_id, c.member_id}


async def test_a_large_snapshot_is_written_in_appends_that_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path, **SNAPSHOTS) as h:
        for i in range(5):
            await within(
                h.coordinator.commit(
                    G,
                    {("t", p): OffsetEntry(offset=p) for p in range(i * 1800, (i + 1) * 1800)},
                    member_id=None,
                    generation=-1,
                ),
                30,
            )
        p = partition_for_group(G, OFFSETS_PARTITIONS)
        plog = h.replicas.partitions[p].log
        assert plog.segment_count >= 2
        calls = spy_deletions(h, monkeypatch, p)
        end = plog.log_end_offset
        await h.clock.advance(1000)
        assert calls == [end]
        assert len(h.coordinator.committed(G)) == 9000


# ---------------------------------------------------------------------- loading, unloading


async def test_failover_replays_groups_offsets_and_instances(h: Harness) -> None:
    await build_state(h)
    before = state_of(h.coordinator)
    old = h.coordinator
    group = the_group(h)
    members = {m.member_id: m.instance_id for m in group.members.values()}
    coordinator = await h.failover()
    assert state_of(coordinator) == before
    assert len(before["groups"]) == 3 and len(before["instances"]) == 2
    with pytest.raises(BrokerError) as info:
        old.group(G)
    assert info.value.code is ErrorCode.COORDINATOR_NOT_AVAILABLE
    # members carry on with the new coordinator, in the same generation
    for member_id in members:
        assert coordinator.heartbeat(G, member_id, 2) is GroupState.STABLE
    member_id = next(iter(members))
    await within(coordinator.commit(G, offsets((5, 77)), member_id=member_id, generation=2))
    assert coordinator.committed(G)[("t", 5)].offset == 77
    # a static member restarting after the failover keeps its place
    static = next(m for m, i in members.items() if i == "static-c")
    restarted = await within(h.join(G, client_id="c2", instance_id="static-c", topics=["t", "u"]))
    assert restarted.generation_id == 2
    assert restarted.assignment == group.members[static].assignment


async def test_unload_fails_waiting_joins(h: Harness) -> None:
    join = h.join(G)
    await settle()
    h.follow()
    await expect_error(ErrorCode.COORDINATOR_NOT_AVAILABLE, join)
    assert not h.coordinator.coordinates(G)
    with pytest.raises(BrokerError) as info:
        h.coordinator.heartbeat(G, "x", 0)
    assert info.value.code is ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert h.coordinator.local_groups() == []


async def test_a_rebalance_write_cut_short_by_an_unload_leaves_the_sweeper_running(
    h: Harness,
) -> None:
    join = h.join(G)
    await settle()
    h.replicas.hold = True
    await h.clock.advance(INITIAL_DELAY_MS + 200)  # the sweeper completes the rebalance...
    assert len(h.replicas.parked) == 1  # ... and waits for its write
    h.follow()
    await h.replicas.release()  # the write fails: not leader any more
    await expect_error(ErrorCode.COORDINATOR_NOT_AVAILABLE, join)
    assert h.housekeeping is not None and not h.housekeeping.done()
    await h.lead()
    await within(h.coordinator.commit(G, offsets((0, 1)), member_id=None, generation=-1))
    assert committed(h) == {("t", 0): 1}


async def test_requests_while_loading_answer_load_in_progress(h: Harness) -> None:
    await within(h.coordinator.commit(G, offsets((0, 4)), member_id=None, generation=-1))
    h.follow([0])
    replica = h.replicas.partitions[0]
    replica.make_leader(leader_state(h.epoch + 1), (1,))
    h.coordinator.on_role_change(replica)
    with pytest.raises(BrokerError) as info:
        h.coordinator.committed(G)
    assert info.value.code is ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    await settle()
    assert committed(h) == {("t", 0): 4}


async def test_a_new_leader_epoch_during_a_load_still_loads(h: Harness) -> None:
    await within(h.coordinator.commit(G, offsets((0, 4)), member_id=None, generation=-1))
    h.follow([0])
    replica = h.replicas.partitions[0]
    replica.make_leader(leader_state(h.epoch + 1), (1,))
    h.coordinator.on_role_change(replica)
    await asyncio.sleep(0)  # the load has begun (in that epoch)
    replica.make_leader(leader_state(h.epoch + 2), (1,))  # re-elected meanwhile
    h.coordinator.on_role_change(replica)
    await settle()
    assert h.coordinator.coordinates(G)
    assert committed(h) == {("t", 0): 4}


async def test_a_cancelled_load_does_not_forget_the_next_one(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(20):
        await within(h.coordinator.commit(G, offsets((i % 6, i)), member_id=None, generation=-1))
    monkeypatch.setattr(coordinator_module, "_LOAD_CHUNK", 64)  # one batch per step
    replica = h.replicas.partitions[0]
    h.follow([0])
    replica.make_leader(leader_state(h.epoch + 1), (1,))
    h.coordinator.on_role_change(replica)  # load 1
    h.follow([0])  # cancels it
    replica.make_leader(leader_state(h.epoch + 1), (1,))
    h.coordinator.on_role_change(replica)  # load 2
    for _ in range(5):
        await asyncio.sleep(0)
        with pytest.raises(BrokerError) as info:
            h.coordinator.committed(G)
        assert info.value.code is ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    await settle()
    assert committed(h) == {("t", k): max(i for i in range(20) if i % 6 == k) for k in range(6)}
