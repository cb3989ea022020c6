"""Offset and time index: lookups, truncation, persistence and sanity checks."""

from __future__ import annotations

from array import array
from pathlib import Path

import pytest

from kbroker.log.index import CorruptIndexError, OffsetIndex, TimeIndex


def test_offset_index_lookup_and_truncate(tmp_path: Path) -> None:
    index = OffsetIndex.create(tmp_path / "x.index", 100)
    assert index.lookup(150) == (100, 0)
    index.append([0, 10, 25], [0, 4000, 9000])
    assert index.lookup(100) == (100, 0)
    assert index.lookup(109) == (100, 0)
    assert index.lookup(110) == (110, 4000)
    assert index.lookup(10_000) == (125, 9000)
    assert index.lookup(99) == (100, 0)
    index.truncate_to(110)
    assert len(index) == 1 and index.lookup(200) == (100, 0)
    assert (tmp_path / "x.index").stat().st_size == 8
    index.close()


def test_offset_index_persists_and_sanity_checks(tmp_path: Path) -> None:
    path = tmp_path / "x.index"
    index = OffsetIndex.create(path, 0)
    index.append([0, 5], [0, 100])
    index.close()
    loaded = OffsetIndex.load(path, 0)
    assert loaded.lookup(7) == (5, 100)
    loaded.sanity_check(log_size=200, end_offset=10)
    with pytest.raises(CorruptIndexError):
        loaded.sanity_check(log_size=100, end_offset=10)
    with pytest.raises(CorruptIndexError):
        loaded.sanity_check(log_size=200, end_offset=5)
    loaded.close()
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(CorruptIndexError):
        OffsetIndex.load(path, 0)
    path.write_bytes(bytes.fromhex("00000005 00000064 00000000 00000000".replace(" ", "")))
    with pytest.raises(CorruptIndexError):
        OffsetIndex.load(path, 0)


def test_offset_index_replace(tmp_path: Path) -> None:
    index = OffsetIndex.create(tmp_path / "x.index", 7)
    index.replace(array("i", [0, 3]), array("i", [0, 70]))
    index.close()
    loaded = OffsetIndex.load(tmp_path / "x.index", 7)
    assert loaded.lookup(11) == (10, 70)
    loaded.close()


def test_time_index_lookup(tmp_path: Path) -> None:
    index = TimeIndex.create(tmp_path / "x.timeindex", 50)
    assert index.lookup(10) == 50
    assert index.last_timestamp == -1
    index.append([100, 200, 300], [0, 4, 9])
    assert index.lookup(100) == 50  # nothing strictly older
    assert index.lookup(101) == 50  # entry (100, 50): batches up to 50 are too old
    assert index.lookup(250) == 54
    assert index.lookup(1000) == 59
    assert index.last_timestamp == 300
    index.truncate_to(54)
    assert index.last_timestamp == 100
    index.close()
    loaded = TimeIndex.load(tmp_path / "x.timeindex", 50)
    assert len(loaded) == 1 and loaded.last_timestamp == 100
    with pytest.raises(CorruptIndexError):
        loaded.sanity_check(end_offset=50)
    loaded.close()


def test_time_index_rejects_decreasing(tmp_path: Path) -> None:
    index = TimeIndex.create(tmp_path / "x.timeindex", 0)
    index.append([300, 200], [0, 4])
    index.close()
    with pytest.raises(CorruptIndexError):
        TimeIndex.load(tmp_path / "x.timeindex", 0)


def _open_descriptors_on(path: Path) -> int:
    """Descriptors of this process open on ``path``."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if _target(fd) == str(path))


def _target(link: Path) -> str | None:
    try:
        return str(link.readlink())
    except OSError:  # the descriptor of the listing itself, closed meanwhile
        return None


def test_an_index_holds_a_descriptor_only_from_its_first_write(tmp_path: Path) -> None:
    path = tmp_path / "x.index"
    index = OffsetIndex.create(path, 0)
    assert path.exists() and _open_descriptors_on(path) == 0
    index.fsync()  # an fsync before any write uses a descriptor of its own
    assert _open_descriptors_on(path) == 0
    index.append([0, 5], [0, 100])
    assert _open_descriptors_on(path) == 1
    index.fsync()
    index.close()
    assert _open_descriptors_on(path) == 0
    loaded = OffsetIndex.load(path, 0)
    assert _open_descriptors_on(path) == 0 and loaded.lookup(7) == (5, 100)
    loaded.append([9], [300])  # reopened where the file ends
    loaded.truncate_to(9)
    loaded.append([12], [400])
    loaded.close()
    entries = "00000000 00000000 00000005 00000064 0000000c 00000190"
    assert path.read_bytes() == bytes.fromhex(entries)
    again = OffsetIndex.load(path, 0)
    moved = tmp_path / "y.index"
    again.rename(moved)  # without a descriptor
    again.append([20], [500])
    again.close()
    assert len(OffsetIndex.load(moved, 0)) == 4 and not path.exists()
