"""Back-pressure in amqpd: flow control of publishers and output limits for slow consumers.

Flow control: while a queue with consumers holds more than FLOW_HIGH ready messages, the
connections publishing to it are not read until the dispatcher brings it down to FLOW_LOW;
a connection that also consumes is never paused, a queue without consumers never pauses
anyone, and a paused client is not dropped for missed heartbeats. Output: a connection whose
socket is full gets no more deliveries until it drains, so the broker does not buffer a
slow consumer's whole backlog. Publishers here are raw sockets sending pre-encoded frames
(pika is too slow to build a 50k backlog quickly); consumers are raw sockets too, so a test
decides exactly when they read. The thresholds are amqpd's own: with AMQPD_TEST_URL set
(RabbitMQ) every test skips.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from pamqp import commands, frame

from amqpd.core.queue import FLOW_HIGH, FLOW_LOW  # noqa: E402  (the thresholds under test)
from tests.broker_process import BrokerProcess, external_broker
from tests.rawamqp import ConnectionLost, RawConnection

pytestmark = pytest.mark.skipif(
    external_broker() is not None,
    reason="flow-control thresholds are amqpd's; RabbitMQ's credit flow differs",
)

_head = struct.Struct(">BHI")
_method_ids = struct.Struct(">HH")
_deliver_tag = struct.Struct(">Q")
_seq = struct.Struct(">Q")
FRAME_END = b"\xce"
HEARTBEAT = _head.pack(8, 0, 0) + FRAME_END
BASIC_DELIVER = (60, 60)


# -- the broker -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def amqpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with BrokerProcess(tmp_path_factory.mktemp("amqpd-flow")) as proc:
        yield proc


def rss_kib(proc: BrokerProcess) -> int:
    assert proc.proc is not None
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


class Monitor:
    """A pika connection that declares queues and reads their ready counts."""

    def __init__(self, proc: BrokerProcess) -> None:
        params = pika.ConnectionParameters(
            host=proc.host, port=proc.port, credentials=pika.PlainCredentials("guest", "guest")
        )
        self.connection = pika.BlockingConnection(params)
        self.channel = self.connection.channel()

    def declare(self, queue: str) -> None:
        self.channel.queue_declare(queue)

    def count(self, queue: str) -> int:
        return self.channel.queue_declare(queue, passive=True).method.message_count

    def wait_count(self, queue: str, expected: int, deadline: float) -> int:
        count = -1
        while time.monotonic() < deadline:
            count = self.count(queue)
            if count == expected:
                return count
            time.sleep(0.1)
        return count

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def monitor(amqpd: BrokerProcess) -> Iterator[Monitor]:
    mon = Monitor(amqpd)
    yield mon
    mon.close()


# -- pre-encoded frames ---------------------------------------------------------------


def short_str(value: str) -> bytes:
    data = value.encode()
    return bytes([len(data)]) + data


def publishes(channel: int, routing_key: str, start: int, count: int, body_size: int) -> bytes:
    """`count` basic.publish + header + body frame triples to the default exchange; body
    i starts with the 8-byte big-endian number start+i and is padded to body_size."""
    method = _method_ids.pack(60, 40) + b"\x00\x00" + short_str("") + short_str(routing_key)
    method += b"\x00"
    header = _method_ids.pack(60, 0) + struct.pack(">QH", body_size, 0)
    prefix = (
        _head.pack(1, channel, len(method))
        + method
        + FRAME_END
        + _head.pack(2, channel, len(header))
        + header
        + FRAME_END
        + _head.pack(3, channel, body_size)
    )
    pad = b"x" * (body_size - 8)
    suffix = pad + FRAME_END
    pack = _seq.pack
    return b"".join(prefix + pack(i) + suffix for i in range(start, start + count))


def encoded(channel: int, method: commands.Frame) -> bytes:
    return frame.marshal(method, channel)


# -- a raw, non-blocking client ------------------------------------------------------


class Client:
    """A raw AMQP client whose socket a test pumps by hand: queued output goes out as far
    as the kernel takes it, input is split into frames with deliveries decoded cheaply."""

    def __init__(self, proc: BrokerProcess, heartbeat: int = 0, keepalive: bool = True) -> None:
        raw = RawConnection(proc.host, proc.port)
        raw.start()
        tune = raw.expect(commands.Connection.Tune)
        assert isinstance(tune, commands.Connection.Tune)
        raw.send(
            0,
            commands.Connection.TuneOk(
                channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=heartbeat
            ),
        )
        raw.send(0, commands.Connection.Open(virtual_host="/"))
        raw.expect(commands.Connection.OpenOk)
        self.heartbeat = heartbeat if keepalive else 0  # send heartbeats when idle
        self.sock = raw.sock
        self.sock.setblocking(False)
        self.local_port = self.sock.getsockname()[1]
        self._in = raw.buffer
        self._out: list[memoryview] = []
        self.sent = 0  # bytes the kernel accepted
        self.last_progress = time.monotonic()
        self.eof = False
        self.seqs: list[int] = []  # body sequence numbers of deliveries, in arrival order
        self.last_tag = 0  # delivery tag of the newest delivery
        self.redelivered = 0
        self.heartbeats = 0
        self.methods: list[tuple[int, object]] = []  # every other method frame, decoded
        self._deliver: tuple[int, bool] | None = None  # a deliver awaiting its body
        self.ack_every = 0.0  # see slow_ack
        self.acked = 0
        self.acked_at = 0.0

    def close(self) -> None:
        self.sock.close()

    # -- output ---------------------------------------------------------------------

    def queue_out(self, data: bytes) -> None:
        self._out.append(memoryview(data))

    @property
    def pending_out(self) -> int:
        return sum(len(piece) for piece in self._out)

    def pump(self) -> int:
        """Send as much queued output as the kernel accepts now; bytes sent. An idle
        client with a heartbeat sends heartbeat frames; a blocked one cannot."""
        if (
            self.heartbeat
            and not self._out
            and time.monotonic() - self.last_progress > self.heartbeat / 4
        ):
            self._out.append(memoryview(HEARTBEAT))
        total = 0
        while self._out:
            piece = self._out[0]
            try:
                n = self.sock.send(piece[: 1 << 20])
            except BlockingIOError:
                break
            total += n
            if n == len(piece):
                self._out.pop(0)
            else:
                self._out[0] = piece[n:]
        if total:
            self.sent += total
            self.last_progress = time.monotonic()
        return total

    def send_now(self, channel: int, method: commands.Frame) -> None:
        self.queue_out(encoded(channel, method))
        self.pump()

    # -- input ----------------------------------------------------------------------

    def read(self) -> int:
        """Read whatever the kernel holds now and decode it; bytes read."""
        total = 0
        chunks = [self._in]
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
                break
            chunks.append(chunk)
            total += len(chunk)
        if total:
            self._in = self._decode(b"".join(chunks))
        return total

    def _decode(self, data: bytes) -> bytes:
        pos, end = 0, len(data)
        unpack_head = _head.unpack_from
        while end - pos >= 7:
            frame_type, channel, size = unpack_head(data, pos)
            stop = pos + 7 + size
            if stop >= end:
                break
            if frame_type == 3:
                assert self._deliver is not None, "body frame without a deliver"
                self.seqs.append(_seq.unpack_from(data, pos + 7)[0])
                self._deliver = None
            elif frame_type == 2:
                pass
            elif frame_type == 8:
                self.heartbeats += 1
            elif _method_ids.unpack_from(data, pos + 7) == BASIC_DELIVER:
                at = pos + 11
                at += 1 + data[at]  # consumer tag
                tag = _deliver_tag.unpack_from(data, at)[0]
                redelivered = bool(data[at + 8])
                self.last_tag = tag
                self.redelivered += redelivered
                self._deliver = (tag, redelivered)
            else:
                _, _, value = frame.unmarshal(data[pos : stop + 1])
                self.methods.append((channel, value))
            pos = stop + 1
        return data[pos:]

    def poll(self, timeout: float) -> None:
        """Wait up to `timeout` for input or room for output, then read and pump."""
        want_write = [self.sock] if self._out else []
        select.select([self.sock], want_write, [], timeout)
        self.read()
        self.pump()

    def await_method(self, kind: type, deadline: float, channel: int | None = None) -> object:
        """Poll until a `kind` method frame has arrived (taking it from `methods`)."""
        while True:
            for index, (number, value) in enumerate(self.methods):
                if isinstance(value, kind) and (channel is None or number == channel):
                    del self.methods[index]
                    return value
                if isinstance(value, (commands.Connection.Close, commands.Channel.Close)):
                    raise AssertionError(f"broker closed: {value!r}")
            if self.eof:
                raise ConnectionLost(f"EOF while waiting for {kind.__name__}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind.__name__} before the deadline")
            self.poll(0.05)

    def call(self, channel: int, method: commands.Frame, reply: type, deadline: float) -> object:
        self.send_now(channel, method)
        return self.await_method(reply, deadline, channel)

    # -- conversation helpers -------------------------------------------------------

    def open_channel(self, channel: int, deadline: float) -> None:
        self.call(channel, commands.Channel.Open(), commands.Channel.OpenOk, deadline)

    def consume(
        self, channel: int, queue: str, tag: str, *, no_ack: bool, prefetch: int, deadline: float
    ) -> None:
        self.call(
            channel, commands.Basic.Qos(prefetch_count=prefetch), commands.Basic.QosOk, deadline
        )
        self.call(
            channel,
            commands.Basic.Consume(queue=queue, consumer_tag=tag, no_ack=no_ack),
            commands.Basic.ConsumeOk,
            deadline,
        )

    def cancel(self, channel: int, tag: str, deadline: float) -> None:
        self.call(
            channel, commands.Basic.Cancel(consumer_tag=tag), commands.Basic.CancelOk, deadline
        )

    def ack(self, channel: int, tag: int, multiple: bool = False) -> None:
        self.send_now(channel, commands.Basic.Ack(delivery_tag=tag, multiple=multiple))

    def slow_ack(self) -> None:
        """With `ack_every` set, ack the newest delivery on channel 1 at most that often."""
        now = time.monotonic()
        if self.ack_every and self.last_tag > self.acked and now - self.acked_at > self.ack_every:
            self.ack(1, self.last_tag)
            self.acked, self.acked_at = self.last_tag, now

    def ready_count(self, channel: int, queue: str, deadline: float) -> int:
        """message_count from a passive queue.declare on this connection (a round trip)."""
        reply = self.call(
            channel,
            commands.Queue.Declare(queue=queue, passive=True),
            commands.Queue.DeclareOk,
            deadline,
        )
        assert isinstance(reply, commands.Queue.DeclareOk)
        return reply.message_count


def publisher_for(proc: BrokerProcess, queue: str, count: int, heartbeat: int = 0) -> Client:
    """A client with channel 1 open and `count` small publishes to `queue` queued up. Its
    send buffer is small, so that a paused broker stops it after little more than what
    the broker's own receive buffer holds."""
    client = Client(proc, heartbeat)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    client.open_channel(1, time.monotonic() + 30)
    client.queue_out(publishes(1, queue, 0, count, 8))
    return client


def slow_consumer(proc: BrokerProcess, queue: str, deadline: float) -> Client:
    """A consumer with prefetch 1 and manual acks; it holds its first delivery unless
    `ack_every` is set."""
    client = Client(proc)
    client.open_channel(1, deadline)
    client.consume(1, queue, "slow", no_ack=False, prefetch=1, deadline=deadline)
    return client


def wait_until_stalled(
    publisher: Client, others: list[Client], stall: float, deadline: float
) -> None:
    """Pump the publisher (reading `others` meanwhile) until the kernel has taken none of
    its output for `stall` seconds; fail if it sends everything or the deadline passes.
    The stall is timed from this call at the earliest: time spent before it (connecting
    other clients on a loaded machine) saw no pumping and is no sign of a paused broker."""
    started = time.monotonic()
    while time.monotonic() - max(publisher.last_progress, started) < stall:
        assert publisher.pending_out, "the publisher was never stopped: everything was sent"
        assert time.monotonic() < deadline, "the publisher's socket never stopped accepting"
        publisher.poll(0.05)
        for other in others:
            other.read()
            other.slow_ack()


def switch_to_fast(consumer: Client, queue: str, deadline: float) -> None:
    """Cancel the prefetch-1 consumer, ack its last delivery, then consume with no_ack:
    together the two consumers see every message once, in queue order."""
    consumer.ack_every = 0.0
    consumer.cancel(1, "slow", deadline)
    consumer.read()
    if consumer.last_tag > consumer.acked:
        consumer.ack(1, consumer.last_tag)
    consumer.consume(1, queue, "fast", no_ack=True, prefetch=0, deadline=deadline)


def drain(consumer: Client, publishers: list[Client], expected: int, deadline: float) -> None:
    """Read deliveries (and pump publishers) until `expected` arrived or the deadline."""
    socks = [consumer.sock] + [p.sock for p in publishers]
    while len(consumer.seqs) < expected and time.monotonic() < deadline:
        writers = [p.sock for p in publishers if p.pending_out]
        select.select(socks, writers, [], 0.05)
        consumer.read()
        for publisher in publishers:
            publisher.pump()
            publisher.read()
        assert not consumer.eof, "the consumer's connection was closed"


# -- the tests ------------------------------------------------------------------------


def test_slow_consumer_pauses_publisher_and_bounds_the_backlog(
    amqpd: BrokerProcess, monitor: Monitor, unique: str
) -> None:
    total = 250_000
    monitor.declare(unique)
    deadline = time.monotonic() + 60
    consumer = slow_consumer(amqpd, unique, deadline)
    consumer.ack_every = 0.1  # about ten messages a second
    publisher = publisher_for(amqpd, unique, total)
    try:
        rss_before = rss_kib(amqpd)
        wait_until_stalled(publisher, [consumer], stall=1.0, deadline=deadline)
        # Paused: the backlog stays near FLOW_HIGH while the publisher still has most of
        # its messages to send and the kernel buffers between it and the broker are full.
        counts = []
        for _ in range(5):
            counts.append(monitor.count(unique))
            for _ in range(5):
                assert publisher.pump() == 0, "the paused publisher's socket took data again"
                consumer.read()
                consumer.slow_ack()
                time.sleep(0.05)
        rss_paused = rss_kib(amqpd)
        assert publisher.pending_out > 0
        assert FLOW_LOW <= max(counts) < 3 * FLOW_HIGH, counts
        assert counts == sorted(counts, reverse=True), f"the backlog grew while paused: {counts}"
        assert len(consumer.seqs) > 1, "the slow consumer got nothing"
        # ~50k small queued messages cost about 20 MiB; all 250k would cost about 100 MiB.
        assert rss_paused - rss_before < 64 * 1024, (rss_before, rss_paused)

        switch_to_fast(consumer, unique, time.monotonic() + 30)
        drain(consumer, [publisher], total, time.monotonic() + 75)
        assert len(consumer.seqs) == total, (len(consumer.seqs), publisher.pending_out)
        assert consumer.seqs == list(range(total)), "lost, duplicated or reordered messages"
        assert consumer.redelivered == 0
        assert monitor.count(unique) == 0
    finally:
        publisher.close()
        consumer.close()
        monitor.channel.queue_delete(unique)


def test_publisher_to_queue_without_consumers_is_not_throttled(
    amqpd: BrokerProcess, monitor: Monitor, unique: str
) -> None:
    total = 200_000
    monitor.declare(unique)
    publisher = publisher_for(amqpd, unique, total)
    try:
        deadline = time.monotonic() + 60
        while publisher.pending_out:
            assert time.monotonic() < deadline, (
                f"publisher stuck with {publisher.pending_out} bytes unsent"
            )
            publisher.poll(0.05)
        # The passive declare is read after every publish before it: the connection is read.
        assert publisher.ready_count(1, unique, deadline) == total
        assert monitor.count(unique) == total
    finally:
        publisher.close()
        monitor.channel.queue_delete(unique)


def test_connection_that_publishes_and_consumes_is_not_paused(
    amqpd: BrokerProcess, monitor: Monitor, unique: str
) -> None:
    total = 120_000
    monitor.declare(unique)
    deadline = time.monotonic() + 60
    client = slow_consumer(amqpd, unique, deadline)  # consumes on channel 1 and holds
    try:
        client.open_channel(2, deadline)
        client.queue_out(publishes(2, unique, 0, total, 8))
        while client.pending_out:
            assert time.monotonic() < deadline, (
                f"publishing consumer stuck with {client.pending_out} bytes unsent"
            )
            client.poll(0.05)
        # Far past FLOW_HIGH, and the connection still answers a round trip.
        assert client.ready_count(2, unique, deadline) == total - 1
        assert len(client.seqs) == 1
        switch_to_fast(client, unique, time.monotonic() + 30)
        drain(client, [], total, time.monotonic() + 45)
        assert client.seqs == list(range(total))
        assert client.redelivered == 0
    finally:
        client.close()
        monitor.channel.queue_delete(unique)


def test_consumer_that_stops_reading_does_not_make_the_broker_buffer_its_backlog(
    amqpd: BrokerProcess, monitor: Monitor, unique: str
) -> None:
    total, body_size = 100_000, 256
    monitor.declare(unique)
    publisher = publisher_for(amqpd, unique, 0)
    publisher.queue_out(publishes(1, unique, 0, total, body_size))
    consumer = Client(amqpd)
    # Small receive buffer on our side: the broker's writes back up sooner.
    consumer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        deadline = time.monotonic() + 60
        while publisher.pending_out:
            assert time.monotonic() < deadline
            publisher.poll(0.05)
        assert monitor.wait_count(unique, total, deadline) == total
        time.sleep(0.3)
        rss_before = rss_kib(amqpd)
        consumer.open_channel(1, deadline)
        consumer.consume(1, unique, "stalled", no_ack=True, prefetch=0, deadline=deadline)
        # Now stop reading for a while; the broker has 100k deliveries for us.
        peak = rss_before
        stop = time.monotonic() + 2.5
        while time.monotonic() < stop:
            peak = max(peak, rss_kib(amqpd))
            time.sleep(0.05)
        still_queued = monitor.count(unique)
        deliver_frame = 8 + 4 + (1 + len("stalled")) + 8 + 1 + 1 + (1 + len(unique))
        per_delivery = deliver_frame + (8 + 14) + (8 + body_size)
        backlog_kib = total * per_delivery // 1024
        assert peak - rss_before < backlog_kib // 2, (rss_before, peak, backlog_kib)
        assert still_queued > total // 2, "the broker took the backlog off the queue anyway"
        drain(consumer, [], total, time.monotonic() + 45)
        assert consumer.seqs == list(range(total))
    finally:
        publisher.close()
        consumer.close()
        monitor.channel.queue_delete(unique)


def test_paused_publisher_with_heartbeats_is_not_dropped(
    amqpd: BrokerProcess, monitor: Monitor, unique: str
) -> None:
    total = 200_000
    monitor.declare(unique)
    deadline = time.monotonic() + 75
    consumer = slow_consumer(amqpd, unique, deadline)
    publisher = publisher_for(amqpd, unique, total, heartbeat=1)
    # A control client with heartbeat=1 that falls silent: it must be dropped, or this
    # test could not tell a broker that never checks heartbeats from a correct one.
    silent = Client(amqpd, heartbeat=1, keepalive=False)
    try:
        wait_until_stalled(publisher, [consumer, silent], stall=0.5, deadline=deadline)
        paused_at = publisher.sent
        quiet_until = time.monotonic() + 3  # past 2 heartbeat intervals, and a margin
        while time.monotonic() < quiet_until:
            publisher.poll(0.1)
            consumer.read()
            silent.read()
            assert not publisher.eof, "the paused publisher was dropped"
        assert publisher.sent == paused_at, "the publisher was not paused all along"
        assert silent.eof, "a silent heartbeat=1 client was not dropped"
        switch_to_fast(consumer, unique, time.monotonic() + 30)
        drain(consumer, [publisher], total, time.monotonic() + 60)
        assert len(consumer.seqs) == total
        assert publisher.ready_count(1, unique, time.monotonic() + 15) == 0
        missed = [line for line in amqpd.log_lines if "missed heartbeats" in line]
        assert not [line for line in missed if f":{publisher.local_port}," in line], missed
        assert [line for line in missed if f":{silent.local_port}," in line], missed
    finally:
        publisher.close()
        consumer.close()
        silent.close()
        monitor.channel.queue_delete(unique)


def test_publisher_resumes_when_the_last_consumer_of_a_backlogged_queue_leaves(
    amqpd: BrokerProcess, monitor: Monitor, unique: str
) -> None:
    total = 200_000
    monitor.declare(unique)
    deadline = time.monotonic() + 45
    consumer = slow_consumer(amqpd, unique, deadline)
    publisher = publisher_for(amqpd, unique, total)
    try:
        wait_until_stalled(publisher, [consumer], stall=0.5, deadline=deadline)
        consumer.cancel(1, "slow", time.monotonic() + 30)  # the queue has no consumer now
        stalled_at = publisher.sent
        resume_by = time.monotonic() + 15
        while publisher.sent == stalled_at and time.monotonic() < resume_by:
            publisher.poll(0.05)
        assert publisher.sent > stalled_at, "the publisher stayed paused"
        while publisher.pending_out and time.monotonic() < deadline + 10:
            publisher.poll(0.05)
        assert publisher.pending_out == 0, "the publisher was paused again"
        # The held delivery is still unacked on the consumer's channel.
        assert monitor.wait_count(unique, total - 1, time.monotonic() + 30) == total - 1
    finally:
        publisher.close()
        consumer.close()
        monitor.channel.queue_delete(unique)
