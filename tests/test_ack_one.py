"""`Deliveries.ack_one` (the single-ack fast path) against `settle(tag, False, False)`.

Sans-IO: two trackers get the same deliveries (and gets), one acks through `ack_one`, the
other through `settle`; the unacked tags, consumer windows, queue kicks, return values and
errors must be the same after every step.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amqpd.core.errors import ChannelError
from amqpd.deliveries import Deliveries
from tests.test_channel_parts import FakeConsumer, message, queue_with_kicks


def tracker(global_prefetch: int, gets: int, deliveries_count: int):
    deliveries = Deliveries()
    deliveries.qos(global_prefetch, True)
    queue, kicks = queue_with_kicks()
    consumer = FakeConsumer(queue)
    for _ in range(deliveries_count + gets):
        queue.enqueue(message())
    for i in range(deliveries_count + gets):
        seq, msg, redelivered = queue.take()  # type: ignore[misc]
        if i < gets:
            deliveries.got(queue, seq, msg, redelivered, no_ack=False)
        else:
            deliveries.delivered(consumer, queue, seq, msg, redelivered)
    return deliveries, consumer, kicks


def outcome(function, *args):
    try:
        return ("ok", function(*args))
    except ChannelError as error:
        return ("error", error.code, error.text)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([0, 3]),
    st.integers(0, 3),
    st.integers(0, 8),
    st.lists(st.integers(0, 12), max_size=12),
    st.booleans(),
)
def test_ack_one_is_settle_of_one_tag(global_prefetch, gets, count, tags, detach):
    fast, fast_consumer, fast_kicks = tracker(global_prefetch, gets, count)
    slow, slow_consumer, slow_kicks = tracker(global_prefetch, gets, count)
    fast_consumer.attached = slow_consumer.attached = not detach
    for tag in tags:
        assert outcome(fast.ack_one, tag) == outcome(slow.settle, tag, False, False)
        assert list(fast.unacked) == list(slow.unacked)
        assert fast_consumer.unacked == slow_consumer.unacked
        assert fast_kicks == slow_kicks
        assert fast_consumer.queue.stats.ack == slow_consumer.queue.stats.ack


def test_ack_one_of_an_unknown_tag_is_precondition_failed():
    deliveries, _, _ = tracker(0, 0, 1)
    with pytest.raises(ChannelError) as raised:
        deliveries.ack_one(2)
    assert raised.value.code == 406 and raised.value.text.endswith("unknown delivery tag 2")


def ack_each(deliveries: Deliveries, tags: list[int]) -> bool:
    """What the frame-by-frame path does for a run of single acks: `ack_one` of each."""
    result = False
    for tag in tags:
        result = deliveries.ack_one(tag)
    return result


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([0, 3]),
    st.integers(0, 3),
    st.integers(0, 8),
    st.lists(st.lists(st.integers(0, 12), min_size=1, max_size=6), max_size=4),
    st.booleans(),
)
def test_ack_run_is_ack_one_of_each_tag(global_prefetch, gets, count, runs, detach):
    fast, fast_consumer, fast_kicks = tracker(global_prefetch, gets, count)
    slow, slow_consumer, slow_kicks = tracker(global_prefetch, gets, count)
    fast_consumer.attached = slow_consumer.attached = not detach
    for tags in runs:
        got = outcome(fast.ack_run, tags)
        assert got == outcome(ack_each, slow, tags)
        assert list(fast.unacked) == list(slow.unacked)
        assert fast_consumer.unacked == slow_consumer.unacked
        assert fast_consumer.queue.stats.ack == slow_consumer.queue.stats.ack
        # One kick per run where acking each kicked at least once.
        assert bool(fast_kicks) == bool(slow_kicks)
        fast_kicks.clear()
        slow_kicks.clear()
        if got[0] == "error":
            break
