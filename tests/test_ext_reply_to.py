"""Direct reply-to (`amq.rabbitmq.reply-to`) as RabbitMQ 3.x serves it: the consume rules
and their texts, the generated reply_to name, declares of the pseudo-queue, replies across
connections, and replies to a requester that has gone."""

from __future__ import annotations

import pika
import pika.exceptions
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.pumping import pump

REPLY_TO = "amq.rabbitmq.reply-to"


def _closed(action) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ChannelClosedByBroker) as err:
        action()
    return err.value.reply_code, err.value.reply_text


def test_reply_consumer_rules(connection):
    channel = connection.channel()
    code_text = _closed(lambda: channel.basic_consume(REPLY_TO, lambda *a: None))
    assert code_text == (406, "PRECONDITION_FAILED - reply consumer cannot acknowledge")
    channel = connection.channel()
    channel.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    code_text = _closed(lambda: channel.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True))
    assert code_text == (406, "PRECONDITION_FAILED - reply consumer already set")


def test_request_without_reply_consumer_is_refused(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, auto_delete=True)
    code_text = _closed(
        lambda: (
            channel.basic_publish("", unique, b"q", pika.BasicProperties(reply_to=REPLY_TO)),
            channel.queue_declare(unique, passive=True),
        )
    )
    assert code_text == (406, "PRECONDITION_FAILED - fast reply consumer does not exist")


def test_declaring_the_pseudo_queue(connection, unique):
    channel = connection.channel()
    for passive in (True, False):
        ok = channel.queue_declare(REPLY_TO, passive=passive).method
        assert (ok.queue, ok.message_count, ok.consumer_count) == (REPLY_TO, 0, 1)
    code_text = _closed(lambda: channel.queue_declare(REPLY_TO + ".nope", passive=True))
    assert code_text == (404, f"NOT_FOUND - no queue '{REPLY_TO}.nope' in vhost '/'")
    channel = connection.channel()
    assert _closed(lambda: channel.basic_get(REPLY_TO)) == (
        404,
        f"NOT_FOUND - no queue '{REPLY_TO}' in vhost '/'",
    )


def test_rpc_round_trip_across_connections(broker, unique):
    client = pika.BlockingConnection(broker.params())
    server = pika.BlockingConnection(broker.params())
    try:
        requests = server.channel()
        requests.queue_declare(unique, exclusive=True)

        def on_request(ch, method, props, body):  # type: ignore[no-untyped-def]
            ch.basic_publish(
                "",
                props.reply_to,
                b"re: " + body,
                pika.BasicProperties(correlation_id=props.correlation_id),
            )
            ch.basic_ack(method.delivery_tag)

        requests.basic_consume(unique, on_request)
        caller = client.channel()
        replies: list[tuple[object, object, bytes]] = []
        caller.basic_consume(REPLY_TO, lambda _c, m, p, b: replies.append((m, p, b)), auto_ack=True)
        caller.basic_publish(
            "", unique, b"ping", pika.BasicProperties(reply_to=REPLY_TO, correlation_id="7")
        )
        pump([client, server], lambda: bool(replies))
        method, props, body = replies[0]
        assert body == b"re: ping" and props.correlation_id == "7"  # type: ignore[attr-defined]
        reply_to = method.routing_key  # type: ignore[attr-defined]
        assert reply_to.startswith(REPLY_TO + ".") and len(reply_to) > len(REPLY_TO) + 20
        assert method.exchange == ""  # type: ignore[attr-defined]
        ok = requests.queue_declare(reply_to, passive=True).method
        assert (ok.queue, ok.consumer_count) == (reply_to, 1)
        caller.close()  # the requester goes away
        late = server.channel()
        late.confirm_delivery()
        with pytest.raises(pika.exceptions.UnroutableError):
            late.basic_publish("", reply_to, b"too late", mandatory=True)
    finally:
        for conn in (client, server):
            if conn.is_open:
                conn.close()
