"""A tiny blocking AMQP 0-9-1 client over a raw socket, for protocol-error tests.

`RawConnection` sends whatever frames a test asks for -- including malformed, out-of-order
or oversized ones that real clients refuse to send -- and reads frames back decoded by
pamqp. It does no checking of its own: it is a test tool, not a client.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from pamqp import body, commands, constants, exceptions, frame, header
from pamqp.base import Frame

FRAME_METHOD = constants.FRAME_METHOD
FRAME_HEADER = constants.FRAME_HEADER
FRAME_BODY = constants.FRAME_BODY
FRAME_END = bytes([constants.FRAME_END])
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
CLIENT_PROPERTIES = {
    "product": "amqpd-rawamqp",
    "capabilities": {"authentication_failure_close": True},
}


@dataclass
class UnknownMethod:
    """A method frame pamqp cannot decode (e.g. access.request-ok), kept raw."""

    class_id: int
    method_id: int
    arguments: bytes


class ConnectionLost(Exception):
    """The peer closed the socket (EOF) while a frame was expected."""


@dataclass
class Closed:
    """A Channel.Close or Connection.Close received from the peer."""

    level: str  # "channel" or "connection"
    channel: int
    reply_code: int
    reply_text: str
    class_id: int
    method_id: int


def raw_frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    """Bytes of one frame with any type, channel and payload (size field is honest)."""
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + FRAME_END


def method_payload(class_id: int, method_id: int, arguments: bytes = b"") -> bytes:
    """The payload of a method frame with arbitrary class and method ids."""
    return struct.pack(">HH", class_id, method_id) + arguments


def short_str(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">B", len(data)) + data


class RawConnection:
    """One socket to the broker; frames go out as given and come back decoded."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""
        self.frame_max = 0
        self.channel_max = 0

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # -- sending -----------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, channel: int, value: frame.FrameTypes) -> None:
        self.sock.sendall(frame.marshal(value, channel))

    def publish(
        self,
        channel: int,
        content: bytes,
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        immediate: bool = False,
    ) -> None:
        """Basic.Publish followed by its content header and one body frame."""
        self.send(
            channel,
            commands.Basic.Publish(
                exchange=exchange,
                routing_key=routing_key,
                mandatory=mandatory,
                immediate=immediate,
            ),
        )
        self.send(channel, header.ContentHeader(0, len(content), commands.Basic.Properties()))
        if content:
            self.send(channel, body.ContentBody(content))

    # -- receiving ---------------------------------------------------------------

    def _fill(self, need: int) -> None:
        while len(self.buffer) < need:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise ConnectionLost(f"EOF with {len(self.buffer)} bytes buffered")
            self.buffer += chunk

    def recv_bytes(self, count: int) -> bytes:
        self._fill(count)
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def recv_frame(self) -> tuple[int, frame.FrameTypes | UnknownMethod]:
        """The next frame as (channel, pamqp object); raises ConnectionLost on EOF."""
        self._fill(7)
        frame_type, channel, size = struct.unpack(">BHI", self.buffer[:7])
        self._fill(7 + size + 1)
        payload = self.buffer[7 : 7 + size]
        try:
            consumed, channel, value = frame.unmarshal(self.buffer)
        except exceptions.UnmarshalingException:
            if frame_type != FRAME_METHOD or size < 4:
                raise
            class_id, method_id = struct.unpack(">HH", payload[:4])
            consumed, value = 7 + size + 1, UnknownMethod(class_id, method_id, payload[4:])
        self.buffer = self.buffer[consumed:]
        return channel, value

    def expect(self, kind: type[Frame]) -> Frame:
        """The next frame, which must be a `kind` method (Close frames raise AssertionError)."""
        _, value = self.recv_frame()
        assert isinstance(value, kind), f"expected {kind.__name__}, got {value!r}"
        return value

    def wait_close(self) -> Closed:
        """Skip frames until a Channel.Close or Connection.Close arrives; return it."""
        while True:
            channel, value = self.recv_frame()
            if isinstance(value, commands.Connection.Close):
                level = "connection"
            elif isinstance(value, commands.Channel.Close):
                level = "channel"
            else:
                continue
            return Closed(
                level,
                channel,
                value.reply_code,
                value.reply_text,
                value.class_id,
                value.method_id,
            )

    def expect_eof(self) -> None:
        """Assert that the peer closes the socket without sending another frame."""
        try:
            channel, value = self.recv_frame()
        except ConnectionLost as lost:
            assert not self.buffer, f"EOF inside a frame: {lost}"
            return
        raise AssertionError(f"expected EOF, got {value!r} on channel {channel}")

    def close_ok_then_eof(self) -> None:
        """Answer a Connection.Close with Close-Ok and assert the socket then closes."""
        self.send(0, commands.Connection.CloseOk())
        self.expect_eof()

    # -- conversation helpers ----------------------------------------------------

    def start(self, user: str = "guest", password: str = "guest") -> None:
        """Protocol header, Start/StartOk; leaves the Tune (or a Close) unread."""
        self.send_bytes(PROTOCOL_HEADER)
        self.expect(commands.Connection.Start)
        self.send(
            0,
            commands.Connection.StartOk(
                client_properties=CLIENT_PROPERTIES,
                mechanism="PLAIN",
                response=f"\0{user}\0{password}",
                locale="en_US",
            ),
        )

    def tune(self, channel_max: int | None = None, frame_max: int | None = None) -> None:
        """Read Tune and answer TuneOk with the broker's values unless overridden."""
        tune = self.expect(commands.Connection.Tune)
        assert isinstance(tune, commands.Connection.Tune)
        self.channel_max = tune.channel_max if channel_max is None else channel_max
        self.frame_max = tune.frame_max if frame_max is None else frame_max
        self.send(
            0,
            commands.Connection.TuneOk(
                channel_max=self.channel_max, frame_max=self.frame_max, heartbeat=0
            ),
        )

    def handshake(self, vhost: str = "/", **tune: int) -> None:
        """A full login up to Connection.OpenOk."""
        self.start()
        self.tune(**tune)
        self.send(0, commands.Connection.Open(virtual_host=vhost))
        self.expect(commands.Connection.OpenOk)

    def open_channel(self, channel: int) -> None:
        self.send(channel, commands.Channel.Open())
        self.expect(commands.Channel.OpenOk)


def connect(host: str, port: int, **tune: int) -> RawConnection:
    """A RawConnection that has completed the handshake."""
    conn = RawConnection(host, port)
    conn.handshake(**tune)
    return conn
