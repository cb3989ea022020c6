"""What a benchmark measures and records: samples, result rows and the machine's state.

A :class:`Sample` is one bounded load against one system (one repetition). A :class:`Row` is one
line of the report: a workload against a system in one mode with one client, holding all its
repetitions and their median. Rows serialise to the JSON under ``bench/results/``.

Every sample is taken after :func:`settle`: ``sync`` (so the page-cache writeback of the
previous load does not slow this one), then a short wait for the machine to be quiet, and the
load average and the CPU share used by others are recorded with the sample, because the machine
is shared with other engineers.

Nothing here is thread-safe; the runner drives everything from one thread.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "VALUE",
    "Row",
    "Sample",
    "Settled",
    "cpu_busy",
    "machine",
    "settle",
    "sync_disks",
]

#: The record value of every throughput workload: 100 bytes.
VALUE: Final = "v" * 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Settled:
    """The machine's state just before a sample: what :func:`settle` saw."""

    load_avg_1m: float
    busy_before: float
    """Share of both cores busy (0..1) in the 0.3 s before the load started."""
    sync_seconds: float
    waited_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One repetition of one bounded load.

    ``records`` were acknowledged (produce) or received (fetch) in ``seconds``; latency
    percentiles are those of the load generator when it reports them (per request).
    """

    records: int
    seconds: float
    bytes: int = 0
    requests: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    timed_out: bool = False
    settled: Settled | None = None

    @property
    def records_per_second(self) -> float:
        """Records per second of this repetition (0 for an empty one)."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True, kw_only=True)
class Row:
    """One report line: ``workload`` against ``system`` in ``mode``, driven by ``client``.

    ``key`` is unique in a run (``produce/kbroker-rf1/r1000-c64``) and is what ratios and floors
    refer to. ``python_client`` marks rows driven by a Python client library (these measure the
    client as much as the server). ``extra`` holds workload-specific figures (latency
    percentiles, scale-curve points, skip reasons).
    """

    key: str
    workload: str
    system: str
    mode: str
    client: str
    python_client: bool = False
    records_per_request: int | None = None
    connections: int | None = None
    samples: list[Sample] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    failures: list[str] = field(default_factory=list)
    """Repetitions that raised (the others still count)."""

    @property
    def note(self) -> str:
        """Why the row has no figures (skipped or failed), or ""."""
        return self.skipped or "; ".join(self.failures)

    @property
    def records_per_second(self) -> float:
        """Median over the repetitions (0 when skipped or empty)."""
        rates = [s.records_per_second for s in self.samples]
        return statistics.median(rates) if rates else 0.0

    @property
    def mb_per_second(self) -> float:
        """Median payload megabytes (1e6) per second over the repetitions."""
        rates = [s.bytes / s.seconds / 1e6 for s in self.samples if s.seconds > 0]
        return statistics.median(rates) if rates else 0.0

    def median_sample(self) -> Sample | None:
        """The repetition whose rate is the median (the lower one of an even count)."""
        if not self.samples:
            return None
        ordered = sorted(self.samples, key=lambda s: s.records_per_second)
        return ordered[(len(ordered) - 1) // 2]

    def to_json(self) -> dict[str, Any]:
        """The row as stored in bench/results/*.json (read back by report.load_rows)."""
        doc: dict[str, Any] = {
            "key": self.key,
            "workload": self.workload,
            "system": self.system,
            "mode": self.mode,
            "client": self.client,
            "python_client": self.python_client,
            "records_per_request": self.records_per_request,
            "connections": self.connections,
            "records_per_second": round(self.records_per_second),
            "mb_per_second": round(self.mb_per_second, 2),
            "repetitions": [
                {**asdict(s), "records_per_second": round(s.records_per_second)}
                for s in self.samples
            ],
        }
        if self.skipped:
            doc["skipped"] = self.skipped
        if self.failures:
            doc["failures"] = self.failures
        if self.extra:
            doc["extra"] = self.extra
        return doc


# -- machine state ------------------------------------------------------------------------------


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    return total - idle, total


def cpu_busy(interval: float = 0.3) -> float:
    """Share (0..1) of all CPUs busy over the next ``interval`` seconds."""
    busy0, total0 = _cpu_times()
    time.sleep(interval)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(total1 - total0, 1)


def sync_disks() -> float:
    """Run ``sync`` (write back every dirty page) and return how long it took."""
    start = time.perf_counter()
    subprocess.run(["sync"], check=True, timeout=300)
    return time.perf_counter() - start


def settle(*, quiet_below: float = 0.35, max_wait: float = 3.0) -> Settled:
    """Get the machine ready for a sample: sync, then wait (at most ``max_wait`` seconds) until
    less than ``quiet_below`` of the CPUs is busy. Returns what it saw."""
    synced = sync_disks()
    start = time.perf_counter()
    busy = cpu_busy()
    while busy >= quiet_below and time.perf_counter() - start < max_wait:
        busy = cpu_busy()
    return Settled(
        load_avg_1m=round(os.getloadavg()[0], 2),
        busy_before=round(busy, 3),
        sync_seconds=round(synced, 3),
        waited_seconds=round(time.perf_counter() - start, 3),
    )


def machine() -> dict[str, Any]:
    """CPU, memory, kernel, Python and disk of this machine, and its load right now."""
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            "",
        )
    mem_gib = 0.0
    with contextlib.suppress(OSError, StopIteration, ValueError):
        line = next(
            ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")
        )
        mem_gib = round(int(line.split()[1]) / (1 << 20), 1)
    os_name = ""
    with contextlib.suppress(OSError):
        os_name = platform.freedesktop_os_release().get("PRETTY_NAME", "")
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": mem_gib,
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
