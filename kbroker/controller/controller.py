"""The controller: elected through ZooKeeper, epoch-fenced, driving partition leadership.

Every broker runs a :class:`Controller`; at most one is *active* per controller epoch. It becomes
active by winning :func:`~kbroker.coordination.fencing.elect_controller` when ``/controller`` is
absent, and from then on every write it makes goes through
:func:`~kbroker.coordination.fencing.fenced_write` (a multi that checks ``/controller_epoch``'s
version). A failed check means another broker was elected: it resigns at once. It also resigns
when its ZooKeeper session is fenced or lost.

Design: one task processes a queue of events (Kafka's ControllerEventManager). Metadata updates,
session events, timers and admin requests only enqueue. The main event is *reconcile*, which is
level-triggered: from the current metadata snapshot (ZooKeeper mirrored by the
MetadataWatcher) it computes what the partition states must become and writes the differences,
each write conditional on the state znode's version (a leader may be changing its ISR at the
same moment; the loser re-reads). Reconcile:

* creates the state of new partitions (leader: first live replica; ISR: the live replicas);
* elects a leader for partitions whose leader is dead or shutting down, from the live ISR only
  (unless the topic allows unclean election); with no eligible replica the partition goes
  offline (leader -1) and keeps its last ISR, never an empty one;
* removes dead and shutting-down brokers from the ISR of partitions whose leader is live;
* moves leadership back to preferred replicas when asked (or when imbalance exceeds the limit);
* finishes topic deletions requested under ``/admin/delete_topics``.

Brokers learn the outcome by watching the state znodes; see docs/architecture.md for why
kbroker uses watches instead of LeaderAndIsr requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kbroker.clock import Clock
from kbroker.cluster import NO_LEADER, ClusterMetadata, LeaderAndIsr, PartitionInfo, TopicInfo
from kbroker.config import BrokerConfig, TopicConfig
from kbroker.controller.assignment import (
    controlled_shutdown_leader,
    offline_partition_leader,
    preferred_leader,
)
from kbroker.coordination.errors import (
    BadVersionError,
    ControllerMovedError,
    CoordinationError,
    NodeExistsError,
    NoNodeError,
    ZooKeeperUnavailableError,
)
from kbroker.coordination.fencing import ControllerEpoch, elect_controller, fenced_write
from kbroker.coordination.metadata import state_to_znode
from kbroker.coordination.zk import (
    ANY_VERSION,
    CheckOp,
    CreateOp,
    DeleteOp,
    Op,
    SessionEvent,
    SessionEventKind,
    SetDataOp,
    ZooKeeperClient,
    pipelined,
)
from kbroker.coordination.znodes import (
    DeleteTopicZNode,
    TopicConfigZNode,
    TopicPartitionStateZNode,
    TopicPartitionsZNode,
    TopicPartitionZNode,
    TopicZNode,
)
from kbroker.errors import BrokerError, ErrorCode

__all__ = ["Controller"]

log = logging.getLogger(__name__)

#: Concurrent state multis during one reconcile.
_WRITE_CONCURRENCY = 8
#: Partitions per multi (two ops each at creation; ~150 bytes per op, far below ZooKeeper's
#: 1 MiB jute.maxbuffer). One multi is one ZooKeeper transaction: one log append and one
#: round trip instead of one per partition.
_BATCH_PARTITIONS = 200


class _Event(enum.Enum):
    RECONCILE = "reconcile"
    RESIGN = "resign"
    REBALANCE = "rebalance"


@dataclass(slots=True)
class _Plan:
    """State writes decided by one reconcile pass."""

    writes: list[tuple[PartitionInfo, LeaderAndIsr]] = field(default_factory=list)
    creates: list[tuple[PartitionInfo, LeaderAndIsr]] = field(default_factory=list)
    deletions: list[TopicInfo] = field(default_factory=list)


class Controller:
    """See the module docstring. All methods run on the event loop."""

    def __init__(
        self,
        *,
        zk: ZooKeeperClient,
        config: BrokerConfig,
        metadata: Callable[[], ClusterMetadata],
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self._zk = zk
        self._config = config
        self._metadata = metadata
        self._clock = clock
        self._rng = rng or random.Random()
        self._queue: asyncio.Queue[_Event] = asyncio.Queue()
        self._pending: set[_Event] = set()
        self.epoch: ControllerEpoch | None = None
        self.shutting_down: set[int] = set()
        self._preferred: set[tuple[str, int]] = set()
        self._fenced = False
        self.changed = asyncio.Event()
        """Set after each reconcile pass that wrote something (tests and shutdown wait on it)."""

    @property
    def active(self) -> bool:
        return self.epoch is not None and not self._fenced

    # -------------------------------------------------------------------------- inputs

    def _enqueue(self, event: _Event) -> None:
        if event not in self._pending:
            self._pending.add(event)
            self._queue.put_nowait(event)

    def on_metadata(self, _snapshot: ClusterMetadata) -> None:
        """Metadata changed (called by the MetadataWatcher's listener)."""
        self._enqueue(_Event.RECONCILE)

    def on_session(self, event: SessionEvent) -> None:
        """ZooKeeper session events: fenced or lost means stop controlling now."""
        if event.kind in (
            SessionEventKind.FENCED,
            SessionEventKind.LOST,
            SessionEventKind.SUSPENDED,
        ):
            self._fenced = event.fenced or event.kind is SessionEventKind.LOST
            if self._fenced and self.epoch is not None:
                log.warning(
                    "controller %d fenced from ZooKeeper: resigning", self._config.broker_id
                )
                self.epoch = None
        elif event.kind in (SessionEventKind.CONNECTED, SessionEventKind.NEW_SESSION):
            self._fenced = False
            self._enqueue(_Event.RECONCILE)

    # ---------------------------------------------------------------------------- main

    async def run(self) -> None:
        """Process events forever; also runs the periodic safety-net and rebalance ticks."""
        ticker = asyncio.get_running_loop().create_task(self._tick())
        try:
            self._enqueue(_Event.RECONCILE)
            while True:
                event = await self._queue.get()
                self._pending.discard(event)
                await self._handle(event)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def _tick(self) -> None:
        interval = self._config.leader_imbalance_check_interval_seconds
        elapsed = 0.0
        while True:
            await self._clock.sleep(2.0)
            elapsed += 2.0
            self._enqueue(_Event.RECONCILE)
            if self._config.auto_leader_rebalance_enable and elapsed >= interval:
                elapsed = 0.0
                self._enqueue(_Event.REBALANCE)

    async def _handle(self, event: _Event) -> None:
        try:
            if event is _Event.RESIGN:
                await self._resign()
            elif event is _Event.REBALANCE:
                if self.active:
                    self._schedule_rebalance(self._metadata())
                    await self._reconcile()
            else:
                await self._maybe_elect()
                if self.active:
                    await self._reconcile()
        except ControllerMovedError:
            log.warning("controller %d: epoch moved; resigning", self._config.broker_id)
            self.epoch = None
        except (ZooKeeperUnavailableError, CoordinationError) as exc:
            log.info(
                "controller %d: ZooKeeper error (%s); will retry",
                self._config.broker_id,
                exc.message,
            )
            await asyncio.sleep(0.5)
            self._enqueue(_Event.RECONCILE)

    async def _maybe_elect(self) -> None:
        if self._fenced:
            self.epoch = None
            return
        metadata = self._metadata()
        if self.epoch is not None and metadata.controller_id not in (-1, self._config.broker_id):
            log.warning(
                "controller %d: %d is controller now",
                self._config.broker_id,
                metadata.controller_id,
            )
            self.epoch = None
        if self.epoch is None and metadata.controller_id in (-1, self._config.broker_id):
            won = await elect_controller(self._zk, self._config.broker_id, clock=self._clock)
            if won is not None and won != self.epoch:
                log.info(
                    "broker %d is the active controller (epoch %d)",
                    self._config.broker_id,
                    won.epoch,
                )
                self.shutting_down.clear()
            self.epoch = won

    async def _resign(self) -> None:
        self.epoch = None

    # ----------------------------------------------------------------------- reconcile

    async def _reconcile(self) -> None:
        metadata = self._metadata()
        live = set(metadata.brokers)
        self.shutting_down &= live
        plan = self._plan(metadata, live)
        for topic in plan.deletions:
            await self._delete_topic(topic)
        wrote = await self._write_all(plan.creates, create=True)
        wrote |= await self._write_all(plan.writes, create=False)
        if wrote or plan.deletions:
            self.changed.set()
            self.changed = asyncio.Event()

    def _plan(self, metadata: ClusterMetadata, live: set[int]) -> _Plan:
        plan = _Plan()
        epoch = self.epoch.epoch if self.epoch else 0
        for topic in metadata.topics.values():
            if topic.deleting:
                plan.deletions.append(topic)
                continue
            unclean = self._topic_config(topic).unclean_leader_election_enable
            for info in topic.partitions:
                if info.state is None:
                    initial = self._initial_state(info, live, epoch)
                    if initial is not None:
                        plan.creates.append((info, initial))
                    continue
                new = self._next_state(info, info.state, live, unclean, epoch)
                if new is not None:
                    plan.writes.append((info, new))
        return plan

    def _topic_config(self, topic: TopicInfo) -> TopicConfig:
        return TopicConfig.from_broker(self._config, topic.configs)

    def _initial_state(
        self, info: PartitionInfo, live: set[int], epoch: int
    ) -> LeaderAndIsr | None:
        online = tuple(b for b in info.replicas if b in live and b not in self.shutting_down)
        if not online:
            return None
        return LeaderAndIsr(leader=online[0], leader_epoch=0, isr=online, controller_epoch=epoch)

    def _next_state(
        self, info: PartitionInfo, state: LeaderAndIsr, live: set[int], unclean: bool, epoch: int
    ) -> LeaderAndIsr | None:
        """The state ``info`` must move to, or None if it is fine as it is."""
        leaving = self.shutting_down
        leader = state.leader
        if leader == NO_LEADER or leader not in live or leader in leaving:
            if leader in leaving and leader in live:
                elected = controlled_shutdown_leader(info.replicas, state.isr, live, leaving)
            else:
                elected = offline_partition_leader(
                    info.replicas, state.isr, live - leaving, unclean=unclean
                )
            if elected is None:
                if leader == NO_LEADER:
                    return None
                log.warning(
                    "%s-%d: no in-sync replica alive; partition offline (isr %s)",
                    info.topic,
                    info.partition,
                    list(state.isr),
                )
                return LeaderAndIsr(
                    leader=NO_LEADER,
                    leader_epoch=state.leader_epoch + 1,
                    isr=state.isr,
                    controller_epoch=epoch,
                    zk_version=state.zk_version,
                )
            new_leader, new_isr = elected
            if new_leader not in state.isr:
                log.warning(
                    "%s-%d: UNCLEAN election of %d (not in ISR %s): records may be lost",
                    info.topic,
                    info.partition,
                    new_leader,
                    list(state.isr),
                )
            return LeaderAndIsr(
                leader=new_leader,
                leader_epoch=state.leader_epoch + 1,
                isr=new_isr,
                controller_epoch=epoch,
                zk_version=state.zk_version,
            )
        tp = (info.topic, info.partition)
        if tp in self._preferred:
            preferred = preferred_leader(info.replicas, state.isr, live - leaving)
            if preferred is None or preferred == leader:
                self._preferred.discard(tp)
            else:
                self._preferred.discard(tp)
                return LeaderAndIsr(
                    leader=preferred,
                    leader_epoch=state.leader_epoch + 1,
                    isr=state.isr,
                    controller_epoch=epoch,
                    zk_version=state.zk_version,
                )
        kept = tuple(b for b in state.isr if (b in live and b not in leaving) or b == leader)
        if kept != state.isr:
            return LeaderAndIsr(
                leader=leader,
                leader_epoch=state.leader_epoch,
                isr=kept,
                controller_epoch=epoch,
                zk_version=state.zk_version,
            )
        return None

    async def _write_all(
        self, writes: list[tuple[PartitionInfo, LeaderAndIsr]], *, create: bool
    ) -> bool:
        """Write ``writes`` in fenced multis of up to ``_BATCH_PARTITIONS`` partitions of one
        topic each, a few in flight (see :meth:`_write_batch`). Returns whether anything was
        written."""
        by_topic: dict[str, list[tuple[PartitionInfo, LeaderAndIsr]]] = {}
        for info, state in writes:
            by_topic.setdefault(info.topic, []).append((info, state))
        if create:
            for topic in list(by_topic):
                if not await self._create_partitions_parent(topic):
                    del by_topic[topic]
        gate = asyncio.Semaphore(_WRITE_CONCURRENCY)

        async def chunk(part: list[tuple[PartitionInfo, LeaderAndIsr]]) -> bool:
            async with gate:
                return await self._write_batch(part, create=create)

        step = _BATCH_PARTITIONS
        results = await asyncio.gather(
            *(
                chunk(topic_writes[i : i + step])
                for topic_writes in by_topic.values()
                for i in range(0, len(topic_writes), step)
            )
        )
        return any(results)

    async def _create_partitions_parent(self, topic: str) -> bool:
        """Make sure ``/brokers/topics/<t>/partitions`` exists, but only under the topic's
        own znode: never ``ensure_path``, which would create a bare topic znode for a topic
        deleted meanwhile (the watcher can still show it for a moment). False if the topic is
        gone."""
        parent = TopicPartitionsZNode.path(topic)
        if await self._zk.exists(parent) is not None:
            return True
        if self.epoch is None:  # resigned meanwhile
            return False
        ops: list[Op] = [CheckOp(TopicZNode.path(topic), ANY_VERSION), CreateOp(parent, b"")]
        try:
            await fenced_write(self._zk, self.epoch.zk_version, ops)
        except NodeExistsError:
            return True
        except NoNodeError:
            return False
        return True

    def _state_ops(self, info: PartitionInfo, state: LeaderAndIsr, *, create: bool) -> list[Op]:
        path = TopicPartitionStateZNode.path(info.topic, info.partition)
        if not create:
            return [SetDataOp(path, state_to_znode(state), version=state.zk_version)]
        return [
            CreateOp(TopicPartitionZNode.path(info.topic, info.partition), b""),
            CreateOp(path, state_to_znode(state)),
        ]

    async def _write_batch(
        self, part: list[tuple[PartitionInfo, LeaderAndIsr]], *, create: bool
    ) -> bool:
        """Write ``part`` (partitions of one topic) in one fenced multi that first checks the
        topic's znode still exists.

        A multi fails whole, naming the op that failed. The topic check, or a znode missing
        (NoNode: the topic is being deleted), drops the whole batch. A creation that finds a
        znode already there re-reads which of the batch's znodes exist (one pipelined read)
        and sends only what is still missing: a reconcile planned from metadata that does not
        show states just written would otherwise cost two failed multis per partition.
        Otherwise that partition's state changed meanwhile (a leader's ISR write): it is left
        out (the watcher's update triggers another pass) and the rest is sent again, so one
        race costs one more multi. Returns whether anything was written; False also once
        this controller resigned."""
        guard = CheckOp(TopicZNode.path(part[0][0].topic), ANY_VERSION)
        pending = [
            (info, state, self._state_ops(info, state, create=create)) for info, state in part
        ]
        while pending:
            if self.epoch is None:
                return False
            ops = [guard, *(op for _, _, its_ops in pending for op in its_ops)]
            try:
                await fenced_write(self._zk, self.epoch.zk_version, ops)
            except (BadVersionError, NodeExistsError, NoNodeError) as exc:
                if exc.op_index is None or exc.op_index == 0 or isinstance(exc, NoNodeError):
                    return False
                if isinstance(exc, NodeExistsError):
                    pending = await self._still_missing(pending)
                    continue
                # BadVersion: only an update (one setData per partition, after the guard) fails so
                del pending[exc.op_index - 1]
                continue
            for info, state, _ in pending:
                self._log_state(info, state)
            return True
        return False

    async def _still_missing(
        self, pending: list[tuple[PartitionInfo, LeaderAndIsr, list[Op]]]
    ) -> list[tuple[PartitionInfo, LeaderAndIsr, list[Op]]]:
        """The creations of ``pending`` still to make: a partition whose state exists is
        dropped, one whose partition znode exists keeps only its state's create op."""
        paths = [
            path
            for info, _, _ in pending
            for path in (
                TopicPartitionZNode.path(info.topic, info.partition),
                TopicPartitionStateZNode.path(info.topic, info.partition),
            )
        ]
        stats = iter(await pipelined(self._zk.exists, paths))
        missing = []
        for (info, state, ops), partition, its_state in zip(pending, stats, stats, strict=True):
            if its_state is None:
                missing.append((info, state, ops if partition is None else ops[-1:]))
        return missing

    @staticmethod
    def _log_state(info: PartitionInfo, state: LeaderAndIsr) -> None:
        log.info(
            "%s-%d: leader %d epoch %d isr %s",
            info.topic,
            info.partition,
            state.leader,
            state.leader_epoch,
            list(state.isr),
        )

    async def _delete_topic(self, topic: TopicInfo) -> None:
        """Delete the topic's znodes: its partitions' (children before parents) in fenced
        multis of ``_BATCH_PARTITIONS`` partitions, then in one last multi the partitions
        parent, the topic's assignment and config and, last of all, its deletion marker, so
        that a deletion cut short (controller moved, session lost) is finished by the next
        reconcile. A topic of thousands of partitions would not fit one multi (ZooKeeper's
        1 MiB ``jute.maxbuffer``). Every multi is fenced by the epoch this started with."""
        epoch = self.epoch
        if epoch is None:
            return
        name = topic.name
        children: list[str] = []
        for partition in range(len(topic.partitions)):
            children.append(TopicPartitionStateZNode.path(name, partition))
            children.append(TopicPartitionZNode.path(name, partition))
        last = [
            TopicPartitionsZNode.path(name),
            TopicZNode.path(name),
            TopicConfigZNode.path(name),
            DeleteTopicZNode.path(name),
        ]
        try:
            existing = await self._existing(children)
            step = 2 * _BATCH_PARTITIONS
            for i in range(0, len(existing), step):
                ops = [DeleteOp(path) for path in existing[i : i + step]]
                await fenced_write(self._zk, epoch.zk_version, ops)
            ops = [DeleteOp(path) for path in await self._existing(last)]
            await fenced_write(self._zk, epoch.zk_version, ops)
            log.info("deleted topic %s", name)
        except (NoNodeError, NodeExistsError, BadVersionError) as exc:
            log.info("deleting topic %s raced (%s); retrying", name, exc.message)
            self._enqueue(_Event.RECONCILE)

    async def _existing(self, paths: list[str]) -> list[str]:
        """Those of ``paths`` that exist, in order (all checked at once, pipelined)."""
        stats = await pipelined(self._zk.exists, paths)
        return [path for path, stat in zip(paths, stats, strict=True) if stat is not None]

    # ----------------------------------------------------------------- admin requests

    def _schedule_rebalance(self, metadata: ClusterMetadata) -> None:
        """Queue preferred elections for brokers whose imbalance exceeds the limit."""
        limit = self._config.leader_imbalance_per_broker_percentage / 100
        preferred_of: dict[int, list[PartitionInfo]] = {}
        for topic in metadata.topics.values():
            for info in topic.partitions:
                if info.replicas:
                    preferred_of.setdefault(info.replicas[0], []).append(info)
        for broker, infos in preferred_of.items():
            if broker not in metadata.brokers or broker in self.shutting_down:
                continue
            misplaced = [i for i in infos if i.leader != broker]
            if infos and len(misplaced) / len(infos) > limit:
                self._preferred.update((i.topic, i.partition) for i in misplaced)

    async def elect_preferred(self, partitions: Iterable[tuple[str, int]] | None) -> int:
        """Move leadership back to preferred replicas (all partitions when None).

        Returns how many partitions were queued. Raises NOT_CONTROLLER when not active.
        """
        self._require_active()
        metadata = self._metadata()
        if partitions is None:
            partitions = [
                (t.name, i.partition) for t in metadata.topics.values() for i in t.partitions
            ]
        queued = [
            tp
            for tp in partitions
            if (info := _lookup(metadata, tp)) is not None
            and info.replicas
            and info.leader != info.replicas[0]
        ]
        self._preferred.update(queued)
        self._enqueue(_Event.RECONCILE)
        return len(queued)

    async def controlled_shutdown(self, broker_id: int) -> int:
        """Move leadership off ``broker_id``; returns how many partitions it still leads
        that have no other eligible leader (0: it may stop without unavailability)."""
        self._require_active()
        self.shutting_down.add(broker_id)
        changed = self.changed
        self._enqueue(_Event.RECONCILE)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), 2.0)
        metadata = self._metadata()
        live = set(metadata.brokers) - self.shutting_down
        remaining = 0
        for topic in metadata.topics.values():
            for info in topic.partitions:
                if info.leader == broker_id and not any(
                    b in live for b in info.isr if b != broker_id
                ):
                    remaining += 1
        return remaining

    def _require_active(self) -> None:
        if not self.active:
            raise BrokerError(
                f"Broker {self._config.broker_id} is not the controller", ErrorCode.NOT_CONTROLLER
            )


def _lookup(metadata: ClusterMetadata, tp: tuple[str, int]) -> PartitionInfo | None:
    topic = metadata.topics.get(tp[0])
    if topic is None or not 0 <= tp[1] < len(topic.partitions):
        return None
    return topic.partitions[tp[1]]
