"""Priority queues (`x-max-priority`) as RabbitMQ 3.x orders them.

Highest priority first, FIFO within a level, no priority is 0 and above the maximum is the
maximum; requeued messages go back to their level, ahead of newer ones; consumers with a
prefetch window see the same order.
"""

from __future__ import annotations

import time

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.pumping import pump


def _publish(channel, queue: str, items: list[tuple[bytes, int | None]]) -> None:  # type: ignore[no-untyped-def]
    for body, priority in items:
        channel.basic_publish("", queue, body, pika.BasicProperties(priority=priority))


def _bodies(channel, name: str) -> list[bytes]:  # type: ignore[no-untyped-def]
    bodies = []
    while True:
        method, _props, body = channel.basic_get(name, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


def test_priority_order_fifo_within_a_level(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-priority": 10})
    channel.confirm_delivery()
    _publish(
        channel,
        unique,
        [(b"low1", 1), (b"none", None), (b"high1", 9), (b"low2", 1), (b"high2", 9), (b"mid", 5)],
    )
    assert channel.queue_declare(unique, passive=True).method.message_count == 6
    assert _bodies(channel, unique) == [b"high1", b"high2", b"mid", b"low1", b"low2", b"none"]


def test_priority_above_the_maximum_counts_as_the_maximum(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-priority": 3})
    channel.confirm_delivery()
    _publish(channel, unique, [(b"three", 3), (b"two", 2), (b"hundred", 100), (b"zero", 0)])
    assert _bodies(channel, unique) == [b"three", b"hundred", b"two", b"zero"]


def test_requeued_messages_return_to_their_level(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-priority": 5})
    channel.confirm_delivery()
    _publish(channel, unique, [(b"a5", 5), (b"b1", 1), (b"c5", 5)])
    first = channel.basic_get(unique)[0]
    second = channel.basic_get(unique)[0]
    _publish(channel, unique, [(b"d5", 5)])
    channel.basic_nack(second.delivery_tag, multiple=True, requeue=True)
    assert first.delivery_tag < second.delivery_tag
    assert _bodies(channel, unique) == [b"a5", b"c5", b"d5", b"b1"]


def test_consumer_with_prefetch_sees_priority_order(connection, channel, unique):
    channel.queue_declare(unique, arguments={"x-max-priority": 10})
    channel.confirm_delivery()
    _publish(channel, unique, [(b"%d" % p, p) for p in (1, 4, 2, 8, 3)])
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1)
    got: list[bytes] = []

    def on_message(ch, method, _props, body):  # type: ignore[no-untyped-def]
        got.append(body)
        ch.basic_ack(method.delivery_tag)

    consumer.basic_consume(unique, on_message)
    pump([connection], lambda: len(got) == 5)
    assert got == [b"8", b"4", b"3", b"2", b"1"]


@pytest.mark.parametrize(
    ("value", "detail"),
    [(256, "{max_value_exceeded,256}"), (-1, "{value_negative,-1}")],
)
def test_invalid_max_priority(connection, unique, value, detail):
    channel = connection.channel()
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_declare(unique, arguments={"x-max-priority": value})
    assert err.value.reply_code == 406
    assert err.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '{unique}' in vhost '/':"
        f" {detail}"
    )


def test_priority_queue_expires_only_at_its_head(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-priority": 5, "x-message-ttl": 1500})
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"low", pika.BasicProperties(priority=1, expiration="100"))
    _publish(channel, unique, [(b"high", 5)])  # the head from now on, expiring 1.4 s later
    time.sleep(0.3)  # low is past its deadline, high is not (by over a second: load-proof)
    assert channel.queue_declare(unique, passive=True).method.message_count == 2
    deadline = time.monotonic() + 10
    while channel.queue_declare(unique, passive=True).method.message_count:
        assert time.monotonic() < deadline, "the head never expired"
        time.sleep(0.05)


def test_priority_queue_drop_head_drops_the_highest(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-priority": 5, "x-max-length": 2})
    channel.confirm_delivery()
    _publish(channel, unique, [(b"low", 1), (b"high", 5), (b"mid", 3)])
    assert _bodies(channel, unique) == [b"mid", b"low"]
