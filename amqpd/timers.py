"""The event-loop clock the server gives the core (see `amqpd.core.clock`).

Wall-clock milliseconds for "now"; timers run through `loop.call_later`, so a deadline set
in wall time fires after the equivalent loop delay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from amqpd.core.clock import Timer


class LoopClock:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def now(self) -> int:
        return int(time.time() * 1000)

    def call_at(self, when: int, callback: Callable[[], None]) -> Timer:
        delay = max(0.0, (when - time.time() * 1000) / 1000)
        return self._loop.call_later(delay, callback)
