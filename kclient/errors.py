"""Every error kclient raises: one class per broker error code, plus the client's own.

``KClientError`` is the base of everything. ``BrokerError`` subclasses map one-to-one to the
codes of :class:`kclient.protocol.ErrorCode` (``UnknownTopicError`` is 40401); each class says
whether the same request may succeed later (``retriable``). Client-side failures are
``BrokerUnavailableError`` (no broker answered: retriable), ``ClientTimeoutError``,
``ClosedError``, ``NoOffsetForPartitionError``, ``SerializationError`` and ``CommitFailedError``.

``after_append`` on a produce failure means the records may have been written although the
request failed: resending them can duplicate them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

from kclient.protocol import ErrorCode, error_spec

__all__ = [
    "ERROR_CLASSES",
    "AlreadySubscribedError",
    "BrokerError",
    "BrokerNotAvailableError",
    "BrokerUnavailableError",
    "ClientTimeoutError",
    "ClosedError",
    "CommitFailedError",
    "ConsumerAlreadyExistsError",
    "CoordinatorLoadInProgressError",
    "CoordinatorNotAvailableError",
    "FencedInstanceIdError",
    "FencedLeaderEpochError",
    "GroupNotEmptyError",
    "IllegalGenerationError",
    "IllegalStateError",
    "InternalServerError",
    "InvalidConfigError",
    "InvalidConsumerConfigError",
    "InvalidGroupIdError",
    "InvalidOffsetError",
    "InvalidParameterError",
    "InvalidPartitionsError",
    "InvalidPayloadError",
    "InvalidProduceBatchError",
    "InvalidProducerEpochError",
    "InvalidReplicationFactorError",
    "InvalidSessionTimeoutError",
    "InvalidTopicNameError",
    "JsonConversionError",
    "KClientError",
    "KafkaRequestError",
    "KafkaStorageError",
    "LeaderNotAvailableError",
    "LengthRequiredError",
    "MalformedRequestError",
    "MethodNotAllowedError",
    "NoOffsetForPartitionError",
    "NotAcceptableError",
    "NotControllerError",
    "NotEnoughReplicasAfterAppendError",
    "NotEnoughReplicasError",
    "NotFoundError",
    "NotLeaderError",
    "OffsetNotAvailableError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "RebalanceInProgressError",
    "RecordTooLargeError",
    "RequestTimedOutError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "SerializationError",
    "ShuttingDownError",
    "StaleControllerEpochError",
    "TopicAlreadyExistsError",
    "TopicDeletionInProgressError",
    "UnknownBrokerError",
    "UnknownClusterError",
    "UnknownConfigError",
    "UnknownConsumerInstanceError",
    "UnknownGroupError",
    "UnknownLeaderEpochError",
    "UnknownMemberIdError",
    "UnknownPartitionError",
    "UnknownTopicError",
    "UnsupportedMediaTypeError",
    "ZookeeperUnavailableError",
    "error_from_body",
    "error_from_code",
]


class KClientError(Exception):
    """Base class of every kclient error."""

    retriable: ClassVar[bool] = False
    """True when the same operation may succeed if tried again."""


class BrokerUnavailableError(KClientError):
    """No broker could be reached (connection refused, reset or timed out).

    ``after_append`` is true when the request may have reached the broker before the
    connection failed (reset or timeout after sending): a produce may have been written.
    """

    retriable = True

    def __init__(self, message: str = "", *, after_append: bool = False) -> None:
        super().__init__(message)
        self.after_append = after_append


class ClientTimeoutError(KClientError):
    """An operation did not complete within the time the caller allowed."""

    retriable = True


class ClosedError(KClientError):
    """The client was closed."""


class NoOffsetForPartitionError(KClientError):
    """No committed offset and ``auto_offset_reset="none"`` (or out of range with "none")."""


class SerializationError(KClientError):
    """A serializer or deserializer failed."""


class CommitFailedError(KClientError):
    """A group commit failed because the group rebalanced; the partitions may have moved."""


class BrokerError(KClientError):
    """An error answered by a broker: ``code`` (five digits), ``status``, ``message``.

    ``after_append``: the request failed, but the records may have been written.
    """

    code: ClassVar[ErrorCode | None] = None

    def __init__(
        self, message: str = "", *, after_append: bool = False, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.after_append = after_append
        code = type(self).code
        self.status = status if status is not None else (error_spec(code).status if code else 0)
        self.body: Mapping[str, Any] = {}

    def __str__(self) -> str:
        code = type(self).code
        prefix = f"[{int(code)}] " if code is not None else ""
        return prefix + (self.message or type(self).__name__)


class MalformedRequestError(BrokerError):
    """The body or a parameter cannot be parsed (bad JSON or UTF-8)."""

    code = ErrorCode.MALFORMED_REQUEST
    retriable = False


class NotFoundError(BrokerError):
    """No such route."""

    code = ErrorCode.NOT_FOUND
    retriable = False


class UnknownTopicError(BrokerError):
    """The topic does not exist."""

    code = ErrorCode.UNKNOWN_TOPIC
    retriable = False


class UnknownPartitionError(BrokerError):
    """The partition does not exist."""

    code = ErrorCode.UNKNOWN_PARTITION
    retriable = False


class UnknownConsumerInstanceError(BrokerError):
    """The consumer instance does not exist (or expired)."""

    code = ErrorCode.UNKNOWN_CONSUMER_INSTANCE
    retriable = False


class UnknownGroupError(BrokerError):
    """The consumer group does not exist."""

    code = ErrorCode.UNKNOWN_GROUP
    retriable = False


class UnknownBrokerError(BrokerError):
    """The broker is not registered."""

    code = ErrorCode.UNKNOWN_BROKER
    retriable = False


class UnknownClusterError(BrokerError):
    """The cluster id does not name this cluster."""

    code = ErrorCode.UNKNOWN_CLUSTER
    retriable = False


class UnknownConfigError(BrokerError):
    """The config name is not known."""

    code = ErrorCode.UNKNOWN_CONFIG
    retriable = False


class MethodNotAllowedError(BrokerError):
    """The route does not accept this method."""

    code = ErrorCode.METHOD_NOT_ALLOWED
    retriable = False


class NotAcceptableError(BrokerError):
    """The Accept header asks for a format this endpoint cannot give."""

    code = ErrorCode.NOT_ACCEPTABLE
    retriable = False


class RequestTimeoutError(BrokerError):
    """The client sent its request too slowly."""

    code = ErrorCode.REQUEST_TIMEOUT
    retriable = False


class AlreadySubscribedError(BrokerError):
    """The consumer is subscribed (or assigned) otherwise already."""

    code = ErrorCode.ALREADY_SUBSCRIBED
    retriable = False


class ConsumerAlreadyExistsError(BrokerError):
    """A consumer instance with this name already exists."""

    code = ErrorCode.CONSUMER_ALREADY_EXISTS
    retriable = False


class IllegalStateError(BrokerError):
    """The consumer is not in a state that allows this request."""

    code = ErrorCode.ILLEGAL_STATE
    retriable = False


class TopicAlreadyExistsError(BrokerError):
    """A topic with this name already exists."""

    code = ErrorCode.TOPIC_ALREADY_EXISTS
    retriable = False


class TopicDeletionInProgressError(BrokerError):
    """The topic is being deleted."""

    code = ErrorCode.TOPIC_DELETION_IN_PROGRESS
    retriable = False


class IllegalGenerationError(BrokerError):
    """The group generation is stale: the group rebalanced."""

    code = ErrorCode.ILLEGAL_GENERATION
    retriable = False


class UnknownMemberIdError(BrokerError):
    """The member id is not in the group."""

    code = ErrorCode.UNKNOWN_MEMBER_ID
    retriable = False


class RebalanceInProgressError(BrokerError):
    """The group is rebalancing; rejoin."""

    code = ErrorCode.REBALANCE_IN_PROGRESS
    retriable = False


class FencedInstanceIdError(BrokerError):
    """Another member uses this static instance id."""

    code = ErrorCode.FENCED_INSTANCE_ID
    retriable = False


class GroupNotEmptyError(BrokerError):
    """The operation needs an empty group."""

    code = ErrorCode.GROUP_NOT_EMPTY
    retriable = False


class OutOfOrderSequenceError(BrokerError):
    """The producer sequence has a gap."""

    code = ErrorCode.OUT_OF_ORDER_SEQUENCE
    retriable = False


class InvalidProducerEpochError(BrokerError):
    """The producer epoch is older than the broker's."""

    code = ErrorCode.INVALID_PRODUCER_EPOCH
    retriable = False


class LengthRequiredError(BrokerError):
    """The request needs a body."""

    code = ErrorCode.LENGTH_REQUIRED
    retriable = False


class RequestTooLargeError(BrokerError):
    """The request body exceeds the broker's limit."""

    code = ErrorCode.REQUEST_TOO_LARGE
    retriable = False


class RecordTooLargeError(BrokerError):
    """A record exceeds the topic's max.message.bytes."""

    code = ErrorCode.RECORD_TOO_LARGE
    retriable = False


class UnsupportedMediaTypeError(BrokerError):
    """The Content-Type is not one this endpoint accepts."""

    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE
    retriable = False


class OffsetOutOfRangeError(BrokerError):
    """The offset is outside [log start offset, log end offset]."""

    code = ErrorCode.OFFSET_OUT_OF_RANGE
    retriable = False


class JsonConversionError(BrokerError):
    """A key or value cannot be converted (bad base64 or not JSON)."""

    code = ErrorCode.JSON_CONVERSION
    retriable = False


class InvalidConsumerConfigError(BrokerError):
    """The consumer configuration is invalid."""

    code = ErrorCode.INVALID_CONSUMER_CONFIG
    retriable = False


class InvalidPayloadError(BrokerError):
    """The JSON is well formed but not a valid request body."""

    code = ErrorCode.INVALID_PAYLOAD
    retriable = False


class InvalidProduceBatchError(BrokerError):
    """A v3 batch produce is empty, too long or repeats an id."""

    code = ErrorCode.INVALID_PRODUCE_BATCH
    retriable = False


class InvalidParameterError(BrokerError):
    """A path or query parameter is out of range or of the wrong type."""

    code = ErrorCode.INVALID_PARAMETER
    retriable = False


class InvalidTopicNameError(BrokerError):
    """The topic name breaks Kafka's naming rules."""

    code = ErrorCode.INVALID_TOPIC_NAME
    retriable = False


class InvalidPartitionsError(BrokerError):
    """The partition count is invalid."""

    code = ErrorCode.INVALID_PARTITIONS
    retriable = False


class InvalidReplicationFactorError(BrokerError):
    """The replication factor is invalid for this cluster."""

    code = ErrorCode.INVALID_REPLICATION_FACTOR
    retriable = False


class InvalidConfigError(BrokerError):
    """A config name or value is invalid."""

    code = ErrorCode.INVALID_CONFIG
    retriable = False


class InvalidOffsetError(BrokerError):
    """An offset is negative or otherwise impossible."""

    code = ErrorCode.INVALID_OFFSET
    retriable = False


class InvalidGroupIdError(BrokerError):
    """The group id is empty or too long."""

    code = ErrorCode.INVALID_GROUP_ID
    retriable = False


class InvalidSessionTimeoutError(BrokerError):
    """The session timeout is outside the broker's bounds."""

    code = ErrorCode.INVALID_SESSION_TIMEOUT
    retriable = False


class InternalServerError(BrokerError):
    """The broker failed unexpectedly; see its log."""

    code = ErrorCode.INTERNAL_ERROR
    retriable = False


class KafkaRequestError(BrokerError):
    """The request failed and retrying will not help."""

    code = ErrorCode.KAFKA_ERROR
    retriable = False


class BrokerNotAvailableError(BrokerError):
    """The broker is not reachable or not ready."""

    code = ErrorCode.BROKER_NOT_AVAILABLE
    retriable = True


class LeaderNotAvailableError(BrokerError):
    """The partition has no leader right now."""

    code = ErrorCode.LEADER_NOT_AVAILABLE
    retriable = True


class NotEnoughReplicasError(BrokerError):
    """Fewer in-sync replicas than min.insync.replicas."""

    code = ErrorCode.NOT_ENOUGH_REPLICAS
    retriable = True


class NotEnoughReplicasAfterAppendError(BrokerError):
    """Written, but the ISR shrank below min.insync.replicas before it was committed."""

    code = ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
    retriable = True


class CoordinatorNotAvailableError(BrokerError):
    """The group coordinator is not available."""

    code = ErrorCode.COORDINATOR_NOT_AVAILABLE
    retriable = True


class CoordinatorLoadInProgressError(BrokerError):
    """The group coordinator is loading its state."""

    code = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    retriable = True


class ZookeeperUnavailableError(BrokerError):
    """The broker cannot reach ZooKeeper."""

    code = ErrorCode.ZOOKEEPER_UNAVAILABLE
    retriable = True


class NotLeaderError(BrokerError):
    """This broker does not lead the partition."""

    code = ErrorCode.NOT_LEADER
    retriable = True


class RequestTimedOutError(BrokerError):
    """The request did not complete in time (acks=all not reached)."""

    code = ErrorCode.REQUEST_TIMED_OUT
    retriable = True


class KafkaStorageError(BrokerError):
    """The broker could not write to disk (for example, disk full)."""

    code = ErrorCode.KAFKA_STORAGE_ERROR
    retriable = True


class FencedLeaderEpochError(BrokerError):
    """The request's leader epoch is older than the leader's."""

    code = ErrorCode.FENCED_LEADER_EPOCH
    retriable = True


class UnknownLeaderEpochError(BrokerError):
    """The request's leader epoch is newer than the broker's."""

    code = ErrorCode.UNKNOWN_LEADER_EPOCH
    retriable = True


class NotControllerError(BrokerError):
    """This broker is not the active controller."""

    code = ErrorCode.NOT_CONTROLLER
    retriable = True


class StaleControllerEpochError(BrokerError):
    """The controller epoch is older than one already seen."""

    code = ErrorCode.STALE_CONTROLLER_EPOCH
    retriable = True


class OffsetNotAvailableError(BrokerError):
    """A new leader cannot answer offsets until it catches up."""

    code = ErrorCode.OFFSET_NOT_AVAILABLE
    retriable = True


class ShuttingDownError(BrokerError):
    """The broker is shutting down."""

    code = ErrorCode.SHUTTING_DOWN
    retriable = True


ERROR_CLASSES: Final[Mapping[ErrorCode, type[BrokerError]]] = {
    ErrorCode.MALFORMED_REQUEST: MalformedRequestError,
    ErrorCode.NOT_FOUND: NotFoundError,
    ErrorCode.UNKNOWN_TOPIC: UnknownTopicError,
    ErrorCode.UNKNOWN_PARTITION: UnknownPartitionError,
    ErrorCode.UNKNOWN_CONSUMER_INSTANCE: UnknownConsumerInstanceError,
    ErrorCode.UNKNOWN_GROUP: UnknownGroupError,
    ErrorCode.UNKNOWN_BROKER: UnknownBrokerError,
    ErrorCode.UNKNOWN_CLUSTER: UnknownClusterError,
    ErrorCode.UNKNOWN_CONFIG: UnknownConfigError,
    ErrorCode.METHOD_NOT_ALLOWED: MethodNotAllowedError,
    ErrorCode.NOT_ACCEPTABLE: NotAcceptableError,
    ErrorCode.REQUEST_TIMEOUT: RequestTimeoutError,
    ErrorCode.ALREADY_SUBSCRIBED: AlreadySubscribedError,
    ErrorCode.CONSUMER_ALREADY_EXISTS: ConsumerAlreadyExistsError,
    ErrorCode.ILLEGAL_STATE: IllegalStateError,
    ErrorCode.TOPIC_ALREADY_EXISTS: TopicAlreadyExistsError,
    ErrorCode.TOPIC_DELETION_IN_PROGRESS: TopicDeletionInProgressError,
    ErrorCode.ILLEGAL_GENERATION: IllegalGenerationError,
    ErrorCode.UNKNOWN_MEMBER_ID: UnknownMemberIdError,
    ErrorCode.REBALANCE_IN_PROGRESS: RebalanceInProgressError,
    ErrorCode.FENCED_INSTANCE_ID: FencedInstanceIdError,
    ErrorCode.GROUP_NOT_EMPTY: GroupNotEmptyError,
    ErrorCode.OUT_OF_ORDER_SEQUENCE: OutOfOrderSequenceError,
    ErrorCode.INVALID_PRODUCER_EPOCH: InvalidProducerEpochError,
    ErrorCode.LENGTH_REQUIRED: LengthRequiredError,
    ErrorCode.REQUEST_TOO_LARGE: RequestTooLargeError,
    ErrorCode.RECORD_TOO_LARGE: RecordTooLargeError,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: UnsupportedMediaTypeError,
    ErrorCode.OFFSET_OUT_OF_RANGE: OffsetOutOfRangeError,
    ErrorCode.JSON_CONVERSION: JsonConversionError,
    ErrorCode.INVALID_CONSUMER_CONFIG: InvalidConsumerConfigError,
    ErrorCode.INVALID_PAYLOAD: InvalidPayloadError,
    ErrorCode.INVALID_PRODUCE_BATCH: InvalidProduceBatchError,
    ErrorCode.INVALID_PARAMETER: InvalidParameterError,
    ErrorCode.INVALID_TOPIC_NAME: InvalidTopicNameError,
    ErrorCode.INVALID_PARTITIONS: InvalidPartitionsError,
    ErrorCode.INVALID_REPLICATION_FACTOR: InvalidReplicationFactorError,
    ErrorCode.INVALID_CONFIG: InvalidConfigError,
    ErrorCode.INVALID_OFFSET: InvalidOffsetError,
    ErrorCode.INVALID_GROUP_ID: InvalidGroupIdError,
    ErrorCode.INVALID_SESSION_TIMEOUT: InvalidSessionTimeoutError,
    ErrorCode.INTERNAL_ERROR: InternalServerError,
    ErrorCode.KAFKA_ERROR: KafkaRequestError,
    ErrorCode.BROKER_NOT_AVAILABLE: BrokerNotAvailableError,
    ErrorCode.LEADER_NOT_AVAILABLE: LeaderNotAvailableError,
    ErrorCode.NOT_ENOUGH_REPLICAS: NotEnoughReplicasError,
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND: NotEnoughReplicasAfterAppendError,
    ErrorCode.COORDINATOR_NOT_AVAILABLE: CoordinatorNotAvailableError,
    ErrorCode.COORDINATOR_LOAD_IN_PROGRESS: CoordinatorLoadInProgressError,
    ErrorCode.ZOOKEEPER_UNAVAILABLE: ZookeeperUnavailableError,
    ErrorCode.NOT_LEADER: NotLeaderError,
    ErrorCode.REQUEST_TIMED_OUT: RequestTimedOutError,
    ErrorCode.KAFKA_STORAGE_ERROR: KafkaStorageError,
    ErrorCode.FENCED_LEADER_EPOCH: FencedLeaderEpochError,
    ErrorCode.UNKNOWN_LEADER_EPOCH: UnknownLeaderEpochError,
    ErrorCode.NOT_CONTROLLER: NotControllerError,
    ErrorCode.STALE_CONTROLLER_EPOCH: StaleControllerEpochError,
    ErrorCode.OFFSET_NOT_AVAILABLE: OffsetNotAvailableError,
    ErrorCode.SHUTTING_DOWN: ShuttingDownError,
}


def error_from_code(
    code: int, message: str = "", *, after_append: bool = False, status: int | None = None
) -> BrokerError:
    """The exception for ``code`` (a plain BrokerError for a code this client does not know)."""
    try:
        cls = ERROR_CLASSES[ErrorCode(code)]
    except ValueError:
        error = BrokerError(message or f"error {code}", after_append=after_append, status=status)
        error.retriable = status == 503  # type: ignore[misc]
        return error
    return cls(message, after_append=after_append, status=status)


def error_from_body(status: int, body: Any) -> BrokerError:
    """The exception for a non-2xx response (``body`` parsed, or None when it is not JSON)."""
    if isinstance(body, dict) and isinstance(body.get("error_code"), int):
        error = error_from_code(
            body["error_code"],
            str(body.get("message", "")),
            after_append=bool(body.get("after_append")),
            status=status,
        )
        error.body = body
        return error
    return error_from_code(status if status < 1000 else 50001, f"HTTP {status}", status=status)
