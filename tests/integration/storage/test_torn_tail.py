"""Torn tails with a real broker: the log cut inside its last batches, then a restart.

A torn write (a crash or a full disk half-way through an append) leaves a partial batch at the
end of the active segment. For cuts at every field boundary of the last batch's header, inside
its payload, one byte short of its end, and inside the batch before it, the restarted broker
must keep exactly the whole batches before the cut, serve them, and append the next record
right after them. (tests/unit/log sweeps every byte against the log alone; this runs the same
recovery inside a broker process, start-up and all.)
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Final

import pytest

from kbroker.log.batch import HEADER_SIZE, iter_batches
from kbroker.testing.brokers import FAST_FAILOVER, BrokerProcess, http_json
from kbroker.testing.local import ZooKeeperEnsemble
from tests.integration.http import create_topic, fetch_all, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOPIC = "torn"
#: Cut points inside the last batch, relative to its start: each header field boundary, then
#: the payload's first byte, its middle and one byte short of the batch's end (-1).
CUTS: Final = (1, 8, 12, 16, 17, 21, 23, 27, 35, 43, 51, 53, 57, HEADER_SIZE, "middle", -1)


def test_restart_keeps_the_whole_batches_before_a_torn_tail(
    tmp_path: Path, zk_single: ZooKeeperEnsemble, zk_chroot: str
) -> None:
    broker = BrokerProcess(
        broker_id=1,
        zookeeper=zk_single.connect_string + zk_chroot,
        base_dir=tmp_path / "run",
        settings={**FAST_FAILOVER, "controlled.shutdown.enable": "false"},
    )
    broker.start()
    try:
        create_topic(broker.url, TOPIC)
        for n in range(20):
            status, body = produce(broker.url, TOPIC, [{"value": [n, i]} for i in range(3)])
            assert status == 200, body
        broker.kill()
        pristine = tmp_path / "pristine"
        shutil.copytree(broker.data_dir, pristine)
        segment = sorted((pristine / f"{TOPIC}-0").glob("*.log"))[-1]
        batches = list(iter_batches(segment.read_bytes(), verify=True))
        last, before = batches[-1], batches[-2]
        cuts = [_position(last.position, last.size, c) for c in CUTS]
        cuts.append(before.position + 30)
        for cut in cuts:
            kept = [b for b in batches if b.position + b.size <= cut]
            _restart_with_cut(broker, pristine, segment.name, cut)
            end = kept[-1].next_offset
            records = fetch_all(broker.url, TOPIC, 0, 0, end)
            assert [r["offset"] for r in records] == list(range(end)), cut
            _, offsets = http_json(f"{broker.url}/topics/{TOPIC}/partitions/0/offsets")
            assert offsets["end_offset"] == end, (cut, offsets)
            assert [r["value"] for r in records] == [
                [n, i] for n in range(end // 3) for i in range(3)
            ]
            status, body = produce(broker.url, TOPIC, [{"value": "after"}])
            assert body["offsets"][0]["offset"] == end, (cut, body)
            _, offsets = http_json(f"{broker.url}/topics/{TOPIC}/partitions/0/offsets")
            assert offsets["end_offset"] == end + 1
            broker.stop()  # a clean stop ends the ZooKeeper session: the next start is quick
    finally:
        broker.kill()


def _position(start: int, size: int, cut: int | str) -> int:
    if cut == "middle":
        return start + (HEADER_SIZE + size) // 2
    assert isinstance(cut, int)
    return start + (size + cut if cut < 0 else cut)


def _restart_with_cut(broker: BrokerProcess, pristine: Path, segment: str, cut: int) -> None:
    shutil.rmtree(broker.data_dir)
    shutil.copytree(pristine, broker.data_dir)
    path = broker.data_dir / f"{TOPIC}-0" / segment
    with path.open("r+b") as f:
        f.truncate(cut)
    broker.start()
    deadline = time.monotonic() + 30
    while http_json(f"{broker.url}/topics/{TOPIC}/partitions/0")[1]["leader"] is None:
        assert time.monotonic() < deadline, "no leader after the restart"
        time.sleep(0.1)
