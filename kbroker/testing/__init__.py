"""Helpers for tests and local clusters: real processes on loopback, never mocks.

:mod:`kbroker.testing.local` runs ZooKeeper (and later brokers) as local processes on
127.0.0.1; it backs the pytest fixtures in ``tests/conftest.py`` and ``make cluster-up``.
"""

from __future__ import annotations

from kbroker.testing.local import (
    INSTALL_HINT,
    LOOPBACK,
    ManagedProcess,
    ProcessError,
    ZooKeeperEnsemble,
    ZooKeeperNode,
    ZooKeeperNotInstalledError,
    ZooKeeperPorts,
    ZooKeeperStartError,
    four_letter_word,
    free_ports,
    stop_pid_file,
    zookeeper_installed,
)

__all__ = [
    "INSTALL_HINT",
    "LOOPBACK",
    "ManagedProcess",
    "ProcessError",
    "ZooKeeperEnsemble",
    "ZooKeeperNode",
    "ZooKeeperNotInstalledError",
    "ZooKeeperPorts",
    "ZooKeeperStartError",
    "four_letter_word",
    "free_ports",
    "stop_pid_file",
    "zookeeper_installed",
]
