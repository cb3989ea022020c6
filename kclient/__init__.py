"""kclient: the Python client for kbroker (producer, consumer, admin) and the kbctl CLI.

Synchronous, thread-backed classes live here; their asyncio implementations are in
:mod:`kclient.aio`. Errors are in :mod:`kclient.errors` (one class per broker error code, each
with ``retriable``); serializers in :mod:`kclient.serde`. kclient never imports kbroker: it
speaks the HTTP contract of :mod:`kclient.protocol`.
"""

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
    TopicPartition,
)

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
    "TopicPartition",
]
