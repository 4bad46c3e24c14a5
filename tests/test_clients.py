"""Clients other than pika: aio-pika (aiormq), kombu and bare py-amqp.

kombu's pyamqp transport logs in with PLAIN unless told `login_method="AMQPLAIN"`; bare
py-amqp prefers AMQPLAIN; both mechanisms are exercised. Each client does a publish /
consume / ack round trip, and the test checks that the acked message is really gone (and
an unacked one really comes back).
"""

from __future__ import annotations

import asyncio

import aio_pika
import amqp
import kombu
import pika
import pytest
from kombu import Consumer, Exchange, Producer, Queue

from tests.conftest import BrokerAddress

TIMEOUT = 15.0  # a failure path only: generous for a loaded machine


def _ready_count(broker: BrokerAddress, queue: str) -> int:
    """Ready messages in a queue, asked over a fresh pika connection (a second opinion)."""
    conn = pika.BlockingConnection(broker.params())
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()


# --- aio-pika ----------------------------------------------------------------------------


async def _aio_round_trip(connection: aio_pika.abc.AbstractConnection, queue_name: str) -> None:
    channel = await connection.channel()
    exchange = await channel.declare_exchange(f"{queue_name}-x", aio_pika.ExchangeType.DIRECT)
    queue = await channel.declare_queue(queue_name)
    await queue.bind(exchange, routing_key="rk")

    await exchange.publish(
        aio_pika.Message(b"first", content_type="text/plain", headers={"n": 1}), "rk"
    )
    await exchange.publish(aio_pika.Message(b"second", message_id="m-2"), "rk")

    received = []
    async with queue.iterator() as it:
        async for message in it:
            received.append(message)
            await message.ack()
            if len(received) == 2:
                break
    assert [m.body for m in received] == [b"first", b"second"]
    assert received[0].content_type == "text/plain"
    assert received[0].headers == {"n": 1}
    assert received[0].routing_key == "rk"
    assert received[0].exchange == f"{queue_name}-x"
    assert received[1].message_id == "m-2"
    assert not received[0].redelivered

    # basic.get path, and an unacked message comes back when its channel closes.
    await channel.default_exchange.publish(aio_pika.Message(b"third"), queue_name)
    got = await queue.get(timeout=TIMEOUT)
    assert got is not None and got.body == b"third" and not got.redelivered
    await channel.close()

    channel = await connection.channel()
    queue = await channel.declare_queue(queue_name, passive=True)
    again = await queue.get(timeout=TIMEOUT)
    assert again is not None and again.body == b"third" and again.redelivered
    await again.ack()
    assert await queue.get(fail=False, timeout=TIMEOUT) is None
    await queue.delete(if_unused=False, if_empty=False)
    await channel.exchange_delete(f"{queue_name}-x")
    await channel.close()


async def test_aio_pika_round_trip(broker: BrokerAddress, unique: str):
    connection = await aio_pika.connect(broker.url, timeout=TIMEOUT)
    async with connection:
        await _aio_round_trip(connection, f"{unique}-aio")
    assert connection.is_closed


async def test_aio_pika_robust_round_trip(broker: BrokerAddress, unique: str):
    connection = await aio_pika.connect_robust(broker.url, timeout=TIMEOUT)
    async with connection:
        await _aio_round_trip(connection, f"{unique}-robust")


class _CuttableProxy:
    """A TCP forwarder on 127.0.0.1:0 whose live links the test can cut at will."""

    def __init__(self, broker: BrokerAddress) -> None:
        self.broker = broker
        self.links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.accepted = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter):
        self.accepted += 1
        broker_r, broker_w = await asyncio.open_connection(self.broker.host, self.broker.port)
        self.links.append((client_w, broker_w))

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.transport.abort()

        await asyncio.gather(pipe(client_r, broker_w), pipe(broker_r, client_w))

    def cut(self) -> None:
        for client_w, broker_w in self.links:
            client_w.transport.abort()
            broker_w.transport.abort()
        self.links.clear()

    def close(self) -> None:
        self.cut()
        self.server.close()


async def test_aio_pika_robust_reconnects_and_restores_consumer(broker: BrokerAddress,
                                                                unique: str):
    proxy = _CuttableProxy(broker)
    port = await proxy.start()
    try:
        url = f"amqp://guest:guest@127.0.0.1:{port}/?reconnect_interval=0.1"
        connection = await aio_pika.connect_robust(url, timeout=TIMEOUT)
        async with connection:
            channel = await connection.channel()
            # auto_delete: the broker drops it with the lost consumer; robust re-declares it.
            queue = await channel.declare_queue(f"{unique}-robust-re", auto_delete=True)
            seen: list[bytes] = []
            arrived = asyncio.Event()

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                seen.append(message.body)
                await message.ack()
                arrived.set()

            await queue.consume(on_message)
            reconnected = asyncio.Event()
            connection.reconnect_callbacks.add(lambda *_: reconnected.set())

            proxy.cut()  # the TCP connection dies without any AMQP close
            await asyncio.wait_for(reconnected.wait(), TIMEOUT)
            assert proxy.accepted == 2
            await channel.default_exchange.publish(aio_pika.Message(b"after"), queue.name)
            await asyncio.wait_for(arrived.wait(), TIMEOUT)
            assert seen == [b"after"]
    finally:
        proxy.close()


async def test_aio_pika_consumer_callback_with_prefetch(broker: BrokerAddress, unique: str):
    async with await aio_pika.connect(broker.url, timeout=TIMEOUT) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=2)
        queue = await channel.declare_queue(f"{unique}-cb", auto_delete=True)
        for i in range(5):
            await channel.default_exchange.publish(aio_pika.Message(str(i).encode()), queue.name)

        seen: list[bytes] = []
        done = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            seen.append(message.body)
            await message.ack()
            if len(seen) == 5:
                done.set()

        tag = await queue.consume(on_message)
        await asyncio.wait_for(done.wait(), TIMEOUT)
        assert seen == [b"0", b"1", b"2", b"3", b"4"]
        await queue.cancel(tag)
    # auto_delete: the queue went away with its last consumer.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        _ready_count(broker, f"{unique}-cb")
    assert info.value.reply_code == 404


# --- kombu (py-amqp) ---------------------------------------------------------------------


def _kombu_url(broker: BrokerAddress) -> str:
    return f"pyamqp://guest:guest@{broker.host}:{broker.port}//"


LOGIN_METHODS = pytest.mark.parametrize("login_method", ["AMQPLAIN", "PLAIN"])


def test_py_amqp_logs_in_with_amqplain_by_default(broker: BrokerAddress, unique: str):
    """py-amqp on its own prefers AMQPLAIN when the server offers it (kombu asks for PLAIN)."""
    conn = amqp.Connection(f"{broker.host}:{broker.port}", connect_timeout=TIMEOUT)
    conn.connect()
    try:
        assert b"AMQPLAIN" in conn.mechanisms and b"PLAIN" in conn.mechanisms
        offered = [a.mechanism for a in conn.authentication]
        assert next(m for m in offered if m in conn.mechanisms) == b"AMQPLAIN"
        ch = conn.channel()
        name = f"{unique}-pyamqp"
        ch.queue_declare(name, auto_delete=False)
        ch.basic_publish(amqp.Message(b"via AMQPLAIN", application_headers={"k": "v"}),
                         exchange="", routing_key=name)
        msg = ch.basic_get(name)
        assert msg is not None and msg.body == b"via AMQPLAIN"
        assert msg.headers == {"k": "v"}
        assert msg.delivery_info["message_count"] == 0
        ch.basic_ack(msg.delivery_tag)
        assert ch.basic_get(name) is None
        ch.queue_delete(name)
    finally:
        conn.close()


@LOGIN_METHODS
def test_kombu_round_trip(broker: BrokerAddress, unique: str, login_method: str):
    exchange = Exchange(f"{unique}-kx", type="direct", durable=False)
    queue = Queue(f"{unique}-kq", exchange=exchange, routing_key="tasks", durable=False)
    with kombu.Connection(_kombu_url(broker), connect_timeout=TIMEOUT,
                          login_method=login_method) as conn:
        conn.connect()
        assert [a.mechanism for a in conn.connection.authentication] == [login_method.encode()]
        channel = conn.channel()
        producer = Producer(channel, exchange=exchange, serializer="json")
        producer.publish({"n": 1, "s": "héllo"}, routing_key="tasks", declare=[queue],
                         headers={"task": "add"})
        producer.publish({"n": 2}, routing_key="tasks")

        received = []

        def on_message(body, message):  # type: ignore[no-untyped-def]
            received.append((body, message))
            message.ack()

        with Consumer(channel, queues=[queue], callbacks=[on_message], accept=["json"]):
            while len(received) < 2:
                conn.drain_events(timeout=TIMEOUT)
        assert [b for b, _m in received] == [{"n": 1, "s": "héllo"}, {"n": 2}]
        first = received[0][1]
        assert first.content_type == "application/json"
        assert first.headers == {"task": "add"}
        assert first.delivery_info["routing_key"] == "tasks"
        assert first.delivery_info["exchange"] == f"{unique}-kx"
        assert first.acknowledged

    assert _ready_count(broker, f"{unique}-kq") == 0
    with kombu.Connection(_kombu_url(broker)) as conn:
        ch = conn.channel()
        ch.queue_delete(f"{unique}-kq")
        ch.exchange_delete(f"{unique}-kx")


@LOGIN_METHODS
def test_kombu_simple_queue(broker: BrokerAddress, unique: str, login_method: str):
    name = f"{unique}-simple"
    with kombu.Connection(_kombu_url(broker), connect_timeout=TIMEOUT,
                          login_method=login_method) as conn:
        q = conn.SimpleQueue(name)
        q.put({"hello": "world"})
        q.put("plain text")
        q.put(b"raw bytes", serializer=None, content_type="application/data",
              content_encoding="binary")
        msg = q.get(block=True, timeout=TIMEOUT)
        assert msg.payload == {"hello": "world"}
        msg.ack()
        msg = q.get(block=True, timeout=TIMEOUT)
        assert msg.payload == "plain text"
        msg.ack()
        msg = q.get(block=True, timeout=TIMEOUT)
        assert msg.body == b"raw bytes"
        assert msg.content_type == "application/data"
        # Left unacked: comes back after the connection closes.
        with pytest.raises(q.Empty):
            q.get(block=True, timeout=0.2)
        q.close()
    assert _ready_count(broker, name) == 1

    with kombu.Connection(_kombu_url(broker), connect_timeout=TIMEOUT,
                          login_method=login_method) as conn:
        q = conn.SimpleQueue(name)
        assert q.qsize() == 1
        msg = q.get(block=True, timeout=TIMEOUT)
        assert msg.body == b"raw bytes"
        assert msg.delivery_info["redelivered"] is True
        msg.ack()
        q.clear()
        q.close()
        conn.channel().queue_delete(name)
