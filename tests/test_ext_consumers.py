"""Consumer priorities (`x-priority`) and single active consumer, as RabbitMQ 3.x does them.

Higher-priority consumers get messages while they have room, round robin among equals;
with `x-single-active-consumer` only the first consumer gets messages, and when it goes
(cancel or connection close) the next one takes over, its unacked messages first.
"""

from __future__ import annotations

import socket

import pika
import pika.exceptions
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.pumping import pump, settle


def _collect(channel, queue: str, log: list, name: str, **kwargs) -> str:  # type: ignore[no-untyped-def]
    def on_message(ch, method, _props, body):  # type: ignore[no-untyped-def]
        log.append((name, body))

    return channel.basic_consume(queue, on_message, consumer_tag=name, **kwargs)


def test_higher_priority_consumer_first_then_lower_when_full(connection, channel, unique):
    channel.queue_declare(unique, exclusive=True)
    channel.basic_qos(prefetch_count=1)
    log: list[tuple[str, bytes]] = []
    _collect(channel, unique, log, "low", arguments={"x-priority": 1})
    _collect(channel, unique, log, "high", arguments={"x-priority": 5})
    _collect(channel, unique, log, "none")
    for i in range(4):
        channel.basic_publish("", unique, b"%d" % i)
    pump([connection], lambda: len(log) == 3)
    settle([connection], 0.2)
    assert log == [("high", b"0"), ("low", b"1"), ("none", b"2")]


def test_equal_priorities_share_round_robin(connection, channel, unique):
    channel.queue_declare(unique, exclusive=True)
    log: list[tuple[str, bytes]] = []
    _collect(channel, unique, log, "a", auto_ack=True, arguments={"x-priority": 3})
    _collect(channel, unique, log, "b", auto_ack=True, arguments={"x-priority": 3})
    _collect(channel, unique, log, "low", auto_ack=True, arguments={"x-priority": -1})
    for i in range(4):
        channel.basic_publish("", unique, b"%d" % i)
    pump([connection], lambda: len(log) == 4)
    assert sorted(name for name, _body in log) == ["a", "a", "b", "b"]


def test_invalid_consumer_priority(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, auto_delete=True)
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.basic_consume(unique, lambda *a: None, arguments={"x-priority": "high"})
    assert err.value.reply_code == 406
    assert err.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{unique}' in vhost '/': "
        '"expected integer, got longstr"'
    )


def test_single_active_consumer_and_failover_on_cancel(connection, channel, unique):
    channel.queue_declare(unique, auto_delete=True, arguments={"x-single-active-consumer": True})
    log: list[tuple[str, bytes]] = []
    first = _collect(channel, unique, log, "first")
    other = connection.channel()
    _collect(other, unique, log, "second", auto_ack=True)
    assert channel.queue_declare(unique, passive=True).method.consumer_count == 2
    for i in range(3):
        channel.basic_publish("", unique, b"%d" % i)
    pump([connection], lambda: len(log) == 3)
    settle([connection], 0.1)
    assert [name for name, _ in log] == ["first"] * 3
    channel.basic_cancel(first)  # its unacked stay with the channel, as in RabbitMQ
    channel.basic_publish("", unique, b"3")
    pump([connection], lambda: len(log) == 4)
    assert log[-1] == ("second", b"3")


def test_single_active_consumer_failover_on_close_requeues_unacked_first(broker, unique):
    first_conn = pika.BlockingConnection(broker.params())
    second_conn = pika.BlockingConnection(broker.params())
    try:
        first = first_conn.channel()
        first.queue_declare(unique, arguments={"x-single-active-consumer": True})
        log: list[tuple[str, bytes]] = []
        first.basic_qos(prefetch_count=2)
        _collect(first, unique, log, "first")
        second = second_conn.channel()
        _collect(second, unique, log, "second", auto_ack=True)
        for i in range(4):
            first.basic_publish("", unique, b"%d" % i)
        pump([first_conn], lambda: len(log) == 2)
        # The connection goes away without a basic.cancel first (a client closing
        # politely cancels its consumers, which hands over before the requeue).
        first_conn._impl._transport._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
        pump([second_conn], lambda: len(log) == 6)
        assert log == [
            ("first", b"0"),
            ("first", b"1"),
            ("second", b"0"),
            ("second", b"1"),
            ("second", b"2"),
            ("second", b"3"),
        ]
        second.queue_delete(unique)
    finally:
        for conn in (first_conn, second_conn):
            try:
                if conn.is_open:
                    conn.close()
            except pika.exceptions.AMQPError:
                pass


def test_single_active_consumer_polite_close_hands_over_unacked_first(broker, unique):
    first_conn = pika.BlockingConnection(broker.params())
    second_conn = pika.BlockingConnection(broker.params())
    try:
        first = first_conn.channel()
        first.queue_declare(unique, arguments={"x-single-active-consumer": True})
        log: list[tuple[str, bytes]] = []
        first.basic_qos(prefetch_count=2)
        _collect(first, unique, log, "first")
        second = second_conn.channel()
        _collect(second, unique, log, "second", auto_ack=True)
        for i in range(4):
            first.basic_publish("", unique, b"%d" % i)
        pump([first_conn], lambda: len(log) == 2)
        first_conn.close()  # pika cancels the consumer, then closes the channel
        pump([second_conn], lambda: len(log) == 6)
        assert [body for name, body in log if name == "second"] == [b"0", b"1", b"2", b"3"]
        second.queue_delete(unique)
    finally:
        for conn in (first_conn, second_conn):
            if conn.is_open:
                conn.close()
