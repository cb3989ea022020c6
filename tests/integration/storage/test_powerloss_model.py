"""The power-loss harness itself, on a small real process traced by strace.

The script below does, on purpose, each thing the model must get right: writes after an fsync
(lost), a file fsynced in a directory never fsynced since its creation (gone), the tmp -> fsync
-> rename -> fsync of the directory dance (kept whole), a truncation after the last fsync (the
cut may be durable), and writes racing an fsync in another thread (only what was written before
the fsync began).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.storage.powerloss import FsyncModel, strace_prefix

pytestmark = pytest.mark.integration

SCRIPT = r"""
import os, sys, threading
root = sys.argv[1]
def sync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY); os.fsync(fd); os.close(fd)
os.mkdir(f"{root}/dir")
os.mkdir(f"{root}/other")
sync_dir(root)
a = os.open(f"{root}/dir/a.log", os.O_RDWR | os.O_CREAT, 0o644)
sync_dir(f"{root}/dir")
os.pwritev(a, [b"x" * 60, b"y" * 40], 0)
os.fsync(a)
os.pwritev(a, [b"z" * 50], 100)
b = os.open(f"{root}/other/b.log", os.O_RDWR | os.O_CREAT, 0o644)
os.pwritev(b, [b"b" * 10], 0)
os.fsync(b)
with open(f"{root}/dir/c.tmp", "w") as f:
    f.write("0\n1\nchaos 0 42\n"); f.flush(); os.fsync(f.fileno())
os.replace(f"{root}/dir/c.tmp", f"{root}/dir/c")
sync_dir(f"{root}/dir")
d = os.open(f"{root}/dir/d.log", os.O_RDWR | os.O_CREAT, 0o644)
sync_dir(f"{root}/dir")
os.pwritev(d, [b"d" * 80], 0)
os.fsync(d)
os.ftruncate(d, 30)
e = os.open(f"{root}/dir/e.log", os.O_RDWR | os.O_CREAT, 0o644)
sync_dir(f"{root}/dir")
for i in range(20):
    t = threading.Thread(target=os.fsync, args=(e,))
    t.start()
    os.pwritev(e, [b"e" * 10], i * 10)
    t.join()
os.pwritev(e, [b"e" * 10], 200)
"""


def test_model_cuts_what_was_not_fsynced(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    trace = tmp_path / "trace"
    model = FsyncModel(root)
    argv = [*strace_prefix(trace), sys.executable, "-c", SCRIPT, str(root)]
    subprocess.run(argv, check=True, timeout=60, capture_output=True)
    model.feed_file(trace)
    assert model.fsyncs >= 25
    report = model.apply()
    files = root / "dir"
    assert (files / "a.log").read_bytes() == b"x" * 60 + b"y" * 40
    assert not (root / "other" / "b.log").exists()
    assert (files / "c").read_text() == "0\n1\nchaos 0 42\n"
    assert not (files / "c.tmp").exists()
    assert (files / "d.log").read_bytes() == b"d" * 30
    size = (files / "e.log").stat().st_size
    assert size % 10 == 0 and 180 <= size <= 200  # writes racing fsyncs: whole ones or none
    assert report.removed == [str(root / "other" / "b.log")]
    assert report.files_cut == 2  # a.log and e.log (d.log is already at its truncation)


def test_an_fsync_covers_only_writes_finished_before_it_began(tmp_path: Path) -> None:
    """strace's split lines: the fsync began before the second write finished."""
    root = tmp_path / "data"
    root.mkdir()
    log = root / "0.log"
    log.write_bytes(b"a" * 150)
    model = FsyncModel(root)
    log.write_bytes(b"")
    model.nodes[str(log)].size = model.nodes[str(log)].durable = 0
    lines = [
        f'7 openat(AT_FDCWD</>, "{log}", O_RDWR|O_CREAT|O_CLOEXEC, 0644) = 3<{log}>',
        f"7 pwritev2(3<{log}>, [...], 1, 0, 0) = 100",
        f"7 pwritev2(3<{log}>, [...], 1, 100, 0 <unfinished ...>",
        f"8 fsync(3<{log}> <unfinished ...>",
        "7 <... pwritev2 resumed>) = 50",
        "8 <... fsync resumed>) = 0",
    ]
    for line in lines:
        model.feed(line)
    log.write_bytes(b"a" * 150)
    assert model.apply().bytes_cut == 50
    assert log.stat().st_size == 100
