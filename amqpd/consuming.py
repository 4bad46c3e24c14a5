"""The consuming half of a channel: qos, consumers, deliveries and settling them.

`ConsumingMixin` is mixed into `Channel`. It registers consumers on queues (the queue's
dispatcher then calls `deliver`), answers basic.get, tracks every delivery awaiting an ack
by its per-channel delivery tag, and settles them on ack, nack, reject and recover:
requeued messages go back to their queues ahead of newer ones, in original order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from pamqp import base, commands

from amqpd.consumer import ChannelConsumer
from amqpd.core.arguments import validate_consumer_arguments
from amqpd.core.errors import (
    ACCESS_REFUSED,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    ChannelError,
    ConnectionError_,
    describe_queue,
)
from amqpd.core.message import Message
from amqpd.core.naming import generated_consumer_tag
from amqpd.core.queue import Queue
from amqpd.core.vhost import VHost
from amqpd.wire.methods import encode_get_ok

if TYPE_CHECKING:
    from amqpd.auth import Access
    from amqpd.channel import ChannelHost

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
Unacked = tuple[Queue, int, Message, ChannelConsumer | None]


class ConsumingMixin:
    # State created by Channel.__init__.
    number: int
    host: ChannelHost
    vhost: VHost
    access: Access
    open: bool
    closing: bool
    consumers: dict[str, ChannelConsumer]
    unacked: dict[int, Unacked]
    next_tag: int
    prefetch: int
    global_prefetch: int
    transactional: bool
    tx_actions: list[Callable[[], None]]

    if TYPE_CHECKING:

        def reply(self, method: base.Frame) -> None: ...

        def _send_with_content(self, method_frame: bytes, message: Message) -> None: ...

        def _queue_name(self, name: str) -> str: ...

    def _on_qos(self, args: commands.Basic.Qos) -> None:
        if args.prefetch_size:
            raise ConnectionError_(NOT_IMPLEMENTED, f"prefetch_size!=0 ({args.prefetch_size})")
        if args.global_:
            self.global_prefetch = args.prefetch_count
        else:
            self.prefetch = args.prefetch_count
        self.reply(commands.Basic.QosOk())
        self.kick_consumers()

    def _on_consume(self, args: commands.Basic.Consume) -> None:
        if args.queue == DIRECT_REPLY_TO and not args.no_ack:
            raise ChannelError(PRECONDITION_FAILED, "reply consumer cannot acknowledge")
        name = self._queue_name(args.queue)
        self.access.check("read", "queue", name)
        queue = self.vhost.queue(name, self.host)
        validate_consumer_arguments(queue.name, self.vhost.name, args.arguments or {})
        tag = args.consumer_tag or generated_consumer_tag()
        if tag in self.consumers:
            raise ConnectionError_(NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'")
        if queue.has_exclusive_consumer() or (args.exclusive and queue.consumers):
            raise ChannelError(
                ACCESS_REFUSED, f"{describe_queue(queue.name, queue.vhost)} in exclusive use"
            )
        consumer = ChannelConsumer(
            tag,
            queue,
            self,
            no_ack=args.no_ack,
            exclusive=args.exclusive,
            prefetch=self.prefetch,
        )
        self.consumers[tag] = consumer
        if not args.nowait:
            self.reply(commands.Basic.ConsumeOk(consumer_tag=tag))
        queue.add_consumer(consumer)

    def _on_cancel(self, args: commands.Basic.Cancel) -> None:
        consumer = self.consumers.pop(args.consumer_tag, None)
        if consumer is not None:
            self._detach(consumer)
        if not args.nowait:
            self.reply(commands.Basic.CancelOk(consumer_tag=args.consumer_tag))

    def _detach(self, consumer: ChannelConsumer) -> None:
        queue = consumer.queue
        queue.remove_consumer(consumer)
        self.vhost.consumer_removed(queue)

    def consumer_queue_deleted(self, consumer: ChannelConsumer) -> None:
        """The queue went away under a consumer: drop it, tell the client if it listens."""
        if self.consumers.pop(consumer.tag, None) is None:
            return
        if self.host.cancel_notify and not self.closing:
            self.reply(commands.Basic.Cancel(consumer_tag=consumer.tag, nowait=True))

    def kick_consumers(self) -> None:
        for consumer in self.consumers.values():
            consumer.queue.kick()

    def deliver(
        self,
        consumer: ChannelConsumer,
        queue: Queue,
        seq: int,
        message: Message,
        redelivered: bool,
    ) -> None:
        tag = self.next_tag
        self.next_tag = tag + 1
        if consumer.no_ack:
            if message.store_id:
                queue.settled(message)
        else:
            self.unacked[tag] = (queue, seq, message, consumer)
            consumer.unacked += 1
            if message.store_id and not redelivered:
                queue.delivered(message)
        self._send_with_content(
            consumer.deliver_frame(tag, redelivered, message.exchange_rk), message
        )

    def _on_get(self, args: commands.Basic.Get) -> None:
        name = self._queue_name(args.queue)
        self.access.check("read", "queue", name)
        queue = self.vhost.queue(name, self.host)
        entry = queue.take()
        if entry is None:
            self.reply(commands.Basic.GetEmpty())
            return
        seq, message, redelivered = entry
        tag = self.next_tag
        self.next_tag = tag + 1
        if args.no_ack:
            queue.settled(message)
        else:
            self.unacked[tag] = (queue, seq, message, None)
            if not redelivered:
                queue.delivered(message)
        self._send_with_content(
            encode_get_ok(self.number, tag, redelivered, message.exchange_rk, len(queue.messages)),
            message,
        )

    def _take_unacked(self, tag: int, multiple: bool) -> list[Unacked]:
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
            taken = []
            for candidate in unacked:
                if candidate > tag:
                    break
                taken.append(candidate)
            return [unacked.pop(candidate) for candidate in taken]
        entry = unacked.pop(tag, None)
        if entry is None:
            raise ChannelError(PRECONDITION_FAILED, f"unknown delivery tag {tag}")
        return [entry]

    def _settle(self, entries: list[Unacked], requeue: bool) -> None:
        kicked: set[Queue] = set()
        last = None
        for queue, _seq, message, consumer in entries:
            if consumer is not None:
                consumer.unacked -= 1
                if consumer is not last:  # runs of one consumer's deliveries are common
                    last = consumer
                    if consumer.tag in self.consumers:
                        kicked.add(consumer.queue)
            if message.store_id and not requeue:
                queue.settled(message)
        if requeue:
            self._requeue(entries)
        if self.global_prefetch:
            self.kick_consumers()
        else:
            for queue in kicked:
                queue.kick()

    def _requeue(self, entries: Iterable[Unacked]) -> None:
        by_queue: dict[Queue, list[tuple[int, Message]]] = {}
        for queue, seq, message, _consumer in entries:
            by_queue.setdefault(queue, []).append((seq, message))
        for queue, returned in by_queue.items():
            queue.requeue(returned)

    def _settle_later_or_now(self, tag: int, multiple: bool, requeue: bool) -> None:
        if self.transactional:
            self._check_known(tag, multiple)
            self.tx_actions.append(lambda: self._settle(self._take_unacked(tag, multiple), requeue))
            return
        self._settle(self._take_unacked(tag, multiple), requeue)

    def _check_known(self, tag: int, multiple: bool) -> None:
        if tag not in self.unacked and not (multiple and tag == 0):
            raise ChannelError(PRECONDITION_FAILED, f"unknown delivery tag {tag}")

    def _on_ack(self, args: tuple[int, bool]) -> None:
        tag, multiple = args
        self._settle_later_or_now(tag, multiple, requeue=False)

    def _on_reject(self, args: tuple[int, bool]) -> None:
        tag, requeue = args
        self._settle_later_or_now(tag, False, requeue)

    def _on_nack(self, args: tuple[int, bool, bool]) -> None:
        tag, multiple, requeue = args
        self._settle_later_or_now(tag, multiple, requeue)

    def _on_recover(self, args: commands.Basic.Recover) -> None:
        if not args.requeue:
            raise ConnectionError_(NOT_IMPLEMENTED, "requeue=false")
        entries = list(self.unacked.values())
        self.unacked.clear()
        self._settle(entries, requeue=True)
        if isinstance(args, commands.Basic.Recover):
            self.reply(commands.Basic.RecoverOk())
