"""Message TTL as RabbitMQ 3.x classic queues apply it.

`x-message-ttl` and the `expiration` property (with RabbitMQ's 406 texts for bad values),
the lower of the two wins, expired messages are removed when they reach the head (one
behind a longer-lived head still counts), TTL 0 delivers to a waiting consumer or drops,
and a requeued message whose time ran out is dropped, not redelivered.
"""

from __future__ import annotations

import time

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.pumping import pump, settle


def _count(channel, name: str) -> int:
    return channel.queue_declare(name, passive=True).method.message_count


def _wait_count(channel, name: str, expected: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _count(channel, name) != expected:
        assert time.monotonic() < deadline, f"{name} never reached {expected} messages"
        time.sleep(0.02)


def test_queue_ttl_expires_ready_messages(channel, unique: str):
    channel.queue_declare(unique, arguments={"x-message-ttl": 1000})
    channel.confirm_delivery()  # each publish is in the queue before the next call
    for i in range(3):
        channel.basic_publish("", unique, b"m%d" % i)
    assert _count(channel, unique) == 3  # four round trips: well within a second
    _wait_count(channel, unique, 0)
    assert channel.basic_get(unique)[0] is None


def test_queue_ttl_message_not_expired_is_delivered(channel, unique: str):
    channel.confirm_delivery()  # each publish is in the queue before the next call
    channel.queue_declare(unique, arguments={"x-message-ttl": 5000})
    channel.basic_publish("", unique, b"fresh")
    method, _props, body = channel.basic_get(unique, auto_ack=True)
    assert body == b"fresh" and method.message_count == 0


def test_per_message_expiration(channel, unique: str):
    channel.confirm_delivery()  # each publish is in the queue before the next call
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"short", pika.BasicProperties(expiration="100"))
    channel.basic_publish("", unique, b"none")
    _wait_count(channel, unique, 1)
    _method, props, body = channel.basic_get(unique, auto_ack=True)
    assert body == b"none" and props.expiration is None


def test_lower_of_queue_and_message_ttl_wins(channel, unique: str):
    channel.confirm_delivery()  # each publish is in the queue before the next call
    channel.queue_declare(unique, arguments={"x-message-ttl": 100})
    channel.basic_publish("", unique, b"long", pika.BasicProperties(expiration="60000"))
    _wait_count(channel, unique, 0)
    other = unique + "-b"
    channel.queue_declare(other, arguments={"x-message-ttl": 60000})
    channel.basic_publish("", other, b"short", pika.BasicProperties(expiration="100"))
    _wait_count(channel, other, 0)


def test_expired_message_behind_the_head_counts_until_it_reaches_the_head(channel, unique: str):
    channel.queue_declare(unique)
    channel.confirm_delivery()  # each publish is in the queue before the next call
    channel.basic_publish("", unique, b"head", pika.BasicProperties(expiration="60000"))
    channel.basic_publish("", unique, b"behind", pika.BasicProperties(expiration="50"))
    time.sleep(0.3)
    assert _count(channel, unique) == 2  # RabbitMQ 3.x: only the head is looked at
    method, _props, body = channel.basic_get(unique, auto_ack=True)
    assert body == b"head"
    assert channel.basic_get(unique)[0] is None  # now at the head, and long expired
    assert _count(channel, unique) == 0


def test_expired_messages_are_never_delivered_to_a_late_consumer(connection, channel, unique: str):
    channel.queue_declare(unique, arguments={"x-message-ttl": 100})
    channel.confirm_delivery()  # its time starts before the sleep does
    channel.basic_publish("", unique, b"old")
    time.sleep(0.3)
    channel.basic_publish("", unique, b"new")
    got: list[bytes] = []
    channel.basic_consume(unique, lambda _c, _m, _p, body: got.append(body), auto_ack=True)
    pump([connection], lambda: len(got) >= 1)
    settle([connection], 0.2)
    assert got == [b"new"]


def test_ttl_zero_reaches_a_waiting_consumer(connection, channel, unique: str):
    channel.queue_declare(unique, arguments={"x-message-ttl": 0})
    got: list[bytes] = []
    channel.basic_consume(unique, lambda _c, _m, _p, body: got.append(body), auto_ack=True)
    publisher = connection.channel()
    for i in range(5):
        publisher.basic_publish("", unique, b"%d" % i)
    pump([connection], lambda: len(got) == 5)
    assert got == [b"0", b"1", b"2", b"3", b"4"]


def test_ttl_zero_without_consumer_is_dropped(channel, unique: str):
    channel.queue_declare(unique, arguments={"x-message-ttl": 0})
    channel.confirm_delivery()  # each publish is in the queue before the next call
    channel.basic_publish("", unique, b"gone")
    channel.basic_publish("", unique, b"gone too", pika.BasicProperties(expiration="0"))
    assert _count(channel, unique) == 0
    assert channel.basic_get(unique)[0] is None


def test_requeued_message_past_its_expiry_is_dropped(channel, unique: str):
    channel.confirm_delivery()  # each publish is in the queue before the next call
    channel.queue_declare(unique, arguments={"x-message-ttl": 200})
    channel.basic_publish("", unique, b"slow")
    method, _props, _body = channel.basic_get(unique)
    time.sleep(0.4)
    channel.basic_nack(method.delivery_tag, requeue=True)
    assert _count(channel, unique) == 0
    assert channel.basic_get(unique)[0] is None


def test_requeued_message_keeps_its_original_expiry(channel, unique: str):
    channel.confirm_delivery()  # each publish is in the queue before the next call
    channel.queue_declare(unique, arguments={"x-message-ttl": 1500})
    channel.basic_publish("", unique, b"m")
    published = time.monotonic()
    method, _props, _body = channel.basic_get(unique)
    channel.basic_nack(method.delivery_tag, requeue=True)
    method, _props, _body = channel.basic_get(unique)
    assert method.redelivered
    time.sleep(max(0.0, 0.8 - (time.monotonic() - published)))
    requeued = time.monotonic()
    channel.basic_nack(method.delivery_tag, requeue=True)
    _wait_count(channel, unique, 0)
    # Its deadline is publish + 1.5 s, not requeue + 1.5 s (>= 0.8 s later): a gap for load.
    assert time.monotonic() - requeued < 1.5


@pytest.mark.parametrize(
    ("expiration", "detail"),
    [
        ("abc", "no_integer"),
        ("", "no_integer"),
        ("-5", "{value_negative,-5}"),
        ("1.5", '{leftover_string,".5"}'),
        ("5abc", '{leftover_string,"abc"}'),
        ("315360000001", "{value_too_large,315360000001}"),
        (
            "99999999999999999999",
            "{value_too_large,\n" + " " * 44 + "99999999999999999999}",
        ),
    ],
)
def test_invalid_expiration_closes_the_channel(
    connection, unique: str, expiration: str, detail: str
):
    channel = connection.channel()
    channel.queue_declare(unique, auto_delete=True)
    channel.confirm_delivery()
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.basic_publish("", unique, b"x", pika.BasicProperties(expiration=expiration))
    assert err.value.reply_code == 406
    assert err.value.reply_text == (
        f"PRECONDITION_FAILED - invalid expiration '{expiration}': {detail}"
    )
    assert connection.channel().queue_declare(unique, passive=True).method.message_count == 0


@pytest.mark.parametrize("expiration", ["+5000", "05000", "0", "-0", "315360000000"])
def test_unusual_but_valid_expirations_are_accepted(channel, unique: str, expiration: str):
    channel.queue_declare(unique, auto_delete=True)
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"x", pika.BasicProperties(expiration=expiration))
