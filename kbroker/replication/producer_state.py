"""Idempotent produce: per partition, the recent batches of every producer id (KIP-98).

A producer that sets a producer id, epoch and sequence on a produce request gets exactly-once
appends per partition: the leader keeps, for each producer id, its epoch and the sequence
ranges and offsets of its last :data:`BATCHES_TO_RETAIN` batches, and

* answers a batch whose (first, last) sequence equals a retained one with that batch's
  original offsets, writing nothing (a retry of something already written);
* rejects a batch of an older epoch with INVALID_PRODUCER_EPOCH;
* accepts a newer epoch only at sequence 0 (the producer was re-initialised);
* rejects, within an epoch, a batch whose first sequence is not the last one plus 1
  (OUT_OF_ORDER_SEQUENCE: a gap, i.e. a lost earlier request); sequences wrap from
  2^31 - 1 to 0, as in Kafka;
* accepts any sequence from a producer it has no state for (its batches were removed by
  retention, or are older than what a restart rebuilt: Kafka's rule).

The state is rebuilt from batch headers (producer id, epoch and base sequence are in every
batch header), so followers keep it up to date as they replicate and it survives leader changes;
after a restart it is rebuilt from the log's most recent segments.

Event-loop thread only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from kbroker.errors import BrokerError, ErrorCode
from kbroker.log.batch import BatchHeader

__all__ = ["BATCHES_TO_RETAIN", "SEQUENCE_MODULUS", "Duplicate", "ProducerStateManager"]

#: Batches remembered per producer (Kafka's NumBatchesToRetain; the client's in-flight limit).
BATCHES_TO_RETAIN: Final = 5


class Duplicate(NamedTuple):
    """A retained batch a retry matched: its original offsets."""

    first_offset: int
    last_offset: int


class _Batch(NamedTuple):
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int


@dataclass(slots=True)
class _Producer:
    epoch: int
    batches: deque[_Batch] = field(default_factory=lambda: deque(maxlen=BATCHES_TO_RETAIN))


class ProducerStateManager:
    """Producer ids -> epoch and recent batches, for one partition (see module docstring)."""

    __slots__ = ("_producers",)

    def __init__(self) -> None:
        self._producers: dict[int, _Producer] = {}

    def __len__(self) -> int:
        return len(self._producers)

    def check(self, producer_id: int, epoch: int, first_seq: int, count: int) -> Duplicate | None:
        """Validate a new batch from an idempotent producer before it is appended.

        Returns the original offsets when the batch is a duplicate, None when it may be
        appended; raises INVALID_PRODUCER_EPOCH or OUT_OF_ORDER_SEQUENCE otherwise.
        """
        if producer_id < 0:
            return None
        last_seq = _seq_add(first_seq, count - 1)
        state = self._producers.get(producer_id)
        if state is None:
            return None
        if epoch < state.epoch:
            raise BrokerError(
                f"Producer {producer_id} epoch {epoch} is older than {state.epoch}: a newer "
                "instance of this producer exists",
                ErrorCode.INVALID_PRODUCER_EPOCH,
            )
        if epoch > state.epoch:
            if first_seq != 0:
                raise BrokerError(
                    f"Producer {producer_id} started epoch {epoch} at sequence {first_seq}, not 0",
                    ErrorCode.OUT_OF_ORDER_SEQUENCE,
                )
            return None
        for batch in state.batches:
            if batch.first_seq == first_seq and batch.last_seq == last_seq:
                return Duplicate(batch.first_offset, batch.last_offset)
        expected = _seq_add(state.batches[-1].last_seq, 1) if state.batches else first_seq
        if first_seq != expected:
            raise BrokerError(
                f"Producer {producer_id} sent sequence {first_seq}, expected {expected}: an "
                "earlier request was lost",
                ErrorCode.OUT_OF_ORDER_SEQUENCE,
            )
        return None

    def update(self, header: BatchHeader) -> None:
        """Record an appended batch (leader or follower side)."""
        producer_id = header.producer_id
        if producer_id < 0:
            return
        state = self._producers.get(producer_id)
        if state is not None and header.producer_epoch < state.epoch:
            return
        self.record(
            producer_id,
            header.producer_epoch,
            header.base_sequence,
            header.base_offset,
            header.last_offset,
        )

    def record(
        self, producer_id: int, epoch: int, first_seq: int, first_offset: int, last_offset: int
    ) -> None:
        """Record a batch the leader just appended (the header's fields, without the header)."""
        state = self._producers.get(producer_id)
        if state is None or epoch > state.epoch:
            state = self._producers[producer_id] = _Producer(epoch=epoch)
        state.batches.append(
            _Batch(
                first_seq=first_seq,
                last_seq=_seq_add(first_seq, last_offset - first_offset),
                first_offset=first_offset,
                last_offset=last_offset,
            )
        )

    def rebuild(self, headers: Iterable[BatchHeader]) -> None:
        """Forget everything and replay ``headers`` (in log order)."""
        self._producers.clear()
        for header in headers:
            self.update(header)


#: Sequences wrap from 2^31 - 1 to 0 (Kafka's DefaultRecordBatch.incrementSequence).
SEQUENCE_MODULUS = 1 << 31


def _seq_add(sequence: int, increment: int) -> int:
    return (sequence + increment) % SEQUENCE_MODULUS
