"""Shared helpers for the log tests: a fake clock, topic configs, batch builders."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from kbroker.config import TopicConfig
from kbroker.log.batch import PayloadCodec, encode_header
from kbroker.log.partition_log import LogAppendInfo, PartitionLog

LONG_MAX = (1 << 63) - 1
DAY_MS = 24 * 3600 * 1000
JSON = int(PayloadCodec.JSON)

BASE_CONFIG = TopicConfig(
    cleanup_policy="delete",
    retention_ms=-1,
    retention_bytes=-1,
    segment_bytes=1 << 20,
    segment_ms=7 * DAY_MS,
    min_insync_replicas=1,
    unclean_leader_election_enable=False,
    max_message_bytes=1_048_588,
    message_timestamp_type="CreateTime",
    flush_messages=LONG_MAX,
    flush_ms=LONG_MAX,
    index_interval_bytes=4096,
    delete_retention_ms=DAY_MS,
)


def make_config(**changes: Any) -> TopicConfig:
    return dataclasses.replace(BASE_CONFIG, **changes)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now

    def monotonic(self) -> float:
        return self.now / 1000

    async def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1000)
        await asyncio.sleep(0)

    def advance(self, ms: int) -> None:
        self.now += ms


def payload_for(index: int, size: int = 40) -> bytes:
    """A deterministic payload of ``size`` bytes (content is opaque to the log)."""
    seed = f"[{index}]".encode()
    return (seed * (size // len(seed) + 1))[:size]


def append(
    log: PartitionLog,
    payload: bytes,
    *,
    records: int = 1,
    timestamp: int = 1000,
    epoch: int = 0,
) -> LogAppendInfo:
    return log.append_as_leader(
        payload,
        record_count=records,
        attributes=JSON,
        first_timestamp=timestamp,
        max_timestamp=timestamp,
        leader_epoch=epoch,
    )


def encode_batch(
    payload: bytes,
    *,
    base_offset: int,
    records: int = 1,
    timestamp: int = 1000,
    epoch: int = 0,
) -> bytes:
    """A whole batch as a leader would send it to a follower."""
    header = encode_header(
        payload,
        base_offset=base_offset,
        leader_epoch=epoch,
        attributes=JSON,
        record_count=records,
        first_timestamp=timestamp,
        max_timestamp=timestamp,
    )
    return header + payload


def open_log(
    directory: Path,
    clock: FakeClock,
    config: TopicConfig = BASE_CONFIG,
    *,
    recovery_point: int = 0,
    clean_shutdown: bool = False,
) -> PartitionLog:
    return PartitionLog.open(
        directory,
        "t",
        0,
        config,
        clock=clock,
        recovery_point=recovery_point,
        clean_shutdown=clean_shutdown,
    )
