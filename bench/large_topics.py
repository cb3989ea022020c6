"""How long a topic of thousands of partitions takes on a 3-broker cluster:
``python -m bench.large_topics --partitions 2000``.

Starts a local cluster (3 ZooKeeper nodes, 3 brokers, the test suite's fast-failover settings:
ZooKeeper session 4 s), creates one RF 3 topic, and times each phase until every live broker
describes the topic as wanted:

1. create: the creation answers, then every partition is *led* (a leader and a full ISR) on
   every broker;
2. failover: after ``--settle`` seconds, kill -9 of a broker that is not the controller, until
   no partition names it as leader on the others;
3. restart: it is started again, until every ISR is full again;
4. delete: until the topic is gone from every broker.

It also counts the brokers' "did not run for" warnings (event-loop stalls, after which a broker
fences itself for a moment). Every phase is bounded (``--bound`` seconds).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kbroker.testing.brokers import (
    FAST_FAILOVER,
    LocalCluster,
    cluster_id,
    http_json,
    topic_led_everywhere,
)

__all__ = ["main"]

TOPIC = "large"


def _timed(what: str, started: float, condition: Callable[[], bool], bound: float) -> None:
    while not condition():
        if time.monotonic() - started > bound:
            print(f"{what}: not within {bound:.0f} s", flush=True)
            return
        time.sleep(0.2)
    print(f"{what}: {time.monotonic() - started:.2f} s", flush=True)


def run(partitions: int, settle: float, bound: float, base: Path) -> None:
    with LocalCluster(base, settings=FAST_FAILOVER) as cluster:
        urls = cluster.urls
        started = time.monotonic()
        status, answer = http_json(
            f"{urls[0]}/admin/topics",
            method="POST",
            body={"topic_name": TOPIC, "partitions_count": partitions, "replication_factor": 3},
            timeout=bound,
        )
        print(f"create answered {status}: {time.monotonic() - started:.2f} s", flush=True)
        if status != 201:
            raise SystemExit(f"creation refused: {answer}")
        _timed(
            "created and led", started, lambda: topic_led_everywhere(urls, TOPIC, partitions), bound
        )
        time.sleep(settle)
        victim = next(b for b in (1, 2, 3) if b != cluster.controller())
        survivors = [u for i, u in enumerate(urls, 1) if i != victim]
        started = time.monotonic()
        cluster.broker(victim).kill()
        _timed(
            f"failover (broker {victim} killed)",
            started,
            lambda: topic_led_everywhere(survivors, TOPIC, partitions, without=victim),
            bound,
        )
        started = time.monotonic()
        cluster.broker(victim).start()
        _timed(
            "restart: ISRs full again",
            started,
            lambda: topic_led_everywhere(urls, TOPIC, partitions),
            bound,
        )
        started = time.monotonic()
        http_json(
            f"{urls[0]}/v3/clusters/{cluster_id(urls[0])}/topics/{TOPIC}",
            method="DELETE",
            timeout=bound,
        )
        _timed(
            "deleted everywhere",
            started,
            lambda: all(http_json(f"{u}/topics/{TOPIC}")[0] == 404 for u in urls),
            bound,
        )
        stalls = [
            line
            for broker in cluster.brokers
            for line in broker.process.log_since_start().splitlines()
            if "did not run for" in line
        ]
        print(f"event-loop stalls: {len(stalls)}", *stalls, sep="\n  ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.large_topics", description=__doc__)
    parser.add_argument("--partitions", type=int, default=2000)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds before the kill")
    parser.add_argument("--bound", type=float, default=300.0, help="seconds per phase at most")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kbroker-large-", dir="/var/tmp") as tmp:
        run(args.partitions, args.settle, args.bound, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
