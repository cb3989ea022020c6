"""kbroker benchmarks: ``python -m bench.run --quick`` (``make bench``) or ``--full``.

Every system under test runs on 127.0.0.1 of this machine, started and stopped by this script;
every load is bounded in time. Figures are reported next to the bare aiohttp append server
measured in the same run, as ratios, because the machine is shared and noisy. Results go to
``bench/results/<timestamp>.json`` and a table on the terminal.

Quick suite (about 2 minutes):

* ``bare-append``: the implementation limit, 1000-record JSON bodies (~100 B values) POSTed by
  wrk over 8 connections to a bare aiohttp server that appends each body to a file.
* ``produce-batch``: the same bodies to one kbroker broker (RF 1, acks=1, 4 partitions).
* ``produce-single-c1`` / ``-c64``: one record per request over 1 and 64 connections.
* ``fetch``: everything produced, read back through the stateless fetch endpoint (one reader
  per partition).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from bench.fetch import fetch_partitions
from bench.wrk import WrkResult, run_wrk
from kbroker.testing.brokers import BrokerProcess, http_json
from kbroker.testing.local import ManagedProcess, ZooKeeperEnsemble, free_ports

RESULTS = Path(__file__).parent / "results"
VALUE = "v" * 100
PARTITIONS = 4


def batch_body(records: int) -> bytes:
    return orjson.dumps({"records": [{"value": VALUE} for _ in range(records)]})


@contextlib.contextmanager
def bare_server(workdir: Path) -> Iterator[str]:
    port = free_ports(1)[0]
    proc = ManagedProcess(
        name="bare-aiohttp",
        argv=[sys.executable, "-m", "bench.bare_server", str(port), str(workdir / "bare.log")],
        log_path=workdir / "bare-server.out",
        cwd=Path(__file__).parent.parent,
    )
    proc.start()
    url = f"http://127.0.0.1:{port}"
    _wait_http(url + "/x", method="POST")
    try:
        yield url
    finally:
        proc.kill()


def _wait_http(url: str, method: str = "GET", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            http_json(url, method=method, body={} if method == "POST" else None, timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def single_broker(workdir: Path) -> Iterator[BrokerProcess]:
    with ZooKeeperEnsemble(base_dir=workdir / "zk", size=1) as zk:
        broker = BrokerProcess(
            broker_id=1,
            zookeeper=zk.connect_string + "/bench",
            base_dir=workdir,
            log_level="WARNING",
        )
        broker.start()
        try:
            yield broker
        finally:
            broker.kill()


def create_topic(url: str, name: str, partitions: int, replication_factor: int = 1) -> None:
    _, clusters = http_json(url + "/v3/clusters")
    cid = clusters["data"][0]["cluster_id"]
    status, body = http_json(
        f"{url}/v3/clusters/{cid}/topics",
        method="POST",
        body={
            "topic_name": name,
            "partitions_count": partitions,
            "replication_factor": replication_factor,
        },
    )
    if status != 201:
        raise RuntimeError(f"create topic {name}: {status} {body}")


def _row(name: str, result: WrkResult, records_per_request: int, body_bytes: int) -> dict[str, Any]:
    rps = result.requests_per_second
    return {
        "workload": name,
        "requests_per_second": round(rps, 1),
        "records_per_second": round(rps * records_per_request),
        "mb_per_second": round(rps * body_bytes / 1e6, 2),
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "p999_ms": result.p999_ms,
        "errors": result.status_errors + result.socket_errors,
    }


def quick(workdir: Path, seconds: int) -> list[dict[str, Any]]:
    rows = []
    body = batch_body(1000)
    single = batch_body(1)
    with bare_server(workdir) as url:
        rows.append(
            _row(
                "bare-append",
                run_wrk(url + "/append", body, connections=8, duration=seconds),
                1000,
                len(body),
            )
        )
    with single_broker(workdir) as broker:
        create_topic(broker.url, "bench", PARTITIONS)
        produce = f"{broker.url}/topics/bench?acks=1"
        rows.append(
            _row(
                "produce-batch",
                run_wrk(produce, body, connections=8, duration=seconds),
                1000,
                len(body),
            )
        )
        for connections in (1, 64):
            result = run_wrk(produce, single, connections=connections, duration=seconds)
            rows.append(_row(f"produce-single-c{connections}", result, 1, len(single)))
        produced = sum(r["records_per_second"] for r in rows[1:]) * seconds
        each = int(min(produced, 4_000_000) // PARTITIONS)
        fetched = asyncio.run(fetch_partitions(broker.url, "bench", PARTITIONS, records_each=each))
        rows.append(
            {
                "workload": "fetch",
                "requests_per_second": round(fetched.requests / fetched.seconds, 1),
                "records_per_second": round(fetched.records_per_second),
                "mb_per_second": round(fetched.bytes / fetched.seconds / 1e6, 2),
                "records": fetched.records,
                "errors": 0,
            }
        )
    bare = rows[0]["records_per_second"]
    for row in rows:
        row["vs_bare_append"] = round(row["records_per_second"] / bare, 3)
    return rows


def machine() -> dict[str, Any]:
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
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'workload':<22}{'records/s':>14}{'MB/s':>10}{'req/s':>11}{'p99 ms':>9}"
        f"{'vs bare':>9}{'errors':>8}"
    )
    for r in rows:
        p99 = r.get("p99_ms")
        print(
            f"{r['workload']:<22}{r['records_per_second']:>14,}{r['mb_per_second']:>10}"
            f"{r['requests_per_second']:>11,}{p99 if p99 is not None else '-':>9}"
            f"{r['vs_bare_append']:>9}{r['errors']:>8}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--quick", action="store_true", help="the quick suite (default)")
    parser.add_argument("--full", action="store_true", help="the full suite")
    parser.add_argument("--seconds", type=int, default=10, help="length of each load")
    args = parser.parse_args(argv)
    subprocess.run(["bash", "scripts/bench-deps.sh"], check=True, cwd=Path(__file__).parent.parent)
    with tempfile.TemporaryDirectory(prefix="kbroker-bench-") as tmp:
        rows = quick(Path(tmp), args.seconds)
    print_table(rows)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"{stamp}-{'full' if args.full else 'quick'}.json"
    out.write_text(
        json.dumps(
            {
                "suite": "full" if args.full else "quick",
                "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
                "machine": machine(),
                "seconds": args.seconds,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
