"""flush(): recovery point, flush policy, and safety against a concurrent owner thread."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from kbroker.errors import StorageError
from kbroker.log.batch import HEADER_SIZE
from tests.unit.log.support import FakeClock, append, make_config, open_log, payload_for


def test_flush_advances_recovery_point(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock)
    for i in range(5):
        append(log, payload_for(i))
    assert log.recovery_point == 0 and log.unflushed_messages == 5
    log.flush(up_to=3)
    assert log.recovery_point == 3
    log.flush(up_to=100)
    assert log.recovery_point == 5 and log.unflushed_messages == 0
    log.flush()
    log.close()


def test_flush_syncs_only_segments_past_recovery_point(
    log_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(log_dir, clock, make_config(segment_bytes=2 * (HEADER_SIZE + 40)))
    for i in range(6):
        append(log, payload_for(i))
    log.flush(up_to=4)
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    log.flush()
    assert sorted(Path(p).name for p in synced) == [
        "00000000000000000004.index",
        "00000000000000000004.log",
        "00000000000000000004.timeindex",
    ]
    log.close()


def test_flush_policy(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock, make_config(flush_messages=3, flush_ms=1000))
    assert not log.should_flush(clock.now)
    append(log, payload_for(0), records=2)
    assert not log.should_flush(clock.now)
    append(log, payload_for(1))
    assert log.should_flush(clock.now)
    log.flush()
    assert not log.should_flush(clock.now)
    append(log, payload_for(2))
    assert not log.should_flush(clock.now + 999)
    assert log.should_flush(clock.now + 1000)
    log.close()


def test_flush_policy_flushes_rolled_segments(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock, make_config(segment_bytes=HEADER_SIZE + 40))
    append(log, payload_for(0))
    assert not log.should_flush(clock.now)
    append(log, payload_for(1))
    assert log.should_flush(clock.now)  # like Kafka: flush what a roll left behind
    log.close()


def test_fsync_failure_raises_and_keeps_recovery_point(
    log_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(log_dir, clock)
    append(log, payload_for(0))

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(StorageError, match="fsync"):
        log.flush()
    assert log.recovery_point == 0
    monkeypatch.undo()
    log.flush()
    assert log.recovery_point == 1
    log.close()


class _GatedFsync:
    """An fsync that blocks in the flush thread until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.real = os.fsync

    def __call__(self, fd: int) -> None:
        if threading.current_thread() is not threading.main_thread():
            self.entered.set()
            assert self.gate.wait(10)
        self.real(fd)


def _flush_in_thread(log: Any, errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            log.flush()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_truncation_during_flush_does_not_advance_recovery_point(
    log_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(log_dir, clock, make_config(segment_bytes=2 * (HEADER_SIZE + 40)))
    for i in range(6):
        append(log, payload_for(i))
    gated = _GatedFsync()
    monkeypatch.setattr(os, "fsync", gated)
    errors: list[BaseException] = []
    thread = _flush_in_thread(log, errors)
    assert gated.entered.wait(10)
    log.truncate_to(3)  # deletes segment 4 while the flush holds it pinned
    for i in range(3):
        append(log, payload_for(10 + i))
    assert (log_dir / "00000000000000000004.log.deleted").exists()
    gated.gate.set()
    thread.join(10)
    assert not errors
    assert log.recovery_point <= 3  # the rewritten offsets 3.. were not covered
    assert not (log_dir / "00000000000000000004.log.deleted").exists()
    log.flush()
    assert log.recovery_point == log.log_end_offset == 6
    log.close()


def test_close_and_retention_during_flush(
    log_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(segment_bytes=HEADER_SIZE + 40, retention_bytes=0)
    log = open_log(log_dir, clock, config)
    for i in range(4):
        append(log, payload_for(i))
    log.update_high_watermark(4)
    gated = _GatedFsync()
    monkeypatch.setattr(os, "fsync", gated)
    errors: list[BaseException] = []
    thread = _flush_in_thread(log, errors)
    assert gated.entered.wait(10)
    assert log.delete_old_segments() == 3
    log.close()
    gated.gate.set()
    thread.join(10)
    assert not errors
    assert sorted(p.name for p in log_dir.glob("*.log*")) == ["00000000000000000003.log"]


def test_appends_while_flushing_in_a_thread(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock, make_config(segment_bytes=20 * (HEADER_SIZE + 40)))
    stop = threading.Event()
    errors: list[BaseException] = []
    points: list[int] = []

    def flusher() -> None:
        try:
            while not stop.is_set():
                log.flush()
                points.append(log.recovery_point)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=flusher, daemon=True)
    thread.start()
    try:
        for i in range(1, 401):
            append(log, payload_for(i))
            if i % 97 == 0:
                log.truncate_to(log.log_end_offset - 2)
                assert log.recovery_point <= log.log_end_offset
    finally:
        stop.set()
        thread.join(10)
    assert not errors
    assert points and all(p <= 400 for p in points)
    log.flush()
    assert log.recovery_point == log.log_end_offset
    log.close()
    reopened = open_log(log_dir, clock, clean_shutdown=True)
    assert reopened.log_end_offset == 400 - 2 * (400 // 97)
    reopened.close()
