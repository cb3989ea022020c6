"""Real processes on loopback: ZooKeeper nodes and ensembles for tests and local clusters.

Nothing here is mocked: :class:`ZooKeeperEnsemble` runs one ``QuorumPeerMain`` JVM per node,
from Debian's ``zookeeper`` package, listening on 127.0.0.1 only. The same classes serve the
test suite (``tests/conftest.py``) and the local mode of ``make cluster-up`` (``detach=True``:
the nodes outlive the Python process and are stopped later from their pid files).

Directory layout under an ensemble's ``base_dir``::

    ensemble.json           manifest: connect string, and per node its ports and pid
    zk1/zoo.cfg             node 1 (myid 1, index 0) configuration
    zk1/data/myid           its data directory
    zk1/zookeeper.log       everything the JVM prints (stdout and stderr), appended
    zk1/zookeeper.pid       pid of the running JVM (removed when stopped through this module)
    zk2/ ...

Nodes are addressed by a 0-based *index* (``ensemble.kill(0)`` is myid 1).

Concurrency: none of these classes is thread-safe; drive each from one thread (the test's or
the CLI's). Every wait is bounded and a timeout raises with the tail of the node logs.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Self

__all__ = [
    "INSTALL_HINT",
    "LOOPBACK",
    "ManagedProcess",
    "ProcessError",
    "ZooKeeperEnsemble",
    "ZooKeeperNode",
    "ZooKeeperNotInstalledError",
    "ZooKeeperPorts",
    "ZooKeeperStartError",
    "four_letter_word",
    "free_ports",
    "stop_pid_file",
    "zookeeper_installed",
]

LOOPBACK: Final = "127.0.0.1"
ZOOKEEPER_JAR: Final = Path("/usr/share/java/zookeeper.jar")
SLF4J_SIMPLE_JAR: Final = Path("/usr/share/java/slf4j-simple.jar")
INSTALL_HINT: Final = (
    "run `bash scripts/system-deps.sh` to install Debian's zookeeper package and a JRE"
)
ZOOKEEPER_MAIN: Final = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
JAVA_OPTS: Final = (
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",  # C1 only: the JVM starts faster, plenty for tests
    "-Djava.net.preferIPv4Stack=true",
    "-Dzookeeper.admin.enableServer=false",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
)
SERVING_MODES: Final = frozenset({"leader", "follower", "standalone"})
_POLL_S: Final = 0.1


class StartCloseContext:
    """``with`` for the helpers of kbroker.testing: :meth:`start` on entry, :meth:`close` on
    exit (whatever the exit)."""

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProcessError(RuntimeError):
    """A managed process did not start, stop or answer in time."""


class ZooKeeperNotInstalledError(RuntimeError):
    """Java or the ZooKeeper jars are missing on this machine."""


class ZooKeeperStartError(ProcessError):
    """A ZooKeeper node or ensemble did not become ready in time."""


# ----------------------------------------------------------------------------------------------
# Ports


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct TCP ports that were free on ``host`` a moment ago.

    All sockets are bound at once (so the ports are distinct), then released. Another process
    may still take a port before our server binds it: callers that start servers retry with new
    ports when the server reports "Address already in use" (see :meth:`ZooKeeperEnsemble.start`).
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def four_letter_word(port: int, command: str, *, host: str = LOOPBACK, timeout: float = 1.0) -> str:
    """Send a ZooKeeper four-letter command (``srvr``, ``ruok``, ``mntr``...) and return the reply.

    Raises OSError (refused, reset) or TimeoutError (a paused server accepts the TCP connection
    in the kernel but never answers). The whole exchange is bounded by ``timeout``.
    """
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(command.encode("ascii"))
        chunks: list[bytes] = []
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks).decode("utf-8", "replace")
            chunks.append(chunk)


# ----------------------------------------------------------------------------------------------
# Generic process management


def _pid_alive(pid: int) -> bool:
    """True when ``pid`` names a live process (not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the command name, which is in parentheses and may contain spaces.
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def _pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 64 * 1024, 0))
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


_LIVE: set[ManagedProcess] = set()
"""Non-detached processes still running: killed at interpreter exit so none is left behind."""
_DETACHED: dict[int, subprocess.Popen[bytes]] = {}
"""Popen objects of detached children, by pid: kept so that dropping a ManagedProcess does not
garbage-collect a Popen whose child is meant to outlive it (Popen warns about that)."""


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        with contextlib.suppress(Exception):
            proc.kill(timeout=5.0)


class ManagedProcess:
    """One OS process started from ``argv``, its stdout and stderr appended to a log file.

    Built for reuse: ZooKeeper nodes here, broker processes later. Invariants: at most one live
    OS process per object; ``pid`` is that process while ``running``; the pid file (if any)
    exists exactly while a process this object started (or adopted) is believed alive.

    ``detach=False``: the child is killed at interpreter exit if still running (atexit), so a
    crashed test run does not leave it behind. ``detach=True``: the child gets its own session
    (no terminal signals reach it), is not killed at exit, and can be stopped later from its pid
    file with :func:`stop_pid_file` or :meth:`adopt`.

    Not thread-safe: use one object from one thread.
    """

    def __init__(
        self,
        *,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        pid_path: Path | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        detach: bool = False,
    ) -> None:
        self.name = name
        self.argv = tuple(argv)
        self.log_path = log_path
        self.pid_path = pid_path
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.detach = detach
        self._popen: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._paused = False
        self._log_offset = 0

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self._pid} running={self.running}>"

    @classmethod
    def adopt(cls, *, name: str, pid_path: Path, log_path: Path, marker: str = "") -> Self | None:
        """An object for a (detached) process started earlier, found through its pid file.

        Returns None when the pid file is missing or its process is gone, or when ``marker`` is
        not in the process's command line (the pid was reused by something else).
        """
        pid = _read_pid(pid_path)
        if pid is None or not _pid_alive(pid) or marker not in _pid_cmdline(pid):
            return None
        proc = cls(name=name, argv=(), log_path=log_path, pid_path=pid_path, detach=True)
        proc._pid = pid
        proc._popen = _DETACHED.get(pid)  # our own child after all: wait for it properly
        return proc

    # -- state ---------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def running(self) -> bool:
        """True while the process exists and has not exited (a paused process is running)."""
        if self._pid is None:
            return False
        if self._popen is not None:
            return self._popen.poll() is None
        return _pid_alive(self._pid)

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode if self._popen is not None else None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def log_since_start(self) -> str:
        """What the process wrote to its log since the latest :meth:`start`."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Wait until ``text`` appears in the log since the latest start. Raises ProcessError
        (with the log tail) if the process exits first or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while text not in self.log_since_start():
            if not self.running:
                raise ProcessError(
                    f"{self.name} exited before logging {text!r}:\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise ProcessError(self._timeout_message(f"log {text!r}", timeout))
            time.sleep(_POLL_S / 2)

    # -- control -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the process. Raises ProcessError if it is already running."""
        if self.running:
            raise ProcessError(f"{self.name} is already running (pid {self._pid})")
        if not self.argv:
            raise ProcessError(f"{self.name} has no command line (adopted process?)")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=self.detach,
            )
        self._pid = self._popen.pid
        self._paused = False
        if self.pid_path is not None:
            _write_atomically(self.pid_path, f"{self._pid}\n")
        if self.detach:
            _DETACHED[self._pid] = self._popen
        else:
            _LIVE.add(self)

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` if the process is running; a process already gone is not an error."""
        if self._pid is not None and self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, sig)

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing until :meth:`resume`."""
        self._require_running("pause")
        self.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self.send_signal(signal.SIGCONT)
        self._paused = False

    def kill(self, timeout: float = 10.0) -> int | None:
        """SIGKILL and wait for the exit; returns the exit status (None if not our child)."""
        self.send_signal(signal.SIGKILL)
        return self.wait_exit(timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (plus SIGCONT, in case it is paused), wait up to ``timeout``, then SIGKILL."""
        if not self.running:
            return self._forget()
        self.send_signal(signal.SIGTERM)
        self.resume()  # a stopped process (paused by us or anyone) must run to see SIGTERM
        try:
            return self.wait_exit(timeout)
        except ProcessError:
            return self.kill(timeout)

    def wait_exit(self, timeout: float) -> int | None:
        """Wait until the process has exited; raises ProcessError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        if self._popen is not None:
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                raise ProcessError(self._timeout_message("exit", timeout)) from None
        else:
            while self._pid is not None and _pid_alive(self._pid):
                if time.monotonic() >= deadline:
                    raise ProcessError(self._timeout_message("exit", timeout))
                time.sleep(_POLL_S)
        return self._forget()

    def _forget(self) -> int | None:
        """Drop the bookkeeping of an exited process; returns its exit status if known."""
        _LIVE.discard(self)
        popen = _DETACHED.pop(self._pid, None) if self._pid is not None else None
        if popen is not None:
            popen.poll()  # reap it, if it has exited
        self._paused = False
        if self.pid_path is not None and _read_pid(self.pid_path) == self._pid:
            with contextlib.suppress(FileNotFoundError):
                self.pid_path.unlink()
        return self.returncode

    def _require_running(self, action: str) -> None:
        if not self.running:
            raise ProcessError(f"cannot {action} {self.name}: not running")

    def _timeout_message(self, what: str, timeout: float) -> str:
        return (
            f"{self.name} (pid {self._pid}) did not {what} within {timeout:.1f} s; "
            f"last lines of {self.log_path}:\n{self.log_tail()}"
        )


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def stop_pid_file(pid_path: Path, *, marker: str = "", timeout: float = 10.0) -> int | None:
    """Stop the process named by a pid file (SIGTERM, then SIGKILL); returns its pid or None.

    ``marker`` must appear in the process's command line, so a pid reused by an unrelated
    process is never signalled. The pid file is removed in every case.
    """
    proc = ManagedProcess.adopt(
        name=str(pid_path), pid_path=pid_path, log_path=pid_path.with_suffix(".log"), marker=marker
    )
    pid = proc.pid if proc is not None else None
    if proc is not None:
        proc.stop(timeout)
    with contextlib.suppress(FileNotFoundError):
        pid_path.unlink()
    return pid


# ----------------------------------------------------------------------------------------------
# ZooKeeper


def zookeeper_installed() -> str | None:
    """None when Java and the ZooKeeper jars are present, else what is missing (and the fix)."""
    missing = [str(jar) for jar in (ZOOKEEPER_JAR, SLF4J_SIMPLE_JAR) if not jar.is_file()]
    if shutil.which("java") is None:
        missing.append("java")
    if not missing:
        return None
    return f"ZooKeeper is not installed (missing {', '.join(missing)}): {INSTALL_HINT}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ZooKeeperPorts:
    """The three TCP ports of one node on 127.0.0.1."""

    client: int
    peer: int
    """Quorum traffic (followers to leader)."""
    election: int
    """Leader election."""


class ZooKeeperNode:
    """One ZooKeeper server (``QuorumPeerMain``) on 127.0.0.1 with its own directory.

    ``peers`` maps every myid of the ensemble (this one included) to its ports; an empty map
    makes a standalone server. The configuration is rewritten on each :meth:`start`, the data
    directory is kept, so a killed node restarts with its data (as a real one would).
    """

    def __init__(
        self,
        *,
        myid: int,
        node_dir: Path,
        ports: ZooKeeperPorts,
        peers: Mapping[int, ZooKeeperPorts],
        tick_time_ms: int = 500,
        max_session_timeout_ms: int = 60_000,
        detach: bool = False,
    ) -> None:
        self.myid = myid
        self.node_dir = node_dir
        self.ports = ports
        self.peers = dict(peers)
        self.tick_time_ms = tick_time_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.process = ManagedProcess(
            name=f"zookeeper-{myid}",
            argv=_zookeeper_argv(self.config_path),
            log_path=node_dir / "zookeeper.log",
            pid_path=node_dir / "zookeeper.pid",
            cwd=node_dir,
            detach=detach,
        )

    def __repr__(self) -> str:
        return f"<ZooKeeperNode myid={self.myid} {self.address} running={self.running}>"

    @property
    def config_path(self) -> Path:
        return self.node_dir / "zoo.cfg"

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.ports.client}"

    @property
    def running(self) -> bool:
        return self.process.running

    def config_text(self) -> str:
        """The zoo.cfg this node runs with."""
        lines = [
            f"tickTime={self.tick_time_ms}",
            "initLimit=10",
            "syncLimit=5",
            f"dataDir={self.node_dir / 'data'}",
            f"clientPort={self.ports.client}",
            f"clientPortAddress={LOOPBACK}",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "maxClientCnxns=0",
            f"minSessionTimeout={2 * self.tick_time_ms}",
            f"maxSessionTimeout={self.max_session_timeout_ms}",
        ]
        for myid, ports in sorted(self.peers.items()):
            lines.append(f"server.{myid}={LOOPBACK}:{ports.peer}:{ports.election}")
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Write zoo.cfg and myid, then start the JVM (does not wait: see :meth:`wait_serving`)."""
        data_dir = self.node_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "myid").write_text(f"{self.myid}\n")
        self.config_path.write_text(self.config_text())
        self.process.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after ``timeout``)."""
        self.process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        self.process.kill()

    def pause(self) -> None:
        """SIGSTOP: clients keep their TCP connection but get no answer."""
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    def srvr(self, timeout: float = 1.0) -> dict[str, str] | None:
        """The ``srvr`` report as a dict, or None if the node does not answer in time."""
        try:
            text = four_letter_word(self.ports.client, "srvr", timeout=timeout)
        except OSError:  # includes TimeoutError
            return None
        report: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                report[key.strip()] = value.strip()
        return report

    def mode(self, timeout: float = 1.0) -> str | None:
        """``leader``, ``follower`` or ``standalone`` when serving, else None."""
        if not self.running or self.process.paused:
            return None
        report = self.srvr(timeout)
        return report.get("Mode") if report else None

    def serving(self) -> bool:
        return self.mode() in SERVING_MODES

    def wait_serving(self, timeout: float) -> str:
        """Wait until the node serves clients; returns its mode. Raises ZooKeeperStartError."""
        deadline = time.monotonic() + timeout
        while True:
            mode = self.mode()
            if mode in SERVING_MODES:
                return mode or ""
            if not self.running:
                raise ZooKeeperStartError(self.failure_report("exited while starting"))
            if time.monotonic() >= deadline:
                raise ZooKeeperStartError(self.failure_report(f"not serving after {timeout} s"))
            time.sleep(_POLL_S)

    def bind_failed(self) -> bool:
        """True when the latest start failed because a port was taken."""
        text = self.process.log_since_start()
        return "Address already in use" in text or "BindException" in text

    def failure_report(self, what: str) -> str:
        return (
            f"ZooKeeper node {self.myid} ({self.address}) {what}; "
            f"last lines of {self.process.log_path}:\n{self.process.log_tail()}"
        )

    def manifest(self) -> dict[str, object]:
        return {
            "myid": self.myid,
            "dir": str(self.node_dir),
            "client_port": self.ports.client,
            "peer_port": self.ports.peer,
            "election_port": self.ports.election,
            "pid": self.process.pid,
        }


def _zookeeper_argv(config_path: Path) -> list[str]:
    java = shutil.which("java") or "java"
    classpath = f"{ZOOKEEPER_JAR}:{SLF4J_SIMPLE_JAR}"
    return [java, *JAVA_OPTS, "-cp", classpath, ZOOKEEPER_MAIN, str(config_path)]


class ZooKeeperEnsemble(StartCloseContext):
    """A ZooKeeper ensemble of 1 or 3 (or any odd number of) nodes on 127.0.0.1.

    One node runs standalone; more form a quorum (``server.N`` lines). Ports are picked free
    unless given; when a node fails to bind because another process took a port in the
    meantime, :meth:`start` retries the whole ensemble with new ports (auto ports only).

    Fault helpers act on one node by 0-based index: :meth:`kill` (SIGKILL), :meth:`stop`
    (SIGTERM), :meth:`start` with an index (restart, same data and ports), :meth:`pause` /
    :meth:`resume` (SIGSTOP / SIGCONT). :meth:`close` leaves no process running, detached or
    not. Use as a context manager in scripts; tests use the fixtures of ``tests/conftest.py``.
    """

    MANIFEST: Final = "ensemble.json"

    def __init__(
        self,
        *,
        base_dir: Path,
        size: int = 1,
        tick_time_ms: int = 500,
        max_session_timeout_ms: int = 60_000,
        ports: Sequence[ZooKeeperPorts] | None = None,
        detach: bool = False,
        start_timeout_s: float = 60.0,
    ) -> None:
        if size < 1 or size % 2 == 0:
            raise ValueError(f"ensemble size must be odd and >= 1, not {size}")
        if ports is not None and len(ports) != size:
            raise ValueError(f"{len(ports)} port sets for {size} nodes")
        problem = zookeeper_installed()
        if problem:
            raise ZooKeeperNotInstalledError(problem)
        self.base_dir = base_dir.resolve()
        self.size = size
        self.tick_time_ms = tick_time_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.detach = detach
        self.start_timeout_s = start_timeout_s
        self._fixed_ports = list(ports) if ports is not None else None
        self.nodes: tuple[ZooKeeperNode, ...] = self._make_nodes(self._fixed_ports)

    def __repr__(self) -> str:
        return f"<ZooKeeperEnsemble size={self.size} {self.connect_string}>"

    def _make_nodes(self, ports: Sequence[ZooKeeperPorts] | None) -> tuple[ZooKeeperNode, ...]:
        if ports is None:
            flat = free_ports(3 * self.size)
            ports = [ZooKeeperPorts(client=a, peer=b, election=c) for a, b, c in _triples(flat)]
        peers = {i + 1: p for i, p in enumerate(ports)} if self.size > 1 else {}
        return tuple(
            ZooKeeperNode(
                myid=i + 1,
                node_dir=self.base_dir / f"zk{i + 1}",
                ports=p,
                peers=peers,
                tick_time_ms=self.tick_time_ms,
                max_session_timeout_ms=self.max_session_timeout_ms,
                detach=self.detach,
            )
            for i, p in enumerate(ports)
        )

    # -- addresses -----------------------------------------------------------------------------

    @property
    def connect_string(self) -> str:
        """``127.0.0.1:p1,127.0.0.1:p2,...`` (append a chroot such as ``/kbroker`` if wanted)."""
        return ",".join(node.address for node in self.nodes)

    def leader(self) -> int | None:
        """Index of the node that reports Mode leader (or standalone), None if there is none."""
        for i, node in enumerate(self.nodes):
            if node.mode() in ("leader", "standalone"):
                return i
        return None

    def modes(self) -> list[str | None]:
        return [node.mode() for node in self.nodes]

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, index: int | None = None, *, timeout: float | None = None) -> None:
        """Start every node and wait for a quorum; or, with ``index``, (re)start that node only
        and wait until it serves again (same ports and data)."""
        timeout = self.start_timeout_s if timeout is None else timeout
        if index is not None:
            node = self.nodes[index]
            node.start()
            node.wait_serving(timeout)
            self._write_manifest()
            return
        for attempt in range(3):
            try:
                self._start_all(timeout)
                return
            except ZooKeeperStartError:
                bind_failed = any(node.bind_failed() for node in self.nodes)
                self._kill_all()
                if self._fixed_ports is not None or not bind_failed or attempt == 2:
                    raise
                self.nodes = self._make_nodes(None)  # someone took a port: pick new ones

    def _start_all(self, timeout: float) -> None:
        for node in self.nodes:
            node.start()
        self._write_manifest()
        self.wait_ready(timeout, fail_if_exited=True)

    def wait_ready(self, timeout: float | None = None, *, fail_if_exited: bool = False) -> None:
        """Wait until a majority of the nodes serves, one of them leads (or runs standalone),
        and every running, unpaused node serves. ``fail_if_exited``: fail at once when a node
        has exited (during start-up); otherwise nodes killed on purpose are simply skipped."""
        timeout = self.start_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            modes = self.modes()
            if self._ready(modes):
                return
            exited = fail_if_exited and not all(node.running for node in self.nodes)
            if exited or time.monotonic() >= deadline:
                raise ZooKeeperStartError(self._failure_report(timeout, modes))
            time.sleep(_POLL_S)

    def _ready(self, modes: Sequence[str | None]) -> bool:
        serving = [m for m in modes if m in SERVING_MODES]
        expected = [n for n in self.nodes if n.running and not n.process.paused]
        has_leader = "leader" in serving or "standalone" in serving
        return has_leader and len(serving) > self.size // 2 and len(serving) == len(expected)

    def _failure_report(self, timeout: float, modes: Sequence[str | None]) -> str:
        parts = [f"ZooKeeper ensemble {self.connect_string} not ready within {timeout} s"]
        parts.append(f"(modes by node index: {list(modes)})")
        for node in self.nodes:
            parts.append(node.failure_report("state: running" if node.running else "exited"))
        return "\n".join(parts)

    def heal(self, timeout: float | None = None) -> None:
        """Undo fault injection: resume paused nodes, restart stopped or killed ones, and wait
        until the ensemble is ready. Cheap when nothing is wrong (one ``srvr`` per node)."""
        for index, node in enumerate(self.nodes):
            if node.process.paused:
                node.resume()
            if not node.running:
                self.start(index, timeout=timeout)
        self.wait_ready(timeout)

    def kill(self, index: int) -> None:
        self.nodes[index].kill()
        self._write_manifest()

    def stop(self, index: int, timeout: float = 10.0) -> None:
        self.nodes[index].stop(timeout)
        self._write_manifest()

    def pause(self, index: int) -> None:
        self.nodes[index].pause()

    def resume(self, index: int) -> None:
        self.nodes[index].resume()

    @contextlib.contextmanager
    def paused(self, *indexes: int) -> Iterator[None]:
        """Pause the given nodes for the duration of the block; always resumes them."""
        try:
            for index in indexes:
                self.pause(index)
            yield
        finally:
            for index in indexes:
                self.resume(index)

    def close(self) -> None:
        """Kill every node (paused ones included) and wait for them to exit."""
        self._kill_all()
        with contextlib.suppress(FileNotFoundError):
            (self.base_dir / self.MANIFEST).unlink()

    def _kill_all(self) -> None:
        errors: list[str] = []
        for node in self.nodes:
            try:
                node.kill()
            except ProcessError as exc:
                errors.append(str(exc))
        if errors:
            raise ProcessError("\n".join(errors))

    def _write_manifest(self) -> None:
        manifest = {
            "connect_string": self.connect_string,
            "tick_time_ms": self.tick_time_ms,
            "detached": self.detach,
            "nodes": [node.manifest() for node in self.nodes],
        }
        _write_atomically(self.base_dir / self.MANIFEST, json.dumps(manifest, indent=2) + "\n")

    # -- detached ensembles --------------------------------------------------------------------

    @classmethod
    def read_manifest(cls, base_dir: Path) -> dict[str, object] | None:
        """The manifest a (detached) ensemble left in ``base_dir``, or None."""
        try:
            data = json.loads((base_dir / cls.MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @classmethod
    def stop_detached(cls, base_dir: Path, timeout: float = 10.0) -> list[int]:
        """Stop the nodes of an ensemble started earlier (``detach=True``) from their pid files.

        Only processes whose command line names their own node's zoo.cfg are signalled. Returns
        the pids stopped; the manifest is removed.
        """
        base_dir = base_dir.resolve()
        stopped: list[int] = []
        for pid_path in sorted(base_dir.glob("zk*/zookeeper.pid")):
            marker = str(pid_path.parent / "zoo.cfg")
            pid = stop_pid_file(pid_path, marker=marker, timeout=timeout)
            if pid is not None:
                stopped.append(pid)
        with contextlib.suppress(FileNotFoundError):
            (base_dir / cls.MANIFEST).unlink()
        return stopped


def _triples(flat: Sequence[int]) -> Iterator[tuple[int, int, int]]:
    for i in range(0, len(flat), 3):
        yield flat[i], flat[i + 1], flat[i + 2]
