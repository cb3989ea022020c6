"""The OpenAPI document describes exactly the public routes, with the code's own limits."""

from __future__ import annotations

import re
from typing import Any, cast

from kbroker.api.app import build_app
from kbroker.api.openapi import build_spec
from kbroker.api.params import TOPIC_NAME
from kbroker.api.services import Services
from kbroker.config import BrokerConfig

CONFIG = BrokerConfig.build(
    {"broker.id": 1, "zookeeper.connect": "127.0.0.1:2181", "data.dir": "/tmp/unused"}
)


class _Services:
    config = CONFIG


def _public_routes() -> set[tuple[str, str]]:
    app = build_app(cast(Services, _Services()))
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method == "HEAD" or path is None or path.startswith("/internal/"):
            continue
        routes.add((route.method.lower(), path))
    return routes


def _documented(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, ops in spec["paths"].items() for method in ops}


def test_every_public_route_is_documented_and_nothing_else() -> None:
    spec = build_spec(CONFIG)
    assert _public_routes() == _documented(spec)


def test_every_operation_documents_errors_with_a_schema() -> None:
    spec = build_spec(CONFIG)
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            errors = [code for code in op["responses"] if code.startswith(("4", "5"))]
            assert errors, f"{method} {path} lists no error response"
            for code in errors:
                schema = op["responses"][code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}


def test_limits_come_from_the_code() -> None:
    spec = build_spec(CONFIG)
    fetch = spec["paths"]["/topics/{topic}/partitions/{partition}/records"]["get"]
    params = {p["name"]: p["schema"] for p in fetch["parameters"]}
    assert params["max_bytes"]["maximum"] == CONFIG.fetch_max_bytes
    assert params["timeout"]["maximum"] == CONFIG.fetch_max_wait_ms
    assert params["topic"]["pattern"] == f"^{TOPIC_NAME.pattern}$"
    assert re.fullmatch(params["topic"]["pattern"][1:-1], "orders.v1-eu_2")
