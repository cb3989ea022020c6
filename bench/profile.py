"""Where a kbroker broker spends its produce and fetch time: ``python -m bench.profile``.

Starts one broker (RF 1, 4 partitions) on the run's own ZooKeeper, drives it with the
benchmark's load generators (wrk: 1000-record produce requests over 64 connections; kbload
http-fetch: stateless fetch of 1000 records per request), and samples the broker with py-spy
(``py-spy record -r 200 -d SECONDS -f raw``) during each load. Prints, per load, the functions
where samples land (self time) and the kbroker / aiohttp / orjson functions on the stack
(inclusive time), and keeps the raw collapsed stacks next to the results
(``bench/results/<timestamp>-profile-{produce,fetch}.txt``). ``--workers N`` runs the broker
with ``num.http.workers=N`` and samples each worker too (``...-produce-worker0.txt``). Needs
py-spy (``pip install py-spy``) and root or ptrace permission.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import workloads
from bench.systems import KBroker, kbroker_single, zookeeper

__all__ = ["main", "summarise"]

RESULTS = Path(__file__).resolve().parent / "results"
_OURS = ("kbroker/", "kclient/", "aiohttp/", "orjson", "asyncio/", "uvloop", "multidict", "yarl")


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is missing: .venv/bin/pip install py-spy")
    return found


def record(pid: int, seconds: int, out: Path) -> None:
    """Sample ``pid`` at 200 Hz for ``seconds`` into collapsed-stack text ``out``."""
    subprocess.run(
        [
            *(_py_spy(), "record", "-p", str(pid), "-r", "200", "-d", str(seconds)),
            *("-f", "raw", "-o", str(out), "--nonblocking"),
        ],
        check=True,
        capture_output=True,
        timeout=seconds + 60,
    )


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``."""
    name, _, where = frame.partition(" (")
    path = where.split(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarise(raw: Path, top: int = 25) -> str:
    """Self and inclusive sample shares of a py-spy raw (collapsed) profile."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short(f) for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            if any(mark in frame for mark in _OURS):
                inclusive[frame] += count
    lines = [f"{total} samples", "", "self (where the samples land):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive (kbroker, aiohttp, asyncio frames on the stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _children(pid: int) -> list[int]:
    """The broker's HTTP worker processes (its direct children)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _during(load: threading.Thread, pids: dict[str, int], seconds: int, out: Path) -> None:
    """Sample every process of ``pids`` (name -> pid) at once while ``load`` runs; a worker's
    samples go to ``out`` with ``-<name>`` before the suffix."""
    load.start()
    time.sleep(1.0)  # let the load reach its steady state
    samplers = [
        threading.Thread(target=record, args=(pid, seconds, _named(out, name)))
        for name, pid in pids.items()
    ]
    for sampler in samplers:
        sampler.start()
    for sampler in samplers:
        sampler.join()
    load.join()


def _named(out: Path, name: str) -> Path:
    return out if name == "broker" else out.with_name(f"{out.stem}-{name}{out.suffix}")


def profile(kb: KBroker, seconds: int, stem: str) -> dict[str, Path]:
    """Profile the broker (and its workers) under produce, then under fetch; returns the raw
    files."""
    broker = kb.processes[0].process.pid
    assert broker is not None
    pids = {"broker": broker} | {f"worker{i}": w for i, w in enumerate(_children(broker))}
    outputs = {
        "produce": RESULTS / f"{stem}-produce.txt",
        "produce-single": RESULTS / f"{stem}-produce-single.txt",
        "fetch": RESULTS / f"{stem}-fetch.txt",
    }
    for name, batch in (("produce", 1000), ("produce-single", 1)):
        produce = threading.Thread(
            target=workloads.kbroker_produce,
            args=(kb, "bench", 4),
            kwargs={
                "batch": batch,
                "connections": 64,
                "seconds": seconds + 3,
                "acks": "1",
                "per_leader": False,
            },
        )
        _during(produce, pids, seconds, outputs[name])
    fetch = threading.Thread(
        target=workloads.kbroker_fetch,
        args=(kb, "bench", 4),
        kwargs={"records": 40_000_000, "max_records": 1000, "seconds": seconds + 3},
    )
    _during(fetch, pids, seconds, outputs["fetch"])
    return {f"{load} {name}": _named(raw, name) for load, raw in outputs.items() for name in pids}


def main(argv: list[str] | None = None) -> int:
    """Profile produce then fetch and print both summaries."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--seconds", type=int, default=8, help="sampling time per load")
    parser.add_argument(
        "--workers", type=int, default=0, help="num.http.workers (each worker is sampled too)"
    )
    args = parser.parse_args(argv)
    settings = {"num.http.workers": str(args.workers)}
    RESULTS.mkdir(exist_ok=True)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-profile"
    with (
        tempfile.TemporaryDirectory(prefix="kbroker-profile-", dir="/var/tmp") as tmp,
        zookeeper(Path(tmp)) as zk,
        kbroker_single(Path(tmp), zk, chroot="/profile", settings=settings) as kb,
    ):
        kb.create_topic("bench", partitions=4)
        outputs = profile(kb, args.seconds, stem)
    for name, raw in outputs.items():
        print(f"== {name} ({raw})")
        print(summarise(raw))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
