"""Simulated power loss: cut every file of a data directory back to what was fsynced.

kill -9 loses nothing the kernel already has (the page cache survives the process), so it
cannot test fsync discipline. A power loss keeps only what reached stable storage: for a file,
the bytes it had when an ``fsync``/``fdatasync`` of it *began* (later writes may or may not have
made it; we assume not); for a directory entry (a created, renamed or new file's name), only
what an fsync of its directory made durable.

How we learn what was fsynced without changing the broker: it runs under ``strace -f``
(``--seccomp-bpf``, so only the file-system calls below stop it), which records every open,
positioned write, truncate, fsync, rename, unlink and mkdir with the file's path (``-y``).
:class:`FsyncModel` replays that trace and keeps, per path under the data directory:

* ``size``: the file's length as the writes and truncations made it;
* ``durable``: the length when the latest successful fsync of it began (None: never synced);
* ``floor``: the lowest length a truncation set since that fsync (a cut may be durable);
* ``linked``: whether its name is durable (the directory was fsynced after the name appeared).

:meth:`FsyncModel.apply` then does what the power loss would: removes names that are not
durable, and truncates each remaining file to ``min(durable, floor)``. Files that existed when
tracing began count as fully durable (a test starts the traced broker on a fresh or already
"power-cut" directory, where that is true).

Known simplifications, all in the direction of keeping *more* than a real crash might (none can
hide a lost acknowledged write that depended on an fsync): a rename whose directory was not
fsynced afterwards keeps the new name and content (a real crash could keep the old file); an
unlink that was not made durable stays done; bytes overwritten in place below the durable length
keep their new value (the log never overwrites: it appends and truncates). Writes through
``mmap`` would be invisible (kbroker uses none).

Pure parsing plus one :meth:`apply`; not thread-safe.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["STRACE_SYSCALLS", "CutReport", "FsyncModel", "strace_prefix"]

STRACE_SYSCALLS: Final = (
    "open,openat,creat,write,pwrite64,pwritev,pwritev2,lseek,ftruncate,fsync,fdatasync,"
    "rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat"
)
_CALL: Final = re.compile(r"^(\w+)\((.*)\)\s+= (-?\d+)(?:<([^>]*)>)?")
_FD: Final = re.compile(r"^-?\d+<([^>]*)>")
_QUOTED: Final = re.compile(r'"((?:[^"\\]|\\.)*)"')
_UNFINISHED: Final = " <unfinished ...>"
_RESUMED: Final = re.compile(r"^<\.\.\. (\w+) resumed>\s*")


def strace_prefix(trace: Path) -> list[str]:
    """argv prefix that runs a command under strace writing ``trace`` (see the module doc)."""
    return [
        "strace",
        "-f",
        "--seccomp-bpf",
        "-s",
        "0",
        "-y",
        "-e",
        f"trace={STRACE_SYSCALLS}",
        "-o",
        str(trace),
        "--",
    ]


@dataclass(slots=True)
class _Node:
    is_dir: bool
    linked: bool
    size: int = 0
    durable: int | None = None
    floor: int | None = None

    def cut_length(self) -> int:
        if self.durable is None:
            return 0
        return self.durable if self.floor is None else min(self.durable, self.floor)


@dataclass(slots=True)
class CutReport:
    """What :meth:`FsyncModel.apply` removed."""

    files_cut: int = 0
    bytes_cut: int = 0
    removed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.files_cut} files cut by {self.bytes_cut} bytes, "
            f"{len(self.removed)} names removed"
        )


@dataclass(slots=True)
class _Fd:
    path: str
    position: int = 0
    append: bool = False


class FsyncModel:
    """Replays an strace of one process and cuts a directory as a power loss would."""

    def __init__(self, root: Path) -> None:
        self.root = str(root.resolve())
        self.nodes: dict[str, _Node] = {}
        self._fds: dict[int, _Fd] = {}
        self._pending: dict[str, tuple[str, object]] = {}
        self.syscalls = 0
        self.fsyncs = 0
        self.nodes[self.root] = _Node(is_dir=True, linked=True)
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames:
                self.nodes[os.path.join(dirpath, name)] = _Node(is_dir=True, linked=True)
            for name in filenames:
                size = os.path.getsize(os.path.join(dirpath, name))
                self.nodes[os.path.join(dirpath, name)] = _Node(
                    is_dir=False, linked=True, size=size, durable=size
                )

    # ------------------------------------------------------------------ parsing

    def feed_file(self, trace: Path) -> None:
        with trace.open(errors="replace") as lines:
            for line in lines:
                self.feed(line.rstrip("\n"))

    def feed(self, line: str) -> None:
        """One line of ``strace -f -y -o`` output (``PID call(...) = ret``)."""
        pid, _, rest = line.partition(" ")
        rest = rest.lstrip()
        if rest.endswith(_UNFINISHED):
            text = rest[: -len(_UNFINISHED)]
            name = text.partition("(")[0]
            self._pending[pid] = (text, self._entry_snapshot(name, text))
            return
        resumed = _RESUMED.match(rest)
        snapshot: object = None
        if resumed is not None:
            if pid not in self._pending:
                return
            text, snapshot = self._pending.pop(pid)
            rest = text + rest[resumed.end() :]
        match = _CALL.match(rest)
        if match is None:
            return
        name, args, ret, ret_path = match.group(1), match.group(2), int(match.group(3)), None
        ret_path = match.group(4)
        if snapshot is None:
            snapshot = self._entry_snapshot(name, name + "(" + args)
        self.syscalls += 1
        if ret >= 0:
            self._apply_call(name, args, ret, ret_path, snapshot)

    def _entry_snapshot(self, name: str, text: str) -> object:
        """What an fsync sees when it begins: the file's size, or the directory's entries
        whose names are not durable yet."""
        if name not in ("fsync", "fdatasync"):
            return None
        match = _FD.match(text.partition("(")[2])
        path = match.group(1) if match else ""
        node = self.nodes.get(path)
        if node is None:
            return None
        if node.is_dir:
            prefix = path + "/"
            return [
                p
                for p, n in self.nodes.items()
                if not n.linked and p.startswith(prefix) and "/" not in p[len(prefix) :]
            ]
        return node.size

    def _mine(self, path: str | None) -> bool:
        return path is not None and (path == self.root or path.startswith(self.root + "/"))

    def _apply_call(
        self, name: str, args: str, ret: int, ret_path: str | None, snapshot: object
    ) -> None:
        match = _FD.match(args)
        fd_path = match.group(1) if match else None
        if name in ("open", "openat", "creat"):
            self._open(name, args, ret, ret_path)
        elif name in ("mkdir", "mkdirat"):
            self._mkdir(args)
        elif name in ("rename", "renameat", "renameat2"):
            self._rename(args)
        elif name in ("unlink", "unlinkat"):
            self._unlink(args)
        elif self._mine(fd_path):
            assert fd_path is not None
            self._file_call(name, args, ret, fd_path, snapshot)

    def _open(self, name: str, args: str, fd: int, path: str | None) -> None:
        if not self._mine(path):
            self._fds.pop(fd, None)
            return
        assert path is not None
        node = self.nodes.get(path)
        if node is None:
            if "O_CREAT" not in args and name != "creat":
                return
            node = self.nodes[path] = _Node(is_dir=False, linked=False)
        if "O_TRUNC" in args or name == "creat":
            node.size = 0
            node.floor = 0
        self._fds[fd] = _Fd(path, 0, "O_APPEND" in args)

    def _mkdir(self, args: str) -> None:
        quoted = _QUOTED.findall(args)
        if quoted and self._mine(quoted[0]):
            self.nodes.setdefault(quoted[0], _Node(is_dir=True, linked=False))

    def _rename(self, args: str) -> None:
        quoted = _QUOTED.findall(args)
        if len(quoted) < 2:
            return
        src, dst = quoted[0], quoted[1]
        moved = {p: n for p, n in self.nodes.items() if p == src or p.startswith(src + "/")}
        for path in moved:
            del self.nodes[path]
        if not self._mine(dst):
            return
        for path, node in moved.items():
            new = dst + path[len(src) :]
            if path == src:
                node.linked = False
            self.nodes[new] = node

    def _unlink(self, args: str) -> None:
        quoted = _QUOTED.findall(args)
        if quoted:
            self.nodes.pop(quoted[0], None)

    def _file_call(self, name: str, args: str, ret: int, path: str, snapshot: object) -> None:
        node = self.nodes.get(path)
        if node is None:
            return
        numbers = [int(n) for n in re.findall(r"-?\d+", args.rsplit("]", 1)[-1])]
        fd = int(args.partition("<")[0])
        handle = self._fds.get(fd)
        if name in ("pwrite64", "pwritev"):
            node.size = max(node.size, numbers[-1] + ret)
        elif name == "pwritev2":
            node.size = max(node.size, numbers[-2] + ret)
        elif name == "write" and handle is not None:
            start = node.size if handle.append else handle.position
            node.size = max(node.size, start + ret)
            handle.position = start + ret
        elif name == "lseek" and handle is not None:
            handle.position = ret
        elif name == "ftruncate":
            node.size = numbers[-1]
            node.floor = node.size if node.floor is None else min(node.floor, node.size)
        elif name in ("fsync", "fdatasync"):
            self.fsyncs += 1
            if node.is_dir and isinstance(snapshot, list):
                for child in snapshot:
                    if child in self.nodes:
                        self.nodes[child].linked = True
            elif isinstance(snapshot, int):
                node.durable = snapshot
                node.floor = None

    # ------------------------------------------------------------------ the power loss

    def _durably_named(self, path: str) -> bool:
        while path != self.root:
            node = self.nodes.get(path)
            if node is not None and not node.linked:
                return False
            path = os.path.dirname(path)
        return True

    def apply(self) -> CutReport:
        """Cut the directory as the power loss would (see the module docstring)."""
        report = CutReport()
        for path in sorted(self.nodes, key=len):
            node = self.nodes[path]
            if not os.path.lexists(path):
                continue
            if not self._durably_named(path):
                report.removed.append(path)
                if node.is_dir:
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
                continue
            if node.is_dir:
                continue
            keep = node.cut_length()
            actual = os.path.getsize(path)
            if actual > keep:
                os.truncate(path, keep)
                report.files_cut += 1
                report.bytes_cut += actual - keep
        return report
