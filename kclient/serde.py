"""Serializers and deserializers for record keys and values.

A serializer turns a Python object into ``bytes`` (``None`` stays ``None``: a null key or
value, never passed to the serializer); a deserializer turns ``bytes`` back. Built-ins are named
by string: ``"bytes"`` (the default: values must already be ``bytes``), ``"str"`` (UTF-8) and
``"json"`` (compact JSON via orjson, the bytes Confluent's JSON serializer writes). Any callable
is accepted too. Serializers run on the thread that calls ``send``; deserializers on the
consumer's event loop. Both must be pure and thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from kclient.errors import SerializationError

__all__ = [
    "Deserializer",
    "DeserializerSpec",
    "Serializer",
    "SerializerSpec",
    "bytes_deserializer",
    "bytes_serializer",
    "json_deserializer",
    "json_serializer",
    "resolve_deserializer",
    "resolve_serializer",
    "str_deserializer",
    "str_serializer",
]

Serializer = Callable[[Any], bytes]
Deserializer = Callable[[bytes], Any]
SerializerSpec = str | Serializer
DeserializerSpec = str | Deserializer


def bytes_serializer(value: Any) -> bytes:
    """Identity for ``bytes``; ``bytearray`` and ``memoryview`` are copied to ``bytes``."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise SerializationError(
        f"the bytes serializer needs bytes, not {type(value).__name__} "
        '(use value_serializer="str" or "json")'
    )


def str_serializer(value: Any) -> bytes:
    if not isinstance(value, str):
        raise SerializationError(f"the str serializer needs str, not {type(value).__name__}")
    return value.encode()


def json_serializer(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise SerializationError(f"not JSON serializable: {exc}") from exc


def bytes_deserializer(data: bytes) -> bytes:
    return data


def str_deserializer(data: bytes) -> str:
    return data.decode()


def json_deserializer(data: bytes) -> Any:
    return orjson.loads(data)


SERIALIZERS: Final[dict[str, Serializer]] = {
    "bytes": bytes_serializer,
    "str": str_serializer,
    "json": json_serializer,
}
DESERIALIZERS: Final[dict[str, Deserializer]] = {
    "bytes": bytes_deserializer,
    "str": str_deserializer,
    "json": json_deserializer,
}


def resolve_serializer(spec: SerializerSpec | None) -> Serializer:
    """The serializer ``spec`` names (``None`` means ``"bytes"``)."""
    if spec is None:
        return bytes_serializer
    if isinstance(spec, str):
        try:
            return SERIALIZERS[spec]
        except KeyError:
            raise ValueError(
                f"unknown serializer {spec!r}: use one of {sorted(SERIALIZERS)}"
            ) from None
    if not callable(spec):
        raise TypeError("a serializer must be a name or a callable")
    return spec


def resolve_deserializer(spec: DeserializerSpec | None) -> Deserializer:
    """The deserializer ``spec`` names (``None`` means ``"bytes"``)."""
    if spec is None:
        return bytes_deserializer
    if isinstance(spec, str):
        try:
            return DESERIALIZERS[spec]
        except KeyError:
            raise ValueError(
                f"unknown deserializer {spec!r}: use one of {sorted(DESERIALIZERS)}"
            ) from None
    if not callable(spec):
        raise TypeError("a deserializer must be a name or a callable")
    return spec
