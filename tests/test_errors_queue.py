"""Queue-level error replies: codes and texts exactly as RabbitMQ sends them.

Every case here closes only the channel (channel.close with the code and text below) unless
said otherwise; the texts embed the queue name and the vhost, so they are built from them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.conftest import BrokerAddress

VHOST = "/"
DEFAULT_EXCHANGE_REFUSED = "ACCESS_REFUSED - operation not permitted on the default exchange"


def no_queue(name: str) -> str:
    return f"NOT_FOUND - no queue '{name}' in vhost '{VHOST}'"


def locked(name: str) -> str:
    return (
        f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}' in vhost "
        f"'{VHOST}'. It could be originally declared on another connection or the exclusive "
        "property value does not match that of the original declaration."
    )


def inequivalent(name: str, arg: str, received: str, current: str) -> str:
    return (
        f"PRECONDITION_FAILED - inequivalent arg '{arg}' for queue '{name}' in vhost "
        f"'{VHOST}': received {received} but current is {current}"
    )


@pytest.fixture
def other_connection(broker: BrokerAddress) -> Iterator[pika.BlockingConnection]:
    conn = pika.BlockingConnection(broker.params())
    yield conn
    if conn.is_open:
        conn.close()


def test_passive_declare_of_missing_queue(channel, unique: str) -> None:
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_declare(unique, passive=True)
    assert (err.value.reply_code, err.value.reply_text) == (404, no_queue(unique))
    assert channel.is_closed


@pytest.mark.parametrize("flag", ["durable", "auto_delete"])
@pytest.mark.parametrize("first", [False, True])
def test_redeclare_with_other_flag(connection, unique: str, flag: str, first: bool) -> None:
    channel = connection.channel()
    channel.queue_declare(unique, **{flag: first})
    try:
        with pytest.raises(ChannelClosedByBroker) as err:
            channel.queue_declare(unique, **{flag: not first})
        received, current = ("'true'", "'false'") if not first else ("'false'", "'true'")
        assert err.value.reply_code == 406
        assert err.value.reply_text == inequivalent(unique, flag, received, current)
    finally:
        connection.channel().queue_delete(unique)


@pytest.mark.parametrize("first", [False, True])
def test_redeclare_with_other_exclusive_flag_is_resource_locked(
    connection, unique: str, first: bool
) -> None:
    channel = connection.channel()
    channel.queue_declare(unique, exclusive=first)
    try:
        with pytest.raises(ChannelClosedByBroker) as err:
            channel.queue_declare(unique, exclusive=not first)
        assert (err.value.reply_code, err.value.reply_text) == (405, locked(unique))
    finally:
        connection.channel().queue_delete(unique)


def test_redeclare_with_other_argument_value(channel, unique: str) -> None:
    channel.queue_declare(unique, exclusive=True, arguments={"x-message-ttl": 1000})
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_declare(unique, exclusive=True, arguments={"x-message-ttl": 2000})
    assert err.value.reply_code == 406
    assert err.value.reply_text == inequivalent(unique, "x-message-ttl", "'2000'", "'1000'")


def test_redeclare_without_an_argument(channel, unique: str) -> None:
    # pika encodes a small int as a signed 32-bit table value ('I'), named 'signedint'.
    channel.queue_declare(unique, exclusive=True, arguments={"x-message-ttl": 1000})
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_declare(unique, exclusive=True)
    assert err.value.reply_code == 406
    assert err.value.reply_text == inequivalent(
        unique, "x-message-ttl", "none", "the value '1000' of type 'signedint'"
    )


def test_redeclare_adding_an_argument(channel, unique: str) -> None:
    channel.queue_declare(unique, exclusive=True)
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_declare(unique, exclusive=True, arguments={"x-max-length": 7})
    assert err.value.reply_code == 406
    assert err.value.reply_text == inequivalent(
        unique, "x-max-length", "the value '7' of type 'signedint'", "none"
    )


def test_redeclare_with_other_dead_letter_exchange(channel, unique: str) -> None:
    channel.queue_declare(unique, exclusive=True, arguments={"x-dead-letter-exchange": "a"})
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_declare(unique, exclusive=True, arguments={"x-dead-letter-exchange": "b"})
    assert err.value.reply_code == 406
    assert err.value.reply_text == inequivalent(unique, "x-dead-letter-exchange", "'b'", "'a'")


def test_unknown_arguments_are_not_compared(channel, unique: str) -> None:
    channel.queue_declare(unique, exclusive=True, arguments={"x-custom": "a"})
    channel.queue_declare(unique, exclusive=True, arguments={"x-custom": "b"})
    assert channel.is_open


def test_passive_redeclare_ignores_flags_and_arguments(channel, unique: str) -> None:
    channel.queue_declare(unique, exclusive=True, arguments={"x-message-ttl": 5})
    ok = channel.queue_declare(unique, passive=True, durable=True, auto_delete=True)
    assert ok.method.queue == unique
    assert channel.is_open


@pytest.mark.parametrize(
    "operation",
    [
        lambda ch, q: ch.queue_bind(q, "amq.direct", routing_key="k"),
        lambda ch, q: ch.queue_purge(q),
        lambda ch, q: ch.basic_consume(q, lambda *a: None),
        lambda ch, q: ch.basic_get(q),
    ],
    ids=["bind", "purge", "consume", "get"],
)
def test_operation_on_missing_queue(channel, unique: str, operation) -> None:
    with pytest.raises(ChannelClosedByBroker) as err:
        operation(channel, unique)
    assert (err.value.reply_code, err.value.reply_text) == (404, no_queue(unique))


@pytest.mark.parametrize("if_unused,if_empty", [(False, False), (True, True)])
def test_delete_of_missing_queue_succeeds(
    channel, unique: str, if_unused: bool, if_empty: bool
) -> None:
    ok = channel.queue_delete(unique, if_unused=if_unused, if_empty=if_empty)
    assert isinstance(ok.method, pika.spec.Queue.DeleteOk)
    assert ok.method.message_count == 0
    assert channel.is_open


def test_unbind_of_missing_queue_and_exchange_succeeds(channel, unique: str) -> None:
    channel.queue_unbind(unique, unique + "-x", routing_key="k")
    assert channel.is_open


@pytest.mark.parametrize(
    "operation",
    [
        lambda ch: ch.queue_bind("", "amq.direct", routing_key="k"),
        lambda ch: ch.queue_purge(""),
        lambda ch: ch.basic_get(""),
        lambda ch: ch.queue_delete(""),
    ],
    ids=["bind", "purge", "get", "delete"],
)
def test_empty_queue_name_without_a_declared_queue(channel, operation) -> None:
    with pytest.raises(ChannelClosedByBroker) as err:
        operation(channel)
    assert err.value.reply_code == 404
    assert err.value.reply_text == "NOT_FOUND - no previously declared queue"


@pytest.mark.parametrize(
    "operation",
    [
        lambda ch, q: ch.queue_declare(q, exclusive=True),
        lambda ch, q: ch.queue_declare(q),
        lambda ch, q: ch.queue_declare(q, passive=True),
        lambda ch, q: ch.basic_consume(q, lambda *a: None),
        lambda ch, q: ch.basic_get(q),
        lambda ch, q: ch.queue_purge(q),
        lambda ch, q: ch.queue_delete(q),
        lambda ch, q: ch.queue_bind(q, "amq.direct", routing_key="k"),
    ],
    ids=[
        "declare",
        "declare-shared",
        "declare-passive",
        "consume",
        "get",
        "purge",
        "delete",
        "bind",
    ],
)
def test_exclusive_queue_is_locked_for_other_connections(
    connection, other_connection, unique: str, operation
) -> None:
    connection.channel().queue_declare(unique, exclusive=True)
    intruder = other_connection.channel()
    with pytest.raises(ChannelClosedByBroker) as err:
        operation(intruder, unique)
    assert (err.value.reply_code, err.value.reply_text) == (405, locked(unique))
    # The owner still has its queue.
    assert connection.channel().queue_declare(unique, passive=True).method.queue == unique


def test_other_connection_may_publish_to_an_exclusive_queue(
    connection, other_connection, unique: str
) -> None:
    owner = connection.channel()
    owner.queue_declare(unique, exclusive=True)
    other = other_connection.channel()
    other.basic_publish("", unique, b"hello")
    other.basic_qos(prefetch_count=0)  # round trip: the publish was not refused
    for _ in range(100):
        method, _, body = owner.basic_get(unique, auto_ack=True)
        if method is not None:
            break
        connection.sleep(0.05)
    assert body == b"hello"


@pytest.mark.parametrize("durable", [False, True])
def test_declare_reserved_amq_prefix(channel, unique: str, durable: bool) -> None:
    name = "amq." + unique
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_declare(name, durable=durable)
    assert err.value.reply_code == 403
    assert err.value.reply_text == (
        f"ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'"
    )


def test_passive_declare_of_reserved_name_is_not_found(channel, unique: str) -> None:
    name = "amq." + unique
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_declare(name, passive=True)
    assert (err.value.reply_code, err.value.reply_text) == (404, no_queue(name))


def test_delete_if_unused_with_a_consumer(channel, unique: str) -> None:
    channel.queue_declare(unique, exclusive=True)
    channel.basic_consume(unique, lambda *a: None)
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_delete(unique, if_unused=True)
    assert err.value.reply_code == 406
    assert err.value.reply_text == (
        f"PRECONDITION_FAILED - queue '{unique}' in vhost '{VHOST}' in use"
    )


def test_delete_if_empty_with_a_ready_message(channel, unique: str) -> None:
    channel.queue_declare(unique, exclusive=True)
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"m")
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_delete(unique, if_empty=True)
    assert err.value.reply_code == 406
    assert err.value.reply_text == (
        f"PRECONDITION_FAILED - queue '{unique}' in vhost '{VHOST}' not empty"
    )


def test_delete_if_empty_and_if_unused_reports_not_empty_first(channel, unique: str) -> None:
    channel.queue_declare(unique, exclusive=True)
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"a")
    channel.basic_publish("", unique, b"b")
    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(unique, lambda *a: None)
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_delete(unique, if_empty=True, if_unused=True)
    assert err.value.reply_code == 406
    assert err.value.reply_text == (
        f"PRECONDITION_FAILED - queue '{unique}' in vhost '{VHOST}' not empty"
    )


def test_delete_if_empty_ignores_unacked_messages(channel, unique: str) -> None:
    channel.queue_declare(unique, exclusive=True)
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"m")
    method, _, _ = channel.basic_get(unique)
    assert method is not None
    ok = channel.queue_delete(unique, if_empty=True)
    assert ok.method.message_count == 0
    assert channel.is_open


def test_bind_to_missing_exchange(channel, unique: str) -> None:
    channel.queue_declare(unique, exclusive=True)
    exchange = unique + "-x"
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_bind(unique, exchange, routing_key="k")
    assert err.value.reply_code == 404
    assert err.value.reply_text == f"NOT_FOUND - no exchange '{exchange}' in vhost '{VHOST}'"


def test_bind_missing_queue_to_missing_exchange_reports_the_exchange(channel, unique: str) -> None:
    exchange = unique + "-x"
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_bind(unique, exchange, routing_key="k")
    assert err.value.reply_code == 404
    assert err.value.reply_text == f"NOT_FOUND - no exchange '{exchange}' in vhost '{VHOST}'"


@pytest.mark.parametrize("unbind", [False, True])
def test_bind_to_default_exchange_is_refused(channel, unique: str, unbind: bool) -> None:
    channel.queue_declare(unique, exclusive=True)
    operation = channel.queue_unbind if unbind else channel.queue_bind
    with pytest.raises(ChannelClosedByBroker) as err:
        operation(unique, "", routing_key="k")
    assert err.value.reply_code == 403
    assert err.value.reply_text == DEFAULT_EXCHANGE_REFUSED


def invalid_arg(name: str, arg: str, detail: str) -> str:
    return (
        f"PRECONDITION_FAILED - invalid arg '{arg}' for queue '{name}' in vhost '{VHOST}': {detail}"
    )


@pytest.mark.parametrize(
    "arguments,arg,detail",
    [
        ({"x-message-ttl": -1}, "x-message-ttl", "{value_negative,-1}"),
        ({"x-message-ttl": "abc"}, "x-message-ttl", '"expected integer, got longstr"'),
        ({"x-expires": 0}, "x-expires", "{value_zero,0}"),
        ({"x-expires": -5}, "x-expires", "{value_negative,-5}"),
        ({"x-max-length": -1}, "x-max-length", "{value_negative,-1}"),
        ({"x-max-length-bytes": -1}, "x-max-length-bytes", "{value_negative,-1}"),
        ({"x-overflow": "foo"}, "x-overflow", "invalid_overflow"),
        (
            {"x-dead-letter-routing-key": "rk"},
            "x-dead-letter-routing-key",
            "routing_key_but_no_dlx_defined",
        ),
        ({"x-max-priority": 256}, "x-max-priority", "{max_value_exceeded,256}"),
        ({"x-max-priority": -1}, "x-max-priority", "{value_negative,-1}"),
        ({"x-queue-type": "foo"}, "x-queue-type", "\"unsupported queue type 'foo'\""),
        (
            {"x-single-active-consumer": "yes"},
            "x-single-active-consumer",
            "{unacceptable_type,longstr}",
        ),
    ],
    ids=lambda value: str(value) if isinstance(value, dict) else "",
)
def test_invalid_queue_argument(channel, unique: str, arguments, arg: str, detail: str) -> None:
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_declare(unique, exclusive=True, arguments=arguments)
    assert err.value.reply_code == 406
    assert err.value.reply_text == invalid_arg(unique, arg, detail)


def test_dead_letter_exchange_of_wrong_type(channel, unique: str) -> None:
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_declare(unique, exclusive=True, arguments={"x-dead-letter-exchange": 5})
    assert err.value.reply_code == 406
    assert err.value.reply_text == (
        f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in "
        f"queue '{unique}' in vhost '{VHOST}'"
    )
