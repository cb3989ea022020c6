"""Truncation (to an offset, fully) and retention (time, size, HW, active segment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbroker.log.batch import HEADER_SIZE
from kbroker.log.partition_log import PartitionLog
from tests.unit.log.support import FakeClock, append, make_config, open_log, payload_for

BATCH = HEADER_SIZE + 40


def _filled(log_dir: Path, clock: FakeClock, batches: int = 10, **config: int) -> PartitionLog:
    """``batches`` batches of 2 records, 3 batches per segment, dense index."""
    settings = {"segment_bytes": 3 * BATCH, "index_interval_bytes": 0, **config}
    log = open_log(log_dir, clock, make_config(**settings))
    for i in range(batches):
        append(log, payload_for(i), records=2, timestamp=1000 * (i + 1), epoch=i // 4)
    return log


def _bases(log: PartitionLog) -> list[int]:
    return [s.base_offset for s in log.segments]


class TestTruncateTo:
    def test_mid_batch_removes_whole_batch(self, log_dir: Path, clock: FakeClock) -> None:
        log = _filled(log_dir, clock)
        log.update_high_watermark(20)
        log.flush()
        log.truncate_to(9)
        assert log.log_end_offset == 8
        assert (log.high_watermark, log.recovery_point) == (8, 8)
        assert _bases(log) == [0, 6]
        assert [(e.epoch, e.start_offset) for e in log.leader_epoch_cache.entries] == [(0, 0)]
        assert log.read(6, max_bytes=10_000).next_offset == 8
        assert not list(log_dir.glob("00000000000000000012.*"))
        assert append(log, b"new").first_offset == 8
        log.close()

    def test_at_segment_base_keeps_empty_segment(self, log_dir: Path, clock: FakeClock) -> None:
        log = _filled(log_dir, clock)
        log.truncate_to(6)
        assert log.log_end_offset == 6 and _bases(log) == [0, 6]
        assert log.segments[-1].is_empty
        assert log.read(6, max_bytes=100).data == b""
        log.close()

    def test_noop_at_or_past_end(self, log_dir: Path, clock: FakeClock) -> None:
        log = _filled(log_dir, clock)
        log.truncate_to(20)
        log.truncate_to(100)
        assert log.log_end_offset == 20
        log.close()

    def test_to_zero(self, log_dir: Path, clock: FakeClock) -> None:
        log = _filled(log_dir, clock)
        log.truncate_to(0)
        assert (log.log_start_offset, log.log_end_offset, log.segment_count) == (0, 0, 1)
        assert log.leader_epoch_cache.entries == ()
        log.close()

    def test_survives_reopen(self, log_dir: Path, clock: FakeClock) -> None:
        log = _filled(log_dir, clock)
        log.truncate_to(13)
        log.close()
        for clean in (True, False):
            log = open_log(
                log_dir, clock, make_config(index_interval_bytes=0), clean_shutdown=clean
            )
            assert log.log_end_offset == 12 and _bases(log) == [0, 6, 12]
            log.close()

    def test_truncate_fully_and_start_at(self, log_dir: Path, clock: FakeClock) -> None:
        log = _filled(log_dir, clock)
        log.update_high_watermark(20)
        log.truncate_fully_and_start_at(50)
        assert (log.log_start_offset, log.log_end_offset, log.high_watermark) == (50, 50, 50)
        assert log.recovery_point == 50 and log.leader_epoch_cache.entries == ()
        assert append(log, b"x").first_offset == 50
        assert sorted(p.name for p in log_dir.glob("*.log")) == ["00000000000000000050.log"]
        log.close()

    def test_below_log_start_starts_over(self, log_dir: Path, clock: FakeClock) -> None:
        log = _filled(log_dir, clock)
        log.update_high_watermark(20)
        log.update_config(make_config(retention_bytes=0))
        log.delete_old_segments()
        assert log.log_start_offset == 18
        log.truncate_to(3)
        assert (log.log_start_offset, log.log_end_offset) == (3, 3)
        log.close()

    def test_rejects_negative(self, log_dir: Path, clock: FakeClock) -> None:
        log = _filled(log_dir, clock)
        with pytest.raises(ValueError):
            log.truncate_to(-1)
        log.close()


class TestRetention:
    def test_by_time(self, log_dir: Path, clock: FakeClock) -> None:
        log = _filled(log_dir, clock, retention_ms=5000)
        log.update_high_watermark(20)
        # segment max timestamps: 3000, 6000, 9000, (10000 active)
        assert log.delete_old_segments(now_ms=8000) == 0  # exactly retention.ms old
        assert log.delete_old_segments(now_ms=8001) == 1
        assert log.log_start_offset == 6
        assert log.delete_old_segments(now_ms=8001) == 0
        assert log.delete_old_segments(now_ms=100_000) == 2
        assert _bases(log) == [18]  # the active segment stays
        assert log.recovery_point >= 18
        assert list(log_dir.glob("*.deleted")) == []
        assert [(e.epoch, e.start_offset) for e in log.leader_epoch_cache.entries] == [(2, 18)]
        log.close()

    def test_by_size(self, log_dir: Path, clock: FakeClock) -> None:
        log = _filled(log_dir, clock, retention_bytes=4 * BATCH)
        log.update_high_watermark(20)
        # sizes 3, 3, 3, 1 batches = 10; delete oldest while the rest still exceeds 4
        assert log.delete_old_segments(now_ms=0) == 2
        assert log.size_in_bytes == 4 * BATCH
        assert log.log_start_offset == 12
        log.close()

    def test_never_past_high_watermark(self, log_dir: Path, clock: FakeClock) -> None:
        log = _filled(log_dir, clock, retention_ms=0)
        log.update_high_watermark(11)
        assert log.delete_old_segments(now_ms=10**12) == 1
        assert log.log_start_offset == 6
        log.update_high_watermark(12)
        assert log.delete_old_segments(now_ms=10**12) == 1
        log.close()

    def test_never_the_active_segment(self, log_dir: Path, clock: FakeClock) -> None:
        log = open_log(log_dir, clock, make_config(retention_ms=0, retention_bytes=0))
        append(log, b"x", timestamp=1)
        log.update_high_watermark(1)
        assert log.delete_old_segments(now_ms=10**12) == 0
        assert log.log_start_offset == 0
        log.close()

    def test_disabled(self, log_dir: Path, clock: FakeClock) -> None:
        log = _filled(log_dir, clock)
        log.update_high_watermark(20)
        assert log.delete_old_segments(now_ms=10**12) == 0
        log.close()

    def test_retention_survives_reopen(self, log_dir: Path, clock: FakeClock) -> None:
        log = _filled(log_dir, clock, retention_bytes=0)
        log.update_high_watermark(20)
        log.delete_old_segments()
        log.close()
        log = open_log(log_dir, clock, make_config(index_interval_bytes=0))
        assert (log.log_start_offset, log.log_end_offset) == (18, 20)
        assert log.high_watermark == 18
        log.close()
