"""The in-memory index of the log: topology, live messages and per-segment accounting.

Contract: a ``LogIndex`` is plain data with a few bookkeeping methods and no I/O. It holds what
the log on disk currently means: exchanges, queues, bindings; for every live message its
location and the queues holding it, each with its delivered flag; per queue the delivered
watermark (every message of the queue with an id <= it has been delivered, whatever its own
flag says); and the segments, oldest first, each with its live count and live bytes, kept exact
as messages are registered and dropped. Its attributes are public: the segment writer, the
reclaimer and the replay function read and update them (all on one thread at a time).
A message location is packed into one int: ``segment << 64 | offset << 32 | size``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from amqpd.store.idmaps import FlagMap, LocationMap
from amqpd.store.records import BindingRecord, ExchangeRecord, QueueRecord

OFF_MASK = 0xFFFFFFFF
MISSING: Any = object()


class Segment:
    """One segment file as the index sees it."""

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
        self.fd = -1  # the write fd while it is (or was last) the head
        self.pinned = False  # compacted: delete only once its copies are synced


class LogIndex:
    """Topology, live messages and segment accounting; see the module docstring."""

    def __init__(self) -> None:
        self.exchanges: dict[str, ExchangeRecord] = {}
        self.queues: dict[str, QueueRecord] = {}
        self.bindings: dict[tuple[str, str, str, str, bytes], BindingRecord] = {}
        self.loc = LocationMap()  # message id -> segment << 64 | offset << 32 | size
        self.refs: dict[int, int] = {}  # message id -> number of queues, only when > 1
        self.qmsgs: dict[str, FlagMap] = {}  # queue -> {message id: delivered}
        self.qdeliv: dict[str, int] = {}  # queue -> delivered watermark (ids <= it delivered)
        self.segs: dict[int, Segment] = {}  # oldest first
        self.max_id = 0
        self._peak = 0  # most live messages since the last shrink

    def shrink(self) -> None:
        """Give back the memory of the refs dict once it emptied: a dict keeps its largest
        table until it is rebuilt (the id maps free their blocks as they empty)."""
        live = len(self.refs)
        peak = self._peak = max(self._peak, live)
        if peak < 4096 or live > peak // 4:
            return
        self.refs = dict(self.refs)
        self._peak = live

    def live_bytes(self) -> int:
        n = 0
        for seg in self.segs.values():
            n += seg.live_bytes
        return n

    def register(
        self, mid: int, queues: dict[str, bool], seg: Segment, offset: int, size: int
    ) -> None:
        qmsgs = self.qmsgs
        for name, delivered in queues.items():
            held = qmsgs.get(name)
            if held is None:
                held = qmsgs[name] = FlagMap()
            held[mid] = delivered
        if len(queues) > 1:
            self.refs[mid] = len(queues)
        self.loc[mid] = (seg.number << 64) | (offset << 32) | size
        seg.live_count += 1
        seg.live_bytes += size

    def move(self, mid: int, seg: Segment, offset: int, size: int) -> None:
        """A live message now lives at ``seg``/``offset`` (compaction re-appended it)."""
        packed = self.loc[mid]
        old = self.segs.get(packed >> 64)
        if old is not None:
            old.live_count -= 1
            old.live_bytes -= packed & OFF_MASK
        self.loc[mid] = (seg.number << 64) | (offset << 32) | size
        seg.live_count += 1
        seg.live_bytes += size

    def unref(self, mid: int) -> None:
        """One queue less holds the message; account for it when none does any more."""
        refs = self.refs.get(mid)
        if refs is not None:
            if refs > 2:
                self.refs[mid] = refs - 1
            else:
                del self.refs[mid]
            return
        packed = self.loc.pop(mid, None)
        if packed is None:
            return
        seg = self.segs.get(packed >> 64)
        if seg is not None:
            seg.live_count -= 1
            seg.live_bytes -= packed & OFF_MASK

    def forget(self, mid: int) -> None:
        """Drop a live message from every queue at once (it can no longer be read)."""
        packed = self.loc.pop(mid, None)
        self.refs.pop(mid, None)
        for held in self.qmsgs.values():
            held.pop(mid, None)
        if packed is not None:
            seg = self.segs.get(packed >> 64)
            if seg is not None:
                seg.live_count -= 1
                seg.live_bytes -= packed & OFF_MASK

    def drop(self, queue: str, mid: int) -> bool:
        held = self.qmsgs.get(queue)
        if held is None or held.pop(mid, MISSING) is MISSING:
            return False
        self.unref(mid)
        return True

    def purge(self, queue: str) -> None:
        held = self.qmsgs.get(queue)
        if held:
            for mid in held:
                self.unref(mid)
            held.clear()

    def is_delivered(self, queue: str, mid: int) -> bool:
        """The delivered flag of a live message in a queue (its own flag or the watermark)."""
        held = self.qmsgs.get(queue)
        return bool(held and held.get(mid)) or mid <= self.qdeliv.get(queue, 0)

    def delete_queue(self, name: str) -> bool:
        known = self.queues.pop(name, None) is not None
        self.qdeliv.pop(name, None)
        held = self.qmsgs.pop(name, None)
        if held:
            known = True
            for mid in held:
                self.unref(mid)
        for key in [k for k in self.bindings if k[2] == name and k[1] == "queue"]:
            del self.bindings[key]
        return known

    def delete_exchange(self, name: str) -> bool:
        known = self.exchanges.pop(name, None) is not None
        for key in [
            k for k in self.bindings if k[0] == name or (k[2] == name and k[1] == "exchange")
        ]:
            del self.bindings[key]
        return known
