"""Content headers: read the few fields the broker needs, keep the rest as raw bytes.

`peek_header(payload)` parses a content-header frame payload only as far as needed and
returns `HeaderInfo`: the body size, delivery_mode, priority, expiration and the raw bytes
of the headers table (decoded on demand by `HeaderInfo.decode_headers`, for headers
exchanges).
The raw payload itself is what gets delivered, so properties pass through byte for byte.
`body_frames` splits a body for a receiver's frame_max; `content_frames` gives both, as
pieces for writelines and their total size. `peek_header` and `content_frames` are compiled
(amqpd/accel.py) when the accelerator is available; `pure_*` are their twins.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

from amqpd.accel import speedups
from amqpd.wire.frames import FRAME_BODY, FRAME_END_BYTE, FRAME_HEADER, FRAME_OVERHEAD, frame_head
from amqpd.wire.tables import decode_table

_prefix = struct.Struct(">HHQH")
_long = struct.Struct(">I")
_short = struct.Struct(">H")

# Property flag bits, most significant first, in wire order.
_CONTENT_TYPE = 1 << 15
_CONTENT_ENCODING = 1 << 14
_HEADERS = 1 << 13
_DELIVERY_MODE = 1 << 12
_PRIORITY = 1 << 11
_CORRELATION_ID = 1 << 10
_REPLY_TO = 1 << 9
_EXPIRATION = 1 << 8
_MESSAGE_ID = 1 << 7
_TIMESTAMP = 1 << 6
_TYPE = 1 << 5
_USER_ID = 1 << 4


class HeaderInfo(NamedTuple):
    """What `peek_header` reads out; core's `ContentInfo` for a `Message`."""

    class_id: int
    weight: int
    body_size: int
    delivery_mode: int
    priority: int | None
    expiration: str | None
    headers_raw: bytes | None
    user_id: str | None = None

    def decode_headers(self) -> dict[str, Any]:
        """The headers table ({} if absent); TableError (a ValueError) if it does not decode."""
        raw = self.headers_raw
        if not raw:
            return {}
        return decode_table(raw)[1]  # as decode_headers(raw), one call fewer


class ContentHeaderError(Exception):
    """A content header that does not parse."""


def pure_peek_header(payload: bytes) -> HeaderInfo:
    try:
        class_id, weight, body_size, flags = _prefix.unpack_from(payload)
        pos = 14
        if flags & 1:  # continuation flags: none defined for basic; skip them
            while True:
                (more,) = _short.unpack_from(payload, pos)
                pos += 2
                if not more & 1:
                    break
        if flags & _CONTENT_TYPE:
            pos += 1 + payload[pos]
        if flags & _CONTENT_ENCODING:
            pos += 1 + payload[pos]
        headers_raw = None
        if flags & _HEADERS:
            (size,) = _long.unpack_from(payload, pos)
            headers_raw = payload[pos : pos + 4 + size]
            pos += 4 + size
        delivery_mode = 0
        if flags & _DELIVERY_MODE:
            delivery_mode = payload[pos]
            pos += 1
        priority = None
        if flags & _PRIORITY:
            priority = payload[pos]
            pos += 1
        expiration = user_id = None
        if flags & (_EXPIRATION | _USER_ID):
            for bit in (_CORRELATION_ID, _REPLY_TO):
                if flags & bit:
                    pos += 1 + payload[pos]
            if flags & _EXPIRATION:
                size = payload[pos]
                expiration = payload[pos + 1 : pos + 1 + size].decode()
                pos += 1 + size
            if flags & _USER_ID:
                if flags & _MESSAGE_ID:
                    pos += 1 + payload[pos]
                if flags & _TIMESTAMP:
                    pos += 8
                if flags & _TYPE:
                    pos += 1 + payload[pos]
                size = payload[pos]
                user_id = payload[pos + 1 : pos + 1 + size].decode()
                pos += 1 + size
        if pos > len(payload):
            raise ContentHeaderError("content header shorter than its properties")
    except (struct.error, IndexError, UnicodeDecodeError) as error:
        raise ContentHeaderError(str(error)) from error
    return HeaderInfo(
        class_id, weight, body_size, delivery_mode, priority, expiration, headers_raw, user_id
    )


_speedups = speedups()
peek_header: Callable[[bytes], HeaderInfo] = (
    pure_peek_header
    if _speedups is None
    else partial(_speedups.peek_header, HeaderInfo, ContentHeaderError)
)


def decode_headers(headers_raw: bytes | None) -> dict[str, Any]:
    """The headers table; TableError (a ValueError) if it does not decode."""
    if not headers_raw:
        return {}
    _end, table = decode_table(headers_raw)
    return table


def header_frame(channel: int, payload: bytes) -> bytes:
    return frame_head(FRAME_HEADER, channel, len(payload)) + payload + FRAME_END_BYTE


def body_frames(channel: int, body: bytes, frame_max: int) -> list[bytes]:
    """Body frames for one receiver, as a list of pieces for writelines."""
    if not body:
        return []
    chunk = frame_max - FRAME_OVERHEAD
    if len(body) <= chunk:
        return [frame_head(FRAME_BODY, channel, len(body)), body, FRAME_END_BYTE]
    pieces: list[bytes] = []
    view = memoryview(body)
    for start in range(0, len(body), chunk):
        part = view[start : start + chunk]
        pieces += (frame_head(FRAME_BODY, channel, len(part)), part, FRAME_END_BYTE)  # type: ignore[arg-type]
    return pieces


def pure_content_frames(
    channel: int, header: bytes, body: bytes, frame_max: int
) -> tuple[list[bytes], int]:
    """The content header frame and the body frames of one delivery, as pieces (joined,
    they are the frames) and their total size."""
    pieces = [header_frame(channel, header)]
    if body:
        pieces += body_frames(channel, body, frame_max)
    return pieces, sum(map(len, pieces))


content_frames: Callable[[int, bytes, bytes, int], tuple[list[bytes], int]] = (
    pure_content_frames
    if _speedups is None
    else partial(_speedups.content_frames, pure_content_frames)
)
