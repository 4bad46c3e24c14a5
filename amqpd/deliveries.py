"""Delivery tracking for one channel: delivery tags, unacked messages, prefetch windows.

`Deliveries` numbers every delivery and basic.get-ok of its channel (tags from 1), keeps
the ones awaiting an ack in tag order, and settles them on ack, nack, reject and recover
(`multiple` settles every tag up to the given one; tag 0 with `multiple` settles all).
Settled messages are released from the store; requeued ones go back to their queues ahead
of newer ones, in original order, and so does everything still unacked when the channel
closes (`release`). Each consumer counts its own unacked deliveries (its prefetch window);
`global_prefetch` limits the whole channel. An unknown tag is 406 PRECONDITION_FAILED.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from amqpd.core.errors import PRECONDITION_FAILED, ChannelError
from amqpd.core.message import Message
from amqpd.core.queue import Queue
from amqpd.core.stats import MessageStats


class Tracked(Protocol):
    """What the tracker needs of a consumer: its window counter and whether it is attached."""

    no_ack: bool
    unacked: int
    attached: bool
    queue: Queue


Unacked = tuple[Queue, int, Message, Tracked | None]  # queue, queue seq, message, consumer


class Deliveries:
    def __init__(self, stats: MessageStats | None = None) -> None:
        # The vhost's counters: auto-ack deliveries and gets are counted here.
        self.stats = stats if stats is not None else MessageStats()
        self.unacked: dict[int, Unacked] = {}  # by delivery tag, in tag order
        self.next_tag = 1
        self.prefetch = 0  # the window of consumers created from now on (basic.qos)
        self.global_prefetch = 0  # the window of the whole channel (basic.qos global)

    def qos(self, prefetch_count: int, global_: bool) -> None:
        if global_:
            self.global_prefetch = prefetch_count
        else:
            self.prefetch = prefetch_count

    def delivered(
        self, consumer: Tracked, queue: Queue, seq: int, message: Message, redelivered: bool
    ) -> int:
        """A consumer is given a message: its delivery tag."""
        tag = self.next_tag
        self.next_tag = tag + 1
        if redelivered:
            _count_redelivery(self.stats, queue)
        if consumer.no_ack:
            self.stats.deliver_no_ack += 1
            queue.stats.deliver_no_ack += 1
            if message.store_id:
                queue.settled(message)
        else:
            self.unacked[tag] = (queue, seq, message, consumer)
            consumer.unacked += 1
            if message.store_id and not redelivered:
                queue.delivered(message)
        return tag

    def got(self, queue: Queue, seq: int, message: Message, redelivered: bool, no_ack: bool) -> int:
        """basic.get took a message: its delivery tag."""
        tag = self.next_tag
        self.next_tag = tag + 1
        if redelivered:
            _count_redelivery(self.stats, queue)
        if no_ack:
            self.stats.get_no_ack += 1
            queue.stats.get_no_ack += 1
            queue.settled(message)
        else:
            self.unacked[tag] = (queue, seq, message, None)
            if not redelivered:
                queue.delivered(message)
        return tag

    def check_known(self, tag: int, multiple: bool) -> None:
        """Raise 406 unless a settle of (tag, multiple) would find something to settle."""
        if tag not in self.unacked and not (multiple and tag == 0):
            raise ChannelError(PRECONDITION_FAILED, f"unknown delivery tag {tag}")

    def settle(self, tag: int, multiple: bool, requeue: bool, rejected: bool = False) -> bool:
        """ack (requeue False), nack or reject: True if every consumer of the channel may
        have room now (global prefetch), else the queues that gained room are kicked.
        Messages `rejected` without requeue go to their queue's dead-letter exchange."""
        return self._settle(self._take(tag, multiple), requeue, rejected)

    def ack_one(self, tag: int) -> bool:
        """basic.ack of one delivery (multiple=false): `settle(tag, False, False)` without
        its lists and sets, the common case of consumers that ack each message."""
        return self.ack_run((tag,))

    def ack_run(self, tags: Sequence[int]) -> bool:
        """`ack_one` of each of `tags` in turn (an unknown one raises 406 after the acks
        before it), each consumer's queue kicked once; True as `ack_one`."""
        pop = self.unacked.pop
        touched: list[Tracked] = []
        last = None
        try:
            for tag in tags:
                entry = pop(tag, None)
                if entry is None:
                    raise ChannelError(PRECONDITION_FAILED, f"unknown delivery tag {tag}")
                queue, _seq, message, consumer = entry
                if message.store_id:
                    queue.settled(message)
                queue.stats.ack += 1
                if consumer is not None:
                    consumer.unacked -= 1
                    if consumer is not last:
                        last = consumer
                        touched.append(consumer)
        finally:
            if not self.global_prefetch:
                for consumer in touched:
                    if consumer.attached:
                        consumer.queue.kick()
        return bool(self.global_prefetch)

    def recover(self) -> bool:
        """basic.recover: requeue everything unacked; True as `settle`."""
        entries = list(self.unacked.values())
        self.unacked.clear()
        return self._settle(entries, requeue=True)

    def release(self) -> None:
        """The channel closed: requeue everything unacked."""
        unacked = self.unacked
        if unacked:
            entries = list(unacked.values())
            unacked.clear()
            _requeue(entries)

    def _take(self, tag: int, multiple: bool) -> list[Unacked]:
        unacked = self.unacked
        if multiple:
            if tag == 0:
                taken = list(unacked.values())
                unacked.clear()
                return taken
            if tag not in unacked:
                raise ChannelError(PRECONDITION_FAILED, f"unknown delivery tag {tag}")
            if next(reversed(unacked)) == tag:  # everything outstanding: the common case
                taken = list(unacked.values())
                unacked.clear()
                return taken
            tags = []
            for candidate in unacked:
                if candidate > tag:
                    break
                tags.append(candidate)
            return [unacked.pop(candidate) for candidate in tags]
        entry = unacked.pop(tag, None)
        if entry is None:
            raise ChannelError(PRECONDITION_FAILED, f"unknown delivery tag {tag}")
        return [entry]

    def _settle(self, entries: list[Unacked], requeue: bool, rejected: bool = False) -> bool:
        kicked: set[Queue] = set()
        last = None
        for queue, _seq, message, consumer in entries:
            if consumer is not None:
                consumer.unacked -= 1
                if consumer is not last:  # runs of one consumer's deliveries are common
                    last = consumer
                    if consumer.attached:
                        kicked.add(consumer.queue)
            if not requeue:
                if rejected and queue.dlx is not None:
                    queue.reject(message)
                elif message.store_id:
                    queue.settled(message)
                if not rejected:
                    queue.stats.ack += 1
        if requeue:
            _requeue(entries)
        if self.global_prefetch:
            return True
        for queue in kicked:
            queue.kick()
        return False


def _count_redelivery(stats: MessageStats, queue: Queue) -> None:
    stats.redeliver += 1
    queue.stats.redeliver += 1


def _requeue(entries: list[Unacked]) -> None:
    by_queue: dict[Queue, list[tuple[int, Message]]] = {}
    for queue, seq, message, _consumer in entries:
        by_queue.setdefault(queue, []).append((seq, message))
    for queue, returned in by_queue.items():
        queue.requeue(returned)
