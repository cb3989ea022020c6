"""kclient consumers (sync and asyncio) against a real broker: assignment, positions,
resets, commits, groups and rebalances."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from kclient import (
    Admin,
    CommitFailedError,
    Consumer,
    ConsumerRecord,
    NoOffsetForPartitionError,
    OffsetAndMetadata,
    Producer,
    RebalanceListener,
    TopicPartition,
    aio,
    errors,
)
from tests.client.conftest import unique


def fill(url: str, topic: str, per_partition: int, partitions: int = 3) -> None:
    with Producer(url, value_serializer="str", key_serializer="str") as producer:
        for p in range(partitions):
            for i in range(per_partition):
                producer.send(topic, f"p{p}-{i}", key=f"k{i}", partition=p)


def poll_until(consumer: Consumer, count: int, timeout: float = 20) -> list[ConsumerRecord]:
    out: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        out += consumer.poll(0.5)
    return out


def test_assign_poll_max_records_and_iteration(url: str, topic: str) -> None:
    fill(url, topic, 50)
    with Consumer(
        url,
        auto_offset_reset="earliest",
        value_deserializer="str",
        key_deserializer="str",
        consumer_timeout_ms=1500,
    ) as consumer:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 2)])
        assert consumer.assignment() == {TopicPartition(topic, 0), TopicPartition(topic, 2)}
        batch: list[ConsumerRecord] = []
        while not batch:
            batch = consumer.poll(5, max_records=7)
        assert len(batch) <= 7
        rest = list(consumer)  # stops after 1.5 s without records
    records = batch + rest
    assert len(records) == 100
    for p in (0, 2):
        mine = [r for r in records if r.partition == p]
        assert [r.offset for r in mine] == list(range(50))
        assert [r.value for r in mine] == [f"p{p}-{i}" for i in range(50)]
        assert mine[3].key == "k3" and mine[0].topic == topic


def test_seek_position_and_resets(url: str, topic: str) -> None:
    fill(url, topic, 20)
    tp = TopicPartition(topic, 1)
    with Consumer(url, auto_offset_reset="latest") as consumer:
        consumer.assign([tp])
        assert consumer.position(tp) == 20  # latest: the high watermark
        consumer.seek(tp, 5)
        assert consumer.position(tp) == 5
        assert poll_until(consumer, 1)[0].offset == 5
        consumer.seek_to_beginning(tp)
        assert poll_until(consumer, 1)[0].offset == 0
        consumer.seek_to_end()
        assert consumer.position(tp) == 20
        assert consumer.poll(0.3) == []
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        assert consumer.end_offsets([tp]) == {tp: 20}
        assert consumer.highwater(tp) == 20
        with pytest.raises(errors.IllegalStateError):
            consumer.seek(TopicPartition(topic, 0), 1)
        consumer.seek(tp, 500)  # out of range: reset by policy (latest)
        assert consumer.poll(1.0) == []
        assert consumer.position(tp) == 20
    with Consumer(url, auto_offset_reset="earliest") as consumer:
        consumer.assign([tp])
        consumer.seek(tp, 500)
        assert poll_until(consumer, 1)[0].offset == 0
    with Consumer(url, auto_offset_reset="none", group_id=unique("g")) as consumer:
        consumer.assign([tp])
        with pytest.raises(NoOffsetForPartitionError):
            consumer.poll(2.0)


def test_deserializers_and_json_codec(url: str, topic: str) -> None:
    with Producer(url, value_serializer="json", key_serializer="json") as producer:
        producer.send(topic, {"a": [1, 2]}, key={"id": 7}, partition=0)
        producer.send(topic, None, key="k", partition=0)
    with Consumer(
        url, auto_offset_reset="earliest", value_deserializer="json", key_deserializer="json"
    ) as consumer:
        consumer.assign([TopicPartition(topic, 0)])
        records = poll_until(consumer, 2)
    assert [(r.key, r.value) for r in records] == [({"id": 7}, {"a": [1, 2]}), ("k", None)]
    with Consumer(
        url, auto_offset_reset="earliest", value_deserializer=lambda b: b.upper()
    ) as consumer:
        consumer.assign([TopicPartition(topic, 0)])
        assert poll_until(consumer, 1)[0].value == b'{"A":[1,2]}'


def test_commit_sync_async_explicit_and_committed(url: str, topic: str, group: str) -> None:
    fill(url, topic, 10)
    tp = TopicPartition(topic, 0)
    with Consumer(
        url, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    ) as consumer:
        consumer.assign([tp])
        assert consumer.committed(tp) is None
        records = poll_until(consumer, 10)
        assert len([r for r in records if r.partition == 0]) == 10
        consumer.commit()
        assert consumer.committed(tp) == OffsetAndMetadata(10, "")
        consumer.commit({tp: OffsetAndMetadata(4, "checkpoint")})
        assert consumer.committed(tp) == OffsetAndMetadata(4, "checkpoint")
        results: list[Any] = []
        consumer.commit_async(
            {tp: 6}, callback=lambda offsets, error: results.append((offsets, error))
        ).result(10)
        assert results == [({tp: OffsetAndMetadata(6)}, None)]
        assert consumer.committed(tp) == OffsetAndMetadata(6, "")
    with Consumer(url, group_id=group, auto_offset_reset="earliest") as consumer:
        consumer.assign([tp])
        assert poll_until(consumer, 1)[0].offset == 6  # resumes from the committed offset
    with Consumer(url) as groupless:
        groupless.assign([tp])
        with pytest.raises(errors.InvalidGroupIdError):
            groupless.commit()


def test_auto_commit_commits_the_previous_polls(url: str, topic: str, group: str) -> None:
    fill(url, topic, 30, partitions=1)
    tp = TopicPartition(topic, 0)
    with Consumer(
        url, group_id=group, auto_offset_reset="earliest", auto_commit_interval_ms=100
    ) as consumer:
        consumer.assign([tp])
        got = consumer.poll(10, max_records=10)
        while len(got) < 10:
            got += consumer.poll(10, max_records=10 - len(got))
        time.sleep(0.3)
        # This poll commits what the previous polls returned (10), then returns more.
        more = consumer.poll(5, max_records=5)
        assert more and more[0].offset == 10
        deadline = time.monotonic() + 10
        while consumer.committed(tp) != OffsetAndMetadata(10, "") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert consumer.committed(tp) == OffsetAndMetadata(10, "")
    with Admin(url) as admin:  # close() committed the final position
        assert admin.list_group_offsets(group)[tp].offset == 15


class Recorder(RebalanceListener):
    def __init__(self, consumer: Consumer | None = None) -> None:
        self.events: list[tuple[str, list[TopicPartition]]] = []
        self.consumer = consumer

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.events.append(("revoked", revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.events.append(("assigned", assigned))
        if self.consumer is not None and assigned:  # listeners may use the consumer
            self.consumer.position(assigned[0])


def test_group_rebalance_callbacks_and_leave(url: str, topic: str, group: str) -> None:
    fill(url, topic, 20)
    settings: dict[str, Any] = {
        "group_id": group,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 6000,
        "value_deserializer": "str",
    }
    first = Consumer(url, **settings)
    one = Recorder(first)
    first.subscribe([topic], listener=one)
    assert first.subscription() == {topic}
    records = poll_until(first, 60)
    assert len(records) == 60
    assert one.events == [("assigned", [TopicPartition(topic, p) for p in range(3)])]
    first.commit()

    second = Consumer(url, **settings)
    two = Recorder()
    second.subscribe([topic], listener=two)
    stop = threading.Event()

    def keep_polling() -> None:
        while not stop.is_set():
            first.poll(0.2)

    poller = threading.Thread(target=keep_polling)
    poller.start()
    try:
        deadline = time.monotonic() + 30
        while len(second.assignment()) == 0 and time.monotonic() < deadline:
            second.poll(0.2)
    finally:
        stop.set()
        poller.join()
    assert len(first.assignment()) + len(second.assignment()) == 3
    assert first.assignment().isdisjoint(second.assignment())
    assert one.events[1][0] == "revoked" and one.events[2][0] == "assigned"
    assert second.poll(0.5) == []  # everything was committed before the rebalance
    with Admin(url) as admin:
        described = admin.describe_group(group)
        assert described.state == "Stable" and len(described.members) == 2
        assert {m.member_id for m in described.members} == {first.member_id, second.member_id}
        assert sum(lag.lag for lag in admin.group_lag(group)) == 0
    first.close()  # leaves: the survivor takes every partition
    deadline = time.monotonic() + 30
    while len(second.assignment()) < 3 and time.monotonic() < deadline:
        second.poll(0.2)
    assert len(second.assignment()) == 3
    second.close()


def test_pattern_subscription_and_static_membership(url: str, group: str) -> None:
    prefix = unique("pat")
    with Admin(url) as admin:
        for suffix in ("a", "b"):
            admin.create_topic(f"{prefix}-{suffix}", partitions=1)
        admin.create_topic(unique("other"), partitions=1)
    consumer = Consumer(url, group_id=group, group_instance_id="host-1", session_timeout_ms=6000)
    consumer.subscribe(pattern=f"{prefix}-.*")
    deadline = time.monotonic() + 20
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.2)
    assert {tp.topic for tp in consumer.assignment()} == {f"{prefix}-a", f"{prefix}-b"}
    consumer.close()  # static members do not leave
    with Admin(url) as admin:
        assert [m.group_instance_id for m in admin.describe_group(group).members] == ["host-1"]
    again = Consumer(url, group_id=group, group_instance_id="host-1", session_timeout_ms=6000)
    again.subscribe(pattern=f"{prefix}-.*")
    deadline = time.monotonic() + 20
    while not again.assignment() and time.monotonic() < deadline:
        again.poll(0.2)
    assert again.assignment() == {
        TopicPartition(f"{prefix}-a", 0),
        TopicPartition(f"{prefix}-b", 0),
    }
    with Admin(url) as admin:  # the same single static member, no second one
        assert [m.group_instance_id for m in admin.describe_group(group).members] == ["host-1"]
    again.close()


def test_stale_generation_commit_fails(url: str, topic: str, group: str) -> None:
    with Consumer(url, group_id=group, session_timeout_ms=6000) as consumer:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        impl = consumer._impl
        assert impl._group is not None
        impl._group.generation_id -= 1  # as if a rebalance had happened meanwhile
        with pytest.raises(CommitFailedError):
            consumer.commit({TopicPartition(topic, 0): 1})
        assert consumer._impl.rebalance_needed


async def test_aio_consumer_group_and_iteration(url: str, topic: str, group: str) -> None:
    fill(url, topic, 5)
    events: list[str] = []

    class Listener(RebalanceListener):
        async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
            await asyncio.sleep(0)
            events.append(f"assigned {len(assigned)}")

    async with aio.Consumer(
        url,
        group_id=group,
        auto_offset_reset="earliest",
        value_deserializer="str",
        consumer_timeout_ms=1500,
    ) as consumer:
        consumer.subscribe([topic], listener=Listener())
        values = [record.value async for record in consumer]
        assert sorted(values) == sorted(f"p{p}-{i}" for p in range(3) for i in range(5))
        assert events == ["assigned 3"]
        await consumer.commit()
        tp = TopicPartition(topic, 0)
        assert await consumer.committed(tp) == OffsetAndMetadata(5, "")
        assert await consumer.position(tp) == 5
        task = consumer.commit_async({tp: 2})
        await task
        assert (await consumer.committed(tp)) == OffsetAndMetadata(2, "")
        assert await consumer.topics() and topic in await consumer.topics()


async def test_a_member_of_many_partitions_rebalances_when_another_joins(
    url: str, group: str
) -> None:
    # 64 partitions: 64 long-polling fetches. A heartbeat must not wait behind them for a
    # connection, or the first member never learns of the rebalance and both hold everything.
    name = unique("wide")
    with Admin(url) as admin:
        admin.create_topic(name, partitions=64, replication_factor=1)
    stop = asyncio.Event()

    async def polling(consumer: aio.Consumer) -> None:
        while not stop.is_set():
            await consumer.poll(timeout=0.05)

    first = aio.Consumer(url, group_id=group, enable_auto_commit=False)
    second = aio.Consumer(url, group_id=group, enable_auto_commit=False)
    async with first, second, asyncio.TaskGroup() as tasks:
        first.subscribe([name])
        tasks.create_task(polling(first))
        deadline = time.monotonic() + 20
        while len(first.assignment()) < 64:
            assert time.monotonic() < deadline, "the first member never got its partitions"
            await asyncio.sleep(0.05)
        second.subscribe([name])
        tasks.create_task(polling(second))
        deadline = time.monotonic() + 15  # heartbeat 3 s, session 10 s: well before expiry
        while True:
            mine, theirs = set(first.assignment()), set(second.assignment())
            if len(mine) == len(theirs) == 32 and not mine & theirs:
                break
            assert time.monotonic() < deadline, (len(mine), len(theirs), len(mine & theirs))
            await asyncio.sleep(0.05)
        assert first.generation_id == second.generation_id
        stop.set()
