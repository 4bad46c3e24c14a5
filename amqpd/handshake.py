"""The opening of a connection: protocol header, start/start-ok, tune/tune-ok, open.

`Handshake` is sans-IO and owned by the connection, which calls it in the order its state
table allows: `read_header` (bytes in; the rest of them out once the 8-byte header matched),
`start` (connection.start to send), `start_ok` (logs the user in with PLAIN or AMQPLAIN, or
EXTERNAL as the CN of a verified TLS client certificate; connection.tune to send), `tune_ok`
(the `Limits` the client chose within ours) and `open` (the vhost and the user's
permissions: the whole `Negotiated` result). Failures RabbitMQ answers by silently dropping
the socket raise `HandshakeFailed` (`BadProtocolHeader` for a header that is not AMQP
0-9-1: answer with ours, then close); a refused login (wrong password, a `loopback_users`
user from elsewhere, an unknown certificate user) is logged here, once, with user, peer and
reason, and raises `LoginRefused`, delayed by the broker's `LoginGuard` after repeated
failures; the others are `ConnectionError_`s with RabbitMQ's texts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from pamqp import commands

from amqpd import __version__
from amqpd.accounts import Accounts
from amqpd.auth import MECHANISMS, Access, authenticate, is_loopback, parse_credentials
from amqpd.config import Config
from amqpd.core.errors import ACCESS_REFUSED, NOT_ALLOWED, ConnectionError_
from amqpd.core.vhost import VHost
from amqpd.login_guard import LoginGuard
from amqpd.wire.frames import PROTOCOL_HEADER

log = logging.getLogger("amqpd.connection")


class HandshakeFailed(Exception):
    """A handshake error RabbitMQ answers by dropping the socket without a close frame."""


class BadProtocolHeader(HandshakeFailed):
    """The client's first 8 bytes are not AMQP 0-9-1's header: answer with ours and close."""


class LoginRefused(Exception):
    """A refused login: send `close` (None: drop the socket, for a client that did not claim
    authentication_failure_close) after `delay` seconds (repeated failures from one peer)."""

    def __init__(self, close: ConnectionError_ | None, delay: float) -> None:
        super().__init__(close.text if close is not None else "login refused")
        self.close = close
        self.delay = delay


@dataclass(frozen=True, slots=True)
class Limits:
    """What tune-ok settled: the client's choice within the server's offer."""

    channel_max: int
    frame_max: int
    heartbeat: int  # seconds; 0 disables heartbeats


@dataclass(frozen=True, slots=True)
class Negotiated:
    """Everything an open connection knows about its client."""

    user: str
    vhost: VHost
    access: Access
    limits: Limits
    cancel_notify: bool  # the client understands basic.cancel from the server
    blocked_notify: bool  # the client understands connection.blocked
    # What operators see of the client (the management API): its properties, the login.
    client_properties: Mapping[str, Any] = field(default_factory=dict, compare=False)
    mechanism: str = ""


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


class Handshake:
    def __init__(
        self,
        config: Config,
        vhosts: Mapping[str, VHost],
        accounts: Accounts,
        peer: str = "?",
        logins: LoginGuard | None = None,
    ) -> None:
        self._config = config
        self._vhosts = vhosts
        self._accounts = accounts  # users and permissions, as changed at run time
        self.peer = peer  # host:port, for the log
        self.peer_host = ""  # the address alone: loopback_users and the login guard use it
        self.certificate_user: str | None = None  # CN of a verified TLS client certificate
        self._logins = logins if logins is not None else LoginGuard()
        self._header = b""
        self._user = ""
        self._capabilities: Mapping[str, Any] = {}
        self._client_properties: Mapping[str, Any] = {}
        self._mechanism = ""
        self.limits: Limits | None = None

    def read_header(self, data: bytes) -> bytes | None:
        """The bytes after a complete, matching protocol header; None while it is incomplete."""
        header = self._header + data
        if len(header) < 8:
            if PROTOCOL_HEADER.startswith(header):
                self._header = header
                return None
        elif header[:8] == PROTOCOL_HEADER:
            self._header = b""
            return header[8:]
        raise BadProtocolHeader("not an AMQP 0-9-1 protocol header")

    def start(self) -> commands.Connection.Start:
        return commands.Connection.Start(
            server_properties=server_properties(),
            mechanisms=" ".join(self.mechanisms()),
            locales="en_US",
        )

    def mechanisms(self) -> tuple[str, ...]:
        """PLAIN and AMQPLAIN; EXTERNAL too over TLS with a verified client certificate."""
        return MECHANISMS + ("EXTERNAL",) if self.certificate_user else MECHANISMS

    def start_ok(
        self, args: commands.Connection.StartOk, now: float = 0.0
    ) -> commands.Connection.Tune:
        capabilities = (args.client_properties or {}).get("capabilities")
        if not isinstance(capabilities, dict):
            capabilities = {}  # absent, or not a table: the client claims none
        self._capabilities = capabilities
        self._client_properties = args.client_properties or {}
        self._mechanism = args.mechanism
        response = args.response
        raw = response.encode() if isinstance(response, str) else bytes(response or b"")
        if args.mechanism not in self.mechanisms():
            raise HandshakeFailed(f"unsupported authentication mechanism {args.mechanism[:40]!r}")
        if args.mechanism == "EXTERNAL":  # the certificate was verified: no password
            login = self.certificate_user or ""
            user = self._accounts.user(login)
            if user is None:
                self._refuse(login, args.mechanism, "no such user (certificate CN)", now)
        else:
            credentials = parse_credentials(args.mechanism, raw)
            if credentials is None:
                raise HandshakeFailed(f"malformed {args.mechanism} response")
            login = credentials[0]
            user = authenticate(self._accounts, *credentials)
            if user is None:
                self._refuse(login, args.mechanism, "invalid credentials", now)
        assert user is not None
        if user.name in self._config.loopback_users and not is_loopback(self.peer_host):
            self._refuse(login, args.mechanism, "user can only connect via localhost", now)
        self._logins.succeeded(self.peer_host)
        self._user = user.name
        config = self._config
        return commands.Connection.Tune(
            channel_max=config.channel_max,
            frame_max=config.frame_max,
            heartbeat=config.heartbeat,
        )

    def _refuse(self, login: str, mechanism: str, reason: str, now: float) -> NoReturn:
        """Log the refusal (one line: user, peer, why; never the password) and raise it."""
        verdict = self._logins.refused(self.peer_host, now)
        if verdict.log:
            log.warning(
                "login refused for %s (user %s) using %s: %s%s",
                self.peer,
                ascii(login[:64]),
                mechanism,
                reason,
                "; further refusals from this address in the next minute are not logged"
                if verdict.last_logged
                else "",
            )
        close = None
        if self._capabilities.get("authentication_failure_close"):
            close = ConnectionError_(
                ACCESS_REFUSED,
                f"Login was refused using authentication mechanism {mechanism}."
                " For details see the broker logfile.",
            )
        raise LoginRefused(close, verdict.delay)

    def tune_ok(self, args: commands.Connection.TuneOk) -> Limits:
        frame_max, channel_max = args.frame_max, args.channel_max
        if not 4096 <= frame_max <= self._config.frame_max:
            raise HandshakeFailed(f"negotiated frame_max = {frame_max} is out of range")
        if not 1 <= channel_max <= self._config.channel_max:
            raise HandshakeFailed(f"negotiated channel_max = {channel_max} is out of range")
        self.limits = Limits(channel_max, frame_max, args.heartbeat)
        return self.limits

    def open(self, args: commands.Connection.Open, index: int) -> Negotiated:
        assert self.limits is not None, "open before tune-ok"
        name = args.virtual_host
        vhost = self._vhosts.get(name)
        if vhost is None:
            raise ConnectionError_(NOT_ALLOWED, f"vhost {name} not found", index)
        access = self._accounts.access(self._user, name)
        if access is None:
            raise ConnectionError_(
                NOT_ALLOWED,
                f"access to vhost '{name}' refused for user '{self._user}'",
                index,
            )
        capabilities = self._capabilities
        return Negotiated(
            user=self._user,
            vhost=vhost,
            access=access,
            limits=self.limits,
            cancel_notify=bool(capabilities.get("consumer_cancel_notify")),
            blocked_notify=bool(capabilities.get("connection.blocked")),
            client_properties=self._client_properties,
            mechanism=self._mechanism,
        )
