"""The quick and full suites: which systems run together, in which order, how often.

Two phases share one ZooKeeper node:

* **single node** (RF 1): the bare aiohttp server, one kbroker broker (acks=1, 4 partitions),
  Redis (one stream) and one nats-server (one R1 stream) run side by side, idle unless measured.
* **replicated** (RF 3): three kbroker brokers (a 3-partition topic, one leader each, acks=all,
  min.insync.replicas 2) and three nats-servers (three R3 streams, round-robin publishes).

Headline comparisons alternate the systems (kbroker, peer, kbroker, peer...) for ``reps``
repetitions and report medians; every sample starts after :func:`bench.model.settle` (sync, a
quiet CPU). A phase's systems are stopped and their data deleted and synced before the next
phase starts. A failing measurement is recorded as a failed row and the suite goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

from bench import pyclients, workloads
from bench.model import Row, Sample, Settled, settle
from bench.systems import (
    KBroker,
    NatsHandle,
    RedisHandle,
    bare_server,
    kbroker_cluster,
    kbroker_single,
    nats_cluster,
    nats_server,
    redis_server,
    zookeeper,
)

__all__ = ["PHASES", "Config", "Recorder", "rf1_produce", "run_suite"]

HEADLINE: Final = (1000, 64)
"""(records per request, connections) of the headline produce comparison."""
RF1_TOPIC_PARTITIONS: Final = 4
#: The single broker of the RF1 rows (phase 1 and the durable phase). Two HTTP worker
#: processes take its client connections and do the JSON work (docs/architecture.md); in the
#: full runs on this 2-core machine they gave 1.19-1.40x the produce and 1.00-1.22x the fetch
#: of the broker alone, which the full suite's workers phase measures again in every run.
RF1_WORKERS: Final = 2
RF1_SETTINGS: Final = {"num.http.workers": str(RF1_WORKERS)}
RF1_MODE: Final = f"RF1 acks=1, num.http.workers={RF1_WORKERS}"
RF3_PARTITIONS: Final = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """What a suite run does: ``full`` adds the whole shape matrix, more repetitions, longer
    latency runs and the scale curves."""

    root: Path
    full: bool
    seconds: int
    """Length of each time-bounded load (wrk, Go clients)."""
    reps: int
    """Repetitions of the headline comparisons (alternating systems)."""
    latency_seconds: int
    goal: int = 1_000_000
    """Records of each count-bounded load (redis-benchmark, Go clients, fetches)."""
    budget: float | None = None
    """Seconds the suite may take (quick: the 5-minute limit less start-up and report); the
    optional rows (Python clients, fetch variants) are skipped when they would not fit."""

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """Produce shapes besides the headline: (records per request, connections)."""
        if self.full:
            return [(r, c) for r in (1000, 100, 1) for c in (64, 1) if (r, c) != HEADLINE]
        return [(1000, 1), (100, 64), (1, 1), (1, 64)]


@dataclass(slots=True)
class Recorder:
    """Collects rows in order and takes every sample the same way (settle, run, record)."""

    rows: dict[str, Row] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    quiet_wait: float = 3.0
    """Longest wait for a quiet CPU before a sample (see :func:`bench.model.settle`)."""

    def elapsed(self) -> float:
        """Seconds since the suite started."""
        return time.monotonic() - self.started

    def log(self, text: str) -> None:
        """Print a progress line with the elapsed time."""
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    def row(self, key: str, **fields: Any) -> Row:
        """The row ``key``, created with ``fields`` on first use."""
        if key not in self.rows:
            self.rows[key] = Row(key=key, **fields)
        return self.rows[key]

    def measure(self, row: Row, run: Callable[[], Sample], *, settle_first: bool = True) -> None:
        """Take one sample for ``row``; a failure marks the row instead of stopping the suite."""
        settled: Settled | None = settle(max_wait=self.quiet_wait) if settle_first else None
        try:
            sample = run()
        except Exception as exc:
            failure = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
            row.failures.append(failure)
            self.log(f"{row.key}: FAILED {failure}")
            traceback.print_exc()
            return
        row.samples.append(dataclasses.replace(sample, settled=settled))
        load = f" load {settled.load_avg_1m} busy {settled.busy_before:.0%}" if settled else ""
        self.log(
            f"{row.key:<44} {sample.records_per_second:>12,.0f} rec/s "
            f"({sample.records:,} in {sample.seconds:.1f} s, {sample.errors} errors){load}"
        )

    def skip(self, key: str, reason: str, **fields: Any) -> None:
        """Record that ``key`` was not measured, and why."""
        row = self.row(key, **fields)
        row.skipped = reason
        self.log(f"{key}: skipped ({reason})")


@dataclass(frozen=True, slots=True)
class Contender:
    """One system in one mode with one load generator, able to run a produce shape."""

    slug: str
    system: str
    mode: str
    client: str
    produce: Callable[[int, int], Sample]
    python_client: bool = False

    def row(self, rec: Recorder, batch: int, connections: int) -> Row:
        """This contender's row for one produce shape."""
        return rec.row(
            f"produce/{self.slug}/r{batch}-c{connections}",
            workload="produce",
            system=self.system,
            mode=self.mode,
            client=self.client,
            python_client=self.python_client,
            records_per_request=batch,
            connections=connections,
        )


def _room(rec: Recorder, cfg: Config, reserve: float, what: str) -> bool:
    """True if ``what`` fits in the time budget with ``reserve`` seconds left for the rest."""
    if cfg.budget is None or rec.elapsed() + reserve < cfg.budget:
        return True
    rec.log(f"skipping {what}: {rec.elapsed():.0f} s spent of the {cfg.budget:.0f} s budget")
    return False


def _produce_rounds(
    rec: Recorder, cfg: Config, contenders: list[Contender], *, bare_all_shapes: bool
) -> None:
    """The headline shape alternating over ``reps``, then every other shape once."""
    for rep in range(cfg.reps):
        rec.log(f"headline produce, repetition {rep + 1}/{cfg.reps}")
        for c in contenders:
            rec.measure(c.row(rec, *HEADLINE), partial(c.produce, *HEADLINE))
    for shape in cfg.shapes:
        for c in contenders:
            if c.system == "bare-aiohttp" and not bare_all_shapes and shape[0] != 1000:
                continue
            rec.measure(c.row(rec, *shape), partial(c.produce, *shape))


# -- phase 1: single node ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Single:
    bare_url: str
    kb: KBroker
    redis: RedisHandle
    nats: NatsHandle


def _single_contenders(cfg: Config, s: _Single) -> list[Contender]:
    return [
        Contender(
            "bare-aiohttp",
            "bare-aiohttp",
            "append to file (limit)",
            "wrk (C)",
            lambda b, c: workloads.bare_produce(s.bare_url, b, c, cfg.seconds),
        ),
        Contender(
            "kbroker-rf1",
            "kbroker",
            RF1_MODE,
            "wrk (C)",
            lambda b, c: workloads.kbroker_produce(
                s.kb,
                "bench",
                RF1_TOPIC_PARTITIONS,
                batch=b,
                connections=c,
                seconds=cfg.seconds,
                acks="1",
                per_leader=False,
            ),
        ),
        Contender(
            "redis",
            "redis",
            "AOF everysec",
            "redis-benchmark (C)",
            lambda b, c: workloads.redis_produce(
                s.redis, "bench", batch=b, connections=c, goal=cfg.goal
            ),
        ),
        Contender(
            "nats-r1",
            "nats",
            "JetStream file R1",
            "Go nats.go",
            lambda b, c: workloads.nats_produce(
                s.nats, ["bench"], batch=b, connections=c, goal=cfg.goal, seconds=cfg.seconds
            ),
        ),
    ]


def _python_produce(rec: Recorder, cfg: Config, s: _Single) -> None:
    goal, secs = cfg.goal, float(cfg.seconds)
    body = workloads.batch_body(1000)
    rows = [
        (
            "kbroker",
            RF1_MODE,
            "Python aiohttp",
            lambda: pyclients.aiohttp_produce(
                f"{s.kb.url}/topics/bench?acks=1", body, 1000, goal=goal, seconds=secs
            ),
        ),
        (
            "redis",
            "AOF everysec",
            "Python redis-py",
            lambda: pyclients.redis_py_xadd(s.redis.port, "bench", 1000, goal=goal, seconds=secs),
        ),
        (
            "nats",
            "JetStream file R1",
            "Python nats-py",
            lambda: pyclients.nats_py_publish(s.nats.url, "bench", 4000, goal=goal, seconds=secs),
        ),
    ]
    for system, mode, client, run in rows:
        row = rec.row(
            f"produce/{system}-python/r1000-c4",
            workload="produce",
            system=system,
            mode=mode,
            client=client,
            python_client=True,
            records_per_request=1000,
            connections=4,
        )
        rec.measure(row, run)


def _fetch_row(rec: Recorder, key: str, system: str, mode: str, client: str, **kw: Any) -> Row:
    return rec.row(
        key,
        workload="fetch",
        system=system,
        mode=mode,
        client=client,
        records_per_request=kw.get("records_per_request", 1000),
        connections=4,
        python_client=kw.get("python_client", False),
    )


def _fetches(rec: Recorder, cfg: Config, s: _Single) -> None:
    goal, secs = cfg.goal, float(cfg.seconds * 4)
    for rep in range(cfg.reps):
        rec.log(f"headline fetch, repetition {rep + 1}/{cfg.reps}")
        rec.measure(
            _fetch_row(rec, "fetch/kbroker-rf1/stateless", "kbroker", "stateless", "Go net/http"),
            lambda: workloads.kbroker_fetch(
                s.kb, "bench", RF1_TOPIC_PARTITIONS, records=goal, max_records=1000, seconds=secs
            ),
        )
        rec.measure(
            _fetch_row(
                rec,
                "fetch/redis/xreadgroup",
                "redis",
                "XREADGROUP COUNT 1000",
                "redis-benchmark (C)",
            ),
            partial(workloads.redis_fetch, s.redis, "bench", f"g{rep}", records=goal),
        )
    if not _room(rec, cfg, 125, "the fetch variants"):
        return
    rec.measure(
        _fetch_row(
            rec,
            "fetch/kbroker-rf1/stateless-1mib",
            "kbroker",
            "stateless, max_bytes 1 MiB",
            "Go net/http",
            records_per_request=None,
        ),
        lambda: workloads.kbroker_fetch(
            s.kb, "bench", RF1_TOPIC_PARTITIONS, records=goal, max_records=None, seconds=secs
        ),
    )
    rec.measure(
        _fetch_row(
            rec,
            "fetch/kbroker-rf1/batches-1mib",
            "kbroker",
            "raw batches, max_bytes 1 MiB",
            "Go net/http",
            records_per_request=None,
        ),
        partial(
            workloads.kbroker_fetch,
            s.kb,
            "bench",
            RF1_TOPIC_PARTITIONS,
            records=goal,
            max_records=None,
            seconds=secs,
            batches=True,
        ),
    )
    rec.measure(
        _fetch_row(rec, "fetch/nats-r1/pull", "nats", "pull fetch 1000", "Go nats.go"),
        lambda: workloads.nats_fetch(
            s.nats, "bench", "bench", "reader", records=goal, seconds=secs
        ),
    )
    if _room(rec, cfg, 115, "the Python-client fetch rows"):
        _python_fetches(rec, cfg, s)


def _python_fetches(rec: Recorder, cfg: Config, s: _Single) -> None:
    goal, secs = cfg.goal, float(cfg.seconds)
    leaders = s.kb.leaders("bench")
    rec.measure(
        _fetch_row(
            rec,
            "fetch/kbroker-python/stateless",
            "kbroker",
            "stateless",
            "Python aiohttp",
            python_client=True,
        ),
        lambda: _aiohttp_fetch(leaders, goal, secs),
    )
    rec.measure(
        _fetch_row(
            rec,
            "fetch/redis-python/xreadgroup",
            "redis",
            "XREADGROUP COUNT 1000",
            "Python redis-py",
            python_client=True,
        ),
        lambda: pyclients.redis_py_xreadgroup(s.redis.port, "bench", "py", goal=goal, seconds=secs),
    )
    workloads.nats_add_consumer(s.nats, "bench", "pyreader", "bench")
    rec.measure(
        _fetch_row(
            rec,
            "fetch/nats-python/pull",
            "nats",
            "pull fetch 1000",
            "Python nats-py",
            python_client=True,
        ),
        lambda: pyclients.nats_py_fetch(
            s.nats.url, "bench", "pyreader", "bench", goal=goal, seconds=secs
        ),
    )
    reason = pyclients.kclient_consumer_available()
    fields = {
        "workload": "fetch",
        "system": "kbroker",
        "mode": "consumer, batches",
        "client": "Python kclient.aio",
        "python_client": True,
        "connections": 1,
    }
    if reason is not None:
        rec.skip("fetch/kbroker-kclient/consumer", reason, **fields)
        return
    rec.measure(
        rec.row("fetch/kbroker-kclient/consumer", **fields),
        lambda: pyclients.kclient_fetch(
            s.kb.url, "bench", RF1_TOPIC_PARTITIONS, goal=goal, seconds=secs
        ),
    )


def _aiohttp_fetch(leaders: list[str], goal: int, seconds: float) -> Sample:
    import asyncio  # noqa: PLC0415

    from bench.fetch import fetch_partitions  # noqa: PLC0415

    result = asyncio.run(
        fetch_partitions(
            leaders, "bench", records_each=goal // len(leaders), max_records=1000, seconds=seconds
        )
    )
    return Sample(
        records=result.records,
        seconds=result.seconds,
        bytes=result.bytes,
        requests=result.requests,
        timed_out=result.records < goal,
    )


def _latency(
    rec: Recorder, cfg: Config, row_key: str, system: str, mode: str, **target: str
) -> None:
    """One open-loop latency run (``target["kind"]`` picks kbload's -system)."""
    row = rec.row(
        row_key,
        workload="latency",
        system=system,
        mode=mode,
        client="Go (open loop)",
        records_per_request=100,
        connections=8,
    )
    holder: dict[str, Any] = {}
    kind = target.pop("kind")

    def run() -> Sample:
        doc = workloads.latency(kind, seconds=cfg.latency_seconds, target=target)
        holder.update(doc)
        return Sample(
            records=int(doc["records_received"]),
            seconds=float(doc["seconds"]),
            requests=int(doc["requests"]),
            errors=int(doc["errors"]),
            p50_ms=float(doc["e2e"]["p50_ms"]),
            p99_ms=float(doc["e2e"]["p99_ms"]),
            p999_ms=float(doc["e2e"]["p999_ms"]),
        )

    rec.measure(row, run)
    if holder:
        row.extra = holder
        rec.log(
            f"  ack p50/p99/p99.9 {holder['ack']['p50_ms']}/{holder['ack']['p99_ms']}/"
            f"{holder['ack']['p999_ms']} ms; e2e {holder['e2e']['p50_ms']}/"
            f"{holder['e2e']['p99_ms']}/{holder['e2e']['p999_ms']} ms"
        )


def _phase_single(rec: Recorder, cfg: Config, zk: str) -> None:
    root = cfg.root
    rec.log("phase 1: single node (bare aiohttp, kbroker RF1, Redis, NATS R1)")
    with contextlib.ExitStack() as stack:
        bare = stack.enter_context(bare_server(root))
        kb = stack.enter_context(kbroker_single(root, zk, chroot="/rf1", settings=RF1_SETTINGS))
        redis = stack.enter_context(redis_server(root))
        nats = stack.enter_context(nats_server(root))
        kb.create_topic("bench", partitions=RF1_TOPIC_PARTITIONS)
        kb.create_topic("latency", partitions=RF1_TOPIC_PARTITIONS)
        workloads.nats_add_streams(nats, [("bench", "bench"), ("latency", "latency")], 1)
        s = _Single(bare_url=bare.url, kb=kb, redis=redis, nats=nats)
        rec.log("systems up")
        _produce_rounds(rec, cfg, _single_contenders(cfg, s), bare_all_shapes=cfg.full)
        if _room(rec, cfg, 150, "the Python-client produce rows"):
            _python_produce(rec, cfg, s)
        _fetches(rec, cfg, s)
        _latency(
            rec,
            cfg,
            "latency/redis",
            "redis",
            "AOF everysec",
            kind="redis",
            addr=redis.addr,
            key="latency",
        )
        if cfg.full:
            _latency(
                rec,
                cfg,
                "latency/kbroker-rf1",
                "kbroker",
                RF1_MODE,
                kind="kbroker",
                urls=",".join(kb.leaders("latency")),
                topic="latency",
                acks="1",
            )
            _latency(
                rec,
                cfg,
                "latency/nats-r1",
                "nats",
                "JetStream file R1",
                kind="nats",
                nats=nats.url,
                subjects="latency",
            )


# -- phase 2: replicated -------------------------------------------------------------------------


def _phase_replicated(rec: Recorder, cfg: Config, zk: str) -> None:
    root = cfg.root
    rec.log("phase 2: replicated (kbroker RF3 acks=all on 3 brokers, NATS R3 on 3 servers)")
    with contextlib.ExitStack() as stack:
        kb = stack.enter_context(kbroker_cluster(root, zk, chroot="/rf3"))
        nats = stack.enter_context(nats_cluster(root))
        configs = {"min.insync.replicas": "2"}
        for topic in ("bench", "latency"):
            kb.create_topic(topic, partitions=RF3_PARTITIONS, replication_factor=3, configs=configs)
        subjects = [f"bench.{i}" for i in range(RF3_PARTITIONS)]
        latency_subjects = [f"latency.{i}" for i in range(RF3_PARTITIONS)]
        workloads.nats_add_streams(
            nats,
            [(f"bench{i}", s) for i, s in enumerate(subjects)]
            + [(f"latency{i}", s) for i, s in enumerate(latency_subjects)],
            3,
        )
        rec.log("systems up")
        contenders = [
            Contender(
                "kbroker-rf3",
                "kbroker",
                "RF3 acks=all",
                "wrk (C)",
                lambda b, c: workloads.kbroker_produce(
                    kb,
                    "bench",
                    RF3_PARTITIONS,
                    batch=b,
                    connections=c,
                    seconds=cfg.seconds,
                    acks="all",
                    per_leader=True,
                ),
            ),
            Contender(
                "nats-r3",
                "nats",
                "JetStream file R3",
                "Go nats.go",
                lambda b, c: workloads.nats_produce(
                    nats, subjects, batch=b, connections=c, goal=cfg.goal, seconds=cfg.seconds
                ),
            ),
        ]
        if cfg.full:
            _produce_rounds(rec, cfg, contenders, bare_all_shapes=False)
        else:
            for rep in range(cfg.reps):
                rec.log(f"headline RF3 produce, repetition {rep + 1}/{cfg.reps}")
                for c in contenders:
                    rec.measure(c.row(rec, *HEADLINE), partial(c.produce, *HEADLINE))
        _latency(
            rec,
            cfg,
            "latency/kbroker-rf3",
            "kbroker",
            "RF3 acks=all",
            kind="kbroker",
            urls=",".join(kb.leaders("latency", 3)),
            topic="latency",
            acks="all",
        )
        _latency(
            rec,
            cfg,
            "latency/nats-r3",
            "nats",
            "JetStream file R3",
            kind="nats",
            nats=nats.url,
            subjects=",".join(latency_subjects),
        )


def _phase_durable(rec: Recorder, cfg: Config, zk: str) -> None:
    """Full suite only: kbroker RF1 with an fsync every second (Redis's everysec)."""
    rec.log("phase 3: kbroker RF1 with log.flush.interval.ms=1000")
    with kbroker_single(
        cfg.root,
        zk,
        chroot="/rf1-fsync",
        settings={**RF1_SETTINGS, "log.flush.interval.ms": "1000"},
    ) as kb:
        kb.create_topic("bench", partitions=RF1_TOPIC_PARTITIONS)
        c = Contender(
            "kbroker-rf1-fsync1s",
            "kbroker",
            f"{RF1_MODE}, fsync every 1 s",
            "wrk (C)",
            lambda b, n: workloads.kbroker_produce(
                kb,
                "bench",
                RF1_TOPIC_PARTITIONS,
                batch=b,
                connections=n,
                seconds=cfg.seconds,
                acks="1",
                per_leader=False,
            ),
        )
        for _ in range(cfg.reps):
            rec.measure(c.row(rec, *HEADLINE), lambda: c.produce(*HEADLINE))


@contextlib.contextmanager
def _shared_zookeeper(root: Path) -> Iterator[str]:
    with zookeeper(root) as connect:
        yield connect


def _phase_workers(rec: Recorder, cfg: Config, zk: str) -> None:
    """Full suite only: one broker with ``num.http.workers`` 0 and one with RF1_WORKERS (HTTP
    worker processes that take the connections and do the JSON work), alternated."""
    rec.log(f"phase 4: kbroker RF1 with num.http.workers 0 and {RF1_WORKERS}")
    with contextlib.ExitStack() as stack:
        brokers = {
            workers: stack.enter_context(
                kbroker_single(
                    cfg.root,
                    zk,
                    chroot=f"/workers{workers}",
                    settings={"num.http.workers": str(workers)},
                )
            )
            for workers in (0, RF1_WORKERS)
        }
        for kb in brokers.values():
            kb.create_topic("bench", partitions=RF1_TOPIC_PARTITIONS)
        for rep in range(cfg.reps):
            rec.log(f"workers, repetition {rep + 1}/{cfg.reps}")
            for workers, kb in brokers.items():
                mode = f"RF1 acks=1, num.http.workers={workers}"
                c = Contender(
                    f"kbroker-rf1-workers{workers}",
                    "kbroker",
                    mode,
                    "wrk (C)",
                    partial(rf1_produce, cfg, kb),
                )
                rec.measure(c.row(rec, *HEADLINE), partial(c.produce, *HEADLINE))
                row = _fetch_row(
                    rec,
                    f"fetch/kbroker-rf1-workers{workers}/stateless",
                    "kbroker",
                    mode,
                    "Go net/http",
                )
                rec.measure(
                    row,
                    partial(
                        workloads.kbroker_fetch,
                        kb,
                        "bench",
                        RF1_TOPIC_PARTITIONS,
                        records=cfg.goal,
                        max_records=1000,
                        seconds=float(cfg.seconds * 4),
                    ),
                )


def rf1_produce(
    cfg: Config, kb: KBroker, batch: int, connections: int, *, topic: str = "bench"
) -> Sample:
    """wrk produce of ``batch`` records per request to a single broker's ``topic``, acks=1."""
    return workloads.kbroker_produce(
        kb,
        topic,
        RF1_TOPIC_PARTITIONS,
        batch=batch,
        connections=connections,
        seconds=cfg.seconds,
        acks="1",
        per_leader=False,
    )


PHASES: Final = (
    "single",
    "replicated",
    "durable",
    "flush",
    "workers",
    "clients",
    "commits",
    "scale",
)
"""Phase names for ``--only``; all but single and replicated run in the full suite only."""


def run_suite(cfg: Config, rec: Recorder, only: frozenset[str] | None = None) -> None:
    """Run the suite ``cfg`` describes (only the phases in ``only``, if given), recording
    into ``rec``."""

    def wanted(phase: str) -> bool:
        return only is None or phase in only

    with _shared_zookeeper(cfg.root) as zk:
        rec.log(f"zookeeper up at {zk}")
        if wanted("single"):
            _phase_single(rec, cfg, zk)
        if wanted("replicated"):
            _phase_replicated(rec, cfg, zk)
        if not cfg.full:
            return
        if wanted("durable"):
            _phase_durable(rec, cfg, zk)
        from bench import clients  # noqa: PLC0415 - it builds on this module

        if wanted("flush"):
            clients.phase_flush(rec, cfg, zk)
        if wanted("workers"):
            _phase_workers(rec, cfg, zk)
        if wanted("clients"):
            clients.phase_clients(rec, cfg, zk)
        if wanted("commits"):
            clients.phase_commits(rec, cfg, zk)
        if wanted("scale"):
            from bench.scale import scale_curves  # noqa: PLC0415

            scale_curves(rec, cfg, zk)
