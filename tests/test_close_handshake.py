"""The closing handshake as RabbitMQ does it, over a raw socket.

After sending connection.close-ok the broker keeps reading (and discarding) until the client
closes its side, so a client with frames still in flight sees its close complete instead of
a connection reset; after sending connection.close it ignores everything but close-ok (and
close). Both waits are bounded: RabbitMQ by the heartbeat interval, amqpd by a few seconds.
"""

from __future__ import annotations

import socket
import time

import pytest
from pamqp import body, commands, header, heartbeat

from tests import rawamqp
from tests.conftest import BrokerAddress

QUIET = 0.5  # seconds of silence that show the socket is still open


def open_with_heartbeat(broker: BrokerAddress, seconds: int) -> rawamqp.RawConnection:
    """A raw connection that negotiated `seconds` of heartbeat (RabbitMQ's closing bound)."""
    conn = rawamqp.RawConnection(broker.host, broker.port)
    conn.start()
    tune = conn.expect(commands.Connection.Tune)
    assert isinstance(tune, commands.Connection.Tune)
    conn.send(0, commands.Connection.TuneOk(tune.channel_max, tune.frame_max, seconds))
    conn.send(0, commands.Connection.Open(virtual_host="/"))
    conn.expect(commands.Connection.OpenOk)
    return conn


def expect_frame(conn: rawamqp.RawConnection, kind: type) -> None:
    """The next frame that is not a heartbeat must be a `kind`."""
    while True:
        _, value = conn.recv_frame()
        if not isinstance(value, heartbeat.Heartbeat):
            assert isinstance(value, kind), f"expected {kind.__name__}, got {value!r}"
            return


def assert_still_open(conn: rawamqp.RawConnection) -> None:
    """Nothing arrives and the socket is neither closed nor reset for QUIET seconds."""
    conn.sock.settimeout(QUIET)
    try:
        data = conn.sock.recv(4096)
    except TimeoutError:
        return
    finally:
        conn.sock.settimeout(10.0)
    raise AssertionError(f"expected an open, silent socket, got {data!r}")


def seconds_until_closed(conn: rawamqp.RawConnection, limit: float) -> float:
    """Read (ignoring any bytes) until the broker closes or resets the socket; the time."""
    started = time.monotonic()
    conn.sock.settimeout(limit)
    try:
        while conn.sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def send_in_flight(conn: rawamqp.RawConnection, unique: str) -> None:
    """Frames a client may still have queued when it closes: a publish and a heartbeat."""
    conn.send(1, commands.Basic.Publish(exchange="", routing_key=unique))
    conn.send(1, header.ContentHeader(0, 3, commands.Basic.Properties()))
    conn.send(1, body.ContentBody(b"abc"))
    conn.send(0, heartbeat.Heartbeat())


def test_after_close_ok_the_broker_reads_until_the_client_closes(
    broker: BrokerAddress, unique: str
) -> None:
    with rawamqp.connect(broker.host, broker.port) as conn:
        conn.open_channel(1)
        conn.send(0, commands.Connection.Close(200, "bye", 0, 0))
        conn.expect(commands.Connection.CloseOk)
        send_in_flight(conn, unique)  # sent after close-ok: discarded, never a reset
        assert_still_open(conn)
        conn.sock.shutdown(socket.SHUT_WR)
        # Closed as soon as the client has closed its side (RabbitMQ, with its default
        # linger 0, resets the socket at that point; amqpd ends it with a FIN).
        assert seconds_until_closed(conn, 5.0) < 1.0


def test_close_ok_wait_is_bounded(broker: BrokerAddress) -> None:
    conn = open_with_heartbeat(broker, 2)
    with conn:
        conn.send(0, commands.Connection.Close(200, "bye", 0, 0))
        expect_frame(conn, commands.Connection.CloseOk)
        assert seconds_until_closed(conn, 10.0) < 6.0


def test_after_sending_close_only_close_ok_ends_the_wait(
    broker: BrokerAddress, unique: str
) -> None:
    with rawamqp.connect(broker.host, broker.port) as conn:
        conn.send(1, commands.Basic.Qos())
        closed = conn.wait_close()
        assert (closed.level, closed.reply_code) == ("connection", 504)
        conn.send(1, commands.Channel.Open())  # ignored, as is everything but close-ok
        send_in_flight(conn, unique)
        assert_still_open(conn)
        conn.send(0, commands.Connection.CloseOk())
        assert seconds_until_closed(conn, 5.0) < 1.0


def test_crossing_closes_wait_for_the_close_ok(broker: BrokerAddress) -> None:
    with rawamqp.connect(broker.host, broker.port) as conn:
        conn.send(1, commands.Basic.Qos())
        conn.wait_close()
        conn.send(0, commands.Connection.Close(200, "", 0, 0))
        conn.expect(commands.Connection.CloseOk)
        assert_still_open(conn)  # still waiting for the close-ok to its own close
        conn.send(0, commands.Connection.CloseOk())
        assert seconds_until_closed(conn, 5.0) < 1.0


@pytest.mark.parametrize("reply", [False, True], ids=["silent-client", "junk-only"])
def test_close_wait_is_bounded(broker: BrokerAddress, reply: bool) -> None:
    conn = open_with_heartbeat(broker, 2)
    with conn:
        conn.send(1, commands.Basic.Qos())
        expect_frame(conn, commands.Connection.Close)
        if reply:
            conn.send(1, commands.Channel.Open())
        assert seconds_until_closed(conn, 10.0) < 6.0
