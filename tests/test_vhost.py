"""Unit tests of `VHost` (amqpd.core.vhost) through its API: no socket, no event loop.

Declare, bind, delete and purge semantics as RabbitMQ has them (the same rules the
client tests check over the wire): equivalence on redeclare, reserved names, exclusive
ownership, if-unused/if-empty, cascades (deleting a queue or exchange drops its bindings and
auto-deletes exchanges left unused), and routing through exchange-to-exchange bindings.
Owners are plain objects standing for connections; queues dispatch inline when kicked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from pamqp import commands, header

from amqpd.core.errors import AMQPError, ChannelError, ConnectionError_
from amqpd.core.message import Message
from amqpd.core.queue import Entry, Queue, deliver_each
from amqpd.core.vhost import VHost
from amqpd.wire.content import peek_header

OWNER = object()
OTHER = object()


def message(routing_key: str, headers: dict[str, Any] | None = None) -> Message:
    payload = header.ContentHeader(0, 1, commands.Basic.Properties(headers=headers)).marshal()
    return Message("", routing_key, payload, peek_header(payload), b"x")


def error_of(action: Callable[[], object], kind: type[AMQPError] = ChannelError) -> AMQPError:
    with pytest.raises(kind) as caught:
        action()
    return caught.value


def routed(vhost: VHost, exchange: str, routing_key: str, **headers: Any) -> list[str]:
    queues = vhost.route(vhost.exchange(exchange), message(routing_key, headers or None))
    return sorted(queue.name for queue in queues)


class Sink:
    """A consumer that takes everything (for the in-use and auto-delete rules)."""

    tag = "sink"
    exclusive = False

    def __init__(self) -> None:
        self.deleted_from: list[str] = []

    def ready(self) -> bool:
        return True

    def deliver(self, queue: Queue, seq: int, message: Message, redelivered: bool) -> None:
        pass

    def deliver_run(self, queue: Queue, messages: deque[Entry]) -> None:
        deliver_each(self, queue, messages)

    def queue_deleted(self, queue: Queue) -> None:
        self.deleted_from.append(queue.name)


# -- exchanges ---------------------------------------------------------------------------


def test_a_new_vhost_has_the_default_exchanges() -> None:
    vhost = VHost("/")
    assert set(vhost.exchanges) == {
        "",
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
    }
    assert vhost.exchange("amq.match").type_name == "headers"
    assert all(exchange.durable for exchange in vhost.exchanges.values())


def test_declare_exchange_then_redeclare_equivalent_returns_it() -> None:
    vhost = VHost("/")
    first = vhost.declare_exchange("logs", "fanout", durable=True)
    assert vhost.declare_exchange("logs", "fanout", durable=True) is first
    assert vhost.declare_exchange("logs", "", passive=True) is first


def test_declare_exchange_inequivalent_is_refused() -> None:
    vhost = VHost("v")
    vhost.declare_exchange("logs", "fanout")
    error = error_of(lambda: vhost.declare_exchange("logs", "topic"))
    assert (error.code, error.text) == (
        406,
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'logs' in vhost 'v': "
        "received 'topic' but current is 'fanout'",
    )
    error = error_of(lambda: vhost.declare_exchange("logs", "fanout", durable=True))
    assert error.code == 406 and "inequivalent arg 'durable'" in error.text


def test_declare_exchange_rules() -> None:
    vhost = VHost("v")
    error = error_of(lambda: vhost.declare_exchange("amq.mine", "direct"))
    assert (error.code, error.text) == (
        403,
        "ACCESS_REFUSED - exchange name 'amq.mine' contains reserved prefix 'amq.*'",
    )
    error = error_of(lambda: vhost.declare_exchange("", "direct"))
    assert error.code == 403
    error = error_of(lambda: vhost.declare_exchange("nope", "direct", passive=True))
    assert (error.code, error.text) == (404, "NOT_FOUND - no exchange 'nope' in vhost 'v'")
    error = error_of(lambda: vhost.declare_exchange("x", "weird"), ConnectionError_)
    assert (error.code, error.text) == (503, "COMMAND_INVALID - unknown exchange type 'weird'")
    assert "x" not in vhost.exchanges


def test_delete_exchange_rules() -> None:
    vhost = VHost("v")
    vhost.delete_exchange("missing")  # deleting what is not there succeeds
    assert error_of(lambda: vhost.delete_exchange("amq.direct")).code == 403
    assert error_of(lambda: vhost.delete_exchange("")).code == 403
    vhost.declare_exchange("x", "direct")
    vhost.declare_queue("q", owner=OWNER)
    vhost.bind_queue("q", "x", "k", {}, OWNER)
    error = error_of(lambda: vhost.delete_exchange("x", if_unused=True))
    assert (error.code, error.text) == (
        406,
        "PRECONDITION_FAILED - exchange 'x' in vhost 'v' in use",
    )
    vhost.delete_exchange("x")
    assert "x" not in vhost.exchanges
    assert routed(vhost, "", "q") == ["q"]  # the queue itself stays, default binding too


# -- queues ------------------------------------------------------------------------------


def test_declare_queue_server_named_and_reserved_names() -> None:
    vhost = VHost("v")
    queue = vhost.declare_queue("", owner=OWNER)
    assert queue.name.startswith("amq.gen-") and vhost.queues[queue.name] is queue
    error = error_of(lambda: vhost.declare_queue("amq.q", owner=OWNER))
    assert (error.code, error.text) == (
        403,
        "ACCESS_REFUSED - queue name 'amq.q' contains reserved prefix 'amq.*'",
    )
    error = error_of(lambda: vhost.declare_queue("nope", owner=OWNER, passive=True))
    assert (error.code, error.text) == (404, "NOT_FOUND - no queue 'nope' in vhost 'v'")


def test_declare_queue_redeclare_must_be_equivalent() -> None:
    vhost = VHost("v")
    queue = vhost.declare_queue("q", owner=OWNER, durable=True)
    assert vhost.declare_queue("q", owner=OTHER, durable=True) is queue
    error = error_of(lambda: vhost.declare_queue("q", owner=OWNER))
    assert error.code == 406 and "inequivalent arg 'durable' for queue 'q'" in error.text


def test_exclusive_queue_is_locked_to_its_owner() -> None:
    vhost = VHost("v")
    queue = vhost.declare_queue("mine", owner=OWNER, exclusive=True)
    assert vhost.queue("mine", OWNER) is queue
    for action in (
        lambda: vhost.declare_queue("mine", owner=OTHER, exclusive=True),
        lambda: vhost.declare_queue("mine", owner=OTHER, passive=True),
        lambda: vhost.purge_queue("mine", OTHER),
        lambda: vhost.delete_queue("mine", owner=OTHER),
        lambda: vhost.bind_queue("mine", "amq.direct", "k", {}, OTHER),
    ):
        error = error_of(action)
        assert error.code == 405
        assert error.text.startswith(
            "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'mine' in vhost 'v'."
        )
    error = error_of(lambda: vhost.declare_queue("mine", owner=OWNER))  # exclusive differs
    assert error.code == 405
    vhost.owner_closed(OWNER)
    assert "mine" not in vhost.queues and queue.deleted


def test_delete_queue_rules_and_count() -> None:
    vhost = VHost("v")
    assert vhost.delete_queue("missing", owner=OWNER) == 0
    queue = vhost.declare_queue("q", owner=OWNER)
    vhost.publish(vhost.exchange(""), message("q"))
    vhost.publish(vhost.exchange(""), message("q"))
    error = error_of(lambda: vhost.delete_queue("q", owner=OWNER, if_empty=True))
    assert (error.code, error.text) == (
        406,
        "PRECONDITION_FAILED - queue 'q' in vhost 'v' not empty",
    )
    sink = Sink()
    queue.add_consumer(sink)
    error = error_of(lambda: vhost.delete_queue("q", owner=OWNER, if_unused=True))
    assert (error.code, error.text) == (406, "PRECONDITION_FAILED - queue 'q' in vhost 'v' in use")
    assert vhost.delete_queue("q", owner=OWNER) == 0  # the consumer took both messages
    assert sink.deleted_from == ["q"] and "q" not in vhost.queues


def test_purge_counts_and_empties() -> None:
    vhost = VHost("v")
    vhost.declare_queue("q", owner=OWNER)
    for _ in range(3):
        vhost.publish(vhost.exchange(""), message("q"))
    assert vhost.purge_queue("q", OWNER) == 3
    assert vhost.purge_queue("q", OWNER) == 0
    assert error_of(lambda: vhost.purge_queue("missing", OWNER)).code == 404


def test_auto_delete_queue_goes_with_its_last_consumer() -> None:
    vhost = VHost("v")
    queue = vhost.declare_queue("q", owner=OWNER, auto_delete=True)
    vhost.consumer_removed(queue)  # never had a consumer: stays
    assert "q" in vhost.queues
    sink = Sink()
    queue.add_consumer(sink)
    queue.remove_consumer(sink)
    vhost.consumer_removed(queue)
    assert "q" not in vhost.queues


# -- bindings and routing ----------------------------------------------------------------


def test_bind_rules() -> None:
    vhost = VHost("v")
    vhost.declare_queue("q", owner=OWNER)
    assert error_of(lambda: vhost.bind_queue("q", "", "q", {}, OWNER)).code == 403
    error = error_of(lambda: vhost.bind_queue("q", "nope", "k", {}, OWNER))
    assert (error.code, error.text) == (404, "NOT_FOUND - no exchange 'nope' in vhost 'v'")
    error = error_of(lambda: vhost.bind_queue("nope", "amq.direct", "k", {}, OWNER))
    assert (error.code, error.text) == (404, "NOT_FOUND - no queue 'nope' in vhost 'v'")
    error = error_of(lambda: vhost.bind_queue("q", "amq.headers", "", {"x-match": "most"}, OWNER))
    assert error.code == 406 and "x-match" in error.text
    vhost.unbind_queue("nope", "amq.direct", "k", {}, OWNER)  # unbinding the missing is fine


def test_routing_by_exchange_type() -> None:
    vhost = VHost("v")
    for name in ("a", "b", "c"):
        vhost.declare_queue(name, owner=OWNER)
    vhost.bind_queue("a", "amq.direct", "red", {}, OWNER)
    vhost.bind_queue("b", "amq.direct", "red", {}, OWNER)
    vhost.bind_queue("c", "amq.topic", "*.error.#", {}, OWNER)
    vhost.bind_queue("a", "amq.fanout", "", {}, OWNER)
    vhost.bind_queue("b", "amq.headers", "", {"x-match": "any", "k": "v", "n": 1}, OWNER)
    assert routed(vhost, "", "c") == ["c"]
    assert routed(vhost, "", "nope") == []
    assert routed(vhost, "amq.direct", "red") == ["a", "b"]
    assert routed(vhost, "amq.direct", "blue") == []
    assert routed(vhost, "amq.topic", "app.error") == ["c"]
    assert routed(vhost, "amq.topic", "app.error.disk.full") == ["c"]
    assert routed(vhost, "amq.topic", "error") == []
    assert routed(vhost, "amq.fanout", "anything") == ["a"]
    assert routed(vhost, "amq.headers", "", n=1) == ["b"]
    assert routed(vhost, "amq.headers", "", k="w") == []
    vhost.unbind_queue("b", "amq.direct", "red", {}, OWNER)
    assert routed(vhost, "amq.direct", "red") == ["a"]


def test_exchange_to_exchange_routing_reaches_each_queue_once() -> None:
    vhost = VHost("v")
    vhost.declare_exchange("front", "fanout")
    vhost.declare_exchange("left", "fanout")
    vhost.declare_exchange("right", "fanout")
    vhost.declare_queue("q", owner=OWNER)
    vhost.bind_exchange("left", "front", "", {})
    vhost.bind_exchange("right", "front", "", {})
    vhost.bind_exchange("front", "left", "", {})  # a loop back to the start
    vhost.bind_queue("q", "left", "", {}, OWNER)
    vhost.bind_queue("q", "right", "", {}, OWNER)
    queues, ticket = vhost.publish(vhost.exchange("front"), message("k"))
    assert [queue.name for queue in queues] == ["q"] and ticket == 0
    assert len(vhost.queues["q"]) == 1


def test_auto_delete_exchange_goes_with_its_last_binding() -> None:
    vhost = VHost("v")
    vhost.declare_exchange("auto", "direct", auto_delete=True)
    vhost.declare_queue("q1", owner=OWNER)
    vhost.declare_queue("q2", owner=OWNER)
    vhost.bind_queue("q1", "auto", "k", {}, OWNER)
    vhost.bind_queue("q2", "auto", "k", {}, OWNER)
    vhost.unbind_queue("q1", "auto", "k", {}, OWNER)
    assert "auto" in vhost.exchanges
    vhost.delete_queue("q2", owner=OWNER)  # its bindings go with it, and so the exchange
    assert "auto" not in vhost.exchanges


def test_deleting_a_queue_removes_it_from_routing() -> None:
    vhost = VHost("v")
    vhost.declare_queue("q", owner=OWNER)
    vhost.bind_queue("q", "amq.fanout", "", {}, OWNER)
    vhost.delete_queue("q", owner=OWNER)
    assert routed(vhost, "amq.fanout", "") == []
    assert routed(vhost, "", "q") == []
    assert not vhost.exchange("amq.fanout").has_bindings()


def test_deleting_an_exchange_removes_its_bindings_both_ways() -> None:
    vhost = VHost("v")
    vhost.declare_exchange("mid", "fanout")
    vhost.declare_queue("q", owner=OWNER)
    vhost.bind_exchange("mid", "amq.fanout", "", {})
    vhost.bind_queue("q", "mid", "", {}, OWNER)
    assert routed(vhost, "amq.fanout", "") == ["q"]
    vhost.delete_exchange("mid")
    assert routed(vhost, "amq.fanout", "") == []
    assert not vhost.exchange("amq.fanout").has_bindings()
