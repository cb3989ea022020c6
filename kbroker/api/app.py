"""The aiohttp application: routes, the error middleware and the shared services.

Handlers live one module per resource (produce, fetch, topics, v3, internal); this module only
wires them. The application holds the broker's :class:`~kbroker.api.services.Services` under
the typed key ``SERVICES``.
"""

from __future__ import annotations

import time

from aiohttp import web

from kbroker.api import (
    consumers,
    groups,
    internal,
    observability,
    openapi,
    producers,
    topics,
    v3,
)
from kbroker.api.cors import install_cors
from kbroker.api.errors import Handler, answer_or_error
from kbroker.api.fetch import fetch_batches, fetch_messages, fetch_records
from kbroker.api.forward import original_host
from kbroker.api.observability import REQUEST_METRICS, RequestMetrics
from kbroker.api.produce import produce_to_partition, produce_to_topic
from kbroker.api.produce_v3 import produce_batch_v3, produce_v3
from kbroker.api.services import SERVICES, Services

__all__ = ["broker_middleware", "build_app"]


@web.middleware
async def broker_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one middleware of the broker's application (one layer: it runs on every request):
    the client's original host (kbroker.api.forward.original_host), Confluent error bodies for
    every failure (kbroker.api.errors), the request metrics (kbroker.api.observability),
    and ``Connection: close`` while the broker drains, so
    that clients stop reusing connections before it closes them (a request sent on a connection
    at the moment the server closes it fails ambiguously)."""
    request = original_host(request)
    if request.match_info.http_exception is not None:
        request, handler = await _without_trailing_slash(request, handler)
    started = time.perf_counter()
    response = await answer_or_error(request, handler)
    request.app[REQUEST_METRICS].observe(request, response.status, time.perf_counter() - started)
    if request.app[SERVICES].draining:
        response.force_close()
    return response


async def _without_trailing_slash(
    request: web.Request, handler: Handler
) -> tuple[web.Request, Handler]:
    """A request whose path matched no route but matches one without its trailing slash(es)
    is served by that route, as JAX-RS (Confluent's proxy) serves ``/topics/`` as ``/topics``.
    Answered in place, not redirected: clients do not follow redirects of a POST. A path that
    matches only with another method gets that route's 405; otherwise the request and handler
    are returned unchanged."""
    path, mark, query = request.raw_path.partition("?")
    if len(path) <= 1 or not path.endswith("/"):
        return request, handler
    alternative = request.clone(rel_url=(path.rstrip("/") or "/") + mark + query)
    match = await request.app.router.resolve(alternative)
    if match.http_exception is not None and match.http_exception.status != 405:
        return request, handler
    match.add_app(request.app)
    alternative._match_info = match  # as aiohttp's own normalize_path_middleware does
    return alternative, match.handler


def build_app(
    services: Services, *, local: bool = False, metrics: RequestMetrics | None = None
) -> web.Application:
    """A ready-to-run application serving ``services``. The ``local`` one is served on the
    broker's Unix socket to its HTTP worker processes, which add CORS headers themselves."""
    app = web.Application(
        middlewares=[broker_middleware],
        client_max_size=services.config.max_request_bytes,
    )
    app[SERVICES] = services
    app[REQUEST_METRICS] = metrics or RequestMetrics()
    if not local:  # workers add the CORS headers to what they relay
        install_cors(app, services.config)
    # aiohttp tries the resources under one path prefix in the order they were added: the
    # produce and fetch routes go first, so that their requests match at the first candidate.
    app.add_routes(
        [
            web.post("/topics/{topic}", produce_to_topic),
            web.post("/topics/{topic}/partitions/{partition}", produce_to_partition),
            web.get("/topics/{topic}/partitions/{partition}/records", fetch_records),
            web.get("/topics/{topic}/partitions/{partition}/batches", fetch_batches),
            web.get("/topics/{topic}/partitions/{partition}/messages", fetch_messages),
            web.post("/v3/clusters/{cluster_id}/topics/{topic}/records", produce_v3),
            web.post("/v3/clusters/{cluster_id}/topics/{topic}/records:batch", produce_batch_v3),
        ]
    )
    app.add_routes(topics.routes())
    app.add_routes(v3.routes())
    app.add_routes(groups.routes())
    app.add_routes(consumers.routes())
    app.add_routes(producers.routes())
    internal.install(app)
    app.add_routes(openapi.routes())
    app.add_routes(observability.routes())
    return app
