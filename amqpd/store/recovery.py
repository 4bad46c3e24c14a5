"""Recovery: replaying the segment files into the index and into the recovered messages.

Contract: ``_replay_segments`` reads every segment oldest first and applies its records to the
index, so that afterwards it holds exactly the topology and live messages the log describes.
It never raises on bad data: a segment of a newer format version is left untouched, corrupt
records are skipped and counted, a torn tail of the last segment is truncated on disk (and
counted), messages of queues absent from the topology are dropped. It returns the live
messages per queue, in message-id order, and the next message id to hand out.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from amqpd.store import records as R
from amqpd.store.index import OFF_MASK, Segment
from amqpd.store.reclaim import LogReclaim
from amqpd.store.records import FILE_HEADER_SIZE, RECORD_HEAD_SIZE, RecoveredMessage
from amqpd.store.segments import ScanResult, header_ok, list_segments, scan

log = logging.getLogger("amqpd.store")


class LogRecovery(LogReclaim):
    """The reclaiming log plus the replay of its files at start."""

    def __init__(self, directory: Path, segment_bytes: int, compact_ratio: float) -> None:
        super().__init__(directory, segment_bytes, compact_ratio)
        self._truncated = 0

    def _replay_segments(self) -> tuple[dict[str, list[RecoveredMessage]], int, int]:
        """Replay all segment files; returns (messages by queue, next message id, files found)."""
        found = list_segments(self.directory)
        datas: dict[int, bytes] = {}
        watermark = 0
        for index, (number, path) in enumerate(found):
            self._next_number = max(self._next_number, number + 1)
            last = index == len(found) - 1
            data = path.read_bytes()
            header = header_ok(data)
            if header is not None and header[0] > R.VERSION:
                log.error(
                    "%s has format version %d (this amqpd reads %d); left untouched",
                    path.name,
                    header[0],
                    R.VERSION,
                )
                self._corrupt += 1
                continue
            if header is None:
                if last and len(data) <= FILE_HEADER_SIZE:
                    log.warning("%s: torn segment header, removing %d bytes", path.name, len(data))
                    self._truncated += len(data)
                    path.unlink()
                    continue
                log.warning("%s: damaged segment header; reading its records anyway", path.name)
                self._corrupt += 1
            seg = Segment(number, path, len(data))
            self._segs[number] = seg
            datas[number] = data
            watermark = max(watermark, self._replay(seg, data, datas, last))
        self._drop_orphans()
        messages = self._recovered_messages(datas)
        datas.clear()
        next_id = max(self._max_id + 1, watermark, 1)
        self._max_id = next_id - 1
        self._disk_bytes = sum(s.written for s in self._segs.values())
        return messages, next_id, len(found)

    def _replay(self, seg: Segment, data: bytes, datas: dict[int, bytes], last: bool) -> int:
        """Apply one segment's records to the state; returns the highest watermark seen."""
        from struct import Struct

        u64u16 = Struct("<QH").unpack_from
        u16 = Struct("<H").unpack_from
        u8u16 = Struct("<BH").unpack_from
        names: dict[bytes, str] = {}
        loc = self._loc
        refs = self._refs
        qmsgs = self._qmsgs
        qdeliv = self._qdeliv
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
                    if rtype == DELIVERED:
                        # a watermark: every message of the queue with an id <= mid was
                        # delivered (older logs have one such record per message)
                        if held is not None and mid > qdeliv.get(name, 0):
                            qdeliv[name] = mid
                        continue
                    if held is None or mid not in held:
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
                        live_bytes -= packed & OFF_MASK
                    else:
                        other = self._segs[packed >> 64]
                        other.live_count -= 1
                        other.live_bytes -= packed & OFF_MASK
                else:
                    seg.live_count, seg.live_bytes = live_count, live_bytes
                    try:
                        watermark = max(watermark, self._replay_other(rtype, data, p, end))
                    finally:
                        live_count, live_bytes = seg.live_count, seg.live_bytes
            except Exception as exc:  # behind a good CRC only a bug gets here; never fatal
                log.warning("%s: undecodable record at %d skipped: %r", seg.path.name, start, exc)
                self._corrupt += 1
        seg.live_count, seg.live_bytes = live_count, live_bytes
        self._max_id = max_id
        self._corrupt += result.corrupt
        if result.corrupt:
            log.warning("%s: skipped %d corrupt record(s)", seg.path.name, result.corrupt)
        if result.tail_start >= 0:
            cut = len(data) - result.tail_start
            if last:
                log.warning(
                    "%s: torn or corrupt tail, truncating %d bytes at offset %d",
                    seg.path.name,
                    cut,
                    result.tail_start,
                )
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
        number, offset = packed >> 64, (packed >> 32) & OFF_MASK
        _, qlist, _ = R.decode_publish_queues(datas[number], offset + RECORD_HEAD_SIZE)
        for name, _flag in qlist:
            held = self._qmsgs.get(name)
            if held is not None:
                held.pop(mid, None)
        self._refs.pop(mid, None)
        seg = self._segs[number]
        seg.live_count -= 1
        seg.live_bytes -= packed & OFF_MASK

    def _drop_orphans(self) -> None:
        """Messages of queues absent from the recovered topology cannot be delivered."""
        for name in [n for n in self._qmsgs if n not in self._queues]:
            held = self._qmsgs.pop(name)
            self._qdeliv.pop(name, None)
            if held:
                log.warning(
                    "dropping %d recovered messages of undeclared queue %r", len(held), name
                )
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
            watermark = self._qdeliv.get(qname, 0)
            for mid in sorted(held):
                content = shared.get(mid)
                if content is None:
                    packed = loc[mid]
                    data = datas[packed >> 64]
                    start = (packed >> 32) & OFF_MASK
                    end = start + (packed & OFF_MASK)
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
                lst.append(RecoveredMessage(mid, *content, held[mid] or mid <= watermark))
            if lst:
                out[qname] = lst
        return out
