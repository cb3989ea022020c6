"""A minimal smart-client group member for tests: join, heartbeat, read, commit over HTTP.

It speaks the membership endpoints directly (kclient has its own implementation; these tests
check the broker's side of the protocol with nothing in between).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kbroker.testing.brokers import http_json

TopicPartition = tuple[str, int]


class Member:
    """One group member driven by a test; heartbeats from a thread until :meth:`stop`."""

    def __init__(
        self,
        url: str,
        group: str,
        topics: list[str],
        *,
        client_id: str,
        session_ms: int = 3000,
        instance_id: str | None = None,
    ) -> None:
        self.url = url
        self.group = group
        self.topics = topics
        self.client_id = client_id
        self.session_ms = session_ms
        self.instance_id = instance_id
        self.member_id = ""
        self.generation = -1
        self.assignment: list[TopicPartition] = []
        self.rebalances = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[Any] = []

    def join(self, timeout: float = 60) -> None:
        status, body = http_json(
            f"{self.url}/groups/{self.group}/members",
            method="POST",
            body={
                "member_id": self.member_id,
                "client_id": self.client_id,
                "topics": self.topics,
                "session_timeout_ms": self.session_ms,
                "group_instance_id": self.instance_id,
            },
            timeout=timeout,
        )
        if status == 409 and body["error_code"] == 40911:
            self.member_id = ""
            return self.join(timeout)
        assert status == 200, body
        self.member_id = body["member_id"]
        self.generation = body["generation_id"]
        self.assignment = [(a["topic"], a["partition"]) for a in body["assignment"]]
        return None

    def start_heartbeats(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.session_ms / 3000):
            try:
                status, body = http_json(
                    f"{self.url}/groups/{self.group}/members/{self.member_id}/heartbeat",
                    method="POST",
                    body={"generation_id": self.generation},
                    timeout=10,
                )
            except OSError as exc:
                self.errors.append(repr(exc))
                continue
            if status == 409 and body["error_code"] in (40912, 40910, 40911):
                self.rebalances += 1
                try:
                    self.join()
                except AssertionError as exc:
                    self.errors.append(str(exc))

    def stop(self) -> None:
        """Stop heartbeating (as if the process died) without leaving."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def leave(self) -> None:
        self.stop()
        http_json(f"{self.url}/groups/{self.group}/members/{self.member_id}", method="DELETE")

    def commit(self, offsets: dict[TopicPartition, int]) -> tuple[int, Any]:
        return http_json(
            f"{self.url}/groups/{self.group}/offsets",
            method="POST",
            body={
                "member_id": self.member_id,
                "generation_id": self.generation,
                "offsets": [
                    {"topic": t, "partition": p, "offset": o} for (t, p), o in offsets.items()
                ],
            },
        )

    def committed(self) -> dict[TopicPartition, int]:
        status, body = http_json(f"{self.url}/groups/{self.group}/offsets")
        assert status == 200, body
        return {(o["topic"], o["partition"]): o["offset"] for o in body["offsets"]}


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def read(
    url: str, topic: str, partition: int, offset: int, *, max_records: int = 1000
) -> list[dict[str, Any]]:
    status, records = http_json(
        f"{url}/topics/{topic}/partitions/{partition}/records?offset={offset}"
        f"&max_records={max_records}&timeout=0"
    )
    assert status == 200, records
    return list(records)
