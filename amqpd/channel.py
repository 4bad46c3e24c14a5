"""One AMQP channel: content assembly, consumers, unacked deliveries, qos, confirms, tx.

The connection hands a channel its decoded methods (`handle_method`) and content frames
(`handle_header`, `handle_body`); the channel calls the vhost for every change and writes
its replies through the `ChannelHost` (the connection), never a socket. Errors are raised
as `ChannelError` / `ConnectionError_`; the connection turns them into close methods.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from pamqp import base, commands

from amqpd.auth import Access
from amqpd.consumer import ChannelConsumer
from amqpd.core.arguments import validate_consumer_arguments
from amqpd.core.errors import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    NOT_ALLOWED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    UNEXPECTED_FRAME,
    ChannelError,
    ConnectionError_,
    describe_exchange,
    describe_queue,
)
from amqpd.core.message import Message
from amqpd.core.naming import generated_consumer_tag, generated_queue_name
from amqpd.core.queue import Queue
from amqpd.core.vhost import VHost
from amqpd.wire.content import ContentHeaderError, body_frames, header_frame, peek_header
from amqpd.wire.methods import (
    ACCESS_REQUEST,
    BASIC_ACK,
    BASIC_NACK,
    BASIC_PUBLISH,
    BASIC_REJECT,
    encode_access_request_ok,
    encode_confirm,
    encode_deliver,
    encode_get_ok,
    encode_method,
    shortstr,
)

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
Unacked = tuple[Queue, int, Message, ChannelConsumer | None]


class ChannelHost(Protocol):
    """What a channel needs from its connection."""

    vhost: VHost
    access: Access
    frame_max: int
    cancel_notify: bool
    max_message_size: int
    writable: bool
    user: str
    publisher: bool

    def send(self, data: bytes) -> None: ...

    def send_many(self, pieces: list[bytes]) -> None: ...

    def request_flush(self, channel: Channel) -> None: ...

    def await_durable(self, channel: Channel) -> None: ...

    def became_publisher(self) -> None: ...


class Channel:
    def __init__(self, number: int, host: ChannelHost) -> None:
        self.number = number
        self.host = host
        self.vhost = host.vhost
        self.access = host.access
        self.open = True
        self.closing = False  # we sent channel.close and wait for close-ok
        self.consumers: dict[str, ChannelConsumer] = {}
        self.unacked: dict[int, Unacked] = {}
        self.next_tag = 1
        self.prefetch = 0  # for consumers created from now on
        self.global_prefetch = 0
        self.confirming = False
        self.publish_seq = 0  # publishes counted in confirm mode
        self.confirm_ready = 0  # highest of them that may be acked now
        self.confirmed = 0  # highest of them acked on the wire
        self._confirm_waiting: deque[tuple[int, int]] = deque()  # (publish seq, store ticket)
        self.transactional = False
        self.tx_actions: list[Callable[[], None]] = []
        self.last_queue = ""
        self._publish: tuple[str, str, bool] | None = None
        self._header: bytes = b""
        self._header_info: Any = None
        self._body: list[bytes] = []
        self._body_left = 0
        self._exchange_rk: dict[tuple[str, str], bytes] = {}  # encoded once per pair
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

    # -- plumbing ---------------------------------------------------------------------

    def reply(self, method: base.Frame) -> None:
        self.host.send(encode_method(self.number, method))

    def deliverable(self) -> bool:
        return self.host.writable and not self.closing

    @property
    def expecting_content(self) -> bool:
        return self._publish is not None

    def expected_content_text(self) -> str:
        if self._header_info is None:
            return "expected content header for class 60, got non content header frame instead"
        return "expected content body, got non content body frame instead"

    def handle_method(self, index: int, args: Any) -> None:
        handler = self._handlers.get(index)
        if handler is None:
            raise ConnectionError_(COMMAND_INVALID, "unimplemented method", index)
        handler(args)

    # -- content assembly -------------------------------------------------------------

    def handle_header(self, payload: bytes) -> None:
        if self._publish is None:
            raise ConnectionError_(
                UNEXPECTED_FRAME, "expected method frame, got non method frame instead"
            )
        if self._header_info is not None:
            raise ConnectionError_(UNEXPECTED_FRAME, self.expected_content_text(), BASIC_PUBLISH)
        try:
            info = peek_header(payload)
        except ContentHeaderError:
            raise ConnectionError_(
                UNEXPECTED_FRAME, self.expected_content_text(), BASIC_PUBLISH
            ) from None
        if info.class_id != 60:
            raise ConnectionError_(
                UNEXPECTED_FRAME,
                f"expected content header for class 60, got one for class {info.class_id} instead",
                BASIC_PUBLISH,
            )
        if info.weight:
            raise ConnectionError_(UNEXPECTED_FRAME, self.expected_content_text(), BASIC_PUBLISH)
        self._header = payload
        self._header_info = info
        self._body_left = info.body_size
        if info.user_id is not None and info.user_id != self.host.user:
            self._reset_content()
            raise ChannelError(
                PRECONDITION_FAILED,
                f"user_id property set to '{info.user_id}' but authenticated user was "
                f"'{self.host.user}'",
            )
        if info.body_size > self.host.max_message_size:
            self._reset_content()
            raise ChannelError(
                PRECONDITION_FAILED,
                f"message size {info.body_size} is larger than configured max size "
                f"{self.host.max_message_size}",
            )
        if info.body_size == 0:
            self._complete_publish()

    def handle_body(self, payload: bytes) -> None:
        if self._header_info is None:
            if self._publish is None:
                raise ConnectionError_(
                    UNEXPECTED_FRAME, "expected method frame, got non method frame instead"
                )
            raise ConnectionError_(UNEXPECTED_FRAME, self.expected_content_text(), BASIC_PUBLISH)
        self._body.append(payload)
        self._body_left -= len(payload)
        # Like RabbitMQ, a body longer than announced is not complete: the channel keeps
        # waiting for body frames and the next method frame is the error.
        if self._body_left == 0:
            self._complete_publish()

    def _reset_content(self) -> None:
        self._publish = None
        self._header_info = None
        self._body = []

    def _complete_publish(self) -> None:
        assert self._publish is not None
        exchange_name, routing_key, mandatory = self._publish
        body_parts = self._body
        body = body_parts[0] if len(body_parts) == 1 else b"".join(body_parts)
        key = (exchange_name, routing_key)
        exchange_rk = self._exchange_rk.get(key)
        if exchange_rk is None:
            if len(self._exchange_rk) > 1024:
                self._exchange_rk.clear()
            exchange_rk = self._exchange_rk[key] = shortstr(exchange_name) + shortstr(routing_key)
        message = Message(
            exchange_name, routing_key, self._header, self._header_info, body, exchange_rk
        )
        self._reset_content()
        if self.transactional:
            exchange = self._publish_target(exchange_name)
            self.tx_actions.append(lambda: self._route(exchange, message, mandatory))
            return
        self._route(self._publish_target(exchange_name), message, mandatory)

    # -- channel class ----------------------------------------------------------------

    def _on_flow(self, args: commands.Channel.Flow) -> None:
        if not args.active:
            raise ConnectionError_(NOT_IMPLEMENTED, "active=false")
        self.reply(commands.Channel.FlowOk(active=True))

    def _on_access_request(self, args: Any) -> None:
        self.host.send(encode_access_request_ok(self.number))

    # -- exchange class ---------------------------------------------------------------

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

    # -- queue class ------------------------------------------------------------------

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
            else:
                self.vhost.check_queue_name(name)
            self.access.check("configure", "queue", name)
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
                commands.Queue.DeclareOk(
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

    # -- basic class: consumers -------------------------------------------------------

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

    # -- basic class: delivery --------------------------------------------------------

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
            queue.settled(message)
        else:
            self.unacked[tag] = (queue, seq, message, consumer)
            consumer.unacked += 1
            if not redelivered:
                queue.delivered(message)
        self._send_with_content(
            encode_deliver(self.number, consumer.tag_sstr, tag, redelivered, message.exchange_rk),
            message,
        )

    def _send_with_content(self, method_frame: bytes, message: Message) -> None:
        """A method frame followed by the message's content frames for this channel."""
        number = self.number
        frame_max = self.host.frame_max
        framed = message.framed
        if framed is None or framed[0] != number or framed[1] != frame_max:
            content = [header_frame(number, message.header)]
            if message.body:
                content += body_frames(number, message.body, frame_max)
            message.framed = framed = (number, frame_max, content)
        self.host.send_many([method_frame, *framed[2]])

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

    # -- basic class: publishing ------------------------------------------------------

    def _on_publish(self, args: tuple[str, str, bool, bool]) -> None:
        exchange_name, routing_key, mandatory, immediate = args
        if immediate:
            raise ConnectionError_(NOT_IMPLEMENTED, "immediate=true")
        self._publish = (exchange_name, routing_key, mandatory)
        if not self.host.publisher:
            self.host.became_publisher()

    def _publish_target(self, exchange_name: str) -> Any:
        self.access.check("write", "exchange", exchange_name or "amq.default")
        exchange = self.vhost.exchanges.get(exchange_name)
        if exchange is None:
            raise ChannelError(NOT_FOUND, f"no {describe_exchange(exchange_name, self.vhost.name)}")
        if exchange.internal:
            raise ChannelError(
                ACCESS_REFUSED,
                f"cannot publish to internal {describe_exchange(exchange_name, self.vhost.name)}",
            )
        return exchange

    def _route(self, exchange: Any, message: Message, mandatory: bool) -> None:
        reached, ticket = self.vhost.publish(exchange, message)
        if not reached and mandatory:
            self._return(message, 312, "NO_ROUTE")
        if self.confirming:
            self._confirm_later(ticket)

    def _confirm_later(self, ticket: int) -> None:
        """Count a publish; its ack goes out once the store has made `ticket` durable.
        Acks stay in publish order, so a publish waits behind any earlier one waiting."""
        self.publish_seq += 1
        waiting = self._confirm_waiting
        if waiting or ticket > self.vhost.durable_ticket:
            waiting.append((self.publish_seq, ticket))
            if len(waiting) == 1:
                self.host.await_durable(self)
        else:
            self.confirm_ready = self.publish_seq
            self.host.request_flush(self)

    def durable_advanced(self) -> bool:
        """The store made more durable; release the acks now due. True while still waiting."""
        waiting = self._confirm_waiting
        durable = self.vhost.durable_ticket
        ready = self.confirm_ready
        while waiting and waiting[0][1] <= durable:
            ready = waiting.popleft()[0]
        if ready != self.confirm_ready:
            self.confirm_ready = ready
            self.host.request_flush(self)
        return bool(waiting) and self.open

    def _return(self, message: Message, code: int, text: str) -> None:
        self._send_with_content(
            encode_method(
                self.number,
                commands.Basic.Return(
                    reply_code=code,
                    reply_text=text,
                    exchange=message.exchange,
                    routing_key=message.routing_key,
                ),
            ),
            message,
        )

    def flush_confirms(self) -> None:
        """Send one ack covering every publish confirmed since the last flush."""
        upto = self.confirm_ready
        if upto > self.confirmed and self.open and not self.closing:
            multiple = upto - self.confirmed > 1
            self.confirmed = upto
            self.host.send(encode_confirm(self.number, upto, multiple))

    def _on_confirm_select(self, args: commands.Confirm.Select) -> None:
        if self.transactional:
            raise ChannelError(PRECONDITION_FAILED, "cannot switch from tx to confirm mode")
        self.confirming = True
        if not args.nowait:
            self.reply(commands.Confirm.SelectOk())

    # -- basic class: settling deliveries ---------------------------------------------

    def _take_unacked(self, tag: int, multiple: bool) -> list[Unacked]:
        unacked = self.unacked
        if multiple:
            if tag == 0:
                taken = list(unacked.values())
                unacked.clear()
                return taken
            if tag not in unacked:
                raise ChannelError(PRECONDITION_FAILED, f"unknown delivery tag {tag}")
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

    def _settle(self, entries: list[Unacked], requeue: bool) -> None:
        kicked: set[Queue] = set()
        for _queue, _seq, _message, consumer in entries:
            if consumer is not None:
                consumer.unacked -= 1
                if consumer.tag in self.consumers:
                    kicked.add(consumer.queue)
        if requeue:
            self._requeue(entries)
        else:
            for queue, _seq, message, _consumer in entries:
                queue.settled(message)
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

    # -- tx class ---------------------------------------------------------------------

    def _on_tx_select(self, args: commands.Tx.Select) -> None:
        if self.confirming:
            raise ChannelError(PRECONDITION_FAILED, "cannot switch from confirm to tx mode")
        self.transactional = True
        self.reply(commands.Tx.SelectOk())

    def _require_tx(self) -> None:
        if not self.transactional:
            raise ChannelError(PRECONDITION_FAILED, "channel is not transactional")

    def _on_tx_commit(self, args: commands.Tx.Commit) -> None:
        self._require_tx()
        actions, self.tx_actions = self.tx_actions, []
        for action in actions:
            action()
        self.reply(commands.Tx.CommitOk())

    def _on_tx_rollback(self, args: commands.Tx.Rollback) -> None:
        self._require_tx()
        self.tx_actions = []  # publishes dropped; acks never taken, so still unacked
        self.reply(commands.Tx.RollbackOk())

    # -- closing ----------------------------------------------------------------------

    def release(self) -> None:
        """The channel is gone (closed, errored, connection lost): return what it held."""
        if not self.open:
            return
        self.open = False
        self._reset_content()
        for consumer in list(self.consumers.values()):
            self._detach(consumer)
        self.consumers.clear()
        self.tx_actions = []
        entries = list(self.unacked.values())
        self.unacked.clear()
        if entries:
            self._requeue(entries)
