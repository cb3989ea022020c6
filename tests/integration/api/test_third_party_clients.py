"""Third-party REST Proxy clients, unmodified, against a real broker process.

Confluent's Node.js client (npm ``kafka-rest`` 0.0.5, REST Proxy v1) is installed from the npm
registry into ``.cache/third-party/node`` on first use (needs ``node`` and ``npm``; .ci/run
installs them) and driven by kafka_rest_node.js next to this file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kbroker.testing.brokers import BrokerProcess
from tests.integration.http import create_topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
NODE_PREFIX = ROOT / ".cache" / "third-party" / "node"
NODE_CLIENT = "kafka-rest@0.0.5"


@pytest.fixture(scope="session")
def node_kafka_rest() -> Path:
    """The prefix holding node_modules/kafka-rest (installed once per checkout)."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install nodejs npm (.ci/run does)")
    if not (NODE_PREFIX / "node_modules" / "kafka-rest" / "package.json").exists():
        NODE_PREFIX.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                *("npm", "install", "--no-audit", "--no-fund", "--no-save"),
                *("--prefix", str(NODE_PREFIX), NODE_CLIENT),
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return NODE_PREFIX


def test_confluent_node_client_produces_reads_and_consumes(
    broker: BrokerProcess, node_kafka_rest: Path
) -> None:
    create_topic(broker.url, "node", partitions=2)
    done = subprocess.run(
        ["node", str(Path(__file__).with_name("kafka_rest_node.js")), broker.url, "node", "ng"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(node_kafka_rest / "node_modules")},
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip(), (done.stdout, done.stderr)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["brokers"] == [1]
    assert "node" in seen["topics"] and seen["partitions"] == 2
    # m1 and m2 have no key (one sticky partition); m3 names partition 1; m4 goes to 0.
    produced = seen["produced"]
    assert [error for _, _, error in produced] == [None] * 4
    assert produced[0][0] == produced[1][0] and produced[2][0] == 1 and produced[3][0] == 0
    assert [m[:2] for m in seen["messages"]] == [[None, m] for m in ("m1", "m2")] * (
        produced[0][0] == 1
    ) + [["k3", "m3"]]
    assert sorted(value for _, _, value in seen["consumed"]) == ["m1", "m2", "m3", "m4"]
    ends: dict[int, int] = {}
    for partition, offset, _ in seen["consumed"]:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    assert sorted(seen["committed"]) == sorted(["node", p, end] for p, end in ends.items())
