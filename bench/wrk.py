"""Drive wrk (the C HTTP load generator from Debian) with a fixed request body.

The load generator is C so that it costs little of the 2-core machine next to the server under
test. Every run is bounded by ``duration`` seconds; the Lua script reports a JSON summary.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WrkResult", "run_wrk"]

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
    requests: int
    seconds: float
    status_errors: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    p999_ms: float

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds


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
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: run `bash scripts/bench-deps.sh`")
    with tempfile.TemporaryDirectory() as tmp:
        body_path = Path(tmp) / "body"
        body_path.write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(_SCRIPT)
        env = {"KB_BODY": str(body_path), "KB_CONTENT_TYPE": content_type, "PATH": "/usr/bin"}
        out = subprocess.run(
            [
                wrk,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{duration}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=duration + 60,
            check=True,
        ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("JSON "))
    doc = json.loads(line[5:])
    return WrkResult(
        requests=doc["requests"],
        seconds=doc["duration_us"] / 1e6,
        status_errors=doc["status_errors"],
        socket_errors=doc["socket_errors"],
        p50_ms=doc["p50_us"] / 1000,
        p99_ms=doc["p99_us"] / 1000,
        p999_ms=doc["p999_us"] / 1000,
    )
