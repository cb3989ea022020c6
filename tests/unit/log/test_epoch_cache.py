"""LeaderEpochCache: assign rules, KIP-101/279 end offsets, truncation, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbroker.log.checkpoint import CheckpointError
from kbroker.log.epoch_cache import EpochEntry, LeaderEpochCache


class Leo:
    def __init__(self, value: int = 100) -> None:
        self.value = value

    def __call__(self) -> int:
        return self.value


def _cache(tmp_path: Path, *entries: tuple[int, int], leo: int = 100) -> LeaderEpochCache:
    cache = LeaderEpochCache.load(tmp_path / "leader-epoch-checkpoint", log_end_offset=Leo(leo))
    for epoch, start in entries:
        cache.assign(epoch, start)
    return cache


def _pairs(cache: LeaderEpochCache) -> list[tuple[int, int]]:
    return [(e.epoch, e.start_offset) for e in cache.entries]


def test_assign_rules(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    assert cache.latest_epoch == -1 and cache.latest_entry is None
    assert cache.assign(1, 0)
    assert not cache.assign(1, 5)  # same epoch, later offset: no-op
    assert cache.assign(2, 10)
    assert cache.assign(4, 20)
    assert _pairs(cache) == [(1, 0), (2, 10), (4, 20)]
    assert cache.assign(3, 15)  # older epoch: newer conflicting entries go
    assert _pairs(cache) == [(1, 0), (2, 10), (3, 15)]
    assert cache.assign(5, 12)  # earlier start offset: entries starting at/after it go
    assert _pairs(cache) == [(1, 0), (2, 10), (5, 12)]
    assert cache.assign(5, 11)  # same epoch moved earlier
    assert _pairs(cache) == [(1, 0), (2, 10), (5, 11)]
    with pytest.raises(ValueError):
        cache.assign(-1, 0)


def test_end_offset_for(tmp_path: Path) -> None:
    cache = _cache(tmp_path, (1, 0), (2, 10), (4, 20), leo=30)
    assert cache.end_offset_for(4) == (4, 30)  # latest: the LEO
    assert cache.end_offset_for(2) == (2, 20)
    assert cache.end_offset_for(1) == (1, 10)
    assert cache.end_offset_for(3) == (2, 20)  # KIP-279: largest epoch <= 3, and its end
    assert cache.end_offset_for(0) == (0, 0)  # older than all: first start offset
    assert cache.end_offset_for(5) == (-1, -1)  # newer than all
    assert cache.end_offset_for(-1) == (-1, -1)
    assert _cache(tmp_path / "x", leo=5).end_offset_for(1) == (-1, -1)


def test_kip_279_truncation_walk(tmp_path: Path) -> None:
    """Follower (1,0),(2,10),(3,20) vs leader (1,0),(3,15): the walk converges on epoch 1."""
    (tmp_path / "l").mkdir()
    (tmp_path / "f").mkdir()
    leader = _cache(tmp_path / "l", (1, 0), (3, 15), leo=40)
    follower = _cache(tmp_path / "f", (1, 0), (2, 10), (3, 20), leo=25)
    epoch, offset = leader.end_offset_for(follower.latest_epoch)
    assert (epoch, offset) == (3, 40)
    epoch, offset = leader.end_offset_for(2)
    assert (epoch, offset) == (1, 15)
    assert follower.end_offset_for(epoch) == (1, 10)  # truncate to min(15, 10) = 10


def test_epoch_for_offset(tmp_path: Path) -> None:
    cache = _cache(tmp_path, (1, 5), (3, 10))
    assert cache.epoch_for_offset(4) is None
    assert cache.epoch_for_offset(5) == 1
    assert cache.epoch_for_offset(9) == 1
    assert cache.epoch_for_offset(10) == 3
    assert cache.epoch_for_offset(1000) == 3


def test_truncation(tmp_path: Path) -> None:
    cache = _cache(tmp_path, (1, 0), (2, 10), (4, 20))
    cache.truncate_from_end(21)
    assert _pairs(cache) == [(1, 0), (2, 10), (4, 20)]
    cache.truncate_from_end(20)
    assert _pairs(cache) == [(1, 0), (2, 10)]
    cache.assign(4, 20)
    cache.truncate_from_start(5)
    assert _pairs(cache) == [(1, 5), (2, 10), (4, 20)]
    cache.truncate_from_start(10)
    assert _pairs(cache) == [(2, 10), (4, 20)]
    cache.truncate_from_start(25)
    assert _pairs(cache) == [(4, 25)]
    cache.clear()
    assert cache.entries == ()


def test_persistence_and_writes_only_on_change(tmp_path: Path) -> None:
    path = tmp_path / "leader-epoch-checkpoint"
    cache = _cache(tmp_path, (1, 0), (2, 10))
    assert (cache.dirty, path.exists()) == (True, False)  # written before its first batch
    cache.persist()
    assert (cache.dirty, path.read_text()) == (False, "0\n2\n1 0\n2 10\n")
    mtime = path.stat().st_mtime_ns
    path.write_text("0\n2\n1 0\n2 10\n")  # marker content; must stay untouched by no-ops
    before = path.stat().st_mtime_ns
    cache.assign(2, 11)
    cache.truncate_from_end(50)
    cache.truncate_from_start(0)
    assert path.stat().st_mtime_ns == before and mtime <= before
    reloaded = LeaderEpochCache.load(path, log_end_offset=Leo())
    assert reloaded.entries == (EpochEntry(1, 0), EpochEntry(2, 10))


@pytest.mark.parametrize(
    "text",
    ["0\n2\n1 0\n", "1\n0\n", "0\n1\n1\n", "0\n2\n2 10\n1 20\n", "0\n1\nx 1\n", "0\n1\n-1 0\n"],
)
def test_malformed_checkpoint_is_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "leader-epoch-checkpoint"
    path.write_text(text)
    with pytest.raises(CheckpointError):
        LeaderEpochCache.load(path, log_end_offset=Leo())
