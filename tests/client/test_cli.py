"""kbctl end to end: the installed entry point against a real broker (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kclient import Admin, Consumer, ConsumerRecord, Producer, TopicPartition
from tests.client.conftest import unique

KBCTL = str(Path(sys.executable).parent / "kbctl")


def kbctl(
    url: str | None, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "KBROKER_URL"} | (env or {})
    environ["NO_COLOR"] = "1"
    argv = [KBCTL, *(["--bootstrap", url] if url else []), *args]
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, env=environ, timeout=120, check=False
    )


def ok(url: str, *args: str, stdin: str | None = None) -> str:
    done = kbctl(url, *args, stdin=stdin)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def as_json(url: str, *args: str, stdin: str | None = None) -> Any:
    return json.loads(ok(url, *args, "--output", "json", stdin=stdin))


def test_usage_errors_and_unreachable_brokers(url: str) -> None:
    started = time.monotonic()
    assert kbctl(None, "--help").returncode == 0
    assert time.monotonic() - started < 5
    for seconds in ("-1", "0"):
        refused = kbctl(url, "--timeout", seconds, "topics", "list")
        assert refused.returncode == 2 and "--timeout must be > 0" in refused.stderr, refused
    assert "no brokers" in kbctl(None, "topics", "list").stderr
    assert kbctl(None, "topics", "list").returncode == 2
    assert kbctl(url, "topics", "frobnicate").returncode == 2
    assert kbctl(url, "topics", "create", "x", "--partitions", "many").returncode == 2
    bad = kbctl(url, "topics", "create", "x", "--config", "novalue")
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr
    down = kbctl("http://127.0.0.1:9", "cluster")
    assert down.returncode == 3 and "cannot reach the cluster" in down.stderr
    env_only = kbctl(None, "cluster", env={"KBROKER_URL": url})
    assert env_only.returncode == 0, env_only.stderr
    failed = kbctl(url, "topics", "describe", "nope")
    assert failed.returncode == 1 and "UnknownTopicError: [40401]" in failed.stderr


def test_cluster_and_topic_commands(url: str) -> None:
    name = unique("cli")
    cluster = as_json(url, "cluster")
    assert cluster["controller"] == 1 and cluster["brokers"][0]["url"] == url
    assert cluster["under_replicated_partitions"] == [] and cluster["offline_partitions"] == []
    assert as_json(url, "topics", "create", name, "-p", "2", "-c", "retention.ms=60000") == {
        "topic": name,
        "created": True,
    }
    assert kbctl(url, "topics", "create", name).returncode == 1
    assert as_json(url, "topics", "create", name, "--if-not-exists")["created"] is False
    listed = {t["name"]: t for t in as_json(url, "topics", "list")}
    assert listed[name]["partitions"] == 2
    ok(
        url,
        "topics",
        "alter",
        name,
        "--partitions",
        "3",
        "--config",
        "segment.ms=60000",
        "--delete-config",
        "retention.ms",
    )
    described = as_json(url, "topics", "describe", name)
    assert len(described["partitions"]) == 3
    assert described["overrides"] == {"segment.ms": "60000"}
    assert "segment.ms" in ok(url, "topics", "describe", name)
    assert "retention.ms" in ok(url, "topics", "describe", name, "--all-configs")
    assert kbctl(url, "topics", "alter", name).returncode == 2
    assert as_json(url, "topics", "delete", name)["deleted"] is True
    assert as_json(url, "topics", "delete", name, "--if-exists")["deleted"] is False
    assert kbctl(url, "topics", "delete", name).returncode == 1


def test_produce_options(url: str, topic: str, tmp_path: Path) -> None:
    summary = as_json(
        url,
        "produce",
        topic,
        "--key-separator",
        "\t",
        "--acks",
        "1",
        "-H",
        "origin=cli",
        stdin="k1\tv1\nk1\tv2\nno key\n",
    )
    assert (summary["records"], summary["delivered"], summary["failed"]) == (3, 3, 0)
    source = tmp_path / "lines.txt"
    source.write_bytes("é\n\nlast".encode())
    assert (
        as_json(url, "produce", topic, "--file", str(source), "--partition", "2", "--acks", "0")[
            "records"
        ]
        == 3
    )
    assert kbctl(url, "produce", topic, "--file", str(tmp_path / "missing")).returncode == 2
    assert kbctl(url, "produce", "no-such-topic", stdin="x\n").returncode == 1
    with Consumer(
        url, auto_offset_reset="earliest", key_deserializer="str", value_deserializer="str"
    ) as consumer:
        consumer.assign(TopicPartition(topic, p) for p in range(3))
        records: list[ConsumerRecord] = []
        while len(records) < 6:
            records += consumer.poll(1.0)
    keyed = sorted((r.key, r.value) for r in records if r.key)
    assert keyed == [("k1", "v1"), ("k1", "v2")]
    assert all(r.headers == (("origin", b"cli"),) for r in records if r.partition != 2)
    assert [r.value for r in records if r.partition == 2 and r.headers == ()] == ["é", "", "last"]


def test_consume_formats_offsets_and_groupless_tail(url: str, topic: str, group: str) -> None:
    with Producer(url) as producer:
        for i in range(5):
            producer.send(
                topic,
                b"v%d" % i,
                key=b"k%d" % i,
                partition=1,
                headers=[("n", b"%d" % i)],
                timestamp_ms=1000 + i,
            )
        producer.send(topic, b"\xff\xfe", partition=0)
    lines = ok(
        url,
        "consume",
        topic,
        "-p",
        "1",
        "--format",
        "{topic}|{partition}|{offset}|{timestamp}|{key}|{value}|{headers}",
    ).splitlines()
    assert lines[0] == f"{topic}|1|0|1000|k0|v0|n=0" and len(lines) == 5
    assert ok(url, "consume", topic, "-p", "1", "--offset", "3").splitlines() == ["v3", "v4"]
    assert len(ok(url, "consume", topic, "--max", "2").splitlines()) == 2
    docs = [json.loads(line) for line in ok(url, "consume", topic, "-o", "json").splitlines()]
    binary = next(d for d in docs if d["partition"] == 0)
    assert binary["value_encoding"] == "base64" and binary["value"] == "//4="
    assert {d["headers"].get("n") for d in docs if d["partition"] == 1} == {"0", "1", "2", "3", "4"}
    assert kbctl(url, "consume", topic, "--format", "{nope}").returncode == 2
    assert kbctl(url, "consume", topic, "--group", group, "-p", "1").returncode == 2
    with Admin(url) as admin:  # the groupless reads touched no group
        assert group not in {g.group_id for g in admin.list_groups()}


def test_consume_follow_and_group(url: str, topic: str, group: str) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "KBROKER_URL"}
    follower = subprocess.Popen(
        [KBCTL, "-b", url, "consume", topic, "--follow", "--max", "3", "-p", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=environ,
    )
    sent: list[str] = []
    stop = threading.Event()

    def keep_producing() -> None:  # until the follower (started at the end) has seen 3
        with Producer(url) as producer:
            while not stop.is_set() and len(sent) < 400:
                sent.append(f"live{len(sent)}")
                producer.send(topic, sent[-1].encode(), partition=0).result(10)
                time.sleep(0.1)

    writer = threading.Thread(target=keep_producing)
    writer.start()
    try:
        out, _ = follower.communicate(timeout=90)
    finally:
        stop.set()
        writer.join()
        follower.kill()
    lines = out.splitlines()
    assert follower.returncode == 0 and len(lines) == 3
    first = sent.index(lines[0])
    assert lines == sent[first : first + 3], "consecutive records from where it started"
    assert ok(url, "consume", topic, "--group", group).splitlines() == sent
    assert ok(url, "consume", topic, "--group", group) == ""  # committed on exit
    described = as_json(url, "groups", "describe", group)
    assert described["total_lag"] == 0 and described["state"] == "Empty"
    assert any(g["group_id"] == group for g in as_json(url, "groups", "list"))
    assert "LAG" in ok(url, "groups", "describe", group)


def test_consume_max_with_a_group_commits_only_what_it_printed(
    url: str, topic: str, group: str
) -> None:
    values = [f"m{i}" for i in range(9)]
    with Producer(url) as producer:
        for i, value in enumerate(values):
            producer.send(topic, value.encode(), partition=i % 3)
    first = ok(url, "consume", topic, "--group", group, "--max", "2").splitlines()
    assert len(first) == 2
    described = as_json(url, "groups", "describe", group)
    assert described["total_lag"] == len(values) - 2, described
    rest = ok(url, "consume", topic, "--group", group).splitlines()
    assert sorted(first + rest) == sorted(values)  # nothing skipped, nothing twice


def test_sigterm_stops_a_group_consumer_as_ctrl_c_does(url: str, topic: str, group: str) -> None:
    """It commits what it printed and leaves the group at once (not after its session)."""
    with Producer(url) as producer:
        producer.send(topic, b"first", partition=0).result(10)
    environ = {k: v for k, v in os.environ.items() if k != "KBROKER_URL"}
    with subprocess.Popen(
        [KBCTL, "-b", url, "consume", topic, "--group", group, "--follow", "--from-beginning"],
        stdout=subprocess.PIPE,
        text=True,
        env=environ,
    ) as follower:
        try:
            assert follower.stdout is not None
            assert follower.stdout.readline() == "first\n"
            follower.terminate()
            assert follower.wait(timeout=30) == 0
        finally:
            follower.kill()
    described = as_json(url, "groups", "describe", group)
    assert described["state"] == "Empty" and described["total_lag"] == 0, described


def test_consume_from_an_offset_past_the_end_fails(url: str, topic: str) -> None:
    with Producer(url) as producer:
        for _ in range(3):
            producer.send(topic, b"x", partition=0)
    assert ok(url, "consume", topic, "-p", "0", "--offset", "3") == ""  # the end: nothing yet
    done = kbctl(url, "consume", topic, "-p", "0", "--offset", "99")
    assert done.returncode == 1 and "out of range" in done.stderr, done.stderr
    assert done.stdout == ""


def test_consume_an_unknown_topic_fails_with_or_without_a_group(url: str, group: str) -> None:
    for extra in ([], ["--group", group]):
        done = kbctl(url, "consume", unique("missing"), "--idle-timeout", "3", *extra)
        assert done.returncode == 1 and "40401" in done.stderr, (extra, done.stderr)


def test_groups_reset_offsets(url: str, topic: str, group: str) -> None:
    with Producer(url) as producer:
        for i in range(4):
            producer.send(topic, b"x", partition=0, timestamp_ms=1_700_000_000_000 + i * 1000)
    ok(url, "consume", topic, "--group", group)

    def reset(*args: str) -> dict[int, int]:
        rows = as_json(url, "groups", "reset-offsets", group, "--topic", topic, *args)
        return {row["partition"]: row["offset"] for row in rows}

    assert reset("--to-earliest") == {0: 0, 1: 0, 2: 0}
    assert reset("--to-latest", "-p", "0") == {0: 4}
    assert reset("--to-offset", "2", "-p", "0") == {0: 2}
    assert reset("--to-timestamp", "1700000001000", "-p", "0") == {0: 1}
    assert reset("--to-datetime", "2023-11-14T22:13:22Z", "-p", "0") == {0: 2}
    assert "NEW OFFSET" in ok(url, "groups", "reset-offsets", group, "-t", topic, "--to-earliest")
    assert kbctl(url, "groups", "reset-offsets", group, "-t", topic).returncode == 2
    assert (
        kbctl(
            url, "groups", "reset-offsets", group, "-t", topic, "--to-datetime", "yesterday"
        ).returncode
        == 2
    )
    with Consumer(url, group_id=group, session_timeout_ms=6000) as member:
        member.subscribe([topic])
        while not member.assignment():
            member.poll(0.2)
        busy = kbctl(url, "groups", "reset-offsets", group, "-t", topic, "--to-earliest")
        assert busy.returncode == 1 and "GroupNotEmptyError" in busy.stderr


@pytest.mark.parametrize("group_arg", [[], ["--group", "perf-readers"]])
def test_perf_commands(url: str, group_arg: list[str]) -> None:
    name = unique("perf")
    ok(url, "topics", "create", name, "-p", "2")
    produced = as_json(
        url,
        "perf",
        "produce",
        name,
        "-n",
        "5000",
        "-s",
        "100",
        "--acks",
        "1",
        "--throughput",
        "20000",
        *(["--keys"] if group_arg else []),
    )
    assert produced["records"] == 5000 and produced["records_per_sec"] > 0
    assert (
        produced["mb_per_sec"] > 0
        and produced["latency"]["p99_ms"] >= produced["latency"]["p50_ms"]
    )
    assert produced["seconds"] >= 5000 / 20000 * 0.9  # the throughput cap held
    consumed = as_json(url, "perf", "consume", name, "-n", "5000", *group_arg)
    assert consumed["records"] == 5000 and consumed["bytes"] >= 5000 * 100
    part = as_json(url, "perf", "consume", name, "-n", "700", "--max-poll-records", "500")
    assert part["records"] == 700, part  # exactly, not whole polls
    text = ok(url, "perf", "produce", name, "-n", "1000")
    assert "records/s" in text and "p99.9" in text
    if not group_arg:
        short = kbctl(url, "perf", "consume", name, "-n", "999999", "--timeout", "1")
        assert short.returncode == 1 and "only" in short.stderr
