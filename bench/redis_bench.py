"""Drive redis-benchmark (Redis's own C load generator, Debian's redis-tools) with one command.

``redis-benchmark -n REQUESTS -c CONNECTIONS -P PIPELINE --csv COMMAND...`` sends the command
``REQUESTS`` times, ``PIPELINE`` deep on each of ``CONNECTIONS`` connections, and reports the
command rate and per-command latency percentiles. Every run is bounded by a subprocess timeout.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from dataclasses import dataclass

from kbroker.testing.local import LOOPBACK

__all__ = ["RedisBenchResult", "redis_benchmark"]


@dataclass(frozen=True, slots=True)
class RedisBenchResult:
    """Commands completed per second, and latency (ms) of a command (a pipelined command
    waits for its whole pipeline)."""

    requests: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float

    @property
    def seconds(self) -> float:
        """How long the run took, from its rate."""
        return self.requests / self.requests_per_second


def redis_benchmark(
    port: int,
    command: list[str],
    *,
    requests: int,
    connections: int,
    pipeline: int = 1,
    timeout: float = 120.0,
) -> RedisBenchResult:
    """Run ``command`` ``requests`` times against 127.0.0.1:``port``."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise RuntimeError("redis-benchmark is not installed: run `bash scripts/bench-deps.sh`")
    out = subprocess.run(
        [
            binary,
            *("-h", LOOPBACK, "-p", str(port), "-n", str(requests)),
            *("-c", str(connections), "-P", str(pipeline), "--csv"),
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    ).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    if not rows:
        raise RuntimeError(f"redis-benchmark printed no result: {out[-500:]}")
    row = rows[-1]
    return RedisBenchResult(
        requests=requests,
        requests_per_second=float(row["rps"]),
        p50_ms=float(row["p50_latency_ms"]),
        p99_ms=float(row["p99_latency_ms"]),
    )
