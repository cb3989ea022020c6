"""``make cluster-up`` in docker mode, end to end: the compose project in compose/.

Runs as its own compose project on free ports (``KBROKER_COMPOSE_PROJECT``,
``KBROKER_CLUSTER_PORT``, ``KBROKER_ZOOKEEPER_PORT``), so a developer's own ``make cluster-up``
is left alone. Checks the three brokers are registered in a 3-node quorum at the printed URLs,
that a record produced through one broker can be fetched through another, that ``up`` is
idempotent, and that ``down`` leaves no container or network behind.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from kbroker import devcluster, devcluster_docker
from kbroker.testing.brokers import http_json
from kbroker.testing.local import LOOPBACK

pytestmark = [pytest.mark.containers]


def _free_run(count: int, start: int = 20000, stop: int = 32000) -> int:
    """First port of ``count`` consecutive ports that are free on 127.0.0.1."""
    for first in range(start + (uuid.uuid4().int % 500) * 20, stop, count + 1):
        try:
            sockets = []
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind((LOOPBACK, port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return first
    raise RuntimeError("no free port range")


def _project_resources(project: str) -> list[str]:
    label = f"label=com.docker.compose.project={project}"
    names = []
    for kind, field in (
        (["ps", "-a"], "Names"),
        (["network", "ls"], "Name"),
        (["volume", "ls"], "Name"),
    ):
        out = subprocess.run(
            ["docker", *kind, "--filter", label, "--format", f"{{{{.{field}}}}}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        names += out.split()
    return names


def test_cluster_up_docker_mode(
    docker_ready: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = f"kbtest{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KBROKER_COMPOSE_PROJECT", project)
    monkeypatch.setenv("KBROKER_CLUSTER_PORT", str(_free_run(3)))
    monkeypatch.setenv("KBROKER_ZOOKEEPER_PORT", str(_free_run(3)))
    monkeypatch.delenv("KBROKER_CLUSTER_MODE", raising=False)
    base = ["--mode", "docker", "--dir", str(tmp_path)]
    try:
        assert devcluster.main(["up", *base]) == 0
        printed = capsys.readouterr().out
        urls = devcluster_docker.urls()
        for url in urls:
            assert url in printed
        assert "curl -s -X POST" in printed

        # 3 brokers registered, 3 ZooKeeper nodes in one quorum
        assert devcluster.main(["status", *base]) == 0
        status_out = capsys.readouterr().out
        assert status_out.count("leader") + status_out.count("follower") >= 3
        for url in urls:
            assert http_json(url + "/brokers")[1] == {"brokers": [1, 2, 3]}

        # produce through broker 1 to a partition it does not lead, fetch through broker 3
        _, partitions = http_json(urls[0] + "/topics/hello/partitions")
        target = next(p["partition"] for p in partitions if p["leader"] != 1)
        status, body = http_json(
            f"{urls[0]}/topics/hello/partitions/{target}",
            method="POST",
            body={"records": [{"value": {"via": 1}}]},
            content_type="application/vnd.kafka.json.v2+json",
        )
        assert status == 200 and body["offsets"][0]["error_code"] is None, body
        offset = body["offsets"][0]["offset"]
        status, records = http_json(
            f"{urls[2]}/topics/hello/partitions/{target}/records?offset={offset}&timeout=0"
        )
        assert status == 200 and records[0]["value"] == {"via": 1}, records

        # idempotent: a second up leaves the running cluster alone
        assert devcluster.main(["up", *base]) == 0
        assert http_json(f"{urls[1]}/topics/hello/partitions/{target}/records?offset={offset}")[1]
    finally:
        devcluster.main(["down", *base])
    assert _project_resources(project) == []
    assert (tmp_path / "docker" / "broker1").is_dir()  # the data stays (down --wipe deletes it)
