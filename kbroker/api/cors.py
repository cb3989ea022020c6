"""Cross-origin requests (CORS), so that browser applications can call the API.

Off unless ``access.control.allow.origin`` is set (``*`` or a list of origins), as in
Confluent's REST Proxy. Then a request whose ``Origin`` is allowed gets
``Access-Control-Allow-Origin`` (``*``, or its own origin with ``Vary: Origin``) and
``Access-Control-Expose-Headers`` (the response headers a reader needs: high watermark, next
offset, log start, Retry-After); the headers are added when the response is prepared, so
streamed answers (v3 produce) carry them too. A preflight (``OPTIONS`` with
``Access-Control-Request-Method``) from an allowed origin is answered 204 with the allowed
methods and headers and a max age of 10 minutes, without reaching a handler. Other origins get
no CORS headers (the browser then blocks the response); clients that are not browsers are
unaffected.

Concurrency: stateless; runs on whichever event loop serves the application.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aiohttp import hdrs, web

from kbroker.api.errors import Handler
from kbroker.config import BrokerConfig
from kclient.protocol import HIGH_WATERMARK_HEADER, LOG_START_HEADER, NEXT_OFFSET_HEADER

__all__ = ["CorsPolicy", "install_cors"]

_EXPOSED: Final = ", ".join(
    (HIGH_WATERMARK_HEADER, NEXT_OFFSET_HEADER, LOG_START_HEADER, "Retry-After")
)
_MAX_AGE_S: Final = "600"


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """Which origins may call, with which methods and request headers."""

    origins: frozenset[str]
    """Allowed origins; ``{"*"}`` allows any."""
    methods: str
    headers: str

    @classmethod
    def from_config(cls, config: BrokerConfig) -> CorsPolicy | None:
        origins = {o.strip() for o in config.access_control_allow_origin.split(",") if o.strip()}
        if not origins:
            return None
        return cls(
            origins=frozenset(origins),
            methods=config.access_control_allow_methods,
            headers=config.access_control_allow_headers,
        )

    def allowed(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for ``origin``, or None to send none."""
        if origin is None:
            return None
        if "*" in self.origins:
            return "*"
        return origin if origin in self.origins else None

    @web.middleware
    async def preflight(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Answer preflights from allowed origins; pass everything else on."""
        if (
            request.method == hdrs.METH_OPTIONS
            and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
            and self.allowed(request.headers.get(hdrs.ORIGIN)) is not None
        ):
            return web.Response(
                status=204,
                headers={
                    hdrs.ACCESS_CONTROL_ALLOW_METHODS: self.methods,
                    hdrs.ACCESS_CONTROL_ALLOW_HEADERS: self.headers,
                    hdrs.ACCESS_CONTROL_MAX_AGE: _MAX_AGE_S,
                },
            )
        return await handler(request)

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """Add the CORS response headers for an allowed origin (every response, streamed or
        not, errors included)."""
        allowed = self.allowed(request.headers.get(hdrs.ORIGIN))
        if allowed is None:
            return
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = allowed
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = _EXPOSED
        if allowed != "*":
            response.headers.add(hdrs.VARY, hdrs.ORIGIN)


def install_cors(app: web.Application, config: BrokerConfig) -> None:
    """Apply ``config``'s CORS policy to ``app`` (nothing when it has none). Call before the
    application starts; the preflight middleware runs first."""
    policy = CorsPolicy.from_config(config)
    if policy is None:
        return
    app.middlewares.insert(0, policy.preflight)
    app.on_response_prepare.append(policy.on_prepare)
