"""Basic/tx/confirm error replies: codes, texts and close level exactly as RabbitMQ sends them.

Unknown delivery tags, tx and confirm mode mix-ups and exclusive-consumer conflicts close the
channel; unsupported features (prefetch_size, immediate, recover without requeue, flow off)
and a reused consumer tag close the whole connection. Frames pika refuses to send go through
tests/rawamqp.py, which also shows the class and method ids of each close.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pamqp import commands
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker, UnroutableError

from tests import rawamqp
from tests.conftest import BrokerAddress

VHOST = "/"


def unknown_tag(tag: int) -> str:
    return f"PRECONDITION_FAILED - unknown delivery tag {tag}"


@pytest.fixture
def raw(broker: BrokerAddress) -> Iterator[rawamqp.RawConnection]:
    conn = rawamqp.connect(broker.host, broker.port)
    conn.open_channel(1)
    yield conn
    conn.close()


def fill(channel, queue: str, count: int) -> None:
    """Declare an exclusive queue holding `count` messages (confirmed, so surely there)."""
    channel.queue_declare(queue, exclusive=True)
    channel.confirm_delivery()
    for index in range(count):
        channel.basic_publish("", queue, str(index).encode())


def round_trip(channel) -> None:
    """A synchronous no-op: a pending channel close surfaces here."""
    channel.basic_qos(prefetch_count=0)


@pytest.mark.parametrize(
    "settle",
    [
        lambda ch, tag: ch.basic_ack(tag),
        lambda ch, tag: ch.basic_nack(tag),
        lambda ch, tag: ch.basic_reject(tag),
        lambda ch, tag: ch.basic_nack(tag, requeue=False),
    ],
    ids=["ack", "nack", "reject", "nack-no-requeue"],
)
def test_settle_unknown_delivery_tag(channel, settle) -> None:
    settle(channel, 5)
    with pytest.raises(ChannelClosedByBroker) as err:
        round_trip(channel)
    assert (err.value.reply_code, err.value.reply_text) == (406, unknown_tag(5))


def test_ack_of_tag_zero_without_multiple(channel) -> None:
    channel.basic_ack(0)
    with pytest.raises(ChannelClosedByBroker) as err:
        round_trip(channel)
    assert (err.value.reply_code, err.value.reply_text) == (406, unknown_tag(0))


def test_ack_of_tag_zero_with_multiple_acks_nothing_and_succeeds(channel) -> None:
    channel.basic_ack(0, multiple=True)
    round_trip(channel)
    assert channel.is_open


def test_double_ack(channel, unique: str) -> None:
    fill(channel, unique, 1)
    method, _, _ = channel.basic_get(unique)
    channel.basic_ack(method.delivery_tag)
    channel.basic_ack(method.delivery_tag)
    with pytest.raises(ChannelClosedByBroker) as err:
        round_trip(channel)
    assert (err.value.reply_code, err.value.reply_text) == (406, unknown_tag(method.delivery_tag))


@pytest.mark.parametrize("outstanding", [0, 1])
@pytest.mark.parametrize("verb", ["ack", "nack"])
def test_multiple_with_unknown_tag(channel, unique: str, outstanding: int, verb: str) -> None:
    fill(channel, unique, outstanding)
    for _ in range(outstanding):
        channel.basic_get(unique)
    settle = channel.basic_ack if verb == "ack" else channel.basic_nack
    settle(outstanding + 2, multiple=True)
    with pytest.raises(ChannelClosedByBroker) as err:
        round_trip(channel)
    assert (err.value.reply_code, err.value.reply_text) == (406, unknown_tag(outstanding + 2))


def test_ack_after_reject(channel, unique: str) -> None:
    fill(channel, unique, 1)
    method, _, _ = channel.basic_get(unique)
    channel.basic_reject(method.delivery_tag, requeue=False)
    channel.basic_ack(method.delivery_tag)
    with pytest.raises(ChannelClosedByBroker) as err:
        round_trip(channel)
    assert (err.value.reply_code, err.value.reply_text) == (406, unknown_tag(method.delivery_tag))


def test_ack_of_auto_acked_delivery(channel, unique: str) -> None:
    fill(channel, unique, 1)
    method, _, _ = channel.basic_get(unique, auto_ack=True)
    channel.basic_ack(method.delivery_tag)
    with pytest.raises(ChannelClosedByBroker) as err:
        round_trip(channel)
    assert (err.value.reply_code, err.value.reply_text) == (406, unknown_tag(method.delivery_tag))


def test_unknown_tag_in_tx_mode_fails_at_the_ack_not_the_commit(raw) -> None:
    raw.send(1, commands.Tx.Select())
    raw.expect(commands.Tx.SelectOk)
    raw.send(1, commands.Basic.Ack(delivery_tag=3))
    raw.send(1, commands.Tx.Commit())
    closed = raw.wait_close()
    assert (closed.level, closed.channel) == ("channel", 1)
    assert (closed.reply_code, closed.reply_text) == (406, unknown_tag(3))
    assert (closed.class_id, closed.method_id) == (60, 80)


@pytest.mark.parametrize(
    "method,ids",
    [
        (commands.Basic.Ack(delivery_tag=9), (60, 80)),
        (commands.Basic.Reject(delivery_tag=9), (60, 90)),
        (commands.Basic.Nack(delivery_tag=9), (60, 120)),
    ],
    ids=["ack", "reject", "nack"],
)
def test_unknown_tag_class_and_method_ids(raw, method, ids) -> None:
    raw.send(1, method)
    closed = raw.wait_close()
    assert (closed.level, closed.reply_code, closed.reply_text) == ("channel", 406, unknown_tag(9))
    assert (closed.class_id, closed.method_id) == ids


@pytest.mark.parametrize("same_queue", [True, False])
def test_reused_consumer_tag_closes_the_connection(raw, unique: str, same_queue: bool) -> None:
    second = unique if same_queue else unique + "-b"
    for queue in {unique, second}:
        raw.send(1, commands.Queue.Declare(queue=queue, exclusive=True))
        raw.expect(commands.Queue.DeclareOk)
    raw.send(1, commands.Basic.Consume(queue=unique, consumer_tag="ctag"))
    raw.expect(commands.Basic.ConsumeOk)
    raw.send(1, commands.Basic.Consume(queue=second, consumer_tag="ctag"))
    closed = raw.wait_close()
    assert (closed.level, closed.channel) == ("connection", 0)
    assert closed.reply_code == 530
    assert closed.reply_text == "NOT_ALLOWED - attempt to reuse consumer tag 'ctag'"
    assert (closed.class_id, closed.method_id) == (60, 20)
    raw.close_ok_then_eof()


@pytest.mark.parametrize(
    "first_exclusive,second_exclusive",
    [(True, False), (False, True), (True, True)],
    ids=["exclusive-then-shared", "shared-then-exclusive", "exclusive-twice"],
)
def test_exclusive_consumer_conflict(
    connection, unique: str, first_exclusive: bool, second_exclusive: bool
) -> None:
    owner = connection.channel()
    owner.queue_declare(unique, exclusive=True)
    owner.basic_consume(unique, lambda *a: None, exclusive=first_exclusive)
    other = connection.channel()
    with pytest.raises(ChannelClosedByBroker) as err:
        other.basic_consume(unique, lambda *a: None, exclusive=second_exclusive)
    assert err.value.reply_code == 403
    assert err.value.reply_text == (
        f"ACCESS_REFUSED - queue '{unique}' in vhost '{VHOST}' in exclusive use"
    )
    assert owner.is_open


def test_basic_get_is_allowed_beside_an_exclusive_consumer(channel, unique: str) -> None:
    fill(channel, unique, 0)
    channel.basic_consume(unique, lambda *a: None, exclusive=True)
    method, _, _ = channel.basic_get(unique)
    assert method is None  # get-empty, not an error
    assert channel.is_open


@pytest.mark.parametrize("global_qos", [False, True])
def test_qos_with_prefetch_size_closes_the_connection(connection, global_qos: bool) -> None:
    channel = connection.channel()
    with pytest.raises(ConnectionClosedByBroker) as err:
        channel.basic_qos(prefetch_size=1000, global_qos=global_qos)
    assert err.value.reply_code == 540
    assert err.value.reply_text == "NOT_IMPLEMENTED - prefetch_size!=0 (1000)"


def test_qos_prefetch_size_close_ids(raw) -> None:
    raw.send(1, commands.Basic.Qos(prefetch_size=77))
    closed = raw.wait_close()
    assert (closed.level, closed.reply_code) == ("connection", 540)
    assert closed.reply_text == "NOT_IMPLEMENTED - prefetch_size!=0 (77)"
    assert (closed.class_id, closed.method_id) == (60, 10)
    raw.close_ok_then_eof()


@pytest.mark.parametrize("routable", [False, True])
def test_publish_immediate_closes_the_connection(raw, unique: str, routable: bool) -> None:
    if routable:
        raw.send(1, commands.Queue.Declare(queue=unique, exclusive=True))
        raw.expect(commands.Queue.DeclareOk)
    raw.publish(1, b"x", routing_key=unique, immediate=True)
    closed = raw.wait_close()
    assert (closed.level, closed.channel) == ("connection", 0)
    assert (closed.reply_code, closed.reply_text) == (540, "NOT_IMPLEMENTED - immediate=true")
    assert (closed.class_id, closed.method_id) == (60, 40)
    raw.close_ok_then_eof()


def test_recover_without_requeue_closes_the_connection(connection) -> None:
    channel = connection.channel()
    with pytest.raises(ConnectionClosedByBroker) as err:
        channel.basic_recover(requeue=False)
    assert (err.value.reply_code, err.value.reply_text) == (540, "NOT_IMPLEMENTED - requeue=false")


@pytest.mark.parametrize("method_id", [110, 100], ids=["recover", "recover-async"])
def test_recover_without_requeue_close_ids(raw, method_id: int) -> None:
    # Built by hand: pamqp warns on constructing the deprecated basic.recover-async.
    requeue_false = b"\x00"
    raw.send_bytes(
        rawamqp.raw_frame(
            rawamqp.FRAME_METHOD, 1, rawamqp.method_payload(60, method_id, requeue_false)
        )
    )
    closed = raw.wait_close()
    assert (closed.level, closed.reply_code) == ("connection", 540)
    assert closed.reply_text == "NOT_IMPLEMENTED - requeue=false"
    assert (closed.class_id, closed.method_id) == (60, method_id)
    raw.close_ok_then_eof()


def test_recover_with_requeue_succeeds(channel) -> None:
    channel.basic_recover(requeue=True)
    assert channel.is_open


def test_channel_flow_off_closes_the_connection(raw) -> None:
    raw.send(1, commands.Channel.Flow(active=False))
    closed = raw.wait_close()
    assert (closed.level, closed.reply_code) == ("connection", 540)
    assert closed.reply_text == "NOT_IMPLEMENTED - active=false"
    assert (closed.class_id, closed.method_id) == (20, 20)
    raw.close_ok_then_eof()


def test_channel_flow_on_is_acknowledged(raw) -> None:
    raw.send(1, commands.Channel.Flow(active=True))
    ok = raw.expect(commands.Channel.FlowOk)
    assert ok.active is True


@pytest.mark.parametrize("verb", ["commit", "rollback"])
def test_tx_without_select(channel, verb: str) -> None:
    with pytest.raises(ChannelClosedByBroker) as err:
        getattr(channel, f"tx_{verb}")()
    assert err.value.reply_code == 406
    assert err.value.reply_text == "PRECONDITION_FAILED - channel is not transactional"


def test_confirm_select_after_tx_select(channel) -> None:
    channel.tx_select()
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.confirm_delivery()
    assert err.value.reply_code == 406
    assert err.value.reply_text == "PRECONDITION_FAILED - cannot switch from tx to confirm mode"


def test_tx_select_after_confirm_select(channel) -> None:
    channel.confirm_delivery()
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.tx_select()
    assert err.value.reply_code == 406
    assert err.value.reply_text == "PRECONDITION_FAILED - cannot switch from confirm to tx mode"


@pytest.mark.parametrize(
    "frames,ids",
    [
        ([commands.Tx.Commit()], (90, 20)),
        ([commands.Tx.Rollback()], (90, 30)),
        ([commands.Tx.Select(), commands.Confirm.Select()], (85, 10)),
        ([commands.Confirm.Select(), commands.Tx.Select()], (90, 10)),
    ],
    ids=["commit", "rollback", "tx-then-confirm", "confirm-then-tx"],
)
def test_tx_and_confirm_close_ids(raw, frames, ids) -> None:
    for frame in frames:
        raw.send(1, frame)
    closed = raw.wait_close()
    assert (closed.level, closed.reply_code) == ("channel", 406)
    assert (closed.class_id, closed.method_id) == ids


def test_selecting_the_same_mode_twice_is_fine(raw) -> None:
    raw.send(1, commands.Tx.Select())
    raw.expect(commands.Tx.SelectOk)
    raw.send(1, commands.Tx.Select())
    raw.expect(commands.Tx.SelectOk)
    raw.open_channel(2)
    raw.send(2, commands.Confirm.Select())
    raw.expect(commands.Confirm.SelectOk)
    raw.send(2, commands.Confirm.Select())
    raw.expect(commands.Confirm.SelectOk)


def test_cancel_of_unknown_consumer_tag_is_acknowledged(raw) -> None:
    raw.send(1, commands.Basic.Cancel(consumer_tag="no-such-consumer"))
    ok = raw.expect(commands.Basic.CancelOk)
    assert ok.consumer_tag == "no-such-consumer"


def test_mandatory_unroutable_message_is_returned_with_312(channel, unique: str) -> None:
    channel.confirm_delivery()
    with pytest.raises(UnroutableError) as err:
        channel.basic_publish("amq.direct", unique, b"lost", mandatory=True)
    (returned,) = err.value.messages
    assert returned.method.reply_code == 312
    assert returned.method.reply_text == "NO_ROUTE"
    assert (returned.method.exchange, returned.method.routing_key) == ("amq.direct", unique)
    assert returned.body == b"lost"
    assert channel.is_open


def test_reply_to_consumer_must_be_no_ack(channel) -> None:
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=False)
    assert err.value.reply_code == 406
    assert err.value.reply_text == "PRECONDITION_FAILED - reply consumer cannot acknowledge"


def test_consumer_priority_of_wrong_type(channel, unique: str) -> None:
    channel.queue_declare(unique, exclusive=True)
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.basic_consume(unique, lambda *a: None, arguments={"x-priority": "high"})
    assert err.value.reply_code == 406
    assert err.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{unique}' in vhost "
        f"'{VHOST}': \"expected integer, got longstr\""
    )
