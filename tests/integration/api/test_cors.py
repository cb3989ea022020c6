"""CORS for browser clients (``access.control.allow.origin``) on a real broker, served by the
broker itself and by an HTTP worker process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbroker.testing.brokers import BrokerProcess
from kbroker.testing.local import ZooKeeperEnsemble
from tests.integration.api.test_workers import children, wait_for
from tests.integration.conftest import single_broker
from tests.integration.http import create_topic, request

pytestmark = pytest.mark.integration

APP = "https://app.example.com"


@pytest.fixture(params=[0, 1], ids=["broker", "worker"])
def cors_broker(
    request: pytest.FixtureRequest, zk_single: ZooKeeperEnsemble, zk_chroot: str, tmp_path: Path
) -> Iterator[BrokerProcess]:
    settings = {
        "access.control.allow.origin": f"{APP}, http://localhost:3000",
        "num.http.workers": str(request.param),
    }
    with single_broker(zk_single, zk_chroot, tmp_path, settings) as proc:
        wait_for(lambda: len(children(proc)) == request.param, what="workers started")
        wait_for(lambda: all(map(_listening, children(proc))), what="workers listening")
        yield proc


#: Each check runs on this many new connections: with one worker, the kernel spreads them over
#: two processes, so both serve some (all on one: a chance of 2**-12).
REPEAT = 12


def _listening(pid: int) -> bool:
    """Whether process ``pid`` holds a listening TCP socket (its SO_REUSEPORT share)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(row.split()[3] == "0A" and row.split()[9] in inodes for row in rows)


def test_allowed_origin_gets_cors_headers(cors_broker: BrokerProcess) -> None:
    url = cors_broker.url
    create_topic(url, "cors", partitions=1)
    for _ in range(REPEAT):
        _check_allowed(url)


def _check_allowed(url: str) -> None:
    # Preflight of a produce, as a browser sends it.
    status, headers, _ = request(
        f"{url}/topics/cors",
        method="OPTIONS",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert status == 204
    assert headers["Access-Control-Allow-Methods"].split(",")[:2] == ["GET", "POST"]
    assert "Content-Type" in headers["Access-Control-Allow-Headers"]
    status, headers, _ = request(
        f"{url}/topics/cors",
        method="POST",
        body=b'{"records":[{"value":1}]}',
        headers={"Origin": APP, "Content-Type": "application/vnd.kafka.json.v2+json"},
    )
    assert status == 200 and headers["Access-Control-Allow-Origin"] == APP
    assert "Origin" in headers["Vary"]
    status, headers, _ = request(
        f"{url}/topics/cors/partitions/0/records?offset=0&timeout=0", headers={"Origin": APP}
    )
    assert status == 200 and "X-KBroker-Next-Offset" in headers["Access-Control-Expose-Headers"]
    status, headers, _ = request(f"{url}/topics/nope", headers={"Origin": APP})  # errors too
    assert status == 404 and headers["Access-Control-Allow-Origin"] == APP


def test_other_origins_and_plain_clients_get_none(cors_broker: BrokerProcess) -> None:
    for _ in range(REPEAT):
        _check_refused(cors_broker.url)


def _check_refused(url: str) -> None:
    status, headers, _ = request(f"{url}/topics", headers={"Origin": "https://evil.example"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    status, headers, _ = request(
        f"{url}/topics",
        method="OPTIONS",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert status == 405 and "Access-Control-Allow-Origin" not in headers
    status, headers, _ = request(f"{url}/topics")
    assert status == 200 and "Access-Control-Allow-Origin" not in headers


def test_cors_is_off_by_default(broker: BrokerProcess) -> None:
    status, headers, _ = request(f"{broker.url}/topics", headers={"Origin": APP})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
