"""Helpers for tests of kbroker and of applications that use it: real servers, never mocks.

In containers (testcontainers; needs a Docker engine and ``make images``), for users' own tests:

- :class:`ZooKeeperEnsemble`: ZooKeeper nodes in containers on a network of their own.
- :class:`KBrokerCluster`: ``KBrokerCluster(brokers=3)`` with ``bootstrap_url`` and fault
  helpers (kill, pause and unpause, stop and start a broker, cut it off the network, kill the
  ZooKeeper leader). See :mod:`kbroker.testing.containers`.

As local processes on 127.0.0.1 (Debian's zookeeper package, brokers from this venv; they back
``tests/conftest.py`` and the local mode of ``make cluster-up``):

- :mod:`kbroker.testing.local`: ZooKeeper nodes and ensembles (:class:`LocalZooKeeperEnsemble`
  here, ``ZooKeeperEnsemble`` there) and process management.
- :mod:`kbroker.testing.brokers`: ``BrokerProcess`` and ``LocalCluster``.

The container helpers are imported on first use, so that importing this package does not need
testcontainers (a dev extra).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kbroker.testing.local import (
    INSTALL_HINT,
    LOOPBACK,
    ManagedProcess,
    ProcessError,
    ZooKeeperNode,
    ZooKeeperNotInstalledError,
    ZooKeeperPorts,
    ZooKeeperStartError,
    four_letter_word,
    free_ports,
    stop_pid_file,
    zookeeper_installed,
)
from kbroker.testing.local import ZooKeeperEnsemble as LocalZooKeeperEnsemble

if TYPE_CHECKING:
    from kbroker.testing.containers import (
        ContainerError,
        KBrokerCluster,
        ZooKeeperEnsemble,
        docker_problem,
        remove_leftovers,
    )

__all__ = [
    "INSTALL_HINT",
    "LOOPBACK",
    "ContainerError",
    "KBrokerCluster",
    "LocalZooKeeperEnsemble",
    "ManagedProcess",
    "ProcessError",
    "ZooKeeperEnsemble",
    "ZooKeeperNode",
    "ZooKeeperNotInstalledError",
    "ZooKeeperPorts",
    "ZooKeeperStartError",
    "docker_problem",
    "four_letter_word",
    "free_ports",
    "remove_leftovers",
    "stop_pid_file",
    "zookeeper_installed",
]

_CONTAINER_NAMES = frozenset(
    {"ContainerError", "KBrokerCluster", "ZooKeeperEnsemble", "docker_problem", "remove_leftovers"}
)


def __getattr__(name: str) -> Any:
    if name in _CONTAINER_NAMES:
        return getattr(importlib.import_module("kbroker.testing.containers"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
