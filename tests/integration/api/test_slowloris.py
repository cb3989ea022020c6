"""1,000 slow clients (slowloris) do not slow normal requests down.

The slow clients open connections and send request headers one byte at a time; meanwhile
ordinary produce and fetch requests are timed: their p99 must stay under 200 ms.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import time

import pytest

from kbroker.testing.brokers import BrokerProcess
from tests.integration.http import create_topic, produce, request

pytestmark = pytest.mark.integration

SLOW_CLIENTS = 1000
NORMAL_REQUESTS = 400


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))


def test_slow_clients_do_not_slow_normal_requests(broker: BrokerProcess) -> None:
    _raise_fd_limit(SLOW_CLIENTS + 500)
    create_topic(broker.url, "t")
    sockets = []
    stop = threading.Event()
    try:
        for _ in range(SLOW_CLIENTS):
            sock = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
            sock.sendall(b"POST /topics/t/partitions/0 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            sockets.append(sock)

        def trickle() -> None:
            while not stop.wait(1.0):
                for sock in sockets:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"a")

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        latencies = []
        for i in range(NORMAL_REQUESTS):
            start = time.perf_counter()
            if i % 2:
                status, _ = produce(broker.url, "t", [{"value": i}], partition=0)
            else:
                status, _, _ = request(
                    f"{broker.url}/topics/t/partitions/0/records?offset=0&timeout=0&max_records=5"
                )
            latencies.append(time.perf_counter() - start)
            assert status == 200
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(
            f"slowloris: {len(latencies)} normal requests beside {SLOW_CLIENTS} slow clients, "
            f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
        )
        assert p99 < 0.2, f"p99 {p99 * 1000:.0f} ms with {SLOW_CLIENTS} slow clients"
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
