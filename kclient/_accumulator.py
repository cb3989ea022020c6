"""Producer batches: records of one partition kept as columns, encoded in one go.

A batch stores serialized keys and values in parallel lists (headers and timestamps only once a
record has some). :meth:`ProducerBatch.encode` turns it into the body of one
``POST /topics/{t}/partitions/{p}`` in the binary embedded format. In the common shapes
(values only, or keys and values, no nulls, no headers, no timestamps) the body is built with
C-level ``map``/``join`` over base64 strings; other shapes go through one ``orjson.dumps``.

Not thread-safe by itself: the producer appends under its lock, and a batch is encoded only
after it left the accumulator.
"""

from __future__ import annotations

import binascii
import time
from collections.abc import Iterable
from functools import partial
from itertools import chain
from typing import Any, Final

import orjson

from kclient._futures import BatchResult
from kclient.structs import Header

__all__ = ["RECORD_OVERHEAD", "ProducerBatch"]

#: Estimated JSON bytes per record beside the base64 of its key and value.
RECORD_OVERHEAD: Final = 24
_B64: Final = partial(binascii.b2a_base64, newline=False)
#: b2a_base64 with its default trailing newline: no keyword arguments, twice as fast in a map.
_B64_NL: Final = binascii.b2a_base64
_VALUES_OPEN: Final = b'{"records":[{"value":"'
_VALUES_SEP: Final = b'"},{"value":"'
_VALUES_CLOSE: Final = b'"}]}'
_KV: Final = b'{"key":"%s","value":"%s"}'
_OPEN: Final = (_VALUES_OPEN,)


def _b64_or_none(data: bytes | None) -> str | None:
    return None if data is None else _B64(data).decode("ascii")


class ProducerBatch:
    """Records bound for one partition (see the module docstring)."""

    __slots__ = (
        "attempts",
        "body",
        "callbacks",
        "created",
        "headers",
        "keys",
        "partition",
        "producer_epoch",
        "producer_id",
        "result",
        "sequence",
        "size",
        "timestamps",
        "topic",
        "values",
    )

    def __init__(self, topic: str, partition: int, loop_thread: int) -> None:
        self.topic = topic
        self.partition = partition
        self.keys: list[bytes | None] = []
        self.values: list[bytes | None] = []
        self.headers: list[list[Header] | None] | None = None
        self.timestamps: list[int | None] | None = None
        self.callbacks: list[tuple[int, Any]] | None = None
        self.size = 0
        self.created = time.monotonic()
        self.result = BatchResult(topic, partition, loop_thread)
        self.attempts = 0
        self.body: bytes | bytearray | None = None
        # Idempotent produce (kclient._idempotence): set when the batch is first sent.
        self.producer_id = -1
        self.producer_epoch = -1
        self.sequence = -1

    def __len__(self) -> int:
        return len(self.values)

    def add_extras(
        self,
        index: int,
        headers: Iterable[Header] | None,
        timestamp: int | None,
        callback: Any,
    ) -> None:
        """Record ``index``'s optional parts (the slow path of an append)."""
        if headers:
            if self.headers is None:
                self.headers = [None] * index
            self.headers.append(list(headers))
        if timestamp is not None:
            if self.timestamps is None:
                self.timestamps = [None] * index
            self.timestamps.append(timestamp)
        if callback is not None:
            if self.callbacks is None:
                self.callbacks = []
            self.callbacks.append((index, callback))
        self.pad()

    def pad(self) -> None:
        """Keep the optional columns as long as the values (after an append without them)."""
        count = len(self.values)
        if self.headers is not None and len(self.headers) < count:
            self.headers.append(None)
        if self.timestamps is not None and len(self.timestamps) < count:
            self.timestamps.append(None)

    def timestamp(self, index: int) -> int:
        if self.timestamps is None:
            return -1
        stamp = self.timestamps[index]
        return stamp if stamp is not None else -1

    def encode(self) -> bytes | bytearray:
        """The produce request body (computed once, reused by retries)."""
        if self.body is None:
            self.body = self._fast_body() or self._general_body()
        return self.body

    def _fast_body(self) -> bytes | bytearray | None:
        """Values only, or keys and values, none null, no headers or timestamps: the body is
        built from one base64 pass per column (each encoding ends with a newline, which
        becomes the separator) without Python code per record."""
        values, keys = self.values, self.keys
        if self.headers is not None or self.timestamps is not None or None in values:
            return None
        count = len(values)
        nulls = keys.count(None)
        if nulls == count:
            # Few large copies: join (prefix + encodings), replace newlines, fix the tail.
            body = bytearray(
                b"".join(chain(_OPEN, map(_B64_NL, values))).replace(b"\n", _VALUES_SEP)  # type: ignore[arg-type]
            )
            del body[-len(_VALUES_SEP) :]
            body += _VALUES_CLOSE
            return body
        if nulls:
            return None
        key_column = b"".join(map(_B64_NL, keys))[:-1].split(b"\n")  # type: ignore[arg-type]
        value_column = b"".join(map(_B64_NL, values))[:-1].split(b"\n")  # type: ignore[arg-type]
        records = map(_KV.__mod__, zip(key_column, value_column, strict=True))
        return b'{"records":[' + b",".join(records) + b"]}"

    def _general_body(self) -> bytes:
        keys = list(map(_b64_or_none, self.keys))
        values = list(map(_b64_or_none, self.values))
        headers = self.headers or [None] * len(values)
        stamps = self.timestamps or [None] * len(values)
        records = []
        for key, value, header, stamp in zip(keys, values, headers, stamps, strict=True):
            record: dict[str, Any] = {"value": value}
            if key is not None:
                record["key"] = key
            if header:
                record["headers"] = [{"key": k, "value": _b64_or_none(v)} for k, v in header]
            if stamp is not None:
                record["timestamp"] = stamp
            records.append(record)
        return orjson.dumps({"records": records})
