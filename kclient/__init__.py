"""kclient: the Python client for kbroker (producer, consumer, admin) and the kbctl CLI.

Synchronous, thread-backed classes live here; their asyncio implementations are in
:mod:`kclient.aio`. Errors are in :mod:`kclient.errors` (one class per broker error code, each
with ``retriable``); serializers in :mod:`kclient.serde`. kclient never imports kbroker: it
speaks the HTTP contract of :mod:`kclient.protocol`.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Names resolve lazily (PEP 562) so that importing kclient.protocol (the wire contract the
# broker shares) does not pull in the client and aiohttp.
_EXPORTS = {
    "Admin": "kclient.admin",
    "BrokerDescription": "kclient.structs",
    "BrokerError": "kclient.errors",
    "BrokerUnavailableError": "kclient.errors",
    "ClientTimeoutError": "kclient.errors",
    "ClosedError": "kclient.errors",
    "ClusterDescription": "kclient.structs",
    "CommitFailedError": "kclient.errors",
    "ConfigEntry": "kclient.structs",
    "Consumer": "kclient.consumer",
    "ConsumerRecord": "kclient.structs",
    "GroupDescription": "kclient.structs",
    "GroupListing": "kclient.structs",
    "Header": "kclient.structs",
    "KClientError": "kclient.errors",
    "MemberDescription": "kclient.structs",
    "NoOffsetForPartitionError": "kclient.errors",
    "OffsetAndMetadata": "kclient.structs",
    "OffsetSpec": "kclient.structs",
    "PartitionDescription": "kclient.structs",
    "PartitionLag": "kclient.structs",
    "Producer": "kclient.producer",
    "RebalanceListener": "kclient.aio.consumer",
    "RecordFuture": "kclient._futures",
    "RecordMetadata": "kclient.structs",
    "SerializationError": "kclient.errors",
    "TopicDescription": "kclient.structs",
    "TopicListing": "kclient.structs",
    "TopicPartition": "kclient.structs",
    "tune_gc": "kclient.tuning",
}

if TYPE_CHECKING:
    from kclient._futures import RecordFuture
    from kclient.admin import Admin
    from kclient.aio.consumer import RebalanceListener
    from kclient.consumer import Consumer
    from kclient.errors import (
        BrokerError,
        BrokerUnavailableError,
        ClientTimeoutError,
        ClosedError,
        CommitFailedError,
        KClientError,
        NoOffsetForPartitionError,
        SerializationError,
    )
    from kclient.producer import Producer
    from kclient.structs import (
        BrokerDescription,
        ClusterDescription,
        ConfigEntry,
        ConsumerRecord,
        GroupDescription,
        GroupListing,
        Header,
        MemberDescription,
        OffsetAndMetadata,
        OffsetSpec,
        PartitionDescription,
        PartitionLag,
        RecordMetadata,
        TopicDescription,
        TopicListing,
        TopicPartition,
    )
    from kclient.tuning import tune_gc


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kclient' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "Admin",
    "BrokerDescription",
    "BrokerError",
    "BrokerUnavailableError",
    "ClientTimeoutError",
    "ClosedError",
    "ClusterDescription",
    "CommitFailedError",
    "ConfigEntry",
    "Consumer",
    "ConsumerRecord",
    "GroupDescription",
    "GroupListing",
    "Header",
    "KClientError",
    "MemberDescription",
    "NoOffsetForPartitionError",
    "OffsetAndMetadata",
    "OffsetSpec",
    "PartitionDescription",
    "PartitionLag",
    "Producer",
    "RebalanceListener",
    "RecordFuture",
    "RecordMetadata",
    "SerializationError",
    "TopicDescription",
    "TopicListing",
    "TopicPartition",
    "tune_gc",
]
