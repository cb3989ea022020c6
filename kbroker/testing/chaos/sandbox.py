"""Host resources for fault injection, each one undone by :meth:`Sandbox.close`.

What a chaos run changes on the machine, and how each change is scoped so that nothing outside
the run is touched (other clusters, other runs, docker on the same host):

* **cgroups** ``/sys/fs/cgroup/unified/kbchaos-<run>/b<N>`` (cgroup v2, no controllers): broker
  N is started through ``sh -c 'echo $$ > .../cgroup.procs; exec "$@"'``, so the broker process
  (same pid) and every socket it opens belong to that cgroup.
* **iptables**: one chain ``KBC-<run>`` jumped to first from ``OUTPUT``. Its permanent rules put
  a connection mark ``MARK_BASE | <run tag> | N`` on every TCP connection broker N *opens*
  (``-m cgroup``, first packet). A cut of broker A from endpoint B (a broker's or a ZooKeeper
  node's address and port) drops, on connections marked A, the packets to B and the packets
  from B: both directions of every connection A opened to B, and nothing else. Loopback
  traffic passes ``OUTPUT`` once, so one chain sees all of it. (Source addresses cannot tell
  brokers apart: the kernel picks 127.0.0.1 as the source for every 127.0.0.x destination and
  neither kazoo nor aiohttp can bind one, hence the cgroup marks.)
* **file systems**: broker N's data directory is a loop-mounted ext4 image (sparse file, no
  reserved blocks) so that "disk full" is one broker's and real ENOSPC.

A state file in :data:`REGISTRY` names all of it while the run lives (plus the owner pid and the
cluster's base directory); :func:`cleanup_stale` undoes what a dead run left behind (the runner
also registers :meth:`Sandbox.close` with ``atexit``). Requires root.

Not thread-safe: one thread (the runner's) calls every method; each call is bounded (every
subprocess has a timeout).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = [
    "CGROUP_ROOT",
    "REGISTRY",
    "Endpoint",
    "Sandbox",
    "SandboxError",
    "cleanup_stale",
    "fill_fs",
    "mount_loop_fs",
    "require_root_tools",
    "unmount_loop_fs",
]

CGROUP_ROOT: Final = Path("/sys/fs/cgroup/unified")
REGISTRY: Final = Path("/tmp/kbroker-chaos")
MARK_BASE: Final = 0x6B000000
"""Connection marks of chaos runs: 0x6B, then a 16-bit run tag, then the broker id."""
_TOOLS: Final = ("iptables", "mount", "umount", "losetup", "mkfs.ext4", "fallocate")
_CMD_TIMEOUT_S: Final = 30.0
FILLER: Final = ".kbchaos-filler"
"""Name of the file that fills a data file system (disk-full fault)."""


class SandboxError(RuntimeError):
    """A host command failed; the message carries its output."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A TCP server address: a broker's listener or a ZooKeeper node's client port."""

    host: str
    port: int


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=_CMD_TIMEOUT_S, check=False
    )
    if check and done.returncode != 0:
        raise SandboxError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def require_root_tools() -> None:
    """Raise SandboxError unless we are root with iptables, loop mounts and cgroup v2."""
    if os.geteuid() != 0:
        raise SandboxError("fault injection needs root (iptables, mount, cgroups)")
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        raise SandboxError(
            f"missing tools: {', '.join(missing)} (apt-get install iptables "
            "util-linux e2fsprogs mount)"
        )
    if not (CGROUP_ROOT / "cgroup.procs").exists():
        raise SandboxError(f"no cgroup v2 hierarchy at {CGROUP_ROOT}")


@dataclass(slots=True)
class _State:
    """What the state file records; enough to undo everything without the Sandbox object."""

    run_id: str
    owner_pid: int
    chain: str
    cgroup_dir: str
    base_dir: str
    mounts: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)

    def path(self) -> Path:
        return REGISTRY / f"{self.run_id}.json"

    def save(self) -> None:
        REGISTRY.mkdir(parents=True, exist_ok=True)
        tmp = self.path().with_suffix(".tmp")
        tmp.write_text(json.dumps({k: getattr(self, k) for k in self.__slots__}, indent=1))
        tmp.replace(self.path())

    @classmethod
    def load(cls, path: Path) -> _State:
        return cls(**json.loads(path.read_text()))


class Sandbox:
    """The run's cgroups, iptables chain and loop mounts (see the module docstring).

    Invariants: every rule this object added is in ``self._rules`` until removed; the state
    file lists every mount and the chain before they exist, so a crash in between leaves
    nothing that :func:`cleanup_stale` does not know about.
    """

    def __init__(self, *, base_dir: Path, brokers: int) -> None:
        require_root_tools()
        tag = secrets.randbelow(0xFFFF) + 1
        self.run_id = f"{tag:04x}{os.getpid() % 0x10000:04x}"
        self.tag = tag
        self.brokers = brokers
        self._state = _State(
            run_id=self.run_id,
            owner_pid=os.getpid(),
            chain=f"KBC-{self.run_id}",
            cgroup_dir=str(CGROUP_ROOT / f"kbchaos-{self.run_id}"),
            base_dir=str(base_dir),
        )
        self._rules: list[tuple[str, ...]] = []
        self._state.save()
        self._make_cgroups()
        self._make_chain()

    # ------------------------------------------------------------------ cgroups and marks

    @property
    def chain(self) -> str:
        return self._state.chain

    def cgroup(self, broker_id: int) -> Path:
        return Path(self._state.cgroup_dir) / f"b{broker_id}"

    def mark(self, broker_id: int) -> int:
        return MARK_BASE | (self.tag << 8) | broker_id

    def argv_prefix(self, broker_id: int) -> list[str]:
        """Run a command inside broker ``broker_id``'s cgroup; the pid stays the command's."""
        procs = self.cgroup(broker_id) / "cgroup.procs"
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(procs)]

    def _make_cgroups(self) -> None:
        for broker_id in range(1, self.brokers + 1):
            self.cgroup(broker_id).mkdir(parents=True, exist_ok=True)

    def _make_chain(self) -> None:
        chain = self.chain
        _run(["iptables", "-w", "-N", chain])
        _run(["iptables", "-w", "-I", "OUTPUT", "1", "-j", chain])
        for broker_id in range(1, self.brokers + 1):
            path = str(self.cgroup(broker_id).relative_to(CGROUP_ROOT))
            _run(
                ["iptables", "-w", "-A", chain, "-p", "tcp", "-m", "conntrack", "--ctstate",
                 "NEW", "-m", "cgroup", "--path", path, "-j", "CONNMARK", "--set-xmark",
                 f"{self.mark(broker_id):#x}/0xffffffff"]
            )  # fmt: skip

    # ------------------------------------------------------------------ cuts

    def cut_rules(
        self, broker_id: int, target: Endpoint, loss: float | None = None
    ) -> list[tuple[str, ...]]:
        """The rules that cut every connection ``broker_id`` opens to ``target``; with
        ``loss``, that drop each of their packets with that probability instead (both ways)."""
        mark = ["-m", "connmark", "--mark", f"{self.mark(broker_id):#x}"]
        if loss is not None:
            mark += ["-m", "statistic", "--mode", "random", "--probability", f"{loss:.3f}"]
        to = ("-d", target.host, "--dport", str(target.port))
        back = ("-s", target.host, "--sport", str(target.port))
        return [tuple(["-p", "tcp", *mark, *way, "-j", "DROP"]) for way in (to, back)]

    def add_rules(self, rules: Iterable[tuple[str, ...]]) -> None:
        for rule in rules:
            _run(["iptables", "-w", "-A", self.chain, *rule])
            self._rules.append(rule)

    def remove_rules(self, rules: Iterable[tuple[str, ...]]) -> None:
        for rule in rules:
            if rule in self._rules:
                _run(["iptables", "-w", "-D", self.chain, *rule], check=False)
                self._rules.remove(rule)

    def clear_rules(self) -> None:
        """Remove every cut (the marking rules stay)."""
        self.remove_rules(list(self._rules))

    # ------------------------------------------------------------------ disks

    def mount_disk(self, mountpoint: Path, image: Path, size_mb: int) -> None:
        """Make ``mountpoint`` a fresh ext4 file system of ``size_mb`` (recorded for undo)."""
        self._state.images.append(str(image))
        self._state.mounts.append(str(mountpoint))
        self._state.save()
        mount_loop_fs(mountpoint, image, size_mb)

    # ------------------------------------------------------------------ teardown

    def close(self) -> None:
        """Undo everything (idempotent). Processes in the cgroups must be gone first."""
        self._rules.clear()
        undo(self._state)


def mount_loop_fs(mountpoint: Path, image: Path, size_mb: int) -> None:
    """Mount a fresh ext4 file system of ``size_mb`` (a sparse image file, no blocks reserved
    for root) at ``mountpoint``. Undo with :func:`unmount_loop_fs`."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    image.parent.mkdir(parents=True, exist_ok=True)
    with image.open("wb") as f:
        f.truncate(size_mb << 20)
    _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-L", "kbchaos", str(image)])
    _run(["mount", "-o", "loop", str(image), str(mountpoint)])


def unmount_loop_fs(mountpoint: Path, image: Path | None = None) -> None:
    """Unmount (lazily if still busy after 5 s) and delete the image; idempotent."""
    if _is_mounted(str(mountpoint)):
        _unmount(str(mountpoint))
    if image is not None:
        image.unlink(missing_ok=True)


def fill_fs(mountpoint: Path, *, leave_bytes: int = 0) -> Path:
    """Take all free space of the file system at ``mountpoint`` but ``leave_bytes``; returns
    the filler file (delete it to give the space back). With ``leave_bytes`` 0 the last blocks
    are written one by one, with an fsync per round (ext4's delayed allocation frees some
    reserved blocks at writeback), until none is free."""
    filler = mountpoint / FILLER
    with filler.open("ab", buffering=0) as f:
        for _ in range(5):
            stat = os.statvfs(mountpoint)
            free = stat.f_bavail * stat.f_frsize - leave_bytes
            if free <= 0 or (leave_bytes and free < stat.f_frsize):
                break
            with contextlib.suppress(OSError):
                os.posix_fallocate(f.fileno(), f.seek(0, os.SEEK_END), free)
            if leave_bytes:
                break
            with contextlib.suppress(OSError):
                for _ in range(4096):
                    f.write(b"\0" * stat.f_frsize)
            with contextlib.suppress(OSError):
                os.fsync(f.fileno())
    return filler


def _unmount(mountpoint: str) -> None:
    for _ in range(20):
        if _run(["umount", mountpoint], check=False).returncode == 0:
            return
        if not _is_mounted(mountpoint):
            return
        time.sleep(0.25)
    _run(["umount", "-l", mountpoint], check=False)  # lazy: gone once nothing uses it


def _is_mounted(mountpoint: str) -> bool:
    real = os.path.realpath(mountpoint)
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == real for line in mounts)


def _kill_cgroup(cgroup: Path) -> None:
    """SIGKILL whatever is still in ``cgroup`` (cgroup v2 ``cgroup.kill``, or pid by pid)."""
    with contextlib.suppress(OSError):
        (cgroup / "cgroup.kill").write_text("1")
    with contextlib.suppress(OSError):
        for pid in (cgroup / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                os.kill(int(pid), 9)


def undo(state: _State, *, remove_files: bool = False) -> None:
    """Undo a run's changes from its state: processes, rules, mounts, cgroups, state file (and,
    with ``remove_files``, the cluster's directory)."""
    from kbroker.testing.brokers import LocalCluster  # noqa: PLC0415 - no cycle at import

    with contextlib.suppress(Exception):
        LocalCluster.stop_detached(Path(state.base_dir), timeout=5.0)
    cgroup_dir = Path(state.cgroup_dir)
    for cgroup in sorted(cgroup_dir.glob("b*")):
        _kill_cgroup(cgroup)
    _run(["iptables", "-w", "-D", "OUTPUT", "-j", state.chain], check=False)
    _run(["iptables", "-w", "-F", state.chain], check=False)
    _run(["iptables", "-w", "-X", state.chain], check=False)
    for mountpoint in state.mounts:
        if _is_mounted(mountpoint):
            _unmount(mountpoint)
    for image in state.images:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(image)
    deadline = time.monotonic() + 10
    for cgroup in [*sorted(cgroup_dir.glob("b*")), cgroup_dir]:
        while cgroup.exists():
            try:
                cgroup.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
    if remove_files:
        shutil.rmtree(state.base_dir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        state.path().unlink()


def cleanup_stale(*, force: bool = False) -> list[str]:
    """Undo every registered run whose owner process is gone (every run with ``force``),
    deleting its cluster directory too; returns the run ids cleaned."""
    cleaned = []
    for path in sorted(REGISTRY.glob("*.json")):
        try:
            state = _State.load(path)
        except (OSError, ValueError, TypeError):
            continue
        if force or not _alive(state.owner_pid):
            undo(state, remove_files=True)
            cleaned.append(state.run_id)
    return cleaned


def _alive(pid: int) -> bool:
    """True when ``pid`` is a live process (a zombie, which nobody may reap in a container
    whose init does not, counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
