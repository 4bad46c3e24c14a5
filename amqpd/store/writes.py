"""Appending to the log: operations become records scheduled at the head segment, then written.

Contract: ``LogHead._apply`` updates the index for one operation handed over by the event loop
and schedules its record (nothing for an operation that changes nothing); ``_apply_all`` does
the same for batches of them, with the hot cases (publish, remove) inlined; ``_emit`` schedules a
record at the head, rotating to a new segment (which starts with a topology snapshot) when it
would overflow. Nothing reaches a file until ``_run_writes``, which returns False on ENOSPC,
leaving the failed write cut back and scheduled for a retry; any other ``OSError`` propagates.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path
from typing import Any

from amqpd.store import records as R
from amqpd.store.index import _MISSING, OFF_MASK, LogIndex, Segment
from amqpd.store.records import (
    FILE_HEADER_SIZE,
    BindingRecord,
    ExchangeRecord,
    QueueRecord,
)
from amqpd.store.segments import create_segment, segment_path, truncate, write_all

log = logging.getLogger("amqpd.store")

# operations handed from the event loop to the writer
PUB, REMOVE, DELIVER, XDECL, XDEL, QDECL, QDEL, BIND, UNBIND, PURGE = range(10)
_CREATE, _WRITE = 0, 1  # kinds of scheduled file operations


def _size(parts: list[bytes]) -> int:
    n = 0
    for p in parts:
        n += len(p)
    return n


class LogHead(LogIndex):
    """The index plus the head segment it appends to and the file operations not yet done."""

    def __init__(self, directory: Path, segment_bytes: int) -> None:
        super().__init__()
        self.directory = Path(directory)
        self._segment_bytes = max(4096, segment_bytes)
        self.disk_full = False
        self._head: Segment | None = None
        self._writing: Segment | None = None
        self._buf: list[bytes] = []
        self._strings: dict[str, bytes] = {}  # encoded names and routing keys, bounded
        self._writes: list[tuple[int, Segment, bytes]] = []
        self._wrote = False
        self._next_number = 1
        self._dirty = False
        self._last_sync = 0.0
        self._disk_bytes = 0
        self._batches = 0
        self._fsyncs = 0

    # ------------------------------------------------------------ applying operations

    def _apply_all(self, chunks: list[list[Any]]) -> None:
        """``_apply`` every operation of every chunk, in order."""
        loc = self._loc
        refs = self._refs
        qmsgs = self._qmsgs
        segs = self._segs
        strings = self._strings
        limit = self._segment_bytes
        encode_publish = R.encode_publish
        encode_ref = R.encode_ref
        removed = R.REMOVED
        max_id = self._max_id
        for chunk in chunks:
            for op in chunk:
                kind = op[0]
                if kind == PUB:
                    mid = op[1]
                    if mid > max_id:
                        max_id = mid
                    queues = op[2]
                    if not queues:
                        continue
                    parts = encode_publish(mid, queues, op[3], op[4], op[5], op[6], strings)
                    size = len(parts[0]) + len(parts[1]) + len(parts[2])
                    head = self._head
                    assert head is not None
                    if head.size + size > limit and head.size > head.base:
                        self._max_id = max_id  # the new segment's snapshot needs it
                        head = self._rotate()
                    offset = head.size
                    self._buf += parts
                    head.size = offset + size
                    for name, delivered in queues.items():
                        held = qmsgs.get(name)
                        if held is None:
                            held = qmsgs[name] = {}
                        held[mid] = delivered
                    if len(queues) > 1:
                        refs[mid] = len(queues)
                    loc[mid] = (head.number << 64) | (offset << 32) | size
                    head.live_count += 1
                    head.live_bytes += size
                elif kind == REMOVE:
                    _, queue, mid = op
                    held = qmsgs.get(queue)
                    if held is None or held.pop(mid, _MISSING) is _MISSING:
                        continue
                    if mid in refs:
                        self._unref(mid)
                    else:
                        packed = loc.pop(mid, None)
                        if packed is not None:
                            seg = segs.get(packed >> 64)
                            if seg is not None:
                                seg.live_count -= 1
                                seg.live_bytes -= packed & OFF_MASK
                    name_bytes = strings.get(queue)
                    if name_bytes is None:
                        name_bytes = R.encoded_str(strings, queue)
                    record = encode_ref(removed, name_bytes, mid)
                    head = self._head
                    assert head is not None
                    if head.size + len(record) > limit and head.size > head.base:
                        self._max_id = max_id
                        head = self._rotate()
                    self._buf.append(record)
                    head.size += len(record)
                else:
                    self._max_id = max_id
                    self._apply(op)
        if max_id > self._max_id:
            self._max_id = max_id

    def _apply(self, op: Any) -> None:
        kind = op[0]
        if kind == PUB:
            mid = op[1]
            if mid > self._max_id:
                self._max_id = mid
            queues = op[2]
            if queues:
                parts = R.encode_publish(mid, queues, op[3], op[4], op[5], op[6], self._strings)
                seg, offset, size = self._emit(parts)
                self._register(mid, queues, seg, offset, size)
        elif kind == REMOVE:
            _, queue, mid = op
            if self._drop(queue, mid):
                self._emit(R.encode_message_ref(R.REMOVED, queue, mid))
        elif kind == DELIVER:
            # a delivered watermark: every message of the queue with an id <= mid
            _, queue, mid = op
            if queue in self._qmsgs and mid > self._qdeliv.get(queue, 0):
                self._qdeliv[queue] = mid
                self._emit(R.encode_message_ref(R.DELIVERED, queue, mid))
        elif kind == XDECL:
            rec: ExchangeRecord = op[1]
            self._exchanges[rec.name] = rec
            self._emit(R.encode_exchange(rec))
        elif kind == QDECL:
            qrec: QueueRecord = op[1]
            self._queues[qrec.name] = qrec
            self._qmsgs.setdefault(qrec.name, {})
            self._emit(R.encode_queue(qrec))
        elif kind == BIND:
            brec: BindingRecord = op[1]
            self._bindings[R.binding_key(brec)] = brec
            self._emit(R.encode_binding(R.BIND, brec))
        elif kind == UNBIND:
            if self._bindings.pop(R.binding_key(op[1]), None) is not None:
                self._emit(R.encode_binding(R.UNBIND, op[1]))
        elif kind == XDEL:
            if self._delete_exchange(op[1]):
                self._emit(R.encode_name(R.EXCHANGE_DELETE, op[1]))
        elif kind == QDEL:
            if self._delete_queue(op[1]):
                self._emit(R.encode_name(R.QUEUE_DELETE, op[1]))
        elif kind == PURGE:
            held = self._qmsgs.get(op[1])
            if held:
                self._purge(op[1])
                self._emit(R.encode_name(R.PURGE, op[1]))

    # -------------------------------------------------------------- segments and writes

    def _emit(self, parts: list[bytes]) -> tuple[Segment, int, int]:
        """Schedule one framed record at the head; rotate first if it would overflow."""
        size = _size(parts)
        head = self._head
        assert head is not None
        if head.size + size > self._segment_bytes and head.size > head.base:
            head = self._rotate()
        offset = head.size
        self._buf.extend(parts)
        head.size += size
        return head, offset, size

    def _end_buf(self) -> None:
        if self._buf:
            assert self._head is not None
            self._writes.append((_WRITE, self._head, b"".join(self._buf)))
            self._buf = []

    def _snapshot(self) -> bytes:
        parts: list[bytes] = []
        for x in self._exchanges.values():
            parts += R.encode_exchange(x)
        for q in self._queues.values():
            parts += R.encode_queue(q)
        for b in self._bindings.values():
            parts += R.encode_binding(R.BIND, b)
        parts += R.encode_watermark(self._max_id + 1)
        return b"".join(parts)

    def _rotate(self) -> Segment:
        self._end_buf()
        number = self._next_number
        self._next_number += 1
        snapshot = self._snapshot()
        seg = Segment(
            number, segment_path(self.directory, number), FILE_HEADER_SIZE + len(snapshot)
        )
        seg.written = 0
        self._segs[number] = seg
        self._head = seg
        self._writes.append((_CREATE, seg, snapshot))
        return seg

    def _run_writes(self) -> bool:
        """Carry out scheduled file operations; False if the disk is full (kept for retry)."""
        self._wrote = False
        while self._writes:
            kind, seg, data = self._writes[0]
            good = seg.written
            try:
                if kind == _CREATE:
                    prev = self._writing
                    if prev is not None and prev.fd >= 0:
                        if self._dirty:  # whatever the policy: segments are closed synced
                            os.fdatasync(prev.fd)
                            self._fsyncs += 1
                        os.close(prev.fd)
                        prev.fd = -1
                    seg.fd = create_segment(self.directory, seg.number, data, sync=True)
                    seg.written = FILE_HEADER_SIZE + len(data)
                    self._writing = seg
                    self._dirty = False
                else:
                    write_all(seg.fd, data)
                    seg.written += len(data)
                    self._dirty = True
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if kind == _WRITE:
                    truncate(seg.fd, good)
                if not self.disk_full:
                    log.error("disk full (ENOSPC) writing %s; retrying every second", seg.path.name)
                self.disk_full = True
                return False
            self._disk_bytes += seg.written - good
            self._wrote = True
            del self._writes[0]
        return True

    def _sync(self) -> None:
        seg = self._writing
        if seg is not None and seg.fd >= 0:
            os.fdatasync(seg.fd)
            self._fsyncs += 1
        self._dirty = False
        self._last_sync = time.monotonic()
