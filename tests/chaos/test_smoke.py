"""CI smoke of the chaos suite: a short ``python -m kbroker.testing.chaos`` run, fixed seed.

Two and a half minutes of workload (3 ZooKeeper nodes, 3 brokers, an idempotent acks=all writer
on 3 partitions, two group consumers) under the nemesis (with this seed its schedule deals all
eleven fault kinds, 15 faults), then healing and the full check. The whole test stays under four
minutes. It needs root (iptables, loop mounts,
cgroups) and fails, rather than skips, without it: CI runs as root.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kbroker.testing.chaos.checker import ANOMALIES
from kbroker.testing.chaos.nemesis import KINDS
from kbroker.testing.chaos.runner import RunConfig, run, summary
from kbroker.testing.chaos.sandbox import REGISTRY

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

SEED = 20261254


@pytest.mark.timeout(240)
def test_chaos_smoke(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "the chaos smoke needs root (iptables, mount, cgroups)"
    out = tmp_path / "out"
    report = run(RunConfig(minutes=2.5, seed=SEED, out=out, partitions=3, disk_mb=256))
    assert report["ok"], summary(report) + "\n" + json.dumps(report.get("liveness"))
    counts = report["check"]["anomalies"]
    assert set(counts) == set(ANOMALIES)
    assert not any(counts.values()), counts
    totals = report["check"]["totals"]
    assert totals["acked"] > 1000 and totals["acked"] == totals["read_back"]
    assert totals["polled_records"] >= totals["acked"]
    faults = report["faults"]
    assert len(faults) >= 12, faults
    assert not [f for f in faults if f["error"]], faults
    assert len({f["kind"] for f in faults}) >= 8, faults
    assert set(report["kinds"]) == set(KINDS)
    assert (out / "timeline.png").stat().st_size > 10_000
    assert json.loads((out / "report.json").read_text())["ok"]
    assert not list(REGISTRY.glob(f"*{os.getpid() % 0x10000:04x}.json"))  # sandbox undone
