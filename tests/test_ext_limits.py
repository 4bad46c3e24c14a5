"""Queue length limits as RabbitMQ 3.x classic queues enforce them.

`x-max-length` and `x-max-length-bytes` count ready messages only; `x-overflow` drop-head
drops the oldest, reject-publish refuses new messages (silently without confirms), and a
limit of 0 still hands a message to a consumer waiting for it.
"""

from __future__ import annotations

import time

import pika
import pika.exceptions
import pytest
from pamqp import commands

from tests.pumping import pump, settle
from tests.rawamqp import connect


def _count(channel, name: str) -> int:  # type: ignore[no-untyped-def]
    return channel.queue_declare(name, passive=True).method.message_count


def _bodies(channel, name: str) -> list[bytes]:  # type: ignore[no-untyped-def]
    bodies = []
    while True:
        method, _props, body = channel.basic_get(name, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


def test_max_length_drop_head_keeps_the_newest(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-length": 3})
    channel.confirm_delivery()
    for i in range(6):
        channel.basic_publish("", unique, b"%d" % i)
    assert _count(channel, unique) == 3
    assert _bodies(channel, unique) == [b"3", b"4", b"5"]


def test_max_length_bytes_counts_bodies(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-length-bytes": 10})
    channel.confirm_delivery()
    for body in (b"aaaa", b"bbbb", b"cccc", b"dd"):
        channel.basic_publish("", unique, body)
    assert _bodies(channel, unique) == [b"bbbb", b"cccc", b"dd"]


def test_only_ready_messages_count_and_requeue_drops_the_head(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-length": 1})
    channel.confirm_delivery()  # each publish is in the queue before the next call
    channel.basic_publish("", unique, b"a")
    method, _props, _body = channel.basic_get(unique)  # unacked: no longer ready
    channel.basic_publish("", unique, b"b")
    assert _count(channel, unique) == 1
    channel.basic_publish("", unique, b"c")
    assert _count(channel, unique) == 1
    channel.basic_nack(method.delivery_tag, requeue=True)
    # Back at the head, the requeued message takes the queue over its limit: dropped.
    assert _bodies(channel, unique) == [b"c"]


def test_reject_publish_without_confirms_drops_silently(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    for i in range(4):
        channel.basic_publish("", unique, b"%d" % i)
    channel.basic_publish("", unique + "-missing", b"sync")  # then a round trip:
    channel.queue_declare(unique + "-sync", auto_delete=True)
    time.sleep(0.1)  # (RabbitMQ may answer a get before its queue saw earlier publishes)
    assert _bodies(channel, unique) == [b"0", b"1"]


def test_reject_publish_counts_as_routed_for_mandatory(connection, channel, unique):
    channel.queue_declare(unique, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    returned = []
    channel.add_on_return_callback(lambda *args: returned.append(args))
    channel.basic_publish("", unique, b"x", mandatory=True)
    settle([connection], 0.2)
    assert returned == []
    assert _count(channel, unique) == 0


def test_reject_publish_dlx_dead_letters_the_refused(channel, unique):
    channel.queue_declare(unique + "-dead")
    channel.queue_declare(
        unique,
        arguments={
            "x-max-length": 1,
            "x-overflow": "reject-publish-dlx",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": unique + "-dead",
        },
    )
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"kept")
    try:
        channel.basic_publish("", unique, b"refused")
    except pika.exceptions.NackError:
        pass
    assert _bodies(channel, unique) == [b"kept"]
    method, props, body = channel.basic_get(unique + "-dead", auto_ack=True)
    assert body == b"refused"
    assert props.headers["x-death"][0]["reason"] == "maxlen"


def test_max_length_zero_reaches_a_waiting_consumer(connection, channel, unique):
    channel.queue_declare(unique, arguments={"x-max-length": 0})
    got: list[bytes] = []
    channel.basic_consume(unique, lambda _c, _m, _p, body: got.append(body), auto_ack=True)
    publisher = connection.channel()
    for i in range(3):
        publisher.basic_publish("", unique, b"%d" % i)
    pump([connection], lambda: len(got) == 3)
    assert got == [b"0", b"1", b"2"]


def test_max_length_zero_without_consumer_keeps_nothing(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-length": 0})
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"x", pika.BasicProperties(delivery_mode=2))
    assert _count(channel, unique) == 0


def test_reject_publish_nacks_with_confirms(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"fits")
    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish("", unique, b"refused")
    channel.basic_get(unique, auto_ack=True)
    channel.basic_publish("", unique, b"fits again")  # room again: acked
    assert _bodies(channel, unique) == [b"fits again"]


def test_reject_publish_nacks_only_the_refused_publish(broker, unique):
    with connect(broker.host, broker.port) as raw:
        raw.open_channel(1)
        raw.send(1, commands.Confirm.Select())
        raw.expect(commands.Confirm.SelectOk)
        arguments = {"x-max-length": 2, "x-overflow": "reject-publish"}
        raw.send(1, commands.Queue.Declare(queue=unique, auto_delete=True, arguments=arguments))
        raw.expect(commands.Queue.DeclareOk)
        for _ in range(3):
            raw.publish(1, b"m", routing_key=unique)
        raw.publish(1, b"m", routing_key=unique + "-nowhere")
        confirmed: dict[int, bool] = {}
        while len(confirmed) < 4:  # (RabbitMQ may confirm them out of order)
            _channel, frame = raw.recv_frame()
            assert isinstance(frame, commands.Basic.Ack | commands.Basic.Nack)
            tag = frame.delivery_tag
            tags = [t for t in range(1, tag + 1) if t not in confirmed] if frame.multiple else [tag]
            for each in tags:
                confirmed[each] = isinstance(frame, commands.Basic.Ack)
    assert confirmed == {1: True, 2: True, 3: False, 4: True}
