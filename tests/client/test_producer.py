"""kclient producers (sync and asyncio) against a real broker."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from kclient import (
    Admin,
    ClosedError,
    Producer,
    RecordMetadata,
    aio,
    errors,
)
from kclient._accumulator import ProducerBatch
from kclient.protocol import partition_for_key
from tests.client.conftest import read_back, unique


def test_send_futures_callbacks_and_keyed_partitions(url: str, topic: str) -> None:
    delivered: list[tuple[RecordMetadata | None, BaseException | None]] = []
    done = threading.Event()

    def callback(metadata: RecordMetadata | None, error: BaseException | None) -> None:
        delivered.append((metadata, error))
        if len(delivered) == 30:
            done.set()

    with Producer(url, acks="all", linger_ms=20) as producer:
        futures = [
            producer.send(
                topic, f"v{i}".encode(), key=f"key-{i % 10}".encode(), on_delivery=callback
            )
            for i in range(30)
        ]
        metas = [f.result(timeout=30) for f in futures]
        assert done.wait(10)
    assert all(error is None for _, error in delivered)
    for i, meta in enumerate(metas):
        assert meta.topic == topic
        assert meta.partition == partition_for_key(f"key-{i % 10}".encode(), 3)
    by_partition: dict[int, list[int]] = {}
    for meta in metas:
        by_partition.setdefault(meta.partition, []).append(meta.offset)
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))  # in send order, no gaps
    records = read_back(url, topic, 30)
    assert {(r.partition, r.offset, r.key, r.value) for r in records} == {
        (m.partition, m.offset, f"key-{i % 10}".encode(), f"v{i}".encode())
        for i, m in enumerate(metas)
    }


def test_sticky_partitioning_of_keyless_records(url: str, topic: str) -> None:
    with Producer(url, linger_ms=1000, batch_size=4096) as producer:
        first = [producer.send(topic, b"x" * 100) for _ in range(20)]
        producer.flush()
        partitions = {f.result().partition for f in first}
        assert len(partitions) == 1, "one linger window of keyless records shares a partition"
        many = [producer.send(topic, b"y" * 100) for _ in range(600)]
        producer.flush()
    spread = Counter(f.result().partition for f in many)
    assert len(spread) >= 2, "full batches switch the sticky partition"


def test_explicit_partition_headers_timestamps_and_nulls(url: str, topic: str) -> None:
    with Producer(url) as producer:
        a = producer.send(
            topic,
            b"v",
            key=b"k",
            partition=2,
            headers=[("h1", b"x"), ("h2", None)],
            timestamp_ms=1_700_000_000_000,
        )
        b = producer.send(topic, None, key=b"tombstone", partition=2)
        c = producer.send(topic, b"", partition=2)
        assert a.result(10) == RecordMetadata(topic, 2, 0, 1_700_000_000_000)
        assert b.result(10).offset == 1 and c.result(10).offset == 2
        with pytest.raises(errors.UnknownPartitionError):
            producer.send(topic, b"v", partition=3)
    records = read_back(url, topic, 3)
    assert [(r.key, r.value, r.headers) for r in records] == [
        (b"k", b"v", (("h1", b"x"), ("h2", None))),
        (b"tombstone", None, ()),
        (None, b"", ()),
    ]
    assert records[0].timestamp == 1_700_000_000_000
    assert records[1].timestamp > 1_700_000_000_000  # stamped by the broker


def test_acks_levels(url: str, topic: str) -> None:
    for acks, expect_offset in (("0", False), (1, True), ("all", True)):
        with Producer(url, acks=acks) as producer:
            meta = producer.send(topic, b"a", partition=0).result(10)
        assert (meta.offset >= 0) is expect_offset, acks
    with pytest.raises(ValueError, match="acks"):
        Producer(url, acks=2)
    assert len(read_back(url, topic, 3)) == 3


def test_serializers(url: str, topic: str) -> None:
    with Producer(url, key_serializer="str", value_serializer="json") as producer:
        producer.send(topic, {"n": 1, "s": "é"}, key="k", partition=0)
        with pytest.raises(errors.SerializationError):
            producer.send(topic, {"bad": object()}, partition=0)
    with Producer(url, value_serializer=lambda v: str(v * 2).encode()) as producer:
        producer.send(topic, 21, partition=0)
    with Producer(url) as producer, pytest.raises(errors.SerializationError):
        producer.send(topic, "text needs a str serializer")
    records = read_back(url, topic, 2, key_deserializer="str", value_deserializer="bytes")
    assert [(r.key, r.value) for r in records] == [("k", b'{"n":1,"s":"\xc3\xa9"}'), (None, b"42")]


def test_flush_close_and_unknown_topic(url: str, topic: str) -> None:
    producer = Producer(url, linger_ms=60_000)
    futures = [producer.send(topic, b"later", partition=1) for _ in range(5)]
    assert not any(f.done() for f in futures)
    producer.flush(timeout=30)
    assert all(f.done() for f in futures)
    pending = producer.send(topic, b"at close", partition=1)
    producer.close()
    assert pending.result(0).offset == 5
    with pytest.raises(ClosedError):
        producer.send(topic, b"too late")
    with Producer(url) as other, pytest.raises(errors.UnknownTopicError):
        other.send("no-such-topic-" + topic, b"v")


def test_threads_share_one_producer(url: str, topic: str) -> None:
    with Producer(url, linger_ms=2) as producer:

        def work(n: int) -> None:
            for i in range(500):
                producer.send(topic, f"{n}-{i}".encode(), key=str(n).encode())

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    records = read_back(url, topic, 2000)
    assert len(records) == 2000
    for n in range(4):
        mine = [int(r.value.split(b"-")[1]) for r in records if r.key == str(n).encode()]
        assert mine == list(range(500)), "one key, one partition, send order"


async def test_aio_producer(url: str, topic: str) -> None:
    async with aio.Producer(url, value_serializer="str", linger_ms=1) as producer:
        meta = await producer.send_and_wait(topic, "hello", key=b"k")
        assert meta.partition == partition_for_key(b"k", 3)
        futures = [await producer.send(topic, f"m{i}", partition=0) for i in range(100)]
        await producer.flush()
        offsets = [(await f).offset for f in futures]
        assert offsets == sorted(offsets) and len(set(offsets)) == 100
        assert await producer.partitions_for(topic) == [0, 1, 2]


async def test_buffer_memory_applies_backpressure(url: str, topic: str) -> None:
    async with aio.Producer(url, buffer_memory=64 * 1024, batch_size=16 * 1024) as producer:
        for i in range(3000):
            await producer.send(topic, b"z" * 100, partition=i % 3)
            assert producer._buffered <= 64 * 1024 + 200
        await producer.flush()


# ------------------------------------------------------------------ retries (fault injection)


class Flaky:
    """Replaces Producer._post: the first ``fail`` posts raise ``error`` (after really posting
    when the error says after_append, as a lost acknowledgement would)."""

    def __init__(self, producer: aio.Producer, error: Exception, fail: int = 1) -> None:
        self.real = producer._post
        self.error = error
        self.fail = fail
        self.calls = 0

    async def __call__(self, url: str, batch: ProducerBatch) -> int | None:
        self.calls += 1
        if self.calls <= self.fail:
            if getattr(self.error, "after_append", False):
                await self.real(url, batch)
            raise self.error
        return await self.real(url, batch)


async def test_retriable_errors_are_retried_with_metadata_refresh(url: str, topic: str) -> None:
    async with aio.Producer(url, retry_backoff_ms=10) as producer:
        for error in (errors.NotLeaderError("moved"), errors.BrokerUnavailableError("refused")):
            flaky = Flaky(producer, error, fail=2)
            producer._post = flaky  # type: ignore[method-assign]
            meta = await producer.send_and_wait(topic, b"v", partition=0)
            assert flaky.calls == 3 and meta.offset >= 0
            assert topic in producer.metadata.topics  # re-read after the leader error


async def test_non_retriable_and_ambiguous_errors_fail_without_resend(url: str, topic: str) -> None:
    """Without idempotence (tests/client/test_idempotence.py has the default)."""
    async with aio.Producer(url, retry_backoff_ms=10, enable_idempotence=False) as producer:
        flaky = Flaky(producer, errors.RecordTooLargeError("big"))
        producer._post = flaky  # type: ignore[method-assign]
        with pytest.raises(errors.RecordTooLargeError):
            await producer.send_and_wait(topic, b"v", partition=1)
        assert flaky.calls == 1
        ambiguous = errors.RequestTimedOutError("acks=all timed out", after_append=True)
        flaky = Flaky(producer, ambiguous)
        producer._post = flaky  # type: ignore[method-assign]
        with pytest.raises(errors.RequestTimedOutError):
            await producer.send_and_wait(topic, b"once", partition=1)
        assert flaky.calls == 1, "after_append: never resent by default"
    async with aio.Producer(
        url, retry_backoff_ms=10, retry_ambiguous=True, enable_idempotence=False
    ) as producer:
        flaky = Flaky(producer, errors.RequestTimedOutError("lost ack", after_append=True))
        producer._post = flaky  # type: ignore[method-assign]
        await producer.send_and_wait(topic, b"twice", partition=1)
        assert flaky.calls == 2
    values = [r.value for r in read_back(url, topic, 3) if r.partition == 1]
    assert values == [b"once", b"twice", b"twice"], "the opt-in resend duplicated the record"


async def test_delivery_timeout_bounds_retries(url: str, topic: str) -> None:
    async with aio.Producer(url, retry_backoff_ms=50, delivery_timeout_ms=400) as producer:
        flaky = Flaky(producer, errors.LeaderNotAvailableError("no leader"), fail=1000)
        producer._post = flaky  # type: ignore[method-assign]
        with pytest.raises(errors.LeaderNotAvailableError):
            await producer.send_and_wait(topic, b"v", partition=0)
        assert 2 <= flaky.calls < 20


def test_admin_created_topic_is_produced_to_at_once(url: str) -> None:
    name = unique("fresh")
    with Admin(url) as admin:
        admin.create_topic(name, partitions=1)
    with Producer(url) as producer:
        assert producer.send(name, b"v").result(10).offset == 0
