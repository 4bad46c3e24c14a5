"""Unit tests of `Queue` (amqpd.core.queue) without sockets or an event loop.

The queue is driven as the broker drives it: `schedule` records the queues that asked for
a dispatch pass and the test runs those passes, as the tick scheduler would. Consumers are
small `Consumer` implementations with a prefetch window, as a channel's consumer has:
`ready()` is false while `prefetch` deliveries are unsettled.
"""

from __future__ import annotations

from collections import deque

from amqpd.core.message import Message
from amqpd.core.queue import FLOW_HIGH, FLOW_LOW, Entry, Queue, deliver_each
from amqpd.wire.content import HeaderInfo


def message(body: str) -> Message:
    data = body.encode()
    info = HeaderInfo(60, 0, len(data), 1, None, None, None)
    return Message("", "q", b"", info, data)


class WindowConsumer:
    """Takes deliveries while fewer than `prefetch` are unsettled (0: no limit)."""

    exclusive = False

    def __init__(self, tag: str, prefetch: int = 0) -> None:
        self.tag = tag
        self.prefetch = prefetch
        self.got: list[tuple[str, bool]] = []  # (body, redelivered)
        self.unsettled: list[tuple[int, Message]] = []
        self.deleted = False

    def ready(self) -> bool:
        return not self.prefetch or len(self.unsettled) < self.prefetch

    def deliver(self, queue: Queue, seq: int, message: Message, redelivered: bool) -> None:
        self.got.append((message.body.decode(), redelivered))
        self.unsettled.append((seq, message))

    def deliver_run(self, queue: Queue, messages: deque[Entry]) -> None:
        deliver_each(self, queue, messages)

    def queue_deleted(self, queue: Queue) -> None:
        self.deleted = True

    def ack(self, count: int = 1) -> None:
        del self.unsettled[:count]

    def bodies(self) -> list[str]:
        return [body for body, _ in self.got]


class Passes:
    """The schedule callback: remembers who asked for a pass; `run()` runs them."""

    def __init__(self) -> None:
        self.asked: list[Queue] = []

    def __call__(self, queue: Queue) -> None:
        self.asked.append(queue)

    def run(self) -> None:
        asked, self.asked = self.asked, []
        for queue in asked:
            queue.dispatch()


def new_queue() -> tuple[Queue, Passes]:
    passes = Passes()
    return Queue("q", "/", schedule=passes), passes


def ready_bodies(queue: Queue) -> list[tuple[str, bool]]:
    return [(m.body.decode(), redelivered) for _seq, m, redelivered in queue.messages]


def test_messages_wait_without_consumers_and_go_out_in_order() -> None:
    queue, passes = new_queue()
    for n in range(3):
        queue.enqueue(message(f"m{n}"))
    assert passes.asked == []  # nobody to deliver to: no pass requested
    consumer = WindowConsumer("c")
    queue.add_consumer(consumer)
    passes.run()
    assert consumer.got == [("m0", False), ("m1", False), ("m2", False)]
    assert len(queue) == 0


def test_many_enqueues_ask_for_one_pass() -> None:
    queue, passes = new_queue()
    queue.add_consumer(WindowConsumer("c"))
    passes.run()
    for n in range(5):
        queue.enqueue(message(f"m{n}"))
    assert passes.asked == [queue]


def test_round_robin_over_ready_consumers() -> None:
    queue, passes = new_queue()
    a, b, c = WindowConsumer("a"), WindowConsumer("b"), WindowConsumer("c")
    for consumer in (a, b, c):
        queue.add_consumer(consumer)
    passes.run()
    for n in range(7):
        queue.enqueue(message(f"m{n}"))
    passes.run()
    assert a.bodies() == ["m0", "m3", "m6"]
    assert b.bodies() == ["m1", "m4"]
    assert c.bodies() == ["m2", "m5"]
    queue.enqueue(message("m7"))  # the rotation carries on where it stopped
    passes.run()
    assert b.bodies()[-1] == "m7"


def test_prefetch_windows_skip_full_consumers_and_reopen_on_kick() -> None:
    queue, passes = new_queue()
    big, small = WindowConsumer("big", prefetch=3), WindowConsumer("small", prefetch=1)
    queue.add_consumer(big)
    queue.add_consumer(small)
    for n in range(8):
        queue.enqueue(message(f"m{n}"))
    passes.run()
    assert big.bodies() == ["m0", "m2", "m3"]
    assert small.bodies() == ["m1"]
    assert [body for body, _ in ready_bodies(queue)] == ["m4", "m5", "m6", "m7"]
    passes.run()
    assert len(queue) == 4  # nobody ready: a pass delivers nothing
    small.ack()
    queue.kick()  # what a channel does after settling
    passes.run()
    assert small.bodies() == ["m1", "m4"]
    big.ack(3)
    queue.kick()
    passes.run()
    assert big.bodies()[3:] == ["m5", "m6", "m7"]
    assert len(queue) == 0


def test_single_consumer_stops_at_its_window() -> None:
    queue, passes = new_queue()
    consumer = WindowConsumer("c", prefetch=2)
    queue.add_consumer(consumer)
    for n in range(5):
        queue.enqueue(message(f"m{n}"))
    passes.run()
    assert consumer.bodies() == ["m0", "m1"]
    consumer.ack(2)
    queue.kick()
    passes.run()
    assert consumer.bodies() == ["m0", "m1", "m2", "m3"]


def test_removed_consumer_gets_nothing_more() -> None:
    queue, passes = new_queue()
    a, b = WindowConsumer("a"), WindowConsumer("b")
    queue.add_consumer(a)
    queue.add_consumer(b)
    queue.remove_consumer(a)
    queue.remove_consumer(a)  # twice is harmless
    for n in range(3):
        queue.enqueue(message(f"m{n}"))
    passes.run()
    assert a.got == [] and b.bodies() == ["m0", "m1", "m2"]


def test_requeue_puts_messages_back_ahead_of_newer_in_original_order() -> None:
    queue, passes = new_queue()
    consumer = WindowConsumer("c", prefetch=3)
    queue.add_consumer(consumer)
    for n in range(5):
        queue.enqueue(message(f"m{n}"))
    passes.run()
    delivered = list(consumer.unsettled)  # m0, m1, m2
    queue.remove_consumer(consumer)
    queue.enqueue(message("m5"))
    queue.requeue([delivered[2], delivered[0]])  # any order in, seq order back
    assert ready_bodies(queue) == [
        ("m0", True),
        ("m2", True),
        ("m3", False),
        ("m4", False),
        ("m5", False),
    ]
    queue.requeue([delivered[1]])  # merges between older entries by seq
    assert [body for body, _ in ready_bodies(queue)] == ["m0", "m1", "m2", "m3", "m4", "m5"]
    again = WindowConsumer("again")
    queue.add_consumer(again)
    passes.run()
    assert again.got[:3] == [("m0", True), ("m1", True), ("m2", True)]
    assert again.got[3:] == [("m3", False), ("m4", False), ("m5", False)]


def test_requeue_to_a_deleted_queue_drops_the_messages() -> None:
    queue, passes = new_queue()
    queue.enqueue(message("m0"))
    entry = queue.take()
    assert entry is not None
    queue.deleted = True  # as VHost.remove_queue leaves it
    queue.requeue([(entry[0], entry[1])])
    assert len(queue) == 0 and passes.asked == []


def test_take_returns_the_head_for_basic_get() -> None:
    queue, _passes = new_queue()
    assert queue.take() is None
    queue.enqueue(message("m0"))
    queue.enqueue(message("m1"))
    entry = queue.take()
    assert entry is not None and entry[1].body == b"m0" and entry[2] is False
    assert [body for body, _ in ready_bodies(queue)] == ["m1"]


def test_backlog_pauses_publishers_until_drained_to_the_low_mark() -> None:
    queue, passes = new_queue()
    stuck = WindowConsumer("stuck", prefetch=1)
    queue.add_consumer(stuck)
    released: list[Queue] = []
    for n in range(FLOW_HIGH + 2):
        queue.enqueue(message(str(n)))
    passes.run()
    assert queue.backlogged
    queue.drain_waiters.append(released.append)
    while len(queue) > FLOW_LOW + 1:
        queue.take()
    assert queue.backlogged and released == []
    queue.take()
    assert not queue.backlogged and released == [queue]


def test_purge_drops_ready_messages_only() -> None:
    queue, passes = new_queue()
    consumer = WindowConsumer("c", prefetch=1)
    queue.add_consumer(consumer)
    for n in range(4):
        queue.enqueue(message(f"m{n}"))
    passes.run()
    assert queue.purge() == 3
    assert len(queue) == 0 and consumer.bodies() == ["m0"]
