"""The publishing half of a channel: content assembly, routing, confirms, transactions.

`PublishingMixin` is mixed into `Channel`. It assembles basic.publish, the content header
and the body frames into one `Message`, routes it through the vhost, returns unroutable
mandatory messages (312 NO_ROUTE), and in confirm mode acks each publish, in order, once
the store has made it durable. In tx mode publishes and acks wait for tx.commit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pamqp import base, commands

from amqpd.core.errors import (
    ACCESS_REFUSED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    UNEXPECTED_FRAME,
    ChannelError,
    ConnectionError_,
    describe_exchange,
)
from amqpd.core.message import Message
from amqpd.core.vhost import VHost
from amqpd.wire.content import ContentHeaderError, peek_header
from amqpd.wire.methods import BASIC_PUBLISH, encode_confirm, encode_method, shortstr

if TYPE_CHECKING:
    from amqpd.auth import Access
    from amqpd.channel import ChannelHost


class PublishingMixin:
    # State created by Channel.__init__.
    number: int
    host: ChannelHost
    vhost: VHost
    access: Access
    open: bool
    closing: bool
    confirming: bool
    publish_seq: int
    confirm_ready: int
    confirmed: int
    _confirm_waiting: deque[tuple[int, int]]
    transactional: bool
    tx_actions: list[Callable[[], None]]
    _publish: tuple[str, str, bool] | None
    _header: bytes
    _header_info: Any
    _body: list[bytes]
    _body_left: int
    _exchange_rk: dict[tuple[str, str], bytes]
    _last_target: Any  # the exchange of the last publish, checked
    _last_header: bytes  # the last content header parsed, and what it said
    _header_info_cache: Any

    if TYPE_CHECKING:

        def reply(self, method: base.Frame) -> None: ...

        def _send_with_content(self, method_frame: bytes, message: Message) -> None: ...

    @property
    def expecting_content(self) -> bool:
        return self._publish is not None

    def expected_content_text(self) -> str:
        if self._header_info is None:
            return "expected content header for class 60, got non content header frame instead"
        return "expected content body, got non content body frame instead"

    def handle_header(self, payload: bytes) -> None:
        if self._publish is None:
            raise ConnectionError_(
                UNEXPECTED_FRAME, "expected method frame, got non method frame instead"
            )
        if self._header_info is not None:
            raise ConnectionError_(UNEXPECTED_FRAME, self.expected_content_text(), BASIC_PUBLISH)
        try:
            if payload == self._last_header:  # same properties as the last publish
                info = self._header_info_cache
            else:
                info = peek_header(payload)
                self._last_header, self._header_info_cache = payload, info
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

    def _on_publish(self, args: tuple[str, str, bool, bool]) -> None:
        exchange_name, routing_key, mandatory, immediate = args
        if immediate:
            raise ConnectionError_(NOT_IMPLEMENTED, "immediate=true", BASIC_PUBLISH)
        self._publish = (exchange_name, routing_key, mandatory)
        if not self.host.publisher:
            self.host.became_publisher()

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
        queues, ticket = self.vhost.publish(exchange, message)
        if not queues:
            if mandatory:
                self._return(message, 312, "NO_ROUTE")
        elif queues[0].backlogged or len(queues) > 1:
            backlogged = [queue for queue in queues if queue.backlogged]
            if backlogged:
                self.host.throttle(backlogged)
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

    def _release_confirms(self) -> bool:
        """The store made more durable; release the acks now due. True while still waiting."""
        waiting = self._confirm_waiting
        durable = self.vhost.durable_ticket
        ready = self.confirm_ready
        while waiting and waiting[0][1] <= durable:
            ready = waiting.popleft()[0]
        if ready != self.confirm_ready:
            self.confirm_ready = ready
            self.host.request_flush(self)
        return bool(waiting)

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
