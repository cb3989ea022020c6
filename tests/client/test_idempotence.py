"""The idempotent producer (the default with acks="all") against real brokers.

Faults are injected by wrapping the producer's transport: a request can reach the broker and
still "fail" (the acknowledgement is lost), its sequence header can be changed to open a gap,
and a leader is killed with SIGKILL in the middle of a run. The checks read the partitions
back: every acknowledged record is there exactly once, at the offset it was acknowledged with.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from kbroker.testing.brokers import LocalCluster
from kclient import (
    Admin,
    ConsumerRecord,
    Producer,
    RecordMetadata,
    aio,
    errors,
)
from kclient._accumulator import ProducerBatch
from kclient._idempotence import SEQUENCE_MODULUS, IdempotenceState, ProducerIdentity
from kclient._transport import Response
from kclient.protocol import (
    MEDIA_BINARY_V2,
    PRODUCER_EPOCH_HEADER,
    PRODUCER_ID_HEADER,
    SEQUENCE_HEADER,
)
from tests.client.conftest import read_back
from tests.integration.http import request


class Wire:
    """Wraps one producer's ``Transport.request``: records every ``POST /producers`` answer and
    produce request (partition, producer id, epoch, sequence), and applies the faults the test
    sets: ``lose_ack(partition, sequence)`` true makes the first such request raise *after* the
    broker answered it; ``shift`` moves the sequence of the next produce to a partition."""

    def __init__(self, producer: aio.Producer) -> None:
        self.real = producer._transport.request
        self.producers: list[Any] = []
        self.produces: list[tuple[int, int, int, int]] = []
        self.lost: list[tuple[int, int]] = []
        self.lose_ack: Any = None
        self.shift: dict[int, int] = {}
        producer._transport.request = self  # type: ignore[method-assign]

    async def __call__(self, method: str, url: str, **kwargs: Any) -> Response:
        if url.endswith("/producers"):
            response = await self.real(method, url, **kwargs)
            self.producers.append((orjson.loads(kwargs["body"]), response.json()))
            return response
        if "/partitions/" not in url or method != "POST":
            return await self.real(method, url, **kwargs)
        partition = int(url.rsplit("/", 1)[1])
        headers: Mapping[str, str] = kwargs.get("headers") or {}
        if SEQUENCE_HEADER not in headers:
            self.produces.append((partition, -1, -1, -1))
            return await self.real(method, url, **kwargs)
        sequence = int(headers[SEQUENCE_HEADER]) + self.shift.pop(partition, 0)
        kwargs["headers"] = {**headers, SEQUENCE_HEADER: str(sequence)}
        self.produces.append(
            (
                partition,
                int(headers[PRODUCER_ID_HEADER]),
                int(headers[PRODUCER_EPOCH_HEADER]),
                sequence,
            )
        )
        response = await self.real(method, url, **kwargs)
        key = (partition, sequence)
        if self.lose_ack is not None and key not in self.lost and self.lose_ack(*key):
            self.lost.append(key)
            if len(self.lost) % 2:
                raise errors.BrokerUnavailableError("connection reset (test)", after_append=True)
            raise errors.RequestTimedOutError("acks=all timed out (test)", after_append=True)
        return response


def check_exactly_once(
    records: list[ConsumerRecord], acknowledged: Mapping[bytes, RecordMetadata]
) -> None:
    """Every acknowledged value once, at its acknowledged place, and nothing else."""
    counts = Counter(r.value for r in records)
    assert [v for v, n in counts.items() if n > 1] == [], "duplicates"
    assert set(counts) == set(acknowledged), "lost or unexpected records"
    for record in records:
        assert record.value is not None
        meta = acknowledged[record.value]
        assert (record.partition, record.offset) == (meta.partition, meta.offset)


@pytest.mark.parametrize("in_flight", [1, 5])
async def test_lost_acknowledgements_are_resent_and_written_once(
    url: str, topic: str, in_flight: int
) -> None:
    async with aio.Producer(
        url,
        linger_ms=1,
        batch_size=2048,
        retry_backoff_ms=10,
        max_in_flight_per_partition=in_flight,
    ) as producer:
        assert producer.enable_idempotence and producer.max_in_flight_per_partition == in_flight
        wire = Wire(producer)
        wire.lose_ack = lambda partition, sequence: sequence % 3 == 0
        futures = [await producer.send(topic, b"%d" % i, partition=i % 3) for i in range(1800)]
        metas = await asyncio.gather(*futures)
    assert len(wire.lost) >= 6, "faults were injected"
    ((body, identity),) = wire.producers
    assert body == {} and identity["producer_epoch"] == 0
    assert {(pid, epoch) for _, pid, epoch, _ in wire.produces} == {(identity["producer_id"], 0)}
    for partition in range(3):  # sequences start at 0, grow by each batch, resends repeat
        sequences = sorted({s for p, _, _, s in wire.produces if p == partition})
        assert sequences[0] == 0 and len(sequences) > 5
    records = read_back(url, topic, 1800, partitions=range(3))
    check_exactly_once(records, {b"%d" % i: m for i, m in enumerate(metas)})
    for partition in range(3):  # in send order
        values = [int(r.value or b"") for r in records if r.partition == partition]
        assert values == list(range(partition, 1800, 3))


def _raw_produce(url: str, topic: str, pid: int, epoch: int, sequence: int) -> Any:
    """One binary record b"fence" to partition 0, as another instance of the producer."""
    status, _, payload = request(
        f"{url}/topics/{topic}/partitions/0",
        method="POST",
        body=b'{"records":[{"value":"ZmVuY2U="}]}',
        headers={
            "Content-Type": MEDIA_BINARY_V2,
            PRODUCER_ID_HEADER: str(pid),
            PRODUCER_EPOCH_HEADER: str(epoch),
            SEQUENCE_HEADER: str(sequence),
        },
    )
    assert status == 200, payload
    return orjson.loads(payload)["offsets"][0]


async def test_sequence_gap_fails_the_batch_and_bumps_the_epoch(url: str, topic: str) -> None:
    async with aio.Producer(
        url, linger_ms=1, batch_size=100, retry_backoff_ms=10, max_in_flight_per_partition=5
    ) as producer:
        wire = Wire(producer)
        first = await producer.send_and_wait(topic, b"first", partition=0)
        await producer.send_and_wait(topic, b"other", partition=1)
        pid = wire.producers[0][1]["producer_id"]
        # Two full batches at once; the first's sequence is moved: the broker sees a gap.
        wire.shift[0] = 7
        lost = await producer.send(topic, b"x" * 100, partition=0)
        after = await producer.send(topic, b"y" * 100, partition=0)
        with pytest.raises(errors.OutOfOrderSequenceError):
            await lost
        meta = await after  # refused too (a gap behind it), then sent again with epoch 1
        assert meta.offset == first.offset + 1
        assert [body for body, _ in wire.producers] == [
            {},
            {"producer_id": pid, "producer_epoch": 0},
        ]
        assert wire.producers[1][1] == {"producer_id": pid, "producer_epoch": 1}
        assert wire.produces[-1] == (0, pid, 1, 0)
        await producer.send_and_wait(topic, b"again", partition=1)
        assert wire.produces[-1] == (1, pid, 1, 0), "every partition starts again at 0"

        # Another instance takes the epoch over: the batch fails, the producer gets a new id.
        assert _raw_produce(url, topic, pid, 2, 0)["error_code"] is None
        with pytest.raises(errors.InvalidProducerEpochError):
            await producer.send_and_wait(topic, b"fenced", partition=0)
        await producer.send_and_wait(topic, b"new id", partition=0)
        assert wire.producers[-1][0] == {} and wire.producers[-1][1]["producer_id"] != pid
    values = [r.value for r in read_back(url, topic, 4, partitions=[0])]
    assert values == [b"first", b"y" * 100, b"fence", b"new id"]


async def test_a_failed_batch_does_not_take_the_next_ones_with_it(url: str, topic: str) -> None:
    """A batch failing before it is written (here: refused by a fake RECORD_TOO_LARGE) leaves
    a gap; the batches behind it are sent again after the epoch bump, in order."""
    async with aio.Producer(
        url, linger_ms=1, batch_size=100, retry_backoff_ms=10, max_in_flight_per_partition=5
    ) as producer:
        await producer.send_and_wait(topic, b"0", partition=2)
        real = producer._post
        posts: list[bytes] = []

        async def post(url: str, batch: ProducerBatch) -> int | None:
            posts.append(batch.values[0] or b"")
            if batch.values[0] == b"a" * 100:
                await asyncio.sleep(0.05)  # the next batches are out by now
                raise errors.RecordTooLargeError("too large (test)")
            return await real(url, batch)

        producer._post = post  # type: ignore[method-assign]
        futures = [await producer.send(topic, v * 100, partition=2) for v in (b"a", b"b", b"c")]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        assert isinstance(outcomes[0], errors.RecordTooLargeError)
        assert [m.offset for m in outcomes[1:] if isinstance(m, RecordMetadata)] == [1, 2]
        assert posts.count(b"b" * 100) == 2, "refused with a gap behind it, then resent"
    values = [r.value for r in read_back(url, topic, 3, partitions=[2])]
    assert values == [b"0", b"b" * 100, b"c" * 100]


async def test_without_idempotence(url: str, topic: str) -> None:
    for settings in ({"enable_idempotence": False}, {"acks": 1}):
        async with aio.Producer(url, **settings) as producer:
            assert not producer.enable_idempotence
            assert producer.max_in_flight_per_partition == 1
            wire = Wire(producer)
            meta = await producer.send_and_wait(topic, b"plain", partition=0)
            assert meta.offset >= 0
            assert wire.producers == [] and wire.produces == [(0, -1, -1, -1)]
    with pytest.raises(ValueError, match="acks='all'"):
        aio.Producer(url, acks=1, enable_idempotence=True)
    with pytest.raises(ValueError, match="needs enable_idempotence"):
        aio.Producer(url, enable_idempotence=False, max_in_flight_per_partition=2)
    with pytest.raises(ValueError, match="1 to 5"):
        aio.Producer(url, max_in_flight_per_partition=6)


def test_sequences_wrap_at_2_31() -> None:
    state = IdempotenceState(max_in_flight=5)
    state.identity = ProducerIdentity(producer_id=7, epoch=3)
    state._partition(("t", 0)).next_sequence = SEQUENCE_MODULUS - 2
    batches = []
    for count in (3, 1):
        batch = ProducerBatch("t", 0, 0)
        batch.values = [b"v"] * count
        state.assign(batch)
        batches.append(batch)
    assert [b.sequence for b in batches] == [SEQUENCE_MODULUS - 2, 1]
    assert IdempotenceState.headers(batches[1]) == {
        PRODUCER_ID_HEADER: "7",
        PRODUCER_EPOCH_HEADER: "3",
        SEQUENCE_HEADER: "1",
    }
    assert state.window(("t", 0)) == 1 and not state.is_head(batches[1])
    state.succeeded(batches[0])
    assert state.window(("t", 0)) == 5 and state.is_head(batches[1])


@pytest.mark.parametrize("in_flight", [1, 5])
def test_leader_killed_during_an_idempotent_run(cluster: LocalCluster, in_flight: int) -> None:
    """SIGKILL the leader of a partition while batches to it are in flight: afterwards every
    record is there exactly once, at its acknowledged offset, in send order."""
    url = cluster.bootstrap_url
    with Admin(url) as admin:
        admin.create_topic(
            "idem", partitions=2, replication_factor=3, configs={"min.insync.replicas": "2"}
        )
    deadline = time.monotonic() + 30
    while None in (leaders := [cluster.leader_of("idem", p) for p in range(2)]):
        assert time.monotonic() < deadline, "no leaders"
        time.sleep(0.1)
    victim = leaders[0]
    assert victim is not None
    count = 3000
    with Producer(
        url,
        linger_ms=2,
        batch_size=4096,
        retry_backoff_ms=50,
        max_in_flight_per_partition=in_flight,
    ) as producer:
        wire = Wire(producer._impl)
        futures = []
        for i in range(count):
            futures.append(producer.send("idem", b"%d" % i, partition=i % 2))
            if i == count // 3:
                cluster.broker(victim).kill()
            if i % 20 == 0:
                time.sleep(0.002)
        producer.flush(timeout=60)
        metas = [f.result(0) for f in futures]
    assert cluster.leader_of("idem", 0) not in (None, victim)
    resent = Counter(key for key in wire.produces if key[0] == 0)
    assert max(resent.values()) > 1, "batches in flight to the killed leader were resent"
    records = read_back(url, "idem", count, partitions=range(2))
    check_exactly_once(records, {b"%d" % i: m for i, m in enumerate(metas)})
    for partition in range(2):
        values = [int(r.value or b"") for r in records if r.partition == partition]
        assert values == list(range(partition, count, 2))
