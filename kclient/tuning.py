"""Process-wide tuning for throughput-heavy Python processes: the garbage collector.

A consumer that decodes a million records a second allocates a tuple and a bytes object per
record (and a dict per record while a batch is parsed), and a producer or a broker parses as
many. With CPython's default thresholds the young generation is collected every 700
allocations, and the older generations, which hold the records waiting to be polled, are
walked again and again. Measured on `kbctl perf consume` (docs/benchmarks.md): 527-553k
records/s with the defaults, 811-825k with :func:`tune_gc`, 885k with the collector off.

kclient never calls this by itself: the collector is the application's to tune. kbctl and the
kbroker broker call it once they have started. Call it once, after your imports and start-up.
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["GC_THRESHOLD_YOUNG", "tune_gc"]

#: Allocations between young-generation collections (CPython's default is 700).
GC_THRESHOLD_YOUNG: Final = 50_000


def tune_gc() -> None:
    """Collect, freeze what exists now (start-up objects: modules, classes, configuration) out of
    the collector's reach, and collect the young generation every GC_THRESHOLD_YOUNG
    allocations, the middle one every 20 young collections and the oldest every 100 middle
    ones. Cycles are still collected; only less often. Not thread-specific: it affects the
    whole process."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD_YOUNG, 20, 100)
