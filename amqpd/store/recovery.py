"""Recovery: replaying the segment files into the index and into the recovered messages.

Contract: ``replay(directory, index)`` reads every segment oldest first and applies its records
to the (empty) index, so that afterwards it holds exactly the topology and live messages the
log describes. It never raises on bad data: a segment of a newer format version is left
untouched, corrupt records are skipped and counted, a torn tail of the last segment is
truncated on disk (and counted). Messages of a queue absent from the recovered topology (its
declarations were all damaged: a deleted queue leaves no messages behind) cannot be delivered:
every segment holding one is first hard-linked into ``quarantine/`` (logged), so deleting it
later loses nothing, then they are dropped. Returns the live messages per queue, in message-id
order, the next message id to hand out and what it found. Without bodies, a queue's messages
come back compact (``RecoveredIds``: ids, delivered flags and body sizes in arrays, ~13 bytes
a message), so recovering millions of messages builds no object per message.
"""

from __future__ import annotations

import logging
import mmap
import os
import shutil
from array import array
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from struct import Struct
from typing import Any

from amqpd.store import records as R
from amqpd.store.idmaps import FlagMap
from amqpd.store.index import OFF_MASK, LogIndex, Segment
from amqpd.store.records import (
    FILE_HEADER_SIZE,
    RECORD_HEAD_SIZE,
    RecoveredIds,
    RecoveredMessage,
)
from amqpd.store.segments import ScanResult, fsync_directory, header_ok, list_segments, scan

log = logging.getLogger("amqpd.store")

QUARANTINE = "quarantine"
_U64_U16 = Struct("<QH").unpack_from
_U16 = Struct("<H").unpack_from
_U32 = Struct("<I").unpack_from
_U8_U16 = Struct("<BH").unpack_from


@dataclass
class Replayed:
    """What ``replay`` found besides the index it filled."""

    messages: dict[str, list[RecoveredMessage] | RecoveredIds] = field(default_factory=dict)
    next_id: int = 1
    next_number: int = 1  # for the next segment file
    files: int = 0
    corrupt: int = 0  # damaged records (or runs of them) skipped
    truncated: int = 0  # bytes cut off a torn tail
    orphaned: int = 0  # messages of queues that could not be recovered
    quarantined: list[Path] = field(default_factory=list)


def _map(path: Path) -> Any:
    """The file's bytes, mapped (pages of a mapped file are cache, not the process's memory)."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return b""
        return mmap.mmap(handle.fileno(), 0, prot=mmap.PROT_READ)


def replay(directory: Path, index: LogIndex, bodies: bool = True) -> Replayed:
    """Replay all segment files of ``directory`` into ``index``; see the module docstring.
    With ``bodies=False`` recovered messages carry no body (None): read it back later."""
    found = list_segments(directory)
    out = Replayed(files=len(found))
    datas: dict[int, Any] = {}
    watermark = 0
    for position, (number, path) in enumerate(found):
        out.next_number = max(out.next_number, number + 1)
        last = position == len(found) - 1
        data = _map(path)
        header = header_ok(data)
        if header is not None and header[0] > R.VERSION:
            log.error(
                "%s has format version %d (this amqpd reads %d); left untouched",
                path.name,
                header[0],
                R.VERSION,
            )
            out.corrupt += 1
            continue
        if header is None:
            if last and len(data) <= FILE_HEADER_SIZE:
                log.warning("%s: torn segment header, removing %d bytes", path.name, len(data))
                out.truncated += len(data)
                path.unlink()
                continue
            log.warning("%s: damaged segment header; reading its records anyway", path.name)
            out.corrupt += 1
        seg = Segment(number, path, len(data))
        index.segs[number] = seg
        datas[number] = data
        watermark = max(watermark, _replay_segment(index, seg, data, datas, last, out))
    _quarantine_orphans(directory, index, out)
    out.messages = (
        _recovered_messages(index, datas) if bodies else _recovered_ids(index, datas)  # type: ignore[assignment]
    )
    datas.clear()
    out.next_id = max(index.max_id + 1, watermark, 1)
    index.max_id = out.next_id - 1
    return out


def _replay_segment(
    index: LogIndex,
    seg: Segment,
    data: bytes,
    datas: dict[int, bytes],
    last: bool,
    out: Replayed,
) -> int:
    """Apply one segment's records to the index; returns the highest watermark seen."""
    names: dict[bytes, str] = {}
    loc = index.loc
    refs = index.refs
    qmsgs = index.qmsgs
    qdeliv = index.qdeliv
    segs = index.segs
    number = seg.number
    segbits = number << 64
    max_id = index.max_id
    watermark = 0
    live_count = 0
    live_bytes = 0
    result = ScanResult()
    PUBLISH, REMOVED, DELIVERED = R.PUBLISH, R.REMOVED, R.DELIVERED
    for rtype, p, end, start in scan(data, result):
        try:
            if rtype == PUBLISH:
                mid, n = _U64_U16(data, p)
                q = p + 10 + n
                (n,) = _U16(data, q)
                q += 2 + n
                (count,) = _U16(data, q)
                q += 2
                holders = []
                for _ in range(count):
                    flag, n = _U8_U16(data, q)
                    q += 3
                    raw = data[q : q + n]
                    q += n
                    name = names.get(raw)
                    if name is None:
                        name = names[raw] = raw.decode()
                    holders.append((name, flag == 1))
                if mid > max_id:
                    max_id = mid
                if loc.get(mid) is not None:  # a copy re-appended by compaction
                    seg.live_count, seg.live_bytes = live_count, live_bytes
                    _forget_copy(index, mid, datas)
                    live_count, live_bytes = seg.live_count, seg.live_bytes
                for name, delivered in holders:
                    held = qmsgs.get(name)
                    if held is None:
                        held = qmsgs[name] = FlagMap()
                    held[mid] = delivered
                if count:
                    if count > 1:
                        refs[mid] = count
                    loc[mid] = segbits | (start << 32) | (end - start)
                    live_count += 1
                    live_bytes += end - start
            elif rtype == REMOVED or rtype == DELIVERED:
                mid, n = _U64_U16(data, p)
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
                if packed >> 64 == number:
                    live_count -= 1
                    live_bytes -= packed & OFF_MASK
                else:
                    other = segs[packed >> 64]
                    other.live_count -= 1
                    other.live_bytes -= packed & OFF_MASK
            else:
                seg.live_count, seg.live_bytes = live_count, live_bytes
                try:
                    watermark = max(watermark, _replay_other(index, rtype, data, p, end))
                finally:
                    live_count, live_bytes = seg.live_count, seg.live_bytes
        except Exception as exc:  # behind a good CRC only a bug gets here; never fatal
            log.warning("%s: undecodable record at %d skipped: %r", seg.path.name, start, exc)
            out.corrupt += 1
    seg.live_count, seg.live_bytes = live_count, live_bytes
    index.max_id = max_id
    out.corrupt += result.corrupt
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
            out.truncated += cut
            seg.size = seg.written = result.tail_start
        else:
            log.warning("%s: %d damaged bytes at its end skipped", seg.path.name, cut)
            out.corrupt += 1
    return watermark


def _replay_other(index: LogIndex, rtype: int, data: bytes, p: int, end: int) -> int:
    """Apply a topology, purge or watermark record; returns a watermark or 0."""
    if rtype == R.EXCHANGE:
        x = R.decode_exchange(data, p, end)
        index.exchanges[x.name] = x
    elif rtype == R.QUEUE:
        q = R.decode_queue(data, p, end)
        index.queues[q.name] = q
        index.qmsgs.setdefault(q.name, FlagMap())
    elif rtype == R.BIND:
        b = R.decode_binding(data, p, end)
        index.bindings[R.binding_key(b)] = b
    elif rtype == R.UNBIND:
        index.bindings.pop(R.binding_key(R.decode_binding(data, p, end)), None)
    elif rtype == R.EXCHANGE_DELETE:
        index.delete_exchange(R.decode_name(data, p, end))
    elif rtype == R.QUEUE_DELETE:
        index.delete_queue(R.decode_name(data, p, end))
    elif rtype == R.PURGE:
        index.purge(R.decode_name(data, p, end))
    elif rtype == R.WATERMARK:
        return R.decode_watermark(data, p, end)
    else:
        raise ValueError(f"unknown record type {rtype}")
    return 0


def _forget_copy(index: LogIndex, mid: int, datas: dict[int, bytes]) -> None:
    """A message is re-appended (compaction): drop the state of its older copy."""
    packed = index.loc.pop(mid)
    number, offset = packed >> 64, (packed >> 32) & OFF_MASK
    _, qlist, _ = R.decode_publish_queues(datas[number], offset + RECORD_HEAD_SIZE)
    for name, _flag in qlist:
        held = index.qmsgs.get(name)
        if held is not None:
            held.pop(mid, None)
    index.refs.pop(mid, None)
    seg = index.segs[number]
    seg.live_count -= 1
    seg.live_bytes -= packed & OFF_MASK


def _quarantine_orphans(directory: Path, index: LogIndex, out: Replayed) -> None:
    """Messages of queues absent from the recovered topology: keep their segments aside."""
    orphans = [n for n in index.qmsgs if n not in index.queues]
    numbers: set[int] = set()
    for name in orphans:
        for mid in index.qmsgs[name]:
            packed = index.loc.get(mid)
            if packed is not None:
                numbers.add(packed >> 64)
    if numbers:
        aside = directory / QUARANTINE
        aside.mkdir(mode=0o700, exist_ok=True)
        for number in sorted(numbers):
            seg = index.segs[number]
            target = aside / seg.path.name
            if not target.exists():
                try:
                    os.link(seg.path, target)
                except OSError:
                    shutil.copy2(seg.path, target)
            out.quarantined.append(target)
            log.error(
                "%s holds messages of a queue whose declaration is damaged; kept as %s",
                seg.path.name,
                target,
            )
        fsync_directory(aside)
    for name in orphans:
        held = index.qmsgs.pop(name)
        index.qdeliv.pop(name, None)
        if held:
            log.warning("dropping %d recovered messages of undeclared queue %r", len(held), name)
            out.orphaned += len(held)
            for mid in held:
                index.unref(mid)


def _sorted_ids(held: FlagMap) -> array[int]:
    """The ids of a queue's map in increasing order (a map iterates by block: nearly so)."""
    ids = array("Q", held)
    if any(a > b for a, b in zip(ids, islice(ids, 1, None), strict=False)):
        ids = array("Q", sorted(ids))
    return ids


def _recovered_ids(index: LogIndex, datas: dict[int, Any]) -> dict[str, RecoveredIds]:
    """Each queue's live messages as ids, delivered flags and body sizes (no content)."""
    loc = index.loc
    out: dict[str, RecoveredIds] = {}
    for qname, held in index.qmsgs.items():
        if not held:
            continue
        watermark = index.qdeliv.get(qname, 0)
        ids = _sorted_ids(held)
        delivered = bytearray(len(ids))
        sizes = array("I", bytes(4 * len(ids)))
        get = held.get
        for i, mid in enumerate(ids):
            if mid <= watermark or get(mid):
                delivered[i] = 1
            packed = loc[mid]
            data = datas[packed >> 64]
            start = (packed >> 32) & OFF_MASK
            p = start + RECORD_HEAD_SIZE + 8
            p += 2 + _U16(data, p)[0]  # exchange
            p += 2 + _U16(data, p)[0]  # routing key
            (count,) = _U16(data, p)
            p += 2
            for _ in range(count):
                p += 3 + _U16(data, p + 1)[0]
            sizes[i] = start + (packed & OFF_MASK) - p - 4 - _U32(data, p)[0]
        out[qname] = RecoveredIds(ids, delivered, sizes)
    return out


def _recovered_messages(
    index: LogIndex, datas: dict[int, Any], bodies: bool = True
) -> dict[str, list[RecoveredMessage] | RecoveredIds]:
    strings: dict[bytes, str] = {}
    shared: dict[int, tuple[str, str, bytes, bytes | None]] = {}
    loc = index.loc
    refs = index.refs
    out: dict[str, list[RecoveredMessage] | RecoveredIds] = {}
    for qname, held in index.qmsgs.items():
        lst: list[RecoveredMessage] = []
        watermark = index.qdeliv.get(qname, 0)
        for mid in sorted(held):
            content = shared.get(mid)
            if content is None:
                packed = loc[mid]
                data = datas[packed >> 64]
                start = (packed >> 32) & OFF_MASK
                end = start + (packed & OFF_MASK)
                p = start + RECORD_HEAD_SIZE + 8
                (n,) = _U16(data, p)
                raw = data[p + 2 : p + 2 + n]
                exchange = strings.get(raw)
                if exchange is None:
                    exchange = strings[raw] = raw.decode()
                p += 2 + n
                (n,) = _U16(data, p)
                raw = data[p + 2 : p + 2 + n]
                routing_key = strings.get(raw)
                if routing_key is None:
                    routing_key = strings[raw] = raw.decode()
                p += 2 + n
                (count,) = _U16(data, p)
                p += 2
                for _ in range(count):
                    (n,) = _U16(data, p + 1)
                    p += 3 + n
                (n,) = _U32(data, p)
                p += 4
                content = (
                    exchange,
                    routing_key,
                    data[p : p + n],
                    data[p + n : end] if bodies else None,
                )
                if mid in refs:
                    shared[mid] = content
            lst.append(RecoveredMessage(mid, *content, held[mid] or mid <= watermark))
        if lst:
            out[qname] = lst
    return out
