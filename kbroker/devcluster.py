"""``make cluster-up`` and friends: a 3-node ZooKeeper ensemble and 3 brokers on this machine.

``python -m kbroker.devcluster up|down|status|logs [--mode auto|docker|local]``.

* **docker** (when a Docker engine answers, or ``KBROKER_CLUSTER_MODE=docker``): the compose
  project in ``compose/`` (see kbroker.devcluster_docker).
* **local** (otherwise, or ``KBROKER_CLUSTER_MODE=local``): ZooKeeper from Debian's package and
  brokers from this venv, as detached processes under ``.cluster/`` with their logs and pid
  files (kbroker.testing.brokers.LocalCluster).

Either way the brokers listen on 127.0.0.1 ports 8081-8083 (``KBROKER_CLUSTER_PORT`` moves the
first one) and ZooKeeper on 2181-2183 (``KBROKER_ZOOKEEPER_PORT``). ``up`` is idempotent: it
starts what is not running and leaves the rest alone. ``down`` stops everything it started and
leaves no process, container or network behind; the data stays (``--wipe`` removes it).
``up`` ends by creating a topic ``hello`` (3 partitions, RF 3) and printing the broker URLs and
a first curl line to try.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Final

from kbroker import devcluster_docker, images
from kbroker.testing.brokers import LocalCluster, http_json
from kbroker.testing.local import ProcessError, ZooKeeperPorts

__all__ = ["main"]

CLUSTER_DIR: Final = Path(os.environ.get("KBROKER_CLUSTER_DIR", ".cluster"))
BROKERS: Final = 3
SETTINGS: Final = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "num.partitions": "3",
    "zookeeper.session.timeout.ms": "6000",
}
FIRST_TOPIC: Final = "hello"


def broker_ports() -> list[int]:
    first = int(os.environ.get("KBROKER_CLUSTER_PORT", "8081"))
    return [first + i for i in range(BROKERS)]


def zookeeper_ports() -> list[ZooKeeperPorts]:
    first = int(os.environ.get("KBROKER_ZOOKEEPER_PORT", "2181"))
    return [
        ZooKeeperPorts(client=first + i, peer=first + 100 + i, election=first + 200 + i)
        for i in range(3)
    ]


def choose_mode(requested: str) -> str:
    mode = os.environ.get("KBROKER_CLUSTER_MODE", requested)
    if mode not in ("auto", "docker", "local"):
        raise SystemExit(f"KBROKER_CLUSTER_MODE must be docker or local, not {mode!r}")
    if mode != "auto":
        return mode
    return "docker" if images.docker_answers() else "local"


# ----------------------------------------------------------------------------- local mode


def _local_cluster(base: Path) -> LocalCluster:
    return LocalCluster(
        base,
        brokers=BROKERS,
        settings=SETTINGS,
        detach=True,
        ports=broker_ports(),
        zookeeper_ports=zookeeper_ports(),
        tick_time_ms=2000,
    )


def local_up(base: Path) -> list[str]:
    base.mkdir(parents=True, exist_ok=True)
    cluster = _local_cluster(base)
    cluster.ensure_running()
    return cluster.urls


def _serving(url: str) -> bool:
    try:
        return http_json(url + "/", timeout=2)[0] == 200
    except OSError:
        return False


def local_down(base: Path) -> list[str]:
    return LocalCluster.stop_detached(base)


def local_status(base: Path) -> int:
    print(f"zookeeper: {_local_cluster(base).zookeeper_modes()}")
    up = 0
    for i, url in enumerate(_urls(), start=1):
        alive = _serving(url)
        up += alive
        print(f"broker {i}: {url} {'serving' if alive else 'DOWN'}")
    return 0 if up == BROKERS else 1


def local_logs(base: Path) -> None:
    for log in sorted(base.glob("broker*/broker.log")) + sorted(base.glob("zookeeper/zk*/*.log")):
        print(f"==> {log} <==")
        lines = log.read_text(errors="replace").splitlines()[-40:]
        print("\n".join(lines))


def _urls() -> list[str]:
    return [f"http://127.0.0.1:{p}" for p in broker_ports()]


# ------------------------------------------------------------------------------- common


def create_first_topic(url: str) -> None:
    status, clusters = http_json(url + "/v3/clusters")
    cid = clusters["data"][0]["cluster_id"]
    status, topics = http_json(f"{url}/topics")
    if FIRST_TOPIC in topics:
        return
    for _ in range(30):
        status, body = http_json(
            f"{url}/v3/clusters/{cid}/topics",
            method="POST",
            body={"topic_name": FIRST_TOPIC, "partitions_count": 3, "replication_factor": BROKERS},
        )
        if status in (201, 409):
            return
        time.sleep(1)
    raise ProcessError(f"could not create topic {FIRST_TOPIC}: {status} {body}")


def print_welcome(urls: list[str], mode: str) -> None:
    print(f"kbroker cluster is up ({mode} mode): 3 ZooKeeper nodes, {len(urls)} brokers")
    for i, url in enumerate(urls, start=1):
        print(f"  broker {i}: {url}")
    print("Try:")
    print(
        f"  curl -s -X POST -H 'Content-Type: application/vnd.kafka.json.v2+json' "
        f'--data \'{{"records":[{{"value":{{"hello":"world"}}}}]}}\' '
        f"{urls[0]}/topics/{FIRST_TOPIC}/partitions/0"
    )
    print(f"  curl -s '{urls[1]}/topics/{FIRST_TOPIC}/partitions/0/records?offset=0'")
    print("Stop it with: make cluster-down")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kbroker.devcluster")
    parser.add_argument("command", choices=["up", "down", "status", "logs"])
    parser.add_argument("--mode", default="auto", choices=["auto", "docker", "local"])
    parser.add_argument("--dir", type=Path, default=CLUSTER_DIR)
    parser.add_argument("--wipe", action="store_true", help="down: also delete the data")
    args = parser.parse_args(argv)
    base = args.dir.resolve()
    state = base / "mode.json"
    if args.command == "up":
        mode = choose_mode(args.mode)
        base.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"mode": mode}))
        urls = _up(mode, base)
        create_first_topic(urls[0])
        print_welcome(urls, mode)
        return 0
    mode = json.loads(state.read_text())["mode"] if state.exists() else choose_mode(args.mode)
    if args.command == "down":
        stopped = _down(mode, base)
        print(f"stopped ({mode} mode): {', '.join(stopped) or 'nothing was running'}")
        if args.wipe:
            shutil.rmtree(base, ignore_errors=True)
        return 0
    if args.command == "status":
        return _status(mode, base)
    _logs(mode, base)
    return 0


def _up(mode: str, base: Path) -> list[str]:
    if mode == "docker":
        return devcluster_docker.up(base)
    return local_up(base)


def _down(mode: str, base: Path) -> list[str]:
    if mode == "docker":
        return devcluster_docker.down(base)
    return local_down(base)


def _status(mode: str, base: Path) -> int:
    if mode == "docker":
        return devcluster_docker.status(base)
    return local_status(base)


def _logs(mode: str, base: Path) -> None:
    if mode == "docker":
        devcluster_docker.logs(base)
        return
    local_logs(base)


if __name__ == "__main__":
    sys.exit(main())
