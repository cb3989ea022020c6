"""Decoding request bodies: what each content coding accepts and refuses, and the size bound."""

from __future__ import annotations

import gzip
import zlib

import pytest

from kbroker.api.encoding import UTF8_BOM, decode_body, strip_bom
from kbroker.errors import BrokerError, ErrorCode

DATA = b'{"records":[' + b",".join(b'{"value":%d}' % i for i in range(500)) + b"]}"


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("codings", "encoded"),
    [
        (["gzip"], gzip.compress(DATA)),
        (["x-gzip"], gzip.compress(DATA)),
        (["deflate"], zlib.compress(DATA)),
        (["deflate"], _raw_deflate(DATA)),
        (["gzip"], gzip.compress(DATA[:100]) + gzip.compress(DATA[100:])),  # two members
        (["deflate", "gzip"], gzip.compress(zlib.compress(DATA))),  # deflate applied first
        (["gzip"], b""),
    ],
)
def test_decodes(codings: list[str], encoded: bytes) -> None:
    assert decode_body(encoded, codings, len(DATA)) == (DATA if encoded else b"")


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", b"not gzip at all"),
        ("gzip", gzip.compress(DATA)[:-4]),  # truncated
        ("gzip", gzip.compress(DATA) + b"junk"),
        ("deflate", zlib.compress(DATA)[:-10]),
        ("deflate", zlib.compress(DATA) + b"\x00"),
        ("deflate", b"\x78\x9c" + b"\xff" * 20),
    ],
)
def test_refuses_what_is_not_its_coding(coding: str, encoded: bytes) -> None:
    with pytest.raises(BrokerError) as caught:
        decode_body(encoded, [coding], 1 << 20)
    assert caught.value.code is ErrorCode.MALFORMED_REQUEST


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_the_decoded_size_is_bounded(coding: str) -> None:
    bomb = b"a" * (8 << 20)
    encoded = gzip.compress(bomb) if coding == "gzip" else zlib.compress(bomb)
    assert len(encoded) < 64 << 10
    assert decode_body(encoded, [coding], len(bomb)) == bomb
    with pytest.raises(BrokerError) as caught:
        decode_body(encoded, [coding], len(bomb) - 1)
    assert caught.value.code is ErrorCode.REQUEST_TOO_LARGE


def test_strip_bom_drops_only_a_leading_mark() -> None:
    assert strip_bom(UTF8_BOM + b'{"a":1}') == b'{"a":1}'
    assert strip_bom(b'{"a":1}') == b'{"a":1}'
    assert strip_bom(b"") == b""
    assert strip_bom(UTF8_BOM) == b""
    assert strip_bom(b" " + UTF8_BOM + b"{}") == b" " + UTF8_BOM + b"{}"
    assert strip_bom(UTF8_BOM + UTF8_BOM + b"{}") == UTF8_BOM + b"{}"  # one mark, not several
