"""Message bodies read back from the log, for queues that keep only a compact entry in memory.

Contract: ``LogReader`` runs on the event loop and only reads. ``readable(message_id)`` says
whether the message's record is on disk (written, not merely scheduled), so its body may be
dropped from memory; ``read_body(message)`` returns the body of a message (anything with a
``store_id`` and an ``info.body_size``) again, checking the record's CRC;
``read_message(message_id)`` gives the whole message back (exchange, routing key, the header as
stored, body) for a queue that kept only the id. It reads ahead
(``READ_AHEAD`` bytes from the record on, in one ``pread``), so a queue delivered in publish
order costs one system call per many messages. The writer thread
owns the ``LogIndex``; this side only looks entries up (single dict lookups, atomic under the
GIL). A message that compaction just moved may point at a copy not yet written: the reader
waits for the writer (a few milliseconds at most). Open file descriptors are kept per segment
and closed by ``prune()`` once the segment is gone from the index.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Iterable
from struct import Struct
from typing import Any

from amqpd.store.index import OFF_MASK, LogIndex
from amqpd.store.records import MARK, MARK_BYTES, RECORD_HEAD_SIZE

READ_AHEAD = 256 * 1024
_U16 = Struct("<H").unpack_from
_U32 = Struct("<I").unpack_from
_MARK_CRC = Struct("<II").unpack_from
MOVED_WAIT = 2.0  # seconds to wait for a moved record to be written before giving up


class ReadBackFailed(OSError):
    """A body could not be read back from the log (missing or damaged record). An `OSError`,
    as `Message.reload` expects of a body source that lost a body."""


class LogReader:
    def __init__(self, index: LogIndex) -> None:
        self._index = index
        self._fds: dict[int, int] = {}
        self._chunk = b""  # the last read-ahead: segment, its start offset, the bytes
        self._chunk_seg = -1
        self._chunk_start = 0
        self.reads = 0  # preads done (for tests and stats)
        self._strings: dict[bytes, str] = {}  # exchange and routing-key names seen

    def readable(self, message_id: int) -> bool:
        packed = self._index.loc.get(message_id)
        if packed is None:
            return False
        seg = self._index.segs.get(packed >> 64)
        return seg is not None and ((packed >> 32) & OFF_MASK) + (packed & OFF_MASK) <= seg.written

    def read_body(self, message: Any) -> bytes:
        message_id = message.store_id
        body_size = message.info.body_size
        record = self._record(message_id)
        if record[:4] != MARK_BYTES or zlib.crc32(record[8:]) != int.from_bytes(
            record[4:8], "little"
        ):
            raise ReadBackFailed(f"message {message_id}: damaged record in the log")
        return record[len(record) - body_size :] if body_size else b""

    def read_messages(
        self, message_ids: Iterable[int]
    ) -> list[tuple[str, str, bytes, bytes] | ReadBackFailed]:
        """(exchange, routing key, stored header, body) of each message, in order, or the
        error that lost it. One pass, no copy of a record: the batch path of paged queues."""
        out: list[tuple[str, str, bytes, bytes] | ReadBackFailed] = []
        crc32 = zlib.crc32
        u32 = _U32
        mark_crc = _MARK_CRC
        locate = self._locate
        # the names part (exchange, routing key, queues) of the previous record and what it
        # says: records in a row mostly share it, and a byte-equal part parses the same
        names = b""
        exchange = routing_key = ""
        chunk: Any = None
        view: Any = None
        for message_id in message_ids:
            try:
                data, start, size = locate(message_id)
                end = start + size
                if data is not chunk:
                    chunk, view = data, memoryview(data)
                mark, crc = mark_crc(data, start)
                if mark != MARK or crc32(view[start + 8 : end]) != crc:
                    raise ReadBackFailed(f"message {message_id}: damaged record in the log")
                p = start + RECORD_HEAD_SIZE + 8
                q = p + len(names)
                if not names or data[p:q] != names:
                    exchange, routing_key, q = self._names(data, p)
                    names = data[p:q]
                (n,) = u32(data, q)
                q += 4
                if q + n > end:
                    raise ReadBackFailed(f"message {message_id}: undecodable record")
                out.append((exchange, routing_key, data[q : q + n], data[q + n : end]))
            except ReadBackFailed as error:
                out.append(error)
            except (ValueError, IndexError, struct.error) as error:
                out.append(ReadBackFailed(f"message {message_id}: undecodable record ({error})"))
        return out

    def _names(self, data: bytes, p: int) -> tuple[str, str, int]:
        """(exchange, routing key, offset of the header length) of a PUBLISH payload's names
        part starting at ``p`` (after the message id); names seen before are shared."""
        exchange, p = self._short_string(data, p)
        routing_key, p = self._short_string(data, p)
        (count,) = _U16(data, p)
        p += 2
        for _ in range(count):
            p += 3 + _U16(data, p + 1)[0]
        return exchange, routing_key, p

    def _short_string(self, data: bytes, p: int) -> tuple[str, int]:
        """The u16-length string at ``p`` and the offset after it; strings seen before are
        shared (up to 4,096 of them)."""
        (n,) = _U16(data, p)
        end = p + 2 + n
        raw = data[p + 2 : end]
        strings = self._strings
        text = strings.get(raw)
        if text is None:
            text = raw.decode()
            if len(strings) < 4096:
                strings[raw] = text
        return text, end

    def read_message(self, message_id: int) -> tuple[str, str, bytes, bytes]:
        """(exchange, routing key, stored header, body) of a message in the log."""
        found = self.read_messages((message_id,))[0]
        if isinstance(found, ReadBackFailed):
            raise found
        return found

    def _record(self, message_id: int) -> bytes:
        data, start, size = self._locate(message_id)
        return data[start : start + size]

    def _locate(self, message_id: int) -> tuple[bytes, int, int]:
        """(bytes read, where the record starts in them, its size): read ahead if needed."""
        index = self._index
        deadline = 0.0
        while True:
            packed = index.loc.get(message_id)
            if packed is None:
                raise ReadBackFailed(f"message {message_id} is not in the log")
            number = packed >> 64
            offset = (packed >> 32) & OFF_MASK
            size = packed & OFF_MASK
            seg = index.segs.get(number)
            if seg is not None and offset + size <= seg.written:
                break
            # compaction moved it and has not written the copy yet
            now = time.monotonic()
            if not deadline:
                deadline = now + MOVED_WAIT
            elif now > deadline:
                raise ReadBackFailed(f"message {message_id}: its record was never written")
            time.sleep(0.001)
        chunk = self._chunk
        start = offset - self._chunk_start
        if number == self._chunk_seg and start >= 0 and start + size <= len(chunk):
            return chunk, start, size
        fd = self._fds.get(number)
        if fd is None:
            try:
                fd = self._fds[number] = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as error:
                raise ReadBackFailed(f"message {message_id}: {error}") from None
        length = min(max(size, READ_AHEAD), seg.written - offset)
        chunk = os.pread(fd, length, offset)
        self.reads += 1
        if len(chunk) < size:
            raise ReadBackFailed(f"message {message_id}: short read from the log")
        self._chunk, self._chunk_seg, self._chunk_start = chunk, number, offset
        return chunk, 0, size

    def prune(self) -> None:
        """Close the descriptors of segments the log no longer has."""
        segs = self._index.segs
        for number in [n for n in self._fds if n not in segs]:
            os.close(self._fds.pop(number))
            if number == self._chunk_seg:
                self._chunk, self._chunk_seg = b"", -1

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._chunk, self._chunk_seg = b"", -1
