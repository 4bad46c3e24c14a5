"""Spill files: transient bodies paged out of memory while the broker nears its watermark.

Contract: a `SpillLog` owns one directory (per vhost, emptied when opened: transient messages
do not outlive the process). `spill(messages)` appends their bodies to the head file (one
`pwrite`) and evicts them from memory (`Message.evict_body`, remembering the place in
`Message.spilled`); `read_body(message)` gives a body back (read ahead in one `pread`). Files
are segments of `segment_bytes`; each counts its bodies not yet read back and is deleted (the
head emptied) when that count reaches zero. Bodies of messages that die unread (purged,
expired, queue deleted) are found by `recount(queues)`, which recounts from what the queues
still hold. `close()` removes everything. Runs on the event loop; writes go to the page
cache, never synced.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from amqpd.core.message import Message
from amqpd.core.queue import Queue

SEGMENT_BYTES = 64 << 20
READ_AHEAD = 256 * 1024
_OFFSET_BITS = 40
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1


class _Segment:
    __slots__ = ("fd", "live", "path", "size")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self.size = 0
        self.live = 0


class SpillLog:
    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.segment_bytes = segment_bytes
        self._segments: dict[int, _Segment] = {}
        self._head = 0
        self._chunk = b""
        self._chunk_seg = -1
        self._chunk_start = 0
        self.spilled = 0  # bodies written (stats)

    def _new_head(self) -> _Segment:
        if not self._segments:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._head += 1
        segment = self._segments[self._head] = _Segment(self.directory / f"{self._head}.spill")
        return segment

    def spill(self, messages: list[Message]) -> None:
        """Write these resident bodies out and evict them from memory."""
        head = self._segments.get(self._head)
        if head is None or head.size >= self.segment_bytes:
            head = self._new_head()
        bodies = []
        offset = head.size
        number = self._head << _OFFSET_BITS
        for message in messages:
            body = message.body
            bodies.append(body)
            message.spilled = number | offset
            offset += len(body)
        data = memoryview(b"".join(bodies))
        written = 0
        while written < len(data):  # a write may take less than asked
            written += os.pwrite(head.fd, data[written:], head.size + written)
        head.size = offset
        head.live += len(messages)
        self.spilled += len(messages)
        for message in messages:
            message.evict_body(self)

    def read_body(self, message: Message) -> bytes:
        where = message.spilled
        message.spilled = 0
        number = where >> _OFFSET_BITS
        offset = where & _OFFSET_MASK
        size = message.info.body_size
        segment = self._segments.get(number)
        if segment is None:
            raise OSError(f"spilled body {number}/{offset} is not in the spill files")
        start = offset - self._chunk_start
        chunk = self._chunk
        if number == self._chunk_seg and start >= 0 and start + size <= len(chunk):
            body = chunk[start : start + size]
        else:
            chunk = os.pread(segment.fd, max(size, min(READ_AHEAD, segment.size - offset)), offset)
            self._chunk, self._chunk_seg, self._chunk_start = chunk, number, offset
            body = chunk[:size]
        segment.live -= 1
        if segment.live <= 0:
            self._empty(number)
        return body

    def _empty(self, number: int) -> None:
        """No body in this file is wanted any more: delete it (empty it if it is the head)."""
        if number != self._head:
            self._drop(number)
            return
        segment = self._segments[number]
        os.ftruncate(segment.fd, 0)
        segment.size = 0
        if number == self._chunk_seg:
            self._chunk, self._chunk_seg = b"", -1

    def _drop(self, number: int) -> None:
        segment = self._segments.pop(number)
        os.close(segment.fd)
        try:
            os.unlink(segment.path)
        except OSError:
            pass
        if number == self._chunk_seg:
            self._chunk, self._chunk_seg = b"", -1

    def recount(self, queues: Iterable[Queue]) -> None:
        """Recount the bodies still referenced from these queues; drop unreferenced files."""
        counts = dict.fromkeys(self._segments, 0)
        for queue in queues:
            for _seq, message, _redelivered in queue.messages:
                where = message.spilled
                if where and message.source is self:
                    counts[where >> _OFFSET_BITS] = counts.get(where >> _OFFSET_BITS, 0) + 1
        for number, count in counts.items():
            segment = self._segments.get(number)
            if segment is None:
                continue
            segment.live = count
            if count == 0:
                self._empty(number)

    def disk_bytes(self) -> int:
        return sum(segment.size for segment in self._segments.values())

    def close(self) -> None:
        for number in list(self._segments):
            self._drop(number)
        shutil.rmtree(self.directory, ignore_errors=True)
