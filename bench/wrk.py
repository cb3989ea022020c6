"""Drive wrk (the C HTTP load generator from Debian) with a fixed request body.

The load generator is C so that it costs little of the 2-core machine next to the server under
test. Every run is bounded by ``duration`` seconds; the Lua script reports a JSON summary.
:func:`run_wrk_many` runs several wrk processes at once (one per target URL, e.g. one per
partition leader of a 3-broker cluster) and adds their results up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WrkResult", "run_wrk", "run_wrk_many"]

_SCRIPT = r"""
local f = io.open(os.getenv("KB_BODY"), "rb"); wrk.body = f:read("*all"); f:close()
wrk.method = os.getenv("KB_METHOD") or "POST"
wrk.headers["Content-Type"] = os.getenv("KB_CONTENT_TYPE")
done = function(summary, latency, requests)
  io.write(string.format('JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
    .. '"status_errors": %d, "socket_errors": %d, "p50_us": %d, "p99_us": %d, '
    .. '"p999_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What wrk reports: completed requests in ``seconds`` and per-request latency
    percentiles (of the slowest process when several ran at once)."""

    requests: int
    seconds: float
    status_errors: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    p999_ms: float

    @property
    def requests_per_second(self) -> float:
        """Completed requests per second over the run."""
        return self.requests / self.seconds


def _wrk_argv(
    wrk: str, script: Path, url: str, *, threads: int, conns: int, duration: int
) -> list[str]:
    timing = [f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s"]
    return [wrk, *timing, "-s", str(script), url]


def run_wrk(
    url: str,
    body: bytes,
    *,
    connections: int,
    duration: int,
    threads: int = 1,
    content_type: str = "application/vnd.kafka.json.v2+json",
) -> WrkResult:
    """POST ``body`` to ``url`` over ``connections`` connections for ``duration`` seconds."""
    return run_wrk_many(
        [(url, connections)], body, duration=duration, threads=threads, content_type=content_type
    )


def run_wrk_many(
    targets: Sequence[tuple[str, int]],
    body: bytes,
    *,
    duration: int,
    threads: int = 1,
    content_type: str = "application/vnd.kafka.json.v2+json",
) -> WrkResult:
    """One wrk per ``(url, connections)`` target, all at once for ``duration`` seconds; the
    sum of their requests over the longest of their durations."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: run `bash scripts/bench-deps.sh`")
    with tempfile.TemporaryDirectory() as tmp:
        body_path = Path(tmp) / "body"
        body_path.write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(_SCRIPT)
        env = {
            "KB_BODY": str(body_path),
            "KB_CONTENT_TYPE": content_type,
            "PATH": os.environ.get("PATH", "/usr/bin"),
        }
        procs = [
            subprocess.Popen(
                _wrk_argv(wrk, script, url, threads=threads, conns=conns, duration=duration),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for url, conns in targets
        ]
        outputs = []
        try:
            for proc in procs:
                out, err = proc.communicate(timeout=duration + 60)
                if proc.returncode != 0:
                    raise RuntimeError(f"wrk failed ({proc.returncode}): {err[-500:]}")
                outputs.append(out)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    docs = [
        json.loads(next(ln for ln in out.splitlines() if ln.startswith("JSON "))[5:])
        for out in outputs
    ]
    return WrkResult(
        requests=sum(d["requests"] for d in docs),
        seconds=max(d["duration_us"] for d in docs) / 1e6,
        status_errors=sum(d["status_errors"] for d in docs),
        socket_errors=sum(d["socket_errors"] for d in docs),
        p50_ms=max(d["p50_us"] for d in docs) / 1000,
        p99_ms=max(d["p99_us"] for d in docs) / 1000,
        p999_ms=max(d["p999_us"] for d in docs) / 1000,
    )
