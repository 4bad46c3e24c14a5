"""A broker clock that tests can move forward: `ShiftedClock` (test controls only).

It satisfies `amqpd.core.clock.Clock` (wall-clock milliseconds, `call_at`) over the event
loop, like `amqpd.timers.LoopClock`, but adds an offset: `advance(seconds)` moves "now"
forward and at once runs every timer that the move made due, in deadline order, so a
one-hour message TTL or `x-expires` passes in milliseconds. Timers that are not advanced
past still fire on their own at the (shifted) time, through `loop.call_later`.

Only the core's time is shifted (TTLs, queue expiry, leases). Connections keep the loop's
real time: clients send heartbeats in real time, and a broker that jumped ahead would drop
every connection with heartbeats on. The store's fsync interval is real time too.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable


class _ShiftedTimer:
    __slots__ = ("when", "callback", "handle", "done")

    def __init__(self, when: int, callback: Callable[[], None]) -> None:
        self.when = when  # shifted wall-clock milliseconds
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


class ShiftedClock:
    """Wall-clock time plus an offset that only grows; timers fire early when time jumps."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._offset_ms = 0
        self._timers: list[tuple[int, int, _ShiftedTimer]] = []
        self._order = itertools.count()

    @property
    def offset(self) -> float:
        """Seconds this clock is ahead of the system clock."""
        return self._offset_ms / 1000

    def now(self) -> int:
        return int(time.time() * 1000) + self._offset_ms

    def call_at(self, when: int, callback: Callable[[], None]) -> _ShiftedTimer:
        timer = _ShiftedTimer(when, callback)
        delay = max(0.0, (when - self.now()) / 1000)
        timer.handle = self._loop.call_later(delay, timer.fire)
        heapq.heappush(self._timers, (when, next(self._order), timer))
        if len(self._timers) > 64 and len(self._timers) > 2 * self.pending():
            self._timers = [entry for entry in self._timers if not entry[2].done]
            heapq.heapify(self._timers)
        return timer

    def advance(self, seconds: float) -> int:
        """Move time forward by `seconds` (>= 0); run the timers now due. Returns how many ran."""
        if not seconds >= 0:
            raise ValueError("the clock only moves forward")
        self._offset_ms += round(seconds * 1000)
        target = self.now()
        ran = 0
        timers = self._timers
        while timers and timers[0][0] <= target:
            _when, _order, timer = heapq.heappop(timers)
            if not timer.done:
                if timer.handle is not None:
                    timer.handle.cancel()
                timer.fire()
                ran += 1
        return ran

    def pending(self) -> int:
        return sum(1 for entry in self._timers if not entry[2].done)
