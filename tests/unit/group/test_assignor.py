"""Properties of the three assignors (range, roundrobin, sticky), plus Kafka's own examples.

For every assignor and any members with any subscriptions: each partition of a subscribed topic
goes to exactly one member, and only to a member subscribed to its topic; the result does not
depend on the order of the input mappings. Balance: with identical subscriptions roundrobin and
sticky differ by at most one partition between members; range (Kafka's RangeAssignor) balances
each topic on its own (its documented skew across topics is kept). Sticky: from any previous
assignment, a rebalance moves exactly the minimum number of partitions that balance needs
(computed independently here), so a balanced previous assignment is kept as it is.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbroker.group.assignor import (
    ASSIGNORS,
    Assignment,
    assign,
    range_assign,
    roundrobin_assign,
    sticky_assign,
)

TopicPartition = tuple[str, int]
TOPICS = ("a", "b", "c", "d")
NAMES = [f"m{i:02d}" for i in range(12)]

counts_st = st.dictionaries(st.sampled_from(TOPICS), st.integers(0, 12), min_size=1)
members_st = st.lists(st.sampled_from(NAMES), min_size=1, max_size=8, unique=True)


@st.composite
def group_st(draw: st.DrawFn) -> tuple[dict[str, tuple[str, ...]], dict[str, int]]:
    """Members with random subscriptions (some to topics that do not exist) and counts."""
    counts = draw(counts_st)
    members = draw(members_st)
    topics = st.lists(st.sampled_from((*TOPICS, "missing")), max_size=4, unique=True)
    subscriptions = {m: tuple(draw(topics)) for m in members}
    return subscriptions, counts


def all_partitions(
    subscriptions: Mapping[str, Sequence[str]], counts: Mapping[str, int]
) -> set[TopicPartition]:
    topics = {t for ts in subscriptions.values() for t in ts if t in counts}
    return {(t, p) for t in topics for p in range(counts[t])}


def check_valid(
    result: Assignment, subscriptions: Mapping[str, Sequence[str]], counts: Mapping[str, int]
) -> None:
    assert set(result) == set(subscriptions), "one entry per member, no strangers"
    owners = Counter(tp for tps in result.values() for tp in tps)
    assert set(owners) == all_partitions(subscriptions, counts), "every partition assigned"
    assert all(n == 1 for n in owners.values()), f"assigned twice: {owners.most_common(3)}"
    for member, tps in result.items():
        assert all(t in subscriptions[member] for t, _ in tps), f"{member} got a foreign topic"
        assert tps == sorted(tps)


def shuffled(mapping: Mapping[str, Sequence[str]], seed: int) -> dict[str, tuple[str, ...]]:
    items = list(mapping.items())
    random.Random(seed).shuffle(items)
    return {k: tuple(random.Random(seed).sample(list(v), len(v))) for k, v in items}


def spread(result: Assignment) -> int:
    sizes = [len(tps) for tps in result.values()]
    return max(sizes) - min(sizes)


# ------------------------------------------------------------------------------ all assignors


@pytest.mark.parametrize("name", sorted(ASSIGNORS))
@settings(max_examples=150, deadline=None)
@given(group=group_st(), seed=st.integers(0, 1000))
def test_every_partition_exactly_once_to_a_subscriber_and_deterministic(
    name: str, group: tuple[dict[str, tuple[str, ...]], dict[str, int]], seed: int
) -> None:
    subscriptions, counts = group
    result = assign(name, subscriptions, counts)
    check_valid(result, subscriptions, counts)
    again = assign(name, shuffled(subscriptions, seed), dict(reversed(list(counts.items()))))
    assert again == result, "the result depends only on the inputs, not their order"


@pytest.mark.parametrize("name", sorted(ASSIGNORS))
@settings(max_examples=100, deadline=None)
@given(
    members=members_st,
    counts=counts_st,
    topics=st.lists(st.sampled_from(TOPICS), min_size=1, unique=True),
)
def test_identical_subscriptions_are_balanced(
    name: str, members: list[str], counts: dict[str, int], topics: list[str]
) -> None:
    subscriptions = {m: tuple(topics) for m in members}
    result = assign(name, subscriptions, counts)
    check_valid(result, subscriptions, counts)
    if name == "range":
        # RangeAssignor balances each topic; across topics the first members get the extras.
        for topic in topics:
            sizes = [sum(1 for t, _ in tps if t == topic) for tps in result.values()]
            assert max(sizes) - min(sizes) <= 1
    else:
        assert spread(result) <= 1


def test_no_members_and_unknown_topics() -> None:
    for name in ASSIGNORS:
        assert assign(name, {}, {"a": 3}) == {}
        assert assign(name, {"m1": ("missing",)}, {"a": 3}) == {"m1": []}
        assert assign(name, {"m1": ("a",)}, {"a": 0}) == {"m1": []}


# ---------------------------------------------------------------------- Kafka's own examples


def tps(*names: str) -> list[TopicPartition]:
    """``"t0p1"`` -> ``("t0", 1)``."""
    return sorted((n[:2], int(n[3:])) for n in names)


def test_range_assignor_javadoc_example() -> None:
    # RangeAssignor.java: C0, C1; t0 and t1 with 3 partitions each.
    subscriptions = {"C0": ("t0", "t1"), "C1": ("t0", "t1")}
    result = range_assign(subscriptions, {"t0": 3, "t1": 3})
    assert result == {"C0": tps("t0p0", "t0p1", "t1p0", "t1p1"), "C1": tps("t0p2", "t1p2")}


def test_range_sorts_members_and_gives_extras_to_the_first() -> None:
    result = range_assign({"c": ("t0",), "a": ("t0",), "b": ("t0",)}, {"t0": 7})
    assert result == {
        "a": tps("t0p0", "t0p1", "t0p2"),
        "b": tps("t0p3", "t0p4"),
        "c": tps("t0p5", "t0p6"),
    }


def test_roundrobin_assignor_javadoc_examples() -> None:
    # RoundRobinAssignor.java, identical subscriptions.
    same = {"C0": ("t0", "t1"), "C1": ("t0", "t1")}
    assert roundrobin_assign(same, {"t0": 3, "t1": 3}) == {
        "C0": tps("t0p0", "t0p2", "t1p1"),
        "C1": tps("t0p1", "t1p0", "t1p2"),
    }
    # ... and different subscriptions: t0, t1, t2 with 1, 2 and 3 partitions.
    different = {"C0": ("t0",), "C1": ("t0", "t1"), "C2": ("t0", "t1", "t2")}
    assert roundrobin_assign(different, {"t0": 1, "t1": 2, "t2": 3}) == {
        "C0": tps("t0p0"),
        "C1": tps("t1p0"),
        "C2": tps("t1p1", "t2p0", "t2p1", "t2p2"),
    }


def test_sticky_assignor_javadoc_example() -> None:
    # StickyAssignor.java: C0, C1, C2 on t0..t3 (2 partitions each), then C1 goes away.
    counts = {"t0": 2, "t1": 2, "t2": 2, "t3": 2}
    previous = {
        "C0": tps("t0p0", "t1p1", "t3p0"),
        "C1": tps("t0p1", "t2p0", "t3p1"),
        "C2": tps("t1p0", "t2p1"),
    }
    topics = tuple(counts)
    result = sticky_assign({"C0": topics, "C2": topics}, counts, previous)
    assert result == {
        "C0": tps("t0p0", "t1p1", "t2p0", "t3p0"),
        "C2": tps("t0p1", "t1p0", "t2p1", "t3p1"),
    }


# ------------------------------------------------------------------------------------ sticky


def minimum_moves(
    previous: Mapping[str, Sequence[TopicPartition]], members: Sequence[str], partitions: int
) -> int:
    """Fewest partitions that must change owner for a balanced result (identical subscriptions):
    previously owned partitions minus the most that can stay. A member can keep at most its
    quota; the quotas are floor(P/M), plus one for P mod M members, best given to those that
    own the most."""
    owned = sum(len(v) for v in previous.values())
    per, extra = divmod(partitions, len(members))
    kept = sorted((len(previous.get(m, ())) for m in members), reverse=True)
    stay = sum(min(k, per + (1 if i < extra else 0)) for i, k in enumerate(kept))
    return owned - stay


def moved(previous: Mapping[str, Sequence[TopicPartition]], result: Assignment) -> int:
    owner = {tp: m for m, tps in result.items() for tp in tps}
    return sum(1 for m, tps in previous.items() for tp in tps if owner.get(tp) != m)


@st.composite
def previous_st(
    draw: st.DrawFn,
) -> tuple[list[str], dict[str, int], dict[str, list[TopicPartition]]]:
    """Members, counts and any valid previous assignment (each partition at most one owner,
    owners may be gone, some partitions may have none)."""
    members = draw(members_st)
    counts = draw(counts_st)
    everyone = sorted({*members, *draw(st.lists(st.sampled_from(NAMES), max_size=3))})
    previous: dict[str, list[TopicPartition]] = {m: [] for m in everyone}
    for t, n in sorted(counts.items()):
        for p in range(n):
            owner = draw(st.sampled_from([None, *everyone]))
            if owner is not None:
                previous[owner].append((t, p))
    return members, counts, previous


@settings(max_examples=200, deadline=None)
@given(case=previous_st())
def test_sticky_moves_exactly_the_minimum_from_any_previous_assignment(
    case: tuple[list[str], dict[str, int], dict[str, list[TopicPartition]]],
) -> None:
    members, counts, previous = case
    subscriptions = {m: tuple(counts) for m in members}
    result = sticky_assign(subscriptions, counts, previous)
    check_valid(result, subscriptions, counts)
    assert spread(result) <= 1
    total = sum(counts.values())
    assert moved(previous, result) == minimum_moves(previous, members, total)


@settings(max_examples=150, deadline=None)
@given(
    members=st.lists(st.sampled_from(NAMES), min_size=2, max_size=8, unique=True),
    counts=counts_st,
    joiner=st.sampled_from([f"new{i}" for i in range(3)]),
    leaver=st.integers(0, 7),
)
def test_sticky_adding_or_removing_one_member_moves_the_minimum(
    members: list[str], counts: dict[str, int], joiner: str, leaver: int
) -> None:
    topics = tuple(counts)
    total = sum(counts.values())
    before = sticky_assign(dict.fromkeys(members, topics), counts)
    # A member joins: only what balance needs moves, and only to the newcomer.
    grown = [*members, joiner]
    after = sticky_assign(dict.fromkeys(grown, topics), counts, before)
    assert spread(after) <= 1
    assert moved(before, after) == minimum_moves(before, grown, total)
    assert moved(before, after) == len(after[joiner])
    # A member leaves: exactly its partitions move, and the others keep theirs.
    gone = members[leaver % len(members)]
    shrunk = [m for m in members if m != gone]
    after = sticky_assign(dict.fromkeys(shrunk, topics), counts, before)
    assert spread(after) <= 1
    assert moved(before, after) == minimum_moves(before, shrunk, total) == len(before[gone])
    assert all(set(before[m]) <= set(after[m]) for m in shrunk)


@settings(max_examples=100, deadline=None)
@given(members=members_st, counts=counts_st, seed=st.integers(0, 1000))
def test_sticky_keeps_a_balanced_previous_assignment(
    members: list[str], counts: dict[str, int], seed: int
) -> None:
    topics = tuple(counts)
    partitions = [(t, p) for t in sorted(counts) for p in range(counts[t])]
    random.Random(seed).shuffle(partitions)
    previous: dict[str, list[TopicPartition]] = {m: [] for m in members}
    for i, tp in enumerate(partitions):  # balanced, but nothing like what sticky would choose
        previous[members[i % len(members)]].append(tp)
    result = sticky_assign(dict.fromkeys(members, topics), counts, previous)
    assert result == {m: sorted(tps) for m, tps in previous.items()}


def test_sticky_drops_partitions_that_vanished_or_are_no_longer_subscribed() -> None:
    previous = {"m1": [("a", 0), ("a", 5), ("b", 0)], "m2": [("a", 1)]}
    result = sticky_assign({"m1": ("a",), "m2": ("a", "b")}, {"a": 2, "b": 1}, previous)
    assert result == {"m1": [("a", 0)], "m2": [("a", 1), ("b", 0)]}
