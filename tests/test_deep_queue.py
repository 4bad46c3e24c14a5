"""A deep durable queue over a real broker: past a small head (`AMQPD_PAGING_HEAD=20`) its
persistent messages are compact entries, and every queue semantic holds on them: order,
requeue to the front, counts, TTL with dead-lettering, drop-head, purge, and recovery.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from tests.broker_process import BrokerProcess, external_broker

pytestmark = pytest.mark.skipif(
    external_broker() is not None, reason="starts its own amqpd with a small paging head"
)
PERSISTENT = pika.BasicProperties(delivery_mode=2)
HEAD = 20


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    data = tmp_path_factory.mktemp("deep") / "data"
    with BrokerProcess(data, env={"AMQPD_PAGING_HEAD": str(HEAD)}) as running:
        yield running


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))


def body(i: int) -> bytes:
    return struct.pack(">Q", i) * 64


def number(data: bytes) -> int:
    return int(struct.unpack(">Q", data[:8])[0])


def publish(channel: object, queue: str, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        channel.basic_publish("", queue, body(i), PERSISTENT)  # type: ignore[attr-defined]


def paged_out(broker: BrokerProcess, queue: str, at_least: int) -> int:
    """The queue's messages_paged_out from the management API, once it reaches `at_least`."""
    port = broker.http_port()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/queues/%2F/{queue}")
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(request, timeout=10) as response:
            shown = json.load(response)
        if shown["messages_paged_out"] >= at_least or time.monotonic() > deadline:
            return int(shown["messages_paged_out"])
        time.sleep(0.1)


def drain(channel: object, queue: str) -> list[tuple[int, bool]]:
    got = []
    while True:
        method, _properties, data = channel.basic_get(queue, auto_ack=True)  # type: ignore[attr-defined]
        if method is None:
            return got
        got.append((number(data), method.redelivered))


def test_a_deep_queue_drains_in_order_with_requeues_to_the_front(broker: BrokerProcess) -> None:
    name = f"deep-{uuid.uuid4().hex[:8]}"
    connection = connect(broker)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(name, durable=True)
    publish(channel, name, 500)
    assert paged_out(broker, name, 400) >= 400
    assert channel.queue_declare(name, durable=True, passive=True).method.message_count == 500
    taken = [channel.basic_get(name) for _ in range(3)]
    assert [number(data) for _m, _p, data in taken] == [0, 1, 2]
    channel.basic_nack(taken[-1][0].delivery_tag, multiple=True, requeue=True)
    channel.basic_qos(prefetch_count=50)
    seen = []
    for method, _properties, data in channel.consume(name, inactivity_timeout=10):
        assert method is not None, f"stalled after {len(seen)}"
        seen.append((number(data), method.redelivered))
        channel.basic_ack(method.delivery_tag)
        if len(seen) == 500:
            break
    channel.cancel()
    assert seen == [(i, i < 3) for i in range(500)]
    assert channel.queue_declare(name, durable=True, passive=True).method.message_count == 0
    connection.close()


def test_paged_messages_expire_at_the_head_and_are_dead_lettered_in_order(
    broker: BrokerProcess,
) -> None:
    name = f"deep-ttl-{uuid.uuid4().hex[:8]}"
    connection = connect(broker)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(f"{name}-dead", durable=True)
    args = {
        "x-message-ttl": 4000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": f"{name}-dead",
    }
    channel.queue_declare(name, durable=True, arguments=args)
    publish(channel, name, 300)
    assert paged_out(broker, name, 200) >= 200
    time.sleep(4.1)
    assert (
        channel.queue_declare(name, durable=True, passive=True, arguments=args).method.message_count
        == 0
    )
    deadline = time.monotonic() + 10
    while (
        channel.queue_declare(f"{name}-dead", durable=True, passive=True).method.message_count < 300
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [i for i, _redelivered in drain(channel, f"{name}-dead")] == list(range(300))
    connection.close()


def test_drop_head_and_purge_reach_paged_messages(broker: BrokerProcess) -> None:
    name = f"deep-max-{uuid.uuid4().hex[:8]}"
    connection = connect(broker)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(f"{name}-dead", durable=True)
    args = {
        "x-max-length": 200,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": f"{name}-dead",
    }
    channel.queue_declare(name, durable=True, arguments=args)
    publish(channel, name, 200)
    assert paged_out(broker, name, 150) >= 150
    publish(channel, name, 100, start=200)
    assert (
        channel.queue_declare(name, durable=True, passive=True, arguments=args).method.message_count
        == 200
    )
    assert [i for i, _r in drain(channel, f"{name}-dead")] == list(range(100))
    assert paged_out(broker, name, 150) >= 150
    assert channel.queue_purge(name).method.message_count == 200
    assert drain(channel, name) == []
    publish(channel, name, 30, start=1000)
    assert [i for i, _r in drain(channel, name)] == list(range(1000, 1030))
    connection.close()


def test_a_deep_queue_comes_back_after_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"AMQPD_PAGING_HEAD": str(HEAD)}
    with BrokerProcess(data, env=env) as running:
        connection = connect(running)
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("deep-restart", durable=True)
        publish(channel, "deep-restart", 400)
        assert paged_out(running, "deep-restart", 300) >= 300
        channel.basic_get("deep-restart")  # delivered, never acked: redelivered after restart
        short = {"x-message-ttl": 2000}
        channel.queue_declare("deep-restart-ttl", durable=True, arguments=short)
        publish(channel, "deep-restart-ttl", 100)
        channel.queue_declare(
            "deep-restart-long", durable=True, arguments={"x-message-ttl": 600_000}
        )
        publish(channel, "deep-restart-long", 100)
        assert paged_out(running, "deep-restart-ttl", 50) >= 50
        connection.close()
    time.sleep(2.1)  # the short TTL runs out while the broker is down
    with BrokerProcess(data, env=env) as running:
        connection = connect(running)
        channel = connection.channel()
        channel.confirm_delivery()
        declared = channel.queue_declare("deep-restart", durable=True, passive=True)
        assert declared.method.message_count == 400
        assert paged_out(running, "deep-restart", 300) >= 300
        got = drain(channel, "deep-restart")
        assert [i for i, _r in got] == list(range(400))
        assert [redelivered for _i, redelivered in got] == [True] + [False] * 399
        assert drain(channel, "deep-restart-ttl") == []
        assert [i for i, _r in drain(channel, "deep-restart-long")] == list(range(100))
        connection.close()
