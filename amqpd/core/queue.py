"""A queue: its messages in order, its consumers, and the prefetch-aware dispatcher.

Messages are `(seq, message, redelivered)` entries; seq grows with every enqueue, so a
requeue can put returned messages back ahead of newer ones in their original order.
Consumers implement the `Consumer` protocol; `dispatch()` hands messages round robin to
consumers that are `ready()` (inside their prefetch window, socket writable) and stops
when nobody is. Nothing here schedules itself: `kick()` asks the owner, through the
`schedule` callback, to run one dispatch pass later (once per loop tick at most).

RabbitMQ's queue arguments (message TTL, length limits, priorities, single active
consumer, consumer priorities, queue expiry) switch a queue to the `extended` paths; a
queue using none of them, fed messages without an expiration, runs the plain fast paths.
Messages leaving as `expired`, `maxlen` or `rejected` go to the `dead_letter` callback when
the queue has a dead-letter exchange. Time comes from the injected `Clock`. A deep queue's
messages may be a `paged.PagedMessages` (put there by the pager): the same interface, most
entries compact; nothing here depends on which.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from amqpd.core.choice import next_consumer
from amqpd.core.clock import Clock, ManualClock, Timer
from amqpd.core.lease import Lease
from amqpd.core.message import Message
from amqpd.core.paged import PagedMessages
from amqpd.core.policy import Policy, QueueSettings, queue_settings
from amqpd.core.priority import PriorityMessages
from amqpd.core.quorum import DELIVERY_LIMIT, count_returns, counted_copy
from amqpd.core.stats import MessageStats, QueueStats
from amqpd.store import Store

Entry = tuple[int, Message, bool]
DeadLetter = Callable[["Queue", list[Message], str], None]
EXPIRED, MAXLEN, REJECTED = "expired", "maxlen", "rejected"

# Flow control: a queue with consumers and more ready messages than FLOW_HIGH is
# "backlogged" (its consumers are slower than its publishers); publishers to it are paused
# until the dispatcher has brought it down to FLOW_LOW. A paused publisher resumes within a
# loop turn, so FLOW_LOW ready messages keep its consumers busy meanwhile (1,000 last ~10 ms
# at 100k msg/s); a short steady-state queue stays clear of the pager's head (paging_head,
# 10,000 by default), whose reads back from the log would cost every message.
FLOW_HIGH = 2_000
FLOW_LOW = 1_000


class Consumer(Protocol):
    tag: str
    exclusive: bool

    def ready(self) -> bool: ...

    def deliver(self, queue: Queue, seq: int, message: Message, redelivered: bool) -> None: ...

    def deliver_run(self, queue: Queue, messages: deque[Entry]) -> None:
        """`deliver` messages taken from the head of `messages` while `ready()` (see
        `deliver_each`, which any consumer may use)."""

    def queue_deleted(self, queue: Queue) -> None: ...


def deliver_each(consumer: Consumer, queue: Queue, messages: deque[Entry]) -> None:
    """A consumer's `deliver_run`, one `deliver` call at a time."""
    while messages and consumer.ready():
        seq, message, redelivered = messages.popleft()
        consumer.deliver(queue, seq, message, redelivered)
        if consumer not in queue.consumers:
            break


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
        clock: Clock | None = None,
        dead_letter: DeadLetter | None = None,
        unused: Callable[[Queue], object] | None = None,
        settings: QueueSettings | None = None,
    ) -> None:
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments = arguments = arguments or {}
        # A deque; a PriorityMessages with x-max-priority; a PagedMessages (same interface)
        # while the queue is deep and the pager keeps most of it compact.
        self.messages: deque[Entry] | PriorityMessages | PagedMessages = deque()
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
        # Statistics: deliveries to consumers and basic.gets of this queue; the vhost's
        # counters (shared by its queues) are counted in the same places.
        self.delivered_count = 0
        self.get_count = 0
        self.vhost_stats = MessageStats()
        self.stats = QueueStats()  # the rest of its counters (management API)
        self.clock: Clock = clock or ManualClock()
        self._dead_letter = dead_letter
        self._unused = unused  # called when an x-expires lease runs out
        self.consumer_priorities: dict[Consumer, int] = {}
        max_priority = arguments.get("x-max-priority")
        if max_priority:
            self.messages = PriorityMessages(max_priority)
        self.single_active = arguments.get("x-single-active-consumer") is True
        self.handover = False  # SAC: the active consumer left; the next waits for an event
        kind = arguments.get("x-queue-type")
        self.quorum = kind == "quorum" or kind == b"quorum"
        self._fixed_extended = bool(max_priority or self.single_active or self.quorum)
        self.ready_bytes = 0  # body bytes of ready messages, kept when x-max-length-bytes is set
        self._expiry_timer: Timer | None = None
        self._expiry_at: int | None = None
        # Settings (arguments combined with policies): see `configure`.
        self.settings = QueueSettings()
        self.policy: Policy | None = None  # the policies that apply (set by the vhost)
        self.operator_policy: Policy | None = None
        self.ttl: int | None = None
        self.ttl_epochs: list[tuple[int, int | None]] = []  # see `configure`
        self.expires: int | None = None
        self.max_length: int | None = None
        self.max_bytes: int | None = None
        self.rejects = self.rejects_to_dlx = self.drops_head = False
        self.dlx: str | None = None
        self.dlrk: str | None = None
        self.delivery_limit: int | None = None
        self.may_expire = False  # some ready message may carry a deadline
        self.lease: Lease | None = None
        self.extended = self._fixed_extended
        self.configure(settings or queue_settings(arguments, quorum=self.quorum))

    def configure(self, settings: QueueSettings) -> None:
        """Enforce `settings` (the queue's arguments combined with the policies that apply):
        at construction, and again whenever a policy change alters them. As in RabbitMQ,
        a changed message TTL applies to messages enqueued from now on (those already in
        the queue keep their expiry: `ttl_epochs` remembers the TTL each seq range got), a
        lower length limit drops (dead-letters) the head at once, and an expiry lease
        starts over."""
        old_ttl = self.ttl
        self.settings = settings
        if settings.ttl != old_ttl and self._next_seq:
            epochs = self.ttl_epochs
            start = epochs[-1][0] if epochs else 0
            if self._next_seq > start:
                epochs.append((self._next_seq, old_ttl))
                if len(epochs) > 16:  # bounded: the oldest range takes the next one's TTL
                    del epochs[0]
        self.ttl = settings.ttl
        self.max_length = settings.max_length
        had_bytes = self.max_bytes is not None
        self.max_bytes = settings.max_bytes
        if self.max_bytes is None:
            self.ready_bytes = 0
        elif not had_bytes:
            self.ready_bytes = sum(entry[1].info.body_size for entry in self.messages)
        limited = self.max_length is not None or self.max_bytes is not None
        overflow = settings.overflow
        self.rejects = limited and overflow != "drop-head"
        self.rejects_to_dlx = overflow == "reject-publish-dlx"
        self.drops_head = limited and not self.rejects
        self.dlx = settings.dlx
        self.dlrk = settings.dlrk
        self.delivery_limit = settings.delivery_limit
        if self.ttl is not None:
            self.may_expire = True
        self.extended = bool(
            self._fixed_extended
            or self.ttl is not None
            or limited
            or self.consumer_priorities
            or self.ttl_epochs
        )
        self.expires = settings.expires
        if self.lease is not None:
            self.lease.cancel()
        self.lease = (
            Lease(self.clock, self.expires, self._lease_over) if self.expires is not None else None
        )
        if self.deleted:
            return
        if self.lease is not None:
            self.touch()
        if self.drops_head and self.messages and self._over_limit():
            self._drop_over_limit()
        if self.may_expire and self.messages:
            self.drop_expired()

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def enqueued_count(self) -> int:
        """Messages enqueued since the queue was declared or recovered (statistics)."""
        return self._next_seq

    # -- messages -------------------------------------------------------------------------

    def enqueue(self, message: Message, redelivered: bool = False) -> int:
        if self.extended or message.ttl is not None:
            return self._enqueue_extended(message, redelivered)
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

    def _enqueue_extended(self, message: Message, redelivered: bool) -> int:
        self.handover = False
        seq = self._next_seq
        self._next_seq = seq + 1
        messages = self.messages
        ttl = self.ttl
        if message.ttl is not None:
            if ttl is None or message.ttl < ttl:
                ttl = message.ttl
            self.may_expire = True
        if ttl is not None and not message.arrived:
            message.arrived = self.clock.now()
        messages.append((seq, message, redelivered))
        if self.max_bytes is not None:
            self.ready_bytes += message.info.body_size
        over = self.drops_head and self._over_limit()
        if self.consumers:
            if ttl == 0 or over:
                # As in RabbitMQ, a consumer waiting now takes the message before TTL 0 or
                # a full queue can drop it: deliver now, counting only earlier deadlines.
                self._dispatch_extended(self.clock.now() - 1)
                over = over and self._over_limit()
            elif not self.dispatch_pending:
                self.kick()
            if len(messages) > FLOW_HIGH:
                self.backlogged = True
        if over:
            self._drop_over_limit()
        # Only a new head (or TTL 0, or maybe a priority queue's) can need a sooner timer;
        # as RabbitMQ, skip the expiry check when the head did not change.
        if ttl is not None and (
            ttl == 0 or len(messages) == 1 or isinstance(messages, PriorityMessages)
        ):
            self.drop_expired()
        return seq

    def extend_compact(
        self, messages: PagedMessages, ids: Any, flags: bytearray, sizes: Any, start: int = 0
    ) -> None:
        """Recovery: compact entries `start`.. of these arrays (store ids in order, redelivered
        flags, body sizes; emptied as they are taken) join the queue after what it holds, as
        `messages` (which holds those already)."""
        self.messages = messages
        first = self._next_seq
        count = len(ids) - start
        self._next_seq = first + count
        before = messages.paged_bytes
        messages.extend_compact(first, ids, flags, sizes, start)
        if self.max_bytes is not None:
            self.ready_bytes += messages.paged_bytes - before
        self.may_expire = True  # their own expirations are unknown until they reach the head
        if self.drops_head and self._over_limit():
            self._drop_over_limit()

    def _over_limit(self) -> bool:
        return (self.max_length is not None and len(self.messages) > self.max_length) or (
            self.max_bytes is not None and self.ready_bytes > self.max_bytes
        )

    def _drop_over_limit(self) -> None:
        """x-overflow drop-head: drop (dead-letter) from the head until within the limits."""
        dropped = []
        messages = self.messages
        while messages and self._over_limit():
            message = messages.popleft()[1]
            if self.max_bytes is not None:
                self.ready_bytes -= message.info.body_size
            dropped.append(message)
        self._discard(dropped, MAXLEN)

    def refuses(self, message: Message) -> bool:
        """x-overflow reject-publish(-dlx): True if `message` would take the queue over a limit."""
        size = message.info.body_size
        return (self.max_length is not None and len(self.messages) >= self.max_length) or (
            self.max_bytes is not None and self.ready_bytes + size > self.max_bytes
        )

    def deadline(self, message: Message, seq: int) -> int | None:
        """When `message` (enqueued as `seq`) expires in this queue (ms since the epoch),
        None if never."""
        ttl = self.ttl
        epochs = self.ttl_epochs
        if epochs and seq < epochs[-1][0]:
            ttl = ttl_of(epochs, seq)
        own = message.ttl
        if own is not None and (ttl is None or own < ttl):
            ttl = own
        return None if ttl is None else message.arrived + ttl

    def drop_expired(self, now: int | None = None) -> None:
        """Drop (dead-letter) expired messages at the head, then wait for the next deadline."""
        if not self.may_expire or self.deleted:
            return
        if now is None:
            now = self.clock.now()
        messages = self.messages
        expired: list[Message] = []
        deadline = self.deadline
        next_due: int | None = None
        # Only the head is looked at (for a priority queue: the head of its highest
        # non-empty level), as in RabbitMQ 3.x.
        while messages:
            seq, message, _ = messages[0]
            due = deadline(message, seq)
            if due is None or due > now:
                next_due = due
                break
            messages.popleft()
            expired.append(message)
        if expired:
            if self.max_bytes is not None:
                self.ready_bytes -= sum(message.info.body_size for message in expired)
            self._discard(expired, EXPIRED)
            if self.backlogged and len(messages) <= FLOW_LOW:
                self.release_publishers()
        if not messages and self.ttl is None:
            self.may_expire = False
        self._arm_expiry(next_due)

    def _arm_expiry(self, due: int | None) -> None:
        if due is None or (self._expiry_at is not None and self._expiry_at <= due):
            return
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        self._expiry_at = due
        self._expiry_timer = self.clock.call_at(due, self._expiry_due)

    def _expiry_due(self) -> None:
        self._expiry_timer = self._expiry_at = None
        self.drop_expired()

    def _discard(self, messages: list[Message], reason: str) -> None:
        """Messages leave for good: dead-lettered if the queue has a DLX, then settled."""
        if not messages:
            return
        if self.dlx is not None and self._dead_letter is not None:
            self._dead_letter(self, messages, reason)
        if self.store is not None:
            for message in messages:
                self.settled(message)

    def reject(self, message: Message) -> None:
        """A consumer rejected (or nacked) a delivered message without requeueing it."""
        self._discard([getattr(message, "origin", message)], REJECTED)

    def count(self) -> int:
        """Ready messages, as queue.declare-ok reports them (expired heads dropped first)."""
        if self.may_expire:
            self.drop_expired()
        return len(self.messages)

    def take(self) -> Entry | None:
        """The head message, for basic.get."""
        if self.expires is not None:
            self.touch()
        if self.extended or self.may_expire:
            entry = self._take_extended()
        elif not self.messages:
            entry = None
        else:
            entry = self.messages.popleft()
            if self.backlogged and len(self.messages) <= FLOW_LOW:
                self.release_publishers()
        if entry is None:
            self.vhost_stats.get_empty += 1
            self.stats.get_empty += 1
        else:
            self.get_count += 1
            self.vhost_stats.get += 1
        return entry

    def _take_extended(self) -> Entry | None:
        messages = self.messages
        while True:
            self.drop_expired()
            if not messages:
                return None
            entry = messages.popleft()
            message = entry[1]
            if self.max_bytes is not None:
                self.ready_bytes -= message.info.body_size
            if self.may_expire:
                due = self.deadline(message, entry[0])
                if due is not None and due <= self.clock.now():
                    self._discard([message], EXPIRED)
                    continue
            if self.backlogged and len(messages) <= FLOW_LOW:
                self.release_publishers()
            if self.quorum:
                return entry[0], counted_copy(message), entry[2]
            return entry

    def requeue(self, returned: Iterable[tuple[int, Message]]) -> None:
        """Put delivered messages back, ahead of newer ones, in original order, redelivered."""
        back = sorted(returned, key=lambda item: item[0])
        if not back or self.deleted:
            return
        if self.extended or self.may_expire or any(message.ttl is not None for _, message in back):
            self._requeue_extended(back)
            return
        newest = back[-1][0]
        messages = self.messages
        older: list[Entry] = []
        while messages and messages[0][0] < newest:
            older.append(messages.popleft())
        merged = [(seq, message, True) for seq, message in back]
        if older:
            merged = sorted(merged + older, key=lambda entry: entry[0])
        assert not isinstance(messages, PriorityMessages)  # a priority queue is always extended
        messages.extendleft(reversed(merged))
        self.kick()

    def _requeue_extended(self, back: list[tuple[int, Message]]) -> None:
        self.handover = False
        now = self.clock.now()
        kept: list[Entry] = []
        expired: list[Message] = []
        if self.quorum:
            back = self._count_returns(back)
        for seq, message in back:
            due = self.deadline(message, seq)
            if due is not None and due <= now:
                expired.append(message)  # its time ran out while it was out: not redelivered
            else:
                kept.append((seq, message, True))
                if due is not None:
                    self.may_expire = True
        self._discard(expired, EXPIRED)
        messages = self.messages
        if self.max_bytes is not None:
            self.ready_bytes += sum(entry[1].info.body_size for entry in kept)
        if isinstance(messages, PriorityMessages):
            messages.requeue(kept)
        elif kept:
            newest = kept[-1][0]
            older: list[Entry] = []
            while messages and messages[0][0] < newest:
                older.append(messages.popleft())
            merged = sorted(kept + older, key=lambda entry: entry[0]) if older else kept
            messages.extendleft(reversed(merged))
        if not self.rejects and self._over_limit():
            self._drop_over_limit()  # as RabbitMQ: requeued messages count against the limit
        if self.may_expire:
            self.drop_expired()
        self.kick()

    def _count_returns(self, back: list[tuple[int, Message]]) -> list[tuple[int, Message]]:
        """Quorum queues count every return; past x-delivery-limit a message is dead-lettered."""
        kept, over = count_returns(back, self.delivery_limit)
        self._discard(over, DELIVERY_LIMIT)
        return kept

    def purge(self) -> int:
        count = self.count() if self.may_expire else len(self.messages)
        self.messages.clear()
        self.ready_bytes = 0
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

    def add_consumer(self, consumer: Consumer, priority: int = 0) -> None:
        self.handover = False
        self.consumers.append(consumer)
        if priority:
            self.consumer_priorities[consumer] = priority
            self.extended = True
        self.had_consumer = True
        if self.lease is not None:
            self.lease.cancel()
        self.kick()

    def remove_consumer(self, consumer: Consumer) -> None:
        consumers = self.consumers
        if self.single_active and consumers and consumers[0] is consumer:
            self.handover = True
        try:
            consumers.remove(consumer)
        except ValueError:
            pass
        if self.consumer_priorities:
            self.consumer_priorities.pop(consumer, None)
        if not self.consumers:
            if self.backlogged:
                self.release_publishers()  # without consumers a queue never throttles
            if self.expires is not None:
                self.touch()
        # With x-single-active-consumer the next consumer in line becomes the active one;
        # as in RabbitMQ 3.10, it gets messages from the queue's next event (a publish,
        # a requeue, a new consumer: `handover` holds dispatch until then), not at once:
        # a client closing politely cancels first, and the requeue of its unacked
        # messages then reaches the new consumer first.

    def active_consumer(self) -> Consumer | None:
        """With x-single-active-consumer: the one consumer that gets messages."""
        return self.consumers[0] if self.consumers else None

    # -- queue expiry (x-expires) ---------------------------------------------------------

    def touch(self) -> None:
        """The queue was used: restart its x-expires lease if nobody consumes from it."""
        if self.lease is not None and not self.deleted:
            self.lease.renew(bool(self.consumers))

    def _lease_over(self) -> None:
        if not self.deleted and not self.consumers and self._unused is not None:
            self._unused(self)

    def use_clock(self, clock: Clock) -> None:
        """Take time from `clock` from now on (recovery loads messages on a stopped clock,
        then expires what ran out while the broker was down)."""
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        self._expiry_timer = self._expiry_at = None
        self.clock = clock
        if self.may_expire:
            self.drop_expired()

    def stop_timers(self) -> None:
        """The queue is gone: cancel its expiry and lease timers."""
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        if self.lease is not None:
            self.lease.cancel()
        self._expiry_timer = None
        self._expiry_at = None

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
        if self.extended or self.may_expire:
            self._dispatch_extended()
            return
        messages = self.messages
        consumers = self.consumers
        before = len(messages)
        if len(consumers) == 1:  # the common case: no round robin to keep
            consumers[0].deliver_run(self, messages)  # type: ignore[arg-type]
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
        self._count_deliveries(before - len(messages))
        if self.backlogged and len(messages) <= FLOW_LOW:
            self.release_publishers()

    def _count_deliveries(self, sent: int) -> None:
        """Statistics, once per dispatch pass."""
        if sent > 0:
            self.delivered_count += sent
            self.vhost_stats.deliver += sent

    def _dispatch_extended(self, now: int | None = None) -> None:
        """Dispatch with the extensions: expired messages are dropped as they are taken
        from the head, the consumer is chosen by `next_consumer` unless there is one."""
        if self.handover:
            return
        messages = self.messages
        if self.may_expire and now is None:
            now = self.clock.now()
        queue_ttl = self.ttl
        epochs = self.ttl_epochs
        consumers = self.consumers
        single = (
            len(consumers) == 1
            and not self.consumer_priorities
            and self.max_bytes is None
            and not self.quorum
        )
        sent = 0  # deliveries, for statistics (expired messages leave the queue too)
        if single:  # the common case, as in the plain dispatch: one consumer, no extras
            consumer = consumers[0]
            ready, deliver, popleft = consumer.ready, consumer.deliver, messages.popleft
            while messages and ready():
                seq, message, redelivered = popleft()
                if now is not None:
                    if message.ttl is None and not epochs:
                        due = None if queue_ttl is None else message.arrived + queue_ttl
                    else:
                        due = self.deadline(message, seq)
                    if due is not None and due <= now:
                        self._discard([message], EXPIRED)
                        continue
                deliver(self, seq, message, redelivered)
                sent += 1
                if not consumers or consumers[0] is not consumer:
                    break
        priorities = self.consumer_priorities
        single_active = self.single_active
        while messages and not single:
            consumer = next_consumer(consumers, priorities, single_active)
            if consumer is None:
                break
            seq, message, redelivered = messages.popleft()
            if self.max_bytes is not None:
                self.ready_bytes -= message.info.body_size
            if now is not None:
                if message.ttl is None and not epochs:
                    due = None if queue_ttl is None else message.arrived + queue_ttl
                else:
                    due = self.deadline(message, seq)
                if due is not None and due <= now:
                    self._discard([message], EXPIRED)
                    continue
            if self.quorum:
                message = counted_copy(message)
            consumer.deliver(self, seq, message, redelivered)
            sent += 1
        self._count_deliveries(sent)
        if self.backlogged and len(messages) <= FLOW_LOW:
            self.release_publishers()
        # A new head needs its timer; with a queue TTL only (deadlines in queue order) an
        # armed timer is never later than the new head's deadline.
        if (
            self.may_expire
            and messages
            and (self._expiry_timer is None or self.ttl is None or epochs)
        ):
            self.drop_expired(now)

    def release_publishers(self) -> None:
        """The backlog cleared (or the queue went away): wake the paused publishers."""
        self.backlogged = False
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            waiter(self)


def ttl_of(epochs: list[tuple[int, int | None]], seq: int) -> int | None:
    """The queue TTL a message enqueued as `seq` got: that of the first range (by end
    seq) it falls in (`Queue.configure` records one range per TTL change)."""
    for end, ttl in epochs:
        if seq < end:
            return ttl
    raise ValueError(seq)  # not reached: callers check seq < the last range's end
