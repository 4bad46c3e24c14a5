"""Declaring a queue with a dead-letter exchange needs read permission on the queue and
write permission on the exchange, as in RabbitMQ (it is checked after configure)."""

from __future__ import annotations

from tests.test_permissions import (  # noqa: F401  (fixtures)
    OTHER_VHOST,
    USER,
    VHOST,
    admin,
    assert_channel_closed,
    names,
    perm_broker,
    refused,
    user_conn,
)


def test_dead_letter_exchange_needs_read_on_the_queue(user_conn, names) -> None:  # noqa: F811
    name = "perm-c-dlx-" + names["id"]
    assert_channel_closed(
        user_conn,
        lambda ch: ch.queue_declare(name, arguments={"x-dead-letter-exchange": "perm-w-x"}),
        403,
        refused("queue", name),
    )


def test_dead_letter_exchange_allowed_with_read_and_write(perm_broker, names) -> None:  # noqa: F811
    conn = perm_broker.connect(USER, OTHER_VHOST)
    try:
        channel = conn.channel()
        name = "mid-dlx-" + names["id"]
        channel.queue_declare(name, auto_delete=True, arguments={"x-dead-letter-exchange": "x"})
        channel.queue_delete(name)
    finally:
        conn.close()
