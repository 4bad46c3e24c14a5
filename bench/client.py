"""A lean asyncio AMQP 0-9-1 client for the benchmark, not a general-purpose library.

`connect(uri)` opens a socket, does the handshake with pamqp and returns a `BenchClient`
with channel 1 open. Setup methods (declare, bind, qos, consume, confirm.select) are
plain RPCs through pamqp. The frames that arrive at high rate -- basic.deliver with its
content, and basic.ack/nack publisher confirms -- are parsed by hand in `data_received`
and handed to the overridable hooks `on_message` and `on_confirm`; everything else goes
to pamqp. Heartbeats are switched off (tune-ok heartbeat 0). Outgoing bytes go straight
to the transport; `writable` is awaited by producers for back-pressure.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from pamqp import commands, frame
from pamqp.base import Frame

from .wire import (
    BASIC_ACK,
    BASIC_DELIVER,
    BASIC_NACK,
    BASIC_RETURN,
    CLASS_METHOD,
    FRAME_BODY,
    FRAME_END_BYTE,
    FRAME_HEAD,
    FRAME_HEADER,
    FRAME_METHOD,
    PROTOCOL_HEADER,
    STAMP,
    STAMP_SIZE,
    read_u64,
)

DEFAULT_URI = "amqp://guest:guest@127.0.0.1:5672/%2F"
CLIENT_PROPERTIES: dict[str, Any] = {
    "product": "amqpd-bench",
    "capabilities": {
        "publisher_confirms": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "connection.blocked": True,
        "authentication_failure_close": True,
    },
}


class AmqpError(Exception):
    """The broker closed the channel or connection, or the socket went away."""


@dataclass(frozen=True)
class BrokerUri:
    """The parts of an amqp:// URI the benchmark needs."""

    host: str
    port: int
    user: str
    password: str
    vhost: str

    @classmethod
    def parse(cls, uri: str) -> BrokerUri:
        """amqp://user:pass@host:port/vhost; an empty path or "/" means vhost "/"."""
        parts = urlsplit(uri)
        if parts.scheme not in ("amqp", ""):
            raise ValueError(f"only amqp:// URIs are supported, not {uri!r}")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5672,
            user=unquote(parts.username or "guest"),
            password=unquote(parts.password or "guest"),
            vhost=unquote(path) or "/",
        )


class BenchClient(asyncio.Protocol):
    """One AMQP connection using channel 1 only.

    Subclasses override `on_message(key, ts, delivery_tag)` (called once per complete
    delivery whose body starts with a stamp, with `self.now` the receive time of the
    chunk) and `on_confirm(tag, multiple, ack)`. `flush_hook()` runs once per received
    chunk, after all its frames were handled.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.frame_max = 131072
        self.now = 0
        self.foreign = 0  # deliveries whose body does not carry a stamp
        self.returned = 0
        self.blocked = False
        self.closed: AmqpError | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self._tail = b""
        self._body_left = 0
        self._body_first = True
        self._tag = 0
        self._key = -1
        self._ts = 0
        self._waiters: deque[tuple[tuple[type, ...], asyncio.Future[Frame]]] = deque()
        self._lost = self.loop.create_future()

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(AmqpError(f"connection lost: {exc}" if exc else "connection closed"))
        self.writable.set()
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:  # noqa: C901 - the hot loop, kept flat
        if self._tail:
            data = self._tail + data
        self.now = time.monotonic_ns()
        size_all = len(data)
        pos = 0
        head = FRAME_HEAD.unpack_from
        while size_all - pos >= 7:
            ftype, _channel, size = head(data, pos)
            end = pos + 7 + size
            if end >= size_all:
                break
            if data[end] != FRAME_END_BYTE:
                self._protocol_error("frame-end octet missing")
                return
            if ftype == FRAME_BODY:
                if self._body_first:
                    self._body_first = False
                    if size >= STAMP_SIZE:
                        self._key, self._ts = STAMP.unpack_from(data, pos + 7)
                    else:
                        self._key = -1
                self._body_left -= size
                if self._body_left <= 0:
                    self._complete()
            elif ftype == FRAME_METHOD:
                cm = CLASS_METHOD.unpack_from(data, pos + 7)[0]
                if cm == BASIC_DELIVER:
                    tag_len = data[pos + 11]
                    self._tag = read_u64(data, pos + 12 + tag_len)
                elif cm == BASIC_ACK or cm == BASIC_NACK:
                    self.on_confirm(
                        read_u64(data, pos + 11), bool(data[pos + 19] & 1), cm == BASIC_ACK
                    )
                else:
                    if cm == BASIC_RETURN:
                        self.returned += 1
                        self._tag = -1
                    self._slow_frame(data[pos : end + 1])
            elif ftype == FRAME_HEADER:
                self._body_left = read_u64(data, pos + 11)
                self._body_first = True
                self._key = -1
                if self._body_left == 0:
                    self._complete()
            pos = end + 1
        self._tail = data[pos:] if pos < size_all else b""
        self.flush_hook()

    # -- hooks --------------------------------------------------------------------------

    def on_message(self, key: int, ts: int, delivery_tag: int) -> None:
        """One stamped delivery arrived (override)."""

    def on_confirm(self, delivery_tag: int, multiple: bool, ack: bool) -> None:
        """A publisher confirm arrived (override)."""

    def flush_hook(self) -> None:
        """Called after each received chunk was parsed (override, e.g. to write acks)."""

    # -- slow path ----------------------------------------------------------------------

    def _complete(self) -> None:
        tag = self._tag
        if tag < 0:  # content of a basic.return or basic.get-ok: not a delivery
            return
        if self._key < 0:
            self.foreign += 1
        else:
            self.on_message(self._key, self._ts, tag)

    def _slow_frame(self, raw: bytes) -> None:
        try:
            _, channel, value = frame.unmarshal(raw)
        except Exception as exc:  # pamqp raises several types for undecodable input
            self._protocol_error(f"cannot decode frame: {exc}")
            return
        if isinstance(value, commands.Connection.Close):
            self.write(frame.marshal(commands.Connection.CloseOk(), 0))
            self._fail(AmqpError(f"connection closed: {value.reply_code} {value.reply_text}"))
            return
        if isinstance(value, commands.Channel.Close):
            self.write(frame.marshal(commands.Channel.CloseOk(), channel))
            self._fail(AmqpError(f"channel closed: {value.reply_code} {value.reply_text}"))
            return
        if isinstance(value, commands.Connection.Blocked):
            self.blocked = True
            return
        if isinstance(value, commands.Connection.Unblocked):
            self.blocked = False
            return
        if isinstance(value, commands.Basic.Cancel):
            self._fail(AmqpError("consumer cancelled by the broker"))
            return
        if self._waiters and isinstance(value, self._waiters[0][0]):
            _, future = self._waiters.popleft()
            if not future.done():
                future.set_result(value)

    def _protocol_error(self, text: str) -> None:
        self._fail(AmqpError(text))
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: AmqpError) -> None:
        if self.closed is None:
            self.closed = error
        while self._waiters:
            _, future = self._waiters.popleft()
            if not future.done():
                future.set_exception(error)

    # -- sending ------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes on the transport (no-op once the connection is gone)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def expect(self, *reply_types: type) -> asyncio.Future[Frame]:
        """A future for the next incoming frame of one of these pamqp types."""
        future: asyncio.Future[Frame] = self.loop.create_future()
        if self.closed is not None:
            future.set_exception(self.closed)
        else:
            self._waiters.append((reply_types, future))
        return future

    async def rpc(self, method: Frame, *reply_types: type, channel: int = 1) -> Frame:
        """Send a method and wait for its reply (in order, like the protocol)."""
        future = self.expect(*reply_types)
        self.write(frame.marshal(method, channel))
        return await future

    # -- connection lifecycle ----------------------------------------------------------

    async def handshake(self, uri: BrokerUri) -> None:
        """Protocol header through connection.open and channel.open on channel 1."""
        start = self.expect(commands.Connection.Start)
        self.write(PROTOCOL_HEADER)
        await start
        tune = self.expect(commands.Connection.Tune)
        self.write(
            frame.marshal(
                commands.Connection.StartOk(
                    client_properties=CLIENT_PROPERTIES,
                    mechanism="PLAIN",
                    response=f"\0{uri.user}\0{uri.password}",
                    locale="en_US",
                ),
                0,
            )
        )
        tuned = await tune
        assert isinstance(tuned, commands.Connection.Tune)
        self.frame_max = tuned.frame_max or 131072
        channel_max = tuned.channel_max or 2047
        self.write(frame.marshal(commands.Connection.TuneOk(channel_max, self.frame_max, 0), 0))
        await self.rpc(
            commands.Connection.Open(virtual_host=uri.vhost), commands.Connection.OpenOk, channel=0
        )
        await self.rpc(commands.Channel.Open(), commands.Channel.OpenOk)

    async def close(self, timeout: float = 5.0) -> None:
        """connection.close, wait for close-ok (or time out), then drop the socket."""
        if self.transport is None:
            return
        if self.closed is None and not self.transport.is_closing():
            try:
                await asyncio.wait_for(
                    self.rpc(
                        commands.Connection.Close(200, "bye", 0, 0),
                        commands.Connection.CloseOk,
                        channel=0,
                    ),
                    timeout,
                )
            except (TimeoutError, AmqpError):
                pass
        self.transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), timeout)
        except TimeoutError:
            self.transport.abort()


async def connect(
    uri: str | BrokerUri, factory: type[BenchClient] = BenchClient, **kwargs: Any
) -> BenchClient:
    """Open a connection with channel 1 ready; `factory(**kwargs)` builds the protocol."""
    parsed = uri if isinstance(uri, BrokerUri) else BrokerUri.parse(uri)
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: factory(**kwargs), parsed.host, parsed.port)
    try:
        await client.handshake(parsed)
    except BaseException:
        if client.transport is not None:
            client.transport.abort()
        raise
    return client
