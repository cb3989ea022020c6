"""testcontainers helpers: ZooKeeper and kbroker clusters in Docker containers, for tests.

For users' own tests (and kbroker's ``tests/containers``)::

    from kbroker.testing.containers import KBrokerCluster

    def test_my_app() -> None:
        with KBrokerCluster(brokers=3) as cluster:
            app = MyApp(bootstrap=cluster.bootstrap_url)   # "http://127.0.0.1:P1,..."
            ...
            cluster.kill_broker(cluster.leader_of("orders", 0))

:class:`ZooKeeperEnsemble` runs N ZooKeeper nodes (image ``kbroker-zookeeper:3.8``) on a Docker
network of its own, as ``zk1..zkN``; :class:`KBrokerCluster` runs N brokers (image
``kbroker:<version>``) against it (its own ensemble, or a shared one with a chroot per cluster).
Build the images first with ``make images`` (``python -m kbroker.images build``): no registry is
used, nothing is ever pulled.

Addresses. Everything the host reaches is published on 127.0.0.1 only. Broker N listens on port
P_N inside its container, published as ``127.0.0.1:P_N`` on the host (the same number, picked
free at start), and advertises ``http://127.0.0.1:P_N``. Inside each broker container a socat
forwarder listens on ``127.0.0.1:P_M`` for every other broker M and forwards to ``brokerM:P_M``
on the network, so the advertised URLs (which brokers use for forwarding and replication) work
from the host and from every broker alike.

Fault helpers mirror :class:`kbroker.testing.brokers.LocalCluster`: brokers by id (1..N),
ZooKeeper nodes by 0-based index. ``kill_broker`` (``docker kill``, SIGKILL),
``stop_broker`` / ``start_broker`` (``docker stop``, SIGTERM: a controlled shutdown; and
``docker start``, same data), ``pause_broker`` / ``unpause_broker`` (``docker pause``: frozen,
connections hang), ``disconnect_broker`` / ``reconnect_broker`` (``docker network disconnect``:
cut off from ZooKeeper, the other brokers *and the host*; use :meth:`KBrokerCluster.http_inside`
to reach it meanwhile), ``kill_zookeeper_leader``.

Clean-up: testcontainers' reaper (Ryuk) needs an image from a registry, so it is disabled
(unless ``TESTCONTAINERS_RYUK_DISABLED`` says otherwise) and these classes remove what they
made themselves: :meth:`close` (and ``__exit__``, and a failed start) removes every container and
the network they created. Every container and network carries the label ``org.kbroker.testing``;
:func:`remove_leftovers` removes those left by a process that died.

Concurrency: not thread-safe; drive each object from one thread. Every wait is bounded and
raises :class:`ContainerError` with the tail of the relevant container logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import docker
import docker.errors
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from kbroker import __version__
from kbroker.testing.brokers import ClusterAdmin, cluster_id, http_json
from kbroker.testing.local import LOOPBACK, StartCloseContext, four_letter_word, free_ports

__all__ = [
    "FAST_FAILOVER",
    "KBROKER_IMAGE",
    "LABEL",
    "ZOOKEEPER_IMAGE",
    "ContainerError",
    "KBrokerCluster",
    "ZooKeeperEnsemble",
    "docker_problem",
    "remove_leftovers",
]

KBROKER_IMAGE: Final = f"kbroker:{__version__}"
ZOOKEEPER_IMAGE: Final = "kbroker-zookeeper:3.8"
LABEL: Final = "org.kbroker.testing"
"""Label on every container and network made here (value: the owning object's name prefix)."""
ZOOKEEPER_CLIENT_PORT: Final = 2181
SERVING_MODES: Final = frozenset({"leader", "follower", "standalone"})

#: Settings for quick failure detection against a tickTime-500 ensemble (as in local tests).
FAST_FAILOVER: Final[Mapping[str, str]] = {
    "zookeeper.session.timeout.ms": "6000",
    "replica.lag.time.max.ms": "6000",
    "controlled.shutdown.timeout.ms": "15000",
}

_POLL_S: Final = 0.2
_PORT_RETRIES: Final = 3

_HTTP_INSIDE: Final = """
import json, sys, urllib.error, urllib.request
url, method, data, timeout = sys.argv[1], sys.argv[2], sys.argv[3].encode(), float(sys.argv[4])
headers = {"Content-Type": "application/vnd.kafka.json.v2+json"}
request = urllib.request.Request(url, data=data or None, method=method, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
        status, raw = response.status, response.read()
except urllib.error.HTTPError as exc:
    status, raw = exc.code, exc.read()
except OSError:
    status, raw = 0, b""
print(json.dumps([status, raw.decode()]))
"""
"""Run by ``python3 -c`` inside a broker container (its python3 has no kbroker on the path)."""

if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
    testcontainers_config.ryuk_disabled = True


class ContainerError(RuntimeError):
    """A container did not start, answer or stop in time (the message has its log tail)."""


def docker_problem() -> str | None:
    """Why no Docker engine can be used (a sentence), or None when one answers."""
    try:
        client = docker.from_env(timeout=10)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # docker raises DockerException, requests' errors, OSError...
        return f"no Docker engine answers ({exc}); start one: bash scripts/docker-engine.sh"
    return None


def remove_leftovers(prefix: str | None = None) -> list[str]:
    """Remove the containers and networks labelled :data:`LABEL` (all, or one ``prefix``'s).

    For a test session's start: what a killed earlier run left. Returns what was removed.
    """
    selector = f"{LABEL}={prefix}" if prefix else LABEL
    client = docker.from_env(timeout=60)
    removed: list[str] = []
    try:
        for container in client.containers.list(all=True, filters={"label": selector}):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
                removed.append(str(container.name))
        for network in client.networks.list(filters={"label": selector}):
            with contextlib.suppress(docker.errors.NotFound):
                network.remove()
                removed.append(str(network.name))
    finally:
        client.close()
    return removed


def _require_image(tag: str) -> None:
    client = docker.from_env(timeout=30)
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        raise ContainerError(
            f"image {tag} is missing: build it with `make images` "
            "(python -m kbroker.images build); no registry is used"
        ) from None
    finally:
        client.close()


def _port_conflict(exc: BaseException) -> bool:
    text = str(exc)
    return "port is already allocated" in text or "address already in use" in text


class _OwnedNetwork(Network):
    """A testcontainers Network with a name and label of ours."""

    def __init__(self, name: str, owner: str) -> None:
        super().__init__(docker_network_kw={"labels": {LABEL: owner}})
        self.name = name

    def disconnect(self, container_id: str) -> None:
        self._unwrap_network.disconnect(container_id)


class _Node(DockerContainer):
    """One container of ours: a fixed name, labels, a network alias, loopback-only ports."""

    def __init__(
        self,
        image: str,
        *,
        name: str,
        alias: str,
        network: _OwnedNetwork,
        owner: str,
        env: Mapping[str, str],
        command: Sequence[str] = (),
    ) -> None:
        super().__init__(
            image,
            name=name,
            env=dict(env),
            network=network,
            network_aliases=[alias],
            labels={LABEL: owner},
        )
        if command:
            self.with_command(list(command))
        self.alias = alias
        self.container_name = name
        self.published: dict[int, int] = {}
        """Container port -> host port on 127.0.0.1."""
        self.network = network
        self.paused = False
        self.disconnected = False

    def publish(self, container_port: int, host_port: int) -> None:
        """Publish ``container_port`` on the host's 127.0.0.1:``host_port`` (never 0.0.0.0)."""
        # testcontainers types its port map as int-valued; docker-py also takes (ip, port).
        ports: dict[str, Any] = self.ports
        ports[f"{container_port}/tcp"] = (LOOPBACK, host_port)
        self.published[container_port] = host_port

    @property
    def container(self) -> Any:
        return self.get_wrapped_container()

    def state(self) -> dict[str, Any]:
        self.container.reload()
        return dict(self.container.attrs["State"])

    def running(self) -> bool:
        return bool(self.state().get("Running"))

    def log_tail(self, lines: int = 40) -> str:
        try:
            raw = self.container.logs(tail=lines)
        except (docker.errors.APIError, ValueError) as exc:
            return f"(no logs: {exc})"
        return bytes(raw).decode("utf-8", "replace")

    def kill(self) -> None:
        if self.paused:
            self.unpause()
        with contextlib.suppress(docker.errors.APIError):  # already stopped
            self.container.kill()
        self.container.wait(timeout=30)

    def stop_gracefully(self, timeout: float) -> None:
        if self.paused:
            self.unpause()
        self.container.stop(timeout=int(timeout))

    def start_again(self) -> None:
        self.container.start()

    def pause(self) -> None:
        self.container.pause()
        self.paused = True

    def unpause(self) -> None:
        self.container.unpause()
        self.paused = False

    def disconnect(self) -> None:
        self.network.disconnect(self.container.id)
        self.disconnected = True

    def reconnect(self) -> None:
        self.network.connect(self.container.id, network_aliases=[self.alias])
        self.disconnected = False

    def remove(self) -> None:
        """Remove the container (and its anonymous volumes) whatever its state."""
        if self._container is None:
            return
        with contextlib.suppress(docker.errors.NotFound):
            self._container.remove(force=True, v=True)
        self._container = None

    def exec_text(self, argv: Sequence[str]) -> tuple[int, str]:
        result = self.container.exec_run(list(argv))
        return int(result.exit_code), bytes(result.output).decode("utf-8", "replace")


def _new_prefix(kind: str) -> str:
    return f"kbroker-tc-{kind}-{uuid.uuid4().hex[:8]}"


class ZooKeeperEnsemble(StartCloseContext):
    """``size`` ZooKeeper nodes in containers, ``zk1..zkN`` on a network of their own.

    ``connect_string`` is for the host (``127.0.0.1:PORT,...``, ports picked free at start);
    ``internal_connect_string`` (``zk1:2181,...``) is for containers on :attr:`network`.
    Nodes are addressed by 0-based index, as in :class:`kbroker.testing.local.ZooKeeperEnsemble`.
    A node restarted with :meth:`start_node` keeps its data and ports.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        tick_time_ms: int = 500,
        image: str = ZOOKEEPER_IMAGE,
        start_timeout: float = 90.0,
    ) -> None:
        if size < 1 or size % 2 == 0:
            raise ValueError(f"ensemble size must be odd and >= 1, not {size}")
        self.size = size
        self.tick_time_ms = tick_time_ms
        self.image = image
        self.start_timeout = start_timeout
        self.prefix = _new_prefix("zk")
        self.network = _OwnedNetwork(self.prefix, self.prefix)
        self.nodes: list[_Node] = []
        self._network_created = False

    def __repr__(self) -> str:
        return f"<ZooKeeperEnsemble {self.prefix} size={self.size}>"

    # -- addresses -----------------------------------------------------------------------------

    @property
    def host_ports(self) -> list[int]:
        return [self._host_port(node) for node in self.nodes]

    @staticmethod
    def _host_port(node: _Node) -> int:
        return node.published[ZOOKEEPER_CLIENT_PORT]

    @property
    def connect_string(self) -> str:
        """For clients on the host: ``127.0.0.1:P1,127.0.0.1:P2,...``."""
        return ",".join(f"{LOOPBACK}:{port}" for port in self.host_ports)

    @property
    def internal_connect_string(self) -> str:
        """For containers on :attr:`network`: ``zk1:2181,zk2:2181,...``."""
        return ",".join(f"zk{i}:{ZOOKEEPER_CLIENT_PORT}" for i in range(1, self.size + 1))

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Create the network and the nodes, and wait until the ensemble serves."""
        _require_image(self.image)
        try:
            self.network.create()
            self._network_created = True
            for attempt in range(_PORT_RETRIES):
                try:
                    self._start_nodes()
                    break
                except Exception as exc:
                    self._remove_nodes()
                    if not _port_conflict(exc) or attempt == _PORT_RETRIES - 1:
                        raise
            self.wait_ready(self.start_timeout)
        except BaseException:
            self.close()
            raise

    def _start_nodes(self) -> None:
        ports = free_ports(self.size)
        servers = " ".join(f"{i}=zk{i}:2888:3888" for i in range(1, self.size + 1))
        for i in range(1, self.size + 1):
            env = {"ZOO_MY_ID": str(i), "ZOO_TICK_TIME": str(self.tick_time_ms)}
            if self.size > 1:
                env["ZOO_SERVERS"] = servers
            node = _Node(
                self.image,
                name=f"{self.prefix}-zk{i}",
                alias=f"zk{i}",
                network=self.network,
                owner=self.prefix,
                env=env,
            )
            node.publish(ZOOKEEPER_CLIENT_PORT, ports[i - 1])
            self.nodes.append(node)
            node.start()

    def _remove_nodes(self) -> None:
        for node in self.nodes:
            node.remove()
        self.nodes = []

    def close(self) -> None:
        """Remove every node and the network; leaves nothing behind. Idempotent."""
        self._remove_nodes()
        if self._network_created:
            with contextlib.suppress(docker.errors.NotFound):
                self.network.remove()
            self._network_created = False

    # -- state ---------------------------------------------------------------------------------

    def mode(self, index: int, timeout: float = 2.0) -> str | None:
        """``leader``, ``follower`` or ``standalone`` when node ``index`` serves, else None."""
        node = self.nodes[index]
        if node.paused or node.disconnected:
            return None
        try:
            text = four_letter_word(self._host_port(node), "srvr", timeout=timeout)
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("Mode:"):
                return line.partition(":")[2].strip()
        return None

    def modes(self) -> list[str | None]:
        return [self.mode(i) for i in range(len(self.nodes))]

    def leader(self) -> int | None:
        """Index of the node that leads (or runs standalone), None if there is none."""
        for i, mode in enumerate(self.modes()):
            if mode in ("leader", "standalone"):
                return i
        return None

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until a majority serves with a leader and every running, unpaused node serves."""
        deadline = time.monotonic() + timeout
        while True:
            modes = self.modes()
            expected = [
                i
                for i, n in enumerate(self.nodes)
                if not n.paused and not n.disconnected and n.running()
            ]
            serving = [i for i, m in enumerate(modes) if m in SERVING_MODES]
            has_leader = any(m in ("leader", "standalone") for m in modes)
            if has_leader and len(serving) > self.size // 2 and set(expected) <= set(serving):
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n.container_name}:\n{n.log_tail(15)}" for n in self.nodes)
                raise ContainerError(f"ZooKeeper not ready within {timeout} s: {modes}\n{tails}")
            time.sleep(_POLL_S)

    # -- faults --------------------------------------------------------------------------------

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index`` (``docker kill``); :meth:`start_node` brings it back."""
        self.nodes[index].kill()

    def stop_node(self, index: int, timeout: float = 10.0) -> None:
        self.nodes[index].stop_gracefully(timeout)

    def start_node(self, index: int, timeout: float = 60.0) -> None:
        """Start a stopped or killed node again (same data, same port) and wait for it."""
        self.nodes[index].start_again()
        self.wait_ready(timeout)

    def pause_node(self, index: int) -> None:
        self.nodes[index].pause()

    def unpause_node(self, index: int) -> None:
        self.nodes[index].unpause()

    def kill_leader(self) -> int:
        """Kill the current leader; returns its index. Raises if no node leads."""
        leader = self.leader()
        if leader is None:
            raise ContainerError(f"no ZooKeeper leader to kill: {self.modes()}")
        self.kill_node(leader)
        return leader

    def heal(self, timeout: float = 60.0) -> None:
        """Undo faults: unpause, reconnect and start nodes again; wait until all serve."""
        for node in self.nodes:
            if node.paused:
                node.unpause()
            if node.disconnected:
                node.reconnect()
            if not node.running():
                node.start_again()
        self.wait_ready(timeout)


class KBrokerCluster(StartCloseContext, ClusterAdmin):
    """``brokers`` kbroker containers against a ZooKeeper ensemble in containers.

    Without ``zookeeper`` the cluster makes (and closes) a ``zookeeper_nodes``-node ensemble of
    its own; with one, it joins the ensemble's network under ``chroot`` (default: a fresh
    ``/kbroker-<hex>``, so clusters sharing an ensemble never see each other) and leaves the
    ensemble running on close. ``settings`` are broker settings by name (``--set``).

    :attr:`bootstrap_url` is ``http://127.0.0.1:P1,...``; :meth:`url` gives broker ``i``'s.
    """

    admin_error = ContainerError

    def __init__(
        self,
        brokers: int = 3,
        *,
        zookeeper: ZooKeeperEnsemble | None = None,
        zookeeper_nodes: int = 3,
        chroot: str | None = None,
        settings: Mapping[str, str] | None = None,
        racks: Sequence[str] | None = None,
        image: str = KBROKER_IMAGE,
        tick_time_ms: int = 500,
        start_timeout: float = 90.0,
        log_level: str = "INFO",
    ) -> None:
        if brokers < 1:
            raise ValueError("a cluster needs at least one broker")
        if racks is not None and len(racks) != brokers:
            raise ValueError(f"{len(racks)} racks for {brokers} brokers")
        self._owns_zookeeper = zookeeper is None
        self.zookeeper = zookeeper or ZooKeeperEnsemble(zookeeper_nodes, tick_time_ms=tick_time_ms)
        self.size = brokers
        self.chroot = chroot or f"/kbroker-{uuid.uuid4().hex[:8]}"
        self.settings = dict(settings or {})
        self.racks = list(racks) if racks else None
        self.image = image
        self.start_timeout = start_timeout
        self.log_level = log_level
        self.prefix = _new_prefix("cluster")
        self.brokers: list[_Node] = []
        self.ports: list[int] = []

    def __repr__(self) -> str:
        return f"<KBrokerCluster {self.prefix} {self.bootstrap_url}>"

    def __iter__(self) -> Iterator[int]:
        return iter(range(1, self.size + 1))

    # -- addresses -----------------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        return [f"http://{LOOPBACK}:{port}" for port in self.ports]

    @property
    def bootstrap_url(self) -> str:
        """Every broker's URL, comma-separated (all reachable from the host)."""
        return ",".join(self.urls)

    def url(self, broker_id: int) -> str:
        return self.urls[broker_id - 1]

    @property
    def zookeeper_connect(self) -> str:
        """The brokers' ``zookeeper.connect`` (container names and the chroot)."""
        return self.zookeeper.internal_connect_string + self.chroot

    def node(self, broker_id: int) -> _Node:
        """Broker ``broker_id``'s container wrapper (for ``docker`` operations of your own)."""
        return self.brokers[broker_id - 1]

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start ZooKeeper (if owned) and the brokers; wait until all are registered."""
        _require_image(self.image)
        try:
            if self._owns_zookeeper:
                self.zookeeper.start()
            for attempt in range(_PORT_RETRIES):
                try:
                    self._start_brokers()
                    break
                except Exception as exc:
                    self._remove_brokers()
                    if not _port_conflict(exc) or attempt == _PORT_RETRIES - 1:
                        raise
            for broker_id in self:
                self.wait_serving(broker_id, self.start_timeout)
            self.wait_registered(self.size, self.start_timeout)
        except BaseException:
            self.close()
            raise

    def _start_brokers(self) -> None:
        self.ports = free_ports(self.size)
        forwards = " ".join(f"{port}={self._alias(i)}:{port}" for i, port in enumerate(self.ports))
        for index, port in enumerate(self.ports):
            broker_id = index + 1
            env = {
                "KBROKER_BROKER_ID": str(broker_id),
                "KBROKER_ZOOKEEPER": self.zookeeper_connect,
                "KBROKER_LISTEN": f"0.0.0.0:{port}",
                "KBROKER_ADVERTISED_URL": f"http://{LOOPBACK}:{port}",
                "KBROKER_LOG_LEVEL": self.log_level,
                "PEER_FORWARDS": forwards,
            }
            if self.racks:
                env["KBROKER_RACK"] = self.racks[index]
            command = [arg for k, v in self.settings.items() for arg in ("--set", f"{k}={v}")]
            node = _Node(
                self.image,
                name=f"{self.prefix}-broker{broker_id}",
                alias=self._alias(index),
                network=self.zookeeper.network,
                owner=self.prefix,
                env=env,
                command=command,
            )
            node.publish(port, port)
            self.brokers.append(node)
            node.start()

    @staticmethod
    def _alias(index: int) -> str:
        return f"broker{index + 1}"

    def _remove_brokers(self) -> None:
        for node in self.brokers:
            node.remove()
        self.brokers = []

    def close(self) -> None:
        """Remove every broker container, then the owned ensemble. Idempotent."""
        self._remove_brokers()
        if self._owns_zookeeper:
            self.zookeeper.close()

    def wait_serving(self, broker_id: int, timeout: float = 60.0) -> None:
        """Until broker ``broker_id`` answers ``GET /`` from the host."""
        deadline = time.monotonic() + timeout
        url = self.url(broker_id) + "/"
        while True:
            with contextlib.suppress(OSError):
                if http_json(url, timeout=2.0)[0] == 200:
                    return
            node = self.node(broker_id)
            if time.monotonic() > deadline or not node.running():
                raise ContainerError(
                    f"broker {broker_id} does not answer at {url}:\n{node.log_tail()}"
                )
            time.sleep(_POLL_S)

    def live_urls(self) -> list[str]:
        """URLs of brokers not stopped, paused or cut off (by these helpers)."""
        return [
            self.url(i)
            for i in self
            if not self.node(i).paused and not self.node(i).disconnected and self.node(i).running()
        ]

    def any_url(self) -> str:
        urls = self.live_urls()
        if not urls:
            raise ContainerError("no broker is reachable")
        return urls[0]

    def partition(self, topic: str, partition: int) -> dict[str, Any]:
        """The partition as a reachable broker describes it (leader, isr, offsets...).

        The offsets come from the leader: while it is cut off or paused this waits for the
        broker's peer timeout; :meth:`leader_and_isr` does not.
        """
        url = f"{self.any_url()}/topics/{topic}/partitions/{partition}"
        status, body = http_json(url, timeout=30.0)
        if status != 200:
            raise ContainerError(f"describe {topic}-{partition}: {status} {body}")
        return dict(body)

    def leader_and_isr(
        self, topic: str, partition: int, *, via: int | None = None
    ) -> tuple[int | None, list[int]]:
        """(leader, sorted ISR) as one broker's metadata has it (``via``, default: the first
        reachable one).

        Unlike :meth:`partition` this asks no other broker for offsets (v3 replicas listing),
        so it answers at once while the leader is cut off or paused. A broker that was cut off
        answers from its stale metadata until it is back in touch with ZooKeeper: ask every
        broker (``via``) when their agreement matters.
        """
        url = self.url(via) if via is not None else self.any_url()
        path = f"/v3/clusters/{cluster_id(url)}/topics/{topic}/partitions/{partition}/replicas"
        status, body = http_json(url + path)
        if status != 200:
            raise ContainerError(f"replicas of {topic}-{partition}: {status} {body}")
        leaders = [r["broker_id"] for r in body["data"] if r["is_leader"]]
        isr = sorted(int(r["broker_id"]) for r in body["data"] if r["is_in_sync"])
        return (int(leaders[0]) if leaders else None), isr

    def leader_of(self, topic: str, partition: int) -> int | None:
        return self.leader_and_isr(topic, partition)[0]

    def http_inside(
        self,
        broker_id: int,
        path: str,
        *,
        method: str = "GET",
        body: Any = None,
        timeout: float = 20.0,
    ) -> tuple[int, Any]:
        """A request to broker ``broker_id`` from inside its own container: (status, JSON).

        Works while the broker is cut off the network, when the host cannot reach it. The body
        is sent as ``application/vnd.kafka.json.v2+json``. Status 0 means no answer within
        ``timeout`` (or a refused or reset connection); the JSON is then None.
        """
        url = f"http://127.0.0.1:{self.ports[broker_id - 1]}{path}"
        payload = json.dumps(body) if body is not None else ""
        argv = ["python3", "-c", _HTTP_INSIDE, url, method, payload, str(timeout)]
        code, output = self.node(broker_id).exec_text(argv)
        if code != 0:
            raise ContainerError(f"request inside broker {broker_id} failed: {output}")
        status, raw = json.loads(output.strip().splitlines()[-1])
        return int(status), json.loads(raw) if raw else None

    def logs(self, broker_id: int, lines: int = 40) -> str:
        return self.node(broker_id).log_tail(lines)

    # -- faults --------------------------------------------------------------------------------

    def kill_broker(self, broker_id: int) -> None:
        """SIGKILL the broker (``docker kill``): no controlled shutdown at all."""
        self.node(broker_id).kill()

    def stop_broker(self, broker_id: int, timeout: float = 30.0) -> None:
        """SIGTERM (controlled shutdown) and wait for the exit (``docker stop``)."""
        self.node(broker_id).stop_gracefully(timeout)

    def start_broker(self, broker_id: int, *, wait: bool = True, timeout: float = 60.0) -> None:
        """Start a stopped or killed broker again, same data and port; wait until it serves."""
        self.node(broker_id).start_again()
        if wait:
            self.wait_serving(broker_id, timeout)

    def pause_broker(self, broker_id: int) -> None:
        """Freeze every process of the broker (``docker pause``): connections hang."""
        self.node(broker_id).pause()

    def unpause_broker(self, broker_id: int) -> None:
        self.node(broker_id).unpause()

    def disconnect_broker(self, broker_id: int) -> None:
        """Cut the broker off the network (``docker network disconnect``): it loses ZooKeeper,
        the other brokers and the host; see :meth:`http_inside`."""
        self.node(broker_id).disconnect()

    def reconnect_broker(self, broker_id: int) -> None:
        """Undo :meth:`disconnect_broker` (same network alias, same published port)."""
        self.node(broker_id).reconnect()

    def kill_zookeeper_leader(self) -> int:
        """Kill the ZooKeeper leader (``docker kill``); returns its 0-based index.
        ``cluster.zookeeper.start_node(index)`` brings it back."""
        return self.zookeeper.kill_leader()
