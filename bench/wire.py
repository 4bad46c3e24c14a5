"""Pre-encoded AMQP 0-9-1 frames for the benchmark's hot path.

`PublishTemplate` builds the method, content-header and body frames of one basic.publish
once; per message only the 16-byte stamp at the start of the body (producer id and
sequence number, send time in monotonic nanoseconds) is new. Everything here is pure
bytes in, bytes out; the rare methods go through pamqp in `client.py` instead.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = b"\xce"
FRAME_END_BYTE = 0xCE
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

#: type, channel, payload size -- the 7 bytes in front of every frame
FRAME_HEAD = struct.Struct(">BHI")
#: class id and method id as one 32-bit number, read right after a method frame's head
CLASS_METHOD = struct.Struct(">I")
#: the stamp at the start of every body: (producer_id << 48 | sequence), send time (ns)
STAMP = struct.Struct(">QQ")
STAMP_SIZE = STAMP.size
PRODUCER_SHIFT = 48
SEQ_MASK = (1 << PRODUCER_SHIFT) - 1

BASIC_DELIVER = (60 << 16) | 60
BASIC_ACK = (60 << 16) | 80
BASIC_NACK = (60 << 16) | 120
BASIC_RETURN = (60 << 16) | 50

_U64 = struct.Struct(">Q")
_ACK_FRAME = struct.Struct(">BHIHHQBB")


def _shortstr(value: str) -> bytes:
    data = value.encode()
    if len(data) > 255:
        raise ValueError(f"short string too long: {value!r}")
    return bytes([len(data)]) + data


def frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    """One complete frame: head, payload, frame-end octet."""
    return FRAME_HEAD.pack(frame_type, channel, len(payload)) + payload + FRAME_END


def basic_ack_frame(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    """A complete basic.ack method frame (13-byte payload)."""
    return _ACK_FRAME.pack(
        FRAME_METHOD, channel, 13, 60, 80, delivery_tag, 1 if multiple else 0, FRAME_END_BYTE
    )


class PublishTemplate:
    """The frames of one basic.publish, split around the 16-byte body stamp.

    `prefix + STAMP.pack(key, ts) + suffix` is the complete wire form of one message of
    `size` body bytes (size >= 16), split into body frames of at most frame_max - 8 bytes.
    """

    def __init__(
        self,
        channel: int,
        exchange: str,
        routing_key: str,
        size: int,
        frame_max: int,
        persistent: bool = False,
        mandatory: bool = False,
        priorities: int = 0,
    ) -> None:
        if size < STAMP_SIZE:
            raise ValueError(f"message size must be at least {STAMP_SIZE} bytes")
        method = (
            struct.pack(">HHH", 60, 40, 0)
            + _shortstr(exchange)
            + _shortstr(routing_key)
            + bytes([1 if mandatory else 0])
        )
        if persistent:  # property flags: only delivery-mode (bit 12)
            props = struct.pack(">HB", 0x1000, 2)
        else:
            props = struct.pack(">H", 0)
        header = struct.pack(">HHQ", 60, 0, size) + props
        # With priorities, one header per priority (bit 11); `encode` picks one per batch
        # (per message would scramble the order the bench's loss accounting relies on).
        headers = [header]
        if priorities:
            flags = 0x1800 if persistent else 0x0800
            mode = b"\x02" if persistent else b""
            headers = [
                struct.pack(">HHQH", 60, 0, size, flags) + mode + bytes([level])
                for level in range(priorities)
            ]
        chunk = max(frame_max - 8, STAMP_SIZE) if frame_max else size
        filler = bytes(size - STAMP_SIZE)
        first = min(size, chunk)
        body_frames = [FRAME_HEAD.pack(FRAME_BODY, channel, first)]
        rest = filler[: first - STAMP_SIZE]
        suffix_parts = [rest, FRAME_END]
        offset = first - STAMP_SIZE
        while offset < len(filler):
            piece = filler[offset : offset + chunk]
            suffix_parts.append(frame(FRAME_BODY, channel, piece))
            offset += len(piece)
        method_frame = frame(FRAME_METHOD, channel, method)
        self.prefixes: list[bytes] = [
            method_frame + frame(FRAME_HEADER, channel, each) + body_frames[0] for each in headers
        ]
        self.prefix: bytes = self.prefixes[0]
        self.suffix: bytes = b"".join(suffix_parts)
        self.size = size

    def encode(self, keys: Iterable[int], ts: int, level: int = 0) -> bytes:
        """Wire bytes of one message per key, all stamped with send time `ts` (and all with
        priority `level` when the template has priorities)."""
        prefix, suffix, pack = self.prefixes[level % len(self.prefixes)], self.suffix, STAMP.pack
        return b"".join([prefix + pack(key, ts) + suffix for key in keys])

    @property
    def wire_size(self) -> int:
        """Bytes on the wire per message."""
        return len(self.prefix) + STAMP_SIZE + len(self.suffix)


def read_u64(data: bytes, offset: int) -> int:
    """Big-endian unsigned 64-bit integer at offset."""
    return _U64.unpack_from(data, offset)[0]
