"""Idempotent produce, client side: the producer id and epoch, and sequences per partition.

Kafka's KIP-98, with KIP-360's epoch bump. The producer asks any broker for an id
(``POST /producers``: id N, epoch 0) before its first batch. Each batch then carries, in three
request headers (``kclient.protocol``), the id, the epoch and the sequence of its first record;
a partition's sequences start at 0 and grow by the record count of each batch, wrapping at
2**31. A broker keeps the last 5 batches of each producer per partition, answers a resend of one
of them with its original offsets and refuses a gap (OUT_OF_ORDER_SEQUENCE) or an older epoch
(INVALID_PRODUCER_EPOCH). So a batch may be resent with the same sequence after any failure,
ambiguous or not, and is written once.

Per partition this module keeps the next sequence and the batches sent but not resolved, in
sequence order (at most ``max_in_flight``, and only one until the partition acknowledged a
batch of this producer id: a broker accepts any sequence from a producer id it has no state
for, so a second request overtaking the first would be written before it). The rules:

- **resends go in order**: a batch is resent only once every earlier batch of its partition is
  resolved (the *head*); a batch refused with OUT_OF_ORDER_SEQUENCE while earlier ones were
  unresolved was overtaken, and is resent with the same sequence once it is the head.
- **a gap**: once a batch with a sequence fails (any error, including a delivery timeout), its
  partition has a gap: the later batches of that epoch would be refused. A later batch refused
  with OUT_OF_ORDER_SEQUENCE is then *requeued* (it was not written) and sent again after the
  reset below, so only the failed batch is lost. OUT_OF_ORDER_SEQUENCE on the head of a
  partition without a gap is a real gap on the broker (records lost there): that batch fails.
- **reset**: after a gap the producer stops sending, waits until no batch is in flight, bumps
  its epoch (``POST /producers`` with its id and epoch) and restarts every partition at
  sequence 0. INVALID_PRODUCER_EPOCH (another instance bumped this id's epoch) fails the batch
  and gets a new id instead; an exhausted epoch also gets a new id.

Known limit: the broker does not wrap sequences (after 2**31 - 1 it expects 2**31), so once
per 2**31 records of a partition the first batch after the wrap is refused as a gap and fails,
and the reset follows.

Concurrency: one instance per producer, used on the producer's event loop only.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from kclient._accumulator import ProducerBatch
from kclient.errors import InvalidProducerEpochError
from kclient.protocol import PRODUCER_EPOCH_HEADER, PRODUCER_ID_HEADER, SEQUENCE_HEADER

__all__ = ["MAX_IN_FLIGHT", "SEQUENCE_MODULUS", "IdempotenceState", "ProducerIdentity"]

#: Sequences wrap to 0 after 2**31 - 1 (Kafka's int32 sequences).
SEQUENCE_MODULUS: Final = 1 << 31
#: Batches in flight per partition at most: a broker remembers the last 5 batches of a producer.
MAX_IN_FLIGHT: Final = 5

TopicPartitionKey = tuple[str, int]
#: ``call(method, path, json=...)`` on any broker: the parsed JSON answer.
CallAny = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ProducerIdentity:
    """What ``POST /producers`` answered."""

    producer_id: int
    epoch: int


class Reset(enum.Enum):
    """Why the producer must get a new identity before it sends again."""

    BUMP = "bump"
    """A gap in some partition: the same id with the next epoch."""
    NEW_ID = "new id"
    """This id's epoch was taken over (INVALID_PRODUCER_EPOCH): a new id."""


class _Partition:
    """Sequence state of one partition (see the module docstring)."""

    __slots__ = ("changed", "confirmed", "gap", "in_flight", "next_sequence", "requeued")

    def __init__(self) -> None:
        self.next_sequence = 0
        self.in_flight: deque[ProducerBatch] = deque()
        self.confirmed = False
        self.gap = False
        self.requeued = 0
        self.changed = asyncio.Event()

    def notify(self) -> None:
        """Wake the batches waiting for the head of this partition to move."""
        self.changed.set()
        self.changed = asyncio.Event()


class IdempotenceState:
    """The producer's identity and every partition's sequences (see the module docstring)."""

    def __init__(self, *, max_in_flight: int) -> None:
        if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
            raise ValueError(
                f"max_in_flight_per_partition must be 1 to {MAX_IN_FLIGHT} with idempotence "
                f"(brokers remember the last {MAX_IN_FLIGHT} batches), not {max_in_flight}"
            )
        self.max_in_flight = max_in_flight
        self.identity: ProducerIdentity | None = None
        self.reset: Reset | None = None
        self._partitions: dict[TopicPartitionKey, _Partition] = {}

    def _partition(self, tp: TopicPartitionKey) -> _Partition:
        state = self._partitions.get(tp)
        if state is None:
            state = self._partitions[tp] = _Partition()
        return state

    # --------------------------------------------------------------------------- sending

    @property
    def blocked(self) -> bool:
        """True while no batch may get a sequence: no identity yet, or a reset is due."""
        return self.identity is None or self.reset is not None

    def window(self, tp: TopicPartitionKey) -> int:
        """How many batches of ``tp`` may be in flight now."""
        state = self._partitions.get(tp)
        return self.max_in_flight if state is not None and state.confirmed else 1

    def assign(self, batch: ProducerBatch) -> None:
        """Give ``batch`` the identity and the partition's next sequence (in send order)."""
        identity = self.identity
        assert identity is not None and self.reset is None, "assign while blocked"
        state = self._partition((batch.topic, batch.partition))
        batch.producer_id = identity.producer_id
        batch.producer_epoch = identity.epoch
        batch.sequence = state.next_sequence
        state.next_sequence = (state.next_sequence + len(batch)) % SEQUENCE_MODULUS
        state.in_flight.append(batch)

    @staticmethod
    def headers(batch: ProducerBatch) -> dict[str, str]:
        """The request headers of ``batch`` (it has a sequence)."""
        return {
            PRODUCER_ID_HEADER: str(batch.producer_id),
            PRODUCER_EPOCH_HEADER: str(batch.producer_epoch),
            SEQUENCE_HEADER: str(batch.sequence),
        }

    def is_head(self, batch: ProducerBatch) -> bool:
        """True when every earlier batch of ``batch``'s partition is resolved."""
        in_flight = self._partition((batch.topic, batch.partition)).in_flight
        return not in_flight or in_flight[0] is batch

    async def wait_until_head(self, batch: ProducerBatch) -> None:
        state = self._partition((batch.topic, batch.partition))
        while state.in_flight and state.in_flight[0] is not batch:
            await state.changed.wait()

    def has_gap(self, batch: ProducerBatch) -> bool:
        """True when an earlier batch of this partition and epoch failed or was requeued."""
        return self._partition((batch.topic, batch.partition)).gap

    # ------------------------------------------------------------------------- outcomes

    def succeeded(self, batch: ProducerBatch) -> None:
        state = self._resolve(batch)
        state.confirmed = True

    def failed(self, batch: ProducerBatch, error: BaseException) -> None:
        """``batch`` fails for good: its partition has a gap, so the producer resets."""
        state = self._resolve(batch)
        state.gap = True
        if isinstance(error, InvalidProducerEpochError) or self.reset is Reset.NEW_ID:
            self.reset = Reset.NEW_ID
        else:
            self.reset = Reset.BUMP

    def requeue(self, batch: ProducerBatch) -> int:
        """``batch`` was refused after a gap (not written): it goes back to the front of its
        partition's queue, to be sent again after the reset. Clears its sequence; returns its
        index in that queue (after the partition's batches requeued before it)."""
        state = self._resolve(batch)
        state.gap = True
        if self.reset is None:
            self.reset = Reset.BUMP
        batch.producer_id = batch.producer_epoch = batch.sequence = -1
        state.requeued += 1
        return state.requeued - 1

    def _resolve(self, batch: ProducerBatch) -> _Partition:
        state = self._partition((batch.topic, batch.partition))
        state.in_flight.remove(batch)
        state.notify()
        return state

    # ------------------------------------------------------------------------- identity

    async def renew(self, call_any: CallAny) -> None:
        """Get the first identity, or the one the pending reset asks for (no batch may be in
        flight); every partition starts again at sequence 0."""
        assert not any(s.in_flight for s in self._partitions.values()), "renew with batches out"
        identity, reset = self.identity, self.reset
        if identity is not None and reset is Reset.BUMP:
            body = {"producer_id": identity.producer_id, "producer_epoch": identity.epoch}
            try:
                answer = await call_any("POST", "/producers", json=body)
            except InvalidProducerEpochError:  # the epoch is exhausted: start a new id
                reset = Reset.NEW_ID
                answer = await call_any("POST", "/producers", json={})
        else:
            answer = await call_any("POST", "/producers", json={})
        self.identity = ProducerIdentity(
            producer_id=int(answer["producer_id"]), epoch=int(answer["producer_epoch"])
        )
        self.reset = None
        for state in self._partitions.values():
            state.next_sequence = 0
            state.gap = False
            state.requeued = 0
            if reset is Reset.NEW_ID:
                state.confirmed = False
