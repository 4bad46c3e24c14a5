"""The segment writer: operations become records scheduled at the head segment, then written.

Contract: ``LogHead`` is given the ``LogIndex`` and owns the head segment, the records and file
operations not yet carried out, and the fsync state. ``apply_all`` updates the index for
batches of operations handed over by the event loop and schedules their records (nothing for an
operation that changes nothing), the hot cases (publish, remove) inlined; ``emit`` schedules one
record at the head, rotating to a new segment (which starts with a topology snapshot) when it
would overflow. Topology records (and the snapshot) are written twice in a row, so one damaged
copy loses nothing. Nothing reaches a file until ``run_writes``, which returns False on ENOSPC,
leaving the failed write cut back and scheduled for a retry; any other ``OSError`` propagates.
``appended`` counts the bytes of records the operations produced (not reclaim's copies).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path
from typing import Any

from amqpd.store import records as R
from amqpd.store.idmaps import FlagMap
from amqpd.store.index import OFF_MASK, LogIndex, Segment
from amqpd.store.latency import Histogram
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


class LogHead:
    """The head segment of a log, the writes not yet done and their fsync state."""

    def __init__(self, directory: Path, segment_bytes: int, index: LogIndex) -> None:
        self.directory = Path(directory)
        self.index = index
        self.segment_bytes = max(4096, segment_bytes)
        self.disk_full = False
        self.fail_until = 0.0  # test controls: writes raise ENOSPC until this monotonic time
        self.head: Segment | None = None
        self.next_number = 1
        self.strings: dict[str, bytes] = {}  # encoded names and routing keys, bounded
        self.dirty = False  # written since the last fdatasync
        self.last_sync = 0.0
        self.wrote = False  # the last run_writes wrote something
        self.disk_bytes = 0
        self.appended = 0
        self.fsyncs = 0
        self.write_seconds = Histogram()  # per run_writes that wrote something
        self.fsync_seconds = Histogram()  # per fdatasync of the segment being written
        self._writing: Segment | None = None  # the segment the open write fd belongs to
        self._buf: list[bytes] = []
        self._writes: list[tuple[int, Segment, bytes]] = []

    @property
    def pending(self) -> bool:
        """File operations are scheduled but not done (the disk was full)."""
        return bool(self._writes)

    # ------------------------------------------------------------ applying operations

    def apply_all(self, chunks: list[list[Any]]) -> None:
        """Apply every operation of every chunk, in order.

        Publishes and removes are applied to the index in runs, one map call per queue and
        run: a remove never names a message published in the same call (the loop side drops
        those itself), so within a run of them the two kinds commute. The records of a run's
        publishes are scheduled as they come (their offsets are known then), those of its
        removes at the end of the run; any other operation ends the run first.
        """
        index = self.index
        strings = self.strings
        limit = self.segment_bytes
        encode_publish = R.encode_publish
        max_id = index.max_id
        appended = 0
        # the current run: new ids with their locations, new ids per queue (single-queue
        # publishes), removed ids per queue
        new_ids: list[int] = []
        new_locs: list[int] = []
        new_held: dict[str, list[int]] = {}
        gone: dict[str, list[int]] = {}
        last_name: str | None = None  # the queue of the last single-queue publish
        last_ids: list[int] = []  # and the run's new ids of that queue
        buf = self._buf
        head = self.head
        assert head is not None
        # the head's size and live counts, kept in locals and written back before anything
        # else looks at the head (rotation, another operation, the end)
        pos, base, live_n, live_b = head.size, head.base, 0, 0
        segbits = head.number << 64
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
                    appended += size
                    if pos + size > limit and pos > base:
                        head.size = pos
                        head.live_count += live_n
                        head.live_bytes += live_b
                        index.max_id = max_id  # the new segment's snapshot needs it
                        head = self.rotate()
                        buf = self._buf
                        pos, base, live_n, live_b = head.size, head.base, 0, 0
                        segbits = head.number << 64
                    buf += parts
                    new_ids.append(mid)
                    new_locs.append(segbits | (pos << 32) | size)
                    pos += size
                    live_n += 1
                    live_b += size
                    if len(queues) == 1:
                        (name,) = queues
                        if name == last_name:
                            last_ids.append(mid)
                        else:
                            held_ids = new_held.get(name)
                            if held_ids is None:
                                held_ids = new_held[name] = []
                            held_ids.append(mid)
                            last_name, last_ids = name, held_ids
                    else:
                        self._hold_all(mid, queues)
                elif kind == REMOVE:  # (REMOVE, queue, [ids])
                    queue = op[1]
                    ids = gone.get(queue)
                    if ids is None:
                        gone[queue] = op[2]
                    else:
                        ids += op[2]
                else:
                    head.size = pos
                    head.live_count += live_n
                    head.live_bytes += live_b
                    if new_ids or gone:
                        appended += self._end_run(new_ids, new_locs, new_held, gone, max_id)
                        new_ids, new_locs, new_held, gone = [], [], {}, {}
                        last_name = None
                    index.max_id = max_id
                    appended += self._apply(op)
                    head = self.head
                    assert head is not None
                    buf = self._buf
                    pos, base, live_n, live_b = head.size, head.base, 0, 0
                    segbits = head.number << 64
        head.size = pos
        head.live_count += live_n
        head.live_bytes += live_b
        if new_ids or gone:
            appended += self._end_run(new_ids, new_locs, new_held, gone, max_id)
        if max_id > index.max_id:
            index.max_id = max_id
        self.appended += appended

    def _hold_all(self, mid: int, queues: dict[str, bool]) -> None:
        """A message held by several queues: its flag in each, and its reference count."""
        qmsgs = self.index.qmsgs
        for name, delivered in queues.items():
            held = qmsgs.get(name)
            if held is None:
                held = qmsgs[name] = FlagMap()
            held[mid] = delivered
        self.index.refs[mid] = len(queues)

    def _end_run(
        self,
        new_ids: list[int],
        new_locs: list[int],
        new_held: dict[str, list[int]],
        gone: dict[str, list[int]],
        max_id: int,
    ) -> int:
        """Apply a run of publishes and removes to the index and schedule the removes'
        records; returns the bytes of those records."""
        index = self.index
        qmsgs = index.qmsgs
        if new_ids:
            index.loc.set_run(new_ids, new_locs)
            for name, ids in new_held.items():
                held = qmsgs.get(name)
                if held is None:
                    held = qmsgs[name] = FlagMap()
                held.set_all(ids, False)
        if not gone:
            return 0
        refs = index.refs
        segs = index.segs
        strings = self.strings
        encode_ref = R.encode_ref
        removed = R.REMOVED
        records: list[bytes] = []
        unheld: list[int] = []  # removed from their last queue
        for queue, ids in gone.items():
            held = qmsgs.get(queue)
            if held is None:
                continue
            name_bytes = strings.get(queue)
            if name_bytes is None:
                name_bytes = R.encoded_str(strings, queue)
            for mid, flag in zip(ids, held.pop_run(ids), strict=True):
                if flag is None:
                    continue  # not (or no longer) in that queue
                if refs and mid in refs:
                    index.unref(mid)
                else:
                    unheld.append(mid)
                records.append(encode_ref(removed, name_bytes, mid))
        number = -1
        seg = None
        for packed in index.loc.pop_run(unheld):
            if packed is None:
                continue
            if packed >> 64 != number:
                number = packed >> 64
                seg = segs.get(number)
            if seg is not None:
                seg.live_count -= 1
                seg.live_bytes -= packed & OFF_MASK
        if not records:
            return 0
        data = b"".join(records)
        head = self.head
        assert head is not None
        limit = self.segment_bytes
        if head.size + len(data) <= limit:
            self._buf.append(data)
            head.size += len(data)
            return len(data)
        for record in records:  # the run crosses the segment's end: rotate where it does
            if head.size + len(record) > limit and head.size > head.base:
                index.max_id = max_id
                head = self.rotate()
            self._buf.append(record)
            head.size += len(record)
        return len(data)

    def _apply(self, op: Any) -> int:
        """Apply one operation that is not a publish or a remove; returns the bytes emitted."""
        index = self.index
        kind = op[0]
        if kind == DELIVER:
            # a delivered watermark: every message of the queue with an id <= mid
            _, queue, mid = op
            if queue in index.qmsgs and mid > index.qdeliv.get(queue, 0):
                index.qdeliv[queue] = mid
                return self.emit(R.encode_message_ref(R.DELIVERED, queue, mid))[2]
        elif kind == XDECL:
            rec: ExchangeRecord = op[1]
            index.exchanges[rec.name] = rec
            return self.emit_twice(R.encode_exchange(rec))
        elif kind == QDECL:
            qrec: QueueRecord = op[1]
            index.queues[qrec.name] = qrec
            index.qmsgs.setdefault(qrec.name, FlagMap())
            return self.emit_twice(R.encode_queue(qrec))
        elif kind == BIND:
            brec: BindingRecord = op[1]
            index.bindings[R.binding_key(brec)] = brec
            return self.emit_twice(R.encode_binding(R.BIND, brec))
        elif kind == UNBIND:
            if index.bindings.pop(R.binding_key(op[1]), None) is not None:
                return self.emit_twice(R.encode_binding(R.UNBIND, op[1]))
        elif kind == XDEL:
            if index.delete_exchange(op[1]):
                return self.emit_twice(R.encode_name(R.EXCHANGE_DELETE, op[1]))
        elif kind == QDEL:
            if index.delete_queue(op[1]):
                return self.emit_twice(R.encode_name(R.QUEUE_DELETE, op[1]))
        elif kind == PURGE:
            if index.qmsgs.get(op[1]):
                index.purge(op[1])
                return self.emit_twice(R.encode_name(R.PURGE, op[1]))
        else:
            raise ValueError(f"unknown store operation {kind!r}")
        return 0

    # -------------------------------------------------------------- segments and writes

    def emit(self, parts: list[bytes]) -> tuple[Segment, int, int]:
        """Schedule one framed record at the head; rotate first if it would overflow."""
        size = _size(parts)
        head = self.head
        assert head is not None
        if head.size + size > self.segment_bytes and head.size > head.base:
            head = self.rotate()
        offset = head.size
        self._buf.extend(parts)
        head.size += size
        return head, offset, size

    def emit_twice(self, parts: list[bytes]) -> int:
        """A topology record and its twin, back to back (idempotent when replayed twice)."""
        return self.emit(parts + parts)[2]

    def end_buf(self) -> None:
        """Close the current run of scheduled records into one pending write."""
        if self._buf:
            assert self.head is not None
            self._writes.append((_WRITE, self.head, b"".join(self._buf)))
            self._buf = []

    def snapshot(self) -> bytes:
        """The whole topology, every record twice, then the id watermark."""
        index = self.index
        parts: list[bytes] = []
        for x in index.exchanges.values():
            parts += R.encode_exchange(x) * 2
        for q in index.queues.values():
            parts += R.encode_queue(q) * 2
        for b in index.bindings.values():
            parts += R.encode_binding(R.BIND, b) * 2
        parts += R.encode_watermark(index.max_id + 1)
        return b"".join(parts)

    def rotate(self) -> Segment:
        """Start a new head segment (its snapshot scheduled first of all its records)."""
        self.end_buf()
        number = self.next_number
        self.next_number += 1
        snapshot = self.snapshot()
        seg = Segment(
            number, segment_path(self.directory, number), FILE_HEADER_SIZE + len(snapshot)
        )
        seg.written = 0
        self.index.segs[number] = seg
        self.head = seg
        self._writes.append((_CREATE, seg, snapshot))
        return seg

    def run_writes(self) -> bool:
        """Carry out scheduled file operations; False if the disk is full (kept for retry)."""
        self.end_buf()
        self.wrote = False
        started = time.monotonic()
        while self._writes:
            kind, seg, data = self._writes[0]
            good = seg.written
            try:
                if self.fail_until and time.monotonic() < self.fail_until:
                    raise OSError(errno.ENOSPC, "No space left on device (test controls)")
                if kind == _CREATE:
                    prev = self._writing
                    if prev is not None and prev.fd >= 0:
                        if self.dirty:  # whatever the policy: segments are closed synced
                            os.fdatasync(prev.fd)
                            self.fsyncs += 1
                        os.close(prev.fd)
                        prev.fd = -1
                    seg.fd = create_segment(self.directory, seg.number, data, sync=True)
                    seg.written = FILE_HEADER_SIZE + len(data)
                    self._writing = seg
                    self.dirty = False
                else:
                    write_all(seg.fd, data)
                    seg.written += len(data)
                    self.dirty = True
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if kind == _WRITE:
                    truncate(seg.fd, good)
                if not self.disk_full:
                    log.error("disk full (ENOSPC) writing %s; retrying every second", seg.path.name)
                self.disk_full = True
                return False
            self.disk_bytes += seg.written - good
            self.wrote = True
            del self._writes[0]
        if self.wrote:
            self.write_seconds.observe(time.monotonic() - started)
        return True

    def sync(self) -> None:
        """fdatasync the segment being written."""
        seg = self._writing
        if seg is not None and seg.fd >= 0:
            started = time.monotonic()
            os.fdatasync(seg.fd)
            self.fsync_seconds.observe(time.monotonic() - started)
            self.fsyncs += 1
        self.dirty = False
        self.last_sync = time.monotonic()

    def close_files(self) -> None:
        for seg in self.index.segs.values():
            if seg.fd >= 0:
                os.close(seg.fd)
                seg.fd = -1
