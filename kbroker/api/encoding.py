"""Request body content codings (``Content-Encoding``): identity, gzip and deflate.

The broker's and the workers' HTTP servers run with aiohttp's ``auto_decompress`` off, so that
every body is decoded here, under kbroker's rules rather than the HTTP parser's:

* an unsupported coding (``br``, ``zstd``, anything unknown) is 415 with the JSON error body
  (aiohttp answered ``br`` and ``zstd`` with a text/plain 400 and passed unknown ones through);
* a body that is not valid data of its coding (corrupt, truncated, trailing bytes) is 400
  (aiohttp raised it from ``request.read()``, which became a 500);
* the *decoded* size counts against the limit (``max.request.bytes``): a 50 KB gzip of 50 MB is
  refused after ``limit`` bytes of output, never inflated whole.

Several codings (``Content-Encoding: deflate, gzip``: deflate applied first) are undone in
reverse order. ``deflate`` is the zlib format (RFC 9110); a raw deflate stream, which some
clients send, is accepted too. Concatenated gzip members are one body (RFC 1952).

A JSON body may also start with a UTF-8 byte order mark (some Windows tools write one):
:func:`strip_bom` drops it, as RFC 8259 (section 8.1) lets a parser do and as Jackson, behind
Confluent's proxy and Strimzi's bridge, does. orjson refuses it.

Pure functions over bytes; safe from any thread.
"""

from __future__ import annotations

import zlib
from typing import Final

from aiohttp import web

from kbroker.errors import BrokerError, ErrorCode

__all__ = ["SUPPORTED_CODINGS", "UTF8_BOM", "content_codings", "decode_body", "strip_bom"]

#: Codings kbroker decodes (``x-gzip`` is gzip's old name; ``identity`` means none).
SUPPORTED_CODINGS: Final = frozenset({"identity", "gzip", "x-gzip", "deflate"})
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
UTF8_BOM: Final = b"\xef\xbb\xbf"


def strip_bom(body: bytes) -> bytes:
    """``body`` without a leading UTF-8 byte order mark (a copy only when it has one)."""
    return body[len(UTF8_BOM) :] if body.startswith(UTF8_BOM) else body


def content_codings(request: web.Request) -> list[str]:
    """The body's codings in the order they were applied (``identity`` dropped); 415 for one
    kbroker does not decode."""
    header = request.headers.get("Content-Encoding")
    if header is None:
        return []
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    unsupported = [c for c in codings if c not in SUPPORTED_CODINGS]
    if unsupported:
        raise BrokerError(
            f"Content-Encoding {', '.join(unsupported)} is not supported; "
            "send gzip, deflate or an unencoded body",
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        )
    return [c for c in codings if c != "identity"]


def decode_body(data: bytes, codings: list[str], limit: int) -> bytes:
    """``data`` with ``codings`` undone (last applied, first undone); REQUEST_TOO_LARGE once an
    intermediate or final result would exceed ``limit`` bytes, MALFORMED_REQUEST if ``data`` is
    not valid."""
    for coding in reversed(codings):
        if not data:
            break  # no content: nothing to decode (an empty commit body, say)
        data = _inflate(data, coding, limit)
    return data


def _inflate(data: bytes, coding: str, limit: int) -> bytes:
    if coding == "deflate" and data[:1] and (data[0] & 0x0F != 8 or int.from_bytes(data[:2]) % 31):
        wbits = -zlib.MAX_WBITS  # no zlib header: a raw deflate stream
    else:
        wbits = _GZIP_WBITS if coding != "deflate" else zlib.MAX_WBITS
    out: list[bytes] = []
    size = 0
    rest = data
    try:
        while True:
            decoder = zlib.decompressobj(wbits)
            chunk = decoder.decompress(rest, limit - size + 1)
            size += len(chunk)
            out.append(chunk)
            if size > limit:  # (input left unconsumed means the output reached limit + 1)
                raise BrokerError(
                    f"Request body exceeds max.request.bytes ({limit}) once decoded ({coding})",
                    ErrorCode.REQUEST_TOO_LARGE,
                )
            if not decoder.eof:
                raise zlib.error("the stream ends early")
            rest = decoder.unused_data
            if not rest or wbits != _GZIP_WBITS:
                break  # another gzip member may follow; deflate data may not
    except zlib.error as exc:
        raise BrokerError(
            f"Request body is not valid {coding} data: {exc}", ErrorCode.MALFORMED_REQUEST
        ) from exc
    if rest:
        raise BrokerError(
            f"Request body is not valid {coding} data: bytes after the end of the stream",
            ErrorCode.MALFORMED_REQUEST,
        )
    return b"".join(out)
