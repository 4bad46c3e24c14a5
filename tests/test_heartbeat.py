"""Heartbeats and the handshake timeout, against a real broker over real sockets.

A raw client (tests/rawamqp.py) negotiates the heartbeat it wants in tune-ok, so the broker's
sending and its dead-peer detection can be observed frame by frame; pika checks that a
well-behaved client is never dropped. With AMQPD_TEST_URL set the tests run against that
broker, except the ones that need amqpd settings (handshake timeout), which skip.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pika
import pytest
from pamqp import commands, heartbeat

from tests.broker_process import BrokerProcess, external_broker
from tests.conftest import BrokerAddress
from tests.rawamqp import PROTOCOL_HEADER, ConnectionLost, RawConnection

HANDSHAKE_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def hb_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerAddress]:
    """A broker that proposes heartbeat=1 and a 1 s handshake timeout (or AMQPD_TEST_URL)."""
    outside = external_broker()
    if outside is not None:
        yield BrokerAddress(*outside)
        return
    env = {"AMQPD_HEARTBEAT": "1", "AMQPD_HANDSHAKE_TIMEOUT": str(HANDSHAKE_TIMEOUT)}
    with BrokerProcess(tmp_path_factory.mktemp("amqpd-hb"), env=env) as proc:
        yield BrokerAddress(proc.host, proc.port)


def raw_login(address: BrokerAddress, heartbeat_s: int) -> RawConnection:
    """A raw connection that answers tune with the given heartbeat and opens vhost '/'."""
    conn = RawConnection(address.host, address.port)
    conn.start()
    tune = conn.expect(commands.Connection.Tune)
    assert isinstance(tune, commands.Connection.Tune)
    conn.channel_max, conn.frame_max = tune.channel_max, tune.frame_max
    conn.send(
        0,
        commands.Connection.TuneOk(
            channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=heartbeat_s
        ),
    )
    conn.send(0, commands.Connection.Open(virtual_host="/"))
    conn.expect(commands.Connection.OpenOk)
    return conn


def wait_for_eof(sock: socket.socket, deadline_s: float) -> float | None:
    """Read and discard until the peer closes; seconds it took, or None at the deadline."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        sock.settimeout(max(0.05, deadline_s - (time.monotonic() - start)))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
        if not chunk:
            return time.monotonic() - start
    return None


def test_tune_proposes_the_configured_heartbeat(hb_broker: BrokerAddress) -> None:
    if external_broker() is not None:
        pytest.skip("the proposed heartbeat is an amqpd setting here")
    with RawConnection(hb_broker.host, hb_broker.port) as conn:
        conn.start()
        tune = conn.expect(commands.Connection.Tune)
        assert isinstance(tune, commands.Connection.Tune)
        assert tune.heartbeat == 1


def test_broker_sends_heartbeats_when_heartbeat_is_1(broker: BrokerAddress) -> None:
    with raw_login(broker, 1) as conn:
        conn.sock.settimeout(0.3)
        received = 0
        last_sent = time.monotonic()
        deadline = time.monotonic() + 10.0
        while received < 3 and time.monotonic() < deadline:
            if time.monotonic() - last_sent > 0.4:  # keep ourselves alive meanwhile
                conn.send(0, heartbeat.Heartbeat())
                last_sent = time.monotonic()
            try:
                channel, value = conn.recv_frame()
            except TimeoutError:
                continue
            assert isinstance(value, heartbeat.Heartbeat), value
            assert channel == 0
            received += 1
        assert received >= 3, "fewer than 3 heartbeat frames in 10 s with heartbeat=1"
        # and the connection is still in working order
        conn.open_channel(1)


def test_silent_client_is_dropped_and_its_unacked_messages_requeued(
    broker: BrokerAddress, unique: str
) -> None:
    with pika.BlockingConnection(broker.params()) as helper:
        ch = helper.channel()
        ch.queue_declare(unique, auto_delete=False)
        ch.confirm_delivery()
        for n in range(3):
            ch.basic_publish("", unique, f"m{n}".encode())

        silent = raw_login(broker, 1)
        silent.open_channel(1)
        silent.send(1, commands.Basic.Qos(prefetch_count=10))
        silent.expect(commands.Basic.QosOk)
        silent.send(1, commands.Basic.Consume(queue=unique, consumer_tag="silent"))
        silent.expect(commands.Basic.ConsumeOk)
        delivered = 0
        while delivered < 3:
            _, value = silent.recv_frame()
            if isinstance(value, commands.Basic.Deliver):
                assert not value.redelivered
                delivered += 1
        # from here on the raw client sends nothing at all, not even heartbeats
        took = wait_for_eof(silent.sock, 8.0)
        silent.close()
        assert took is not None, "broker kept a client that missed heartbeats for 8 s"
        assert took >= 0.5, "broker closed the socket before any heartbeat was due"

        got: list[tuple[bytes, bool]] = []
        for method, _props, body in ch.consume(unique, inactivity_timeout=3.0):
            if method is None:
                break
            got.append((body, method.redelivered))
            ch.basic_ack(method.delivery_tag)
            if len(got) == 3:
                break
        ch.cancel()
        ch.queue_delete(unique)
    assert sorted(got) == [(b"m0", True), (b"m1", True), (b"m2", True)]


def test_pika_with_heartbeat_1_stays_connected(broker: BrokerAddress, unique: str) -> None:
    with pika.BlockingConnection(broker.params(heartbeat=1)) as conn:
        assert conn._impl.params.heartbeat == 1  # what was negotiated
        ch = conn.channel()
        ch.queue_declare(unique, exclusive=True)
        until = time.monotonic() + 4.0
        while time.monotonic() < until:
            conn.process_data_events(time_limit=0.2)
        assert conn.is_open
        ch.basic_publish("", unique, b"still here")
        method, _props, body = ch.basic_get(unique, auto_ack=True)
        assert method is not None
        assert body == b"still here"


def test_heartbeat_0_disables_heartbeats(hb_broker: BrokerAddress) -> None:
    # hb_broker proposes 1 s (amqpd); the client refuses heartbeats in tune-ok.
    with raw_login(hb_broker, 0) as conn:
        conn.sock.settimeout(3.5)
        with pytest.raises(TimeoutError):
            _, value = conn.recv_frame()
            pytest.fail(f"broker sent {value!r} with heartbeats disabled")
        assert not conn.buffer
        conn.open_channel(1)  # still connected after > 3 heartbeat intervals of silence
        conn.send(1, commands.Queue.Declare(queue="", exclusive=True))
        assert isinstance(conn.recv_frame()[1], commands.Queue.DeclareOk)


def test_client_accepting_the_proposed_heartbeat_gets_heartbeats(
    hb_broker: BrokerAddress,
) -> None:
    if external_broker() is not None:
        pytest.skip("needs a broker that proposes heartbeat=1")
    conn = RawConnection(hb_broker.host, hb_broker.port)
    conn.start()
    tune = conn.expect(commands.Connection.Tune)
    assert isinstance(tune, commands.Connection.Tune)
    conn.send(
        0,
        commands.Connection.TuneOk(
            channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=tune.heartbeat
        ),
    )
    conn.send(0, commands.Connection.Open(virtual_host="/"))
    conn.expect(commands.Connection.OpenOk)
    conn.sock.settimeout(4.0)
    with conn:
        channel, value = conn.recv_frame()
        assert channel == 0
        assert isinstance(value, heartbeat.Heartbeat)


@pytest.mark.parametrize(
    "sent",
    [b"", PROTOCOL_HEADER[:4], PROTOCOL_HEADER[:7]],
    ids=["nothing", "half-header", "7-of-8-bytes"],
)
def test_stalled_handshake_is_dropped_after_the_timeout(
    hb_broker: BrokerAddress, sent: bytes
) -> None:
    if external_broker() is not None:
        pytest.skip("the handshake timeout is an amqpd setting here")
    with socket.create_connection((hb_broker.host, hb_broker.port)) as sock:
        if sent:
            sock.sendall(sent)
        took = wait_for_eof(sock, 6.0)
    assert took is not None, "a stalled handshake was kept for 6 s"
    assert took >= HANDSHAKE_TIMEOUT * 0.5


def test_handshake_stalled_after_start_is_dropped(hb_broker: BrokerAddress) -> None:
    if external_broker() is not None:
        pytest.skip("the handshake timeout is an amqpd setting here")
    with RawConnection(hb_broker.host, hb_broker.port) as conn:
        conn.send_bytes(PROTOCOL_HEADER)
        conn.expect(commands.Connection.Start)
        took = wait_for_eof(conn.sock, 6.0)
    assert took is not None, "a client silent after connection.start was kept for 6 s"


def test_finished_handshake_is_not_dropped_by_the_handshake_timer(
    hb_broker: BrokerAddress,
) -> None:
    if external_broker() is not None:
        pytest.skip("the handshake timeout is an amqpd setting here")
    with raw_login(hb_broker, 0) as conn:
        time.sleep(HANDSHAKE_TIMEOUT * 2.5)
        conn.open_channel(1)
        conn.send(1, commands.Basic.Qos(prefetch_count=1))
        try:
            conn.expect(commands.Basic.QosOk)
        except ConnectionLost:
            pytest.fail("connection dropped after a completed handshake")
