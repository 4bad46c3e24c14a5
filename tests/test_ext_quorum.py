"""`x-queue-type: quorum` as a client sees it on a single RabbitMQ 3.10 node: the declare
rules and their texts, and the TTL / dead-letter behaviour Celery's delayed delivery uses."""

from __future__ import annotations

import time

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

QUORUM = {"x-queue-type": "quorum"}


def _refused(connection, name: str, **kwargs) -> str:  # type: ignore[no-untyped-def]
    channel = connection.channel()
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_declare(name, **kwargs)
    assert err.value.reply_code == 406
    return str(err.value.reply_text)


@pytest.mark.parametrize(
    ("flags", "prop"),
    [
        ({}, "non-durable"),
        ({"durable": True, "exclusive": True}, "exclusive-owner"),
        ({"exclusive": True}, "exclusive-owner"),
        ({"auto_delete": True, "exclusive": True}, "auto-delete"),
        ({"durable": True, "auto_delete": True}, "auto-delete"),
    ],
)
def test_quorum_queue_properties_refused(connection, unique, flags, prop):
    text = _refused(connection, unique, arguments=QUORUM, **flags)
    assert (
        text == f"PRECONDITION_FAILED - invalid property '{prop}' for queue '{unique}' in vhost '/'"
    )


@pytest.mark.parametrize("arg", ["x-max-priority", "x-queue-mode", "x-queue-master-locator"])
def test_quorum_queue_refuses_classic_only_arguments(connection, unique, arg):
    value = {"x-max-priority": 5, "x-queue-mode": "lazy"}.get(arg, "min-masters")
    text = _refused(connection, unique, durable=True, arguments={**QUORUM, arg: value})
    assert text == (
        f"PRECONDITION_FAILED - invalid arg '{arg}' for queue '{unique}' in vhost '/' "
        "of queue type rabbit_quorum_queue"
    )


def test_quorum_queue_cannot_be_server_named(connection):
    text = _refused(connection, "", durable=True, arguments=QUORUM)
    assert text == (
        "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue"
    )


def test_quorum_queue_accepts_its_arguments(channel, unique):
    arguments = {
        **QUORUM,
        "x-message-ttl": 1000,
        "x-max-length": 10,
        "x-overflow": "reject-publish",
        "x-single-active-consumer": True,
        "x-delivery-limit": 3,
        "x-dead-letter-exchange": "",
    }
    channel.queue_declare(unique, durable=True, arguments=arguments)
    channel.queue_declare(unique, durable=True, arguments=arguments)
    channel.queue_delete(unique)


def test_celery_style_delayed_delivery(channel, unique):
    """A quorum queue with a TTL that dead-letters into the work queue (celery_delayed_N)."""
    work = unique + "-work"
    channel.queue_declare(work, durable=True, arguments=QUORUM)
    channel.exchange_declare(unique + "-x", "topic", durable=True)
    channel.queue_bind(work, unique + "-x", "#")
    channel.queue_declare(
        unique,
        durable=True,
        arguments={
            **QUORUM,
            "x-message-ttl": 1000,  # the next two round trips fit in it on a loaded box
            "x-dead-letter-exchange": unique + "-x",
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"later", pika.BasicProperties(delivery_mode=2))
    assert channel.basic_get(work)[0] is None
    deadline = time.monotonic() + 10
    while (got := channel.basic_get(work, auto_ack=True))[0] is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert got[2] == b"later" and got[1].headers["x-death"][0]["reason"] == "expired"
    channel.queue_delete(unique)
    channel.queue_delete(work)
    channel.exchange_delete(unique + "-x")


def test_delivery_limit_counts_returns_and_dead_letters(channel, unique):
    dead = unique + "-dead"
    channel.queue_declare(dead)
    channel.queue_declare(
        unique,
        durable=True,
        arguments={
            **QUORUM,
            "x-delivery-limit": 1,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead,
        },
    )
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"x", pika.BasicProperties(headers={"a": 1}))
    seen = []
    for _ in range(2):
        method, props, _body = channel.basic_get(unique)
        seen.append((method.redelivered, props.headers))
        channel.basic_nack(method.delivery_tag, requeue=True)
    assert seen == [
        (False, {"a": 1, "x-delivery-count": 0}),
        (True, {"a": 1, "x-delivery-count": 1}),
    ]
    deadline = time.monotonic() + 10
    while (got := channel.basic_get(dead, auto_ack=True))[0] is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    headers = got[1].headers
    assert "x-delivery-count" not in headers and headers["a"] == 1
    assert headers["x-death"][0]["reason"] == "delivery_limit"
    assert channel.basic_get(unique)[0] is None
    channel.queue_delete(unique)
    channel.queue_delete(dead)
