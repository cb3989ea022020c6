"""One chaos run, end to end: ``python -m kbroker.testing.chaos --minutes N [--seed S]
[--out DIR]`` (``make chaos``; ``--cleanup`` undoes what a killed run left behind).

1. Set up (:class:`~kbroker.testing.chaos.sandbox.Sandbox`): a cgroup and an iptables
   connection mark per broker, a loop-mounted ext4 data directory per broker.
2. Start 3 ZooKeeper nodes (tickTime 500 ms) and 3 brokers on 127.0.0.11-13, each inside its
   cgroup; create the chaos topic (``partitions`` partitions, RF 3, min.insync.replicas 2).
3. Run the workload for ``minutes``: the idempotent acks=all writer on every partition, group
   consumers that commit after each round, and a ZooKeeper monitor. The nemesis injects faults
   on a seeded schedule from ``WARMUP_S`` until ``QUIET_TAIL_S`` before the end; every fault is
   healed by then.
4. Heal everything (again, as a safety net), wait until every partition has all three replicas
   in sync (a liveness check), stop the writer (pending batches get a grace period), let the
   consumers catch up, read every partition back, wait for the replicas' log bytes to match.
5. Check (:mod:`~kbroker.testing.chaos.checker`), write ``report.json`` and ``timeline.png``
   to ``--out``, print the summary. Exit status 0 when clean, 1 on any anomaly or liveness
   failure, 2 when the run could not be set up.

Everything started is stopped and every host change undone on the way out, failure or not
(``try/finally``, plus ``atexit`` and the registry used by ``--cleanup``). Broker logs are
copied to ``--out`` when the run is not clean. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime
import gzip
import json
import random
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

from kbroker.testing.brokers import FAST_FAILOVER, LocalCluster, http_json
from kbroker.testing.chaos.checker import (
    ChaosResult,
    History,
    availability,
    check_all,
    controller_claims,
    longest_gaps,
)
from kbroker.testing.chaos.clients import CommitEvent, GroupConsumer, IdempotentWriter, Poll
from kbroker.testing.chaos.monitor import ZooKeeperMonitor
from kbroker.testing.chaos.nemesis import KINDS, LIBFAKETIME, Nemesis, World, plan
from kbroker.testing.chaos.sandbox import (
    FILLER,
    REGISTRY,
    Sandbox,
    SandboxError,
    cleanup_stale,
)
from kbroker.testing.chaos.timeline import draw_timeline
from kbroker.testing.local import ZooKeeperEnsemble
from kbroker.testing.workload import read_partition

__all__ = ["RunConfig", "main", "run"]

TOPIC: Final = "chaos"
GROUP: Final = "chaos-group"
BROKERS: Final = 3
HOSTS: Final = tuple(f"127.0.0.{10 + i}" for i in range(1, BROKERS + 1))
WARMUP_S: Final = 8.0
QUIET_TAIL_S: Final = 12.0
MAX_WRITE_GAP_S: Final = 90.0
"""Liveness bound: no partition may go this long without an acknowledged write (faults last
at most 25 s and at most two overlap; recovery after each takes seconds)."""
SETTINGS: Final = {
    **FAST_FAILOVER,
    "produce.timeout.ms": "8000",
    "log.segment.bytes": str(1 << 20),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """What one run does. ``minutes`` is the workload's length (set-up and checks excluded)."""

    minutes: float
    seed: int
    out: Path
    partitions: int = 4
    consumers: int = 2
    kinds: tuple[str, ...] = tuple(KINDS)
    overlap: float = 0.25
    disk_mb: int = 512
    keep: bool = False


@dataclass(slots=True)
class _Run:
    """Mutable state of a run in progress (the runner's loop owns it)."""

    config: RunConfig
    cluster: LocalCluster
    ensemble: ZooKeeperEnsemble
    sandbox: Sandbox
    rng: random.Random
    polls: list[Poll] = field(default_factory=list)
    commits: list[CommitEvent] = field(default_factory=list)
    consumers: dict[str, tuple[GroupConsumer, asyncio.Task[None]]] = field(default_factory=dict)
    liveness: list[str] = field(default_factory=list)
    crashes: list[dict[str, Any]] = field(default_factory=list)
    """Brokers that exited on their own (no fault stopped them): time, exit status, log tail."""
    timings: dict[str, float] = field(default_factory=dict)
    _members: int = 0

    def add_consumer(self) -> None:
        self._members += 1
        name = f"c{self._members}"
        consumer = GroupConsumer(
            name=name,
            urls=self.cluster.urls,
            group=GROUP,
            topic=TOPIC,
            polls=self.polls,
            commits=self.commits,
            seed=self.rng.randrange(1 << 30),
        )
        self.consumers[name] = (consumer, asyncio.create_task(consumer.run()))

    async def add_member(self) -> None:
        self.add_consumer()

    async def crash_member(self) -> str:
        name = self.rng.choice(sorted(self.consumers))
        consumer, task = self.consumers.pop(name)
        await consumer.crash(task)
        return name


def _start_cluster(config: RunConfig, base: Path, sandbox: Sandbox) -> LocalCluster:
    for broker_id in range(1, BROKERS + 1):
        broker_dir = base / f"broker{broker_id}"
        sandbox.mount_disk(
            broker_dir / "data", base / "disks" / f"broker{broker_id}.img", config.disk_mb
        )
    cluster = LocalCluster(
        base,
        brokers=BROKERS,
        zookeeper_nodes=3,
        settings=SETTINGS,
        hosts=HOSTS,
        broker_kwargs=lambda broker_id: {"argv_prefix": sandbox.argv_prefix(broker_id)},
    )
    cluster.start(timeout=120)
    cluster.create_topic(
        TOPIC,
        partitions=config.partitions,
        replication_factor=BROKERS,
        configs={"min.insync.replicas": "2"},
    )
    return cluster


def _in_sync(cluster: LocalCluster, partitions: int) -> bool:
    try:
        states = [cluster.partition(TOPIC, p) for p in range(partitions)]
    except Exception:
        return False
    return all(s["leader"] is not None and len(s["isr"]) == BROKERS for s in states)


def _wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> float | None:
    """Seconds until ``predicate()`` held, or None after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    return None


def _heal_everything(run: _Run) -> None:
    """Whatever a fault might have left: rules, pauses, dead processes, fillers."""
    run.sandbox.clear_rules()
    for broker in run.cluster.brokers:
        if broker.process.paused:
            broker.resume()
        (broker.data_dir / FILLER).unlink(missing_ok=True)
        env = broker.process.env or {}
        skewed = "FAKETIME" in env
        if skewed:
            env.pop("FAKETIME", None)
            env.pop("LD_PRELOAD", None)
            broker.stop(timeout=30)
        if not broker.running:
            broker.start(timeout=90)
    run.ensemble.heal(timeout=90)


def _log_bytes(broker_dir: Path, partition: int) -> bytes:
    directory = broker_dir / "data" / f"{TOPIC}-{partition}"
    return b"".join(p.read_bytes() for p in sorted(directory.glob("*.log")))


def _divergent(cluster: LocalCluster, partitions: int) -> list[int]:
    return [
        p for p in range(partitions) if len({_log_bytes(b.dir, p) for b in cluster.brokers}) != 1
    ]


def _committed(cluster: LocalCluster) -> dict[int, int]:
    status, body = http_json(f"{cluster.any_url()}/groups/{GROUP}/offsets?topic={TOPIC}")
    if status != 200:
        return {}
    return {o["partition"]: o["offset"] for o in body["offsets"] if o["topic"] == TOPIC}


def _high_watermarks(cluster: LocalCluster, partitions: int) -> dict[int, int]:
    return {p: int(cluster.partition(TOPIC, p)["high_watermark"]) for p in range(partitions)}


async def _watchdog(run: _Run, world: World, t0: float) -> None:
    """Every second: a broker that is not running although no fault stopped it crashed.
    Record it (a liveness failure of the run) and start it again, so the run goes on."""
    while True:
        await asyncio.sleep(1.0)
        for broker in run.cluster.brokers:
            if broker.broker_id in world.down or broker.running:
                continue
            run.crashes.append(
                {
                    "broker": broker.broker_id,
                    "at_s": round(time.monotonic() - t0, 1),
                    "exit_status": broker.process.returncode,
                    "log_tail": broker.log_tail(30),
                }
            )
            world.down.add(broker.broker_id)
            try:
                await asyncio.to_thread(broker.start, timeout=90)
            except Exception as exc:
                last = str(exc).strip().splitlines()[-1:] or [repr(exc)]
                problem = f"broker {broker.broker_id} did not restart: {last[0]}"
                if problem not in run.liveness:
                    run.liveness.append(problem)
            finally:
                world.down.discard(broker.broker_id)


async def _workload(
    run: _Run, writer: IdempotentWriter, nemesis: Nemesis, world: World, t0: float
) -> None:
    config = run.config
    total_s = config.minutes * 60
    schedule = plan(
        run.rng,
        list(config.kinds),
        start_s=WARMUP_S,
        end_s=max(WARMUP_S, total_s - QUIET_TAIL_S),
        overlap=config.overlap,
    )
    writing = asyncio.create_task(writer.run(duration_s=total_s + 600))
    for _ in range(config.consumers):
        run.add_consumer()
    watchdog = asyncio.create_task(_watchdog(run, world, t0))
    try:
        await nemesis.run(schedule, t0)
        await asyncio.sleep(max(0.0, t0 + total_s - time.monotonic()))
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
        await nemesis.heal_all()
    if run.crashes:
        run.liveness.append(f"{len(run.crashes)} broker crash(es): see 'crashes'")
    await asyncio.to_thread(_heal_everything, run)
    healed = await asyncio.to_thread(_wait, lambda: _in_sync(run.cluster, config.partitions), 120)
    if healed is None:
        run.liveness.append("replicas not all in sync 120 s after healing")
    run.timings["in_sync_after_heal_s"] = round(healed if healed is not None else -1.0, 2)
    await asyncio.sleep(3)  # writes on the healed cluster
    writer.stop()
    await writing
    await _drain_consumers(run)


async def _drain_consumers(run: _Run) -> None:
    """Let the group commit up to every partition's high watermark (bounded), then stop."""
    partitions = run.config.partitions

    def caught_up() -> bool:
        with contextlib.suppress(Exception):
            ends = _high_watermarks(run.cluster, partitions)
            committed = _committed(run.cluster)
            return all(committed.get(p, 0) >= ends[p] for p in range(partitions))
        return False

    drained = await asyncio.to_thread(_wait, caught_up, 90, 1.0)
    if drained is None:
        run.liveness.append("consumer group did not commit up to the end within 90 s")
    for consumer, _ in run.consumers.values():
        consumer.stop()
    await asyncio.gather(*(task for _, task in run.consumers.values()), return_exceptions=True)


async def _final_reads(run: _Run) -> dict[int, list[tuple[int, Any]]]:
    url = run.cluster.any_url()
    return {p: await read_partition(url, TOPIC, p) for p in range(run.config.partitions)}


def _claims(cluster: LocalCluster) -> list[tuple[int, int]]:
    lines: list[str] = []
    for broker in cluster.brokers:
        with contextlib.suppress(OSError):
            lines += broker.process.log_path.read_text(errors="replace").splitlines()
    return controller_claims(lines)


async def _run_async(run: _Run) -> dict[str, Any]:
    config = run.config
    monitor = ZooKeeperMonitor(run.cluster.zookeeper_connect, TOPIC, config.partitions)
    monitor.start()
    writer = IdempotentWriter(
        urls=run.cluster.urls,
        topic=TOPIC,
        partitions=config.partitions,
        batch=5,
        timeout_s=10.0,
        pause_s=0.02,
    )
    world = World(
        cluster=run.cluster,
        ensemble=run.ensemble,
        sandbox=run.sandbox,
        topic=TOPIC,
        partitions=config.partitions,
        rng=run.rng,
        crash_member=run.crash_member,
        add_member=run.add_member,
    )
    nemesis = Nemesis(world)
    t0 = time.monotonic()
    try:
        await _workload(run, writer, nemesis, world, t0)
    finally:
        monitor.stop()
    end = time.monotonic()
    logs = await _final_reads(run)
    identical = await asyncio.to_thread(
        _wait, lambda: not _divergent(run.cluster, config.partitions), 60, 1.0
    )
    history = History(
        writer=writer,
        logs=logs,
        polls=run.polls,
        commits=run.commits,
        final_committed=await asyncio.to_thread(_committed, run.cluster),
        controllers=monitor.controllers,
        states=monitor.states,
        controller_claims=await asyncio.to_thread(_claims, run.cluster),
        divergent=[] if identical is not None else _divergent(run.cluster, config.partitions),
    )
    result = check_all(history)
    gaps = longest_gaps(writer.attempts, config.partitions, t0, end)
    run.timings["longest_write_gap_s"] = max(gaps)
    if max(gaps) > MAX_WRITE_GAP_S:
        run.liveness.append(
            f"a partition took no write for {max(gaps):.0f} s (bound {MAX_WRITE_GAP_S:.0f} s)"
        )
    per_fault, per_kind = availability(
        writer.attempts, run.commits, nemesis.records, config.partitions, end
    )
    report = _report(
        run,
        result=result,
        writer=writer,
        nemesis=nemesis,
        per_fault=per_fault,
        per_kind=per_kind,
        t0=t0,
        end=end,
    )
    report["monitor"] = {
        "controller_changes": len(monitor.controllers),
        "leader_changes": len(monitor.states),
        "errors": monitor.errors,
    }
    title = (
        f"kbroker chaos: seed {config.seed}, {config.minutes:g} min, "
        f"{len(nemesis.records)} faults, {'CLEAN' if report['ok'] else 'ANOMALIES'}"
    )
    with contextlib.suppress(ImportError):
        draw_timeline(
            config.out / "timeline.png",
            attempts=writer.attempts,
            commits=run.commits,
            faults=nemesis.records,
            partitions=config.partitions,
            t0=t0,
            end=end,
            title=title,
            crashes=[t0 + c["at_s"] for c in run.crashes],
        )
    return report


def _report(
    run: _Run,
    *,
    result: ChaosResult,
    writer: IdempotentWriter,
    nemesis: Nemesis,
    per_fault: list[dict[str, Any]],
    per_kind: dict[str, dict[str, Any]],
    t0: float,
    end: float,
) -> dict[str, Any]:
    config = run.config
    faults = [
        {**record.as_json(t0), **stats}
        for record, stats in zip(nemesis.records, per_fault, strict=True)
    ]
    return {
        "ok": result.ok and not run.liveness,
        "seed": config.seed,
        "minutes": config.minutes,
        "workload_s": round(end - t0, 1),
        "partitions": config.partitions,
        "kinds": list(config.kinds),
        "command": f"python -m kbroker.testing.chaos --minutes {config.minutes:g} "
        f"--seed {config.seed}",
        "check": result.as_json(),
        "liveness": run.liveness,
        "crashes": run.crashes,
        "timings": run.timings,
        "availability_by_kind": per_kind,
        "faults": faults,
        "faults_skipped": [p.kind for p in nemesis.skipped],
        "writer_failures": dict(writer.failures.most_common()),
        "sequence_answers": [list(a) for a in writer.sequence_answers[:50]],
        "consumer_errors": {n: c.errors for n, (c, _) in run.consumers.items()},
    }


def run(config: RunConfig) -> dict[str, Any]:
    """One whole run (see the module docstring); returns the report (also in ``--out``)."""
    if "clock-skew" in config.kinds and not Path(LIBFAKETIME).is_file():
        raise SandboxError(f"clock-skew needs {LIBFAKETIME} (apt-get install libfaketime)")
    config.out.mkdir(parents=True, exist_ok=True)
    REGISTRY.mkdir(parents=True, exist_ok=True)
    work = Path(REGISTRY / f"run-{config.seed}-{int(time.time())}")
    sandbox = Sandbox(base_dir=work, brokers=BROKERS)
    cluster: LocalCluster | None = None
    report: dict[str, Any] = {"ok": False, "seed": config.seed, "error": "set-up failed"}

    def teardown() -> None:
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
        sandbox.close()

    atexit.register(teardown)
    try:
        setup_started = time.monotonic()
        cluster = _start_cluster(config, work, sandbox)
        assert cluster.ensemble is not None
        state = _Run(
            config=config,
            cluster=cluster,
            ensemble=cluster.ensemble,
            sandbox=sandbox,
            rng=random.Random(config.seed),
        )
        state.timings["setup_s"] = round(time.monotonic() - setup_started, 1)
        report = asyncio.run(_run_async(state))
    except Exception as exc:
        report["error"] = "".join(traceback.format_exception(exc))
    finally:
        _keep_logs(work, config.out)
        teardown()
        atexit.unregister(teardown)
        if not config.keep:
            shutil.rmtree(work, ignore_errors=True)
    (config.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _keep_logs(work: Path, out: Path) -> None:
    """Broker and ZooKeeper logs, gzipped, into the report directory."""
    for log in [*work.glob("broker*/broker.log"), *work.glob("zookeeper/zk*/zookeeper.log")]:
        with contextlib.suppress(OSError), log.open("rb") as src:
            target = out / "logs" / f"{log.parent.name}.log.gz"
            target.parent.mkdir(exist_ok=True)
            with gzip.open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


def summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    check = report.get("check", {})
    lines = [
        f"chaos run seed={report.get('seed')} ok={report.get('ok')} "
        f"workload={report.get('workload_s')} s faults={len(report.get('faults', []))}",
        "totals: " + " ".join(f"{k}={v}" for k, v in check.get("totals", {}).items()),
        "anomalies: " + " ".join(f"{k}={v}" for k, v in check.get("anomalies", {}).items()),
    ]
    for kind, figures in report.get("availability_by_kind", {}).items():
        lines.append(
            f"  {kind:16} n={figures['faults']:3} unavailable median {figures['median_s']:6.2f} s"
            f"  max {figures['max_s']:6.2f} s"
        )
    lines += [f"liveness: {problem}" for problem in report.get("liveness", [])]
    if "error" in report:
        lines.append(f"error: {report['error']}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kbroker.testing.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="workload length")
    parser.add_argument("--seed", type=int, default=None, help="fault schedule seed")
    parser.add_argument("--out", type=Path, default=None, help="report directory")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument(
        "--faults", default=",".join(KINDS), help=f"comma-separated kinds of {sorted(KINDS)}"
    )
    parser.add_argument("--keep", action="store_true", help="keep the cluster's directories")
    parser.add_argument(
        "--cleanup", action="store_true", help="undo what dead runs left behind, then exit"
    )
    parser.add_argument("--force", action="store_true", help="with --cleanup: live runs too")
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cleanup:
        cleaned = cleanup_stale(force=args.force)
        print(f"cleaned {len(cleaned)} run(s): {' '.join(cleaned)}")
        return 0
    kinds = tuple(k for k in args.faults.split(",") if k)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        print(f"unknown fault kinds {unknown}; choose from {sorted(KINDS)}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("build/chaos") / f"{stamp}-seed{seed}"
    config = RunConfig(
        minutes=args.minutes,
        seed=seed,
        out=out,
        partitions=args.partitions,
        consumers=args.consumers,
        kinds=kinds,
        keep=args.keep,
    )
    signal.signal(signal.SIGTERM, _terminate)
    print(f"chaos: seed {seed}, {args.minutes:g} min, report in {out}", flush=True)
    try:
        report = run(config)
    except SandboxError as exc:
        print(f"chaos: cannot set up: {exc}", file=sys.stderr)
        return 2
    print(summary(report))
    if report.get("ok"):
        return 0
    return 2 if "workload_s" not in report else 1
