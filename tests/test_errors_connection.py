"""Connection-level and framing errors, byte for byte as RabbitMQ answers them.

Most of these need frames that pika will not send, so they use tests/rawamqp.py and check the
close level, reply code, reply text, class id and method id. Texts that quote frame bytes use
Erlang's binary notation (`<<0,50>>`, or `<<"abc">>` when all bytes are printable).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pika
import pytest
from pamqp import body, commands, header
from pika.exceptions import ProbableAccessDeniedError, ProbableAuthenticationError

from tests import rawamqp
from tests.broker_process import external_broker
from tests.conftest import BrokerAddress

LOGIN_REFUSED = (
    "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
    "For details see the broker logfile."
)
EXPECTED_METHOD = "UNEXPECTED_FRAME - expected method frame, got non method frame instead"
EXPECTED_HEADER = (
    "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead"
)
EXPECTED_BODY = "UNEXPECTED_FRAME - expected content body, got non content body frame instead"
NOT_RUNNING = "CHANNEL_ERROR - unexpected method in connection state running"


@pytest.fixture
def raw(broker: BrokerAddress) -> Iterator[rawamqp.RawConnection]:
    """A logged-in raw connection with channel 1 open."""
    conn = rawamqp.connect(broker.host, broker.port)
    conn.open_channel(1)
    yield conn
    conn.close()


@pytest.fixture
def fresh(broker: BrokerAddress) -> Iterator[rawamqp.RawConnection]:
    """A raw socket that has sent nothing yet."""
    conn = rawamqp.RawConnection(broker.host, broker.port)
    yield conn
    conn.close()


def assert_connection_closed(
    conn: rawamqp.RawConnection, code: int, text: str, class_id: int = 0, method_id: int = 0
) -> None:
    closed = conn.wait_close()
    assert (closed.level, closed.channel) == ("connection", 0)
    assert (closed.reply_code, closed.reply_text) == (code, text)
    assert (closed.class_id, closed.method_id) == (class_id, method_id)
    conn.close_ok_then_eof()


def read_until_eof(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def method_frame(channel: int, class_id: int, method_id: int, arguments: bytes = b"") -> bytes:
    return rawamqp.raw_frame(
        rawamqp.FRAME_METHOD, channel, rawamqp.method_payload(class_id, method_id, arguments)
    )


# -- protocol header and login ---------------------------------------------------------


@pytest.mark.parametrize(
    "greeting",
    [b"AMQP\x00\x00\x09\x02", b"AMQP\x00\x00\x08\x00", b"GET / HTTP/1.1\r\n\r\n"],
    ids=["amqp-0-9-2", "amqp-0-8-0", "http"],
)
def test_wrong_protocol_header_gets_ours_and_a_close(fresh, greeting: bytes) -> None:
    fresh.send_bytes(greeting)
    assert read_until_eof(fresh.sock) == b"AMQP\x00\x00\x09\x01"


@pytest.mark.parametrize("user,password", [("guest", "wrong"), ("no-such-user", "guest")])
def test_wrong_credentials_close_with_403(fresh, user: str, password: str) -> None:
    # The client advertises authentication_failure_close, so RabbitMQ says why.
    fresh.start(user=user, password=password)
    assert_connection_closed(fresh, 403, LOGIN_REFUSED)


def test_wrong_password_without_capability_just_drops_the_socket(fresh) -> None:
    fresh.send_bytes(rawamqp.PROTOCOL_HEADER)
    fresh.expect(commands.Connection.Start)
    fresh.send(
        0,
        commands.Connection.StartOk(
            client_properties={}, mechanism="PLAIN", response="\0guest\0wrong", locale="en_US"
        ),
    )
    fresh.expect_eof()


def test_wrong_password_with_pika(broker: BrokerAddress) -> None:
    params = broker.params(credentials=pika.PlainCredentials("guest", "wrong"))
    with pytest.raises(ProbableAuthenticationError) as err:
        pika.BlockingConnection(params)
    assert "(403)" in str(err.value)
    assert LOGIN_REFUSED in str(err.value)


@pytest.mark.parametrize(
    "mechanism,response",
    [("FOO", "\0guest\0guest"), ("PLAIN", "no-nul-separators"), ("AMQPLAIN", "")],
    ids=["unknown-mechanism", "garbled-plain", "empty-amqplain"],
)
def test_unusable_login_response_drops_the_socket(fresh, mechanism: str, response: str) -> None:
    fresh.send_bytes(rawamqp.PROTOCOL_HEADER)
    fresh.expect(commands.Connection.Start)
    fresh.send(
        0,
        commands.Connection.StartOk(
            client_properties=rawamqp.CLIENT_PROPERTIES,
            mechanism=mechanism,
            response=response,
            locale="en_US",
        ),
    )
    fresh.expect_eof()


def test_start_offers_plain_and_amqplain(fresh) -> None:
    fresh.send_bytes(rawamqp.PROTOCOL_HEADER)
    start = fresh.expect(commands.Connection.Start)
    assert (start.version_major, start.version_minor) == (0, 9)
    assert set(start.mechanisms.split()) >= {"PLAIN", "AMQPLAIN"}
    assert start.locales == "en_US"


@pytest.mark.parametrize("vhost", ["no-such-vhost", ""], ids=["missing", "empty"])
def test_missing_vhost(fresh, vhost: str) -> None:
    fresh.start()
    fresh.tune()
    fresh.send(0, commands.Connection.Open(virtual_host=vhost))
    assert_connection_closed(fresh, 530, f"NOT_ALLOWED - vhost {vhost} not found", 10, 40)


def test_missing_vhost_with_pika(broker: BrokerAddress) -> None:
    with pytest.raises(ProbableAccessDeniedError) as err:
        pika.BlockingConnection(broker.params(virtual_host="no-such-vhost"))
    assert "(530)" in str(err.value)
    assert "NOT_ALLOWED - vhost no-such-vhost not found" in str(err.value)


@pytest.mark.parametrize(
    "override",
    [
        {"frame_max": 4095},
        {"frame_max": 0},
        {"frame_max": "server+1"},
        {"channel_max": "server+1"},
        {"channel_max": 0},
    ],
    ids=[
        "frame_max-below-4096",
        "frame_max-unlimited",
        "frame_max-above-server",
        "channel_max-above-server",
        "channel_max-unlimited",
    ],
)
def test_tune_ok_outside_the_offered_limits_drops_the_socket(fresh, override: dict) -> None:
    fresh.start()
    tune = fresh.expect(commands.Connection.Tune)
    frame_max, channel_max = tune.frame_max, tune.channel_max
    if override.get("frame_max") == "server+1":
        frame_max += 1
    elif "frame_max" in override:
        frame_max = override["frame_max"]
    if override.get("channel_max") == "server+1":
        channel_max += 1
    elif "channel_max" in override:
        channel_max = override["channel_max"]
    fresh.send(
        0,
        commands.Connection.TuneOk(channel_max=channel_max, frame_max=frame_max, heartbeat=0),
    )
    fresh.send(0, commands.Connection.Open())
    fresh.expect_eof()


def test_open_without_tune_ok_drops_the_socket(fresh) -> None:
    fresh.start()
    fresh.expect(commands.Connection.Tune)
    fresh.send(0, commands.Connection.Open())
    fresh.expect_eof()


def test_channel_open_before_connection_open(fresh) -> None:
    fresh.start()
    fresh.tune()
    fresh.send_bytes(method_frame(1, 20, 10, b"\x00"))
    assert_connection_closed(fresh, 505, "UNEXPECTED_FRAME - type 1, all octets = <<0,20,0,10,0>>")


# -- channels ----------------------------------------------------------------------------


def test_channel_open_twice(raw) -> None:
    raw.send(1, commands.Channel.Open())
    assert_connection_closed(raw, 504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)


@pytest.mark.parametrize(
    "method,ids",
    [
        (commands.Queue.Declare(queue="q"), (50, 10)),
        (commands.Basic.Qos(), (60, 10)),
        (commands.Channel.Close(200, "bye", 0, 0), (20, 40)),
        (commands.Channel.CloseOk(), (20, 41)),
    ],
    ids=["queue.declare", "basic.qos", "channel.close", "channel.close-ok"],
)
def test_method_on_a_channel_that_is_not_open(raw, method, ids) -> None:
    raw.send(2, method)
    assert_connection_closed(raw, 504, "CHANNEL_ERROR - expected 'channel.open'", *ids)


def test_channel_zero_cannot_be_opened(raw) -> None:
    raw.send(0, commands.Channel.Open())
    assert_connection_closed(raw, 504, NOT_RUNNING, 20, 10)


@pytest.mark.parametrize(
    "method,ids",
    [
        (commands.Basic.Qos(), (60, 10)),
        (commands.Queue.Declare(queue="q"), (50, 10)),
        (commands.Connection.Open(), (10, 40)),
        (commands.Connection.TuneOk(), (10, 31)),
        (commands.Connection.Start(), (10, 10)),
    ],
    ids=["basic.qos", "queue.declare", "connection.open", "connection.tune-ok", "connection.start"],
)
def test_unexpected_method_on_channel_zero(raw, method, ids) -> None:
    raw.send(0, method)
    assert_connection_closed(raw, 504, NOT_RUNNING, *ids)


@pytest.mark.parametrize(
    "method,ids",
    [
        (commands.Connection.Close(200, "bye", 0, 0), (10, 50)),
        (commands.Basic.QosOk(), (60, 11)),
        (commands.Queue.DeclareOk(queue="q", message_count=0, consumer_count=0), (50, 11)),
    ],
    ids=["connection.close-on-channel-1", "basic.qos-ok", "queue.declare-ok"],
)
def test_method_the_server_does_not_accept(raw, method, ids) -> None:
    raw.send(1, method)
    assert_connection_closed(raw, 503, "COMMAND_INVALID - unimplemented method", *ids)


def test_channel_max_limits_the_count_of_open_channels(broker: BrokerAddress) -> None:
    with rawamqp.connect(broker.host, broker.port, channel_max=2) as conn:
        conn.open_channel(1)
        conn.open_channel(5)
        conn.send(7, commands.Channel.Open())
        assert_connection_closed(
            conn,
            530,
            "NOT_ALLOWED - number of channels opened (2) has reached the negotiated "
            "channel_max (2)",
        )


def test_closed_channel_frees_a_slot_under_channel_max(broker: BrokerAddress) -> None:
    with rawamqp.connect(broker.host, broker.port, channel_max=1) as conn:
        conn.open_channel(1)
        conn.send(1, commands.Channel.Close(200, "", 0, 0))
        conn.expect(commands.Channel.CloseOk)
        conn.open_channel(1)


def test_channel_number_above_channel_max_is_accepted(broker: BrokerAddress) -> None:
    # RabbitMQ limits how many channels are open, not which numbers they use.
    with rawamqp.connect(broker.host, broker.port, channel_max=10) as conn:
        conn.open_channel(11)
        conn.open_channel(65535)


def test_frames_on_a_closing_channel_are_ignored_until_close_ok(raw, unique: str) -> None:
    raw.send(1, commands.Queue.Declare(queue=unique, passive=True))
    closed = raw.wait_close()
    assert (closed.level, closed.reply_code) == ("channel", 404)
    raw.send(1, commands.Basic.Qos())
    raw.send(1, commands.Queue.Declare(queue=unique, passive=True))
    raw.send(1, commands.Channel.CloseOk())
    raw.open_channel(1)  # the next frame on channel 1 is the OpenOk: nothing else was sent


def test_channel_close_crossing_a_server_close(raw, unique: str) -> None:
    raw.send(1, commands.Queue.Declare(queue=unique, passive=True))
    raw.wait_close()
    raw.send(1, commands.Channel.Close(200, "", 0, 0))
    raw.expect(commands.Channel.CloseOk)
    raw.send(1, commands.Channel.CloseOk())
    raw.open_channel(1)


def test_connection_close_crossing_a_server_close(raw) -> None:
    raw.send(1, commands.Channel.Open())
    closed = raw.wait_close()
    assert (closed.level, closed.reply_code) == ("connection", 504)
    raw.send(1, commands.Basic.Qos())  # ignored
    raw.send(0, commands.Connection.Close(200, "", 0, 0))
    raw.expect(commands.Connection.CloseOk)


# -- content frames ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channel,value",
    [
        (1, header.ContentHeader(0, 1, commands.Basic.Properties())),
        (1, body.ContentBody(b"x")),
        (2, header.ContentHeader(0, 1, commands.Basic.Properties())),
        (2, body.ContentBody(b"x")),
    ],
    ids=["header", "body", "header-unopened-channel", "body-unopened-channel"],
)
def test_content_frame_without_a_publish(raw, channel: int, value) -> None:
    raw.send(channel, value)
    assert_connection_closed(raw, 505, EXPECTED_METHOD)


def test_method_while_content_header_expected(raw) -> None:
    raw.send(1, commands.Basic.Publish(routing_key="k"))
    raw.send(1, commands.Basic.Qos())
    assert_connection_closed(raw, 505, EXPECTED_HEADER, 60, 40)


def test_body_while_content_header_expected(raw) -> None:
    raw.send(1, commands.Basic.Publish(routing_key="k"))
    raw.send(1, body.ContentBody(b"x"))
    assert_connection_closed(raw, 505, EXPECTED_HEADER, 60, 40)


def test_content_header_of_another_class(raw) -> None:
    raw.send(1, commands.Basic.Publish(routing_key="k"))
    raw.send_bytes(rawamqp.raw_frame(rawamqp.FRAME_HEADER, 1, struct.pack(">HHQH", 50, 0, 1, 0)))
    assert_connection_closed(
        raw,
        505,
        "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead",
        60,
        40,
    )


@pytest.mark.parametrize(
    "second",
    [commands.Basic.Qos(), header.ContentHeader(0, 5, commands.Basic.Properties())],
    ids=["method", "second-header"],
)
def test_non_body_frame_while_body_expected(raw, second) -> None:
    raw.send(1, commands.Basic.Publish(routing_key="k"))
    raw.send(1, header.ContentHeader(0, 5, commands.Basic.Properties()))
    raw.send(1, second)
    assert_connection_closed(raw, 505, EXPECTED_BODY, 60, 40)


def test_body_after_an_empty_content(raw) -> None:
    raw.send(1, commands.Basic.Publish(routing_key="k"))
    raw.send(1, header.ContentHeader(0, 0, commands.Basic.Properties()))
    raw.send(1, body.ContentBody(b"x"))
    assert_connection_closed(raw, 505, EXPECTED_METHOD)


@pytest.mark.skipif(
    external_broker() is not None,
    reason="a deliberate difference: RabbitMQ keeps collecting, the next method is its error",
)
def test_body_longer_than_announced_is_a_frame_error(raw) -> None:
    raw.send(1, commands.Basic.Publish(routing_key="k"))
    raw.send(1, header.ContentHeader(0, 2, commands.Basic.Properties()))
    raw.send(1, body.ContentBody(b"xyz"))
    assert_connection_closed(
        raw,
        501,
        "FRAME_ERROR - content body exceeds the 2 bytes announced in its header "
        "(3 bytes received)",
        60,
        40,
    )


def test_publishes_may_interleave_with_other_channels(raw) -> None:
    raw.open_channel(2)
    raw.send(1, commands.Basic.Publish(routing_key="k"))
    raw.send(2, commands.Basic.Qos())
    raw.expect(commands.Basic.QosOk)
    raw.send(1, header.ContentHeader(0, 0, commands.Basic.Properties()))
    raw.send(1, commands.Basic.Qos())
    raw.expect(commands.Basic.QosOk)


# -- malformed frames ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame,text,ids",
    [
        (method_frame(1, 60, 10), "FRAME_ERROR - cannot decode <<>>", (60, 10)),
        (method_frame(1, 50, 10, b"\x00"), "FRAME_ERROR - cannot decode <<0>>", (50, 10)),
        (
            method_frame(1, 60, 10, b"\x00" * 7 + b"extra"),
            "FRAME_ERROR - cannot decode <<0,0,0,0,0,0,0,101,120,116,114,97>>",
            (60, 10),
        ),
        (
            method_frame(
                1, 50, 10, b"\x00\x00" + rawamqp.short_str("q") + b"\x00" + b"\x00\x00\x00\x10junk"
            ),
            "FRAME_ERROR - cannot decode <<0,0,1,113,0,0,0,0,16,106,117,110,107>>",
            (50, 10),
        ),
    ],
    ids=["qos-no-arguments", "declare-truncated", "qos-trailing-bytes", "table-overrun"],
)
def test_undecodable_method_arguments(raw, frame: bytes, text: str, ids) -> None:
    raw.send_bytes(frame)
    assert_connection_closed(raw, 501, text, *ids)


@pytest.mark.parametrize(
    "frame,code,text",
    [
        (
            rawamqp.raw_frame(rawamqp.FRAME_METHOD, 1, b"\x00\x32"),
            501,
            "FRAME_ERROR - type 1, all octets = <<0,50>>: unknown_frame",
        ),
        (
            rawamqp.raw_frame(rawamqp.FRAME_METHOD, 1, b""),
            501,
            "FRAME_ERROR - type 1, all octets = <<>>: unknown_frame",
        ),
        (
            rawamqp.raw_frame(rawamqp.FRAME_HEADER, 1, b""),
            501,
            "FRAME_ERROR - type 2, all octets = <<>>: unknown_frame",
        ),
        (
            rawamqp.raw_frame(9, 1, b"abc"),
            501,
            'FRAME_ERROR - type 9, all octets = <<"abc">>: unknown_frame',
        ),
        (
            rawamqp.raw_frame(8, 0, b"abc"),
            501,
            'FRAME_ERROR - type 8, all octets = <<"abc">>: unknown_frame',
        ),
        (
            rawamqp.raw_frame(8, 1, b""),
            505,
            "UNEXPECTED_FRAME - type 8, all octets = <<>>",
        ),
        (
            rawamqp.raw_frame(rawamqp.FRAME_HEADER, 0, struct.pack(">HHQH", 60, 0, 1, 0)),
            505,
            "UNEXPECTED_FRAME - type 2, all octets = <<0,60,0,0,0,0,0,0,0,0,0,1,0,0>>",
        ),
        (
            method_frame(1, 60, 10, b"\x00" * 7)[:-1] + b"\x00",
            501,
            "FRAME_ERROR - type 1, all octets = <<0,60,0,10,0,0,0,0,0,0,0>>: "
            "{invalid_frame_end_marker,0}",
        ),
    ],
    ids=[
        "method-shorter-than-ids",
        "empty-method",
        "empty-header",
        "unknown-frame-type",
        "heartbeat-with-payload",
        "heartbeat-on-channel-1",
        "header-on-channel-0",
        "bad-frame-end",
    ],
)
def test_malformed_frame(raw, frame: bytes, code: int, text: str) -> None:
    raw.send_bytes(frame)
    assert_connection_closed(raw, code, text)


@pytest.mark.parametrize(
    "channel,class_id,method_id",
    [(1, 99, 10), (1, 60, 999), (0, 99, 1)],
    ids=["unknown-class", "unknown-method", "unknown-class-on-channel-0"],
)
def test_unknown_method_closes_the_connection(
    raw, channel: int, class_id: int, method_id: int
) -> None:
    raw.send_bytes(method_frame(channel, class_id, method_id))
    if external_broker() is not None:
        # RabbitMQ's reader process crashes on an unknown class/method id: no close frame.
        raw.expect_eof()
        return
    # amqpd deliberately says why instead, as the issue asks: 540 NOT_IMPLEMENTED.
    assert_connection_closed(
        raw,
        540,
        f"NOT_IMPLEMENTED - unknown class/method {class_id}/{method_id}",
        class_id,
        method_id,
    )


def test_frame_larger_than_frame_max(broker: BrokerAddress) -> None:
    with rawamqp.connect(broker.host, broker.port, frame_max=4096) as conn:
        conn.open_channel(1)
        conn.send_bytes(method_frame(1, 60, 10, b"\x00" * 4096))
        # Payload size 4100 against frame_max - 8 = 4088; RabbitMQ quotes no octets.
        assert_connection_closed(
            conn, 501, "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,4100,4088}"
        )


def test_body_payload_up_to_frame_max_is_accepted(broker: BrokerAddress, unique: str) -> None:
    # RabbitMQ tolerates payloads up to frame_max itself (the frame is then frame_max + 8).
    with rawamqp.connect(broker.host, broker.port, frame_max=4096) as conn:
        conn.open_channel(1)
        conn.send(1, commands.Queue.Declare(queue=unique, exclusive=True))
        conn.expect(commands.Queue.DeclareOk)
        conn.send(1, commands.Basic.Publish(routing_key=unique))
        conn.send(1, header.ContentHeader(0, 4096, commands.Basic.Properties()))
        conn.send_bytes(rawamqp.raw_frame(rawamqp.FRAME_BODY, 1, b"x" * 4096))
        conn.send(1, commands.Basic.Get(queue=unique, no_ack=True))
        conn.expect(commands.Basic.GetOk)
        _, content = conn.recv_frame()
        assert isinstance(content, header.ContentHeader) and content.body_size == 4096
        # The broker itself splits the body into frames of at most frame_max - 8 bytes.
        _, first = conn.recv_frame()
        _, second = conn.recv_frame()
        assert isinstance(first, body.ContentBody) and isinstance(second, body.ContentBody)
        assert (len(first.value), len(second.value)) == (4088, 8)
        assert first.value + second.value == b"x" * 4096


def test_body_payload_above_frame_max(broker: BrokerAddress) -> None:
    with rawamqp.connect(broker.host, broker.port, frame_max=4096) as conn:
        conn.open_channel(1)
        conn.send(1, commands.Basic.Publish(routing_key="k"))
        conn.send(1, header.ContentHeader(0, 8192, commands.Basic.Properties()))
        conn.send_bytes(rawamqp.raw_frame(rawamqp.FRAME_BODY, 1, b"x" * 4097))
        assert_connection_closed(
            conn, 501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}"
        )
