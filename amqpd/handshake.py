"""The opening of a connection: protocol header, start/start-ok, tune/tune-ok, open.

`HandshakeMixin` is mixed into `Connection`. It answers the protocol header with
connection.start (server properties and capabilities), logs users in with PLAIN or
AMQPLAIN, negotiates channel_max, frame_max and heartbeat, and opens the vhost with the
user's permissions. Failures RabbitMQ answers by silently dropping the socket raise
`HandshakeFailed`; the others are `ConnectionError_`s with RabbitMQ's texts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from pamqp import base, commands

from amqpd import __version__
from amqpd.auth import MECHANISMS, Access, authenticate, parse_credentials
from amqpd.core.errors import ACCESS_REFUSED, NOT_ALLOWED, ConnectionError_
from amqpd.wire.frames import PROTOCOL_HEADER, FrameReader

if TYPE_CHECKING:
    from amqpd.config import Config
    from amqpd.core.vhost import VHost
    from amqpd.server import Broker

log = logging.getLogger("amqpd.connection")

# Connection states, in order.
AWAIT_HEADER, AWAIT_START_OK, AWAIT_TUNE_OK, AWAIT_OPEN, OPEN, CLOSING, CLOSED = range(7)


class HandshakeFailed(Exception):
    """A handshake error RabbitMQ answers by dropping the socket without a close frame."""


def server_properties() -> dict[str, Any]:
    return {
        "product": "amqpd",
        "version": __version__,
        "platform": "Python",
        "copyright": "amqpd contributors",
        "information": "A RabbitMQ-compatible AMQP 0-9-1 broker in Python",
        "capabilities": {
            "publisher_confirms": True,
            "exchange_exchange_bindings": True,
            "basic.nack": True,
            "consumer_cancel_notify": True,
            "connection.blocked": True,
            "consumer_priorities": False,
            "authentication_failure_close": True,
            "per_consumer_qos": True,
            "direct_reply_to": False,
        },
        "cluster_name": "amqpd",
    }


class HandshakeMixin:
    # State created by Connection.__init__.
    broker: Broker
    config: Config
    state: int
    transport: asyncio.Transport | None
    peer: str
    reader: FrameReader
    frame_max: int
    channel_max: int
    heartbeat: int
    cancel_notify: bool
    blocked_notify: bool
    user: str
    vhost: VHost
    access: Access
    _header: bytes
    _timer: asyncio.TimerHandle | None
    _loop: asyncio.AbstractEventLoop
    _last_sent: float
    _last_received: float

    if TYPE_CHECKING:

        def _send_method(self, number: int, method: base.Frame) -> None: ...

        def _heartbeat_tick(self) -> None: ...

    def _read_protocol_header(self, data: bytes) -> bytes:
        self._header += data
        if len(self._header) < 8:
            if PROTOCOL_HEADER.startswith(self._header):
                return b""
        elif self._header[:8] == PROTOCOL_HEADER:
            rest, self._header = self._header[8:], b""
            self.state = AWAIT_START_OK
            self._send_method(
                0,
                commands.Connection.Start(
                    server_properties=server_properties(),
                    mechanisms=" ".join(MECHANISMS),
                    locales="en_US",
                ),
            )
            return rest
        assert self.transport is not None
        self.transport.write(PROTOCOL_HEADER)
        self.transport.close()
        self.state = CLOSED
        return b""

    def _on_start_ok(self, args: commands.Connection.StartOk) -> None:
        capabilities = (args.client_properties or {}).get("capabilities") or {}
        self.cancel_notify = bool(capabilities.get("consumer_cancel_notify"))
        self.blocked_notify = bool(capabilities.get("connection.blocked"))
        response = args.response
        raw = response.encode() if isinstance(response, str) else bytes(response or b"")
        if args.mechanism not in MECHANISMS:
            raise HandshakeFailed(f"unsupported authentication mechanism '{args.mechanism}'")
        credentials = parse_credentials(args.mechanism, raw)
        if credentials is None:
            raise HandshakeFailed(f"malformed {args.mechanism} response")
        user = authenticate(self.config, *credentials)
        if user is None:
            log.warning("login refused for %s using %s", self.peer, args.mechanism)
            if not capabilities.get("authentication_failure_close"):
                raise HandshakeFailed("login refused")
            raise ConnectionError_(
                ACCESS_REFUSED,
                f"Login was refused using authentication mechanism {args.mechanism}."
                " For details see the broker logfile.",
            )
        self.user = user.name
        self.state = AWAIT_TUNE_OK
        self._send_method(
            0,
            commands.Connection.Tune(
                channel_max=self.config.channel_max,
                frame_max=self.config.frame_max,
                heartbeat=self.config.heartbeat,
            ),
        )

    def _on_tune_ok(self, args: commands.Connection.TuneOk) -> None:
        frame_max, channel_max = args.frame_max, args.channel_max
        if not 4096 <= frame_max <= self.config.frame_max:
            raise HandshakeFailed(f"negotiated frame_max = {frame_max} is out of range")
        if not 1 <= channel_max <= self.config.channel_max:
            raise HandshakeFailed(f"negotiated channel_max = {channel_max} is out of range")
        self.frame_max = frame_max
        self.reader.frame_max = frame_max
        self.channel_max = channel_max
        self.heartbeat = args.heartbeat
        self.state = AWAIT_OPEN

    def _on_open(self, args: commands.Connection.Open, index: int) -> None:
        vhost = self.broker.vhosts.get(args.virtual_host)
        if vhost is None:
            raise ConnectionError_(NOT_ALLOWED, f"vhost {args.virtual_host} not found", index)
        user = self.config.user(self.user)
        permission = user.permission(args.virtual_host) if user else None
        if permission is None:
            raise ConnectionError_(
                NOT_ALLOWED,
                f"access to vhost '{args.virtual_host}' refused for user '{self.user}'",
                index,
            )
        self.vhost = vhost
        self.access = Access(self.user, vhost.name, permission)
        self.state = OPEN
        self._send_method(0, commands.Connection.OpenOk())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.heartbeat:
            self._last_sent = self._last_received = self._loop.time()
            self._timer = self._loop.call_later(self.heartbeat / 2, self._heartbeat_tick)

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self.state in (AWAIT_HEADER, AWAIT_START_OK, AWAIT_TUNE_OK, AWAIT_OPEN):
            log.info("handshake timeout from %s", self.peer)
            if self.transport is not None:
                self.transport.abort()
