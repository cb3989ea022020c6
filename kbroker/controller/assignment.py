"""Replica placement and leader election rules: pure functions, no I/O.

Placement follows Kafka's ``AdminUtils.assignReplicasToBrokers``: the first replica of each
partition goes round-robin over the brokers from a random start (so preferred leaders are
spread), the other replicas follow at a shift that grows every full round (so followers of a
broker's partitions are spread too). With racks declared, brokers are first interleaved by rack
and each partition's replicas go to distinct racks while racks remain, so that losing a rack
loses at most one replica of a partition.

Election rules follow ``PartitionLeaderElectionAlgorithms``: leaders come from the live ISR in
assignment order; unclean election (opt-in per topic) may take any live replica.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from kbroker.errors import BrokerError, ErrorCode

__all__ = [
    "assign_replicas",
    "controlled_shutdown_leader",
    "offline_partition_leader",
    "preferred_leader",
]


def assign_replicas(
    brokers: Mapping[int, str | None],
    partitions: int,
    replication_factor: int,
    *,
    rng: random.Random,
    start_partition: int = 0,
) -> dict[int, list[int]]:
    """Partition -> replica list for partitions ``start_partition .. start_partition+partitions-1``.

    ``brokers`` maps live broker ids to their rack (or None). Raises INVALID_REPLICATION_FACTOR
    when there are fewer brokers than replicas, or when only some brokers declare a rack.
    """
    if partitions <= 0:
        raise BrokerError(
            "Number of partitions must be larger than 0.", ErrorCode.INVALID_PARTITIONS
        )
    if replication_factor <= 0:
        raise BrokerError(
            "Replication factor must be larger than 0.", ErrorCode.INVALID_REPLICATION_FACTOR
        )
    if replication_factor > len(brokers):
        raise BrokerError(
            f"Replication factor: {replication_factor} larger than available brokers: "
            f"{len(brokers)}.",
            ErrorCode.INVALID_REPLICATION_FACTOR,
        )
    racks = {r for r in brokers.values() if r is not None}
    if racks and len([r for r in brokers.values() if r is not None]) != len(brokers):
        raise BrokerError(
            "Not all brokers have rack information; cannot place replicas rack-aware.",
            ErrorCode.INVALID_REPLICATION_FACTOR,
        )
    ordered = _rack_alternated(brokers) if racks else sorted(brokers)
    if racks:
        return _assign_rack_aware(
            ordered,
            brokers,
            partitions,
            replication_factor,
            rng=rng,
            start_partition=start_partition,
        )
    return _assign_plain(ordered, partitions, replication_factor, rng, start_partition)


def _replica_index(first: int, shift: int, j: int, n: int) -> int:
    return (first + 1 + (shift + j) % (n - 1)) % n


def _assign_plain(
    brokers: list[int], partitions: int, rf: int, rng: random.Random, start_partition: int
) -> dict[int, list[int]]:
    n = len(brokers)
    start = rng.randrange(n)
    shift = rng.randrange(n)
    out: dict[int, list[int]] = {}
    for p in range(start_partition, start_partition + partitions):
        if p > 0 and p % n == 0:
            shift += 1
        first = (p + start) % n
        replicas = [brokers[first]]
        replicas += [brokers[_replica_index(first, shift, j, n)] for j in range(rf - 1)]
        out[p] = replicas
    return out


def _rack_alternated(brokers: Mapping[int, str | None]) -> list[int]:
    """Brokers ordered rack by rack in turn: r1b1, r2b1, r3b1, r1b2, ..."""
    by_rack: dict[str, list[int]] = {}
    for broker in sorted(brokers):
        by_rack.setdefault(str(brokers[broker]), []).append(broker)
    queues = [by_rack[r] for r in sorted(by_rack)]
    out: list[int] = []
    depth = max(len(q) for q in queues)
    for i in range(depth):
        out.extend(q[i] for q in queues if i < len(q))
    return out


def _assign_rack_aware(
    ordered: list[int],
    racks: Mapping[int, str | None],
    partitions: int,
    rf: int,
    *,
    rng: random.Random,
    start_partition: int,
) -> dict[int, list[int]]:
    n = len(ordered)
    rack_count = len({racks[b] for b in ordered})
    start = rng.randrange(n)
    shift = rng.randrange(n)
    out: dict[int, list[int]] = {}
    for p in range(start_partition, start_partition + partitions):
        if p > 0 and p % n == 0:
            shift += 1
        first = (p + start) % n
        leader = ordered[first]
        replicas = [leader]
        used_racks = {racks[leader]}
        used = {leader}
        k = 0
        while len(replicas) < rf:
            candidate = ordered[_replica_index(first, shift, k, n)]
            k += 1
            if candidate in used:
                if k > 4 * n:
                    raise AssertionError("rack-aware placement did not converge")
                continue
            rack_free = racks[candidate] not in used_racks or len(used_racks) == rack_count
            if rack_free or k > 2 * n:
                replicas.append(candidate)
                used.add(candidate)
                used_racks.add(racks[candidate])
                if len(used_racks) == rack_count:
                    used_racks = set()
        out[p] = replicas
    return out


def offline_partition_leader(
    replicas: Sequence[int], isr: Sequence[int], live: set[int], *, unclean: bool
) -> tuple[int, tuple[int, ...]] | None:
    """New (leader, isr) for a partition whose leader is gone, or None if none is eligible.

    The first replica in assignment order that is live and in the ISR; the new ISR is the old
    one restricted to live brokers. With ``unclean``, failing that, the first live replica with
    ISR = [it] (its log becomes the truth: committed records can be lost).
    """
    live_isr = tuple(b for b in isr if b in live)
    for broker in replicas:
        if broker in live and broker in isr:
            return broker, live_isr
    if unclean:
        for broker in replicas:
            if broker in live:
                return broker, (broker,)
    return None


def preferred_leader(replicas: Sequence[int], isr: Sequence[int], live: set[int]) -> int | None:
    """The preferred replica (first in assignment) if it is live and in sync, else None."""
    if replicas and replicas[0] in live and replicas[0] in isr:
        return replicas[0]
    return None


def controlled_shutdown_leader(
    replicas: Sequence[int], isr: Sequence[int], live: set[int], shutting_down: set[int]
) -> tuple[int, tuple[int, ...]] | None:
    """New (leader, isr) moving leadership off brokers that are shutting down."""
    new_isr = tuple(b for b in isr if b not in shutting_down)
    for broker in replicas:
        if broker in live and broker in new_isr:
            return broker, new_isr
    return None
