"""The composition root: builds a broker from its config and runs it.

Start order (reverse on stop): logs (load and recover, off the loop) -> ZooKeeper session,
persistent paths, cluster id and broker registration -> replica manager and fetchers -> metadata
watcher (which drives the replicas) -> controller -> HTTP API. One TaskGroup owns every
background task; if one of them crashes the broker stops rather than run half alive.

Stopping (SIGTERM): controlled shutdown first (the controller moves leadership away and the
broker waits until it leads nothing, bounded by ``controlled.shutdown.timeout.ms``), then the
HTTP server closes, background tasks are cancelled, the logs are flushed and closed with a
clean-shutdown marker, and the ZooKeeper session is closed (which removes the registration).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import resource
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Final

import aiohttp
import orjson
from aiohttp import web

from kbroker import __version__
from kbroker.api.app import build_app
from kbroker.api.forward import HttpPeerClient
from kbroker.api.internal import CONTROLLED_SHUTDOWN_PATH
from kbroker.api.listener import ClientListener
from kbroker.api.observability import RequestMetrics
from kbroker.api.worker_calls import serve_worker_call
from kbroker.api.worker_link import LinkServer
from kbroker.api.worker_pool import WorkerPool, worker_link_path, worker_socket_path
from kbroker.clock import Clock, SystemClock
from kbroker.cluster import ClusterMetadata, PartitionInfo, TopicInfo, TopicPartition
from kbroker.config import BrokerConfig, TopicConfig
from kbroker.controller.admin import TopicAdmin
from kbroker.controller.controller import Controller
from kbroker.coordination.isr_writer import ZkIsrWriter
from kbroker.coordination.metadata import (
    MetadataDelta,
    MetadataWatcher,
)
from kbroker.coordination.producer_ids import ProducerIdAllocator
from kbroker.coordination.registration import (
    BrokerRegistrar,
    ensure_cluster_id,
    ensure_persistent_paths,
)
from kbroker.coordination.zk import SessionEvent, SessionEventKind, ZooKeeperClient
from kbroker.coordination.znodes import BrokerRegistration
from kbroker.errors import BrokerError, ErrorCode, StorageError
from kbroker.group.coordinator import GroupCoordinator
from kbroker.log.flusher import GroupCommitFlusher
from kbroker.log.manager import LogManager
from kbroker.log.partition_log import PartitionLog
from kbroker.replication.endpoint import HttpLeaderEndpoint, LeaderEndpoint
from kbroker.replication.fetcher import FetcherSettings, ReplicaFetcherManager
from kbroker.replication.manager import ReplicaManager
from kbroker.replication.partition import Partition

__all__ = ["Broker"]

log = logging.getLogger(__name__)

#: Replicas new to this broker that one metadata update sets up at once on the event loop
#: (each creates its log's files: ~0.5 ms here on an idle disk, several times more on a busy
#: one), and that one step of the replica-steps loop sets up (their logs made in a thread).
NEW_REPLICAS_PER_STEP: Final = 32
#: Logs of deleted topics' replicas that one step of the replica-steps loop deletes (each
#: closes its files and renames its directory: ~0.2 ms here on an idle disk).
LOG_DELETIONS_PER_STEP: Final = 64
#: A step of deletions also ends once it has run this long: on a busy disk (three brokers
#: and ZooKeeper sharing two cores and one disk) each file operation is several times slower.
REPLICA_STEP_BUDGET_S: Final = 0.02


class Broker:
    """One kbroker process (implements kbroker.api.services.Services)."""

    def __init__(self, config: BrokerConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self._metadata = ClusterMetadata()
        self._metadata_changed = asyncio.Event()
        self._topic_configs: dict[str, tuple[TopicInfo, TopicConfig]] = {}
        self._sticky = itertools.count()
        self._logs = LogManager(Path(config.data_dir), self._default_topic_config, clock=self.clock)
        self._flusher = GroupCommitFlusher()
        # Fence after a third of the session timeout of SUSPENDED: kazoo itself reports
        # SUSPENDED only after up to 2/3 of it without an answer, so the broker stops leading
        # no later than the moment ZooKeeper may expire its session and elect someone else.
        self.zk = ZooKeeperClient(
            config.zookeeper_connect,
            session_timeout_ms=config.zookeeper_session_timeout_ms,
            fence_ratio=1 / 3,
            clock=self.clock,
        )
        self._session: aiohttp.ClientSession | None = None
        self.replicas: ReplicaManager
        self.peers: HttpPeerClient
        self.coordinator: GroupCoordinator
        self.admin = TopicAdmin(
            zk=self.zk,
            config=config,
            metadata=lambda: self._metadata,
            wait_for=self._wait_applied,
        )
        self.controller = Controller(
            zk=self.zk, config=config, metadata=lambda: self._metadata, clock=self.clock
        )
        self._watcher = MetadataWatcher(self.zk, on_update=self._on_metadata)
        self._producer_ids = ProducerIdAllocator(self.zk, config.broker_id)
        self._registrar: BrokerRegistrar | None = None
        self._runner: web.AppRunner | None = None
        """The HTTP application's runner: on the client port, or with workers on their socket."""
        self._workers: WorkerPool | None = None
        self._link_server: asyncio.AbstractServer | None = None
        self._listener: ClientListener | None = None
        self._resync_pending = False
        self._first_snapshot = True
        self._unapplied: set[TopicPartition] = set()
        """Partitions whose local replica could not be set up (a full or failing disk);
        retried by the reapply loop and on every metadata update."""
        self._new_pending: dict[TopicPartition, None] = {}
        """Partitions new to this broker beyond the first NEW_REPLICAS_PER_STEP of an update,
        in order: set up by the replica-steps loop a step at a time (see _on_metadata)."""
        self._opening: set[TopicPartition] = set()
        """The replica-steps loop's step whose logs a worker thread is creating: nothing
        else applies these partitions meanwhile (_apply_partition skips them)."""
        self._removals: dict[TopicPartition, PartitionLog] = {}
        """The logs of deleted topics' replicas (detached already), in order: deleted (files
        closed, directory renamed and purged) by the replica-steps loop a step at a time, or
        at once when their partition is applied again (see _on_metadata)."""
        self._replica_steps_event = asyncio.Event()
        self.draining = False
        """Set when stopping: answers carry ``Connection: close`` (api.app.broker_middleware)."""
        self.ready = asyncio.Event()
        """Set once the broker serves HTTP."""

    # ---------------------------------------------------------------------- Services

    @property
    def metadata(self) -> ClusterMetadata:
        return self._metadata

    def _default_topic_config(self, topic: str) -> TopicConfig:
        info = self._metadata.topics.get(topic)
        return self.topic_config(info) if info else self.config.topic_defaults

    def topic_config(self, topic: TopicInfo) -> TopicConfig:
        cached = self._topic_configs.get(topic.name)
        if cached is not None and cached[0] is topic:
            return cached[1]
        config = TopicConfig.from_broker(self.config, topic.configs)
        self._topic_configs[topic.name] = (topic, config)
        return config

    async def ensure_topic(self, name: str) -> TopicInfo:
        topic = self._metadata.topics.get(name)
        if topic is not None and not topic.deleting:
            return topic
        if topic is None and self.config.auto_create_topics_enable:
            with contextlib.suppress(BrokerError):
                await self.admin.create_topic(
                    name,
                    partitions=None,
                    replication_factor=None,
                    configs={},
                    assignment=None,
                    validate_only=False,
                )
            topic = self._metadata.topics.get(name)
            if topic is not None:
                return topic
        raise BrokerError(f"Topic {name} not found.", ErrorCode.UNKNOWN_TOPIC)

    async def next_producer_id(self) -> int:
        return await self._producer_ids.next_id()

    def sticky_partition(self, topic: TopicInfo) -> int:
        """Rotate keyless requests over partitions led here, else over partitions with a
        live leader, else over all (the produce then reports the missing leader)."""
        me = self.config.broker_id
        local = [p.partition for p in topic.partitions if p.leader == me]
        pool = local or [
            p.partition for p in topic.partitions if p.leader in self._metadata.brokers
        ]
        pool = pool or list(range(len(topic.partitions)))
        return pool[next(self._sticky) % len(pool)]

    async def _wait_applied(
        self, predicate: Callable[[ClusterMetadata], bool], timeout: float
    ) -> bool:
        """What topic administration waits for (within ``timeout``): the metadata satisfies
        ``predicate`` *and* this broker has set up every new replica it deferred and deleted
        the logs of deleted topics (_on_metadata), so that a topic created or grown here takes
        records once the admin call answers, and a deleted one has left this broker's disk
        (its directories renamed for the purge)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not await self.wait_for_metadata(predicate, timeout):
            return False
        while self._new_pending or self._removals:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def wait_for_metadata(
        self, predicate: Callable[[ClusterMetadata], bool], timeout: float
    ) -> bool:
        """Wait (bounded) until ``predicate(metadata)`` holds; returns whether it did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self._metadata):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            event = self._metadata_changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.5))
        return True

    # ---------------------------------------------------------------------- metadata

    def _on_metadata(self, snapshot: ClusterMetadata, delta: MetadataDelta) -> None:
        """Apply a metadata update to the local replicas (on the event loop, synchronously).

        Setting up a replica new to this broker creates its log's directory and files (~0.5
        ms here on an idle disk, several times more on a busy one), so a topic of thousands
        of partitions would hold the event loop for seconds, long enough for the liveness
        tick to fence the broker. Beyond the first NEW_REPLICAS_PER_STEP of an update,
        replicas that are new (not hosted here yet, or hosted but never given a state) are
        therefore set up by the replica-steps loop, a step at a time, their logs created in
        a worker thread (_set_up_new_replicas). That is safe because such a replica cannot
        act on stale state: until it has a state, requests for it get the retriable
        NOT_LEADER. Replicas that have a state (leadership and ISR changes) are always applied
        here at once, and the first snapshot and the re-read after a new ZooKeeper session
        apply everything before the broker serves or unfences (but for a step whose logs a
        thread is creating: the loop applies those as soon as they exist).

        The replicas of a deleted topic are detached here, at once (nothing reaches them any
        more: not requests, not followers, and the role listeners hear they went OFFLINE),
        but deleting a log takes ~0.2 ms (closing files, renaming the directory), so their
        logs are deleted by the same loop, a step at a time. A partition applied again (the
        topic re-created under the same name) has its old log deleted first, at once: a new
        topic never inherits the old one's log.
        """
        self._metadata = snapshot
        for name in delta.removed_topics:
            self._topic_configs.pop(name, None)
            doomed = [p.partition for p in self.replicas.partitions() if p.topic == name]
            if doomed:
                log.info("removing the %d replicas of deleted topic %s", len(doomed), name)
            for partition in doomed:
                detached = self.replicas.detach(name, partition)
                if detached is not None:
                    self._removals[(name, partition)] = detached
        todo = [*delta.partitions, *(self._unapplied - delta.partitions)]
        if self._first_snapshot or self._resync_pending:
            todo += [tp for tp in self._new_pending if tp not in delta.partitions]
            self._new_pending.clear()
            defer = False
        else:
            defer = True
        new = 0
        for tp in todo:
            if defer and self._is_new(tp):
                new += 1
                if new > NEW_REPLICAS_PER_STEP or tp in self._new_pending:
                    self._new_pending[tp] = None
                    continue
            self._apply_partition(snapshot, tp)
        if self._new_pending or self._removals:
            self._replica_steps_event.set()
        if self._first_snapshot:
            self._first_snapshot = False
            self._delete_orphan_logs(snapshot)
        if self._resync_pending:
            self._resync_pending = False
            self.replicas.set_fenced(False)
        self.controller.on_metadata(snapshot)
        event, self._metadata_changed = self._metadata_changed, asyncio.Event()
        event.set()

    def _is_new(self, tp: TopicPartition) -> bool:
        """Not hosted here yet, or hosted but never given a state (see _on_metadata)."""
        replica = self.replicas.get(*tp)
        return replica is None or replica.state is None

    def _apply_partition(self, snapshot: ClusterMetadata, tp: TopicPartition) -> None:
        """Apply one partition's state; a disk that refuses (opening a new log on a full
        disk) must not stop the broker: the partition is retried until the disk takes it."""
        if tp in self._opening:  # the replica-steps loop applies it once its log exists
            return
        replica = self._replica_of(snapshot, tp)
        if replica is None:
            self._unapplied.discard(tp)
            return
        if tp in self._removals:  # the log of a deleted topic of the same name
            self._delete_detached_log(tp)
        try:
            self.replicas.apply(*replica)
        except StorageError as exc:
            if tp not in self._unapplied:
                log.error("%s-%d: cannot host the replica yet: %s", tp[0], tp[1], exc.message)
            self._unapplied.add(tp)
        else:
            self._unapplied.discard(tp)

    def _replica_of(
        self, snapshot: ClusterMetadata, tp: TopicPartition
    ) -> tuple[PartitionInfo, TopicConfig, str] | None:
        """ReplicaManager.apply's arguments for ``tp``; None if the snapshot lacks it."""
        topic = snapshot.topics.get(tp[0])
        if topic is None or tp[1] >= len(topic.partitions):
            return None
        return topic.partitions[tp[1]], self.topic_config(topic), topic.topic_id

    def _delete_detached_log(self, tp: TopicPartition) -> None:
        """Delete the log of a deleted topic's replica (see _on_metadata), unless its name
        was taken again meanwhile. A disk that refuses the rename leaves the directory,
        deleted at the next start as a log no longer hosted."""
        detached = self._removals.pop(tp)
        try:
            self._logs.delete_log(*tp, only=detached)
        except StorageError as exc:
            log.error("%s-%d: cannot delete the log of the deleted topic: %s", *tp, exc.message)

    async def _replica_steps_loop(self) -> None:
        """Delete the logs of deleted topics, LOG_DELETIONS_PER_STEP at a time (a step also
        ends after REPLICA_STEP_BUDGET_S), then set up the new replicas _on_metadata deferred,
        NEW_REPLICAS_PER_STEP at a time, letting the event loop run between steps."""
        while True:
            await self._replica_steps_event.wait()
            self._replica_steps_event.clear()
            while self._removals or self._new_pending:
                if self._removals:
                    deadline = time.perf_counter() + REPLICA_STEP_BUDGET_S
                    for tp in list(itertools.islice(self._removals, LOG_DELETIONS_PER_STEP)):
                        self._delete_detached_log(tp)
                        if time.perf_counter() > deadline:
                            break
                else:
                    await self._set_up_new_replicas(
                        list(itertools.islice(self._new_pending, NEW_REPLICAS_PER_STEP))
                    )
                await asyncio.sleep(0)

    async def _set_up_new_replicas(self, step: list[TopicPartition]) -> None:
        """One step of new replicas: their logs are created in a worker thread (files and
        fsyncs held the event loop for seconds when a topic brought thousands), then each is
        applied from the latest metadata. A log made for a partition this broker no longer
        hosts by then (its topic deleted meanwhile) is deleted again."""
        wanted = [r for r in (self._replica_of(self._metadata, tp) for tp in step) if r]
        self._opening.update(step)
        try:
            opened = await self.replicas.open_new_logs(wanted)
        finally:
            self._opening.difference_update(step)
        for tp in step:
            self._new_pending.pop(tp, None)  # a resync may have taken it off meanwhile
            self._apply_partition(self._metadata, tp)
        for tp in opened:
            if self.replicas.get(*tp) is None and tp not in self._unapplied:
                try:
                    self._logs.delete_log(*tp)
                except StorageError as exc:  # deleted at the next start, as not hosted here
                    log.error("%s-%d: cannot delete an unused new log: %s", *tp, exc.message)

    async def _reapply_loop(self, interval_s: float = 2.0) -> None:
        """Retry the partitions a refusing disk left unapplied."""
        while True:
            await asyncio.sleep(interval_s)
            for tp in list(self._unapplied):
                self._apply_partition(self._metadata, tp)

    def _delete_orphan_logs(self, snapshot: ClusterMetadata) -> None:
        """Logs of topics deleted while this broker was down."""
        for plog in self._logs.all_logs():
            topic = snapshot.topics.get(plog.topic)
            if (
                topic is None
                or plog.partition >= len(topic.partitions)
                or (self.config.broker_id not in topic.partitions[plog.partition].replicas)
            ):
                log.info("deleting log %s: no longer hosted here", plog.name)
                self._logs.delete_log(plog.topic, plog.partition)

    def _record_session(self) -> None:
        """Write the ZooKeeper session id and password to ``<data.dir>/.zk-session`` (mode
        0600). Operators and fault tests use it to expire this broker's session on purpose
        (a second client on the same session, the kazoo test-harness trick)."""
        client_id = self.zk.client_id
        if client_id is None:
            return
        path = Path(self.config.data_dir) / ZK_SESSION_FILE
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(
                    orjson.dumps(
                        {"session_id": client_id[0], "password": client_id[1].hex()}
                    ).decode()
                )

    def _on_session(self, event: SessionEvent) -> None:
        if event.kind in (SessionEventKind.CONNECTED, SessionEventKind.NEW_SESSION):
            self._record_session()
        if event.kind is SessionEventKind.FENCED or event.kind is SessionEventKind.LOST:
            self.replicas.set_fenced(True)
        elif event.kind is SessionEventKind.CONNECTED and not self._resync_pending:
            self.replicas.set_fenced(False)
        elif event.kind is SessionEventKind.NEW_SESSION:
            # Stay fenced until the watcher has re-read everything on the new session.
            self._resync_pending = True
            self._watcher.refresh()
        self.controller.on_session(event)

    # -------------------------------------------------------------------------- run

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down cleanly."""
        _raise_fd_limit()
        loop = asyncio.get_running_loop()
        log.info(
            "kbroker %s, broker %d, data in %s",
            __version__,
            self.config.broker_id,
            self.config.data_dir,
        )
        await loop.run_in_executor(None, self._logs.load)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60)
        )
        self.peers = HttpPeerClient(self._session, timeout_ms=self.config.produce_timeout_ms + 5000)
        self.replicas = self._build_replicas()
        self.coordinator = GroupCoordinator(
            config=self.config,
            replicas=self.replicas,
            clock=self.clock,
            metadata=lambda: self._metadata,
        )
        self.replicas.add_role_listener(self.coordinator.on_role_change)
        try:
            await self.zk.start(timeout_s=self.config.zookeeper_connection_timeout_ms / 1000)
            self.zk.add_session_listener(self._on_session)
            self._record_session()
            await ensure_persistent_paths(self.zk)
            await ensure_cluster_id(self.zk)
            self._registrar = BrokerRegistrar(
                self.zk,
                BrokerRegistration.for_url(
                    self.config.broker_id,
                    self.config.url,
                    rack=self.config.rack,
                    timestamp_ms=self.clock.now_ms(),
                ),
                clock=self.clock,
            )
            await self._registrar.start()
            async with asyncio.TaskGroup() as tasks:
                background = self._start_background(tasks)
                await self._watcher.wait_ready(timeout=30)
                await self._start_http()
                self.ready.set()
                log.info("broker %d serving at %s", self.config.broker_id, self.config.url)
                await stop.wait()
                self.draining = True
                await self._controlled_shutdown()
                await self._stop_listening()
                await asyncio.sleep(DRAIN_GRACE_S)
                await self._stop_http()
                for task in background:
                    task.cancel()
        finally:
            await self._close()

    def _build_replicas(self) -> ReplicaManager:
        settings = FetcherSettings(
            broker_id=self.config.broker_id,
            max_wait_ms=self.config.replica_fetch_wait_max_ms,
            max_bytes=self.config.replica_fetch_max_bytes,
            backoff_ms=self.config.replica_fetch_backoff_ms,
        )
        fetchers = ReplicaFetcherManager(settings, self._leader_endpoint, self._flush_policy)
        return ReplicaManager(
            config=self.config,
            logs=self._logs,
            clock=self.clock,
            isr_writer=ZkIsrWriter(self.zk),
            fetchers=fetchers,
            flush=self._flush_policy,
            is_live=lambda broker_id: broker_id in self._metadata.brokers,
            stalled=lambda: self.zk.stalled,
        )

    def _leader_endpoint(self, leader_id: int) -> LeaderEndpoint:
        assert self._session is not None

        def url() -> str:
            broker = self._metadata.brokers.get(leader_id)
            if broker is None:
                raise BrokerError(
                    f"leader {leader_id} is not registered", ErrorCode.BROKER_NOT_AVAILABLE
                )
            return broker.url

        return HttpLeaderEndpoint(
            self._session, url, timeout_ms=self.config.replica_fetch_wait_max_ms + 10_000
        )

    async def _flush_policy(self, replica: Partition, next_offset: int) -> None:
        """fsync when the topic's flush policy asks for it: on a leader before acknowledging,
        on a follower before its next fetch reports the new log end offset."""
        plog = replica.log
        if plog.should_flush(self.clock.now_ms()):
            await self._flusher.flush(plog, next_offset)

    def _start_background(self, tasks: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        c = self.config
        return [
            tasks.create_task(self._watcher.run(), name="metadata-watcher"),
            tasks.create_task(self.controller.run(), name="controller"),
            tasks.create_task(self.coordinator.run(), name="group-coordinator"),
            tasks.create_task(self.replicas.isr_expiration_loop(), name="isr-expiration"),
            tasks.create_task(
                self._logs.retention_loop(c.log_retention_check_interval_ms), name="retention"
            ),
            tasks.create_task(
                self._logs.checkpoint_loop(
                    min(
                        c.log_flush_offset_checkpoint_interval_ms,
                        c.replica_high_watermark_checkpoint_interval_ms,
                    )
                ),
                name="checkpoints",
            ),
            tasks.create_task(self._logs.flush_loop(self._flusher, 1000), name="flush"),
            tasks.create_task(self._reapply_loop(), name="reapply"),
            tasks.create_task(self._replica_steps_loop(), name="replica-steps"),
        ]

    async def _start_http(self) -> None:
        """Serve HTTP on the configured address or, with worker processes, start them: they
        take every client connection (sharing the address with SO_REUSEPORT) and reach this
        process over two Unix sockets, the lean link for their hot calls and HTTP for the
        rest (kbroker.api.worker)."""
        metrics = RequestMetrics()
        workers = self.config.num_http_workers > 0
        runner = web.AppRunner(
            build_app(self, local=workers, metrics=metrics),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=2.0,
            auto_decompress=False,  # bodies are decoded by kbroker.api.encoding
        )
        await runner.setup()
        self._runner = runner
        if not workers:
            self._listener = ClientListener(runner, self.config.listen)
            await self._listener.start()
            return
        socket = worker_socket_path(self.config)
        socket.unlink(missing_ok=True)
        await web.UnixSite(runner, str(socket)).start()
        link = worker_link_path(self.config)
        link.unlink(missing_ok=True)
        dispatch = partial(serve_worker_call, self, metrics)
        self._link_server = await asyncio.get_running_loop().create_unix_server(
            lambda: LinkServer(dispatch), str(link)
        )
        self._workers = WorkerPool(self.config)
        self._workers.start()

    async def _stop_listening(self) -> None:
        """Stop accepting client connections (open ones keep being served): from here a client
        that connects is refused, which it knows is safe to retry, instead of having a
        connection accepted and then closed under its request, which is ambiguous; the
        connections the kernel already accepted are served (kbroker.api.listener)."""
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if self._workers is not None:
            self._workers.stop_listening()

    async def _stop_http(self) -> None:
        if self._workers is not None:
            await self._workers.stop()
            self._workers = None
        if self._link_server is not None:
            self._link_server.close()
            self._link_server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _controlled_shutdown(self) -> None:
        """Ask the controller to move leadership away, and wait until none is left here."""
        if not self.config.controlled_shutdown_enable:
            return
        if not await self.replicas.drain(timeout=2.0):
            log.warning("controlled shutdown: acks=all produces still parked after 2 s")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.controlled_shutdown_timeout_ms / 1000
        while loop.time() < deadline:
            try:
                remaining = await self._request_controlled_shutdown()
            except BrokerError as exc:
                log.info("controlled shutdown request failed: %s", exc.message)
                remaining = -1
            leading = [
                p
                for p in self.replicas.partitions()
                if p.is_leader
                and any(b != self.config.broker_id and b in self._metadata.brokers for b in p.isr)
            ]
            if remaining == 0 and not leading:
                log.info("controlled shutdown complete")
                return
            await asyncio.sleep(0.2)
        log.warning("controlled shutdown timed out; stopping anyway")

    async def _request_controlled_shutdown(self) -> int:
        controller_id = self._metadata.controller_id
        if controller_id == self.config.broker_id:
            return await self.controller.controlled_shutdown(self.config.broker_id)
        if controller_id < 0 or controller_id not in self._metadata.brokers:
            raise BrokerError("no active controller", ErrorCode.NOT_CONTROLLER)
        assert self._session is not None
        url = self._metadata.brokers[controller_id].url + CONTROLLED_SHUTDOWN_PATH
        try:
            async with self._session.post(
                url,
                json={"broker_id": self.config.broker_id},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp:
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BrokerError(
                f"controller unreachable: {exc!r}", ErrorCode.BROKER_NOT_AVAILABLE
            ) from exc
        if resp.status != 200:
            raise BrokerError(str(body.get("message")), ErrorCode.NOT_CONTROLLER)
        return int(body["remaining_partitions"])

    async def _close(self) -> None:
        if self._workers is not None:
            await self._workers.stop()
        with contextlib.suppress(Exception):
            await self.replicas.close()
        await self._flusher.close()
        await asyncio.get_running_loop().run_in_executor(None, self._logs.close)
        if self._registrar is not None:
            with contextlib.suppress(Exception):
                await self._registrar.close()
        with contextlib.suppress(Exception):
            await self.zk.close()
        if self._session is not None:
            await self._session.close()
        log.info("broker %d stopped", self.config.broker_id)


#: Pause between moving leadership away (and no longer accepting connections) and closing the
#: open ones, so that clients see ``Connection: close`` on their last requests, not a reset.
DRAIN_GRACE_S = 0.3

#: File in the data directory holding this broker's ZooKeeper session id and password.
ZK_SESSION_FILE = ".zk-session"


def _raise_fd_limit() -> None:
    """Many client connections need many descriptors: raise the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
