"""Delivery semantics, checked the way RabbitMQ 3.x behaves.

Round robin, prefetch (per consumer and per channel), redelivery after a channel, a
connection or a TCP link dies, ack/nack/reject/recover, basic.get counts, consumer cancel
(client and server sent), auto-delete and exclusive queues, declare/purge/delete counts,
mandatory returns, exchange-to-exchange bindings and the headers exchange.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

from tests.conftest import BrokerAddress
from tests.pumping import TIMEOUT, pump, settle


def _socket_of(conn: BlockingConnection) -> socket.socket:
    return conn._impl._transport._sock  # type: ignore[attr-defined,no-any-return]


class Sink:
    """A manual-ack consumer that records deliveries in arrival order."""

    def __init__(
        self,
        ch: BlockingChannel,
        queue: str,
        *,
        auto_ack: bool = False,
        tag: str | None = None,
        log: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self.ch = ch
        self.log = log
        self.got: list[tuple[pika.spec.Basic.Deliver, pika.BasicProperties, bytes]] = []
        self.tag = ch.basic_consume(queue, self._on_message, auto_ack=auto_ack, consumer_tag=tag)

    def _on_message(self, _ch, method, props, body) -> None:  # type: ignore[no-untyped-def]
        self.got.append((method, props, body))
        if self.log is not None:
            self.log.append((method.consumer_tag, body))

    @property
    def bodies(self) -> list[bytes]:
        return [b for _m, _p, b in self.got]

    @property
    def redelivered(self) -> list[bool]:
        return [m.redelivered for m, _p, _b in self.got]

    def ack(self, index: int, multiple: bool = False) -> None:
        self.ch.basic_ack(self.got[index][0].delivery_tag, multiple=multiple)


@pytest.fixture
def connect(broker: BrokerAddress) -> Iterator[Callable[..., BlockingConnection]]:
    """Open extra pika connections; whatever is still open is closed at teardown."""
    opened: list[BlockingConnection] = []

    def open_one(**kwargs: object) -> BlockingConnection:
        conn = pika.BlockingConnection(broker.params(**kwargs))
        opened.append(conn)
        return conn

    yield open_one
    for conn in opened:
        try:
            if conn.is_open:
                conn.close()
        except Exception:  # a test may have killed this socket on purpose
            pass


def publish_n(ch: BlockingChannel, queue: str, n: int, prefix: str = "m") -> list[bytes]:
    bodies = [f"{prefix}{i}".encode() for i in range(n)]
    for body in bodies:
        ch.basic_publish("", queue, body)
    return bodies


def ready(ch: BlockingChannel, queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.message_count


def wait_ready(ch: BlockingChannel, queue: str, n: int) -> None:
    """Poll until the queue reports `n` ready messages.

    RabbitMQ's declare-ok message_count may not yet include messages published just
    before on the same channel, so counts after a publish are awaited, not sampled.
    """
    deadline = time.monotonic() + TIMEOUT
    while (count := ready(ch, queue)) != n:
        assert time.monotonic() < deadline, f"queue {queue} has {count} ready, not {n}"
        time.sleep(0.01)


def assert_no_queue(ch: BlockingChannel, queue: str) -> None:
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_declare(queue, passive=True)
    assert info.value.reply_code == 404
    assert info.value.reply_text == f"NOT_FOUND - no queue '{queue}' in vhost '/'"


# --- round robin and prefetch ------------------------------------------------------------


def test_round_robin_three_consumers_exact_order(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    order: list[tuple[str, bytes]] = []
    for i in range(3):
        Sink(channel, q, auto_ack=True, tag=f"c{i}", log=order)
    bodies = publish_n(channel, q, 9)
    pump([connection], lambda: len(order) == 9)
    # Consumers are served in the order they subscribed, one message each in turn.
    assert order == [(f"c{i % 3}", bodies[i]) for i in range(9)]
    channel.queue_delete(q)


def test_round_robin_across_channels_skips_a_full_consumer(connect, unique):
    conn = connect()
    ch_a, ch_b = conn.channel(), conn.channel()
    q = ch_a.queue_declare(unique).method.queue
    ch_a.basic_qos(prefetch_count=1)
    a = Sink(ch_a, q)  # takes one and never acks
    b = Sink(ch_b, q, auto_ack=True)
    bodies = publish_n(ch_a, q, 6)
    pump([conn], lambda: len(a.got) + len(b.got) == 6)
    assert a.bodies == [bodies[0]]
    assert b.bodies == bodies[1:]
    ch_a.queue_delete(q)


def test_prefetch_limits_unacked_per_consumer(connect, unique):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(unique).method.queue
    ch.basic_qos(prefetch_count=3)
    a, b = Sink(ch, q), Sink(ch, q)
    bodies = publish_n(ch, q, 20)
    pump([conn], lambda: len(a.got) + len(b.got) == 6)
    settle([conn])
    assert (len(a.got), len(b.got)) == (3, 3)
    assert ready(ch, q) == 14

    a.ack(0)
    pump([conn], lambda: len(a.got) == 4)
    settle([conn])
    assert (len(a.got), len(b.got)) == (4, 3)

    for i in (1, 2, 3):  # a now has nothing outstanding: it may take three more
        a.ack(i)
    pump([conn], lambda: len(a.got) == 7)
    settle([conn])
    assert (len(a.got), len(b.got)) == (7, 3)
    assert sorted(a.bodies + b.bodies) == sorted(bodies[:10])
    assert ready(ch, q) == 10

    # Delivery tags are per channel, so a multiple ack also covers b's older deliveries.
    a.ack(6, multiple=True)
    pump([conn], lambda: len(a.got) + len(b.got) == 16)
    settle([conn])
    assert (len(a.got), len(b.got)) == (10, 6)
    ch.queue_delete(q)


def test_prefetch_zero_is_unlimited(connect, unique):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(unique).method.queue
    ch.basic_qos(prefetch_count=0)
    a = Sink(ch, q)
    publish_n(ch, q, 50)
    pump([conn], lambda: len(a.got) == 50)
    ch.queue_delete(q)


def test_qos_global_limits_the_whole_channel(connect, unique):
    conn = connect()
    ch = conn.channel()
    q1 = ch.queue_declare(f"{unique}-1").method.queue
    q2 = ch.queue_declare(f"{unique}-2").method.queue
    publish_n(ch, q1, 10)
    publish_n(ch, q2, 10)
    ch.basic_qos(prefetch_count=3, global_qos=True)
    a, b = Sink(ch, q1), Sink(ch, q2)
    pump([conn], lambda: len(a.got) + len(b.got) == 3)
    settle([conn])
    assert len(a.got) + len(b.got) == 3, "global prefetch is shared by the channel's consumers"
    assert ready(ch, q1) + ready(ch, q2) == 17

    # One ack frees exactly one slot on the channel.
    (a if a.got else b).ack(0)
    pump([conn], lambda: len(a.got) + len(b.got) == 4)
    settle([conn])
    assert len(a.got) + len(b.got) == 4
    ch.queue_delete(q1)
    ch.queue_delete(q2)


def test_qos_per_consumer_and_global_both_apply(connect, unique):
    conn = connect()
    ch = conn.channel()
    queues = [ch.queue_declare(f"{unique}-{i}").method.queue for i in range(3)]
    for q in queues:
        publish_n(ch, q, 10)
    ch.basic_qos(prefetch_count=2, global_qos=False)  # each new consumer: at most 2
    ch.basic_qos(prefetch_count=5, global_qos=True)  # the channel: at most 5 in total
    sinks = [Sink(ch, q) for q in queues]
    pump([conn], lambda: sum(len(s.got) for s in sinks) == 5)
    settle([conn])
    counts = sorted(len(s.got) for s in sinks)
    assert counts == [1, 2, 2]

    # Acking all of one consumer's messages frees both its own and the channel's slots.
    full = next(s for s in sinks if len(s.got) == 2)
    full.ack(1, multiple=True)
    pump([conn], lambda: sum(len(s.got) for s in sinks) == 7)
    settle([conn])
    assert sum(len(s.got) for s in sinks) == 7
    assert all(len(s.got) <= 4 for s in sinks)
    for q in queues:
        ch.queue_delete(q)


def test_qos_per_consumer_applies_only_to_later_consumers(connect, unique):
    conn = connect()
    ch = conn.channel()
    q1 = ch.queue_declare(f"{unique}-1").method.queue
    q2 = ch.queue_declare(f"{unique}-2").method.queue
    publish_n(ch, q1, 10)
    publish_n(ch, q2, 10)
    ch.basic_qos(prefetch_count=2)
    early = Sink(ch, q1)
    pump([conn], lambda: len(early.got) == 2)
    ch.basic_qos(prefetch_count=4)
    late = Sink(ch, q2)
    pump([conn], lambda: len(late.got) == 4)
    early.ack(1, multiple=True)
    pump([conn], lambda: len(early.got) == 4)
    settle([conn])
    assert (len(early.got), len(late.got)) == (4, 4), "the early consumer keeps prefetch 2"
    ch.queue_delete(q1)
    ch.queue_delete(q2)


# --- redelivery --------------------------------------------------------------------------


def _kill(how: str, conn: BlockingConnection, ch: BlockingChannel) -> None:
    if how == "channel_close":
        ch.close()
    elif how == "connection_close":
        conn.close()
    elif how == "tcp_shutdown":  # FIN without connection.close
        _socket_of(conn).shutdown(socket.SHUT_RDWR)
    elif how == "tcp_reset":  # RST: linger 0 then close the descriptor
        sock = _socket_of(conn)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["channel_close", "connection_close", "tcp_shutdown", "tcp_reset"])
def test_unacked_return_ahead_in_original_order(connect, unique, how):
    admin = connect().channel()
    q = admin.queue_declare(unique).method.queue
    bodies = publish_n(admin, q, 10)

    conn = connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=4)
    first = Sink(ch, q)
    pump([conn], lambda: len(first.got) == 4)
    ch.basic_cancel(first.tag)  # no more deliveries; the four stay unacked
    first.ack(1)  # m1 is done; m0, m2, m3 are not
    # Make sure the ack reached the broker before the link dies.
    ch.queue_declare(q, passive=True)
    _kill(how, conn, ch)

    conn2 = connect()
    second = Sink(conn2.channel(), q)
    pump([conn2], lambda: len(second.got) == 9)
    settle([conn2])
    assert second.bodies == [bodies[0], bodies[2], bodies[3]] + bodies[4:]
    assert second.redelivered == [True] * 3 + [False] * 6
    admin.queue_delete(q)


def test_reject_and_nack_requeue_to_original_position(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    bodies = publish_n(channel, q, 6)
    gets = [channel.basic_get(q) for _ in range(3)]
    tags = [m.delivery_tag for m, _p, _b in gets]
    assert [b for _m, _p, b in gets] == bodies[:3]

    channel.basic_nack(tags[1], requeue=True)
    m, _p, b = channel.basic_get(q)
    assert (b, m.redelivered) == (bodies[1], True)
    tags[1] = m.delivery_tag

    # Rejected in the order m0, m2: each goes back where it was, ahead of m3.
    channel.basic_reject(tags[0], requeue=True)
    channel.basic_reject(tags[2], requeue=True)
    # Requeued in the reverse order: still original positions.
    channel.basic_nack(tags[1], requeue=True)
    got = []
    while (r := channel.basic_get(q, auto_ack=True))[0] is not None:
        got.append((r[2], r[0].redelivered))
    assert got == [
        (bodies[0], True),
        (bodies[1], True),
        (bodies[2], True),
        (bodies[3], False),
        (bodies[4], False),
        (bodies[5], False),
    ]
    channel.queue_delete(q)


def test_requeue_goes_ahead_of_messages_published_later(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    channel.basic_publish("", q, b"old")
    m, _p, _b = channel.basic_get(q)
    channel.basic_publish("", q, b"new")
    channel.basic_reject(m.delivery_tag, requeue=True)
    assert channel.basic_get(q, auto_ack=True)[2] == b"old"
    assert channel.basic_get(q, auto_ack=True)[2] == b"new"
    channel.queue_delete(q)


def test_nack_multiple_requeue(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    bodies = publish_n(channel, q, 5)
    gets = [channel.basic_get(q) for _ in range(4)]
    channel.basic_ack(gets[3][0].delivery_tag)
    channel.basic_nack(gets[2][0].delivery_tag, multiple=True, requeue=True)  # m0..m2
    wait_ready(channel, q, 4)
    got = []
    while (r := channel.basic_get(q, auto_ack=True))[0] is not None:
        got.append((r[2], r[0].redelivered))
    assert got == [(bodies[0], True), (bodies[1], True), (bodies[2], True), (bodies[4], False)]
    channel.queue_delete(q)


def test_reject_and_nack_without_requeue_drop(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    bodies = publish_n(channel, q, 5)
    gets = [channel.basic_get(q) for _ in range(4)]
    channel.basic_reject(gets[0][0].delivery_tag, requeue=False)
    channel.basic_nack(gets[2][0].delivery_tag, multiple=True, requeue=False)  # m1, m2
    channel.basic_nack(gets[3][0].delivery_tag, requeue=False)
    wait_ready(channel, q, 1)
    channel.close()
    ch2 = connection.channel()
    m, _p, body = ch2.basic_get(q, auto_ack=True)
    assert body == bodies[4] and not m.redelivered
    assert ch2.basic_get(q)[0] is None
    ch2.queue_delete(q)


def test_ack_multiple(connect, unique):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(unique).method.queue
    bodies = publish_n(ch, q, 5)
    s = Sink(ch, q)
    pump([conn], lambda: len(s.got) == 5)
    s.ack(2, multiple=True)  # m0, m1, m2
    ch.close()
    ch2 = conn.channel()
    wait_ready(ch2, q, 2)
    left = [ch2.basic_get(q, auto_ack=True) for _ in range(3)]
    assert [b for _m, _p, b in left[:2]] == bodies[3:]
    assert all(m.redelivered for m, _p, _b in left[:2])
    assert left[2][0] is None
    ch2.queue_delete(q)


def test_ack_multiple_zero_acks_everything(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    publish_n(channel, q, 3)
    for _ in range(3):
        assert channel.basic_get(q)[0] is not None
    channel.basic_ack(0, multiple=True)
    channel.basic_recover(requeue=True)  # would requeue anything still unacked
    assert channel.basic_get(q) == (None, None, None)
    channel.queue_delete(q)


@pytest.mark.parametrize("op", ["ack", "double_ack", "reject", "nack"])
def test_unknown_delivery_tag_closes_channel(connection, channel, unique, op):
    q = channel.queue_declare(unique).method.queue
    channel.basic_publish("", q, b"x")
    m, _p, _b = channel.basic_get(q)
    tag = m.delivery_tag
    with pytest.raises(ChannelClosedByBroker) as info:
        if op == "ack":
            channel.basic_ack(tag + 41)
        elif op == "double_ack":
            channel.basic_ack(tag)
            channel.basic_ack(tag)
        elif op == "reject":
            channel.basic_reject(tag + 41)
        else:
            channel.basic_nack(tag + 41)
        channel.queue_declare(q, passive=True)  # the error arrives asynchronously
    bad = tag if op == "double_ack" else tag + 41
    assert info.value.reply_code == 406
    assert info.value.reply_text == f"PRECONDITION_FAILED - unknown delivery tag {bad}"
    connection.channel().queue_delete(q)


# --- basic.get ---------------------------------------------------------------------------


def test_basic_get_message_count_and_empty(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    assert channel.basic_get(q) == (None, None, None)
    bodies = publish_n(channel, q, 3)
    wait_ready(channel, q, 3)
    m, props, body = channel.basic_get(q)  # not acked: unacked do not count as ready
    assert (body, m.message_count, m.redelivered) == (bodies[0], 2, False)
    assert m.exchange == "" and m.routing_key == q
    m2, _p, body = channel.basic_get(q, auto_ack=True)
    assert (body, m2.message_count) == (bodies[1], 1)
    assert m2.delivery_tag == m.delivery_tag + 1
    m3, _p, body = channel.basic_get(q, auto_ack=True)
    assert (body, m3.message_count) == (bodies[2], 0)
    assert channel.basic_get(q)[0] is None
    ok = channel.queue_declare(q, passive=True).method
    assert (ok.message_count, ok.consumer_count) == (0, 0)
    channel.basic_ack(m.delivery_tag)
    channel.queue_delete(q)


def test_basic_get_on_missing_queue(connection, channel, unique):
    with pytest.raises(ChannelClosedByBroker) as info:
        channel.basic_get(f"{unique}-missing")
    assert info.value.reply_code == 404
    assert info.value.reply_text == f"NOT_FOUND - no queue '{unique}-missing' in vhost '/'"


# --- basic.recover -----------------------------------------------------------------------


def test_basic_recover_requeue(connect, unique):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(unique).method.queue
    bodies = publish_n(ch, q, 3)
    s = Sink(ch, q)
    pump([conn], lambda: len(s.got) == 3)
    s.ack(0)
    ch.basic_recover(requeue=True)
    pump([conn], lambda: len(s.got) == 5)
    settle([conn])
    assert s.bodies == bodies + bodies[1:]
    assert s.redelivered == [False, False, False, True, True]
    s.ack(4, multiple=True)
    ch.basic_recover(requeue=True)  # nothing is left unacked, so nothing comes again
    settle([conn])
    assert len(s.got) == 5
    ch.queue_delete(q)


def test_basic_recover_without_requeue_is_not_implemented(connection, channel, unique):
    with pytest.raises(ConnectionClosedByBroker) as info:
        channel.basic_recover(requeue=False)
    assert info.value.reply_code == 540
    assert info.value.reply_text == "NOT_IMPLEMENTED - requeue=false"


# --- consumers ---------------------------------------------------------------------------


def test_consumer_cancel_stops_deliveries_and_keeps_unacked(connect, unique):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(unique).method.queue
    ch.basic_qos(prefetch_count=1)
    s = Sink(ch, q)
    bodies = publish_n(ch, q, 3)
    pump([conn], lambda: len(s.got) == 1)
    assert ch.queue_declare(q, passive=True).method.consumer_count == 1
    ch.basic_cancel(s.tag)
    settle([conn])
    assert s.bodies == [bodies[0]]
    ok = ch.queue_declare(q, passive=True).method
    assert (ok.message_count, ok.consumer_count) == (2, 0)
    s.ack(0)  # still acknowledgeable after the cancel
    ch.close()
    ch2 = conn.channel()
    assert [ch2.basic_get(q, auto_ack=True)[2] for _ in range(2)] == bodies[1:]
    assert ch2.basic_get(q)[0] is None
    ch2.queue_delete(q)


def test_duplicate_consumer_tag_is_a_hard_error(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    channel.basic_consume(q, lambda *a: None, consumer_tag="dup")
    impl = channel._impl  # pika refuses duplicate tags itself; send the frame directly
    impl._send_method(pika.spec.Basic.Consume(queue=q, consumer_tag="dup"))
    with pytest.raises(ConnectionClosedByBroker) as info:
        connection.process_data_events(time_limit=TIMEOUT)
        connection.channel()
    assert info.value.reply_code == 530
    assert info.value.reply_text == "NOT_ALLOWED - attempt to reuse consumer tag 'dup'"


def test_server_cancels_consumer_when_queue_is_deleted(connect, unique):
    conn = connect()
    assert conn.consumer_cancel_notify_supported is True
    ch = conn.channel()
    q = ch.queue_declare(unique).method.queue
    cancels: list[pika.frame.Method] = []
    ch.add_on_cancel_callback(cancels.append)
    s = Sink(ch, q, tag=f"{unique}-ctag")

    other = connect().channel()
    ok = other.queue_delete(q)
    assert ok.method.message_count == 0
    pump([conn], lambda: len(cancels) == 1)
    frame = cancels[0]
    assert isinstance(frame.method, pika.spec.Basic.Cancel)
    assert frame.method.consumer_tag == s.tag
    assert frame.method.nowait is True  # the client must not answer with cancel-ok
    assert frame.channel_number == ch.channel_number
    assert ch.is_open, "a server-sent cancel does not close the channel"
    assert ch.queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")


def test_auto_delete_queue_goes_when_last_consumer_cancels(connect, unique):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(unique, auto_delete=True).method.queue
    ch.basic_publish("", q, b"x")
    wait_ready(ch, q, 1)  # never consumed: an auto-delete queue stays
    a, b = Sink(ch, q, auto_ack=True), Sink(ch, q, auto_ack=True)
    ch.basic_cancel(a.tag)
    assert ch.queue_declare(q, passive=True).method.consumer_count == 1
    ch.basic_cancel(b.tag)
    assert_no_queue(connect().channel(), q)


def test_auto_delete_queue_goes_when_consumer_channel_closes(connect, unique):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(unique, auto_delete=True).method.queue
    Sink(ch, q)
    ch.close()
    assert_no_queue(conn.channel(), q)


def test_exclusive_queue_is_private_and_dies_with_its_connection(connect, unique):
    owner = connect()
    och = owner.channel()
    q = och.queue_declare(unique, exclusive=True).method.queue
    och.basic_publish("", q, b"private")
    wait_ready(och, q, 1)

    stranger = connect().channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        stranger.basic_get(q)
    assert info.value.reply_code == 405
    assert info.value.reply_text == (
        f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'."
        " It could be originally declared on another connection or the exclusive property"
        " value does not match that of the original declaration."
    )
    owner.close()
    assert_no_queue(connect().channel(), q)


# --- declare / purge / delete counts -----------------------------------------------------


def test_declare_ok_counts_ready_messages_and_consumers(connect, unique):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(unique).method.queue
    ok = ch.queue_declare(q).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (q, 0, 0)
    publish_n(ch, q, 5)
    ch.basic_qos(prefetch_count=2)
    a = Sink(ch, q)
    pump([conn], lambda: len(a.got) == 2)
    Sink(conn.channel(), q, auto_ack=False)  # second consumer, prefetch unlimited
    pump([conn], lambda: ready(ch, q) == 0)
    other = connect().channel()
    other.basic_qos(prefetch_count=1)
    Sink(other, q)
    ok = other.queue_declare(q, passive=True).method
    assert (ok.message_count, ok.consumer_count) == (0, 3)
    ch.queue_delete(q)


def test_purge_and_delete_report_ready_counts(connect, unique):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(unique).method.queue
    publish_n(ch, q, 5)
    wait_ready(ch, q, 5)
    held = [ch.basic_get(q)[2] for _ in range(2)]  # 2 unacked, 3 ready
    assert ch.queue_purge(q).method.message_count == 3
    assert ready(ch, q) == 0
    assert ch.queue_purge(q).method.message_count == 0
    # Purge leaves unacked messages alone: they come back when the channel closes.
    ch.close()
    ch = conn.channel()
    wait_ready(ch, q, 2)
    publish_n(ch, q, 1, prefix="late")
    m, _p, body = ch.basic_get(q)  # held unacked: not counted by delete-ok
    assert (body, m.redelivered) == (held[0], True)
    assert ch.queue_delete(q).method.message_count == 2
    assert_no_queue(ch, q)


def test_delete_if_empty_and_if_unused(connect, unique):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(unique).method.queue
    ch.basic_publish("", q, b"x")
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_delete(q, if_empty=True)
    assert (info.value.reply_code, info.value.reply_text) == (
        406,
        f"PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty",
    )
    ch = conn.channel()
    Sink(ch, q, auto_ack=True)
    ch2 = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        ch2.queue_delete(q, if_unused=True)
    assert (info.value.reply_code, info.value.reply_text) == (
        406,
        f"PRECONDITION_FAILED - queue '{q}' in vhost '/' in use",
    )
    conn.channel().queue_delete(q)


# --- mandatory and routing failures ------------------------------------------------------


def test_mandatory_unroutable_is_returned(connect, unique):
    conn = connect()
    ch = conn.channel()
    ex = f"{unique}-x"
    ch.exchange_declare(ex, "direct")
    returned: list[tuple[pika.spec.Basic.Return, pika.BasicProperties, bytes]] = []
    ch.add_on_return_callback(lambda _c, m, p, b: returned.append((m, p, b)))
    ch.basic_publish(ex, "nowhere", b"lost", pika.BasicProperties(message_id="r1"), mandatory=True)
    ch.basic_publish("", f"{unique}-no-such-queue", b"lost too", mandatory=True)
    ch.basic_publish(ex, "nowhere", b"silently dropped")  # not mandatory: no return
    pump([conn], lambda: len(returned) == 2)
    settle([conn])
    (m1, p1, b1), (m2, _p2, b2) = returned
    assert (m1.reply_code, m1.reply_text, m1.exchange, m1.routing_key) == (
        312,
        "NO_ROUTE",
        ex,
        "nowhere",
    )
    assert (b1, p1.message_id) == (b"lost", "r1")
    assert (m2.reply_code, m2.reply_text, m2.exchange, m2.routing_key) == (
        312,
        "NO_ROUTE",
        "",
        f"{unique}-no-such-queue",
    )
    assert b2 == b"lost too"
    ch.exchange_delete(ex)


def test_publish_to_missing_exchange_closes_channel(connection, channel, unique):
    channel.basic_publish(f"{unique}-nope", "k", b"x")
    with pytest.raises(ChannelClosedByBroker) as info:
        channel.queue_declare("", exclusive=True)
    assert info.value.reply_code == 404
    assert info.value.reply_text == f"NOT_FOUND - no exchange '{unique}-nope' in vhost '/'"


# --- exchange-to-exchange ----------------------------------------------------------------


def get_all(ch: BlockingChannel, queue: str) -> list[bytes]:
    bodies = []
    while (r := ch.basic_get(queue, auto_ack=True))[0] is not None:
        bodies.append(r[2])
    return bodies


def test_exchange_to_exchange_binding(connection, channel, unique):
    src, dst = f"{unique}-src", f"{unique}-dst"
    channel.exchange_declare(src, "direct")
    channel.exchange_declare(dst, "topic")
    channel.exchange_bind(destination=dst, source=src, routing_key="a.b")
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, dst, routing_key="a.*")
    for key in ("a.b", "a.c", "x"):
        channel.basic_publish(src, key, key.encode())
    channel.basic_publish(dst, "a.c", b"direct to dst")
    channel.queue_declare(q, passive=True)
    assert get_all(channel, q) == [b"a.b", b"direct to dst"]

    channel.exchange_unbind(destination=dst, source=src, routing_key="a.b")
    channel.basic_publish(src, "a.b", b"after unbind")
    channel.queue_declare(q, passive=True)
    assert get_all(channel, q) == []
    channel.exchange_delete(src)
    channel.exchange_delete(dst)


def test_exchange_binding_loop_delivers_once(connection, channel, unique):
    e1, e2 = f"{unique}-e1", f"{unique}-e2"
    channel.exchange_declare(e1, "fanout")
    channel.exchange_declare(e2, "fanout")
    channel.exchange_bind(destination=e2, source=e1)
    channel.exchange_bind(destination=e1, source=e2)
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, e1)
    channel.queue_bind(q, e2)
    q2 = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q2, e2)
    channel.basic_publish(e1, "", b"from e1")
    channel.basic_publish(e2, "", b"from e2")
    channel.queue_declare(q, passive=True)
    assert get_all(channel, q) == [b"from e1", b"from e2"]
    assert get_all(channel, q2) == [b"from e1", b"from e2"]
    channel.exchange_delete(e1)
    channel.exchange_delete(e2)


# --- headers exchange --------------------------------------------------------------------


def _headers_case(channel: BlockingChannel, exchange: str, args: dict) -> str:
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, exchange, routing_key="ignored", arguments=args)
    return q


HEADERS_CASES = [
    # (binding arguments, message headers, routed?)
    ({"x-match": "all", "a": 1, "b": "two"}, {"a": 1, "b": "two"}, True),
    ({"x-match": "all", "a": 1, "b": "two"}, {"a": 1, "b": "two", "c": 3}, True),
    ({"x-match": "all", "a": 1, "b": "two"}, {"a": 1}, False),
    ({"x-match": "all", "a": 1, "b": "two"}, {"a": 1, "b": "three"}, False),
    ({"a": 1, "b": "two"}, {"a": 1}, False),  # x-match defaults to all
    ({"a": 1, "b": "two"}, {"a": 1, "b": "two"}, True),
    ({"x-match": "any", "a": 1, "b": "two"}, {"b": "two"}, True),
    ({"x-match": "any", "a": 1, "b": "two"}, {"a": 2, "b": "three"}, False),
    ({"x-match": "any", "a": 1, "b": "two"}, {}, False),
    ({"x-match": "all"}, {}, True),  # no conditions at all
    ({"x-match": "all"}, {"z": 1}, True),
    ({"x-match": "all", "a": None}, {"a": "anything"}, True),  # void: presence only
    ({"x-match": "all", "a": None}, {"b": 1}, False),
    # x- prefixed binding arguments are not conditions for all/any ...
    ({"x-match": "all", "a": 1, "x-foo": "bar"}, {"a": 1}, True),
    ({"x-match": "any", "x-foo": "bar", "a": 1}, {"x-foo": "bar"}, False),
    # ... but they are for all-with-x / any-with-x.
    ({"x-match": "all-with-x", "a": 1, "x-foo": "bar"}, {"a": 1}, False),
    ({"x-match": "all-with-x", "a": 1, "x-foo": "bar"}, {"a": 1, "x-foo": "bar"}, True),
    ({"x-match": "any-with-x", "x-foo": "bar", "a": 1}, {"x-foo": "bar"}, True),
    ({"x-match": "any-with-x", "x-foo": "bar", "a": 1}, {"x-foo": "baz"}, False),
]


def test_headers_exchange_matching(connection, channel, unique):
    ex = f"{unique}-h"
    channel.exchange_declare(ex, "headers")
    queues = [_headers_case(channel, ex, args) for args, _h, _r in HEADERS_CASES]
    for i, (_args, headers, _routed) in enumerate(HEADERS_CASES):
        # Each message is tagged so it can be told apart, but the tag is not a condition.
        props = pika.BasicProperties(headers=dict(headers), message_id=str(i))
        channel.basic_publish(ex, "ignored", f"case{i}".encode(), props)
    channel.queue_declare(queues[0], passive=True)
    failures = []
    for i, ((args, headers, routed), q) in enumerate(zip(HEADERS_CASES, queues, strict=True)):
        got = f"case{i}".encode() in get_all(channel, q)
        if got != routed:
            failures.append((args, headers, routed))
    assert failures == []
    channel.exchange_delete(ex)


def test_headers_exchange_rejects_bad_x_match(connection, channel, unique):
    ex = f"{unique}-h"
    channel.exchange_declare(ex, "headers")
    q = channel.queue_declare("", exclusive=True).method.queue
    with pytest.raises(ChannelClosedByBroker) as info:
        channel.queue_bind(q, ex, arguments={"x-match": "some"})
    assert info.value.reply_code == 406
    assert info.value.reply_text == (
        'PRECONDITION_FAILED - Invalid x-match field value <<"some">>; '
        "expected all, any, all-with-x, or any-with-x"
    )
    connection.channel().exchange_delete(ex)


@pytest.mark.parametrize("name", ["amq.match", "amq.headers"])
def test_builtin_headers_exchanges_exist(connection, channel, unique, name):
    channel.exchange_declare(name, "headers", passive=True)
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, name, arguments={"x-match": "all", "test-id": unique})
    channel.basic_publish(name, "", b"hit", pika.BasicProperties(headers={"test-id": unique}))
    channel.basic_publish(name, "", b"miss", pika.BasicProperties(headers={"test-id": "other"}))
    channel.queue_declare(q, passive=True)
    assert get_all(channel, q) == [b"hit"]
    channel.queue_unbind(q, name, arguments={"x-match": "all", "test-id": unique})
