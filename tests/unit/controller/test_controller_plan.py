"""The controller's pure planning step: ClusterMetadata in, partition state writes out."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import cast

import pytest

from kbroker.cluster import (
    NO_LEADER,
    BrokerInfo,
    ClusterMetadata,
    LeaderAndIsr,
    PartitionInfo,
    TopicInfo,
)
from kbroker.config import BrokerConfig
from kbroker.controller.controller import Controller
from kbroker.coordination.fencing import ControllerEpoch
from kbroker.coordination.zk import ZooKeeperClient

CONTROLLER_EPOCH = 7


class StillClock:
    def now_ms(self) -> int:
        return 0

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("planning never sleeps")


def state(leader: int, isr: Sequence[int], *, epoch: int = 3, version: int = 11) -> LeaderAndIsr:
    return LeaderAndIsr(
        leader=leader,
        leader_epoch=epoch,
        isr=tuple(isr),
        controller_epoch=CONTROLLER_EPOCH - 1,
        zk_version=version,
    )


def topic(
    name: str,
    *partitions: tuple[Sequence[int], LeaderAndIsr | None],
    configs: Mapping[str, str] | None = None,
    deleting: bool = False,
) -> TopicInfo:
    return TopicInfo(
        name=name,
        topic_id=f"id-{name}",
        partitions=tuple(
            PartitionInfo(topic=name, partition=i, replicas=tuple(replicas), state=s)
            for i, (replicas, s) in enumerate(partitions)
        ),
        configs=configs or {},
        deleting=deleting,
    )


def cluster(live: Sequence[int], *topics: TopicInfo) -> ClusterMetadata:
    return ClusterMetadata(
        cluster_id="c",
        controller_id=1,
        brokers={b: BrokerInfo(broker_id=b, url=f"http://b{b}") for b in live},
        topics={t.name: t for t in topics},
    )


def make_controller(*, unclean: bool = False) -> Controller:
    config = BrokerConfig.build(
        {
            "broker.id": 1,
            "zookeeper.connect": "zk:2181",
            "data.dir": "/unused",
            "unclean.leader.election.enable": unclean,
        }
    )
    controller = Controller(
        zk=cast(ZooKeeperClient, object()),  # planning never touches ZooKeeper
        config=config,
        metadata=ClusterMetadata,
        clock=StillClock(),
        rng=random.Random(0),
    )
    controller.epoch = ControllerEpoch(epoch=CONTROLLER_EPOCH, zk_version=4)
    return controller


def plan_writes(
    controller: Controller, metadata: ClusterMetadata
) -> dict[tuple[str, int], LeaderAndIsr]:
    plan = controller._plan(metadata, set(metadata.brokers))
    assert not plan.creates and not plan.deletions
    return {(info.topic, info.partition): new for info, new in plan.writes}


def only_write(controller: Controller, metadata: ClusterMetadata) -> LeaderAndIsr:
    writes = plan_writes(controller, metadata)
    assert list(writes) == [("t", 0)]
    return writes[("t", 0)]


# --------------------------------------------------------------------------- leader death


def test_healthy_partition_needs_nothing() -> None:
    metadata = cluster([1, 2, 3], topic("t", ([1, 2, 3], state(1, [1, 2, 3]))))
    assert plan_writes(make_controller(), metadata) == {}


def test_dead_leader_replaced_by_first_live_isr_replica_in_assignment_order() -> None:
    metadata = cluster([2, 3, 4], topic("t", ([1, 3, 2, 4], state(1, [1, 2, 3]))))
    new = only_write(make_controller(), metadata)
    assert new.leader == 3  # assignment order [1, 3, 2, 4], not ISR order
    assert new.leader_epoch == 4
    assert new.isr == (2, 3)  # live members of the old ISR only (4 is not in it)
    assert new.controller_epoch == CONTROLLER_EPOCH
    assert new.zk_version == 11  # conditional on the version read


def test_all_isr_dead_goes_offline_keeping_isr() -> None:
    metadata = cluster([3], topic("t", ([1, 2, 3], state(1, [1, 2]))))
    new = only_write(make_controller(), metadata)
    assert new.leader == NO_LEADER
    assert new.leader_epoch == 4
    assert new.isr and set(new.isr) <= {1, 2}  # never emptied, never gains the stale 3
    # Once offline, nothing more is written while no ISR member is back...
    offline = cluster([3], topic("t", ([1, 2, 3], state(NO_LEADER, [1, 2], epoch=4))))
    assert plan_writes(make_controller(), offline) == {}
    # ...and the first ISR member to come back leads.
    back = cluster([2, 3], topic("t", ([1, 2, 3], state(NO_LEADER, [1, 2], epoch=4))))
    new = only_write(make_controller(), back)
    assert (new.leader, new.leader_epoch, new.isr) == (2, 5, (2,))


def test_unclean_election_only_when_the_topic_allows() -> None:
    dead_isr = ([1, 2, 3], state(1, [1]))
    metadata = cluster([2, 3], topic("t", dead_isr))
    assert only_write(make_controller(), metadata).leader == NO_LEADER
    allowed = cluster(
        [2, 3], topic("t", dead_isr, configs={"unclean.leader.election.enable": "true"})
    )
    new = only_write(make_controller(), allowed)
    assert (new.leader, new.leader_epoch, new.isr) == (2, 4, (2,))
    # The broker default applies to topics without an override, and a topic can opt out.
    assert only_write(make_controller(unclean=True), metadata).leader == 2
    opted_out = cluster(
        [2, 3], topic("t", dead_isr, configs={"unclean.leader.election.enable": "false"})
    )
    assert only_write(make_controller(unclean=True), opted_out).leader == NO_LEADER


def test_unclean_election_from_offline_state() -> None:
    offline = ([1, 2, 3], state(NO_LEADER, [1], epoch=4))
    metadata = cluster([3], topic("t", offline, configs={"unclean.leader.election.enable": "true"}))
    new = only_write(make_controller(), metadata)
    assert (new.leader, new.leader_epoch, new.isr) == (3, 5, (3,))


def test_dead_follower_leaves_isr_without_epoch_bump() -> None:
    metadata = cluster([1, 3], topic("t", ([1, 2, 3], state(1, [1, 2, 3]))))
    new = only_write(make_controller(), metadata)
    assert (new.leader, new.leader_epoch, new.isr, new.zk_version) == (1, 3, (1, 3), 11)


def test_independent_partitions_and_topics() -> None:
    metadata = cluster(
        [1, 2],
        topic("t", ([1, 2], state(1, [1, 2])), ([3, 2], state(3, [3, 2])), ([2, 3], state(2, [2]))),
        topic("u", ([3, 1], state(1, [1, 3]))),
    )
    writes = plan_writes(make_controller(), metadata)
    assert set(writes) == {("t", 1), ("u", 0)}
    assert (writes[("t", 1)].leader, writes[("t", 1)].isr) == (2, (2,))
    assert (writes[("u", 0)].leader, writes[("u", 0)].leader_epoch) == (1, 3)
    assert writes[("u", 0)].isr == (1,)


# --------------------------------------------------------------------- controlled shutdown


def test_controlled_shutdown_moves_leadership_off_the_broker() -> None:
    controller = make_controller()
    controller.shutting_down.add(1)
    metadata = cluster(
        [1, 2, 3],
        topic("t", ([1, 2, 3], state(1, [1, 2, 3])), ([2, 1, 3], state(2, [2, 1, 3]))),
    )
    writes = plan_writes(controller, metadata)
    led = writes[("t", 0)]
    assert (led.leader, led.leader_epoch, led.isr) == (2, 4, (2, 3))
    followed = writes[("t", 1)]  # a follower on the broker just leaves the ISR
    assert (followed.leader, followed.leader_epoch, followed.isr) == (2, 3, (2, 3))


def test_controlled_shutdown_without_successor_goes_offline() -> None:
    # kbroker's documented choice (module docstring): a shutting-down leader with no other live
    # in-sync replica is replaced by "no leader" (epoch bumped, ISR kept), so the broker's
    # controlled_shutdown() count reaches 0 and it may stop. Kafka instead leaves such a
    # partition with its leader until the broker really stops.
    controller = make_controller()
    controller.shutting_down.add(1)
    metadata = cluster([1, 2, 3], topic("t", ([1, 2, 3], state(1, [1])), ([1], state(1, [1]))))
    writes = plan_writes(controller, metadata)
    for tp in (("t", 0), ("t", 1)):
        assert (writes[tp].leader, writes[tp].leader_epoch, writes[tp].isr) == (NO_LEADER, 4, (1,))
    # It is not handed back to the shutting-down broker while it is still registered.
    offline = cluster([1, 2, 3], topic("t", ([1, 2, 3], state(NO_LEADER, [1], epoch=4))))
    assert plan_writes(controller, offline) == {}


def test_shutting_down_broker_not_elected_for_a_dead_leader() -> None:
    controller = make_controller()
    controller.shutting_down.add(2)
    metadata = cluster([2, 3], topic("t", ([1, 2, 3], state(1, [1, 2, 3]))))
    new = only_write(controller, metadata)
    assert (new.leader, new.isr) == (3, (3,))


# ----------------------------------------------------------------------- preferred leader


def test_preferred_election() -> None:
    controller = make_controller()
    metadata = cluster([1, 2, 3], topic("t", ([1, 2, 3], state(2, [2, 3, 1]))))
    assert plan_writes(controller, metadata) == {}  # not asked: leadership stays
    controller._preferred.add(("t", 0))
    new = only_write(controller, metadata)
    assert (new.leader, new.leader_epoch, new.isr) == (1, 4, (2, 3, 1))
    assert ("t", 0) not in controller._preferred  # asked once, done once


@pytest.mark.parametrize(
    ("live", "isr"),
    [([1, 2, 3], [2, 3]), ([2, 3], [2, 3])],  # preferred out of sync / preferred dead
)
def test_preferred_election_needs_a_live_in_sync_preferred(live: list[int], isr: list[int]) -> None:
    controller = make_controller()
    controller._preferred.add(("t", 0))
    metadata = cluster(live, topic("t", ([1, 2, 3], state(2, isr))))
    assert plan_writes(controller, metadata) == {}
    assert ("t", 0) not in controller._preferred


def test_schedule_rebalance_queues_imbalanced_brokers() -> None:
    controller = make_controller()
    metadata = cluster(
        [1, 2, 3],
        topic(
            "t",
            ([1, 2], state(2, [1, 2])),
            ([1, 3], state(1, [1, 3])),
            ([2, 3], state(2, [2, 3])),
        ),
    )
    controller._schedule_rebalance(metadata)  # broker 1: 1 of 2 misplaced (50% > 10%)
    assert controller._preferred == {("t", 0)}
    assert only_write(controller, metadata).leader == 1


# -------------------------------------------------------------------- creation and deletion


def test_new_partitions_get_first_live_replica_and_live_isr() -> None:
    controller = make_controller()
    controller.shutting_down.add(4)
    metadata = cluster([2, 3, 4], topic("t", ([1, 3, 2], None), ([4, 2], None), ([1, 5], None)))
    plan = controller._plan(metadata, set(metadata.brokers))
    creates = {info.partition: new for info, new in plan.creates}
    assert set(creates) == {0, 1}  # partition 2 has no live replica: nothing to create
    assert (creates[0].leader, creates[0].isr, creates[0].leader_epoch) == (3, (3, 2), 0)
    assert (creates[1].leader, creates[1].isr) == (2, (2,))
    assert creates[0].controller_epoch == CONTROLLER_EPOCH
    assert not plan.writes and not plan.deletions


def test_initial_state_direct() -> None:
    controller = make_controller()
    info = PartitionInfo(topic="t", partition=0, replicas=(5, 6, 7))
    assert controller._initial_state(info, {6, 7}, 9) == LeaderAndIsr(
        leader=6, leader_epoch=0, isr=(6, 7), controller_epoch=9
    )
    assert controller._initial_state(info, set(), 9) is None


def test_deleting_topics_are_planned_for_deletion_only() -> None:
    controller = make_controller()
    doomed = topic("gone", ([1, 2], state(1, [1, 2])), ([2, 1], None), deleting=True)
    metadata = cluster([2], doomed, topic("t", ([2], state(2, [2]))))
    plan = controller._plan(metadata, set(metadata.brokers))
    assert plan.deletions == [doomed]
    assert not plan.writes and not plan.creates


def test_next_state_direct_returns_none_when_fine() -> None:
    controller = make_controller()
    info = PartitionInfo(topic="t", partition=0, replicas=(1, 2), state=state(1, [1, 2]))
    assert info.state is not None
    assert controller._next_state(info, info.state, {1, 2}, False, CONTROLLER_EPOCH) is None
