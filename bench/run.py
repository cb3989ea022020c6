"""kbroker benchmarks: ``python -m bench.run --quick`` (``make bench``) or ``--full``
(``make bench-full``). What is measured and how: docs/benchmarks.md.

Every system under test runs on 127.0.0.1 of this machine, started and stopped by this run
(bench/systems.py); every load is bounded in records and time (bench/workloads.py); kbroker is
compared with Redis Streams, NATS JetStream and a bare aiohttp append server *in the same run*,
as ratios, because the machine is shared and noisy (bench/suite.py). Results:
``bench/results/<timestamp>-<suite>.json`` and ``.md``, PNG charts next to them (``--docs``
also copies the charts to docs/img/), and a table on the terminal (bench/report.py).

* quick (<= 5 min): produce at 1000 records x 64 connections (2 alternating repetitions) and
  four other shapes, Python-client rows, fetch, latency at 20k records/s for 20 s.
* full: every shape of {1, 100, 1000} records x {1, 64} connections for every system, 3
  repetitions, 30 s latency runs, kbroker with fsync every second, kbroker with
  ``num.http.workers`` 0 and 1, fsync before every acknowledgement, ``kbctl perf`` produce and
  consume, offset commits on one coordinator (bench/clients.py), and the scale curves
  (partitions, retained bytes, recovery after kill -9, rebalance), bench/scale.py.

``--only PHASE`` (repeatable: single, replicated, durable, flush, workers, clients, commits,
scale) runs a part of a suite, e.g. to re-run a phase that a noisy neighbour spoiled.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.gobench import build
from bench.model import machine
from bench.suite import PHASES, Config, Recorder, run_suite

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC_IMAGES = ROOT / "docs" / "img"


def ensure_dependencies() -> None:
    """Debian packages (scripts/bench-deps.sh) and the Python ``bench`` extra."""
    subprocess.run(["bash", "scripts/bench-deps.sh"], check=True, cwd=ROOT)
    if any(importlib.util.find_spec(m) is None for m in ("matplotlib", "redis", "nats")):
        subprocess.run(
            [str(Path(sys.executable).parent / "pip"), "install", "-q", "-e", f"{ROOT}[bench]"],
            check=True,
        )
        importlib.invalidate_caches()


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "missing"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=ROOT, check=False
        ).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "kbroker_dirty": bool(git("status", "--porcelain", "kbroker")),
    }


def versions() -> dict[str, str]:
    """Versions of the peers and load generators, for the results."""
    return {
        "redis": _version(["redis-server", "--version"]),
        "nats": _version(["nats-server", "--version"]),
        "go": _version(["go", "version"]),
        "wrk": _version(["wrk", "--version"]),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the suite; write the JSON, Markdown and charts; print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    suite = parser.add_mutually_exclusive_group()
    suite.add_argument("--quick", action="store_true", help="the quick suite (default)")
    suite.add_argument("--full", action="store_true", help="the full suite with scale curves")
    parser.add_argument("--seconds", type=int, help="length of each timed load (4 / 10)")
    parser.add_argument("--reps", type=int, help="headline repetitions (2 / 3)")
    parser.add_argument("--latency-seconds", type=int, help="open-loop latency run (20 / 30)")
    parser.add_argument("--docs", action="store_true", help="also copy the charts to docs/img")
    parser.add_argument(
        "--only",
        action="append",
        choices=PHASES,
        help="run only this phase (repeatable); the results name the phases run",
    )
    args = parser.parse_args(argv)
    full = bool(args.full)
    name = "full" if full else "quick"
    started = time.monotonic()
    ensure_dependencies()
    build()
    meta: dict[str, Any] = {
        "suite": name,
        "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "versions": versions(),
        "git": _git(),
    }
    rec = Recorder(quiet_wait=5.0 if full else 1.0)
    with tempfile.TemporaryDirectory(prefix="kbroker-bench-", dir="/var/tmp") as tmp:
        cfg = Config(
            root=Path(tmp),
            full=full,
            seconds=args.seconds or (10 if full else 4),
            reps=args.reps or (3 if full else 2),
            latency_seconds=args.latency_seconds or (30 if full else 20),
            budget=None if full else 270.0,
        )
        meta["config"] = {
            "seconds": cfg.seconds,
            "reps": cfg.reps,
            "latency_seconds": cfg.latency_seconds,
            "goal_records": cfg.goal,
        }
        only = frozenset(args.only) if args.only else None
        meta["phases"] = sorted(only) if only else "all"
        try:
            run_suite(cfg, rec, only)
        finally:
            meta["duration_seconds"] = round(time.monotonic() - started, 1)
            meta["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
            RESULTS.mkdir(exist_ok=True)
            stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
            if only:
                stem += "-" + "-".join(sorted(only))
            out = RESULTS / f"{stem}.json"
            report.write_json(out, meta, rec.rows)
            (RESULTS / f"{stem}.md").write_text(report.markdown(rec.rows))
    ratios, floors = report.evaluate(rec.rows)
    report.print_table(rec.rows, ratios, floors)
    try:
        pngs = report.charts(rec.rows, RESULTS, f"{stem}-")
    except Exception as exc:
        print(f"charts failed: {type(exc).__name__}: {exc}")
        pngs = []
    if args.docs:
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        for png in pngs:
            shutil.copy(png, DOC_IMAGES / f"bench-{name}-{png.name.rsplit('-', 1)[-1]}")
    print("charts: " + ", ".join(str(p) for p in pngs))
    print(f"results: {out} ({meta['duration_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
