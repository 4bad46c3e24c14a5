"""Paging: deep queues keep compact entries, not messages, once a copy is on disk.

Contract: `Pager.page(queues)` runs every few ticks on the event loop. A durable queue longer
than its head (the first `keep` messages, fewer for large bodies: about `keep_bytes` of them)
becomes a `core.paged.PagedMessages`: every message past the head whose record is readable in
the store's log (persistent, written) is reduced to a compact entry of ~21 bytes (store id,
seq, flags, size; arrival time if it may expire), and messages are rebuilt from their records
(`LogMessages`, through `store.LogReader.read_message`, read ahead in file order) when the
head needs refilling. A queue back under half its head limit with nothing compact left is a
plain deque again. So a queued persistent message costs a few dozen bytes however deep the
queue, and a queue that never grows past its head never touches any of this. While the broker
nears its memory watermark, `page(queues, spill_to)` also writes transient bodies past the head
to the vhost's spill file (`spill.SpillLog`) and drops them from memory (the `Message` stays);
they are read back the same way. Each plain queue's newest examined entry is remembered, so a
pass only looks at entries enqueued since the last one: the cost follows the publish rate, not
the queue depth. Priority queues are left as they are.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import islice

from amqpd.core.errors import ChannelError
from amqpd.core.message import Message
from amqpd.core.paged import BATCH, PagedMessages
from amqpd.core.queue import Queue
from amqpd.core.ttl import split_arrival
from amqpd.encoding import shortstr
from amqpd.spill import SpillLog
from amqpd.store.reader import LogReader, ReadBackFailed
from amqpd.wire.content import ContentHeaderError, HeaderInfo, peek_header

log = logging.getLogger("amqpd.paging")

# Messages at the head of each queue that stay resident (delivered next), at most about this
# many bytes of bodies.
KEEP_RESIDENT = 10_000
KEEP_BYTES = 16 << 20
_CACHED = 4096  # distinct content headers / exchange+routing keys remembered per log


class LogMessages:
    """Messages rebuilt from their records in one store's log (a `core.paged.MessageLoader`).
    Content headers and exchange/routing-key pairs seen before are shared, not re-parsed."""

    def __init__(self, reader: LogReader) -> None:
        self._reader = reader
        self._headers: dict[bytes, tuple[bytes, HeaderInfo, int]] = {}
        self._names: dict[tuple[str, str], bytes] = {}

    def load(self, store_ids: Sequence[int]) -> list[Message | OSError]:
        headers = self._headers
        names = self._names
        out: list[Message | OSError] = []
        for store_id, found in zip(store_ids, self._reader.read_messages(store_ids), strict=True):
            if isinstance(found, OSError):
                out.append(found)
                continue
            exchange, routing_key, stored, body = found
            parsed = headers.get(stored)
            if parsed is None:
                header, arrived = split_arrival(stored)
                try:
                    parsed = (header, peek_header(header), arrived)
                except ContentHeaderError as error:
                    out.append(ReadBackFailed(f"message {store_id}: {error}"))
                    continue
                if len(headers) < _CACHED:
                    headers[stored] = parsed
            pair = (exchange, routing_key)
            exchange_rk = names.get(pair)
            if exchange_rk is None:
                exchange_rk = shortstr(exchange) + shortstr(routing_key)
                if len(names) < _CACHED:
                    names[pair] = exchange_rk
            try:
                message = Message(exchange, routing_key, parsed[0], parsed[1], body, exchange_rk)
            except ChannelError as error:  # an expiration the broker once accepted: never
                out.append(ReadBackFailed(f"message {store_id}: {error}"))
                continue
            message.store_id = store_id
            message.arrived = parsed[2]
            out.append(message)
        return out


def drop_lost(queue: Queue, store_id: int, size: int, error: OSError) -> None:
    """A compact entry whose record cannot be read back: log it, and it leaves the queue."""
    log.error(
        "queue '%s' in vhost '%s': dropped a message whose body is lost (%s)",
        queue.name,
        queue.vhost,
        error,
    )
    if queue.max_bytes is not None:
        queue.ready_bytes -= size
    if queue.store is not None and not queue.deleted:
        queue.store.message_removed(queue.name, store_id)


class Pager:
    def __init__(
        self, keep: int = KEEP_RESIDENT, keep_bytes: int = KEEP_BYTES, batch: int = BATCH
    ) -> None:
        self.keep = keep
        self.keep_bytes = keep_bytes
        self.batch = batch
        self.evicted = 0  # bodies spilled and entries made compact so far (stats)
        self._examined: dict[Queue, int] = {}  # queue -> newest seq already examined
        self._loaders: dict[LogReader, LogMessages] = {}
        self._spilling = False

    def _keep(self, sample: Message | None) -> int:
        size = sample.info.body_size if sample is not None else 0  # a queue's bodies are alike
        return min(self.keep, self.keep_bytes // size) if size else self.keep

    def page(
        self, queues: Iterable[Queue], spill_to: Callable[[Queue], SpillLog | None] | None = None
    ) -> int:
        """One pass over these queues; returns the number of entries made compact plus bodies
        spilled. With `spill_to`, transient bodies go to the spill file it names."""
        if (spill_to is not None) != self._spilling:
            self._spilling = spill_to is not None
            if self._spilling:  # entries passed over before may now be spilled: look again
                self._examined.clear()
        examined = self._examined
        seen: dict[Queue, int] = {}
        dropped = 0
        for queue in queues:
            messages = queue.messages
            last = examined.get(queue, -1)
            seen[queue] = last
            store = queue.store
            reader = store.reader if store is not None else None
            spill = spill_to(queue) if spill_to is not None else None
            kind = type(messages)
            if reader is not None and not queue.deleted:
                if kind is PagedMessages:
                    deep: PagedMessages = messages  # type: ignore[assignment]
                    dropped += self._page_deep(queue, deep, reader, spill, last < 0)
                    seen[queue] = 0
                elif kind is deque and messages:
                    keep = self._keep(messages[-1][1])
                    if len(messages) > keep:
                        paged = PagedMessages(
                            self._loader(reader),
                            lambda *lost, queue=queue: drop_lost(queue, *lost),
                            head=islice(messages, keep),
                            tail=islice(messages, keep, None),
                            batch=min(self.batch, max(keep, 16)),
                        )
                        queue.messages = paged
                        dropped += self._page_deep(queue, paged, reader, spill, True)
                        seen[queue] = 0
                continue
            if kind is not deque or not messages or spill is None:
                continue
            seen[queue], spilled = self._spill_plain(messages, last, spill)  # type: ignore[arg-type]
            dropped += spilled
        self._examined = seen  # forgets deleted queues
        self.evicted += dropped
        return dropped

    def _loader(self, reader: LogReader) -> LogMessages:
        loader = self._loaders.get(reader)
        if loader is None:
            loader = self._loaders[reader] = LogMessages(reader)
        return loader

    def _page_deep(
        self,
        queue: Queue,
        messages: PagedMessages,
        reader: LogReader,
        spill: SpillLog | None,
        rescan: bool,
    ) -> int:
        """Page a deep queue's new tail; back to a deque once it is short again."""
        tail = messages.tail
        sample = tail[-1][1] if tail else messages.head[-1][1] if messages.head else None
        keep = self._keep(sample)
        if not messages.in_middle and len(messages) <= keep // 2:
            queue.messages = messages.unpaged()
            return 0
        transient: list[Message] | None = [] if spill is not None else None
        done = messages.page(reader.readable, keep, transient)
        if spill is not None:
            if rescan:  # spilling just began: the middle's resident entries, too
                transient = [
                    message
                    for _seq, message, _redelivered in messages.resident_middle()
                    if not message.store_id
                ]
            transient = [
                message
                for message in transient or ()
                if message.resident and message.framed is None and message.info.body_size
            ]
            if transient:
                spill.spill(transient)
                done += len(transient)
        return done

    def _spill_plain(
        self, messages: deque[tuple[int, Message, bool]], last: int, spill: SpillLog
    ) -> tuple[int, int]:
        """Spill the transient bodies past the head of a plain (non-durable) queue; returns
        the newest seq examined and the number spilled."""
        keep = self._keep(messages[-1][1])
        if len(messages) <= keep:
            return last, 0
        newest = last
        position = len(messages)
        transient: list[Message] = []
        for seq, message, _redelivered in reversed(messages):
            position -= 1
            if seq <= last or position < keep:
                break
            if newest == last:
                newest = seq
            if (
                message.resident
                and not message.store_id
                and message.framed is None
                and message.info.body_size
            ):
                transient.append(message)
        if transient:
            transient.reverse()  # oldest first: read back in file order
            spill.spill(transient)
        return newest, len(transient)
