"""Exchange-level error replies: codes and texts exactly as RabbitMQ sends them.

All of these close only the channel, except an unknown exchange type, which closes the
whole connection with 503 COMMAND_INVALID.
"""

from __future__ import annotations

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

from tests.broker_process import external_broker

VHOST = "/"
DEFAULT_EXCHANGE_REFUSED = "ACCESS_REFUSED - operation not permitted on the default exchange"


def no_exchange(name: str) -> str:
    return f"NOT_FOUND - no exchange '{name}' in vhost '{VHOST}'"


def inequivalent(name: str, arg: str, received: str, current: str) -> str:
    return (
        f"PRECONDITION_FAILED - inequivalent arg '{arg}' for exchange '{name}' in vhost "
        f"'{VHOST}': received '{received}' but current is '{current}'"
    )


@pytest.mark.parametrize(
    "kind,text",
    [
        ("bogus", "unknown exchange type 'bogus'"),
        ("x-no-such-type", "unknown exchange type 'x-no-such-type'"),
        ("Direct", "unknown exchange type 'Direct'"),
        # RabbitMQ says "invalid" instead of "unknown" when the name happens to be an atom
        # that already exists in the Erlang VM (e.g. 'foo', 'queue', 'ok', ''); only the
        # empty name is tested for that, as it is the one such name that is predictable.
        ("", "invalid exchange type ''"),
    ],
    ids=["bogus", "x-prefixed", "capitalised", "empty"],
)
def test_declare_with_unknown_type_closes_the_connection(
    connection, unique: str, kind: str, text: str
) -> None:
    channel = connection.channel()
    with pytest.raises(ConnectionClosedByBroker) as err:
        channel.exchange_declare(unique, exchange_type=kind)
    assert err.value.reply_code == 503
    expected = {f"COMMAND_INVALID - {text}"}
    if kind == "Direct" and external_broker() is not None:
        # Against RabbitMQ only: whether 'Direct' is "unknown" or "invalid" depends on whether
        # that atom already exists in its VM, which the management plugin's code creates.
        expected.add("COMMAND_INVALID - invalid exchange type 'Direct'")
    assert err.value.reply_text in expected
    assert connection.is_closed


def test_passive_declare_of_missing_exchange(channel, unique: str) -> None:
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.exchange_declare(unique, passive=True)
    assert (err.value.reply_code, err.value.reply_text) == (404, no_exchange(unique))


def test_passive_declare_with_unknown_type_is_not_found(channel, unique: str) -> None:
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.exchange_declare(unique, exchange_type="bogus", passive=True)
    assert (err.value.reply_code, err.value.reply_text) == (404, no_exchange(unique))


@pytest.mark.parametrize(
    "change,arg,received,current",
    [
        ({"exchange_type": "fanout"}, "type", "fanout", "direct"),
        ({"durable": True}, "durable", "true", "false"),
        ({"auto_delete": True}, "auto_delete", "true", "false"),
        ({"internal": True}, "internal", "true", "false"),
        ({"exchange_type": "topic", "durable": True}, "type", "topic", "direct"),
    ],
    ids=["type", "durable", "auto_delete", "internal", "type-before-durable"],
)
def test_redeclare_inequivalent(
    connection, unique: str, change: dict, arg: str, received: str, current: str
) -> None:
    channel = connection.channel()
    channel.exchange_declare(unique, exchange_type="direct")
    try:
        with pytest.raises(ChannelClosedByBroker) as err:
            channel.exchange_declare(unique, **{"exchange_type": "direct", **change})
        assert err.value.reply_code == 406
        assert err.value.reply_text == inequivalent(unique, arg, received, current)
    finally:
        connection.channel().exchange_delete(unique)


def test_redeclare_with_other_alternate_exchange(connection, unique: str) -> None:
    channel = connection.channel()
    channel.exchange_declare(unique, arguments={"alternate-exchange": "a"})
    try:
        with pytest.raises(ChannelClosedByBroker) as err:
            channel.exchange_declare(unique, arguments={"alternate-exchange": "b"})
        assert err.value.reply_code == 406
        assert err.value.reply_text == inequivalent(unique, "alternate-exchange", "b", "a")
    finally:
        connection.channel().exchange_delete(unique)


def test_alternate_exchange_of_wrong_type(channel, unique: str) -> None:
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.exchange_declare(unique, arguments={"alternate-exchange": 5})
    assert err.value.reply_code == 406
    assert err.value.reply_text == (
        f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in "
        f"exchange '{unique}' in vhost '{VHOST}'"
    )


def test_passive_declare_ignores_type_and_flags(connection, unique: str) -> None:
    channel = connection.channel()
    channel.exchange_declare(unique, exchange_type="direct")
    try:
        channel.exchange_declare(unique, exchange_type="fanout", durable=True, passive=True)
        assert channel.is_open
    finally:
        connection.channel().exchange_delete(unique)


@pytest.mark.parametrize("durable", [False, True])
def test_declare_reserved_amq_prefix(channel, unique: str, durable: bool) -> None:
    name = "amq." + unique
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.exchange_declare(name, exchange_type="direct", durable=durable)
    assert err.value.reply_code == 403
    assert err.value.reply_text == (
        f"ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'"
    )


def test_passive_declare_of_missing_reserved_name(channel, unique: str) -> None:
    name = "amq." + unique
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.exchange_declare(name, passive=True)
    assert (err.value.reply_code, err.value.reply_text) == (404, no_exchange(name))


def test_redeclare_builtin_exchange_with_same_properties_is_allowed(channel) -> None:
    channel.exchange_declare("amq.direct", exchange_type="direct", durable=True)
    channel.exchange_declare("amq.topic", exchange_type="topic", durable=True)
    assert channel.is_open


@pytest.mark.parametrize(
    "change,arg,received,current",
    [
        ({"exchange_type": "direct", "durable": False}, "durable", "false", "true"),
        ({"exchange_type": "fanout", "durable": True}, "type", "fanout", "direct"),
    ],
    ids=["durable", "type"],
)
def test_redeclare_builtin_exchange_inequivalent(
    channel, change: dict, arg: str, received: str, current: str
) -> None:
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.exchange_declare("amq.direct", **change)
    assert err.value.reply_code == 406
    assert err.value.reply_text == inequivalent("amq.direct", arg, received, current)


@pytest.mark.parametrize("passive", [False, True])
def test_declare_default_exchange_is_refused(channel, passive: bool) -> None:
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.exchange_declare("", exchange_type="direct", durable=True, passive=passive)
    assert (err.value.reply_code, err.value.reply_text) == (403, DEFAULT_EXCHANGE_REFUSED)


@pytest.mark.parametrize("name", ["amq.direct", "amq.fanout", "amq.no-such-exchange"])
def test_delete_system_exchange_is_refused(channel, name: str) -> None:
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.exchange_delete(name)
    assert err.value.reply_code == 403
    assert err.value.reply_text == (
        f"ACCESS_REFUSED - deletion of system exchange '{name}' in vhost '{VHOST}' not allowed"
    )


def test_delete_default_exchange_is_refused(channel) -> None:
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.exchange_delete("")
    assert (err.value.reply_code, err.value.reply_text) == (403, DEFAULT_EXCHANGE_REFUSED)


@pytest.mark.parametrize("if_unused", [False, True])
def test_delete_missing_exchange_succeeds(channel, unique: str, if_unused: bool) -> None:
    ok = channel.exchange_delete(unique, if_unused=if_unused)
    assert isinstance(ok.method, pika.spec.Exchange.DeleteOk)
    assert channel.is_open


def test_delete_if_unused_with_a_queue_binding(connection, unique: str) -> None:
    channel = connection.channel()
    channel.exchange_declare(unique, exchange_type="direct")
    try:
        channel.queue_declare(unique, exclusive=True)
        channel.queue_bind(unique, unique, routing_key="k")
        with pytest.raises(ChannelClosedByBroker) as err:
            channel.exchange_delete(unique, if_unused=True)
        assert err.value.reply_code == 406
        assert err.value.reply_text == (
            f"PRECONDITION_FAILED - exchange '{unique}' in vhost '{VHOST}' in use"
        )
    finally:
        connection.channel().exchange_delete(unique)


def test_delete_if_unused_with_an_exchange_binding_as_source(connection, unique: str) -> None:
    channel = connection.channel()
    source, destination = unique + "-src", unique + "-dst"
    channel.exchange_declare(source, exchange_type="direct")
    channel.exchange_declare(destination, exchange_type="direct")
    try:
        channel.exchange_bind(destination, source, routing_key="k")
        with pytest.raises(ChannelClosedByBroker) as err:
            channel.exchange_delete(source, if_unused=True)
        assert err.value.reply_code == 406
        assert err.value.reply_text == (
            f"PRECONDITION_FAILED - exchange '{source}' in vhost '{VHOST}' in use"
        )
    finally:
        cleanup = connection.channel()
        cleanup.exchange_delete(source)
        cleanup.exchange_delete(destination)


def test_delete_if_unused_ignores_bindings_where_it_is_the_destination(
    connection, unique: str
) -> None:
    channel = connection.channel()
    source, destination = unique + "-src", unique + "-dst"
    channel.exchange_declare(source, exchange_type="direct")
    channel.exchange_declare(destination, exchange_type="direct")
    try:
        channel.exchange_bind(destination, source, routing_key="k")
        channel.exchange_delete(destination, if_unused=True)
        with pytest.raises(ChannelClosedByBroker) as err:
            channel.exchange_declare(destination, passive=True)
        assert (err.value.reply_code, err.value.reply_text) == (404, no_exchange(destination))
    finally:
        connection.channel().exchange_delete(source)


@pytest.mark.parametrize("body", [b"payload", b""])
def test_publish_to_missing_exchange(channel, unique: str, body: bytes) -> None:
    channel.basic_publish(unique, "k", body)
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.basic_qos(prefetch_count=0)  # any round trip surfaces the close
    assert (err.value.reply_code, err.value.reply_text) == (404, no_exchange(unique))


def test_publish_to_missing_exchange_in_confirm_mode(channel, unique: str) -> None:
    channel.confirm_delivery()
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.basic_publish(unique, "k", b"payload")
    assert (err.value.reply_code, err.value.reply_text) == (404, no_exchange(unique))


def test_publish_to_missing_reserved_exchange(channel, unique: str) -> None:
    name = "amq." + unique
    channel.basic_publish(name, "k", b"payload")
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.basic_qos(prefetch_count=0)
    assert (err.value.reply_code, err.value.reply_text) == (404, no_exchange(name))


def test_publish_to_internal_exchange(connection, unique: str) -> None:
    channel = connection.channel()
    channel.exchange_declare(unique, exchange_type="fanout", internal=True)
    try:
        channel.basic_publish(unique, "k", b"payload")
        with pytest.raises(ChannelClosedByBroker) as err:
            channel.basic_qos(prefetch_count=0)
        assert err.value.reply_code == 403
        assert err.value.reply_text == (
            f"ACCESS_REFUSED - cannot publish to internal exchange '{unique}' in vhost '{VHOST}'"
        )
    finally:
        connection.channel().exchange_delete(unique)


@pytest.mark.parametrize("missing", ["source", "destination", "both"])
def test_exchange_bind_with_missing_exchange(connection, unique: str, missing: str) -> None:
    channel = connection.channel()
    source, destination = unique + "-src", unique + "-dst"
    if missing == "destination":
        channel.exchange_declare(source, exchange_type="direct")
    if missing == "source":
        channel.exchange_declare(destination, exchange_type="direct")
    try:
        with pytest.raises(ChannelClosedByBroker) as err:
            channel.exchange_bind(destination, source, routing_key="k")
        # With both missing, RabbitMQ names the source.
        reported = destination if missing == "destination" else source
        assert (err.value.reply_code, err.value.reply_text) == (404, no_exchange(reported))
    finally:
        cleanup = connection.channel()
        cleanup.exchange_delete(source)
        cleanup.exchange_delete(destination)


def test_exchange_unbind_of_missing_exchanges_succeeds(channel, unique: str) -> None:
    channel.exchange_unbind(unique + "-dst", unique + "-src", routing_key="k")
    assert channel.is_open


@pytest.mark.parametrize("side", ["source", "destination"])
def test_exchange_bind_with_default_exchange_is_refused(connection, unique: str, side: str) -> None:
    channel = connection.channel()
    channel.exchange_declare(unique, exchange_type="direct")
    try:
        source, destination = ("", unique) if side == "source" else (unique, "")
        with pytest.raises(ChannelClosedByBroker) as err:
            channel.exchange_bind(destination, source, routing_key="k")
        assert (err.value.reply_code, err.value.reply_text) == (403, DEFAULT_EXCHANGE_REFUSED)
    finally:
        connection.channel().exchange_delete(unique)


def test_headers_binding_with_invalid_x_match(channel, unique: str) -> None:
    channel.queue_declare(unique, exclusive=True)
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_bind(unique, "amq.headers", arguments={"x-match": "some"})
    assert err.value.reply_code == 406
    assert err.value.reply_text == (
        'PRECONDITION_FAILED - Invalid x-match field value <<"some">>; '
        "expected all, any, all-with-x, or any-with-x"
    )
