"""DurableStore: the append-only log on disk, with group commit, reclaim and recovery.

Contract (see also the ``Store`` protocol in ``amqpd.store``):
- Calls other than ``recover``/``close``/``stats`` come from one thread (the event loop);
  they only append to a list. ``flush()`` hands that list to the single writer thread,
  which encodes everything handed over since its last round and writes it with one
  ``write()`` per segment, then, per policy: ``always`` fdatasync, then ``on_durable``;
  ``interval`` ``on_durable`` at once, fdatasync at most every ``fsync_interval_ms``;
  ``never`` ``on_durable`` at once, no fdatasync. ``on_durable`` runs on the writer thread.
- A message removed from all its queues before the writer took it is never written.
- ENOSPC: the segment is cut back to its last good length, the records stay pending,
  ``disk_full`` is True and the write is retried every second until it succeeds. Any other
  OSError is fatal: logged CRITICAL, ``on_fatal(exc)`` called, and every later call raises
  ``StoreFailed``. Nothing is ever reported durable that was not written.
- Every segment starts with a snapshot of the whole topology, so only messages pin old
  segments; the oldest segment is deleted when none of its messages is live, or compacted
  (live messages re-appended at the head, then deleted) when its live bytes fall below
  ``compact_ratio`` of its size. Segments are only ever deleted oldest first.
- ``recover()`` replays all segments, cuts a torn tail off the last one, skips and counts
  corrupt records, never raises on bad data, and starts a fresh head segment.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from amqpd.store import records as R
from amqpd.store.records import (
    FILE_HEADER_SIZE,
    RECORD_HEAD_SIZE,
    BindingRecord,
    ExchangeRecord,
    QueueRecord,
    Recovered,
    RecoveredMessage,
)
from amqpd.store.segments import (
    ScanResult,
    create_segment,
    fsync_directory,
    header_ok,
    list_segments,
    scan,
    segment_path,
    truncate,
    write_all,
)

log = logging.getLogger("amqpd.store")

FSYNC_POLICIES = ("always", "interval", "never")
_MISSING: Any = object()

# operations handed from the event loop to the writer
_PUB, _REMOVE, _DELIVER, _XDECL, _XDEL, _QDECL, _QDEL, _BIND, _UNBIND, _PURGE = range(10)
_CREATE, _WRITE = 0, 1  # kinds of scheduled file operations
_OFF_MASK = 0xFFFFFFFF


class StoreFailed(Exception):
    """The store hit an unrecoverable I/O error; nothing more is persisted."""


class _Segment:
    __slots__ = ("number", "path", "size", "written", "base", "live_count", "live_bytes",
                 "fd", "pinned")

    def __init__(self, number: int, path: Path, size: int) -> None:
        self.number = number
        self.path = path
        self.size = size  # bytes including those scheduled but not yet written
        self.written = size  # bytes on disk
        self.base = size  # size right after header and topology snapshot
        self.live_count = 0
        self.live_bytes = 0
        self.fd = -1
        self.pinned = False  # compacted: keep until its copies are synced


def _size(parts: list[bytes]) -> int:
    n = 0
    for p in parts:
        n += len(p)
    return n


class DurableStore:
    """The log-structured store; see the module docstring for the contract."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: str = "always",
        fsync_interval_ms: int = 200,
        segment_bytes: int = 32 * 1024 * 1024,
        compact_ratio: float = 0.5,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
        self.directory = Path(directory)
        self.fsync = fsync
        self._interval = max(0, fsync_interval_ms) / 1000.0
        self._segment_bytes = max(4096, segment_bytes)
        self._compact_ratio = compact_ratio
        self.on_durable: Callable[[int], None] | None = None
        # Called on the appending thread when the first record after a flush() arrives,
        # so the owner can schedule the next flush().
        self.on_pending: Callable[[], None] | None = None
        self.on_fatal: Callable[[BaseException], None] | None = None
        self.disk_full = False
        # event-loop side
        self._pending: list[Any] = []
        self._ticket = 0
        self._flushed_ticket = 0
        self._closed = False
        self._recovered = False
        self._lock_fd = -1
        # shared with the writer, under _cond
        self._cond = threading.Condition(threading.Lock())
        self._handoff: list[list[Any]] = []
        self._handoff_ticket = 0
        self._pending_msgs: dict[int, list[Any]] = {}  # publishes not yet taken by the writer
        self._closing = False
        self._failed: BaseException | None = None
        self._thread: threading.Thread | None = None
        # writer side (built by recover)
        self._exchanges: dict[str, ExchangeRecord] = {}
        self._queues: dict[str, QueueRecord] = {}
        self._bindings: dict[tuple[str, str, str, str, bytes], BindingRecord] = {}
        self._loc: dict[int, int] = {}  # message id -> segment << 64 | offset << 32 | size
        self._refs: dict[int, int] = {}  # message id -> number of queues, only when > 1
        self._qmsgs: dict[str, dict[int, bool]] = {}  # queue -> {message id: delivered}
        self._segs: dict[int, _Segment] = {}  # oldest first
        self._head: _Segment | None = None
        self._writing: _Segment | None = None
        self._buf: list[bytes] = []
        self._writes: list[tuple[int, _Segment, bytes]] = []
        self._stuck_ticket = 0
        self._wrote = False
        self._max_id = 0
        self._next_number = 1
        self._durable_ticket = 0
        self._dirty = False
        self._last_sync = 0.0
        # counters
        self._corrupt = 0
        self._truncated = 0
        self._disk_bytes = 0
        self._batches = 0
        self._fsyncs = 0
        self._compactions = 0
        self._deleted = 0
        self._skipped_messages = 0

    # ------------------------------------------------------------------ event-loop API

    def _check(self) -> None:
        if self._failed is not None:
            raise StoreFailed(str(self._failed)) from self._failed
        if self._closed:
            raise StoreFailed("store is closed")

    def exchange_declared(self, record: ExchangeRecord) -> None:
        self._check()
        self._advance()
        self._pending.append((_XDECL, record))

    def exchange_deleted(self, name: str) -> None:
        self._check()
        self._advance()
        self._pending.append((_XDEL, name))

    def queue_declared(self, record: QueueRecord) -> None:
        self._check()
        self._advance()
        self._pending.append((_QDECL, record))

    def queue_deleted(self, name: str) -> None:
        self._check()
        self._advance()
        self._forget_pending(name)
        self._pending.append((_QDEL, name))

    def queue_purged(self, queue: str) -> None:
        self._check()
        self._advance()
        self._forget_pending(queue)
        self._pending.append((_PURGE, queue))

    def binding_added(self, record: BindingRecord) -> None:
        self._check()
        self._advance()
        self._pending.append((_BIND, record))

    def binding_removed(self, record: BindingRecord) -> None:
        self._check()
        self._advance()
        self._pending.append((_UNBIND, record))

    def message_published(
        self,
        message_id: int,
        queues: Sequence[str],
        exchange: str,
        routing_key: str,
        header: bytes,
        body: bytes,
    ) -> int:
        self._check()
        self._advance()
        if queues:
            op = [_PUB, message_id, dict.fromkeys(queues, False), exchange, routing_key,
                  header, body]
            self._pending.append(op)
            with self._cond:
                self._pending_msgs[message_id] = op
        return self._ticket

    def message_delivered(self, queue: str, message_id: int) -> None:
        self._check()
        self._advance()
        with self._cond:
            op = self._pending_msgs.get(message_id)
            if op is not None:
                if queue in op[2]:
                    op[2][queue] = True
                return
        self._pending.append((_DELIVER, queue, message_id))

    def message_removed(self, queue: str, message_id: int) -> None:
        self._check()
        self._advance()
        with self._cond:
            op = self._pending_msgs.get(message_id)
            if op is not None:
                queues = op[2]
                if queues.pop(queue, None) is not None and not queues:
                    del self._pending_msgs[message_id]
                return
        self._pending.append((_REMOVE, queue, message_id))

    def _forget_pending(self, queue: str) -> None:
        with self._cond:
            if not self._pending_msgs:
                return
            for mid, op in list(self._pending_msgs.items()):
                queues = op[2]
                if queues.pop(queue, None) is not None and not queues:
                    del self._pending_msgs[mid]

    def _advance(self) -> None:
        if self._ticket == self._flushed_ticket and self.on_pending is not None:
            self.on_pending()
        self._ticket += 1

    def flush(self) -> None:
        if self._closed and self._failed is None:
            return
        self._check()
        if self._ticket == self._flushed_ticket:
            return
        batch = self._pending
        self._pending = []
        self._flushed_ticket = self._ticket
        with self._cond:
            self._handoff.append(batch)
            self._handoff_ticket = self._flushed_ticket
            self._cond.notify()

    def close(self) -> None:
        if self._closed:
            return
        if self._thread is not None:
            if self._failed is None:
                self.flush()
            with self._cond:
                self._closing = True
                self._cond.notify()
            self._thread.join()
        self._closed = True
        for seg in self._segs.values():
            if seg.fd >= 0:
                os.close(seg.fd)
                seg.fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def stats(self) -> dict[str, int | bool]:
        return {
            "live_messages": len(self._loc),
            "segments": len(self._segs),
            "bytes_on_disk": self._disk_bytes,
            "corrupt_records": self._corrupt,
            "truncated_bytes": self._truncated,
            "batches": self._batches,
            "fsyncs": self._fsyncs,
            "compactions": self._compactions,
            "segments_deleted": self._deleted,
            "durable_ticket": self._durable_ticket,
            "disk_full": self.disk_full,
            "failed": self._failed is not None,
        }

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - any failure must stop the broker loudly
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        log.critical("store failed, nothing more will be persisted: %r", exc, exc_info=exc)
        with self._cond:
            self._failed = exc
        hook = self.on_fatal
        if hook is not None:
            try:
                hook(exc)
            except Exception:
                log.exception("on_fatal hook raised")

    def _loop(self) -> None:
        while True:
            chunks: list[list[Any]] = []
            with self._cond:
                if self._writes:  # stuck on a full disk
                    if not self._closing:
                        self._cond.wait(1.0)
                    closing = self._closing
                else:
                    while not self._handoff and not self._closing:
                        due = self._sync_due_in()
                        if due is not None and due <= 0:
                            break
                        self._cond.wait(due)
                    chunks, self._handoff = self._handoff, []
                    ticket = self._handoff_ticket
                    pm = self._pending_msgs
                    for chunk in chunks:
                        for op in chunk:
                            if op[0] == _PUB:
                                pm.pop(op[1], None)
                    closing = self._closing and not chunks
            if self._writes:
                self._reclaim(deleting_only=True)
                if self._run_writes():
                    self.disk_full = False
                    log.warning("disk space available again; store writes resumed")
                    self._after_writes(self._stuck_ticket, True)
                elif closing:
                    log.error("closing with a full disk: unwritten records are lost")
                    return
                continue
            if chunks:
                for chunk in chunks:
                    for op in chunk:
                        self._apply(op)
                self._end_buf()
                if self._run_writes():
                    self._after_writes(ticket, True)
                else:
                    self._stuck_ticket = ticket
                continue
            due = self._sync_due_in()
            if self._dirty and (closing or (due is not None and due <= 0)):
                self._sync()
            if closing:
                return

    def _sync_due_in(self) -> float | None:
        if self.fsync != "interval" or not self._dirty:
            return None
        return self._last_sync + self._interval - time.monotonic()

    def _sync(self) -> None:
        seg = self._writing
        if seg is not None and seg.fd >= 0:
            os.fdatasync(seg.fd)
            self._fsyncs += 1
        self._dirty = False
        self._last_sync = time.monotonic()

    def _durable(self, ticket: int) -> None:
        if ticket <= self._durable_ticket:
            return
        self._durable_ticket = ticket
        hook = self.on_durable
        if hook is not None:
            try:
                hook(ticket)
            except Exception:
                log.exception("on_durable hook raised")

    def _after_writes(self, ticket: int, reclaim: bool) -> None:
        if self._wrote:
            self._batches += 1
            self._dirty = True
            if self.fsync == "always":
                self._sync()
            elif self.fsync == "interval":
                if time.monotonic() - self._last_sync >= self._interval:
                    self._sync()
        self._durable(ticket)
        if reclaim:
            self._reclaim()

    # ------------------------------------------------------------ applying operations

    def _apply(self, op: Any) -> None:
        kind = op[0]
        if kind == _PUB:
            mid = op[1]
            if mid > self._max_id:
                self._max_id = mid
            queues = op[2]
            if queues:
                parts = R.encode_publish(mid, queues, op[3], op[4], op[5], op[6])
                seg, offset, size = self._emit(parts)
                self._register(mid, queues, seg, offset, size)
        elif kind == _REMOVE:
            _, queue, mid = op
            if self._drop(queue, mid):
                self._emit(R.encode_message_ref(R.REMOVED, queue, mid))
        elif kind == _DELIVER:
            _, queue, mid = op
            held = self._qmsgs.get(queue)
            if held is not None and held.get(mid) is False:
                held[mid] = True
                self._emit(R.encode_message_ref(R.DELIVERED, queue, mid))
        elif kind == _XDECL:
            rec: ExchangeRecord = op[1]
            self._exchanges[rec.name] = rec
            self._emit(R.encode_exchange(rec))
        elif kind == _QDECL:
            qrec: QueueRecord = op[1]
            self._queues[qrec.name] = qrec
            self._qmsgs.setdefault(qrec.name, {})
            self._emit(R.encode_queue(qrec))
        elif kind == _BIND:
            brec: BindingRecord = op[1]
            self._bindings[R.binding_key(brec)] = brec
            self._emit(R.encode_binding(R.BIND, brec))
        elif kind == _UNBIND:
            if self._bindings.pop(R.binding_key(op[1]), None) is not None:
                self._emit(R.encode_binding(R.UNBIND, op[1]))
        elif kind == _XDEL:
            if self._delete_exchange(op[1]):
                self._emit(R.encode_name(R.EXCHANGE_DELETE, op[1]))
        elif kind == _QDEL:
            if self._delete_queue(op[1]):
                self._emit(R.encode_name(R.QUEUE_DELETE, op[1]))
        elif kind == _PURGE:
            held = self._qmsgs.get(op[1])
            if held:
                self._purge(op[1])
                self._emit(R.encode_name(R.PURGE, op[1]))

    def _register(
        self, mid: int, queues: dict[str, bool], seg: _Segment, offset: int, size: int
    ) -> None:
        qmsgs = self._qmsgs
        for name, delivered in queues.items():
            held = qmsgs.get(name)
            if held is None:
                held = qmsgs[name] = {}
            held[mid] = delivered
        if len(queues) > 1:
            self._refs[mid] = len(queues)
        self._loc[mid] = (seg.number << 64) | (offset << 32) | size
        seg.live_count += 1
        seg.live_bytes += size

    def _unref(self, mid: int) -> None:
        """One queue less holds the message; account for it when none does any more."""
        refs = self._refs.get(mid)
        if refs is not None:
            if refs > 2:
                self._refs[mid] = refs - 1
            else:
                del self._refs[mid]
            return
        packed = self._loc.pop(mid, None)
        if packed is None:
            return
        seg = self._segs.get(packed >> 64)
        if seg is not None:
            seg.live_count -= 1
            seg.live_bytes -= packed & _OFF_MASK

    def _drop(self, queue: str, mid: int) -> bool:
        held = self._qmsgs.get(queue)
        if held is None or held.pop(mid, _MISSING) is _MISSING:
            return False
        self._unref(mid)
        return True

    def _purge(self, queue: str) -> None:
        held = self._qmsgs.get(queue)
        if held:
            for mid in held:
                self._unref(mid)
            held.clear()

    def _delete_queue(self, name: str) -> bool:
        known = self._queues.pop(name, None) is not None
        held = self._qmsgs.pop(name, None)
        if held:
            known = True
            for mid in held:
                self._unref(mid)
        for key in [k for k in self._bindings if k[2] == name and k[1] == "queue"]:
            del self._bindings[key]
        return known

    def _delete_exchange(self, name: str) -> bool:
        known = self._exchanges.pop(name, None) is not None
        for key in [
            k for k in self._bindings
            if k[0] == name or (k[2] == name and k[1] == "exchange")
        ]:
            del self._bindings[key]
        return known

    # -------------------------------------------------------------- segments and writes

    def _emit(self, parts: list[bytes]) -> tuple[_Segment, int, int]:
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

    def _rotate(self) -> _Segment:
        self._end_buf()
        number = self._next_number
        self._next_number += 1
        snapshot = self._snapshot()
        seg = _Segment(number, segment_path(self.directory, number),
                       FILE_HEADER_SIZE + len(snapshot))
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
                    log.error("disk full (ENOSPC) writing %s; retrying every second",
                              seg.path.name)
                self.disk_full = True
                return False
            self._disk_bytes += seg.written - good
            self._wrote = True
            del self._writes[0]
        return True

    def _delete(self, seg: _Segment) -> None:
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

    def _reclaim(self, deleting_only: bool = False) -> None:
        """Delete dead segments oldest first; compact the oldest one if mostly dead."""
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
        if deleting_only or len(self._segs) < 2:
            return
        oldest = next(iter(self._segs.values()))
        if oldest is self._head:
            return
        ratio = self._compact_ratio
        if oldest.live_bytes < ratio * oldest.size or (
            # a mostly-live oldest segment must not pin many dead ones behind it
            len(self._segs) > 2
            and sum(s.live_bytes for s in self._segs.values()) < ratio * self._disk_bytes
        ):
            self._compact(oldest)

    def _compact(self, seg: _Segment) -> None:
        """Re-append the live messages of ``seg`` at the head, then delete it."""
        data = seg.path.read_bytes()
        number = seg.number
        result = ScanResult()
        moved = []
        for rtype, p, end, start in scan(data, result):
            if rtype != R.PUBLISH:
                continue
            mid, qlist, _ = R.decode_publish_queues(data, p)
            if self._loc.get(mid) != (number << 64) | (start << 32) | (end - start):
                continue
            queues = {}
            for name, _flag in qlist:
                held = self._qmsgs.get(name)
                if held is not None and mid in held:
                    queues[name] = held[mid]
            ex, rk, header, body = R.decode_publish_content(data, p, end)
            moved.append((mid, queues, ex, rk, header, body))
        for mid, queues, ex, rk, header, body in moved:
            new_seg, offset, size = self._emit(R.encode_publish(mid, queues, ex, rk, header, body))
            packed = self._loc[mid]
            seg.live_count -= 1
            seg.live_bytes -= packed & _OFF_MASK
            self._loc[mid] = (new_seg.number << 64) | (offset << 32) | size
            new_seg.live_count += 1
            new_seg.live_bytes += size
        if seg.live_count:  # records it could not read back (damaged since written)
            log.error("compaction: %d live messages in %s unreadable; dropped",
                      seg.live_count, seg.path.name)
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

    # ---------------------------------------------------------------------- recovery

    def recover(self) -> Recovered:
        """Replay the log, repair its tail, start a head segment and the writer thread."""
        if self._recovered:
            raise RuntimeError("recover() may only be called once")
        self._recovered = True
        gc_was_enabled = gc.isenabled()
        gc.disable()  # millions of new acyclic objects: collecting would only slow us down
        try:
            return self._recover()
        finally:
            if gc_was_enabled:
                gc.enable()

    def _recover(self) -> Recovered:
        started = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise StoreFailed(f"{self.directory} is in use by another store") from exc
        found = list_segments(self.directory)
        datas: dict[int, bytes] = {}
        watermark = 0
        for index, (number, path) in enumerate(found):
            self._next_number = max(self._next_number, number + 1)
            last = index == len(found) - 1
            data = path.read_bytes()
            header = header_ok(data)
            if header is not None and header[0] > R.VERSION:
                log.error("%s has format version %d (this amqpd reads %d); left untouched",
                          path.name, header[0], R.VERSION)
                self._corrupt += 1
                continue
            if header is None:
                if last and len(data) <= FILE_HEADER_SIZE:
                    log.warning("%s: torn segment header, removing %d bytes", path.name,
                                len(data))
                    self._truncated += len(data)
                    path.unlink()
                    continue
                log.warning("%s: damaged segment header; reading its records anyway",
                            path.name)
                self._corrupt += 1
            seg = _Segment(number, path, len(data))
            self._segs[number] = seg
            datas[number] = data
            watermark = max(watermark, self._replay(seg, data, datas, last))
        self._drop_orphans()
        messages = self._recovered_messages(datas)
        datas.clear()
        next_id = max(self._max_id + 1, watermark, 1)
        self._max_id = next_id - 1
        self._disk_bytes = sum(s.written for s in self._segs.values())
        # a fresh head that starts with a complete topology snapshot
        self._rotate()
        if not self._run_writes():
            raise StoreFailed(f"no space left in {self.directory} to start a segment")
        self._last_sync = time.monotonic()  # the new head was created synced
        self._reclaim(deleting_only=True)
        self._thread = threading.Thread(target=self._run, name="amqpd-store-writer",
                                        daemon=True)
        self._thread.start()
        seconds = time.perf_counter() - started
        live = sum(len(v) for v in messages.values())
        log.info("store recovered %d messages in %d queues from %d segments in %.3fs",
                 live, len(messages), len(found), seconds)
        return Recovered(
            exchanges=list(self._exchanges.values()),
            queues=list(self._queues.values()),
            bindings=list(self._bindings.values()),
            messages=messages,
            next_message_id=next_id,
            corrupt_records=self._corrupt,
            truncated_bytes=self._truncated,
            seconds=seconds,
        )

    def _replay(self, seg: _Segment, data: bytes, datas: dict[int, bytes], last: bool) -> int:
        """Apply one segment's records to the state; returns the highest watermark seen."""
        from struct import Struct

        u64u16 = Struct("<QH").unpack_from
        u16 = Struct("<H").unpack_from
        u8u16 = Struct("<BH").unpack_from
        names: dict[bytes, str] = {}
        loc = self._loc
        refs = self._refs
        qmsgs = self._qmsgs
        segbits = seg.number << 64
        max_id = self._max_id
        watermark = 0
        live_count = 0
        live_bytes = 0
        result = ScanResult()
        PUBLISH, REMOVED, DELIVERED = R.PUBLISH, R.REMOVED, R.DELIVERED
        for rtype, p, end, start in scan(data, result):
            try:
                if rtype == PUBLISH:
                    mid, n = u64u16(data, p)
                    q = p + 10 + n
                    (n,) = u16(data, q)
                    q += 2 + n
                    (count,) = u16(data, q)
                    q += 2
                    holders = []
                    for _ in range(count):
                        flag, n = u8u16(data, q)
                        q += 3
                        raw = data[q : q + n]
                        q += n
                        name = names.get(raw)
                        if name is None:
                            name = names[raw] = raw.decode()
                        holders.append((name, flag == 1))
                    if mid > max_id:
                        max_id = mid
                    if mid in loc:
                        seg.live_count, seg.live_bytes = live_count, live_bytes
                        self._forget(mid, datas)
                        live_count, live_bytes = seg.live_count, seg.live_bytes
                    for name, delivered in holders:
                        held = qmsgs.get(name)
                        if held is None:
                            held = qmsgs[name] = {}
                        held[mid] = delivered
                    if count:
                        if count > 1:
                            refs[mid] = count
                        loc[mid] = segbits | (start << 32) | (end - start)
                        live_count += 1
                        live_bytes += end - start
                elif rtype == REMOVED or rtype == DELIVERED:
                    mid, n = u64u16(data, p)
                    raw = data[p + 10 : p + 10 + n]
                    name = names.get(raw)
                    if name is None:
                        name = names[raw] = raw.decode()
                    if mid > max_id:
                        max_id = mid
                    held = qmsgs.get(name)
                    if held is None or mid not in held:
                        continue
                    if rtype == DELIVERED:
                        held[mid] = True
                        continue
                    del held[mid]
                    if mid in refs:
                        c = refs[mid]
                        if c > 2:
                            refs[mid] = c - 1
                        else:
                            del refs[mid]
                        continue
                    packed = loc.pop(mid)
                    if packed >> 64 == seg.number:
                        live_count -= 1
                        live_bytes -= packed & _OFF_MASK
                    else:
                        other = self._segs[packed >> 64]
                        other.live_count -= 1
                        other.live_bytes -= packed & _OFF_MASK
                else:
                    seg.live_count, seg.live_bytes = live_count, live_bytes
                    try:
                        watermark = max(watermark, self._replay_other(rtype, data, p, end))
                    finally:
                        live_count, live_bytes = seg.live_count, seg.live_bytes
            except Exception as exc:  # behind a good CRC only a bug gets here; never fatal
                log.warning("%s: undecodable record at %d skipped: %r", seg.path.name,
                            start, exc)
                self._corrupt += 1
        seg.live_count, seg.live_bytes = live_count, live_bytes
        self._max_id = max_id
        self._corrupt += result.corrupt
        if result.corrupt:
            log.warning("%s: skipped %d corrupt record(s)", seg.path.name, result.corrupt)
        if result.tail_start >= 0:
            cut = len(data) - result.tail_start
            if last:
                log.warning("%s: torn or corrupt tail, truncating %d bytes at offset %d",
                            seg.path.name, cut, result.tail_start)
                fd = os.open(seg.path, os.O_WRONLY)
                try:
                    os.ftruncate(fd, result.tail_start)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._truncated += cut
                seg.size = seg.written = result.tail_start
            else:
                log.warning("%s: %d damaged bytes at its end skipped", seg.path.name, cut)
                self._corrupt += 1
        return watermark

    def _replay_other(self, rtype: int, data: bytes, p: int, end: int) -> int:
        """Apply a topology, purge or watermark record; returns a watermark or 0."""
        if rtype == R.EXCHANGE:
            x = R.decode_exchange(data, p, end)
            self._exchanges[x.name] = x
        elif rtype == R.QUEUE:
            q = R.decode_queue(data, p, end)
            self._queues[q.name] = q
            self._qmsgs.setdefault(q.name, {})
        elif rtype == R.BIND:
            b = R.decode_binding(data, p, end)
            self._bindings[R.binding_key(b)] = b
        elif rtype == R.UNBIND:
            self._bindings.pop(R.binding_key(R.decode_binding(data, p, end)), None)
        elif rtype == R.EXCHANGE_DELETE:
            self._delete_exchange(R.decode_name(data, p, end))
        elif rtype == R.QUEUE_DELETE:
            self._delete_queue(R.decode_name(data, p, end))
        elif rtype == R.PURGE:
            self._purge(R.decode_name(data, p, end))
        elif rtype == R.WATERMARK:
            return R.decode_watermark(data, p, end)
        else:
            raise ValueError(f"unknown record type {rtype}")
        return 0

    def _forget(self, mid: int, datas: dict[int, bytes]) -> None:
        """A message is re-appended (compaction): drop the state of its older copy."""
        packed = self._loc.pop(mid)
        number, offset = packed >> 64, (packed >> 32) & _OFF_MASK
        _, qlist, _ = R.decode_publish_queues(datas[number], offset + RECORD_HEAD_SIZE)
        for name, _flag in qlist:
            held = self._qmsgs.get(name)
            if held is not None:
                held.pop(mid, None)
        self._refs.pop(mid, None)
        seg = self._segs[number]
        seg.live_count -= 1
        seg.live_bytes -= packed & _OFF_MASK

    def _drop_orphans(self) -> None:
        """Messages of queues absent from the recovered topology cannot be delivered."""
        for name in [n for n in self._qmsgs if n not in self._queues]:
            held = self._qmsgs.pop(name)
            if held:
                log.warning("dropping %d recovered messages of undeclared queue %r",
                            len(held), name)
                self._skipped_messages += len(held)
                for mid in held:
                    self._unref(mid)

    def _recovered_messages(self, datas: dict[int, bytes]) -> dict[str, list[RecoveredMessage]]:
        from struct import Struct

        u16 = Struct("<H").unpack_from
        u32 = Struct("<I").unpack_from
        strings: dict[bytes, str] = {}
        shared: dict[int, tuple[str, str, bytes, bytes]] = {}
        loc = self._loc
        refs = self._refs
        out: dict[str, list[RecoveredMessage]] = {}
        for qname, held in self._qmsgs.items():
            lst: list[RecoveredMessage] = []
            for mid in sorted(held):
                content = shared.get(mid)
                if content is None:
                    packed = loc[mid]
                    data = datas[packed >> 64]
                    start = (packed >> 32) & _OFF_MASK
                    end = start + (packed & _OFF_MASK)
                    p = start + RECORD_HEAD_SIZE + 8
                    (n,) = u16(data, p)
                    raw = data[p + 2 : p + 2 + n]
                    exchange = strings.get(raw)
                    if exchange is None:
                        exchange = strings[raw] = raw.decode()
                    p += 2 + n
                    (n,) = u16(data, p)
                    raw = data[p + 2 : p + 2 + n]
                    routing_key = strings.get(raw)
                    if routing_key is None:
                        routing_key = strings[raw] = raw.decode()
                    p += 2 + n
                    (count,) = u16(data, p)
                    p += 2
                    for _ in range(count):
                        (n,) = u16(data, p + 1)
                        p += 3 + n
                    (n,) = u32(data, p)
                    p += 4
                    content = (exchange, routing_key, data[p : p + n], data[p + n : end])
                    if mid in refs:
                        shared[mid] = content
                lst.append(RecoveredMessage(mid, *content, held[mid]))
            if lst:
                out[qname] = lst
        return out
