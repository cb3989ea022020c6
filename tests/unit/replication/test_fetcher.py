"""ReplicaFetcher: KIP-101/279 truncation, then byte-exact fetching (kbroker.replication.fetcher).

The leader is a real Partition over a real PartitionLog behind an in-memory LeaderEndpoint that
applies the same rules as ReplicaManager (read_for_follower, epoch end offsets from the
leader's epoch cache), with hooks to script answers, corrupt bytes or act mid-request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kbroker.errors import BrokerError, ErrorCode
from kbroker.log.batch import HEADER_SIZE
from kbroker.log.partition_log import PartitionLog
from kbroker.replication.endpoint import (
    EpochEndOffset,
    FetchedPartition,
    FetchRequest,
)
from kbroker.replication.fetcher import FetcherSettings, ReplicaFetcher
from kbroker.replication.partition import Partition
from tests.unit.replication.support import (
    TOPIC,
    FakeClock,
    FakeIsrWriter,
    append_records,
    make_partition,
    open_log,
    produce,
    state,
)

LEADER, FOLLOWER = 1, 2
TP = (TOPIC, 0)
SETTINGS = FetcherSettings(broker_id=FOLLOWER, max_wait_ms=20, max_bytes=1 << 20, backoff_ms=10)


@dataclass
class LocalLeader:
    """A LeaderEndpoint over a local leader Partition."""

    partition: Partition
    fetches: list[FetchRequest] = field(default_factory=list)
    epoch_asks: list[int] = field(default_factory=list)
    scripted_epochs: list[EpochEndOffset] = field(default_factory=list)
    """Answers given (in order) instead of the leader's epoch cache while any are left."""
    corrupt_fetches: int = 0
    """How many data-carrying fetch answers get one payload byte flipped."""
    before_answer: Callable[[], Awaitable[None]] | None = None
    """Runs after the leader has read, before the answer reaches the follower."""
    closed: bool = False

    async def fetch(self, request: FetchRequest) -> list[FetchedPartition]:
        self.fetches.append(request)
        answers = self._read(request)
        if not any(a.data for a in answers):
            # Long-poll, like ReplicaManager.fetch_for_follower (bounded by max_wait_ms).
            if await self.partition.leo_signal.wait(request.max_wait_ms / 1000):
                answers = self._read(request)
        else:
            await asyncio.sleep(0)
        if self.corrupt_fetches and any(a.data for a in answers):
            self.corrupt_fetches -= 1
            answers = [_corrupted(a) for a in answers]
        if self.before_answer is not None:
            await self.before_answer()
        return answers

    def _read(self, request: FetchRequest) -> list[FetchedPartition]:
        out = []
        plog = self.partition.log
        for ask in request.partitions:
            try:
                read = self.partition.read_for_follower(
                    request.replica_id, ask.fetch_offset, ask.leader_epoch, request.max_bytes
                )
                code, data = None, read.data
            except BrokerError as exc:
                code, data = int(exc.code), b""
            out.append(
                FetchedPartition(
                    topic=ask.topic,
                    partition=ask.partition,
                    error_code=code,
                    high_watermark=plog.high_watermark,
                    log_start_offset=plog.log_start_offset,
                    log_end_offset=plog.log_end_offset,
                    data=data,
                )
            )
        return out

    async def epoch_end_offsets(
        self, requests: Sequence[tuple[str, int, int]]
    ) -> dict[tuple[str, int], EpochEndOffset]:
        await asyncio.sleep(0)
        out = {}
        for topic, partition, epoch in requests:
            self.epoch_asks.append(epoch)
            if self.scripted_epochs:
                out[(topic, partition)] = self.scripted_epochs.pop(0)
                continue
            found, end = self.partition.log.leader_epoch_cache.end_offset_for(epoch)
            out[(topic, partition)] = EpochEndOffset(
                error_code=None, leader_epoch=found, end_offset=end
            )
        return out

    async def close(self) -> None:
        self.closed = True


def _corrupted(answer: FetchedPartition) -> FetchedPartition:
    if not answer.data:
        return answer
    data = bytearray(answer.data)
    data[HEADER_SIZE] ^= 0xFF  # first payload byte: the CRC no longer matches
    return FetchedPartition(
        topic=answer.topic,
        partition=answer.partition,
        error_code=answer.error_code,
        high_watermark=answer.high_watermark,
        log_start_offset=answer.log_start_offset,
        log_end_offset=answer.log_end_offset,
        data=bytes(data),
    )


def all_bytes(log: PartitionLog) -> bytes:
    """The whole log, batch bytes back to back."""
    out = b""
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        read = log.read(offset, max_bytes=1 << 30)
        out += read.data
        offset = read.next_offset
    return out


def epochs(log: PartitionLog) -> list[tuple[int, int]]:
    return [(e.epoch, e.start_offset) for e in log.leader_epoch_cache.entries]


@dataclass
class Pair:
    clock: FakeClock
    leader_log: PartitionLog
    follower_log: PartitionLog

    def leader(self, epoch: int, isr: Sequence[int] = (LEADER, FOLLOWER)) -> Partition:
        partition = make_partition(self.leader_log, self.clock, FakeIsrWriter(), broker_id=LEADER)
        partition.make_leader(state(LEADER, isr, epoch=epoch), [LEADER, FOLLOWER])
        return partition

    def follower(self, epoch: int) -> Partition:
        partition = make_partition(
            self.follower_log, self.clock, FakeIsrWriter(), broker_id=FOLLOWER
        )
        partition.make_follower(state(LEADER, [LEADER, FOLLOWER], epoch=epoch), [LEADER, FOLLOWER])
        return partition


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    clock = FakeClock()
    leader_log = open_log(tmp_path / "leader" / "t-0", clock)
    follower_log = open_log(tmp_path / "follower" / "t-0", clock)
    yield Pair(clock, leader_log, follower_log)
    leader_log.close()
    follower_log.close()


@pytest.fixture
async def running() -> AsyncIterator[list[ReplicaFetcher]]:
    """Fetchers started by a test; closed (task cancelled and awaited) afterwards."""
    fetchers: list[ReplicaFetcher] = []
    yield fetchers
    for fetcher in fetchers:
        await asyncio.wait_for(fetcher.close(), 5)


def start(
    running: list[ReplicaFetcher], endpoint: LocalLeader, follower: Partition
) -> ReplicaFetcher:
    fetcher = ReplicaFetcher(LEADER, endpoint, SETTINGS)
    running.append(fetcher)
    fetcher.add(follower, follower.leader_epoch)
    fetcher.start()
    return fetcher


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` while the fetcher task runs (bounded by ``timeout``)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the fetcher exposes no event to wait on
            await asyncio.sleep(0.002)


async def in_sync(pair: Pair, leader: Partition, *, same_epochs: bool = True) -> None:
    """Wait until the follower holds the leader's log and high watermark.

    The leader's HW reaching its LEO with the follower in the ISR proves the follower fetched
    up to the end (equal LEOs alone can be a divergent log of the same length).
    """
    await until(
        lambda: (
            leader.isr == (LEADER, FOLLOWER)
            and pair.leader_log.high_watermark == pair.leader_log.log_end_offset
            and pair.follower_log.high_watermark == pair.leader_log.high_watermark
            and pair.follower_log.log_end_offset == pair.leader_log.log_end_offset
        )
    )
    assert all_bytes(pair.follower_log) == all_bytes(pair.leader_log)
    assert not same_epochs or epochs(pair.follower_log) == [
        e for e in epochs(pair.leader_log) if e[1] < pair.leader_log.log_end_offset
    ]


# ------------------------------------------------------------------------------- basics


async def test_empty_follower_copies_the_leader(pair: Pair, running: list[ReplicaFetcher]) -> None:
    leader = pair.leader(epoch=0)
    produce(leader, 3)
    leader.make_leader(state(LEADER, [LEADER, FOLLOWER], epoch=1), [LEADER, FOLLOWER])
    produce(leader, 2, first=3)
    endpoint = LocalLeader(leader)
    start(running, endpoint, pair.follower(epoch=1))
    await in_sync(pair, leader)
    assert endpoint.epoch_asks == []  # no local epoch: nothing to ask about
    assert pair.follower_log.high_watermark == 5
    # Later appends flow too, and the HW follows.
    produce(leader, 4, first=5)
    await in_sync(pair, leader)
    assert pair.leader_log.high_watermark == 9


async def test_a_closed_fetcher_closes_its_endpoint(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    """The endpoint's open fetch stream goes with the fetcher (a follower that stops
    following a leader leaves no connection to it behind)."""
    leader = pair.leader(epoch=0)
    leader.make_leader(state(LEADER, [LEADER, FOLLOWER], epoch=1), [LEADER, FOLLOWER])
    endpoint = LocalLeader(leader)
    fetcher = start(running, endpoint, pair.follower(epoch=1))
    await until(lambda: bool(endpoint.fetches))
    assert not endpoint.closed
    await fetcher.close()
    assert endpoint.closed


async def test_appends_go_through_the_flush_policy_before_the_next_fetch(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    """The offset a follower reports in a fetch counts towards acks=all, so whatever it
    appended went through the flush policy (fsync with flush.messages) before that fetch."""
    leader = pair.leader(epoch=0)
    leader.make_leader(state(LEADER, [LEADER, FOLLOWER], epoch=1), [LEADER, FOLLOWER])
    endpoint = LocalLeader(leader)
    flushed: list[int] = []

    async def flush(replica: Partition, up_to: int) -> None:
        assert replica.log is pair.follower_log
        flushed.append(up_to)

    fetcher = ReplicaFetcher(LEADER, endpoint, SETTINGS, flush)
    running.append(fetcher)
    fetcher.add(pair.follower(epoch=1), 1)
    fetcher.start()
    for first in (0, 3, 5):
        produce(leader, 3 if first == 0 else 2, first=first)
        await in_sync(pair, leader)
    assert flushed and flushed == sorted(flushed) and flushed[-1] == 7
    reported = [p.fetch_offset for request in endpoint.fetches for p in request.partitions]
    assert all(offset in flushed for offset in reported if offset > 0), (reported, flushed)


async def test_many_batches_over_several_fetches(pair: Pair, running: list[ReplicaFetcher]) -> None:
    leader = pair.leader(epoch=0)
    for i in range(30):
        produce(leader, 1 + i % 4, first=i * 10)
    endpoint = LocalLeader(leader)
    fetcher = ReplicaFetcher(
        LEADER,
        endpoint,
        FetcherSettings(broker_id=FOLLOWER, max_wait_ms=20, max_bytes=300, backoff_ms=10),
    )
    running.append(fetcher)
    fetcher.add(pair.follower(epoch=0), 0)
    fetcher.start()
    await in_sync(pair, leader)
    assert len(endpoint.fetches) > 5


# ---------------------------------------------------------------------- KIP-101 truncation


async def test_uncommitted_tail_of_an_older_epoch_is_truncated(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    # Epoch 1: both replicas hold [0, 4); the old leader (now follower) also wrote [4, 7).
    for log in (pair.leader_log, pair.follower_log):
        append_records(log, 4, epoch=1)
    append_records(pair.follower_log, 3, epoch=1, first=100)
    # The new leader takes over in epoch 2 at offset 4 and writes [4, 6).
    leader = pair.leader(epoch=2)
    produce(leader, 2, first=200)
    endpoint = LocalLeader(leader)
    follower = pair.follower(epoch=2)
    start(running, endpoint, follower)
    await in_sync(pair, leader)
    assert endpoint.epoch_asks == [1]
    assert endpoint.fetches[0].partitions[0].fetch_offset == 4  # truncated to epoch 1's end
    assert epochs(pair.follower_log) == [(1, 0), (2, 4)]


async def test_follower_ahead_in_the_same_epoch_is_truncated(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    for log in (pair.leader_log, pair.follower_log):
        append_records(log, 3, epoch=1)
    append_records(pair.follower_log, 2, epoch=1, first=50)
    leader = pair.leader(epoch=1)  # the leader kept its epoch (e.g. the follower restarted)
    endpoint = LocalLeader(leader)
    start(running, endpoint, pair.follower(epoch=1))
    await in_sync(pair, leader)
    assert endpoint.epoch_asks == [1]
    assert pair.follower_log.log_end_offset == 3


async def test_divergent_epochs_after_fast_double_failover_truncate_iteratively(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    # Shared history: epoch 0, offsets [0, 3).
    for log in (pair.leader_log, pair.follower_log):
        append_records(log, 3, epoch=0)
    # Leader: epoch 0 continues to 5, epoch 2 writes [5, 8), then it leads epoch 4 from 8.
    append_records(pair.leader_log, 2, epoch=0, first=10)
    append_records(pair.leader_log, 3, epoch=2, first=20)
    # Follower: epoch 1 wrote [3, 6), epoch 3 wrote [6, 9): epochs the leader never saw.
    append_records(pair.follower_log, 3, epoch=1, first=30)
    append_records(pair.follower_log, 3, epoch=3, first=40)
    leader = pair.leader(epoch=4)
    produce(leader, 2, first=50)
    assert epochs(pair.leader_log) == [(0, 0), (2, 5), (4, 8)]
    endpoint = LocalLeader(leader)
    start(running, endpoint, pair.follower(epoch=4))
    await in_sync(pair, leader)
    # Asked about 3: the leader knows 2 (ends at 8); the follower's epoch <= 2 is 1, ending at
    # 6: truncate to 6 and ask about 1: the leader's epoch 0 ends at 5, the follower's at 3.
    assert endpoint.epoch_asks == [3, 1]
    assert endpoint.fetches[0].partitions[0].fetch_offset == 3
    assert epochs(pair.follower_log) == [(0, 0), (2, 5), (4, 8)]


async def test_same_epoch_ending_earlier_on_the_follower_truncates_to_the_follower_end(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    # Both agree on epoch 0 being the last common one, but the follower's epoch 0 ends at 3
    # (its epoch 2 began there) while the leader's runs to 5: [3, 5) differ.
    for log in (pair.leader_log, pair.follower_log):
        append_records(log, 3, epoch=0)
    append_records(pair.leader_log, 2, epoch=0, first=10)
    append_records(pair.follower_log, 2, epoch=2, first=20)  # [3, 5): a batch ends at 5
    append_records(pair.follower_log, 1, epoch=2, first=22)
    leader = pair.leader(epoch=3)
    produce(leader, 1, first=30)
    endpoint = LocalLeader(leader)
    start(running, endpoint, pair.follower(epoch=3))
    await in_sync(pair, leader)
    assert endpoint.epoch_asks == [2]
    assert endpoint.fetches[0].partitions[0].fetch_offset == 3


async def test_follower_with_data_but_no_epochs_truncates_to_its_hw(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    # E.g. a lost leader-epoch-checkpoint: the log has data the cache knows nothing about.
    for log in (pair.leader_log, pair.follower_log):
        append_records(log, 2, epoch=0)
    append_records(pair.follower_log, 3, epoch=0, first=90)  # never committed
    pair.follower_log.update_high_watermark(2)
    pair.follower_log.leader_epoch_cache.clear()
    leader = pair.leader(epoch=1)
    produce(leader, 3, first=10)
    endpoint = LocalLeader(leader)
    start(running, endpoint, pair.follower(epoch=1))
    await in_sync(pair, leader, same_epochs=False)
    assert endpoint.epoch_asks == []
    assert endpoint.fetches[0].partitions[0].fetch_offset == 2
    assert epochs(pair.follower_log) == [(1, 2)]  # what it fetched; epoch 0 stays unknown


async def test_leader_answers_undefined_truncates_to_hw(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    for log in (pair.leader_log, pair.follower_log):
        append_records(log, 3, epoch=0)
    append_records(pair.follower_log, 3, epoch=1, first=70)
    pair.follower_log.update_high_watermark(3)
    leader = pair.leader(epoch=2)
    produce(leader, 1, first=80)
    endpoint = LocalLeader(leader)
    endpoint.scripted_epochs.append(EpochEndOffset(error_code=None, leader_epoch=-1, end_offset=-1))
    start(running, endpoint, pair.follower(epoch=2))
    await in_sync(pair, leader)
    assert endpoint.epoch_asks == [1]
    assert endpoint.fetches[0].partitions[0].fetch_offset == 3


async def test_epoch_end_offset_error_is_retried(pair: Pair, running: list[ReplicaFetcher]) -> None:
    for log in (pair.leader_log, pair.follower_log):
        append_records(log, 2, epoch=0)
    append_records(pair.follower_log, 1, epoch=0, first=60)
    leader = pair.leader(epoch=1)
    endpoint = LocalLeader(leader)
    endpoint.scripted_epochs.append(
        EpochEndOffset(error_code=int(ErrorCode.NOT_LEADER), leader_epoch=-1, end_offset=-1)
    )
    start(running, endpoint, pair.follower(epoch=1))
    await in_sync(pair, leader)
    assert endpoint.epoch_asks == [0, 0]  # asked again after the backoff
    assert pair.follower_log.log_end_offset == 2


# ------------------------------------------------------------------------ out of range


async def test_follower_beyond_leader_truncates_to_leader_leo(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    for log in (pair.leader_log, pair.follower_log):
        append_records(log, 3, epoch=0)
    append_records(pair.follower_log, 4, epoch=0, first=40)
    leader = pair.leader(epoch=1)
    endpoint = LocalLeader(leader)
    # A leader that (wrongly or racily) says the follower's epoch ends where it does.
    endpoint.scripted_epochs.append(EpochEndOffset(error_code=None, leader_epoch=0, end_offset=7))
    start(running, endpoint, pair.follower(epoch=1))
    await until(lambda: len(endpoint.fetches) >= 2)
    assert endpoint.fetches[0].partitions[0].fetch_offset == 7  # OFFSET_OUT_OF_RANGE
    await in_sync(pair, leader)
    assert pair.follower_log.log_end_offset == 3


async def test_follower_below_leader_log_start_restarts_there(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    pair.leader_log.truncate_fully_and_start_at(100)  # retention removed everything below
    leader = pair.leader(epoch=3)
    produce(leader, 4, first=100)
    append_records(pair.follower_log, 2, epoch=0)  # an old, short replica
    pair.follower_log.update_high_watermark(2)
    endpoint = LocalLeader(leader)
    endpoint.scripted_epochs.append(EpochEndOffset(error_code=None, leader_epoch=0, end_offset=2))
    start(running, endpoint, pair.follower(epoch=3))
    await in_sync(pair, leader)
    assert pair.follower_log.log_start_offset == 100
    assert [p.partitions[0].fetch_offset for p in endpoint.fetches[:2]] == [2, 100]


# ------------------------------------------------------------------- bad data and races


async def test_corrupted_bytes_are_rejected_and_fetched_again(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    leader = pair.leader(epoch=0)
    produce(leader, 3)
    produce(leader, 2, first=3)
    endpoint = LocalLeader(leader, corrupt_fetches=2)
    start(running, endpoint, pair.follower(epoch=0))
    await in_sync(pair, leader)
    data_fetch_offsets = [r.partitions[0].fetch_offset for r in endpoint.fetches[:3]]
    assert data_fetch_offsets == [0, 0, 0]  # nothing from the bad answers was written


async def test_leadership_change_during_fetch_appends_nothing(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    leader = pair.leader(epoch=0)
    produce(leader, 3)
    endpoint = LocalLeader(leader)
    follower = pair.follower(epoch=0)
    fetcher = start(running, endpoint, follower)
    moved = asyncio.Event()

    async def move_leadership() -> None:
        # While the answer is in flight the controller makes broker 3 leader in epoch 1.
        follower.make_follower(state(3, [3, FOLLOWER], epoch=1), [LEADER, FOLLOWER, 3])
        endpoint.before_answer = None
        moved.set()

    endpoint.before_answer = move_leadership
    await asyncio.wait_for(moved.wait(), 5)
    await asyncio.sleep(0.05)
    assert pair.follower_log.log_end_offset == 0
    assert follower.leader_epoch == 1
    fetcher.remove(TP)


async def test_epoch_bump_during_fetch_appends_nothing(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    leader = pair.leader(epoch=0)
    produce(leader, 3)
    endpoint = LocalLeader(leader)
    follower = pair.follower(epoch=0)
    start(running, endpoint, follower)
    bumped = asyncio.Event()

    async def bump() -> None:
        # Same leader, newer epoch (e.g. it was re-elected): answers for epoch 0 are stale.
        follower.make_follower(state(LEADER, [LEADER, FOLLOWER], epoch=1), [LEADER, FOLLOWER])
        bumped.set()

    endpoint.before_answer = bump
    await asyncio.wait_for(bumped.wait(), 5)
    await until(lambda: len(endpoint.fetches) >= 3)
    assert pair.follower_log.log_end_offset == 0


async def test_removed_partition_in_flight_appends_nothing(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    leader = pair.leader(epoch=0)
    produce(leader, 3)
    endpoint = LocalLeader(leader)
    fetcher = start(running, endpoint, pair.follower(epoch=0))
    removed = asyncio.Event()

    async def remove() -> None:
        fetcher.remove(TP)
        removed.set()

    endpoint.before_answer = remove
    await asyncio.wait_for(removed.wait(), 5)
    await asyncio.sleep(0.05)
    assert pair.follower_log.log_end_offset == 0
    assert len(fetcher) == 0


async def test_readded_partition_in_flight_discards_the_old_answer(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    leader = pair.leader(epoch=0)
    produce(leader, 3)
    endpoint = LocalLeader(leader)
    follower = pair.follower(epoch=0)
    fetcher = start(running, endpoint, follower)
    calls = 0

    async def bounce() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the same partition is followed again (new state) mid-request
            fetcher.add(follower, 0)

    endpoint.before_answer = bounce
    await in_sync(pair, leader)
    assert calls >= 2


async def test_fenced_fetch_backs_off_without_writing(
    pair: Pair, running: list[ReplicaFetcher]
) -> None:
    leader = pair.leader(epoch=2)
    produce(leader, 2)
    endpoint = LocalLeader(leader)
    follower = pair.follower(epoch=1)  # the follower still believes in epoch 1
    start(running, endpoint, follower)
    await until(lambda: len(endpoint.fetches) >= 2)
    assert pair.follower_log.log_end_offset == 0
    assert {r.partitions[0].leader_epoch for r in endpoint.fetches} == {1}
