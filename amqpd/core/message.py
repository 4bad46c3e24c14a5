"""A published message as the broker keeps it: parsed once, delivered many times.

The raw content-header payload and the body are kept as they arrived; only the fields the
broker acts on are read out, by the codec, into `info` (any `ContentInfo`: in practice
wire.content's `HeaderInfo`, which also knows how to decode its headers table, so this
module needs no codec). `exchange_rk` is the exchange and routing key already encoded as
two short strings, ready to splice into basic.deliver, get-ok and return frames.
Constructing a message checks its expiration property (`ChannelError` 406 if RabbitMQ
would refuse it).

Body residency: a message whose body is kept elsewhere (its record in the store's log, or a
spill file) can drop it from memory with `evict_body(source)`; `body` reads it back through
`source.read_body(message)` the next time someone asks and keeps it again until the message
is gone. `core` does no I/O itself: the source is injected by whoever evicts. A source that
cannot give a body back (its record is missing or damaged) raises an `OSError`;
`reload()` turns that into a value, so that the one delivering can drop the lost message
(as RabbitMQ drops a message its store lost) instead of failing mid-dispatch.
"""

from __future__ import annotations

from typing import Any, Protocol

from amqpd.core.errors import FRAME_ERROR, ConnectionError_
from amqpd.core.ttl import parse_expiration
from amqpd.encoding import shortstr

_PUBLISH = 0x003C0028  # basic.publish: the method a bad content header belongs to


class ContentInfo(Protocol):
    """The content-header properties the broker acts on, read out once by the codec."""

    @property
    def delivery_mode(self) -> int: ...

    @property
    def body_size(self) -> int: ...

    @property
    def priority(self) -> int | None: ...

    @property
    def expiration(self) -> str | None: ...

    @property
    def headers_raw(self) -> bytes | None:
        """The encoded headers table as it arrived (None if absent)."""
        ...

    def decode_headers(self) -> dict[str, Any]:
        """The headers table ({} if absent); called at most once per message."""
        ...


class BodySource(Protocol):
    """Where an evicted body can be read back from (a store's log, a spill file); raises an
    `OSError` if the body is lost."""

    def read_body(self, message: Message) -> bytes: ...


class Message:
    __slots__ = (
        "exchange",
        "routing_key",
        "header",
        "_body",
        "source",
        "spilled",
        "delivery_mode",
        "info",
        "exchange_rk",
        "store_id",
        "framed",
        "_headers",
        "ttl",
        "arrived",
        # Set only by quorum queues (read with getattr): the message a delivery copy was
        # made from, and how many times it was returned to its queue.
        "origin",
        "deliveries",
    )

    origin: Message  # (quorum queues only: see __slots__)
    deliveries: int

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        header: bytes,
        info: ContentInfo,
        body: bytes,
        exchange_rk: bytes | None = None,
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.header = header
        self._body: bytes | None = body
        self.source: BodySource | None = None  # set while the body is evicted
        self.spilled = 0  # where a spill file keeps the body (the spill file's own number)
        self.delivery_mode = info.delivery_mode
        self.info = info  # the other properties the broker may look at, parsed once
        self.exchange_rk = exchange_rk or shortstr(exchange) + shortstr(routing_key)
        self.store_id = 0  # non-zero once written to a durable queue's log
        # The content frames last sent, as (channel, frame_max, frames, their size): fan-out to the
        # same channel number and frame_max re-uses them.
        self.framed: tuple[int, int, list[bytes], int] | None = None
        self._headers: dict[str, Any] | None = None
        # The expiration property in ms (None: none); checked here, so a bad one is a 406.
        expiration = info.expiration
        self.ttl = None if expiration is None else parse_expiration(expiration)
        self.arrived = 0  # ms since the epoch it entered a queue with a TTL; 0 until then

    @property
    def body(self) -> bytes:
        """The body, read back from its source if it was evicted."""
        body = self._body
        if body is None:
            assert self.source is not None
            body = self._body = self.source.read_body(self)
            self.source = None
        return body

    def reload(self) -> OSError | None:
        """Read an evicted body back now: None once it is in memory, else the error that lost
        it (the body stays absent, and reading it again fails again)."""
        try:
            self.body  # noqa: B018
        except OSError as error:
            return error
        return None

    @property
    def resident(self) -> bool:
        """The body is in memory."""
        return self._body is not None

    def evict_body(self, source: BodySource) -> None:
        """Drop the body from memory; `source` gives it back on demand."""
        if self._body is not None and self.framed is None:
            self.source = source
            self._body = None

    @property
    def headers(self) -> dict[str, Any]:
        """The headers table, decoded the first time someone asks."""
        if self._headers is None:
            try:
                self._headers = self.info.decode_headers()
            except ValueError as error:  # the client's table: a frame error, never ours
                raise ConnectionError_(FRAME_ERROR, f"headers table: {error}", _PUBLISH) from None
        return self._headers
