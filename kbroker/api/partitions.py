"""Partition descriptions shared by the v2 and v3 endpoints.

Leader, replicas, ISR and leader epoch come from the metadata snapshot (ZooKeeper); the offsets
(log start, high watermark, log end) are known only to each partition's leader, so they are
gathered from the leaders: locally for partitions this broker leads, with one internal request
per other leader broker. A leader that cannot be reached leaves its offsets null.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any, Final

import orjson

from kbroker.api.services import Services
from kbroker.cluster import PartitionInfo, TopicInfo
from kbroker.errors import BrokerError

__all__ = [
    "DESCRIBE_TIMEOUT_S",
    "LED_OFFSETS_PATH",
    "describe_partition",
    "gather_offsets",
    "local_led_offsets",
]

log = logging.getLogger(__name__)

LED_OFFSETS_PATH: Final = "/internal/v1/led-offsets"
#: How long a description waits for another leader's offsets (a cut-off or paused leader
#: must not stall ``GET .../partitions``; its offsets are null instead).
DESCRIBE_TIMEOUT_S: Final = 2.0
Offsets = tuple[int, int, int]


def local_led_offsets(services: Services, topic: str) -> dict[int, Offsets]:
    """(log start, high watermark, log end) of each partition of ``topic`` led here."""
    out = {}
    for replica in services.replicas.partitions():
        if replica.topic == topic and replica.is_leader:
            plog = replica.log
            out[replica.partition] = (
                plog.log_start_offset,
                plog.high_watermark,
                plog.log_end_offset,
            )
    return out


async def gather_offsets(services: Services, topic: TopicInfo) -> dict[int, Offsets]:
    """Offsets of every partition of ``topic`` whose leader answers."""
    metadata = services.metadata
    by_leader: dict[int, list[int]] = defaultdict(list)
    for info in topic.partitions:
        by_leader[info.leader].append(info.partition)
    out = local_led_offsets(services, topic.name)
    remote = [b for b in by_leader if b != services.config.broker_id and b in metadata.brokers]

    async def ask(broker_id: int) -> dict[int, Offsets]:
        url = metadata.brokers[broker_id].url
        try:
            body = await services.peers.get(
                url, f"{LED_OFFSETS_PATH}?topic={topic.name}", timeout_s=DESCRIBE_TIMEOUT_S
            )
        except BrokerError as exc:
            log.info(
                "offsets of %s from broker %d unavailable: %s", topic.name, broker_id, exc.message
            )
            return {}
        doc: Any = orjson.loads(body)
        return {int(p): (o[0], o[1], o[2]) for p, o in doc["partitions"].items()}

    for answer in await asyncio.gather(*(ask(b) for b in remote)):
        out.update(answer)
    return out


def describe_partition(info: PartitionInfo, offsets: Offsets | None) -> dict[str, Any]:
    """The v2 partition object plus kbroker's extension fields."""
    isr = set(info.isr)
    return {
        "partition": info.partition,
        "leader": info.leader if info.leader >= 0 else None,
        "replicas": [
            {"broker": b, "leader": b == info.leader, "in_sync": b in isr} for b in info.replicas
        ],
        "leader_epoch": info.leader_epoch,
        "isr": list(info.isr),
        "under_replicated": info.under_replicated,
        "offline": info.leader < 0,
        "log_start_offset": offsets[0] if offsets else None,
        "high_watermark": offsets[1] if offsets else None,
        "log_end_offset": offsets[2] if offsets else None,
    }
