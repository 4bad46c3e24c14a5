"""One AMQP channel: its state, the channel/exchange/queue methods, and closing it.

The connection hands a channel its decoded methods (`handle_method`) and content frames
(`handle_header`, `handle_body`); the channel calls the vhost for every change and writes
its replies through the `ChannelHost` (the connection), never a socket. Errors are raised
as `ChannelError` / `ConnectionError_`; the connection turns them into close methods.
Publishing lives in `PublishingMixin` (publishing.py), consuming in `ConsumingMixin`
(consuming.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from pamqp import base, commands

from amqpd.auth import Access
from amqpd.consumer import ChannelConsumer
from amqpd.consuming import ConsumingMixin, Unacked
from amqpd.core.errors import (
    COMMAND_INVALID,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    ChannelError,
    ConnectionError_,
)
from amqpd.core.message import Message
from amqpd.core.naming import generated_queue_name
from amqpd.core.queue import Queue
from amqpd.core.vhost import VHost
from amqpd.publishing import PublishingMixin
from amqpd.wire.content import body_frames, header_frame
from amqpd.wire.methods import (
    ACCESS_REQUEST,
    BASIC_ACK,
    BASIC_NACK,
    BASIC_PUBLISH,
    BASIC_REJECT,
    encode_access_request_ok,
    encode_method,
)

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

    def send_many(self, pieces: list[bytes], size: int | None = None) -> None: ...

    def request_flush(self, channel: Channel) -> None: ...

    def await_durable(self, channel: Channel) -> None: ...

    def became_publisher(self) -> None: ...

    def throttle(self, queues: list[Queue]) -> None: ...


class Channel(PublishingMixin, ConsumingMixin):
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
        self._last_target: Any = None
        self._last_header = b""
        self._header_info_cache: Any = None
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

    def reply(self, method: base.Frame) -> None:
        frame = encode_method(self.number, method)
        if self._holding:
            self._held_now.append(frame)
        elif self._held:
            self._held.append((0, [frame]))  # never overtake a reply still held
        else:
            self.host.send(frame)

    def _send_with_content(self, method_frame: bytes, message: Message) -> None:
        """A method frame followed by the message's content frames for this channel."""
        number = self.number
        frame_max = self.host.frame_max
        framed = message.framed
        if framed is None or framed[0] != number or framed[1] != frame_max:
            content = [header_frame(number, message.header)]
            if message.body:
                content += body_frames(number, message.body, frame_max)
            framed = (number, frame_max, content, sum(map(len, content)))
            message.framed = framed
        self.host.send_many([method_frame, *framed[2]], len(method_frame) + framed[3])

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
        if self._held or ticket > self.vhost.durable_ticket:
            self._held.append((ticket, frames))
            self.host.await_durable(self)
        else:
            self.host.send_many(frames)

    def durable_advanced(self) -> bool:
        """The store made more durable: send the replies and confirms now due.
        True while the channel still waits for something."""
        durable = self.vhost.durable_ticket
        held = self._held
        while held and held[0][0] <= durable:
            self.host.send_many(held.popleft()[1])
        confirms_waiting = self._release_confirms()
        return (confirms_waiting or bool(held)) and self.open

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
