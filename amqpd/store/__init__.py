"""Persistence for amqpd: durable topology and persistent messages behind one small interface.

Contract: the broker talks to a ``Store`` only. ``recover()`` is called once, first; after that
every mutation is appended (cheap, on the event loop), ``flush()`` hands what was appended to
the store once per loop tick, and ``on_durable(ticket)`` reports, possibly from another
thread, that everything appended with a ticket <= ``ticket`` is durable under the configured
fsync policy. ``message_delivered(q, X)`` is read as a watermark: a queue delivers its lowest
message id first, so every message of ``q`` with an id <= ``X`` counts as delivered.
``DurableStore`` keeps an append-only log on disk; ``MemoryStore`` keeps nothing. No asyncio
and no sockets in this package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from amqpd.store.log import DurableStore, StoreFailed, StoreLocked
from amqpd.store.memory import MemoryStore
from amqpd.store.reader import LogReader, ReadBackFailed
from amqpd.store.records import (
    BindingRecord,
    ExchangeRecord,
    QueueRecord,
    Recovered,
    RecoveredIds,
    RecoveredMessage,
)


class Store(Protocol):
    # Callbacks set by the broker; whatever they return is ignored.
    on_durable: Callable[[int], object] | None
    on_pending: Callable[[], object] | None
    on_fatal: Callable[[BaseException], object] | None

    @property
    def disk_full(self) -> bool: ...
    @property
    def reader(self) -> LogReader | None:
        """Reads persistent bodies back from the log (None: they stay in memory)."""

    @property
    def ticket(self) -> int: ...

    def recover(self) -> Recovered: ...
    def exchange_declared(self, record: ExchangeRecord) -> None: ...
    def exchange_deleted(self, name: str) -> None: ...
    def queue_declared(self, record: QueueRecord) -> None: ...
    def queue_deleted(self, name: str) -> None: ...
    def binding_added(self, record: BindingRecord) -> None: ...
    def binding_removed(self, record: BindingRecord) -> None: ...
    def message_published(
        self,
        message_id: int,
        queues: Sequence[str],
        exchange: str,
        routing_key: str,
        header: bytes,
        body: bytes,
    ) -> int: ...
    def message_delivered(self, queue: str, message_id: int) -> None: ...
    def message_removed(self, queue: str, message_id: int) -> None: ...
    def queue_purged(self, queue: str) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
    def stats(self) -> dict[str, int | bool]: ...


__all__ = [
    "BindingRecord",
    "DurableStore",
    "ExchangeRecord",
    "LogReader",
    "MemoryStore",
    "QueueRecord",
    "ReadBackFailed",
    "Recovered",
    "RecoveredIds",
    "RecoveredMessage",
    "Store",
    "StoreFailed",
    "StoreLocked",
]
