"""A queue: its messages in order, its consumers, and the prefetch-aware dispatcher.

Messages are `(seq, message, redelivered)` entries; seq grows with every enqueue, so a
requeue can put returned messages back ahead of newer ones in their original order.
Consumers implement the `Consumer` protocol; `dispatch()` hands messages round robin to
consumers that are `ready()` (inside their prefetch window, socket writable) and stops
when nobody is. Nothing here schedules itself: `kick()` asks the owner, through the
`schedule` callback, to run one dispatch pass later (once per loop tick at most).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from amqpd.core.message import Message
from amqpd.store import Store

Entry = tuple[int, Message, bool]

# Flow control: a queue with consumers and more ready messages than FLOW_HIGH is
# "backlogged" (its consumers are slower than its publishers); publishers to it are paused
# until the dispatcher has brought it down to FLOW_LOW.
FLOW_HIGH = 10_000
FLOW_LOW = 5_000


class Consumer(Protocol):
    tag: str
    exclusive: bool

    def ready(self) -> bool: ...

    def deliver(self, queue: Queue, seq: int, message: Message, redelivered: bool) -> None: ...

    def queue_deleted(self, queue: Queue) -> None: ...


class Queue:
    def __init__(
        self,
        name: str,
        vhost: str,
        *,
        durable: bool = False,
        exclusive_owner: object | None = None,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        schedule: Callable[[Queue], None] = lambda queue: queue.dispatch(),
    ) -> None:
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments = arguments or {}
        self.messages: deque[Entry] = deque()
        self.consumers: deque[Consumer] = deque()
        self.bound_from: set[Any] = set()  # exchanges that may hold bindings to this queue
        self.had_consumer = False
        self.deleted = False
        self.dispatch_pending = False
        self._next_seq = 0
        self._schedule = schedule
        self.store: Store | None = None  # set for durable, non-exclusive queues
        self.backlogged = False
        self.drain_waiters: list[Callable[[Queue], None]] = []  # called once backlog clears

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    def __len__(self) -> int:
        return len(self.messages)

    # -- messages -------------------------------------------------------------------------

    def enqueue(self, message: Message, redelivered: bool = False) -> int:
        seq = self._next_seq
        self._next_seq = seq + 1
        messages = self.messages
        messages.append((seq, message, redelivered))
        if self.consumers:
            if not self.dispatch_pending:
                self.kick()
            if len(messages) > FLOW_HIGH:
                self.backlogged = True
        return seq

    def take(self) -> Entry | None:
        """The head message, for basic.get."""
        if not self.messages:
            return None
        entry = self.messages.popleft()
        if self.backlogged and len(self.messages) <= FLOW_LOW:
            self.release_publishers()
        return entry

    def requeue(self, returned: Iterable[tuple[int, Message]]) -> None:
        """Put delivered messages back, ahead of newer ones, in original order, redelivered."""
        back = sorted(returned, key=lambda item: item[0])
        if not back or self.deleted:
            return
        newest = back[-1][0]
        messages = self.messages
        older: list[Entry] = []
        while messages and messages[0][0] < newest:
            older.append(messages.popleft())
        merged = [(seq, message, True) for seq, message in back]
        if older:
            merged = sorted(merged + older, key=lambda entry: entry[0])
        messages.extendleft(reversed(merged))
        self.kick()

    def purge(self) -> int:
        count = len(self.messages)
        self.messages.clear()
        if self.backlogged:
            self.release_publishers()
        if self.store is not None and count:
            self.store.queue_purged(self.name)
        return count

    # -- durability hooks: cheap no-ops for transient messages and queues --------------

    def settled(self, message: Message) -> None:
        """A message left this queue for good (acked, auto-acked, rejected, dropped)."""
        if message.store_id and self.store is not None and not self.deleted:
            self.store.message_removed(self.name, message.store_id)

    def delivered(self, message: Message) -> None:
        """A message went out for the first time and awaits an ack: after a restart it
        comes back redelivered."""
        if message.store_id and self.store is not None:
            self.store.message_delivered(self.name, message.store_id)

    # -- consumers ------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self.had_consumer = True
        self.kick()

    def remove_consumer(self, consumer: Consumer) -> None:
        try:
            self.consumers.remove(consumer)
        except ValueError:
            pass
        if not self.consumers and self.backlogged:
            self.release_publishers()  # without consumers a queue never throttles

    def has_exclusive_consumer(self) -> bool:
        return any(consumer.exclusive for consumer in self.consumers)

    # -- dispatch -------------------------------------------------------------------------

    def kick(self) -> None:
        """Ask for one dispatch pass soon; repeated kicks before it runs are free."""
        if not self.dispatch_pending and not self.deleted:
            self.dispatch_pending = True
            self._schedule(self)

    def dispatch(self) -> None:
        """Hand out messages round robin to ready consumers until none is ready or left."""
        self.dispatch_pending = False
        messages = self.messages
        consumers = self.consumers
        if len(consumers) == 1:  # the common case: no round robin to keep
            consumer = consumers[0]
            while messages and consumer.ready():
                seq, message, redelivered = messages.popleft()
                consumer.deliver(self, seq, message, redelivered)
                if not consumers or consumers[0] is not consumer:
                    break
            # An empty tuple ends the round robin below without allocating a deque.
            consumers = self.consumers if len(self.consumers) > 1 else ()  # type: ignore[assignment]
        while messages and consumers:
            for _ in range(len(consumers)):
                consumer = consumers[0]
                consumers.rotate(-1)
                if consumer.ready():
                    seq, message, redelivered = messages.popleft()
                    consumer.deliver(self, seq, message, redelivered)
                    break
            else:
                break
        if self.backlogged and len(messages) <= FLOW_LOW:
            self.release_publishers()

    def release_publishers(self) -> None:
        """The backlog cleared (or the queue went away): wake the paused publishers."""
        self.backlogged = False
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            waiter(self)
