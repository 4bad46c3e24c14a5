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
from collections import deque
from typing import Protocol

from amqpd.channel_host import ChannelHost
from amqpd.core.message import Message
from amqpd.core.queue import Entry, Queue
from amqpd.deliveries import Deliveries
from amqpd.wire.content import content_frames
from amqpd.wire.methods import (
    deliver_parts,
    deliver_small,
    join_delivery,
    pack_tag_bits,
    shortstr,
)

log = logging.getLogger("amqpd.consumer")

# Bytes of deliveries `deliver_run` gathers before handing them to the connection (which
# stops deliveries for the tick once its output passes its high-water mark).
RUN_BYTES = 1 << 16


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

    def deliver_run(self, queue: Queue, messages: deque[Entry]) -> None:
        """Deliver from the head of `messages` while `ready()`: what `deliver` of each would
        do, with the frames handed to the connection once per RUN_BYTES and the auto-ack
        counts added once. Messages needing more (evicted, redelivered) take `deliver`."""
        channel = self.channel
        host = channel.host
        if channel.closing or not host.writable:
            return
        deliveries = self.deliveries
        unacked = deliveries.unacked
        no_ack = self.no_ack
        prefetch = 0 if no_ack else self.prefetch
        limit = 0 if no_ack else deliveries.global_prefetch
        number = channel.number
        frame_max = host.frame_max
        parts_of = self._deliver_parts.get
        popleft = messages.popleft
        out: list[bytes] = []
        size = taken = 0
        while messages:
            if prefetch and self.unacked >= prefetch:
                break
            if limit and len(unacked) >= limit:
                break
            seq, message, redelivered = popleft()
            if redelivered or message.source is not None:
                if out:
                    host.send_many(out, size)
                    out, size = [], 0
                self.deliver(queue, seq, message, redelivered)
                if not self.attached or channel.closing or not host.writable:
                    break
                continue
            tag = deliveries.next_tag
            deliveries.next_tag = tag + 1
            if no_ack:
                taken += 1
                if message.store_id:
                    queue.settled(message)
            else:
                unacked[tag] = (queue, seq, message, self)
                self.unacked += 1
                if message.store_id:
                    queue.delivered(message)
            exchange_rk = message.exchange_rk
            parts = parts_of(exchange_rk) or self.frame_parts(exchange_rk)
            # `_body`: resident (no `source`, checked above); the property would cost a call.
            body: bytes = message._body  # type: ignore[assignment]
            data = deliver_small(parts[0], tag, parts[1], number, message.header, body, frame_max)
            if data is not None:
                out.append(data)
                size += len(data)
                if size >= RUN_BYTES:
                    host.send_many(out, size)
                    out, size = [], 0
                    if not host.writable:
                        break
                continue
            framed = message.framed
            if framed is None or framed[0] != number or framed[1] != frame_max:
                content, content_size = content_frames(number, message.header, body, frame_max)
                framed = message.framed = (number, frame_max, content, content_size)
            pieces = framed[2]
            if len(pieces) == 1:
                data = join_delivery(parts[0], tag, False, parts[1], pieces[0])
                out.append(data)
                size += len(data)
            else:
                method_frame = parts[0] + pack_tag_bits(tag, False) + parts[1]
                out.append(method_frame)
                out += pieces
                size += len(method_frame) + framed[3]
            if size >= RUN_BYTES:
                host.send_many(out, size)
                out, size = [], 0
                if not host.writable:
                    break
        if out:
            host.send_many(out, size)
        if taken:
            deliveries.stats.deliver_no_ack += taken
            queue.stats.deliver_no_ack += taken

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
