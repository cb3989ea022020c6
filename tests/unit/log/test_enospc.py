"""Disk full / I/O errors during append: torn writes are cut back, the log keeps working."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from kbroker.errors import StorageError
from kbroker.log.partition_log import PartitionLog
from tests.unit.log.support import (
    FakeClock,
    append,
    encode_batch,
    make_config,
    open_log,
    payload_for,
)

real_pwritev = os.pwritev
real_ftruncate = os.ftruncate


def _half_then_enospc(fail_paths: Callable[[int], bool]) -> Callable[..., int]:
    """A pwritev that, for matching fds, writes half of the data and then fails."""

    def fake(fd: int, buffers: Sequence[Any], offset: int, *args: Any) -> int:
        if not fail_paths(fd):
            return real_pwritev(fd, buffers, offset, *args)
        data = b"".join(bytes(b) for b in buffers)
        os.pwrite(fd, data[: len(data) // 2], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    return fake


def _fd_is(suffix: str) -> Callable[[int], bool]:
    return lambda fd: os.readlink(f"/proc/self/fd/{fd}").endswith(suffix)


def _sizes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in directory.iterdir()}


def _contents(log: PartitionLog) -> list[tuple[int, int]]:
    result = log.read(log.log_start_offset, max_bytes=1 << 20)
    return [(h.base_offset, h.record_count) for h in result.headers()]


@pytest.mark.parametrize("failing_file", [".log", ".index", ".timeindex"])
def test_torn_write_is_cut_back(
    log_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, failing_file: str
) -> None:
    log = open_log(log_dir, clock, make_config(index_interval_bytes=0))
    append(log, payload_for(0), records=2, timestamp=10)
    before = _sizes(log_dir)
    monkeypatch.setattr(os, "pwritev", _half_then_enospc(_fd_is(failing_file)))
    with pytest.raises(StorageError, match="No space left"):
        append(log, payload_for(1), records=3, timestamp=20)
    assert _sizes(log_dir) == before
    assert log.log_end_offset == 2
    assert _contents(log) == [(0, 2)]
    monkeypatch.setattr(os, "pwritev", real_pwritev)  # space returns
    assert append(log, payload_for(2), records=3, timestamp=30).first_offset == 2
    assert _contents(log) == [(0, 2), (2, 3)]
    assert log.offset_for_timestamp(25) == 2
    log.close()
    reopened = open_log(log_dir, clock, make_config(index_interval_bytes=0), recovery_point=0)
    assert _contents(reopened) == [(0, 2), (2, 3)]
    reopened.close()


def test_short_write_then_enospc(
    log_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's usual pattern: a short write, then ENOSPC on the rest."""
    log = open_log(log_dir, clock)
    append(log, payload_for(0))
    size = log.size_in_bytes
    calls = {"n": 0}

    def fake(fd: int, buffers: Sequence[Any], offset: int, *args: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            data = b"".join(bytes(b) for b in buffers)
            return os.pwrite(fd, data[:10], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwritev", fake)
    with pytest.raises(StorageError):
        append(log, payload_for(1))
    assert calls["n"] == 2
    assert (log_dir / "00000000000000000000.log").stat().st_size == size
    monkeypatch.setattr(os, "pwritev", real_pwritev)
    assert append(log, payload_for(2)).first_offset == 1
    log.close()


def test_failed_cut_back_is_retried_before_next_write(
    log_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(log_dir, clock)
    append(log, payload_for(0))
    size = log.size_in_bytes
    monkeypatch.setattr(os, "pwritev", _half_then_enospc(_fd_is(".log")))

    def broken_ftruncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "ftruncate", broken_ftruncate)
    with pytest.raises(StorageError):
        append(log, payload_for(1))
    assert (log_dir / "00000000000000000000.log").stat().st_size > size  # garbage remains
    monkeypatch.setattr(os, "pwritev", real_pwritev)
    with pytest.raises(StorageError, match="cannot cut back"):
        append(log, payload_for(1))
    monkeypatch.setattr(os, "ftruncate", real_ftruncate)
    assert append(log, payload_for(2)).first_offset == 1
    assert (log_dir / "00000000000000000000.log").stat().st_size == log.size_in_bytes
    assert _contents(log) == [(0, 1), (1, 1)]
    log.close()


def test_new_epoch_is_forgotten_when_the_write_fails(
    log_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(log_dir, clock)
    append(log, payload_for(0), epoch=1)
    monkeypatch.setattr(os, "pwritev", _half_then_enospc(_fd_is(".log")))
    with pytest.raises(StorageError):
        append(log, payload_for(1), epoch=2)
    assert [e.epoch for e in log.leader_epoch_cache.entries] == [1]
    monkeypatch.setattr(os, "pwritev", real_pwritev)
    append(log, payload_for(1), epoch=2)
    assert [(e.epoch, e.start_offset) for e in log.leader_epoch_cache.entries] == [(1, 0), (2, 1)]
    log.close()


def test_follower_append_enospc(
    log_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(log_dir, clock)
    data = encode_batch(payload_for(0), base_offset=0, epoch=3) + encode_batch(
        payload_for(1), base_offset=1, epoch=3
    )
    monkeypatch.setattr(os, "pwritev", _half_then_enospc(_fd_is(".log")))
    with pytest.raises(StorageError):
        log.append_as_follower(data)
    assert log.log_end_offset == 0 and log.leader_epoch_cache.entries == ()
    assert (log_dir / "00000000000000000000.log").stat().st_size == 0
    monkeypatch.setattr(os, "pwritev", real_pwritev)
    info = log.append_as_follower(data)
    assert info is not None and info.last_offset == 1
    log.close()


def test_roll_failure_leaves_log_usable(
    log_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(log_dir, clock, make_config(segment_bytes=150))
    append(log, payload_for(0, 60))
    real_open = os.open

    def no_new_files(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT and str(path).endswith(".index"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_new_files)
    with pytest.raises(StorageError):
        append(log, payload_for(1, 60))
    assert log.segment_count == 1 and log.log_end_offset == 1
    assert not (log_dir / "00000000000000000001.log").exists()
    monkeypatch.setattr(os, "open", real_open)
    assert append(log, payload_for(1, 60)).first_offset == 1
    assert log.segment_count == 2
    log.close()


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (root only; skipped elsewhere)."""
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_real_disk_full_on_tmpfs(tiny_tmpfs: Path, clock: FakeClock) -> None:
    directory = tiny_tmpfs / "t-0"
    log = open_log(directory, clock, make_config(segment_bytes=1 << 20, index_interval_bytes=0))
    filler = tiny_tmpfs / "filler"
    filler.write_bytes(b"\0" * (64 * 1024))
    failures = 0
    for i in range(200):
        try:
            append(log, payload_for(i, 3000))
        except StorageError:
            failures += 1
            break
    assert failures == 1, "the tmpfs never filled up"
    end = log.log_end_offset
    segment = directory / "00000000000000000000.log"
    assert segment.stat().st_size == log.size_in_bytes
    assert len(log.read(0, max_bytes=1 << 20).data) == log.size_in_bytes
    filler.unlink()  # space returns
    for i in range(5):
        assert append(log, payload_for(1000 + i, 3000)).first_offset == end + i
    log.close()
    reopened = open_log(directory, clock, recovery_point=0)
    assert reopened.log_end_offset == end + 5
    reopened.close()


def test_epoch_change_with_a_full_disk_is_kept_and_written_before_the_next_batch(
    log_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Becoming leader on a full disk must not fail: the new epoch holds in memory (followers
    may ask about it), appends are refused until the checkpoint is written, and once space
    returns the checkpoint is written before the first batch of the epoch."""
    log = open_log(log_dir, clock)
    append(log, payload_for(0), epoch=1)

    def full(*args: Any, **kwargs: Any) -> None:
        raise StorageError("cannot write checkpoint: [Errno 28] No space left on device")

    monkeypatch.setattr("kbroker.log.epoch_cache.write_checkpoint", full)
    log.assign_epoch_start_offset(2)  # what make_leader does; must not raise
    cache = log.leader_epoch_cache
    assert cache.dirty and cache.latest_epoch == 2
    assert cache.end_offset_for(1) == (1, 1)
    with pytest.raises(StorageError):
        append(log, payload_for(1), epoch=2)
    assert _contents(log) == [(0, 1)]
    monkeypatch.undo()  # space returns
    append(log, payload_for(1), epoch=2)
    assert not log.leader_epoch_cache.dirty
    log.close()
    reopened = open_log(log_dir, clock)
    assert [(e.epoch, e.start_offset) for e in reopened.leader_epoch_cache.entries] == [
        (1, 0),
        (2, 1),
    ]
    assert _contents(reopened) == [(0, 1), (1, 1)]
