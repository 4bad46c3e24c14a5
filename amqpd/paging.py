"""Paging: queued message bodies leave memory when a copy of them is on disk.

Contract: `Pager.page(queues)` runs every few ticks on the event loop. In each queue longer
than its head (the first `keep` messages, fewer for large bodies: about `keep_bytes` of
them), every message past the head whose body is in the store's log (a
persistent message in a durable queue, its record written) drops its body from memory
(`Message.evict_body`); the body is read back from the log when the message reaches a
consumer (`Message.body`, read ahead in large chunks by `store.LogReader`). So a queued
persistent message costs memory for its compact entry, not for its body, however deep the
queue. While the broker nears its memory watermark, `page(queues, spill_to)` also writes
transient bodies past the head to the vhost's spill file (`spill.SpillLog`), from which they
are read back the same way. A persistent message that another queue also holds keeps its body
(the other queue may outlive the record). Each queue's newest examined entry is remembered, so
a pass only looks at entries enqueued since the last one (from the tail, stopping there): the
cost follows the publish rate, not the queue depth. Queues themselves are not restructured:
only bodies move. Priority queues (not one deque in arrival order) keep their bodies.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterable

from amqpd.core.message import Message
from amqpd.core.queue import Queue
from amqpd.spill import SpillLog

# sys.getrefcount of a message held by one queue entry only, seen from the loop in `page`: the
# entry, the loop variable and the call's argument.
_ONE_HOLDER = 3
# Messages at the head of each queue that keep their bodies (delivered next), at most about
# this many bytes of bodies.
KEEP_RESIDENT = 10_000
KEEP_BYTES = 16 << 20


class Pager:
    def __init__(self, keep: int = KEEP_RESIDENT, keep_bytes: int = KEEP_BYTES) -> None:
        self.keep = keep
        self.keep_bytes = keep_bytes
        self.evicted = 0  # bodies dropped so far (stats)
        self._examined: dict[Queue, int] = {}  # queue -> newest seq already examined
        self._spilling = False

    def page(
        self, queues: Iterable[Queue], spill_to: Callable[[Queue], SpillLog | None] | None = None
    ) -> int:
        """One pass over these queues; returns the number of bodies dropped. With `spill_to`,
        transient bodies go to the spill file it names for their queue."""
        if (spill_to is not None) != self._spilling:
            self._spilling = spill_to is not None
            if self._spilling:  # entries passed over before may now be spilled: look again
                self._examined.clear()
        examined = self._examined
        seen: dict[Queue, int] = {}
        dropped = 0
        for queue in queues:
            store = queue.store
            reader = store.reader if store is not None else None
            messages = queue.messages
            last = examined.get(queue, -1)
            seen[queue] = last
            if type(messages) is not deque or not messages:  # priority queues keep their bodies
                continue
            spill = spill_to(queue) if spill_to is not None else None
            if reader is None and spill is None:
                continue
            size = messages[-1][1].info.body_size  # bodies of a queue are often alike
            keep = min(self.keep, self.keep_bytes // size) if size else self.keep
            if len(messages) <= keep:
                continue
            readable = reader.readable if reader is not None else _never
            getrefcount = sys.getrefcount
            newest = last
            position = len(messages)
            transient: list[Message] = []
            for seq, message, _redelivered in reversed(messages):
                position -= 1
                if seq <= last or position < keep:
                    break
                store_id = message.store_id
                if newest == last:  # still in the newest entries, whose records may be pending
                    if store_id and not readable(store_id):
                        continue
                    newest = seq
                if not message.resident or message.framed is not None:
                    continue
                if store_id:
                    if readable(store_id) and getrefcount(message) == _ONE_HOLDER:
                        message.evict_body(reader)  # type: ignore[arg-type]
                        dropped += 1
                elif spill is not None and message.info.body_size:
                    transient.append(message)
            if transient and spill is not None:
                transient.reverse()  # oldest first: read back in file order
                spill.spill(transient)
                dropped += len(transient)
            seen[queue] = newest
        self._examined = seen  # forgets deleted queues
        self.evicted += dropped
        return dropped


def _never(message_id: int) -> bool:
    return False
