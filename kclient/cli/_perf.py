"""kbctl perf produce|consume: throughput and latency, like Kafka's perf-test tools.

``perf produce`` sends ``--num-records`` records of ``--record-size`` bytes through one
:class:`kclient.Producer` (optionally capped at ``--throughput``) and reports records/s, MB/s
and delivery latency percentiles (send to acknowledgement, sampled on every 64th record).
``perf consume`` reads ``--num-records`` records with one :class:`kclient.Consumer` from the
beginning of the topic and reports records/s, MB/s and ``poll`` latency percentiles.
MB is 10^6 bytes of record values (and keys), as in Kafka's tools.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from operator import itemgetter
from typing import Any

from kclient.cli import EXIT_FAILURE, EXIT_OK, UsageError
from kclient.cli._output import Progress, print_json
from kclient.consumer import Consumer
from kclient.producer import Producer
from kclient.structs import RecordMetadata, TopicPartition

__all__ = ["consume", "percentile", "produce"]

_SAMPLE_EVERY = 64
_KEY = itemgetter(4)
_VALUE = itemgetter(5)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (0 when there are none)."""
    if not sorted_values:
        return 0.0
    index = max(0, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[min(index, len(sorted_values) - 1)]


def _latencies(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "avg_ms": sum(ordered) / len(ordered) if ordered else 0.0,
        "p50_ms": percentile(ordered, 0.50),
        "p99_ms": percentile(ordered, 0.99),
        "p999_ms": percentile(ordered, 0.999),
        "max_ms": ordered[-1] if ordered else 0.0,
    }


def _report(args: argparse.Namespace, doc: dict[str, Any], what: str) -> None:
    if args.output == "json":
        print_json(doc)
        return
    lat = doc["latency"]
    print(
        f"{doc['records']:,} records {what}, {doc['records_per_sec']:,.0f} records/s "
        f"({doc['mb_per_sec']:.2f} MB/s), {doc['seconds']:.2f} s; {doc['latency_kind']} latency "
        f"avg {lat['avg_ms']:.1f} ms, p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
        f"p99.9 {lat['p999_ms']:.1f} ms, max {lat['max_ms']:.1f} ms"
    )


class _Throttle:
    """Sleeps so that ``rate`` records/s are not exceeded (no-op when rate <= 0)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start = time.monotonic()

    def wait(self, sent: int) -> None:
        if self.rate <= 0:
            return
        ahead = sent / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)


def produce(args: argparse.Namespace) -> int:
    if args.num_records < 1 or args.record_size < 1:
        raise UsageError("--num-records and --record-size must be >= 1")
    payload = os.urandom(args.record_size // 2 + 1).hex()[: args.record_size].encode()
    samples: list[float] = []
    failures: list[BaseException] = []

    def sampled(started: float) -> Any:
        def done(metadata: RecordMetadata | None, error: BaseException | None) -> None:
            if error is not None:
                failures.append(error)
            else:
                samples.append((time.perf_counter() - started) * 1000)

        return done

    progress = Progress(args.num_records, label="produce ")
    with Producer(
        args.bootstrap,
        client_id="kbctl-perf",
        acks=args.acks,
        batch_size=args.batch_size,
        linger_ms=args.linger_ms,
        request_timeout_ms=args.timeout * 1000,
    ) as producer:
        producer.partitions_for(args.topic)
        send = producer.send
        topic = args.topic
        keyed = args.keys
        start = time.perf_counter()
        throttle = _Throttle(args.throughput)
        for i in range(args.num_records):
            if i % _SAMPLE_EVERY == 0:
                send(
                    topic,
                    payload,
                    str(i).encode() if keyed else None,
                    on_delivery=sampled(time.perf_counter()),
                )
                throttle.wait(i)
                if i % 8192 == 0:
                    progress.update(i)
            else:
                send(topic, payload, str(i).encode() if keyed else None)
        throttle.wait(args.num_records)
        producer.flush()
        seconds = time.perf_counter() - start
    progress.close()
    doc = {
        "records": args.num_records,
        "record_size": args.record_size,
        "seconds": seconds,
        "records_per_sec": args.num_records / seconds,
        "mb_per_sec": args.num_records * args.record_size / seconds / 1e6,
        "latency_kind": "delivery",
        "latency": _latencies(samples),
        "failed_samples": len(failures),
        "acks": args.acks,
    }
    _report(args, doc, "sent")
    if failures:
        print(f"kbctl: deliveries failed: {failures[0]}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def consume(args: argparse.Namespace) -> int:
    if args.num_records < 1:
        raise UsageError("--num-records must be >= 1")
    progress = Progress(args.num_records, label="consume ")
    polls: list[float] = []
    count = 0
    size = 0
    with Consumer(
        args.bootstrap,
        group_id=args.group,
        client_id="kbctl-perf",
        auto_offset_reset="earliest",
        enable_auto_commit=bool(args.group),
        fetch_max_bytes=args.fetch_max_bytes,
        max_poll_records=args.max_poll_records,
        max_prefetch_records=max(4 * args.max_poll_records, 50_000),
        request_timeout_ms=args.timeout * 1000,
    ) as consumer:
        if args.group:
            consumer.subscribe([args.topic])
        else:
            consumer.assign(
                TopicPartition(args.topic, p) for p in consumer.partitions_for(args.topic)
            )
            consumer.seek_to_beginning()
        start = time.perf_counter()
        idle_since = time.monotonic()
        while count < args.num_records:
            began = time.perf_counter()
            left = min(args.max_poll_records, args.num_records - count)
            records = consumer.poll(timeout=1.0, max_records=left)
            polls.append((time.perf_counter() - began) * 1000)
            if not records:
                if time.monotonic() - idle_since > min(10.0, args.timeout):
                    print(f"kbctl: only {count} records in {args.topic}", file=sys.stderr)
                    break
                continue
            idle_since = time.monotonic()
            count += len(records)
            size += sum(map(len, filter(None, map(_VALUE, records))))
            size += sum(map(len, filter(None, map(_KEY, records))))
            progress.update(count)
        seconds = time.perf_counter() - start
    progress.close()
    doc = {
        "records": count,
        "bytes": size,
        "seconds": seconds,
        "records_per_sec": count / seconds if seconds else 0.0,
        "mb_per_sec": size / seconds / 1e6 if seconds else 0.0,
        "latency_kind": "poll",
        "latency": _latencies(polls),
    }
    _report(args, doc, "consumed")
    return EXIT_OK if count >= args.num_records else EXIT_FAILURE
