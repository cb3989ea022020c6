"""Fault injection with real processes and a Jepsen-style checker (``make chaos``).

``python -m kbroker.testing.chaos --minutes N [--seed S] [--out DIR]`` runs 3 ZooKeeper nodes
and 3 brokers under an idempotent acks=all load with consumers in a group, while a nemesis
kills, pauses, partitions, expires, fills and skews them; then it heals everything, checks the
histories and writes ``report.json`` and ``timeline.png``. Needs root (iptables, loop mounts,
cgroups). See docs/reliability.md.

- :mod:`~kbroker.testing.chaos.sandbox`: cgroups, iptables marks and cuts, loop mounts.
- :mod:`~kbroker.testing.chaos.nemesis`: the fault kinds and their seeded schedule.
- :mod:`~kbroker.testing.chaos.clients`: the idempotent writer and the group consumers.
- :mod:`~kbroker.testing.chaos.monitor`: a ZooKeeper observer (controller and leader epochs).
- :mod:`~kbroker.testing.chaos.checker`: the anomaly checks and availability figures.
- :mod:`~kbroker.testing.chaos.timeline`: the PNG.
- :mod:`~kbroker.testing.chaos.runner`: one run end to end, and the command line.
"""

from __future__ import annotations

from kbroker.testing.chaos.runner import RunConfig, main, run

__all__ = ["RunConfig", "main", "run"]
