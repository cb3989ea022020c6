"""``kbroker serve`` as an operator runs it: exit codes and messages of a failed start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kbroker.testing.local import free_ports


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "kbroker.cli", "serve", "--data-dir", str(tmp_path), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_no_zookeeper_is_a_failed_start_with_one_line(tmp_path: Path) -> None:
    closed, listen = free_ports(2)  # nothing listens on `closed`
    done = _serve(
        tmp_path,
        "--broker-id=1",
        f"--zookeeper=127.0.0.1:{closed}/kbroker",
        f"--listen=127.0.0.1:{listen}",
        "--set=zookeeper.connection.timeout.ms=300",
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, done.stderr
    assert f"cannot start: no ZooKeeper server at 127.0.0.1:{closed} answered" in errors[0]


@pytest.mark.parametrize(
    "args",
    [("--broker-id=x",), ("--broker-id=1", "--set", "no-equals-sign")],
)
def test_bad_arguments_exit_2_without_starting(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = _serve(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
