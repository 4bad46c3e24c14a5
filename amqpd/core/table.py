"""Raw AMQP field tables and content headers, edited without re-encoding what is kept.

Dead-lettering and sender-selected distribution change a few headers of a message; every
other header and property must reach consumers byte for byte, with its original field
types. `split_table` cuts an encoded table into `(name, encoded value)` pairs,
`join_table` puts pairs back together, the `encode_*` helpers write the few value types
the broker adds itself, and `replace_headers` rebuilds a content-header payload with a new
headers table (and, optionally, without its expiration property).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

_long = struct.Struct(">I")
_i64 = struct.Struct(">q")
_u64 = struct.Struct(">Q")

# Sizes of the fixed-width field value types (after the type byte).
_FIXED = {
    ord("t"): 1, ord("b"): 1, ord("B"): 1, ord("s"): 2, ord("u"): 2, ord("U"): 2,
    ord("I"): 4, ord("i"): 4, ord("f"): 4, ord("l"): 8, ord("L"): 8, ord("d"): 8,
    ord("T"): 8, ord("D"): 5, ord("V"): 0,
}  # fmt: skip
_SIZED = frozenset(ord(kind) for kind in "SAFx")  # a 32-bit length, then that many bytes


class TableError(ValueError):
    """An encoded table or header that does not parse."""


def _value_end(data: bytes, pos: int) -> int:
    kind = data[pos]
    fixed = _FIXED.get(kind)
    if fixed is not None:
        return pos + 1 + fixed
    if kind in _SIZED:
        (size,) = _long.unpack_from(data, pos + 1)
        return pos + 5 + size
    raise TableError(f"unknown field type {chr(kind)!r}")


def split_table(raw: bytes | None) -> list[tuple[bytes, bytes]]:
    """`(name, type byte + encoded value)` pairs of an encoded table (with its length prefix)."""
    if not raw:
        return []
    try:
        (size,) = _long.unpack_from(raw, 0)
        end = 4 + size
        pos = 4
        pairs: list[tuple[bytes, bytes]] = []
        while pos < end:
            name_end = pos + 1 + raw[pos]
            value_end = _value_end(raw, name_end)
            pairs.append((raw[pos + 1 : name_end], raw[name_end:value_end]))
            pos = value_end
    except (struct.error, IndexError) as error:
        raise TableError(str(error)) from error
    if pos != end:
        raise TableError("field table length does not match its contents")
    return pairs


def split_array(value: bytes) -> list[bytes]:
    """The encoded elements (type byte + value) of an encoded array value (`A...`)."""
    (size,) = _long.unpack_from(value, 1)
    pos, end = 5, 5 + size
    items: list[bytes] = []
    while pos < end:
        item_end = _value_end(value, pos)
        items.append(value[pos:item_end])
        pos = item_end
    return items


def join_table(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """An encoded table (with its length prefix) from `(name, encoded value)` pairs."""
    body = b"".join(bytes((len(name),)) + name + value for name, value in pairs)
    return _long.pack(len(body)) + body


def encode_longstr(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return b"S" + _long.pack(len(data)) + data


def encode_long(value: int) -> bytes:
    return b"l" + _i64.pack(value)


def encode_timestamp(seconds: int) -> bytes:
    return b"T" + _u64.pack(seconds)


def encode_array(items: Iterable[bytes]) -> bytes:
    body = b"".join(items)
    return b"A" + _long.pack(len(body)) + body


def encode_table_value(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    return b"F" + join_table(pairs)


def decode_longstr(value: bytes) -> bytes | None:
    """The bytes of an encoded long string value, None if it is another type."""
    if value[:1] != b"S":
        return None
    return value[5:]


def decode_long(value: bytes) -> int | None:
    """An encoded integer value of any width, None if it is another type."""
    kind = value[:1]
    formats = {b"l": ">q", b"L": ">Q", b"I": ">i", b"i": ">I", b"s": ">h", b"u": ">H",
               b"b": ">b", b"B": ">B"}  # fmt: skip
    fmt = formats.get(kind)
    if fmt is None:
        return None
    return int(struct.unpack_from(fmt, value, 1)[0])


# Basic property flags, most significant first: (bit, kind) where kind is how to skip it.
_HEADERS = 1 << 13
_REPLY_TO = 1 << 9
_EXPIRATION = 1 << 8
_PROPERTIES = (
    (1 << 15, "s"), (1 << 14, "s"), (_HEADERS, "F"), (1 << 12, "o"), (1 << 11, "o"),
    (1 << 10, "s"), (1 << 9, "s"), (_EXPIRATION, "s"), (1 << 7, "s"), (1 << 6, "8"),
    (1 << 5, "s"), (1 << 4, "s"), (1 << 3, "s"), (1 << 2, "s"),
)  # fmt: skip


def replace_headers(payload: bytes, headers: bytes | None, *, drop_expiration: bool) -> bytes:
    """A content-header payload with its headers table replaced by `headers` (an encoded
    table, or None for no headers) and, if asked, its expiration property removed."""
    flags = int.from_bytes(payload[12:14], "big")
    if flags & 1:
        raise TableError("continuation property flags are not supported")
    pos = 14
    kept: list[bytes] = []
    new_flags = 0
    for bit, kind in _PROPERTIES:
        if not flags & bit:
            if bit == _HEADERS and headers is not None:
                kept.append(headers)
                new_flags |= bit
            continue
        if kind == "s":
            end = pos + 1 + payload[pos]
        elif kind == "F":
            end = pos + 4 + _long.unpack_from(payload, pos)[0]
        elif kind == "o":
            end = pos + 1
        else:
            end = pos + 8
        if bit == _HEADERS:
            if headers is not None:
                kept.append(headers)
                new_flags |= bit
        elif not (bit == _EXPIRATION and drop_expiration):
            kept.append(payload[pos:end])
            new_flags |= bit
        pos = end
    if pos > len(payload):
        raise TableError("content header shorter than its properties")
    return payload[:12] + new_flags.to_bytes(2, "big") + b"".join(kept)


def _property_span(payload: bytes, wanted: int) -> tuple[int, int] | None:
    """Where property `wanted` (a flag bit) sits in a content-header payload, if present."""
    flags = int.from_bytes(payload[12:14], "big")
    if not flags & wanted or flags & 1:
        return None
    pos = 14
    for bit, kind in _PROPERTIES:
        if not flags & bit:
            continue
        if kind == "s":
            end = pos + 1 + payload[pos]
        elif kind == "F":
            end = pos + 4 + _long.unpack_from(payload, pos)[0]
        elif kind == "o":
            end = pos + 1
        else:
            end = pos + 8
        if bit == wanted:
            return pos, end
        pos = end
    return None


def reply_to_of(payload: bytes) -> bytes | None:
    """The reply_to property of a content-header payload (None if absent)."""
    span = _property_span(payload, _REPLY_TO)
    return None if span is None else payload[span[0] + 1 : span[1]]


def replace_reply_to(payload: bytes, reply_to: str) -> bytes:
    """A content-header payload whose (present) reply_to property is `reply_to`."""
    span = _property_span(payload, _REPLY_TO)
    if span is None:
        return payload
    value = reply_to.encode()
    return payload[: span[0]] + bytes((len(value),)) + value + payload[span[1] :]


def properties_end(payload: bytes) -> int:
    """Where the properties of a content-header payload end (its length, unless something
    follows them)."""
    flags = int.from_bytes(payload[12:14], "big")
    if flags & 1:
        raise TableError("continuation property flags are not supported")
    pos = 14
    for bit, kind in _PROPERTIES:
        if not flags & bit:
            continue
        if kind == "s":
            pos += 1 + payload[pos]
        elif kind == "F":
            pos += 4 + _long.unpack_from(payload, pos)[0]
        elif kind == "o":
            pos += 1
        else:
            pos += 8
    if pos > len(payload):
        raise TableError("content header shorter than its properties")
    return pos
