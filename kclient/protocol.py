"""The wire contract between kbroker and its clients: media types, limits and error codes.

This module is the one place both sides agree on. The broker imports it (``kbroker`` may import
``kclient.protocol``); ``kclient`` never imports ``kbroker``. Nothing here does I/O.

Error codes follow Confluent REST Proxy's scheme: a five-digit ``error_code`` whose first three
digits are the HTTP status (``40401`` is a 404). Codes Confluent defines keep Confluent's meaning;
codes Confluent lacks are kbroker extensions in the same scheme (documented in docs/api.md).
Every error body is ``{"error_code": int, "message": str, "retriable": bool}``; the
``retriable`` field is a kbroker extension that tells a client whether the same request may
succeed if sent again.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from itertools import repeat
from typing import Final, NamedTuple

from murmurhash2 import murmurhash2 as _murmurhash2

__all__ = [
    "ACKS_HEADER",
    "ATTR_RECORD_TIMESTAMPS",
    "BATCH_CRC_START",
    "BATCH_HEADER",
    "BATCH_HEADER_SIZE",
    "BATCH_LENGTH_PREFIX",
    "BATCH_MAGIC",
    "FORWARDED_HEADER",
    "HIGH_WATERMARK_HEADER",
    "JSON_MEDIA_TYPES",
    "LOG_START_HEADER",
    "MAX_PARTITION",
    "MAX_TOPIC_NAME_LENGTH",
    "MEDIA_BATCHES",
    "MEDIA_BINARY_V2",
    "MEDIA_JSON",
    "MEDIA_JSON_V2",
    "MEDIA_V2",
    "NEXT_OFFSET_HEADER",
    "PRODUCER_EPOCH_HEADER",
    "PRODUCER_ID_HEADER",
    "SEQUENCE_HEADER",
    "EmbeddedFormat",
    "ErrorCode",
    "ErrorSpec",
    "PayloadCodec",
    "error_spec",
    "murmur2",
    "partition_for_key",
    "partitions_for_keys",
]

MEDIA_JSON: Final = "application/json"
MEDIA_V2: Final = "application/vnd.kafka.v2+json"
MEDIA_JSON_V2: Final = "application/vnd.kafka.json.v2+json"
MEDIA_BINARY_V2: Final = "application/vnd.kafka.binary.v2+json"
JSON_MEDIA_TYPES: Final = frozenset({MEDIA_JSON, MEDIA_V2, MEDIA_JSON_V2, MEDIA_BINARY_V2})

#: Request header naming the acknowledgement level of a produce (``0``, ``1``, ``all``/``-1``).
ACKS_HEADER: Final = "X-Kafka-Acks"
#: Set by a broker that forwards a request to the partition leader; the leader must not forward
#: it again (it answers NOT_LEADER instead, and the forwarding broker refreshes its metadata).
FORWARDED_HEADER: Final = "X-KBroker-Forwarded"

#: Request headers of an idempotent produce (partition endpoints only): the producer id and
#: epoch from ``POST /producers``, and the sequence number of the request's first record (the
#: next record's is one more, per partition, starting at 0).
PRODUCER_ID_HEADER: Final = "X-KBroker-Producer-Id"
PRODUCER_EPOCH_HEADER: Final = "X-KBroker-Producer-Epoch"
SEQUENCE_HEADER: Final = "X-KBroker-Sequence"

#: Response headers of a stateless fetch: the partition's high watermark, and the offset to
#: fetch next (after the last record returned, or the requested offset when none was).
HIGH_WATERMARK_HEADER: Final = "X-KBroker-High-Watermark"
NEXT_OFFSET_HEADER: Final = "X-KBroker-Next-Offset"
#: Response header of a batches fetch: the partition's log start offset.
LOG_START_HEADER: Final = "X-KBroker-Log-Start-Offset"

#: Kafka's limit on topic names (``Topic.MAX_NAME_LENGTH``).
MAX_TOPIC_NAME_LENGTH: Final = 249
#: Highest partition index a request may name; partitions per topic are capped below this.
MAX_PARTITION: Final = 99_999


# ------------------------------------------------------------------------- record batches
#
# ``GET /topics/{t}/partitions/{p}/batches`` returns stored record batches as they are on disk.
# A batch is a 61-byte big-endian header and a payload:
#
#   base_offset int64, batch_length int32 (bytes after this field = 49 + payload_length),
#   leader_epoch int32 (not CRC-covered), magic int8 (= 1), crc uint32 (CRC-32C of bytes 21 to
#   the end of the payload), attributes int16 (bits 0-2 payload codec, bit 3 records carry
#   their own timestamps), record_count int32, first_timestamp int64 (the timestamp of records
#   without one), max_timestamp int64, producer_id int64, producer_epoch int16,
#   base_sequence int32, payload_length int32, then payload_length bytes of payload.
#
# The payload is a JSON array of record objects ``{"key"?, "value"?, "headers"?,
# "timestamp"?, "partition"?}``; the record at index i has offset base_offset + i.

BATCH_HEADER: Final = struct.Struct(">qiibIhiqqqhii")
BATCH_HEADER_SIZE: Final = BATCH_HEADER.size
#: Bytes before ``batch_length`` starts counting (base_offset and batch_length).
BATCH_LENGTH_PREFIX: Final = 12
#: Offset of the first CRC-covered byte (``attributes``).
BATCH_CRC_START: Final = 21
BATCH_MAGIC: Final = 1
#: Attribute bit: records carry their own ``timestamp`` fields.
ATTR_RECORD_TIMESTAMPS: Final = 0b1000
MEDIA_BATCHES: Final = "application/vnd.kbroker.batches"


class PayloadCodec(enum.IntEnum):
    """How a batch's payload encodes keys and values (attribute bits 0-2)."""

    JSON = 1
    """Keys and values are JSON documents."""
    BINARY = 2
    """Keys and values are base64 strings."""


class EmbeddedFormat(enum.StrEnum):
    """How record keys and values are written in JSON: Confluent's "embedded formats".

    ``json``: keys and values are arbitrary JSON documents; their bytes are the compact JSON
    text. ``binary``: keys and values are base64 strings of arbitrary bytes. ``text`` (Strimzi
    bridge's): keys and values are strings; their bytes are the UTF-8 text.
    """

    JSON = "json"
    BINARY = "binary"
    TEXT = "text"


class ErrorSpec(NamedTuple):
    """What a client needs to know about an error code."""

    status: int
    """HTTP status the broker answers with."""
    retriable: bool
    """True when the same request may succeed later (leader moved, replicas catching up)."""
    description: str


class ErrorCode(enum.IntEnum):
    """Every error code kbroker sends, in Confluent's five-digit scheme."""

    # 400: the request cannot be parsed.
    MALFORMED_REQUEST = 400
    # 404
    NOT_FOUND = 404
    UNKNOWN_TOPIC = 40401
    UNKNOWN_PARTITION = 40402
    UNKNOWN_CONSUMER_INSTANCE = 40403
    UNKNOWN_GROUP = 40405
    UNKNOWN_BROKER = 40406
    UNKNOWN_CLUSTER = 40407
    UNKNOWN_CONFIG = 40408
    # 405
    METHOD_NOT_ALLOWED = 405
    # 406
    NOT_ACCEPTABLE = 40601
    # 408
    REQUEST_TIMEOUT = 40801
    # 409
    ALREADY_SUBSCRIBED = 40901
    CONSUMER_ALREADY_EXISTS = 40902
    ILLEGAL_STATE = 40903
    TOPIC_ALREADY_EXISTS = 40904
    TOPIC_DELETION_IN_PROGRESS = 40905
    ILLEGAL_GENERATION = 40910
    UNKNOWN_MEMBER_ID = 40911
    REBALANCE_IN_PROGRESS = 40912
    FENCED_INSTANCE_ID = 40913
    GROUP_NOT_EMPTY = 40914
    OUT_OF_ORDER_SEQUENCE = 40920
    INVALID_PRODUCER_EPOCH = 40921
    # 411
    LENGTH_REQUIRED = 411
    # 413
    REQUEST_TOO_LARGE = 41301
    RECORD_TOO_LARGE = 41302
    # 415
    UNSUPPORTED_MEDIA_TYPE = 41501
    # 416
    OFFSET_OUT_OF_RANGE = 41601
    # 422: well-formed JSON that says something invalid.
    JSON_CONVERSION = 42203
    INVALID_CONSUMER_CONFIG = 42204
    INVALID_PAYLOAD = 42206
    INVALID_PRODUCE_BATCH = 42208
    INVALID_PARAMETER = 42210
    INVALID_TOPIC_NAME = 42220
    INVALID_PARTITIONS = 42221
    INVALID_REPLICATION_FACTOR = 42222
    INVALID_CONFIG = 42223
    INVALID_OFFSET = 42224
    INVALID_GROUP_ID = 42225
    INVALID_SESSION_TIMEOUT = 42226
    # 500
    INTERNAL_ERROR = 50001
    KAFKA_ERROR = 50002
    # 503: the cluster cannot serve this right now; retry.
    BROKER_NOT_AVAILABLE = 50302
    LEADER_NOT_AVAILABLE = 50303
    NOT_ENOUGH_REPLICAS = 50304
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 50305
    COORDINATOR_NOT_AVAILABLE = 50306
    COORDINATOR_LOAD_IN_PROGRESS = 50307
    ZOOKEEPER_UNAVAILABLE = 50308
    NOT_LEADER = 50309
    REQUEST_TIMED_OUT = 50310
    KAFKA_STORAGE_ERROR = 50311
    FENCED_LEADER_EPOCH = 50312
    UNKNOWN_LEADER_EPOCH = 50313
    NOT_CONTROLLER = 50314
    STALE_CONTROLLER_EPOCH = 50315
    OFFSET_NOT_AVAILABLE = 50316
    SHUTTING_DOWN = 50317


_DESCRIPTIONS: Final[dict[ErrorCode, str]] = {
    ErrorCode.MALFORMED_REQUEST: "The body or a parameter cannot be parsed (bad JSON or UTF-8).",
    ErrorCode.NOT_FOUND: "No such route.",
    ErrorCode.UNKNOWN_TOPIC: "The topic does not exist.",
    ErrorCode.UNKNOWN_PARTITION: "The partition does not exist.",
    ErrorCode.UNKNOWN_CONSUMER_INSTANCE: "The consumer instance does not exist (or expired).",
    ErrorCode.UNKNOWN_GROUP: "The consumer group does not exist.",
    ErrorCode.UNKNOWN_BROKER: "The broker is not registered.",
    ErrorCode.UNKNOWN_CLUSTER: "The cluster id does not name this cluster.",
    ErrorCode.UNKNOWN_CONFIG: "The config name is not known.",
    ErrorCode.METHOD_NOT_ALLOWED: "The route does not accept this method.",
    ErrorCode.NOT_ACCEPTABLE: "The Accept header asks for a format this endpoint cannot give.",
    ErrorCode.REQUEST_TIMEOUT: "The client sent its request too slowly.",
    ErrorCode.ALREADY_SUBSCRIBED: "The consumer is subscribed (or assigned) otherwise already.",
    ErrorCode.CONSUMER_ALREADY_EXISTS: "A consumer instance with this name already exists.",
    ErrorCode.ILLEGAL_STATE: "The consumer is not in a state that allows this request.",
    ErrorCode.TOPIC_ALREADY_EXISTS: "A topic with this name already exists.",
    ErrorCode.TOPIC_DELETION_IN_PROGRESS: "The topic is being deleted.",
    ErrorCode.ILLEGAL_GENERATION: "The group generation is stale: the group rebalanced.",
    ErrorCode.UNKNOWN_MEMBER_ID: "The member id is not in the group.",
    ErrorCode.REBALANCE_IN_PROGRESS: "The group is rebalancing; rejoin.",
    ErrorCode.FENCED_INSTANCE_ID: "Another member uses this static instance id.",
    ErrorCode.GROUP_NOT_EMPTY: "The operation needs an empty group.",
    ErrorCode.OUT_OF_ORDER_SEQUENCE: "The producer sequence has a gap.",
    ErrorCode.INVALID_PRODUCER_EPOCH: "The producer epoch is older than the broker's.",
    ErrorCode.LENGTH_REQUIRED: "The request needs a body.",
    ErrorCode.REQUEST_TOO_LARGE: "The request body exceeds the broker's limit.",
    ErrorCode.RECORD_TOO_LARGE: "A record exceeds the topic's max.message.bytes.",
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: "The Content-Type is not one this endpoint accepts.",
    ErrorCode.OFFSET_OUT_OF_RANGE: "The offset is outside [log start offset, log end offset].",
    ErrorCode.JSON_CONVERSION: "A key or value cannot be converted (bad base64 or not JSON).",
    ErrorCode.INVALID_CONSUMER_CONFIG: "The consumer configuration is invalid.",
    ErrorCode.INVALID_PAYLOAD: "The JSON is well formed but not a valid request body.",
    ErrorCode.INVALID_PRODUCE_BATCH: "A v3 batch produce is empty, too long or repeats an id.",
    ErrorCode.INVALID_PARAMETER: "A path or query parameter is out of range or of the wrong type.",
    ErrorCode.INVALID_TOPIC_NAME: "The topic name breaks Kafka's naming rules.",
    ErrorCode.INVALID_PARTITIONS: "The partition count is invalid.",
    ErrorCode.INVALID_REPLICATION_FACTOR: "The replication factor is invalid for this cluster.",
    ErrorCode.INVALID_CONFIG: "A config name or value is invalid.",
    ErrorCode.INVALID_OFFSET: "An offset is negative or otherwise impossible.",
    ErrorCode.INVALID_GROUP_ID: "The group id is empty or too long.",
    ErrorCode.INVALID_SESSION_TIMEOUT: "The session timeout is outside the broker's bounds.",
    ErrorCode.INTERNAL_ERROR: "The broker failed unexpectedly; see its log.",
    ErrorCode.KAFKA_ERROR: "The request failed and retrying will not help.",
    ErrorCode.BROKER_NOT_AVAILABLE: "The broker is not reachable or not ready.",
    ErrorCode.LEADER_NOT_AVAILABLE: "The partition has no leader right now.",
    ErrorCode.NOT_ENOUGH_REPLICAS: "Fewer in-sync replicas than min.insync.replicas.",
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND: (
        "Written, but the ISR shrank below min.insync.replicas before it was committed."
    ),
    ErrorCode.COORDINATOR_NOT_AVAILABLE: "The group coordinator is not available.",
    ErrorCode.COORDINATOR_LOAD_IN_PROGRESS: "The group coordinator is loading its state.",
    ErrorCode.ZOOKEEPER_UNAVAILABLE: "The broker cannot reach ZooKeeper.",
    ErrorCode.NOT_LEADER: "This broker does not lead the partition.",
    ErrorCode.REQUEST_TIMED_OUT: "The request did not complete in time (acks=all not reached).",
    ErrorCode.KAFKA_STORAGE_ERROR: "The broker could not write to disk (for example, disk full).",
    ErrorCode.FENCED_LEADER_EPOCH: "The request's leader epoch is older than the leader's.",
    ErrorCode.UNKNOWN_LEADER_EPOCH: "The request's leader epoch is newer than the broker's.",
    ErrorCode.NOT_CONTROLLER: "This broker is not the active controller.",
    ErrorCode.STALE_CONTROLLER_EPOCH: "The controller epoch is older than one already seen.",
    ErrorCode.OFFSET_NOT_AVAILABLE: "A new leader cannot answer offsets until it catches up.",
    ErrorCode.SHUTTING_DOWN: "The broker is shutting down.",
}


def error_spec(code: ErrorCode) -> ErrorSpec:
    """HTTP status, retriability and description of ``code``."""
    status = int(code) if code < 1000 else int(code) // 100
    return ErrorSpec(status=status, retriable=status == 503, description=_DESCRIPTIONS[code])


# ------------------------------------------------------------------------------ partitioning

#: Seed of Kafka's murmur2 (``Utils.murmur2``).
MURMUR2_SEED: Final = 0x9747B28C


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` of ``data`` as an unsigned 32-bit int (C implementation)."""
    return int(_murmurhash2(data, MURMUR2_SEED))


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """The partition Kafka's default partitioner picks for serialized ``key``.

    ``toPositive(murmur2(key)) % numPartitions`` where toPositive masks the sign bit (it is not
    ``abs``) and ``numPartitions`` counts all partitions of the topic, available or not.
    """
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


def partitions_for_keys(keys: Iterable[bytes], num_partitions: int) -> list[int]:
    """:func:`partition_for_key` for many keys, without a Python-level loop per key."""
    hashes = map(_murmurhash2, keys, repeat(MURMUR2_SEED))
    return list(
        map(int.__mod__, map(int.__and__, hashes, repeat(0x7FFFFFFF)), repeat(num_partitions))
    )
