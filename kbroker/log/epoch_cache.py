"""The leader epoch cache: which leader epoch wrote which offsets (KIP-101, KIP-279).

A sequence of ``(epoch, start_offset)`` entries: epoch ``E`` covers the offsets from its start
offset up to the start offset of the next entry (or the log end offset for the latest entry).
Persisted in the partition directory as ``leader-epoch-checkpoint`` in the checkpoint format of
checkpoint.py, one ``epoch start_offset`` line per entry.

Invariants: epochs and start offsets both strictly increase; every epoch and start offset is
>= 0. The file is rewritten (tmp, fsync, rename) when entries are removed (truncation) and,
for a new epoch (:meth:`LeaderEpochCache.assign`), before the first batch is written: until
then the cache is *dirty*, the change held in memory only. The partition log calls
``persist()`` before it writes any batch, so the file never lacks the epoch of a batch on
disk. (A crash while dirty leaves the file with entries the log has since dropped, which
loading cuts again, or without an epoch that no batch on disk carries yet.) A broker that
becomes leader of thousands of partitions at once therefore does not fsync thousands of
files on its event loop, and one whose disk is full (a write that fails also leaves the cache
dirty) can still change leadership and keep serving; only its appends fail, with
StorageError.

Concurrency: owned by the partition log's thread (the event loop); entries are an immutable
tuple replaced whole, so a reader never sees a half-applied change. Writes are blocking (one
small fsync) and happen only on an epoch change.
"""

from __future__ import annotations

import itertools
import logging
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kbroker.errors import StorageError
from kbroker.log.checkpoint import CheckpointError, read_checkpoint, write_checkpoint

__all__ = [
    "LEADER_EPOCH_CHECKPOINT",
    "UNDEFINED_EPOCH",
    "UNDEFINED_EPOCH_OFFSET",
    "EpochEntry",
    "LeaderEpochCache",
]

LEADER_EPOCH_CHECKPOINT: Final = "leader-epoch-checkpoint"
UNDEFINED_EPOCH: Final = -1
UNDEFINED_EPOCH_OFFSET: Final = -1

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EpochEntry:
    """Leader epoch ``epoch`` wrote the log from ``start_offset`` on."""

    epoch: int
    start_offset: int


def _parse_entry(fields: list[str]) -> EpochEntry:
    if len(fields) != 2:
        raise ValueError(f"bad line {' '.join(fields)!r}")
    entry = EpochEntry(int(fields[0]), int(fields[1]))
    if entry.epoch < 0 or entry.start_offset < 0:
        raise ValueError(f"negative value in {' '.join(fields)!r}")
    return entry


def _valid(entries: Sequence[EpochEntry]) -> bool:
    return all(
        a.epoch < b.epoch and a.start_offset < b.start_offset
        for a, b in itertools.pairwise(entries)
    )


class LeaderEpochCache:
    """Epoch -> start offset map of one partition (module docstring for format and rules)."""

    __slots__ = ("_dirty", "_entries", "_log_end_offset", "path")

    def __init__(
        self, path: Path, entries: Sequence[EpochEntry], *, log_end_offset: Callable[[], int]
    ) -> None:
        if not _valid(entries):
            raise ValueError(f"epochs and start offsets must strictly increase: {entries}")
        self.path = path
        self._entries = tuple(entries)
        self._log_end_offset = log_end_offset
        self._dirty = False

    @classmethod
    def load(cls, path: Path, *, log_end_offset: Callable[[], int]) -> LeaderEpochCache:
        """Read the checkpoint (empty when missing). Raises CheckpointError when malformed."""
        entries = read_checkpoint(path, _parse_entry)
        if not _valid(entries):
            raise CheckpointError(f"malformed checkpoint {path}: entries do not increase")
        return cls(path, entries, log_end_offset=log_end_offset)

    # ------------------------------------------------------------------ queries

    @property
    def entries(self) -> tuple[EpochEntry, ...]:
        return self._entries

    @property
    def latest_entry(self) -> EpochEntry | None:
        return self._entries[-1] if self._entries else None

    @property
    def earliest_entry(self) -> EpochEntry | None:
        return self._entries[0] if self._entries else None

    @property
    def latest_epoch(self) -> int:
        """The latest epoch, UNDEFINED_EPOCH (-1) when the cache is empty."""
        return self._entries[-1].epoch if self._entries else UNDEFINED_EPOCH

    def end_offset_for(self, requested_epoch: int) -> tuple[int, int]:
        """``(epoch, end offset)`` answering OffsetsForLeaderEpoch (Kafka 2.x semantics).

        * requested epoch is UNDEFINED (-1), or newer than every cached epoch, or the cache
          is empty: ``(-1, -1)``;
        * requested epoch is the latest: ``(latest, log end offset)``;
        * otherwise the largest cached epoch <= requested, ending where the next higher
          cached epoch starts;
        * requested epoch older than every cached epoch: ``(requested, first start offset)``
          (the data before it is gone; the follower truncates to where the leader's log
          begins being known).
        """
        if requested_epoch == UNDEFINED_EPOCH or not self._entries:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if requested_epoch == self.latest_epoch:
            return requested_epoch, self._log_end_offset()
        epochs = [e.epoch for e in self._entries]
        slot = bisect_right(epochs, requested_epoch)
        if slot == len(epochs):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if slot == 0:
            return requested_epoch, self._entries[0].start_offset
        return self._entries[slot - 1].epoch, self._entries[slot].start_offset

    def epoch_for_offset(self, offset: int) -> int | None:
        """The epoch whose range holds ``offset``; None when before the first entry."""
        starts = [e.start_offset for e in self._entries]
        slot = bisect_right(starts, offset) - 1
        return self._entries[slot].epoch if slot >= 0 else None

    # ------------------------------------------------------------------ changes

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` starts at ``start_offset``; returns whether anything changed.
        The file is written by the next :meth:`persist` (see the module docstring).

        A no-op when ``epoch`` is already the latest and starts at or before
        ``start_offset``. Otherwise, like Kafka, every entry that is not strictly older in
        both epoch and start offset is removed before the new entry is appended.
        """
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"invalid epoch entry ({epoch}, {start_offset})")
        latest = self.latest_entry
        if latest is not None and latest.epoch == epoch and start_offset >= latest.start_offset:
            return False
        kept = [e for e in self._entries if e.epoch < epoch and e.start_offset < start_offset]
        if len(kept) < len(self._entries):
            _log.warning(
                "%s: entry (%d, %d) removes conflicting entries %s",
                self.path,
                epoch,
                start_offset,
                self._entries[len(kept) :],
            )
        self._entries = (*kept, EpochEntry(epoch, start_offset))
        self._dirty = True  # written by persist(), before the first batch of the epoch
        return True

    def truncate_from_end(self, end_offset: int) -> None:
        """Remove the entries starting at or after ``end_offset`` (log truncated there)."""
        kept = tuple(e for e in self._entries if e.start_offset < end_offset)
        if len(kept) != len(self._entries):
            self._replace(kept)

    def truncate_from_start(self, start_offset: int) -> None:
        """Forget offsets below ``start_offset`` (log start moved up).

        Entries starting at or below it are dropped except the last one, which is moved to
        start at ``start_offset``.
        """
        before = [e for e in self._entries if e.start_offset <= start_offset]
        if not before or (len(before) == 1 and before[0].start_offset == start_offset):
            return
        after = self._entries[len(before) :]
        self._replace((EpochEntry(before[-1].epoch, start_offset), *after))

    def clear(self) -> None:
        """Remove every entry."""
        if self._entries:
            self._replace(())

    @property
    def dirty(self) -> bool:
        """True while the file lags the entries in memory (a new epoch, or a failed write)."""
        return self._dirty

    def persist(self) -> None:
        """Write the entries if the file lags them. Raises StorageError (still dirty)."""
        if self._dirty:
            write_checkpoint(self.path, (f"{e.epoch} {e.start_offset}" for e in self._entries))
            self._dirty = False

    def persist_or_keep(self) -> None:
        """:meth:`persist`, leaving the cache dirty (logged) when the disk refuses."""
        try:
            self.persist()
        except StorageError as exc:
            _log.warning("%s: kept in memory until the disk takes it: %s", self.path, exc)

    def _replace(self, entries: tuple[EpochEntry, ...]) -> None:
        self._entries = entries
        self._dirty = True
        self.persist_or_keep()

    def __repr__(self) -> str:
        inner = ", ".join(f"({e.epoch}, {e.start_offset})" for e in self._entries)
        return f"LeaderEpochCache([{inner}])"
