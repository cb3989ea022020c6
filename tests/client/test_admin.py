"""kclient Admin against a real broker: topics, configs, cluster, groups."""

from __future__ import annotations

import pytest

from kclient import Admin, Consumer, OffsetSpec, Producer, TopicPartition, aio, errors
from tests.client.conftest import unique


def test_topic_lifecycle_and_configs(url: str) -> None:
    name = unique("adm")
    with Admin(url) as admin:
        admin.create_topic(name, partitions=2, replication_factor=1, validate_only=True)
        assert name not in admin.list_topics()
        admin.create_topic(name, partitions=2, configs={"retention.ms": "3600000"})
        with pytest.raises(errors.TopicAlreadyExistsError):
            admin.create_topic(name, partitions=2)
        assert name in admin.list_topics()
        listing = next(t for t in admin.topic_listings() if t.name == name)
        assert (listing.partitions, listing.replication_factor, listing.offline_partitions) == (
            2,
            1,
            0,
        )
        described = admin.describe_topic(name)
        assert [p.partition for p in described.partitions] == [0, 1]
        assert described.configs["retention.ms"] == "3600000"
        assert described.partitions[0].leader == 1 and described.replication_factor == 1
        configs = {c.name: c for c in admin.describe_configs(name)}
        assert not configs["retention.ms"].is_default and configs["segment.ms"].is_default
        admin.alter_configs(
            name, set_configs={"segment.ms": "60000"}, delete_configs=["retention.ms"]
        )
        configs = {c.name: c for c in admin.describe_configs(name)}
        assert configs["segment.ms"].value == "60000" and configs["retention.ms"].is_default
        with pytest.raises(errors.InvalidConfigError):
            admin.alter_configs(name, set_configs={"retention.ms": "soon"})
        admin.create_partitions(name, 4)
        assert len(admin.describe_topic(name).partitions) == 4
        with pytest.raises(errors.InvalidPartitionsError):
            admin.create_partitions(name, 3)
        assert [d.name for d in admin.describe_topics([name])] == [name]
        admin.delete_topic(name)
        assert name not in admin.list_topics()
        with pytest.raises(errors.UnknownTopicError):
            admin.delete_topic(name)


def test_describe_cluster(url: str) -> None:
    with Admin([url]) as admin:
        cluster = admin.describe_cluster()
    assert cluster.controller == 1
    assert [(b.broker_id, b.url, b.is_controller) for b in cluster.brokers] == [(1, url, True)]


def test_groups_lag_and_offset_resets(url: str, topic: str, group: str) -> None:
    with Producer(url) as producer:
        for i in range(10):
            producer.send(topic, b"%d" % i, partition=i % 2)
        producer.flush()
        stamp = producer.send(topic, b"late", partition=0, timestamp_ms=4_000_000_000_000)
        stamp.result(10)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    with Consumer(url, group_id=group, session_timeout_ms=6000) as consumer:
        consumer.subscribe([topic])
        while not consumer.assignment():
            consumer.poll(0.2)
        consumer.commit({tp0: 2, tp1: 5})
        with Admin(url) as admin:
            assert any(g.group_id == group and g.members == 1 for g in admin.list_groups())
            lag = {(x.topic, x.partition): x for x in admin.group_lag(group)}
            assert (lag[topic, 0].committed, lag[topic, 0].log_end_offset, lag[topic, 0].lag) == (
                2,
                6,
                4,
            )
            assert lag[topic, 1].lag == 0 and lag[topic, 0].consumer_id == consumer.member_id
            with pytest.raises(errors.GroupNotEmptyError):
                admin.reset_group_offsets(group, topic, to="earliest")
            with pytest.raises(errors.GroupNotEmptyError):
                admin.delete_group(group)
    with Admin(url) as admin:
        assert admin.describe_group(group).state == "Empty"
        assert admin.reset_group_offsets(group, topic, to=OffsetSpec.LATEST) == {
            tp0: 6,
            tp1: 5,
            TopicPartition(topic, 2): 0,
        }
        assert admin.reset_group_offsets(group, topic, to="earliest", partitions=[0]) == {tp0: 0}
        assert admin.reset_group_offsets(group, topic, to="offset", offset=3, partitions=[1]) == {
            tp1: 3
        }
        assert admin.reset_group_offsets(
            group, topic, to="timestamp", timestamp=3_000_000_000_000, partitions=[0]
        ) == {tp0: 5}
        offsets = admin.list_group_offsets(group)
        assert (offsets[tp0].offset, offsets[tp1].offset) == (5, 3)
        with pytest.raises(ValueError, match="offset="):
            admin.reset_group_offsets(group, topic, to="offset")
        admin.delete_group(group)
        assert group not in {g.group_id for g in admin.list_groups()}


async def test_aio_admin(url: str) -> None:
    name = unique("aio")
    async with aio.Admin(url) as admin:
        await admin.create_topic(name, partitions=1)
        assert (await admin.describe_topic(name)).partitions[0].high_watermark == 0
        await admin.delete_topic(name)
        assert name not in await admin.list_topics()
