"""DurableStore: the append-only log on disk, with group commit, reclaim and recovery.

Contract (see also the ``Store`` protocol in ``amqpd.store``):
- Calls other than ``recover``/``close``/``stats`` come from one thread (the event loop);
  they only append to a list. ``flush()`` hands that list to the single writer thread,
  which encodes everything handed over since its last round and writes it with one
  ``write()`` per segment, then, per policy: ``always`` fdatasync, then ``on_durable``;
  ``interval`` ``on_durable`` at once, fdatasync at most every ``fsync_interval_ms``;
  ``never`` ``on_durable`` at once, no fdatasync. ``on_durable`` runs on the writer thread.
- A message removed from all its queues before the writer took it is never written. The
  publishes of the current batch are tracked loop-side without a lock; only those handed
  over and not yet taken are shared with the writer (under ``_lock``).
- ``message_delivered`` keeps the highest id per queue; ``flush()`` hands over one delivered
  watermark per queue: every message of the queue with an id <= it was delivered.
- ``message_removed`` appends the id to its queue's list (no object per ack); ``flush()`` hands
  over one remove run per queue after the batch's other operations (a remove names a message
  handed over in an earlier batch, so this order is as good as the calls').
- ENOSPC: the segment is cut back to its last good length, the records stay pending,
  ``disk_full`` is True and the write is retried every second until it succeeds. Any other
  OSError is fatal: logged CRITICAL, ``on_fatal(exc)`` called, and every later call raises
  ``StoreFailed``. Nothing is ever reported durable that was not written.
- Every segment starts with a snapshot of the whole topology, so only messages pin old
  segments; the oldest segment is deleted when none of its messages is live, or compacted
  (live messages re-appended at the head, then deleted) when its live bytes fall below
  ``compact_ratio`` of its size. Segments are only ever deleted oldest first. When the log
  is mostly dead and the head holds enough dead bytes (a quarter segment after a write
  round, more than its snapshot once the writer has been idle for a moment), a new head is
  started and all older segments are compacted or deleted, so disk use follows live data
  without more writes.
- ``recover()`` replays all segments, cuts a torn tail off the last one, skips and counts
  corrupt records, never raises on bad data, and starts a fresh head segment.

- ``close()`` returns within ``CLOSE_TIMEOUT`` seconds whatever the writer is doing: a
  reclaim in progress is abandoned between segments (the log is left as a crash there would
  leave it, which recovery handles).
- The directory is created 0700 and every file in it 0600.

This module holds the event-loop API and the writer thread. It owns, by composition: the
``LogIndex`` (``index``: what the log means), the ``LogHead`` (``head``: records scheduled and
written at the head segment), the ``Reclaimer`` (``reclaim``: segment deletion and compaction)
and calls ``recovery.replay`` once at start.
"""

from __future__ import annotations

import fcntl
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from amqpd.store.head import (
    BIND,
    DELIVER,
    PUB,
    PURGE,
    QDECL,
    QDEL,
    REMOVE,
    UNBIND,
    XDECL,
    XDEL,
    LogHead,
)
from amqpd.store.index import LogIndex
from amqpd.store.latency import Histogram
from amqpd.store.reader import LogReader
from amqpd.store.reclaim import IDLE_RECLAIM_DELAY, Reclaimer
from amqpd.store.records import BindingRecord, ExchangeRecord, QueueRecord, Recovered
from amqpd.store.recovery import replay

log = logging.getLogger("amqpd.store")

FSYNC_POLICIES = ("always", "interval", "never")
# close() waits at most this long for the writer thread (seconds)
CLOSE_TIMEOUT = 5.0


class StoreFailed(Exception):
    """The store hit an unrecoverable I/O error; nothing more is persisted."""


class StoreLocked(StoreFailed):
    """Another process holds the directory's lock; `pid` is its pid when it could be read."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


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
        # the writer's parts: only the writer thread touches them once recover() returned
        self._index = LogIndex()
        self._head = LogHead(self.directory, segment_bytes, self._index)
        self._reclaim = Reclaimer(
            self._index, self._head, compact_ratio, stop=lambda: self._closing
        )
        self.reader = LogReader(self._index)  # bodies read back on the event loop
        # False: recover() leaves message bodies in the log (RecoveredMessage.body is None)
        self.recover_bodies = True
        self._corrupt = 0
        self._truncated = 0
        self._quarantined: list[Path] = []
        self.fsync = fsync
        self._interval = max(0, fsync_interval_ms) / 1000.0
        self.on_durable: Callable[[int], object] | None = None
        # Called on the appending thread when the first record after a flush() arrives,
        # so the owner can schedule the next flush().
        self.on_pending: Callable[[], object] | None = None
        self.on_fatal: Callable[[BaseException], object] | None = None
        # event-loop side
        self._ok = True  # False once failed or closed: the calls then go through _check()
        self._pending: list[Any] = []
        self._new_msgs: dict[int, list[Any]] = {}  # publishes since the last flush()
        self._delivered: dict[str, int] = {}  # queue -> highest id delivered since then
        self._removed: dict[str, list[int]] = {}  # queue -> ids removed since then
        self._ticket = 0
        self._flushed_ticket = 0
        self._closed = False
        self._recovered = False
        self._lock_fd = -1
        # shared with the writer, under _cond
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._handoff: list[list[Any]] = []
        self._handoff_ticket = 0
        # publishes handed over but not yet taken by the writer: only the loop adds to it,
        # only the writer empties it (swapping in a new dict); while it is not empty, no id
        # in it is below _pending_min (ids are handed out in increasing order)
        self._pending_msgs: dict[int, list[Any]] = {}
        self._pending_min = 0
        self._closing = False
        self._failed: BaseException | None = None
        self._thread: threading.Thread | None = None
        # writer side
        self._batches = 0
        self._stuck_ticket = 0
        self._durable_ticket = 0
        self._idle_at: float | None = None  # when to look for dead space if nothing comes

    # ------------------------------------------------------------------ event-loop API

    def _check(self) -> None:
        if self._failed is not None:
            raise StoreFailed(str(self._failed)) from self._failed
        if self._closed:
            raise StoreFailed("store is closed")

    def _append(self, op: tuple[Any, ...]) -> None:
        self._check()
        self._advance()
        self._pending.append(op)

    def exchange_declared(self, record: ExchangeRecord) -> None:
        self._append((XDECL, record))

    def exchange_deleted(self, name: str) -> None:
        self._append((XDEL, name))

    def queue_declared(self, record: QueueRecord) -> None:
        self._append((QDECL, record))

    def queue_deleted(self, name: str) -> None:
        self._check()
        self._advance()
        self._forget_pending(name)
        self._delivered.pop(name, None)
        self._removed.pop(name, None)
        self._pending.append((QDEL, name))

    def queue_purged(self, queue: str) -> None:
        self._check()
        self._advance()
        self._forget_pending(queue)
        self._removed.pop(queue, None)
        self._pending.append((PURGE, queue))

    def binding_added(self, record: BindingRecord) -> None:
        self._append((BIND, record))

    def binding_removed(self, record: BindingRecord) -> None:
        self._append((UNBIND, record))

    def message_published(
        self,
        message_id: int,
        queues: Sequence[str],
        exchange: str,
        routing_key: str,
        header: bytes,
        body: bytes,
    ) -> int:
        if not self._ok:
            self._check()
        ticket = self._ticket
        if ticket == self._flushed_ticket and self.on_pending is not None:
            self.on_pending()
        self._ticket = ticket = ticket + 1
        if queues:
            op = [
                PUB,
                message_id,
                dict.fromkeys(queues, False),
                exchange,
                routing_key,
                header,
                body,
            ]
            self._pending.append(op)
            self._new_msgs[message_id] = op
        return ticket

    def message_delivered(self, queue: str, message_id: int) -> None:
        """Deliveries take the lowest id of a queue first, so one watermark per queue and
        flush says it all: every message of the queue with an id <= it was delivered."""
        if not self._ok:
            self._check()
        ticket = self._ticket
        if ticket == self._flushed_ticket and self.on_pending is not None:
            self.on_pending()
        self._ticket = ticket + 1
        delivered = self._delivered
        if message_id > delivered.get(queue, 0):
            delivered[queue] = message_id

    def message_removed(self, queue: str, message_id: int) -> None:
        if not self._ok:
            self._check()
        ticket = self._ticket
        if ticket == self._flushed_ticket and self.on_pending is not None:
            self.on_pending()
        self._ticket = ticket + 1
        op = self._new_msgs.get(message_id)
        if op is not None:  # not even handed over yet
            queues = op[2]
            if queues.pop(queue, None) is not None and not queues:
                del self._new_msgs[message_id]
            return
        # only the writer empties it: if empty, or if the id is older than all in it, the
        # writer has the publish
        if self._pending_msgs and message_id >= self._pending_min:
            with self._lock:
                pending = self._pending_msgs
                op = pending.get(message_id)
                if op is not None:
                    queues = op[2]
                    if queues.pop(queue, None) is not None and not queues:
                        del pending[message_id]
                    return
        ids = self._removed.get(queue)
        if ids is None:
            self._removed[queue] = [message_id]
        else:
            ids.append(message_id)

    def _forget_pending(self, queue: str) -> None:
        for messages in (self._new_msgs, self._pending_msgs):
            if not messages:
                continue
            with self._lock:
                for mid, op in list(messages.items()):
                    queues = op[2]
                    if queues.pop(queue, None) is not None and not queues:
                        del messages[mid]

    @property
    def ticket(self) -> int:
        """The ticket of the latest call: `on_durable(t)` with t >= it covers that call."""
        return self._ticket

    def _advance(self) -> None:
        if self._ticket == self._flushed_ticket and self.on_pending is not None:
            self.on_pending()
        self._ticket += 1

    def flush(self) -> None:
        if not self._ok:
            if self._closed and self._failed is None:
                return
            self._check()
        if self._ticket == self._flushed_ticket:
            return
        batch = self._pending
        if self._removed:  # after the rest of the batch: they name older publishes only
            for queue, ids in self._removed.items():
                batch.append((REMOVE, queue, ids))
            self._removed = {}
        if self._delivered:
            for queue, mid in self._delivered.items():
                batch.append((DELIVER, queue, mid))
            self._delivered = {}
        messages = self._new_msgs
        self._pending = []
        self._new_msgs = {}
        self._flushed_ticket = self._ticket
        with self._cond:
            self._handoff.append(batch)
            if messages:
                if self._pending_msgs:
                    self._pending_msgs.update(messages)
                else:
                    self._pending_min = min(messages)
                    self._pending_msgs = messages
            self._handoff_ticket = self._flushed_ticket
            self._cond.notify()

    @property
    def disk_full(self) -> bool:
        """The last write hit ENOSPC; it is retried every second."""
        return self._head.disk_full

    def fail_writes(self, seconds: float) -> None:
        """Test controls: file writes fail with ENOSPC for `seconds` from now, as if the disk
        were full (pending records are kept and retried every second, as for a real one)."""
        self._head.fail_until = time.monotonic() + seconds

    def close(self) -> None:
        """Write what was handed over, sync, stop the writer; bounded by ``CLOSE_TIMEOUT``."""
        if self._closed:
            return
        thread = self._thread
        if thread is not None:
            if self._failed is None:
                self.flush()
            with self._cond:
                self._closing = True
                self._cond.notify()
            thread.join(CLOSE_TIMEOUT)
        self._closed = True
        self._ok = False
        self.reader.close()
        if thread is not None and thread.is_alive():
            # stuck in the kernel (a hung disk): leave its files to it, as a crash would
            log.error("store writer did not stop within %.0fs; leaving it behind", CLOSE_TIMEOUT)
            return
        self._head.close_files()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def latencies(self) -> dict[str, Histogram]:
        """Histograms of the writer's batches and fdatasyncs (seconds), for metrics."""
        return {"write": self._head.write_seconds, "fsync": self._head.fsync_seconds}

    def stats(self) -> dict[str, int | bool]:
        head = self._head
        reclaim = self._reclaim
        return {
            "live_messages": len(self._index.loc),
            "segments": len(self._index.segs),
            "bytes_on_disk": head.disk_bytes,
            "corrupt_records": self._corrupt + reclaim.corrupt,
            "truncated_bytes": self._truncated,
            "quarantined_segments": len(self._quarantined),
            "batches": self._batches,
            "fsyncs": head.fsyncs,
            "compactions": reclaim.compactions,
            "segments_deleted": reclaim.deleted,
            "head_rotations": reclaim.head_rotations,
            "appended_bytes": head.appended,
            "rewritten_bytes": reclaim.rewritten,
            "rewrite_allowance": reclaim.allowance,
            "durable_ticket": self._durable_ticket,
            "disk_full": head.disk_full,
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
            self._ok = False
        hook = self.on_fatal
        if hook is not None:
            try:
                hook(exc)
            except Exception:
                log.exception("on_fatal hook raised")

    def _loop(self) -> None:
        head = self._head
        reclaim = self._reclaim
        while True:
            chunks: list[list[Any]] = []
            with self._cond:
                if head.pending:  # stuck on a full disk
                    if not self._closing:
                        self._cond.wait(1.0)
                    closing = self._closing
                else:
                    while not self._handoff and not self._closing:
                        due = self._wake_in()
                        if due is not None and due <= 0:
                            break
                        self._cond.wait(due)
                    chunks, self._handoff = self._handoff, []
                    ticket = self._handoff_ticket
                    if self._pending_msgs:
                        self._pending_msgs = {}
                    closing = self._closing and not chunks
            if head.pending:
                reclaim.reclaim(deleting_only=True)
                if head.run_writes():
                    head.disk_full = False
                    log.warning("disk space available again; store writes resumed")
                    self._after_writes(self._stuck_ticket)
                    self._idle_at = time.monotonic() + IDLE_RECLAIM_DELAY
                elif closing:
                    log.error("closing with a full disk: unwritten records are lost")
                    return
                continue
            if chunks:
                head.apply_all(chunks)
                if head.run_writes():
                    self._after_writes(ticket)
                else:
                    self._stuck_ticket = ticket
                self._idle_at = time.monotonic() + IDLE_RECLAIM_DELAY
                continue
            due = self._sync_due_in()
            if head.dirty and (closing or (due is not None and due <= 0)):
                head.sync()
            if closing:
                return
            if self._idle_at is not None and time.monotonic() >= self._idle_at:
                self._idle_at = None  # nothing came for a while: retire a mostly-dead head
                reclaim.reclaim(idle=True)
                self._index.shrink()

    def _wake_in(self) -> float | None:
        """Seconds until the idle writer has something to do by itself (None: nothing)."""
        due = self._sync_due_in()
        if self._idle_at is not None:
            idle = self._idle_at - time.monotonic()
            if due is None or idle < due:
                due = idle
        return due

    def _sync_due_in(self) -> float | None:
        if self.fsync != "interval" or not self._head.dirty:
            return None
        return self._head.last_sync + self._interval - time.monotonic()

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

    def _after_writes(self, ticket: int) -> None:
        head = self._head
        if head.wrote:
            self._batches += 1
            if self.fsync == "always":
                head.sync()
            elif self.fsync == "interval":
                if time.monotonic() - head.last_sync >= self._interval:
                    head.sync()
        self._durable(ticket)
        self._reclaim.reclaim()

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
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(self._lock_fd, 32, 0).decode("ascii", "replace").strip()
            os.close(self._lock_fd)
            self._lock_fd = -1
            pid = int(holder) if holder.isdigit() else None
            who = "another process" if pid is None else f"process {pid}"
            raise StoreLocked(f"{self.directory} is in use by {who}", pid) from exc
        os.ftruncate(self._lock_fd, 0)  # the holder's pid, for the message above
        os.pwrite(self._lock_fd, f"{os.getpid()}\n".encode(), 0)
        index = self._index
        head = self._head
        found = replay(self.directory, index, self.recover_bodies)
        self._corrupt = found.corrupt
        self._truncated = found.truncated
        self._quarantined = found.quarantined
        head.next_number = found.next_number
        head.disk_bytes = sum(s.written for s in index.segs.values())
        self._reclaim.recovered(head.disk_bytes)
        # a fresh head that starts with a complete topology snapshot
        head.rotate()
        if not head.run_writes():
            raise StoreFailed(f"no space left in {self.directory} to start a segment")
        head.last_sync = time.monotonic()  # the new head was created synced
        self._reclaim.reclaim(deleting_only=True)
        self._idle_at = time.monotonic() + IDLE_RECLAIM_DELAY  # the old head may be all dead
        self._thread = threading.Thread(target=self._run, name="amqpd-store-writer", daemon=True)
        self._thread.start()
        seconds = time.perf_counter() - started
        live = sum(len(v) for v in found.messages.values())
        log.info(
            "store recovered %d messages in %d queues from %d segments in %.3fs",
            live,
            len(found.messages),
            found.files,
            seconds,
        )
        return Recovered(
            exchanges=list(index.exchanges.values()),
            queues=list(index.queues.values()),
            bindings=list(index.bindings.values()),
            messages=found.messages,
            next_message_id=found.next_id,
            corrupt_records=found.corrupt,
            truncated_bytes=found.truncated,
            seconds=seconds,
        )
