"""The sparse offset index and the time index of one segment.

Both are kept whole in memory (``array`` columns, binary search with ``bisect``) and appended to
their file as entries are added; the files exist so that segments below the recovery point can
be loaded at start-up without reading the log. They carry no checksum: an index that fails its
sanity check is rebuilt from the log (:meth:`LogSegment.recover`).

File formats (big-endian, fixed-size entries, no header)::

    <base>.index      8 bytes/entry: int32 relative offset, int32 position
    <base>.timeindex 12 bytes/entry: int64 timestamp,      int32 relative offset

``relative offset`` is ``offset - segment base offset``. An offset-index entry maps the BASE
(first) offset of a batch to the byte position where that batch starts in the ``.log`` file.
A time-index entry ``(T, O)`` says: every batch of the segment whose base offset is <= O has
``max_timestamp <= T``, and T is reached by one of them (O is the base offset of a batch).

Descriptors: an index holds its file's descriptor only from its first write on (the entries
are in memory), so the indexes of segments loaded at start-up and of idle partitions hold
none.

Concurrency: owned by the segment's thread (the event loop); only :meth:`fsync` may be called
from a flush thread while the owner keeps appending.
"""

from __future__ import annotations

import operator
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import ClassVar, Final, Self

from kbroker.log._fileio import AppendOnlyFile

__all__ = [
    "NO_TIMESTAMP",
    "OFFSET_ENTRY_SIZE",
    "TIME_ENTRY_SIZE",
    "CorruptIndexError",
    "OffsetIndex",
    "TimeIndex",
]

OFFSET_ENTRY: Final = struct.Struct(">ii")
TIME_ENTRY: Final = struct.Struct(">qi")
OFFSET_ENTRY_SIZE: Final = OFFSET_ENTRY.size
TIME_ENTRY_SIZE: Final = TIME_ENTRY.size
#: Timestamp of "no timestamp yet" (Kafka's NO_TIMESTAMP).
NO_TIMESTAMP: Final = -1


class CorruptIndexError(Exception):
    """An index file failed its sanity check; the segment's indexes must be rebuilt."""


def _strictly_increasing(values: Sequence[int]) -> bool:
    return all(map(operator.lt, values, islice(values, 1, None)))


def _unpack_columns(entry_format: str, data: bytes) -> tuple[array[int], array[int]]:
    """Split big-endian ``entry_format`` entries (e.g. ``">qi"``) into two columns, arrays of
    the format's two typecodes."""
    first, second = entry_format[1], entry_format[2]
    if first == second == "i":  # int32 pairs: one array, no tuple of Python ints
        flat = array("i")
        flat.frombytes(data)
        if sys.byteorder == "little":
            flat.byteswap()
        return flat[0::2], flat[1::2]
    count = len(data) // struct.calcsize(entry_format)
    values = struct.unpack(">" + entry_format[1:] * count, data)
    return array(first, values[0::2]), array(second, values[1::2])


def _pack_columns(pair: str, first: Sequence[int], second: Sequence[int]) -> bytes:
    """Pack two equally long columns as big-endian ``pair`` entries (e.g. ``">qi"``)."""
    flat: list[int] = [0] * (2 * len(first))
    flat[0::2] = first
    flat[1::2] = second
    return struct.pack(">" + pair[1:] * len(first), *flat)


class _ColumnIndex:
    """What both indexes share: two columns kept whole in memory, one of them the relative
    offsets (``_offsets``), and their file of fixed-size big-endian ``ENTRY_FORMAT`` entries.

    A subclass names the columns: :meth:`_columns` returns them in file order and
    :meth:`_set_columns` binds them (from the file order).
    """

    __slots__ = ("_file", "base_offset")

    #: One entry in file order, e.g. ``">ii"``; its two letters are the columns' typecodes.
    ENTRY_FORMAT: ClassVar[str]
    ENTRY_SIZE: ClassVar[int]
    _offsets: array[int]

    def __init__(
        self, file: AppendOnlyFile, base_offset: int, first: array[int], second: array[int]
    ) -> None:
        self._file = file
        self.base_offset = base_offset
        self._set_columns(first, second)

    def _columns(self) -> tuple[array[int], array[int]]:
        raise NotImplementedError

    def _set_columns(self, first: array[int], second: array[int]) -> None:
        raise NotImplementedError

    @classmethod
    def create(cls, path: Path, base_offset: int) -> Self:
        file = AppendOnlyFile.open(path, create=True)
        file.close_until_used()
        return cls(file, base_offset, array(cls.ENTRY_FORMAT[1]), array(cls.ENTRY_FORMAT[2]))

    @classmethod
    def load(cls, path: Path, base_offset: int) -> Self:
        """Read an index file; raises CorruptIndexError when its entries are malformed."""
        file = AppendOnlyFile.open(path)
        try:
            data = file.read_all()
            if len(data) % cls.ENTRY_SIZE:
                raise CorruptIndexError(
                    f"{path}: size {len(data)} is not a multiple of {cls.ENTRY_SIZE}"
                )
            first, second = _unpack_columns(cls.ENTRY_FORMAT, data)
            if not (_strictly_increasing(first) and _strictly_increasing(second)):
                raise CorruptIndexError(f"{path}: entries do not strictly increase")
            index = cls(file, base_offset, first, second)
            if index._offsets and index._offsets[0] < 0:
                raise CorruptIndexError(f"{path}: negative relative offset")
        except BaseException:
            file.close()
            raise
        file.close_until_used()
        return index

    def __len__(self) -> int:
        return len(self._offsets)

    @property
    def path(self) -> Path:
        return self._file.path

    def append(self, first: Sequence[int], second: Sequence[int]) -> None:
        """Add entries (the two columns in file order): file first, then memory.

        Raises StorageError with the file cut back and memory unchanged.
        """
        if not first:
            return
        self._file.append([_pack_columns(self.ENTRY_FORMAT, first, second)])
        for column, values in zip(self._columns(), (first, second), strict=True):
            column.extend(values)

    def drop_last(self, count: int) -> None:
        """Undo the last ``count`` appended entries after a failed multi-file append."""
        keep = len(self._offsets) - count
        for column in self._columns():
            del column[keep:]
        self._file.rollback(keep * self.ENTRY_SIZE)

    def truncate_to(self, end_offset: int) -> None:
        """Remove every entry whose offset is >= ``end_offset``. Raises StorageError."""
        keep = bisect_left(self._offsets, end_offset - self.base_offset)
        if keep < len(self._offsets):
            self._file.truncate(keep * self.ENTRY_SIZE)
            for column in self._columns():
                del column[keep:]

    def fsync(self) -> None:
        self._file.fsync()

    def close_until_used(self) -> None:
        """Give the file's descriptor back until the next write (only before the index is
        shared: right after it is created, loaded or rebuilt)."""
        self._file.close_until_used()

    def rename(self, path: Path) -> None:
        self._file.rename(path)

    def close(self) -> None:
        self._file.close()


class OffsetIndex(_ColumnIndex):
    """Sparse map from a batch's base offset to the file position where the batch starts.

    Entries are (relative offset, position): the columns of :meth:`append` and :meth:`replace`.
    Invariants: relative offsets and positions both strictly increase; a non-empty segment's
    first entry is ``(base_offset, 0)``; every position is below the segment's size and every
    offset below its end offset. See the module docstring for the file format.
    """

    __slots__ = ("_offsets", "_positions")

    ENTRY_FORMAT = ">ii"
    ENTRY_SIZE = OFFSET_ENTRY_SIZE

    def _columns(self) -> tuple[array[int], array[int]]:
        return self._offsets, self._positions

    def _set_columns(self, offsets: array[int], positions: array[int]) -> None:
        self._offsets, self._positions = offsets, positions

    @property
    def last_position(self) -> int | None:
        """File position of the last indexed batch, None when empty."""
        return self._positions[-1] if self._positions else None

    @property
    def last_entry(self) -> tuple[int, int]:
        """The last entry as (offset, position); ``(base_offset, 0)`` when empty."""
        if not self._offsets:
            return self.base_offset, 0
        return self.base_offset + self._offsets[-1], self._positions[-1]

    def lookup(self, offset: int) -> tuple[int, int]:
        """The greatest entry whose offset is <= ``offset`` as (offset, position).

        ``(base_offset, 0)`` when there is none.
        """
        slot = bisect_right(self._offsets, offset - self.base_offset) - 1
        if slot < 0:
            return self.base_offset, 0
        return self.base_offset + self._offsets[slot], self._positions[slot]

    def replace(self, offsets: array[int], positions: array[int]) -> None:
        """Replace every entry (relative offsets, positions), memory and file."""
        flat = array("i", bytes(8 * len(offsets)))
        flat[0::2] = offsets
        flat[1::2] = positions
        if sys.byteorder == "little":
            flat.byteswap()
        self._file.replace_content(flat.tobytes())
        self._set_columns(offsets, positions)

    def sanity_check(self, log_size: int, end_offset: int | None) -> None:
        """Raise CorruptIndexError unless the entries fit a log of ``log_size`` bytes."""
        if not self._offsets:
            if log_size:
                raise CorruptIndexError(f"{self.path}: empty index for a non-empty log")
            return
        if self._offsets[0] != 0 or self._positions[0] != 0:
            raise CorruptIndexError(f"{self.path}: first entry is not the segment's first batch")
        if self._positions[-1] >= log_size:
            raise CorruptIndexError(f"{self.path}: entry points past the end of the log")
        if end_offset is not None and self.base_offset + self._offsets[-1] >= end_offset:
            raise CorruptIndexError(f"{self.path}: entry past the segment's end offset")


class TimeIndex(_ColumnIndex):
    """Sparse map from "largest timestamp so far" to the base offset of a batch.

    Entries are (timestamp, relative offset): the columns of :meth:`append` and :meth:`replace`.
    Invariants: timestamps and offsets both strictly increase (an entry is only added when
    the segment's largest timestamp grew); every offset lies in ``[base, end)`` of the segment.
    See the module docstring for the meaning of an entry and the file format.
    """

    __slots__ = ("_offsets", "_timestamps")

    ENTRY_FORMAT = ">qi"
    ENTRY_SIZE = TIME_ENTRY_SIZE

    def _columns(self) -> tuple[array[int], array[int]]:
        return self._timestamps, self._offsets

    def _set_columns(self, timestamps: array[int], offsets: array[int]) -> None:
        self._timestamps, self._offsets = timestamps, offsets

    @property
    def last_timestamp(self) -> int:
        """The largest indexed timestamp, NO_TIMESTAMP (-1) when empty."""
        return self._timestamps[-1] if self._timestamps else NO_TIMESTAMP

    def lookup(self, timestamp: int) -> int:
        """Where a search for the first batch with ``max_timestamp >= timestamp`` may start.

        The base offset of the last entry whose timestamp is below ``timestamp`` (that batch
        and all before it are too old), or the segment's base offset when there is none.
        """
        slot = bisect_left(self._timestamps, timestamp) - 1
        return self.base_offset + (self._offsets[slot] if slot >= 0 else 0)

    def replace(self, timestamps: array[int], offsets: array[int]) -> None:
        """Replace every entry (timestamps, relative offsets), memory and file."""
        self._file.replace_content(_pack_columns(self.ENTRY_FORMAT, timestamps, offsets))
        self._set_columns(timestamps, offsets)

    def sanity_check(self, end_offset: int | None) -> None:
        """Raise CorruptIndexError when an entry lies past the segment's end offset."""
        if (
            end_offset is not None
            and self._offsets
            and (self.base_offset + self._offsets[-1] >= end_offset)
        ):
            raise CorruptIndexError(f"{self.path}: entry past the segment's end offset")
