"""Controller election and controller-epoch fencing (Kafka 2.2+, KAFKA-6082).

Election is Kafka's ``registerControllerAndIncrementControllerEpoch``: read (or create)
``/controller_epoch`` as (epoch, zkVersion v), then one multi
``{create(/controller, EPHEMERAL), setData(/controller_epoch, epoch+1, version=v)}``. The
setData with version v is the check: of several brokers racing from the same v at most one
multi succeeds, so epochs are unique, and ``/controller`` never exists without its epoch bump.
(The create-then-set in two steps, as some descriptions have it, would leave a window with a
new ``/controller`` but the old epoch; the single multi has none.)

The winner keeps the returned ``zk_version`` (the version of ``/controller_epoch`` after its
bump) and sends every later write through :func:`fenced_write`, which prepends
``check(/controller_epoch, zk_version)``: once another broker is elected (the version moves),
every write of the old controller fails with :class:`ControllerMovedError` and changes nothing.

All functions run on the loop of the given :class:`ZooKeeperClient`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

from kbroker.clock import Clock, SystemClock
from kbroker.coordination.errors import (
    BadVersionError,
    ControllerMovedError,
    NodeExistsError,
    NoNodeError,
    VersionCheckFailedError,
    ZooKeeperUnavailableError,
)
from kbroker.coordination.zk import (
    CreateOp,
    DeleteOp,
    Op,
    OpResult,
    SetDataOp,
    Stat,
    ZooKeeperClient,
)
from kbroker.coordination.znodes import (
    ControllerEpochZNode,
    ControllerRegistration,
    ControllerZNode,
)

__all__ = [
    "ControllerEpoch",
    "elect_controller",
    "fenced_write",
    "read_controller",
    "read_controller_epoch",
    "resign_controller",
]

log = logging.getLogger(__name__)


class ControllerEpoch(NamedTuple):
    """The controller epoch and the version of ``/controller_epoch`` that carries it."""

    epoch: int
    zk_version: int
    """The fencing token: every write of this controller checks ``/controller_epoch`` is still
    at this version."""


async def read_controller(
    zk: ZooKeeperClient, *, watch: bool = False
) -> tuple[ControllerRegistration, Stat] | None:
    """The active controller's registration and znode Stat, or None if there is none.

    ``watch`` arms an exists/data watch on ``/controller`` (fires on creation, change and
    deletion; register a handler with ``zk.add_watch(ControllerZNode.path, ...)`` first).
    """
    stat = await zk.exists(ControllerZNode.path, watch=watch)
    if stat is None:
        return None
    try:
        data, stat = await zk.get(ControllerZNode.path)
    except NoNodeError:
        return None  # deleted in between; the armed watch reports it
    return ControllerZNode.decode(data), stat


async def read_controller_epoch(zk: ZooKeeperClient) -> ControllerEpoch | None:
    """The current controller epoch and its znode version, or None before any election."""
    try:
        data, stat = await zk.get(ControllerEpochZNode.path)
    except NoNodeError:
        return None
    return ControllerEpoch(ControllerEpochZNode.decode(data), stat.version)


async def _read_or_create_epoch(zk: ZooKeeperClient) -> ControllerEpoch:
    current = await read_controller_epoch(zk)
    if current is not None:
        return current
    initial = ControllerEpochZNode.encode(ControllerEpochZNode.initial_epoch)
    try:
        _, stat = await zk.create(ControllerEpochZNode.path, initial)
        return ControllerEpoch(ControllerEpochZNode.initial_epoch, stat.version)
    except NodeExistsError:
        pass
    current = await read_controller_epoch(zk)
    if current is None:
        raise ZooKeeperUnavailableError("/controller_epoch vanished during election")
    return current


async def elect_controller(
    zk: ZooKeeperClient, broker_id: int, *, clock: Clock | None = None
) -> ControllerEpoch | None:
    """Try to become the controller: (epoch, zk_version) when this broker is the controller
    (newly elected, or already: the call is idempotent), None when another broker is.

    Raises ZooKeeperUnavailableError when the outcome cannot be known; the caller retries
    (as Kafka's ``elect()`` does after reconnecting), which is safe thanks to idempotence.
    """
    clock = clock or SystemClock()
    if await zk.exists(ControllerZNode.path) is not None:
        return await _controller_epoch_if_ours(zk, broker_id)
    current = await _read_or_create_epoch(zk)
    new_epoch = current.epoch + 1
    registration = ControllerRegistration(broker_id=broker_id, timestamp_ms=clock.now_ms())
    ops: list[Op] = [
        CreateOp(ControllerZNode.path, ControllerZNode.encode(registration), ephemeral=True),
        SetDataOp(
            ControllerEpochZNode.path,
            ControllerEpochZNode.encode(new_epoch),
            version=current.zk_version,
        ),
    ]
    try:
        results = await zk.transaction(ops)
    except (NodeExistsError, BadVersionError):
        return await _controller_epoch_if_ours(zk, broker_id)
    except ZooKeeperUnavailableError:
        won = await _controller_epoch_if_ours(zk, broker_id)
        if won is None and await zk.exists(ControllerZNode.path) is None:
            raise  # nobody is controller: the multi may not have run; elect again
        return won
    stat = results[1]
    assert isinstance(stat, Stat)
    log.info("broker %d elected controller, epoch %d", broker_id, new_epoch)
    return ControllerEpoch(new_epoch, stat.version)


async def _controller_epoch_if_ours(zk: ZooKeeperClient, broker_id: int) -> ControllerEpoch | None:
    """The controller epoch if ``/controller`` is this broker's, on this session; else None.

    Kafka's ``checkControllerAndEpoch``, made safe for any caller: the epoch is read between
    two reads of ``/controller`` with the same czxid. A new election must first delete our
    ``/controller`` (a later one has another czxid), so the epoch read is the one our own
    election wrote.
    """
    before = await read_controller(zk)
    if before is None or not _is_ours(zk, broker_id, *before):
        return None
    epoch = await read_controller_epoch(zk)
    after = await read_controller(zk)
    if epoch is None or after is None or after[1].czxid != before[1].czxid:
        return None
    return epoch


def _is_ours(
    zk: ZooKeeperClient, broker_id: int, registration: ControllerRegistration, stat: Stat
) -> bool:
    return registration.broker_id == broker_id and stat.ephemeral_owner == zk.session_id


async def fenced_write(
    zk: ZooKeeperClient, epoch_zk_version: int, ops: Sequence[Op]
) -> list[OpResult]:
    """Apply ``ops`` atomically if and only if the controller epoch has not moved.

    Raises ControllerMovedError (nothing written) when ``/controller_epoch`` is no longer at
    ``epoch_zk_version``; other failures of ``ops`` raise their own error with ``op_index``.
    """
    try:
        return await zk.check_and_write(ControllerEpochZNode.path, epoch_zk_version, ops)
    except VersionCheckFailedError as exc:
        raise ControllerMovedError(
            f"controller epoch znode moved past version {epoch_zk_version}: "
            "another broker is the controller",
            path=ControllerEpochZNode.path,
        ) from exc


async def resign_controller(zk: ZooKeeperClient, epoch_zk_version: int) -> bool:
    """Delete ``/controller`` (fenced, as Kafka's ``triggerControllerMove``) so that a new
    election runs. False if it was already gone or the epoch had moved (nothing to do)."""
    try:
        await fenced_write(zk, epoch_zk_version, [DeleteOp(ControllerZNode.path)])
    except (ControllerMovedError, NoNodeError):
        return False
    return True
