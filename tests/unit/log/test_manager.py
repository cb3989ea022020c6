"""LogManager: load, clean shutdown marker, checkpoints, create, delete, retention, loops."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kbroker.log.checkpoint import OffsetCheckpoint
from kbroker.log.flusher import GroupCommitFlusher
from kbroker.log.manager import CLEAN_SHUTDOWN_FILE, LogManager
from tests.unit.log.support import BASE_CONFIG, FakeClock, append, make_config, payload_for


def _manager(data_dir: Path, clock: FakeClock, **config: int) -> LogManager:
    manager = LogManager(data_dir, make_config(**config), clock=clock)
    manager.load()
    return manager


def test_create_close_and_load_cleanly(tmp_path: Path, clock: FakeClock) -> None:
    manager = _manager(tmp_path, clock)
    log = manager.get_or_create("my-topic", 3)
    assert manager.get_or_create("my-topic", 3) is log
    assert log.directory == tmp_path / "my-topic-3"
    for i in range(4):
        append(log, payload_for(i))
    log.update_high_watermark(3)
    manager.close()
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    assert OffsetCheckpoint(tmp_path / "recovery-point-offset-checkpoint").read() == {
        ("my-topic", 3): 4
    }
    assert OffsetCheckpoint(tmp_path / "replication-offset-checkpoint").read() == {
        ("my-topic", 3): 3
    }
    again = _manager(tmp_path, clock)
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    reloaded = again.get("my-topic", 3)
    assert reloaded is not None
    assert (reloaded.log_end_offset, reloaded.high_watermark, reloaded.recovery_point) == (4, 3, 4)
    assert [(lg.topic, lg.partition) for lg in again.all_logs()] == [("my-topic", 3)]
    again.close()


def test_unclean_load_recovers_from_recovery_point(tmp_path: Path, clock: FakeClock) -> None:
    manager = _manager(tmp_path, clock)
    log = manager.get_or_create("t", 0)
    for i in range(3):
        append(log, payload_for(i))
    log.flush()
    manager.checkpoint_recovery_points()
    append(log, payload_for(3))
    # crash: no close, no marker; the last batch is torn
    segment = tmp_path / "t-0" / "00000000000000000000.log"
    segment.write_bytes(segment.read_bytes()[:-5])
    log.close()
    again = _manager(tmp_path, clock)
    recovered = again.get("t", 0)
    assert recovered is not None
    assert recovered.log_end_offset == 3 and recovered.recovery_point == 3
    again.close()


def test_malformed_recovery_checkpoint_means_full_recovery(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    manager = _manager(tmp_path, clock)
    append(manager.get_or_create("t", 0), payload_for(0))
    manager.close()
    (tmp_path / "recovery-point-offset-checkpoint").write_text("garbage")
    (tmp_path / CLEAN_SHUTDOWN_FILE).unlink()
    again = _manager(tmp_path, clock)
    log = again.get("t", 0)
    assert log is not None and log.log_end_offset == 1 and log.recovery_point == 0
    assert "treating it as absent" in caplog.text
    again.close()


def test_delete_log(tmp_path: Path, clock: FakeClock) -> None:
    manager = _manager(tmp_path, clock)
    append(manager.get_or_create("t", 0), payload_for(0))
    manager.get_or_create("t", 1)
    assert manager.delete_log("t", 0)
    assert not manager.delete_log("t", 0)
    assert manager.get("t", 0) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t-1"]
    leftover = tmp_path / f"t-1.{'ab' * 16}-delete"
    leftover.mkdir()
    (leftover / "00000000000000000000.log").write_bytes(b"x")
    manager.close()
    again = _manager(tmp_path, clock)
    assert not leftover.exists()
    assert [lg.name for lg in again.all_logs()] == ["t-1"]
    again.close()


def test_delete_log_only_deletes_the_log_it_names(tmp_path: Path, clock: FakeClock) -> None:
    """A log detached for deletion whose name a re-created topic took is not the new log."""
    manager = _manager(tmp_path, clock)
    old = manager.get_or_create("t", 0)
    assert manager.delete_log("t", 0)  # (as the old topic's mismatched id makes the broker do)
    new = manager.get_or_create("t", 0)
    append(new, payload_for(0))
    assert not manager.delete_log("t", 0, only=old)
    assert manager.get("t", 0) is new and new.log_end_offset == 1
    assert manager.delete_log("t", 0, only=new)
    assert manager.get("t", 0) is None
    manager.close()


def test_truncation_checkpoints_recovery_points(tmp_path: Path, clock: FakeClock) -> None:
    manager = _manager(tmp_path, clock)
    log = manager.get_or_create("t", 0)
    for i in range(5):
        append(log, payload_for(i))
    log.flush()
    manager.checkpoint_recovery_points()
    log.truncate_to(2)
    assert OffsetCheckpoint(tmp_path / "recovery-point-offset-checkpoint").read() == {("t", 0): 2}
    manager.close()


def test_per_topic_config_resolver(tmp_path: Path, clock: FakeClock) -> None:
    configs = {"small": make_config(segment_bytes=100), "big": BASE_CONFIG}
    manager = LogManager(tmp_path, lambda topic: configs[topic], clock=clock)
    manager.load()
    assert manager.get_or_create("small", 0).config.segment_bytes == 100
    assert manager.get_or_create("big", 0).config == BASE_CONFIG
    custom = make_config(segment_bytes=5000)
    assert manager.get_or_create("big", 1, custom).config == custom
    manager.close()


def test_run_retention(tmp_path: Path, clock: FakeClock) -> None:
    manager = _manager(tmp_path, clock, segment_bytes=120, retention_ms=1000)
    log = manager.get_or_create("t", 0)
    for i in range(3):
        append(log, payload_for(i), timestamp=clock.now)
    log.update_high_watermark(3)
    assert manager.run_retention(clock.now) == 0
    assert manager.run_retention(clock.now + 1001) == 2
    assert log.log_start_offset == 2
    manager.close()


async def test_background_loops_are_cancellable(tmp_path: Path, clock: FakeClock) -> None:
    manager = _manager(tmp_path, clock, segment_bytes=120, retention_ms=1000, flush_messages=1)
    log = manager.get_or_create("t", 0)
    for i in range(3):
        append(log, payload_for(i), timestamp=clock.now)
    log.update_high_watermark(3)
    flusher = GroupCommitFlusher()
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(manager.retention_loop(1000)),
            group.create_task(manager.flush_loop(flusher, 10)),
            group.create_task(manager.checkpoint_loop(10)),
        ]
        async with asyncio.timeout(10):
            # polling: the flush completes in an executor thread, nothing to await directly
            while not (log.log_start_offset == 2 and log.recovery_point == 3):  # noqa: ASYNC110
                await asyncio.sleep(0.001)
        for task in tasks:
            task.cancel()
    assert log.log_start_offset == 2 and log.recovery_point == 3
    await flusher.close()
    manager.close()


def test_an_idle_partition_holds_one_descriptor(tmp_path: Path, clock: FakeClock) -> None:
    """Its segment's log file; the indexes are opened on their first write. A broker hosting
    thousands of replicas therefore needs about one descriptor per replica."""
    fds = Path("/proc/self/fd")
    manager = _manager(tmp_path, clock)
    before = len(list(fds.iterdir()))
    for partition in range(50):
        manager.get_or_create("idle", partition)
    assert len(list(fds.iterdir())) - before == 50
    manager.close()
    again = _manager(tmp_path, clock)
    assert len(list(fds.iterdir())) - before == 50
    log = again.get("idle", 0)
    assert log is not None
    append(log, payload_for(1))
    assert log.log_end_offset == 1
    again.close()


async def test_open_new_creates_a_log_in_a_worker_thread_for_adopt(
    tmp_path: Path, clock: FakeClock
) -> None:
    manager = _manager(tmp_path, clock)
    log = await asyncio.to_thread(manager.open_new, "fresh", 0, BASE_CONFIG)
    assert log is not None and log.directory == tmp_path / "fresh-0"
    assert manager.get("fresh", 0) is None  # not registered until adopted
    manager.adopt(log)
    assert manager.get_or_create("fresh", 0) is log
    append(log, payload_for(0))
    assert log.log_end_offset == 1
    with pytest.raises(ValueError, match="open already"):
        manager.adopt(log)
    # A directory already there (an existing log) is left for get_or_create to recover.
    assert manager.open_new("fresh", 0, BASE_CONFIG) is None
    manager.close()
