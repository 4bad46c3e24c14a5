"""Publisher confirms (confirm.select) and transactions (tx.select/commit/rollback).

Confirms: every publish is acked once, tags count from 1, multiple=True acks cover
ranges, an unroutable mandatory message is returned before it is acked. Transactions:
publishes and acks take effect only at commit; rollback discards publishes and leaves
acked-in-transaction messages unacked.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import ChannelClosedByBroker, UnroutableError

from tests.conftest import BrokerAddress

TIMEOUT = 15.0  # a failure path only: generous for a loaded machine


def wait_ready(ch: BlockingChannel, queue: str, n: int) -> None:
    """Poll until the queue reports n ready messages (requeues after a close are async)."""
    deadline = time.monotonic() + TIMEOUT
    while ch.queue_declare(queue, passive=True).method.message_count != n:
        assert time.monotonic() < deadline, f"queue {queue} never had {n} ready"
        time.sleep(0.01)


def get_all(ch: BlockingChannel, queue: str) -> list[tuple[bytes, bool]]:
    """Drain a queue with basic.get (auto-ack): [(body, redelivered)] in order."""
    got = []
    while (r := ch.basic_get(queue, auto_ack=True))[0] is not None:
        got.append((r[2], r[0].redelivered))
    return got


# --- confirms with the blocking API ------------------------------------------------------


def test_confirmed_publishes_are_enqueued(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    channel.confirm_delivery()
    for i in range(10):
        channel.basic_publish("", q, f"m{i}".encode())  # raises on nack
    # A confirm means the queue has the message: no need to wait.
    assert channel.queue_declare(q, passive=True).method.message_count == 10
    assert [b for b, _r in get_all(channel, q)] == [f"m{i}".encode() for i in range(10)]
    channel.queue_delete(q)


def test_confirmed_persistent_publish_to_durable_queue(connection, channel, unique):
    q = channel.queue_declare(unique, durable=True).method.queue
    channel.confirm_delivery()
    channel.basic_publish("", q, b"on disk", pika.BasicProperties(delivery_mode=2))
    assert channel.queue_declare(q, passive=True).method.message_count == 1
    channel.queue_delete(q)


def test_confirm_acks_unroutable_without_mandatory(connection, channel, unique):
    ex = f"{unique}-x"
    channel.exchange_declare(ex, "direct")
    channel.confirm_delivery()
    channel.basic_publish(ex, "nowhere", b"dropped")  # no exception: acked, not nacked
    channel.exchange_delete(ex)


def test_confirm_mandatory_unroutable_raises_for_blocking_client(connection, channel, unique):
    channel.confirm_delivery()
    with pytest.raises(UnroutableError) as info:
        channel.basic_publish("", f"{unique}-nowhere", b"back to you", mandatory=True)
    (returned,) = info.value.messages
    assert returned.method.reply_code == 312
    assert returned.method.reply_text == "NO_ROUTE"
    assert returned.body == b"back to you"
    assert channel.is_open


@pytest.mark.parametrize(
    ("first", "second", "text"),
    [
        ("tx", "confirm", "PRECONDITION_FAILED - cannot switch from tx to confirm mode"),
        ("confirm", "tx", "PRECONDITION_FAILED - cannot switch from confirm to tx mode"),
    ],
)
def test_confirm_and_tx_are_exclusive(connection, channel, first, second, text):
    modes: dict[str, Callable[[], object]] = {
        "tx": channel.tx_select, "confirm": channel.confirm_delivery,
    }
    modes[first]()
    with pytest.raises(ChannelClosedByBroker) as info:
        modes[second]()
    assert (info.value.reply_code, info.value.reply_text) == (406, text)


# --- confirms seen frame by frame (pika SelectConnection) --------------------------------


class ConfirmRecorder:
    """Publish a burst under confirm.select and record every ack/nack/return in order."""

    def __init__(self, broker: BrokerAddress, queue: str, count: int,
                 publishes: list[tuple[str, str, bool]] | None = None) -> None:
        self.queue = queue
        self.count = count
        # (exchange, routing key, mandatory) per publish; default: all to the queue.
        self.publishes = publishes or [("", queue, False)] * count
        self.events: list[tuple[str, int, bool]] = []
        self.acked: set[int] = set()
        self.timed_out = False
        self.conn = pika.SelectConnection(
            broker.params(), on_open_callback=self._on_open,
            on_open_error_callback=lambda *_: self._stop(),
        )

    def run(self) -> ConfirmRecorder:
        self.conn.ioloop.call_later(TIMEOUT, self._timeout)
        self.conn.ioloop.start()
        return self

    def _timeout(self) -> None:
        self.timed_out = True
        self._stop()

    def _stop(self) -> None:
        if self.conn.is_open:
            self.conn.close()
        self.conn.ioloop.stop()

    def _on_open(self, conn: pika.SelectConnection) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, ch: pika.channel.Channel) -> None:
        self.ch = ch
        ch.add_on_return_callback(self._on_return)
        ch.queue_declare(self.queue, callback=lambda _f: ch.confirm_delivery(
            self._on_confirm, callback=self._on_select_ok))

    def _on_select_ok(self, _frame: pika.frame.Method) -> None:
        for i, (exchange, key, mandatory) in enumerate(self.publishes):
            self.ch.basic_publish(exchange, key, f"c{i}".encode(), mandatory=mandatory)

    def _on_return(self, _ch, method, _props, body: bytes) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("return", int(body[1:]) + 1, False))

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        kind = "ack" if isinstance(method, pika.spec.Basic.Ack) else "nack"
        self.events.append((kind, method.delivery_tag, method.multiple))
        if method.multiple:
            self.acked.update(t for t in range(1, method.delivery_tag + 1))
        else:
            self.acked.add(method.delivery_tag)
        if len(self.acked) == self.count:
            self.ch.queue_delete(self.queue, callback=lambda _f: self._stop())


def test_confirm_tags_cover_every_publish_once(broker, unique):
    rec = ConfirmRecorder(broker, unique, 500).run()
    assert not rec.timed_out, f"only {len(rec.acked)} of 500 confirmed"
    acks = [(tag, multiple) for kind, tag, multiple in rec.events if kind == "ack"]
    assert len(acks) == len(rec.events), "no nacks expected"
    # No tag is confirmed twice; a multiple ack confirms every unconfirmed tag up to its own.
    confirmed: set[int] = set()
    for tag, multiple in acks:
        assert 1 <= tag <= 500 and tag not in confirmed
        confirmed.update(range(1, tag + 1) if multiple else [tag])
    assert confirmed == set(range(1, 501))


def test_confirm_mandatory_unroutable_returns_before_ack(broker, unique):
    routed = ("", unique, True)
    unroutable = ("", f"{unique}-nowhere", True)
    rec = ConfirmRecorder(broker, unique, 3, [routed, unroutable, routed]).run()
    assert not rec.timed_out
    returns = [e for e in rec.events if e[0] == "return"]
    assert returns == [("return", 2, False)]
    first_ack_covering_2 = next(
        i for i, (kind, tag, multiple) in enumerate(rec.events)
        if kind == "ack" and (tag == 2 or (multiple and tag >= 2))
    )
    assert rec.events.index(returns[0]) < first_ack_covering_2
    assert all(kind != "nack" for kind, _t, _m in rec.events)


# --- transactions ------------------------------------------------------------------------


def test_tx_publishes_appear_only_on_commit(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    observer = connection.channel()
    assert channel.tx_select().method.NAME == "Tx.SelectOk"
    for i in range(3):
        channel.basic_publish("", q, f"rolled back {i}".encode())
    assert observer.basic_get(q)[0] is None
    channel.tx_rollback()
    assert observer.basic_get(q)[0] is None

    channel.basic_publish("", q, b"one")
    channel.basic_publish("", q, b"two")
    assert observer.basic_get(q)[0] is None
    channel.tx_commit()
    assert get_all(observer, q) == [(b"one", False), (b"two", False)]

    # The channel stays transactional: the next batch also waits for commit.
    channel.basic_publish("", q, b"three")
    assert observer.basic_get(q)[0] is None
    channel.tx_commit()
    assert get_all(observer, q) == [(b"three", False)]
    observer.queue_delete(q)


def test_tx_rollback_leaves_acked_messages_unacked(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    channel.confirm_delivery()
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", q, body)

    tx_ch = connection.channel()
    tx_ch.tx_select()
    tags = [tx_ch.basic_get(q)[0].delivery_tag for _ in range(3)]
    tx_ch.basic_ack(tags[0])
    tx_ch.basic_ack(tags[2])
    tx_ch.tx_rollback()
    tx_ch.close()  # nothing was really acked: all three come back
    wait_ready(channel, q, 3)
    assert get_all(channel, q) == [(b"a", True), (b"b", True), (b"c", True)]
    channel.queue_delete(q)


def test_tx_commit_makes_acks_stick_and_acks_can_be_retried(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    channel.confirm_delivery()
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", q, body)

    tx_ch = connection.channel()
    tx_ch.tx_select()
    tags = [tx_ch.basic_get(q)[0].delivery_tag for _ in range(3)]
    tx_ch.basic_ack(tags[0])
    tx_ch.tx_rollback()
    tx_ch.basic_ack(tags[0])  # the rolled-back ack may be sent again
    tx_ch.basic_ack(tags[1])
    tx_ch.tx_commit()
    tx_ch.close()
    wait_ready(channel, q, 1)
    assert get_all(channel, q) == [(b"c", True)]
    channel.queue_delete(q)


def test_tx_reject_is_deferred_too(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    channel.confirm_delivery()
    channel.basic_publish("", q, b"a")
    tx_ch = connection.channel()
    tx_ch.tx_select()
    tag = tx_ch.basic_get(q)[0].delivery_tag
    tx_ch.basic_reject(tag, requeue=True)
    assert channel.basic_get(q)[0] is None, "requeue waits for commit"
    tx_ch.tx_commit()
    wait_ready(channel, q, 1)
    assert get_all(channel, q) == [(b"a", True)]
    channel.queue_delete(q)


@pytest.mark.parametrize("method", ["tx_commit", "tx_rollback"])
def test_tx_commit_or_rollback_without_select(channel, method):
    with pytest.raises(ChannelClosedByBroker) as info:
        getattr(channel, method)()
    assert (info.value.reply_code, info.value.reply_text) == (
        406, "PRECONDITION_FAILED - channel is not transactional")


def test_tx_mandatory_unroutable_is_returned_at_commit(connect_blocking, unique):
    conn: BlockingConnection = connect_blocking()
    ch = conn.channel()
    returned: list[bytes] = []
    ch.add_on_return_callback(lambda _c, _m, _p, body: returned.append(body))
    ch.tx_select()
    ch.basic_publish("", f"{unique}-nowhere", b"tx lost", mandatory=True)
    ch.tx_commit()
    deadline = time.monotonic() + TIMEOUT
    while not returned:
        assert time.monotonic() < deadline
        conn.process_data_events(time_limit=0.02)
    assert returned == [b"tx lost"]


@pytest.fixture
def connect_blocking(broker: BrokerAddress):  # type: ignore[no-untyped-def]
    opened: list[BlockingConnection] = []

    def open_one() -> BlockingConnection:
        conn = pika.BlockingConnection(broker.params())
        opened.append(conn)
        return conn

    yield open_one
    for conn in opened:
        if conn.is_open:
            conn.close()
