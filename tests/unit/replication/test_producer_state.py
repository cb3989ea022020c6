"""Idempotent-producer state of one partition (kbroker.replication.producer_state)."""

from __future__ import annotations

import pytest

from kbroker.errors import BrokerError, ErrorCode
from kbroker.replication.producer_state import (
    BATCHES_TO_RETAIN,
    SEQUENCE_MODULUS,
    Duplicate,
    ProducerStateManager,
)

PID = 7


def append(
    state: ProducerStateManager, epoch: int, first_seq: int, count: int, offset: int
) -> None:
    assert state.check(PID, epoch, first_seq, count) is None
    state.record(PID, epoch, first_seq, offset, offset + count - 1)


def refused(state: ProducerStateManager, epoch: int, first_seq: int, count: int) -> ErrorCode:
    with pytest.raises(BrokerError) as info:
        state.check(PID, epoch, first_seq, count)
    return info.value.code


def test_a_retry_of_a_retained_batch_gets_its_original_offsets() -> None:
    state = ProducerStateManager()
    append(state, 0, 0, 10, 100)
    append(state, 0, 10, 5, 200)
    assert state.check(PID, 0, 0, 10) == Duplicate(100, 109)
    assert state.check(PID, 0, 10, 5) == Duplicate(200, 204)


def test_a_gap_and_an_old_epoch_are_refused() -> None:
    state = ProducerStateManager()
    append(state, 1, 0, 3, 0)
    assert refused(state, 1, 5, 1) is ErrorCode.OUT_OF_ORDER_SEQUENCE
    assert refused(state, 0, 3, 1) is ErrorCode.INVALID_PRODUCER_EPOCH
    assert refused(state, 2, 4, 1) is ErrorCode.OUT_OF_ORDER_SEQUENCE  # new epoch not at 0
    append(state, 2, 0, 1, 3)


def test_unknown_producers_and_plain_records_are_accepted() -> None:
    state = ProducerStateManager()
    assert state.check(PID, 0, 1234, 3) is None
    assert state.check(-1, -1, -1, 3) is None


def test_only_the_last_batches_are_retained() -> None:
    state = ProducerStateManager()
    for i in range(BATCHES_TO_RETAIN + 1):
        append(state, 0, i, 1, i)
    assert state.check(PID, 0, BATCHES_TO_RETAIN, 1) == Duplicate(
        BATCHES_TO_RETAIN, BATCHES_TO_RETAIN
    )
    assert refused(state, 0, 0, 1) is ErrorCode.OUT_OF_ORDER_SEQUENCE


def test_sequences_wrap_at_two_to_the_31() -> None:
    state = ProducerStateManager()
    top = SEQUENCE_MODULUS - 1
    append(state, 0, top - 4, 3, 0)  # top-4 .. top-2
    append(state, 0, top - 1, 4, 3)  # top-1, top, 0, 1: a batch across the wrap
    assert state.check(PID, 0, top - 1, 4) == Duplicate(3, 6)
    append(state, 0, 2, 1, 7)  # continues after the wrap
    assert refused(state, 0, SEQUENCE_MODULUS, 1) is ErrorCode.OUT_OF_ORDER_SEQUENCE
