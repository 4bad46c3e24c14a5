"""The connection's protocol rules, driven by feeding bytes: no socket, no event loop.

A `Connection` gets a recording transport and a fake clock whose timers fire only when a test
advances it; the broker is the real `Broker` with one in-memory vhost. Each test feeds client
frames to `data_received`, runs the tick the connection asked for, and decodes what it wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pamqp import body as amqp_body
from pamqp import commands, frame, header, heartbeat

from amqpd.broker import Broker
from amqpd.config import Config
from amqpd.connection import FRAMES_PER_TURN, Connection
from amqpd.connection_state import (
    AWAIT_HEADER,
    AWAIT_OPEN,
    AWAIT_START_OK,
    AWAIT_TUNE_OK,
    CLOSED,
    CLOSING,
    OPEN,
    TRANSITIONS,
    IllegalTransition,
    State,
    advance,
)
from amqpd.core.queue import FLOW_HIGH
from amqpd.core.vhost import VHost
from amqpd.flow import FlowControl
from amqpd.wire.frames import PROTOCOL_HEADER

CAPABILITIES = {"authentication_failure_close": True, "consumer_cancel_notify": True}


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Time stands still until `advance`; call_soon callbacks run on `run_ready`."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._ready: list[Callable[[], object]] = []
        self._timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Callable[[], object]) -> None:
        self._ready.append(callback)

    def call_later(self, delay: float, callback: Callable[[], object]) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback)
        self._timers.append(timer)
        return timer

    def run_ready(self) -> None:
        while self._ready:
            ready, self._ready = self._ready, []
            for callback in ready:
                callback()

    def advance(self, seconds: float) -> None:
        """Move time forward, firing every timer that falls due on the way, in order."""
        end = self.now + seconds
        while True:
            due = [t for t in self._timers if not t.cancelled and t.when <= end]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self._timers.remove(timer)
            self.now = timer.when
            timer.callback()
            self.run_ready()
        self.now = end


class FakeTransport:
    """Records what the connection writes and what it asks of the socket."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True

    def write(self, data: bytes) -> None:
        assert not self.closed and not self.aborted, "write after close"
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


class Client:
    """One connection under test and the client side of its conversation."""

    def __init__(self, config: Config | None = None, beside: Client | None = None) -> None:
        """A new broker, or another connection to that of `beside` (and its clock)."""
        if beside is not None:
            self.clock, self.broker = beside.clock, beside.broker
        else:
            self.clock = FakeClock()
            self.broker = Broker(config or Config(), self.clock)  # type: ignore[arg-type]
            self.broker.vhosts["/"] = VHost("/", schedule=self.broker.scheduler.dispatch)
        self.transport = FakeTransport()
        self.connection = Connection(self.broker, self.clock)
        self.connection.connection_made(self.transport)
        self._read = 0

    def feed(self, data: bytes) -> None:
        self.connection.data_received(data)
        self.clock.run_ready()

    def send(self, channel: int, method: Any) -> None:
        self.feed(frame.marshal(method, channel))

    def received(self) -> list[tuple[int, Any]]:
        """(channel, frame) for everything written since the last call."""
        out = []
        data = bytes(self.transport.written[self._read :])
        self._read = len(self.transport.written)
        while data:
            used, channel, value = frame.unmarshal(data)
            out.append((channel, value))
            data = data[used:]
        return out

    def expect(self, *kinds: type) -> list[Any]:
        frames = [value for _, value in self.received()]
        assert [type(value) for value in frames] == list(kinds)
        return frames

    def login(self, password: str = "guest", capabilities: dict | None = None) -> None:
        self.feed(PROTOCOL_HEADER)
        self.expect(commands.Connection.Start)
        self.send(
            0,
            commands.Connection.StartOk(
                client_properties={
                    "capabilities": CAPABILITIES if capabilities is None else capabilities
                },
                mechanism="PLAIN",
                response=f"\0guest\0{password}",
            ),
        )

    def open(self, vhost: str = "/", heartbeat_s: int = 0) -> None:
        self.login()
        self.expect(commands.Connection.Tune)
        self.send(
            0, commands.Connection.TuneOk(channel_max=10, frame_max=8192, heartbeat=heartbeat_s)
        )
        self.send(0, commands.Connection.Open(virtual_host=vhost))


def test_handshake_happy_path_yields_the_negotiated_result() -> None:
    client = Client()
    client.feed(PROTOCOL_HEADER[:3])
    assert client.received() == [] and client.connection.state is AWAIT_HEADER
    client.feed(PROTOCOL_HEADER[3:])
    (start,) = client.expect(commands.Connection.Start)
    assert start.mechanisms == "PLAIN AMQPLAIN"
    assert client.connection.state is AWAIT_START_OK
    client.send(
        0,
        commands.Connection.StartOk(
            client_properties={"capabilities": CAPABILITIES},
            mechanism="PLAIN",
            response="\0guest\0guest",
        ),
    )
    (tune,) = client.expect(commands.Connection.Tune)
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (2047, 131072, 60)
    assert client.connection.state is AWAIT_TUNE_OK
    client.send(0, commands.Connection.TuneOk(channel_max=10, frame_max=8192, heartbeat=0))
    assert client.connection.state is AWAIT_OPEN
    assert client.received() == []
    client.send(0, commands.Connection.Open(virtual_host="/"))
    client.expect(commands.Connection.OpenOk)
    connection = client.connection
    assert connection.state is OPEN
    negotiated = connection.negotiated
    assert negotiated is not None
    assert (negotiated.user, negotiated.vhost.name) == ("guest", "/")
    assert (negotiated.limits.channel_max, negotiated.limits.frame_max) == (10, 8192)
    assert negotiated.cancel_notify and not negotiated.blocked_notify
    assert (connection.channel_max, connection.frame_max, connection.reader.frame_max) == (
        10,
        8192,
        8192,
    )
    assert (connection.access.user, connection.access.vhost) == ("guest", "/")


@pytest.mark.parametrize("greeting", [b"AMQP\x00\x00\x09\x00", b"HTTP/1.1", b"GET"])
def test_bad_protocol_header_gets_ours_and_a_close(greeting: bytes) -> None:
    client = Client()
    client.feed(greeting)
    assert bytes(client.transport.written) == PROTOCOL_HEADER
    assert client.transport.closed
    assert client.connection.state is CLOSED


def test_wrong_credentials_close_with_403_and_wait_for_close_ok() -> None:
    client = Client()
    client.login(password="wrong")
    (close,) = client.expect(commands.Connection.Close)
    assert close.reply_code == 403
    assert close.reply_text == (
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN."
        " For details see the broker logfile."
    )
    assert client.connection.state is CLOSING and not client.transport.closed
    client.send(0, commands.Connection.CloseOk())
    assert client.transport.closed and client.connection.state is CLOSED


def test_wrong_credentials_without_the_capability_drop_the_socket() -> None:
    client = Client()
    client.login(password="wrong", capabilities={})
    assert client.received() == []
    assert client.transport.closed and client.connection.state is CLOSED


def test_unknown_vhost_closes_with_530_naming_connection_open() -> None:
    client = Client()
    client.open(vhost="nope")
    (close,) = client.expect(commands.Connection.Close)
    assert (close.reply_code, close.reply_text) == (530, "NOT_ALLOWED - vhost nope not found")
    assert (close.class_id, close.method_id) == (10, 40)
    assert client.connection.state is CLOSING


def test_method_out_of_handshake_order_drops_the_socket() -> None:
    client = Client()
    client.login()
    client.expect(commands.Connection.Tune)
    client.send(0, commands.Connection.Open(virtual_host="/"))
    assert client.received() == []
    assert client.transport.closed and client.connection.state is CLOSED


def test_channel_error_closes_the_channel_and_keeps_the_connection() -> None:
    client = Client()
    client.open()
    client.expect(commands.Connection.OpenOk)
    client.send(1, commands.Channel.Open())
    client.expect(commands.Channel.OpenOk)
    client.send(1, commands.Queue.Declare(queue="missing", passive=True))
    ((number, close),) = client.received()
    assert number == 1 and isinstance(close, commands.Channel.Close)
    assert (close.reply_code, close.reply_text) == (
        404,
        "NOT_FOUND - no queue 'missing' in vhost '/'",
    )
    assert (close.class_id, close.method_id) == (50, 10)
    assert client.connection.state is OPEN
    client.send(1, commands.Channel.CloseOk())
    assert 1 not in client.connection.channels
    client.send(1, commands.Channel.Open())
    client.expect(commands.Channel.OpenOk)


def test_connection_error_closes_the_connection_and_ignores_what_follows() -> None:
    client = Client()
    client.open()
    client.expect(commands.Connection.OpenOk)
    client.send(2, commands.Queue.Declare(queue="q"))
    (close,) = client.expect(commands.Connection.Close)
    assert (close.reply_code, close.reply_text) == (504, "CHANNEL_ERROR - expected 'channel.open'")
    assert (close.class_id, close.method_id) == (50, 10)
    assert client.connection.state is CLOSING
    client.send(1, commands.Channel.Open())
    assert client.received() == []
    client.send(0, commands.Connection.CloseOk())
    assert client.transport.closed and client.connection.state is CLOSED


def test_close_ok_that_never_comes_times_out() -> None:
    client = Client()
    client.open()
    client.send(0, commands.Connection.Open(virtual_host="/"))  # not expected when open
    assert client.connection.state is CLOSING
    client.clock.advance(2.9)
    assert not client.transport.closed
    client.clock.advance(0.2)
    assert client.transport.closed and client.connection.state is CLOSED


def test_heartbeats_are_sent_and_a_silent_peer_is_dropped() -> None:
    client = Client()
    client.open(heartbeat_s=2)
    client.expect(commands.Connection.OpenOk)
    client.clock.advance(1.5)
    client.feed(frame.marshal(heartbeat.Heartbeat(), 0))  # the peer is alive
    client.clock.advance(1.5)
    assert any(isinstance(value, heartbeat.Heartbeat) for _, value in client.received())
    assert not client.transport.aborted
    client.clock.advance(4.0)  # more than two intervals of silence since the peer's heartbeat
    assert client.transport.aborted
    client.connection.connection_lost(None)
    assert client.connection.state is CLOSED
    assert client.connection not in client.broker.connections


def test_handshake_timeout_aborts_a_slow_client() -> None:
    client = Client()
    client.feed(PROTOCOL_HEADER)
    client.clock.advance(9.9)
    assert not client.transport.aborted
    client.clock.advance(0.2)
    assert client.transport.aborted


def test_every_state_can_end_closed_and_closed_is_final() -> None:
    for state in State:
        assert CLOSED in TRANSITIONS[state]
    assert TRANSITIONS[CLOSED] == {CLOSED}
    assert advance(AWAIT_OPEN, OPEN) is OPEN
    with pytest.raises(IllegalTransition):
        advance(OPEN, AWAIT_HEADER)
    with pytest.raises(IllegalTransition):
        advance(AWAIT_START_OK, OPEN)
    with pytest.raises(IllegalTransition):
        advance(CLOSED, OPEN)


def test_flow_control_tells_the_transport_only_of_changes() -> None:
    flow, transport = FlowControl(), FakeTransport()
    calls: list[str] = []
    transport.pause_reading = lambda: calls.append("pause")  # type: ignore[method-assign]
    transport.resume_reading = lambda: calls.append("resume")  # type: ignore[method-assign]
    flow.update_reading(transport, unprocessed=False)
    assert calls == []
    flow.backlog = 1
    flow.update_reading(transport, unprocessed=False)
    flow.blocked = True
    flow.update_reading(transport, unprocessed=True)
    flow.backlog, flow.blocked = 0, False
    flow.update_reading(transport, unprocessed=True)
    flow.update_reading(transport, unprocessed=False)
    assert calls == ["pause", "resume"]


def test_disk_alarm_blocks_a_publisher_and_tells_a_client_that_understands() -> None:
    client = Client()
    client.feed(PROTOCOL_HEADER)
    client.send(
        0,
        commands.Connection.StartOk(
            client_properties={"capabilities": {"connection.blocked": True}},
            mechanism="PLAIN",
            response="\0guest\0guest",
        ),
    )
    client.send(0, commands.Connection.TuneOk(channel_max=10, frame_max=8192, heartbeat=0))
    client.send(0, commands.Connection.Open(virtual_host="/"))
    client.received()
    connection = client.connection
    connection.set_blocked(True)
    client.clock.run_ready()
    (blocked,) = client.expect(commands.Connection.Blocked)
    assert blocked.reason == "low on disk"
    assert not client.transport.reading and connection.flow.blocked
    connection.set_blocked(False)
    client.clock.run_ready()
    client.expect(commands.Connection.Unblocked)
    assert client.transport.reading


def test_a_long_read_is_handled_over_several_turns_with_reading_paused() -> None:
    client = Client()
    client.open()
    client.send(1, commands.Channel.Open())
    client.received()
    declare = frame.marshal(commands.Queue.Declare(queue="", exclusive=True), 1)
    client.connection.data_received(declare * 700)  # more than FRAMES_PER_TURN
    assert not client.transport.reading
    assert len(client.received()) == 0  # nothing flushed before the loop turns
    client.clock.run_ready()
    replies = client.received()
    assert len(replies) == 700
    assert all(isinstance(value, commands.Queue.DeclareOk) for _, value in replies)
    assert client.transport.reading


def _publish(channel: int, queue: str, body: bytes) -> bytes:
    return (
        frame.marshal(commands.Basic.Publish(exchange="", routing_key=queue), channel)
        + frame.marshal(header.ContentHeader(0, len(body), commands.Basic.Properties()), channel)
        + frame.marshal(amqp_body.ContentBody(body), channel)
    )


def test_a_throttled_publisher_holds_the_rest_of_its_read_until_the_backlog_clears() -> None:
    consumer = Client()
    consumer.open()
    consumer.send(1, commands.Channel.Open())
    consumer.send(1, commands.Queue.Declare(queue="q"))
    consumer.send(1, commands.Basic.Qos(prefetch_count=1))
    consumer.send(1, commands.Basic.Consume(queue="q", consumer_tag="slow"))
    consumer.received()
    publisher = Client(beside=consumer)
    publisher.open()
    publisher.send(1, commands.Channel.Open())
    publisher.received()
    queue = consumer.broker.vhosts["/"].queues["q"]
    total = FLOW_HIGH + 10 * FRAMES_PER_TURN
    publisher.feed(b"".join(_publish(1, "q", b"%d" % n) for n in range(total)))  # one read
    # Past FLOW_HIGH the turn in progress ends and the rest of the read waits, unread by
    # the queue: the backlog exceeds the threshold by at most one turn.
    held = len(publisher.connection._unprocessed)
    assert FLOW_HIGH < len(queue) <= FLOW_HIGH + FRAMES_PER_TURN
    assert held > 0 and not publisher.transport.reading
    publisher.clock.run_ready()
    assert len(publisher.connection._unprocessed) == held  # still held after more turns
    assert len(queue) <= FLOW_HIGH + FRAMES_PER_TURN
    # The slow consumer leaves: a queue without consumers throttles nobody, and every
    # held publish arrives, in order.
    consumer.send(1, commands.Basic.Cancel(consumer_tag="slow"))
    assert len(queue) == total - 1 and publisher.transport.reading
    assert not publisher.connection._unprocessed
    assert [entry[1].body for entry in queue.messages] == [b"%d" % n for n in range(1, total)]


def test_a_throttled_publisher_closed_by_the_broker_still_hears_close_ok() -> None:
    consumer = Client()
    consumer.open()
    consumer.send(1, commands.Channel.Open())
    consumer.send(1, commands.Queue.Declare(queue="q"))
    consumer.send(1, commands.Basic.Qos(prefetch_count=1))
    consumer.send(1, commands.Basic.Consume(queue="q", consumer_tag="slow"))
    publisher = Client(beside=consumer)
    publisher.open()
    publisher.send(1, commands.Channel.Open())
    publisher.received()
    publisher.feed(_publish(1, "q", b"m") * (FLOW_HIGH + 2 * FRAMES_PER_TURN))
    assert publisher.connection._unprocessed  # held
    publisher.connection.force_close("shutdown")
    publisher.clock.run_ready()
    (close,) = publisher.expect(commands.Connection.Close)
    assert close.reply_code == 320
    publisher.send(0, commands.Connection.CloseOk())
    assert publisher.transport.closed and publisher.connection.state is CLOSED


def test_after_close_ok_the_connection_reads_and_discards_until_the_client_closes() -> None:
    client = Client()
    client.open()
    client.send(1, commands.Channel.Open())
    client.received()
    client.send(0, commands.Connection.Close(200, "bye", 0, 0))
    client.expect(commands.Connection.CloseOk)
    assert client.connection.state is CLOSED and not client.transport.closed
    client.send(1, commands.Queue.Declare(queue="late"))  # in flight when we closed: dropped
    assert client.received() == []
    client.clock.advance(3.1)
    assert client.transport.closed


def test_crossing_closes_keep_waiting_for_close_ok() -> None:
    client = Client()
    client.open()
    client.received()
    client.send(5, commands.Queue.Declare(queue="q"))  # no channel 5: a connection error
    client.expect(commands.Connection.Close)
    client.send(0, commands.Connection.Close(200, "bye", 0, 0))
    client.expect(commands.Connection.CloseOk)
    assert client.connection.state is CLOSING and not client.transport.closed
    client.send(0, commands.Connection.CloseOk())
    assert client.transport.closed and client.connection.state is CLOSED
