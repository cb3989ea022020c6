"""``POST /producers``: an id for an idempotent producer (Kafka's InitProducerId).

Without a body (or ``{}``) the answer is a new cluster-unique ``producer_id`` with
``producer_epoch`` 0. With ``{"producer_id": N, "producer_epoch": E}`` it is the same id with
epoch E + 1: a producer that must start its sequences again (after OUT_OF_ORDER_SEQUENCE) bumps
its epoch, and partitions then refuse requests of the older epoch (INVALID_PRODUCER_EPOCH),
fencing a zombie instance. Produce requests carry the id, epoch and sequence in headers
(kclient.protocol: ``X-KBroker-Producer-Id``, ``X-KBroker-Producer-Epoch``,
``X-KBroker-Sequence``).
"""

from __future__ import annotations

from aiohttp import web

from kbroker.api.errors import json_response
from kbroker.api.groups import body_of
from kbroker.api.services import SERVICES
from kbroker.errors import BrokerError, ErrorCode, InvalidRequestError

__all__ = ["routes"]

MAX_EPOCH = 32767


async def init_producer(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    doc = await body_of(request) or {}
    if not isinstance(doc, dict) or doc.keys() - {"producer_id", "producer_epoch"}:
        raise InvalidRequestError('The body must be {} or {"producer_id", "producer_epoch"}')
    if "producer_id" not in doc:
        producer_id = await services.next_producer_id()
        return json_response({"producer_id": producer_id, "producer_epoch": 0})
    given_id, epoch = doc.get("producer_id"), doc.get("producer_epoch")
    for value in (given_id, epoch):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidRequestError("producer_id and producer_epoch must be integers >= 0")
    assert isinstance(epoch, int)
    if epoch >= MAX_EPOCH:
        raise BrokerError(
            "The producer epoch is exhausted: ask for a new producer id",
            ErrorCode.INVALID_PRODUCER_EPOCH,
        )
    return json_response({"producer_id": given_id, "producer_epoch": epoch + 1})


def routes() -> list[web.RouteDef]:
    return [web.post("/producers", init_producer)]
