"""kbroker.testing.local: managed processes and ZooKeeper ensembles on loopback."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from kbroker.testing import local
from kbroker.testing.local import (
    ManagedProcess,
    ProcessError,
    ZooKeeperEnsemble,
    ZooKeeperPorts,
    ZooKeeperStartError,
    four_letter_word,
    free_ports,
)

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]


def alive(proc: ManagedProcess) -> bool:
    """``proc.running``, read through a call so that mypy does not narrow it across steps."""
    return proc.running


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(9)
    assert len(set(ports)) == 9
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_managed_process_life_cycle(tmp_path: Path) -> None:
    proc = ManagedProcess(
        name="sleeper", argv=SLEEPER, log_path=tmp_path / "p.log", pid_path=tmp_path / "p.pid"
    )
    proc.start()
    proc.wait_for_log("up", 10)
    assert alive(proc) and proc.pid is not None
    assert (tmp_path / "p.pid").read_text().strip() == str(proc.pid)
    with pytest.raises(ProcessError, match="already running"):
        proc.start()
    proc.pause()
    assert proc.paused
    with pytest.raises(ProcessError, match="did not exit"):
        proc.wait_exit(0.2)
    proc.resume()
    assert proc.stop(timeout=5) == -15  # SIGTERM
    assert not alive(proc) and not (tmp_path / "p.pid").exists()
    assert "up" in proc.log_tail()
    with pytest.raises(ProcessError, match="exited before logging"):
        proc.wait_for_log("never", 5)


def test_detached_process_is_stopped_from_its_pid_file(tmp_path: Path) -> None:
    pid_path = tmp_path / "d.pid"
    proc = ManagedProcess(
        name="detached", argv=SLEEPER, log_path=tmp_path / "d.log", pid_path=pid_path, detach=True
    )
    proc.start()
    assert local.stop_pid_file(pid_path, marker="no-such-marker") is None  # pid reuse guard
    assert proc.running
    proc.pid_path = None  # forget it, as a later Python process would
    (pid_path).write_text(f"{proc.pid}\n")
    assert local.stop_pid_file(pid_path, marker="time.sleep(60)") == proc.pid
    proc.wait_exit(5)
    assert not pid_path.exists()


def test_single_node_ensemble_with_port_collision_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A port taken between picking and binding: the ensemble retries with fresh ports."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_ports = local.free_ports
        calls: list[int] = []

        def first_call_collides(count: int, host: str = local.LOOPBACK) -> list[int]:
            calls.append(count)
            ports = real_free_ports(count, host)
            return [taken, *ports[1:]] if len(calls) == 1 else ports

        monkeypatch.setattr(local, "free_ports", first_call_collides)
        with ZooKeeperEnsemble(base_dir=tmp_path, size=1, start_timeout_s=20) as ensemble:
            assert len(calls) == 2
            assert ensemble.nodes[0].ports.client != taken
            assert ensemble.leader() == 0
            assert "imok" in four_letter_word(ensemble.nodes[0].ports.client, "ruok")
        assert not ensemble.nodes[0].running


def test_fixed_taken_port_fails_with_log_tail(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        client, peer, election = squatter.getsockname()[1], *free_ports(2)
        ports = [ZooKeeperPorts(client=client, peer=peer, election=election)]
        ensemble = ZooKeeperEnsemble(base_dir=tmp_path, size=1, ports=ports, start_timeout_s=20)
        with pytest.raises(ZooKeeperStartError, match="last lines of"):
            ensemble.start()
        ensemble.close()


def test_detached_ensemble_outlives_its_object(tmp_path: Path) -> None:
    ensemble = ZooKeeperEnsemble(base_dir=tmp_path, size=1, detach=True)
    ensemble.start()
    manifest = ZooKeeperEnsemble.read_manifest(tmp_path)
    assert manifest is not None and manifest["connect_string"] == ensemble.connect_string
    pid = ensemble.nodes[0].process.pid
    del ensemble
    assert ZooKeeperEnsemble.stop_detached(tmp_path) == [pid]
    assert ZooKeeperEnsemble.read_manifest(tmp_path) is None
    assert not list(tmp_path.glob("zk*/zookeeper.pid"))


def test_ensemble_rejects_even_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="odd"):
        ZooKeeperEnsemble(base_dir=tmp_path, size=2)


def test_shared_ensemble_reports_one_leader(zk_ensemble: ZooKeeperEnsemble) -> None:
    zk_ensemble.heal(30)
    modes = zk_ensemble.modes()
    assert sorted(m or "" for m in modes) == ["follower", "follower", "leader"]
    assert zk_ensemble.leader() == modes.index("leader")
    assert zk_ensemble.connect_string.count("127.0.0.1:") == 3
