"""One AMQP channel: method dispatch, topology replies, held replies, and its parts.

The connection hands a channel its decoded methods (`handle_method`) and content frames
(`handle_header`, `handle_body`); the channel calls the vhost for every change and writes
its replies through the `ChannelHost` (the connection), never a socket. Errors are raised
as `ChannelError` / `ConnectionError_`; the connection turns them into close methods.

A channel owns small parts, each with its own state: `ContentAssembler` (publish + content
frames -> message), `Deliveries` (tags, unacked, prefetch windows, settling), `TxBuffer`
(tx mode) and `Confirms` (confirm mode). Replies that promise durability (topology changes
of durable things, tx.commit-ok) and confirms wait for the vhost's `Durability`
(core/durability.py says when they go out), in order: a later reply never overtakes one held.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from pamqp import base, commands

from amqpd.assembler import ContentAssembler
from amqpd.channel_host import ChannelHost
from amqpd.consumer import ChannelConsumer, drop_lost
from amqpd.core.arguments import validate_consumer_arguments
from amqpd.core.durability import READY, WAIT_FIRST, Confirms
from amqpd.core.errors import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    NOT_ALLOWED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    ChannelError,
    ConnectionError_,
    describe_exchange,
    describe_queue,
)
from amqpd.core.message import Message
from amqpd.core.naming import generated_consumer_tag, generated_queue_name
from amqpd.core.queue import Queue
from amqpd.core.reply_to import REPLY_TO
from amqpd.core.table import replace_reply_to, reply_to_of
from amqpd.deliveries import Deliveries
from amqpd.transactions import TxBuffer
from amqpd.wire.content import content_frames
from amqpd.wire.methods import (
    ACCESS_REQUEST,
    BASIC_ACK,
    BASIC_NACK,
    BASIC_PUBLISH,
    BASIC_REJECT,
    deliver_small,
    encode_access_request_ok,
    encode_confirm,
    encode_get_ok,
    encode_method,
    join_delivery,
    pack_tag_bits,
    unvalidated,
)

__all__ = ["Channel", "ChannelHost"]

DIRECT_REPLY_TO = REPLY_TO
_REPLY_TO_FLAG = 0x02  # the reply-to property bit in the first byte of the property flags
_REPLY_TO = REPLY_TO.encode()

# Methods whose reply promises a durable change (when the entities involved are durable):
# topology changes, and tx.commit of persistent messages.
DURABLE_REPLY_METHODS = frozenset(
    method.index
    for method in (
        commands.Exchange.Declare,
        commands.Exchange.Delete,
        commands.Exchange.Bind,
        commands.Exchange.Unbind,
        commands.Queue.Declare,
        commands.Queue.Bind,
        commands.Queue.Unbind,
        commands.Queue.Purge,
        commands.Queue.Delete,
        commands.Tx.Commit,
    )
)


class Channel:
    def __init__(self, number: int, host: ChannelHost) -> None:
        self.number = number
        self.host = host
        self.vhost = host.vhost
        self.access = host.access
        self.durability = host.vhost.durability
        self.open = True
        self.closing = False  # we sent channel.close and wait for close-ok
        self.consumers: dict[str, ChannelConsumer] = {}
        self.deliveries = Deliveries(host.vhost.stats)
        self.content = ContentAssembler(host.user, host.max_message_size, self._on_content)
        # The connection feeds content frames straight to the assembler.
        self.handle_header: Callable[[bytes], None] = self.content.header
        self.handle_body: Callable[[bytes], None] = self.content.body
        self.tx = TxBuffer()
        self.confirms: Confirms | None = None  # set by confirm.select
        self.last_queue = ""
        self.reply_queue: Queue | None = None  # this channel's direct reply-to pseudo-queue
        self._last_target: Any = None  # the exchange of the last publish, checked
        self._holding = False  # collecting the replies of a topology method
        self._held_now: list[bytes] = []
        self._held: deque[tuple[int, list[bytes]]] = deque()  # (store ticket, reply frames)
        self._handlers: dict[int, Callable[[Any], None]] = {
            commands.Channel.Flow.index: self._on_flow,
            ACCESS_REQUEST: self._on_access_request,
            commands.Exchange.Declare.index: self._on_exchange_declare,
            commands.Exchange.Delete.index: self._on_exchange_delete,
            commands.Exchange.Bind.index: self._on_exchange_bind,
            commands.Exchange.Unbind.index: self._on_exchange_unbind,
            commands.Queue.Declare.index: self._on_queue_declare,
            commands.Queue.Bind.index: self._on_queue_bind,
            commands.Queue.Unbind.index: self._on_queue_unbind,
            commands.Queue.Purge.index: self._on_queue_purge,
            commands.Queue.Delete.index: self._on_queue_delete,
            commands.Basic.Qos.index: self._on_qos,
            commands.Basic.Consume.index: self._on_consume,
            commands.Basic.Cancel.index: self._on_cancel,
            BASIC_PUBLISH: self._on_publish,
            commands.Basic.Get.index: self._on_get,
            BASIC_ACK: self._on_ack,
            BASIC_REJECT: self._on_reject,
            BASIC_NACK: self._on_nack,
            commands.Basic.Recover.index: self._on_recover,
            commands.Basic.RecoverAsync.index: self._on_recover,
            commands.Tx.Select.index: self._on_tx_select,
            commands.Tx.Commit.index: self._on_tx_commit,
            commands.Tx.Rollback.index: self._on_tx_rollback,
            commands.Confirm.Select.index: self._on_confirm_select,
        }

    # -- output -------------------------------------------------------------------------

    def reply(self, method: base.Frame) -> None:
        frame = encode_method(self.number, method)
        if self._holding:
            self._held_now.append(frame)
        elif self._held:
            self._held.append((0, [frame]))  # never overtake a reply still held
        else:
            self.host.send(frame)

    def send_with_content(self, method_frame: bytes, message: Message) -> None:
        """A method frame followed by the message's content frames for this channel."""
        number = self.number
        frame_max = self.host.frame_max
        framed = message.framed
        if framed is None or framed[0] != number or framed[1] != frame_max:
            content, size = content_frames(number, message.header, message.body, frame_max)
            framed = (number, frame_max, content, size)
            message.framed = framed
        self.host.send_many([method_frame, *framed[2]], len(method_frame) + framed[3])

    def send_delivery(
        self, parts: tuple[bytes, bytes], tag: int, redelivered: bool, message: Message
    ) -> None:
        """basic.deliver (`parts` around the tag and redelivered bit) and the content, as
        `send_with_content`, in one buffer when the content is one piece."""
        number = self.number
        host = self.host
        frame_max = host.frame_max
        if not redelivered:
            data = deliver_small(
                parts[0], tag, parts[1], number, message.header, message.body, frame_max
            )
            if data is not None:
                host.send(data)
                return
        framed = message.framed
        if framed is None or framed[0] != number or framed[1] != frame_max:
            content, size = content_frames(number, message.header, message.body, frame_max)
            framed = (number, frame_max, content, size)
            message.framed = framed
        pieces = framed[2]
        if len(pieces) == 1:
            host.send(join_delivery(parts[0], tag, redelivered, parts[1], pieces[0]))
        else:
            method_frame = parts[0] + pack_tag_bits(tag, redelivered) + parts[1]
            host.send_many([method_frame, *pieces], len(method_frame) + framed[3])

    # -- dispatch and durable replies ---------------------------------------------------

    @property
    def expecting_content(self) -> bool:
        return self.content.expecting

    def expected_content_text(self) -> str:
        return self.content.expected_text()

    def handle_method(self, index: int, args: Any) -> None:
        handler = self._handlers.get(index)
        if handler is None:
            raise ConnectionError_(COMMAND_INVALID, "unimplemented method", index)
        store = self.vhost.store
        if index not in DURABLE_REPLY_METHODS or store is None:
            handler(args)
            return
        # Such a reply promises the change survives a crash: hold it until the store says
        # the change is on disk.
        before = store.ticket
        self._holding = True
        try:
            handler(args)
        finally:
            self._holding = False
            frames, self._held_now = self._held_now, []  # an error sends none of them
        ticket = store.ticket if store.ticket != before else 0
        if self._held or ticket > self.durability.ticket:
            self._held.append((ticket, frames))
            self.durability.wait(self)
        else:
            self.host.send_many(frames)

    def durable_advanced(self) -> bool:
        """The store made more durable: send the replies and confirms now due.
        True while the channel still waits for something."""
        durable = self.durability.ticket
        held = self._held
        while held and held[0][0] <= durable:
            self.host.send_many(held.popleft()[1])
        confirms = self.confirms
        waiting = False
        if confirms is not None:
            if confirms.advance(durable):
                self.host.request_flush(self)
            waiting = confirms.pending
        return (waiting or bool(held)) and self.open

    def flush_confirms(self) -> None:
        """Send one ack covering every publish confirmed since the last flush."""
        confirms = self.confirms
        if confirms is not None and self.open and not self.closing:
            before = confirms.sent
            for tag, multiple, ack in confirms.take():
                self.host.send(encode_confirm(self.number, tag, multiple, ack))
            self.vhost.stats.confirm += confirms.sent - before

    # -- channel, exchange and queue methods --------------------------------------------

    def _on_flow(self, args: commands.Channel.Flow) -> None:
        if not args.active:
            raise ConnectionError_(NOT_IMPLEMENTED, "active=false")
        self.reply(commands.Channel.FlowOk(active=True))

    def _on_access_request(self, args: Any) -> None:
        self.host.send(encode_access_request_ok(self.number))

    def _on_exchange_declare(self, args: commands.Exchange.Declare) -> None:
        if not args.passive:
            self.access.check("configure", "exchange", args.exchange)
        self.vhost.declare_exchange(
            args.exchange,
            args.exchange_type,
            passive=args.passive,
            durable=args.durable,
            auto_delete=args.auto_delete,
            internal=args.internal,
            arguments=args.arguments,
        )
        if not args.nowait:
            self.reply(commands.Exchange.DeclareOk())

    def _on_exchange_delete(self, args: commands.Exchange.Delete) -> None:
        self.vhost.check_deletable_exchange(args.exchange)
        self.access.check("configure", "exchange", args.exchange)
        self.vhost.delete_exchange(args.exchange, if_unused=args.if_unused)
        if not args.nowait:
            self.reply(commands.Exchange.DeleteOk())

    def _on_exchange_bind(self, args: commands.Exchange.Bind) -> None:
        self.access.check("write", "exchange", args.destination)
        self.access.check("read", "exchange", args.source)
        self.vhost.bind_exchange(
            args.destination, args.source, args.routing_key, args.arguments or {}
        )
        if not args.nowait:
            self.reply(commands.Exchange.BindOk())

    def _on_exchange_unbind(self, args: commands.Exchange.Unbind) -> None:
        self.access.check("write", "exchange", args.destination)
        self.access.check("read", "exchange", args.source)
        self.vhost.unbind_exchange(
            args.destination, args.source, args.routing_key, args.arguments or {}
        )
        if not args.nowait:
            self.reply(commands.Exchange.UnbindOk())

    def _queue_name(self, name: str) -> str:
        """An empty queue name means the last queue this channel declared."""
        if name:
            return name
        if not self.last_queue:
            raise ChannelError(NOT_FOUND, "no previously declared queue")
        return self.last_queue

    def _on_queue_declare(self, args: commands.Queue.Declare) -> None:
        name = args.queue
        server_named = not name and not args.passive
        if args.passive:
            name = self._queue_name(name)
        else:
            if server_named:
                name = generated_queue_name()
            elif name != DIRECT_REPLY_TO:
                self.vhost.check_queue_name(name)
            self.access.check("configure", "queue", name)
            dlx = (args.arguments or {}).get("x-dead-letter-exchange")
            if isinstance(dlx, str | bytes):  # as RabbitMQ: read the queue, write the DLX
                self.access.check("read", "queue", name)
                dlx_name = dlx.decode(errors="replace") if isinstance(dlx, bytes) else dlx
                self.access.check("write", "exchange", dlx_name or "amq.default")
        queue = self.vhost.declare_queue(
            name,
            owner=self.host,
            server_named=server_named,
            passive=args.passive,
            durable=args.durable,
            exclusive=args.exclusive,
            auto_delete=args.auto_delete,
            arguments=args.arguments,
        )
        self.last_queue = queue.name
        if not args.nowait:
            self.reply(
                unvalidated(
                    commands.Queue.DeclareOk,
                    queue=queue.name,
                    message_count=len(queue.messages),
                    consumer_count=len(queue.consumers),
                )
            )

    def _on_queue_bind(self, args: commands.Queue.Bind) -> None:
        name = self._queue_name(args.queue)
        routing_key = args.routing_key if args.routing_key or args.queue else name
        self.access.check("write", "queue", name)
        self.vhost.check_not_default(args.exchange)
        self.access.check("read", "exchange", args.exchange)
        self.vhost.bind_queue(name, args.exchange, routing_key, args.arguments or {}, self.host)
        if not args.nowait:
            self.reply(commands.Queue.BindOk())

    def _on_queue_unbind(self, args: commands.Queue.Unbind) -> None:
        name = self._queue_name(args.queue)
        self.access.check("write", "queue", name)
        self.vhost.check_not_default(args.exchange)
        self.access.check("read", "exchange", args.exchange)
        self.vhost.unbind_queue(
            name, args.exchange, args.routing_key, args.arguments or {}, self.host
        )
        self.reply(commands.Queue.UnbindOk())

    def _on_queue_purge(self, args: commands.Queue.Purge) -> None:
        name = self._queue_name(args.queue)
        self.access.check("read", "queue", name)
        count = self.vhost.purge_queue(name, self.host)
        if not args.nowait:
            self.reply(commands.Queue.PurgeOk(message_count=count))

    def _on_queue_delete(self, args: commands.Queue.Delete) -> None:
        name = self._queue_name(args.queue)
        self.access.check("configure", "queue", name)
        count = self.vhost.delete_queue(
            name, owner=self.host, if_unused=args.if_unused, if_empty=args.if_empty
        )
        if not args.nowait:
            self.reply(commands.Queue.DeleteOk(message_count=count))

    # -- publishing ---------------------------------------------------------------------

    def _on_publish(self, args: tuple[str, str, bool, bool]) -> None:
        exchange_name, routing_key, mandatory, immediate = args
        if immediate:
            raise ConnectionError_(NOT_IMPLEMENTED, "immediate=true", BASIC_PUBLISH)
        self.content.start(exchange_name, routing_key, mandatory)
        if not self.host.publisher:
            self.host.became_publisher()

    def publish_whole(self, parts: tuple[bytes, bytes, bytes]) -> bool:
        """A basic.publish with its content header and whole body (`parts`, the three
        payloads), as one step: False, having done nothing, when it must take the
        frame-by-frame path instead."""
        content = self.content
        message = content.whole(parts)
        if message is None:
            return False
        if not self.host.publisher:
            self.host.became_publisher()
        exchange = self._last_target  # `_on_content`, inlined for the usual publish
        if (
            exchange is None
            or message.header[12] & _REPLY_TO_FLAG
            or exchange.name != message.exchange
            or exchange.deleted
            or self.tx.active
        ):
            self._on_content(message, content.mandatory)
        else:
            self._route(exchange, message, content.mandatory)
        return True

    def _on_content(self, message: Message, mandatory: bool) -> None:
        """A publish is complete: route it now, or at tx.commit."""
        if message.header[12] & _REPLY_TO_FLAG and reply_to_of(message.header) == _REPLY_TO:
            self._direct_reply_to(message)
        exchange = self._last_target
        if exchange is None or exchange.name != message.exchange or exchange.deleted:
            exchange = self._publish_target(message.exchange)  # publishers mostly repeat it
        if self.tx.active:
            self.tx.add(lambda: self._route(exchange, message, mandatory))
            return
        self._route(exchange, message, mandatory)

    def _direct_reply_to(self, message: Message) -> None:
        """A request asking for a direct reply: name this channel's pseudo-queue in it."""
        if self.reply_queue is None:
            raise ChannelError(PRECONDITION_FAILED, "fast reply consumer does not exist")
        message.header = replace_reply_to(message.header, self.reply_queue.name)

    def _publish_target(self, exchange_name: str) -> Any:
        last = self._last_target
        if last is not None and last.name == exchange_name and not last.deleted:
            return last  # checked already: publishers mostly repeat their exchange
        self.access.check("write", "exchange", exchange_name or "amq.default")
        exchange = self.vhost.exchanges.get(exchange_name)
        if exchange is None:
            raise ChannelError(NOT_FOUND, f"no {describe_exchange(exchange_name, self.vhost.name)}")
        if exchange.internal:
            raise ChannelError(
                ACCESS_REFUSED,
                f"cannot publish to internal {describe_exchange(exchange_name, self.vhost.name)}",
            )
        self._last_target = exchange
        return exchange

    def _route(self, exchange: Any, message: Message, mandatory: bool) -> None:
        vhost = self.vhost
        queues, ticket = vhost.publish(exchange, message)
        if not queues:
            if mandatory:
                vhost.stats.return_unroutable += 1
                self._return(message, 312, "NO_ROUTE")
            else:
                vhost.stats.drop_unroutable += 1
        elif len(queues) == 1:
            if queues[0].backlogged:
                self.host.throttle(queues)
        else:
            for queue in queues:  # (a loop: cheaper than building the list for nothing)
                if queue.backlogged:
                    self.host.throttle([queue for queue in queues if queue.backlogged])
                    break
        confirms = self.confirms
        if confirms is not None:
            durability = self.durability
            refused = vhost.refused if vhost.rejecting else False
            state = confirms.insert(ticket, durability.ticket, refused)
            if state == READY:
                self.host.request_flush(self)
            elif state == WAIT_FIRST:
                durability.wait(self)

    def _return(self, message: Message, code: int, text: str) -> None:
        self.send_with_content(
            encode_method(
                self.number,
                unvalidated(
                    commands.Basic.Return,
                    reply_code=code,
                    reply_text=text,
                    exchange=message.exchange,
                    routing_key=message.routing_key,
                ),
            ),
            message,
        )

    def _on_confirm_select(self, args: commands.Confirm.Select) -> None:
        if self.tx.active:
            raise ChannelError(PRECONDITION_FAILED, "cannot switch from tx to confirm mode")
        if self.confirms is None:
            self.confirms = Confirms()
        if not args.nowait:
            self.reply(commands.Confirm.SelectOk())

    def _on_tx_select(self, args: commands.Tx.Select) -> None:
        if self.confirms is not None:
            raise ChannelError(PRECONDITION_FAILED, "cannot switch from confirm to tx mode")
        self.tx.select()
        self.reply(commands.Tx.SelectOk())

    def _on_tx_commit(self, args: commands.Tx.Commit) -> None:
        self.tx.commit()
        self.reply(commands.Tx.CommitOk())

    def _on_tx_rollback(self, args: commands.Tx.Rollback) -> None:
        self.tx.rollback()  # publishes dropped; acks never taken, so still unacked
        self.reply(commands.Tx.RollbackOk())

    # -- consuming ----------------------------------------------------------------------

    def _on_qos(self, args: commands.Basic.Qos) -> None:
        if args.prefetch_size:
            raise ConnectionError_(NOT_IMPLEMENTED, f"prefetch_size!=0 ({args.prefetch_size})")
        self.deliveries.qos(args.prefetch_count, args.global_)
        self.reply(commands.Basic.QosOk())
        self.kick_consumers()

    def _on_consume(self, args: commands.Basic.Consume) -> None:
        if args.queue == DIRECT_REPLY_TO:
            if not args.no_ack:
                raise ChannelError(PRECONDITION_FAILED, "reply consumer cannot acknowledge")
            if self.reply_queue is not None:
                raise ChannelError(PRECONDITION_FAILED, "reply consumer already set")
            queue = self.vhost.reply_queues.open()
        else:
            name = self._queue_name(args.queue)
            self.access.check("read", "queue", name)
            queue = self.vhost.queue(name, self.host)
        arguments = args.arguments or {}
        validate_consumer_arguments(queue.name, self.vhost.name, arguments)
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
            self.deliveries,
            no_ack=args.no_ack,
            exclusive=args.exclusive,
            prefetch=self.deliveries.prefetch,
        )
        self.consumers[tag] = consumer
        if args.queue == DIRECT_REPLY_TO:
            self.reply_queue = queue
        if not args.nowait:
            self.reply(commands.Basic.ConsumeOk(consumer_tag=tag))
        priority = arguments.get("x-priority", 0)  # validated: an integer
        queue.add_consumer(consumer, priority if isinstance(priority, int) else 0)

    def _on_cancel(self, args: commands.Basic.Cancel) -> None:
        consumer = self.consumers.pop(args.consumer_tag or "", None)
        if consumer is not None:
            self._detach(consumer)
        if not args.nowait:
            self.reply(commands.Basic.CancelOk(consumer_tag=args.consumer_tag))

    def _detach(self, consumer: ChannelConsumer) -> None:
        consumer.attached = False
        queue = consumer.queue
        queue.remove_consumer(consumer)
        if queue is self.reply_queue:
            self.vhost.reply_queues.close(queue)
            self.reply_queue = None
            return
        self.vhost.consumer_removed(queue)

    def consumer_queue_deleted(self, consumer: ChannelConsumer) -> None:
        """The queue went away under a consumer: drop it, tell the client if it listens."""
        if self.consumers.pop(consumer.tag, None) is None:
            return
        consumer.attached = False
        if self.host.cancel_notify and not self.closing:
            self.reply(commands.Basic.Cancel(consumer_tag=consumer.tag, nowait=True))

    def server_cancel(self, tag: str) -> bool:
        """Cancel a consumer from the broker's side (test controls): detach it from its queue
        and send basic.cancel if the client listens, as when its queue goes away."""
        consumer = self.consumers.pop(tag, None)
        if consumer is None:
            return False
        self._detach(consumer)
        if self.host.cancel_notify and not self.closing:
            self.reply(commands.Basic.Cancel(consumer_tag=tag, nowait=True))
        return True

    def kick_consumers(self) -> None:
        for consumer in self.consumers.values():
            consumer.queue.kick()

    def _on_get(self, args: commands.Basic.Get) -> None:
        name = self._queue_name(args.queue)
        self.access.check("read", "queue", name)
        queue = self.vhost.queue(name, self.host)
        while True:
            entry = queue.take()
            if entry is None:
                self.reply(commands.Basic.GetEmpty())
                return
            seq, message, redelivered = entry
            error = message.reload() if message.source is not None else None
            if error is None:
                break
            drop_lost(queue, message, error)
        tag = self.deliveries.got(queue, seq, message, redelivered, args.no_ack)
        self.send_with_content(
            encode_get_ok(self.number, tag, redelivered, message.exchange_rk, len(queue.messages)),
            message,
        )

    def _settle(self, tag: int, multiple: bool, requeue: bool, rejected: bool = False) -> None:
        if self.tx.active:
            self.deliveries.check_known(tag, multiple)
            self.tx.add(lambda: self._settle_now(tag, multiple, requeue, rejected))
            return
        deliveries = self.deliveries
        before = len(deliveries.unacked)
        if deliveries.settle(tag, multiple, requeue, rejected):
            self.kick_consumers()
        if not (requeue or rejected):
            self.vhost.stats.ack += before - len(deliveries.unacked)

    def _settle_now(self, tag: int, multiple: bool, requeue: bool, rejected: bool) -> None:
        deliveries = self.deliveries
        before = len(deliveries.unacked)
        if deliveries.settle(tag, multiple, requeue, rejected):
            self.kick_consumers()
        if not (requeue or rejected):
            self.vhost.stats.ack += before - len(deliveries.unacked)

    def _on_ack(self, args: tuple[int, bool]) -> None:
        tag, multiple = args
        if multiple or self.tx.active:
            self._settle(tag, multiple, False)
            return
        if self.deliveries.ack_one(tag):
            self.kick_consumers()
        self.vhost.stats.ack += 1

    def ack_run(self, tags: list[int]) -> None:
        """basic.ack (multiple=false) of each of `tags` in turn, as one step: what `_on_ack`
        does for each, with the statistics counted once. An unknown tag raises 406 after the
        acks before it took effect."""
        if self.tx.active:
            for tag in tags:
                self._settle(tag, False, False)
            return
        deliveries = self.deliveries
        before = len(deliveries.unacked)
        try:
            if deliveries.ack_run(tags):
                self.kick_consumers()
        finally:
            self.vhost.stats.ack += before - len(deliveries.unacked)

    def _on_reject(self, args: tuple[int, bool]) -> None:
        tag, requeue = args
        self._settle(tag, False, requeue, rejected=True)

    def _on_nack(self, args: tuple[int, bool, bool]) -> None:
        tag, multiple, requeue = args
        self._settle(tag, multiple, requeue, rejected=True)

    def _on_recover(self, args: commands.Basic.Recover) -> None:
        if not args.requeue:
            raise ConnectionError_(NOT_IMPLEMENTED, "requeue=false")
        if self.deliveries.recover():
            self.kick_consumers()
        if isinstance(args, commands.Basic.Recover):
            self.reply(commands.Basic.RecoverOk())

    # -- closing ------------------------------------------------------------------------

    def release(self) -> None:
        """The channel is gone (closed, errored, connection lost): return what it held."""
        if not self.open:
            return
        self.open = False
        self.content.reset()
        for consumer in list(self.consumers.values()):
            self._detach(consumer)
        self.consumers.clear()
        self.tx.clear()
        self.deliveries.release()
