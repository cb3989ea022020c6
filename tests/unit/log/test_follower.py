"""append_as_follower: validation (nothing written on error), epochs, segment splitting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kbroker.errors import CorruptRecordError
from kbroker.log.batch import HEADER_SIZE
from tests.unit.log.support import (
    FakeClock,
    append,
    encode_batch,
    make_config,
    open_log,
    payload_for,
)


def _leader_bytes(start: int, count: int, *, records: int = 2, epoch: int = 0) -> bytes:
    return b"".join(
        encode_batch(payload_for(i), base_offset=start + i * records, records=records, epoch=epoch)
        for i in range(count)
    )


def _files(log_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in log_dir.iterdir()}


def test_follower_copies_leader_bytes(log_dir: Path, tmp_path: Path, clock: FakeClock) -> None:
    leader = open_log(tmp_path / "leader-0", clock)
    for i in range(4):
        append(leader, payload_for(i), records=3, epoch=1 + i // 2)
    fetched = leader.read(0, max_bytes=1 << 20)
    follower = open_log(log_dir, clock)
    info = follower.append_as_follower(fetched.data)
    assert info is not None
    assert (info.first_offset, info.last_offset, info.batch_count) == (0, 11, 4)
    assert follower.log_end_offset == 12
    assert follower.read(0, max_bytes=1 << 20).data == fetched.data
    assert follower.leader_epoch_cache.entries == leader.leader_epoch_cache.entries
    assert follower.append_as_follower(b"") is None
    leader.close()
    follower.close()


def test_follower_append_splits_at_roll_points(log_dir: Path, clock: FakeClock) -> None:
    batch = HEADER_SIZE + 40
    log = open_log(log_dir, clock, make_config(segment_bytes=3 * batch))
    data = _leader_bytes(0, 8)
    log.append_as_follower(memoryview(data))
    assert [(s.base_offset, s.next_offset) for s in log.segments] == [(0, 6), (6, 12), (12, 16)]
    assert b"".join(log.read(o, max_bytes=1 << 20).data for o in (0, 6, 12)) == data
    log.close()


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda d: d[:-1], id="truncated-last-batch"),
        pytest.param(lambda d: d[:-5] + bytes([d[-5] ^ 0xFF]) + d[-4:], id="bad-crc"),
        pytest.param(lambda d: d + b"\x00" * 10, id="trailing-garbage"),
        pytest.param(lambda d: _leader_bytes(5, 3), id="wrong-first-offset"),
        pytest.param(lambda d: _leader_bytes(4, 1) + _leader_bytes(7, 1), id="gap-between-batches"),
    ],
)
def test_invalid_input_writes_nothing(
    log_dir: Path, clock: FakeClock, mangle: Callable[[bytes], bytes]
) -> None:
    log = open_log(log_dir, clock)
    log.append_as_follower(_leader_bytes(0, 2))
    before = _files(log_dir)
    entries = log.leader_epoch_cache.entries
    with pytest.raises(CorruptRecordError):
        log.append_as_follower(mangle(_leader_bytes(4, 3, epoch=7)))
    assert _files(log_dir) == before
    assert log.log_end_offset == 4
    assert log.leader_epoch_cache.entries == entries
    log.close()


def test_older_epoch_from_new_leader_replaces_unused_entry(log_dir: Path, clock: FakeClock) -> None:
    """KIP-101 corner: an epoch assigned on becoming leader but never written is superseded."""
    log = open_log(log_dir, clock)
    log.append_as_follower(_leader_bytes(0, 1, epoch=3))
    log.assign_epoch_start_offset(5)
    log.append_as_follower(_leader_bytes(2, 1, epoch=4))
    assert [(e.epoch, e.start_offset) for e in log.leader_epoch_cache.entries] == [(3, 0), (4, 2)]
    log.close()
