"""The broker survives bad input and abrupt clients, and other clients never notice.

Each test attacks one connection (garbage, broken framing, disconnects in the middle of
things, connection churn, channel abuse) with the raw client, checks the reply codes
against what RabbitMQ sends, and afterwards an autouse fixture proves a fresh pika client
still gets a round trip, the amqpd process is alive and it logged no traceback. Run with
AMQPD_TEST_URL=127.0.0.1:5673 to replay the same tests against the reference RabbitMQ.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pika
import pytest
from pamqp import body, commands, header

from tests.broker_process import BrokerProcess, external_broker
from tests.conftest import BrokerAddress
from tests.rawamqp import (
    FRAME_BODY,
    FRAME_METHOD,
    PROTOCOL_HEADER,
    Closed,
    ConnectionLost,
    RawConnection,
    connect,
    method_payload,
    raw_frame,
)


@dataclass
class Target:
    address: BrokerAddress
    proc: BrokerProcess | None


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A private amqpd for this module (so its log and liveness can be checked)."""
    outside = external_broker()
    if outside is not None:
        yield Target(BrokerAddress(*outside), None)
        return
    with BrokerProcess(tmp_path_factory.mktemp("amqpd-robust")) as proc:
        yield Target(BrokerAddress(proc.host, proc.port), proc)


@pytest.fixture(autouse=True)
def still_healthy(target: Target) -> Iterator[None]:
    """After every test: the process lives, logged no traceback, and serves a round trip."""
    log_start = len(target.proc.log_lines) if target.proc else 0
    yield
    if target.proc is not None:
        assert target.proc.proc is not None
        assert target.proc.proc.poll() is None, "amqpd exited:\n" + "\n".join(
            target.proc.log_lines[-30:]
        )
    round_trip(target.address)
    if target.proc is not None:
        new_lines = target.proc.log_lines[log_start:]
        bad = [line for line in new_lines if "Traceback" in line or "internal error" in line]
        assert not bad, "amqpd logged an internal error:\n" + "\n".join(new_lines[-40:])


def round_trip(address: BrokerAddress, text: bytes = b"ping") -> None:
    with pika.BlockingConnection(address.params(socket_timeout=5)) as conn:
        ch = conn.channel()
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.confirm_delivery()
        ch.basic_publish("", queue, text)
        method, _props, got = ch.basic_get(queue, auto_ack=True)
        assert method is not None and got == text


@pytest.fixture
def addr(target: Target) -> BrokerAddress:
    return target.address


def open_raw(address: BrokerAddress, **tune: int) -> RawConnection:
    conn = connect(address.host, address.port, **tune)
    conn.sock.settimeout(10)
    return conn


def connection_close(conn: RawConnection) -> Closed:
    closed = conn.wait_close()
    assert closed.level == "connection", closed
    return closed


def ends(conn: RawConnection, deadline_s: float = 8.0) -> Closed | None:
    """Wait for the connection to end: the Connection.Close received, or None for EOF."""
    conn.sock.settimeout(deadline_s)
    try:
        return connection_close(conn)
    except ConnectionLost:
        return None


def read_until_eof(sock: socket.socket, deadline_s: float = 8.0) -> bytes:
    """Everything the peer sends until it closes (a reset also counts as closed)."""
    data = b""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        sock.settimeout(max(0.05, end - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return data
        except TimeoutError:
            break
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"peer did not close within {deadline_s} s (got {data!r})")


def abort(sock: socket.socket) -> None:
    """Close with a TCP reset instead of a FIN, as a crashed client would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def queue_depth(address: BrokerAddress, queue: str) -> int:
    with pika.BlockingConnection(address.params()) as conn:
        return conn.channel().queue_declare(queue, passive=True).method.message_count


# --- garbage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("chunk", [1, 7, 4096], ids=["bytewise", "small", "bulk"])
def test_random_garbage_after_handshake(addr: BrokerAddress, seed: int, chunk: int) -> None:
    rng = random.Random(seed)
    garbage = bytes(rng.getrandbits(8) for _ in range(3000))
    if garbage[0] in (1, 2, 3, 8):  # keep the first "frame" type invalid-or-huge either way
        garbage = b"\x41" + garbage[1:]
    with open_raw(addr) as conn:
        try:
            for start in range(0, 64 if chunk == 1 else len(garbage), chunk):
                conn.send_bytes(garbage[start : start + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the broker may hang up before all garbage is sent
        closed = connection_close(conn)
    assert closed.reply_code == 501, closed
    assert closed.reply_text.startswith("FRAME_ERROR - "), closed


@pytest.mark.parametrize("seed", range(4))
def test_well_framed_random_methods(addr: BrokerAddress, seed: int) -> None:
    """Valid framing, random method payloads: a connection error at worst, never a crash."""
    rng = random.Random(seed)
    with open_raw(addr) as conn:
        conn.open_channel(1)
        try:
            for _ in range(50):
                payload = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
                conn.send_bytes(raw_frame(FRAME_METHOD, 1, payload))
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed = ends(conn)
    # RabbitMQ drops the socket on an unknown class id; anything it sends is a hard error
    assert closed is None or closed.reply_code >= 500, closed


@pytest.mark.parametrize(
    "first_bytes",
    [
        b"GET / HT",
        b"\x00" * 8,
        b"AMQX\x00\x00\x09\x01",
        b"AMQP\x00\x00\x09\x02",
        b"\x16\x03\x01\x02\x00\x01\x00\x01",  # a TLS client hello
        bytes(random.Random(7).getrandbits(8) | 0x80 for _ in range(8)),
    ],
    ids=["http", "zeros", "amqx", "amqp-0-9-2", "tls", "random"],
)
def test_garbage_instead_of_protocol_header(addr: BrokerAddress, first_bytes: bytes) -> None:
    with socket.create_connection((addr.host, addr.port), timeout=10) as sock:
        sock.sendall(first_bytes)
        reply = read_until_eof(sock)
    assert reply == PROTOCOL_HEADER


def test_partial_header_then_garbage(addr: BrokerAddress) -> None:
    with socket.create_connection((addr.host, addr.port), timeout=10) as sock:
        sock.sendall(b"AMQ")
        time.sleep(0.1)
        sock.sendall(b"Z\x00\x00\x09\x01")
        reply = read_until_eof(sock)
    assert reply == PROTOCOL_HEADER


def test_long_garbage_instead_of_protocol_header(addr: BrokerAddress) -> None:
    garbage = bytes(random.Random(3).getrandbits(8) for _ in range(20000))
    with socket.create_connection((addr.host, addr.port), timeout=10) as sock:
        try:
            sock.sendall(b"XX" + garbage)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_until_eof(sock)
    # the server hangs up with unread data, so a reset may swallow the header it wrote
    assert PROTOCOL_HEADER.startswith(reply)


# --- broken framing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame_type", "channel", "size"),
    [(FRAME_METHOD, 0, 0xFFFFFFF0), (FRAME_BODY, 5, 0x7FFFFFFF), (FRAME_METHOD, 1, 131073)],
    ids=["4GiB-method", "2GiB-body", "payload-frame_max+1"],
)
def test_absurd_frame_size(addr: BrokerAddress, frame_type: int, channel: int, size: int) -> None:
    with open_raw(addr) as conn:
        conn.send_bytes(struct.pack(">BHI", frame_type, channel, size) + b"x" * 32)
        closed = connection_close(conn)
    assert closed.reply_code == 501, closed
    assert closed.reply_text.startswith("FRAME_ERROR - "), closed


def test_payload_of_exactly_frame_max_is_accepted(addr: BrokerAddress, unique: str) -> None:
    with pika.BlockingConnection(addr.params()) as helper:
        helper.channel().queue_declare(unique, auto_delete=False)
    try:
        with open_raw(addr) as conn:
            content = bytes(range(256)) * (conn.frame_max // 256)
            assert len(content) == conn.frame_max
            conn.open_channel(1)
            conn.send(1, commands.Confirm.Select())
            conn.expect(commands.Confirm.SelectOk)
            conn.publish(1, content, routing_key=unique)  # one body frame of frame_max bytes
            conn.expect(commands.Basic.Ack)
        with pika.BlockingConnection(addr.params()) as helper:
            method, _props, got = helper.channel().basic_get(unique, auto_ack=True)
            assert method is not None and got == content
    finally:
        with pika.BlockingConnection(addr.params()) as helper:
            helper.channel().queue_delete(unique)


def test_frame_too_large_text(addr: BrokerAddress) -> None:
    with open_raw(addr) as conn:
        conn.send_bytes(struct.pack(">BHI", FRAME_METHOD, 1, 200000) + b"x" * 16)
        closed = connection_close(conn)
    assert closed.reply_text == (
        f"FRAME_ERROR - type 1, all octets = <<>>: {{frame_too_large,200000,{conn.frame_max - 8}}}"
    )


def test_frame_end_missing(addr: BrokerAddress) -> None:
    with open_raw(addr) as conn:
        frame = raw_frame(FRAME_METHOD, 1, method_payload(20, 10, b"\x00"))
        conn.send_bytes(frame[:-1] + b"\x00")
        closed = connection_close(conn)
    assert closed.reply_code == 501, closed


@pytest.mark.parametrize(
    "cut", [3, 7, 12, -1], ids=["in-head", "after-head", "in-payload", "no-end"]
)
@pytest.mark.parametrize("how", ["fin", "rst"])
def test_truncated_frame_then_disconnect(addr: BrokerAddress, cut: int, how: str) -> None:
    conn = open_raw(addr)
    conn.open_channel(1)
    frame = raw_frame(
        FRAME_METHOD, 1, method_payload(50, 10, b"\x00\x00" + b"\x05queue" + b"\x00" * 5)
    )
    conn.send_bytes(frame[:cut])
    if how == "rst":
        abort(conn.sock)
    else:
        conn.close()


def test_truncated_method_arguments(addr: BrokerAddress) -> None:
    with open_raw(addr) as conn:
        conn.open_channel(1)
        conn.send_bytes(raw_frame(FRAME_METHOD, 1, method_payload(50, 10, b"\x00\x00\x03a")))
        closed = connection_close(conn)
    assert closed.reply_code == 501
    assert closed.reply_text == "FRAME_ERROR - cannot decode <<0,0,3,97>>"


def test_unknown_method_ends_the_connection(addr: BrokerAddress) -> None:
    with open_raw(addr) as conn:
        conn.open_channel(1)
        conn.send_bytes(raw_frame(FRAME_METHOD, 1, method_payload(60, 99)))
        closed = ends(conn)
    # RabbitMQ 3.10 drops the socket without a Connection.Close; amqpd sends 540
    assert closed is None or closed.reply_code == 540, closed


def test_heartbeat_on_a_channel(addr: BrokerAddress) -> None:
    with open_raw(addr) as conn:
        conn.send_bytes(struct.pack(">BHI", 8, 1, 0) + b"\xce")
        closed = connection_close(conn)
    assert closed.reply_code == 505
    assert closed.reply_text == "UNEXPECTED_FRAME - type 8, all octets = <<>>"


# --- content ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_disconnect_in_the_middle_of_a_body(addr: BrokerAddress, unique: str, how: str) -> None:
    with pika.BlockingConnection(addr.params()) as consumer_conn:
        consumer = consumer_conn.channel()
        consumer.queue_declare(unique, auto_delete=False)
        consumer.basic_qos(prefetch_count=10)

        raw = open_raw(addr)
        raw.open_channel(1)
        raw.send(1, commands.Basic.Publish(exchange="", routing_key=unique))
        raw.send(1, header.ContentHeader(0, 100, commands.Basic.Properties()))
        raw.send(1, body.ContentBody(b"partial" * 5))
        raw.send_bytes(raw_frame(FRAME_BODY, 1, b"more")[:-3])  # and a torn body frame
        time.sleep(0.1)
        if how == "rst":
            abort(raw.sock)
        else:
            raw.close()

        with pika.BlockingConnection(addr.params()) as publisher_conn:
            publisher = publisher_conn.channel()
            publisher.confirm_delivery()
            publisher.basic_publish("", unique, b"after")

        got = []  # anything the torn publish wrongly routed would come before "after"
        for method, _props, payload in consumer.consume(unique, inactivity_timeout=10.0):
            if method is None:
                break
            got.append(payload)
            consumer.basic_ack(method.delivery_tag)
            if payload == b"after":
                break
        consumer.cancel()
        assert got == [b"after"]
        assert consumer.queue_declare(unique, passive=True).method.message_count == 0
        consumer.queue_delete(unique)


def test_body_larger_than_declared_size(addr: BrokerAddress, unique: str) -> None:
    with pika.BlockingConnection(addr.params()) as helper:
        helper.channel().queue_declare(unique, auto_delete=False)
    with open_raw(addr) as conn:
        conn.open_channel(1)
        conn.send(1, commands.Basic.Publish(exchange="", routing_key=unique))
        conn.send(1, header.ContentHeader(0, 3, commands.Basic.Properties()))
        conn.send(1, body.ContentBody(b"abcdef"))
        # RabbitMQ only notices at the next frame (505); amqpd refuses the overlong body
        # frame itself (501, a deliberate difference). Either way nothing is routed.
        conn.send(1, commands.Basic.Get(queue=unique, no_ack=True))
        closed = connection_close(conn)
    if external_broker() is None:
        assert closed.reply_code == 501, closed
        assert closed.reply_text == (
            "FRAME_ERROR - content body exceeds the 3 bytes announced in its header "
            "(6 bytes received)"
        )
    else:
        assert closed.reply_code == 505, closed
        assert closed.reply_text.startswith("UNEXPECTED_FRAME - "), closed
    assert queue_depth(addr, unique) == 0
    with pika.BlockingConnection(addr.params()) as helper:
        helper.channel().queue_delete(unique)


@pytest.mark.parametrize("stage", ["before-header", "during-body"])
def test_method_interrupting_content(addr: BrokerAddress, stage: str) -> None:
    with open_raw(addr) as conn:
        conn.open_channel(1)
        conn.send(1, commands.Basic.Publish(exchange="", routing_key="nowhere"))
        if stage == "during-body":
            conn.send(1, header.ContentHeader(0, 10, commands.Basic.Properties()))
            conn.send(1, body.ContentBody(b"abc"))
        conn.send(1, commands.Basic.Qos(prefetch_count=1))
        closed = connection_close(conn)
    assert closed.reply_code == 505, closed


@pytest.mark.parametrize(
    ("stage", "text"),
    [
        (
            "before-header",
            "UNEXPECTED_FRAME - expected content header for class 60, "
            "got non content header frame instead",
        ),
        (
            "during-body",
            "UNEXPECTED_FRAME - expected content body, got non content body frame instead",
        ),
    ],
)
def test_method_interrupting_content_reply_like_rabbitmq(
    addr: BrokerAddress, stage: str, text: str
) -> None:
    with open_raw(addr) as conn:
        conn.open_channel(1)
        conn.send(1, commands.Basic.Publish(exchange="", routing_key="nowhere"))
        if stage == "during-body":
            conn.send(1, header.ContentHeader(0, 10, commands.Basic.Properties()))
            conn.send(1, body.ContentBody(b"abc"))
        conn.send(1, commands.Basic.Qos(prefetch_count=1))
        closed = connection_close(conn)
    assert (closed.reply_code, closed.reply_text) == (505, text)
    assert (closed.class_id, closed.method_id) == (60, 40)


# --- churn ------------------------------------------------------------------------------------


def churn_one(address: BrokerAddress, kind: int) -> None:
    sock = socket.create_connection((address.host, address.port), timeout=10)
    try:
        if kind == 0:
            pass  # connect and vanish
        elif kind == 1:
            sock.sendall(PROTOCOL_HEADER[:5])
        elif kind == 2:
            sock.sendall(PROTOCOL_HEADER)
            sock.recv(10)  # part of connection.start
        else:
            conn = RawConnection.__new__(RawConnection)
            conn.sock, conn.buffer, conn.frame_max, conn.channel_max = sock, b"", 0, 0
            conn.handshake()
            conn.open_channel(1)
            if kind == 4:
                conn.send(1, commands.Basic.Publish(exchange="", routing_key="churn-nowhere"))
                conn.send(1, header.ContentHeader(0, 50, commands.Basic.Properties()))
    finally:
        if kind % 2:
            abort(sock)
        else:
            sock.close()


def test_connection_churn_does_not_disturb_a_working_client(
    addr: BrokerAddress, unique: str
) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []
    done = [0]

    def worker() -> None:
        try:
            with pika.BlockingConnection(addr.params()) as conn:
                ch = conn.channel()
                ch.queue_declare(unique, exclusive=True)
                ch.confirm_delivery()
                n = 0
                while not stop.is_set() or n < 20:
                    text = f"msg-{n}".encode()
                    ch.basic_publish("", unique, text)
                    method, _props, got = ch.basic_get(unique, auto_ack=True)
                    assert method is not None, f"message {n} was lost"
                    assert got == text
                    n += 1
                    done[0] = n
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        for index in range(200):
            churn_one(addr, index % 5)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive(), "the working client hung"
    assert not errors, errors
    assert done[0] >= 20


# --- channels ---------------------------------------------------------------------------------


def test_hundred_channels_on_one_connection(addr: BrokerAddress) -> None:
    with open_raw(addr) as conn:
        numbers = list(range(1, 101))
        for number in numbers:  # pipelined: all opens before reading any reply
            conn.send(number, commands.Channel.Open())
        opened = {conn.recv_frame()[0] for _ in numbers}
        assert opened == set(numbers)
        for number in numbers:
            conn.send(number, commands.Basic.Qos(prefetch_count=number))
        for _ in numbers:
            assert isinstance(conn.recv_frame()[1], commands.Basic.QosOk)
        for number in numbers:
            conn.send(
                number,
                commands.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0),
            )
        closed_ok = []
        for _ in numbers:
            channel, value = conn.recv_frame()
            assert isinstance(value, commands.Channel.CloseOk)
            closed_ok.append(channel)
        assert sorted(closed_ok) == numbers
        conn.open_channel(1)  # numbers can be reused
        conn.open_channel(100)


def test_hundred_pika_channels(addr: BrokerAddress) -> None:
    with pika.BlockingConnection(addr.params()) as conn:
        channels = [conn.channel() for _ in range(100)]
        for ch in channels:
            ch.queue_declare("", exclusive=True)
        for ch in channels:
            ch.close()
        assert conn.is_open


def test_channel_open_on_channel_zero(addr: BrokerAddress) -> None:
    with open_raw(addr) as conn:
        conn.send(0, commands.Channel.Open())
        closed = connection_close(conn)
    assert closed.reply_code == 504
    assert closed.reply_text == "CHANNEL_ERROR - unexpected method in connection state running"
    assert (closed.class_id, closed.method_id) == (20, 10)


def test_channel_max_limits_the_count_not_the_number(addr: BrokerAddress) -> None:
    with open_raw(addr, channel_max=3) as conn:
        conn.open_channel(10)
        conn.open_channel(65535)
        conn.open_channel(1)
        conn.send(2, commands.Channel.Open())
        closed = connection_close(conn)
    assert closed.reply_code == 530
    assert closed.reply_text == (
        "NOT_ALLOWED - number of channels opened (3) has reached the negotiated channel_max (3)"
    )
    assert (closed.class_id, closed.method_id) == (0, 0)  # sic: RabbitMQ names no method


def test_second_channel_open_on_an_open_channel(addr: BrokerAddress) -> None:
    with open_raw(addr) as conn:
        conn.open_channel(1)
        conn.send(1, commands.Channel.Open())
        closed = connection_close(conn)
    assert closed.reply_code == 504
    assert closed.reply_text == "CHANNEL_ERROR - second 'channel.open' seen"


# --- closing ----------------------------------------------------------------------------------


def test_publish_while_the_broker_closes_the_channel(addr: BrokerAddress, unique: str) -> None:
    with pika.BlockingConnection(addr.params()) as helper:
        helper.channel().queue_declare(unique, auto_delete=False)
    with open_raw(addr) as conn:
        conn.open_channel(1)
        # a channel error, then publishes the client pipelined before it saw the close
        conn.send(1, commands.Queue.Declare(queue=unique + "-absent", passive=True))
        for _ in range(3):
            conn.publish(1, b"lost", routing_key=unique)
        conn.send(1, commands.Basic.Qos(prefetch_count=1))
        closed = conn.wait_close()
        assert (closed.level, closed.channel, closed.reply_code) == ("channel", 1, 404)
        conn.send(1, commands.Channel.CloseOk())
        conn.open_channel(1)  # the channel is usable again, nothing else came back
        conn.send(1, commands.Basic.Qos(prefetch_count=1))
        assert isinstance(conn.recv_frame()[1], commands.Basic.QosOk)
    assert queue_depth(addr, unique) == 0
    with pika.BlockingConnection(addr.params()) as helper:
        helper.channel().queue_delete(unique)


def test_publish_after_client_sent_channel_close(addr: BrokerAddress, unique: str) -> None:
    with open_raw(addr) as conn:
        conn.open_channel(1)
        conn.send(1, commands.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0))
        conn.publish(1, b"late", routing_key=unique)
        conn.expect(commands.Channel.CloseOk)
        closed = connection_close(conn)
    assert closed.reply_code == 504
    assert closed.reply_text == "CHANNEL_ERROR - expected 'channel.open'"


def test_connection_close_with_a_publish_in_flight(addr: BrokerAddress, unique: str) -> None:
    with pika.BlockingConnection(addr.params()) as helper:
        helper.channel().queue_declare(unique, auto_delete=False)
    with open_raw(addr) as conn:
        conn.open_channel(1)
        conn.send(1, commands.Basic.Publish(exchange="", routing_key=unique))
        conn.send(1, header.ContentHeader(0, 10, commands.Basic.Properties()))
        conn.send(1, body.ContentBody(b"12345"))
        conn.send(
            0, commands.Connection.Close(reply_code=200, reply_text="", class_id=0, method_id=0)
        )
        conn.expect(commands.Connection.CloseOk)
    assert queue_depth(addr, unique) == 0
    with pika.BlockingConnection(addr.params()) as helper:
        helper.channel().queue_delete(unique)
