"""The consuming side of `bench run`: a delivery parser specialised for stamped messages.

`Consumer.data_received` recognises the common case -- a basic.deliver method frame, its
content header and one body frame all complete in the buffer -- with three struct reads,
and falls back to the generic frame loop of `BenchClient` for anything else. Per message
it does only O(1) work on plain ints:
- latency: producers stamp a whole batch with one send time, so equal stamps are counted
  as a run and added to the histogram once per run;
- loss/duplicates: stamps (producer << 48 | seq) arriving in order extend a run; each
  finished run is kept as a [start, end) pair and `runs_summary` merges them at the end.
Acks (manual mode) are collected per received chunk and written with one call.
"""

from __future__ import annotations

import struct
import time
from array import array

from .client import BenchClient
from .settings import RunConfig
from .stats import Histogram
from .wire import FRAME_END_BYTE, basic_ack_frame

_DELIVER_HEAD = struct.Struct(">BHIIB")  # frame type, channel, size, class+method, tag len
_U64 = struct.Struct(">Q")
_HEADER = struct.Struct(">BHIHHQ")  # frame type, channel, size, class, weight, body size
_BODY = struct.Struct(">BHIQQ")  # frame type, channel, size, stamp key, stamp time
_DELIVER_CM = (60 << 16) | 60


def _bucket(latency_ns: int) -> int:
    us = latency_ns // 1000
    if us >= 1024:
        shift = us.bit_length() - 10
        return (us >> shift) << shift
    return us if us > 0 else 0


class Consumer(BenchClient):
    """Counts deliveries on one queue; see the module docstring for the bookkeeping."""

    def __init__(self, queue_index: int, cfg: RunConfig) -> None:
        super().__init__()
        self.queue_index = queue_index
        self.auto_ack = cfg.auto_ack
        self.ack_every = cfg.ack_every
        self.received = 0
        self.last_receive_ns = 0
        self.hist: Histogram = {}
        self.runs: array[int] = array("q")
        self._run_start = -1
        self._next_key = -1
        self._lat_ts = -1
        self._lat_count = 0
        self.unacked = 0
        self.last_tag = 0
        self._acks: list[bytes] = []

    # -- bookkeeping shared by the fast and the slow path -------------------------------

    def on_message(self, key: int, ts: int, delivery_tag: int) -> None:
        self.received += 1
        if ts != self._lat_ts:
            if self._lat_count:
                self._flush_latency()
            self._lat_ts = ts
        self._lat_count += 1
        if key != self._next_key:
            if self._run_start >= 0:
                self.runs.append(self._run_start)
                self.runs.append(self._next_key)
            self._run_start = key
        self._next_key = key + 1
        if not self.auto_ack:
            self.last_tag = delivery_tag
            self.unacked += 1
            if self.unacked >= self.ack_every:
                self._acks.append(basic_ack_frame(1, delivery_tag, self.ack_every > 1))
                self.unacked = 0

    def _flush_latency(self) -> None:
        bucket = _bucket(self.now - self._lat_ts)
        self.hist[bucket] = self.hist.get(bucket, 0) + self._lat_count
        self._lat_count = 0

    def _complete(self) -> None:
        if self._key < 0 and not self.auto_ack and self._tag > 0:
            self._acks.append(basic_ack_frame(1, self._tag, False))  # foreign: ack it alone
        super()._complete()

    def take_histogram(self) -> Histogram:
        """The latency histogram since the last call (resets it)."""
        if self._lat_count:
            self._flush_latency()
        hist, self.hist = self.hist, {}
        return hist

    def take_runs(self) -> array[int]:
        """All [start, end) key runs seen so far, flat; the open run is closed."""
        if self._run_start >= 0:
            self.runs.append(self._run_start)
            self.runs.append(self._next_key)
            self._run_start = self._next_key = -1
        runs, self.runs = self.runs, array("q")
        return runs

    def ack_rest(self) -> None:
        """Ack whatever is still unacknowledged (at shutdown)."""
        if not self.auto_ack and self.unacked:
            self.write(basic_ack_frame(1, self.last_tag, True))
            self.unacked = 0

    # -- the hot loop -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._tail:
            data = self._tail + data
            self._tail = b""
        total = len(data)
        pos = 0
        deliver_head = _DELIVER_HEAD.unpack_from
        header = _HEADER.unpack_from
        body = _BODY.unpack_from
        u64 = _U64.unpack_from
        start_received = self.received
        self.now = now = time.monotonic_ns()
        auto_ack = self.auto_ack
        while total - pos >= 12 and self._body_left <= 0:
            ftype, _ch, size, cm, tag_len = deliver_head(data, pos)
            if ftype != 1 or cm != _DELIVER_CM:
                break
            hpos = pos + 8 + size
            if hpos + 19 > total:
                break
            tag = u64(data, pos + 12 + tag_len)[0]
            htype, _ch, hsize, _cls, _w, body_size = header(data, hpos)
            bpos = hpos + 8 + hsize
            if htype != 2 or body_size < 16 or bpos + 23 > total:
                break
            btype, _ch, bsize, key, ts = body(data, bpos)
            end = bpos + 7 + bsize
            if btype != 3 or bsize != body_size or end >= total:
                break
            if (
                data[hpos - 1] != FRAME_END_BYTE
                or data[bpos - 1] != FRAME_END_BYTE
                or data[end] != FRAME_END_BYTE
            ):
                break  # let the generic loop report the framing error
            pos = end + 1
            # inlined on_message
            if ts != self._lat_ts:
                if self._lat_count:
                    self._flush_latency()
                self._lat_ts = ts
            self._lat_count += 1
            if key != self._next_key:
                if self._run_start >= 0:
                    self.runs.append(self._run_start)
                    self.runs.append(self._next_key)
                self._run_start = key
            self._next_key = key + 1
            self.received += 1
            if not auto_ack:
                self.unacked += 1
                if self.unacked >= self.ack_every:
                    self._acks.append(basic_ack_frame(1, tag, self.ack_every > 1))
                    self.unacked = 0
                self.last_tag = tag
        if pos < total:
            # Anything the fast path did not take: generic loop (it handles partial frames
            # by keeping a tail, and calls on_message for complete deliveries).
            BenchClient.data_received(self, data[pos:] if pos else data)
            self.now = now
        else:
            self.flush_hook()
        if self.received != start_received:
            self.last_receive_ns = now

    def flush_hook(self) -> None:
        if self._lat_count:
            self._flush_latency()
        if self._acks:
            self.write(b"".join(self._acks))
            self._acks.clear()
