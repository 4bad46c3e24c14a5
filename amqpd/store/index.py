"""The writer's in-memory index of the log: topology, live messages and segment accounting.

Contract: ``LogIndex`` holds what the log on disk currently means (exchanges, queues,
bindings; for every live message its location and the queues holding it, with its delivered
flag; per queue the delivered watermark: every message of the queue with an id <= it has been
delivered, whatever its own flag says) and keeps each
segment's live count and live bytes exact as messages are registered and dropped. It does no
I/O and is touched only by the writer thread (or by recovery, before that thread starts).
A message location is packed into one int: ``segment << 64 | offset << 32 | size``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from amqpd.store.records import BindingRecord, ExchangeRecord, QueueRecord

OFF_MASK = 0xFFFFFFFF
_MISSING: Any = object()


class Segment:
    __slots__ = (
        "number",
        "path",
        "size",
        "written",
        "base",
        "live_count",
        "live_bytes",
        "fd",
        "pinned",
    )

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


class LogIndex:
    """Topology and live-message bookkeeping shared by the writer, reclaim and recovery."""

    def __init__(self) -> None:
        self._exchanges: dict[str, ExchangeRecord] = {}
        self._queues: dict[str, QueueRecord] = {}
        self._bindings: dict[tuple[str, str, str, str, bytes], BindingRecord] = {}
        self._loc: dict[int, int] = {}  # message id -> segment << 64 | offset << 32 | size
        self._refs: dict[int, int] = {}  # message id -> number of queues, only when > 1
        self._qmsgs: dict[str, dict[int, bool]] = {}  # queue -> {message id: delivered}
        self._qdeliv: dict[str, int] = {}  # queue -> delivered watermark (ids <= it delivered)
        self._segs: dict[int, Segment] = {}  # oldest first
        self._max_id = 0
        self._corrupt = 0
        self._skipped_messages = 0

    def _register(
        self, mid: int, queues: dict[str, bool], seg: Segment, offset: int, size: int
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
            seg.live_bytes -= packed & OFF_MASK

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

    def _is_delivered(self, queue: str, mid: int) -> bool:
        """The delivered flag of a live message in a queue (its own flag or the watermark)."""
        held = self._qmsgs.get(queue)
        return bool(held and held.get(mid)) or mid <= self._qdeliv.get(queue, 0)

    def _delete_queue(self, name: str) -> bool:
        known = self._queues.pop(name, None) is not None
        self._qdeliv.pop(name, None)
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
            k for k in self._bindings if k[0] == name or (k[2] == name and k[1] == "exchange")
        ]:
            del self._bindings[key]
        return known
