"""Broker exceptions, each bound to one wire error code.

Any layer raises :class:`BrokerError` (or a subclass) with the code that describes the failure;
the HTTP edge turns it into ``{"error_code", "message", "retriable"}`` with the code's HTTP
status. Layers below the API never build HTTP responses themselves.
"""

from __future__ import annotations

from typing import Any

from kclient.protocol import ErrorCode, error_spec

__all__ = [
    "BrokerError",
    "CorruptRecordError",
    "ErrorCode",
    "FencedLeaderEpochError",
    "InternalError",
    "InvalidRequestError",
    "NotLeaderError",
    "OffsetOutOfRangeError",
    "StorageError",
]


class BrokerError(Exception):
    """A failure with a wire error code. ``extra`` fields are added to the error body.

    ``after_append`` marks a produce failure that happened after the records were written
    (leadership lost or ISR shrunk while waiting for acks=all): the records may still be
    committed, so the request must not be retried blindly. It appears in the body as
    ``"after_append": true``.
    """

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, code: ErrorCode | None = None, **extra: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.after_append = bool(extra.pop("after_append", False))
        self.extra = extra

    @property
    def status(self) -> int:
        return error_spec(self.code).status

    @property
    def retriable(self) -> bool:
        return error_spec(self.code).retriable

    def body(self) -> dict[str, Any]:
        """The JSON error body, Confluent style plus kbroker's ``retriable`` flag."""
        return {
            "error_code": int(self.code),
            "message": self.message,
            "retriable": self.retriable,
            **({"after_append": True} if self.after_append else {}),
            **self.extra,
        }


class InternalError(BrokerError):
    """A bug, as the client sees it: this message, never a stack trace (the broker logs the
    traceback)."""

    code = ErrorCode.INTERNAL_ERROR

    def __init__(self) -> None:
        super().__init__("Internal error; see the broker log")


class InvalidRequestError(BrokerError):
    code = ErrorCode.INVALID_PAYLOAD


class NotLeaderError(BrokerError):
    code = ErrorCode.NOT_LEADER


class FencedLeaderEpochError(BrokerError):
    code = ErrorCode.FENCED_LEADER_EPOCH


class OffsetOutOfRangeError(BrokerError):
    code = ErrorCode.OFFSET_OUT_OF_RANGE


class StorageError(BrokerError):
    """A disk write or read failed (ENOSPC, EIO); the log stays consistent."""

    code = ErrorCode.KAFKA_STORAGE_ERROR


class CorruptRecordError(BrokerError):
    """A batch failed its length or CRC check."""

    code = ErrorCode.KAFKA_STORAGE_ERROR
