"""PartitionLog: append, roll, read semantics, offsets and the high watermark."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kbroker.errors import (
    BrokerError,
    ErrorCode,
    FencedLeaderEpochError,
    OffsetOutOfRangeError,
    StorageError,
)
from kbroker.log.batch import HEADER_SIZE
from kbroker.log.partition_log import PartitionLog
from kbroker.log.segment import INT32_MAX
from tests.unit.log.support import FakeClock, append, make_config, open_log, payload_for


def test_offsets_are_assigned_contiguously(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock)
    assert (log.log_start_offset, log.log_end_offset, log.high_watermark) == (0, 0, 0)
    first = append(log, payload_for(0), records=3)
    second = append(log, payload_for(1), records=2)
    assert (first.first_offset, first.last_offset) == (0, 2)
    assert (second.first_offset, second.last_offset) == (3, 4)
    assert log.log_end_offset == 5
    assert log.size_in_bytes == 2 * (HEADER_SIZE + 40)
    assert sorted(p.name for p in log_dir.iterdir()) == [
        "00000000000000000000.index",
        "00000000000000000000.log",
        "00000000000000000000.timeindex",
        "leader-epoch-checkpoint",
    ]
    log.close()


def test_roll_by_size(log_dir: Path, clock: FakeClock) -> None:
    batch = HEADER_SIZE + 40
    log = open_log(log_dir, clock, make_config(segment_bytes=3 * batch))
    for i in range(7):
        append(log, payload_for(i))
    assert [(s.base_offset, s.next_offset) for s in log.segments] == [(0, 3), (3, 6), (6, 7)]
    assert all(s.size <= 3 * batch for s in log.segments)
    log.close()


def test_oversize_batch_goes_alone_into_a_segment(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock, make_config(segment_bytes=100))
    append(log, payload_for(0, 10))
    append(log, payload_for(1, 500))
    append(log, payload_for(2, 10))
    assert [(s.base_offset, s.next_offset) for s in log.segments] == [(0, 1), (1, 2), (2, 3)]
    log.close()


def test_roll_by_time(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock, make_config(segment_ms=1000))
    append(log, payload_for(0))
    clock.advance(1000)
    append(log, payload_for(1))
    assert log.segment_count == 1
    clock.advance(1)
    append(log, payload_for(2))
    assert [s.base_offset for s in log.segments] == [0, 2]
    log.close()


def test_roll_by_time_after_restart_uses_first_batch_timestamp(
    log_dir: Path, clock: FakeClock
) -> None:
    config = make_config(segment_ms=1000)
    log = open_log(log_dir, clock, config)
    append(log, payload_for(0), timestamp=clock.now - 5000)
    log.close()
    log = open_log(log_dir, clock, config, clean_shutdown=True)
    append(log, payload_for(1), timestamp=clock.now)
    assert [s.base_offset for s in log.segments] == [0, 1]
    log.close()


def test_roll_on_relative_offset_overflow(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock)
    append(log, payload_for(0), records=INT32_MAX - 1)
    append(log, payload_for(1), records=2)  # last relative offset INT32_MAX still fits
    append(log, payload_for(2), records=1)
    assert [s.base_offset for s in log.segments] == [0, INT32_MAX + 1]
    assert log.log_end_offset == INT32_MAX + 2
    assert log.read(INT32_MAX, max_bytes=10_000).first_offset == INT32_MAX - 1
    log.close()


def test_payload_larger_than_max_message_bytes_is_refused(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock, make_config(max_message_bytes=100))
    append(log, payload_for(0, 100))
    with pytest.raises(BrokerError) as info:
        append(log, payload_for(1, 101))
    assert info.value.code == ErrorCode.RECORD_TOO_LARGE
    assert log.log_end_offset == 1
    log.close()


def test_stale_leader_epoch_is_fenced(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock)
    append(log, payload_for(0), epoch=2)
    with pytest.raises(FencedLeaderEpochError):
        append(log, payload_for(1), epoch=1)
    append(log, payload_for(2), records=2, epoch=4)
    assert [(e.epoch, e.start_offset) for e in log.leader_epoch_cache.entries] == [(2, 0), (4, 1)]
    log.close()


class TestRead:
    @pytest.fixture
    def log_with_batches(self, log_dir: Path, clock: FakeClock) -> Iterator[PartitionLog]:
        """Batches of 3 records each: [0,3) [3,6) ... [27,30), 2 per segment, dense index."""
        config = make_config(segment_bytes=2 * (HEADER_SIZE + 40), index_interval_bytes=0)
        log = open_log(log_dir, clock, config)
        for i in range(10):
            append(log, payload_for(i), records=3, timestamp=1000 + 10 * i)
        yield log
        log.close()

    batch = HEADER_SIZE + 40

    def test_mid_batch_offset_returns_containing_batch(
        self, log_with_batches: PartitionLog
    ) -> None:
        result = log_with_batches.read(4, max_bytes=10_000)
        assert result.first_offset == 3
        assert [h.base_offset for h in result.headers()] == [3]  # one segment per read
        assert result.next_offset == 6
        assert result.log_end_offset == 30

    def test_reads_one_segment(self, log_with_batches: PartitionLog) -> None:
        result = log_with_batches.read(6, max_bytes=10_000)
        assert [h.base_offset for h in result.headers()] == [6, 9]
        assert result.next_offset == 12

    def test_max_bytes(self, log_with_batches: PartitionLog) -> None:
        result = log_with_batches.read(6, max_bytes=self.batch + 10)
        assert [h.base_offset for h in result.headers()] == [6]
        assert len(result.data) == self.batch

    def test_min_one(self, log_with_batches: PartitionLog) -> None:
        result = log_with_batches.read(6, max_bytes=1)
        assert [h.base_offset for h in result.headers()] == [6]
        empty = log_with_batches.read(6, max_bytes=1, min_one=False)
        assert empty.data == b"" and empty.next_offset == 6 and empty.first_offset == 6

    def test_max_offset_bound(self, log_with_batches: PartitionLog) -> None:
        assert [
            h.base_offset
            for h in log_with_batches.read(6, max_bytes=10_000, max_offset=12).headers()
        ] == [6, 9]
        assert [
            h.base_offset
            for h in log_with_batches.read(6, max_bytes=10_000, max_offset=11).headers()
        ] == [6]
        assert log_with_batches.read(6, max_bytes=10_000, max_offset=8).data == b""
        assert log_with_batches.read(6, max_bytes=10_000, max_offset=6).data == b""
        assert log_with_batches.read(9, max_bytes=10_000, max_offset=6).data == b""

    def test_max_records_bounds_what_is_read(self, log_dir: Path, clock: FakeClock) -> None:
        # One segment of 10 batches of 3 records: a reader that wants 4 records from offset 4
        # (mid-batch) gets the batches holding 4..7 and not the whole segment.
        log = open_log(log_dir, clock, make_config(index_interval_bytes=0))
        for i in range(10):
            append(log, payload_for(i), records=3)
        wanted = log.read(4, max_bytes=10_000, max_records=4)
        assert [h.base_offset for h in wanted.headers()][:2] == [3, 6]
        assert len(list(wanted.headers())) < 10
        one = log.read(4, max_bytes=10_000, max_records=1)
        assert next(one.headers()).base_offset == 3
        assert len(list(log.read(0, max_bytes=10_000).headers())) == 10
        log.close()

    def test_end_and_out_of_range(self, log_with_batches: PartitionLog) -> None:
        at_end = log_with_batches.read(30, max_bytes=10_000)
        assert at_end.data == b"" and at_end.next_offset == 30
        with pytest.raises(OffsetOutOfRangeError) as info:
            log_with_batches.read(31, max_bytes=10)
        assert info.value.extra == {"log_start_offset": 0, "log_end_offset": 30}
        assert "log start offset 0" in info.value.message
        assert "log end offset 30" in info.value.message

    def test_below_log_start(self, log_with_batches: PartitionLog) -> None:
        log_with_batches.update_high_watermark(30)
        log_with_batches.update_config(make_config(retention_bytes=0, index_interval_bytes=0))
        assert log_with_batches.delete_old_segments() == 4
        assert log_with_batches.log_start_offset == 24
        with pytest.raises(OffsetOutOfRangeError):
            log_with_batches.read(23, max_bytes=10)
        assert log_with_batches.read(24, max_bytes=10_000).first_offset == 24

    def test_data_round_trips(self, log_with_batches: PartitionLog) -> None:
        result = log_with_batches.read(0, max_bytes=10_000)
        payloads = [
            bytes(result.data[h.position + HEADER_SIZE : h.position + h.size])
            for h in result.headers()
        ]
        assert payloads == [payload_for(0), payload_for(1)]

    def test_offset_for_timestamp(self, log_with_batches: PartitionLog) -> None:
        assert log_with_batches.offset_for_timestamp(0) == 0
        assert log_with_batches.offset_for_timestamp(1000) == 0
        assert log_with_batches.offset_for_timestamp(1001) == 3
        assert log_with_batches.offset_for_timestamp(1050) == 15
        assert log_with_batches.offset_for_timestamp(1090) == 27
        assert log_with_batches.offset_for_timestamp(1091) is None


def test_offset_for_timestamp_out_of_order(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock, make_config(index_interval_bytes=0))
    for i, ts in enumerate([50, 10, 70, 20, 90]):
        append(log, payload_for(i), timestamp=ts)
    assert log.offset_for_timestamp(60) == 2
    assert log.offset_for_timestamp(15) == 0
    assert log.offset_for_timestamp(80) == 4
    log.close()


def test_high_watermark_is_clamped_and_monotonic(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock)
    for i in range(5):
        append(log, payload_for(i))
    assert log.update_high_watermark(3) == 3
    assert log.update_high_watermark(2) == 3
    assert log.update_high_watermark(99) == 5
    assert log.reset_high_watermark(1) == 1
    assert log.reset_high_watermark(-4) == 0
    log.close()


def test_closed_log_refuses_work(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock)
    log.close()
    log.close()
    with pytest.raises(StorageError):
        append(log, b"x")
    with pytest.raises(StorageError):
        log.flush()


def test_delete_removes_directory(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock)
    append(log, b"x")
    log.delete()
    assert not log_dir.exists()


def test_a_new_leader_epoch_is_written_before_its_first_batch(
    log_dir: Path, clock: FakeClock
) -> None:
    """Becoming leader records the epoch in memory only (no fsync on the event loop for each
    of thousands of partitions changing leader); the file gets it before a batch of it."""
    log = open_log(log_dir, clock)
    append(log, payload_for(0), epoch=0)
    checkpoint = log_dir / "leader-epoch-checkpoint"
    assert checkpoint.read_text() == "0\n1\n0 0\n"
    log.assign_epoch_start_offset(3)
    assert log.leader_epoch_cache.latest_epoch == 3
    assert (log.leader_epoch_cache.dirty, checkpoint.read_text()) == (True, "0\n1\n0 0\n")
    append(log, payload_for(1), epoch=3)
    written = "0\n2\n0 0\n3 1\n"
    assert (log.leader_epoch_cache.dirty, checkpoint.read_text()) == (False, written)
    log.close()
    reopened = open_log(log_dir, clock, recovery_point=0)  # recovery: epochs from the batches
    assert [(e.epoch, e.start_offset) for e in reopened.leader_epoch_cache.entries] == [
        (0, 0),
        (3, 1),
    ]
    reopened.close()
