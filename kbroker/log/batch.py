"""The record batch: kbroker's unit of append, storage, replication and fetch.

On-disk and on-the-wire format (big-endian), 61-byte header followed by the payload::

    offset size field
         0    8 base_offset        offset of the first record
         8    4 batch_length       bytes after this field = 49 + payload_length
        12    4 leader_epoch       stamped by the leader; NOT covered by the CRC
        16    1 magic              MAGIC (1)
        17    4 crc                CRC-32C (Castagnoli) of bytes 21 .. end of payload
        21    2 attributes         bits 0-2 payload codec, bit 3 per-record timestamps
        23    4 record_count       >= 1; last offset = base_offset + record_count - 1
        27    8 first_timestamp    ms; the timestamp of records that carry none
        35    8 max_timestamp      ms; the largest timestamp in the batch
        43    8 producer_id        -1 unless the producer is idempotent
        51    2 producer_epoch     -1 unless idempotent
        53    4 base_sequence      -1 unless idempotent
        57    4 payload_length     bytes of payload that follow
        61    - payload            codec-specific; opaque to the log

The log never looks inside the payload: it stores what the API layer produced from the client's
request and hands whole batches back. Per-record offsets are derived on read
(``base_offset + index``). Like Kafka's RecordBatch v2, the leader epoch sits outside the CRC so
that it can be stamped without re-checksumming, and the base offset is assigned by the leader at
append time.

Everything here is pure functions over bytes; safe to call from any thread.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from crc32c import crc32c

from kbroker.errors import CorruptRecordError
from kclient.protocol import (
    ATTR_RECORD_TIMESTAMPS,
    PayloadCodec,
)
from kclient.protocol import (
    BATCH_CRC_START as CRC_START,
)
from kclient.protocol import (
    BATCH_HEADER as HEADER,
)
from kclient.protocol import (
    BATCH_HEADER_SIZE as HEADER_SIZE,
)
from kclient.protocol import (
    BATCH_LENGTH_PREFIX as LENGTH_PREFIX,
)
from kclient.protocol import (
    BATCH_MAGIC as MAGIC,
)

__all__ = [
    "ATTR_RECORD_TIMESTAMPS",
    "CRC_START",
    "HEADER",
    "HEADER_SIZE",
    "LENGTH_PREFIX",
    "MAGIC",
    "MAX_BATCH_SIZE",
    "BatchHeader",
    "PayloadCodec",
    "batch_span",
    "encode_header",
    "iter_batches",
    "read_header",
    "scan_valid_prefix",
    "verify_crc",
]

# The format itself is part of the wire contract (clients read whole batches from the
# batches endpoint), so its constants live in kclient.protocol.
#: Upper bound on one batch on disk; a length field above it marks corruption.
MAX_BATCH_SIZE: Final = 1 << 30

_LEADER_EPOCH: Final = struct.Struct(">i")
_SPAN: Final = struct.Struct(">qi")
_RECORD_COUNT: Final = struct.Struct(">i")
_RECORD_COUNT_AT: Final = 23
_CODEC_MASK: Final = 0b111

assert HEADER_SIZE == 61


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """A decoded batch header. ``position`` is where the batch starts in its buffer or file."""

    base_offset: int
    batch_length: int
    leader_epoch: int
    crc: int
    attributes: int
    record_count: int
    first_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    payload_length: int
    position: int = 0

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.record_count - 1

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.record_count

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies, header included."""
        return LENGTH_PREFIX + self.batch_length

    @property
    def codec(self) -> PayloadCodec:
        return PayloadCodec(self.attributes & _CODEC_MASK)

    @property
    def has_record_timestamps(self) -> bool:
        return bool(self.attributes & ATTR_RECORD_TIMESTAMPS)


def encode_header(
    payload: bytes | memoryview,
    *,
    base_offset: int,
    leader_epoch: int,
    attributes: int,
    record_count: int,
    first_timestamp: int,
    max_timestamp: int,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """The 61-byte header for ``payload``, CRC included. Write it followed by the payload."""
    if record_count < 1:
        raise ValueError("a batch holds at least one record")
    payload_length = len(payload)
    tail = HEADER.pack(
        0,
        0,
        0,
        0,
        0,
        attributes,
        record_count,
        first_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        payload_length,
    )[CRC_START:]
    crc = crc32c(payload, crc32c(tail))
    return HEADER.pack(
        base_offset,
        HEADER_SIZE - LENGTH_PREFIX + payload_length,
        leader_epoch,
        MAGIC,
        crc,
        attributes,
        record_count,
        first_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        payload_length,
    )


def read_header(buf: bytes | bytearray | memoryview, position: int = 0) -> BatchHeader:
    """Decode the header at ``position`` and check its fields are self-consistent.

    Raises CorruptRecordError when the header is truncated or inconsistent. The CRC is not
    checked here (see :func:`verify_crc`).
    """
    if len(buf) - position < HEADER_SIZE:
        raise CorruptRecordError(f"truncated batch header at byte {position}")
    (
        base_offset,
        batch_length,
        leader_epoch,
        magic,
        crc,
        attributes,
        record_count,
        first_ts,
        max_ts,
        producer_id,
        producer_epoch,
        base_sequence,
        payload_length,
    ) = HEADER.unpack_from(buf, position)
    if magic != MAGIC:
        raise CorruptRecordError(f"bad magic {magic} at byte {position}")
    if payload_length < 0 or batch_length != HEADER_SIZE - LENGTH_PREFIX + payload_length:
        raise CorruptRecordError(f"inconsistent batch length at byte {position}")
    if batch_length > MAX_BATCH_SIZE or record_count < 1 or base_offset < 0:
        raise CorruptRecordError(f"impossible batch header at byte {position}")
    if attributes & _CODEC_MASK not in _CODECS:
        raise CorruptRecordError(f"unknown payload codec at byte {position}")
    return BatchHeader(
        base_offset=base_offset,
        batch_length=batch_length,
        leader_epoch=leader_epoch,
        crc=crc,
        attributes=attributes,
        record_count=record_count,
        first_timestamp=first_ts,
        max_timestamp=max_ts,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        payload_length=payload_length,
        position=position,
    )


_CODECS: Final = frozenset(int(c) for c in PayloadCodec)


def verify_crc(buf: bytes | bytearray | memoryview, header: BatchHeader) -> bool:
    """True when the batch at ``header.position`` in ``buf`` matches its CRC."""
    start = header.position + CRC_START
    end = header.position + header.size
    return crc32c(memoryview(buf)[start:end]) == header.crc


def iter_batches(
    buf: bytes | bytearray | memoryview, *, verify: bool = False
) -> Iterator[BatchHeader]:
    """Headers of the whole batches in ``buf``, in order.

    Raises CorruptRecordError at the first batch that is truncated, inconsistent or (with
    ``verify``) fails its CRC.
    """
    position = 0
    end = len(buf)
    while position < end:
        header = read_header(buf, position)
        if position + header.size > end:
            raise CorruptRecordError(f"truncated batch at byte {position}")
        if verify and not verify_crc(buf, header):
            raise CorruptRecordError(f"CRC mismatch in batch at offset {header.base_offset}")
        yield header
        position += header.size


def scan_valid_prefix(
    buf: bytes | bytearray | memoryview, *, expected_offset: int | None = None
) -> tuple[list[BatchHeader], int]:
    """The longest prefix of ``buf`` made of valid, CRC-checked, contiguous batches.

    Returns the headers and the prefix length in bytes. Used by recovery and by followers to
    accept what a leader sent. When ``expected_offset`` is given, the first batch must start
    there and each next batch where the previous one ended.
    """
    headers: list[BatchHeader] = []
    position = 0
    end = len(buf)
    next_offset = expected_offset
    while position < end:
        try:
            header = read_header(buf, position)
        except CorruptRecordError:
            break
        if position + header.size > end or not verify_crc(buf, header):
            break
        if next_offset is not None and header.base_offset != next_offset:
            break
        headers.append(header)
        position += header.size
        next_offset = header.next_offset
    return headers, position


def with_leader_epoch(batch: bytearray, leader_epoch: int) -> None:
    """Stamp ``leader_epoch`` into a batch in place (outside the CRC, so no re-checksum)."""
    _LEADER_EPOCH.pack_into(batch, 12, leader_epoch)


def batch_span(buf: bytes | bytearray | memoryview, position: int = 0) -> tuple[int, int, int]:
    """``(base_offset, next_offset, size)`` of the batch at ``position``, from 3 header fields.

    A cheap step for walking batches already known to be valid (the log's read path); only
    the header's presence is checked (CorruptRecordError when ``buf`` is too short).
    """
    if len(buf) - position < HEADER_SIZE:
        raise CorruptRecordError(f"truncated batch header at byte {position}")
    base_offset, batch_length = _SPAN.unpack_from(buf, position)
    (record_count,) = _RECORD_COUNT.unpack_from(buf, position + _RECORD_COUNT_AT)
    return base_offset, base_offset + record_count, LENGTH_PREFIX + batch_length
