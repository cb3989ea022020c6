"""Health, readiness and Prometheus metrics: ``GET /healthy``, ``GET /ready``, ``GET /metrics``.

``/healthy`` (as in Strimzi's bridge) answers 200 with no body while the process serves HTTP:
a liveness probe, which must not fail merely because ZooKeeper is away.

``/ready`` answers 200 ``{"ready": true, "broker_id"}`` when this broker is registered in the
cluster metadata, not fenced (its ZooKeeper session is confirmed and its state re-read) and not
stopping; otherwise 503 with the error body (50302, retriable) naming the reason. It is what
load balancers and Kubernetes readiness probes should ask; ``GET /`` only says the process
answers HTTP.

``/metrics`` is Prometheus' text format (version 0.0.4). Two kinds of series:

* per request, counted by the broker's middleware through :class:`RequestMetrics` (a few
  dictionary updates per request, nothing per record): ``kbroker_http_requests_total{method,
  route, code}`` and the ``kbroker_http_request_duration_seconds`` histogram per method and
  route (``route`` is the route's pattern, e.g. ``/topics/{topic}``, so the label set stays
  bounded). With HTTP worker processes they count what the broker process serves: what workers
  relay to it, and their own produce appends under the internal worker-append route;
* read when scraped, from the broker's state: broker and controller, ZooKeeper fencing,
  partitions led and hosted, under-replicated and offline partitions, per hosted partition the
  log start and end offsets, high watermark, size and ISR size, and the groups coordinated here.

Concurrency: event loop only.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Final

from aiohttp import web

from kbroker import __version__
from kbroker.api.errors import error_response, json_response
from kbroker.api.services import SERVICES, Services
from kbroker.errors import BrokerError, ErrorCode
from kbroker.replication.partition import Partition, Role

__all__ = ["REQUEST_METRICS", "RequestMetrics", "routes"]

#: Upper bounds (seconds) of the request-duration histogram's buckets.
BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


class RequestMetrics:
    """Request counts and durations by method and route (see the module docstring)."""

    def __init__(self) -> None:
        self.counts: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: defaultdict[tuple[str, str], list[int]] = defaultdict(
            lambda: [0] * (len(BUCKETS) + 1)
        )
        self.sums: defaultdict[tuple[str, str], float] = defaultdict(float)

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        self.record(request.method, route, status, seconds)

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route)
        self.counts[(method, route, status)] += 1
        self.buckets[key][bisect_left(BUCKETS, seconds)] += 1
        self.sums[key] += seconds

    def render(self) -> Iterable[str]:
        yield "# HELP kbroker_http_requests_total HTTP requests served, by route and status."
        yield "# TYPE kbroker_http_requests_total counter"
        for (method, route, status), count in sorted(self.counts.items()):
            labels = _labels(method=method, route=route, code=str(status))
            yield f"kbroker_http_requests_total{labels} {count}"
        name = "kbroker_http_request_duration_seconds"
        yield f"# HELP {name} Time to answer HTTP requests, by route."
        yield f"# TYPE {name} histogram"
        for (method, route), counts in sorted(self.buckets.items()):
            total = 0
            for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                total += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                yield f"{name}_bucket{_labels(method=method, route=route, le=le)} {total}"
            yield f"{name}_sum{_labels(method=method, route=route)} {self.sums[(method, route)]}"
            yield f"{name}_count{_labels(method=method, route=route)} {total}"


REQUEST_METRICS = web.AppKey("request_metrics", RequestMetrics)


def _labels(**labels: str) -> str:
    escaped = (
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + ",".join(escaped) + "}"


def _not_ready_reason(services: Services) -> str | None:
    broker_id = services.config.broker_id
    if services.draining or services.replicas.shutting_down:
        return f"broker {broker_id} is stopping"
    if services.replicas.fenced:
        return f"broker {broker_id} is fenced: its ZooKeeper session is not confirmed"
    if broker_id not in services.metadata.brokers:
        return f"broker {broker_id} is not registered in the cluster metadata yet"
    return None


async def ready(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    reason = _not_ready_reason(services)
    if reason is not None:
        return error_response(BrokerError(reason, ErrorCode.BROKER_NOT_AVAILABLE))
    return json_response({"ready": True, "broker_id": services.config.broker_id})


def _log_start(p: Partition) -> int:
    return p.log.log_start_offset


def _log_end(p: Partition) -> int:
    return p.log.log_end_offset


def _high_watermark(p: Partition) -> int:
    return p.log.high_watermark


def _log_size(p: Partition) -> int:
    return p.log.size_in_bytes


def _isr_size(p: Partition) -> int:
    return len(p.isr)


def _state_lines(services: Services) -> Iterable[str]:
    config, metadata, replicas = services.config, services.metadata, services.replicas
    broker = str(config.broker_id)

    def gauge(name: str, help_text: str, samples: Iterable[tuple[str, float]]) -> Iterable[str]:
        yield f"# HELP {name} {help_text}"
        yield f"# TYPE {name} gauge"
        for labels, value in samples:
            yield f"{name}{labels} {value}"

    yield from gauge(
        "kbroker_broker_info",
        "This broker (value 1).",
        [(_labels(broker_id=broker, version=__version__), 1)],
    )
    yield from gauge(
        "kbroker_controller_active",
        "1 on the broker that is the active controller.",
        [("", int(metadata.controller_id == config.broker_id))],
    )
    yield from gauge("kbroker_brokers", "Brokers registered.", [("", len(metadata.brokers))])
    yield from gauge(
        "kbroker_fenced", "1 while this broker is fenced.", [("", int(replicas.fenced))]
    )
    hosted = list(replicas.partitions())
    led = [p for p in hosted if p.role is Role.LEADER]
    yield from gauge("kbroker_partitions_hosted", "Replicas on this broker.", [("", len(hosted))])
    yield from gauge("kbroker_partitions_led", "Partitions this broker leads.", [("", len(led))])
    yield from gauge(
        "kbroker_under_replicated_partitions",
        "Partitions led here whose ISR is smaller than their replica set.",
        [("", sum(len(p.isr) < len(p.replicas) for p in led))],
    )
    offline = sum(
        info.leader < 0 for topic in metadata.topics.values() for info in topic.partitions
    )
    yield from gauge(
        "kbroker_offline_partitions", "Partitions without a leader (cluster view).", [("", offline)]
    )
    per_partition: list[tuple[str, str, Callable[[Partition], int], list[Partition]]] = [
        ("kbroker_log_start_offset", "Log start offset.", _log_start, hosted),
        ("kbroker_log_end_offset", "Log end offset.", _log_end, hosted),
        ("kbroker_high_watermark", "High watermark.", _high_watermark, hosted),
        ("kbroker_log_size_bytes", "Bytes in the log's segments.", _log_size, hosted),
        ("kbroker_isr_size", "In-sync replicas (partitions led here).", _isr_size, led),
    ]
    for name, help_text, value_of, partitions in per_partition:
        yield from gauge(
            name,
            help_text,
            [(_labels(topic=p.topic, partition=str(p.partition)), value_of(p)) for p in partitions],
        )
    groups = services.coordinator.local_groups()
    yield from gauge(
        "kbroker_groups_coordinated", "Consumer groups coordinated here.", [("", len(groups))]
    )


async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    lines = [*_state_lines(services), *request.app[REQUEST_METRICS].render()]
    body = ("\n".join(lines) + "\n").encode()
    return web.Response(body=body, headers={"Content-Type": _CONTENT_TYPE})


async def healthy(request: web.Request) -> web.Response:
    """Liveness (Strimzi's ``/healthy``): 200 while the process serves HTTP, whatever the
    cluster's state; readiness is ``/ready``."""
    return web.Response(status=200)


def routes() -> list[web.RouteDef]:
    return [web.get("/healthy", healthy), web.get("/ready", ready), web.get("/metrics", metrics)]
