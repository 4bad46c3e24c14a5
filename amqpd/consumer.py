"""A consumer as a channel sees it: the core's `Consumer` protocol bound to one channel.

`ready()` is the prefetch gate the dispatcher asks before every delivery: the channel must
be deliverable (not closing, its connection writable) and, for manual acks, both the
consumer's own window and the channel's global window (its `Deliveries`) must have room.
`deliver` tags the delivery in the channel's `Deliveries` and has the channel send
basic.deliver (built around frame parts cached per exchange and routing key) with the
content. The channel is seen through `ConsumerChannel`, no import.
A message whose evicted body cannot be read back (`Message.reload`) is not delivered:
`drop_lost` logs one line and settles it, as RabbitMQ drops a message its store lost.
"""

from __future__ import annotations

import logging
from typing import Protocol

from amqpd.channel_host import ChannelHost
from amqpd.core.message import Message
from amqpd.core.queue import Queue
from amqpd.deliveries import Deliveries
from amqpd.wire.methods import deliver_parts, shortstr

log = logging.getLogger("amqpd.consumer")


class ConsumerChannel(Protocol):
    """What a consumer needs of its channel."""

    number: int
    closing: bool
    host: ChannelHost

    def send_with_content(self, method_frame: bytes, message: Message) -> None: ...

    def send_delivery(
        self, parts: tuple[bytes, bytes], tag: int, redelivered: bool, message: Message
    ) -> None: ...

    def consumer_queue_deleted(self, consumer: ChannelConsumer) -> None: ...


class ChannelConsumer:
    __slots__ = (
        "tag",
        "tag_sstr",
        "queue",
        "channel",
        "deliveries",
        "no_ack",
        "exclusive",
        "prefetch",
        "unacked",
        "attached",
        "_deliver_parts",
    )

    def __init__(
        self,
        tag: str,
        queue: Queue,
        channel: ConsumerChannel,
        deliveries: Deliveries,
        *,
        no_ack: bool,
        exclusive: bool,
        prefetch: int,
    ) -> None:
        self.tag = tag
        self.tag_sstr = shortstr(tag)
        self.queue = queue
        self.channel = channel
        self.deliveries = deliveries
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.prefetch = prefetch
        self.unacked = 0  # deliveries not yet settled: the prefetch window's fill
        self.attached = True  # until cancelled, its queue deleted or its channel closed
        self._deliver_parts: dict[bytes, tuple[bytes, bytes]] = {}  # by exchange_rk

    def ready(self) -> bool:
        channel = self.channel
        if channel.closing or not channel.host.writable:
            return False
        if self.no_ack:
            return True
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        deliveries = self.deliveries
        limit = deliveries.global_prefetch
        return not limit or len(deliveries.unacked) < limit

    def frame_parts(self, exchange_rk: bytes) -> tuple[bytes, bytes]:
        """This consumer's basic.deliver frame around the tag and redelivered bit."""
        parts = deliver_parts(self.channel.number, self.tag_sstr, exchange_rk)
        if len(self._deliver_parts) < 64:
            self._deliver_parts[exchange_rk] = parts
        return parts

    def deliver(self, queue: Queue, seq: int, message: Message, redelivered: bool) -> None:
        if message.source is not None:  # evicted: read the body back before tagging
            error = message.reload()
            if error is not None:
                drop_lost(queue, message, error)
                return
        tag = self.deliveries.delivered(self, queue, seq, message, redelivered)
        exchange_rk = message.exchange_rk
        parts = self._deliver_parts.get(exchange_rk) or self.frame_parts(exchange_rk)
        self.channel.send_delivery(parts, tag, redelivered, message)

    def queue_deleted(self, queue: Queue) -> None:
        self.channel.consumer_queue_deleted(self)


def drop_lost(queue: Queue, message: Message, error: OSError) -> None:
    """A message taken from `queue` whose body is lost: log it, settle it, deliver nothing."""
    log.error(
        "queue '%s' in vhost '%s': dropped a message whose body is lost (%s)",
        queue.name,
        queue.vhost,
        error,
    )
    queue.settled(message)
