"""Offset commits per second on one group coordinator (issue: consumer groups).

A 3-broker cluster on one ZooKeeper node (``__consumer_offsets`` with replication factor 3,
commits acknowledged once the ISR has them, as in Kafka). The load is ``wrk`` POSTing
``POST /groups/{g}/offsets`` straight to the broker that coordinates ``g``, for a few groups
whose ``__consumer_offsets`` partitions that broker leads, so every request is a real commit on
that one coordinator (none is forwarded). Each request commits ``--offsets`` offsets.

The run checks its own figure: every commit is one record in ``__consumer_offsets``, so the log
end offsets of the coordinator's partitions must have grown by at least the number of commit
requests wrk counted as answered.

    .venv/bin/python -m bench.commits [--duration 10] [--connections 64] [--offsets 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.systems import KBroker, kbroker_cluster, zookeeper
from bench.wrk import run_wrk_many
from kbroker.group.persist import partition_for_group
from kbroker.testing.brokers import http_json

OFFSETS_TOPIC = "__consumer_offsets"
#: Groups loaded at once (each its own wrk process, on its own __consumer_offsets partition).
GROUPS = 4


def _offsets_partitions(url: str) -> list[dict[str, Any]]:
    status, parts = http_json(f"{url}/topics/{OFFSETS_TOPIC}/partitions", timeout=30)
    if status != 200:
        raise RuntimeError(f"{OFFSETS_TOPIC} partitions: {status} {parts}")
    return sorted(parts, key=lambda p: p["partition"])


def _groups_on(broker_id: int, parts: list[dict[str, Any]], count: int) -> list[str]:
    """``count`` group ids on distinct partitions led by ``broker_id``."""
    led = {p["partition"] for p in parts if p["leader"] == broker_id}
    chosen: dict[int, str] = {}
    for i in range(100_000):
        group = f"bench-{i}"
        partition = partition_for_group(group, len(parts))
        if partition in led and partition not in chosen:
            chosen[partition] = group
            if len(chosen) == count:
                return list(chosen.values())
    raise RuntimeError(f"broker {broker_id} leads fewer than {count} offsets partitions")


def _end_offsets(parts: list[dict[str, Any]]) -> int:
    return sum(int(p["log_end_offset"] or 0) for p in parts)


def measure_commits(
    cluster: KBroker, *, duration: int, connections: int, offsets_per_commit: int = 1
) -> dict[str, Any]:
    """Load the coordinator of ``cluster``'s first broker with commits for ``duration`` s."""
    if "orders" not in _topics(cluster.url):
        cluster.create_topic("orders", partitions=10, replication_factor=3)
    coordinator_id, url = next(iter(cluster.urls.items()))
    # The first commit creates __consumer_offsets (replication factor 3).
    status, body = http_json(
        f"{url}/groups/warm-up/offsets",
        method="POST",
        body={"offsets": [{"topic": "orders", "partition": 0, "offset": 1}]},
        timeout=120,
    )
    if status != 200:
        raise RuntimeError(f"first commit: {status} {body}")
    cluster.leaders(OFFSETS_TOPIC, isr=3)
    groups = _groups_on(coordinator_id, _offsets_partitions(url), GROUPS)
    commit = orjson.dumps(
        {
            "offsets": [
                {"topic": "orders", "partition": p % 10, "offset": 1000 + p}
                for p in range(offsets_per_commit)
            ]
        }
    )
    targets = [(f"{url}/groups/{g}/offsets", max(1, connections // GROUPS)) for g in groups]
    run_wrk_many(targets, commit, duration=2, content_type="application/json")  # warm-up
    before = _end_offsets(_offsets_partitions(url))
    started = time.time()
    result = run_wrk_many(targets, commit, duration=duration, content_type="application/json")
    after = _end_offsets(_offsets_partitions(url))
    status, committed = http_json(f"{url}/groups/{groups[0]}/offsets", timeout=30)
    answered = result.requests - result.status_errors
    written = after - before
    if result.status_errors or result.socket_errors:
        raise RuntimeError(f"errors during the run: {result}")
    if written < answered * offsets_per_commit:
        raise RuntimeError(f"{answered} commits answered but only {written} records written")
    if status != 200 or not committed["offsets"]:
        raise RuntimeError(f"committed offsets not readable: {status} {committed}")
    return {
        "workload": "offset commits on one coordinator",
        "started": started,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "duration_s": result.seconds,
        "connections": sum(c for _, c in targets),
        "groups": len(groups),
        "offsets_per_commit": offsets_per_commit,
        "commits": answered,
        "commits_per_s": answered / result.seconds,
        "offsets_per_s": answered * offsets_per_commit / result.seconds,
        "records_written": written,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
    }


def _topics(url: str) -> list[str]:
    status, names = http_json(f"{url}/topics", timeout=30)
    return list(names) if status == 200 else []


def run(duration: int, connections: int, offsets_per_commit: int) -> dict[str, Any]:
    """A 3-broker cluster on its own ZooKeeper node, loaded once."""
    with (
        tempfile.TemporaryDirectory(prefix="kbroker-bench-commits-") as tmp,
        zookeeper(Path(tmp)) as zk,
        kbroker_cluster(Path(tmp), zk, chroot="/commits") as cluster,
    ):
        return measure_commits(
            cluster,
            duration=duration,
            connections=connections,
            offsets_per_commit=offsets_per_commit,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--offsets", type=int, default=1, help="offsets per commit request")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    doc = run(args.duration, args.connections, args.offsets)
    args.out.mkdir(parents=True, exist_ok=True)
    name = time.strftime("%Y%m%d-%H%M%S") + f"-commits-{args.offsets}.json"
    (args.out / name).write_text(json.dumps(doc, indent=1) + "\n")
    print(
        f"{doc['commits_per_s']:,.0f} commits/s ({doc['offsets_per_s']:,.0f} offsets/s) on one "
        f"coordinator, {doc['connections']} connections over {doc['groups']} groups, "
        f"p50 {doc['p50_ms']:.1f} ms p99 {doc['p99_ms']:.1f} ms; "
        f"{doc['records_written']:,} records written; -> {args.out / name}"
    )


if __name__ == "__main__":
    main()
