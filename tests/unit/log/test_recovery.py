"""Crash recovery: torn and garbage tails, bit flips, corrupt indexes, clean shutdown."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from kbroker.log.batch import HEADER_SIZE
from kbroker.log.partition_log import PartitionLog
from tests.unit.log.support import (
    FakeClock,
    append,
    make_config,
    open_log,
    payload_for,
)

CONFIG = make_config(segment_bytes=600, index_interval_bytes=100)


def _build(directory: Path, clock: FakeClock, batches: int = 14) -> list[tuple[int, int, bytes]]:
    """A log of varied batches; returns (base offset, record count, bytes) per batch."""
    log = open_log(directory, clock, CONFIG)
    rng = random.Random(7)
    out = []
    for i in range(batches):
        records = rng.randint(1, 4)
        info = append(log, payload_for(i, rng.randint(5, 90)), records=records, epoch=i // 5)
        data = log.read(info.first_offset, max_bytes=1 << 20, max_offset=info.next_offset).data
        out.append((info.first_offset, records, data))
    log.close()
    return out


def _read_all(log: PartitionLog) -> bytes:
    chunks, offset = [], log.log_start_offset
    while offset < log.log_end_offset:
        result = log.read(offset, max_bytes=1 << 20)
        chunks.append(result.data)
        offset = result.next_offset
    return b"".join(chunks)


def _check_every_offset_readable(log: PartitionLog, batches: list[tuple[int, int, bytes]]) -> None:
    for base, records, data in batches:
        if base + records <= log.log_end_offset:
            for offset in range(base, base + records):
                result = log.read(offset, max_bytes=1, min_one=True)
                assert result.first_offset == base and result.data == data


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[int, int, bytes]]]:
    directory = tmp_path_factory.mktemp("pristine") / "t-0"
    return directory, _build(directory, FakeClock())


def _active_segment(directory: Path) -> Path:
    return sorted(directory.glob("*.log"))[-1]


def _copy(pristine_dir: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name / "t-0"
    shutil.copytree(pristine_dir, target)
    return target


def test_torn_tail_sweep(
    pristine: tuple[Path, list[tuple[int, int, bytes]]], tmp_path: Path
) -> None:
    """Cut the active segment at every byte of its last three batches; recover the prefix."""
    source, batches = pristine
    active = _active_segment(source)
    active_base = int(active.stem)
    content = active.read_bytes()
    in_active = [b for b in batches if b[0] >= active_base]
    assert len(in_active) >= 3
    starts = []
    position = 0
    for base, _records, data in in_active:
        starts.append((position, base))
        position += len(data)
    assert position == len(content)
    sweep_from = starts[-3][0]
    clock = FakeClock()
    for cut in range(sweep_from, len(content) + 1):
        directory = _copy(source, tmp_path, f"cut{cut}")
        (directory / active.name).write_bytes(content[:cut])
        log = open_log(directory, clock, CONFIG, recovery_point=active_base)
        survivors = [b for b in batches if b[0] < active_base] + [
            b for (pos, _), b in zip(starts, in_active, strict=True) if pos + len(b[2]) <= cut
        ]
        expected_end = survivors[-1][0] + survivors[-1][1]
        assert log.log_end_offset == expected_end, cut
        assert _read_all(log) == b"".join(b[2] for b in survivors)
        assert (directory / active.name).stat().st_size == sum(
            len(b[2]) for b in survivors if b[0] >= active_base
        )
        assert append(log, b"next", epoch=9).first_offset == expected_end
        log.close()
        shutil.rmtree(directory.parent)


@pytest.mark.parametrize("garbage_length", [1, 7, HEADER_SIZE - 1, HEADER_SIZE, 200, 5000])
def test_garbage_tail(
    pristine: tuple[Path, list[tuple[int, int, bytes]]], tmp_path: Path, garbage_length: int
) -> None:
    source, batches = pristine
    directory = _copy(source, tmp_path, "garbage")
    active = directory / _active_segment(source).name
    rng = random.Random(garbage_length)
    with active.open("ab") as fh:
        fh.write(bytes(rng.getrandbits(8) for _ in range(garbage_length)))
    log = open_log(directory, FakeClock(), CONFIG, recovery_point=0)
    end = batches[-1][0] + batches[-1][1]
    assert log.log_end_offset == end
    assert _read_all(log) == b"".join(b[2] for b in batches)
    assert append(log, b"x", epoch=9).first_offset == end
    log.close()


def test_zeroed_tail(pristine: tuple[Path, list[tuple[int, int, bytes]]], tmp_path: Path) -> None:
    """The inode grew before the data blocks were written: the last batch reads as zeros."""
    source, batches = pristine
    directory = _copy(source, tmp_path, "zeros")
    active = directory / _active_segment(source).name
    content = active.read_bytes()
    last = len(batches[-1][2])
    active.write_bytes(content[:-last] + b"\x00" * last)
    log = open_log(directory, FakeClock(), CONFIG, recovery_point=0)
    assert log.log_end_offset == batches[-1][0]
    log.close()


def test_bit_flip_in_payload_is_caught_by_crc(
    pristine: tuple[Path, list[tuple[int, int, bytes]]], tmp_path: Path
) -> None:
    source, batches = pristine
    directory = _copy(source, tmp_path, "flip")
    segments = sorted(directory.glob("*.log"))
    victim = segments[1]  # a middle segment: later ones must go as well
    base = int(victim.stem)
    content = bytearray(victim.read_bytes())
    in_victim = [b for b in batches if b[0] >= base]
    first_len = len(in_victim[0][2])
    content[first_len + HEADER_SIZE + 2] ^= 0x10  # payload of the 2nd batch of the segment
    victim.write_bytes(bytes(content))
    log = open_log(directory, FakeClock(), CONFIG, recovery_point=base)
    assert log.log_end_offset == in_victim[1][0]
    assert [s.base_offset for s in log.segments] == [int(s.stem) for s in segments[:2]]
    assert sorted(directory.glob("*.log")) == segments[:2]
    _check_every_offset_readable(log, batches)
    log.close()


def test_below_recovery_point_payloads_are_not_scanned(
    pristine: tuple[Path, list[tuple[int, int, bytes]]], tmp_path: Path
) -> None:
    """A flipped payload bit below the recovery point goes unnoticed: nothing is scanned."""
    source, batches = pristine
    directory = _copy(source, tmp_path, "trusted")
    first = sorted(directory.glob("*.log"))[0]
    content = bytearray(first.read_bytes())
    content[HEADER_SIZE + 1] ^= 0x01
    first.write_bytes(bytes(content))
    end = batches[-1][0] + batches[-1][1]
    log = open_log(directory, FakeClock(), CONFIG, recovery_point=end)
    assert log.log_end_offset == end
    assert log.recovery_point == end
    log.close()


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage"])
def test_corrupt_index_below_recovery_point_is_rebuilt(
    pristine: tuple[Path, list[tuple[int, int, bytes]]], tmp_path: Path, damage: str
) -> None:
    source, batches = pristine
    directory = _copy(source, tmp_path, damage)
    index = sorted(directory.glob("*.index"))[0]
    if damage == "missing":
        index.unlink()
    elif damage == "truncated":
        index.write_bytes(index.read_bytes()[:-3])
    else:
        index.write_bytes(b"\x7f" * 16)
    original = sorted(source.glob("*.index"))[0].read_bytes()
    end = batches[-1][0] + batches[-1][1]
    log = open_log(directory, FakeClock(), CONFIG, recovery_point=end, clean_shutdown=True)
    assert log.log_end_offset == end
    assert index.read_bytes() == original
    _check_every_offset_readable(log, batches)
    log.close()


def test_clean_shutdown_with_stale_last_segment_is_recovered(
    pristine: tuple[Path, list[tuple[int, int, bytes]]], tmp_path: Path
) -> None:
    """The marker lied: the active segment has a torn tail. The header walk notices."""
    source, batches = pristine
    directory = _copy(source, tmp_path, "lied")
    active = directory / _active_segment(source).name
    active.write_bytes(active.read_bytes()[:-3])
    log = open_log(directory, FakeClock(), CONFIG, clean_shutdown=True)
    assert log.log_end_offset == batches[-1][0]
    log.close()


def test_epoch_cache_rebuilt_from_batches(
    pristine: tuple[Path, list[tuple[int, int, bytes]]], tmp_path: Path
) -> None:
    source, batches = pristine
    directory = _copy(source, tmp_path, "epochs")
    original = (directory / "leader-epoch-checkpoint").read_text()
    (directory / "leader-epoch-checkpoint").unlink()
    log = open_log(directory, FakeClock(), CONFIG, recovery_point=0)
    assert (directory / "leader-epoch-checkpoint").read_text() == original
    assert [e.epoch for e in log.leader_epoch_cache.entries] == [0, 1, 2]
    log.truncate_to(batches[5][0] + 1)  # into the first batch of epoch 1
    assert [e.epoch for e in log.leader_epoch_cache.entries] == [0]
    log.close()


def test_epoch_cache_truncated_to_recovered_end(
    pristine: tuple[Path, list[tuple[int, int, bytes]]], tmp_path: Path
) -> None:
    source, _ = pristine
    directory = _copy(source, tmp_path, "epoch-end")
    active = directory / _active_segment(source).name
    active.write_bytes(b"")
    log = open_log(directory, FakeClock(), CONFIG, recovery_point=0)
    end = log.log_end_offset
    assert all(e.start_offset < end for e in log.leader_epoch_cache.entries)
    log.close()


def test_leftovers_are_removed(log_dir: Path, clock: FakeClock) -> None:
    log = open_log(log_dir, clock)
    append(log, b"x")
    log.close()
    for name in ["00000000000000000007.log.deleted", "leader-epoch-checkpoint.tmp"]:
        (log_dir / name).write_bytes(b"junk")
    (log_dir / "00000000000000000009.index").write_bytes(b"")
    log = open_log(log_dir, clock, clean_shutdown=True)
    assert sorted(p.name for p in log_dir.iterdir()) == [
        "00000000000000000000.index",
        "00000000000000000000.log",
        "00000000000000000000.timeindex",
        "leader-epoch-checkpoint",
    ]
    log.close()


def test_gap_between_segments_drops_later_ones(
    pristine: tuple[Path, list[tuple[int, int, bytes]]], tmp_path: Path
) -> None:
    """A trusted segment that ends short of the next segment's base: later data is unusable."""
    source, batches = pristine
    directory = _copy(source, tmp_path, "gap")
    segments = sorted(directory.glob("*.log"))
    first = segments[0]
    first_batches = [b for b in batches if b[0] < int(segments[1].stem)]
    first.write_bytes(first.read_bytes()[: -len(first_batches[-1][2])])
    log = open_log(directory, FakeClock(), CONFIG, clean_shutdown=True)
    assert log.log_end_offset == first_batches[-1][0]
    assert log.segment_count == 1
    log.close()
