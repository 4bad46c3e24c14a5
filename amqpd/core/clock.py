"""Time for the core: one injectable source of "now" and of timers.

The core never reads the system clock or touches an event loop itself: a `Clock` gives the
current wall-clock time in milliseconds (deadlines are absolute, so they survive a restart)
and runs a callback at a given time. The server passes an event-loop clock; `ManualClock`
is a clock that only moves when told to, for unit tests and test controls.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> int:
        """Milliseconds since the epoch."""
        ...

    def call_at(self, when: int, callback: Callable[[], None]) -> Timer:
        """Run `callback` once, at `when` (milliseconds since the epoch) or soon after."""
        ...


class _ManualTimer:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that stands still until `advance()` moves it, running timers that fall due."""

    def __init__(self, start: int | None = None) -> None:
        self._now = int(time.time() * 1000) if start is None else start
        self._timers: list[tuple[int, int, _ManualTimer, Callable[[], None]]] = []
        self._order = itertools.count()

    def now(self) -> int:
        return self._now

    def call_at(self, when: int, callback: Callable[[], None]) -> Timer:
        timer = _ManualTimer()
        heapq.heappush(self._timers, (when, next(self._order), timer, callback))
        return timer

    def advance(self, milliseconds: int) -> None:
        """Move time forward, running every timer due by the new time, in deadline order."""
        target = self._now + milliseconds
        while self._timers and self._timers[0][0] <= target:
            when, _order, timer, callback = heapq.heappop(self._timers)
            self._now = max(self._now, when)
            if not timer.cancelled:
                callback()
        self._now = target

    def pending(self) -> int:
        return sum(1 for entry in self._timers if not entry[2].cancelled)
