"""Runs of single basic.acks sent in one write (the reader merges them into one item).

The acks of a run take effect in order: an unknown tag in the middle closes the channel
with 406 after the acks before it, and the acks after it are ignored (their messages go
back to the queue with the channel); in tx mode the run is held until commit or dropped by
rollback. Checked through the queue's ready count once the channel is gone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pamqp import commands, frame

from tests import rawamqp
from tests.conftest import BrokerAddress


@pytest.fixture
def raw(broker: BrokerAddress) -> Iterator[rawamqp.RawConnection]:
    conn = rawamqp.connect(broker.host, broker.port)
    conn.open_channel(1)
    conn.open_channel(2)
    yield conn
    conn.close()


def consume(raw: rawamqp.RawConnection, queue: str, count: int) -> None:
    """Declare `queue` with `count` messages on channel 2 and consume them on channel 1."""
    raw.send(2, commands.Queue.Declare(queue=queue, exclusive=True))
    raw.expect(commands.Queue.DeclareOk)
    for index in range(count):
        raw.publish(2, str(index).encode(), routing_key=queue)
    raw.send(1, commands.Basic.Consume(queue=queue, consumer_tag="c"))
    raw.expect(commands.Basic.ConsumeOk)
    tags = []
    for _ in range(count):
        deliver = raw.expect(commands.Basic.Deliver)
        assert isinstance(deliver, commands.Basic.Deliver)
        tags.append(deliver.delivery_tag)
        raw.recv_frame()  # the content header
        raw.recv_frame()  # the body
    assert tags == list(range(1, count + 1))


def acks(tags: list[int]) -> bytes:
    return b"".join(frame.marshal(commands.Basic.Ack(delivery_tag=tag), 1) for tag in tags)


def ready(raw: rawamqp.RawConnection, queue: str) -> int:
    raw.send(2, commands.Queue.Declare(queue=queue, passive=True))
    declared = raw.expect(commands.Queue.DeclareOk)
    assert isinstance(declared, commands.Queue.DeclareOk)
    return declared.message_count


def close_channel(raw: rawamqp.RawConnection) -> None:
    raw.send(1, commands.Channel.Close(200, "bye", 0, 0))
    raw.expect(commands.Channel.CloseOk)


def test_a_run_of_acks_acks_each(raw, unique: str) -> None:
    consume(raw, unique, 20)
    raw.send_bytes(acks(list(range(1, 16))))  # 15 of 20, one write
    close_channel(raw)  # the 5 unacked go back to the queue
    assert ready(raw, unique) == 5


def test_unknown_tag_in_a_run_closes_after_the_acks_before_it(raw, unique: str) -> None:
    consume(raw, unique, 10)
    raw.send_bytes(acks([1, 2, 3, 99, 4, 5]))
    closed = raw.wait_close()
    assert (closed.level, closed.channel, closed.reply_code) == ("channel", 1, 406)
    assert closed.reply_text == "PRECONDITION_FAILED - unknown delivery tag 99"
    assert (closed.class_id, closed.method_id) == (60, 80)
    raw.send(1, commands.Channel.CloseOk())
    assert ready(raw, unique) == 7  # 1-3 acked; 4 and 5 ignored with the closing channel


def test_double_ack_in_a_run_is_unknown(raw, unique: str) -> None:
    consume(raw, unique, 3)
    raw.send_bytes(acks([1, 2, 2, 3]))
    closed = raw.wait_close()
    assert closed.reply_text == "PRECONDITION_FAILED - unknown delivery tag 2"
    raw.send(1, commands.Channel.CloseOk())
    assert ready(raw, unique) == 1


@pytest.mark.parametrize("commit", [True, False])
def test_a_run_of_acks_in_tx_mode_waits_for_the_commit(raw, unique: str, commit: bool) -> None:
    consume(raw, unique, 6)
    raw.send(1, commands.Tx.Select())
    raw.expect(commands.Tx.SelectOk)
    raw.send_bytes(acks([1, 2, 3, 4]))
    raw.send(1, commands.Tx.Commit() if commit else commands.Tx.Rollback())
    raw.expect(commands.Tx.CommitOk if commit else commands.Tx.RollbackOk)
    close_channel(raw)
    assert ready(raw, unique) == (2 if commit else 6)
