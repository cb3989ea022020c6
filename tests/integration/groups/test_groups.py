"""Consumer groups against 3 real brokers on a 3-node ZooKeeper ensemble.

Membership through the smart-client endpoints (tests/integration/groups/helpers.Member), and
the same scenarios through the REST Proxy v2 consumer API.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from kbroker.testing.brokers import LocalCluster, http_json
from tests.integration.groups.helpers import Member, read, wait_until
from tests.integration.http import cluster_id, produce

pytestmark = pytest.mark.integration

TOPIC = "events"


def _topic(cluster: LocalCluster, partitions: int = 6) -> None:
    cluster.create_topic(
        TOPIC, partitions=partitions, replication_factor=3, configs={"min.insync.replicas": "2"}
    )


def _join_all(members: list[Member]) -> None:
    threads = [threading.Thread(target=m.join) for m in members]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for member in members:
        member.start_heartbeats()


def _settled(members: list[Member], partitions: int) -> bool:
    generations = {m.generation for m in members}
    owned = [tp for m in members for tp in m.assignment]
    return len(generations) == 1 and len(owned) == partitions == len(set(owned))


def test_three_members_get_two_partitions_each(cluster: LocalCluster) -> None:
    _topic(cluster)
    members = [Member(cluster.urls[i], "g", [TOPIC], client_id=f"c{i}") for i in range(3)]
    _join_all(members)
    try:
        wait_until(lambda: _settled(members, 6), 20, "a settled group")
        assert sorted(len(m.assignment) for m in members) == [2, 2, 2]
        status, group = http_json(f"{cluster.urls[2]}/groups/g")
        assert status == 200 and group["state"] == "Stable" and len(group["members"]) == 3
    finally:
        for m in members:
            m.leave()


def test_member_killed_without_leaving_loses_its_partitions(cluster: LocalCluster) -> None:
    _topic(cluster)
    members = [
        Member(cluster.urls[i], "g", [TOPIC], client_id=f"c{i}", session_ms=2000) for i in range(3)
    ]
    _join_all(members)
    try:
        wait_until(lambda: _settled(members, 6), 20, "a settled group")
        dead = members.pop(0)
        lost = set(dead.assignment)
        dead.stop()
        stopped = time.monotonic()
        wait_until(lambda: _settled(members, 6), 20, "the survivors to take over")
        took = time.monotonic() - stopped
        assert lost <= {tp for m in members for tp in m.assignment}
        assert took < 2.0 + 3.0, f"reassignment took {took:.1f} s"
        assert sorted(len(m.assignment) for m in members) == [3, 3]
    finally:
        for m in members:
            m.leave()


def test_new_member_moves_as_few_partitions_as_balance_needs(cluster: LocalCluster) -> None:
    _topic(cluster)
    first = [Member(cluster.urls[i], "g", [TOPIC], client_id=f"c{i}") for i in range(2)]
    _join_all(first)
    try:
        wait_until(lambda: _settled(first, 6), 20, "two members")
        before = {m.client_id: set(m.assignment) for m in first}
        newcomer = Member(cluster.urls[2], "g", [TOPIC], client_id="c9")
        threading.Thread(target=newcomer.join).start()
        everyone = [*first, newcomer]
        wait_until(lambda: newcomer.generation > 0 and _settled(everyone, 6), 30, "three members")
        newcomer.start_heartbeats()
        kept = sum(len(before[m.client_id] & set(m.assignment)) for m in first)
        assert kept == 4  # each old member keeps 2 of its 3: only 2 partitions move
        assert len(newcomer.assignment) == 2
    finally:
        for m in [*first]:
            m.leave()
        newcomer.leave()


def test_static_member_restart_keeps_its_assignment(cluster: LocalCluster) -> None:
    _topic(cluster)
    members = [
        Member(
            cluster.urls[i],
            "g",
            [TOPIC],
            client_id=f"c{i}",
            instance_id=f"host-{i}",
            session_ms=6000,
        )
        for i in range(2)
    ]
    _join_all(members)
    try:
        wait_until(lambda: _settled(members, 6), 20, "two members")
        old = members[0]
        old.stop()
        generation, assignment = old.generation, old.assignment
        restarted = Member(
            cluster.urls[1], "g", [TOPIC], client_id="c0", instance_id="host-0", session_ms=6000
        )
        restarted.join()
        assert restarted.assignment == assignment and restarted.generation == generation
        assert restarted.member_id != old.member_id
        status, body = http_json(
            f"{cluster.urls[0]}/groups/g/members/{old.member_id}/heartbeat",
            method="POST",
            body={"generation_id": generation},
        )
        assert (status, body["error_code"]) == (409, 40913)
        members[0] = restarted
        restarted.start_heartbeats()
    finally:
        for m in members:
            m.leave()


def test_commits_are_fenced_by_generation_and_member(cluster: LocalCluster) -> None:
    _topic(cluster, partitions=2)
    member = Member(cluster.urls[0], "g", [TOPIC], client_id="c0")
    member.join()
    try:
        status, body = http_json(
            f"{cluster.urls[1]}/groups/g/offsets",
            method="POST",
            body={
                "member_id": member.member_id,
                "generation_id": member.generation + 5,
                "offsets": [{"topic": TOPIC, "partition": 0, "offset": 1}],
            },
        )
        assert (status, body["error_code"]) == (409, 40910)
        status, body = http_json(
            f"{cluster.urls[1]}/groups/g/offsets",
            method="POST",
            body={
                "member_id": "nobody",
                "generation_id": member.generation,
                "offsets": [{"topic": TOPIC, "partition": 0, "offset": 1}],
            },
        )
        assert (status, body["error_code"]) == (409, 40911)
        status, body = http_json(
            f"{cluster.urls[2]}/groups/g/offsets:reset",
            method="POST",
            body={"topic": TOPIC, "to": "earliest"},
        )
        assert (status, body["error_code"]) == (409, 40914)
        assert member.commit({(TOPIC, 0): 1})[0] == 200
    finally:
        member.leave()
    status, body = http_json(
        f"{cluster.urls[2]}/groups/g/offsets:reset",
        method="POST",
        body={"topic": TOPIC, "to": "latest"},
    )
    assert status == 200, body


def test_coordinator_failover_keeps_every_committed_offset(cluster: LocalCluster) -> None:
    _topic(cluster)
    member = Member(cluster.urls[0], "keeper", [TOPIC], client_id="c0", session_ms=8000)
    member.join()
    member.start_heartbeats()
    offsets = {(TOPIC, p): 100 + p for p in range(6)}
    assert member.commit(offsets)[0] == 200
    coordinator = _coordinator(cluster, "keeper")
    cluster.broker(coordinator).kill()
    survivor = next(
        u for b, u in zip(cluster.brokers, cluster.urls, strict=True) if b.broker_id != coordinator
    )
    try:
        wait_until(
            lambda: _committed(survivor, "keeper") == offsets,
            30,
            "the new coordinator to serve the offsets",
        )
        wait_until(lambda: _coordinator(cluster, "keeper") != coordinator, 30, "failover")
        member.url = survivor
        assert member.commit({(TOPIC, 0): 200})[0] == 200
    finally:
        member.leave()
        cluster.broker(coordinator).start()


def _committed(url: str, group: str) -> dict[tuple[str, int], int] | None:
    status, body = http_json(f"{url}/groups/{group}/offsets", timeout=15)
    if status != 200:
        return None
    return {(o["topic"], o["partition"]): o["offset"] for o in body["offsets"]}


def _coordinator(cluster: LocalCluster, group: str) -> int:
    _, groups = http_json(f"{cluster.any_url()}/groups")
    for entry in groups["groups"]:
        if entry["group_id"] == group:
            return int(entry["coordinator"])
    raise AssertionError(f"group {group} not found in {groups}")


def test_commit_after_processing_never_skips_and_rereads_only_uncommitted(
    cluster: LocalCluster,
) -> None:
    _topic(cluster, partitions=1)
    url = cluster.urls[0]
    produce(url, TOPIC, [{"value": i} for i in range(30)], partition=0)
    first = Member(url, "alo", [TOPIC], client_id="c0")
    first.join()
    processed: list[int] = []
    position = 0
    for _ in range(2):  # process and commit two batches of 10
        batch = read(url, TOPIC, 0, position, max_records=10)
        processed.extend(r["value"] for r in batch)
        position = batch[-1]["offset"] + 1
        assert first.commit({(TOPIC, 0): position})[0] == 200
    batch = read(url, TOPIC, 0, position, max_records=10)  # processed, then crash
    processed.extend(r["value"] for r in batch)
    first.stop()
    second = Member(cluster.urls[1], "alo", [TOPIC], client_id="c1", session_ms=2000)
    wait_until(lambda: _try_join(second), 30, "the crashed member's session to expire")
    resume = second.committed()[(TOPIC, 0)]
    again = [r["value"] for r in read(cluster.urls[1], TOPIC, 0, resume, max_records=100)]
    assert resume == 20 and again == list(range(20, 30))
    assert sorted(set(processed) | set(again)) == list(range(30))
    second.leave()


def _try_join(member: Member) -> bool:
    try:
        member.join(timeout=10)
    except (AssertionError, OSError):
        return False
    return bool(member.assignment)


def test_lag_is_high_watermark_minus_committed(cluster: LocalCluster) -> None:
    _topic(cluster, partitions=3)
    url = cluster.urls[0]
    for p, count in enumerate((5, 7, 11)):
        produce(url, TOPIC, [{"value": i} for i in range(count)], partition=p)
    status, body = http_json(
        f"{url}/groups/lagging/offsets",
        method="POST",
        body={
            "offsets": [
                {"topic": TOPIC, "partition": p, "offset": o} for p, o in ((0, 1), (1, 7), (2, 4))
            ]
        },
    )
    assert status == 200, body
    cid = cluster_id(cluster.urls[2])
    status, lags = http_json(f"{cluster.urls[2]}/v3/clusters/{cid}/consumer-groups/lagging/lags")
    assert status == 200, lags
    found = {
        (x["partition_id"]): (x["current_offset"], x["log_end_offset"], x["lag"])
        for x in lags["data"]
    }
    assert found == {0: (1, 5, 4), 1: (7, 7, 0), 2: (4, 11, 7)}
    status, summary = http_json(
        f"{cluster.urls[1]}/v3/clusters/{cid}/consumer-groups/lagging/lag-summary"
    )
    assert summary["total_lag"] == 11 and summary["max_lag"] == 7
    assert summary["max_lag_partition_id"] == 2


# ------------------------------------------------------------------- REST Proxy v2


def _rest(
    url: str,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/vnd.kafka.v2+json",
    **kw: Any,
) -> tuple[int, Any]:
    return http_json(url + path, method=method, body=body, content_type=content_type, **kw)


def test_rest_consumers_share_partitions_and_resume_from_commits(cluster: LocalCluster) -> None:
    _topic(cluster)
    url = cluster.urls[0]
    for p in range(6):
        produce(url, TOPIC, [{"value": f"{p}-{i}"} for i in range(5)], partition=p)
    instances = []
    for i in range(3):
        status, body = _rest(
            cluster.urls[i],
            "POST",
            "/consumers/rest-g",
            {
                "name": f"i{i}",
                "format": "json",
                "auto.offset.reset": "earliest",
                "auto.commit.enable": "false",
            },
        )
        assert status == 200 and body["instance_id"] == f"i{i}", body
        instances.append(body["base_uri"])
    for base in instances:
        assert (
            http_json(base + "/subscription", method="POST", body={"topics": [TOPIC]}, timeout=60)[
                0
            ]
            == 204
        )

    def assigned() -> list[list[tuple[str, int]]]:
        return [
            [(a["topic"], a["partition"]) for a in http_json(b + "/assignments")[1]["partitions"]]
            for b in instances
        ]

    wait_until(lambda: sorted(len(a) for a in assigned()) == [2, 2, 2], 30, "2 each")
    seen: list[str] = []
    for base in instances:  # any broker serves any instance: read through broker 3
        via = cluster.urls[2] + base[base.index("/consumers/") :]
        status, records = http_json(via + "/records?timeout=2000", timeout=30)
        assert status == 200
        seen.extend(r["value"] for r in records)
        if records:
            last = max(records, key=lambda r: (r["partition"], r["offset"]))
            status, _ = http_json(
                base + "/offsets",
                method="POST",
                body={
                    "offsets": [
                        {"topic": TOPIC, "partition": last["partition"], "offset": last["offset"]}
                    ]
                },
            )
            assert status == 200
    assert len(seen) == len(set(seen)) and len(seen) > 0
    status, committed = http_json(instances[0] + "/offsets", method="GET")
    assert status == 200 and len(committed["offsets"]) == 2
    assert http_json(instances[0], method="DELETE")[0] == 204
    assert http_json(instances[0] + "/records")[0] == 404


def test_rest_consumer_protocol_errors(cluster: LocalCluster) -> None:
    _topic(cluster, partitions=2)
    url = cluster.urls[1]
    status, body = _rest(url, "POST", "/consumers/errs", {"name": "a", "format": "binary"})
    base = body["base_uri"]
    assert status == 200
    status, body = _rest(url, "POST", "/consumers/errs", {"name": "a"})
    assert (status, body["error_code"]) == (409, 40902)
    status, body = _rest(url, "POST", "/consumers/errs", {"name": "b", "format": "avro"})
    assert (status, body["error_code"]) == (422, 42204)
    status, body = _rest(url, "POST", "/consumers/errs", {"name": "b", "bogus": 1})
    assert (status, body["error_code"]) == (422, 42204)
    assert (
        http_json(
            base + "/assignments",
            method="POST",
            body={"partitions": [{"topic": TOPIC, "partition": 0}]},
        )[0]
        == 204
    )
    status, body = http_json(base + "/subscription", method="POST", body={"topics": [TOPIC]})
    assert (status, body["error_code"]) == (409, 40903)
    status, body = http_json(
        base + "/positions",
        method="POST",
        body={"offsets": [{"topic": TOPIC, "partition": 1, "offset": 0}]},
    )
    assert (status, body["error_code"]) == (409, 40903)
    produce(url, TOPIC, [{"value": i} for i in range(4)], partition=0)
    assert (
        http_json(
            base + "/positions/beginning",
            method="POST",
            body={"partitions": [{"topic": TOPIC, "partition": 0}]},
        )[0]
        == 204
    )
    status, _, _ = _request(
        base + "/records?timeout=1000", {"Accept": "application/vnd.kafka.json.v2+json"}
    )
    assert status == 406
    status, records = http_json(base + "/records?timeout=1000")
    assert status == 200 and [r["offset"] for r in records] == [0, 1, 2, 3]
    assert (
        http_json(
            base + "/positions",
            method="POST",
            body={"offsets": [{"topic": TOPIC, "partition": 0, "offset": 2}]},
        )[0]
        == 204
    )
    status, records = http_json(base + "/records?timeout=1000")
    assert [r["offset"] for r in records] == [2, 3]
    assert (
        http_json(
            base + "/offsets",
            method="POST",
            body={"offsets": [{"topic": TOPIC, "partition": 0, "offset": 3}]},
        )[0]
        == 200
    )
    status, body = _request_json(
        base + "/offsets", {"partitions": [{"topic": TOPIC, "partition": 0}]}
    )
    assert body["offsets"][0]["offset"] == 4
    assert http_json(base, method="DELETE")[0] == 204
    assert http_json(base, method="DELETE")[0] == 404


def _request(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    from tests.integration.http import request

    return request(url, headers=headers)


def _request_json(url: str, body: Any) -> tuple[int, Any]:
    import orjson

    from tests.integration.http import request

    status, _, payload = request(
        url,
        method="GET",
        body=orjson.dumps(body),
        headers={"Content-Type": "application/vnd.kafka.v2+json"},
    )
    return status, orjson.loads(payload)


def test_offsets_topic_is_cleaned_and_state_survives_restart(
    zk_single: Any, zk_chroot: str, tmp_path: Any
) -> None:
    from kbroker.testing.brokers import FAST_FAILOVER, BrokerProcess

    settings = {
        **FAST_FAILOVER,
        "offsets.topic.segment.bytes": "4096",
        "offsets.topic.num.partitions": "1",
        "offsets.retention.check.interval.ms": "500",
    }
    broker = BrokerProcess(
        broker_id=1,
        zookeeper=zk_single.connect_string + zk_chroot,
        base_dir=tmp_path,
        settings=settings,
    )
    broker.start()
    try:
        cluster_topic = {"topic_name": TOPIC, "partitions_count": 2}
        cid = cluster_id(broker.url)
        assert (
            http_json(f"{broker.url}/v3/clusters/{cid}/topics", method="POST", body=cluster_topic)[
                0
            ]
            == 201
        )
        for i in range(300):
            status, body = http_json(
                f"{broker.url}/groups/g{i % 3}/offsets",
                method="POST",
                body={"offsets": [{"topic": TOPIC, "partition": i % 2, "offset": i}]},
            )
            assert status == 200, body
        directory = broker.data_dir / "__consumer_offsets-0"
        wait_until(
            lambda: min(int(p.stem) for p in directory.glob("*.log")) > 0,
            30,
            "old offsets segments to be deleted",
        )
        expected = {f"g{g}": _committed(broker.url, f"g{g}") for g in range(3)}
        assert expected["g0"] == {(TOPIC, 0): 294, (TOPIC, 1): 297}
        broker.kill()
        broker.start()
        for group, offsets in expected.items():
            assert _committed(broker.url, group) == offsets
    finally:
        broker.kill()
