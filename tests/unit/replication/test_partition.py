"""Partition: roles, leader epochs, ISR and the high watermark (kbroker.replication.partition).

Real PartitionLogs on tmp_path, a fake clock and a fake (version-checking) ISR writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbroker.errors import BrokerError, ErrorCode, NotLeaderError, OffsetOutOfRangeError
from kbroker.log.batch import iter_batches
from kbroker.log.partition_log import PartitionLog
from kbroker.replication.partition import Partition, Role
from tests.unit.replication.support import (
    LAG_MS,
    FakeClock,
    FakeIsrWriter,
    append_records,
    make_partition,
    open_log,
    produce,
    role_of,
    settle,
    state,
    topic_config,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def writer() -> FakeIsrWriter:
    return FakeIsrWriter()


@pytest.fixture
def log(tmp_path: Path, clock: FakeClock) -> Iterator[PartitionLog]:
    plog = open_log(tmp_path / "t-0", clock)
    yield plog
    plog.close()


def leader(
    log: PartitionLog,
    clock: FakeClock,
    writer: FakeIsrWriter,
    isr: tuple[int, ...] = (1, 2, 3),
    *,
    epoch: int = 1,
    replicas: tuple[int, ...] = (1, 2, 3),
    min_isr: int = 1,
) -> Partition:
    partition = make_partition(
        log, clock, writer, config=topic_config(**{"min.insync.replicas": min_isr})
    )
    assert partition.make_leader(writer.publish(state(1, isr, epoch=epoch)), replicas)
    return partition


def fetch(partition: Partition, replica: int, offset: int, *, epoch: int | None = None) -> bytes:
    follower_epoch = partition.leader_epoch if epoch is None else epoch
    return partition.read_for_follower(replica, offset, follower_epoch, 1 << 20).data


# ------------------------------------------------------------------------ roles and epochs


def test_make_leader_assigns_epoch_start_offset(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    append_records(log, 4, epoch=0)
    partition = make_partition(log, clock, writer)
    assert role_of(partition) is Role.OFFLINE
    assert partition.make_leader(state(1, [1, 2], epoch=3), [1, 2])
    assert role_of(partition) is Role.LEADER and partition.is_leader
    assert partition.leader_epoch_start_offset == 4
    assert [(e.epoch, e.start_offset) for e in log.leader_epoch_cache.entries] == [(0, 0), (3, 4)]
    assert log.leader_epoch_cache.end_offset_for(0) == (0, 4)
    # An ISR change in the same epoch is not a new epoch and changes no epoch entry.
    assert not partition.make_leader(state(1, [1], epoch=3, version=1), [1, 2])
    assert partition.isr == (1,)
    assert [(e.epoch, e.start_offset) for e in log.leader_epoch_cache.entries] == [(0, 0), (3, 4)]
    # Appends are stamped with the epoch.
    produce(partition, 2)
    batches = list(iter_batches(log.read(4, max_bytes=1 << 20).data))
    assert [b.leader_epoch for b in batches] == [3]


def test_leader_again_in_a_newer_epoch(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1,), epoch=1)
    produce(partition, 3)
    assert partition.make_leader(state(1, [1], epoch=2), [1, 2, 3])
    assert partition.leader_epoch_start_offset == 3
    assert [(e.epoch, e.start_offset) for e in log.leader_epoch_cache.entries] == [(1, 0), (2, 3)]


def test_is_stale(log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter) -> None:
    partition = make_partition(log, clock, writer)
    assert not partition.is_stale(state(1, [1], epoch=0, version=0))  # nothing held yet
    partition.make_follower(state(2, [1, 2], epoch=5, version=7), [1, 2])
    assert partition.is_stale(state(1, [1], epoch=4, version=99))  # older epoch
    assert partition.is_stale(state(2, [1, 2], epoch=5, version=7))  # same version
    assert partition.is_stale(state(2, [2], epoch=5, version=6))  # older version
    assert not partition.is_stale(state(2, [2], epoch=5, version=8))  # ISR change
    assert not partition.is_stale(state(3, [3], epoch=6, version=0))  # newer epoch
    partition.make_offline(None, [1, 2])
    assert not partition.is_stale(state(2, [1, 2], epoch=5, version=7))  # re-apply when offline


def test_make_follower_and_offline(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = make_partition(log, clock, writer)
    assert partition.make_follower(state(2, [1, 2], epoch=1), [1, 2])
    assert role_of(partition) is Role.FOLLOWER and partition.leader_id == 2
    assert not partition.make_follower(state(2, [2], epoch=1, version=1), [1, 2])
    assert partition.isr == (2,)
    assert partition.make_follower(state(3, [2, 3], epoch=2), [1, 2, 3])
    with pytest.raises(NotLeaderError):
        produce(partition, 1)
    with pytest.raises(NotLeaderError):
        partition.read_committed(0, max_bytes=100)
    with pytest.raises(NotLeaderError):
        partition.check_min_isr()
    partition.make_offline(state(-1, [2], epoch=3), [1, 2])
    assert role_of(partition) is Role.OFFLINE and partition.leader_epoch == 3


# --------------------------------------------------------------------------- high watermark


def test_hw_is_min_leo_over_isr_and_followers_that_have_not_fetched_hold_it(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer)
    produce(partition, 10)
    assert log.high_watermark == 0
    fetch(partition, 2, 10)
    assert log.high_watermark == 0  # 3 has not fetched in this epoch
    fetch(partition, 3, 4)
    assert log.high_watermark == 4
    fetch(partition, 3, 10)
    assert log.high_watermark == 10
    produce(partition, 5)
    assert log.high_watermark == 10
    fetch(partition, 2, 15)
    assert log.high_watermark == 10
    fetch(partition, 3, 12)
    assert log.high_watermark == 12


def test_hw_only_moves_forward(log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter) -> None:
    partition = leader(log, clock, writer, (1, 2))
    produce(partition, 10)
    fetch(partition, 2, 8)
    assert log.high_watermark == 8
    fetch(partition, 2, 3)  # e.g. the follower truncated and fetches again from below
    assert log.high_watermark == 8
    assert partition.read_committed(0, max_bytes=1 << 20).high_watermark == 8


def test_hw_held_after_new_epoch_until_followers_fetch(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2))
    produce(partition, 5)
    fetch(partition, 2, 3)
    assert log.high_watermark == 3
    partition.make_leader(state(1, [1, 2], epoch=2), [1, 2, 3])
    produce(partition, 1)
    assert log.high_watermark == 3  # follower 2's old position does not count in epoch 2
    fetch(partition, 2, 6)
    assert log.high_watermark == 6


def test_single_replica_isr_commits_on_append(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1,))
    info = produce(partition, 3)
    assert log.high_watermark == info.next_offset == 3


def test_consumer_reads_stop_at_hw(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2))
    produce(partition, 2)
    produce(partition, 2, first=2)
    assert partition.read_committed(0, max_bytes=1 << 20).data == b""
    fetch(partition, 2, 2)
    result = partition.read_committed(0, max_bytes=1 << 20)
    assert [h.next_offset for h in iter_batches(result.data)] == [2]
    assert (result.high_watermark, result.log_end_offset) == (2, 4)
    assert partition.read_committed(4, max_bytes=100).data == b""
    with pytest.raises(OffsetOutOfRangeError):
        partition.read_committed(5, max_bytes=100)
    with pytest.raises(BrokerError) as info:
        partition.read_committed(0, max_bytes=100, current_leader_epoch=0)
    assert info.value.code == ErrorCode.FENCED_LEADER_EPOCH


# -------------------------------------------------------------------------------- acks=all


async def test_acks_all_completes_when_hw_passes(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2, 3))
    info = produce(partition, 4)
    waiter = asyncio.create_task(partition.wait_committed(info.next_offset, 30))
    fetch(partition, 2, 4)
    fetch(partition, 3, 3)
    await asyncio.sleep(0)
    assert not waiter.done()  # HW 3 < 4
    fetch(partition, 3, 4)
    await asyncio.wait_for(waiter, 2)
    # Already committed: returns at once.
    await asyncio.wait_for(partition.wait_committed(4, 30), 2)


async def test_acks_all_times_out(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2))
    info = produce(partition, 1)
    with pytest.raises(BrokerError) as err:
        await partition.wait_committed(info.next_offset, 0.01)
    assert err.value.code == ErrorCode.REQUEST_TIMED_OUT
    # The timed-out waiter is gone: a later HW move completes nothing twice.
    fetch(partition, 2, 1)
    assert log.high_watermark == 1


async def test_acks_all_fails_with_not_leader_when_leadership_moves(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2))
    info = produce(partition, 1)
    waiter = asyncio.create_task(partition.wait_committed(info.next_offset, 30))
    await asyncio.sleep(0)
    partition.make_follower(state(2, [2], epoch=2), [1, 2])
    with pytest.raises(BrokerError) as err:
        await asyncio.wait_for(waiter, 2)
    assert err.value.code == ErrorCode.NOT_LEADER


async def test_acks_all_fails_when_partition_goes_offline(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2))
    waiter = asyncio.create_task(partition.wait_committed(produce(partition, 1).next_offset, 30))
    await asyncio.sleep(0)
    partition.make_offline(state(-1, [1], epoch=2), [1, 2])
    with pytest.raises(NotLeaderError):
        await asyncio.wait_for(waiter, 2)


def test_not_enough_replicas_before_append(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1,), min_isr=2)
    with pytest.raises(BrokerError) as err:
        partition.check_min_isr()
    assert err.value.code == ErrorCode.NOT_ENOUGH_REPLICAS
    leader(log, clock, writer, (1, 2), min_isr=2).check_min_isr()  # enough


async def test_not_enough_replicas_after_append_when_isr_shrank(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2), min_isr=2)
    partition.check_min_isr()
    info = produce(partition, 2)
    waiter = asyncio.create_task(partition.wait_committed(info.next_offset, 30))
    await asyncio.sleep(0)
    clock.advance(LAG_MS + 1)  # follower 2 never fetched: it leaves the ISR
    await partition.maybe_shrink_isr()
    assert partition.isr == (1,)
    assert log.high_watermark == 2  # the leader alone is the ISR now
    with pytest.raises(BrokerError) as err:
        await asyncio.wait_for(waiter, 2)
    assert err.value.code == ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
    assert log.log_end_offset == 2  # the records are written


# ------------------------------------------------------------------------- follower fetch


def test_follower_fetch_epoch_fencing(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, epoch=5)
    produce(partition, 1)
    with pytest.raises(BrokerError) as err:
        fetch(partition, 2, 0, epoch=4)
    assert err.value.code == ErrorCode.FENCED_LEADER_EPOCH
    with pytest.raises(BrokerError) as err:
        fetch(partition, 2, 0, epoch=6)
    assert err.value.code == ErrorCode.UNKNOWN_LEADER_EPOCH
    assert log.high_watermark == 0  # fenced fetches record nothing
    assert fetch(partition, 2, 0, epoch=5) != b""
    assert fetch(partition, 3, 0, epoch=-1) != b""  # no epoch given: not checked


def test_follower_fetch_out_of_range(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    log.truncate_fully_and_start_at(100)
    partition = leader(log, clock, writer)
    produce(partition, 5)
    for offset in (99, 106, 0):
        with pytest.raises(OffsetOutOfRangeError) as err:
            fetch(partition, 2, offset)
        assert err.value.extra == {"log_start_offset": 100, "log_end_offset": 105}
    assert fetch(partition, 2, 105) == b""  # at the LEO: nothing yet, not an error
    assert fetch(partition, 2, 100) != b""


def test_fetch_from_non_replica(log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter) -> None:
    partition = leader(log, clock, writer)
    with pytest.raises(NotLeaderError):
        fetch(partition, 9, 0)
    partition.make_follower(state(2, [2], epoch=2), [1, 2])
    with pytest.raises(NotLeaderError):
        fetch(partition, 2, 0)


def test_fetch_returns_leader_bytes(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer)
    produce(partition, 2)
    produce(partition, 3, first=2)
    result = partition.read_for_follower(2, 2, 1, 1 << 20)
    assert result.data == log.read(2, max_bytes=1 << 20).data
    assert [(h.base_offset, h.next_offset) for h in iter_batches(result.data)] == [(2, 5)]
    assert (result.log_start_offset, result.log_end_offset) == (0, 5)


# ---------------------------------------------------------------------------- ISR shrink


async def test_isr_shrinks_after_lag_time(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer)
    produce(partition, 3)
    fetch(partition, 2, 3)
    fetch(partition, 3, 1)
    clock.advance(LAG_MS)
    assert partition.out_of_sync_replicas() == []  # not yet: must exceed the lag time
    fetch(partition, 2, 3)
    clock.advance(1)
    assert partition.out_of_sync_replicas() == [3]
    await partition.maybe_shrink_isr()
    assert partition.isr == (1, 2)
    assert [w.isr for w in writer.writes] == [(1, 2)]
    assert partition.state is not None and partition.state.zk_version == 1
    assert partition.leader_epoch == 1  # an ISR change keeps the epoch
    assert log.high_watermark == 3  # 3 no longer holds the HW back


async def test_caught_up_follower_is_not_lagging_however_long_since_fetch(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2))
    produce(partition, 3)
    fetch(partition, 2, 3)
    clock.advance(10 * LAG_MS)
    # Kafka's rule: LEO equal to the leader's is not lagging (an idle partition).
    assert partition.out_of_sync_replicas() == []
    await partition.maybe_shrink_isr()
    assert writer.writes == []
    produce(partition, 1)  # now it is behind, and was last caught up long ago
    assert partition.out_of_sync_replicas() == [2]


async def test_follower_that_keeps_reaching_previous_leo_stays_in_sync(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2))
    produce(partition, 1)
    fetch(partition, 2, 0)
    for i in range(5):
        # Every fetch reaches the LEO the leader had at the previous fetch, but the producer
        # has always written more by then: lastCaughtUp = the previous fetch time.
        leo = log.log_end_offset
        produce(partition, 1, first=leo)
        clock.advance(LAG_MS // 2)
        fetch(partition, 2, leo)
        assert partition.out_of_sync_replicas() == [], i
    clock.advance(LAG_MS + 1)
    assert partition.out_of_sync_replicas() == [2]


async def test_never_fetching_follower_leaves_after_lag_time(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2, 3))
    produce(partition, 1)
    fetch(partition, 2, 1)
    clock.advance(LAG_MS + 1)
    fetch(partition, 2, 1)
    assert partition.out_of_sync_replicas() == [3]
    await partition.maybe_shrink_isr()
    assert partition.isr == (1, 2)
    assert log.high_watermark == 1


async def test_isr_write_failure_changes_nothing(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2))
    produce(partition, 1)
    clock.advance(LAG_MS + 1)
    writer.fail = BrokerError("zookeeper down", ErrorCode.ZOOKEEPER_UNAVAILABLE)
    await partition.maybe_shrink_isr()
    assert partition.isr == (1, 2)
    assert log.high_watermark == 0


async def test_bad_version_answer_applies_the_newer_state(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2, 3))
    produce(partition, 1)
    fetch(partition, 2, 1)
    # Meanwhile the controller removed the dead broker 2 (same leader and epoch, new version).
    writer.stored = state(1, [1, 3], epoch=1, version=5)
    clock.advance(LAG_MS + 1)
    fetch(partition, 2, 1)
    await partition.maybe_shrink_isr()  # wants (1, 2); the write is refused
    assert writer.writes[-1].isr == (1, 2)
    assert partition.state == writer.stored  # re-applied what ZooKeeper holds
    assert role_of(partition) is Role.LEADER
    # The next attempt starts from the fresh version and succeeds.
    clock.advance(LAG_MS + 1)
    fetch(partition, 2, 1)
    await partition.maybe_shrink_isr()
    assert partition.isr == (1,) and partition.state is not None
    assert partition.state.zk_version == 6
    assert log.high_watermark == 1


async def test_bad_version_answer_with_a_new_leader_is_left_to_the_watcher(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2))
    produce(partition, 1)
    writer.stored = state(2, [2], epoch=2, version=3)
    clock.advance(LAG_MS + 1)
    await partition.maybe_shrink_isr()
    assert role_of(partition) is Role.LEADER
    assert partition.state == state(1, [1, 2], epoch=1, version=0)


async def test_isr_write_result_ignored_if_leadership_moved_meanwhile(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2))
    produce(partition, 1)
    clock.advance(LAG_MS + 1)
    writer.gate = asyncio.Event()
    shrink = asyncio.create_task(partition.maybe_shrink_isr())
    await asyncio.sleep(0)
    newer = state(2, [1, 2], epoch=2, version=1)
    partition.make_follower(newer, [1, 2])
    writer.gate.set()
    await asyncio.wait_for(shrink, 2)
    assert role_of(partition) is Role.FOLLOWER
    assert partition.state == newer


# ---------------------------------------------------------------------------- ISR expand


async def test_isr_expands_when_follower_reaches_hw(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2))
    produce(partition, 6)
    fetch(partition, 2, 4)
    assert log.high_watermark == 4
    fetch(partition, 3, 3)  # below the HW: not yet
    await asyncio.sleep(0)
    assert writer.writes == []
    fetch(partition, 3, 4)
    await settle(lambda: partition.isr == (1, 2, 3))
    assert [w.isr for w in writer.writes] == [(1, 2, 3)]  # assignment order
    assert partition.leader_epoch == 1
    fetch(partition, 3, 5)
    assert log.high_watermark == 4  # 3 now holds the HW like any ISR member
    fetch(partition, 2, 6)
    assert log.high_watermark == 5


async def test_isr_expand_needs_the_leader_epoch_start_offset(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    # The new leader's log reaches offset 8 from its previous epoch; its HW is only 3 (and
    # stays there: follower 3, in the ISR, has not fetched in this epoch yet).
    append_records(log, 8, epoch=0)
    log.update_high_watermark(3)
    partition = leader(log, clock, writer, (1, 3), epoch=1)
    assert partition.leader_epoch_start_offset == 8
    assert log.high_watermark == 3
    fetch(partition, 2, 5)  # >= HW but below the epoch start offset
    await asyncio.sleep(0)
    assert writer.writes == [] and partition.isr == (1, 3)
    fetch(partition, 2, 8)
    await settle(lambda: partition.isr == (1, 2, 3))


async def test_isr_never_takes_a_broker_that_is_not_registered(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    # Broker 3 still fetches but its ZooKeeper registration is gone: the controller would drop
    # it from the ISR again at once, so the leader must not add it (no expand/shrink loop).
    registered = {1, 2}
    partition = make_partition(log, clock, writer, is_live=registered.__contains__)
    assert partition.make_leader(writer.publish(state(1, (1, 2))), (1, 2, 3))
    produce(partition, 4)
    fetch(partition, 2, 4)
    fetch(partition, 3, 4)
    await asyncio.sleep(0)
    assert writer.writes == [] and partition.isr == (1, 2)
    registered.add(3)
    fetch(partition, 3, 4)
    await settle(lambda: partition.isr == (1, 2, 3))


async def test_close_cancels_isr_writes_and_fails_waiters(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2))
    info = produce(partition, 2)
    writer.gate = asyncio.Event()  # the ISR write hangs
    fetch(partition, 3, 0)
    waiter = asyncio.create_task(partition.wait_committed(info.next_offset, 30))
    await asyncio.sleep(0)
    await asyncio.wait_for(partition.close(), 2)
    with pytest.raises(NotLeaderError):
        await asyncio.wait_for(waiter, 2)


# ------------------------------------------------------------------------- follower side


def test_follower_append_and_hw(
    tmp_path: Path, log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2))
    produce(partition, 3)
    produce(partition, 2, first=3)
    follower_log = open_log(tmp_path / "f" / "t-0", clock)
    try:
        follower = make_partition(follower_log, clock, FakeIsrWriter(), broker_id=2)
        follower.make_follower(state(1, [1, 2]), [1, 2])
        read = partition.read_for_follower(2, 0, 1, 1 << 20)
        follower.append_as_follower(read.data, 4)
        assert follower_log.log_end_offset == 5
        assert follower_log.high_watermark == 4
        follower.append_as_follower(b"", 10)  # leader HW beyond our LEO: capped
        assert follower_log.high_watermark == 5
        follower.update_follower_high_watermark(2)  # never backwards
        assert follower_log.high_watermark == 5
        assert follower_log.read(0, max_bytes=1 << 20).data == log.read(0, max_bytes=1 << 20).data
        assert [(e.epoch, e.start_offset) for e in follower_log.leader_epoch_cache.entries] == [
            (1, 0)
        ]
    finally:
        follower_log.close()


async def test_shrink_waiting_behind_an_expand_does_not_undo_it(
    log: PartitionLog, clock: FakeClock, writer: FakeIsrWriter
) -> None:
    partition = leader(log, clock, writer, (1, 2, 3), replicas=(1, 2, 3, 4))
    produce(partition, 1)
    fetch(partition, 2, 1)
    writer.gate = asyncio.Event()  # the expand's ZooKeeper write is slow
    fetch(partition, 4, 1)  # caught up: expand to (1, 2, 3, 4) starts
    await asyncio.sleep(0)
    clock.advance(LAG_MS + 1)
    fetch(partition, 2, 1)
    assert partition.out_of_sync_replicas() == [3]
    shrink = asyncio.create_task(partition.maybe_shrink_isr())  # queued behind the expand
    await asyncio.sleep(0)
    writer.gate.set()
    await asyncio.wait_for(shrink, 2)
    await settle(lambda: len(writer.writes) == 2)
    # The shrink removes 3 from the ISR as it is NOW, keeping the 4 that was just added.
    assert partition.isr == (1, 2, 4)
    assert writer.stored is not None and writer.stored.isr == (1, 2, 4)
