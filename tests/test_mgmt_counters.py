"""Message counters of the management API after known AMQP traffic, on amqpd and RabbitMQ.

The same traffic (pika) goes to a fanout exchange bound to two queues: publishes (one
returned, one dropped), a nack-requeue and a reject-requeue then their redeliveries, gets
with and without ack, an empty get and an auto-ack consumer. The exchange's
`publish_in`/`publish_out`, each queue's `message_stats` and the overview's must count it
exactly, right away on amqpd; against the reference RabbitMQ (127.0.0.1:5673, API on
15673; skipped when absent) the same numbers are awaited through its statistics lag.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest

from tests.mgmt_client import REFERENCE, Api, q, reference_up, start_mgmt_broker

REFERENCE_AMQP = 5673


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, int]]:
    proc, api = start_mgmt_broker(tmp_path_factory.mktemp("amqpd-counters"))
    try:
        yield api, proc.port
    finally:
        proc.stop()


# What the traffic below must leave (message_stats without the `_details` rates).
EXCHANGE = {"publish_in": 5, "publish_out": 10}
FIRST = {  # gets: nack-requeue, then its redelivery acked, two auto-acks, one empty; consumer
    "publish": 5,
    "deliver": 0,
    "deliver_no_ack": 2,
    "get": 2,
    "get_no_ack": 2,
    "deliver_get": 6,
    "get_empty": 1,
    "ack": 1,
    "redeliver": 1,
}
SECOND = {  # a consumer with acks: the first delivery rejected with requeue, then all acked
    "publish": 5,
    "deliver": 6,
    "deliver_no_ack": 0,
    "get": 0,
    "get_no_ack": 0,
    "deliver_get": 6,
    "get_empty": 0,
    "ack": 5,
    "redeliver": 1,
}
OVERVIEW = {  # the difference the traffic makes to the overview's message_stats
    "publish": 7,
    "confirm": 7,
    "return_unroutable": 1,
    "drop_unroutable": 1,
    "deliver": 6,
    "deliver_no_ack": 2,
    "get": 2,
    "get_no_ack": 2,
    "deliver_get": 12,
    "get_empty": 1,
    "ack": 6,
    "redeliver": 2,
}


def _traffic(port: int, prefix: str) -> None:
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        exchange, first, second = f"{prefix}-x", f"{prefix}-q1", f"{prefix}-q2"
        channel.exchange_declare(exchange, "fanout")
        for queue in (first, second):
            channel.queue_declare(queue)
            channel.queue_bind(queue, exchange)
        for _ in range(5):
            channel.basic_publish(exchange, "", b"m")
        with pytest.raises(pika.exceptions.UnroutableError):
            channel.basic_publish("amq.direct", f"{prefix}-nowhere", b"u", mandatory=True)
        channel.basic_publish("amq.direct", f"{prefix}-nowhere", b"u")

        method, _properties, _body = channel.basic_get(first)
        channel.basic_nack(method.delivery_tag, requeue=True)
        method, _properties, _body = channel.basic_get(first)
        assert method.redelivered
        channel.basic_ack(method.delivery_tag)
        for _ in range(2):
            assert channel.basic_get(first, auto_ack=True)[0] is not None

        seen: list[bool] = []

        def on_message(ch: Any, method: Any, _properties: Any, _body: bytes) -> None:
            seen.append(method.redelivered)
            if len(seen) == 1:
                ch.basic_reject(method.delivery_tag, requeue=True)
            else:
                ch.basic_ack(method.delivery_tag)

        channel.basic_consume(second, on_message)
        deadline = time.monotonic() + 10
        while len(seen) < 6 and time.monotonic() < deadline:
            connection.process_data_events(0.05)
        assert sorted(seen) == [False] * 5 + [True]

        eater = connection.channel()
        eaten: list[bytes] = []
        eater.basic_consume(first, lambda *args: eaten.append(args[3]), auto_ack=True)
        deadline = time.monotonic() + 10
        while len(eaten) < 2 and time.monotonic() < deadline:
            connection.process_data_events(0.05)
        assert len(eaten) == 2
        assert channel.basic_get(first)[0] is None  # get-empty
    finally:
        connection.close()


def _plain(stats: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (stats or {}).items() if not k.endswith("_details")}


def _seen(api: Api, prefix: str, before: dict[str, Any], overview: bool) -> dict[str, Any]:
    """What the API shows; `overview` also the change in the overview's counters."""
    seen = {
        "exchange": _plain(api.get(f"/api/exchanges/%2F/{q(prefix + '-x')}").get("message_stats")),
        "listed": [
            _plain(item.get("message_stats"))
            for item in api.get("/api/exchanges/%2F")
            if item["name"] == prefix + "-x"
        ],
        "first": _plain(api.get(f"/api/queues/%2F/{q(prefix + '-q1')}").get("message_stats")),
        "second": _plain(api.get(f"/api/queues/%2F/{q(prefix + '-q2')}").get("message_stats")),
    }
    if overview:
        now = _plain(api.get("/api/overview").get("message_stats"))
        seen["overview"] = {name: now.get(name, 0) - before.get(name, 0) for name in OVERVIEW}
    return seen


EXPECTED = {
    "exchange": EXCHANGE,
    "listed": [EXCHANGE],
    "first": FIRST,
    "second": SECOND,
    "overview": OVERVIEW,
}


def _run(
    api: Api, port: int, settle: Callable[[Callable[[], dict[str, Any]]], Any], overview: bool
) -> Any:
    prefix = f"cnt-{uuid.uuid4().hex[:8]}"
    before = _plain(api.get("/api/overview").get("message_stats"))
    try:
        _traffic(port, prefix)
        return settle(lambda: _seen(api, prefix, before, overview))
    finally:
        connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        channel = connection.channel()
        channel.exchange_delete(prefix + "-x")
        for queue in ("-q1", "-q2"):
            channel.queue_delete(prefix + queue)
        connection.close()


def test_counters_are_exact_at_once(broker: tuple[Api, int]) -> None:
    api, port = broker
    assert _run(api, port, lambda read: read(), overview=True) == EXPECTED


def test_listed_queues_show_the_same_counters(broker: tuple[Api, int]) -> None:
    api, port = broker
    prefix = f"cnt-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    try:
        channel = connection.channel()
        channel.queue_declare(prefix)
        for _ in range(3):
            channel.basic_publish("", prefix, b"m")
        method, _properties, _body = channel.basic_get(prefix)
        channel.basic_nack(method.delivery_tag, requeue=True)
        shown = api.get(f"/api/queues/%2F/{q(prefix)}")
        listed = [item for item in api.get("/api/queues") if item["name"] == prefix]
        columns = api.get(f"/api/queues?name={prefix}&columns=name,message_stats")
        assert len(listed) == 1
        for field in ("message_stats", "messages", "messages_ready", "consumers", "memory"):
            assert listed[0][field] == shown[field], field
        assert columns == [{"name": prefix, "message_stats": shown["message_stats"]}]
        assert shown["message_stats"]["get"] == 1 and shown["messages_ready"] == 3
        assert shown["message_stats"]["publish_details"] == {"rate": 0.0}
        channel.queue_delete(prefix)
    finally:
        connection.close()


@pytest.mark.skipif(not reference_up(), reason="no reference RabbitMQ on 127.0.0.1:15673")
def test_rabbitmq_counts_the_same() -> None:
    """The expectations above are RabbitMQ's own numbers (its stats arrive within ~5 s). Its
    overview is left out: other clients of the shared reference broker move it too."""
    expected = {key: value for key, value in EXPECTED.items() if key != "overview"}

    def settle(read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        deadline = time.monotonic() + 20
        seen = read()
        while seen != expected and time.monotonic() < deadline:
            time.sleep(0.5)
            seen = read()
        return seen

    assert _run(REFERENCE, REFERENCE_AMQP, settle, overview=False) == expected
