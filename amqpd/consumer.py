"""A consumer as a channel sees it: the core's `Consumer` protocol bound to one channel.

`ready()` is the prefetch gate the dispatcher asks before every delivery: the channel must
be deliverable (not closing, its connection writable) and, for manual acks, both the consumer's
own window and the channel's global window must have room.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqpd.core.message import Message
from amqpd.core.queue import Queue
from amqpd.wire.methods import deliver_parts, pack_tag_bits, shortstr

if TYPE_CHECKING:
    from amqpd.channel import Channel


class ChannelConsumer:
    __slots__ = (
        "tag",
        "tag_sstr",
        "queue",
        "channel",
        "no_ack",
        "exclusive",
        "prefetch",
        "unacked",
        "_deliver_parts",
    )

    def __init__(
        self,
        tag: str,
        queue: Queue,
        channel: Channel,
        *,
        no_ack: bool,
        exclusive: bool,
        prefetch: int,
    ) -> None:
        self.tag = tag
        self.tag_sstr = shortstr(tag)
        self.queue = queue
        self.channel = channel
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.prefetch = prefetch
        self.unacked = 0
        self._deliver_parts: dict[bytes, tuple[bytes, bytes]] = {}  # by exchange_rk

    def ready(self) -> bool:
        channel = self.channel
        if channel.closing or not channel.host.writable:
            return False
        if self.no_ack:
            return True
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        limit = channel.global_prefetch
        return not limit or len(channel.unacked) < limit

    def deliver_frame(self, tag: int, redelivered: bool, exchange_rk: bytes) -> bytes:
        """This consumer's basic.deliver frame for one delivery."""
        parts = self._deliver_parts.get(exchange_rk)
        if parts is None:
            parts = deliver_parts(self.channel.number, self.tag_sstr, exchange_rk)
            if len(self._deliver_parts) < 64:
                self._deliver_parts[exchange_rk] = parts
        return parts[0] + pack_tag_bits(tag, redelivered) + parts[1]

    def deliver(self, queue: Queue, seq: int, message: Message, redelivered: bool) -> None:
        self.channel.deliver(self, queue, seq, message, redelivered)

    def queue_deleted(self, queue: Queue) -> None:
        self.channel.consumer_queue_deleted(self)
