"""An observer of the cluster's ZooKeeper state during a chaos run.

:class:`ZooKeeperMonitor` polls, from its own thread and its own kazoo session (never cut by
the nemesis), ``/controller`` and ``/controller_epoch`` and the state znode of every partition
of the chaos topic, and keeps each *change* with its time. The checker uses it for:

* controller epochs: ``/controller_epoch`` never goes back; and, since an election creates
  ``/controller`` and sets ``/controller_epoch`` in one multi, a ``/controller`` whose czxid is
  the epoch znode's mzxid was created by the election that wrote that epoch: such pairs give
  the controller of each epoch, which must be unique;
* leader epochs: per partition, a leader epoch never goes back and names one leader.

Concurrency: the polling thread appends to lists; read them after :meth:`stop`. Bounded:
each poll is a handful of reads with kazoo's timeout; the thread stops within one interval.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from kazoo.client import KazooClient

__all__ = ["ControllerSample", "StateSample", "ZooKeeperMonitor"]


@dataclass(frozen=True, slots=True)
class ControllerSample:
    """One reading of ``/controller_epoch`` and ``/controller`` (None when absent)."""

    at: float
    epoch: int
    epoch_mzxid: int
    controller: int | None
    controller_czxid: int | None

    @property
    def paired(self) -> bool:
        """The controller read is the one elected with this epoch (same transaction)."""
        return self.controller_czxid == self.epoch_mzxid


@dataclass(frozen=True, slots=True)
class StateSample:
    """One reading of a partition's state znode."""

    at: float
    partition: int
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]


@dataclass(slots=True)
class ZooKeeperMonitor:
    """Polls every ``interval_s`` (see the module docstring)."""

    connect: str
    """Connect string with the cluster's chroot."""
    topic: str
    partitions: int
    interval_s: float = 0.5
    controllers: list[ControllerSample] = field(default_factory=list)
    states: list[StateSample] = field(default_factory=list)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        logging.getLogger("kazoo").setLevel(logging.ERROR)
        self._thread = threading.Thread(target=self._run, name="zk-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        client = KazooClient(hosts=self.connect, timeout=10.0)
        try:
            client.start(timeout=15)
        except Exception:
            self.errors += 1
            return
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    self._poll(client)
                except Exception:
                    self.errors += 1
        finally:
            with contextlib.suppress(Exception):
                client.stop()
                client.close()

    def _poll(self, client: Any) -> None:
        now = time.monotonic()
        data, stat = client.get("/controller_epoch")
        controller, czxid = None, None
        with contextlib.suppress(Exception):  # NoNodeError between elections
            raw, cstat = client.get("/controller")
            controller, czxid = int(orjson.loads(raw)["brokerid"]), cstat.czxid
        sample = ControllerSample(now, int(data.decode().strip()), stat.mzxid, controller, czxid)
        last = self.controllers[-1] if self.controllers else None
        if last is None or (last.epoch, last.controller, last.controller_czxid) != (
            sample.epoch,
            sample.controller,
            sample.controller_czxid,
        ):
            self.controllers.append(sample)
        for partition in range(self.partitions):
            path = f"/brokers/topics/{self.topic}/partitions/{partition}/state"
            raw, _ = client.get(path)
            doc = orjson.loads(raw)
            state = StateSample(
                now, partition, int(doc["leader"]), int(doc["leader_epoch"]), tuple(doc["isr"])
            )
            previous = self._last_state(partition)
            if previous is None or (previous.leader, previous.leader_epoch, previous.isr) != (
                state.leader,
                state.leader_epoch,
                state.isr,
            ):
                self.states.append(state)

    def _last_state(self, partition: int) -> StateSample | None:
        for sample in reversed(self.states):
            if sample.partition == partition:
                return sample
        return None
