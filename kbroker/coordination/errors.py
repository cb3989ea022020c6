"""Exceptions of the coordination layer: a small set that hides kazoo's.

Callers catch these, never kazoo's own classes (only :mod:`kbroker.coordination.zk` imports
kazoo). The expected outcomes of conditional writes (:class:`NoNodeError`,
:class:`NodeExistsError`, :class:`BadVersionError`, :class:`NotEmptyError`) are ordinary
control flow for callers; :class:`ZooKeeperUnavailableError` carries the wire code
ZOOKEEPER_UNAVAILABLE so that the HTTP edge can report it as is.
"""

from __future__ import annotations

from kbroker.errors import BrokerError, ErrorCode

__all__ = [
    "BadVersionError",
    "BrokerIdInUseError",
    "ControllerMovedError",
    "CoordinationError",
    "NoNodeError",
    "NodeExistsError",
    "NotEmptyError",
    "VersionCheckFailedError",
    "ZnodeDecodeError",
    "ZooKeeperUnavailableError",
]


class CoordinationError(BrokerError):
    """A ZooKeeper operation failed.

    ``path`` is the znode concerned (chroot-relative) when known; ``op_index`` is the index of
    the failing operation when the failure comes from a transaction.
    """

    code = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, *, path: str | None = None, op_index: int | None = None):
        super().__init__(message)
        self.path = path
        self.op_index = op_index


class NoNodeError(CoordinationError):
    """The znode (or, for a create, its parent) does not exist."""


class NodeExistsError(CoordinationError):
    """A create found the znode already there."""


class BadVersionError(CoordinationError):
    """A conditional write or check saw another znode version: someone wrote in between."""


class NotEmptyError(CoordinationError):
    """A delete found children under the znode."""


class VersionCheckFailedError(CoordinationError):
    """The guard check of a checked write failed (version moved or znode gone); nothing was
    written."""


class ZooKeeperUnavailableError(CoordinationError):
    """ZooKeeper did not answer in time, the connection dropped or the session is gone.

    For a write, the outcome is unknown: it may or may not have been applied.
    """

    code = ErrorCode.ZOOKEEPER_UNAVAILABLE


class ControllerMovedError(CoordinationError):
    """The controller epoch's znode version moved: another broker was elected controller.

    The controller that gets this must resign at once (Kafka's ControllerMovedException).
    """

    code = ErrorCode.NOT_CONTROLLER


class BrokerIdInUseError(CoordinationError):
    """``/brokers/ids/<id>`` is held by another live ZooKeeper session (another process)."""


class ZnodeDecodeError(CoordinationError):
    """The bytes of a znode are not what its codec expects (corrupt or foreign data)."""
