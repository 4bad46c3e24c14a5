"""The store's values and its on-disk record format: framing, checksum, one codec per type.

Contract: every ``encode_*`` function returns a list of byte chunks forming exactly one
framed record (sync marker, CRC32, length, type, payload); joined, they are accepted by
``segments.scan`` and the matching ``decode_*`` function gives the values back. A record is
self-delimiting and self-checking, so a reader can skip a damaged one and resynchronise on
the next marker. Pure functions, no I/O. The layout is documented in docs/storage-format.md.
The per-message encoders (``encode_publish``, ``encode_ref``) are compiled when the
accelerator is available (amqpd/accel.py); ``pure_encode_*`` are their byte-identical twins.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from dataclasses import dataclass, field
from typing import Any

from pamqp import decode as _pdecode
from pamqp import encode as _pencode

from amqpd.accel import speedups

# ---------------------------------------------------------------------------- values


@dataclass(frozen=True)
class ExchangeRecord:
    name: str
    type: str
    auto_delete: bool
    internal: bool
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueRecord:
    name: str
    auto_delete: bool
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BindingRecord:
    source: str
    destination_kind: str  # "queue" | "exchange"
    destination: str
    routing_key: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RecoveredMessage:
    message_id: int
    exchange: str
    routing_key: str
    header: bytes
    body: bytes | None  # None: recovered without it, to be read back from the log
    delivered: bool


@dataclass(slots=True)
class RecoveredIds:
    """A queue's live messages recovered without their content (read back from the log when
    needed): ids in increasing order, delivered flags (0/1) and body sizes, in arrays."""

    ids: array[int]
    delivered: bytearray
    sizes: array[int]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Recovered:
    exchanges: list[ExchangeRecord]
    queues: list[QueueRecord]
    bindings: list[BindingRecord]
    # queue -> live messages in message_id order; compact (RecoveredIds) when recovered
    # without bodies
    messages: dict[str, list[RecoveredMessage] | RecoveredIds]
    next_message_id: int  # larger than any id ever used
    corrupt_records: int
    truncated_bytes: int
    seconds: float


# ----------------------------------------------------------------------------- file header

FILE_MAGIC = b"AMQPDLOG"
VERSION = 1
# magic, version, 3 reserved zero bytes, segment number, CRC32 of the preceding 20 bytes
FILE_HEADER = struct.Struct("<8sB3xQI")
FILE_HEADER_SIZE = FILE_HEADER.size  # 24


def encode_file_header(number: int) -> bytes:
    head = FILE_HEADER.pack(FILE_MAGIC, VERSION, number, 0)[:20]
    return head + struct.pack("<I", zlib.crc32(head))


def decode_file_header(data: bytes) -> tuple[int, int] | None:
    """(version, segment number) of a well-formed header, or None."""
    if len(data) < FILE_HEADER_SIZE:
        return None
    magic, version, number, crc = FILE_HEADER.unpack_from(data, 0)
    if magic != FILE_MAGIC or zlib.crc32(data[:20]) != crc:
        return None
    return version, number


# ---------------------------------------------------------------------------- record framing

MARK = 0xC71DA9F3  # sync marker, little-endian on disk: f3 a9 1d c7
MARK_BYTES = struct.pack("<I", MARK)
# marker, CRC32 (over everything after it), payload length, type
RECORD_HEAD = struct.Struct("<IIIB")
RECORD_HEAD_SIZE = RECORD_HEAD.size  # 13
MAX_PAYLOAD = 1 << 30

EXCHANGE = 1
EXCHANGE_DELETE = 2
QUEUE = 3
QUEUE_DELETE = 4
BIND = 5
UNBIND = 6
PUBLISH = 7
DELIVERED = 8
REMOVED = 9
PURGE = 10
WATERMARK = 11

_LEN_TYPE = struct.Struct("<IB")
_MARK_CRC = struct.Struct("<II")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_TABLE_LEN = struct.Struct(">I")
_U64_U16 = struct.Struct("<QH")
_U8_U16 = struct.Struct("<BH")
_REF_HEAD = struct.Struct("<IBQ")  # payload length, type, message id (of DELIVERED/REMOVED)
_FLAG_NONE = b"\x00"
_FLAG_DELIVERED = b"\x01"
_ONE_QUEUE = b"\x01\x00\x00"  # u16 queue count 1, then the flag of that queue
_ONE_QUEUE_DELIVERED = b"\x01\x00\x01"
_STRINGS_MAX = 4096


def _framed(rtype: int, parts: list[bytes]) -> list[bytes]:
    """Prefix payload chunks with marker, CRC and length; the CRC covers length..end."""
    size = 0
    for p in parts:
        size += len(p)
    head = _LEN_TYPE.pack(size, rtype)
    crc = zlib.crc32(head)
    for p in parts:
        crc = zlib.crc32(p, crc)
    return [_MARK_CRC.pack(MARK, crc) + head, *parts]


def _s(value: str) -> bytes:
    raw = value.encode()
    return _U16.pack(len(raw)) + raw


def _table(value: dict[str, Any]) -> bytes:
    return _field_table(value) if value else b"\x00\x00\x00\x00"


_DOUBLE = struct.Struct(">d")


def _field_table(table: dict[str, Any]) -> bytes:
    """A client's table as it was decoded, in its order. Unlike pamqp's encoder this keeps
    doubles as doubles (pamqp writes floats as 32-bit and fails on larger ones), names of up
    to 255 bytes (pamqp cuts them at 128) and long strings that are not UTF-8 (bytes)."""
    parts: list[bytes] = []
    for key, item in table.items():
        name = key.encode()
        parts += (bytes((len(name),)), name, _field_value(item))
    body = b"".join(parts)
    return _TABLE_LEN.pack(len(body)) + body


def _field_value(item: Any) -> bytes:
    if isinstance(item, float):
        return b"d" + _DOUBLE.pack(item)
    if isinstance(item, bytes):
        return b"S" + _TABLE_LEN.pack(len(item)) + item
    if isinstance(item, dict):
        return b"F" + _field_table(item)
    if isinstance(item, list):
        body = b"".join(_field_value(element) for element in item)
        return b"A" + _TABLE_LEN.pack(len(body)) + body
    return _pencode.encode_table_value(item)


def encode_exchange(r: ExchangeRecord) -> list[bytes]:
    flags = (1 if r.auto_delete else 0) | (2 if r.internal else 0)
    return _framed(EXCHANGE, [_s(r.name) + _s(r.type) + _U8.pack(flags) + _table(r.arguments)])


def encode_queue(r: QueueRecord) -> list[bytes]:
    flags = 1 if r.auto_delete else 0
    return _framed(QUEUE, [_s(r.name) + _U8.pack(flags) + _table(r.arguments)])


def encode_name(rtype: int, name: str) -> list[bytes]:
    """EXCHANGE_DELETE, QUEUE_DELETE or PURGE: the payload is one name."""
    return _framed(rtype, [_s(name)])


def encode_binding(rtype: int, r: BindingRecord) -> list[bytes]:
    """BIND or UNBIND."""
    kind = 1 if r.destination_kind == "exchange" else 0
    payload = (
        _s(r.source) + _U8.pack(kind) + _s(r.destination) + _s(r.routing_key) + _table(r.arguments)
    )
    return _framed(rtype, [payload])


def pure_encode_publish(
    message_id: int,
    queues: dict[str, bool],
    exchange: str,
    routing_key: str,
    header: bytes,
    body: bytes,
    strings: dict[str, bytes] | None = None,
) -> list[bytes]:
    """A message and the queues holding it, each with its delivered flag.

    ``strings`` is an optional cache of encoded strings (see ``encoded_str``).
    """
    if strings is None:
        strings = {}
    ex = strings.get(exchange)
    if ex is None:
        ex = encoded_str(strings, exchange)
    rk = strings.get(routing_key)
    if rk is None:
        rk = encoded_str(strings, routing_key)
    if len(queues) == 1:
        for name, delivered in queues.items():
            q = strings.get(name)
            if q is None:
                q = encoded_str(strings, name)
            head = b"".join(
                (
                    _U64.pack(message_id),
                    ex,
                    rk,
                    _ONE_QUEUE_DELIVERED if delivered else _ONE_QUEUE,
                    q,
                    _U32.pack(len(header)),
                    header,
                )
            )
    else:
        parts = [_U64.pack(message_id), ex, rk, _U16.pack(len(queues))]
        for name, delivered in queues.items():
            q = strings.get(name)
            if q is None:
                q = encoded_str(strings, name)
            parts.append(_FLAG_DELIVERED if delivered else _FLAG_NONE)
            parts.append(q)
        parts.append(_U32.pack(len(header)))
        parts.append(header)
        head = b"".join(parts)
    lentype = _LEN_TYPE.pack(len(head) + len(body), PUBLISH)
    crc = zlib.crc32(body, zlib.crc32(head, zlib.crc32(lentype)))
    return [_MARK_CRC.pack(MARK, crc) + lentype, head, body]


def encode_message_ref(rtype: int, queue: str, message_id: int) -> list[bytes]:
    """DELIVERED or REMOVED: a message id and a queue name."""
    return [encode_ref(rtype, _s(queue), message_id)]


def pure_encode_ref(rtype: int, queue: bytes, message_id: int) -> bytes:
    """DELIVERED or REMOVED as one bytes; ``queue`` is the encoded name (``encoded_str``)."""
    payload = _REF_HEAD.pack(8 + len(queue), rtype, message_id) + queue
    return _MARK_CRC.pack(MARK, zlib.crc32(payload)) + payload


def encoded_str(strings: dict[str, bytes], value: str) -> bytes:
    """``value`` as a ``str`` field (u16 length, UTF-8), remembered in ``strings``."""
    raw = _s(value)
    if len(strings) >= _STRINGS_MAX:
        strings.clear()  # routing keys can be unique per message: keep the cache bounded
    strings[value] = raw
    return raw


_speedups = speedups()
encode_publish = pure_encode_publish if _speedups is None else _speedups.encode_publish
encode_ref = pure_encode_ref if _speedups is None else _speedups.encode_ref


def encode_watermark(next_message_id: int) -> list[bytes]:
    return _framed(WATERMARK, [_U64.pack(next_message_id)])


# ------------------------------------------------------------------------------- decoding
# Every decoder takes the segment bytes and the payload's [start, end) and may raise
# struct.error, UnicodeDecodeError, ValueError or IndexError on a malformed payload (which,
# behind a good CRC, only a software bug could produce); callers count that as corrupt.


def _rs(data: bytes, p: int) -> tuple[str, int]:
    (n,) = _U16.unpack_from(data, p)
    p += 2
    return data[p : p + n].decode(), p + n


def _rtable(data: bytes, p: int, end: int) -> tuple[dict[str, Any], int]:
    (n,) = _TABLE_LEN.unpack_from(data, p)  # AMQP tables carry a big-endian length
    if n == 0:
        return {}, p + 4
    if p + 4 + n > end:
        raise ValueError("field table overruns record")
    _, table = _pdecode.field_table(bytes(data[p : p + 4 + n]))
    return table, p + 4 + n


def decode_exchange(data: bytes, p: int, end: int) -> ExchangeRecord:
    name, p = _rs(data, p)
    etype, p = _rs(data, p)
    flags = data[p]
    args, _ = _rtable(data, p + 1, end)
    return ExchangeRecord(name, etype, bool(flags & 1), bool(flags & 2), args)


def decode_queue(data: bytes, p: int, end: int) -> QueueRecord:
    name, p = _rs(data, p)
    flags = data[p]
    args, _ = _rtable(data, p + 1, end)
    return QueueRecord(name, bool(flags & 1), args)


def decode_name(data: bytes, p: int, end: int) -> str:
    return _rs(data, p)[0]


def decode_binding(data: bytes, p: int, end: int) -> BindingRecord:
    source, p = _rs(data, p)
    kind = "exchange" if data[p] == 1 else "queue"
    destination, p = _rs(data, p + 1)
    routing_key, p = _rs(data, p)
    args, _ = _rtable(data, p, end)
    return BindingRecord(source, kind, destination, routing_key, args)


def decode_publish_queues(data: bytes, p: int) -> tuple[int, list[tuple[str, bool]], int]:
    """(message id, [(queue, delivered)], offset of the header length) of a PUBLISH."""
    mid, n = _U64_U16.unpack_from(data, p)
    p += 10 + n  # exchange
    (n,) = _U16.unpack_from(data, p)
    p += 2 + n  # routing key
    (count,) = _U16.unpack_from(data, p)
    p += 2
    queues = []
    for _ in range(count):
        flag, n = _U8_U16.unpack_from(data, p)
        p += 3
        queues.append((data[p : p + n].decode(), flag == 1))
        p += n
    return mid, queues, p


def decode_publish_content(data: bytes, p: int, end: int) -> tuple[str, str, bytes, bytes]:
    """(exchange, routing key, header, body) of a PUBLISH payload starting at p."""
    exchange, q = _rs(data, p + 8)
    routing_key, q = _rs(data, q)
    (count,) = _U16.unpack_from(data, q)
    q += 2
    for _ in range(count):
        (n,) = _U16.unpack_from(data, q + 1)
        q += 3 + n
    (n,) = _U32.unpack_from(data, q)
    q += 4
    if q + n > end:
        raise ValueError("header overruns record")
    return exchange, routing_key, bytes(data[q : q + n]), bytes(data[q + n : end])


def decode_message_ref(data: bytes, p: int, end: int) -> tuple[int, str]:
    mid, n = _U64_U16.unpack_from(data, p)
    p += 10
    return mid, data[p : p + n].decode()


def decode_watermark(data: bytes, p: int, end: int) -> int:
    return _U64.unpack_from(data, p)[0]


def binding_key(r: BindingRecord) -> tuple[str, str, str, str, bytes]:
    """A hashable identity for a binding (its arguments take part, as in AMQP)."""
    return (r.source, r.destination_kind, r.destination, r.routing_key, _table(r.arguments))
