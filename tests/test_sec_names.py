"""Any UTF-8 name up to 255 bytes works everywhere a client can name something (issue 10.1).

Replies echo client-chosen names (queue.declare-ok, basic.return, consume-ok, cancel); none
of them may be refused by the AMQP spec's narrow name domains, as RabbitMQ accepts them all.
"""

from __future__ import annotations

import pika
import pytest

from tests.conftest import BrokerAddress

NAMES = ["orders!", "tâche", "a$b", "x*y", "with(paren)", "q?", "sp ace", "é" * 127 + "x"]


def _cut(text: str, size: int = 255) -> str:
    """`text` cut to at most `size` UTF-8 bytes."""
    return text.encode()[:size].decode(errors="ignore")


@pytest.mark.parametrize("suffix", NAMES)
def test_odd_names_round_trip(broker: BrokerAddress, unique: str, suffix: str) -> None:
    name = _cut(unique + suffix)
    conn = pika.BlockingConnection(broker.params())
    try:
        ch = conn.channel()
        ok = ch.queue_declare(name)
        assert ok.method.queue == name
        exchange = _cut(f"ex!{name}")
        ch.exchange_declare(exchange, "direct", auto_delete=True)
        ch.queue_bind(name, exchange, routing_key=_cut(f"rk?{suffix}"))
        ch.confirm_delivery()
        returned: list[tuple[str, str]] = []
        ch.add_on_return_callback(
            lambda _ch, method, _props, _body: returned.append(
                (method.exchange, method.routing_key)
            )
        )
        with pytest.raises(pika.exceptions.UnroutableError):
            ch.basic_publish(exchange, "no$route!", b"x", mandatory=True)
        conn.process_data_events(0.2)
        assert returned == [(exchange, "no$route!")]
        ch.basic_publish(exchange, _cut(f"rk?{suffix}"), b"hello")
        method, _props, body = ch.basic_get(name, auto_ack=True)
        assert body == b"hello" and method.exchange == exchange
        tag = ch.basic_consume(name, lambda *a: None, consumer_tag=_cut(f"ct!{suffix}"))
        ch.basic_cancel(tag)
        assert ch.queue_purge(name).method.message_count == 0
        ch.queue_delete(name)
        ch.exchange_delete(exchange)
        assert conn.is_open
    finally:
        if conn.is_open:
            conn.close()


def test_server_cancel_carries_odd_tag(broker: BrokerAddress, unique: str) -> None:
    conn = pika.BlockingConnection(broker.params())
    try:
        ch = conn.channel()
        name = unique + "(del)!"
        ch.queue_declare(name)
        ch.basic_consume(name, lambda *a: None, consumer_tag="tag$é?")
        other = conn.channel()
        other.queue_delete(name)
        conn.process_data_events(0.3)
        assert ch.consumer_tags == []
        assert conn.is_open
    finally:
        if conn.is_open:
            conn.close()
