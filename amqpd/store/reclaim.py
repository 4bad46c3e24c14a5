"""Reclaiming disk: deleting dead segments and compacting mostly-dead ones, oldest first.

Contract: every segment starts with a topology snapshot, so only live messages pin it.
``_reclaim`` deletes the oldest segment while none of its messages is live (never the head,
never before the next segment's snapshot is on disk) and compacts the oldest one when its live
bytes fall below ``compact_ratio`` of its size (or when live data is below that ratio of all
bytes on disk): its live messages are read back (at their recorded offsets, CRC-checked, or by
a scan of the file when the log holds many live messages), re-appended at the head with their
current delivered flags, synced, then it is deleted.
The head itself is retired the same way when the whole log is mostly dead and the head holds
enough reclaimable bytes (after a write round: a quarter of ``segment_bytes``, at least
``HEAD_COMPACT_BYTES``; once the writer has been idle for ``IDLE_RECLAIM_DELAY``: more than
its own snapshot): a new head with a snapshot is started and made durable, then every older
segment, the old head included, is compacted or deleted, oldest first. So disk use follows
live data without further writes.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from itertools import islice
from pathlib import Path

from amqpd.store import records as R
from amqpd.store.index import OFF_MASK, Segment
from amqpd.store.segments import ScanResult, fsync_directory, scan
from amqpd.store.writes import LogHead

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


class LogReclaim(LogHead):
    """The appending log plus segment deletion and compaction."""

    def __init__(self, directory: Path, segment_bytes: int, compact_ratio: float) -> None:
        super().__init__(directory, segment_bytes)
        self._compact_ratio = compact_ratio
        self._compactions = 0
        self._deleted = 0
        seg_bytes = self._segment_bytes
        self._head_compact_bytes = min(seg_bytes // 2, max(HEAD_COMPACT_BYTES, seg_bytes // 4))
        self._head_rotations = 0

    def _delete(self, seg: Segment) -> None:
        if seg.pinned and self._dirty:
            self._sync()  # its live messages were copied to the head: sync them first
        if seg.fd >= 0:
            os.close(seg.fd)
            seg.fd = -1
        try:
            os.unlink(seg.path)
        except FileNotFoundError:
            pass
        fsync_directory(self.directory)
        del self._segs[seg.number]
        self._disk_bytes -= seg.written
        self._deleted += 1

    def _reclaim(self, deleting_only: bool = False, idle: bool = False) -> None:
        """Delete dead segments oldest first; compact the oldest one if mostly dead.

        Unless ``deleting_only``, also retire the head when that is due (``_shrink``); ``idle``
        says the writer has had nothing to write for a while, which lowers the bar for that.
        """
        while len(self._segs) > 1:
            oldest, following = list(islice(self._segs.values(), 2))
            if oldest is self._head or oldest.live_count:
                break
            if deleting_only and (
                oldest.pinned
                or oldest.written != oldest.size
                or following.written < following.base  # its topology snapshot is not on disk
            ):
                return
            self._delete(oldest)
        if deleting_only:
            return
        if len(self._segs) > 1:
            oldest = next(iter(self._segs.values()))
            ratio = self._compact_ratio
            if oldest is not self._head and (
                oldest.live_bytes < ratio * oldest.size
                or (
                    # a mostly-live oldest segment must not pin many dead ones behind it
                    len(self._segs) > 2
                    and sum(s.live_bytes for s in self._segs.values()) < ratio * self._disk_bytes
                )
            ):
                self._compact(oldest)
        self._shrink(idle)

    def _shrink(self, idle: bool) -> None:
        """When the log is mostly dead, bring it down to one segment: its live data.

        The head is retired when its reclaimable bytes (all but its snapshot and its live
        messages) exceed ``_head_compact_bytes``, or when ``idle``, its snapshot's size: a new
        head is started (created with its snapshot, file and directory fsync'ed; the old head
        is fdatasync'ed as it is closed). Then, and also when ``idle`` with older segments left
        over, every segment but the head is compacted or deleted, oldest first.
        """
        head = self._head
        segs = self._segs
        if head is None or self._writes or (len(segs) == 1 and head.size == head.base):
            return
        live = 0
        for seg in segs.values():
            live += seg.live_bytes
        if live >= self._compact_ratio * self._disk_bytes:
            return  # copying would cost more than it frees
        waste = head.size - head.base - head.live_bytes
        if waste > (head.base if idle else self._head_compact_bytes):
            self._rotate()
            self._head_rotations += 1
            if not self._run_writes():
                return  # disk full: the new head is retried, the old one stays
        elif not idle or len(segs) < 2:
            return
        while len(segs) > 1:
            oldest = next(iter(segs.values()))
            if oldest is self._head:
                break
            if oldest.live_count:
                self._compact(oldest)
                if oldest.number in segs:
                    return  # disk full: its copies stay pending, it is deleted later
            else:
                self._delete(oldest)

    def _compact(self, seg: Segment) -> None:
        """Re-append the live messages of ``seg`` at the head, then delete it."""
        moved = self._live_records(seg)
        strings = self._strings
        for mid, queues, ex, rk, header, body in moved:
            parts = R.encode_publish(mid, queues, ex, rk, header, body, strings)
            new_seg, offset, size = self._emit(parts)
            packed = self._loc[mid]
            seg.live_count -= 1
            seg.live_bytes -= packed & OFF_MASK
            self._loc[mid] = (new_seg.number << 64) | (offset << 32) | size
            new_seg.live_count += 1
            new_seg.live_bytes += size
        number = seg.number
        if seg.live_count:  # records it could not read back (damaged since written)
            log.error(
                "compaction: %d live messages in %s unreadable; dropped",
                seg.live_count,
                seg.path.name,
            )
            self._corrupt += seg.live_count
            for mid in [m for m, packed in self._loc.items() if packed >> 64 == number]:
                self._loc.pop(mid)
                self._refs.pop(mid, None)
                for held in self._qmsgs.values():
                    held.pop(mid, None)
            seg.live_count = seg.live_bytes = 0
        seg.pinned = True
        self._compactions += 1
        self._end_buf()
        if self._run_writes():
            if self._wrote:
                self._batches += 1
            self._sync()
            self._delete(seg)

    def _live_records(
        self, seg: Segment
    ) -> list[tuple[int, dict[str, bool], str, str, bytes, bytes]]:
        """(id, {queue: delivered}, exchange, routing key, header, body) of its live messages.

        Records that cannot be read back intact are left out. When few of all live messages
        are in ``seg`` they are read where the index says they are; else the file is scanned.
        """
        number = seg.number
        loc = self._loc
        moved = []
        if len(loc) > seg.size * LOCATE_LIVE_PER_BYTE:  # too many to look through: scan
            data = seg.path.read_bytes()
            for rtype, p, end, start in scan(data, ScanResult()):
                if rtype != R.PUBLISH:
                    continue
                mid = R.decode_publish_queues(data, p)[0]
                if loc.get(mid) == (number << 64) | (start << 32) | (end - start):
                    moved.append(self._live_copy(mid, data, p, end))
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
            for start, size, mid in found:
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
                    moved.append(self._live_copy(mid, data, R.RECORD_HEAD_SIZE, size))
                except (ValueError, IndexError, UnicodeDecodeError, struct.error):
                    continue
        return moved

    def _live_copy(
        self, mid: int, data: bytes, p: int, end: int
    ) -> tuple[int, dict[str, bool], str, str, bytes, bytes]:
        _, qlist, _ = R.decode_publish_queues(data, p)
        queues = {}
        qdeliv = self._qdeliv
        for name, _flag in qlist:
            held = self._qmsgs.get(name)
            if held is not None and mid in held:
                queues[name] = held[mid] or mid <= qdeliv.get(name, 0)
        ex, rk, header, body = R.decode_publish_content(data, p, end)
        return mid, queues, ex, rk, header, body
