"""The compact paged queue (core.paged) without sockets, files or an event loop.

A dictionary stands in for the store's log: `page` keeps only ids of "written" messages,
refills rebuild messages through the loader in batches, and a queue whose messages are a
`PagedMessages` keeps every semantic of a plain one (order, requeue to the front, TTL at the
head with the arrival time kept, drop-head, purge, dead-lettering).
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Sequence

from amqpd.core.clock import ManualClock
from amqpd.core.message import Message
from amqpd.core.paged import PagedMessages
from amqpd.core.queue import Queue
from amqpd.wire.content import peek_header

HEADER = b"\x00<\x00\x00\x00\x00\x00\x00\x00\x00\x00d\x90\x00\x00\x02"


def header_for(size: int) -> bytes:
    return HEADER[:4] + struct.pack(">Q", size) + HEADER[12:]


def make(body: bytes, store_id: int = 0) -> Message:
    header = header_for(len(body))
    message = Message("", "q", header, peek_header(header), body)
    message.store_id = store_id
    return message


class Log:
    """The loader: messages by store id, some written (readable), some damaged."""

    def __init__(self) -> None:
        self.bodies: dict[int, bytes] = {}
        self.written: set[int] = set()
        self.damaged: set[int] = set()
        self.loads: list[int] = []  # batch sizes asked for

    def load(self, store_ids: Sequence[int]) -> list[Message | OSError]:
        self.loads.append(len(store_ids))
        out: list[Message | OSError] = []
        for store_id in store_ids:
            if store_id in self.damaged:
                out.append(OSError(f"record {store_id} damaged"))
            else:
                out.append(make(self.bodies[store_id], store_id))
        return out


def paged_queue(log: Log, lost: list[int] | None = None, **queue_args: object) -> Queue:
    queue = Queue("q", "/", durable=True, schedule=lambda queue: None, **queue_args)  # type: ignore[arg-type]
    queue.messages = PagedMessages(
        log,
        lambda store_id, size, error: (lost if lost is not None else []).append(store_id),
        batch=8,
    )
    return queue


def publish(queue: Queue, log: Log, store_id: int, written: bool = True) -> Message:
    body = b"m%05d" % store_id
    message = make(body, store_id)
    log.bodies[store_id] = body
    if written:
        log.written.add(store_id)
    queue.enqueue(message)
    return message


def bodies(queue: Queue) -> list[bytes]:
    out = []
    while True:
        entry = queue.take()
        if entry is None:
            return out
        out.append(entry[1].body)


def test_compact_entries_keep_order_and_come_back_in_batches() -> None:
    log = Log()
    queue = paged_queue(log)
    messages = queue.messages
    assert isinstance(messages, PagedMessages)
    for i in range(1, 101):
        publish(queue, log, i, written=i <= 90)
    assert messages.page(log.written.__contains__, keep=10) == 80
    assert (len(messages), len(messages.head), messages.paged, len(messages.tail)) == (
        100,
        10,
        80,
        10,
    )
    assert messages.paged_bytes == 80 * 6
    assert len(list(messages)) == 20  # iteration: the resident entries only
    assert messages[-1][1].store_id == 100
    assert queue.count() == 100
    assert bodies(queue) == [b"m%05d" % i for i in range(1, 101)]
    assert log.loads == [8] * 10
    assert not messages and messages.paged == messages.paged_bytes == 0


def test_a_compact_entry_costs_no_message_object() -> None:
    log = Log()
    queue = paged_queue(log)
    messages = queue.messages
    assert isinstance(messages, PagedMessages)
    message = publish(queue, log, 1)
    assert sys.getrefcount(message) > 2
    messages.page(log.written.__contains__)
    assert sys.getrefcount(message) == 2  # only the local name and the call's argument
    assert messages.paged == 1


def test_transient_and_unwritten_entries_stay_resident_in_order() -> None:
    log = Log()
    queue = paged_queue(log)
    messages = queue.messages
    assert isinstance(messages, PagedMessages)
    transient = make(b"transient")
    publish(queue, log, 1)
    queue.enqueue(transient)
    publish(queue, log, 2)
    publish(queue, log, 3, written=False)
    publish(queue, log, 4)
    moved: list[Message] = []
    assert messages.page(log.written.__contains__, transient=moved) == 2
    assert moved == [transient]
    assert list(messages.resident_middle()) == [(1, transient, False)]
    assert len(messages.tail) == 2  # stops at the first record not yet written
    assert bodies(queue) == [b"m00001", b"transient", b"m00002", b"m00003", b"m00004"]


def test_requeue_goes_to_the_front_and_redelivered_survives_paging() -> None:
    log = Log()
    queue = paged_queue(log)
    messages = queue.messages
    assert isinstance(messages, PagedMessages)
    for i in range(1, 21):
        publish(queue, log, i)
    first = [queue.take() for _ in range(3)]
    messages.page(log.written.__contains__)
    queue.requeue([(seq, message) for seq, message, _redelivered in first if seq != 0])
    queue.messages.append((99, make(b"again", 21), True))  # a redelivered message, as recovered
    log.bodies[21] = b"again"
    log.written.add(21)
    messages.page(log.written.__contains__)
    taken = []
    while (entry := queue.take()) is not None:
        taken.append((entry[0], entry[1].body, entry[2]))
    assert taken[:2] == [(1, b"m00002", True), (2, b"m00003", True)]
    assert [body for _seq, body, _r in taken[2:-1]] == [b"m%05d" % i for i in range(4, 21)]
    assert not any(redelivered for _seq, _body, redelivered in taken[2:-1])
    assert taken[-1] == (99, b"again", True)


def test_a_lost_record_is_skipped_and_reported() -> None:
    log = Log()
    lost: list[int] = []
    queue = paged_queue(log, lost)
    messages = queue.messages
    assert isinstance(messages, PagedMessages)
    for i in range(1, 11):
        publish(queue, log, i)
    log.damaged = {3, 8}
    messages.page(log.written.__contains__)
    assert bodies(queue) == [b"m%05d" % i for i in range(1, 11) if i not in (3, 8)]
    assert lost == [3, 8]


def test_ttl_is_checked_at_the_head_with_the_arrival_time_kept() -> None:
    clock = ManualClock(start=1_000)
    log = Log()
    expired: list[bytes] = []
    queue = paged_queue(
        log,
        arguments={"x-message-ttl": 100, "x-dead-letter-exchange": "dlx"},
        clock=clock,
        dead_letter=lambda queue, messages, reason: expired.extend(m.body for m in messages),
    )
    messages = queue.messages
    assert isinstance(messages, PagedMessages)
    for i in range(1, 6):
        publish(queue, log, i)
    clock.advance(50)
    for i in range(6, 11):
        publish(queue, log, i)
    messages.page(log.written.__contains__)
    assert messages.paged == 10
    clock.advance(60)  # the first five (arrived at 1000) are past their 100 ms
    assert queue.count() == 5
    assert expired == [b"m%05d" % i for i in range(1, 6)]
    assert messages.head and all(entry[1].arrived == 1_050 for entry in messages.head)
    clock.advance(50)
    assert queue.take() is None
    assert len(expired) == 10


def test_drop_head_and_purge_count_compact_entries() -> None:
    log = Log()
    dropped: list[bytes] = []
    queue = paged_queue(
        log,
        arguments={"x-max-length": 10, "x-dead-letter-exchange": "dlx"},
        dead_letter=lambda queue, messages, reason: dropped.extend(m.body for m in messages),
    )
    messages = queue.messages
    assert isinstance(messages, PagedMessages)
    for i in range(1, 11):
        publish(queue, log, i)
    messages.page(log.written.__contains__)
    publish(queue, log, 11)
    publish(queue, log, 12)
    assert dropped == [b"m00001", b"m00002"]
    assert len(queue) == 10
    assert queue.purge() == 10
    assert not messages and messages.paged == 0


def test_unpaged_gives_every_entry_back_as_one_deque() -> None:
    log = Log()
    queue = paged_queue(log)
    messages = queue.messages
    assert isinstance(messages, PagedMessages)
    for i in range(1, 31):
        publish(queue, log, i, written=i % 7 != 0)
    messages.page(log.written.__contains__)
    entries = messages.unpaged()
    assert [entry[1].body for entry in entries] == [b"m%05d" % i for i in range(1, 31)]
    assert not messages


def test_recovered_entries_join_in_bulk_and_the_arrays_are_taken_in() -> None:
    log = Log()
    queue = Queue("q", "/", durable=True, schedule=lambda queue: None)
    count = 10_000
    for i in range(1, count + 1):
        log.bodies[i] = b"m%05d" % i if i != 5000 else b"longer body"
    ids = array("Q", range(1, count + 1))
    flags = bytearray(i < 10 for i in range(1, count + 1))
    sizes = array("I", (len(log.bodies[i]) for i in range(1, count + 1)))
    for i in range(1, 3):  # the head, loaded as messages first
        queue.enqueue(make(log.bodies[i], i), redelivered=True)
    messages = PagedMessages(log, lambda *lost: None, head=queue.messages, batch=8)  # type: ignore[arg-type]
    queue.extend_compact(messages, ids, flags, sizes, 2)
    assert len(ids) == len(flags) == len(sizes) == 2
    assert (len(queue), messages.paged) == (count, count - 2)
    assert messages.paged_bytes == 6 * (count - 3) + len(b"longer body")
    taken = []
    while (entry := queue.take()) is not None:
        taken.append((entry[0], entry[1].store_id, entry[2]))
    assert taken == [(i - 1, i, i < 10) for i in range(1, count + 1)]
    assert messages.paged == messages.paged_bytes == 0
