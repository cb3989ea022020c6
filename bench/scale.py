"""Scale curves (full suite only): how kbroker's figures move with size.

* ``scale/partitions``: batched produce (1000 records x 64 connections, acks=1, one broker)
  into topics of 1, 10, 100 and 1000 partitions.
* ``scale/retained``: batched produce, and a stateless fetch of 1M records from the log's
  start, with ~100 MB and with ~10 GB already stored in the topic (1 GiB segments); the 10 GB
  is written with wrk, the fastest path. Throughput should not depend on how much is stored.
* ``scale/retained-100m`` and ``scale/retained-10g``: the floor's comparison, side by side on
  the same broker once the 10 GB is written: produce into a topic holding ~100 MB and into the
  one holding ~10 GB, alternated (small, large, small, ...), one sample each per repetition.
  Each sample writes 1-2 GB, so every small sample gets a new topic filled to ~100 MB just
  before it. Single samples taken minutes apart (the curve) also measure what the machine
  did in between (the page-cache writeback of the 10 GB just written). Sizes are what a log
  holds when its sample starts.
* ``scale/recovery``: kill -9 of that broker at several log sizes, then a restart: seconds
  until its logs are loaded (its "loaded N logs" line), until it serves HTTP, and until a
  produce succeeds.
* ``scale/rebalance``: a consumer group (kclient.aio, kclient's default settings) of N members
  on a 64-partition topic; seconds from a new member's first poll until every member holds
  its share again, for N = 1..32 (and the first join of the N members).

Every broker here is a fresh single broker on the run's ZooKeeper; its data is deleted and
synced afterwards. Disk space is checked before the 10 GB fill.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import aiohttp

from bench import workloads
from bench.model import Row, Sample
from bench.systems import KBroker, kbroker_single
from bench.wrk import run_wrk
from kbroker.testing.brokers import BrokerProcess, http_json

if TYPE_CHECKING:
    from bench.suite import Config, Recorder

__all__ = ["scale_curves"]

_GB: Final = 1e9
_PARTITION_COUNTS: Final = (1, 10, 100, 1000)
_GROUP_SIZES: Final = (1, 2, 4, 8, 16, 32)
_REBALANCE_PARTITIONS: Final = 64
_RETAINED_TARGETS: Final = (0.1 * _GB, 3 * _GB, 10 * _GB)
#: Bytes in the small topic of the side-by-side comparison.
_SMALL_BYTES: Final = 0.1 * _GB
_RETAINED_CONFIGS: Final = {"segment.bytes": str(1 << 30)}
#: Quick ZooKeeper session expiry: a broker restarted after kill -9 waits for its old session's
#: ephemeral registration to expire (see docs/benchmarks.md).
_FAST_SESSION: Final = {"zookeeper.session.timeout.ms": "4000"}


def _scale_row(rec: Recorder, key: str, mode: str, **extra: Any) -> Row:
    row = rec.row(key, workload="scale", system="kbroker", mode=mode, client="wrk (C)")
    row.extra.update(extra)
    row.extra.setdefault("points", [])
    return row


def _measure_point(rec: Recorder, row: Row, x: float, run: Callable[[], Sample]) -> None:
    """One sample for ``row`` and, when it was taken, its point (x, records/s) on the curve."""
    before = len(row.samples)
    rec.measure(row, run)
    if len(row.samples) > before:
        row.extra["points"].append({"x": x, "y": round(row.samples[-1].records_per_second)})


def _produce_load(kb: KBroker, topic: str, partitions: int, seconds: int) -> Callable[[], Sample]:
    """The curves' batched produce: 1000 records x 64 connections, acks=1."""
    return partial(
        workloads.kbroker_produce,
        kb,
        topic,
        partitions,
        batch=1000,
        connections=64,
        seconds=seconds,
        acks="1",
        per_leader=False,
    )


def _stored_bytes(path: Path, topic: str | None = None) -> int:
    """Bytes of the files under ``path`` (only in ``topic``'s partition directories if given)."""
    if topic is not None:
        return sum(_stored_bytes(d) for d in path.glob(f"{topic}-*") if d.is_dir())
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / name).stat().st_size
    return total


# -- partitions ----------------------------------------------------------------------------------


def _partitions_curve(rec: Recorder, cfg: Config, zk: str) -> None:
    row = _scale_row(
        rec,
        "scale/partitions",
        "produce vs partitions (RF1 acks=1, 1000 x 64)",
        x_label="partitions",
        y_label="records/s",
        log_x=True,
    )
    with kbroker_single(cfg.root, zk, chroot="/scale-partitions") as kb:
        for count in _PARTITION_COUNTS:
            topic = f"p{count}"
            started = time.monotonic()
            kb.create_topic(topic, partitions=count, timeout=300)
            rec.log(f"topic of {count} partitions ready in {time.monotonic() - started:.1f} s")
            _measure_point(rec, row, count, _produce_load(kb, topic, count, cfg.seconds))


# -- retained bytes and recovery -----------------------------------------------------------------


async def _post_until(url: str, body: bytes, requests: int) -> None:
    async with aiohttp.ClientSession() as session:
        left = requests

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/vnd.kafka.json.v2+json"}
                ) as resp:
                    await resp.read()

        await asyncio.gather(*(worker() for _ in range(8)))


def _fill(rec: Recorder, kb: KBroker, data: Path, target: float, topic: str = "retained") -> int:
    """Produce into ``topic`` until its partitions under ``data`` hold about ``target`` bytes."""
    body = workloads.batch_body(1000)
    url = f"{kb.url}/topics/{topic}?acks=1"
    started = time.monotonic()
    size = _stored_bytes(data, topic)
    while size < target * 0.98 and time.monotonic() - started < 600:
        left = target - size
        if left > 1.5 * _GB:
            run_wrk(url, body, connections=64, duration=int(min(left / 150e6, 20)) or 1)
        else:
            per_request = len(body) * 1.05
            asyncio.run(_post_until(url, body, max(int(left / per_request), 1)))
        size = _stored_bytes(data, topic)
    took = time.monotonic() - started
    rec.log(f"{topic} holds {size / _GB:.2f} GB after {took:.0f} s of filling")
    return size


def _recover(broker: BrokerProcess, url: str) -> dict[str, float]:
    """kill -9, restart, and time the way back (seconds from the restart)."""
    broker.kill()
    start = time.monotonic()
    broker.start(wait=False)
    marks: dict[str, float] = {}
    deadline = start + 900
    while "produce" not in marks and time.monotonic() < deadline:
        now = time.monotonic() - start
        if "loaded" not in marks and "loaded " in broker.process.log_since_start():
            marks["loaded"] = now
        if "serving" not in marks:
            with contextlib.suppress(OSError):
                if http_json(url + "/", timeout=1)[0] == 200:
                    marks["serving"] = now
        if "serving" in marks:
            with contextlib.suppress(OSError):
                status, answer = http_json(
                    f"{url}/topics/retained/partitions/0?acks=1",
                    method="POST",
                    body={"records": [{"value": "x"}]},
                    timeout=5,
                    content_type="application/vnd.kafka.json.v2+json",
                )
                if status == 200 and answer["offsets"][0].get("error_code") is None:
                    marks["produce"] = time.monotonic() - start
        if not broker.running:
            raise RuntimeError(f"broker exited during recovery:\n{broker.log_tail()}")
        time.sleep(0.05)
    return {k: round(v, 2) for k, v in marks.items()}


def _retained_and_recovery(rec: Recorder, cfg: Config, zk: str) -> None:
    free = shutil.disk_usage(cfg.root).free
    if free < 25 * _GB:
        rec.skip(
            "scale/retained",
            f"only {free / _GB:.0f} GB free (needs 25)",
            workload="scale",
            system="kbroker",
            mode="retained",
            client="wrk (C)",
        )
        return
    retained = _scale_row(
        rec,
        "scale/retained",
        "produce vs bytes retained (RF1 acks=1, 1000 x 64)",
        x_label="GB retained",
        y_label="records/s",
    )
    fetch_row = _scale_row(
        rec,
        "scale/retained-fetch",
        "fetch of 1M from the start vs bytes retained",
        x_label="GB retained",
        y_label="records/s",
    )
    recovery = _scale_row(
        rec,
        "scale/recovery",
        "recovery after kill -9 vs log size",
        x_label="GB stored",
        y_label="seconds until produce succeeds",
    )
    with kbroker_single(
        cfg.root, zk, chroot="/scale-retained", settings=_FAST_SESSION, log_level="INFO"
    ) as kb:
        broker = kb.processes[0]
        kb.create_topic("retained", partitions=4, configs=_RETAINED_CONFIGS)
        data = broker.data_dir
        for target in _RETAINED_TARGETS:
            size = _fill(rec, kb, data, target)
            if target != _RETAINED_TARGETS[1]:
                _measure_retained(rec, cfg, kb, produce=retained, fetch=fetch_row, size=size)
            rec.log(f"kill -9 with {size / _GB:.2f} GB stored")
            marks = _recover(broker, kb.url)
            rec.log(f"recovered: {marks}")
            recovery.extra["points"].append(
                {"x": round(size / _GB, 2), "y": marks.get("produce"), **marks}
            )
            kb.leaders("retained")
        _side_by_side(rec, cfg, kb, data)
    _summarise_retained(retained, recovery)


def _measure_retained(
    rec: Recorder, cfg: Config, kb: KBroker, *, produce: Row, fetch: Row, size: int
) -> None:
    x = round(size / _GB, 2)
    _measure_point(rec, produce, x, _produce_load(kb, "retained", 4, cfg.seconds))
    _measure_point(
        rec,
        fetch,
        x,
        lambda: workloads.kbroker_fetch(
            kb, "retained", 4, records=cfg.goal, max_records=1000, seconds=60
        ),
    )


def _side_by_side(rec: Recorder, cfg: Config, kb: KBroker, data: Path) -> None:
    """The floor's comparison: a ~100 MB topic (a new one each time, since a sample writes
    1-2 GB) and the ~10 GB topic, alternated."""
    small, large = (
        rec.row(
            f"scale/retained-{size}",
            workload="retained",
            system="kbroker",
            mode=f"RF1 acks=1, 1000 x 64, into a topic holding ~{label}; alternated",
            client="wrk (C)",
        )
        for size, label in (("100m", "100 MB"), ("10g", "10 GB"))
    )
    for rep in range(cfg.reps):
        topic = f"small{rep}"  # no "-": no other topic's directories match f"{topic}-*"
        kb.create_topic(topic, partitions=4, configs=_RETAINED_CONFIGS)
        _fill(rec, kb, data, _SMALL_BYTES, topic=topic)
        rec.measure(small, _produce_load(kb, topic, 4, cfg.seconds))
        rec.measure(large, _produce_load(kb, "retained", 4, cfg.seconds))


def _summarise_retained(retained: Row, recovery: Row) -> None:
    pts = retained.extra["points"]
    if len(pts) >= 2 and pts[0]["y"]:
        # The curve's own ratio; the floor is the side-by-side one (scale/retained-*).
        retained.extra["curve_ratio_10g_to_100m"] = round(pts[-1]["y"] / pts[0]["y"], 3)
    rpts = recovery.extra["points"]
    if rpts and rpts[-1]["x"] >= 9:
        recovery.extra["seconds_at_10g"] = rpts[-1].get("produce")


# -- rebalance -----------------------------------------------------------------------------------


async def _stable(consumers: list[Any], partitions: int, timeout: float) -> float | None:
    """Seconds until every consumer holds a non-empty share, the shares partition the topic
    and all are in one generation; None if that does not happen within ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        shares = [c.assignment() for c in consumers]
        gens = {c.generation_id for c in consumers}
        if (
            all(shares)
            and len(gens) == 1
            and sum(len(s) for s in shares) == partitions
            and len(set().union(*shares)) == partitions
        ):
            return time.monotonic() - start
        await asyncio.sleep(0.01)
    return None


async def _group_round(url: str, topic: str, size: int) -> tuple[float | None, float | None]:
    """(seconds for ``size`` members to join, seconds to rebalance when one more joins); None
    where the group did not become stable within 30 s."""
    from kclient.aio import Consumer  # noqa: PLC0415 - checked by the caller

    group = f"bench-{size}-{time.monotonic_ns()}"
    consumers: list[Any] = []
    stop = asyncio.Event()

    async def polling(consumer: Any) -> None:
        while not stop.is_set():
            await consumer.poll(timeout=0.05)

    async def add(count: int, tasks: asyncio.TaskGroup) -> list[Any]:
        new = [Consumer(url, group_id=group, enable_auto_commit=False) for _ in range(count)]
        for c in new:
            await c.start()
            c.subscribe([topic])
            tasks.create_task(polling(c))
        return new

    try:
        async with asyncio.TaskGroup() as tasks:
            consumers += await add(size, tasks)
            joined = await _stable(consumers, _REBALANCE_PARTITIONS, 30)
            rebalanced = None
            if joined is not None:
                consumers += await add(1, tasks)
                rebalanced = await _stable(consumers, _REBALANCE_PARTITIONS, 30)
            stop.set()
    finally:
        for c in consumers:
            with contextlib.suppress(Exception):
                await c.close(autocommit=False)
    return joined, rebalanced


def _rebalance_curve(rec: Recorder, cfg: Config, zk: str) -> None:
    from bench.pyclients import kclient_consumer_available  # noqa: PLC0415

    fields = {"workload": "scale", "system": "kbroker", "client": "Python kclient.aio"}
    reason = kclient_consumer_available()
    if reason is not None:
        rec.skip("scale/rebalance", reason, mode="rebalance", **fields)
        return
    row = rec.row("scale/rebalance", mode="rebalance time vs group size (+1 member)", **fields)
    row.extra.update(
        {"points": [], "x_label": "members before the join", "y_label": "seconds", "log_x": True}
    )
    with kbroker_single(cfg.root, zk, chroot="/scale-groups") as kb:
        kb.create_topic("groups", partitions=_REBALANCE_PARTITIONS)
        for size in _GROUP_SIZES:

            def run(n: int = size) -> Sample:
                joined, rebalanced = asyncio.run(_group_round(kb.url, "groups", n))
                row.extra["points"].append(
                    {
                        "x": n,
                        "y": None if rebalanced is None else round(rebalanced, 3),
                        "first_join": None if joined is None else round(joined, 3),
                        "stable_within_30s": rebalanced is not None,
                    }
                )
                if rebalanced is None:
                    raise RuntimeError(f"a group of {n} (+1) did not become stable within 30 s")
                return Sample(records=n + 1, seconds=rebalanced)

            rec.measure(row, run)


def scale_curves(rec: Recorder, cfg: Config, zk: str) -> None:
    """Run every scale curve (each one's failure is recorded and the others still run)."""
    steps: list[tuple[str, Callable[[Recorder, Config, str], None]]] = [
        ("partitions", _partitions_curve),
        ("rebalance", _rebalance_curve),
        ("retained bytes and recovery", _retained_and_recovery),
    ]
    for name, step in steps:
        rec.log(f"scale curve: {name}")
        try:
            step(rec, cfg, zk)
        except Exception as exc:  # recorded; the next curve still runs
            rec.skip(
                f"scale/{name.split()[0]}-error",
                f"failed: {type(exc).__name__}: {exc}",
                workload="scale",
                system="kbroker",
                mode=name,
                client="-",
            )
