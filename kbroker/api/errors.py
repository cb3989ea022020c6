"""One middleware turns every failure into Confluent's error body.

``{"error_code": <int>, "message": <str>, "retriable": <bool>}`` with the HTTP status of the code
(see kclient.protocol). BrokerError carries its own code; aiohttp's HTTP exceptions (unknown
route, wrong method, body too large) are mapped to the matching code; anything else is a bug: it
is logged with its traceback and answered with 500/50001, never with a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import orjson
from aiohttp import web

from kbroker.errors import BrokerError, ErrorCode, InternalError

__all__ = [
    "answer_or_error",
    "error_middleware",
    "error_response",
    "json_response",
]

log = logging.getLogger(__name__)

_HTTP_CODES: Final = {
    400: ErrorCode.MALFORMED_REQUEST,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    408: ErrorCode.REQUEST_TIMEOUT,
    411: ErrorCode.LENGTH_REQUIRED,
    413: ErrorCode.REQUEST_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(
    body: object, *, status: int = 200, content_type: str = "application/json"
) -> web.Response:
    """A response whose body is ``body`` serialised by orjson (or raw bytes)."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=data, status=status, content_type=content_type)


def error_response(exc: BrokerError) -> web.Response:
    response = json_response(exc.body(), status=exc.status)
    if exc.retriable:
        response.headers["Retry-After"] = "1"
    return response


def _from_http_exception(exc: web.HTTPException) -> BrokerError:
    code = _HTTP_CODES.get(exc.status)
    message = exc.reason
    if exc.status == 404:
        message = "HTTP 404 Not Found"
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        message = (
            f"HTTP 405 Method Not Allowed: {exc.method} is not served here (allowed: {allowed})"
        )
    elif exc.status == 413:
        message = f"Request body too large: {exc.text or exc.reason}"
    if code is None:
        return BrokerError(message, ErrorCode.INTERNAL_ERROR)
    return BrokerError(message, code)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure of ``handler`` as a Confluent error body (see the module docstring)."""
    return await answer_or_error(request, handler)


async def answer_or_error(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BrokerError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = _from_http_exception(exc)
        response = error_response(error)
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    except (ConnectionResetError, TimeoutError) as exc:
        log.info("client went away during %s %s: %r", request.method, request.path, exc)
        raise
    except Exception:
        log.exception("unexpected failure in %s %s", request.method, request.path)
        return error_response(InternalError())
