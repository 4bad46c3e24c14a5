"""Reclaiming disk: deleting dead segments and compacting mostly-dead ones, oldest first.

Contract: a ``Reclaimer`` is given the ``LogIndex`` and the ``LogHead``. Every segment starts
with a topology snapshot, so only live messages pin it. ``reclaim`` deletes the oldest segment
while none of its messages is live (never the head, never before the next segment's snapshot is
on disk) and compacts the oldest one when its live bytes fall below ``compact_ratio`` of its
size (or when live data is below that ratio of all bytes on disk) and it has aged (at least
``head_compact_bytes`` appended after it; any age once the writer is idle, so that a
steady queue's short backlog, consumed a moment later, is not copied): its live messages are read
back (at their recorded offsets, CRC-checked, or by a scan of the file when the log holds many
live messages), re-appended at the head with their current delivered flags, synced, then it is
deleted. The head itself is retired the same way when the whole log is mostly dead and the head
holds enough reclaimable bytes (after a write round: a quarter of ``segment_bytes``, at least
``HEAD_COMPACT_BYTES``; once the writer has been idle for ``IDLE_RECLAIM_DELAY``: more than its
own snapshot): a new head is started and made durable, then the segments older than it *at that
moment* are deleted, or compacted once aged, oldest first (never the segments the copies
themselves fill). Waiting for age holds a compaction back by ``head_compact_bytes`` of
appends at most: disk use may exceed what it would be without by that much.

Bounded by construction: bytes rewritten never exceed ``REWRITE_FACTOR`` times the bytes
appended (plus the bytes found at recovery, plus one segment): a compaction that the budget
cannot pay for is not started, so reclaim can never feed on its own output. ``stop()`` is
polled before each segment and while reading one; when it says so, reclaim returns at once,
leaving the log as a crash there would (both copies of a moved message replay as one).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Callable
from itertools import islice

from amqpd.store import records as R
from amqpd.store.head import LogHead
from amqpd.store.index import OFF_MASK, LogIndex, Segment
from amqpd.store.segments import ScanResult, fsync_directory, scan

log = logging.getLogger("amqpd.store")

# While writes go on the head is retired early (see the module docstring) once it holds a
# quarter of a segment, and at least this much, of reclaimable bytes (half a segment at most).
# Much less costs throughput: each retirement creates a file, fsyncs ~4 times, reads the head.
HEAD_COMPACT_BYTES = 1024 * 1024
# ... or, with less, once the writer has had nothing to write for this long (seconds).
IDLE_RECLAIM_DELAY = 0.25
# Compaction reads a segment's live messages where the index says they are, unless there are
# more live messages in the whole log than this many per byte of the segment (looking through
# them would then cost more than scanning the file).
LOCATE_LIVE_PER_BYTE = 1 / 64
# Bytes rewritten by compaction stay below this many times the bytes appended (+ an allowance).
REWRITE_FACTOR = 2

LiveCopy = tuple[int, dict[str, bool], str, str, bytes, bytes]


class Reclaimer:
    """Segment deletion and compaction for one log; see the module docstring."""

    def __init__(
        self,
        index: LogIndex,
        head: LogHead,
        compact_ratio: float,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.index = index
        self.head = head
        self.compact_ratio = compact_ratio
        self.stop = stop
        seg_bytes = head.segment_bytes
        self.head_compact_bytes = min(seg_bytes // 2, max(HEAD_COMPACT_BYTES, seg_bytes // 4))
        self.allowance = seg_bytes  # grows by the bytes found at recovery (``recovered``)
        self.rewritten = 0
        self.compactions = 0
        self.deleted = 0
        self.head_rotations = 0
        self.corrupt = 0  # live messages found unreadable while compacting

    def recovered(self, disk_bytes: int) -> None:
        """The log found at start may be compacted once more: its bytes join the budget."""
        self.allowance += disk_bytes

    def budget(self) -> int:
        """Bytes compaction may still rewrite."""
        return REWRITE_FACTOR * self.head.appended + self.allowance - self.rewritten

    def delete(self, seg: Segment) -> None:
        head = self.head
        if seg.pinned and head.dirty:
            head.sync()  # its live messages were copied to the head: sync them first
        if seg.fd >= 0:
            os.close(seg.fd)
            seg.fd = -1
        try:
            os.unlink(seg.path)
        except FileNotFoundError:
            pass
        fsync_directory(head.directory)
        del self.index.segs[seg.number]
        head.disk_bytes -= seg.written
        self.deleted += 1

    def reclaim(self, deleting_only: bool = False, idle: bool = False) -> None:
        """Delete dead segments oldest first; compact the oldest one if mostly dead.

        Unless ``deleting_only``, also retire the head when that is due (``shrink``); ``idle``
        says the writer has had nothing to write for a while, which lowers the bar for that.
        """
        segs = self.index.segs
        head = self.head.head
        while len(segs) > 1:
            oldest, following = list(islice(segs.values(), 2))
            if oldest is head or oldest.live_count:
                break
            if deleting_only and (
                oldest.pinned
                or oldest.written != oldest.size
                or following.written < following.base  # its topology snapshot is not on disk
            ):
                return
            self.delete(oldest)
        if deleting_only:
            return
        if len(segs) > 1:
            oldest = next(iter(segs.values()))
            ratio = self.compact_ratio
            if (
                oldest is not head
                and (
                    oldest.live_bytes < ratio * oldest.size
                    or (
                        # a mostly-live oldest segment must not pin many dead ones behind it
                        len(segs) > 2 and self.index.live_bytes() < ratio * self.head.disk_bytes
                    )
                )
                and (idle or self.aged(oldest))
            ):
                if not self.compact(oldest):
                    return
        self.shrink(idle)

    def aged(self, seg: Segment) -> bool:
        """At least ``head_compact_bytes`` were appended after ``seg``: its live messages
        are not merely the short backlog that consumers are about to take (copying those
        would only rewrite what is acked a moment later, as a steady queue a few thousand
        deep would have every segment do)."""
        later = 0
        for other in reversed(self.index.segs.values()):
            if other is seg:
                return False
            later += other.size - other.base
            if later >= self.head_compact_bytes:
                return True
        return False

    def shrink(self, idle: bool) -> None:
        """When the log is mostly dead, bring it down to its live data.

        The head is retired when its reclaimable bytes (all but its snapshot and its live
        messages) exceed ``head_compact_bytes``, or when ``idle``, its snapshot's size: a new
        head is started (created with its snapshot, file and directory fsync'ed; the old head
        is fdatasync'ed as it is closed). Then, and also when ``idle`` with older segments left
        over, every segment older than the head of that moment is compacted or deleted, oldest
        first, as far as the budget goes.
        """
        head = self.head
        segs = self.index.segs
        current = head.head
        if current is None or head.pending or (len(segs) == 1 and current.size == current.base):
            return
        live = self.index.live_bytes()
        if live >= self.compact_ratio * head.disk_bytes or live > self.budget():
            return  # copying would cost more than it frees, or more than appends paid for
        waste = current.size - current.base - current.live_bytes
        if waste > (current.base if idle else self.head_compact_bytes):
            head.rotate()
            self.head_rotations += 1
            if not head.run_writes():
                return  # disk full: the new head is retried, the old one stays
        elif not idle or len(segs) < 2:
            return
        boundary = head.head
        assert boundary is not None
        # only the segments older than this head: the copies may fill new ones after it
        for seg in [s for s in segs.values() if s.number < boundary.number]:
            if seg.number not in segs:
                continue
            if seg is not next(iter(segs.values())):
                return  # an older one is still there (disk full, or over budget)
            if seg.live_count:
                if not idle and not self.aged(seg):
                    return  # its backlog may well be consumed before it would pay to copy it
                if not self.compact(seg):
                    return
            else:
                self.delete(seg)

    def compact(self, seg: Segment) -> bool:
        """Re-append the live messages of ``seg`` at the head, then delete it.

        Returns False when it did not finish: over budget or told to stop (nothing was
        changed), or the disk is full (the copies stay pending, ``seg`` is deleted later).
        """
        if seg.live_bytes > self.budget() or self.stop():
            return False
        moved = self.live_records(seg)
        if moved is None:
            return False
        head = self.head
        index = self.index
        strings = head.strings
        emit = head.emit
        rewritten = 0
        for mid, queues, ex, rk, header, body in moved:
            new_seg, offset, size = emit(
                R.encode_publish(mid, queues, ex, rk, header, body, strings)
            )
            index.move(mid, new_seg, offset, size)
            rewritten += size
        self.rewritten += rewritten
        number = seg.number
        if seg.live_count:  # records it could not read back (damaged since written)
            log.error(
                "compaction: %d live messages in %s unreadable; dropped",
                seg.live_count,
                seg.path.name,
            )
            self.corrupt += seg.live_count
            for mid in [m for m, packed in index.loc.items() if packed >> 64 == number]:
                index.forget(mid)
            seg.live_count = seg.live_bytes = 0
        seg.pinned = True
        self.compactions += 1
        if not head.run_writes():
            return False
        head.sync()
        self.delete(seg)
        return True

    def live_records(self, seg: Segment) -> list[LiveCopy] | None:
        """(id, {queue: delivered}, exchange, routing key, header, body) of its live messages.

        Records that cannot be read back intact are left out; None if told to stop. When few
        of all live messages are in ``seg`` they are read where the index says they are; else
        the file is scanned.
        """
        number = seg.number
        loc = self.index.loc
        stop = self.stop
        moved: list[LiveCopy] = []
        if len(loc) > seg.size * LOCATE_LIVE_PER_BYTE:  # too many to look through: scan
            data = seg.path.read_bytes()
            if stop():
                return None
            for rtype, p, end, start in scan(data, ScanResult()):
                if rtype != R.PUBLISH:
                    continue
                mid = R.decode_publish_queues(data, p)[0]
                if loc.get(mid) == (number << 64) | (start << 32) | (end - start):
                    moved.append(self.live_copy(mid, data, p, end))
            return moved
        lo, hi = number << 64, (number + 1) << 64
        found = sorted(
            ((packed >> 32) & OFF_MASK, packed & OFF_MASK, mid)
            for mid, packed in loc.items()
            if lo <= packed < hi
        )
        if not found:
            return moved
        with open(seg.path, "rb", buffering=0) as f:
            fd = f.fileno()
            for i, (start, size, mid) in enumerate(found):
                if not i & 1023 and stop():
                    return None
                data = os.pread(fd, size, start)
                if len(data) != size or size < R.RECORD_HEAD_SIZE:
                    continue
                mark, crc, length, rtype = R.RECORD_HEAD.unpack_from(data, 0)
                if (
                    mark != R.MARK
                    or rtype != R.PUBLISH
                    or length != size - R.RECORD_HEAD_SIZE
                    or zlib.crc32(memoryview(data)[8:]) != crc
                ):
                    continue
                try:
                    if R.decode_publish_queues(data, R.RECORD_HEAD_SIZE)[0] != mid:
                        continue
                    moved.append(self.live_copy(mid, data, R.RECORD_HEAD_SIZE, size))
                except (ValueError, IndexError, UnicodeDecodeError, struct.error):
                    continue
        return moved

    def live_copy(self, mid: int, data: bytes, p: int, end: int) -> LiveCopy:
        _, qlist, _ = R.decode_publish_queues(data, p)
        queues = {}
        index = self.index
        qdeliv = index.qdeliv
        for name, _flag in qlist:
            held = index.qmsgs.get(name)
            if held is not None and mid in held:
                queues[name] = held[mid] or mid <= qdeliv.get(name, 0)
        ex, rk, header, body = R.decode_publish_content(data, p, end)
        return mid, queues, ex, rk, header, body
