"""Split an incoming byte stream into AMQP frames.

`FrameReader.feed(data)` returns every complete frame in the data seen so far as
`(frame_type, channel, payload)` tuples and keeps the incomplete rest; bytes may arrive in
any split, down to one at a time. A malformed frame (wrong frame-end octet, a size above
frame_max) raises `FrameError` carrying the connection-level reply text RabbitMQ would
send (the close is always 501 FRAME_ERROR), quoting at most 16 octets; nothing above
frame_max is ever buffered. The protocol header that precedes the first frame is checked by
the connection's handshake.

`merge_publishes(frames)` turns each complete publish in a feed's output (basic.publish,
its content header and its one body frame on one channel) into one item
`(FRAME_PUBLISH, channel, (method, header, body))`, so the connection handles a small
message in one step, and each run of consecutive basic.ack frames with multiple=false (and
no other bit set) on one channel, at most MAX_ACK_RUN of them, into one item
`(FRAME_ACKS, channel, [delivery tags])`, so a consumer's acks from one read settle in one
call; everything else passes unchanged.

`FrameReader` is the compiled splitter (amqpd._speedups) when it is available and not
disabled by AMQPD_PURE_PYTHON=1, else `PureFrameReader`; both share `_frame_error`, so the
limits and the error texts are the same (see amqpd/accel.py).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import partial
from typing import Any

from amqpd.accel import speedups
from amqpd.encoding import payload_snippet

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_PUBLISH = 256  # not a wire type: a publish's three frames merged (merge_publishes)
FRAME_ACKS = 257  # not a wire type: a run of single basic.acks on one channel (merge_publishes)
MAX_ACK_RUN = 512  # acks in one FRAME_ACKS item at most (as the compiled twin's MAX_ACK_RUN)
FRAME_END = 0xCE
FRAME_END_BYTE = b"\xce"
FRAME_OVERHEAD = 8  # 7-byte header + frame-end octet

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
# The largest frame a client may send before connection.tune-ok settles frame_max (AMQP's
# frame-min-size, which RabbitMQ enforces from the first frame).
PRE_TUNE_FRAME_MAX = 4096

_frame_head = struct.Struct(">BHI")
HEARTBEAT_FRAME = _frame_head.pack(FRAME_HEARTBEAT, 0, 0) + FRAME_END_BYTE


class FrameError(Exception):
    """The peer broke framing; the connection must close with 501 FRAME_ERROR."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def frame_head(frame_type: int, channel: int, size: int) -> bytes:
    return _frame_head.pack(frame_type, channel, size)


def _frame_error(
    frame_type: int, size: int, limit: int, payload: bytes | None, end: int
) -> FrameError:
    """The error for a frame larger than `limit` (payload None) or one whose frame-end
    octet is `end` instead of 0xCE; shared by both readers so their texts are identical."""
    if payload is None:
        return FrameError(
            f"FRAME_ERROR - type {frame_type}, all octets = <<>>: "
            f"{{frame_too_large,{size},{limit - FRAME_OVERHEAD}}}"
        )
    return FrameError(
        f"FRAME_ERROR - type {frame_type}, {payload_snippet(payload)}: "
        f"{{invalid_frame_end_marker,{end}}}"
    )


class PureFrameReader:
    """Incremental frame splitter with a frame_max limit (0 means unlimited).

    Incoming chunks are kept in a list until the frame they belong to is complete, so a
    large body arriving in many reads is joined once, not re-copied on every read."""

    __slots__ = ("_chunks", "_have", "_need", "frame_max")

    def __init__(self, frame_max: int = 0) -> None:
        self._chunks: list[bytes] = []
        self._have = 0  # bytes held in _chunks
        self._need = 0  # bytes needed before parsing can make progress
        self.frame_max = frame_max

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        if self._chunks:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            buffer = b"".join(self._chunks)
            self._chunks = []
        else:
            buffer = bytes(data)
        frames: list[tuple[int, int, bytes]] = []
        offset = 0
        available = len(buffer)
        unpack_head = _frame_head.unpack_from
        limit = self.frame_max
        need = 7
        while available - offset >= 7:
            frame_type, channel, size = unpack_head(buffer, offset)
            if limit and size > limit:  # RabbitMQ allows the 8 bytes of framing as slack
                raise _frame_error(frame_type, size, limit, None, 0)
            end = offset + 7 + size
            if end >= available:
                need = size + FRAME_OVERHEAD
                break
            if buffer[end] != FRAME_END:
                raise _frame_error(frame_type, size, limit, buffer[offset + 7 : end], buffer[end])
            frames.append((frame_type, channel, buffer[offset + 7 : end]))
            offset = end + 1
        if offset < available:
            rest = buffer[offset:] if offset else buffer
            self._chunks = [rest]
            self._have = len(rest)
            self._need = need
        else:
            self._have = 0
        return frames

    @property
    def buffered(self) -> int:
        return self._have if self._chunks else 0


_PUBLISH_METHOD = b"\x00\x3c\x00\x28"  # class 60 (basic), method 40 (publish)
_body_size = struct.Struct(">Q")
_ack_tag = _body_size  # basic.ack's delivery tag, after class and method ids
_ACK_METHOD = b"\x00\x3c\x00\x50"  # class 60 (basic), method 80 (ack)


def _is_single_ack(method: bytes) -> bool:
    """A basic.ack payload with multiple=false and no other bit set."""
    return len(method) == 13 and method[12] == 0 and method[:4] == _ACK_METHOD


def ack_payloads(tags: list[int]) -> list[bytes]:
    """The basic.ack method payloads a FRAME_ACKS item was made of (for the frame-by-frame
    path)."""
    return [_ACK_METHOD + _ack_tag.pack(tag) + b"\x00" for tag in tags]


def pure_merge_publishes(frames: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
    """The pure-Python twin of the compiled `merge_publishes` (the module docstring says what
    it does); returns `frames` itself when nothing merges."""
    out: list[tuple[int, int, Any]] | None = None
    count = len(frames)
    i = copied = 0
    while i < count:
        frame_type, channel, method = frames[i]
        if frame_type == FRAME_METHOD and _is_single_ack(method):
            end = i + 1
            while end < count and end - i < MAX_ACK_RUN:
                next_type, next_channel, next_method = frames[end]
                if next_type != FRAME_METHOD or next_channel != channel:
                    break
                if not _is_single_ack(next_method):
                    break
                end += 1
            if out is None:
                out = []
            out += frames[copied:i]
            tags = [_ack_tag.unpack_from(frame[2], 4)[0] for frame in frames[i:end]]
            out.append((FRAME_ACKS, channel, tags))
            i = copied = end
            continue
        if frame_type != FRAME_METHOD or i + 1 >= count or method[:4] != _PUBLISH_METHOD:
            i += 1
            continue
        header_type, header_channel, header = frames[i + 1]
        if header_type != FRAME_HEADER or header_channel != channel or len(header) < 14:
            i += 1
            continue
        (size,) = _body_size.unpack_from(header, 4)
        body = b""
        span = 2
        if size:
            if i + 2 >= count:
                i += 1
                continue
            body_type, body_channel, body = frames[i + 2]
            if body_type != FRAME_BODY or body_channel != channel or len(body) != size:
                i += 1
                continue
            span = 3
        if out is None:
            out = []
        out += frames[copied:i]
        out.append((FRAME_PUBLISH, channel, (method, header, body)))
        i += span
        copied = i
    if out is None:
        return frames
    out += frames[copied:]
    return out


_speedups = speedups()
if _speedups is not None:
    _CompiledReader: Any = _speedups.FrameReader

    class FrameReader(_CompiledReader):
        """The compiled twin of `PureFrameReader` (same contract, same errors)."""

        __slots__ = ()

        @staticmethod
        def _frame_error(
            frame_type: int, size: int, limit: int, payload: bytes | None, end: int
        ) -> FrameError:
            return _frame_error(frame_type, size, limit, payload, end)

    # The compiled twin of `pure_merge_publishes`, called without a Python frame between.
    merge_publishes: Callable[[list[tuple[int, int, Any]]], list[tuple[int, int, Any]]] = partial(
        _speedups.merge_publishes, FRAME_PUBLISH, FRAME_ACKS
    )

else:
    FrameReader = PureFrameReader  # type: ignore[misc,assignment]
    merge_publishes = pure_merge_publishes
