"""kbctl produce and consume."""

from __future__ import annotations

import argparse
import base64
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import IO, Any

import orjson

from kclient.cli import EXIT_FAILURE, EXIT_OK, UsageError
from kclient.cli._output import print_json
from kclient.consumer import Consumer
from kclient.producer import Producer
from kclient.structs import ConsumerRecord, RecordMetadata, TopicPartition

__all__ = ["consume", "produce"]


# ------------------------------------------------------------------------------- produce


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    for line in stream:
        yield line.rstrip(b"\r\n")


def _headers(pairs: list[str]) -> list[tuple[str, bytes | None]]:
    out: list[tuple[str, bytes | None]] = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"header {pair!r} must be KEY=VALUE")
        out.append((name, value.encode()))
    return out


def produce(args: argparse.Namespace) -> int:
    separator = args.key_separator.encode() if args.key_separator else None
    headers = _headers(args.header)
    source: IO[bytes]
    try:
        source = open(args.file, "rb") if args.file else sys.stdin.buffer  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    failures: list[BaseException] = []
    partitions: Counter[int] = Counter()

    def delivered(metadata: RecordMetadata | None, error: BaseException | None) -> None:
        if error is not None:
            failures.append(error)
        elif metadata is not None:
            partitions[metadata.partition] += 1

    sent = 0
    with Producer(
        args.bootstrap,
        client_id="kbctl",
        acks=args.acks,
        linger_ms=args.linger_ms,
        request_timeout_ms=args.timeout * 1000,
        delivery_timeout_ms=max(args.timeout * 1000, 30_000),
    ) as producer:
        producer.partitions_for(args.topic)  # fail fast on an unknown topic
        for line in _lines(source):
            key, value = None, line
            if separator is not None:
                key_part, found, rest = line.partition(separator)
                if found:
                    key, value = key_part, rest
            producer.send(
                args.topic,
                value,
                key=key,
                partition=args.partition,
                headers=headers or None,
                on_delivery=delivered,
            )
            sent += 1
        producer.flush()
    if source is not sys.stdin.buffer:
        source.close()
    ok = sent - len(failures)
    if args.output == "json":
        print_json(
            {
                "topic": args.topic,
                "records": sent,
                "delivered": ok,
                "failed": len(failures),
                "partitions": dict(sorted(partitions.items())),
                "error": str(failures[0]) if failures else None,
            }
        )
    else:
        print(f"Produced {ok} of {sent} records to {args.topic}", file=sys.stderr)
        if failures:
            print(f"kbctl: {len(failures)} records failed: {failures[0]}", file=sys.stderr)
    return EXIT_FAILURE if failures else EXIT_OK


# ------------------------------------------------------------------------------- consume


def _text(data: Any) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return str(data)


def _json_field(doc: dict[str, Any], name: str, data: bytes | None) -> None:
    if data is None:
        doc[name] = None
        return
    try:
        doc[name] = data.decode("utf-8")
    except UnicodeDecodeError:
        doc[name] = base64.b64encode(data).decode("ascii")
        doc[f"{name}_encoding"] = "base64"


def _as_json(record: ConsumerRecord) -> bytes:
    doc: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
    }
    _json_field(doc, "key", record.key)
    _json_field(doc, "value", record.value)
    doc["headers"] = {k: _text(v) for k, v in record.headers}
    return orjson.dumps(doc)


def _formatter(template: str) -> Any:
    fields = {"topic", "partition", "offset", "timestamp", "key", "value", "headers"}
    try:
        template.format(**dict.fromkeys(fields, ""))
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(
            f"bad --format {template!r} ({exc}); fields: " + ", ".join(sorted(fields))
        ) from None
    template = template.replace("\\t", "\t").replace("\\n", "\n")

    def render(record: ConsumerRecord) -> str:
        return template.format(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp=record.timestamp,
            key=_text(record.key),
            value=_text(record.value),
            headers=",".join(f"{k}={_text(v)}" for k, v in record.headers),
        )

    return render


def _check_consume_args(args: argparse.Namespace) -> None:
    if args.group and args.partition:
        raise UsageError("--partition cannot be used with --group (the group assigns partitions)")
    if args.offset is not None:
        if args.group:
            raise UsageError("--offset cannot be used with --group (use groups reset-offsets)")
        if not args.partition or len(args.partition) != 1:
            raise UsageError("--offset needs exactly one --partition")
        if args.offset < 0:
            raise UsageError("--offset must be >= 0")
    if args.max is not None and args.max < 1:
        raise UsageError("--max must be >= 1")


def consume(args: argparse.Namespace) -> int:
    _check_consume_args(args)
    render = None if args.output == "json" else _formatter(args.format)
    start_at_beginning = args.from_beginning or not args.follow
    consumer = Consumer(
        args.bootstrap,
        group_id=args.group,
        client_id="kbctl",
        # An --offset out of the log's range is an error, not a silent jump to either end.
        auto_offset_reset=(
            "none" if args.offset is not None else "earliest" if start_at_beginning else "latest"
        ),
        enable_auto_commit=bool(args.group),
        request_timeout_ms=args.timeout * 1000,
        max_poll_records=2000,
    )
    count = 0
    try:
        _start(consumer, args, start_at_beginning)
        count = _drain(consumer, args, render)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if sys.stderr.isatty():
        print(f"Processed {count} records", file=sys.stderr)
    return EXIT_OK


def _start(consumer: Consumer, args: argparse.Namespace, beginning: bool) -> None:
    if args.group:
        consumer.partitions_for(args.topic)  # an unknown topic fails here, as without --group
        consumer.subscribe([args.topic])
        return
    partitions = args.partition or consumer.partitions_for(args.topic)
    tps = [TopicPartition(args.topic, p) for p in partitions]
    consumer.assign(tps)
    if args.offset is not None:
        consumer.seek(tps[0], args.offset)
    elif beginning:
        consumer.seek_to_beginning(*tps)
    else:
        consumer.seek_to_end(*tps)


def _drain(consumer: Consumer, args: argparse.Namespace, render: Any) -> int:
    """Print records until --max, the end (without --follow) or an idle timeout."""
    out = sys.stdout.buffer
    count = 0
    ends: dict[TopicPartition, int] | None = None
    last_progress = time.monotonic()
    while True:
        # Never take more than --max: the consumer's position (what a group commits) moves
        # past every record poll returns, printed or not.
        records = consumer.poll(
            timeout=0.5, max_records=None if args.max is None else args.max - count
        )
        if records:
            last_progress = time.monotonic()
            if render is None:
                out.write(b"\n".join(map(_as_json, records)) + b"\n")
            else:
                out.write(("\n".join(map(render, records)) + "\n").encode())
            out.flush()
            count += len(records)
        if args.max is not None and count >= args.max:
            return count
        if args.follow:
            continue
        assigned = consumer.assignment()
        if assigned and (ends is None or set(ends) != assigned):
            ends = consumer.end_offsets(assigned)
        if ends is not None and all(consumer.position(tp) >= end for tp, end in ends.items()):
            return count
        if time.monotonic() - last_progress > args.idle_timeout:
            print(f"kbctl: no records for {args.idle_timeout:g} s; stopping", file=sys.stderr)
            return count
