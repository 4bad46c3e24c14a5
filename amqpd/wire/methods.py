"""Method frame payloads <-> values.

The per-message methods (basic.publish, ack, nack, reject in; basic.deliver, get-ok and
confirm acks out) are coded by hand with precompiled structs. Every other method goes
through pamqp's generated classes. `decode_method` returns `(index, args)` where index is
`class_id << 16 | method_id`; hot methods give a tuple, the rest a pamqp frame object.
A payload that cannot be decoded raises `MethodSyntaxError`. With the compiled accelerator
(amqpd/accel.py) the four hot methods are decoded in C and the rest falls through to
`pure_decode_method`; both give the same results and errors.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from pamqp import base, commands, decode, encode

from amqpd.accel import speedups
from amqpd.encoding import shortstr as shortstr  # re-exported: the codec's callers use it
from amqpd.wire.frames import (
    FRAME_BODY,
    FRAME_END_BYTE,
    FRAME_HEADER,
    FRAME_METHOD,
    FRAME_OVERHEAD,
    frame_head,
)
from amqpd.wire.tables import TableTooDeep, decode_table

ACCESS_REQUEST = 0x001E000A  # access.request: obsolete, pamqp lacks it, RabbitMQ answers it
BASIC_PUBLISH = 0x003C0028
BASIC_ACK = 0x003C0050
BASIC_REJECT = 0x003C005A
BASIC_NACK = 0x003C0078

_class_method = struct.Struct(">HH")
_short = struct.Struct(">H")
_tag_bits = struct.Struct(">QB")
_deliver_prefix = b"\x00\x3c\x00\x3c"
_get_ok_prefix = b"\x00\x3c\x00\x47"
_ack_frame = struct.Struct(">BHIHHQBB")
_long = struct.Struct(">I")
_F = TypeVar("_F", bound=base.Frame)


class MethodSyntaxError(Exception):
    """A method frame whose arguments do not decode; index 0 if even the ids are missing."""

    def __init__(self, index: int, payload: bytes, detail: str = "") -> None:
        super().__init__(f"cannot decode method {index >> 16}/{index & 0xFFFF}")
        self.index = index
        self.payload = payload
        self.detail = detail  # a reason to give instead of RabbitMQ's "cannot decode ..."


class UnknownMethodError(Exception):
    """A class/method id pair that AMQP 0-9-1 does not define."""

    def __init__(self, index: int) -> None:
        super().__init__(f"unknown method {index >> 16}/{index & 0xFFFF}")
        self.index = index


def _decode_publish(payload: bytes) -> tuple[str, str, bool, bool]:
    # ticket(2) exchange(shortstr) routing_key(shortstr) bits
    pos = 6
    size = payload[pos]
    exchange = payload[pos + 1 : pos + 1 + size].decode()
    pos += 1 + size
    size = payload[pos]
    routing_key = payload[pos + 1 : pos + 1 + size].decode()
    pos += 1 + size
    bits = payload[pos]
    if pos + 1 != len(payload):
        raise ValueError("trailing bytes")
    return exchange, routing_key, bool(bits & 1), bool(bits & 2)


def _tag_and_bits(payload: bytes) -> tuple[int, int]:
    if len(payload) != 13:
        raise ValueError("wrong length")
    return _tag_bits.unpack_from(payload, 4)


def _decode_ack(payload: bytes) -> tuple[int, bool]:
    tag, bits = _tag_and_bits(payload)
    return tag, bool(bits & 1)


def _decode_nack(payload: bytes) -> tuple[int, bool, bool]:
    tag, bits = _tag_and_bits(payload)
    return tag, bool(bits & 1), bool(bits & 2)


def _decode_reject(payload: bytes) -> tuple[int, bool]:
    tag, bits = _tag_and_bits(payload)
    return tag, bool(bits & 1)


def _decode_arguments(method: base.Frame, data: bytes) -> None:
    """Fill a pamqp method from its argument bytes, insisting they are used up exactly."""
    offset = 0
    bit_index = 0
    for name in method.__slots__:
        data_type = method.amqp_type(name)
        if data_type == "bit":
            if bit_index == 0:
                if offset >= len(data):
                    raise ValueError("missing bit octet")
                offset += 1
            setattr(method, name, bool(data[offset - 1] & (1 << bit_index)))
            bit_index = (bit_index + 1) % 8
            continue
        bit_index = 0
        if data_type == "table":
            offset, table = decode_table(data, offset)
            setattr(method, name, table)
            continue
        if data_type == "longstr":
            (size,) = _long.unpack_from(data, offset)
            if offset + 4 + size > len(data):
                raise ValueError("length beyond the frame")
        consumed, value = decode.by_type(data[offset:], data_type)
        offset += consumed
        if offset > len(data):
            raise ValueError("value beyond the frame")
        setattr(method, name, value)
    if offset != len(data):
        raise ValueError("trailing bytes")


_HOT_DECODERS = {
    BASIC_PUBLISH: _decode_publish,
    BASIC_ACK: _decode_ack,
    BASIC_NACK: _decode_nack,
    BASIC_REJECT: _decode_reject,
}


def pure_decode_method(payload: bytes) -> tuple[int, Any]:
    if len(payload) < 4:
        raise MethodSyntaxError(0, payload)
    class_id, method_id = _class_method.unpack_from(payload)
    index = class_id << 16 | method_id
    hot = _HOT_DECODERS.get(index)
    if index == ACCESS_REQUEST:
        return index, None
    try:
        if hot is not None:
            return index, hot(payload)
        method_class = commands.INDEX_MAPPING.get(index)
        if method_class is None:
            raise UnknownMethodError(index)
        method = method_class()
        _decode_arguments(method, payload[4:])
        return index, method
    except TableTooDeep as error:
        raise MethodSyntaxError(index, payload, str(error)) from None
    except (struct.error, IndexError, ValueError, UnicodeDecodeError, TypeError):
        raise MethodSyntaxError(index, payload) from None


_speedups = speedups()
decode_method = (
    pure_decode_method
    if _speedups is None
    else _speedups.MethodDecoder(pure_decode_method, MethodSyntaxError)
)


def unvalidated(method_class: type[_F], **fields: Any) -> _F:
    """A pamqp method object holding `fields`, built without its constructor's checks.

    pamqp's constructors validate names against the AMQP spec's domains (no `!`, `$`, `?`,
    non-ASCII ...), but RabbitMQ accepts any UTF-8 name up to 255 bytes, so a reply echoing a
    client's name must never go through them. Only `encode_method` should read the result."""
    method = method_class.__new__(method_class)
    for name, value in fields.items():
        setattr(method, name, value)
    return method


def encode_method(channel: int, method: base.Frame) -> bytes:
    """A whole method frame for a pamqp method object, without pamqp's name validation
    (RabbitMQ accepts any UTF-8 queue name, so replies must too)."""
    parts = [_class_method.pack(method.index >> 16, method.index & 0xFFFF)]
    bits = bit_count = 0
    for name in method.__slots__:
        data_type = method.amqp_type(name)
        value = getattr(method, name, 0)
        if data_type == "bit":
            bits |= (1 << bit_count) if value else 0
            bit_count += 1
            continue
        if bit_count:
            parts.append(bytes((bits,)))
            bits = bit_count = 0
        parts.append(encode.by_type(value, data_type))
    if bit_count:
        parts.append(bytes((bits,)))
    payload = b"".join(parts)
    return frame_head(FRAME_METHOD, channel, len(payload)) + payload + FRAME_END_BYTE


def deliver_parts(channel: int, consumer_tag: bytes, exchange_rk: bytes) -> tuple[bytes, bytes]:
    """The fixed parts of a basic.deliver around its delivery tag and redelivered bit:
    prefix + pack_tag_bits(tag, redelivered) + suffix is the whole frame. Consumers cache
    them per exchange/routing key, so a delivery costs one pack and two concatenations."""
    size = 4 + len(consumer_tag) + 9 + len(exchange_rk)
    return (
        frame_head(FRAME_METHOD, channel, size) + _deliver_prefix + consumer_tag,
        exchange_rk + FRAME_END_BYTE,
    )


pack_tag_bits = _tag_bits.pack


def pure_join_delivery(
    prefix: bytes, tag: int, redelivered: bool, suffix: bytes, content: bytes
) -> bytes:
    """A basic.deliver frame (`deliver_parts` around the tag and redelivered bit) followed
    by the delivery's content frames, as one bytes."""
    return prefix + _tag_bits.pack(tag, redelivered) + suffix + content


join_delivery: Callable[[bytes, int, bool, bytes, bytes], bytes] = (
    pure_join_delivery
    if _speedups is None
    else partial(_speedups.join_delivery, pure_join_delivery)
)


SMALL_CONTENT = 4096  # the largest body `deliver_small` takes (as the compiled twin)


def pure_deliver_small(
    prefix: bytes,
    tag: int,
    suffix: bytes,
    channel: int,
    header: bytes,
    body: bytes,
    frame_max: int,
) -> bytes | None:
    """A delivery with redelivered=false and a body of at most SMALL_CONTENT bytes that fits
    one frame, as one bytes: the basic.deliver frame (`deliver_parts` around the tag), the
    content header frame and the body frame; None for anything else (the caller builds
    those frames piece by piece)."""
    size = len(body)
    if size > SMALL_CONTENT or size > frame_max - FRAME_OVERHEAD or len(header) > SMALL_CONTENT:
        return None
    if not 0 <= tag < 1 << 64 or not 0 <= channel <= 0xFFFF:
        return None
    out = prefix + _tag_bits.pack(tag, False) + suffix
    out += frame_head(FRAME_HEADER, channel, len(header)) + header + FRAME_END_BYTE
    if size:
        out += frame_head(FRAME_BODY, channel, size) + body + FRAME_END_BYTE
    return out


deliver_small: Callable[[bytes, int, bytes, int, bytes, bytes, int], bytes | None] = (
    pure_deliver_small if _speedups is None else _speedups.deliver_small
)


def encode_get_ok(
    channel: int, delivery_tag: int, redelivered: bool, exchange_rk: bytes, message_count: int
) -> bytes:
    size = 4 + 9 + len(exchange_rk) + 4
    return b"".join(
        (
            frame_head(FRAME_METHOD, channel, size),
            _get_ok_prefix,
            _tag_bits.pack(delivery_tag, redelivered),
            exchange_rk,
            _long.pack(message_count),
            FRAME_END_BYTE,
        )
    )


def encode_access_request_ok(channel: int) -> bytes:
    """access.request-ok with ticket 1, as RabbitMQ answers the obsolete access.request."""
    return frame_head(FRAME_METHOD, channel, 6) + b"\x00\x1e\x00\x0b\x00\x01" + FRAME_END_BYTE


def encode_channel_open_ok(channel: int) -> bytes:
    """channel.open-ok with an empty reserved long string, byte for byte as RabbitMQ sends
    it (pamqp's default puts "0" there, which clients that skip exactly four bytes misread)."""
    return frame_head(FRAME_METHOD, channel, 8) + b"\x00\x14\x00\x0b\x00\x00\x00\x00\xce"


def encode_confirm(channel: int, delivery_tag: int, multiple: bool, ack: bool = True) -> bytes:
    """basic.ack (or basic.nack) sent to a publisher in confirm mode. A nack carries
    requeue=1, as RabbitMQ's does (its record default), though it means nothing there."""
    if ack:
        return _ack_frame.pack(FRAME_METHOD, channel, 13, 60, 80, delivery_tag, multiple, 0xCE)
    bits = 3 if multiple else 2
    return _ack_frame.pack(FRAME_METHOD, channel, 13, 60, 120, delivery_tag, bits, 0xCE)
