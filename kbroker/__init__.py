"""kbroker: a Kafka-style distributed commit log with an HTTP/JSON API.

Brokers store topics as partitioned, append-only segment logs, replicate each partition from its
leader to followers that pull, and coordinate through ZooKeeper. See docs/architecture.md.
"""

__version__ = "0.1.0"
