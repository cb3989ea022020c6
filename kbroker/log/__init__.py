"""Storage: partitioned append-only segment logs of record batches.

Storage only: no leaders, no ZooKeeper, no HTTP. The pieces, bottom up: ``batch`` (the on-disk
batch format), ``index`` (sparse offset and time indexes), ``segment`` (one ``.log`` plus its
indexes), ``partition_log`` (ordered segments; append, read, roll, truncate, retention,
recovery, flush), ``epoch_cache`` (leader epoch -> start offset), ``checkpoint`` (small files
replaced atomically), ``flusher`` (group commit on the event loop) and ``manager`` (all logs of
a data directory).
"""

from __future__ import annotations

from kbroker.log.batch import BatchHeader, PayloadCodec, encode_header, iter_batches, read_header
from kbroker.log.checkpoint import CheckpointError, OffsetCheckpoint
from kbroker.log.epoch_cache import (
    UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET,
    EpochEntry,
    LeaderEpochCache,
)
from kbroker.log.flusher import GroupCommitFlusher
from kbroker.log.manager import LogManager, TopicConfigResolver
from kbroker.log.partition_log import FetchDataInfo, LogAppendInfo, PartitionLog

__all__ = [
    "UNDEFINED_EPOCH",
    "UNDEFINED_EPOCH_OFFSET",
    "BatchHeader",
    "CheckpointError",
    "EpochEntry",
    "FetchDataInfo",
    "GroupCommitFlusher",
    "LeaderEpochCache",
    "LogAppendInfo",
    "LogManager",
    "OffsetCheckpoint",
    "PartitionLog",
    "PayloadCodec",
    "TopicConfigResolver",
    "encode_header",
    "iter_batches",
    "read_header",
]
