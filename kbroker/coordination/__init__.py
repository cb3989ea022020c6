"""The only door to ZooKeeper: an asyncio client, znode codecs, registration and fencing.

- :mod:`~kbroker.coordination.zk`: :class:`ZooKeeperClient`, the asyncio facade over kazoo
  (the only module that imports kazoo); session events, self-fencing timer, watches as hints.
- :mod:`~kbroker.coordination.znodes`: one codec per znode (Kafka 2.x ZooKeeper layout).
- :mod:`~kbroker.coordination.registration`: ``/brokers/ids/<id>`` (checked ephemeral),
  ``/cluster/id``, persistent top-level paths, :class:`BrokerRegistrar`.
- :mod:`~kbroker.coordination.fencing`: controller election and epoch-fenced writes.
- :mod:`~kbroker.coordination.isr_writer`: leaders' ISR writes, version-checked, batched.
- :mod:`~kbroker.coordination.errors`: the exceptions callers catch.

Imported only by ``kbroker.controller`` and ``kbroker.server`` (and tests).
"""

from __future__ import annotations

from kbroker.coordination.errors import (
    BadVersionError,
    BrokerIdInUseError,
    ControllerMovedError,
    CoordinationError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    VersionCheckFailedError,
    ZnodeDecodeError,
    ZooKeeperUnavailableError,
)
from kbroker.coordination.fencing import (
    ControllerEpoch,
    elect_controller,
    fenced_write,
    read_controller,
    read_controller_epoch,
    resign_controller,
)
from kbroker.coordination.registration import (
    BrokerRegistrar,
    RegisteredBroker,
    ensure_cluster_id,
    ensure_persistent_paths,
    list_brokers,
    register_broker,
)
from kbroker.coordination.zk import (
    CheckOp,
    ConnectionState,
    CreateOp,
    DeleteOp,
    Op,
    OpResult,
    SessionEvent,
    SessionEventKind,
    SetDataOp,
    Stat,
    WatchEvent,
    WatchEventKind,
    ZooKeeperClient,
    force_session_expiry,
)

__all__ = [
    "BadVersionError",
    "BrokerIdInUseError",
    "BrokerRegistrar",
    "CheckOp",
    "ConnectionState",
    "ControllerEpoch",
    "ControllerMovedError",
    "CoordinationError",
    "CreateOp",
    "DeleteOp",
    "NoNodeError",
    "NodeExistsError",
    "NotEmptyError",
    "Op",
    "OpResult",
    "RegisteredBroker",
    "SessionEvent",
    "SessionEventKind",
    "SetDataOp",
    "Stat",
    "VersionCheckFailedError",
    "WatchEvent",
    "WatchEventKind",
    "ZnodeDecodeError",
    "ZooKeeperClient",
    "ZooKeeperUnavailableError",
    "elect_controller",
    "ensure_cluster_id",
    "ensure_persistent_paths",
    "fenced_write",
    "force_session_expiry",
    "list_brokers",
    "read_controller",
    "read_controller_epoch",
    "register_broker",
    "resign_controller",
]
