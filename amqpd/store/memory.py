"""MemoryStore: the Store interface with nothing kept across restarts.

Contract: same calls and ticket semantics as ``DurableStore``; ``recover()`` always returns an
empty ``Recovered``; ``flush()`` calls ``on_durable`` synchronously with the latest ticket
(nothing needs to reach a disk). It tracks topology and live message counts only so that
``stats()`` answers like its durable twin. Never fails, never reports ``disk_full``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from amqpd.store.records import (
    BindingRecord,
    ExchangeRecord,
    QueueRecord,
    Recovered,
    binding_key,
)


class MemoryStore:
    def __init__(self) -> None:
        self.on_durable: Callable[[int], object] | None = None
        # Called on the appending thread when the first record after a flush() arrives,
        # so the owner can schedule the next flush().
        self.on_pending: Callable[[], object] | None = None
        self.on_fatal: Callable[[BaseException], object] | None = None
        self.disk_full = False
        self.reader = None  # nothing to read bodies back from: they stay in memory
        self._ticket = 0
        self._durable = 0
        self._exchanges: dict[str, ExchangeRecord] = {}
        self._queues: dict[str, QueueRecord] = {}
        self._bindings: dict[tuple[str, str, str, str, bytes], BindingRecord] = {}
        self._qmsgs: dict[str, set[int]] = {}
        self._refs: dict[int, int] = {}
        self._closed = False

    def recover(self) -> Recovered:
        return Recovered([], [], [], {}, 1, 0, 0, 0.0)

    def exchange_declared(self, record: ExchangeRecord) -> None:
        self._advance()
        self._exchanges[record.name] = record

    def exchange_deleted(self, name: str) -> None:
        self._advance()
        self._exchanges.pop(name, None)
        for key in [
            k for k in self._bindings if k[0] == name or (k[1] == "exchange" and k[2] == name)
        ]:
            del self._bindings[key]

    def queue_declared(self, record: QueueRecord) -> None:
        self._advance()
        self._queues[record.name] = record
        self._qmsgs.setdefault(record.name, set())

    def queue_deleted(self, name: str) -> None:
        self._advance()
        self._queues.pop(name, None)
        for mid in self._qmsgs.pop(name, ()):
            self._unref(mid)
        for key in [k for k in self._bindings if k[1] == "queue" and k[2] == name]:
            del self._bindings[key]

    def binding_added(self, record: BindingRecord) -> None:
        self._advance()
        self._bindings[binding_key(record)] = record

    def binding_removed(self, record: BindingRecord) -> None:
        self._advance()
        self._bindings.pop(binding_key(record), None)

    def message_published(
        self,
        message_id: int,
        queues: Sequence[str],
        exchange: str,
        routing_key: str,
        header: bytes,
        body: bytes,
    ) -> int:
        self._advance()
        count = 0
        for name in queues:
            held = self._qmsgs.setdefault(name, set())
            if message_id not in held:
                held.add(message_id)
                count += 1
        if count:
            self._refs[message_id] = self._refs.get(message_id, 0) + count
        return self._ticket

    def message_delivered(self, queue: str, message_id: int) -> None:
        self._advance()

    def message_removed(self, queue: str, message_id: int) -> None:
        self._advance()
        held = self._qmsgs.get(queue)
        if held is not None and message_id in held:
            held.discard(message_id)
            self._unref(message_id)

    def queue_purged(self, queue: str) -> None:
        self._advance()
        held = self._qmsgs.get(queue)
        if held:
            for mid in held:
                self._unref(mid)
            held.clear()

    def _unref(self, message_id: int) -> None:
        left = self._refs.get(message_id, 0) - 1
        if left > 0:
            self._refs[message_id] = left
        else:
            self._refs.pop(message_id, None)

    @property
    def ticket(self) -> int:
        """The ticket of the latest call: `on_durable(t)` with t >= it covers that call."""
        return self._ticket

    def _advance(self) -> None:
        if self._ticket == self._durable and self.on_pending is not None:
            self.on_pending()
        self._ticket += 1

    def flush(self) -> None:
        if self._ticket > self._durable:
            self._durable = self._ticket
            hook = self.on_durable
            if hook is not None:
                hook(self._ticket)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.flush()

    def stats(self) -> dict[str, int | bool]:
        return {
            "live_messages": len(self._refs),
            "segments": 0,
            "bytes_on_disk": 0,
            "corrupt_records": 0,
            "truncated_bytes": 0,
            "batches": 0,
            "fsyncs": 0,
            "compactions": 0,
            "segments_deleted": 0,
            "durable_ticket": self._durable,
            "disk_full": False,
            "failed": False,
        }
