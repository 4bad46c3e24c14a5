"""Routing extensions: queue expiry (`x-expires`), alternate exchanges and sender-selected
distribution (`CC`/`BCC` headers), as RabbitMQ 3.x does them."""

from __future__ import annotations

import time

import pika
import pika.exceptions
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.pumping import settle


def _exists(connection, name: str) -> bool:  # type: ignore[no-untyped-def]
    channel = connection.channel()
    try:
        channel.queue_declare(name, passive=True)
    except ChannelClosedByBroker as err:
        assert err.reply_code == 404
        return False
    channel.close()
    return True


def _wait_gone(connection, name: str, timeout: float = 10.0) -> float:  # type: ignore[no-untyped-def]
    """Wait until the queue is gone; the seconds it took. It is probed with mandatory
    publishes to the default exchange (a publish is no use of the queue: its lease runs on,
    as it would not after a passive declare or a basic.get), returned once it is deleted."""
    start = time.monotonic()
    probe = connection.channel()
    probe.confirm_delivery()
    while True:
        try:
            probe.basic_publish("", name, b"probe", mandatory=True)
        except pika.exceptions.UnroutableError:
            probe.close()
            return time.monotonic() - start
        assert time.monotonic() - start < timeout, f"queue {name} was never deleted"
        time.sleep(0.02)


def test_unused_queue_expires(connection, channel, unique):
    channel.queue_declare(unique, arguments={"x-expires": 200})
    channel.basic_publish("", unique, b"lost with the queue")
    _wait_gone(connection, unique)


def test_consumer_keeps_a_queue_alive(connection, channel, unique):
    channel.queue_declare(unique, arguments={"x-expires": 150})
    channel.basic_consume(unique, lambda *args: None, auto_ack=True)
    settle([connection], 0.4)  # well past its lease: only the consumer keeps it
    assert _exists(connection, unique)
    channel.close()  # the lease starts again when the last consumer goes
    _wait_gone(connection, unique)


def _kept_by_gets(connection, name: str, lease: float) -> bool:  # type: ignore[no-untyped-def]
    """Declare `name` with an x-expires `lease` and basic.get from it every 50 ms for three
    leases. True if it lived through them; False if the box stalled so that two gets may have
    been a lease apart (proof of nothing either way); a 404 close otherwise fails the test."""
    channel = connection.channel()
    last_sent = time.monotonic()
    channel.queue_declare(name, arguments={"x-expires": int(lease * 1000)})
    start = time.monotonic()
    while time.monotonic() - start < 3 * lease:
        time.sleep(0.05)
        sent = time.monotonic()
        try:
            channel.basic_get(name)
        except ChannelClosedByBroker as err:
            if err.reply_code != 404 or time.monotonic() - last_sent < lease:
                raise
            return False
        # the broker's gap between this get and the last is at most reply - last send
        if time.monotonic() - last_sent >= lease:
            channel.queue_delete(name)
            return False
        last_sent = sent
    channel.close()
    return True


def test_get_renews_the_lease(connection, unique):
    for attempt in range(5):
        name = f"{unique}-{attempt}"
        if _kept_by_gets(connection, name, lease=0.3):
            break
    else:
        pytest.fail("the box was too slow to keep gets within a lease of each other")
    assert _exists(connection, name)  # (a passive declare renews it too)
    _wait_gone(connection, name)


def test_alternate_exchange_takes_unroutable_messages(connection, channel, unique):
    ae, caught = unique + "-ae", unique + "-caught"
    channel.exchange_declare(ae, "fanout", auto_delete=True)
    channel.queue_declare(caught, exclusive=True)
    channel.queue_bind(caught, ae)
    channel.exchange_declare(
        unique, "direct", auto_delete=True, arguments={"alternate-exchange": ae}
    )
    channel.queue_declare(unique, exclusive=True)
    channel.queue_bind(unique, unique, "routed")
    returned: list[object] = []
    channel.add_on_return_callback(lambda *args: returned.append(args))
    channel.confirm_delivery()
    channel.basic_publish(unique, "routed", b"normal", mandatory=True)
    channel.basic_publish(unique, "other", b"alternate", mandatory=True)
    assert channel.basic_get(unique, auto_ack=True)[2] == b"normal"
    method, _props, body = channel.basic_get(caught, auto_ack=True)
    assert (body, method.exchange, method.routing_key) == (b"alternate", unique, "other")
    settle([connection], 0.1)
    assert returned == []


def test_alternate_exchanges_chain_and_missing_one_returns(connection, channel, unique):
    first, second, caught = unique + "-1", unique + "-2", unique + "-caught"
    channel.exchange_declare(second, "direct", auto_delete=True)
    channel.queue_declare(caught, exclusive=True)
    channel.queue_bind(caught, second, "k")
    channel.exchange_declare(
        first, "direct", auto_delete=True, arguments={"alternate-exchange": second}
    )
    channel.queue_declare(unique, exclusive=True)
    channel.queue_bind(unique, first, "bound")  # keeps the auto-delete exchange alive
    channel.exchange_declare(
        unique, "topic", auto_delete=True, arguments={"alternate-exchange": first}
    )
    channel.queue_bind(unique, unique, "nothing.matches.this")
    returned: list[bytes] = []
    channel.add_on_return_callback(lambda _ch, _m, _p, body: returned.append(body))
    channel.confirm_delivery()
    channel.basic_publish(unique, "k", b"via two", mandatory=True)
    with pytest.raises(pika.exceptions.UnroutableError):
        channel.basic_publish(unique, "x", b"nowhere", mandatory=True)
    assert channel.basic_get(caught, auto_ack=True)[2] == b"via two"
    settle([connection], 0.2)
    assert returned == [b"nowhere"]


def test_cc_and_bcc_route_to_extra_keys_and_bcc_is_removed(channel, unique):
    names = [unique + suffix for suffix in ("-main", "-cc", "-bcc")]
    for name in names:
        channel.queue_declare(name, exclusive=True)
    channel.confirm_delivery()
    props = pika.BasicProperties(headers={"CC": [names[1]], "BCC": [names[2]], "x": 1})
    channel.basic_publish("", names[0], b"m", props)
    for name in names:
        method, got, body = channel.basic_get(name, auto_ack=True)
        assert body == b"m" and method.routing_key == names[0]
        assert got.headers == {"CC": [names[1]], "x": 1}


def test_cc_on_a_direct_exchange(channel, unique):
    channel.exchange_declare(unique, "direct", auto_delete=True)
    for key in ("a", "b", "c"):
        channel.queue_declare(unique + key, exclusive=True)
        channel.queue_bind(unique + key, unique, key)
    channel.confirm_delivery()
    channel.basic_publish(unique, "a", b"m", pika.BasicProperties(headers={"CC": ["c", "c"]}))
    counts = [
        channel.queue_declare(unique + key, passive=True).method.message_count
        for key in ("a", "b", "c")
    ]
    assert counts == [1, 0, 1]


def test_alternate_exchange_of_an_exchange_reached_through_a_binding(channel, unique):
    source, inner, ae, caught = (unique + suffix for suffix in ("-src", "-in", "-ae", "-c"))
    channel.exchange_declare(ae, "fanout", auto_delete=True)
    channel.queue_declare(caught, exclusive=True)
    channel.queue_bind(caught, ae)
    channel.exchange_declare(
        inner, "direct", auto_delete=True, arguments={"alternate-exchange": ae}
    )
    channel.exchange_declare(source, "fanout", auto_delete=True)
    channel.exchange_bind(inner, source)
    channel.confirm_delivery()
    channel.basic_publish(source, "no-binding-in-inner", b"m", mandatory=True)
    method, _props, body = channel.basic_get(caught, auto_ack=True)
    assert (body, method.exchange, method.routing_key) == (b"m", source, "no-binding-in-inner")
