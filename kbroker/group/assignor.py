"""Partition assignment for consumer groups, computed by the coordinator: pure functions.

Every assignor takes the members' subscriptions (member id -> topics), the partition count of
each subscribed topic, and (for ``sticky``) the previous assignment, and returns member id ->
sorted partitions. Invariants, for every assignor:

* every partition of a subscribed topic is assigned to exactly one member subscribed to it;
* a member gets only partitions of topics it subscribes to;
* the result depends only on the inputs (members are taken in sorted order).

``range`` is Kafka's RangeAssignor (per topic, contiguous ranges, the first members get one
extra); ``roundrobin`` deals all partitions in turn to the subscribed members; ``sticky`` keeps
every partition with its previous owner when that owner is still subscribed and not over its
fair share, and gives the rest to the least loaded members, so a rebalance moves as few
partitions as balance allows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Final

__all__ = [
    "ASSIGNORS",
    "Assignment",
    "assign",
    "range_assign",
    "roundrobin_assign",
    "sticky_assign",
]

TopicPartition = tuple[str, int]
Assignment = dict[str, list[TopicPartition]]


def _partitions(
    subscriptions: Mapping[str, Sequence[str]], counts: Mapping[str, int]
) -> list[TopicPartition]:
    topics = sorted({t for topics in subscriptions.values() for t in topics if t in counts})
    return [(t, p) for t in topics for p in range(counts[t])]


def range_assign(
    subscriptions: Mapping[str, Sequence[str]],
    counts: Mapping[str, int],
    previous: Mapping[str, Sequence[TopicPartition]] | None = None,
) -> Assignment:
    out: Assignment = {m: [] for m in subscriptions}
    topics = sorted({t for topics in subscriptions.values() for t in topics if t in counts})
    for topic in topics:
        members = sorted(m for m, ts in subscriptions.items() if topic in ts)
        per, extra = divmod(counts[topic], len(members))
        start = 0
        for i, member in enumerate(members):
            size = per + (1 if i < extra else 0)
            out[member].extend((topic, p) for p in range(start, start + size))
            start += size
    return {m: sorted(tps) for m, tps in out.items()}


def roundrobin_assign(
    subscriptions: Mapping[str, Sequence[str]],
    counts: Mapping[str, int],
    previous: Mapping[str, Sequence[TopicPartition]] | None = None,
) -> Assignment:
    out: Assignment = {m: [] for m in subscriptions}
    members = sorted(subscriptions)
    turn = 0
    for tp in _partitions(subscriptions, counts):
        for _ in range(len(members)):
            member = members[turn % len(members)]
            turn += 1
            if tp[0] in subscriptions[member]:
                out[member].append(tp)
                break
    return {m: sorted(tps) for m, tps in out.items()}


def sticky_assign(
    subscriptions: Mapping[str, Sequence[str]],
    counts: Mapping[str, int],
    previous: Mapping[str, Sequence[TopicPartition]] | None = None,
) -> Assignment:
    members = sorted(subscriptions)
    out: Assignment = {m: [] for m in members}
    if not members:
        return out
    partitions = _partitions(subscriptions, counts)
    existing = set(partitions)
    kept = {
        m: sorted(
            tp for tp in (previous or {}).get(m, ()) if tp in existing and tp[0] in subscriptions[m]
        )
        for m in members
    }
    quota = _quotas(members, len(partitions), kept)
    owner: dict[TopicPartition, str] = {}
    for member in members:
        for tp in kept[member]:
            if tp not in owner and len(out[member]) < quota[member]:
                out[member].append(tp)
                owner[tp] = member
    for tp in partitions:
        if tp in owner:
            continue
        eligible = [m for m in members if tp[0] in subscriptions[m]]
        target = min(eligible, key=lambda m: (len(out[m]) - quota[m], len(out[m]), m))
        out[target].append(tp)
        owner[tp] = target
    return {m: sorted(tps) for m, tps in out.items()}


def _quotas(
    members: list[str], partitions: int, kept: Mapping[str, Sequence[TopicPartition]]
) -> dict[str, int]:
    """Fair share per member: everyone gets floor(P/M), and the P mod M extra slots go to the
    members that already own the most (so that keeping partitions needs the fewest moves)."""
    per, extra = divmod(partitions, len(members))
    by_ownership = sorted(members, key=lambda m: (-len(kept[m]), m))
    bonus = set(by_ownership[:extra])
    return {m: per + (1 if m in bonus else 0) for m in members}


Assignor = Callable[
    [Mapping[str, Sequence[str]], Mapping[str, int], Mapping[str, Sequence[TopicPartition]] | None],
    Assignment,
]

ASSIGNORS: Final[dict[str, Assignor]] = {
    "range": range_assign,
    "roundrobin": roundrobin_assign,
    "sticky": sticky_assign,
}


def assign(
    assignor: str,
    subscriptions: Mapping[str, Sequence[str]],
    counts: Mapping[str, int],
    previous: Mapping[str, Sequence[TopicPartition]] | None = None,
) -> Assignment:
    """Run the named assignor (``sticky``, ``range`` or ``roundrobin``)."""
    return ASSIGNORS[assignor](subscriptions, counts, previous)
