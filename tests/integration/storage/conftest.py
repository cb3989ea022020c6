"""Fixtures for storage-fault tests with real broker processes.

- ``loop_fs``: a factory of small loop-mounted ext4 file systems (real ENOSPC), each unmounted
  and deleted at teardown. Needs root; fails (never skips) without it, as CI runs as root.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kbroker.testing.chaos.sandbox import mount_loop_fs, unmount_loop_fs

LoopFs = Callable[[str, int], Path]


@pytest.fixture
def loop_fs(tmp_path: Path) -> Iterator[LoopFs]:
    """``loop_fs(name, size_mb)`` mounts a fresh ext4 at ``tmp_path/name`` and returns it."""
    assert os.geteuid() == 0, "storage-fault tests need root (loop mounts)"
    mounted: list[tuple[Path, Path]] = []

    def make(name: str, size_mb: int) -> Path:
        mountpoint, image = tmp_path / name, tmp_path / f"{name}.img"
        mounted.append((mountpoint, image))
        mount_loop_fs(mountpoint, image, size_mb)
        return mountpoint

    try:
        yield make
    finally:
        for mountpoint, image in reversed(mounted):
            unmount_loop_fs(mountpoint, image)
