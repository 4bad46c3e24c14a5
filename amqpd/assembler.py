"""Content assembly: basic.publish + content header + body frames -> one `Message`.

`ContentAssembler` follows one channel's publish in progress. `start` takes the
basic.publish arguments, `header` and `body` the content frames; when the body is complete
it calls `on_message(message, mandatory)`. `whole` builds the message of a publish whose
content arrived in one piece (the connection's fast path) when nothing about it is wrong,
and leaves anything else to the frame-by-frame path and its errors. Frames out of order
raise `ConnectionError_` (505 UNEXPECTED_FRAME, RabbitMQ's texts); a user_id that is not the
authenticated user or a body larger than `max_message_size` raise `ChannelError` (406) and
drop the content.
A body frame that would take the body past the size its header announced raises
`ConnectionError_` (501 FRAME_ERROR) before it is kept, so a client cannot make the broker
hold more than the announced (and checked) size. RabbitMQ keeps collecting there; this is a
deliberate difference, for memory safety.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amqpd.core.errors import (
    FRAME_ERROR,
    PRECONDITION_FAILED,
    UNEXPECTED_FRAME,
    ChannelError,
    ConnectionError_,
)
from amqpd.core.message import Message
from amqpd.wire.content import ContentHeaderError, peek_header
from amqpd.wire.methods import (
    BASIC_PUBLISH,
    MethodSyntaxError,
    UnknownMethodError,
    decode_method,
    shortstr,
)

NO_METHOD = "expected method frame, got non method frame instead"
EXCHANGE_RK_CACHE = 1024  # (exchange, routing key) pairs whose encoding is kept
PUBLISH_CACHE = 256  # basic.publish payloads whose decoding is kept (fast path)


class ContentAssembler:
    def __init__(
        self, user: str, max_message_size: int, on_message: Callable[[Message, bool], None]
    ) -> None:
        self.user = user
        self.max_message_size = max_message_size
        self.on_message = on_message
        self.expecting = False  # a basic.publish waits for its content
        self.mandatory = False
        self._exchange = ""
        self._routing_key = ""
        self._header = b""
        self._header_info: Any = None  # what the header of the publish in progress says
        self._body: list[bytes] = []
        self._body_left = 0
        # (exchange, routing key) -> the pair encoded, and the two strings every message of the
        # pair shares
        self._exchange_rk: dict[tuple[str, str], tuple[bytes, str, str]] = {}
        # basic.publish payload -> (exchange, routing key, mandatory, the names encoded)
        self._publishes: dict[bytes, tuple[str, str, bool, bytes]] = {}
        self._last_header = b""  # the last content header parsed, and what it said
        self._last_info: Any = None

    def start(self, exchange: str, routing_key: str, mandatory: bool) -> None:
        """basic.publish arrived: its content frames come next."""
        self._exchange = exchange
        self._routing_key = routing_key
        self.mandatory = mandatory
        self.expecting = True

    def expected_text(self) -> str:
        """What RabbitMQ says when a frame other than the expected content frame arrives."""
        if self._header_info is None:
            return "expected content header for class 60, got non content header frame instead"
        return "expected content body, got non content body frame instead"

    def reset(self) -> None:
        """Drop the publish in progress (channel closed or errored)."""
        self.expecting = False
        self._header_info = None
        self._body = []

    def header(self, payload: bytes) -> None:
        if not self.expecting:
            raise ConnectionError_(UNEXPECTED_FRAME, NO_METHOD)
        if self._header_info is not None:
            raise ConnectionError_(UNEXPECTED_FRAME, self.expected_text(), BASIC_PUBLISH)
        try:
            if payload == self._last_header:  # same properties as the last publish
                info = self._last_info
                payload = self._last_header  # and one bytes object for all of them
            else:
                info = peek_header(payload)
                self._last_header, self._last_info = payload, info
        except ContentHeaderError:
            raise ConnectionError_(UNEXPECTED_FRAME, self.expected_text(), BASIC_PUBLISH) from None
        if info.class_id != 60:
            raise ConnectionError_(
                UNEXPECTED_FRAME,
                f"expected content header for class 60, got one for class {info.class_id} instead",
                BASIC_PUBLISH,
            )
        if info.weight:
            raise ConnectionError_(UNEXPECTED_FRAME, self.expected_text(), BASIC_PUBLISH)
        self._header = payload
        self._header_info = info
        self._body_left = info.body_size
        if info.user_id is not None and info.user_id != self.user:
            self.reset()
            raise ChannelError(
                PRECONDITION_FAILED,
                f"user_id property set to '{info.user_id}' but authenticated user was "
                f"'{self.user}'",
            )
        if info.body_size > self.max_message_size:
            self.reset()
            raise ChannelError(
                PRECONDITION_FAILED,
                f"message size {info.body_size} is larger than configured max size "
                f"{self.max_message_size}",
            )
        if info.body_size == 0:
            self._complete()

    def body(self, payload: bytes) -> None:
        if self._header_info is None:
            if not self.expecting:
                raise ConnectionError_(UNEXPECTED_FRAME, NO_METHOD)
            raise ConnectionError_(UNEXPECTED_FRAME, self.expected_text(), BASIC_PUBLISH)
        left = self._body_left - len(payload)
        if left < 0:
            size = self._header_info.body_size
            raise ConnectionError_(
                FRAME_ERROR,
                f"content body exceeds the {size} bytes announced in its header "
                f"({size - left} bytes received)",
                BASIC_PUBLISH,
            )
        self._body.append(payload)
        self._body_left = left
        if left == 0:
            self._complete()

    def whole(self, parts: tuple[bytes, bytes, bytes]) -> Message | None:
        """The message of a publish whose basic.publish payload, content header and whole
        body (len(body) is the size the header announces) arrived together as `parts`, with
        `mandatory` set to its flag; None, having done nothing, if it must take the
        frame-by-frame path (the method or header does not parse, immediate is set, or one
        of `header`'s errors applies). A publish repeating an earlier basic.publish payload
        (most do) is not decoded again, and its messages share the decoded strings."""
        method, header, body = parts
        publish = self._publishes.get(method)
        if publish is None:
            publish = self._decode_publish(method)
            if publish is None:
                return None
        if header == self._last_header:
            info = self._last_info
            header = self._last_header
        else:
            try:
                info = peek_header(header)
            except ContentHeaderError:
                return None
            self._last_header, self._last_info = header, info
        if (
            info.class_id != 60
            or info.weight
            or (info.user_id is not None and info.user_id != self.user)
            or info.body_size > self.max_message_size
        ):
            return None
        exchange, routing_key, self.mandatory, exchange_rk = publish
        return Message(exchange, routing_key, header, info, body, exchange_rk)

    def _decode_publish(self, method: bytes) -> tuple[str, str, bool, bytes] | None:
        """basic.publish's (exchange, routing key, mandatory, the two names encoded),
        remembered for the next publish with the same payload; None if it does not decode
        or sets immediate."""
        try:
            exchange, routing_key, mandatory, immediate = decode_method(method)[1]
        except (UnknownMethodError, MethodSyntaxError):
            return None
        if immediate:
            return None
        publishes = self._publishes
        if len(publishes) >= PUBLISH_CACHE:
            publishes.clear()
        publish = publishes[method] = (
            exchange,
            routing_key,
            mandatory,
            shortstr(exchange) + shortstr(routing_key),
        )
        return publish

    def _message(
        self, exchange: str, routing_key: str, header: bytes, info: Any, body: bytes
    ) -> Message:
        key = (exchange, routing_key)
        names = self._exchange_rk.get(key)
        if names is None:
            if len(self._exchange_rk) > EXCHANGE_RK_CACHE:
                self._exchange_rk.clear()
            names = self._exchange_rk[key] = (
                shortstr(exchange) + shortstr(routing_key),
                exchange,
                routing_key,
            )
        exchange_rk, exchange, routing_key = names
        return Message(exchange, routing_key, header, info, body, exchange_rk)

    def _complete(self) -> None:
        body_parts = self._body
        body = body_parts[0] if len(body_parts) == 1 else b"".join(body_parts)
        message = self._message(
            self._exchange, self._routing_key, self._header, self._header_info, body
        )
        self.expecting = False
        self._header_info = None
        self._body = []
        self.on_message(message, self.mandatory)
