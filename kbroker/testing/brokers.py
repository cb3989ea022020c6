"""Real kbroker processes on loopback: one broker, or a whole local cluster.

:class:`BrokerProcess` runs ``python -m kbroker serve`` with its own data directory, port and
log file (a :class:`~kbroker.testing.local.ManagedProcess`), and waits until it answers HTTP.
:class:`LocalCluster` adds a ZooKeeper ensemble (or uses an existing one) and N brokers, with
fault helpers (kill -9, SIGSTOP/SIGCONT, SIGTERM, restart). The test suite and the local mode of
``make cluster-up`` use these; users may too.

Directory layout under a cluster's ``base_dir``::

    zookeeper/...            the ensemble (see kbroker.testing.local)
    broker1/data/            broker 1's data directory
    broker1/broker.log       everything it prints
    broker1/broker.pid       its pid while running
    cluster.json             connect string and broker URLs

Not thread-safe; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

from kbroker.testing.local import (
    LOOPBACK,
    SERVING_MODES,
    ManagedProcess,
    ProcessError,
    StartCloseContext,
    ZooKeeperEnsemble,
    ZooKeeperNode,
    ZooKeeperPorts,
    free_ports,
    stop_pid_file,
)

__all__ = ["BrokerProcess", "LocalCluster", "http_json", "topic_led_everywhere"]

#: Settings that make failure detection quick on a test machine (tickTime 500 ms ZooKeeper).
FAST_FAILOVER: Final[Mapping[str, str]] = {
    "zookeeper.session.timeout.ms": "4000",
    "replica.lag.time.max.ms": "4000",
    "controlled.shutdown.timeout.ms": "15000",
    "group.initial.rebalance.delay.ms": "300",
    "group.min.session.timeout.ms": "1000",
    "offsets.topic.num.partitions": "10",
}
_MARKER: Final = "kbroker serve"


def _zookeeper_mode(node: ZooKeeperNode) -> str | None:
    """Mode of a node that may have been started by another process (detached)."""
    report = node.srvr(timeout=5.0)  # a JVM's first 4lw answer can take over a second
    return report.get("Mode") if report else None


def _free_ports_on(hosts: Sequence[str]) -> list[int]:
    """One free port per entry of ``hosts``, distinct among entries naming the same host."""
    free = {host: iter(free_ports(hosts.count(host), host)) for host in set(hosts)}
    return [next(free[host]) for host in hosts]


def _answers(url: str) -> bool:
    try:
        return http_json(url + "/", timeout=2.0)[0] == 200
    except OSError:
        return False


def http_json(
    url: str,
    *,
    method: str = "GET",
    body: Any = None,
    timeout: float = 10.0,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    """A small blocking HTTP client for tests and tools: (status, parsed JSON or None)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    return status, json.loads(raw) if raw else None


def cluster_id(url: str) -> str:
    """The id of the cluster of the broker at ``url``."""
    _, clusters = http_json(f"{url}/v3/clusters")
    return str(clusters["data"][0]["cluster_id"])


def topic_led_everywhere(
    urls: Sequence[str], topic: str, partitions: int, *, without: int | None = None
) -> bool:
    """Every broker at ``urls`` describes all ``partitions`` of ``topic`` with a leader (not
    broker ``without``) and an ISR of every live replica (RF 3: all three, or the two left
    when ``without`` is down)."""
    in_sync = 3 if without is None else 2
    for url in urls:
        status, described = http_json(f"{url}/topics/{topic}/partitions", timeout=60)
        if status != 200 or len(described) != partitions:
            return False
        for p in described:
            if p["leader"] in (None, without) or len(p["isr"]) < in_sync:
                return False
    return True


class ClusterAdmin:
    """What a cluster helper asks and changes through the v3 API of any live broker: a base of
    :class:`LocalCluster` and :class:`kbroker.testing.containers.KBrokerCluster`, which give
    :meth:`any_url` and the error raised (``admin_error``)."""

    admin_error: ClassVar[type[Exception]] = ProcessError

    def any_url(self) -> str:
        raise NotImplementedError

    def live_urls(self) -> list[str]:
        raise NotImplementedError

    def wait_registered(self, count: int, timeout: float = 60.0) -> None:
        """Until every reachable broker reports ``count`` live brokers.

        Every one, not some: each broker (the controller among them) learns of registrations
        through its own ZooKeeper watch, and a topic created through a broker that has not yet
        seen them all is refused for want of brokers (42222; a CI run's chaos smoke hit it when
        the local cluster waited for some broker only).
        """
        deadline = time.monotonic() + timeout
        seen: dict[str, int] = {}
        while True:
            for url in self.live_urls():
                seen[url] = 0
                with contextlib.suppress(OSError, KeyError, TypeError):
                    status, body = http_json(url + "/brokers", timeout=2.0)
                    if status == 200:
                        seen[url] = len(body["brokers"])
            if seen and all(n >= count for n in seen.values()):
                return
            if time.monotonic() > deadline:
                raise self.admin_error(f"{count} brokers not registered within {timeout} s: {seen}")
            time.sleep(0.1)

    def controller(self) -> int | None:
        status, body = http_json(f"{self.any_url()}/v3/clusters")
        if status != 200:
            return None
        related = body["data"][0].get("controller")
        return int(related["related"].rsplit("/", 1)[1]) if related else None

    def create_topic(
        self,
        name: str,
        *,
        partitions: int = 1,
        replication_factor: int = 1,
        configs: Mapping[str, str] | None = None,
    ) -> None:
        url = self.any_url()
        body = {
            "topic_name": name,
            "partitions_count": partitions,
            "replication_factor": replication_factor,
            "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()],
        }
        status, answer = http_json(
            f"{url}/v3/clusters/{cluster_id(url)}/topics", method="POST", body=body
        )
        if status != 201:
            raise self.admin_error(f"create topic {name}: {status} {answer}")


class BrokerProcess:
    """One ``kbroker serve`` process (see the module docstring)."""

    def __init__(
        self,
        *,
        broker_id: int,
        zookeeper: str,
        base_dir: Path,
        port: int | None = None,
        rack: str | None = None,
        settings: Mapping[str, str] | None = None,
        detach: bool = False,
        python: str = sys.executable,
        log_level: str = "INFO",
        host: str = LOOPBACK,
        argv_prefix: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        """``host``: the loopback address to listen on and advertise (127.0.0.x: fault
        injection gives each broker its own). ``argv_prefix``: a command that execs the rest
        (``sh -c '...; exec "$@"'``), so the pid stays the broker's. ``extra_env``: added to
        the environment; ``self.process.env`` may be changed between restarts."""
        self.broker_id = broker_id
        self.zookeeper = zookeeper
        self.host = host
        self.dir = base_dir / f"broker{broker_id}"
        self.port = port if port is not None else free_ports(1, host)[0]
        self.settings = dict(settings or {})
        argv = [
            *argv_prefix,
            python,
            "-m",
            "kbroker",
            "serve",
            "--broker-id",
            str(broker_id),
            "--zookeeper",
            zookeeper,
            "--listen",
            f"{host}:{self.port}",
            "--data-dir",
            str(self.dir / "data"),
            "--log-level",
            log_level,
        ]
        if rack:
            argv += ["--rack", rack]
        for name, value in self.settings.items():
            argv += ["--set", f"{name}={value}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KBROKER_")}
        env.update(extra_env or {})
        self.process = ManagedProcess(
            name=f"broker{broker_id}",
            argv=argv,
            log_path=self.dir / "broker.log",
            pid_path=self.dir / "broker.pid",
            env=env,
            detach=detach,
        )

    def __repr__(self) -> str:
        return f"<BrokerProcess {self.broker_id} {self.url} running={self.running}>"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def running(self) -> bool:
        return self.process.running

    def start(self, *, wait: bool = True, timeout: float = 60.0) -> None:
        self.process.start()
        if wait:
            self.wait_serving(timeout)

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Wait until the broker answers ``GET /`` (it serves HTTP only once it has loaded
        its logs, registered in ZooKeeper and read the cluster metadata)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if http_json(self.url + "/", timeout=2.0)[0] == 200:
                    return
            except OSError:
                pass
            if self.process.pid is not None and not self.process.running:
                raise ProcessError(f"broker {self.broker_id} exited:\n{self.process.log_tail()}")
            if time.monotonic() > deadline:
                raise ProcessError(
                    f"broker {self.broker_id} does not answer HTTP:\n{self.process.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (controlled shutdown) and wait for the exit."""
        return self.process.stop(timeout)

    def kill(self) -> int | None:
        """SIGKILL: no shutdown at all (kill -9)."""
        return self.process.kill()

    def pause(self) -> None:
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)


class LocalCluster(StartCloseContext, ClusterAdmin):
    """A ZooKeeper ensemble and ``brokers`` kbroker processes on 127.0.0.1."""

    MANIFEST: Final = "cluster.json"

    def __init__(
        self,
        base_dir: Path,
        *,
        brokers: int = 3,
        zookeeper_nodes: int = 3,
        zookeeper: str | None = None,
        settings: Mapping[str, str] | None = None,
        racks: Sequence[str] | None = None,
        detach: bool = False,
        ports: Sequence[int] | None = None,
        zookeeper_ports: Sequence[ZooKeeperPorts] | None = None,
        tick_time_ms: int = 500,
        log_level: str = "INFO",
        hosts: Sequence[str] | None = None,
        broker_kwargs: Callable[[int], Mapping[str, Any]] | None = None,
    ) -> None:
        """``hosts``: each broker's loopback address (default 127.0.0.1 for all);
        ``broker_kwargs``: more :class:`BrokerProcess` keyword arguments by broker id
        (``argv_prefix``, ``extra_env``)."""
        self.base_dir = base_dir.resolve()
        self.ensemble: ZooKeeperEnsemble | None = None
        if zookeeper is None:
            self.ensemble = ZooKeeperEnsemble(
                base_dir=self.base_dir / "zookeeper",
                size=zookeeper_nodes,
                detach=detach,
                ports=zookeeper_ports,
                tick_time_ms=tick_time_ms,
            )
        self._zk_connect = zookeeper
        self._hosts = list(hosts) if hosts is not None else [LOOPBACK] * brokers
        if len(self._hosts) != brokers:
            raise ValueError(f"{len(self._hosts)} hosts for {brokers} brokers")
        self._ports = list(ports) if ports is not None else _free_ports_on(self._hosts)
        self._broker_kwargs = broker_kwargs
        self._racks = list(racks) if racks else None
        self._settings = dict(settings or {})
        self._detach = detach
        self._log_level = log_level
        self.brokers: list[BrokerProcess] = []
        """The broker processes, created by :meth:`start` (ids 1..N)."""

    @property
    def zookeeper_connect(self) -> str:
        if self._zk_connect is None:
            assert self.ensemble is not None
            self._zk_connect = self.ensemble.connect_string + "/kbroker"
        return self._zk_connect

    @property
    def urls(self) -> list[str]:
        pairs = zip(self._hosts, self._ports, strict=True)
        return [f"http://{host}:{port}" for host, port in pairs]

    @property
    def bootstrap_url(self) -> str:
        return ",".join(self.urls)

    def broker(self, broker_id: int) -> BrokerProcess:
        return self.brokers[broker_id - 1]

    def start(self, timeout: float = 90.0) -> None:
        """Start ZooKeeper (if owned) then every broker, and wait until all serve."""
        if self.ensemble is not None:
            self.ensemble.start()
        self._make_brokers()
        for broker in self.brokers:
            broker.start(wait=False)
        for broker in self.brokers:
            broker.wait_serving(timeout)
        self.wait_registered(len(self.brokers), timeout)
        self._write_manifest()

    def _make_brokers(self) -> None:
        if not self.brokers:
            self.brokers = [
                BrokerProcess(
                    broker_id=i + 1,
                    zookeeper=self.zookeeper_connect,
                    base_dir=self.base_dir,
                    port=port,
                    rack=self._racks[i] if self._racks else None,
                    settings=self._settings,
                    detach=self._detach,
                    log_level=self._log_level,
                    host=self._hosts[i],
                    **(self._broker_kwargs(i + 1) if self._broker_kwargs else {}),
                )
                for i, port in enumerate(self._ports)
            ]

    def ensure_running(self, timeout: float = 90.0) -> None:
        """Start whatever of a (detached) cluster is not serving; leave the rest alone.

        Needs fixed ports (``ports`` and ``zookeeper_ports``) so that the pieces started
        earlier are found again. Stale pid files of dead processes are cleaned up first.
        """
        ensemble = self.ensemble
        if ensemble is not None:
            serving = [_zookeeper_mode(node) in SERVING_MODES for node in ensemble.nodes]
            if not any(serving):
                ZooKeeperEnsemble.stop_detached(ensemble.base_dir)
                ensemble.start()
            else:
                for index, node in enumerate(ensemble.nodes):
                    if not serving[index]:
                        stop_pid_file(node.node_dir / "zookeeper.pid", marker="QuorumPeerMain")
                        ensemble.start(index)
        self._make_brokers()
        started = []
        for broker in self.brokers:
            if not _answers(broker.url):
                stop_pid_file(broker.dir / "broker.pid", marker=_MARKER)
                broker.start(wait=False)
                started.append(broker)
        for broker in started:
            broker.wait_serving(timeout)
        self.wait_registered(len(self.brokers), timeout)
        self._write_manifest()

    def zookeeper_modes(self) -> list[str | None]:
        """Mode of each owned ZooKeeper node (works for detached nodes too)."""
        return [_zookeeper_mode(n) for n in self.ensemble.nodes] if self.ensemble else []

    def live_urls(self) -> list[str]:
        """URLs of brokers not known to be stopped or paused (brokers started by another
        process, as after a detached ``make cluster-up``, count as live)."""
        return [
            b.url
            for b in self.brokers
            if not b.process.paused and (b.running or b.process.pid is None)
        ]

    def any_url(self) -> str:
        urls = self.live_urls()
        if not urls:
            raise ProcessError("no broker is running")
        return urls[0]

    def partition(self, topic: str, partition: int) -> dict[str, Any]:
        """The partition as any live broker describes it (leader, isr, offsets...)."""
        status, body = http_json(f"{self.any_url()}/topics/{topic}/partitions/{partition}")
        if status != 200:
            raise ProcessError(f"describe {topic}-{partition}: {status} {body}")
        return dict(body)

    def leader_of(self, topic: str, partition: int) -> int | None:
        leader = self.partition(topic, partition)["leader"]
        return int(leader) if leader is not None else None

    def close(self) -> None:
        """Kill every broker and the owned ensemble; leaves no process behind."""
        for broker in self.brokers:
            if broker.process.paused:
                broker.resume()
            broker.kill()
        if self.ensemble is not None:
            self.ensemble.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop brokers with SIGTERM (controlled shutdown), then the owned ensemble."""
        for broker in self.brokers:
            broker.stop(timeout)
        if self.ensemble is not None:
            self.ensemble.close()

    def _write_manifest(self) -> None:
        manifest = {
            "zookeeper": self.zookeeper_connect,
            "brokers": [
                {"id": b.broker_id, "url": b.url, "pid": b.process.pid, "dir": str(b.dir)}
                for b in self.brokers
            ],
        }
        (self.base_dir / self.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    @classmethod
    def stop_detached(cls, base_dir: Path, timeout: float = 30.0) -> list[str]:
        """Stop a detached cluster from its pid files; returns what was stopped."""
        stopped = []
        for pid_file in sorted(base_dir.glob("broker*/broker.pid")):
            if stop_pid_file(pid_file, marker=_MARKER, timeout=timeout) is not None:
                stopped.append(pid_file.parent.name)
        zk_dir = base_dir / "zookeeper"
        if zk_dir.exists():
            ZooKeeperEnsemble.stop_detached(zk_dir)
            stopped.append("zookeeper")
        return stopped

    def __iter__(self) -> Iterator[BrokerProcess]:
        return iter(self.brokers)
