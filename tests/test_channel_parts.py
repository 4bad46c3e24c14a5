"""Unit tests of a channel's parts, without a socket or an event loop: the content
assembler, the delivery tracker, the transaction buffer, publisher confirms and the
per-vhost durability ticket."""

from __future__ import annotations

from typing import Any

import pytest
from pamqp import commands, frame, header

from amqpd.assembler import PUBLISH_CACHE, ContentAssembler
from amqpd.core.durability import READY, WAIT, WAIT_FIRST, Confirms, Durability
from amqpd.core.errors import PRECONDITION_FAILED, UNEXPECTED_FRAME, ChannelError, ConnectionError_
from amqpd.core.message import Message
from amqpd.core.queue import Queue
from amqpd.deliveries import Deliveries
from amqpd.transactions import TxBuffer
from amqpd.wire.content import peek_header

# -- content assembler -------------------------------------------------------------------


def header_payload(size: int, class_id: int = 60, **properties: Any) -> bytes:
    content = header.ContentHeader(0, size, commands.Basic.Properties(**properties))
    data = frame.marshal(content, 1)
    payload = data[7:-1]
    if class_id != 60:
        payload = class_id.to_bytes(2, "big") + payload[2:]
    return payload


class Collected:
    def __init__(self) -> None:
        self.messages: list[tuple[Message, bool]] = []

    def __call__(self, message: Message, mandatory: bool) -> None:
        self.messages.append((message, mandatory))


def assembler(max_size: int = 1000) -> tuple[ContentAssembler, Collected]:
    collected = Collected()
    return ContentAssembler("guest", max_size, collected), collected


def test_assembles_a_message_from_several_body_frames() -> None:
    content, collected = assembler()
    content.start("ex", "rk", True)
    assert content.expecting
    content.header(header_payload(10, delivery_mode=2))
    content.body(b"hello")
    assert collected.messages == []
    content.body(b"world")
    [(message, mandatory)] = collected.messages
    assert (message.exchange, message.routing_key, message.body) == ("ex", "rk", b"helloworld")
    assert message.delivery_mode == 2 and mandatory
    assert message.exchange_rk == b"\x02ex\x02rk"
    assert not content.expecting


def test_an_empty_body_completes_at_the_header() -> None:
    content, collected = assembler()
    content.start("", "q", False)
    content.header(header_payload(0))
    [(message, mandatory)] = collected.messages
    assert message.body == b"" and not mandatory


def test_the_same_header_twice_is_parsed_once_and_still_correct() -> None:
    content, collected = assembler()
    payload = header_payload(1, priority=3)
    for body in (b"a", b"b"):
        content.start("", "q", False)
        content.header(payload)
        content.body(body)
    assert [m.body for m, _ in collected.messages] == [b"a", b"b"]
    assert collected.messages[1][0].info == peek_header(payload)


def publish_payload(exchange: str, routing_key: str, mandatory: bool, immediate=False) -> bytes:
    method = commands.Basic.Publish(
        exchange=exchange, routing_key=routing_key, mandatory=mandatory, immediate=immediate
    )
    return frame.marshal(method, 1)[7:-1]


@pytest.mark.parametrize("mandatory", [False, True])
def test_a_whole_publish_is_the_message_the_frames_make(mandatory: bool) -> None:
    fast, _ = assembler()
    slow, collected = assembler()
    head = header_payload(5, delivery_mode=2, expiration="60000")
    method = publish_payload("ex", "rk", mandatory)
    for body in (b"hello", b"world"):  # the second one from the decoded publish kept
        message = fast.whole((method, head, body))
        assert message is not None and fast.mandatory == mandatory
        slow.start("ex", "rk", mandatory)
        slow.header(head)
        slow.body(body)
        expected, expected_mandatory = collected.messages[-1]
        assert expected_mandatory == mandatory
        got = (message.exchange, message.routing_key, message.exchange_rk, message.header)
        assert got == ("ex", "rk", expected.exchange_rk, expected.header)
        assert (message.body, message.info, message.ttl) == (body, expected.info, expected.ttl)
    first, second = fast.whole((method, head, b"a")), fast.whole((method, head, b"b"))
    assert first is not None and second is not None
    assert first.routing_key is second.routing_key  # messages share the decoded names


@pytest.mark.parametrize(
    "method,head",
    [
        (publish_payload("ex", "rk", False, immediate=True), header_payload(1)),
        (publish_payload("ex", "rk", False) + b"x", header_payload(1)),  # trailing byte
        (publish_payload("ex", "rk", False)[:-3], header_payload(1)),  # cut short
        (publish_payload("ex", "rk", False), header_payload(1, class_id=50)),
        (publish_payload("ex", "rk", False), header_payload(1, user_id="mallory")),
        (publish_payload("ex", "rk", False), header_payload(2000)),  # above max_size
    ],
    ids=["immediate", "trailing", "short", "class", "user_id", "too-large"],
)
def test_a_whole_publish_leaves_errors_to_the_frames(method: bytes, head: bytes) -> None:
    content, collected = assembler()
    body = b"x" * peek_header(head).body_size if len(head) >= 14 else b"x"
    assert content.whole((method, head, body)) is None
    assert not content.expecting and collected.messages == []


def test_the_kept_publishes_are_bounded() -> None:
    content, _ = assembler()
    head = header_payload(1)
    for index in range(PUBLISH_CACHE * 3):
        assert content.whole((publish_payload("", f"q{index}", False), head, b"x")) is not None
        assert len(content._publishes) <= PUBLISH_CACHE


def test_content_frames_without_a_publish_are_unexpected() -> None:
    content, _ = assembler()
    for feed in (content.header, content.body):
        with pytest.raises(ConnectionError_) as error:
            feed(header_payload(1))
        assert error.value.code == UNEXPECTED_FRAME
        assert error.value.text.endswith("expected method frame, got non method frame instead")


def test_body_before_header_and_a_second_header_are_unexpected() -> None:
    content, _ = assembler()
    content.start("", "q", False)
    with pytest.raises(ConnectionError_) as error:
        content.body(b"x")
    assert "expected content header for class 60" in error.value.text
    content.header(header_payload(5))
    with pytest.raises(ConnectionError_) as error:
        content.header(header_payload(5))
    assert error.value.text.endswith("expected content body, got non content body frame instead")


def test_a_header_of_another_class_is_unexpected() -> None:
    content, _ = assembler()
    content.start("", "q", False)
    with pytest.raises(ConnectionError_) as error:
        content.header(header_payload(1, class_id=50))
    assert error.value.text.endswith(
        "expected content header for class 60, got one for class 50 instead"
    )


def test_a_body_larger_than_the_maximum_is_refused_and_dropped() -> None:
    content, collected = assembler(max_size=4)
    content.start("", "q", False)
    with pytest.raises(ChannelError) as error:
        content.header(header_payload(5))
    assert error.value.code == PRECONDITION_FAILED
    assert error.value.text.endswith("message size 5 is larger than configured max size 4")
    assert not content.expecting and collected.messages == []
    content.start("", "q", False)
    content.header(header_payload(4))
    content.body(b"1234")
    assert len(collected.messages) == 1


def test_a_foreign_user_id_is_refused() -> None:
    content, _ = assembler()
    content.start("", "q", False)
    with pytest.raises(ChannelError) as error:
        content.header(header_payload(1, user_id="mallory"))
    assert error.value.text.endswith(
        "user_id property set to 'mallory' but authenticated user was 'guest'"
    )
    assert not content.expecting


def test_a_body_longer_than_announced_is_a_frame_error_before_it_is_kept() -> None:
    content, collected = assembler()
    content.start("", "q", False)
    content.header(header_payload(4))
    content.body(b"ab")
    with pytest.raises(ConnectionError_) as error:
        content.body(b"cde")
    assert error.value.code == 501 and error.value.index == (60 << 16 | 40)
    assert error.value.text == (
        "FRAME_ERROR - content body exceeds the 4 bytes announced in its header (5 bytes received)"
    )
    assert collected.messages == [] and content._body == [b"ab"]


# -- delivery tracker --------------------------------------------------------------------


class FakeConsumer:
    """A consumer as the tracker sees it (the real one needs a channel)."""

    def __init__(self, queue: Queue, no_ack: bool = False) -> None:
        self.no_ack = no_ack
        self.unacked = 0
        self.attached = True
        self.queue = queue


def message(body: bytes = b"x") -> Message:
    payload = header_payload(len(body))
    return Message("", "q", payload, peek_header(payload), body)


def queue_with_kicks(name: str = "q") -> tuple[Queue, list[str]]:
    kicks: list[str] = []

    def schedule(queue: Queue) -> None:
        kicks.append(queue.name)
        queue.dispatch_pending = False

    return Queue(name, "/", schedule=schedule), kicks


def deliver_all(deliveries: Deliveries, consumer: FakeConsumer, count: int) -> list[Message]:
    queue = consumer.queue
    for _ in range(count):
        queue.enqueue(message())
    delivered = []
    while (entry := queue.take()) is not None:
        seq, msg, redelivered = entry
        deliveries.delivered(consumer, queue, seq, msg, redelivered)
        delivered.append(msg)
    return delivered


def test_tags_count_from_one_across_deliveries_and_gets() -> None:
    deliveries = Deliveries()
    queue, _ = queue_with_kicks()
    consumer = FakeConsumer(queue)
    queue.enqueue(message())
    queue.enqueue(message())
    seq, msg, redelivered = queue.take()  # type: ignore[misc]
    assert deliveries.delivered(consumer, queue, seq, msg, redelivered) == 1
    seq, msg, redelivered = queue.take()  # type: ignore[misc]
    assert deliveries.got(queue, seq, msg, redelivered, no_ack=False) == 2
    assert list(deliveries.unacked) == [1, 2] and consumer.unacked == 1


def test_no_ack_deliveries_are_not_tracked() -> None:
    deliveries = Deliveries()
    queue, _ = queue_with_kicks()
    consumer = FakeConsumer(queue, no_ack=True)
    deliver_all(deliveries, consumer, 3)
    assert deliveries.unacked == {} and deliveries.next_tag == 4 and consumer.unacked == 0


def test_ack_single_and_multiple() -> None:
    deliveries = Deliveries()
    queue, kicks = queue_with_kicks()
    consumer = FakeConsumer(queue)
    deliver_all(deliveries, consumer, 5)
    assert deliveries.settle(2, False, False) is False
    assert list(deliveries.unacked) == [1, 3, 4, 5] and consumer.unacked == 4
    assert kicks == ["q"]  # the consumer's window has room: its queue is kicked
    deliveries.settle(4, True, False)
    assert list(deliveries.unacked) == [5] and consumer.unacked == 1
    deliveries.settle(5, True, False)  # everything outstanding
    assert deliveries.unacked == {} and consumer.unacked == 0


def test_multiple_with_tag_zero_settles_everything() -> None:
    deliveries = Deliveries()
    queue, _ = queue_with_kicks()
    consumer = FakeConsumer(queue)
    deliver_all(deliveries, consumer, 3)
    deliveries.settle(0, True, False)
    assert deliveries.unacked == {} and consumer.unacked == 0


def test_unknown_tags_are_precondition_failed() -> None:
    deliveries = Deliveries()
    queue, _ = queue_with_kicks()
    deliver_all(deliveries, FakeConsumer(queue), 2)
    deliveries.settle(1, False, False)
    for tag, multiple in ((1, False), (1, True), (9, False), (9, True)):
        with pytest.raises(ChannelError) as error:
            deliveries.settle(tag, multiple, False)
        assert error.value.code == PRECONDITION_FAILED
        assert error.value.text.endswith(f"unknown delivery tag {tag}")
        with pytest.raises(ChannelError):
            deliveries.check_known(tag, multiple)
    deliveries.check_known(0, True)
    deliveries.check_known(2, False)
    assert list(deliveries.unacked) == [2]


def test_nack_with_requeue_puts_messages_back_in_order_as_redelivered() -> None:
    deliveries = Deliveries()
    queue, _ = queue_with_kicks()
    consumer = FakeConsumer(queue)
    sent = deliver_all(deliveries, consumer, 3)
    queue.enqueue(message(b"newer"))
    deliveries.settle(2, True, True)  # nack 1 and 2
    deliveries.settle(3, False, True)  # reject 3
    assert [(m, r) for _, m, r in queue.messages][:3] == [(m, True) for m in sent]
    assert queue.messages[3][1].body == b"newer" and not queue.messages[3][2]
    assert deliveries.unacked == {} and consumer.unacked == 0


def test_a_detached_consumer_does_not_kick_its_queue() -> None:
    deliveries = Deliveries()
    queue, kicks = queue_with_kicks()
    consumer = FakeConsumer(queue)
    deliver_all(deliveries, consumer, 1)
    consumer.attached = False
    deliveries.settle(1, False, False)
    assert kicks == []


def test_global_prefetch_asks_the_channel_to_kick_every_consumer() -> None:
    deliveries = Deliveries()
    deliveries.qos(10, global_=True)
    deliveries.qos(3, global_=False)
    assert (deliveries.global_prefetch, deliveries.prefetch) == (10, 3)
    queue, kicks = queue_with_kicks()
    deliver_all(deliveries, FakeConsumer(queue), 1)
    assert deliveries.settle(1, False, False) is True
    assert kicks == []


def test_recover_and_release_requeue_everything() -> None:
    deliveries = Deliveries()
    queue, _ = queue_with_kicks()
    consumer = FakeConsumer(queue)
    deliver_all(deliveries, consumer, 2)
    assert deliveries.recover() is False
    assert len(queue.messages) == 2 and consumer.unacked == 0 and deliveries.unacked == {}
    deliver_all(deliveries, consumer, 0)
    assert list(deliveries.unacked) == [3, 4]
    deliveries.release()
    assert deliveries.unacked == {} and [r for _, _, r in queue.messages] == [True, True]


# -- transaction buffer ------------------------------------------------------------------


def test_tx_buffer_runs_actions_in_order_on_commit_and_drops_them_on_rollback() -> None:
    tx = TxBuffer()
    with pytest.raises(ChannelError) as error:
        tx.commit()
    assert error.value.text.endswith("channel is not transactional")
    with pytest.raises(ChannelError):
        tx.rollback()
    tx.select()
    done: list[int] = []
    tx.add(lambda: done.append(1))
    tx.add(lambda: done.append(2))
    assert done == [] and len(tx) == 2
    tx.commit()
    assert done == [1, 2] and len(tx) == 0
    tx.add(lambda: done.append(3))
    tx.rollback()
    tx.commit()
    assert done == [1, 2]
    tx.add(lambda: done.append(4))
    tx.clear()
    assert len(tx) == 0 and tx.active


# -- confirms and durability -------------------------------------------------------------


def test_confirms_of_unstored_publishes_are_ready_at_once_and_batched() -> None:
    confirms = Confirms()
    assert confirms.take_ack() is None
    assert confirms.insert(0, 0) == READY
    assert confirms.take_ack() == (1, False)
    assert confirms.take_ack() is None
    for _ in range(3):
        assert confirms.insert(0, 0) == READY
    assert confirms.take_ack() == (4, True)


def test_confirms_wait_for_their_ticket_in_publish_order() -> None:
    confirms = Confirms()
    assert confirms.insert(5, 2) == WAIT_FIRST
    assert confirms.insert(0, 2) == WAIT  # unstored, but behind a waiting publish
    assert confirms.insert(7, 2) == WAIT
    assert confirms.pending and confirms.take_ack() is None
    assert confirms.advance(4) is False
    assert confirms.advance(5) is True
    assert confirms.take_ack() == (2, True)
    assert confirms.pending
    assert confirms.advance(9) is True and not confirms.pending
    assert confirms.take_ack() == (3, False)
    assert confirms.insert(8, 9) == READY
    assert confirms.take_ack() == (4, False)


class Waiter:
    def __init__(self, durability: Durability, needs: int) -> None:
        self.durability = durability
        self.needs = needs
        self.calls = 0

    def durable_advanced(self) -> bool:
        self.calls += 1
        return self.durability.ticket < self.needs


def test_durability_advances_monotonically_and_drops_satisfied_waiters() -> None:
    durability = Durability()
    early, late = Waiter(durability, 3), Waiter(durability, 6)
    durability.wait(early)
    durability.wait(late)
    durability.wait(early)  # waiting twice is waiting once
    assert durability.waiting == 2
    durability.advance(3)
    assert durability.ticket == 3 and (early.calls, late.calls) == (1, 1)
    assert durability.waiting == 1
    durability.advance(2)  # reports may arrive out of order: the ticket never goes back
    assert durability.ticket == 3 and late.calls == 2
    durability.advance(6)
    assert durability.ticket == 6 and durability.waiting == 0 and early.calls == 1
