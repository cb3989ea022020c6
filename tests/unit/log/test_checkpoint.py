"""Checkpoint files: format, atomic replace, tolerance of a missing file, strictness."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbroker.errors import StorageError
from kbroker.log.checkpoint import CheckpointError, OffsetCheckpoint


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
