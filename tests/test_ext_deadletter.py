"""Dead-lettering as RabbitMQ 3.10 does it for classic queues.

Messages leave a queue as `expired`, `maxlen` or `rejected` and are republished to its
`x-dead-letter-exchange` (with `x-dead-letter-routing-key` or their own keys), carrying the
`x-death` history (exact fields, types and order, merged per queue and reason, most recent
first) and `x-first-death-*`; automatic cycles are dropped, cycles through a rejection are
followed, and a missing dead-letter exchange silently discards.
"""

from __future__ import annotations

import datetime
import time

import pika

from tests.pumping import pump


def _get(channel, queue: str, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """basic.get until a message arrives (dead-lettering is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, props, body
        assert time.monotonic() < deadline, f"nothing arrived in {queue}"
        time.sleep(0.02)


def _count(channel, queue: str) -> int:  # type: ignore[no-untyped-def]
    return channel.queue_declare(queue, passive=True).method.message_count


def _drained(channel, *queues: str, timeout: float = 10.0, hold: float = 0.3) -> None:  # type: ignore[no-untyped-def]
    """Wait until every queue is empty, then check they stay empty for `hold` seconds: a
    message going round a cycle that should have been dropped shows up in some sample."""
    deadline = time.monotonic() + timeout
    while any(_count(channel, queue) for queue in queues):
        assert time.monotonic() < deadline, f"{queues} never emptied"
        time.sleep(0.02)
    until = time.monotonic() + hold
    while time.monotonic() < until:
        counts = [_count(channel, queue) for queue in queues]
        assert not any(counts), f"a message came back: {dict(zip(queues, counts, strict=True))}"
        time.sleep(0.01)


def _dead_queue(channel, unique: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    dlx, dead = unique + "-dlx", unique + "-dead"
    channel.exchange_declare(dlx, "fanout", auto_delete=True)
    channel.queue_declare(dead, auto_delete=False)
    channel.queue_bind(dead, dlx)
    return dlx, dead


def _within_a_minute(stamp: datetime.datetime) -> bool:
    now = datetime.datetime.now(datetime.UTC)
    return abs((now - stamp).total_seconds()) < 60


def test_expired_message_x_death(channel, unique):
    dlx, dead = _dead_queue(channel, unique)
    channel.queue_declare(unique, arguments={"x-message-ttl": 50, "x-dead-letter-exchange": dlx})
    props = pika.BasicProperties(
        expiration="30", priority=3, content_type="text/plain", headers={"CC": ["a", "b"]}
    )
    channel.basic_publish("", unique, b"body", props)
    method, got, body = _get(channel, dead)
    assert body == b"body"
    assert (method.exchange, method.routing_key) == (dlx, unique)
    assert got.expiration is None  # removed, kept as original-expiration
    assert (got.priority, got.content_type) == (3, "text/plain")
    assert list(got.headers) == [
        "CC",
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
    ]
    (death,) = got.headers["x-death"]
    assert list(death) == [
        "count",
        "reason",
        "queue",
        "time",
        "exchange",
        "routing-keys",
        "original-expiration",
    ]
    assert _within_a_minute(death.pop("time"))
    assert death == {
        "count": 1,
        "reason": "expired",
        "queue": unique,
        "exchange": "",
        "routing-keys": [unique, "a", "b"],
        "original-expiration": "30",
    }
    assert got.headers["x-first-death-exchange"] == ""
    assert got.headers["x-first-death-queue"] == unique
    assert got.headers["x-first-death-reason"] == "expired"


def test_dead_letter_routing_key_replaces_the_keys(channel, unique):
    channel.queue_declare(unique + "-target")
    channel.queue_declare(
        unique,
        arguments={
            "x-message-ttl": 10,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": unique + "-target",
        },
    )
    channel.basic_publish("amq.direct", "unbound", b"x")  # unroutable, nothing happens
    channel.queue_bind(unique, "amq.direct", "key")
    channel.basic_publish("amq.direct", "key", b"y", pika.BasicProperties(headers={"h": 1}))
    method, props, body = _get(channel, unique + "-target")
    assert (method.exchange, method.routing_key, body) == ("", unique + "-target", b"y")
    (death,) = props.headers["x-death"]
    assert (death["exchange"], death["routing-keys"]) == ("amq.direct", ["key"])
    assert "original-expiration" not in death
    assert props.headers["h"] == 1


def test_maxlen_drop_head_dead_letters_the_oldest(channel, unique):
    dlx, dead = _dead_queue(channel, unique)
    channel.queue_declare(unique, arguments={"x-max-length": 2, "x-dead-letter-exchange": dlx})
    for i in range(4):
        channel.basic_publish("", unique, b"%d" % i)
    first = _get(channel, dead)
    second = _get(channel, dead)
    assert [first[2], second[2]] == [b"0", b"1"]
    assert first[1].headers["x-death"][0]["reason"] == "maxlen"
    assert channel.queue_declare(unique, passive=True).method.message_count == 2


def test_missing_dead_letter_exchange_discards_silently(channel, unique):
    channel.queue_declare(
        unique, arguments={"x-message-ttl": 10, "x-dead-letter-exchange": unique + "-none"}
    )
    channel.confirm_delivery()  # in the queue before the first look
    channel.basic_publish("", unique, b"x")
    _drained(channel, unique)


def test_expiry_cycle_is_dropped(channel, unique):
    channel.queue_declare(unique, arguments={"x-message-ttl": 10, "x-dead-letter-exchange": ""})
    channel.confirm_delivery()  # in the queue before the first look
    channel.basic_publish("", unique, b"loop")
    _drained(channel, unique)


def test_expiry_cycle_over_two_queues_is_dropped_after_one_lap(channel, unique):
    a, b = unique + "-a", unique + "-b"
    channel.queue_declare(
        a,
        arguments={
            "x-message-ttl": 10,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": b,
        },
    )
    channel.queue_declare(
        b,
        arguments={
            "x-message-ttl": 10,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": a,
        },
    )
    channel.confirm_delivery()  # in the queue before the first look
    channel.basic_publish("", a, b"loop")
    _drained(channel, a, b)


def test_dead_lettered_persistent_message_keeps_delivery_mode(channel, unique):
    dlx, dead = _dead_queue(channel, unique)
    channel.queue_declare(unique, arguments={"x-message-ttl": 10, "x-dead-letter-exchange": dlx})
    channel.basic_publish("", unique, b"p", pika.BasicProperties(delivery_mode=2))
    _method, props, _body = _get(channel, dead)
    assert props.delivery_mode == 2


def test_consumer_of_dead_letter_queue_gets_expired_messages(connection, channel, unique):
    dlx, dead = _dead_queue(channel, unique)
    channel.queue_declare(unique, arguments={"x-message-ttl": 30, "x-dead-letter-exchange": dlx})
    got: list[bytes] = []
    channel.basic_consume(dead, lambda _c, _m, _p, body: got.append(body), auto_ack=True)
    for i in range(3):
        channel.basic_publish("", unique, b"%d" % i)
    pump([connection], lambda: len(got) == 3)
    assert got == [b"0", b"1", b"2"]


def test_rejected_and_nacked_messages_are_dead_lettered(channel, unique):
    dlx, dead = _dead_queue(channel, unique)
    channel.queue_declare(unique, arguments={"x-dead-letter-exchange": dlx})
    channel.confirm_delivery()
    for i in range(4):
        channel.basic_publish("", unique, b"%d" % i)
    tags = [channel.basic_get(unique)[0].delivery_tag for _ in range(4)]
    channel.basic_reject(tags[0], requeue=False)
    channel.basic_nack(tags[2], multiple=True, requeue=False)  # tags 1 and 2
    channel.basic_ack(tags[3])
    got = [_get(channel, dead) for _ in range(3)]
    assert [body for _m, _p, body in got] == [b"0", b"1", b"2"]
    for _method, props, _body in got:
        (death,) = props.headers["x-death"]
        assert (death["reason"], death["queue"], death["count"]) == ("rejected", unique, 1)
        assert props.headers["x-first-death-reason"] == "rejected"
    assert channel.basic_get(dead)[0] is None


def test_reject_with_requeue_does_not_dead_letter(channel, unique):
    dlx, dead = _dead_queue(channel, unique)
    channel.queue_declare(unique, arguments={"x-dead-letter-exchange": dlx})
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"again")
    channel.basic_reject(channel.basic_get(unique)[0].delivery_tag, requeue=True)
    method, _props, body = channel.basic_get(unique, auto_ack=True)
    assert body == b"again" and method.redelivered
    assert channel.basic_get(dead)[0] is None


def test_cycle_through_a_rejection_is_followed_and_counts_merge(channel, unique):
    a, b = unique + "-a", unique + "-b"
    to_b = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": b}
    channel.queue_declare(a, arguments=to_b)
    to_a = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": a, "x-message-ttl": 10}
    channel.queue_declare(b, arguments=to_a)
    props = pika.BasicProperties(headers={"h": 1}, expiration="100000")
    channel.basic_publish("", a, b"x", props)
    seen = []
    for _round in range(3):
        deadline = time.monotonic() + 10
        while (got := channel.basic_get(a))[0] is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        method, props, _body = got
        seen.append(props)
        channel.basic_reject(method.delivery_tag, requeue=False)  # to b, expires, back to a
    assert seen[0].headers == {"h": 1} and seen[0].expiration == "100000"
    first = seen[1].headers["x-death"]
    assert [(d["queue"], d["reason"], d["count"]) for d in first] == [
        (b, "expired", 1),
        (a, "rejected", 1),
    ]
    assert first[1]["original-expiration"] == "100000"
    assert list(first[0]) == sorted(first[0])  # later entries have their fields sorted
    deaths = seen[2].headers["x-death"]
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [
        (b, "expired", 2),
        (a, "rejected", 2),
    ]
    assert seen[2].expiration is None and seen[2].headers["x-first-death-reason"] == "rejected"
