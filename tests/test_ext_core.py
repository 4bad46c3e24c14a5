"""Unit tests of the core's extension parts, without sockets or an event loop: TTL and
expiry timers on a `ManualClock`, dead-letter headers, priority levels, raw tables."""

from __future__ import annotations

import struct

import pytest
from pamqp import commands, decode, encode
from pamqp.header import ContentHeader

from amqpd.core.clock import ManualClock
from amqpd.core.deadletter import dead_lettered, deaths_of, is_cycle
from amqpd.core.durability import Confirms
from amqpd.core.message import Message
from amqpd.core.priority import PriorityMessages
from amqpd.core.queue import Queue, deliver_each
from amqpd.core.table import (
    join_table,
    replace_headers,
    replace_reply_to,
    reply_to_of,
    split_table,
)
from amqpd.core.vhost import VHost
from amqpd.wire.content import peek_header


def _header(
    *, priority: int | None = None, expiration: str | None = None, headers: dict | None = None
) -> bytes:
    flags = 0
    props = b""
    if headers is not None:
        flags |= 1 << 13
        props += encode.field_table(headers)
    if priority is not None:
        flags |= 1 << 11
        props += bytes([priority])
    if expiration is not None:
        flags |= 1 << 8
        props += bytes([len(expiration)]) + expiration.encode()
    return struct.pack(">HHQH", 60, 0, 1, flags) + props


def _message(body: bytes = b"x", routing_key: str = "rk", **props) -> Message:  # type: ignore[no-untyped-def]
    header = _header(**props)
    return Message("", routing_key, header, peek_header(header), body)


class Taker:
    """A consumer that is always ready and records what it got."""

    tag = "c"
    exclusive = False

    def __init__(self) -> None:
        self.got: list[bytes] = []

    def ready(self) -> bool:
        return True

    def deliver(self, queue, seq, message, redelivered) -> None:  # type: ignore[no-untyped-def]
        self.got.append(message.body)

    def deliver_run(self, queue, messages) -> None:  # type: ignore[no-untyped-def]
        deliver_each(self, queue, messages)

    def queue_deleted(self, queue) -> None:  # type: ignore[no-untyped-def]
        pass


def test_queue_ttl_drops_on_the_timer_and_dead_letters():
    clock = ManualClock(start=1_000_000)
    vhost = VHost("/", clock=clock, parse_header=peek_header)
    dead = vhost.declare_queue("dead", owner=None)
    queue = vhost.declare_queue(
        "q",
        owner=None,
        arguments={"x-message-ttl": 100, "x-dead-letter-exchange": "",
                   "x-dead-letter-routing-key": "dead"},
    )  # fmt: skip
    vhost.publish(vhost.exchanges[""], _message(b"a", "q"))
    clock.advance(50)
    vhost.publish(vhost.exchanges[""], _message(b"b", "q"))
    assert len(queue.messages) == 2
    clock.advance(50)  # a's deadline
    assert [entry[1].body for entry in queue.messages] == [b"b"]
    assert [entry[1].body for entry in dead.messages] == [b"a"]
    clock.advance(50)
    assert len(queue.messages) == 0 and len(dead.messages) == 2
    assert clock.pending() == 0


def test_message_behind_a_longer_lived_head_waits_for_the_head():
    clock = ManualClock(start=0)
    queue = Queue("q", "/", clock=clock)
    queue.enqueue(_message(b"head", expiration="1000"))
    queue.enqueue(_message(b"behind", expiration="10"))
    clock.advance(500)
    assert len(queue.messages) == 2
    assert queue.take()[1].body == b"head"  # type: ignore[index]
    assert queue.take() is None


def test_ttl_zero_goes_to_a_ready_consumer_or_nowhere():
    clock = ManualClock(start=0)
    queue = Queue("q", "/", clock=clock, arguments={"x-message-ttl": 0})
    queue.enqueue(_message(b"dropped"))
    assert len(queue.messages) == 0
    taker = Taker()
    queue.add_consumer(taker)
    queue.enqueue(_message(b"delivered"))
    assert taker.got == [b"delivered"]


def test_priority_levels_and_requeue():
    levels = PriorityMessages(3)
    for seq, priority in enumerate([None, 2, 9, 2, 0]):
        levels.append((seq, _message(b"%d" % seq, priority=priority), False))
    order = [levels.popleft() for _ in range(5)]
    assert [entry[0] for entry in order] == [2, 1, 3, 0, 4]
    levels.requeue([order[2], order[0]])
    assert len(levels) == 2
    assert [levels.popleft()[0] for _ in range(2)] == [2, 3]


def test_single_active_consumer_and_consumer_priorities():
    queue = Queue("q", "/", arguments={"x-single-active-consumer": True})
    first, second = Taker(), Taker()
    queue.add_consumer(first)
    queue.add_consumer(second)
    for body in (b"1", b"2"):
        queue.enqueue(_message(body))
    assert (first.got, second.got) == ([b"1", b"2"], [])
    queue.remove_consumer(first)
    queue.enqueue(_message(b"3"))
    assert second.got == [b"3"]

    plain = Queue("p", "/")
    low, high = Taker(), Taker()
    plain.add_consumer(low, priority=1)
    plain.add_consumer(high, priority=5)
    plain.enqueue(_message(b"x"))
    assert (low.got, high.got) == ([], [b"x"])


def test_x_death_is_merged_per_queue_and_reason_and_cycles_are_detected():
    message = _message(b"m", "rk", expiration="5", headers={"CC": ["c1"], "z": 1})
    once = dead_lettered(message, "q1", "expired", "dlx", None, 3_000, peek_header)
    headers = decode.field_table(once.info.headers_raw)[1]
    assert list(headers) == ["CC", "x-death", "x-first-death-exchange",
                             "x-first-death-queue", "x-first-death-reason", "z"]  # fmt: skip
    assert headers["x-death"][0]["routing-keys"] == ["rk", "c1"]
    assert once.info.expiration is None and once.routing_key == "rk"
    twice = dead_lettered(once, "q2", "rejected", "dlx", "k2", 4_000, peek_header)
    thrice = dead_lettered(twice, "q1", "expired", "dlx", None, 5_000, peek_header)
    assert deaths_of(thrice) == [(b"q1", b"expired"), (b"q2", b"rejected")]
    counts = [death["count"] for death in decode.field_table(thrice.info.headers_raw)[1]["x-death"]]
    assert counts == [2, 1]
    assert is_cycle("q1", deaths_of(once))
    assert not is_cycle("q2", deaths_of(once))
    assert not is_cycle("q1", deaths_of(twice))  # a rejection on the way: followed


def test_tables_and_headers_are_edited_byte_for_byte():
    table = encode.field_table({"a": 1, "b": [1, "x"], "c": {"d": "e"}, "f": 1.5})
    assert join_table(split_table(table)) == table
    header = _header(priority=4, expiration="10", headers={"k": "v"})
    edited = replace_headers(header, None, drop_expiration=True)
    info = peek_header(edited)
    assert (info.priority, info.expiration, info.headers_raw) == (4, None, None)


@pytest.mark.parametrize("text", ["abc", "-1", "1.0"])
def test_a_bad_expiration_is_refused_when_the_message_is_built(text):
    with pytest.raises(Exception) as err:
        _message(expiration=text)
    assert "invalid expiration" in str(err.value)


def test_reply_to_property_is_found_and_replaced():
    properties = commands.Basic.Properties(
        content_type="text/plain", headers={"a": 1}, reply_to="amq.rabbitmq.reply-to",
        expiration="100", message_id="m",
    )  # fmt: skip
    payload = ContentHeader(0, 5, properties).marshal()
    assert reply_to_of(payload) == b"amq.rabbitmq.reply-to"
    replaced = replace_reply_to(payload, "amq.rabbitmq.reply-to.abc")
    expected = commands.Basic.Properties(
        content_type="text/plain", headers={"a": 1}, reply_to="amq.rabbitmq.reply-to.abc",
        expiration="100", message_id="m",
    )  # fmt: skip
    assert replaced == ContentHeader(0, 5, expected).marshal()
    assert reply_to_of(_header(priority=1)) is None


def test_confirms_send_a_nack_for_each_refused_publish_in_order():
    confirms = Confirms()
    for refused in (False, False, True, False, True, True, False):
        confirms.insert(0, 0, refused)
    assert confirms.take() == [
        (2, True, True),
        (3, False, False),
        (4, False, True),
        (5, False, False),
        (6, False, False),
        (7, False, True),
    ]
    assert confirms.take() == []
    confirms.insert(0, 0)
    confirms.insert(0, 0)
    assert confirms.take() == [(9, True, True)]
