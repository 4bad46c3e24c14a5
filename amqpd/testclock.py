"""Broker clocks that tests can move forward (test controls only).

`ShiftedClock` satisfies `amqpd.core.clock.Clock` (wall-clock milliseconds, `call_at`) over
the event loop, like `amqpd.timers.LoopClock`, plus an offset: `advance(seconds)` moves "now"
forward and at once runs every timer the move made due, in deadline order, so a one-hour
message TTL or `x-expires` passes in milliseconds. It drives the core (TTLs, queue expiry,
leases).

`ShiftedLoopClock` does the same for what connections use (`amqpd.transport.Clock`: loop
time in seconds, `call_later`, `call_soon`): heartbeats and the handshake timeout. It is a
separate clock because clients send heartbeats in real time: moving it past two heartbeat
intervals makes the broker drop every connection with heartbeats on, which a test asks for
explicitly. Timers not advanced past still fire on their own at the shifted time, through
`loop.call_later`. The store's fsync interval stays on real time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable
from typing import Any


class ShiftedTimer:
    """One timer: fires once, from the loop or from an advance, whichever comes first."""

    __slots__ = ("when", "callback", "handle", "done")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when  # in the owning clock's (shifted) unit
        self.callback = callback
        self.handle: asyncio.TimerHandle | None = None
        self.done = False

    def cancel(self) -> None:
        self.done = True
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def fire(self) -> None:
        if not self.done:
            self.done = True
            self.handle = None
            self.callback()


class _TimerHeap:
    """Timers by shifted deadline; `run_due(now)` fires those due and cancels their loop
    timers. Entries the loop fired are dropped lazily (pruned when they are the majority)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, ShiftedTimer]] = []
        self._order = itertools.count()

    def push(self, timer: ShiftedTimer) -> None:
        heap = self._heap
        heapq.heappush(heap, (timer.when, next(self._order), timer))
        if len(heap) > 64 and len(heap) > 2 * self.pending():
            self._heap = [entry for entry in heap if not entry[2].done]
            heapq.heapify(self._heap)

    def run_due(self, now: float) -> int:
        heap = self._heap
        ran = 0
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if not timer.done:
                if timer.handle is not None:
                    timer.handle.cancel()
                timer.fire()
                ran += 1
        return ran

    def pending(self) -> int:
        return sum(1 for entry in self._heap if not entry[2].done)


def _check_forward(seconds: float) -> None:
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError("the clock only moves forward (seconds must be finite and >= 0)")


class ShiftedClock:
    """The core's clock: wall-clock ms plus an offset that only grows."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._offset_ms = 0
        self._timers = _TimerHeap()

    @property
    def offset(self) -> float:
        """Seconds this clock is ahead of the system clock."""
        return self._offset_ms / 1000

    def now(self) -> int:
        return int(time.time() * 1000) + self._offset_ms

    def call_at(self, when: int, callback: Callable[[], None]) -> ShiftedTimer:
        timer = ShiftedTimer(when, callback)
        delay = max(0.0, (when - self.now()) / 1000)
        timer.handle = self._loop.call_later(delay, timer.fire)
        self._timers.push(timer)
        return timer

    def advance(self, seconds: float) -> int:
        """Move time forward by `seconds`; run the timers now due. Returns how many ran."""
        _check_forward(seconds)
        self._offset_ms += round(seconds * 1000)
        return self._timers.run_due(self.now())

    def pending(self) -> int:
        return self._timers.pending()


class ShiftedLoopClock:
    """The connections' clock: loop time plus an offset that only grows."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.offset = 0.0  # seconds ahead of the loop
        self._timers = _TimerHeap()

    def time(self) -> float:
        return self._loop.time() + self.offset

    def call_later(self, delay: float, callback: Callable[[], object]) -> ShiftedTimer:
        timer = ShiftedTimer(self.time() + delay, callback)
        timer.handle = self._loop.call_later(max(0.0, delay), timer.fire)
        self._timers.push(timer)
        return timer

    def call_soon(self, callback: Callable[[], object]) -> Any:
        return self._loop.call_soon(callback)

    def advance(self, seconds: float) -> int:
        _check_forward(seconds)
        self.offset += seconds
        return self._timers.run_due(self.time())

    def pending(self) -> int:
        return self._timers.pending()
