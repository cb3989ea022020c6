"""Replica placement and the leader election rules (kbroker.controller.assignment)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from kbroker.controller.assignment import (
    assign_replicas,
    controlled_shutdown_leader,
    offline_partition_leader,
    preferred_leader,
)
from kbroker.errors import BrokerError, ErrorCode


def plain(n: int) -> dict[int, str | None]:
    return {100 + 3 * i: None for i in range(n)}


def racked(racks: int, per_rack: int) -> dict[int, str | None]:
    return {10 * r + b: f"rack-{r}" for r in range(racks) for b in range(per_rack)}


def check_replica_lists(
    assignment: dict[int, list[int]], brokers: dict[int, str | None], rf: int
) -> None:
    for replicas in assignment.values():
        assert len(replicas) == rf
        assert len(set(replicas)) == rf
        assert set(replicas) <= set(brokers)


# ------------------------------------------------------------------------------ placement


@pytest.mark.parametrize(("n", "rf"), [(1, 2), (2, 3), (3, 5)])
def test_rf_above_broker_count(n: int, rf: int) -> None:
    with pytest.raises(BrokerError) as info:
        assign_replicas(plain(n), 3, rf, rng=random.Random(0))
    assert info.value.code == ErrorCode.INVALID_REPLICATION_FACTOR


def test_no_brokers() -> None:
    with pytest.raises(BrokerError) as info:
        assign_replicas({}, 1, 1, rng=random.Random(0))
    assert info.value.code == ErrorCode.INVALID_REPLICATION_FACTOR


@pytest.mark.parametrize(("partitions", "rf"), [(0, 1), (-1, 1), (1, 0), (1, -1)])
def test_non_positive_counts(partitions: int, rf: int) -> None:
    with pytest.raises(BrokerError) as info:
        assign_replicas(plain(3), partitions, rf, rng=random.Random(0))
    expected = (
        ErrorCode.INVALID_PARTITIONS if partitions <= 0 else ErrorCode.INVALID_REPLICATION_FACTOR
    )
    assert info.value.code == expected


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize(
    ("n", "rf", "partitions"),
    [(1, 1, 4), (2, 2, 4), (3, 3, 6), (3, 2, 9), (5, 3, 10), (6, 2, 12), (7, 3, 21), (4, 4, 8)],
)
def test_plain_placement(seed: int, n: int, rf: int, partitions: int) -> None:
    brokers = plain(n)
    assignment = assign_replicas(brokers, partitions, rf, rng=random.Random(seed))
    assert sorted(assignment) == list(range(partitions))
    check_replica_lists(assignment, brokers, rf)
    # Preferred leaders (first replicas) round-robin: counts differ by at most one, and with
    # partitions a multiple of brokers every broker leads exactly partitions / n.
    leaders = Counter(replicas[0] for replicas in assignment.values())
    assert set(leaders) == set(brokers)
    assert set(leaders.values()) == {partitions // n}
    # All replicas are spread too.
    counts = Counter(b for replicas in assignment.values() for b in replicas)
    assert max(counts.values()) - min(counts[b] for b in brokers) <= 1


@pytest.mark.parametrize("seed", range(10))
def test_leaders_spread_when_not_a_multiple(seed: int) -> None:
    brokers = plain(4)
    assignment = assign_replicas(brokers, 7, 2, rng=random.Random(seed))
    leaders = Counter(replicas[0] for replicas in assignment.values())
    assert max(leaders.values()) - min(leaders[b] for b in brokers) <= 1


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_follower_shift_grows_every_round(seed: int, n: int) -> None:
    # Kafka's nextReplicaShift: over n - 1 rounds every broker follows every other broker's
    # led partitions exactly once (followers of one broker's partitions are spread).
    assignment = assign_replicas(plain(n), n * (n - 1), 2, rng=random.Random(seed))
    pairs = Counter((replicas[0], replicas[1]) for replicas in assignment.values())
    assert len(pairs) == n * (n - 1)
    assert set(pairs.values()) == {1}


def test_same_seed_same_assignment() -> None:
    one = assign_replicas(plain(5), 10, 3, rng=random.Random(42))
    two = assign_replicas(plain(5), 10, 3, rng=random.Random(42))
    assert one == two
    assert any(assign_replicas(plain(5), 10, 3, rng=random.Random(s)) != one for s in range(1, 10))


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize(
    ("racks", "per_rack", "rf", "partitions"),
    [(3, 2, 3, 12), (3, 2, 2, 6), (2, 3, 2, 12), (3, 3, 3, 9), (4, 1, 3, 8), (3, 4, 3, 24)],
)
def test_rack_aware_placement(
    seed: int, racks: int, per_rack: int, rf: int, partitions: int
) -> None:
    brokers = racked(racks, per_rack)
    assignment = assign_replicas(brokers, partitions, rf, rng=random.Random(seed))
    check_replica_lists(assignment, brokers, rf)
    for replicas in assignment.values():
        # Distinct racks while racks remain: losing a rack loses at most one replica.
        assert len({brokers[b] for b in replicas}) == min(rf, racks)
    leaders = Counter(replicas[0] for replicas in assignment.values())
    assert max(leaders.values()) - min(leaders[b] for b in brokers) <= 1
    counts = Counter(b for replicas in assignment.values() for b in replicas)
    assert set(counts) == set(brokers)


@pytest.mark.parametrize("seed", range(10))
def test_rack_aware_more_replicas_than_racks(seed: int) -> None:
    brokers = racked(2, 3)
    assignment = assign_replicas(brokers, 6, 3, rng=random.Random(seed))
    check_replica_lists(assignment, brokers, 3)
    for replicas in assignment.values():
        assert {brokers[b] for b in replicas} == {"rack-0", "rack-1"}


def test_partial_rack_information_rejected() -> None:
    brokers: dict[int, str | None] = {1: "a", 2: "b", 3: None}
    with pytest.raises(BrokerError) as info:
        assign_replicas(brokers, 3, 2, rng=random.Random(0))
    assert info.value.code == ErrorCode.INVALID_REPLICATION_FACTOR


@pytest.mark.parametrize("racks", [False, True])
@pytest.mark.parametrize(("start", "count"), [(3, 3), (4, 5), (6, 12), (1, 1)])
def test_start_partition_continues_a_topic(racks: bool, start: int, count: int) -> None:
    brokers = racked(3, 2) if racks else plain(6)
    added = assign_replicas(brokers, count, 3, rng=random.Random(7), start_partition=start)
    assert sorted(added) == list(range(start, start + count))
    check_replica_lists(added, brokers, 3)
    # With the same random draws it is exactly the tail of one assignment of the whole topic
    # (the follower shift keeps growing with every full round, as in Kafka).
    whole = assign_replicas(brokers, start + count, 3, rng=random.Random(7))
    assert added == {p: whole[p] for p in range(start, start + count)}


# ------------------------------------------------------------------------------- elections


@pytest.mark.parametrize(
    ("replicas", "isr", "live", "unclean", "expected"),
    [
        # First live ISR member in ASSIGNMENT order (not ISR order); ISR filtered to live.
        ([1, 2, 3], [3, 2, 1], {1, 2, 3}, False, (1, (3, 2, 1))),
        ([1, 2, 3], [3, 2, 1], {2, 3}, False, (2, (3, 2))),
        ([3, 1, 2], [1, 2, 3], {1, 2}, False, (1, (1, 2))),
        ([1, 2, 3], [1, 3], {2, 3}, False, (3, (3,))),
        # Live replica outside the ISR: only with unclean election, and then ISR = [it].
        ([1, 2, 3], [1], {2, 3}, False, None),
        ([1, 2, 3], [1], {2, 3}, True, (2, (2,))),
        ([1, 2, 3], [1, 2], {3}, True, (3, (3,))),
        # Unclean never wins over a live ISR member.
        ([1, 2, 3], [3], {2, 3}, True, (3, (3,))),
        # Nothing live.
        ([1, 2, 3], [1, 2, 3], set(), True, None),
        ([1, 2], [1, 2], {5}, True, None),
    ],
)
def test_offline_partition_leader(
    replicas: list[int],
    isr: list[int],
    live: set[int],
    unclean: bool,
    expected: tuple[int, tuple[int, ...]] | None,
) -> None:
    assert offline_partition_leader(replicas, isr, live, unclean=unclean) == expected


@pytest.mark.parametrize(
    ("replicas", "isr", "live", "expected"),
    [
        ([1, 2, 3], [1, 2, 3], {1, 2, 3}, 1),
        ([1, 2, 3], [2, 3], {1, 2, 3}, None),  # preferred not in sync
        ([1, 2, 3], [1, 2, 3], {2, 3}, None),  # preferred dead
        ([2, 1], [1, 2], {1, 2}, 2),
        ([], [], {1}, None),
    ],
)
def test_preferred_leader(
    replicas: list[int], isr: list[int], live: set[int], expected: int | None
) -> None:
    assert preferred_leader(replicas, isr, live) == expected


@pytest.mark.parametrize(
    ("replicas", "isr", "live", "shutting", "expected"),
    [
        ([1, 2, 3], [1, 2, 3], {1, 2, 3}, {1}, (2, (2, 3))),
        ([1, 2, 3], [3, 1, 2], {1, 2, 3}, {1}, (2, (3, 2))),
        ([1, 2, 3], [1, 3], {1, 2, 3}, {1}, (3, (3,))),
        ([1, 2, 3], [1, 2, 3], {1, 3}, {1}, (3, (2, 3))),  # 2 dead: not leader, ISR untouched
        ([1, 2, 3], [1, 2, 3], {1, 2, 3}, {1, 2}, (3, (3,))),
        ([1, 2, 3], [1], {1, 2, 3}, {1}, None),  # no other in-sync replica
        ([1, 2, 3], [1, 2, 3], {1, 2, 3}, {1, 2, 3}, None),
    ],
)
def test_controlled_shutdown_leader(
    replicas: list[int],
    isr: list[int],
    live: set[int],
    shutting: set[int],
    expected: tuple[int, tuple[int, ...]] | None,
) -> None:
    assert controlled_shutdown_leader(replicas, isr, live, shutting) == expected
