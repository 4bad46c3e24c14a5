"""The per-tick work list: queue dispatch passes, store flushes, then connection flushes.

Queues and connections ask for work with `dispatch(queue)` / `flush(connection)`; one
`call_soon` callback per loop tick runs every requested dispatch pass once and then every
requested flush once, so many publishes or acks in one read become one dispatch pass per
queue and one socket write per connection.
"""

from __future__ import annotations

from typing import Protocol

from amqpd.core.queue import Queue
from amqpd.transport import Clock

MAX_DISPATCH_ROUNDS = 8  # passes re-requested during a tick run again, up to this many times


class Flushable(Protocol):
    def flush(self) -> None: ...


class TickScheduler:
    def __init__(self, loop: Clock) -> None:
        self._loop = loop
        self._queues: list[Queue] = []
        self._flushes: list[Flushable] = []
        self._stores: list[Flushable] = []
        self._armed = False

    def dispatch(self, queue: Queue) -> None:
        self._queues.append(queue)
        if not self._armed:
            self._arm()

    def flush(self, connection: Flushable) -> None:
        self._flushes.append(connection)
        if not self._armed:
            self._arm()

    def flush_store(self, store: Flushable) -> None:
        """Hand a store's appended records to its writer at the end of this tick."""
        self._stores.append(store)
        if not self._armed:
            self._arm()

    def _arm(self) -> None:
        self._armed = True
        self._loop.call_soon(self._run)

    def _run(self) -> None:
        self._armed = False
        for _ in range(MAX_DISPATCH_ROUNDS):
            if not self._queues:
                break
            queues, self._queues = self._queues, []
            for queue in queues:
                if queue.dispatch_pending:
                    queue.dispatch()
        if self._stores:
            stores, self._stores = self._stores, []
            for store in stores:
                store.flush()
        flushes, self._flushes = self._flushes, []
        for connection in flushes:
            connection.flush()
        if (self._queues or self._flushes or self._stores) and not self._armed:
            self._arm()
