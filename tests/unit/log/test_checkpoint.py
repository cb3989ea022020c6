"""Checkpoint files: format, atomic replace, tolerance of a missing file, strictness."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from kbroker.errors import StorageError
from kbroker.log.checkpoint import (
    CheckpointError,
    DeferredSync,
    OffsetCheckpoint,
    read_checkpoint,
    write_checkpoint,
)


def test_round_trip_and_format(tmp_path: Path) -> None:
    checkpoint = OffsetCheckpoint(tmp_path / "recovery-point-offset-checkpoint")
    assert checkpoint.read() == {}
    checkpoint.write({("b.topic-x", 1): 5, ("a", 0): 10})
    assert checkpoint.path.read_text() == "0\n2\na 0 10\nb.topic-x 1 5\n"
    assert checkpoint.read() == {("a", 0): 10, ("b.topic-x", 1): 5}
    checkpoint.write({})
    assert checkpoint.read() == {}
    assert [p.name for p in tmp_path.iterdir()] == ["recovery-point-offset-checkpoint"]


@pytest.mark.parametrize(
    "text",
    ["", "0\n", "0\n1\n", "0\n1\na 0\n", "0\n1\na 0 x\n", "9\n0\n", "0\n1\na -1 3\n"],
)
def test_malformed_raises(tmp_path: Path, text: str) -> None:
    path = tmp_path / "cp"
    path.write_text(text)
    with pytest.raises(CheckpointError, match="cp"):
        OffsetCheckpoint(path).read()


def test_write_failure_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        OffsetCheckpoint(tmp_path / "missing-dir" / "x" / "cp").write({("a", 0): 1})


async def test_unsynced_write_is_made_durable_by_deferred_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sync=False writes without fsync; DeferredSync fsyncs the files added in one loop turn,
    then their directory, in one worker-thread job, and skips a file gone meanwhile."""
    synced: list[tuple[str, str]] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append((threading.current_thread().name, os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    first, second, gone = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for path in (first, second, gone):
        write_checkpoint(path, ["topic_id x"], sync=False)
    assert synced == [] and read_checkpoint(first, lambda f: f) == [["topic_id", "x"]]
    deferred = DeferredSync()
    for path in (first, second, gone):
        deferred.add(path)
    gone.unlink()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(synced) == 3:
            break
    assert [path for _, path in synced] == [str(first), str(second), str(tmp_path)]
    assert all(thread != threading.main_thread().name for thread, _ in synced)
