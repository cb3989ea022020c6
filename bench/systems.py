"""Start and stop every system under test, on 127.0.0.1, as context managers.

Each context manager starts its server processes (as
:class:`~kbroker.testing.local.ManagedProcess`, so they are killed at interpreter exit even if
the runner crashes), waits until they serve, yields a small handle, and on the way out kills the
processes, deletes their data directories and runs ``sync`` so that the writeback of one phase
does not slow the next.

* :func:`zookeeper`: one ZooKeeper node shared by every kbroker of a run (one chroot each).
* :func:`kbroker_single`: one broker (the RF 1 measurements).
* :func:`kbroker_cluster`: three brokers (the RF 3 acks=all measurements).
* :func:`bare_server`: the bare aiohttp append server (the implementation limit).
* :func:`redis_server`: Redis 7 with ``appendonly yes`` and ``appendfsync everysec``.
* :func:`nats_server`: one nats-server with JetStream file storage; :func:`nats_cluster`: three
  of them joined by cluster routes (JetStream replicas 3 needs a cluster).

Not thread-safe: one runner thread owns every handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.model import sync_disks
from kbroker.testing.brokers import BrokerProcess, LocalCluster, http_json
from kbroker.testing.local import LOOPBACK, ManagedProcess, ZooKeeperEnsemble, free_ports

__all__ = [
    "BareServer",
    "KBroker",
    "NatsHandle",
    "RedisHandle",
    "bare_server",
    "kbroker_cluster",
    "kbroker_single",
    "nats_cluster",
    "nats_server",
    "redis_server",
    "wipe",
    "zookeeper",
]

_ROOT = Path(__file__).resolve().parent.parent


def wipe(path: Path) -> None:
    """Delete a data directory and write back what is still dirty."""
    shutil.rmtree(path, ignore_errors=True)
    sync_disks()


def _wait(check: Any, what: str, timeout: float = 30.0) -> None:
    """Call ``check()`` until it returns true without raising; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, RuntimeError) as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready within {timeout} s: {last}")


@contextlib.contextmanager
def _running(
    procs: Sequence[ManagedProcess],
    workdir: Path,
    ready: Callable[[], bool],
    what: str,
    timeout: float = 30.0,
) -> Iterator[None]:
    """Start ``procs`` and wait until ``ready()``; whatever happens, kill them and wipe
    ``workdir`` on the way out."""
    try:
        for proc in procs:
            proc.start()
        _wait(ready, what, timeout=timeout)
        yield
    finally:
        for proc in procs:
            proc.kill()
        wipe(workdir)


# -- ZooKeeper and kbroker ----------------------------------------------------------------------


@contextlib.contextmanager
def zookeeper(root: Path) -> Iterator[str]:
    """One ZooKeeper node; yields its connect string (callers add a chroot)."""
    try:
        with ZooKeeperEnsemble(base_dir=root / "zookeeper", size=1) as ensemble:
            yield ensemble.connect_string
    finally:
        wipe(root / "zookeeper")


@dataclass(slots=True)
class KBroker:
    """kbroker brokers of one run: their URLs by broker id, and the processes."""

    urls: dict[int, str]
    processes: list[BrokerProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Any broker's URL (the first), for admin requests."""
        return next(iter(self.urls.values()))

    def create_topic(
        self,
        name: str,
        *,
        partitions: int,
        replication_factor: int = 1,
        configs: Mapping[str, str] | None = None,
        timeout: float = 120.0,
    ) -> list[str]:
        """Create a topic, wait until every partition has a leader (and a full ISR), and
        return each partition's leader URL."""
        _, clusters = http_json(self.url + "/v3/clusters")
        cid = clusters["data"][0]["cluster_id"]
        status, body = http_json(
            f"{self.url}/v3/clusters/{cid}/topics",
            method="POST",
            body={
                "topic_name": name,
                "partitions_count": partitions,
                "replication_factor": replication_factor,
                "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()],
            },
            timeout=timeout,
        )
        if status != 201:
            raise RuntimeError(f"create topic {name}: {status} {body}")
        return self.leaders(name, replication_factor, timeout=timeout)

    def leaders(self, topic: str, isr: int = 1, *, timeout: float = 120.0) -> list[str]:
        """Leader URL of each partition, once all have a leader and ``isr`` in-sync replicas."""
        found: list[str] = []

        def ready() -> bool:
            status, body = http_json(f"{self.url}/topics/{topic}/partitions", timeout=10)
            if status != 200:
                return False
            parts = sorted(body, key=lambda p: p["partition"])
            # A null high watermark: the leader has not set its replica up yet (or is slow).
            if any(
                p["leader"] is None or len(p["isr"]) < isr or p["high_watermark"] is None
                for p in parts
            ):
                return False
            found[:] = [self.urls[int(p["leader"])] for p in parts]
            return True

        _wait(ready, f"leaders of {topic}", timeout)
        return found

    def end_offsets(self, topic: str, partitions: int) -> list[int]:
        """Each partition's high watermark, asked of its leader."""
        leaders = self.leaders(topic)
        return [
            int(http_json(f"{leaders[p]}/topics/{topic}/partitions/{p}/offsets")[1]["end_offset"])
            for p in range(partitions)
        ]


@contextlib.contextmanager
def kbroker_single(
    root: Path,
    zk_connect: str,
    *,
    chroot: str,
    settings: Mapping[str, str] | None = None,
    log_level: str = "WARNING",
) -> Iterator[KBroker]:
    """One broker (id 1) registered under ``chroot`` of the shared ZooKeeper."""
    broker = BrokerProcess(
        broker_id=1,
        zookeeper=zk_connect + chroot,
        base_dir=root / chroot.strip("/"),
        log_level=log_level,
        settings=settings,
    )
    try:
        broker.start(timeout=120)
        yield KBroker(urls={1: broker.url}, processes=[broker])
    finally:
        broker.kill()
        wipe(root / chroot.strip("/"))


@contextlib.contextmanager
def kbroker_cluster(
    root: Path,
    zk_connect: str,
    *,
    chroot: str,
    brokers: int = 3,
    settings: Mapping[str, str] | None = None,
) -> Iterator[KBroker]:
    """``brokers`` brokers (ids 1..N) registered under ``chroot`` of the shared ZooKeeper."""
    cluster = LocalCluster(
        root / chroot.strip("/"),
        brokers=brokers,
        zookeeper=zk_connect + chroot,
        settings=settings,
        log_level="WARNING",
    )
    try:
        cluster.start(timeout=120)
        yield KBroker(
            urls={b.broker_id: b.url for b in cluster.brokers}, processes=list(cluster.brokers)
        )
    finally:
        cluster.close()
        wipe(root / chroot.strip("/"))


# -- the bare aiohttp append server --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BareServer:
    """The running bare append server: its base URL and pid."""

    url: str
    pid: int | None


@contextlib.contextmanager
def bare_server(root: Path) -> Iterator[BareServer]:
    """``python -m bench.bare_server`` appending every body to ``root/bare/bare.log``."""
    workdir = root / "bare"
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_ports(1)[0]
    proc = ManagedProcess(
        name="bare-aiohttp",
        argv=[sys.executable, "-m", "bench.bare_server", str(port), str(workdir / "bare.log")],
        log_path=workdir / "bare-server.out",
        cwd=_ROOT,
    )
    url = f"http://{LOOPBACK}:{port}"

    def answers() -> bool:
        return http_json(url + "/x", method="POST", body={}, timeout=2)[0] == 200

    with _running([proc], workdir, answers, "bare"):
        yield BareServer(url=url, pid=proc.pid)


# -- Redis ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisHandle:
    """The running redis-server: its port on 127.0.0.1 and pid."""

    port: int
    pid: int | None

    @property
    def addr(self) -> str:
        """``host:port`` for clients that take one."""
        return f"{LOOPBACK}:{self.port}"


@contextlib.contextmanager
def redis_server(root: Path) -> Iterator[RedisHandle]:
    """Redis with AOF, fsync every second; no RDB snapshots and no automatic AOF rewrite (a
    forked rewrite in the middle of a load would measure the fork, not the stream)."""
    import redis  # noqa: PLC0415 - the bench extra, installed by scripts/bench-deps.sh

    workdir = root / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_ports(1)[0]
    options = {
        "--bind": LOOPBACK,
        "--port": str(port),
        "--dir": str(workdir),
        "--appendonly": "yes",
        "--appendfsync": "everysec",
        "--save": "",
        "--auto-aof-rewrite-percentage": "0",
        "--daemonize": "no",
    }
    proc = ManagedProcess(
        name="redis",
        argv=[
            shutil.which("redis-server") or "redis-server",
            *(arg for pair in options.items() for arg in pair),
        ],
        log_path=workdir / "redis.out",
    )
    client = redis.Redis(host=LOOPBACK, port=port)  # connects on first use
    with _running([proc], workdir, lambda: bool(client.ping()), "redis"):
        client.close()
        yield RedisHandle(port=port, pid=proc.pid)


# -- NATS ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NatsHandle:
    """Client URLs of the servers (one, or a cluster's three) and their pids."""

    urls: list[str]
    pids: list[int | None]

    @property
    def url(self) -> str:
        """Every server's URL, comma-separated (nats.go and nats-py accept that)."""
        return ",".join(self.urls)


def _nats_config(
    *, name: str, port: int, store: Path, cluster: Sequence[int] = (), index: int = 0
) -> str:
    lines = [
        f"server_name: {name}",
        f"listen: {LOOPBACK}:{port}",
        "max_payload: 8MB",
        "jetstream {",
        f'  store_dir: "{store}"',
        "  max_memory_store: 1GB",
        "  max_file_store: 40GB",
        "}",
    ]
    if cluster:
        routes = ", ".join(f"nats-route://{LOOPBACK}:{p}" for p in cluster)
        lines += [
            "cluster {",
            "  name: bench",
            f"  listen: {LOOPBACK}:{cluster[index]}",
            f"  routes: [{routes}]",
            "}",
        ]
    return "\n".join(lines) + "\n"


async def _jetstream_ready(url: str) -> bool:
    import nats  # noqa: PLC0415 - the bench extra

    async def quiet(exc: Exception) -> None:
        """Refused connections are expected while the servers start."""

    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False, error_cb=quiet)
    try:
        await nc.jetstream().account_info()
        return True
    finally:
        await nc.close()


@contextlib.contextmanager
def _nats(root: Path, size: int) -> Iterator[NatsHandle]:
    workdir = root / f"nats{size}"
    ports = free_ports(2 * size)
    client_ports, route_ports = ports[:size], (ports[size:] if size > 1 else [])
    procs = []
    for i in range(size):
        node = workdir / f"n{i + 1}"
        node.mkdir(parents=True, exist_ok=True)
        conf = node / "nats.conf"
        conf.write_text(
            _nats_config(
                name=f"n{i + 1}",
                port=client_ports[i],
                store=node / "js",
                cluster=route_ports,
                index=i,
            )
        )
        procs.append(
            ManagedProcess(
                name=f"nats-{i + 1}",
                argv=[shutil.which("nats-server") or "nats-server", "-c", str(conf)],
                log_path=node / "nats.out",
            )
        )
    urls = [f"nats://{LOOPBACK}:{p}" for p in client_ports]

    def answers() -> bool:
        return asyncio.run(_jetstream_ready(urls[0]))

    with _running(procs, workdir, answers, "jetstream", timeout=60):
        yield NatsHandle(urls=urls, pids=[p.pid for p in procs])


def nats_server(root: Path) -> contextlib.AbstractContextManager[NatsHandle]:
    """One nats-server with JetStream (file storage under ``root``)."""
    return _nats(root, 1)


def nats_cluster(root: Path) -> contextlib.AbstractContextManager[NatsHandle]:
    """Three nats-servers joined by routes on loopback: JetStream replicas 3 works on them."""
    return _nats(root, 3)
