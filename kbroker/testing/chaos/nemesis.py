"""The nemesis: real faults injected into a running cluster on a seeded schedule, each healed
after a bounded time.

Fault kinds (``KINDS``; each :class:`Fault` has ``inject`` and ``heal``, both bounded):

=================  ===============================================================================
kill               kill -9 of a broker; heal: start it again (same data directory)
pause              SIGSTOP of a broker; heal: SIGCONT
partition-peers    iptables: the broker and its peers drop each other's traffic (clients still
                   reach both sides)
partition-zk       iptables: the broker's connections to every ZooKeeper node are cut
isolate            both of the above
lossy              iptables: the broker's connections to its peers (both ways) and to ZooKeeper
                   lose 20% of their packets at random (TCP retransmits; nothing is cut)
zk-leader-kill     kill -9 of the ZooKeeper leader; heal: restart it
session-expiry     the broker's ZooKeeper session is expired from outside (its id and password
                   are in ``<data-dir>/.zk-session``); nothing to heal
disk-full          the broker's data file system (a loop-mounted ext4) is filled; heal: free it
clock-skew         the broker restarts (SIGTERM) with its wall clock skewed by -10 min .. +1 h
                   (libfaketime); heal: restart it with the true time
member-crash       a consumer-group member dies without leaving; heal: a new member joins
=================  ===============================================================================

Targets lean towards what hurts: a partition leader, the controller, or any broker. A broker
(or ZooKeeper, or the consumer group) is the target of at most one fault at a time; some faults
overlap another on a different target (``overlap`` of the plan).

About clock skew: libfaketime 0.9.10 with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` makes Python's
``time.sleep`` fail with EINVAL (its ``clock_nanosleep`` wrapper), which kazoo's reconnect loop
calls; so the skewed broker runs with every clock offset by the same constant for its whole
life (monotonic clocks only measure differences, so only the wall clock is visibly wrong), and
changing the skew means restarting the broker.

Concurrency: one asyncio loop; blocking work (signals, waits for a broker to serve, iptables)
runs in threads via ``asyncio.to_thread``. Not safe to drive from two loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Final

from kbroker.coordination.zk import force_session_expiry
from kbroker.testing.brokers import BrokerProcess, LocalCluster
from kbroker.testing.chaos.sandbox import Endpoint, Sandbox, fill_fs
from kbroker.testing.local import ZooKeeperEnsemble

__all__ = [
    "KINDS",
    "Fault",
    "FaultRecord",
    "Nemesis",
    "Planned",
    "World",
    "plan",
]

LIBFAKETIME: Final = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
SKEWS_S: Final = (-600, -120, -30, 30, 120, 600, 3600)
_START_TIMEOUT_S: Final = 90.0


@dataclass(slots=True)
class FaultRecord:
    """One injected fault, for the report and the timeline (monotonic times)."""

    kind: str
    target: str
    started: float
    healing: float | None = None
    """When the heal began (None: not healed yet)."""
    healed: float | None = None
    """When the heal finished (a restarted broker serves again, etc.)."""
    overlapped: bool = False
    """Another fault was active at some point during this one."""
    error: str | None = None

    def as_json(self, t0: float) -> dict[str, object]:
        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - t0, 3)

        return {
            "kind": self.kind,
            "target": self.target,
            "start_s": rel(self.started),
            "heal_s": rel(self.healing),
            "healed_s": rel(self.healed),
            "overlapped": self.overlapped,
            "error": self.error,
        }


@dataclass(slots=True)
class World:
    """What faults act on, and who is busy."""

    cluster: LocalCluster
    ensemble: ZooKeeperEnsemble
    sandbox: Sandbox
    topic: str
    partitions: int
    rng: random.Random
    crash_member: Callable[[], Awaitable[str]] | None = None
    """Kill a consumer member; returns its name (member-crash)."""
    add_member: Callable[[], Awaitable[None]] | None = None
    busy: set[str] = field(default_factory=set)
    down: set[int] = field(default_factory=set)
    """Brokers stopped on purpose right now (a kill until its restart has finished, a restart):
    any other broker that is not running exited on its own."""

    def broker_endpoint(self, broker: BrokerProcess) -> Endpoint:
        return Endpoint(broker.host, broker.port)

    def zookeeper_endpoints(self) -> list[Endpoint]:
        return [Endpoint("127.0.0.1", node.ports.client) for node in self.ensemble.nodes]

    def pick_broker(self) -> BrokerProcess | None:
        """A running broker nobody else is using: a partition leader, the controller, or any."""
        free = [b for b in self.cluster.brokers if f"b{b.broker_id}" not in self.busy]
        free = [b for b in free if b.running and not b.process.paused]
        if not free:
            return None
        roll = self.rng.random()
        wanted: int | None = None
        with contextlib.suppress(Exception):
            if roll < 0.45:
                wanted = self.cluster.leader_of(self.topic, self.rng.randrange(self.partitions))
            elif roll < 0.65:
                wanted = self.cluster.controller()
        chosen = [b for b in free if b.broker_id == wanted]
        return chosen[0] if chosen else self.rng.choice(free)


class Fault(ABC):
    """One fault: :meth:`inject` returns the target's name; :meth:`heal` undoes it."""

    kind: ClassVar[str]
    durations: ClassVar[tuple[float, float]] = (4.0, 12.0)
    """Bounds of the time between inject and heal (seconds)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.resource = ""

    def claim(self) -> str | None:
        """Pick a target and mark it busy; None when no target is free."""
        return None

    @abstractmethod
    async def inject(self) -> None: ...

    @abstractmethod
    async def heal(self) -> None: ...


class _BrokerFault(Fault):
    broker: BrokerProcess

    def claim(self) -> str | None:
        broker = self.world.pick_broker()
        if broker is None:
            return None
        self.broker = broker
        self.resource = f"b{broker.broker_id}"
        return self.resource


class KillBroker(_BrokerFault):
    kind = "kill"
    durations = (3.0, 12.0)

    async def inject(self) -> None:
        self.world.down.add(self.broker.broker_id)
        await asyncio.to_thread(self.broker.kill)

    async def heal(self) -> None:
        try:
            await asyncio.to_thread(self.broker.start, timeout=_START_TIMEOUT_S)
        finally:
            self.world.down.discard(self.broker.broker_id)


class PauseBroker(_BrokerFault):
    kind = "pause"
    durations = (2.0, 9.0)

    async def inject(self) -> None:
        self.broker.pause()

    async def heal(self) -> None:
        self.broker.resume()


class PartitionBroker(_BrokerFault):
    """Cut the broker from its peers, from ZooKeeper, or both (or, with ``loss``, make those
    links drop that share of their packets)."""

    peers: ClassVar[bool] = True
    zookeeper: ClassVar[bool] = True
    loss: ClassVar[float | None] = None
    _rules: list[tuple[str, ...]]

    def rules(self) -> list[tuple[str, ...]]:
        sandbox, me, loss = self.world.sandbox, self.broker, self.loss
        rules: list[tuple[str, ...]] = []
        if self.peers:
            for other in self.world.cluster.brokers:
                if other is not me:
                    rules += sandbox.cut_rules(
                        me.broker_id, self.world.broker_endpoint(other), loss
                    )
                    rules += sandbox.cut_rules(
                        other.broker_id, self.world.broker_endpoint(me), loss
                    )
        if self.zookeeper:
            for endpoint in self.world.zookeeper_endpoints():
                rules += sandbox.cut_rules(me.broker_id, endpoint, loss)
        return rules

    async def inject(self) -> None:
        self._rules = self.rules()
        await asyncio.to_thread(self.world.sandbox.add_rules, self._rules)

    async def heal(self) -> None:
        await asyncio.to_thread(self.world.sandbox.remove_rules, self._rules)


class PartitionPeers(PartitionBroker):
    kind = "partition-peers"
    zookeeper = False
    durations = (4.0, 14.0)


class PartitionZooKeeper(PartitionBroker):
    kind = "partition-zk"
    peers = False


class Isolate(PartitionBroker):
    kind = "isolate"


class LossyLinks(PartitionBroker):
    kind = "lossy"
    loss = 0.2
    durations = (5.0, 15.0)


class KillZooKeeperLeader(Fault):
    kind = "zk-leader-kill"
    durations = (3.0, 10.0)
    index: int

    def claim(self) -> str | None:
        if "zk" in self.world.busy:
            return None
        leader = self.world.ensemble.leader()
        if leader is None:
            return None
        self.index = leader
        self.resource = "zk"
        return f"zk{leader + 1}"

    async def inject(self) -> None:
        await asyncio.to_thread(self.world.ensemble.kill, self.index)

    async def heal(self) -> None:
        await asyncio.to_thread(self.world.ensemble.start, self.index, timeout=_START_TIMEOUT_S)


class ExpireSession(_BrokerFault):
    kind = "session-expiry"
    durations = (3.0, 6.0)
    """Nothing to heal; the broker gets this long to recover before the next fault on it."""

    async def inject(self) -> None:
        path = self.broker.data_dir / ".zk-session"
        session = json.loads(await asyncio.to_thread(path.read_text))
        client_id = (int(session["session_id"]), bytes.fromhex(session["password"]))
        await force_session_expiry(self.world.cluster.zookeeper_connect, client_id)

    async def heal(self) -> None:
        return None


class DiskFull(_BrokerFault):
    kind = "disk-full"
    _filler: Path | None = None

    async def inject(self) -> None:
        self._filler = await asyncio.to_thread(fill_fs, self.broker.data_dir)

    async def heal(self) -> None:
        if self._filler is not None:
            await asyncio.to_thread(self._filler.unlink, missing_ok=True)


class ClockSkew(_BrokerFault):
    kind = "clock-skew"
    durations = (10.0, 25.0)

    def claim(self) -> str | None:
        target = super().claim()
        self.skew = self.world.rng.choice(SKEWS_S)
        return None if target is None else f"{target} {self.skew:+d}s"

    async def inject(self) -> None:
        await self._restart({"LD_PRELOAD": LIBFAKETIME, "FAKETIME": f"{self.skew:+d}s"})

    async def heal(self) -> None:
        await self._restart({})

    async def _restart(self, env: dict[str, str]) -> None:
        self.world.down.add(self.broker.broker_id)
        try:
            await asyncio.to_thread(self._restart_blocking, env)
        finally:
            self.world.down.discard(self.broker.broker_id)

    def _restart_blocking(self, env: dict[str, str]) -> None:
        self.broker.stop(timeout=30.0)
        process_env = self.broker.process.env
        assert process_env is not None
        for name in ("LD_PRELOAD", "FAKETIME"):
            process_env.pop(name, None)
        process_env.update(env)
        self.broker.start(timeout=_START_TIMEOUT_S)


class MemberCrash(Fault):
    kind = "member-crash"
    durations = (2.0, 8.0)

    def claim(self) -> str | None:
        if self.world.crash_member is None or "group" in self.world.busy:
            return None
        self.resource = "group"
        return "group"

    async def inject(self) -> None:
        assert self.world.crash_member is not None
        await self.world.crash_member()

    async def heal(self) -> None:
        assert self.world.add_member is not None
        await self.world.add_member()


KINDS: Final[dict[str, type[Fault]]] = {
    cls.kind: cls
    for cls in (
        KillBroker,
        PauseBroker,
        PartitionPeers,
        PartitionZooKeeper,
        Isolate,
        LossyLinks,
        KillZooKeeperLeader,
        ExpireSession,
        DiskFull,
        ClockSkew,
        MemberCrash,
    )
}


@dataclass(frozen=True, slots=True)
class Planned:
    """A fault of ``kind`` to inject ``at`` seconds into the run, healed ``duration`` later."""

    at: float
    kind: str
    duration: float


def plan(
    rng: random.Random,
    kinds: Sequence[str],
    *,
    start_s: float,
    end_s: float,
    overlap: float = 0.25,
    gap_s: tuple[float, float] = (3.0, 8.0),
) -> list[Planned]:
    """A seeded schedule: faults one after another with quiet gaps; with probability
    ``overlap`` a second fault starts while one is active. Kinds are dealt from a shuffled
    deck (every kind once before any twice). Every fault is healed by ``end_s``.
    Deterministic for a given rng state."""
    deck: list[str] = []

    def deal() -> str:
        if not deck:
            deck.extend(kinds)
            rng.shuffle(deck)
        return deck.pop()

    out: list[Planned] = []
    at = start_s
    while True:
        kind = deal()
        low, high = KINDS[kind].durations
        duration = rng.uniform(low, high)
        if at + duration > end_s:
            break
        out.append(Planned(round(at, 3), kind, round(duration, 3)))
        if rng.random() < overlap:
            second = deal()
            low2, high2 = KINDS[second].durations
            at2 = at + duration * rng.uniform(0.2, 0.6)
            duration2 = min(rng.uniform(low2, high2), end_s - at2)
            if duration2 >= low2:
                out.append(Planned(round(at2, 3), second, round(duration2, 3)))
        at += duration + rng.uniform(*gap_s)
    return sorted(out, key=lambda p: p.at)


class Nemesis:
    """Runs a :func:`plan` against a :class:`World`, recording every fault."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.records: list[FaultRecord] = []
        self.skipped: list[Planned] = []
        self._active: dict[int, tuple[Fault, FaultRecord]] = {}

    async def run(self, schedule: Sequence[Planned], t0: float) -> None:
        """Inject and heal everything in ``schedule`` (times relative to monotonic ``t0``)."""
        async with asyncio.TaskGroup() as tasks:
            for planned in schedule:
                tasks.create_task(self._episode(planned, t0))

    async def _episode(self, planned: Planned, t0: float) -> None:
        await asyncio.sleep(max(0.0, t0 + planned.at - time.monotonic()))
        fault = KINDS[planned.kind](self.world)
        target = await asyncio.to_thread(fault.claim)
        if target is None:
            self.skipped.append(planned)
            return
        self.world.busy.add(fault.resource)
        record = FaultRecord(planned.kind, target, time.monotonic())
        for _, other in self._active.values():
            other.overlapped = record.overlapped = True
        self._active[id(record)] = (fault, record)
        self.records.append(record)
        try:
            await fault.inject()
            await asyncio.sleep(planned.duration)
        except Exception as exc:
            record.error = f"inject: {exc!r}"
        finally:
            await asyncio.shield(self._heal(fault, record))

    async def _heal(self, fault: Fault, record: FaultRecord) -> None:
        record.healing = time.monotonic()
        try:
            await fault.heal()
        except Exception as exc:
            record.error = (record.error or "") + f" heal: {exc!r}"
        record.healed = time.monotonic()
        self._active.pop(id(record), None)
        self.world.busy.discard(fault.resource)

    async def heal_all(self) -> None:
        """Heal whatever is still active and not already healing (after a cancelled run)."""
        for fault, record in list(self._active.values()):
            if record.healing is None:
                await self._heal(fault, record)
