"""Full-suite phases about kbroker alone: its own client, its group coordinator, its fsync policy.

* ``clients``: ``kbctl perf produce`` (kclient's producer, acks=1, 100-byte records) and
  ``kbctl perf consume`` (kclient's consumer) against one broker, as a user runs them;
* ``commits``: offset commits per second on one group coordinator (:mod:`bench.commits`);
* ``flush``: the cost of an fsync before every acknowledgement (``flush.messages=1``) against
  the default (acknowledge from the page cache, as Kafka does), alternated on one broker.

Each figure is checked against what the broker holds afterwards (end offsets, records written).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

from bench.commits import measure_commits
from bench.model import Sample
from bench.suite import (
    HEADLINE,
    RF1_TOPIC_PARTITIONS,
    Config,
    Contender,
    Recorder,
    rf1_produce,
)
from bench.systems import KBroker, kbroker_cluster, kbroker_single

__all__ = ["phase_clients", "phase_commits", "phase_flush"]

#: Records of each kbctl perf run (about 100 MB of values).
PERF_RECORDS = 1_000_000
PERF_PARTITIONS = 4


def _kbctl(url: str, *args: str, timeout: float) -> dict[str, Any]:
    kbctl = Path(sys.executable).parent / "kbctl"
    out = subprocess.run(
        [str(kbctl), "--bootstrap", url, "--output", "json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
        env={**os.environ, "NO_COLOR": "1"},
    ).stdout
    doc: dict[str, Any] = json.loads(out)
    return doc


def _perf_produce(kb: KBroker, topic: str) -> Sample:
    before = sum(kb.end_offsets(topic, PERF_PARTITIONS))
    doc = _kbctl(
        kb.url,
        "perf", "produce", topic, "--num-records", str(PERF_RECORDS), "--record-size", "100",
        "--acks", "1",
        timeout=600,
    )  # fmt: skip
    stored = sum(kb.end_offsets(topic, PERF_PARTITIONS)) - before
    if stored != PERF_RECORDS:
        raise RuntimeError(f"kbctl reported {PERF_RECORDS} sent, the broker holds {stored}")
    return Sample(
        records=int(doc["records"]),
        seconds=float(doc["records"]) / float(doc["records_per_sec"]),
        p50_ms=float(doc["latency"]["p50_ms"]),
        p99_ms=float(doc["latency"]["p99_ms"]),
    )


def _perf_consume(kb: KBroker, topic: str) -> Sample:
    doc = _kbctl(kb.url, "perf", "consume", topic, "--num-records", str(PERF_RECORDS), timeout=600)
    if int(doc["records"]) < PERF_RECORDS:
        raise RuntimeError(f"kbctl consumed {doc['records']} of {PERF_RECORDS} records")
    return Sample(
        records=int(doc["records"]),
        seconds=float(doc["records"]) / float(doc["records_per_sec"]),
    )


def phase_clients(rec: Recorder, cfg: Config, zk: str) -> None:
    """kbctl perf produce and consume on one broker (issue: kclient and kbctl)."""
    rec.log("phase: kbctl perf produce / consume (kclient)")
    fields = {"system": "kbroker", "client": "kbctl perf (kclient)", "python_client": True}
    produce = rec.row(
        "clients/kbctl-perf-produce",
        workload="produce",
        mode="RF1 acks=1, 100-byte records, kclient's default batching",
        **fields,
    )
    consume = rec.row(
        "clients/kbctl-perf-consume",
        workload="fetch",
        mode="kclient consumer, no group, from the start",
        **fields,
    )
    with kbroker_single(cfg.root, zk, chroot="/clients") as kb:
        for rep in range(cfg.reps):
            topic = f"perf-{rep}"
            kb.create_topic(topic, partitions=PERF_PARTITIONS)
            rec.measure(produce, partial(_perf_produce, kb, topic))
            rec.measure(consume, partial(_perf_consume, kb, topic))


def phase_commits(rec: Recorder, cfg: Config, zk: str) -> None:
    """Offset commits per second on one coordinator (3 brokers, __consumer_offsets RF 3)."""
    rec.log("phase: offset commits on one group coordinator")
    row = rec.row(
        "groups/commits",
        workload="commit",
        system="kbroker",
        mode="offset commits on one coordinator (RF 3), 1 offset per commit",
        client="wrk (C)",
        connections=64,
    )
    with kbroker_cluster(cfg.root, zk, chroot="/commits") as cluster:
        for _ in range(cfg.reps):

            def run() -> Sample:
                doc = measure_commits(cluster, duration=cfg.seconds, connections=64)
                return Sample(
                    records=int(doc["commits"]),
                    seconds=float(doc["duration_s"]),
                    p50_ms=float(doc["p50_ms"]),
                    p99_ms=float(doc["p99_ms"]),
                )

            rec.measure(row, run)


def phase_flush(rec: Recorder, cfg: Config, zk: str) -> None:
    """Default flush policy against flush.messages=1, alternated on one broker."""
    rec.log("phase: fsync before every acknowledgement (flush.messages=1) against the default")
    with kbroker_single(cfg.root, zk, chroot="/flush") as kb:
        policies = {
            "page cache (default)": ("bench", {}),
            "fsync before every ack (flush.messages=1)": ("bench-fsync", {"flush.messages": "1"}),
        }
        contenders = []
        for mode, (topic, configs) in policies.items():
            kb.create_topic(topic, partitions=RF1_TOPIC_PARTITIONS, configs=configs)
            contenders.append(
                Contender(
                    f"kbroker-rf1-{topic}",
                    "kbroker",
                    f"RF1 acks=1, {mode}",
                    "wrk (C)",
                    partial(rf1_produce, cfg, kb, topic=topic),
                )
            )
        for _ in range(cfg.reps):
            for c in contenders:
                rec.measure(c.row(rec, *HEADLINE), partial(c.produce, *HEADLINE))
